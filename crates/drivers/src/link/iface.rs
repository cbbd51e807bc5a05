//! Configuring an interface inside a namespace (the reference's
//! `ipam.ConfigureIface`): addresses, link up, IPv6 settling, routes. The
//! doors describe what they want as an [`InterfaceConfig`]; a CNI result and
//! a CNM endpoint both convert to one.

use crate::kernel;
use crate::{Error, Result};
use ferry_linux::{AddrOptions, Family, Link, Netlink, Netns, Route};
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// An address of the interface, and the gateway reached through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub net: IpNet,
    pub gateway: Option<IpAddr>,
}

/// A route through the interface. Without a gateway it uses the first
/// gateway of its family among the addresses, as the reference does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteConfig {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u8>,
}

impl RouteConfig {
    /// A route to `dst`, via `gw` when given.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> RouteConfig {
        RouteConfig {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// What an interface inside a container gets: addresses and routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub addresses: Vec<Address>,
    pub routes: Vec<RouteConfig>,
}

impl InterfaceConfig {
    fn has_ipv6(&self) -> bool {
        self.addresses.iter().any(|a| a.net.addr().is_ipv6())
    }
}

/// How long to wait for IPv6 duplicate address detection, as the reference.
const DAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A link's MAC as results print it ("" when it has none).
pub fn mac_string(link: &ferry_linux::Link) -> String {
    link.mac.map(|m| m.to_string()).unwrap_or_default()
}

/// Options for [`configure`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Skip IPv6 DAD on the addresses (the bridge plugin's default, `enabledad: false`).
    pub nodad: bool,
    /// Set `accept_dad=0` on the interface first (the bridge without `enabledad`).
    pub accept_dad_off: bool,
}

/// Assigns `cfg`'s addresses to `ifname`, brings it up, and adds its routes
/// (a route without a gateway uses the first gateway of its family).
pub fn configure(
    netns: &Netns,
    nl: &mut Netlink,
    ifname: &str,
    cfg: &InterfaceConfig,
    opts: Options,
) -> Result<()> {
    let link = nl
        .link_by_name(ifname)
        .map_err(kernel(format!("failed to look up {ifname}")))?;
    let (v4gw, v6gw) = assign(netns, nl, &link, ifname, cfg, opts)?;
    nl.set_up(link.index)
        .map_err(kernel(format!("failed to set {ifname} up")))?;
    if cfg.has_ipv6() && !opts.nodad {
        settle_ipv6(nl, link.index, ifname)?;
    }
    for r in &cfg.routes {
        let gw = r.gw.or(if r.dst.addr().is_ipv4() { v4gw } else { v6gw });
        let mut route = Route::new(r.dst).oif(link.index);
        if let Some(gw) = gw {
            route = route.gateway(gw);
        }
        if let Some(mtu) = r.mtu {
            route = route.mtu(mtu);
        }
        if let Some(mss) = r.advmss {
            route = route.advmss(mss);
        }
        if let Some(p) = r.priority {
            route = route.priority(p);
        }
        if let Some(t) = r.table {
            route = route.table(t);
        }
        if let Some(s) = r.scope {
            route = route.scope(s);
        }
        nl.add_route(&route).map_err(kernel(format!(
            "failed to add route '{} via {} dev {ifname}'",
            r.dst,
            gw.map(|g| g.to_string()).unwrap_or_else(|| "-".into())
        )))?;
    }
    Ok(())
}

/// [`configure`]'s first part, on a link that may still be down: the IPv6
/// sysctls and `cfg`'s addresses. Returns the first gateway of each family.
pub fn assign(
    netns: &Netns,
    nl: &mut Netlink,
    link: &Link,
    ifname: &str,
    cfg: &InterfaceConfig,
    opts: Options,
) -> Result<(Option<IpAddr>, Option<IpAddr>)> {
    let index = link.index;
    // Only the sysctls not already at their value, as netlink reports them
    // with the link: each /proc/sys/net/ipv6 lookup costs time in proportion
    // to the namespaces on the node (see ferry_linux::Ipv6Conf). Unknown
    // (no IPv6 reported) is written, and fails as before.
    let mut sysctls: Vec<(String, &str)> = Vec::new();
    if opts.accept_dad_off && link.ipv6.is_none_or(|c| c.accept_dad != 0) {
        sysctls.push((format!("net.ipv6.conf.{ifname}.accept_dad"), "0"));
    }
    if cfg.has_ipv6() {
        let lo = nl
            .link_by_name("lo")
            .map_err(kernel("failed to look up lo"))?;
        for (dev, l) in [("lo", &lo), (ifname, link)] {
            if l.ipv6.is_none_or(|c| c.disable_ipv6) {
                sysctls.push((format!("net.ipv6.conf.{dev}.disable_ipv6"), "0"));
            }
        }
    }
    if !sysctls.is_empty() {
        ferry_linux::sysctl::write_all_in(netns, &sysctls).map_err(kernel(format!(
            "failed to set up IPv6 (DAD, disable_ipv6) on {ifname}"
        )))?;
    }
    let (mut v4gw, mut v6gw): (Option<IpAddr>, Option<IpAddr>) = (None, None);
    for ip in &cfg.addresses {
        let addr_opts = AddrOptions {
            nodad: opts.nodad,
            ..AddrOptions::default()
        };
        nl.add_address(index, ip.net, addr_opts)
            .map_err(kernel(format!(
                "failed to add IP addr {} to {ifname}",
                ip.net
            )))?;
        match ip.gateway {
            Some(gw @ IpAddr::V4(_)) if v4gw.is_none() => v4gw = Some(gw),
            Some(gw @ IpAddr::V6(_)) if v6gw.is_none() => v6gw = Some(gw),
            _ => {}
        }
    }
    Ok((v4gw, v6gw))
}

/// Waits until no IPv6 address on the link is tentative (DAD finished).
pub fn settle_ipv6(nl: &mut Netlink, index: u32, ifname: &str) -> Result<()> {
    let start = Instant::now();
    // Short polls first: the kernel often clears the flag within a millisecond.
    let mut pause = Duration::from_micros(200);
    loop {
        let addrs = nl
            .addresses(Some(index), Family::V6)
            .map_err(kernel(format!("failed to list addresses of {ifname}")))?;
        if !addrs.iter().any(|a| a.is_tentative()) {
            return Ok(());
        }
        if start.elapsed() > DAD_TIMEOUT {
            return Err(Error::Failed(format!(
                "IPv6 addresses on {ifname} still tentative after {}s (duplicate address?)",
                DAD_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Moves an interface from `old` to `new` (a DHCP renewal that brought
/// another address or router) in the namespace at `netns`: addresses only
/// in `old` go and those only in `new` come; routes whose destination is
/// only in `old` go and every route of `new` is replaced (without a gateway:
/// via the first gateway of its family in `new`). Safe to repeat.
pub fn follow_lease(
    netns: &str,
    ifname: &str,
    old: &InterfaceConfig,
    new: &InterfaceConfig,
) -> Result<()> {
    let ns = super::veth::open_netns(netns)?;
    let mut nl = ns
        .netlink()
        .map_err(kernel(format!("failed to open netlink in {netns}")))?;
    let link = nl
        .link_by_name(ifname)
        .map_err(kernel(format!("failed to look up {ifname} in {netns}")))?;
    // Already gone is fine: the kernel drops routes with their address.
    let gone = |r: ferry_linux::Result<()>| match r {
        Err(e) if !e.is_not_found() && e.errno() != Some(libc::EADDRNOTAVAIL) => Err(e),
        _ => Ok(()),
    };
    let route = |r: &RouteConfig, cfg: &InterfaceConfig| {
        let gw = r.gw.or_else(|| {
            cfg.addresses
                .iter()
                .find_map(|a| a.gateway.filter(|g| g.is_ipv4() == r.dst.addr().is_ipv4()))
        });
        let route = Route::new(r.dst).oif(link.index);
        match gw {
            Some(gw) => route.gateway(gw),
            None => route,
        }
    };
    // The old ones first: deleting a primary IPv4 address also deletes the
    // secondaries of its subnet, which a new one would be.
    for a in old
        .addresses
        .iter()
        .filter(|a| !new.addresses.iter().any(|n| n.net == a.net))
    {
        gone(nl.del_address(link.index, a.net))
            .map_err(kernel(format!("failed to remove {} from {ifname}", a.net)))?;
    }
    for a in new
        .addresses
        .iter()
        .filter(|a| !old.addresses.iter().any(|o| o.net == a.net))
    {
        match nl.add_address(link.index, a.net, AddrOptions::default()) {
            Err(e) if !e.is_exists() => {
                return Err(kernel(format!("failed to add {} to {ifname}", a.net))(e))
            }
            _ => {}
        }
    }
    for r in old
        .routes
        .iter()
        .filter(|r| !new.routes.iter().any(|n| n.dst == r.dst))
    {
        gone(nl.del_route(&route(r, old))).map_err(kernel(format!(
            "failed to remove the route to {} on {ifname}",
            r.dst
        )))?;
    }
    for r in &new.routes {
        nl.replace_route(&route(r, new)).map_err(kernel(format!(
            "failed to replace the route to {} on {ifname}",
            r.dst
        )))?;
    }
    Ok(())
}

/// CHECK: every address `cfg` gives `ifname` is on it, and every route
/// exists (the reference's `ip.ValidateExpectedInterfaceIPs` / `ValidateExpectedRoute`).
pub fn check(nl: &mut Netlink, ifname: &str, cfg: &InterfaceConfig) -> Result<()> {
    let link = nl
        .link_by_name(ifname)
        .map_err(kernel(format!("interface {ifname} not found")))?;
    let have = nl
        .addresses(Some(link.index), Family::All)
        .map_err(kernel(format!("failed to list addresses of {ifname}")))?;
    for ip in &cfg.addresses {
        if !have.iter().any(|a| a.net == ip.net) {
            return Err(Error::Missing(format!(
                "{ifname}: expected address {} is missing",
                ip.net
            )));
        }
    }
    for family in [Family::V4, Family::V6] {
        let routes = nl
            .routes(family, None)
            .map_err(kernel("failed to list routes"))?;
        for r in cfg.routes.iter().filter(|r| match family {
            Family::V4 => r.dst.addr().is_ipv4(),
            _ => r.dst.addr().is_ipv6(),
        }) {
            let found = routes
                .iter()
                .any(|have| have.dst == r.dst && (r.gw.is_none() || have.gateway == r.gw));
            if !found {
                return Err(Error::Missing(format!(
                    "route to {} (via {:?}) is missing",
                    r.dst, r.gw
                )));
            }
        }
    }
    Ok(())
}
