//! `ptp`: a veth pair with the container's addresses routed point-to-point
//! through the host: the gateway address on the host end (/32 or /128), a
//! host route to each container address, and in the container a link route
//! to the gateway with everything else via it. As the reference plugin.

use crate::conf::{self, kernel};
use crate::{delegate, detach, iface, netconf, veth};
use ferry_cni::result::{Interface, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_linux::{AddrOptions, Netlink, Route, SCOPE_HOST, SCOPE_LINK, SCOPE_UNIVERSE};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

/// Index of the container interface in the result (host veth, container).
const CONTAINER_IFACE: usize = 1;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PtpConf {
    mtu: i64,
}

impl PtpConf {
    fn load(args: &CmdArgs) -> CniResult<PtpConf> {
        let c: PtpConf = conf::parse(args)?;
        if c.mtu < 0 || c.mtu > 65535 {
            return Err(CniError::invalid_config(format!("invalid MTU {}", c.mtu)));
        }
        netconf::ip_masq(args)?;
        Ok(c)
    }
}

pub struct Ptp;

fn host_prefix(ip: std::net::IpAddr) -> IpNet {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(ip, bits).unwrap_or_else(|_| IpNet::from(ip))
}

/// Releases IPAM and removes the container veth when ADD fails halfway.
struct Rollback<'a> {
    args: &'a CmdArgs,
    ipam: &'a str,
    netns: Option<&'a ferry_linux::Netns>,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(netns) = self.netns {
            let _ = detach::start_by_name(detach::Deleter::Fork, netns, &self.args.ifname)
                .map(detach::Pending::finish);
        }
        let _ = delegate::ipam_pass(self.ipam, "DEL", self.args);
    }
}

impl Plugin for Ptp {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let c = PtpConf::load(args)?;
        let ipam_type = conf::ipam_type(args)?;
        let netns = conf::open_netns(&args.netns)?;
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let mut cont_nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        veth::ensure_absent(&mut cont_nl, &args.ifname).map_err(conf::driver_err)?;

        let ipam = delegate::ipam_add_for(&ipam_type, args, CONTAINER_IFACE)?;
        let mut rollback = Rollback {
            args,
            ipam: &ipam_type,
            netns: Some(&netns),
            armed: true,
        };
        let has_v4 = ipam.ips.iter().any(|ip| ip.is_ipv4());
        let has_v6 = ipam.ips.iter().any(|ip| !ip.is_ipv4());
        if has_v4 {
            ferry_linux::sysctl::write_if_different("net.ipv4.ip_forward", "1")
                .map_err(kernel("failed to enable IPv4 forwarding"))?;
        }
        if has_v6 {
            ferry_linux::sysctl::write_if_different("net.ipv6.conf.all.forwarding", "1")
                .map_err(kernel("failed to enable IPv6 forwarding"))?;
        }

        let mtu = (c.mtu > 0).then_some(c.mtu as u32);
        let pair = veth::create(
            &mut host_nl,
            &mut cont_nl,
            &netns,
            &args.ifname,
            mtu,
            None,
            has_v6,
        )
        .map_err(conf::driver_err)?;
        let mut result = CniResultType {
            cni_version: args.cni_version.clone(),
            ips: ipam.ips,
            routes: ipam.routes,
            dns: ipam.dns,
            ..CniResultType::default()
        };
        iface::configure(
            &netns,
            &mut cont_nl,
            &args.ifname,
            &conf::iface_config(&result, CONTAINER_IFACE),
            iface::Options::default(),
        )
        .map_err(conf::driver_err)?;
        let cont_index = pair.container.index;
        for ip in &result.ips {
            let Some(gw) = ip.gateway else {
                return Err(CniError::internal(format!(
                    "IPAM gave {} no gateway: ptp routes through the gateway address",
                    ip.address
                )));
            };
            // Replace the connected subnet route by a link route to the
            // gateway and the subnet via the gateway.
            let subnet = ip.address.trunc();
            let _ = cont_nl.del_route(&Route::new(subnet).oif(cont_index));
            let src = ip.address.addr();
            cont_nl
                .add_route(
                    &Route::new(host_prefix(gw))
                        .oif(cont_index)
                        .scope(SCOPE_LINK)
                        .src(src),
                )
                .map_err(kernel(format!("failed to add route to gateway {gw}")))?;
            cont_nl
                .add_route(
                    &Route::new(subnet)
                        .oif(cont_index)
                        .gateway(gw)
                        .scope(SCOPE_UNIVERSE)
                        .src(src),
                )
                .map_err(kernel(format!("failed to add route {subnet} via {gw}")))?;
            // Host side: the gateway address, and a route to the container.
            let opts = AddrOptions {
                nodad: true,
                ..AddrOptions::default()
            };
            match host_nl.add_address(pair.host.index, host_prefix(gw), opts) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => {
                    return Err(kernel(format!("failed to add {gw} to {}", pair.host.name))(
                        e,
                    ))
                }
            }
            host_nl
                .add_route(
                    &Route::new(host_prefix(ip.address.addr()))
                        .oif(pair.host.index)
                        .scope(SCOPE_HOST),
                )
                .map_err(kernel(format!(
                    "failed to add host route to {}",
                    ip.address.addr()
                )))?;
        }
        if let Some(dns) = netconf::dns(args)? {
            result.dns = dns;
        }
        let cont = cont_nl
            .link_by_index(cont_index)
            .map_err(kernel("failed to re-read container interface"))?;
        result.interfaces = vec![
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
            let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
            netconf::masq_add(args, &addrs)?;
        }
        rollback.armed = false;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let _c: PtpConf = conf::parse(args)?;
        // The link goes first so that the kernel's part of the delete runs
        // while the rest of DEL (IPAM, nftables) does: see crate::detach.
        let link = detach::start_in_netns(detach::Deleter::Fork, &args.netns, &args.ifname)
            .map_err(conf::driver_err);
        if netconf::ip_masq(args)? {
            netconf::masq_del(args)?;
        }
        let ipam_type = conf::ipam_type(args)?;
        delegate::ipam_pass(&ipam_type, "DEL", args)?;
        link?.finish();
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let _c = PtpConf::load(args)?;
        let ipam_type = conf::ipam_type(args)?;
        delegate::ipam_pass(&ipam_type, "CHECK", args)?;
        let prev = conf::required_prev_result(args, "ptp")?;
        if netconf::ip_masq(args)? {
            netconf::masq_check(args)?;
        }
        let netns = conf::open_netns(&args.netns)?;
        let mut cont_nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let idx = conf::prev_container_iface(&prev, &args.ifname)?;
        veth::container_end(&mut cont_nl, &args.ifname).map_err(conf::driver_err)?;
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        for host in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
            host_nl
                .link_by_name(&host.name)
                .map_err(kernel(format!("host veth {} is missing", host.name)))?;
        }
        // Routes: ptp rewrote the subnet route, so check addresses and the
        // result's own routes only.
        iface::check(&mut cont_nl, &args.ifname, &conf::iface_config(&prev, idx))
            .map_err(conf::driver_err)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        delegate::ipam_pass(&conf::ipam_type(args)?, "STATUS", args)
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        delegate::ipam_pass(&conf::ipam_type(args)?, "GC", args)
    }
}
