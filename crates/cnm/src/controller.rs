//! The controller: the one owner of mutable CNM state. Each operation checks
//! its request, changes the kernel, then commits the new state before it
//! answers; every handler is idempotent because Docker retries and replays.

use crate::driver::{macvlan_mode, Driver};
use crate::error::{kernel, CnmError, Result};
use crate::ipam::{DefaultPool, Ipam};
use crate::store::{Change, Store};
use crate::wire::{self, keys};
use ferry_linux::{AddrOptions, Family, LinkSpec, MacAddr, Netlink};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// A network of the bridge driver.
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
}

/// An endpoint: a veth whose host end is a bridge port and whose other end
/// Docker moves into the sandbox on Join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub network_id: String,
    pub host_veth: String,
    pub container_veth: String,
    pub address: Option<IpNet>,
    pub address_v6: Option<IpNet>,
    pub mac: String,
    pub sandbox: Option<String>,
    /// The interface name inside a Ferry sandbox (Docker names its own).
    #[serde(default)]
    pub ifname: Option<String>,
    /// Route arbitration priority: the highest wins a contested prefix.
    #[serde(default)]
    pub priority: i32,
    /// The port bindings Docker asked to publish (its own JSON, echoed in oper info).
    #[serde(default)]
    pub published: Value,
}

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
    pub(crate) driver_root: PathBuf,
    pub(crate) defaults: Vec<DefaultPool>,
    pub(crate) ipam: Ipam,
    pub(crate) networks: BTreeMap<String, Network>,
    pub(crate) endpoints: BTreeMap<String, Endpoint>,
    pub(crate) sandboxes: BTreeMap<String, crate::sandbox::Sandbox>,
}

pub(crate) fn net_key(id: &str) -> String {
    format!("network/{id}")
}
pub(crate) fn ep_key(id: &str) -> String {
    format!("endpoint/{id}")
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

/// IDs are Docker's 64-hex strings; names derive from their first characters.
pub(crate) fn short(id: &str, n: usize) -> Result<&str> {
    if id.len() < n || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CnmError::Invalid(format!("malformed ID {id:?}")));
    }
    Ok(&id[..n])
}

impl Controller {
    /// Opens the state file and loads what it holds.
    pub fn open(config: ControllerConfig) -> Result<Controller> {
        let store = Store::open(&config.state_path)?;
        let mut c = Controller {
            store,
            driver_root: config.driver_root(),
            defaults: config.default_pools,
            ipam: Ipam::default(),
            networks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
        };
        for (k, v) in c.store.load()? {
            let bad = |e: serde_json::Error| CnmError::Store(format!("{k}: {e}"));
            if let Some(id) = k.strip_prefix("network/") {
                c.networks
                    .insert(id.to_string(), serde_json::from_slice(&v).map_err(bad)?);
            } else if let Some(id) = k.strip_prefix("endpoint/") {
                c.endpoints
                    .insert(id.to_string(), serde_json::from_slice(&v).map_err(bad)?);
            }
        }
        c.ipam = Ipam::open(&c.store)?;
        Ok(c)
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

    // ---- IPAM driver ----

    pub fn request_pool(&mut self, req: &wire::RequestPool) -> Result<wire::RequestPoolResponse> {
        let routed = host_routes();
        let pool = self.ipam.request_pool(
            &req.address_space,
            &req.pool,
            &req.sub_pool,
            req.v6,
            &self.defaults,
            &routed,
        )?;
        self.store.apply(vec![self.ipam.take_changes()?])?;
        Ok(wire::RequestPoolResponse {
            pool_id: pool.id,
            pool: pool.subnet.to_string(),
            data: BTreeMap::new(),
        })
    }

    pub fn release_pool(&mut self, pool_id: &str) -> Result<()> {
        self.ipam.release_pool(pool_id)?;
        self.store.apply(vec![self.ipam.take_changes()?])
    }

    pub fn request_address(
        &mut self,
        req: &wire::RequestAddress,
    ) -> Result<wire::RequestAddressResponse> {
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
        let addr = self.ipam.request_address(&req.pool_id, wanted, gateway)?;
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
        self.ipam.release_address(&req.pool_id, ip)?;
        self.store.apply(vec![self.ipam.take_changes()?])
    }

    // ---- Network driver ----

    pub fn create_network(&mut self, req: &wire::CreateNetwork) -> Result<()> {
        if self.networks.contains_key(&req.network_id) {
            return Ok(()); // a replay
        }
        let o = &req.options;
        let driver = Driver::from_options(o.get(keys::GENERIC))?;
        if driver != Driver::Bridge {
            return self.create_plain_network(req, driver);
        }
        let bridge = match generic(o, keys::BRIDGE_NAME).and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => format!("fr-{}", short(&req.network_id, 12)?),
        };
        ferry_linux::check_ifname(&bridge)
            .map_err(|e| CnmError::Invalid(format!("bridge name {bridge:?}: {e}")))?;
        let mtu = match generic(o, keys::MTU) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                let m: u32 = text.parse().map_err(|_| {
                    CnmError::Invalid(format!("{}={text:?}: not a number", keys::MTU))
                })?;
                if !(68..=65535).contains(&m) {
                    return Err(CnmError::Invalid(format!(
                        "{}={m}: out of range",
                        keys::MTU
                    )));
                }
                Some(m)
            }
        };
        let internal = flag(o.get(keys::INTERNAL), false, keys::INTERNAL)?;
        let enable_icc = flag(generic(o, keys::ENABLE_ICC), true, keys::ENABLE_ICC)?;
        let enable_ip_masquerade = flag(
            generic(o, keys::ENABLE_IP_MASQUERADE),
            true,
            keys::ENABLE_IP_MASQUERADE,
        )?;
        let host_binding_ipv4 = match generic(o, keys::HOST_BINDING_IPV4).and_then(Value::as_str) {
            None | Some("") => None,
            Some(text) => {
                let ip: IpAddr = text.parse().map_err(|e| {
                    CnmError::Invalid(format!("{}={text:?}: {e}", keys::HOST_BINDING_IPV4))
                })?;
                (!ip.is_unspecified()).then_some(ip)
            }
        };
        let mut gateways = Vec::new();
        for d in req.ipv4_data.iter().chain(&req.ipv6_data) {
            if d.gateway.is_empty() {
                continue;
            }
            let gw: IpNet = d
                .gateway
                .parse()
                .map_err(|e| CnmError::Invalid(format!("gateway {:?}: {e}", d.gateway)))?;
            gateways.push(gw);
        }

        let mut nl = Netlink::new().map_err(kernel("open netlink"))?;
        let existing = match nl.link_by_name(&bridge) {
            Ok(l) => Some(l),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(kernel(format!("look up {bridge}"))(e)),
        };
        if let Some(l) = &existing {
            if l.kind.as_deref() != Some("bridge") {
                return Err(CnmError::Invalid(format!(
                    "{bridge} already exists and is not a bridge"
                )));
            }
        } else {
            let mut spec = LinkSpec::bridge(&bridge);
            if let Some(m) = mtu {
                spec = spec.mtu(m);
            }
            nl.create_link(&spec)
                .map_err(kernel(format!("create bridge {bridge}")))?;
        }
        let br = nl
            .link_by_name(&bridge)
            .map_err(kernel(format!("look up {bridge}")))?;
        let opts = AddrOptions {
            nodad: true,
            replace: true,
        };
        for gw in &gateways {
            nl.add_address(br.index, *gw, opts)
                .map_err(kernel(format!("add gateway {gw} to {bridge}")))?;
        }
        nl.set_up(br.index)
            .map_err(kernel(format!("set {bridge} up")))?;
        if !internal {
            if gateways.iter().any(|g| g.addr().is_ipv4()) {
                let _ = ferry_linux::sysctl::write_if_different("net.ipv4.ip_forward", "1");
            }
            if gateways.iter().any(|g| g.addr().is_ipv6()) {
                let _ =
                    ferry_linux::sysctl::write_if_different("net.ipv6.conf.all.forwarding", "1");
            }
        }
        let n = Network {
            id: req.network_id.clone(),
            name: None,
            pools: Vec::new(),
            routes: Vec::new(),
            driver,
            bridge,
            mtu,
            internal,
            enable_icc,
            enable_ip_masquerade,
            host_binding_ipv4,
            ipv4: req.ipv4_data.clone(),
            ipv6: req.ipv6_data.clone(),
        };
        let change = put(net_key(&n.id), &n)?;
        if let Err(e) = self.store.apply(vec![change]) {
            // Nothing persisted: undo the bridge we made.
            if existing.is_none() {
                let _ = nl.delete_link(br.index);
            }
            return Err(e);
        }
        self.networks.insert(n.id.clone(), n);
        Ok(())
    }

    /// Networks of the macvlan, null and host drivers: nothing to build on the
    /// host beyond checking the macvlan parent exists.
    fn create_plain_network(&mut self, req: &wire::CreateNetwork, driver: Driver) -> Result<()> {
        if let Driver::Macvlan { parent, .. } = &driver {
            let mut nl = Netlink::new().map_err(kernel("open netlink"))?;
            nl.link_by_name(parent).map_err(|e| {
                CnmError::Invalid(format!("macvlan parent {parent:?} is not usable: {e}"))
            })?;
        }
        let internal = flag(req.options.get(keys::INTERNAL), false, keys::INTERNAL)?;
        let mtu = match generic(&req.options, keys::MTU) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
                    .parse::<u32>()
                    .map_err(|_| CnmError::Invalid(format!("{}: not a number", keys::MTU)))?,
            ),
        };
        let n = Network {
            id: req.network_id.clone(),
            name: None,
            pools: Vec::new(),
            routes: Vec::new(),
            driver,
            bridge: String::new(),
            mtu,
            internal,
            enable_icc: true,
            enable_ip_masquerade: false,
            host_binding_ipv4: None,
            ipv4: req.ipv4_data.clone(),
            ipv6: req.ipv6_data.clone(),
        };
        self.store.apply(vec![put(net_key(&n.id), &n)?])?;
        self.networks.insert(n.id.clone(), n);
        Ok(())
    }

    pub fn delete_network(&mut self, network_id: &str) -> Result<()> {
        let Some(n) = self.networks.get(network_id).cloned() else {
            return Ok(()); // already gone: a replay
        };
        if let Some(ep) = self.endpoints.values().find(|e| e.network_id == network_id) {
            return Err(CnmError::Invalid(format!(
                "network {network_id} still has endpoint {}",
                ep.id
            )));
        }
        if n.driver == Driver::Bridge {
            let mut nl = Netlink::new().map_err(kernel("open netlink"))?;
            delete_link_by_name(&mut nl, &n.bridge)?;
            let mut sock = ferry_linux::nft::Socket::new().map_err(kernel("open nftables"))?;
            ferry_drivers::firewall::forget_bridge(&mut sock, &n.bridge)
                .map_err(|e| CnmError::Store(e.to_string()))?;
        }
        self.store
            .apply(vec![Change::Delete(net_key(network_id))])?;
        self.networks.remove(network_id);
        Ok(())
    }

    pub fn create_endpoint(
        &mut self,
        req: &wire::CreateEndpoint,
    ) -> Result<wire::CreateEndpointResponse> {
        let network = self
            .networks
            .get(&req.network_id)
            .ok_or_else(|| CnmError::not_found("network", &req.network_id))?
            .clone();
        let given = req.interface.clone().unwrap_or_default();
        if let Some(ep) = self.endpoints.get(&req.endpoint_id) {
            // A replay: answer as the first time.
            return Ok(wire::CreateEndpointResponse {
                interface: given
                    .mac_address
                    .is_empty()
                    .then(|| wire::EndpointInterface {
                        mac_address: ep.mac.clone(),
                        ..Default::default()
                    }),
            });
        }
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
        let id12 = short(&req.endpoint_id, 11)?;
        let host_veth = format!("fv{id12}");
        let container_veth = format!("fc{id12}");
        if network.driver != Driver::Bridge {
            return self.create_plain_endpoint(
                req,
                &network,
                address,
                address_v6,
                mac,
                container_veth,
            );
        }

        let mut nl = Netlink::new().map_err(kernel("open netlink"))?;
        let br = nl.link_by_name(&network.bridge).map_err(kernel(format!(
            "bridge {} of network {}",
            network.bridge, network.id
        )))?;
        // A leftover pair from an interrupted attempt is replaced.
        delete_link_by_name(&mut nl, &host_veth)?;
        let mut spec = LinkSpec::veth(&container_veth, &host_veth);
        if let Some(m) = network.mtu {
            spec = spec.mtu(m);
        }
        if let Some(m) = mac {
            spec = spec.mac(m);
        }
        nl.create_link(&spec)
            .map_err(kernel(format!("create veth {host_veth}")))?;
        let mut made = || -> Result<MacAddr> {
            let host = nl_link(&mut nl, &host_veth)?;
            nl.set_master(host.index, br.index)
                .map_err(kernel(format!("attach {host_veth} to {}", network.bridge)))?;
            nl.set_up(host.index)
                .map_err(kernel(format!("set {host_veth} up")))?;
            let cont = nl_link(&mut nl, &container_veth)?;
            cont.mac
                .ok_or_else(|| CnmError::Invalid(format!("{container_veth} has no MAC")))
        };
        let cont_mac = match made() {
            Ok(m) => m,
            Err(e) => {
                let _ = delete_link_by_name(&mut nl, &host_veth);
                return Err(e);
            }
        };
        let ep = Endpoint {
            id: req.endpoint_id.clone(),
            network_id: req.network_id.clone(),
            host_veth: host_veth.clone(),
            container_veth,
            address,
            address_v6,
            mac: cont_mac.to_string(),
            sandbox: None,
            ifname: None,
            priority: 0,
            published: Value::Null,
        };
        if let Err(e) = self.isolate(&ep, &network) {
            let _ = delete_link_by_name(&mut nl, &host_veth);
            return Err(e);
        }
        if let Err(e) = self.store.apply(vec![put(ep_key(&ep.id), &ep)?]) {
            let _ = self.unisolate(&ep);
            let _ = delete_link_by_name(&mut nl, &host_veth);
            return Err(e);
        }
        let response = wire::CreateEndpointResponse {
            interface: mac.is_none().then(|| wire::EndpointInterface {
                mac_address: ep.mac.clone(),
                ..Default::default()
            }),
        };
        self.endpoints.insert(ep.id.clone(), ep);
        Ok(response)
    }

    /// Docker endpoints of the macvlan driver (a macvlan on the parent, which
    /// Docker moves into the sandbox) and of null and host (no interface).
    fn create_plain_endpoint(
        &mut self,
        req: &wire::CreateEndpoint,
        network: &Network,
        address: Option<IpNet>,
        address_v6: Option<IpNet>,
        mac: Option<MacAddr>,
        name: String,
    ) -> Result<wire::CreateEndpointResponse> {
        let mut link_mac = String::new();
        let mut made = String::new();
        if let Driver::Macvlan { parent, mode } = &network.driver {
            let mut nl = Netlink::new().map_err(kernel("open netlink"))?;
            let p = nl_link(&mut nl, parent)?;
            delete_link_by_name(&mut nl, &name)?;
            let mut spec = LinkSpec::macvlan(&name, p.index, macvlan_mode(mode)?);
            if let Some(m) = network.mtu {
                spec = spec.mtu(m);
            }
            if let Some(m) = mac {
                spec = spec.mac(m);
            }
            nl.create_link(&spec)
                .map_err(kernel(format!("create macvlan {name} on {parent}")))?;
            link_mac = nl_link(&mut nl, &name)?
                .mac
                .map(|m| m.to_string())
                .unwrap_or_default();
            made = name.clone();
        }
        let ep = Endpoint {
            id: req.endpoint_id.clone(),
            network_id: network.id.clone(),
            host_veth: String::new(),
            container_veth: made,
            address,
            address_v6,
            mac: link_mac,
            sandbox: None,
            ifname: None,
            priority: 0,
            published: Value::Null,
        };
        self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
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
        self.disconnect_outside(&ep)?;
        self.unisolate(&ep)?;
        let mut nl = Netlink::new().map_err(kernel("open netlink"))?;
        for link in [&ep.host_veth, &ep.container_veth] {
            if !link.is_empty() {
                delete_link_by_name(&mut nl, link)?;
            }
        }
        self.store.apply(vec![Change::Delete(ep_key(&ep.id))])?;
        self.endpoints.remove(&ep.id);
        Ok(())
    }

    pub fn endpoint_oper_info(&self, req: &wire::EndpointRef) -> Result<Value> {
        let ep = self
            .endpoints
            .get(&req.endpoint_id)
            .ok_or_else(|| CnmError::not_found("endpoint", &req.endpoint_id))?;
        Ok(serde_json::json!({
            "driver": self.networks.get(&ep.network_id).map(|n| n.driver.name()),
            crate::publish::OPER_PORTMAP: ep.published,
            "host_veth": ep.host_veth,
            "bridge": self.networks.get(&ep.network_id).map(|n| n.bridge.clone()),
            "mac": ep.mac,
        }))
    }

    pub fn join(&mut self, req: &wire::Join) -> Result<wire::JoinResponse> {
        let network = self
            .networks
            .get(&req.network_id)
            .ok_or_else(|| CnmError::not_found("network", &req.network_id))?
            .clone();
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
        let routed = !network.internal && network.driver.has_interface();
        let response = wire::JoinResponse {
            interface_name: network.driver.has_interface().then(|| wire::InterfaceName {
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
        if ep.sandbox.is_none() {
            ep.sandbox = Some(req.sandbox_key.clone());
            self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
            self.endpoints.insert(ep.id.clone(), ep);
        }
        Ok(response)
    }

    pub fn leave(&mut self, req: &wire::EndpointRef) -> Result<()> {
        let Some(mut ep) = self.endpoints.get(&req.endpoint_id).cloned() else {
            return Ok(());
        };
        if ep.sandbox.take().is_some() {
            self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
            self.endpoints.insert(ep.id.clone(), ep);
        }
        Ok(())
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
        let network = self
            .networks
            .get(&ep.network_id)
            .ok_or_else(|| CnmError::not_found("network", &ep.network_id))?
            .clone();
        if !network.driver.has_interface() {
            return Ok(());
        }
        self.connect_outside(&ep, &network, req.options.get(keys::PORT_MAP))
    }

    pub fn revoke_external_connectivity(&mut self, req: &wire::EndpointRef) -> Result<()> {
        match self.endpoints.get(&req.endpoint_id).cloned() {
            Some(ep) => self.disconnect_outside(&ep),
            None => Ok(()),
        }
    }
}
pub(crate) fn nl_link(nl: &mut Netlink, name: &str) -> Result<ferry_linux::Link> {
    nl.link_by_name(name)
        .map_err(kernel(format!("look up {name}")))
}

/// Deletes a link if it exists.
pub(crate) fn delete_link_by_name(nl: &mut Netlink, name: &str) -> Result<()> {
    match nl.link_by_name(name) {
        Ok(l) => match nl.delete_link(l.index) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(kernel(format!("delete {name}"))(e)),
        },
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(kernel(format!("look up {name}"))(e)),
    }
}

/// Prefixes the host routes (main table, both families, defaults excluded):
/// an automatically chosen pool must not collide with them.
pub(crate) fn host_routes() -> Vec<IpNet> {
    let Ok(mut nl) = Netlink::new() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for fam in [Family::V4, Family::V6] {
        if let Ok(routes) = nl.routes(fam, Some(ferry_linux::TABLE_MAIN)) {
            out.extend(
                routes
                    .into_iter()
                    .map(|r| r.dst)
                    .filter(|d| d.prefix_len() > 0 && !d.addr().is_unicast_link_local_v6()),
            );
        }
    }
    out
}

trait LinkLocal {
    fn is_unicast_link_local_v6(&self) -> bool;
}

impl LinkLocal for IpAddr {
    fn is_unicast_link_local_v6(&self) -> bool {
        matches!(self, IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80)
    }
}
