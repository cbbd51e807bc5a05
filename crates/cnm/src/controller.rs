//! The controller: the one owner of mutable CNM state, as model + registry +
//! state. Each operation checks its request, asks a driver of the shared
//! driver layer (`ferry_drivers`) to change the kernel, then commits the new
//! state before it answers; every handler is idempotent because Docker
//! retries and replays. The controller itself holds no netlink, nftables or
//! namespace code: it reaches the kernel only through [`Drivers`], so its
//! tests run against a recording fake without root.

use crate::driver::Driver;
use crate::error::{CnmError, Result};
use crate::ipam::{DefaultPool, Ipam};
use crate::limits;
use crate::pmap::PMap;
use crate::store::{Change, Store};
use crate::wire::{self, keys};
use ferry_drivers::link::iface::{Address, InterfaceConfig};
use ferry_drivers::network::{
    BridgeConfig, Drivers, Endpoint as Link, EndpointSpec, External, MacvlanConfig, NetworkDriver,
    NetworkKind, NetworkSpec, OverlayConfig, Placement,
};
use ferry_drivers::MacAddr;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    /// Set for networks made through Ferry's API (Docker keeps its own names).
    #[serde(default)]
    pub name: Option<String>,
    /// Pools Ferry's API allocated for the network (Docker's IPAM calls hold their own).
    #[serde(default)]
    pub pools: Vec<String>,
    /// Routes the network gives every sandbox on it, besides the default route.
    #[serde(default)]
    pub routes: Vec<crate::sandbox::RouteSpec>,
    #[serde(default)]
    pub driver: Driver,
    /// The bridge (bridge driver only; empty otherwise).
    pub bridge: String,
    pub mtu: Option<u32>,
    pub internal: bool,
    pub enable_icc: bool,
    pub enable_ip_masquerade: bool,
    /// Default host address for published ports (`host_binding_ipv4`).
    #[serde(default)]
    pub host_binding_ipv4: Option<std::net::IpAddr>,
    pub ipv4: Vec<wire::IpamData>,
    pub ipv6: Vec<wire::IpamData>,
    /// The blocks of an overlay network's subnets this host claimed.
    #[serde(default)]
    pub blocks: Vec<IpNet>,
    /// Docker's IDs for this overlay network on this host (`overlay_docker`).
    #[serde(default)]
    pub docker_ids: Vec<String>,
}

impl Network {
    /// The gateway addresses (with their prefix) of the network's subnets.
    pub fn gateways(&self) -> Vec<IpNet> {
        self.ipv4
            .iter()
            .chain(&self.ipv6)
            .filter_map(|d| d.gateway.parse::<IpNet>().ok())
            .collect()
    }

    /// The network as the driver layer sees it.
    pub fn spec(&self) -> NetworkSpec {
        let kind = match &self.driver {
            Driver::Bridge => NetworkKind::Bridge(BridgeConfig {
                bridge: self.bridge.clone(),
                isolate: true,
                icc: self.enable_icc,
                ..BridgeConfig::default()
            }),
            Driver::Macvlan { parent, mode } => NetworkKind::Macvlan(MacvlanConfig {
                master: parent.clone(),
                mode: crate::driver::macvlan_mode(mode).unwrap_or_default(),
                link_in_container: false,
            }),
            Driver::Null => NetworkKind::Null,
            Driver::Host => NetworkKind::Host,
            Driver::Overlay { vni, local } => NetworkKind::Overlay(OverlayConfig {
                vni: *vni,
                bridge: self.bridge.clone(),
                vxlan: format!("fx-{vni}"),
                local: *local,
                port: ferry_drivers::network::VXLAN_PORT,
            }),
        };
        let routed = matches!(self.driver, Driver::Bridge | Driver::Overlay { .. });
        NetworkSpec {
            id: self.id.clone(),
            kind,
            mtu: self.mtu,
            gateways: if routed { self.gateways() } else { Vec::new() },
            forwarding: routed && !self.internal,
            masquerade: routed && self.enable_ip_masquerade && !self.internal,
        }
    }
}

/// An endpoint: an interface on a network, joined to at most one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub network_id: String,
    /// The host end (a bridge port), empty when there is none.
    pub host_veth: String,
    /// The host end's MAC, when Ferry made the endpoint in a namespace.
    #[serde(default)]
    pub host_mac: String,
    /// The container end's name before it joined (Docker moves it by this name).
    pub container_veth: String,
    pub address: Option<IpNet>,
    pub address_v6: Option<IpNet>,
    pub mac: String,
    /// Docker's sandbox key, or the name of a Ferry sandbox.
    pub sandbox: Option<String>,
    /// The interface name inside a Ferry sandbox (Docker names its own).
    #[serde(default)]
    pub ifname: Option<String>,
    /// The namespace the interface is in, for a Ferry sandbox.
    #[serde(default)]
    pub netns: Option<String>,
    /// Route arbitration priority: the highest wins a contested prefix.
    #[serde(default)]
    pub priority: i32,
    /// The port bindings Docker asked to publish (its own JSON, echoed in oper info).
    #[serde(default)]
    pub published: Value,
    /// Names besides the sandbox's under which the network's DNS server
    /// answers for this endpoint (`ferry connect --alias`).
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl Endpoint {
    pub(crate) fn addresses(&self) -> Vec<IpNet> {
        self.address
            .iter()
            .chain(&self.address_v6)
            .copied()
            .collect()
    }

    /// The endpoint as the driver layer sees it.
    pub(crate) fn link(&self) -> Link {
        let joined = self.netns.is_some();
        Link {
            id: self.id.clone(),
            host_ifname: (!self.host_veth.is_empty()).then(|| self.host_veth.clone()),
            host_mac: None,
            ifname: if joined {
                self.ifname.clone().unwrap_or_default()
            } else {
                self.container_veth.clone()
            },
            netns: self.netns.clone(),
            mac: self.mac.parse().ok(),
            addresses: self.addresses(),
            ..Link::default()
        }
    }
}

/// The name [`Controller::reconcile`] reports the pairs of no network under.
pub const STRAY_LINKS: &str = "(no network)";

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub state_path: PathBuf,
    pub default_pools: Vec<DefaultPool>,
}

impl ControllerConfig {
    /// Where the packet-filter drivers keep their bookkeeping: beside the state file.
    pub fn driver_root(&self) -> PathBuf {
        self.state_path
            .parent()
            .map(|p| p.join("drivers"))
            .unwrap_or_else(|| PathBuf::from("/var/lib/ferry/drivers"))
    }
}

pub struct Controller {
    pub(crate) store: Store,
    pub(crate) drivers: Arc<dyn Drivers>,
    pub(crate) defaults: Vec<DefaultPool>,
    pub(crate) ipam: Ipam,
    // Persistent maps: a snapshot for the readers is O(1) (snapshot.rs).
    pub(crate) networks: PMap<Network>,
    pub(crate) endpoints: PMap<Endpoint>,
    pub(crate) sandboxes: PMap<crate::sandbox::Sandbox>,
    pub(crate) services: PMap<crate::service::Service>,
    /// This host in a cluster, for overlay networks.
    pub(crate) cluster: Option<crate::overlay::Cluster>,
}

pub(crate) fn net_key(id: &str) -> String {
    format!("network/{id}")
}
pub(crate) fn ep_key(id: &str) -> String {
    format!("endpoint/{id}")
}
pub(crate) fn sb_key(name: &str) -> String {
    format!("sandbox/{name}")
}

pub(crate) fn put<T: Serialize>(key: String, v: &T) -> Result<Change> {
    serde_json::to_vec(v)
        .map(|b| Change::Put(key, b))
        .map_err(|e| CnmError::Store(e.to_string()))
}

/// Driver options arrive as strings or booleans inside `com.docker.network.generic`.
fn generic<'a>(options: &'a BTreeMap<String, Value>, key: &str) -> Option<&'a Value> {
    options.get(keys::GENERIC).and_then(|g| g.get(key))
}

fn flag(v: Option<&Value>, default: bool, key: &str) -> Result<bool> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => s
            .parse::<bool>()
            .map_err(|_| CnmError::Invalid(format!("{key}={s:?}: expected true or false"))),
        Some(other) => Err(CnmError::Invalid(format!(
            "{key}={other}: expected true or false"
        ))),
    }
}

fn mtu_option(options: &BTreeMap<String, Value>) -> Result<Option<u32>> {
    match generic(options, keys::MTU) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            let m: u32 = text
                .parse()
                .map_err(|_| CnmError::Invalid(format!("{}={text:?}: not a number", keys::MTU)))?;
            if !(68..=65535).contains(&m) {
                return Err(CnmError::Invalid(format!(
                    "{}={m}: out of range (68 to 65535)",
                    keys::MTU
                )));
            }
            Ok(Some(m))
        }
    }
}

/// IDs are Docker's 64-hex strings; names derive from their first characters.
pub(crate) fn short(id: &str, n: usize) -> Result<&str> {
    if id.len() < n || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CnmError::Invalid(format!("malformed ID {id:?}")));
    }
    Ok(&id[..n])
}

/// What a network is made from, whichever door asked.
pub(crate) struct NetworkDef {
    pub id: String,
    pub options: BTreeMap<String, Value>,
    pub ipv4: Vec<wire::IpamData>,
    pub ipv6: Vec<wire::IpamData>,
}

impl Controller {
    /// Opens the state file and loads what it holds: networks, endpoints,
    /// sandboxes and IPAM. The kernel keeps what they made across a restart
    /// of ferryd, so nothing is rebuilt here.
    pub fn open(config: ControllerConfig, drivers: Arc<dyn Drivers>) -> Result<Controller> {
        let store = Store::open(&config.state_path)?;
        let mut c = Controller {
            store,
            drivers,
            defaults: config.default_pools,
            ipam: Ipam::default(),
            networks: PMap::new(),
            endpoints: PMap::new(),
            sandboxes: PMap::new(),
            services: PMap::new(),
            cluster: None,
        };
        for (k, v) in c.store.load()? {
            let bad = |e: serde_json::Error| CnmError::Store(format!("{k}: {e}"));
            if let Some(id) = k.strip_prefix("network/") {
                c.networks
                    .insert(id.to_string(), serde_json::from_slice(&v).map_err(bad)?);
            } else if let Some(id) = k.strip_prefix("endpoint/") {
                c.endpoints
                    .insert(id.to_string(), serde_json::from_slice(&v).map_err(bad)?);
            } else if let Some(name) = k.strip_prefix("sandbox/") {
                c.sandboxes
                    .insert(name.to_string(), serde_json::from_slice(&v).map_err(bad)?);
            } else if let Some(name) = k.strip_prefix("service/") {
                c.services
                    .insert(name.to_string(), serde_json::from_slice(&v).map_err(bad)?);
            }
        }
        c.ipam = Ipam::open(&c.store)?;
        Ok(c)
    }

    /// Brings the host in line with the state after a crash: deletes the
    /// links and driver bookkeeping of endpoints that were made but never
    /// committed (ferryd killed in between; Docker's retry then failed, so
    /// it never deletes them), then the unattached pairs older versions left
    /// ([`ferry_drivers::network::Drivers::prune_stray_links`]). Run before
    /// serving. Returns what went, per network ([`STRAY_LINKS`] for the
    /// pairs of no network).
    pub fn reconcile(&self) -> Vec<(String, Result<Vec<String>>)> {
        let mut done: Vec<(String, Result<Vec<String>>)> = self
            .networks
            .values()
            .map(|n| {
                let spec = n.spec();
                let mine = || self.endpoints.values().filter(|e| e.network_id == n.id);
                let ids: Vec<String> = mine().map(|e| e.id.clone()).collect();
                let keep: Vec<String> = mine().map(|e| e.host_veth.clone()).collect();
                let driver = self.driver(&spec);
                let done = driver
                    .gc(&spec, &ids)
                    .and_then(|()| driver.prune_links(&spec, &keep))
                    .map_err(CnmError::from);
                (n.id.clone(), done)
            })
            .collect();
        let keep: Vec<String> = self
            .endpoints
            .values()
            .map(|e| e.host_veth.clone())
            .collect();
        let stray = self
            .drivers
            .prune_stray_links(&keep)
            .map_err(CnmError::from);
        done.push((STRAY_LINKS.to_string(), stray));
        done
    }

    /// Addresses of Docker's networks' pools that no endpoint, gateway or
    /// auxiliary address holds, as `(pool ID, address)`. Docker requests an
    /// address just before CreateEndpoint and releases it after
    /// DeleteEndpoint; an address that stays unclaimed was handed out or
    /// kept by a request whose answer was lost (ferryd killed; dockerd's
    /// retry sends an empty body and fails), and Docker will never release it.
    pub fn unclaimed_addresses(&self) -> Vec<(String, IpAddr)> {
        let mut claimed = std::collections::BTreeSet::new();
        let mut pools = std::collections::BTreeSet::new();
        for d in self.docker_ipam_data() {
            pools.insert(d.pool.clone());
            let aux = d.aux_addresses.values();
            for a in std::iter::once(&d.gateway).chain(aux) {
                if let Some(ip) = a.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) {
                    claimed.insert(ip);
                }
            }
        }
        claimed.extend(
            self.endpoints
                .values()
                .flat_map(|e| e.addresses())
                .map(|a| a.addr()),
        );
        self.ipam
            .pools
            .values()
            .filter(|p| pools.contains(&p.subnet.to_string()))
            .flat_map(|p| p.allocated.iter().map(move |ip| (p.id.clone(), *ip)))
            .filter(|(_, ip)| !claimed.contains(ip))
            .collect()
    }

    /// Makes deferred writes (sandbox keys, releases) durable: a clean
    /// shutdown's last step.
    pub fn flush(&self) -> Result<()> {
        self.store.flush()
    }

    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.values()
    }
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// What reads answer from, sharing the controller's maps: O(1).
    pub fn snapshot(&self) -> crate::Snapshot {
        crate::Snapshot {
            networks: self.networks.clone(),
            endpoints: self.endpoints.clone(),
            sandboxes: self.sandboxes.clone(),
            pools: self.ipam.pools.clone(),
            services: self.services.clone(),
        }
    }

    pub(crate) fn driver(&self, n: &NetworkSpec) -> &dyn NetworkDriver {
        self.drivers.driver(&n.kind)
    }

    // ---- IPAM driver ----

    pub fn request_pool(&mut self, req: &wire::RequestPool) -> Result<wire::RequestPoolResponse> {
        limits::string_options("RequestPool Options", &req.options)?;
        self.adopt_overlay_of_pool(&req.pool);
        let pool = self.new_pool(&req.address_space, &req.pool, &req.sub_pool, req.v6)?;
        self.store.apply(vec![self.ipam.take_changes()?])?;
        Ok(wire::RequestPoolResponse {
            pool_id: pool.id,
            pool: pool.subnet.to_string(),
            data: BTreeMap::new(),
        })
    }

    /// Registers a pool (not yet committed): the one asked for, or one from
    /// the default pools that the host does not route.
    pub(crate) fn new_pool(
        &mut self,
        space: &str,
        pool: &str,
        sub_pool: &str,
        v6: bool,
    ) -> Result<crate::ipam::Pool> {
        let routed = self.drivers.sandboxes().host_routes();
        self.ipam
            .request_pool(space, pool, sub_pool, v6, &self.defaults, &routed)
    }

    pub fn release_pool(&mut self, pool_id: &str) -> Result<()> {
        self.ipam.release_pool(pool_id)?;
        self.store.apply(vec![self.ipam.take_changes()?])
    }

    pub fn request_address(
        &mut self,
        req: &wire::RequestAddress,
    ) -> Result<wire::RequestAddressResponse> {
        limits::id("PoolID", &req.pool_id)?;
        limits::string_options("RequestAddress Options", &req.options)?;
        let wanted = if req.address.is_empty() {
            None
        } else {
            Some(
                req.address
                    .parse::<IpAddr>()
                    .map_err(|e| CnmError::Invalid(format!("address {:?}: {e}", req.address)))?,
            )
        };
        let gateway = req
            .options
            .get(keys::REQUEST_ADDRESS_TYPE)
            .map(String::as_str)
            == Some(keys::GATEWAY_TYPE);
        let addr = match self.overlay_request_address(&req.pool_id, wanted, gateway)? {
            Some(addr) => addr,
            None => self.ipam.request_address(&req.pool_id, wanted, gateway)?,
        };
        self.store.apply(vec![self.ipam.take_changes()?])?;
        Ok(wire::RequestAddressResponse {
            address: addr.to_string(),
            data: BTreeMap::new(),
        })
    }

    pub fn release_address(&mut self, req: &wire::ReleaseAddress) -> Result<()> {
        let ip: IpAddr = req
            .address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|e| CnmError::Invalid(format!("address {:?}: {e}", req.address)))?;
        self.forget_failed_endpoint(&req.pool_id, ip)?;
        self.ipam.release_address(&req.pool_id, ip)?;
        let changes = vec![self.ipam.take_changes()?];
        // Lost to a kill -9, a release of a Docker network's address leaves
        // it allocated with nothing claiming it: ferryd's address sweep
        // releases it again after its grace. Other pools have no such net.
        let pool = self
            .ipam
            .pools
            .get(&req.pool_id)
            .map(|p| p.subnet.to_string());
        if pool.is_some_and(|p| self.docker_ipam_data().any(|d| d.pool == p)) {
            self.store.defer(changes)
        } else {
            self.store.apply(changes)
        }
    }

    /// Docker's endpoints as `(network ID, endpoint ID, container end)`,
    /// the container end being the name the endpoint's container-side link
    /// has until Docker moves it into the container as the container starts
    /// (after Join; and again after Leave, moved back before
    /// DeleteEndpoint). One found in ferryd's namespace long after its
    /// CreateEndpoint belongs to an endpoint Docker will never start a
    /// container on nor delete: its CreateEndpoint's answer and the
    /// ReleaseAddress of the rollback were both lost to kills of ferryd, or
    /// its DeleteEndpoint was (ferryd's endpoint sweep).
    pub fn docker_container_ends(&self) -> Vec<(String, String, String)> {
        self.endpoints
            .values()
            .filter(|ep| {
                !ep.container_veth.is_empty()
                    && ep.netns.is_none()
                    && self
                        .networks
                        .get(&ep.network_id)
                        .is_some_and(|n| n.name.is_none())
            })
            .map(|ep| {
                (
                    ep.network_id.clone(),
                    ep.id.clone(),
                    ep.container_veth.clone(),
                )
            })
            .collect()
    }

    /// The IPAM data (pool, gateway, auxiliary addresses) of the networks
    /// Docker created.
    fn docker_ipam_data(&self) -> impl Iterator<Item = &wire::IpamData> {
        self.networks
            .values()
            .filter(|n| n.name.is_none())
            .flat_map(|n| n.ipv4.iter().chain(&n.ipv6))
    }

    /// Docker releases an endpoint's address after DeleteEndpoint, or after
    /// a CreateEndpoint that failed for it. A Docker endpoint still holding
    /// the address was made by a CreateEndpoint whose answer Docker never
    /// got (ferryd killed after its commit; dockerd 20.10 retries with an
    /// empty body, which fails): Docker will never delete it, so it goes now.
    fn forget_failed_endpoint(&mut self, pool_id: &str, ip: IpAddr) -> Result<()> {
        let Some(pool) = self.ipam.pools.get(pool_id).map(|p| p.subnet.to_string()) else {
            return Ok(());
        };
        let orphan = self.endpoints.values().find(|ep| {
            ep.netns.is_none()
                && ep.addresses().iter().any(|a| a.addr() == ip)
                && self.networks.get(&ep.network_id).is_some_and(|n| {
                    n.name.is_none() && n.ipv4.iter().chain(&n.ipv6).any(|d| d.pool == pool)
                })
        });
        match orphan.map(|ep| (ep.network_id.clone(), ep.id.clone())) {
            Some((network_id, endpoint_id)) => self.delete_endpoint(&wire::EndpointRef {
                network_id,
                endpoint_id,
            }),
            None => Ok(()),
        }
    }

    // ---- Network driver ----

    pub fn create_network(&mut self, req: &wire::CreateNetwork) -> Result<()> {
        limits::id("NetworkID", &req.network_id)?;
        limits::docker_options("Options", &req.options)?;
        limits::count("IPv4Data", req.ipv4_data.len(), limits::MAX_SUBNETS)?;
        limits::count("IPv6Data", req.ipv6_data.len(), limits::MAX_SUBNETS)?;
        if crate::overlay_docker::wants_overlay(&req.options) {
            return self.docker_overlay_network(req);
        }
        self.add_network(NetworkDef {
            id: req.network_id.clone(),
            options: req.options.clone(),
            ipv4: req.ipv4_data.clone(),
            ipv6: req.ipv6_data.clone(),
        })
    }

    /// Reads a network's options, asks its driver to make it, and commits it.
    pub(crate) fn add_network(&mut self, def: NetworkDef) -> Result<()> {
        if self.networks.contains_key(&def.id) {
            return Ok(()); // a replay
        }
        let o = &def.options;
        let driver = Driver::from_options(o.get(keys::GENERIC))?;
        let bridge = match (
            &driver,
            generic(o, keys::BRIDGE_NAME).and_then(Value::as_str),
        ) {
            (Driver::Bridge, Some(name)) if !name.is_empty() => name.to_string(),
            (Driver::Bridge, _) => format!("fr-{}", short(&def.id, 12)?),
            _ => String::new(),
        };
        if !bridge.is_empty() {
            ferry_drivers::check_ifname(&bridge)
                .map_err(|e| CnmError::Invalid(format!("bridge name {bridge:?}: {e}")))?;
        }
        let is_bridge = driver == Driver::Bridge;
        let host_binding_ipv4 = match generic(o, keys::HOST_BINDING_IPV4).and_then(Value::as_str) {
            None | Some("") => None,
            Some(text) => {
                let ip: IpAddr = text.parse().map_err(|e| {
                    CnmError::Invalid(format!("{}={text:?}: {e}", keys::HOST_BINDING_IPV4))
                })?;
                (!ip.is_unspecified()).then_some(ip)
            }
        };
        for d in def.ipv4.iter().chain(&def.ipv6) {
            if !d.gateway.is_empty() {
                d.gateway
                    .parse::<IpNet>()
                    .map_err(|e| CnmError::Invalid(format!("gateway {:?}: {e}", d.gateway)))?;
            }
        }
        let n = Network {
            id: def.id,
            name: None,
            pools: Vec::new(),
            routes: Vec::new(),
            driver,
            bridge,
            mtu: mtu_option(o)?,
            internal: flag(o.get(keys::INTERNAL), false, keys::INTERNAL)?,
            enable_icc: flag(generic(o, keys::ENABLE_ICC), true, keys::ENABLE_ICC)?,
            enable_ip_masquerade: is_bridge
                && flag(
                    generic(o, keys::ENABLE_IP_MASQUERADE),
                    true,
                    keys::ENABLE_IP_MASQUERADE,
                )?,
            host_binding_ipv4: host_binding_ipv4.filter(|_| is_bridge),
            ipv4: def.ipv4,
            ipv6: def.ipv6,
            blocks: Vec::new(),
            docker_ids: Vec::new(),
        };
        let spec = n.spec();
        let driver = self.driver(&spec);
        driver.validate(&spec)?;
        driver.create_network(&spec)?;
        if let Err(e) = self.store.apply(vec![put(net_key(&n.id), &n)?]) {
            // Nothing persisted: undo what the driver made.
            let _ = self.driver(&spec).delete_network(&spec);
            return Err(e);
        }
        self.networks.insert(n.id.clone(), n);
        Ok(())
    }

    pub fn delete_network(&mut self, network_id: &str) -> Result<()> {
        if self.forget_docker_id(network_id)? {
            return Ok(());
        }
        let Some(n) = self.networks.get(network_id).cloned() else {
            return Ok(()); // already gone: a replay
        };
        if let Some(ep) = self.endpoints.values().find(|e| e.network_id == network_id) {
            return Err(CnmError::Invalid(format!(
                "network {network_id} still has endpoint {}",
                ep.id
            )));
        }
        let spec = n.spec();
        self.driver(&spec).delete_network(&spec)?;
        self.store
            .apply(vec![Change::Delete(net_key(network_id))])?;
        self.networks.remove(network_id);
        Ok(())
    }

    /// A network by its ID, or by Docker's ID for an overlay network.
    pub(crate) fn network(&self, id: &str) -> Result<Network> {
        self.networks
            .get(id)
            .or_else(|| {
                self.networks
                    .values()
                    .find(|n| n.docker_ids.iter().any(|d| d == id))
            })
            .cloned()
            .ok_or_else(|| CnmError::not_found("network", id))
    }

    pub fn create_endpoint(
        &mut self,
        req: &wire::CreateEndpoint,
    ) -> Result<wire::CreateEndpointResponse> {
        let network = self.network(&req.network_id)?;
        let given = req.interface.clone().unwrap_or_default();
        if let Some(ep) = self.endpoints.get(&req.endpoint_id) {
            // A replay: answer as the first time.
            return Ok(wire::CreateEndpointResponse {
                interface: (given.mac_address.is_empty() && !ep.mac.is_empty()).then(|| {
                    wire::EndpointInterface {
                        mac_address: ep.mac.clone(),
                        ..Default::default()
                    }
                }),
            });
        }
        short(&req.endpoint_id, 11)?;
        limits::id("EndpointID", &req.endpoint_id)?;
        limits::docker_options("Options", &req.options)?;
        // Refuse bindings Ferry cannot publish before anything is made.
        crate::publish::parse_portmap(req.options.get(keys::PORT_MAP))?;
        let parse = |s: &str, what: &str| -> Result<Option<IpNet>> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|e| CnmError::Invalid(format!("{what} {s:?}: {e}")))
        };
        let address = parse(&given.address, "Address")?;
        let address_v6 = parse(&given.address_ipv6, "AddressIPv6")?;
        let mac =
            if given.mac_address.is_empty() {
                None
            } else {
                Some(given.mac_address.parse::<MacAddr>().map_err(|_| {
                    CnmError::Invalid(format!("MacAddress {:?}", given.mac_address))
                })?)
            };
        let spec = network.spec();
        let ep_spec = EndpointSpec {
            id: req.endpoint_id.clone(),
            mac,
            addresses: address.iter().chain(&address_v6).copied().collect(),
        };
        // Docker moves the interface into the sandbox itself: it stays on the host.
        let link = self
            .driver(&spec)
            .create_endpoint(&spec, &ep_spec, Placement::Host)?;
        let ep = Endpoint {
            id: req.endpoint_id.clone(),
            network_id: network.id.clone(),
            host_veth: link.host_ifname.clone().unwrap_or_default(),
            host_mac: String::new(),
            container_veth: link.ifname.clone(),
            address,
            address_v6,
            mac: link.mac.map(|m| m.to_string()).unwrap_or_default(),
            sandbox: None,
            ifname: None,
            netns: None,
            priority: 0,
            published: Value::Null,
            aliases: Vec::new(),
        };
        if let Err(e) = self.store.apply(vec![put(ep_key(&ep.id), &ep)?]) {
            if let Ok(p) = self.driver(&spec).delete_endpoint(&spec, &link) {
                p.finish();
            }
            return Err(e);
        }
        let response = wire::CreateEndpointResponse {
            interface: (mac.is_none() && !ep.mac.is_empty()).then(|| wire::EndpointInterface {
                mac_address: ep.mac.clone(),
                ..Default::default()
            }),
        };
        self.endpoints.insert(ep.id.clone(), ep);
        Ok(response)
    }

    pub fn delete_endpoint(&mut self, req: &wire::EndpointRef) -> Result<()> {
        let Some(ep) = self.endpoints.get(&req.endpoint_id).cloned() else {
            return Ok(()); // a replay
        };
        if let Some(n) = self
            .networks
            .get(&ep.network_id)
            .filter(|n| matches!(n.driver, Driver::Overlay { .. }))
        {
            self.withdraw_endpoint(n, &ep);
        }
        self.remove_endpoint(&ep)
    }

    /// Tears an endpoint down (published ports, interface) and forgets it.
    /// Addresses are the caller's: Docker releases them through IPAM.
    pub(crate) fn remove_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        let spec = match self.networks.get(&ep.network_id) {
            Some(n) => n.spec(),
            // The network went first (a state file edited by hand): nothing to tear down.
            None => {
                self.store.apply(vec![Change::Delete(ep_key(&ep.id))])?;
                self.endpoints.remove(&ep.id);
                return Ok(());
            }
        };
        let link = ep.link();
        let driver = self.driver(&spec);
        driver.revoke_external_connectivity(&spec, &link)?;
        driver.leave(&spec, &link)?;
        let pending = driver.delete_endpoint(&spec, &link)?;
        self.store.apply(vec![Change::Delete(ep_key(&ep.id))])?;
        self.endpoints.remove(&ep.id);
        pending.finish();
        Ok(())
    }

    pub fn endpoint_oper_info(&self, req: &wire::EndpointRef) -> Result<Value> {
        self.snapshot().endpoint_oper_info(&req.endpoint_id)
    }

    pub fn join(&mut self, req: &wire::Join) -> Result<wire::JoinResponse> {
        limits::docker_options("Join Options", &req.options)?;
        let network = self.network(&req.network_id)?;
        let mut ep = self
            .endpoints
            .get(&req.endpoint_id)
            .ok_or_else(|| CnmError::not_found("endpoint", &req.endpoint_id))?
            .clone();
        match &ep.sandbox {
            Some(s) if *s != req.sandbox_key => return Err(CnmError::AlreadyJoined(ep.id)),
            _ => {}
        }
        let gateway_of = |data: &[wire::IpamData]| {
            data.iter()
                .find(|d| !d.gateway.is_empty())
                .map(|d| d.gateway.split('/').next().unwrap_or_default().to_string())
                .unwrap_or_default()
        };
        // An internal network has no way out and wants none; null and host
        // endpoints have no interface to route through.
        let has_interface = network.driver.has_interface();
        let routed = !network.internal && has_interface;
        let response = wire::JoinResponse {
            interface_name: has_interface.then(|| wire::InterfaceName {
                src_name: ep.container_veth.clone(),
                dst_prefix: "eth".into(),
            }),
            gateway: if routed {
                gateway_of(&network.ipv4)
            } else {
                String::new()
            },
            gateway_ipv6: if routed {
                gateway_of(&network.ipv6)
            } else {
                String::new()
            },
            static_routes: Vec::new(),
            disable_gateway_service: !routed,
        };
        let overlay = matches!(network.driver, Driver::Overlay { .. });
        if ep.sandbox.is_none() {
            ep.sandbox = Some(req.sandbox_key.clone());
            self.store_sandbox_key(&ep)?;
            self.endpoints.insert(ep.id.clone(), ep.clone());
        }
        // The other hosts learn of an overlay endpoint from the cluster store.
        if overlay {
            self.publish_endpoint(&network, &ep, &req.sandbox_key)?;
        }
        Ok(response)
    }

    pub fn leave(&mut self, req: &wire::EndpointRef) -> Result<()> {
        let Some(mut ep) = self.endpoints.get(&req.endpoint_id).cloned() else {
            return Ok(());
        };
        if ep.sandbox.take().is_some() {
            self.store_sandbox_key(&ep)?;
            self.endpoints.insert(ep.id.clone(), ep);
        }
        Ok(())
    }

    /// Stores the sandbox key a Join set or a Leave cleared. Docker owns
    /// its sandboxes and nothing on the host depends on the key, so the
    /// write is deferred (no fsync on Docker's path): a kill -9 before the
    /// next commit loses only the key, the endpoint then shows no sandbox
    /// (or its old one until DeleteEndpoint). An overlay endpoint's key is
    /// published again after a restart, so that one is committed.
    fn store_sandbox_key(&self, ep: &Endpoint) -> Result<()> {
        let change = vec![put(ep_key(&ep.id), ep)?];
        let overlay = self
            .networks
            .get(&ep.network_id)
            .is_some_and(|n| matches!(n.driver, Driver::Overlay { .. }));
        if overlay {
            self.store.apply(change)
        } else {
            self.store.defer(change)
        }
    }

    pub fn program_external_connectivity(
        &mut self,
        req: &wire::ExternalConnectivity,
    ) -> Result<()> {
        let ep = self
            .endpoints
            .get(&req.endpoint_id)
            .ok_or_else(|| CnmError::not_found("endpoint", &req.endpoint_id))?
            .clone();
        let network = self.network(&ep.network_id)?;
        if !network.driver.has_interface() {
            return Ok(());
        }
        let bindings = req.options.get(keys::PORT_MAP);
        let mut mappings = crate::publish::parse_portmap(bindings)?;
        // Bindings without an address go to the network's default one.
        if let Some(default) = network.host_binding_ipv4 {
            for m in &mut mappings {
                if m.host_ip.is_none() {
                    m.host_ip = Some(default);
                }
            }
        }
        let spec = network.spec();
        self.driver(&spec).program_external_connectivity(
            &spec,
            &ep.link(),
            &External { mappings },
        )?;
        // Docker sends an empty list when nothing is published: kept as
        // none, so that most runs have nothing new to commit.
        let published = match bindings {
            Some(Value::Array(b)) if b.is_empty() => Value::Null,
            b => b.cloned().unwrap_or(Value::Null),
        };
        if published != ep.published {
            let mut ep = ep;
            ep.published = published;
            self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
            self.endpoints.insert(ep.id.clone(), ep);
        }
        Ok(())
    }

    pub fn revoke_external_connectivity(&mut self, req: &wire::EndpointRef) -> Result<()> {
        let Some(mut ep) = self.endpoints.get(&req.endpoint_id).cloned() else {
            return Ok(());
        };
        if let Some(n) = self.networks.get(&ep.network_id) {
            let spec = n.spec();
            self.driver(&spec)
                .revoke_external_connectivity(&spec, &ep.link())?;
        }
        if !ep.published.is_null() {
            ep.published = Value::Null;
            self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
            self.endpoints.insert(ep.id.clone(), ep);
        }
        Ok(())
    }
}

/// The addresses an endpoint gets inside a Ferry sandbox. Routes are not
/// here: the sandbox's routes are arbitrated across its networks.
pub(crate) fn interface_config(ep: &Endpoint) -> InterfaceConfig {
    InterfaceConfig {
        addresses: ep
            .addresses()
            .into_iter()
            .map(|net| Address { net, gateway: None })
            .collect(),
        routes: Vec::new(),
    }
}
