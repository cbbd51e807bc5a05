//! CNI for Ferry: spec types for every version, config loading, the plugin
//! entry point (`skel`) and the runtime side (`runtime`, like libcni).

pub mod cache;
pub mod config;
pub mod error;
pub mod invoke;
pub mod oplog;
pub mod report;
pub mod result;
pub mod runtime;
pub mod skel;
pub mod validate;
pub mod version;

pub use error::{code, CniError, CniResult};
