//! The controller's state as read requests see it. The maps are persistent
//! (`im`): taking a snapshot is O(1) whatever the number of endpoints or
//! allocated addresses, and a later write copies only the path it changes.

use crate::controller::{Endpoint, Network};
use crate::ipam::Pool;
use crate::sandbox::Sandbox;
use crate::{CnmError, Result};
use im::OrdMap;
use serde_json::Value;

#[derive(Clone)]
pub struct Snapshot {
    /// By network ID.
    pub networks: OrdMap<String, Network>,
    /// By endpoint ID.
    pub endpoints: OrdMap<String, Endpoint>,
    /// By sandbox name.
    pub sandboxes: OrdMap<String, Sandbox>,
    /// By pool ID.
    pub pools: OrdMap<String, Pool>,
}

impl Snapshot {
    /// Whether both share all their data (no write changed anything).
    pub fn ptr_eq(&self, o: &Snapshot) -> bool {
        self.networks.ptr_eq(&o.networks)
            && self.endpoints.ptr_eq(&o.endpoints)
            && self.sandboxes.ptr_eq(&o.sandboxes)
            && self.pools.ptr_eq(&o.pools)
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
pub(crate) fn joined<'a>(endpoints: &'a OrdMap<String, Endpoint>, name: &str) -> Vec<&'a Endpoint> {
    endpoints
        .values()
        .filter(|e| e.sandbox.as_deref() == Some(name))
        .collect()
}
