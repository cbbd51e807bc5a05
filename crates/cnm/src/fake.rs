//! A recording fake of the driver layer, for the controller's unit tests:
//! it keeps what a kernel would hold (networks, links by namespace, routes)
//! in memory, logs every call, and fails the call it is told to fail.

use ferry_drivers::link::detach::Pending;
use ferry_drivers::link::iface::InterfaceConfig;
use ferry_drivers::network::{
    Drivers, Endpoint, EndpointSpec, External, NetworkDriver, NetworkKind, NetworkSpec, Placement,
    SandboxRoute, Sandboxes,
};
use ferry_drivers::{Error, Result};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the fake "kernel" holds.
#[derive(Debug, Default)]
pub struct World {
    /// Every call, as `op net/ep details`.
    pub log: Vec<String>,
    /// Network IDs created and not deleted.
    pub networks: BTreeSet<String>,
    /// Interfaces by (namespace path or "host", name): the endpoint ID.
    pub links: BTreeMap<(String, String), String>,
    /// Namespaces that exist.
    pub namespaces: BTreeSet<String>,
    /// Routes per namespace, by destination.
    pub routes: BTreeMap<String, BTreeMap<IpNet, SandboxRoute>>,
    /// Addresses configured per (namespace, ifname).
    pub addresses: BTreeMap<(String, String), Vec<IpNet>>,
    /// Calls to fail: the operation's name (`join`, `create_endpoint`, ...).
    pub fail: BTreeSet<&'static str>,
    /// Host routes the fake host has.
    pub host_routes: Vec<IpNet>,
    counter: u32,
}

/// The fake, shared by every driver kind and the sandbox part.
#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<World>>);

impl Fake {
    pub fn world(&self) -> MutexGuard<'_, World> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Makes the next calls of `op` fail until [`Self::heal`].
    pub fn fail(&self, op: &'static str) {
        self.world().fail.insert(op);
    }

    pub fn heal(&self) {
        self.world().fail.clear();
    }

    /// The operations logged so far, names only.
    pub fn ops(&self) -> Vec<String> {
        self.world()
            .log
            .iter()
            .map(|l| l.split(' ').next().unwrap_or("").to_string())
            .collect()
    }

    fn call(&self, op: &'static str, detail: String) -> Result<MutexGuard<'_, World>> {
        let mut w = self.world();
        w.log.push(format!("{op} {detail}"));
        if w.fail.contains(op) {
            return Err(Error::Failed(format!("fake: {op} fails")));
        }
        Ok(w)
    }
}

fn ns_key(netns: Option<&str>) -> String {
    netns.unwrap_or("host").to_string()
}

impl NetworkDriver for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        self.call("validate", net.id.clone()).map(|_| ())
    }

    fn create_network(&self, net: &NetworkSpec) -> Result<()> {
        let mut w = self.call("create_network", net.id.clone())?;
        w.networks.insert(net.id.clone());
        Ok(())
    }

    fn delete_network(&self, net: &NetworkSpec) -> Result<()> {
        let mut w = self.call("delete_network", net.id.clone())?;
        w.networks.remove(&net.id);
        Ok(())
    }

    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        let mut w = self.call("create_endpoint", format!("{} {} {place:?}", net.id, ep.id))?;
        if !net.kind.has_interface() {
            return Ok(Endpoint {
                id: ep.id.clone(),
                ..Endpoint::default()
            });
        }
        w.counter += 1;
        let n = w.counter;
        let (netns, ifname) = match place {
            Placement::Host => (None, format!("fake{n}")),
            Placement::Netns { netns, ifname } => (Some(netns.to_string()), ifname.to_string()),
        };
        let key = (ns_key(netns.as_deref()), ifname.clone());
        if w.links.contains_key(&key) {
            return Err(Error::Exists(format!("{ifname} exists")));
        }
        w.links.insert(key, ep.id.clone());
        let host = matches!(net.kind, NetworkKind::Bridge(_)).then(|| format!("veth{n}"));
        if let Some(h) = &host {
            w.links.insert(("host".into(), h.clone()), ep.id.clone());
        }
        Ok(Endpoint {
            id: ep.id.clone(),
            host_ifname: host,
            ifname,
            netns,
            mac: ep
                .mac
                .or_else(|| format!("02:00:00:00:00:{n:02x}").parse().ok()),
            addresses: ep.addresses.clone(),
            ..Endpoint::default()
        })
    }

    fn delete_endpoint(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<Pending> {
        let mut w = self.call("delete_endpoint", format!("{} {}", net.id, ep.id))?;
        w.links.retain(|_, id| *id != ep.id);
        let key = (ns_key(ep.netns.as_deref()), ep.ifname.clone());
        w.addresses.remove(&key);
        Ok(Pending::none())
    }

    fn join(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        ifname: &str,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        let mut w = self.call("join", format!("{} {} {netns} {ifname}", net.id, ep.id))?;
        let old = (ns_key(ep.netns.as_deref()), ep.ifname.clone());
        let new = (netns.to_string(), ifname.to_string());
        if old != new {
            if w.links.contains_key(&new) {
                return Err(Error::Exists(format!("{ifname} exists in {netns}")));
            }
            w.links.remove(&old);
            w.links.insert(new.clone(), ep.id.clone());
        }
        w.addresses
            .insert(new, cfg.addresses.iter().map(|a| a.net).collect());
        Ok(Endpoint {
            ifname: ifname.to_string(),
            netns: Some(netns.to_string()),
            ..ep.clone()
        })
    }

    fn take_over(
        &self,
        net: &NetworkSpec,
        old: Option<&Endpoint>,
        new: &Endpoint,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        let from = old.map(|o| o.id.clone()).unwrap_or_default();
        let mut w = self.call("take_over", format!("{} {from} {}", net.id, new.id))?;
        if let Some(o) = old {
            w.addresses
                .remove(&(ns_key(o.netns.as_deref()), o.ifname.clone()));
        }
        let key = (ns_key(new.netns.as_deref()), new.ifname.clone());
        w.addresses
            .insert(key, cfg.addresses.iter().map(|a| a.net).collect());
        Ok(new.clone())
    }

    fn check(&self, net: &NetworkSpec, ep: &Endpoint, _cfg: &InterfaceConfig) -> Result<()> {
        self.call("check", format!("{} {}", net.id, ep.id))
            .map(|_| ())
    }

    fn program_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        ext: &External,
    ) -> Result<()> {
        let detail = format!("{} {} {}", net.id, ep.id, ext.mappings.len());
        self.call("program_external", detail).map(|_| ())
    }

    fn revoke_external_connectivity(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
        self.call("revoke_external", format!("{} {}", net.id, ep.id))
            .map(|_| ())
    }
}

impl Sandboxes for Fake {
    fn create(&self, name: &str) -> Result<PathBuf> {
        let mut w = self.call("create_namespace", name.to_string())?;
        let path = format!("/run/netns/{name}");
        w.namespaces.insert(path.clone());
        Ok(PathBuf::from(path))
    }

    fn delete(&self, name: &str) -> Result<()> {
        let mut w = self.call("delete_namespace", name.to_string())?;
        let path = format!("/run/netns/{name}");
        w.namespaces.remove(&path);
        w.links.retain(|(ns, _), _| *ns != path);
        w.routes.remove(&path);
        Ok(())
    }

    fn open(&self, path: &str) -> Result<()> {
        let w = self.call("open_namespace", path.to_string())?;
        if w.namespaces.contains(path) {
            Ok(())
        } else {
            Err(Error::Invalid(format!("{path} is no namespace")))
        }
    }

    fn is_host(&self, path: &str) -> Result<bool> {
        Ok(path == "/proc/self/ns/net")
    }

    fn has_link(&self, path: &str, ifname: &str) -> Result<bool> {
        let w = self.world();
        Ok(w.links
            .contains_key(&(path.to_string(), ifname.to_string())))
    }

    fn set_routes(&self, path: &str, routes: &[SandboxRoute]) -> Result<()> {
        let mut w = self.call("set_routes", format!("{path} {}", routes.len()))?;
        let table = w.routes.entry(path.to_string()).or_default();
        for r in routes {
            table.insert(r.dst, r.clone());
        }
        Ok(())
    }

    fn host_routes(&self) -> Vec<IpNet> {
        self.world().host_routes.clone()
    }
}

impl Drivers for Fake {
    fn driver(&self, _kind: &NetworkKind) -> &dyn NetworkDriver {
        self
    }

    fn sandboxes(&self) -> &dyn Sandboxes {
        self
    }
}
