//! Two sweeps of what kills of ferryd leave behind in Docker's networks,
//! each after a grace period:
//! - addresses of Docker's pools that stay unclaimed
//!   ([`ferry_cnm::Controller::unclaimed_addresses`]): a RequestAddress
//!   answered after its commit reached disk but not Docker, or a
//!   ReleaseAddress lost to a kill, would otherwise hold an address forever;
//! - endpoints Docker never started a container on nor deleted
//!   ([`ferry_cnm::Controller::docker_container_ends`]): their container end
//!   is still in ferryd's namespace, where Docker leaves it from
//!   CreateEndpoint until the container's start moves it (the sandbox hook,
//!   after Join: seconds on a loaded node, more while a plugin call is
//!   retried), and between Leave and DeleteEndpoint. A CreateEndpoint whose
//!   answer was lost, followed by a lost ReleaseAddress, or a lost
//!   DeleteEndpoint, would otherwise hold its link and address forever. The
//!   kernel decides, not the recorded sandbox key, which a kill right after
//!   Join may lose (`Store::defer`).
//!
//! Each sweep has its own grace (`--unclaimed-address-grace`,
//! `--stray-endpoint-grace`); far longer than Docker's plugin retries
//! (30 s) and a container's start, it never takes one in use.

use ferry_cnm::wire;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long each sweep waits before it acts.
#[derive(Debug, Clone, Copy)]
pub struct Graces {
    /// An address no endpoint claims.
    pub address: Duration,
    /// A Docker endpoint whose container end stays in ferryd's namespace.
    pub endpoint: Duration,
}

pub fn spawn(ctl: crate::state::Shared, graces: Graces) -> std::io::Result<()> {
    let every = (graces.address.min(graces.endpoint) / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(15));
    std::thread::Builder::new()
        .name("address-sweep".into())
        .spawn(move || {
            let mut since: BTreeMap<(String, IpAddr), Instant> = BTreeMap::new();
            let mut unjoined: BTreeMap<String, Instant> = BTreeMap::new();
            loop {
                std::thread::sleep(every);
                // The namespace's links are listed without the controller's
                // lock (requests go on meanwhile), and only when Docker has
                // endpoints here at all.
                let Ok(any) = ctl.lock().map(|c| !c.docker_container_ends().is_empty()) else {
                    return;
                };
                let here = if any { link_names() } else { None };
                let Ok(mut c) = ctl.lock() else { return };
                let now = Instant::now();
                sweep_endpoints(&mut c, here.as_ref(), &mut unjoined, now, graces.endpoint);
                let unclaimed = c.unclaimed_addresses();
                since.retain(|k, _| unclaimed.contains(k));
                for key in unclaimed {
                    let first = *since.entry(key.clone()).or_insert(now);
                    if now.duration_since(first) < graces.address {
                        continue;
                    }
                    let (pool_id, ip) = key;
                    let req = wire::ReleaseAddress {
                        pool_id: pool_id.clone(),
                        address: ip.to_string(),
                    };
                    match c.release_address(&req) {
                        Ok(()) => {
                            since.remove(&(pool_id.clone(), ip));
                            tracing::warn!(pool = pool_id, %ip, "released an address no endpoint claimed")
                        }
                        Err(e) => tracing::warn!(pool = pool_id, %ip, error = %e, "cannot release an unclaimed address"),
                    }
                }
            }
        })
        .map(|_| ())
}

/// The names of the links in ferryd's namespace: one dump, not a lookup
/// per endpoint. `None` when they cannot be listed (logged).
fn link_names() -> Option<BTreeSet<String>> {
    match ferry_linux::Netlink::new().and_then(|mut nl| nl.links()) {
        Ok(links) => Some(links.into_iter().map(|l| l.name).collect()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list links for the endpoint sweep");
            None
        }
    }
}

/// Deletes the Docker endpoints whose container end has stayed in ferryd's
/// namespace (`here`, its links' names) for `grace` (module doc); `since`
/// remembers when each was first seen there.
fn sweep_endpoints(
    c: &mut ferry_cnm::Controller,
    here: Option<&BTreeSet<String>>,
    since: &mut BTreeMap<String, Instant>,
    now: Instant,
    grace: Duration,
) {
    let ends = c.docker_container_ends();
    let Some(here) = here.filter(|_| !ends.is_empty()) else {
        since.clear();
        return;
    };
    let stray: Vec<(String, String)> = ends
        .into_iter()
        .filter(|(_, _, end)| here.contains(end))
        .map(|(net, ep, _)| (net, ep))
        .collect();
    since.retain(|ep, _| stray.iter().any(|(_, e)| e == ep));
    for (network_id, endpoint_id) in stray {
        let first = *since.entry(endpoint_id.clone()).or_insert(now);
        if now.duration_since(first) < grace {
            continue;
        }
        let req = wire::EndpointRef {
            network_id: network_id.clone(),
            endpoint_id: endpoint_id.clone(),
        };
        match c.delete_endpoint(&req) {
            Ok(()) => {
                since.remove(&endpoint_id);
                tracing::warn!(
                    network = network_id,
                    endpoint = endpoint_id,
                    "deleted a Docker endpoint whose container end stayed outside any container"
                )
            }
            Err(e) => tracing::warn!(
                network = network_id,
                endpoint = endpoint_id,
                error = %e,
                "cannot delete a Docker endpoint whose container end stayed outside any container"
            ),
        }
    }
}
