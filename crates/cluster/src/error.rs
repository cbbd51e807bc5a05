//! The store's errors. Each door maps them to its own codes: `Unavailable`
//! becomes CNI code 11 ("try again later").

/// What can go wrong with the cluster store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store did not answer within its deadline, or cannot be reached.
    #[error("cluster store unavailable: {0} (try again later)")]
    Unavailable(String),
    /// The request reached no etcd member (gRPC UNAVAILABLE); the store
    /// sends it again to the next member until its deadline, then answers
    /// `Unavailable`. Callers never see this variant.
    #[error("cluster store member unreachable: {0}")]
    Unreachable(String),
    /// The request contradicts what the store holds (another network of that
    /// name, a VNI in use, a block held by another host).
    #[error("cluster store conflict: {0}")]
    Conflict(String),
    /// The request itself is wrong (a bad name, VNI or option).
    #[error("invalid request to the cluster store: {0}")]
    Invalid(String),
    /// A named object does not exist.
    #[error("not found in the cluster store: {0}")]
    NotFound(String),
    /// A stored value cannot be read back.
    #[error("corrupt entry {key} in the cluster store: {reason}")]
    Corrupt { key: String, reason: String },
    /// The embedded (redb) store failed on disk.
    #[error("local cluster store {path}: {reason}")]
    Local { path: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
