//! What the drivers with one link in the sandbox and no host end share
//! (macvlan, host-device, tap): opening the sandbox, a name check and a
//! rename that answer [`Error::Exists`], the rename and configuration of
//! `join`, and the link checks of `check`.

use super::Endpoint;
use crate::link::detach::{self, Deleter, Pending};
use crate::link::iface::{self, InterfaceConfig};
use crate::{Error, Result};
use ferry_linux::{Link, MacAddr, Netlink, Netns};

/// Opens the namespace at `path`; [`Error::NoNamespace`] when it is not there.
pub(crate) fn open_netns(path: &str) -> Result<Netns> {
    Netns::open(path).map_err(|source| Error::NoNamespace {
        path: path.to_string(),
        source,
    })
}

/// A netlink socket in `netns`.
pub(crate) fn netlink_in(netns: &Netns) -> Result<Netlink> {
    netns
        .netlink()
        .map_err(Error::kernel("failed to open netlink in the container"))
}

fn exists(ifname: &str) -> Error {
    Error::Exists(format!(
        "interface {ifname:?} already exists in the container's namespace"
    ))
}

/// Fails with [`Error::Exists`] when `ifname` is taken in `nl`'s namespace.
pub(crate) fn ensure_free(nl: &mut Netlink, ifname: &str) -> Result<()> {
    match nl.link_by_name(ifname) {
        Ok(_) => Err(exists(ifname)),
        Err(_) => Ok(()),
    }
}

/// Renames link `index` to `ifname`; [`Error::Exists`] when it is taken.
pub(crate) fn rename(nl: &mut Netlink, index: u32, ifname: &str, what: &str) -> Result<()> {
    nl.rename(index, ifname).map_err(|e| {
        if e.is_exists() {
            exists(ifname)
        } else {
            Error::kernel(format!("failed to rename {what} to {ifname:?}"))(e)
        }
    })
}

/// How [`join`] configures the link.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JoinOptions {
    /// Set `arp_notify` when the link gets addresses, as the reference
    /// macvlan and tap do (host-device does not).
    pub arp_notify: bool,
    /// Also set `ndisc_notify` then, as the reference macvlan does.
    pub ndisc_notify: bool,
    pub iface: iface::Options,
}

/// `join` for a single link: renamed from `ep.ifname` to `ifname` when they
/// differ, the reference's "notify on link change" sysctls when it gets
/// addresses (best effort), then addresses, up and routes.
pub(crate) fn join(
    ep: &Endpoint,
    netns: &str,
    ifname: &str,
    cfg: &InterfaceConfig,
    opts: JoinOptions,
) -> Result<Endpoint> {
    let ns = open_netns(netns)?;
    let mut nl = netlink_in(&ns)?;
    if ep.ifname != ifname {
        let link = nl
            .link_by_name(&ep.ifname)
            .map_err(Error::kernel(format!("failed to find {:?}", ep.ifname)))?;
        ensure_free(&mut nl, ifname)?;
        // The kernel renames only a link that is down (it was created down).
        nl.set_down(link.index)
            .map_err(Error::kernel(format!("failed to set {:?} down", ep.ifname)))?;
        rename(&mut nl, link.index, ifname, &ep.ifname)?;
    }
    if opts.arp_notify && !cfg.addresses.is_empty() {
        let _ = ferry_linux::sysctl::write_if_different_in(
            &ns,
            &format!("net/ipv4/conf/{ifname}/arp_notify"),
            "1",
        );
        if opts.ndisc_notify {
            let _ = ferry_linux::sysctl::write_if_different_in(
                &ns,
                &format!("net/ipv6/conf/{ifname}/ndisc_notify"),
                "1",
            );
        }
    }
    iface::configure(&ns, &mut nl, ifname, cfg, opts.iface)?;
    let link = nl
        .link_by_name(ifname)
        .map_err(Error::kernel(format!("failed to refetch {ifname:?}")))?;
    Ok(Endpoint {
        ifname: ifname.to_string(),
        netns: Some(netns.to_string()),
        mac: link.mac,
        ..ep.clone()
    })
}

/// `check` for a single link: `ep.ifname` exists in `ep.netns`, is of `kind`
/// (when given), has `ep.mac` (when given) and `cfg`'s addresses and routes.
/// Returns the link and a socket in its namespace for the driver's own checks.
pub(crate) fn check(
    ep: &Endpoint,
    kind: Option<&str>,
    cfg: &InterfaceConfig,
) -> Result<(Netns, Netlink, Link)> {
    let path = ep.netns.as_deref().ok_or_else(|| {
        Error::Missing(format!("endpoint {} is in no container namespace", ep.id))
    })?;
    let ns = open_netns(path)?;
    let mut nl = netlink_in(&ns)?;
    let ifname = &ep.ifname;
    let link = nl
        .link_by_name(ifname)
        .map_err(|e| Error::Missing(format!("container interface {ifname:?} not found: {e}")))?;
    if let Some(kind) = kind {
        if link.kind.as_deref() != Some(kind) {
            return Err(Error::Failed(format!(
                "container interface {ifname:?} is not of type {kind} (kind {:?})",
                link.kind
            )));
        }
    }
    check_mac(ifname, ep.mac, &link)?;
    iface::check(&mut nl, ifname, cfg)?;
    Ok((ns, nl, link))
}

/// The MAC expected, when one is, is the link's.
fn check_mac(ifname: &str, want: Option<MacAddr>, link: &Link) -> Result<()> {
    match want {
        Some(m) if link.mac != Some(m) => Err(Error::Failed(format!(
            "interface {ifname} Mac {m} doesn't match container Mac: {}",
            iface::mac_string(link)
        ))),
        _ => Ok(()),
    }
}

/// `delete_endpoint` for a link that is where `ep` says: in `ep.netns` (a
/// namespace already gone took it along), or on the host.
pub(crate) fn delete(deleter: Deleter, ep: &Endpoint) -> Result<Pending> {
    if ep.ifname.is_empty() {
        return Ok(Pending::none());
    }
    match &ep.netns {
        Some(path) => detach::start_in_netns(deleter, path, &ep.ifname),
        None => {
            let host =
                Netns::current().map_err(Error::kernel("failed to open the host namespace"))?;
            detach::start_by_name(deleter, &host, &ep.ifname)
        }
    }
}
