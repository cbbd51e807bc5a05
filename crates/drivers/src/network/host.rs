//! The host driver: a sandbox that shares the host's stack. Its endpoints
//! have no interface; the only thing to check is that the sandbox's
//! namespace really is the host's.

use super::null::{joined, no_interface};
use super::{Endpoint, EndpointSpec, NetworkDriver, NetworkSpec, Placement};
use crate::link::detach::{Deleter, Pending};
use crate::link::iface::InterfaceConfig;
use crate::{Error, Result};
use ferry_linux::Netns;
use std::path::PathBuf;

/// The host driver.
pub struct HostDriver {
    pub deleter: Deleter,
    pub state_dir: PathBuf,
}

impl HostDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        HostDriver { deleter, state_dir }
    }
}

/// Fails with [`Error::Invalid`] unless the namespace at `netns` is the
/// calling process's (the host's): compared by inode.
pub fn ensure_host(netns: &str) -> Result<()> {
    let host = Netns::current()
        .and_then(|n| n.inode())
        .map_err(Error::kernel("failed to read the host namespace"))?;
    let theirs = Netns::open(netns)
        .and_then(|n| n.inode())
        .map_err(|source| Error::NoNamespace {
            path: netns.to_string(),
            source,
        })?;
    if host != theirs {
        return Err(Error::Invalid(format!(
            "the host driver shares the host's stack: {netns} is another namespace \
             (use /proc/self/ns/net, the host's own namespace)"
        )));
    }
    Ok(())
}

impl NetworkDriver for HostDriver {
    fn name(&self) -> &'static str {
        "host"
    }

    fn create_endpoint(
        &self,
        _net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        if let Placement::Netns { netns, .. } = place {
            ensure_host(netns)?;
        }
        Ok(no_interface(ep, place))
    }

    fn delete_endpoint(&self, _net: &NetworkSpec, _ep: &Endpoint) -> Result<Pending> {
        Ok(Pending::none())
    }

    /// Refuses a sandbox with a namespace of its own.
    fn join(
        &self,
        _net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        _ifname: &str,
        _cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        ensure_host(netns)?;
        Ok(joined(ep, netns))
    }

    fn check(&self, _net: &NetworkSpec, ep: &Endpoint, _cfg: &InterfaceConfig) -> Result<()> {
        match &ep.netns {
            Some(netns) => ensure_host(netns),
            None => Ok(()),
        }
    }
}
