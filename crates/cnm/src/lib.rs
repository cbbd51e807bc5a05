//! Ferry's Container Network Model: a controller owning networks, endpoints
//! and sandboxes (joined endpoints), IPAM pools with automatic provisioning,
//! the bridge driver on ferry-linux, and Docker's remote-plugin wire types.

pub mod controller;
pub mod driver;
pub mod error;
pub mod ipam;
pub mod ipam_store;
pub mod publish;
pub mod sandbox;
pub mod store;
pub mod wire;

pub use controller::{Controller, ControllerConfig, Endpoint, Network};
pub use error::{CnmError, Result};
