//! The one error type of this crate.

use std::net::IpAddr;
use std::path::PathBuf;

/// CNI error code for an invalid network configuration.
pub const CNI_INVALID_CONFIG: u32 = 7;
/// CNI error code for a transient failure: the caller should try again later.
pub const CNI_TRY_AGAIN_LATER: u32 = 11;
/// First CNI error code reserved for plugins; used for every other failure.
pub const CNI_PLUGIN_ERROR: u32 = 100;

/// Everything that can go wrong while validating an `ipam` section or
/// allocating, looking up and releasing addresses.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The configuration names no range at all.
    #[error(
        "no IP ranges specified: set `ranges` (a list of range sets) or the top-level `subnet`"
    )]
    NoRanges,

    /// A range set (one entry of `ranges`) is an empty list.
    #[error(
        "invalid range set {set}: empty range set, give it at least one range with a `subnet`"
    )]
    EmptyRangeSet {
        /// Index of the range set in `ranges`.
        set: usize,
    },

    /// The subnet has too few addresses to allocate from (IPv4 /31 and /32,
    /// IPv6 /127 and /128).
    #[error("invalid range set {set}: network {subnet} too small to allocate from; use at most a /30 for IPv4 or a /126 for IPv6")]
    SubnetTooSmall {
        /// Index of the range set in `ranges`.
        set: usize,
        /// The offending subnet.
        subnet: ipnet::IpNet,
    },

    /// The subnet was written with host bits set, e.g. `198.19.64.7/20`.
    #[error("invalid range set {set}: subnet {subnet} has host bits set; write it as {network}")]
    HostBitsSet {
        /// Index of the range set in `ranges`.
        set: usize,
        /// The subnet as written.
        subnet: ipnet::IpNet,
        /// The subnet with host bits cleared, which is what was probably meant.
        network: ipnet::IpNet,
    },

    /// `rangeStart`, `rangeEnd` or `gateway` lies outside the subnet or is of
    /// the other address family.
    #[error("invalid range set {set}: {field} {ip} is not in network {subnet}")]
    NotInSubnet {
        /// Index of the range set in `ranges`.
        set: usize,
        /// The config key: `rangeStart`, `rangeEnd` or `gateway`.
        field: &'static str,
        /// The address given.
        ip: IpAddr,
        /// The subnet it must lie in.
        subnet: ipnet::IpNet,
    },

    /// `rangeEnd` comes before `rangeStart`.
    #[error(
        "invalid range set {set}: rangeEnd {end} is before rangeStart {start} in network {subnet}"
    )]
    EndBeforeStart {
        /// Index of the range set in `ranges`.
        set: usize,
        /// The range start.
        start: IpAddr,
        /// The range end.
        end: IpAddr,
        /// The subnet of the range.
        subnet: ipnet::IpNet,
    },

    /// One range set mixes IPv4 and IPv6 ranges.
    #[error("invalid range set {set}: mixed address families; put IPv4 and IPv6 ranges in separate range sets")]
    MixedFamilies {
        /// Index of the range set in `ranges`.
        set: usize,
    },

    /// Two ranges of the same range set overlap.
    #[error("invalid range set {set}: ranges {a} and {b} overlap")]
    RangesOverlap {
        /// Index of the range set in `ranges`.
        set: usize,
        /// First range, as `start-end`.
        a: String,
        /// Second range, as `start-end`.
        b: String,
    },

    /// Two range sets overlap each other.
    #[error("range set {a} overlaps with range set {b}; range sets must be disjoint")]
    RangeSetsOverlap {
        /// Index of the first range set.
        a: usize,
        /// Index of the second range set.
        b: usize,
    },

    /// The network name cannot be used as a directory name.
    #[error("invalid network name {0:?}: it must be non-empty, not `.` or `..`, and contain no `/` or NUL")]
    InvalidNetworkName(String),

    /// The container ID or interface name is empty or contains characters
    /// that cannot be stored in a host-local reservation file.
    #[error("invalid attachment ({container_id:?}, {ifname:?}): {reason}")]
    InvalidAttachment {
        /// The container ID given.
        container_id: String,
        /// The interface name given.
        ifname: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A requested address lies in none of the configured range sets.
    #[error("requested IP address {ip} is not in any configured range ({ranges})")]
    RequestedNotInRange {
        /// The requested address.
        ip: IpAddr,
        /// All configured ranges, for the message.
        ranges: String,
    },

    /// A requested address is the gateway of its subnet.
    #[error("requested IP address {ip} is the subnet's gateway and cannot be allocated")]
    RequestedIsGateway {
        /// The requested address.
        ip: IpAddr,
    },

    /// A requested address is already reserved by some attachment.
    #[error(
        "requested IP address {ip} is not available in range set {ranges}: it is already reserved"
    )]
    RequestedUnavailable {
        /// The requested address.
        ip: IpAddr,
        /// The range set it belongs to.
        ranges: String,
    },

    /// More requested addresses than could be matched to range sets (two in
    /// the same range set, for example).
    #[error(
        "failed to allocate all requested IPs: {0}; at most one per range set can be honoured"
    )]
    RequestedUnfulfilled(String),

    /// The attachment already holds an address in this range set.
    #[error("{ip} has been allocated to {container_id}, duplicate allocation is not allowed; DEL the attachment first")]
    DuplicateAllocation {
        /// The address already held.
        ip: IpAddr,
        /// The container ID holding it.
        container_id: String,
    },

    /// Every address of the range set is reserved.
    #[error("no IP addresses available in range set: {ranges}; release unused attachments (DEL or GC) or widen the range")]
    Exhausted {
        /// The exhausted range set, as `start-end,...`.
        ranges: String,
    },

    /// Taking the store's exclusive lock failed.
    #[error("cannot lock IPAM store {}: {source}; retry later", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: nix::errno::Errno,
    },

    /// A file-system operation on the store failed.
    #[error("IPAM store: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `create` or `read`.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl IpamError {
    /// The CNI error code the plugin layer should report: 7 for invalid
    /// configuration, 11 for transient (lock) failures, 100 for the rest.
    pub fn cni_code(&self) -> u32 {
        match self {
            IpamError::NoRanges
            | IpamError::EmptyRangeSet { .. }
            | IpamError::SubnetTooSmall { .. }
            | IpamError::HostBitsSet { .. }
            | IpamError::NotInSubnet { .. }
            | IpamError::EndBeforeStart { .. }
            | IpamError::MixedFamilies { .. }
            | IpamError::RangesOverlap { .. }
            | IpamError::RangeSetsOverlap { .. }
            | IpamError::InvalidNetworkName(_)
            | IpamError::InvalidAttachment { .. } => CNI_INVALID_CONFIG,
            IpamError::Lock { .. } => CNI_TRY_AGAIN_LATER,
            IpamError::RequestedNotInRange { .. }
            | IpamError::RequestedIsGateway { .. }
            | IpamError::RequestedUnavailable { .. }
            | IpamError::RequestedUnfulfilled(_)
            | IpamError::DuplicateAllocation { .. }
            | IpamError::Exhausted { .. }
            | IpamError::Io { .. } => CNI_PLUGIN_ERROR,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IpamError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;
