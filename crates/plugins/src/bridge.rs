//! `bridge`: a veth from the container to a Linux bridge on the host, with
//! addresses from the delegated IPAM plugin and, with `isGateway`, the
//! gateway address on the bridge. Config keys and defaults as the reference.

use crate::conf::{self, driver_err};
use crate::endpoint::{self, Rollback};
use crate::{delegate, netconf, veth};
use ferry_cni::result::{Result as CniResultType, Route};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_drivers::link::detach::Deleter;
use ferry_drivers::network::bridge::BridgeDriver;
use ferry_drivers::network::{BridgeConfig, NetworkDriver, NetworkKind, NetworkSpec};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;

/// The reference's default bridge name.
pub const DEFAULT_BRIDGE: &str = "cni0";
/// Index of the container interface in the result (bridge, host veth, container).
const CONTAINER_IFACE: usize = 2;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BridgeConf {
    bridge: String,
    #[serde(rename = "isGateway")]
    is_gateway: bool,
    #[serde(rename = "isDefaultGateway")]
    is_default_gateway: bool,
    #[serde(rename = "forceAddress")]
    force_address: bool,
    mtu: i64,
    #[serde(rename = "hairpinMode")]
    hairpin_mode: bool,
    #[serde(rename = "promiscMode")]
    promisc_mode: bool,
    vlan: i64,
    #[serde(rename = "vlanTrunk")]
    vlan_trunk: Option<Value>,
    #[serde(rename = "preserveDefaultVlan")]
    preserve_default_vlan: Option<bool>,
    enabledad: bool,
    macspoofchk: bool,
    #[serde(rename = "disableContainerInterface")]
    disable_container_interface: bool,
    #[serde(rename = "portIsolation")]
    port_isolation: bool,
}

impl BridgeConf {
    /// The config with the reference's defaults filled in.
    fn parse(args: &CmdArgs) -> CniResult<BridgeConf> {
        let mut c: BridgeConf = conf::parse(args)?;
        if c.bridge.is_empty() {
            c.bridge = DEFAULT_BRIDGE.to_string();
        }
        if c.is_default_gateway {
            c.is_gateway = true;
        }
        Ok(c)
    }

    /// Parses and checks the config (ADD, CHECK): nothing is touched.
    fn load(args: &CmdArgs) -> CniResult<BridgeConf> {
        let c = BridgeConf::parse(args)?;
        driver()
            .validate(&c.network(args, Vec::new())?)
            .map_err(driver_err)?;
        if c.vlan < 0 || c.vlan > 4094 {
            return Err(CniError::invalid_config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                c.vlan
            )));
        }
        let no_filtering = "VLANs need bridge VLAN filtering, which this kernel is built without";
        if c.vlan != 0 {
            return Err(netconf::unsupported(
                "vlan",
                &Value::from(c.vlan),
                no_filtering,
            ));
        }
        if let Some(t) = c.vlan_trunk.as_ref().filter(|t| !t.is_null()) {
            return Err(netconf::unsupported("vlanTrunk", t, no_filtering));
        }
        if c.preserve_default_vlan == Some(false) {
            return Err(netconf::unsupported(
                "preserveDefaultVlan",
                &Value::Bool(false),
                no_filtering,
            ));
        }
        if c.disable_container_interface && args.config.get("ipam").is_some_and(|i| !i.is_null()) {
            return Err(CniError::invalid_config(
                "disableContainerInterface cannot be used with IPAM",
            ));
        }
        Ok(c)
    }

    /// The network as the driver takes it, with the gateway addresses the
    /// bridge gets.
    fn network(&self, args: &CmdArgs, gateways: Vec<IpNet>) -> CniResult<NetworkSpec> {
        Ok(NetworkSpec {
            id: conf::network_name(args).to_string(),
            kind: NetworkKind::Bridge(BridgeConfig {
                bridge: self.bridge.clone(),
                promisc: self.promisc_mode,
                hairpin: self.hairpin_mode,
                port_isolation: self.port_isolation,
                force_address: self.force_address,
                macspoofchk: self.macspoofchk,
                // The `firewall` plugin's job in CNI.
                isolate: false,
                icc: true,
                enabledad: self.enabledad,
            }),
            mtu: conf::mtu(self.mtu)?,
            gateways,
            forwarding: self.is_gateway,
            masquerade: netconf::ip_masq(args)?,
        })
    }
}

fn driver() -> BridgeDriver {
    BridgeDriver::new(Deleter::Fork, ferry_drivers::state_dir())
}

/// The first address of the subnet: the gateway when IPAM gave none.
fn first_host(net: &IpNet) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(1)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(1)).into()),
    }
}

/// Fills gateways and default routes as the reference's `calcGateways`, and
/// returns the gateway prefixes to put on the bridge.
fn calc_gateways(result: &mut CniResultType, c: &BridgeConf) -> Vec<IpNet> {
    let mut gws = Vec::new();
    let mut default_found = [false, false];
    for i in 0..result.ips.len() {
        let v4 = result.ips[i].is_ipv4();
        result.ips[i].interface = Some(CONTAINER_IFACE);
        if result.ips[i].gateway.is_none() && c.is_gateway {
            result.ips[i].gateway = Some(first_host(&result.ips[i].address));
        }
        let fam = usize::from(!v4);
        if c.is_default_gateway && !default_found[fam] {
            let default = if v4 {
                IpNet::V4(Default::default())
            } else {
                IpNet::V6(Default::default())
            };
            let exists = result
                .routes
                .iter()
                .any(|r| r.gw.is_some() && r.dst == default);
            if !exists {
                result
                    .routes
                    .push(Route::new(default, result.ips[i].gateway));
            }
            default_found[fam] = true;
        }
        if c.is_gateway {
            if let Some(gw) = result.ips[i].gateway {
                if let Ok(net) = IpNet::new(gw, result.ips[i].address.prefix_len()) {
                    gws.push(net);
                }
            }
        }
    }
    gws
}

pub struct Bridge;

impl Plugin for Bridge {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let c = BridgeConf::load(args)?;
        let mac = netconf::container_mac(args)?;
        let ipam_type = match args.config.get("ipam") {
            Some(v) if !v.is_null() => Some(conf::ipam_type(args)?),
            _ => None,
        };
        conf::open_netns(&args.netns)?;
        // Before IPAM, so a refused ADD changes nothing.
        veth::ensure_absent_at(&args.netns, &args.ifname).map_err(driver_err)?;
        let d = driver();
        let mut rollback = Rollback::new(args, &d);
        let mut result = CniResultType {
            cni_version: args.cni_version.clone(),
            ..CniResultType::default()
        };
        // IPAM that talks through the link (dhcp) comes after the link.
        let early = match ipam_type.as_deref().filter(|t| delegate::needs_link(t)) {
            Some(_) => {
                let net = c.network(args, Vec::new())?;
                d.create_network(&net).map_err(driver_err)?;
                Some(endpoint::create(&mut rollback, &net, mac, Vec::new())?)
            }
            None => None,
        };
        let mut gateways = Vec::new();
        if let Some(t) = &ipam_type {
            let ipam = delegate::ipam_add_for(t, args, CONTAINER_IFACE)?;
            rollback.ipam = Some(t.clone());
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            result.dns = ipam.dns;
            gateways = calc_gateways(&mut result, &c);
        }
        let net = c.network(args, gateways)?;
        d.create_network(&net).map_err(driver_err)?;
        let join = ipam_type.is_some() || !c.disable_container_interface;
        let ep = match early {
            Some(ep) => endpoint::finish(&mut rollback, &net, ep, &result, CONTAINER_IFACE, join)?,
            None => endpoint::add(&mut rollback, &net, mac, &result, CONTAINER_IFACE, join)?,
        };
        if let Some(dns) = netconf::dns(args)? {
            result.dns = dns;
        }
        let [host, cont] = endpoint::veth_interfaces(args, &ep);
        let bridge = endpoint::interface(ep.master.as_deref().unwrap_or(""), ep.master_mac, "");
        result.interfaces = vec![bridge, host, cont];
        rollback.armed = false;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let mut c = BridgeConf::parse(args)?;
        c.mtu = 0; // DEL makes no links: a bad MTU must not stop it
        let net = c.network(args, Vec::new())?;
        let ipam = match args.config.get("ipam") {
            Some(i) if !i.is_null() => Some(conf::ipam_type(args)?),
            _ => None,
        };
        endpoint::del(&driver(), &net, args, ipam.as_deref())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let c = BridgeConf::load(args)?;
        if args.config.get("ipam").is_some_and(|i| !i.is_null()) {
            let t = conf::ipam_type(args)?;
            delegate::ipam_pass(&t, "CHECK", args)?;
        }
        let prev = conf::required_prev_result(args, "bridge")?;
        let idx = conf::prev_container_iface(&prev, &args.ifname)?;
        let mut ep = endpoint::of_request(args, Vec::new());
        let want_mac = &prev.interfaces[idx].mac;
        if !want_mac.is_empty() {
            ep.mac = Some(want_mac.parse().map_err(|_| {
                CniError::internal(format!(
                    "prevResult says {} has MAC {want_mac}, which is no MAC address",
                    args.ifname
                ))
            })?);
        }
        ep.host_ifname = endpoint::host_iface(&prev, &c.bridge);
        let net = c.network(args, Vec::new())?;
        driver()
            .check(&net, &ep, &conf::iface_config(&prev, idx))
            .map_err(driver_err)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        if args.config.get("ipam").is_some_and(|i| !i.is_null()) {
            delegate::ipam_pass(&conf::ipam_type(args)?, "STATUS", args)?;
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        if args.config.get("ipam").is_some_and(|i| !i.is_null()) {
            delegate::ipam_pass(&conf::ipam_type(args)?, "GC", args)?;
        }
        let mut c = BridgeConf::parse(args)?;
        c.mtu = 0; // GC makes no links
        let valid: Vec<String> = crate::portmap::valid_attachments(args)?
            .into_iter()
            .map(|(cid, ifname)| format!("{cid}:{ifname}"))
            .collect();
        driver()
            .gc(&c.network(args, Vec::new())?, &valid)
            .map_err(driver_err)
    }
}
