//! The overlay agent: follows the cluster store and keeps this host's
//! kernel in line with it.
//!
//! - Every network of the store becomes a network of this host (its bridge
//!   and VXLAN device, a block of its subnets): `Controller::adopt_overlay`.
//! - Every endpoint another host published becomes one static FDB entry and
//!   one permanent neighbour entry on the network's VXLAN device (a `Peer`),
//!   so no ARP or ND crosses the underlay; it goes when the endpoint or its
//!   host's lease goes.
//! - On every snapshot (the first, and after a watch re-listed) and every
//!   `RECONCILE_EVERY`, the kernel is reconciled with what the store says:
//!   missing entries are added, extra ones removed (`OverlayDriver::reconcile`).
//!
//! - Other hosts' endpoints are handed to the DNS server (`dns::Remote`),
//!   which answers their names on this host.
//!
//! The agent runs on its own thread. It takes the controller's lock only to
//! adopt networks and read their specs, never while it programs the kernel.

use ferry_cluster::{ClusterStore, EndpointRecord, Event, HostRecord, NetworkRecord};
use ferry_cnm::Controller;
use ferry_drivers::network::overlay::Peer;
use ferry_drivers::network::registry::LinuxDrivers;
use ferry_drivers::NetworkSpec;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the kernel is compared with the store when nothing happens.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// What the store holds, as this agent last saw it.
#[derive(Default)]
struct View {
    hosts: BTreeMap<String, HostRecord>,
    networks: BTreeMap<String, NetworkRecord>,
    endpoints: BTreeMap<(String, IpAddr), EndpointRecord>,
}

impl View {
    /// The endpoints published by `host`, copied out so the caller may
    /// change the view while it programs them.
    fn endpoints_of(&self, host: &str) -> Vec<EndpointRecord> {
        self.endpoints
            .values()
            .filter(|e| e.host == host)
            .cloned()
            .collect()
    }
}

/// Registers this host under its lease and publishes its overlay endpoints
/// again (their records went with the previous lease). Returns how many.
pub fn register(
    store: &dyn ClusterStore,
    host: &str,
    vtep: IpAddr,
    ctl: &Controller,
) -> Result<usize, String> {
    store
        .register_host(&HostRecord {
            id: host.to_string(),
            vtep,
            mac: String::new(),
            registered_unix: 0,
        })
        .map_err(|e| format!("register host {host}: {e}"))?;
    ctl.republish_overlay().map_err(|e| e.to_string())
}

pub struct Agent {
    store: Arc<dyn ClusterStore>,
    host: String,
    vtep: IpAddr,
    ctl: crate::state::Shared,
    drivers: Arc<LinuxDrivers>,
    view: View,
    metrics: Arc<crate::metrics::Metrics>,
    names: crate::dns::Remote,
}

impl Agent {
    pub fn new(
        store: Arc<dyn ClusterStore>,
        host: String,
        vtep: IpAddr,
        ctl: crate::state::Shared,
        drivers: Arc<LinuxDrivers>,
        metrics: Arc<crate::metrics::Metrics>,
        names: crate::dns::Remote,
    ) -> Agent {
        Agent {
            store,
            host,
            vtep,
            ctl,
            drivers,
            view: View::default(),
            metrics,
            names,
        }
    }

    /// Starts the agent on a thread of its own.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("ferry-overlay-agent".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        loop {
            let rx = match self.store.watch() {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster store watch failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let mut next_reconcile = Instant::now() + RECONCILE_EVERY;
            loop {
                let wait = next_reconcile.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(event) => {
                        self.apply(event);
                        self.count_peers();
                        self.share_names();
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.ensure_registered();
                        self.reconcile_all("periodic");
                        next_reconcile = Instant::now() + RECONCILE_EVERY;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        tracing::warn!("cluster store watch ended; watching again");
                        break;
                    }
                }
            }
        }
    }

    /// Registers this host again when the store lost it (it was down when
    /// ferryd started, or this host's lease expired and was not re-granted).
    fn ensure_registered(&self) {
        if self.view.hosts.contains_key(&self.host) {
            return;
        }
        let done = match self.ctl.lock() {
            Ok(c) => register(self.store.as_ref(), &self.host, self.vtep, &c),
            Err(_) => return,
        };
        match done {
            Ok(n) => tracing::info!(host = %self.host, endpoints = n, "registered in the cluster"),
            Err(e) => tracing::warn!(host = %self.host, error = %e, "cannot register yet"),
        }
    }

    /// Other hosts and their endpoints, as `ferry_overlay_hosts` and `_peers`.
    fn count_peers(&self) {
        let hosts = self.view.hosts.keys().filter(|h| **h != self.host).count();
        let peers = self
            .view
            .endpoints
            .values()
            .filter(|e| e.host != self.host && self.view.hosts.contains_key(&e.host))
            .count();
        self.metrics.overlay(hosts, peers);
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Snapshot(s) => {
                self.view = View::default();
                for h in s.hosts {
                    self.view.hosts.insert(h.id.clone(), h);
                }
                for e in s.endpoints {
                    self.view.endpoints.insert((e.network.clone(), e.ip), e);
                }
                for n in s.networks {
                    self.adopt(&n);
                    self.view.networks.insert(n.name.clone(), n);
                }
                self.reconcile_all("snapshot");
            }
            Event::NetworkUp(n) => {
                self.adopt(&n);
                self.view.networks.insert(n.name.clone(), n.clone());
                self.reconcile_network(&n.name, "network up");
            }
            Event::NetworkDown(name) => {
                self.view.networks.remove(&name);
                self.view.endpoints.retain(|(net, _), _| *net != name);
            }
            Event::HostUp(h) => {
                let id = h.id.clone();
                self.view.hosts.insert(id.clone(), h);
                for e in self.view.endpoints_of(&id) {
                    self.add_peer(&e);
                }
            }
            Event::HostDown(id) => {
                let gone = self.view.endpoints_of(&id);
                for e in &gone {
                    self.remove_peer(e);
                    self.view.endpoints.remove(&(e.network.clone(), e.ip));
                }
                self.view.hosts.remove(&id);
                tracing::info!(host = %id, endpoints = gone.len(), "host left the cluster");
            }
            Event::EndpointUp(e) => {
                self.view
                    .endpoints
                    .insert((e.network.clone(), e.ip), e.clone());
                self.add_peer(&e);
            }
            Event::EndpointDown { network, ip } => {
                if let Some(e) = self.view.endpoints.remove(&(network, ip)) {
                    self.remove_peer(&e);
                }
            }
            Event::BlockUp(_) | Event::BlockDown { .. } => {}
        }
    }

    /// Hands the other hosts' endpoints to the DNS server (its next
    /// refresh serves their names).
    fn share_names(&self) {
        let remote: Vec<EndpointRecord> = self
            .view
            .endpoints
            .values()
            .filter(|e| e.host != self.host)
            .cloned()
            .collect();
        if let Ok(mut names) = self.names.lock() {
            *names = remote;
        }
    }

    fn adopt(&self, n: &NetworkRecord) {
        let adopted = match self.ctl.lock() {
            Ok(mut c) => c.adopt_overlay(n),
            Err(_) => return,
        };
        if let Err(e) = adopted {
            tracing::warn!(network = %n.name, error = %e, "cannot adopt overlay network");
        }
    }

    fn spec(&self, network: &str) -> Option<NetworkSpec> {
        let c = self.ctl.lock().ok()?;
        c.overlay_specs()
            .into_iter()
            .find(|(name, _)| name == network)
            .map(|(_, s)| s)
    }

    /// The kernel entry for a remote endpoint, when its host is known.
    fn peer(&self, e: &EndpointRecord) -> Option<Peer> {
        if e.host == self.host {
            return None;
        }
        let host = self.view.hosts.get(&e.host)?;
        Some(Peer {
            ip: e.ip,
            mac: e.mac.parse().ok()?,
            vtep: host.vtep,
        })
    }

    fn add_peer(&self, e: &EndpointRecord) {
        let (Some(p), Some(spec)) = (self.peer(e), self.spec(&e.network)) else {
            return;
        };
        if let Err(err) = self.drivers.overlay().add_peer(&spec, &p) {
            tracing::warn!(network = %e.network, ip = %e.ip, error = %err, "cannot add peer");
        }
    }

    fn remove_peer(&self, e: &EndpointRecord) {
        let (Some(p), Some(spec)) = (self.peer(e), self.spec(&e.network)) else {
            return;
        };
        if let Err(err) = self.drivers.overlay().remove_peer(&spec, &p) {
            tracing::warn!(network = %e.network, ip = %e.ip, error = %err, "cannot remove peer");
        }
    }

    fn reconcile_all(&self, why: &str) {
        let names: Vec<String> = match self.ctl.lock() {
            Ok(c) => c.overlay_specs().into_iter().map(|(n, _)| n).collect(),
            Err(_) => return,
        };
        for n in names {
            self.reconcile_network(&n, why);
        }
    }

    /// Makes the VXLAN device's entries exactly the remote endpoints of `network`.
    fn reconcile_network(&self, network: &str, why: &str) {
        let Some(spec) = self.spec(network) else {
            return;
        };
        let peers: Vec<Peer> = self
            .view
            .endpoints
            .values()
            .filter(|e| e.network == network)
            .filter_map(|e| self.peer(e))
            .collect();
        match self.drivers.overlay().reconcile(&spec, &peers) {
            Ok(r) if r.added + r.removed > 0 => tracing::info!(
                network,
                why,
                added = r.added,
                removed = r.removed,
                "overlay reconciled"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(network, why, error = %e, "overlay reconcile failed"),
        }
    }
}
