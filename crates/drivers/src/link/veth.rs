//! The veth pair of bridge and ptp: the container end is created directly in
//! the container's namespace under CNI_IFNAME (or left on the host for
//! Docker to move), the host end in the host namespace under a random
//! `vethXXXXXXXX` name, as the reference names it.

use crate::kernel;
use crate::{Error, Result};
use ferry_linux::{BridgePortFlags, Link, LinkSpec, MacAddr, Netlink, Netns};

/// Ferry's host ends: `veth` and 8 hex digits (Docker's bridge driver uses
/// 7, so names never meet).
const HOST_PREFIX: &str = "veth";
/// A container end left on the host for its owner to move (ferryd's Docker
/// endpoints): `ctr` and 8 hex digits.
const CONTAINER_PREFIX: &str = "ctr";

/// Whether `name` is `prefix` and 8 lowercase hex digits, as
/// [`super::attr::random_name`] makes them.
fn is_generated(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|h| {
        h.len() == 8
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The unattached host pairs (their host ends) an older ferryd left: killed
/// between creating a Docker endpoint's pair and enslaving it to the bridge
/// (two requests then, one now: see [`create`]), it left a pair no bridge
/// and no endpoint claims. The rule, so that no link Ferry did not make is
/// touched (Docker's own bridge driver makes veths too):
/// - the link is a veth named as Ferry names host ends, and no port of
///   anything (every pair Ferry makes for a bridge now is a port from its
///   creation; ptp's host ends have their peer in a container);
/// - its peer is a veth in the same namespace, named as Ferry names a
///   container end it leaves on the host, whose peer is the link;
/// - `keep` (the host ends endpoints claim) does not name it.
pub fn stray_host_pairs(nl: &mut Netlink, keep: &[String]) -> Result<Vec<Link>> {
    let links = nl.links().map_err(kernel("failed to list links"))?;
    let is_veth = |l: &Link| l.kind.as_deref() == Some("veth") && l.link_netnsid.is_none();
    let by_index: std::collections::HashMap<u32, &Link> =
        links.iter().map(|l| (l.index, l)).collect();
    Ok(links
        .iter()
        .filter(|l| is_veth(l) && l.master.is_none() && is_generated(&l.name, HOST_PREFIX))
        .filter(|l| !keep.contains(&l.name))
        .filter(|l| {
            l.parent.and_then(|p| by_index.get(&p)).is_some_and(|peer| {
                is_veth(peer)
                    && peer.parent == Some(l.index)
                    && is_generated(&peer.name, CONTAINER_PREFIX)
            })
        })
        .cloned()
        .collect())
}

fn exists(ifname: &str) -> Error {
    Error::Exists(format!(
        "container veth name provided ({ifname}) already exists"
    ))
}

/// Both ends after creation, up.
pub struct VethPair {
    pub host: Link,
    pub container: Link,
}

/// Fails with code 4 when `ifname` already exists in the container: checked
/// before anything is allocated, so a refused ADD changes nothing.
pub fn ensure_absent(cont_nl: &mut Netlink, ifname: &str) -> Result<()> {
    if cont_nl.link_by_name(ifname).is_ok() {
        return Err(exists(ifname));
    }
    Ok(())
}

/// Fails with code 4 when `ifname` already exists in the namespace at
/// `netns` (an ADD checks this before it allocates addresses).
pub fn ensure_absent_at(netns: &str, ifname: &str) -> Result<()> {
    let ns = open_netns(netns)?;
    let mut nl = ns
        .netlink()
        .map_err(kernel("failed to open netlink in the container"))?;
    ensure_absent(&mut nl, ifname)
}

/// Opens the namespace at `path`; [`Error::NoNamespace`] when it is not one.
pub fn open_netns(path: &str) -> Result<Netns> {
    Netns::open(path).map_err(|source| {
        if source.is_not_found() {
            Error::NoNamespace {
                path: path.to_string(),
                source,
            }
        } else {
            Error::kernel(format!("failed to open netns {path:?}"))(source)
        }
    })
}

/// Where [`create`] puts the container end.
pub enum ContainerEnd<'a> {
    /// In the namespace `netns` (spoken to by `nl`) as `ifname`.
    Netns {
        nl: &'a mut Netlink,
        netns: &'a Netns,
        ifname: &'a str,
    },
    /// In the host namespace under a generated `ctrXXXXXXXX` name, down,
    /// for its owner to move.
    Host,
}

/// The host end as it is before it comes up.
pub struct HostEnd<'a> {
    /// `false` turns IPv6 off on the host end before it comes up (a bridge
    /// port, an IPv4-only ptp attachment): it has no use for it, and every
    /// host end with IPv6 adds an `fe80::/64` route to the node's one fib6
    /// node for that prefix, while bringing a link up walks every IPv6 route
    /// of the node (`fib6_ifup`), so each ADD got slower with every
    /// container on the node (profiled with 10,000 ptp containers: those
    /// walks were a quarter of the kernel's time).
    pub ipv6: bool,
    /// The bridge the host end is a port of from its creation, and the
    /// port's flags (set before it comes up, so it never forwards without
    /// them).
    pub bridge: Option<(&'a Link, BridgePortFlags)>,
}

/// Creates the pair; the host end comes up, the container end stays down.
/// Fails with code 4 when the container's `ifname` already exists.
///
/// The host end is the link the request creates and the container end its
/// peer, so that a bridge port is enslaved by the same request
/// (`IFLA_MASTER`): a process killed at any moment leaves either no pair or
/// a bridge port, which a restarted ferryd's clean-up finds by its bridge
/// (an unattached `vethXXXXXXXX@ctrXXXXXXXX` pair was what a kill between
/// creation and enslavement left; see [`stray_host_pairs`]).
pub fn create(
    host_nl: &mut Netlink,
    mut end: ContainerEnd<'_>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    host_end: HostEnd<'_>,
) -> Result<VethPair> {
    if let ContainerEnd::Netns { nl, ifname, .. } = &mut end {
        ensure_absent(nl, ifname)?;
    }
    // A random name may collide with another attachment's: try a few.
    let mut last_err = None;
    for _ in 0..5 {
        let host_name = super::attr::random_name(HOST_PREFIX)?;
        let container_name = match &end {
            ContainerEnd::Netns { ifname, .. } => ifname.to_string(),
            ContainerEnd::Host => super::attr::random_name(CONTAINER_PREFIX)?,
        };
        let mut spec = LinkSpec::veth(&host_name, &container_name);
        if let ContainerEnd::Netns { netns, .. } = &end {
            spec = spec.peer_netns(netns);
        }
        if let Some(m) = mtu {
            spec = spec.mtu(m);
        }
        if let Some(m) = mac {
            spec = spec.peer_mac(m);
        }
        if let Some((br, _)) = &host_end.bridge {
            spec = spec.master(br.index);
        }
        match host_nl.create_link(&spec) {
            Ok(()) => {
                let made = finish(host_nl, &mut end, &host_name, &container_name, &host_end);
                if made.is_err() {
                    // The peer goes with it.
                    if let Ok(l) = host_nl.link_by_name(&host_name) {
                        let _ = host_nl.delete_link(l.index);
                    }
                }
                return made;
            }
            Err(e) if e.is_exists() => {
                if let ContainerEnd::Netns { nl, ifname, .. } = &mut end {
                    if nl.link_by_name(ifname).is_ok() {
                        return Err(exists(ifname));
                    }
                }
                last_err = Some(e);
            }
            Err(e) => {
                return Err(match &host_end.bridge {
                    Some((br, _)) => kernel(format!(
                        "failed to create a veth pair on bridge {}",
                        br.name
                    ))(e),
                    None => kernel("failed to create veth pair")(e),
                })
            }
        }
    }
    Err(kernel("failed to find a free host veth name")(
        last_err.unwrap_or(ferry_linux::Error::InvalidArgument(
            "no attempt made".into(),
        )),
    ))
}

/// The host end up (IPv6 off and port flags set first), both ends read
/// back.
fn finish(
    host_nl: &mut Netlink,
    end: &mut ContainerEnd<'_>,
    host_name: &str,
    container_name: &str,
    host_end: &HostEnd<'_>,
) -> Result<VethPair> {
    let mut host = host_nl
        .link_by_name(host_name)
        .map_err(kernel(format!("failed to look up {host_name}")))?;
    // Best effort: a node without IPv6 has no such key. Written only when
    // the link says IPv6 is on (see ferry_linux::Ipv6Conf for why not read).
    if let Some(conf) = host.ipv6.filter(|c| !host_end.ipv6 && !c.disable_ipv6) {
        let key = format!("net.ipv6.conf.{host_name}.disable_ipv6");
        if ferry_linux::sysctl::write(&key, "1").is_ok() {
            host.ipv6 = Some(ferry_linux::Ipv6Conf {
                disable_ipv6: true,
                ..conf
            });
        }
    }
    if let Some((_, flags)) = &host_end.bridge {
        host_nl
            .set_bridge_port_flags(host.index, flags)
            .map_err(kernel(format!("failed to set port flags on {host_name}")))?;
    }
    host_nl
        .set_up(host.index)
        .map_err(kernel(format!("failed to set {host_name} up")))?;
    let container = match end {
        ContainerEnd::Netns { nl, .. } => nl.link_by_name(container_name).map_err(kernel(
            format!("failed to look up {container_name} in the container"),
        ))?,
        ContainerEnd::Host => host_nl
            .link_by_name(container_name)
            .map_err(kernel(format!("failed to look up {container_name}")))?,
    };
    Ok(VethPair { host, container })
}

/// CHECK: the container end `ifname`, which must exist and be a veth.
pub fn container_end(cont_nl: &mut Netlink, ifname: &str) -> Result<Link> {
    let cont = cont_nl
        .link_by_name(ifname)
        .map_err(kernel(format!("container interface {ifname} is missing")))?;
    if cont.kind.as_deref() != Some("veth") {
        return Err(Error::Failed(format!(
            "container interface {ifname} is a {:?}, not a veth",
            cont.kind
        )));
    }
    Ok(cont)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_the_prefix_and_8_lowercase_hex_digits() {
        assert!(is_generated("veth0a1b2c3d", HOST_PREFIX));
        assert!(is_generated("ctrdeadbeef", CONTAINER_PREFIX));
        for other in [
            "veth1234567",   // Docker's bridge driver: 7 digits
            "veth123456789", // 9
            "veth0A1B2C3D",  // upper case
            "veth0a1b2c3g",  // not hex
            "vethx0a1b2c3",
            "eth0",
            "ctr0a1b2c3d",
        ] {
            assert!(!is_generated(other, HOST_PREFIX), "{other}");
        }
        assert!(!is_generated("veth0a1b2c3d", CONTAINER_PREFIX));
    }
}
