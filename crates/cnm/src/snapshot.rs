//! The controller's state as read requests see it. The maps are persistent
//! (`pmap`): taking a snapshot is O(1) whatever the number of endpoints or
//! allocated addresses, and a later write copies only the path it changes.

use crate::controller::{Endpoint, Network};
use crate::ipam::Pool;
use crate::pmap::PMap;
use crate::sandbox::Sandbox;
use crate::service::Service;
use crate::{CnmError, Result};
use serde_json::Value;

#[derive(Clone)]
pub struct Snapshot {
    /// By network ID.
    pub networks: PMap<Network>,
    /// By endpoint ID.
    pub endpoints: PMap<Endpoint>,
    /// By sandbox name.
    pub sandboxes: PMap<Sandbox>,
    /// By pool ID.
    pub pools: PMap<Pool>,
    /// By service name.
    pub services: PMap<Service>,
}

impl Snapshot {
    /// Whether both share all their data (no write changed anything).
    pub fn ptr_eq(&self, o: &Snapshot) -> bool {
        self.networks.ptr_eq(&o.networks)
            && self.endpoints.ptr_eq(&o.endpoints)
            && self.sandboxes.ptr_eq(&o.sandboxes)
            && self.pools.ptr_eq(&o.pools)
            && self.services.ptr_eq(&o.services)
    }

    /// Endpoints joined to a Ferry sandbox, in a stable order.
    pub fn sandbox_endpoints(&self, name: &str) -> Vec<&Endpoint> {
        joined(&self.endpoints, name)
    }

    /// Docker's `EndpointOperInfo` for an endpoint.
    pub fn endpoint_oper_info(&self, endpoint_id: &str) -> Result<Value> {
        let ep = self
            .endpoints
            .get(endpoint_id)
            .ok_or_else(|| CnmError::not_found("endpoint", endpoint_id))?;
        let network = self.networks.get(&ep.network_id);
        Ok(serde_json::json!({
            "driver": network.map(|n| n.driver.name()),
            crate::publish::OPER_PORTMAP: ep.published,
            "host_veth": ep.host_veth,
            "bridge": network.map(|n| n.bridge.clone()),
            "mac": ep.mac,
        }))
    }
}

/// Endpoints joined to sandbox `name`. Docker's sandbox keys are paths,
/// Ferry's sandbox names never are.
pub(crate) fn joined<'a>(endpoints: &'a PMap<Endpoint>, name: &str) -> Vec<&'a Endpoint> {
    endpoints
        .values()
        .filter(|e| e.sandbox.as_deref() == Some(name))
        .collect()
}
