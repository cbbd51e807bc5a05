//! The CNI door of Ferry's networks: the `ferry-overlay` plugin asks the
//! local ferryd to attach a container's namespace (a path, not a Ferry
//! sandbox) to a network by name, and to detach, check and collect it.
//!
//! An attachment is an ordinary endpoint of the network, keyed by
//! (network, container ID, ifname): its `sandbox` is `cni:CONTAINERID` (no
//! sandbox name has a ':') and its `ifname` the CNI_IFNAME. It is made by the
//! same path as `ferry connect` (so an overlay endpoint is published to the
//! cluster store), except that the join itself installs the network's
//! routes and a default route via the gateway (a CNI namespace has no
//! arbitration, the runtime owns it), and its traffic leaving the network
//! is masqueraded when the network masquerades (published ports are the
//! chained `portmap`'s).

use crate::controller::{Controller, Endpoint, Network};
use crate::error::{CnmError, Result};
use crate::sandbox::Target;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One attachment, as CNI names it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CniRequest {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    /// CNI_NETNS (ADD and CHECK; DEL may have none left).
    #[serde(default)]
    pub netns: String,
}

/// A valid attachment in a GC request (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CniValid {
    pub container_id: String,
    pub ifname: String,
}

/// `POST /cni/gc`: the network and the attachments to keep.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CniGc {
    pub network: String,
    #[serde(default)]
    pub valid: Vec<CniValid>,
}

/// An address of the attachment and the gateway of its subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAddress {
    pub address: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

/// What ADD answers: enough for the plugin to write a CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAttachment {
    pub host_veth: String,
    pub host_mac: String,
    pub ifname: String,
    pub mac: String,
    pub netns: String,
    pub addresses: Vec<CniAddress>,
    /// The routes the join installed (`dst`, `gateway`).
    pub routes: Vec<crate::sandbox::RouteSpec>,
}

/// The `sandbox` of a CNI attachment's endpoint.
fn label(container_id: &str) -> String {
    format!("cni:{container_id}")
}

impl Controller {
    /// The endpoint of attachment `(network, container_id, ifname)`.
    fn cni_endpoint(&self, n: &Network, container_id: &str, ifname: &str) -> Option<&Endpoint> {
        let label = label(container_id);
        self.endpoints.values().find(|e| {
            e.network_id == n.id
                && e.sandbox.as_deref() == Some(label.as_str())
                && e.ifname.as_deref() == Some(ifname)
        })
    }

    fn cni_answer(&self, n: &Network, ep: &Endpoint) -> CniAttachment {
        let gateway = |a: &IpNet| {
            n.gateways()
                .iter()
                .find(|g| g.contains(&a.addr()))
                .map(|g| g.addr())
        };
        let target = Target {
            path: ep.netns.as_deref().unwrap_or(""),
            name: "",
            routes_in_join: true,
        };
        CniAttachment {
            host_veth: ep.host_veth.clone(),
            host_mac: ep.host_mac.clone(),
            ifname: ep.ifname.clone().unwrap_or_default(),
            mac: ep.mac.clone(),
            netns: ep.netns.clone().unwrap_or_default(),
            addresses: ep
                .addresses()
                .iter()
                .map(|a| CniAddress {
                    address: *a,
                    gateway: gateway(a),
                })
                .collect(),
            routes: target
                .config(ep, n)
                .routes
                .iter()
                .map(|r| crate::sandbox::RouteSpec {
                    dst: r.dst,
                    gateway: r.gw,
                })
                .collect(),
        }
    }

    /// CNI ADD: attaches `netns` to the network as `ifname`. A replay of
    /// the same attachment answers as the first time.
    pub fn cni_add(&mut self, req: &CniRequest) -> Result<CniAttachment> {
        crate::limits::id("container ID", &req.container_id)?;
        let n = self.network_by_name(&req.network)?.clone();
        if !n.driver.has_interface() {
            return Err(CnmError::Invalid(format!(
                "network {:?} gives no interface ({} driver): CNI attaches only networks with one",
                req.network,
                n.driver.name()
            )));
        }
        if req.netns.is_empty() {
            return Err(CnmError::Invalid("no namespace path (CNI_NETNS)".into()));
        }
        ferry_drivers::check_ifname(&req.ifname)
            .map_err(|e| CnmError::Invalid(format!("{}: {e}", req.ifname)))?;
        if let Some(ep) = self.cni_endpoint(&n, &req.container_id, &req.ifname) {
            if ep.netns.as_deref() == Some(req.netns.as_str()) {
                return Ok(self.cni_answer(&n, ep));
            }
            return Err(CnmError::Invalid(format!(
                "container {} already has {} on {:?} in another namespace ({})",
                req.container_id,
                req.ifname,
                req.network,
                ep.netns.clone().unwrap_or_default()
            )));
        }
        self.drivers.sandboxes().open(&req.netns)?;
        let name = label(&req.container_id);
        let target = Target {
            path: &req.netns,
            name: &name,
            routes_in_join: true,
        };
        let ep = self.attach(&n, &target, &req.ifname, 0, &[], None)?;
        // The network as attach left it (an overlay may have claimed a block).
        let n = self.network(&n.id)?;
        // Masquerade, as the bridge plugin's ipMasq; ports are portmap's.
        let spec = n.spec();
        let outside = self.driver(&spec).program_external_connectivity(
            &spec,
            &ep.link(),
            &ferry_drivers::network::External::default(),
        );
        if let Err(e) = outside {
            let _ = self.detach(&ep);
            return Err(e.into());
        }
        Ok(self.cni_answer(&n, &ep))
    }

    /// CNI DEL: detaches (idempotent: an unknown network or attachment is success).
    pub fn cni_del(&mut self, req: &CniRequest) -> Result<()> {
        let Ok(n) = self.network_by_name(&req.network).cloned() else {
            return Ok(());
        };
        let Some(ep) = self
            .cni_endpoint(&n, &req.container_id, &req.ifname)
            .cloned()
        else {
            return Ok(());
        };
        self.detach(&ep)
    }

    /// CNI CHECK: the attachment exists, in `netns`, and its interface is as joined.
    pub fn cni_check(&self, req: &CniRequest) -> Result<CniAttachment> {
        let n = self.network_by_name(&req.network)?;
        let ep = self
            .cni_endpoint(n, &req.container_id, &req.ifname)
            .ok_or_else(|| {
                CnmError::not_found(
                    "attachment",
                    &format!("{}/{} on {}", req.container_id, req.ifname, req.network),
                )
            })?;
        let netns = ep.netns.clone().unwrap_or_default();
        if !req.netns.is_empty() && req.netns != netns {
            return Err(CnmError::Invalid(format!(
                "attachment {}/{} is in {netns}, not {}",
                req.container_id, req.ifname, req.netns
            )));
        }
        let spec = n.spec();
        let target = Target {
            path: &netns,
            name: "",
            routes_in_join: true,
        };
        self.driver(&spec)
            .check(&spec, &ep.link(), &target.config(ep, n))?;
        Ok(self.cni_answer(n, ep))
    }

    /// CNI GC: detaches the network's CNI attachments not in `valid`.
    /// Returns how many went (none for a network this host does not have).
    pub fn cni_gc(&mut self, req: &CniGc) -> Result<usize> {
        crate::limits::count(
            "valid attachments",
            req.valid.len(),
            crate::limits::MAX_GC_VALID,
        )?;
        let Ok(n) = self.network_by_name(&req.network).cloned() else {
            return Ok(0);
        };
        let keep: Vec<(String, String)> = req
            .valid
            .iter()
            .map(|v| (label(&v.container_id), v.ifname.clone()))
            .collect();
        let stale: Vec<Endpoint> = self
            .endpoints
            .values()
            .filter(|e| e.network_id == n.id)
            .filter(|e| e.sandbox.as_deref().is_some_and(|s| s.starts_with("cni:")))
            .filter(|e| {
                !keep.iter().any(|(s, i)| {
                    e.sandbox.as_deref() == Some(s.as_str()) && e.ifname.as_deref() == Some(i)
                })
            })
            .cloned()
            .collect();
        for ep in &stale {
            self.detach(ep)?;
        }
        Ok(stale.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::NetworkCreate;
    use crate::tests::Setup;

    fn req(container_id: &str, netns: &str) -> CniRequest {
        CniRequest {
            network: "ov".into(),
            container_id: container_id.into(),
            ifname: "eth0".into(),
            netns: netns.into(),
        }
    }

    #[test]
    fn cni_attachments_are_overlay_endpoints_keyed_by_container_and_ifname() {
        let s = Setup::new();
        let (mut c, store) = s.open_clustered();
        c.create_named_network(&NetworkCreate {
            name: "ov".into(),
            driver: Some("overlay".into()),
            subnets: vec!["198.18.97.0/24".into()],
            ..NetworkCreate::default()
        })
        .expect("overlay network");
        for ns in ["/run/netns/c1", "/run/netns/c2", "/run/netns/other"] {
            s.fake.world().namespaces.insert(ns.into());
        }

        let a = c.cni_add(&req("c1", "/run/netns/c1")).expect("add");
        assert_eq!(a.ifname, "eth0");
        assert_eq!(a.netns, "/run/netns/c1");
        assert!(!a.mac.is_empty(), "{a:?}");
        let gw: IpAddr = "198.18.97.1".parse().expect("ip");
        assert_eq!(
            a.addresses,
            vec![CniAddress {
                address: "198.18.97.2/24".parse().expect("net"),
                gateway: Some(gw),
            }]
        );
        assert_eq!(
            a.routes,
            vec![crate::sandbox::RouteSpec {
                dst: "0.0.0.0/0".parse().expect("net"),
                gateway: Some(gw),
            }],
            "the default route comes with the join"
        );
        let published = store.endpoints(Some("ov")).expect("endpoints");
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].name.as_deref(), Some("cni:c1"));
        // A replay answers the same; another namespace for the key is refused.
        assert_eq!(c.cni_add(&req("c1", "/run/netns/c1")).expect("replay"), a);
        assert!(matches!(
            c.cni_add(&req("c1", "/run/netns/other")),
            Err(CnmError::Invalid(_))
        ));
        assert_eq!(c.cni_check(&req("c1", "/run/netns/c1")).expect("check"), a);
        assert!(c.cni_check(&req("c9", "/run/netns/c1")).is_err());

        // GC keeps the valid ones and removes the rest.
        c.cni_add(&req("c2", "/run/netns/c2")).expect("add c2");
        let gc = |valid: &[&str]| CniGc {
            network: "ov".into(),
            valid: valid
                .iter()
                .map(|id| CniValid {
                    container_id: id.to_string(),
                    ifname: "eth0".into(),
                })
                .collect(),
        };
        assert_eq!(c.cni_gc(&gc(&["c1"])).expect("gc"), 1);
        assert_eq!(store.endpoints(Some("ov")).expect("endpoints").len(), 1);
        assert_eq!(c.cni_gc(&gc(&["c1"])).expect("gc again"), 0);

        // DEL twice, and DEL of a network this host does not have.
        c.cni_del(&req("c1", "")).expect("del");
        c.cni_del(&req("c1", "")).expect("del again");
        let mut gone = req("c1", "");
        gone.network = "nope".into();
        c.cni_del(&gone).expect("del on an unknown network");
        assert!(store.endpoints(Some("ov")).expect("endpoints").is_empty());
        assert_eq!(c.endpoints().count(), 0);
    }
}
