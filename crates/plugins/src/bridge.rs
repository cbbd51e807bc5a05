//! `bridge`: a veth from the container to a Linux bridge on the host, with
//! addresses from the delegated IPAM plugin and, with `isGateway`, the
//! gateway address on the bridge. Config keys and defaults as the reference.

use crate::conf::{self, kernel};
use crate::{delegate, detach, iface, netconf, veth};
use ferry_cni::result::{Interface, Result as CniResultType, Route};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_linux::{AddrOptions, BridgePortFlags, Family, Link, LinkSpec, Netlink};
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
    fn load(args: &CmdArgs) -> CniResult<BridgeConf> {
        let mut c: BridgeConf = conf::parse(args)?;
        if c.bridge.is_empty() {
            c.bridge = DEFAULT_BRIDGE.to_string();
        }
        if c.is_default_gateway {
            c.is_gateway = true;
        }
        ferry_linux::check_ifname(&c.bridge)
            .map_err(|e| CniError::invalid_config(format!("bridge name {:?}: {e}", c.bridge)))?;
        if c.mtu < 0 || c.mtu > 65535 {
            return Err(CniError::invalid_config(format!("invalid MTU {}", c.mtu)));
        }
        if c.hairpin_mode && c.promisc_mode {
            return Err(CniError::invalid_config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
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
        netconf::ip_masq(args)?;
        if c.disable_container_interface && args.config.get("ipam").is_some_and(|i| !i.is_null()) {
            return Err(CniError::invalid_config(
                "disableContainerInterface cannot be used with IPAM",
            ));
        }
        Ok(c)
    }

    fn mtu(&self) -> Option<u32> {
        (self.mtu > 0).then_some(self.mtu as u32)
    }
}

pub struct Bridge;

/// Finds or creates the bridge, sets promiscuous mode if asked, and brings it up.
fn ensure_bridge(nl: &mut Netlink, c: &BridgeConf) -> CniResult<Link> {
    let found = match nl.link_by_name(&c.bridge) {
        Ok(l) => Some(l),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(kernel(format!("failed to look up bridge {}", c.bridge))(e)),
    };
    let br = match found {
        Some(l) => l,
        None => {
            let mut spec = LinkSpec::bridge(&c.bridge);
            if let Some(m) = c.mtu() {
                spec = spec.mtu(m);
            }
            match nl.create_link(&spec) {
                // Another ADD may have created it a moment ago.
                Ok(())
                | Err(ferry_linux::Error::Kernel {
                    errno: libc::EEXIST,
                    ..
                }) => {}
                Err(e) => return Err(kernel(format!("failed to create bridge {}", c.bridge))(e)),
            }
            // The bridge owns its routes: no router advertisements (as the reference).
            let _ = ferry_linux::sysctl::write_if_different(
                &format!("net.ipv6.conf.{}.accept_ra", c.bridge),
                "0",
            );
            nl.link_by_name(&c.bridge)
                .map_err(kernel(format!("failed to look up bridge {}", c.bridge)))?
        }
    };
    if br.kind.as_deref() != Some("bridge") {
        return Err(CniError::invalid_config(format!(
            "{:?} already exists but is not a bridge",
            c.bridge
        )));
    }
    if c.promisc_mode && !br.promisc {
        nl.set_promisc(br.index, true)
            .map_err(kernel("failed to set bridge promiscuous"))?;
    }
    if !br.up {
        nl.set_up(br.index)
            .map_err(kernel(format!("failed to set bridge {} up", c.bridge)))?;
    }
    Ok(br)
}

/// Puts the gateway address on the bridge (the reference's `ensureAddr`).
fn ensure_gateway_addr(nl: &mut Netlink, br: &Link, gw: IpNet, force: bool) -> CniResult<()> {
    let family = if gw.addr().is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let addrs = nl
        .addresses(Some(br.index), family)
        .map_err(kernel("could not get list of IP addresses"))?;
    for a in &addrs {
        if a.net == gw {
            return Ok(());
        }
        // IPv4: one address per bridge. IPv6: several, unless the subnets overlap.
        let conflicts =
            gw.addr().is_ipv4() || a.net.contains(&gw.addr()) || gw.contains(&a.net.addr());
        if conflicts {
            if !force {
                return Err(CniError::internal(format!(
                    "{:?} already has an IP address different from {gw}",
                    br.name
                )));
            }
            nl.del_address(br.index, a.net).map_err(kernel(format!(
                "could not remove {} from the bridge",
                a.net
            )))?;
        }
    }
    let opts = AddrOptions {
        nodad: true,
        ..AddrOptions::default()
    };
    match nl.add_address(br.index, gw, opts) {
        Ok(()) => {}
        Err(e) if e.is_exists() => {}
        Err(e) => return Err(kernel(format!("could not add IP address to {:?}", br.name))(e)),
    }
    // Pin the bridge's MAC: otherwise it follows the lowest port MAC as ports churn.
    if let Some(mac) = br.mac {
        nl.set_mac(br.index, mac)
            .map_err(kernel("could not set bridge's mac"))?;
    }
    Ok(())
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

fn enable_forwarding(v4: bool, v6: bool) -> CniResult<()> {
    if v4 {
        ferry_linux::sysctl::write_if_different("net.ipv4.ip_forward", "1")
            .map_err(kernel("failed to enable IPv4 forwarding"))?;
    }
    if v6 {
        ferry_linux::sysctl::write_if_different("net.ipv6.conf.all.forwarding", "1")
            .map_err(kernel("failed to enable IPv6 forwarding"))?;
    }
    Ok(())
}

/// Undoes a partial ADD: deletes the container veth and releases IPAM.
struct Rollback<'a> {
    args: &'a CmdArgs,
    ipam: Option<String>,
    netns: &'a ferry_linux::Netns,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = detach::start_by_name(detach::Deleter::Fork, self.netns, &self.args.ifname)
            .map(detach::Pending::finish);
        if let Some(t) = &self.ipam {
            let _ = delegate::ipam_pass(t, "DEL", self.args);
        }
    }
}

impl Plugin for Bridge {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let c = BridgeConf::load(args)?;
        let mac = netconf::container_mac(args)?;
        let ipam_type = match args.config.get("ipam") {
            Some(v) if !v.is_null() => Some(conf::ipam_type(args)?),
            _ => None,
        };
        let netns = conf::open_netns(&args.netns)?;
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let mut cont_nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;

        // IPAM first, so a refused address changes nothing on the host.
        veth::ensure_absent(&mut cont_nl, &args.ifname).map_err(conf::driver_err)?;
        let mut rollback = Rollback {
            args,
            ipam: None,
            netns: &netns,
            armed: true,
        };
        let ipam = match &ipam_type {
            Some(t) => {
                let ipam = delegate::ipam_add_for(t, args, CONTAINER_IFACE)?;
                rollback.ipam = Some(t.clone());
                Some(ipam)
            }
            None => None,
        };

        let br = ensure_bridge(&mut host_nl, &c)?;
        let pair = veth::create(
            &mut host_nl,
            &mut cont_nl,
            &netns,
            &args.ifname,
            c.mtu(),
            mac,
            // A bridge port forwards IPv6 frames without IPv6 of its own.
            false,
        )
        .map_err(conf::driver_err)?;
        host_nl
            .set_master(pair.host.index, br.index)
            .map_err(kernel(format!(
                "failed to connect {} to bridge {}",
                pair.host.name, c.bridge
            )))?;
        if c.hairpin_mode || c.port_isolation {
            let flags = BridgePortFlags {
                hairpin: c.hairpin_mode.then_some(true),
                isolated: c.port_isolation.then_some(true),
                learning: None,
            };
            host_nl
                .set_bridge_port_flags(pair.host.index, &flags)
                .map_err(kernel(format!(
                    "failed to set port flags on {}",
                    pair.host.name
                )))?;
        }

        let mut result = CniResultType {
            cni_version: args.cni_version.clone(),
            ..CniResultType::default()
        };
        if let Some(ipam) = ipam {
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            result.dns = ipam.dns;
            let gateways = calc_gateways(&mut result, &c);
            iface::configure(
                &netns,
                &mut cont_nl,
                &args.ifname,
                &conf::iface_config(&result, CONTAINER_IFACE),
                iface::Options {
                    // Hairpin and promiscuous bridges echo neighbour
                    // solicitations, which fails DAD: like the reference,
                    // turn DAD off on the container interface unless
                    // `enabledad` asks for it.
                    accept_dad_off: !c.enabledad,
                    ..iface::Options::default()
                },
            )
            .map_err(conf::driver_err)?;
            for gw in &gateways {
                ensure_gateway_addr(&mut host_nl, &br, *gw, c.force_address)?;
            }
            if c.is_gateway {
                enable_forwarding(
                    gateways.iter().any(|g| g.addr().is_ipv4()),
                    gateways.iter().any(|g| g.addr().is_ipv6()),
                )?;
            }
        } else if !c.disable_container_interface {
            cont_nl
                .set_up(pair.container.index)
                .map_err(kernel(format!("failed to set {} up", args.ifname)))?;
        }
        if let Some(dns) = netconf::dns(args)? {
            result.dns = dns;
        }

        // Re-read MACs: the bridge's changes when its first port or address arrives.
        let br = host_nl
            .link_by_index(br.index)
            .map_err(kernel("failed to re-read bridge"))?;
        let cont = cont_nl
            .link_by_index(pair.container.index)
            .map_err(kernel("failed to re-read container interface"))?;
        result.interfaces = vec![
            Interface {
                name: br.name.clone(),
                mac: iface::mac_string(&br),
                ..Interface::default()
            },
            Interface {
                name: pair.host.name.clone(),
                mac: iface::mac_string(&pair.host),
                ..Interface::default()
            },
            Interface {
                name: args.ifname.clone(),
                mac: iface::mac_string(&cont),
                sandbox: args.netns.clone(),
                ..Interface::default()
            },
        ];
        if netconf::ip_masq(args)? {
            let addrs: Vec<ipnet::IpNet> = result.ips.iter().map(|i| i.address).collect();
            netconf::masq_add(args, &addrs)?;
        }
        if c.macspoofchk {
            let mac = cont
                .mac
                .ok_or_else(|| CniError::internal(format!("{} has no MAC address", args.ifname)))?;
            netconf::macspoof_add(args, &pair.host.name, mac.octets())?;
        }
        rollback.armed = false;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c: BridgeConf = conf::parse(args)?;
        // The link goes first so that the kernel's part of the delete runs
        // while the rest of DEL (IPAM, nftables) does: see crate::detach.
        let link = detach::start_in_netns(detach::Deleter::Fork, &args.netns, &args.ifname)
            .map_err(conf::driver_err);
        if netconf::ip_masq(args)? {
            netconf::masq_del(args)?;
        }
        if c.macspoofchk {
            netconf::macspoof_del(args)?;
        }
        if args.config.get("ipam").is_some_and(|i| !i.is_null()) {
            let t = conf::ipam_type(args)?;
            delegate::ipam_pass(&t, "DEL", args)?;
        }
        link?.finish();
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let c = BridgeConf::load(args)?;
        if args.config.get("ipam").is_some_and(|i| !i.is_null()) {
            let t = conf::ipam_type(args)?;
            delegate::ipam_pass(&t, "CHECK", args)?;
        }
        let prev = conf::required_prev_result(args, "bridge")?;
        if netconf::ip_masq(args)? {
            netconf::masq_check(args)?;
        }
        if c.macspoofchk {
            netconf::macspoof_check(args)?;
        }
        let netns = conf::open_netns(&args.netns)?;
        let mut cont_nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let idx = conf::prev_container_iface(&prev, &args.ifname)?;
        let cont = veth::container_end(&mut cont_nl, &args.ifname).map_err(conf::driver_err)?;
        let want_mac = &prev.interfaces[idx].mac;
        if !want_mac.is_empty() && !want_mac.eq_ignore_ascii_case(&iface::mac_string(&cont)) {
            return Err(CniError::internal(format!(
                "{} has MAC {}, prevResult says {want_mac}",
                args.ifname,
                iface::mac_string(&cont)
            )));
        }
        let br = host_nl
            .link_by_name(&c.bridge)
            .map_err(kernel(format!("bridge {} is missing", c.bridge)))?;
        if br.kind.as_deref() != Some("bridge") {
            return Err(CniError::internal(format!("{} is not a bridge", c.bridge)));
        }
        // The host veth is the prevResult interface whose index is the
        // container veth's peer; anything else (an ifb a later plugin added)
        // is not ours to check.
        let mut found = false;
        for host in prev
            .interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty() && i.name != c.bridge)
        {
            let Ok(link) = host_nl.link_by_name(&host.name) else {
                continue;
            };
            if link.kind.as_deref() != Some("veth") || Some(link.index) != cont.parent {
                continue;
            }
            if link.master != Some(br.index) {
                return Err(CniError::internal(format!(
                    "host veth {} is not a port of bridge {}",
                    host.name, c.bridge
                )));
            }
            found = true;
        }
        if !found {
            return Err(CniError::internal(format!(
                "CNI veth created for bridge {} was not found",
                c.bridge
            )));
        }
        iface::check(&mut cont_nl, &args.ifname, &conf::iface_config(&prev, idx))
            .map_err(conf::driver_err)
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
        netconf::macspoof_gc(args)
    }
}
