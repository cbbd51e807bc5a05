//! The macvlan driver: a macvlan of a master (parent) interface, with its
//! own MAC address, as the reference `macvlan` plugin makes it.
//!
//! - [`Placement::Netns`]: created straight in the container's namespace
//!   under a temporary name and renamed (the master is in the host's
//!   namespace, or with `link_in_container` in the container's).
//! - [`Placement::Host`]: created on the host under a generated name, down,
//!   for Docker to move into the sandbox.
//!
//! An empty master is the interface of the default route. The MTU may not
//! exceed the master's.

use super::single::{self, JoinOptions};
use super::Placement;
use super::{Endpoint, EndpointSpec, MacvlanConfig, NetworkDriver, NetworkKind, NetworkSpec};
use crate::kernel;
use crate::link::attr;
use crate::link::detach::{Deleter, Pending};
use crate::link::iface::InterfaceConfig;
use crate::{Error, Result};
use ferry_linux::{Family, Link, LinkSpec, MacvlanMode, Netlink, TABLE_MAIN};
use std::path::PathBuf;

/// The macvlan driver.
pub struct MacvlanDriver {
    pub deleter: Deleter,
    pub state_dir: PathBuf,
}

impl MacvlanDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        MacvlanDriver { deleter, state_dir }
    }
}

fn config(net: &NetworkSpec) -> Result<&MacvlanConfig> {
    match &net.kind {
        NetworkKind::Macvlan(c) => Ok(c),
        _ => Err(net.wrong_kind("macvlan")),
    }
}

/// The mode's name, as `ip link` and the reference write it.
pub fn mode_name(m: MacvlanMode) -> &'static str {
    match m {
        MacvlanMode::Bridge => "bridge",
        MacvlanMode::Private => "private",
        MacvlanMode::Vepa => "vepa",
        MacvlanMode::Passthru => "passthru",
    }
}

/// The interface of the first default route of the main table (IPv4 first,
/// then IPv6), as the reference's `getDefaultRouteInterfaceName`.
pub fn default_route_interface(nl: &mut Netlink) -> Result<String> {
    for family in [Family::V4, Family::V6] {
        let routes = nl
            .routes(family, Some(TABLE_MAIN))
            .map_err(kernel("failed to list routes"))?;
        if let Some(oif) = routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0)
            .find_map(|r| r.oif)
        {
            let link = nl
                .link_by_index(oif)
                .map_err(kernel(format!("failed to look up link #{oif}")))?;
            return Ok(link.name);
        }
    }
    Err(Error::Invalid(
        "no \"master\" given and no default route interface found".into(),
    ))
}

/// The master `cfg` names in `nl`'s namespace (the default route's
/// interface when it names none), with the MTU checked against it.
pub fn master(nl: &mut Netlink, net: &NetworkSpec, cfg: &MacvlanConfig) -> Result<Link> {
    let name = if cfg.master.is_empty() {
        default_route_interface(nl)?
    } else {
        cfg.master.clone()
    };
    let where_ = if cfg.link_in_container {
        "the container's namespace"
    } else {
        "the host namespace"
    };
    let master = match nl.link_by_name(&name) {
        Ok(l) => l,
        Err(e) if e.is_not_found() || matches!(e, ferry_linux::Error::InvalidArgument(_)) => {
            return Err(Error::Invalid(format!(
                "failed to lookup master {name:?}: no interface {name:?} in {where_}: {e}"
            )))
        }
        Err(e) => return Err(kernel(format!("failed to lookup master {name:?}"))(e)),
    };
    if let (Some(mtu), Some(max)) = (net.mtu, master.mtu) {
        if mtu > max {
            return Err(Error::Invalid(format!(
                "invalid MTU {mtu}, must be [0, master MTU({max})]"
            )));
        }
    }
    Ok(master)
}

/// Creates a macvlan on `master` under a fresh name `prefix` + 8 hex digits
/// (a random name may be taken: a few tries). `create` makes it from its
/// spec. Returns the name.
fn create_fresh(
    prefix: &str,
    master: &Link,
    net: &NetworkSpec,
    cfg: &MacvlanConfig,
    ep: &EndpointSpec,
    mut create: impl FnMut(LinkSpec<'_>) -> ferry_linux::Result<()>,
) -> Result<String> {
    let mut last = None;
    for _ in 0..5 {
        let name = attr::random_name(prefix)?;
        let mut spec = LinkSpec::macvlan(&name, master.index, cfg.mode);
        if let Some(m) = net.mtu {
            spec = spec.mtu(m);
        }
        if let Some(m) = ep.mac {
            spec = spec.mac(m);
        }
        match create(spec) {
            Ok(()) => return Ok(name),
            Err(e) if e.is_exists() => last = Some(e),
            Err(e) => return Err(kernel("failed to create macvlan")(e)),
        }
    }
    Err(kernel("failed to find a free temporary macvlan name")(
        last.unwrap_or(ferry_linux::Error::InvalidArgument(
            "no attempt made".into(),
        )),
    ))
}

impl NetworkDriver for MacvlanDriver {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    /// The master and the MTU; with `link_in_container` the master is in a
    /// namespace only an endpoint names, so `create_endpoint` checks it.
    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        let cfg = config(net)?;
        if net.mtu == Some(0) {
            return Err(Error::Invalid("invalid MTU 0".into()));
        }
        if !cfg.link_in_container {
            let mut nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
            master(&mut nl, net, cfg)?;
        }
        Ok(())
    }

    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        let cfg = config(net)?;
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let endpoint = |ifname: String, netns: Option<&str>, link: &Link| Endpoint {
            id: ep.id.clone(),
            ifname,
            netns: netns.map(str::to_string),
            mac: link.mac,
            addresses: ep.addresses.clone(),
            ..Endpoint::default()
        };
        let Placement::Netns { netns, ifname } = place else {
            if cfg.link_in_container {
                return Err(Error::Unsupported(
                    "a macvlan on a master in the container cannot be made on the host".into(),
                ));
            }
            let m = master(&mut host_nl, net, cfg)?;
            let name = create_fresh("mv", &m, net, cfg, ep, |s| host_nl.create_link(&s))?;
            let link = host_nl
                .link_by_name(&name)
                .map_err(kernel(format!("failed to look up new macvlan {name}")))?;
            return Ok(endpoint(name, None, &link));
        };
        let ns = single::open_netns(netns)?;
        let mut cont_nl = single::netlink_in(&ns)?;
        single::ensure_free(&mut cont_nl, ifname)?;
        let tmp = if cfg.link_in_container {
            let m = master(&mut cont_nl, net, cfg)?;
            create_fresh("veth", &m, net, cfg, ep, |s| cont_nl.create_link(&s))?
        } else {
            let m = master(&mut host_nl, net, cfg)?;
            create_fresh("veth", &m, net, cfg, ep, |s| {
                host_nl.create_link(&s.netns(&ns))
            })?
        };
        let link = cont_nl
            .link_by_name(&tmp)
            .map_err(kernel(format!("failed to look up new macvlan {tmp}")))?;
        if let Err(e) = single::rename(&mut cont_nl, link.index, ifname, "macvlan") {
            let _ = cont_nl.delete_link(link.index);
            return Err(e);
        }
        Ok(endpoint(ifname.to_string(), Some(netns), &link))
    }

    /// Deletes the macvlan wherever it is: in `ep.netns` (a namespace already
    /// gone took it along), or on the host.
    fn delete_endpoint(&self, _net: &NetworkSpec, ep: &Endpoint) -> Result<Pending> {
        single::delete(self.deleter, ep)
    }

    fn join(
        &self,
        _net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        ifname: &str,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        let opts = JoinOptions {
            arp_notify: true,
            ndisc_notify: true,
            ..JoinOptions::default()
        };
        single::join(ep, netns, ifname, cfg, opts)
    }

    /// The link is a macvlan of the configured mode on the master, with its
    /// MAC, addresses and routes.
    fn check(&self, net: &NetworkSpec, ep: &Endpoint, cfg: &InterfaceConfig) -> Result<()> {
        let mc = config(net)?;
        let (_ns, mut nl, link) = single::check(ep, Some("macvlan"), cfg)?;
        let mode = attr::macvlan_mode(&mut nl, link.index)?;
        if mode != Some(mc.mode) {
            return Err(Error::Failed(format!(
                "container macvlan mode {} does not match expected value: {}",
                mode.map(mode_name).unwrap_or("unknown"),
                mode_name(mc.mode)
            )));
        }
        let m = if mc.link_in_container {
            master(&mut nl, net, mc)?
        } else {
            let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
            master(&mut host_nl, net, mc)?
        };
        if link.parent != Some(m.index) {
            return Err(Error::Failed(format!(
                "container macvlan {:?} is not on master {:?}",
                ep.ifname, m.name
            )));
        }
        Ok(())
    }
}
