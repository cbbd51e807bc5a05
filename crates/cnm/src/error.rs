//! Errors of the CNM controller. Each message says what to do; handlers send
//! them to Docker in `Err` (network driver) or `Error` (IPAM).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CnmError {
    /// The request names something invalid (a bad CIDR, an unknown option value).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A network, endpoint or pool ID Ferry does not know.
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// The requested pool overlaps one already in use.
    #[error("pool {requested} overlaps pool {existing} in address space {space:?}: choose another subnet")]
    PoolOverlap {
        requested: String,
        existing: String,
        space: String,
    },
    /// The requested pool overlaps a network the host already routes.
    #[error("requested pool {requested} overlaps with existing host route {route}: choose a subnet the host does not route yet")]
    RouteOverlap { requested: String, route: String },
    /// No default pool has room for another network.
    #[error("no free {family} pool left in the default address pools {pools}: remove unused networks or add a pool (--default-address-pool)")]
    NoDefaultPool { family: &'static str, pools: String },
    /// Every address of a pool is in use.
    #[error("pool {0} is exhausted: no free address left")]
    Exhausted(String),
    /// The requested address is taken or outside the pool.
    #[error("address {address} is not available in pool {pool}: {why}")]
    AddressUnavailable {
        address: String,
        pool: String,
        why: &'static str,
    },
    /// The endpoint already has a sandbox.
    #[error("endpoint {0} is already joined to a sandbox: Leave it first")]
    AlreadyJoined(String),
    /// A feature Ferry does not provide yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// A driver could not do what was asked; its message says what and why.
    #[error(transparent)]
    Driver(ferry_drivers::Error),
    /// The cluster store cannot be reached now (CNI code 11, HTTP 503).
    #[error("cluster store unavailable, try again later: {0}")]
    Unavailable(String),
    /// The state database failed.
    #[error("state store: {0}")]
    Store(String),
}

impl CnmError {
    pub fn not_found(kind: &'static str, id: &str) -> Self {
        CnmError::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

impl From<ferry_drivers::Error> for CnmError {
    fn from(e: ferry_drivers::Error) -> Self {
        use ferry_drivers::Error as E;
        match e {
            E::Invalid(m) | E::Exists(m) => CnmError::Invalid(m),
            E::Unsupported(m) => CnmError::Unsupported(m),
            e @ E::NoNamespace { .. } => CnmError::Invalid(e.to_string()),
            e => CnmError::Driver(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, CnmError>;
