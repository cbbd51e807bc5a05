//! ferryd's metrics: `/metrics` in the OpenMetrics text format on a TCP
//! address (`--metrics-address`). Operations come in through three doors:
//! Docker's plugin protocol and Ferry's API (recorded by the request
//! middleware, [`crate::log::requests`]) and the CNI plugins, which send one
//! datagram per run ([`ferry_cni::report`]) to `--metrics-socket`. Counts of
//! networks, endpoints and sandboxes and pool use are read from the
//! controller at scrape time, the kernel's refusals from
//! [`ferry_linux::stats`]; the cluster store's calls are timed by
//! [`crate::timed_store`], the overlay agent sets its peers and the DNS
//! server counts its queries.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use ferry_cnm::Controller;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::state::Shared;

/// Where an operation came in.
#[derive(Clone, Copy, Debug)]
pub enum Door {
    Cni,
    Docker,
    Api,
}

impl Door {
    fn as_str(self) -> &'static str {
        match self {
            Door::Cni => "cni",
            Door::Docker => "docker",
            Door::Api => "api",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    door: &'static str,
    /// The CNI plugin, Docker's driver (`NetworkDriver`, `IpamDriver`) or `ferryd`.
    plugin: String,
    verb: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    network: String,
    subnet: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreCall {
    /// The store method: `hosts`, `publish_endpoint`, `claim_block`, ...
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsQuery {
    network: String,
    /// `local`, `forwarded`, `upstream_failed`, `refused` or `invalid`.
    outcome: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KernelError {
    /// The refused request's message type (`RTM_NEWLINK`, `NFT_MSG_NEWRULE`).
    operation: &'static str,
    /// `EEXIST`, ..., or `io`/`protocol` for failures without an errno.
    errno: String,
}

type HistogramFamily = Family<Operation, Histogram, fn() -> Histogram>;

/// The registry and the metrics ferryd keeps.
pub struct Metrics {
    registry: Registry,
    durations: HistogramFamily,
    operations: Family<Operation, Counter>,
    networks: Gauge,
    endpoints: Gauge,
    sandboxes: Gauge,
    pool_utilisation: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    store_calls: Family<StoreCall, Histogram, fn() -> Histogram>,
    overlay_hosts: Gauge,
    overlay_peers: Gauge,
    dns_queries: Family<DnsQuery, Counter>,
    netlink_errors: Family<KernelError, Counter>,
    nftables_errors: Family<KernelError, Counter>,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms to ~16 s: a CNI ADD is milliseconds, a stuck one seconds.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let durations: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let operations = Family::<Operation, Counter>::default();
        let (networks, endpoints, sandboxes) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        let pool_utilisation = Family::<PoolLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "ferry_operation_duration_seconds",
            "Duration of operations by door (cni, docker, api), plugin or driver, verb and outcome",
            durations.clone(),
        );
        // The encoder adds `_total`.
        registry.register(
            "ferry_operations",
            "Operations by door, plugin or driver, verb and outcome",
            operations.clone(),
        );
        registry.register("ferry_networks", "Networks ferryd knows", networks.clone());
        registry.register(
            "ferry_endpoints",
            "Endpoints ferryd knows",
            endpoints.clone(),
        );
        registry.register(
            "ferry_sandboxes",
            "Sandboxes ferryd knows",
            sandboxes.clone(),
        );
        registry.register(
            "ferry_pool_utilisation_ratio",
            "Addresses allocated from a network's pool over the pool's size",
            pool_utilisation.clone(),
        );
        let store_calls = Family::<StoreCall, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register(
            "ferry_cluster_store_duration_seconds",
            "Duration of cluster store calls (embedded redb or etcd) by operation and outcome",
            store_calls.clone(),
        );
        let (overlay_hosts, overlay_peers) = (Gauge::default(), Gauge::default());
        registry.register(
            "ferry_overlay_hosts",
            "Other hosts of the cluster the overlay agent sees",
            overlay_hosts.clone(),
        );
        registry.register(
            "ferry_overlay_peers",
            "Endpoint addresses of other hosts the overlay agent programs (FDB and neighbour entries)",
            overlay_peers.clone(),
        );
        let dns_queries = Family::<DnsQuery, Counter>::default();
        registry.register(
            "ferry_dns_queries",
            "DNS queries served by network, outcome and response code",
            dns_queries.clone(),
        );
        let (netlink_errors, nftables_errors) = (Family::default(), Family::default());
        registry.register(
            "ferry_netlink_errors",
            "rtnetlink requests the kernel refused, by message type and errno (lookups excluded)",
            netlink_errors.clone(),
        );
        registry.register(
            "ferry_nftables_errors",
            "nftables batches the kernel refused, by the refused message's type and errno",
            nftables_errors.clone(),
        );
        Metrics {
            registry,
            store_calls,
            overlay_hosts,
            overlay_peers,
            dns_queries,
            netlink_errors,
            nftables_errors,
            durations,
            operations,
            networks,
            endpoints,
            sandboxes,
            pool_utilisation,
        }
    }

    /// Counts one operation and its duration.
    pub fn observe(&self, door: Door, plugin: &str, verb: &str, ok: bool, duration: Duration) {
        let labels = Operation {
            door: door.as_str(),
            plugin: plugin.to_string(),
            verb: verb.to_string(),
            outcome: if ok { "ok" } else { "error" },
        };
        self.durations
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        self.operations.get_or_create(&labels).inc();
    }

    /// Times one call of the cluster store.
    pub fn store_call(&self, operation: &'static str, ok: bool, duration: Duration) {
        let labels = StoreCall {
            operation,
            outcome: if ok { "ok" } else { "error" },
        };
        self.store_calls
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// What the overlay agent sees: other hosts, and their endpoints.
    pub fn overlay(&self, hosts: usize, peers: usize) {
        self.overlay_hosts.set(hosts as i64);
        self.overlay_peers.set(peers as i64);
    }

    /// Counts one DNS query.
    pub fn dns_query(&self, network: &str, outcome: &'static str, rcode: &'static str) {
        self.dns_queries
            .get_or_create(&DnsQuery {
                network: network.to_string(),
                outcome,
                rcode,
            })
            .inc();
    }

    /// Brings the kernel error counters up to [`ferry_linux::stats`]'
    /// (which only grow).
    fn kernel_errors(&self) {
        for ((socket, operation, errno), n) in ferry_linux::stats::errors() {
            let family = match socket {
                "nftables" => &self.nftables_errors,
                _ => &self.netlink_errors,
            };
            let c = family.get_or_create(&KernelError { operation, errno });
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// The exposition, with the controller's counts as they are now.
    pub fn render(&self, c: &Controller) -> Result<String, std::fmt::Error> {
        self.networks.set(c.networks().count() as i64);
        self.endpoints.set(c.endpoints().count() as i64);
        self.sandboxes.set(c.sandboxes().count() as i64);
        // Removed networks must not linger: the family is rebuilt each time.
        self.pool_utilisation.clear();
        for p in crate::topology::pool_use(c) {
            self.pool_utilisation
                .get_or_create(&PoolLabels {
                    subnet: p.subnet.clone(),
                    network: p.network.clone(),
                })
                .set(p.ratio());
        }
        self.kernel_errors();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The metrics server's routes: `/metrics`, the topology page (`/` and
/// its assets, [`crate::topology`]) and the event stream it follows (`/events`).
pub fn router(metrics: Arc<Metrics>, ctl: Shared, events: Arc<crate::events::Events>) -> Router {
    let page = crate::topology::router(ctl.clone()).merge(crate::events::router(events));
    Router::new().merge(page).route(
        "/metrics",
        get(move || async move {
            let scraped = tokio::task::spawn_blocking(move || {
                let c = ctl.lock().map_err(|_| "controller poisoned".to_string())?;
                metrics.render(&c).map_err(|e| e.to_string())
            })
            .await;
            match scraped {
                Ok(Ok(body)) => (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response(),
                Ok(Err(e)) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
                Err(e) => {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                }
            }
        }),
    )
}

/// Receives the plugins' reports for good: each is counted under door
/// `cni` and becomes an attachment event. A malformed datagram is logged
/// and dropped.
pub async fn receive(
    socket: tokio::net::UnixDatagram,
    metrics: Arc<Metrics>,
    events: Arc<crate::events::Events>,
) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| format!("metrics socket: {e}"))?;
        match serde_json::from_slice::<ferry_cni::report::Report>(&buf[..n]) {
            Ok(r) => {
                metrics.observe(
                    Door::Cni,
                    &r.plugin,
                    &r.command,
                    r.error.is_none(),
                    Duration::from_secs_f64(r.duration_seconds.max(0.0)),
                );
                events.cni(&r);
            }
            Err(e) => tracing::warn!(error = %e, "malformed plugin report"),
        }
    }
}

/// Binds the plugins' datagram socket, replacing a stale one.
pub fn bind(path: &std::path::Path) -> Result<tokio::net::UnixDatagram, String> {
    crate::plugin_api::bind_with(path, 0o600, |p| tokio::net::UnixDatagram::bind(p))
}
