//! Ferry IPAM: range sets and a host-local-compatible allocator.
//!
//! - [`IpamConfig`]: the `ipam` section of a host-local network config, and
//!   [`IpamConfig::canonicalize`] to validate it into a [`Config`].
//! - [`Store`] / [`StoreTxn`]: where reservations live; [`DiskStore`] keeps
//!   them exactly as the reference `host-local` plugin does, so a node can
//!   switch between the two either way without losing a lease.
//! - [`Allocator`]: one address per range set per attachment, in the
//!   reference's round-robin order; release, lookup by attachment and GC.
//!
//! ```no_run
//! use ferry_ipam::{Allocator, Attachment, DiskStore, IpamConfig};
//! # fn main() -> Result<(), ferry_ipam::IpamError> {
//! let raw: IpamConfig = IpamConfig {
//!     subnet: Some("198.19.64.0/20".parse().unwrap()),
//!     ..Default::default()
//! };
//! let config = raw.canonicalize()?;
//! let store = DiskStore::open("mynet", &config.data_dir)?;
//! let alloc = Allocator::new(config.ranges, store);
//! let key = Attachment::new("0123abcd", "eth0");
//! let ips = alloc.allocate(&key, &[])?;
//! alloc.release(&key)?;
//! # let _ = ips; Ok(()) }
//! ```

mod allocator;
mod config;
mod disk;
mod error;
mod store;

pub use allocator::{
    next_free, pick_in_set, reserve_picks, Allocation, Allocator, Pick, RangeIter,
};
pub use config::{
    canonical_ip, nets_overlap, Config, IpamConfig, Range, RangeConfig, RangeSet, Route,
    DEFAULT_DATA_DIR,
};
pub use disk::{parse_holder, DiskStore, INDEX_DIR, LAST_IP_PREFIX, LOCK_FILE};
pub use error::{IpamError, Result, CNI_INVALID_CONFIG, CNI_PLUGIN_ERROR, CNI_TRY_AGAIN_LATER};
pub use store::{Attachment, Holder, Store, StoreTxn};
