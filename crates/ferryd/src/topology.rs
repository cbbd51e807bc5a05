//! The live topology page on the metrics address: `/` (the page),
//! `/topology.js` and `/topology.css` (its assets, compiled in, so nothing
//! comes from outside the machine) and `/topology.json`, a snapshot of
//! what is connected to what, built from the controller. The page redraws
//! from a new snapshot after every event of `/events`, served here too.

use crate::state::Shared;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ferry_cnm::{Controller, Endpoint, Network};
use serde::Serialize;
use serde_json::Value;

const PAGE: &str = include_str!("topology/index.html");
const SCRIPT: &str = include_str!("topology/topology.js");
const STYLE: &str = include_str!("topology/topology.css");

/// What the page draws.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub networks: Vec<NetworkView>,
    /// Ferry sandboxes, Docker's containers (by sandbox key) and endpoints
    /// not joined yet, each with its interfaces.
    pub sandboxes: Vec<SandboxView>,
    /// The overlay's hosts; `None` when this ferryd is in no cluster.
    pub hosts: Option<Vec<ferry_cnm::overlay::HostView>>,
    /// Why the hosts could not be read (the store is down, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NetworkView {
    pub id: String,
    pub name: String,
    pub driver: &'static str,
    pub bridge: String,
    pub internal: bool,
    pub subnets: Vec<PoolUse>,
}

/// A network's subnet and how much of it is handed out.
#[derive(Debug, Clone, Serialize)]
pub struct PoolUse {
    pub network: String,
    pub subnet: String,
    pub gateway: String,
    pub allocated: usize,
    /// Addresses in the subnet (2^host bits, as a float: IPv6 is large).
    pub size: f64,
}

impl PoolUse {
    pub fn ratio(&self) -> f64 {
        self.allocated as f64 / self.size
    }
}

#[derive(Debug, Serialize)]
pub struct SandboxView {
    pub name: String,
    /// `sandbox` (Ferry's), `container` (Docker's) or `endpoint` (not joined).
    pub kind: &'static str,
    pub path: String,
    /// Route arbitration outcomes of the sandbox.
    pub conflicts: Vec<String>,
    pub interfaces: Vec<InterfaceView>,
}

#[derive(Debug, Serialize)]
pub struct InterfaceView {
    pub network: String,
    pub ifname: String,
    pub addresses: Vec<String>,
    pub mac: String,
    pub aliases: Vec<String>,
    pub priority: i32,
    /// `HOSTIP:HOSTPORT->PORT/PROTO`.
    pub published: Vec<String>,
}

/// A network's name: Ferry's name, or Docker's ID shortened as `docker ps` does.
fn network_name(n: &Network) -> String {
    n.name
        .clone()
        .unwrap_or_else(|| n.id.chars().take(12).collect())
}

/// Every subnet of every network with its pool's use.
pub fn pool_use(c: &Controller) -> Vec<PoolUse> {
    let mut out = Vec::new();
    for n in c.networks() {
        for data in n.ipv4.iter().chain(&n.ipv6) {
            let pool = c.ipam().pools.values().find(|p| {
                p.subnet.to_string() == data.pool
                    && (data.address_space.is_empty() || p.space == data.address_space)
            });
            if let Some(p) = pool {
                let host_bits = i32::from(p.subnet.max_prefix_len() - p.subnet.prefix_len());
                out.push(PoolUse {
                    network: network_name(n),
                    subnet: data.pool.clone(),
                    gateway: data.gateway.clone(),
                    allocated: p.allocated.len(),
                    size: 2f64.powi(host_bits),
                });
            }
        }
    }
    out
}

fn interface(ep: &Endpoint, network: String) -> InterfaceView {
    let published = ferry_cnm::publish::parse_portmap(Some(&ep.published))
        .unwrap_or_default()
        .iter()
        .map(|m| {
            // No host address: every local address, as `*` says.
            let ip = m.host_ip.map_or("*".to_string(), |i| i.to_string());
            let proto = format!("{:?}", m.protocol).to_lowercase();
            format!("{ip}:{}->{}/{proto}", m.host_port, m.container_port)
        })
        .collect();
    InterfaceView {
        network,
        ifname: ep
            .ifname
            .clone()
            .unwrap_or_else(|| ep.container_veth.clone()),
        addresses: ep
            .address
            .iter()
            .chain(&ep.address_v6)
            .map(|a| a.to_string())
            .collect(),
        mac: ep.mac.clone(),
        aliases: ep.aliases.clone(),
        priority: ep.priority,
        published,
    }
}

/// Whose interface an endpoint is: `(name, kind, path)` of its node.
fn owner(ep: &Endpoint) -> (String, &'static str, String) {
    match &ep.sandbox {
        // Docker's sandbox key is a path (/var/run/docker/netns/ID): the
        // container is named by its last part.
        Some(key) if key.starts_with('/') => (
            key.rsplit('/').next().unwrap_or(key).to_string(),
            "container",
            key.clone(),
        ),
        Some(key) => (key.clone(), "sandbox", String::new()),
        None => (
            format!("endpoint {}", ep.id.chars().take(12).collect::<String>()),
            "endpoint",
            String::new(),
        ),
    }
}

/// The snapshot of the controller's state, without the hosts (read from
/// the cluster store, off the controller's lock).
pub fn snapshot(c: &Controller) -> Snapshot {
    let pools = pool_use(c);
    let mut networks: Vec<NetworkView> = c
        .networks()
        .map(|n| {
            let name = network_name(n);
            NetworkView {
                id: n.id.clone(),
                subnets: pools
                    .iter()
                    .filter(|p| p.network == name)
                    .cloned()
                    .collect(),
                name,
                driver: n.driver.name(),
                bridge: n.bridge.clone(),
                internal: n.internal,
            }
        })
        .collect();
    let mut sandboxes: Vec<SandboxView> = c
        .sandboxes()
        .map(|s| SandboxView {
            name: s.name.clone(),
            kind: "sandbox",
            path: s.path.clone(),
            conflicts: s.conflicts.clone(),
            interfaces: Vec::new(),
        })
        .collect();
    for ep in c.endpoints() {
        let network = c
            .networks()
            .find(|n| n.id == ep.network_id)
            .map(network_name)
            .unwrap_or_else(|| ep.network_id.clone());
        let view = interface(ep, network);
        let (name, kind, path) = owner(ep);
        match sandboxes.iter_mut().find(|s| s.name == name) {
            Some(s) => s.interfaces.push(view),
            None => sandboxes.push(SandboxView {
                name,
                kind,
                path,
                conflicts: Vec::new(),
                interfaces: vec![view],
            }),
        }
    }
    for s in &mut sandboxes {
        s.interfaces.sort_by(|a, b| a.ifname.cmp(&b.ifname));
    }
    sandboxes.sort_by(|a, b| a.name.cmp(&b.name));
    networks.sort_by(|a: &NetworkView, b| a.name.cmp(&b.name));
    Snapshot {
        networks,
        sandboxes,
        hosts: None,
        hosts_error: None,
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The page, its assets and `/topology.json`.
pub fn router(ctl: Shared) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/topology.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/topology.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/topology.json", get(move || json(ctl.clone())))
}

async fn json(ctl: Shared) -> Response {
    let taken = tokio::task::spawn_blocking(move || {
        let (mut snap, cluster) = {
            let c = ctl.lock().map_err(|_| "controller poisoned".to_string())?;
            (snapshot(&c), c.cluster().cloned())
        };
        // The store is read without the lock; its deadline bounds the wait.
        if let Some(cluster) = cluster {
            match cluster.host_views() {
                Ok(h) => snap.hosts = Some(h),
                Err(e) => {
                    snap.hosts = Some(Vec::new());
                    snap.hosts_error = Some(e.to_string());
                }
            }
        }
        Ok::<_, String>(snap)
    })
    .await;
    match taken {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, Json(error(e))).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(error(e.to_string())),
        )
            .into_response(),
    }
}

fn error(e: String) -> Value {
    serde_json::json!({ "error": e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(sandbox: Value, published: Value) -> Endpoint {
        serde_json::from_value(json!({
            "id": "0123456789abcdef", "network_id": "n1", "host_veth": "veth1",
            "container_veth": "veth1c", "address": "198.19.32.5/24",
            "address_v6": "fd00:1932::5/64", "mac": "02:42:c6:13:20:05",
            "sandbox": sandbox, "published": published, "aliases": ["api"],
        }))
        .expect("an endpoint")
    }

    #[test]
    fn a_docker_container_is_named_by_its_key_and_shows_its_published_ports() {
        let ep = endpoint(
            json!("/var/run/docker/netns/c0ffee"),
            json!([
                {"Proto": 6, "Port": 80, "HostPort": 8080},
                {"Proto": 17, "Port": 53, "HostPort": 5353, "HostIP": "198.19.39.1"},
            ]),
        );
        assert_eq!(
            owner(&ep),
            (
                "c0ffee".into(),
                "container",
                "/var/run/docker/netns/c0ffee".into()
            )
        );
        let i = interface(&ep, "web".into());
        assert_eq!(i.published, ["*:8080->80/tcp", "198.19.39.1:5353->53/udp"]);
        assert_eq!(i.addresses, ["198.19.32.5/24", "fd00:1932::5/64"]);
        assert_eq!(i.ifname, "veth1c", "Docker names the interface itself");
        assert_eq!(i.aliases, ["api"]);
    }

    #[test]
    fn ferry_sandboxes_and_unjoined_endpoints() {
        let joined = endpoint(json!("app"), Value::Null);
        assert_eq!(owner(&joined), ("app".into(), "sandbox", String::new()));
        assert!(interface(&joined, "web".into()).published.is_empty());
        let loose = endpoint(Value::Null, Value::Null);
        assert_eq!(owner(&loose).0, "endpoint 0123456789ab");
        assert_eq!(owner(&loose).1, "endpoint");
    }
}
