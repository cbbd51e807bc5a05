//! The CNI error result and its well-known codes (SPEC.md, section 5 "Error").

use serde::{Deserialize, Serialize};
use std::fmt;

/// Well-known CNI error codes. 0-99 are reserved by the spec; 100+ are plugin-specific.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration (message names key and value).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables (message names them).
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot service ADD requests.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may have limited connectivity.
    pub const PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY: u32 = 51;
    /// First plugin-specific code: a generic internal failure of a Ferry plugin.
    pub const INTERNAL: u32 = 100;
    /// The runtime could not find or run a plugin binary (libcni reports these as plain errors).
    pub const PLUGIN_EXEC: u32 = 101;
}

/// A CNI error as printed by plugins on stdout: `{"cniVersion","code","msg","details"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            cni_version: String::new(),
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
    pub fn incompatible_version(details: impl Into<String>) -> Self {
        Self::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            details,
        )
    }
    pub fn unsupported_field(details: impl Into<String>) -> Self {
        Self::new(
            code::UNSUPPORTED_FIELD,
            "unsupported field in network configuration",
            details,
        )
    }
    pub fn invalid_env(details: impl Into<String>) -> Self {
        Self::new(
            code::INVALID_ENVIRONMENT,
            "invalid environment variables",
            details,
        )
    }
    pub fn io(details: impl Into<String>) -> Self {
        Self::new(code::IO_FAILURE, "I/O failure", details)
    }
    pub fn decoding(details: impl Into<String>) -> Self {
        Self::new(code::DECODING_FAILURE, "failed to decode content", details)
    }
    pub fn invalid_config(details: impl Into<String>) -> Self {
        Self::new(
            code::INVALID_NETWORK_CONFIG,
            "invalid network config",
            details,
        )
    }
    pub fn internal(details: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, "plugin failure", details)
    }
    /// Sets the version printed with the error (the request's cniVersion).
    pub fn with_version(mut self, version: &str) -> Self {
        self.cni_version = version.to_string();
        self
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code)
        } else {
            write!(f, "{}: {} (code {})", self.msg, self.details, self.code)
        }
    }
}

impl std::error::Error for CniError {}

impl From<std::io::Error> for CniError {
    fn from(e: std::io::Error) -> Self {
        CniError::io(e.to_string())
    }
}

impl From<serde_json::Error> for CniError {
    fn from(e: serde_json::Error) -> Self {
        CniError::decoding(e.to_string())
    }
}

pub type CniResult<T> = std::result::Result<T, CniError>;
