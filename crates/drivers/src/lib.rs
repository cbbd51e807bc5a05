//! Ferry's packet-filtering layer, shared by the CNI plugins and `ferryd`:
//! port mapping ([`portmap`]), the forwarding firewall ([`firewall`]) and
//! IP masquerade for container subnets ([`masq`]).
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
pub mod macspoof;
pub mod masq;
pub mod portmap;
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
}

impl Error {
    pub(crate) fn kernel(context: impl Into<String>) -> impl FnOnce(ferry_linux::Error) -> Error {
        let context = context.into();
        move |source| Error::Kernel { context, source }
    }
}

/// A `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

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
