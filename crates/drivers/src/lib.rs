//! Ferry's driver layer, shared by both front doors (the CNI plugins and
//! `ferryd`'s CNM controller): everything that touches the kernel for an
//! attachment lives here once.
//!
//! - [`network`]: the [`NetworkDriver`] contract and its drivers (bridge,
//!   ptp, macvlan, host-device, tap, null, host, overlay), and [`network::Sandboxes`],
//!   the namespace work of a sandbox (create, delete, routes).
//! - [`link`]: the building blocks the drivers share: veth pairs, interface
//!   configuration inside a namespace, detached deletes, link attributes and
//!   generated names.
//! - [`qos`]: token bucket shaping of a container's host veth (the
//!   `bandwidth` plugin's tc work).
//! - The packet-filtering drivers: port mapping ([`portmap`]), the
//!   forwarding firewall ([`firewall`]), IP masquerade for container subnets
//!   ([`masq`]) and the bridge MAC spoof check ([`macspoof`]).
//!
//! Every driver owns one nftables table (named `ferry-*`) whose chains and
//! rules are fixed: they are (re)written idempotently in the same atomic
//! batch as each change, and per-container state is only ever set and map
//! *elements*. An ADD or DEL therefore costs the same with one container or
//! ten thousand. The elements an attachment added are written to a small
//! bookkeeping file (see [`state`]) so DEL, CHECK and GC find exactly them
//! again without listing anything.
//!
//! The drivers act on the network namespace of the calling thread (or the
//! one the given [`ferry_linux::nft::Socket`] was opened in): a plugin works
//! on the namespace it runs in, and tests run it inside a namespace acting
//! as the node.

pub mod conditions;
pub mod conntrack;
pub mod firewall;
pub mod forward;
pub mod link;
pub mod macspoof;
pub mod masq;
pub mod network;
pub mod portmap;
pub mod qos;
pub mod state;

use std::path::PathBuf;

/// What can go wrong in a driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid (CNI code 7); nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The request asks for something Ferry does not do (CNI code 2).
    #[error("{0}")]
    Unsupported(String),
    /// The kernel refused a change; `context` says what was being done.
    #[error("{context}: {source}")]
    Kernel {
        /// What was being done.
        context: String,
        /// The kernel's answer.
        source: ferry_linux::Error,
    },
    /// A bookkeeping file could not be read or written.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// What CHECK found missing.
    #[error("{0}")]
    Missing(String),
    /// The interface name asked for is already taken in the container's
    /// namespace (CNI code 4): nothing was changed.
    #[error("{0}")]
    Exists(String),
    /// The namespace named by a path does not exist (CNI code 3).
    #[error("network namespace {path:?} does not exist: {source}")]
    NoNamespace {
        /// The path given.
        path: String,
        /// The kernel's answer.
        source: ferry_linux::Error,
    },
    /// A system call outside netlink failed (CNI code 5).
    #[error("{context}: {source}")]
    System {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel did something Ferry did not expect; the message says what.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Wraps a kernel error with what was being done.
    pub fn kernel(context: impl Into<String>) -> impl FnOnce(ferry_linux::Error) -> Error {
        let context = context.into();
        move |source| Error::Kernel { context, source }
    }
}

/// [`Error::kernel`], the shorthand every driver module uses.
pub(crate) fn kernel(context: impl Into<String>) -> impl FnOnce(ferry_linux::Error) -> Error {
    Error::kernel(context)
}

/// A `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Plain data the doors name (validated names, MACs, macvlan modes); the
/// kernel work on them stays in this crate.
pub use ferry_linux::{check_ifname, MacAddr, MacvlanMode};
pub use network::{
    Drivers, Endpoint, EndpointSpec, NetworkDriver, NetworkKind, NetworkSpec, Placement, Sandboxes,
};

/// Default directory of the drivers' bookkeeping files.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/ferry";

/// The state directory: `FERRY_STATE_DIR` when set, else
/// [`DEFAULT_STATE_DIR`].
pub fn state_dir() -> PathBuf {
    match std::env::var_os("FERRY_STATE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}
