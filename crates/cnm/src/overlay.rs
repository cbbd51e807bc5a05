//! Networks of global scope: one VXLAN network and subnet across the hosts
//! of a cluster, its state in the cluster store (`ferry_cluster`).
//!
//! The store holds the network (name, VNI, subnets), which host claimed
//! which block of the subnet, and every endpoint (IP, MAC, host). This
//! controller keeps each overlay network locally too, as a network of the
//! overlay driver (its bridge and VXLAN device on this host), with the
//! blocks this host claimed. Addresses come from those blocks with no store
//! round trip; a full set of blocks claims one more (compare-and-swap in the
//! store). Each endpoint is published (one store write) once it is made, and
//! withdrawn when it goes. The remote side (FDB and neighbour entries for
//! other hosts' endpoints) is ferryd's agent's, which follows the store.
//!
//! This host's gateway on an overlay network is the first address of its
//! first block, with the whole subnet's prefix: the host routes the subnet
//! to its bridge, so published ports and masquerade work as on a bridge.

use crate::controller::{net_key, put, Controller, Network};
use crate::driver::Driver;
use crate::error::{CnmError, Result};
use crate::sandbox::NetworkCreate;
use crate::wire;
use ferry_cluster::{ClusterStore, EndpointRecord, NetworkRecord};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// This host in the cluster.
#[derive(Clone)]
pub struct Cluster {
    pub store: Arc<dyn ClusterStore>,
    /// This host's ID in the store.
    pub host: String,
    /// This host's VTEP (underlay) address.
    pub vtep: IpAddr,
}

impl From<ferry_cluster::Error> for CnmError {
    fn from(e: ferry_cluster::Error) -> Self {
        use ferry_cluster::Error as E;
        match e {
            E::Unavailable(m) => CnmError::Unavailable(m),
            E::Conflict(m) | E::Invalid(m) => CnmError::Invalid(m),
            E::NotFound(m) => CnmError::NotFound {
                kind: "cluster object",
                id: m,
            },
            other => CnmError::Store(other.to_string()),
        }
    }
}

/// The local names of an overlay network's devices.
fn device_names(vni: u32) -> String {
    format!("fo-{vni}")
}

/// The first host address of `block`, with the prefix of `subnet`.
fn first_host(block: IpNet, subnet: IpNet) -> Result<IpNet> {
    let ip = block
        .hosts()
        .next()
        .ok_or_else(|| CnmError::Invalid(format!("block {block} has no host address")))?;
    let ip = if ip == subnet.network() {
        // A block at the start of the subnet: skip the subnet's own address.
        block
            .hosts()
            .nth(1)
            .ok_or_else(|| CnmError::Invalid(format!("block {block} is too small")))?
    } else {
        ip
    };
    IpNet::new(ip, subnet.prefix_len()).map_err(|e| CnmError::Invalid(e.to_string()))
}

impl Controller {
    /// Joins this controller to a cluster: overlay networks become possible.
    pub fn set_cluster(&mut self, cluster: Cluster) {
        self.cluster = Some(cluster);
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    pub(crate) fn cluster_or_err(&self) -> Result<Cluster> {
        self.cluster.clone().ok_or_else(|| {
            CnmError::Unsupported(
                "overlay networks need ferryd's cluster store (--cluster-store, or the embedded one)"
                    .into(),
            )
        })
    }

    /// `ferry network create NAME -d overlay`: the network in the cluster
    /// store (a VNI allocated there), then here.
    pub(crate) fn create_overlay_network(&mut self, req: &NetworkCreate) -> Result<Network> {
        self.create_overlay(req, &[])
    }

    /// [`Self::create_overlay_network`]; this host's IPAM pools in `own`
    /// (Docker's for this very network) are not in the way.
    pub(crate) fn create_overlay(&mut self, req: &NetworkCreate, own: &[IpNet]) -> Result<Network> {
        let cluster = self.cluster_or_err()?;
        let mut subnets = Vec::new();
        for s in &req.subnets {
            let net: IpNet = s
                .parse()
                .map_err(|e| CnmError::Invalid(format!("subnet {s:?}: {e}")))?;
            if net.trunc() != net {
                return Err(CnmError::Invalid(format!(
                    "subnet {s}: host bits are set (did you mean {}?)",
                    net.trunc()
                )));
            }
            subnets.push(net);
        }
        let taken: Vec<IpNet> = cluster
            .store
            .networks()?
            .iter()
            .filter(|n| n.name != req.name)
            .flat_map(|n| n.subnets.clone())
            .chain(self.ipam.pools.values().map(|p| p.subnet))
            .filter(|t| !own.contains(t))
            .collect();
        for (v6, wanted) in [(false, true), (true, req.ipv6)] {
            if wanted && !subnets.iter().any(|s| s.addr().is_ipv6() == v6) {
                subnets.push(self.free_default_subnet(v6, &taken)?);
            }
        }
        for s in &subnets {
            if let Some(t) = taken
                .iter()
                .find(|t| t.contains(&s.network()) || s.contains(&t.network()))
            {
                return Err(CnmError::PoolOverlap {
                    requested: s.to_string(),
                    existing: t.to_string(),
                    space: "global".into(),
                });
            }
        }
        let rec = cluster.store.create_network(&NetworkRecord {
            name: req.name.clone(),
            vni: 0,
            subnets,
            options: req.options.clone(),
        })?;
        self.adopt_overlay(&rec)?;
        self.network_by_name(&req.name).cloned()
    }

    /// A subnet of the default pools of this family that overlaps nothing in `taken`.
    fn free_default_subnet(&self, v6: bool, taken: &[IpNet]) -> Result<IpNet> {
        for d in self
            .defaults
            .iter()
            .filter(|d| d.base.addr().is_ipv6() == v6)
        {
            let Ok(candidates) = d.base.subnets(d.size) else {
                continue;
            };
            for c in candidates.take(1 << 16) {
                let clash = taken
                    .iter()
                    .any(|t| t.contains(&c.network()) || c.contains(&t.network()));
                if !clash {
                    return Ok(c);
                }
            }
        }
        Err(CnmError::NoDefaultPool {
            family: if v6 { "IPv6" } else { "IPv4" },
            pools: "the default address pools".into(),
        })
    }

    /// Makes the cluster's network `rec` a network of this host (idempotent):
    /// a block of each subnet, this host's gateway in it, the bridge and the
    /// VXLAN device.
    pub fn adopt_overlay(&mut self, rec: &NetworkRecord) -> Result<()> {
        if self.network_by_name(&rec.name).is_ok() {
            return Ok(());
        }
        let cluster = self.cluster_or_err()?;
        let mut blocks = Vec::new();
        let mut data = (Vec::new(), Vec::new());
        for subnet in &rec.subnets {
            let v6 = subnet.addr().is_ipv6();
            let block = cluster.store.claim_block(&rec.name, v6)?.ok_or_else(|| {
                CnmError::Exhausted(format!("{subnet} (every block is claimed by a host)"))
            })?;
            blocks.push(block);
            let d = wire::IpamData {
                address_space: "global".into(),
                pool: subnet.to_string(),
                gateway: first_host(block, *subnet)?.to_string(),
                aux_addresses: BTreeMap::new(),
            };
            if v6 {
                data.1.push(d);
            } else {
                data.0.push(d);
            }
        }
        let n = Network {
            id: crate::sandbox::random_hex(64)?,
            name: Some(rec.name.clone()),
            pools: Vec::new(),
            routes: Vec::new(),
            driver: Driver::Overlay {
                vni: rec.vni,
                local: cluster.vtep,
            },
            bridge: device_names(rec.vni),
            mtu: None,
            internal: false,
            enable_icc: true,
            enable_ip_masquerade: true,
            host_binding_ipv4: None,
            ipv4: data.0,
            ipv6: data.1,
            blocks: blocks.clone(),
            docker_ids: Vec::new(),
        };
        let release = |c: &Cluster| {
            for b in &blocks {
                let _ = c.store.release_block(&rec.name, *b);
            }
        };
        let spec = n.spec();
        let made = self
            .driver(&spec)
            .validate(&spec)
            .and_then(|()| self.driver(&spec).create_network(&spec));
        if let Err(e) = made {
            release(&cluster);
            return Err(e.into());
        }
        if let Err(e) = self.store.apply(vec![put(net_key(&n.id), &n)?]) {
            let _ = self.driver(&spec).delete_network(&spec);
            release(&cluster);
            return Err(e);
        }
        self.networks.insert(n.id.clone(), n);
        Ok(())
    }

    /// An address for a new endpoint of overlay network `n` in each of its
    /// subnets, from this host's blocks; claims another block when they are
    /// full. Returns the network as updated (its blocks).
    pub(crate) fn overlay_addresses(&mut self, n: &Network) -> Result<(Network, Vec<IpNet>)> {
        let mut n = n.clone();
        let mut taken = self.overlay_taken(&n);
        let mut out = Vec::new();
        for d in n.ipv4.clone().iter().chain(n.ipv6.clone().iter()) {
            let subnet: IpNet = d
                .pool
                .parse()
                .map_err(|e| CnmError::Store(format!("pool {:?}: {e}", d.pool)))?;
            out.push(self.overlay_address(&mut n, subnet, &mut taken)?);
        }
        Ok((n, out))
    }

    /// The addresses of overlay network `n` this host holds: its endpoints',
    /// its gateways, and those Docker's IPAM handed out from a pool of the
    /// same subnet (an endpoint to be, see `overlay_docker`).
    pub(crate) fn overlay_taken(&self, n: &Network) -> Vec<IpAddr> {
        let subnets: Vec<&str> = n
            .ipv4
            .iter()
            .chain(&n.ipv6)
            .map(|d| d.pool.as_str())
            .collect();
        self.endpoints
            .values()
            .filter(|e| e.network_id == n.id)
            .flat_map(|e| e.addresses())
            .chain(n.gateways())
            .map(|a| a.addr())
            .chain(
                self.ipam
                    .pools
                    .values()
                    .filter(|p| subnets.contains(&p.subnet.to_string().as_str()))
                    .flat_map(|p| p.allocated.iter().copied()),
            )
            .collect()
    }

    /// A free address of `subnet` in this host's blocks of overlay network
    /// `n` (added to `taken`); claims another block (and commits `n`) when
    /// they are full.
    pub(crate) fn overlay_address(
        &mut self,
        n: &mut Network,
        subnet: IpNet,
        taken: &mut Vec<IpAddr>,
    ) -> Result<IpNet> {
        let v6 = subnet.addr().is_ipv6();
        let free = |blocks: &[IpNet], taken: &[IpAddr]| {
            blocks
                .iter()
                .filter(|b| b.addr().is_ipv6() == v6)
                .flat_map(|b| b.hosts())
                .find(|ip| !taken.contains(ip) && *ip != subnet.network())
        };
        let ip = match free(&n.blocks, taken) {
            Some(ip) => ip,
            None => {
                let cluster = self.cluster_or_err()?;
                let name = n.name.clone().unwrap_or_default();
                let block = cluster.store.claim_block(&name, v6)?.ok_or_else(|| {
                    CnmError::Exhausted(format!("{subnet} (every block is claimed)"))
                })?;
                n.blocks.push(block);
                self.store.apply(vec![put(net_key(&n.id), &*n)?])?;
                self.networks.insert(n.id.clone(), n.clone());
                free(&n.blocks, taken).ok_or_else(|| CnmError::Exhausted(subnet.to_string()))?
            }
        };
        taken.push(ip);
        IpNet::new(ip, subnet.prefix_len()).map_err(|e| CnmError::Invalid(e.to_string()))
    }

    /// Publishes an endpoint of an overlay network (one store write per
    /// address); on failure, withdraws the addresses it did publish.
    pub(crate) fn publish_endpoint(
        &self,
        n: &Network,
        ep: &crate::controller::Endpoint,
        sandbox: &str,
    ) -> Result<()> {
        let (Some(cluster), Some(name)) = (&self.cluster, &n.name) else {
            return Ok(());
        };
        let addresses = ep.addresses();
        for (i, a) in addresses.iter().enumerate() {
            let published = cluster.store.publish_endpoint(&EndpointRecord {
                network: name.clone(),
                ip: a.addr(),
                mac: ep.mac.clone(),
                host: cluster.host.clone(),
                name: Some(sandbox.to_string()),
                aliases: ep.aliases.clone(),
            });
            if let Err(e) = published {
                for done in &addresses[..i] {
                    let _ = cluster.store.withdraw_endpoint(name, done.addr());
                }
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Withdraws an endpoint of an overlay network (best effort: a store
    /// that is down drops it with this host's lease).
    pub(crate) fn withdraw_endpoint(&self, n: &Network, ep: &crate::controller::Endpoint) {
        let (Some(cluster), Some(name)) = (&self.cluster, &n.name) else {
            return;
        };
        for a in ep.addresses() {
            let _ = cluster.store.withdraw_endpoint(name, a.addr());
        }
    }

    /// Removes an overlay network here and, when no host has endpoints on
    /// it any more, from the cluster.
    pub(crate) fn remove_overlay_network(&mut self, n: &Network) -> Result<()> {
        let cluster = self.cluster_or_err()?;
        let name = n.name.clone().unwrap_or_default();
        if !n.docker_ids.is_empty() {
            return Err(CnmError::Invalid(format!(
                "network {name:?} is a Docker network on this host too: docker network rm it first"
            )));
        }
        if let Some(other) = cluster
            .store
            .endpoints(Some(&name))?
            .into_iter()
            .find(|e| e.host != cluster.host)
        {
            return Err(CnmError::Invalid(format!(
                "network {name:?} has endpoints on host {:?}: disconnect them first",
                other.host
            )));
        }
        self.delete_network(&n.id)?;
        cluster.store.delete_network(&name)?;
        Ok(())
    }

    /// The overlay networks of this host, by name, as the driver layer sees them.
    pub fn overlay_specs(&self) -> Vec<(String, ferry_drivers::NetworkSpec)> {
        self.networks
            .values()
            .filter(|n| matches!(n.driver, Driver::Overlay { .. }))
            .filter_map(|n| n.name.clone().map(|name| (name, n.spec())))
            .collect()
    }
}

impl Controller {
    /// Claims this host's blocks again and publishes every endpoint it holds
    /// on overlay networks again: after a restart their store records may
    /// have expired with the old lease. A block another host took meanwhile
    /// is an error naming it. Returns how many endpoints were published.
    pub fn republish_overlay(&self) -> Result<usize> {
        if let Some(cluster) = &self.cluster {
            for net in self.networks.values() {
                if !matches!(net.driver, Driver::Overlay { .. }) {
                    continue;
                }
                let name = net.name.clone().unwrap_or_default();
                for b in &net.blocks {
                    if !cluster.store.reclaim_block(&name, *b)? {
                        return Err(CnmError::Invalid(format!(
                            "block {b} of overlay network {name:?} is held by another host now: \
                             this host's addresses in it may be used twice (disconnect them)"
                        )));
                    }
                }
            }
        }
        let mut n = 0;
        for ep in self.endpoints.values() {
            let Some(net) = self.networks.get(&ep.network_id) else {
                continue;
            };
            if !matches!(net.driver, Driver::Overlay { .. }) {
                continue;
            }
            self.publish_endpoint(net, ep, ep.sandbox.as_deref().unwrap_or(""))?;
            n += 1;
        }
        Ok(n)
    }
}

/// A host of the cluster as `ferry hosts` and `ferry network inspect` show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostView {
    pub id: String,
    pub vtep: IpAddr,
    pub mac: String,
    /// Seconds since the host registered under its current lease.
    pub lease_age_secs: u64,
    /// The host this ferryd runs on.
    pub this_host: bool,
}

/// An overlay network as the cluster store holds it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterNetworkView {
    pub name: String,
    pub vni: u32,
    pub subnets: Vec<IpNet>,
    pub hosts: Vec<HostView>,
    pub blocks: Vec<ferry_cluster::BlockRecord>,
    pub endpoints: Vec<EndpointRecord>,
}

/// Reads of the cluster state, straight from the store (each call bounded
/// by the store's deadline; call them without the controller's lock).
impl Cluster {
    /// Every live host of the cluster, sorted by id.
    pub fn host_views(&self) -> Result<Vec<HostView>> {
        let mut hosts: Vec<HostView> = self
            .store
            .hosts()?
            .into_iter()
            .map(|(h, age)| HostView {
                this_host: h.id == self.host,
                id: h.id,
                vtep: h.vtep,
                mac: h.mac,
                lease_age_secs: age.as_secs(),
            })
            .collect();
        hosts.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(hosts)
    }

    /// The overlay network `name`: its VNI, the cluster's hosts, the blocks
    /// each host claimed and every endpoint.
    pub fn network_view(&self, name: &str) -> Result<ClusterNetworkView> {
        let rec = self
            .store
            .networks()?
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| CnmError::not_found("overlay network", name))?;
        Ok(ClusterNetworkView {
            hosts: self.host_views()?,
            blocks: self.store.blocks(name)?,
            endpoints: self.store.endpoints(Some(name))?,
            name: rec.name,
            vni: rec.vni,
            subnets: rec.subnets,
        })
    }
}
