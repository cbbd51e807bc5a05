//! The veth pair of bridge and ptp: the container end is created directly in
//! the container's namespace under CNI_IFNAME (or left on the host for
//! Docker to move), the host end in the host namespace under a random
//! `vethXXXXXXXX` name, as the reference names it.

use crate::kernel;
use crate::{Error, Result};
use ferry_linux::{Link, LinkSpec, MacAddr, Netlink, Netns};

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

/// Creates the pair; the host end comes up, the container end stays down.
/// Fails with code 4 when the container's `ifname` already exists.
///
/// `host_ipv6: false` turns IPv6 off on the host end before it comes up (a
/// bridge port, an IPv4-only ptp attachment): it has no use for it, and every host end with IPv6
/// adds an `fe80::/64` route to the node's one fib6 node for that prefix,
/// while bringing a link up walks every IPv6 route of the node
/// (`fib6_ifup`), so each ADD got slower with every container on the node
/// (profiled with 10,000 ptp containers: those walks were a quarter of the
/// kernel's time).
pub fn create(
    host_nl: &mut Netlink,
    mut end: ContainerEnd<'_>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    host_ipv6: bool,
) -> Result<VethPair> {
    if let ContainerEnd::Netns { nl, ifname, .. } = &mut end {
        ensure_absent(nl, ifname)?;
    }
    // A random name may collide with another attachment's: try a few.
    let mut last_err = None;
    for _ in 0..5 {
        let host_name = super::attr::random_name("veth")?;
        let mut spec = match &end {
            ContainerEnd::Netns { netns, ifname, .. } => {
                LinkSpec::veth(ifname, &host_name).netns(netns)
            }
            ContainerEnd::Host => LinkSpec::veth(&super::attr::random_name("ctr")?, &host_name),
        };
        if let Some(m) = mtu {
            spec = spec.mtu(m);
        }
        if let Some(m) = mac {
            spec = spec.mac(m);
        }
        match host_nl.create_link(&spec) {
            Ok(()) => {
                let made = finish(host_nl, &mut end, &host_name, &spec, host_ipv6);
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
            Err(e) => return Err(kernel("failed to create veth pair")(e)),
        }
    }
    Err(kernel("failed to find a free host veth name")(
        last_err.unwrap_or(ferry_linux::Error::InvalidArgument(
            "no attempt made".into(),
        )),
    ))
}

/// The host end up (IPv6 off first unless `host_ipv6`), both ends read back.
fn finish(
    host_nl: &mut Netlink,
    end: &mut ContainerEnd<'_>,
    host_name: &str,
    spec: &LinkSpec,
    host_ipv6: bool,
) -> Result<VethPair> {
    let mut host = host_nl
        .link_by_name(host_name)
        .map_err(kernel(format!("failed to look up {host_name}")))?;
    // Best effort: a node without IPv6 has no such key. Written only when
    // the link says IPv6 is on (see ferry_linux::Ipv6Conf for why not read).
    if let Some(conf) = host.ipv6.filter(|c| !host_ipv6 && !c.disable_ipv6) {
        let key = format!("net.ipv6.conf.{host_name}.disable_ipv6");
        if ferry_linux::sysctl::write(&key, "1").is_ok() {
            host.ipv6 = Some(ferry_linux::Ipv6Conf {
                disable_ipv6: true,
                ..conf
            });
        }
    }
    host_nl
        .set_up(host.index)
        .map_err(kernel(format!("failed to set {host_name} up")))?;
    let container = match end {
        ContainerEnd::Netns { nl, ifname, .. } => nl.link_by_name(ifname).map_err(kernel(
            format!("failed to look up {ifname} in the container"),
        ))?,
        ContainerEnd::Host => {
            let name = &spec.name;
            host_nl
                .link_by_name(name)
                .map_err(kernel(format!("failed to look up {name}")))?
        }
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
