//! Ferry's own CNM front door: networks made by name, sandboxes (a network
//! namespace Ferry creates or one given by path), connect, disconnect and
//! swap on a live sandbox, and arbitration of routes two networks contest.
//!
//! Arbitration rule (as libnetwork brokers the default gateway): for each
//! destination prefix more than one endpoint of a sandbox wants, the endpoint
//! with the highest `priority` wins; on a tie, the network whose name sorts
//! first. Losers' routes are not installed; the decision is kept on the
//! sandbox and shown by `inspect`. Routes are replaced in place, so the
//! sandbox always has one working route per prefix.

use crate::controller::{
    ep_key, interface_config, net_key, put, sb_key, short, Controller, Endpoint, Network,
    NetworkDef,
};
use crate::driver::{Driver, DRIVER_KEY};
use crate::error::{CnmError, Result};
use crate::limits;
use crate::store::Change;
use crate::wire;
use ferry_drivers::link::iface::{InterfaceConfig, RouteConfig};
use ferry_drivers::network::{EndpointSpec, NetworkKind, Placement, SandboxRoute};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A route a network gives its sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub dst: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

/// A sandbox: a network namespace and the endpoints joined to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub name: String,
    pub path: String,
    /// Ferry made the namespace, so removing the sandbox deletes it.
    pub created: bool,
    /// Arbitration outcomes, e.g. `0.0.0.0/0: a (priority 0) over b (priority 0, name)`.
    #[serde(default)]
    pub conflicts: Vec<String>,
}

/// `ferry network create`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkCreate {
    pub name: String,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub ipv6: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// bridge (default), macvlan, null or host.
    #[serde(default)]
    pub driver: Option<String>,
    /// Driver options, e.g. `parent` and `macvlan_mode` for macvlan.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `ferry connect`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Connect {
    pub network: String,
    pub sandbox: String,
    #[serde(default)]
    pub ifname: Option<String>,
    #[serde(default)]
    pub priority: i32,
    /// More names for the endpoint in the network's DNS (each a DNS label).
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Checks that a name is one DNS label (RFC 1123): 1 to 63 letters, digits
/// and hyphens, neither first nor last a hyphen.
pub fn check_dns_label(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CnmError::Invalid(format!(
            "alias {name:?} is not a DNS label (1 to 63 letters, digits and inner hyphens)"
        )))
    }
}

/// The namespace an endpoint is attached to: a Ferry sandbox, or a CNI
/// attachment's namespace path (`name` is then `cni:CONTAINERID`, which no
/// sandbox name can be). A CNI attachment has no arbitration: its join
/// installs the network's routes and a default route via the gateway.
pub(crate) struct Target<'a> {
    pub path: &'a str,
    pub name: &'a str,
    pub routes_in_join: bool,
}

impl<'a> Target<'a> {
    fn of(sb: &'a Sandbox) -> Self {
        Target {
            path: &sb.path,
            name: &sb.name,
            routes_in_join: false,
        }
    }

    /// What the join configures on the interface.
    pub(crate) fn config(&self, ep: &Endpoint, n: &Network) -> InterfaceConfig {
        let mut cfg = interface_config(ep);
        if self.routes_in_join {
            cfg.routes = routes_of(n)
                .into_iter()
                .map(|r| RouteConfig::new(r.dst, r.gateway))
                .collect();
        }
        cfg
    }
}

/// The routes a network gives an endpoint: its own and, unless it is
/// internal, a default route per gateway.
fn routes_of(n: &Network) -> Vec<RouteSpec> {
    let mut routes = n.routes.clone();
    if !n.internal {
        for gw in n.gateways() {
            let dst = if gw.addr().is_ipv4() {
                IpNet::V4(Default::default())
            } else {
                IpNet::V6(Default::default())
            };
            routes.push(RouteSpec {
                dst,
                gateway: Some(gw.addr()),
            });
        }
    }
    routes
}

/// One endpoint's claim on a prefix, for arbitration.
#[derive(Clone)]
struct Claim {
    priority: i32,
    network: String,
    gateway: Option<IpAddr>,
    ifname: String,
}

impl Claim {
    fn via(&self) -> String {
        self.gateway
            .map(|g| g.to_string())
            .unwrap_or_else(|| self.ifname.clone())
    }
}

pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n.div_ceil(2)];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(|e| CnmError::Invalid(format!("no randomness: {e}")))?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex[..n].to_string())
}

fn valid_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CnmError::Invalid(format!(
            "{kind} name {name:?}: use letters, digits, '_', '.', '-' (start with a letter or digit)"
        )))
    }
}

impl Controller {
    pub fn network_by_name(&self, name: &str) -> Result<&Network> {
        self.networks
            .values()
            .find(|n| n.name.as_deref() == Some(name) || n.id == name)
            .ok_or_else(|| CnmError::not_found("network", name))
    }

    pub fn sandboxes(&self) -> impl Iterator<Item = &Sandbox> {
        self.sandboxes.values()
    }

    pub fn sandbox(&self, name: &str) -> Result<&Sandbox> {
        self.sandboxes
            .get(name)
            .ok_or_else(|| CnmError::not_found("sandbox", name))
    }

    /// Endpoints joined to a Ferry sandbox, in a stable order.
    pub fn sandbox_endpoints(&self, name: &str) -> Vec<&Endpoint> {
        crate::snapshot::joined(&self.endpoints, name)
    }

    /// Creates a bridge network by name, with pools from the given subnets or the defaults.
    pub fn create_named_network(&mut self, req: &NetworkCreate) -> Result<Network> {
        valid_name("network", &req.name)?;
        limits::string_options("network options", &req.options)?;
        limits::count("routes", req.routes.len(), limits::MAX_ROUTES)?;
        limits::count("subnets", req.subnets.len(), limits::MAX_SUBNETS)?;
        if self.network_by_name(&req.name).is_ok() {
            return Err(CnmError::Invalid(format!(
                "network {:?} already exists",
                req.name
            )));
        }
        let mut generic = serde_json::Map::new();
        for (k, v) in &req.options {
            generic.insert(k.clone(), v.clone().into());
        }
        if req.driver.as_deref() == Some("overlay") {
            return self.create_overlay_network(req);
        }
        if let Some(d) = &req.driver {
            generic.insert(DRIVER_KEY.into(), d.clone().into());
        }
        let driver = Driver::from_options(Some(&serde_json::Value::Object(generic.clone())))?;
        let mut wanted: Vec<(String, bool)> = req
            .subnets
            .iter()
            .map(|s| (s.clone(), s.contains(':')))
            .collect();
        if driver.has_interface() {
            if !wanted.iter().any(|(_, v6)| !v6) {
                wanted.push((String::new(), false));
            }
            if req.ipv6 && !wanted.iter().any(|(_, v6)| *v6) {
                wanted.push((String::new(), true));
            }
        } else if !wanted.is_empty() {
            return Err(CnmError::Invalid(format!(
                "the {} driver gives no addresses: drop --subnet",
                driver.name()
            )));
        }
        // Pools and gateways first; undone if anything later fails.
        let mut pools = Vec::new();
        let mut data = (Vec::new(), Vec::new());
        let mut failure = None;
        for (subnet, v6) in &wanted {
            let pool = match self.new_pool("", subnet, "", *v6) {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            pools.push(pool.id.clone());
            let gw = match self.ipam.request_address(&pool.id, None, true) {
                Ok(g) => g,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let d = wire::IpamData {
                address_space: "local".into(),
                pool: pool.subnet.to_string(),
                gateway: gw.to_string(),
                aux_addresses: BTreeMap::new(),
            };
            if *v6 {
                data.1.push(d);
            } else {
                data.0.push(d);
            }
        }
        let id = random_hex(64)?;
        let mut options = BTreeMap::new();
        if let Some(b) = &req.bridge {
            generic.insert(wire::keys::BRIDGE_NAME.into(), b.clone().into());
        }
        if let Some(m) = req.mtu {
            generic.insert(wire::keys::MTU.into(), m.to_string().into());
        }
        options.insert(wire::keys::GENERIC.to_string(), generic.into());
        options.insert(wire::keys::INTERNAL.to_string(), req.internal.into());
        let created = match failure {
            Some(e) => Err(e),
            None => self.add_network(NetworkDef {
                id: id.clone(),
                options,
                ipv4: data.0,
                ipv6: data.1,
            }),
        };
        if let Err(e) = created {
            for p in &pools {
                let _ = self.ipam.release_pool(p);
            }
            self.store.apply(vec![self.ipam.take_changes()?])?;
            return Err(e);
        }
        let mut n = self
            .networks
            .get(&id)
            .cloned()
            .ok_or_else(|| CnmError::not_found("network", &id))?;
        n.name = Some(req.name.clone());
        n.pools = pools;
        n.routes = req.routes.clone();
        self.store
            .apply(vec![put(net_key(&id), &n)?, self.ipam.take_changes()?])?;
        self.networks.insert(id, n.clone());
        Ok(n)
    }

    /// Removes a named network; refused while sandboxes are connected.
    pub fn remove_named_network(&mut self, name: &str) -> Result<()> {
        let n = self.network_by_name(name)?.clone();
        if let Some(ep) = self.endpoints.values().find(|e| e.network_id == n.id) {
            return Err(CnmError::Invalid(format!(
                "network {name:?} is in use by sandbox {:?}: disconnect it first",
                ep.sandbox.clone().unwrap_or_default()
            )));
        }
        if let Some(s) = self.services().find(|s| s.network_id == n.id) {
            return Err(CnmError::Invalid(format!(
                "network {name:?} has service {:?}: remove it first",
                s.name
            )));
        }
        if matches!(n.driver, Driver::Overlay { .. }) {
            return self.remove_overlay_network(&n);
        }
        self.delete_network(&n.id)?;
        for p in &n.pools {
            self.ipam.release_pool(p)?;
        }
        self.store.apply(vec![self.ipam.take_changes()?])
    }

    /// Creates a sandbox: a new named namespace (with `lo` up), or an
    /// existing one given by path.
    pub fn create_sandbox(&mut self, name: &str, path: Option<&str>) -> Result<Sandbox> {
        valid_name("sandbox", name)?;
        if self.sandboxes.contains_key(name) {
            return Err(CnmError::Invalid(format!(
                "sandbox {name:?} already exists"
            )));
        }
        let (path, created) = match path {
            Some(p) => {
                self.drivers.sandboxes().open(p)?;
                (p.to_string(), false)
            }
            None => {
                let p = self.drivers.sandboxes().create(name)?;
                (p.display().to_string(), true)
            }
        };
        let sb = Sandbox {
            name: name.to_string(),
            path,
            created,
            conflicts: Vec::new(),
        };
        if let Err(e) = self.store.apply(vec![put(sb_key(name), &sb)?]) {
            if created {
                let _ = self.drivers.sandboxes().delete(name);
            }
            return Err(e);
        }
        self.sandboxes.insert(name.to_string(), sb.clone());
        Ok(sb)
    }

    /// Disconnects everything and removes the sandbox (and its namespace, if Ferry made it).
    pub fn remove_sandbox(&mut self, name: &str) -> Result<()> {
        let sb = self.sandbox(name)?.clone();
        let networks: Vec<String> = self
            .sandbox_endpoints(name)
            .iter()
            .map(|e| e.network_id.clone())
            .collect();
        for n in networks {
            self.disconnect(&n, name)?;
        }
        // A service it holds is taken out (it keeps its addresses and ports).
        let services: Vec<String> = self
            .sandbox_services(name)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        for s in services {
            self.detach_service(&s)?;
        }
        if sb.created {
            self.drivers.sandboxes().delete(name)?;
        }
        self.store.apply(vec![Change::Delete(sb_key(name))])?;
        self.sandboxes.remove(name);
        Ok(())
    }

    /// Connects a sandbox to a network under `ifname` (default: the next free `ethN`).
    pub fn connect(&mut self, req: &Connect) -> Result<Endpoint> {
        let network = self.network_by_name(&req.network)?.clone();
        let sb = self.sandbox(&req.sandbox)?.clone();
        if self
            .sandbox_endpoints(&sb.name)
            .iter()
            .any(|e| e.network_id == network.id)
        {
            return Err(CnmError::Invalid(format!(
                "sandbox {:?} is already connected to {:?}",
                sb.name, req.network
            )));
        }
        let ifname = match &req.ifname {
            Some(i) => i.clone(),
            None => self.next_ifname(&sb.name),
        };
        ferry_drivers::check_ifname(&ifname)
            .map_err(|e| CnmError::Invalid(format!("{ifname}: {e}")))?;
        for a in &req.aliases {
            check_dns_label(a)?;
        }
        let target = Target::of(&sb);
        let ep = self.attach(&network, &target, &ifname, req.priority, &req.aliases, None)?;
        self.arbitrate(&sb.name)?;
        Ok(ep)
    }

    /// The first `ethN` no endpoint or service of the sandbox uses.
    pub(crate) fn next_ifname(&self, sandbox: &str) -> String {
        let used: Vec<String> = self
            .sandbox_endpoints(sandbox)
            .iter()
            .filter_map(|e| e.ifname.clone())
            .chain(
                self.sandbox_services(sandbox)
                    .iter()
                    .filter_map(|s| s.ifname.clone()),
            )
            .collect();
        (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .unwrap_or_else(|| "eth0".into())
    }

    /// Makes the endpoint: addresses from the network's pools, the driver's
    /// interface created in the target namespace under a temporary name, then
    /// joined under `ifname`. With `replacing`, the old endpoint is removed
    /// between the two, so the new interface takes its name. Undone entirely
    /// if any step before the old endpoint's removal fails.
    pub(crate) fn attach(
        &mut self,
        network: &Network,
        sb: &Target,
        ifname: &str,
        priority: i32,
        aliases: &[String],
        replacing: Option<&Endpoint>,
    ) -> Result<Endpoint> {
        if network.name.is_none() {
            return Err(CnmError::Invalid(format!(
                "network {} is Docker's: connect containers to it with docker",
                network.id
            )));
        }
        let spec = network.spec();
        if spec.kind == NetworkKind::Host && !self.drivers.sandboxes().is_host(sb.path)? {
            return Err(CnmError::Invalid(format!(
                "the host driver shares the host's stack: sandbox {} has its own namespace \
                 (create it with --path /proc/self/ns/net, ferryd's own namespace)",
                sb.name
            )));
        }
        let has_interface = spec.kind.has_interface();
        if has_interface
            && replacing.is_none()
            && self.drivers.sandboxes().has_link(sb.path, ifname)?
        {
            return Err(CnmError::Invalid(format!(
                "{ifname} already exists in sandbox {}",
                sb.name
            )));
        }
        let mut addrs: Vec<(String, IpNet)> = Vec::new();
        let release = |c: &mut Controller, addrs: &[(String, IpNet)]| {
            for (p, a) in addrs {
                let _ = c.ipam.release_address(p, a.addr());
            }
        };
        let is_overlay = matches!(network.driver, Driver::Overlay { .. });
        let network = if is_overlay {
            let (updated, overlay_addrs) = self.overlay_addresses(network)?;
            addrs.extend(overlay_addrs.into_iter().map(|a| (String::new(), a)));
            updated
        } else {
            network.clone()
        };
        let network = &network;
        if has_interface && !is_overlay {
            for p in &network.pools {
                match self.ipam.request_address(p, None, false) {
                    Ok(a) => addrs.push((p.clone(), a)),
                    Err(e) => {
                        release(self, &addrs);
                        return Err(e);
                    }
                }
            }
        }
        let id = random_hex(64)?;
        let temp = format!("fc{}", short(&id, 11)?);
        let ep_spec = EndpointSpec {
            id: id.clone(),
            mac: None,
            addresses: addrs.iter().map(|(_, a)| *a).collect(),
        };
        let place = Placement::Netns {
            netns: sb.path,
            ifname: &temp,
        };
        let link = match self.driver(&spec).create_endpoint(&spec, &ep_spec, place) {
            Ok(l) => l,
            Err(e) => {
                release(self, &addrs);
                return Err(e.into());
            }
        };
        let mut ep = Endpoint {
            id: id.clone(),
            network_id: network.id.clone(),
            host_veth: link.host_ifname.clone().unwrap_or_default(),
            host_mac: link.host_mac.map(|m| m.to_string()).unwrap_or_default(),
            container_veth: link.ifname.clone(),
            address: addrs.iter().map(|(_, a)| *a).find(|a| a.addr().is_ipv4()),
            address_v6: addrs.iter().map(|(_, a)| *a).find(|a| a.addr().is_ipv6()),
            mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
            sandbox: Some(sb.name.to_string()),
            ifname: has_interface.then(|| ifname.to_string()),
            netns: has_interface.then(|| sb.path.to_string()),
            priority,
            published: serde_json::Value::Null,
            aliases: aliases.to_vec(),
        };
        // Past this point the sandbox changes: the old endpoint goes away and
        // the new interface takes its name.
        if let Some(old) = replacing {
            if let Err(e) = self.detach(old) {
                if let Ok(p) = self.driver(&spec).delete_endpoint(&spec, &link) {
                    p.finish();
                }
                release(self, &addrs);
                return Err(e);
            }
        }
        let joined = if has_interface {
            self.driver(&spec)
                .join(&spec, &link, sb.path, ifname, &sb.config(&ep, network))
                .map(|l| {
                    ep.mac = l.mac.map(|m| m.to_string()).unwrap_or(ep.mac.clone());
                })
        } else {
            Ok(())
        };
        if let Err(e) = joined {
            if let Ok(p) = self.driver(&spec).delete_endpoint(&spec, &link) {
                p.finish();
            }
            release(self, &addrs);
            return Err(e.into());
        }
        let committed = self
            .store
            .apply(vec![put(ep_key(&id), &ep)?, self.ipam.take_changes()?]);
        if let Err(e) = committed {
            if let Ok(p) = self.driver(&spec).delete_endpoint(&spec, &ep.link()) {
                p.finish();
            }
            release(self, &addrs);
            return Err(e);
        }
        self.endpoints.insert(id, ep.clone());
        // The other hosts learn of the endpoint from the cluster store.
        if is_overlay {
            if let Err(e) = self.publish_endpoint(network, &ep, sb.name) {
                // Nothing of it stays published; a store that is down is
                // not asked again (the call fails within one deadline).
                let _ = self.release_endpoint(&ep);
                return Err(e);
            }
        }
        Ok(ep)
    }

    /// Withdraws an endpoint from the cluster (overlay networks), removes
    /// its interface and releases its addresses.
    pub(crate) fn detach(&mut self, ep: &Endpoint) -> Result<()> {
        if let Some(n) = self.networks.get(&ep.network_id).cloned() {
            self.withdraw_endpoint(&n, ep);
        }
        self.release_endpoint(ep)
    }

    /// Removes an endpoint's interface and releases its addresses.
    fn release_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        self.remove_endpoint(ep)?;
        if let Some(n) = self.networks.get(&ep.network_id).cloned() {
            self.release_addresses(&n, &ep.addresses())?;
        }
        self.store.apply(vec![self.ipam.take_changes()?])
    }

    /// Releases addresses into the network's pools (not yet committed).
    pub(crate) fn release_addresses(&mut self, n: &Network, addrs: &[IpNet]) -> Result<()> {
        for a in addrs {
            if let Some(p) = n.pools.iter().find(|p| {
                self.ipam
                    .pools
                    .get(p)
                    .is_some_and(|pool| pool.subnet.contains(&a.addr()))
            }) {
                self.ipam.release_address(p, a.addr())?;
            }
        }
        Ok(())
    }

    pub fn disconnect(&mut self, network: &str, sandbox: &str) -> Result<()> {
        let n = self.network_by_name(network)?.clone();
        let ep = self
            .sandbox_endpoints(sandbox)
            .into_iter()
            .find(|e| e.network_id == n.id)
            .cloned()
            .ok_or_else(|| CnmError::not_found("endpoint", &format!("{network} in {sandbox}")))?;
        self.detach(&ep)?;
        self.arbitrate(sandbox)
    }

    /// Moves a live sandbox from one network to another, keeping its
    /// interface name; if joining `to` fails, the sandbox stays on `from`.
    pub fn swap(&mut self, sandbox: &str, from: &str, to: &str) -> Result<Endpoint> {
        let sb = self.sandbox(sandbox)?.clone();
        let from_net = self.network_by_name(from)?.clone();
        let to_net = self.network_by_name(to)?.clone();
        let old = self
            .sandbox_endpoints(sandbox)
            .into_iter()
            .find(|e| e.network_id == from_net.id)
            .cloned()
            .ok_or_else(|| CnmError::not_found("endpoint", &format!("{from} in {sandbox}")))?;
        if self
            .sandbox_endpoints(sandbox)
            .iter()
            .any(|e| e.network_id == to_net.id)
        {
            return Err(CnmError::Invalid(format!(
                "sandbox {sandbox:?} is already connected to {to:?}"
            )));
        }
        let ifname = old.ifname.clone().unwrap_or_else(|| "eth0".into());
        let ep = self.attach(
            &to_net,
            &Target::of(&sb),
            &ifname,
            old.priority,
            &old.aliases,
            Some(&old),
        )?;
        self.arbitrate(sandbox)?;
        Ok(ep)
    }

    /// The routes each endpoint of the sandbox claims: its network's routes
    /// and, unless the network is internal, a default route per gateway.
    fn claims(&self, sandbox: &str) -> BTreeMap<IpNet, Vec<Claim>> {
        let mut wanted: BTreeMap<IpNet, Vec<Claim>> = BTreeMap::new();
        for ep in self.sandbox_endpoints(sandbox) {
            let Some(n) = self.networks.get(&ep.network_id) else {
                continue;
            };
            let Some(ifname) = ep.ifname.clone() else {
                continue;
            };
            let name = n.name.clone().unwrap_or_else(|| n.id.clone());
            for r in routes_of(n) {
                wanted.entry(r.dst).or_default().push(Claim {
                    priority: ep.priority,
                    network: name.clone(),
                    gateway: r.gateway,
                    ifname: ifname.clone(),
                });
            }
        }
        wanted
    }

    /// Installs, for every prefix the sandbox's networks route, the route of
    /// the winning endpoint, and records each contest.
    pub fn arbitrate(&mut self, sandbox: &str) -> Result<()> {
        let Some(mut sb) = self.sandboxes.get(sandbox).cloned() else {
            return Ok(());
        };
        let mut conflicts = Vec::new();
        let mut routes = Vec::new();
        for (dst, mut claims) in self.claims(sandbox) {
            claims.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then_with(|| a.network.cmp(&b.network))
            });
            let win = claims[0].clone();
            for lose in &claims[1..] {
                if lose.gateway != win.gateway || lose.ifname != win.ifname {
                    let why = if lose.priority == win.priority {
                        "same priority, network name"
                    } else {
                        "priority"
                    };
                    conflicts.push(format!(
                        "{dst}: {} (priority {}, via {}) over {} (priority {}, via {}) by {why}",
                        win.network,
                        win.priority,
                        win.via(),
                        lose.network,
                        lose.priority,
                        lose.via(),
                    ));
                }
            }
            routes.push(SandboxRoute {
                dst,
                gateway: win.gateway,
                ifname: win.ifname,
            });
        }
        self.drivers.sandboxes().set_routes(&sb.path, &routes)?;
        sb.conflicts = conflicts;
        self.store.apply(vec![put(sb_key(sandbox), &sb)?])?;
        self.sandboxes.insert(sandbox.to_string(), sb);
        Ok(())
    }
}
