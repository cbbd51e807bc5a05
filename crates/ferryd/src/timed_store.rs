//! The cluster store with every call timed into
//! `ferry_cluster_store_duration_seconds{operation, outcome}`: ferryd wraps
//! the store it opens, so the controller, the overlay agent and the API
//! reads are all measured in one place.

use crate::metrics::Metrics;
use ferry_cluster::{
    BlockRecord, ClusterStore, EndpointRecord, Event, HostRecord, NetworkRecord, Result,
};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct TimedStore {
    inner: Arc<dyn ClusterStore>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    pub fn wrap(inner: Arc<dyn ClusterStore>, metrics: Arc<Metrics>) -> Arc<dyn ClusterStore> {
        Arc::new(TimedStore { inner, metrics })
    }

    fn time<T>(&self, operation: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let r = f();
        self.metrics
            .store_call(operation, r.is_ok(), start.elapsed());
        r
    }
}

impl ClusterStore for TimedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn register_host(&self, host: &HostRecord) -> Result<()> {
        self.time("register_host", || self.inner.register_host(host))
    }
    fn unregister_host(&self) -> Result<()> {
        self.time("unregister_host", || self.inner.unregister_host())
    }
    fn hosts(&self) -> Result<Vec<(HostRecord, Duration)>> {
        self.time("hosts", || self.inner.hosts())
    }
    fn create_network(&self, rec: &NetworkRecord) -> Result<NetworkRecord> {
        self.time("create_network", || self.inner.create_network(rec))
    }
    fn delete_network(&self, name: &str) -> Result<()> {
        self.time("delete_network", || self.inner.delete_network(name))
    }
    fn networks(&self) -> Result<Vec<NetworkRecord>> {
        self.time("networks", || self.inner.networks())
    }
    fn claim_block(&self, network: &str, v6: bool) -> Result<Option<IpNet>> {
        self.time("claim_block", || self.inner.claim_block(network, v6))
    }
    fn reclaim_block(&self, network: &str, block: IpNet) -> Result<bool> {
        self.time("reclaim_block", || self.inner.reclaim_block(network, block))
    }
    fn release_block(&self, network: &str, block: IpNet) -> Result<()> {
        self.time("release_block", || self.inner.release_block(network, block))
    }
    fn blocks(&self, network: &str) -> Result<Vec<BlockRecord>> {
        self.time("blocks", || self.inner.blocks(network))
    }
    fn publish_endpoint(&self, rec: &EndpointRecord) -> Result<()> {
        self.time("publish_endpoint", || self.inner.publish_endpoint(rec))
    }
    fn withdraw_endpoint(&self, network: &str, ip: IpAddr) -> Result<()> {
        self.time("withdraw_endpoint", || {
            self.inner.withdraw_endpoint(network, ip)
        })
    }
    fn endpoints(&self, network: Option<&str>) -> Result<Vec<EndpointRecord>> {
        self.time("endpoints", || self.inner.endpoints(network))
    }
    /// Only the watch's start (its first listing) is timed.
    fn watch(&self) -> Result<Receiver<Event>> {
        self.time("watch", || self.inner.watch())
    }
}
