//! CNI for Ferry: spec types for every version, config loading, the plugin
//! entry point (`skel`) and the runtime side (`runtime`, like libcni).

pub mod error;
pub mod result;
pub mod version;

pub use error::{code, CniError, CniResult};
