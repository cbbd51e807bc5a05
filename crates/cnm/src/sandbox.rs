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
    delete_link_by_name, ep_key, net_key, nl_link, put, short, Controller, Endpoint, Network,
};
use crate::driver::{macvlan_mode, Driver, DRIVER_KEY};
use crate::error::{kernel, CnmError, Result};
use crate::store::Change;
use crate::wire;
use ferry_linux::{AddrOptions, LinkSpec, Netlink, Netns, Route};
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

fn sb_key(name: &str) -> String {
    format!("sandbox/{name}")
}

fn random_hex(n: usize) -> Result<String> {
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
        // Docker's sandbox keys are paths, Ferry's sandbox names never are.
        self.endpoints
            .values()
            .filter(|e| e.sandbox.as_deref() == Some(name))
            .collect()
    }

    /// Creates a bridge network by name, with pools from the given subnets or the defaults.
    pub fn create_named_network(&mut self, req: &NetworkCreate) -> Result<Network> {
        valid_name("network", &req.name)?;
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
            let r = self.request_pool(&wire::RequestPool {
                address_space: String::new(),
                pool: subnet.clone(),
                sub_pool: String::new(),
                options: BTreeMap::new(),
                v6: *v6,
            });
            let pool = match r {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            pools.push(pool.pool_id.clone());
            let gw = match self.ipam.request_address(&pool.pool_id, None, true) {
                Ok(g) => g,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let d = wire::IpamData {
                address_space: "local".into(),
                pool: pool.pool,
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
            None => self.create_network(&wire::CreateNetwork {
                network_id: id.clone(),
                options,
                ipv4_data: data.0,
                ipv6_data: data.1,
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
        self.delete_network(&n.id)?;
        for p in &n.pools {
            self.ipam.release_pool(p)?;
        }
        self.store.apply(vec![self.ipam.take_changes()?])
    }

    /// Creates a sandbox: a new named namespace, or an existing one given by path.
    pub fn create_sandbox(&mut self, name: &str, path: Option<&str>) -> Result<Sandbox> {
        valid_name("sandbox", name)?;
        if self.sandboxes.contains_key(name) {
            return Err(CnmError::Invalid(format!(
                "sandbox {name:?} already exists"
            )));
        }
        let (path, created) = match path {
            Some(p) => {
                Netns::open(p).map_err(kernel(format!("open namespace {p}")))?;
                (p.to_string(), false)
            }
            None => {
                if name.len() > 200 {
                    return Err(CnmError::Invalid("sandbox name too long".into()));
                }
                let ns = Netns::create(name).map_err(kernel(format!("create namespace {name}")))?;
                (ns.path().display().to_string(), true)
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
                let _ = Netns::delete(name);
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
        if sb.created {
            match Netns::delete(name) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(kernel(format!("delete namespace {name}"))(e)),
            }
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
        ferry_linux::check_ifname(&ifname)
            .map_err(|e| CnmError::Invalid(format!("{ifname}: {e}")))?;
        let ep = self.attach(&network, &sb, &ifname, req.priority, None)?;
        self.arbitrate(&sb.name)?;
        Ok(ep)
    }

    fn next_ifname(&self, sandbox: &str) -> String {
        let used: Vec<String> = self
            .sandbox_endpoints(sandbox)
            .iter()
            .filter_map(|e| e.ifname.clone())
            .collect();
        (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .unwrap_or_else(|| "eth0".into())
    }

    /// Makes the endpoint: addresses, a veth on the bridge, its other end in
    /// the sandbox with the addresses. With `replacing`, the new end is
    /// brought in under a temporary name, the old endpoint removed, and the
    /// new end renamed to `ifname`. Undone entirely if any step before the
    /// old endpoint's removal fails.
    fn attach(
        &mut self,
        network: &Network,
        sb: &Sandbox,
        ifname: &str,
        priority: i32,
        replacing: Option<&Endpoint>,
    ) -> Result<Endpoint> {
        if network.name.is_none() {
            return Err(CnmError::Invalid(format!(
                "network {} is Docker's: connect containers to it with docker",
                network.id
            )));
        }
        if !network.driver.has_interface() {
            return self.attach_without_interface(network, sb, priority, replacing);
        }
        let mut addrs = Vec::new();
        let mut alloc_err = None;
        for p in &network.pools {
            match self.ipam.request_address(p, None, false) {
                Ok(a) => addrs.push((p.clone(), a)),
                Err(e) => {
                    alloc_err = Some(e);
                    break;
                }
            }
        }
        let release = |c: &mut Controller, addrs: &[(String, IpNet)]| {
            for (p, a) in addrs {
                let _ = c.ipam.release_address(p, a.addr());
            }
        };
        if let Some(e) = alloc_err {
            release(self, &addrs);
            return Err(e);
        }
        let id = random_hex(64)?;
        let id11 = short(&id, 11)?.to_string();
        let host_veth = format!("fv{id11}");
        let temp = format!("fc{id11}");
        let made = (|| -> Result<String> {
            let ns = Netns::open(&sb.path).map_err(kernel(format!("open sandbox {}", sb.name)))?;
            let mut host = Netlink::new().map_err(kernel("open netlink"))?;
            let mut inside = ns
                .netlink()
                .map_err(kernel("open netlink in the sandbox"))?;
            if replacing.is_none() && inside.link_by_name(ifname).is_ok() {
                return Err(CnmError::Invalid(format!(
                    "{ifname} already exists in sandbox {}",
                    sb.name
                )));
            }
            match &network.driver {
                Driver::Macvlan { parent, mode } => {
                    let p = nl_link(&mut host, parent)?;
                    let mut spec =
                        LinkSpec::macvlan(&temp, p.index, macvlan_mode(mode)?).netns(&ns);
                    if let Some(m) = network.mtu {
                        spec = spec.mtu(m);
                    }
                    host.create_link(&spec)
                        .map_err(kernel(format!("create macvlan {temp} on {parent}")))?;
                }
                _ => {
                    let br = nl_link(&mut host, &network.bridge)?;
                    let mut spec = LinkSpec::veth(&temp, &host_veth).netns(&ns);
                    if let Some(m) = network.mtu {
                        spec = spec.mtu(m);
                    }
                    host.create_link(&spec)
                        .map_err(kernel(format!("create veth {host_veth}")))?;
                    let hv = nl_link(&mut host, &host_veth)?;
                    host.set_master(hv.index, br.index)
                        .map_err(kernel(format!("attach {host_veth} to {}", network.bridge)))?;
                    host.set_up(hv.index)
                        .map_err(kernel(format!("set {host_veth} up")))?;
                }
            }
            let inner = nl_link(&mut inside, &temp)?;
            if addrs.iter().any(|(_, a)| a.addr().is_ipv6()) {
                let _ = ferry_linux::sysctl::write_if_different_in(
                    &ns,
                    &format!("net.ipv6.conf.{temp}.disable_ipv6"),
                    "0",
                );
            }
            for (_, a) in &addrs {
                let opts = AddrOptions {
                    nodad: true,
                    replace: false,
                };
                inside
                    .add_address(inner.index, *a, opts)
                    .map_err(kernel(format!("add {a} in sandbox {}", sb.name)))?;
            }
            Ok(inner.mac.map(|m| m.to_string()).unwrap_or_default())
        })();
        let undo = |c: &mut Controller| {
            if let Ok(mut host) = Netlink::new() {
                let _ = delete_link_by_name(&mut host, &host_veth);
            }
            if let Ok(mut inside) = Netns::open(&sb.path).and_then(|ns| ns.netlink()) {
                let _ = delete_link_by_name(&mut inside, &temp);
            }
            release(c, &addrs);
        };
        let mac = match made {
            Ok(m) => m,
            Err(e) => {
                undo(self);
                return Err(e);
            }
        };
        let is_bridge = network.driver == Driver::Bridge;
        let ep = Endpoint {
            id: id.clone(),
            network_id: network.id.clone(),
            host_veth: if is_bridge {
                host_veth.clone()
            } else {
                String::new()
            },
            container_veth: temp.clone(),
            address: addrs.iter().map(|(_, a)| *a).find(|a| a.addr().is_ipv4()),
            address_v6: addrs.iter().map(|(_, a)| *a).find(|a| a.addr().is_ipv6()),
            mac,
            sandbox: Some(sb.name.clone()),
            ifname: Some(ifname.to_string()),
            priority,
            published: serde_json::Value::Null,
        };
        if let Err(e) = self.isolate(&ep, network) {
            undo(self);
            return Err(e);
        }
        // Past this point the sandbox changes: the old endpoint goes away and
        // the new interface takes its name.
        if let Some(old) = replacing {
            self.detach(old)?;
        }
        let finish = (|| -> Result<()> {
            let ns = Netns::open(&sb.path).map_err(kernel(format!("open sandbox {}", sb.name)))?;
            let mut inside = ns
                .netlink()
                .map_err(kernel("open netlink in the sandbox"))?;
            let inner = nl_link(&mut inside, &temp)?;
            inside
                .rename(inner.index, ifname)
                .map_err(kernel(format!("rename {temp} to {ifname}")))?;
            inside
                .set_up(inner.index)
                .map_err(kernel(format!("set {ifname} up")))?;
            Ok(())
        })();
        self.store
            .apply(vec![put(ep_key(&id), &ep)?, self.ipam.take_changes()?])?;
        self.endpoints.insert(id, ep.clone());
        finish?;
        Ok(ep)
    }

    /// Endpoints of the null and host drivers: recorded, nothing built.
    fn attach_without_interface(
        &mut self,
        network: &Network,
        sb: &Sandbox,
        priority: i32,
        replacing: Option<&Endpoint>,
    ) -> Result<Endpoint> {
        if network.driver == Driver::Host {
            let host = Netns::current()
                .and_then(|n| n.inode())
                .map_err(kernel("read the host namespace"))?;
            let mine = Netns::open(&sb.path)
                .and_then(|n| n.inode())
                .map_err(kernel(format!("open sandbox {}", sb.name)))?;
            if host != mine {
                return Err(CnmError::Invalid(format!(
                    "the host driver shares the host's stack: sandbox {} has its own namespace \
                     (create it with --path /proc/self/ns/net, ferryd's own namespace)",
                    sb.name
                )));
            }
        }
        if let Some(old) = replacing {
            self.detach(old)?;
        }
        let ep = Endpoint {
            id: random_hex(64)?,
            network_id: network.id.clone(),
            host_veth: String::new(),
            container_veth: String::new(),
            address: None,
            address_v6: None,
            mac: String::new(),
            sandbox: Some(sb.name.clone()),
            ifname: None,
            priority,
            published: serde_json::Value::Null,
        };
        self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
        self.endpoints.insert(ep.id.clone(), ep.clone());
        Ok(ep)
    }

    /// Removes an endpoint's interface and releases its addresses.
    fn detach(&mut self, ep: &Endpoint) -> Result<()> {
        self.unisolate(ep)?;
        if !ep.host_veth.is_empty() {
            let mut host = Netlink::new().map_err(kernel("open netlink"))?;
            delete_link_by_name(&mut host, &ep.host_veth)?;
        } else if let Some(ifname) = &ep.ifname {
            // A macvlan lives only in the sandbox; a namespace already gone took it along.
            let path = ep
                .sandbox
                .as_ref()
                .and_then(|s| self.sandboxes.get(s))
                .map(|s| s.path.clone());
            if let Some(Ok(mut inside)) = path.map(|p| Netns::open(&p).and_then(|ns| ns.netlink()))
            {
                delete_link_by_name(&mut inside, ifname)?;
            }
        }
        if let Some(n) = self.networks.get(&ep.network_id).cloned() {
            for a in ep.address.iter().chain(ep.address_v6.iter()) {
                if let Some(p) = n.pools.iter().find(|p| {
                    self.ipam
                        .pools
                        .get(*p)
                        .is_some_and(|pool| pool.subnet.contains(&a.addr()))
                }) {
                    self.ipam.release_address(p, a.addr())?;
                }
            }
        }
        self.store.apply(vec![
            Change::Delete(ep_key(&ep.id)),
            self.ipam.take_changes()?,
        ])?;
        self.endpoints.remove(&ep.id);
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
        let ep = self.attach(&to_net, &sb, &ifname, old.priority, Some(&old))?;
        self.arbitrate(sandbox)?;
        Ok(ep)
    }

    /// Installs, for every prefix the sandbox's networks route, the route of
    /// the winning endpoint, and records each contest.
    pub fn arbitrate(&mut self, sandbox: &str) -> Result<()> {
        let Some(mut sb) = self.sandboxes.get(sandbox).cloned() else {
            return Ok(());
        };
        let mut wanted: BTreeMap<IpNet, Vec<Claim>> = BTreeMap::new();
        for ep in self.sandbox_endpoints(sandbox) {
            let Some(n) = self.networks.get(&ep.network_id) else {
                continue;
            };
            let Some(ifname) = ep.ifname.clone() else {
                continue;
            };
            let name = n.name.clone().unwrap_or_else(|| n.id.clone());
            let mut routes = n.routes.clone();
            if !n.internal {
                for d in n.ipv4.iter().chain(&n.ipv6) {
                    let gw = d
                        .gateway
                        .split('/')
                        .next()
                        .and_then(|g| g.parse::<IpAddr>().ok());
                    if let Some(gw) = gw {
                        let dst = if gw.is_ipv4() {
                            IpNet::V4(Default::default())
                        } else {
                            IpNet::V6(Default::default())
                        };
                        routes.push(RouteSpec {
                            dst,
                            gateway: Some(gw),
                        });
                    }
                }
            }
            for r in routes {
                wanted.entry(r.dst).or_default().push(Claim {
                    priority: ep.priority,
                    network: name.clone(),
                    gateway: r.gateway,
                    ifname: ifname.clone(),
                });
            }
        }
        let ns = Netns::open(&sb.path).map_err(kernel(format!("open sandbox {sandbox}")))?;
        let mut inside = ns
            .netlink()
            .map_err(kernel("open netlink in the sandbox"))?;
        let mut conflicts = Vec::new();
        for (dst, mut claims) in wanted {
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
            let link = nl_link(&mut inside, &win.ifname)?;
            let mut route = Route::new(dst).oif(link.index);
            if let Some(g) = win.gateway {
                route = route.gateway(g);
            }
            inside.replace_route(&route).map_err(kernel(format!(
                "route {dst} via {} in sandbox {sandbox}",
                win.ifname
            )))?;
        }
        sb.conflicts = conflicts;
        self.store.apply(vec![put(sb_key(sandbox), &sb)?])?;
        self.sandboxes.insert(sandbox.to_string(), sb);
        Ok(())
    }
}
