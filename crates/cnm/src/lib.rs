//! Ferry's Container Network Model: a controller owning networks, endpoints
//! and sandboxes (joined endpoints), IPAM pools with automatic provisioning,
//! and Docker's remote-plugin wire types. The kernel work is the shared
//! driver layer's (`ferry_drivers`), reached through its `Drivers` trait.

pub mod cni;
pub mod controller;
pub mod driver;
pub mod error;
pub mod ipam;
pub mod ipam_store;
pub mod limits;
pub mod overlay;
pub mod overlay_docker;
pub mod pmap;
pub mod publish;
pub mod sandbox;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod wire;

pub use controller::{Controller, ControllerConfig, Endpoint, Network};
pub use error::{CnmError, Result};
pub use snapshot::Snapshot;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
