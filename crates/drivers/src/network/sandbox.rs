//! [`Sandboxes`] on the real kernel: named namespaces under `/run/netns`,
//! routes inside them, and the host's own routes.

use super::{SandboxRoute, Sandboxes};
use crate::{Error, Result};
use ferry_linux::{Family, Netlink, Netns, Route};
use ipnet::IpNet;
use std::path::PathBuf;

/// The namespaces of the machine ferryd runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSandboxes;

fn open(path: &str) -> Result<Netns> {
    Netns::open(path).map_err(|source| Error::NoNamespace {
        path: path.to_string(),
        source,
    })
}

fn is_link_local_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(n) if (n.addr().segments()[0] & 0xffc0) == 0xfe80)
}

impl Sandboxes for LinuxSandboxes {
    fn create(&self, name: &str) -> Result<PathBuf> {
        let ns = Netns::create(name).map_err(Error::kernel(format!("create namespace {name}")))?;
        // A container's stack expects a working loopback, as Docker and the
        // loopback plugin leave it.
        let up = ns.netlink().and_then(|mut nl| {
            let lo = nl.link_by_name("lo")?;
            nl.set_up(lo.index)
        });
        if let Err(e) = up {
            let _ = Netns::delete(name);
            return Err(Error::kernel(format!("set lo up in namespace {name}"))(e));
        }
        Ok(ns.path().to_path_buf())
    }

    fn delete(&self, name: &str) -> Result<()> {
        match Netns::delete(name) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(Error::kernel(format!("delete namespace {name}"))(e)),
        }
    }

    fn open(&self, path: &str) -> Result<()> {
        open(path).map(|_| ())
    }

    fn is_host(&self, path: &str) -> Result<bool> {
        let host = Netns::current()
            .and_then(|n| n.inode())
            .map_err(Error::kernel("read the host namespace"))?;
        let other = open(path)?
            .inode()
            .map_err(Error::kernel(format!("read namespace {path}")))?;
        Ok(host == other)
    }

    fn has_link(&self, path: &str, ifname: &str) -> Result<bool> {
        let mut nl = open(path)?
            .netlink()
            .map_err(Error::kernel(format!("open netlink in {path}")))?;
        match nl.link_by_name(ifname) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(Error::kernel(format!("look up {ifname} in {path}"))(e)),
        }
    }

    fn set_routes(&self, path: &str, routes: &[SandboxRoute]) -> Result<()> {
        if routes.is_empty() {
            return Ok(());
        }
        let mut nl = open(path)?
            .netlink()
            .map_err(Error::kernel(format!("open netlink in {path}")))?;
        for r in routes {
            let link = nl
                .link_by_name(&r.ifname)
                .map_err(Error::kernel(format!("look up {} in {path}", r.ifname)))?;
            let mut route = Route::new(r.dst).oif(link.index);
            if let Some(g) = r.gateway {
                route = route.gateway(g);
            }
            nl.replace_route(&route).map_err(Error::kernel(format!(
                "route {} via {} in {path}",
                r.dst, r.ifname
            )))?;
        }
        Ok(())
    }

    fn host_routes(&self) -> Vec<IpNet> {
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
                        .filter(|d| d.prefix_len() > 0 && !is_link_local_v6(d)),
                );
            }
        }
        out
    }
}

/// The first IPv4 address of the interface the default route goes out of
/// (a host's underlay address when none is given), if there is one.
pub fn default_route_address() -> Option<std::net::IpAddr> {
    let mut nl = Netlink::new().ok()?;
    let oif = nl
        .routes(Family::V4, Some(ferry_linux::TABLE_MAIN))
        .ok()?
        .into_iter()
        .filter(|r| r.dst.prefix_len() == 0)
        .find_map(|r| r.oif)?;
    nl.addresses(Some(oif), Family::V4)
        .ok()?
        .into_iter()
        .map(|a| a.net.addr())
        .next()
}
