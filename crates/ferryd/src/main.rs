//! ferryd: Ferry's node daemon. Serves Docker's remote NetworkDriver and
//! IpamDriver (plugin protocol v1.2) on `/run/docker/plugins/ferry.sock`, so
//! `docker network create -d ferry --ipam-driver ferry` uses Ferry networks,
//! and Ferry's own read API on a root-only socket. State lives in an embedded
//! redb file and survives kill -9. Metrics (`/metrics`, OpenMetrics) and
//! the live topology page (`/`) are served on a TCP address, the CNI
//! plugins report to a datagram socket.

mod agent;
mod cluster_api;
mod cni_api;
mod dns;
mod events;
mod log;
mod metrics;
mod plugin_api;
mod state;
mod sweep;
mod systemd;
mod timed_store;
mod topology;

use clap::Parser;
use ferry_cnm::ipam::{default_pools, DefaultPool};
use ferry_cnm::{Controller, ControllerConfig};
use ferry_drivers::link::detach::Deleter;
use ferry_drivers::network::registry::LinuxDrivers;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "ferryd",
    version,
    about = "Ferry's node daemon (CNM controller, Docker plugin)"
)]
struct Args {
    /// Docker plugin socket (Docker discovers plugins in /run/docker/plugins).
    #[arg(long, default_value = "/run/docker/plugins/ferry.sock")]
    plugin_socket: PathBuf,
    /// Ferry's own API socket (root only).
    #[arg(long, default_value = "/run/ferry/ferry.sock")]
    api_socket: PathBuf,
    /// The state database.
    #[arg(long, default_value = "/var/lib/ferry/ferryd.redb")]
    state: PathBuf,
    /// A default address pool, `base=CIDR,size=N` (repeatable; replaces Ferry's defaults).
    #[arg(long = "default-address-pool")]
    default_address_pool: Vec<String>,
    /// What to log (on stderr): a level (error, warn, info, debug, trace) or
    /// RUST_LOG directives (`ferryd=debug`). The flag wins over RUST_LOG.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// The cluster store of overlay networks: `etcd://HOST:PORT[,HOST:PORT...]`.
    /// Without it, an embedded store (`--cluster-state`) serves this host alone.
    #[arg(long)]
    cluster_store: Option<String>,
    /// This host's underlay address, the VTEP of its overlay networks
    /// (default: the first IPv4 address of the default route's interface).
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// This host's name in the cluster (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The embedded cluster store, used without --cluster-store (default:
    /// `cluster.redb` beside --state).
    #[arg(long)]
    cluster_state: Option<PathBuf>,
    /// Where `/metrics` and the topology page `/` are served (TCP; default
    /// 127.0.0.1:9641, served only when free: a busy address given here is an error).
    #[arg(long)]
    metrics_address: Option<std::net::SocketAddr>,
    /// The datagram socket the CNI plugins report their runs to
    /// (the plugins read `FERRY_METRICS_SOCKET`).
    #[arg(long, default_value = ferry_cni::report::DEFAULT_SOCKET)]
    metrics_socket: PathBuf,
    /// TTL in seconds of the DNS records of Ferry's names.
    #[arg(long, default_value_t = 5)]
    dns_ttl: u32,
    /// The upstream DNS servers for names outside Ferry.
    #[arg(long, default_value = "/etc/resolv.conf")]
    dns_resolv_conf: PathBuf,
    /// Seconds an address of a Docker network's pool may stay held by no
    /// endpoint before ferryd releases it (requests lost to a crash).
    #[arg(long, default_value_t = 120)]
    unclaimed_address_grace: u64,
    /// Seconds a Docker endpoint's container end may stay in ferryd's
    /// namespace before ferryd deletes the endpoint (requests lost to a
    /// crash). Keep it well above the time a loaded node takes from
    /// CreateEndpoint to starting the container, plus Docker's plugin
    /// retries (30 s): the end leaves only when the container starts.
    #[arg(long, default_value_t = 120)]
    stray_endpoint_grace: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match log::init(&args.log_level).and_then(|()| run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ferryd stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let pools = if args.default_address_pool.is_empty() {
        default_pools()
    } else {
        args.default_address_pool
            .iter()
            .map(|p| DefaultPool::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?
    };
    let config = ControllerConfig {
        state_path: args.state.clone(),
        default_pools: pools,
    };
    // A daemon deletes links from a thread (a forked deleter would leave
    // zombies) and keeps its nftables socket (closing one waits a grace period).
    let drivers = Arc::new(LinuxDrivers::new(Deleter::Thread, config.driver_root()));
    ferry_drivers::network::keep_nft_socket_open();
    let mut controller = Controller::open(config, drivers.clone()).map_err(|e| e.to_string())?;
    for (network, done) in controller.reconcile() {
        match done {
            Ok(links) if links.is_empty() => {}
            Ok(links) => tracing::warn!(network, ?links, "deleted links no endpoint owns"),
            Err(e) => tracing::warn!(network, error = %e, "reconcile failed"),
        }
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let cluster = join_cluster(&args, &mut controller, metrics.clone())?;
    let shared = state::State::new(controller);
    sweep::spawn(
        shared.clone(),
        sweep::Graces {
            address: std::time::Duration::from_secs(args.unclaimed_address_grace),
            endpoint: std::time::Duration::from_secs(args.stray_endpoint_grace),
        },
    )
    .map_err(|e| format!("address sweep: {e}"))?;
    let remote = dns::Remote::default();
    if let Some((store, host)) = cluster {
        let vtep = shared
            .lock()
            .ok()
            .and_then(|c| c.cluster().map(|c| c.vtep))
            .ok_or("controller lock poisoned")?;
        agent::Agent::new(
            store,
            host,
            vtep,
            shared.clone(),
            drivers,
            metrics.clone(),
            remote.clone(),
        )
        .spawn()
        .map_err(|e| format!("overlay agent: {e}"))?;
    }
    // Handlers that touch the controller run on the blocking pool; the
    // workers parse, answer reads from the snapshot and write: one per core.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async move {
        let plugin = plugin_api::bind(&args.plugin_socket, 0o600)?;
        let api = plugin_api::bind(&args.api_socket, 0o600)?;
        let reports = metrics::bind(&args.metrics_socket)?;
        let scrape = metrics_listener(args.metrics_address).await?;
        let hooks = log::Hooks {
            socket: log::Socket::Api,
            metrics,
            events: Arc::new(events::Events::default()),
        };
        tracing::info!(
            plugin_socket = %args.plugin_socket.display(),
            api_socket = %args.api_socket.display(),
            state = %args.state.display(),
            metrics_address = ?scrape.as_ref().and_then(|l| l.local_addr().ok()),
            metrics_socket = %args.metrics_socket.display(),
            "serving Docker's plugin protocol and Ferry's API"
        );
        let p = tokio::spawn(plugin_api::serve(
            plugin,
            plugin_api::docker_router(shared.clone(), hooks.clone()),
        ));
        let dns = dns::Dns::start(
            shared.clone(),
            dns::Config {
                ttl: args.dns_ttl,
                resolv_conf: args.dns_resolv_conf.clone(),
                metrics: hooks.metrics.clone(),
                cni_names: args.state.with_file_name("dns-cni.json"),
                remote,
            },
        )
        .await;
        let ferry = plugin_api::ferry_router(shared.clone(), hooks.clone())
            .merge(dns::cni::router(dns.clone()))
            .layer(axum::middleware::from_fn_with_state(dns, dns::after_writes));
        let a = tokio::spawn(plugin_api::serve(api, ferry));
        let page = metrics::router(hooks.metrics.clone(), shared.clone(), hooks.events.clone());
        let m = tokio::spawn(async move {
            match scrape {
                Some(l) => axum::serve(l, page).await.map_err(|e| e.to_string()),
                None => std::future::pending().await,
            }
        });
        let r = tokio::spawn(metrics::receive(reports, hooks.metrics, hooks.events));
        // Every socket listens (connections queue until the tasks accept) and
        // the state is reloaded and reconciled: ready for systemd.
        let notify = systemd::notifier();
        if let Some(n) = &notify {
            systemd::ready(n, &shared);
            systemd::spawn_watchdog(n.clone(), shared.clone());
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("signal handler: {e}"))?;
        let stopped = tokio::select! {
            _ = tokio::signal::ctrl_c() => Ok("SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
            r = p => Err(server_stopped("plugin", r)),
            r = a => Err(server_stopped("API", r)),
            r = m => Err(server_stopped("metrics", r)),
            r = r => Err(server_stopped("plugin reports", r)),
        };
        if let Some(n) = &notify {
            systemd::send(n, "STOPPING=1");
        }
        let _ = std::fs::remove_file(&args.plugin_socket);
        let _ = std::fs::remove_file(&args.api_socket);
        let _ = std::fs::remove_file(&args.metrics_socket);
        let signal = stopped?;
        tracing::info!(signal, "shutting down");
        // The state stays open (threads hold it): commit what was deferred.
        let flushed = match shared.lock() {
            Ok(c) => c.flush().map_err(|e| e.to_string()),
            Err(_) => Err("the state lock is poisoned".to_string()),
        };
        flushed.map_err(|e| format!("cannot commit the state at shutdown: {e}"))
    })
}

/// The metrics listener: the address asked for, or else the default one
/// when it is free (a second ferryd on the host, in a test say, goes without).
async fn metrics_listener(
    asked: Option<std::net::SocketAddr>,
) -> Result<Option<tokio::net::TcpListener>, String> {
    let addr = asked.unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 9641)));
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if asked.is_some() => Err(format!("metrics address {addr}: {e}")),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "no /metrics: the default address is busy");
            Ok(None)
        }
    }
}

/// Why a server task ended (it only ends on failure).
fn server_stopped(which: &str, r: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => format!("{which} server stopped"),
        Ok(Err(e)) => format!("{which} server failed: {e}"),
        Err(e) => format!("{which} server task failed: {e}"),
    }
}

/// The cluster store and this host's name in it.
type Joined = (Arc<dyn ferry_cluster::ClusterStore>, String);

/// Opens the cluster store, registers this host under its lease and
/// publishes its overlay endpoints again. A host without an underlay
/// address runs without overlay networks.
fn join_cluster(
    args: &Args,
    controller: &mut Controller,
    metrics: Arc<metrics::Metrics>,
) -> Result<Option<Joined>, String> {
    let host = match &args.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .map_err(|e| format!("hostname: {e}"))?,
    };
    let vtep = match args.advertise_address.or_else(default_address) {
        Some(ip) => ip,
        None => {
            tracing::warn!("no underlay address (--advertise-address): overlay networks are off");
            return Ok(None);
        }
    };
    let local = args
        .cluster_state
        .clone()
        .unwrap_or_else(|| args.state.with_file_name("cluster.redb"));
    let store = ferry_cluster::open(
        args.cluster_store.as_deref(),
        &local,
        &host,
        ferry_cluster::DEFAULT_TTL,
    )
    .map_err(|e| e.to_string())?;
    let store = timed_store::TimedStore::wrap(store, metrics);
    controller.set_cluster(ferry_cnm::overlay::Cluster {
        store: store.clone(),
        host: host.clone(),
        vtep,
    });
    // A store that is down now is retried by the agent.
    match agent::register(store.as_ref(), &host, vtep, controller) {
        Ok(n) => tracing::info!(
            host = %host,
            %vtep,
            backend = store.backend(),
            endpoints = n,
            "joined the cluster"
        ),
        Err(e) => tracing::warn!(host = %host, error = %e, "cannot join the cluster yet; retrying"),
    }
    Ok(Some((store, host)))
}

/// The first IPv4 address of the interface of the default route.
fn default_address() -> Option<std::net::IpAddr> {
    ferry_drivers::network::sandbox::default_route_address()
}
