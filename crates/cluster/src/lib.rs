//! Ferry's cluster state: networks of global scope, the hosts of the cluster,
//! the address blocks each host claimed and the endpoints each host
//! published. One synchronous trait (`ClusterStore`; ferryd's controller is
//! synchronous) over two backends:
//!
//! - **redb** (default, one node): an embedded file; see `redb_kv`.
//! - **etcd** v3 (many nodes): blocks, endpoints and the host record live
//!   under the host's lease, so a host that dies disappears with everything
//!   it published; see `etcd_kv` for the lease, its keepalive and the
//!   re-publish after a lost lease. Every call has a deadline of 3 s
//!   (`Error::Unavailable` past it).
//!
//! Keys and values are the same in both (see `keys`).

mod blocks;
mod error;
mod etcd_kv;
mod keys;
mod model;
mod redb_kv;
mod store;

pub use blocks::{block_prefix, DEFAULT_V4_PREFIX, OPTION_V4, OPTION_V6};
pub use error::{Error, Result};
pub use etcd_kv::DEADLINE;
pub use model::{BlockRecord, EndpointRecord, Event, HostRecord, NetworkRecord, Snapshot};
pub use store::MAX_VNI;

use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// The default host lease TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The cluster state as one host sees it. Every method is synchronous and
/// bounded in time; call it from a blocking thread.
pub trait ClusterStore: Send + Sync {
    /// "redb" or "etcd".
    fn backend(&self) -> &'static str;
    /// Registers this host (its id must be the store's `host_id`) under
    /// this process's lease; `registered_unix` 0 means now.
    fn register_host(&self, host: &HostRecord) -> Result<()>;
    /// Clean shutdown: the host, its blocks and its endpoints go (etcd:
    /// the lease is revoked).
    fn unregister_host(&self) -> Result<()>;
    /// Every live host with the time since it registered.
    fn hosts(&self) -> Result<Vec<(HostRecord, Duration)>>;
    /// Creates a network; `vni` 0 allocates a free one (CAS on `vnis/`).
    /// The same name with the same subnets returns the existing record; with
    /// other subnets, `Error::Conflict` naming both.
    fn create_network(&self, rec: &NetworkRecord) -> Result<NetworkRecord>;
    /// Deletes a network with its blocks and endpoints; idempotent.
    fn delete_network(&self, name: &str) -> Result<()>;
    fn networks(&self) -> Result<Vec<NetworkRecord>>;
    /// Claims a free block of the network's subnets of one family for this
    /// host, with create-if-absent so two hosts never get the same block:
    /// /26 for IPv4, as many host bits (/122) for IPv6, or the prefix set by
    /// the options `ferry.block.v4` / `ferry.block.v6`. None when every
    /// block is taken; `Error::NotFound` for an unknown network.
    fn claim_block(&self, network: &str, v6: bool) -> Result<Option<IpNet>>;
    /// Releases a block of this host; idempotent; `Conflict` if another
    /// host holds it.
    /// Claims `block` again for this host, as after a restart (its record
    /// may have gone with the previous lease): true when the block is this
    /// host's now, false when another host holds it.
    fn reclaim_block(&self, network: &str, block: IpNet) -> Result<bool>;
    fn release_block(&self, network: &str, block: IpNet) -> Result<()>;
    fn blocks(&self, network: &str) -> Result<Vec<BlockRecord>>;
    /// Publishes an endpoint of this host (`rec.host` must be the store's
    /// host id): one write, under the lease.
    fn publish_endpoint(&self, rec: &EndpointRecord) -> Result<()>;
    /// Withdraws an endpoint; idempotent.
    fn withdraw_endpoint(&self, network: &str, ip: IpAddr) -> Result<()>;
    /// Every endpoint, or those of one network.
    fn endpoints(&self, network: Option<&str>) -> Result<Vec<EndpointRecord>>;
    /// A `Snapshot` first, then changes. A watch that falls behind
    /// compaction or loses its connection lists again and sends a new
    /// `Snapshot` (which replaces all state the receiver holds). The
    /// channel closes when the store is dropped.
    fn watch(&self) -> Result<Receiver<Event>>;
}

/// Opens the cluster store: `url` "etcd://host:port[,host:port...]" for
/// etcd, None for the embedded redb file at `local_path`. `host_id` names
/// this host; `ttl` is its lease (etcd; `DEFAULT_TTL` normally).
pub fn open(
    url: Option<&str>,
    local_path: &Path,
    host_id: &str,
    ttl: Duration,
) -> Result<Arc<dyn ClusterStore>> {
    keys::check_name("host", host_id)?;
    match url {
        None => Ok(Arc::new(store::Store(redb_kv::RedbKv::open(
            local_path, host_id,
        )?))),
        Some(url) => match url.strip_prefix("etcd://") {
            Some(endpoints) => Ok(Arc::new(store::Store(etcd_kv::EtcdKv::open(
                endpoints, host_id, ttl,
            )?))),
            None => Err(Error::Invalid(format!(
                "cluster store URL {url:?}: expected etcd://host:port[,host:port...]"
            ))),
        },
    }
}

/// Seams for this crate's tests; not part of the API.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// An etcd store whose watch starts at revision `rev` without a first
    /// Snapshot, as a watcher that fell behind: a compacted `rev` must make
    /// it list again and send a Snapshot.
    pub fn etcd_watch_from(
        endpoints: &str,
        host_id: &str,
        rev: i64,
    ) -> Result<(Arc<dyn ClusterStore>, Receiver<Event>)> {
        let kv = etcd_kv::EtcdKv::open(endpoints, host_id, DEFAULT_TTL)?;
        let rx = kv.watch_from(rev);
        Ok((Arc::new(store::Store(kv)), rx))
    }
}
