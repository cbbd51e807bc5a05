//! Docker's door to overlay networks. `docker network create -d ferry
//! --ipam-driver ferry -o ferry.driver=overlay -o ferry.network=NAME
//! [--subnet CIDR] DOCKERNAME` on a host makes Docker's network (an ID of
//! its own on each host) one more name of the cluster's network NAME here,
//! created in the cluster store when it is not there yet.
//!
//! Docker does not pass a network's name to remote drivers: CreateNetwork
//! carries the ID, the options and the IPAM data only. Hence
//! `ferry.network`; without it, the cluster's network with the subnet
//! Docker's IPAM gave is joined.
//!
//! Docker's IPAM calls come before CreateNetwork and name only a pool: a
//! pool whose subnet is an overlay network's on this host hands out this
//! host's gateway and addresses from this host's blocks, so Docker's
//! containers and Ferry's sandboxes share the subnet without clashing.
//! Docker's endpoints are published on Join (named by Docker's sandbox key)
//! and withdrawn on DeleteEndpoint (`controller`).

use crate::controller::{net_key, put, Controller, Network};
use crate::driver::{Driver, DRIVER_KEY};
use crate::error::{CnmError, Result};
use crate::sandbox::NetworkCreate;
use crate::wire::{self, keys};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The cluster network a Docker network joins (`-o ferry.network=NAME`).
pub const NETWORK_KEY: &str = "ferry.network";

fn option<'a>(options: &'a BTreeMap<String, Value>, key: &str) -> Option<&'a str> {
    options
        .get(keys::GENERIC)?
        .get(key)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Docker asked for an overlay network (`-o ferry.driver=overlay`).
pub(crate) fn wants_overlay(options: &BTreeMap<String, Value>) -> bool {
    option(options, DRIVER_KEY) == Some("overlay")
}

impl Controller {
    /// The overlay network of this host one of whose subnets is `subnet`.
    fn overlay_with_subnet(&self, subnet: IpNet) -> Option<&Network> {
        let text = subnet.to_string();
        self.networks
            .values()
            .filter(|n| matches!(n.driver, Driver::Overlay { .. }))
            .find(|n| n.ipv4.iter().chain(&n.ipv6).any(|d| d.pool == text))
    }

    /// Before Docker's IPAM registers pool `pool`: when it is the subnet of
    /// a cluster network this host has not adopted yet (the agent may not
    /// have seen it), adopts it now, so that the gateway and addresses come
    /// from this host's blocks. Best effort: a store that cannot answer
    /// leaves the pool an ordinary one, and an overlay CreateNetwork fails.
    pub(crate) fn adopt_overlay_of_pool(&mut self, pool: &str) {
        let (Some(cluster), Ok(subnet)) = (self.cluster.clone(), pool.parse::<IpNet>()) else {
            return;
        };
        if self.overlay_with_subnet(subnet).is_some() {
            return;
        }
        if let Some(rec) = cluster
            .store
            .networks()
            .ok()
            .and_then(|all| all.into_iter().find(|n| n.subnets.contains(&subnet)))
        {
            let _ = self.adopt_overlay(&rec);
        }
    }

    /// Docker's RequestAddress on a pool whose subnet is an overlay
    /// network's here: this host's gateway, `wanted` when it is in this
    /// host's blocks, or a free address of them; recorded in the pool.
    /// `None` for any other pool.
    pub(crate) fn overlay_request_address(
        &mut self,
        pool_id: &str,
        wanted: Option<IpAddr>,
        gateway: bool,
    ) -> Result<Option<IpNet>> {
        let Some(subnet) = self.ipam.pools.get(pool_id).map(|p| p.subnet) else {
            return Ok(None);
        };
        let Some(mut n) = self.overlay_with_subnet(subnet).cloned() else {
            return Ok(None);
        };
        let name = n.name.clone().unwrap_or_default();
        let ip = if gateway {
            let gw = n
                .gateways()
                .into_iter()
                .map(|g| g.addr())
                .find(|g| subnet.contains(g))
                .ok_or_else(|| CnmError::Store(format!("network {name:?} has no gateway")))?;
            match wanted {
                Some(w) if w != gw => {
                    return Err(CnmError::Invalid(format!(
                        "gateway {w}: this host's gateway on overlay network {name:?} is {gw} (leave --gateway out)"
                    )))
                }
                _ => gw,
            }
        } else if let Some(w) = wanted {
            if !n.blocks.iter().any(|b| b.contains(&w)) {
                return Err(CnmError::AddressUnavailable {
                    address: w.to_string(),
                    pool: subnet.to_string(),
                    why: "outside this host's blocks of the overlay network",
                });
            }
            w
        } else {
            let mut taken = self.overlay_taken(&n);
            self.overlay_address(&mut n, subnet, &mut taken)?.addr()
        };
        self.ipam
            .request_address(pool_id, Some(ip), gateway)
            .map(Some)
    }

    /// Docker's CreateNetwork with `ferry.driver=overlay`: the cluster's
    /// network (created there when missing) adopted here, with Docker's ID
    /// as one more name of it. Docker's gateway is ignored: the host's is
    /// the one Docker's IPAM handed out when the network was known.
    pub(crate) fn docker_overlay_network(&mut self, req: &wire::CreateNetwork) -> Result<()> {
        if self.network(&req.network_id).is_ok() {
            return Ok(()); // a replay
        }
        let cluster = self.cluster_or_err()?;
        let subnets = req
            .ipv4_data
            .iter()
            .chain(&req.ipv6_data)
            .filter(|d| !d.pool.is_empty())
            .map(|d| {
                d.pool
                    .parse::<IpNet>()
                    .map_err(|e| CnmError::Invalid(format!("pool {:?}: {e}", d.pool)))
            })
            .collect::<Result<Vec<IpNet>>>()?;
        let stored = cluster.store.networks()?;
        let (name, rec) = match option(&req.options, NETWORK_KEY) {
            Some(name) => (
                name.to_string(),
                stored.into_iter().find(|n| n.name == name),
            ),
            None => {
                let rec = stored
                    .into_iter()
                    .find(|n| subnets.iter().any(|s| n.subnets.contains(s)))
                    .ok_or_else(|| {
                        CnmError::Invalid(format!(
                            "Docker does not pass a network's name to its drivers: name the overlay network with -o {NETWORK_KEY}=NAME (no cluster network has subnet {})",
                            list(&subnets)
                        ))
                    })?;
                (rec.name.clone(), Some(rec))
            }
        };
        match rec {
            Some(rec) => {
                if let Some(s) = subnets.iter().find(|s| !rec.subnets.contains(s)) {
                    return Err(CnmError::Invalid(format!(
                        "overlay network {name:?} has subnet {} in the cluster: --subnet {s} disagrees",
                        list(&rec.subnets)
                    )));
                }
                self.adopt_overlay(&rec)?;
            }
            None => {
                // Docker's IPAM registered these subnets here already: for this network.
                self.create_overlay(
                    &NetworkCreate {
                        name: name.clone(),
                        subnets: subnets.iter().map(IpNet::to_string).collect(),
                        ipv6: subnets.iter().any(|s| s.addr().is_ipv6()),
                        driver: Some("overlay".into()),
                        ..NetworkCreate::default()
                    },
                    &subnets,
                )?;
            }
        }
        let mut n = self.network_by_name(&name)?.clone();
        n.docker_ids.push(req.network_id.clone());
        self.store.apply(vec![put(net_key(&n.id), &n)?])?;
        self.networks.insert(n.id.clone(), n);
        Ok(())
    }

    /// Docker's DeleteNetwork for one of its IDs of an overlay network:
    /// forgets the ID (the network stays, the cluster's). False for any
    /// other ID.
    pub(crate) fn forget_docker_id(&mut self, id: &str) -> Result<bool> {
        let Some(mut n) = self
            .networks
            .values()
            .find(|n| n.docker_ids.iter().any(|d| d == id))
            .cloned()
        else {
            return Ok(false);
        };
        if let Some(ep) = self
            .endpoints
            .values()
            .find(|e| e.network_id == n.id && e.netns.is_none())
        {
            return Err(CnmError::Invalid(format!(
                "network {id} still has endpoint {}",
                ep.id
            )));
        }
        n.docker_ids.retain(|d| d != id);
        self.store.apply(vec![put(net_key(&n.id), &n)?])?;
        self.networks.insert(n.id.clone(), n);
        Ok(true)
    }
}

fn list(subnets: &[IpNet]) -> String {
    subnets
        .iter()
        .map(IpNet::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
