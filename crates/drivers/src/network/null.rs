//! The null driver: endpoints without an interface (a sandbox with only
//! `lo`). Nothing touches the kernel.

use super::{Endpoint, EndpointSpec, NetworkDriver, NetworkSpec, Placement};
use crate::link::detach::{Deleter, Pending};
use crate::link::iface::InterfaceConfig;
use crate::Result;
use std::path::PathBuf;

/// The null driver.
pub struct NullDriver {
    pub deleter: Deleter,
    pub state_dir: PathBuf,
}

impl NullDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        NullDriver { deleter, state_dir }
    }
}

/// An endpoint with no interface (empty `ifname`), where `place` puts it.
pub(crate) fn no_interface(ep: &EndpointSpec, place: Placement<'_>) -> Endpoint {
    Endpoint {
        id: ep.id.clone(),
        netns: match place {
            Placement::Netns { netns, .. } => Some(netns.to_string()),
            Placement::Host => None,
        },
        mac: None,
        addresses: ep.addresses.clone(),
        ..Endpoint::default()
    }
}

/// An endpoint without an interface, joined to the sandbox at `netns`.
pub(crate) fn joined(ep: &Endpoint, netns: &str) -> Endpoint {
    Endpoint {
        netns: Some(netns.to_string()),
        ..ep.clone()
    }
}

impl NetworkDriver for NullDriver {
    fn name(&self) -> &'static str {
        "null"
    }

    fn create_endpoint(
        &self,
        _net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        Ok(no_interface(ep, place))
    }

    fn delete_endpoint(&self, _net: &NetworkSpec, _ep: &Endpoint) -> Result<Pending> {
        Ok(Pending::none())
    }

    fn join(
        &self,
        _net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        _ifname: &str,
        _cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        Ok(joined(ep, netns))
    }

    fn check(&self, _net: &NetworkSpec, _ep: &Endpoint, _cfg: &InterfaceConfig) -> Result<()> {
        Ok(())
    }
}
