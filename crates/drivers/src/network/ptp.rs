//! The ptp driver: a veth pair with the container's addresses routed
//! point-to-point through the host: the gateway address on the host end
//! (/32 or /128), a host route to each container address, and in the
//! container a link route to the gateway with its subnet via it. As the
//! reference plugin.

use super::veth_endpoint as ve;
use super::{Endpoint, EndpointSpec, External, NetworkDriver, NetworkKind, NetworkSpec, Placement};
use crate::link::detach::{Deleter, Pending};
use crate::link::iface::{self, InterfaceConfig};
use crate::link::veth::{self, HostEnd};
use crate::{Error, Result};
use ferry_linux::{AddrOptions, Route, SCOPE_HOST, SCOPE_LINK, SCOPE_UNIVERSE};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;

/// The ptp driver.
pub struct PtpDriver {
    /// Who sends link deletes (a plugin forks, a daemon uses a thread).
    pub deleter: Deleter,
    /// Root of the packet-filter drivers' bookkeeping.
    pub state_dir: PathBuf,
}

impl PtpDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        PtpDriver { deleter, state_dir }
    }
}

fn host_prefix(ip: IpAddr) -> IpNet {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(ip, bits).unwrap_or_else(|_| IpNet::from(ip))
}

fn ensure_ptp(net: &NetworkSpec) -> Result<()> {
    match &net.kind {
        NetworkKind::Ptp => Ok(()),
        _ => Err(net.wrong_kind("ptp")),
    }
}

impl NetworkDriver for PtpDriver {
    fn name(&self) -> &'static str {
        "ptp"
    }

    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        ensure_ptp(net)?;
        ve::validate_mtu(net)
    }

    /// Nothing on the host is shared between ptp endpoints.
    fn create_network(&self, net: &NetworkSpec) -> Result<()> {
        ensure_ptp(net)
    }

    fn delete_network(&self, net: &NetworkSpec) -> Result<()> {
        ensure_ptp(net)
    }

    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        ensure_ptp(net)?;
        let v6 = ep.addresses.iter().any(|a| a.addr().is_ipv6());
        let mut nl = ve::host_netlink()?;
        if net.forwarding {
            ve::enable_forwarding(&mut nl, ep.addresses.iter().any(|a| a.addr().is_ipv4()), v6)?;
        }
        // An IPv4-only attachment's host end needs no IPv6 (see link::veth).
        let host_end = HostEnd {
            ipv6: v6,
            bridge: None,
        };
        let (_, endpoint) = ve::create_pair(&mut nl, net, ep, place, host_end)?;
        Ok(endpoint)
    }

    fn delete_endpoint(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<Pending> {
        ensure_ptp(net)?;
        ve::delete(self.deleter, ep)
    }

    fn join(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        ifname: &str,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        ensure_ptp(net)?;
        let host_ifname = ep
            .host_ifname
            .as_deref()
            .ok_or_else(|| Error::Invalid(format!("ptp endpoint {} has no host veth", ep.id)))?;
        let (_ns, mut cont_nl, joined) =
            ve::join(ep, netns, ifname, cfg, iface::Options::default())?;
        let cont_index = cont_nl
            .link_by_name(ifname)
            .map_err(Error::kernel(format!("failed to look up {ifname}")))?
            .index;
        let mut host_nl = ve::host_netlink()?;
        let host_index = host_nl
            .link_by_name(host_ifname)
            .map_err(Error::kernel(format!("failed to look up {host_ifname}")))?
            .index;
        for ip in &cfg.addresses {
            let Some(gw) = ip.gateway else {
                return Err(Error::Failed(format!(
                    "IPAM gave {} no gateway: ptp routes through the gateway address",
                    ip.net
                )));
            };
            // Replace the connected subnet route by a link route to the
            // gateway and the subnet via the gateway.
            let subnet = ip.net.trunc();
            let _ = cont_nl.del_route(&Route::new(subnet).oif(cont_index));
            let src = ip.net.addr();
            cont_nl
                .add_route(
                    &Route::new(host_prefix(gw))
                        .oif(cont_index)
                        .scope(SCOPE_LINK)
                        .src(src),
                )
                .map_err(Error::kernel(format!(
                    "failed to add route to gateway {gw}"
                )))?;
            cont_nl
                .add_route(
                    &Route::new(subnet)
                        .oif(cont_index)
                        .gateway(gw)
                        .scope(SCOPE_UNIVERSE)
                        .src(src),
                )
                .map_err(Error::kernel(format!(
                    "failed to add route {subnet} via {gw}"
                )))?;
            // Host side: the gateway address, and a route to the container.
            let opts = AddrOptions {
                nodad: true,
                ..AddrOptions::default()
            };
            match host_nl.add_address(host_index, host_prefix(gw), opts) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => {
                    return Err(Error::kernel(format!(
                        "failed to add {gw} to {host_ifname}"
                    ))(e))
                }
            }
            host_nl
                .add_route(
                    &Route::new(host_prefix(src))
                        .oif(host_index)
                        .scope(SCOPE_HOST),
                )
                .map_err(Error::kernel(format!("failed to add host route to {src}")))?;
        }
        Ok(joined)
    }

    fn check(&self, net: &NetworkSpec, ep: &Endpoint, cfg: &InterfaceConfig) -> Result<()> {
        ensure_ptp(net)?;
        ve::check_outside(&self.state_dir, net, ep)?;
        let mut cont_nl = ve::container_netlink(ep)?;
        veth::container_end(&mut cont_nl, &ep.ifname)?;
        if let Some(host) = &ep.host_ifname {
            ve::host_netlink()?
                .link_by_name(host)
                .map_err(Error::kernel(format!("host veth {host} is missing")))?;
        }
        // Routes: ptp rewrote the subnet route, so check addresses and the
        // result's own routes only.
        iface::check(&mut cont_nl, &ep.ifname, cfg)
    }

    fn program_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        ext: &External,
    ) -> Result<()> {
        ensure_ptp(net)?;
        ve::program_outside(&self.state_dir, net, ep, ext, ep.host_ifname.as_deref())
    }

    fn revoke_external_connectivity(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
        ensure_ptp(net)?;
        ve::revoke_outside(&self.state_dir, net, ep)
    }
}
