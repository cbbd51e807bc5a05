//! Names of CNI attachments, registered by the `ferry-dns` plugin on
//! Ferry's API socket: `POST /dns/cni/add`, `/dns/cni/del`, `/dns/cni/check`
//! and `/dns/cni/gc`. A CNI network is not one of the controller's, so its
//! zone (subnets, gateways) comes from the registrations themselves. They
//! are kept in a JSON file beside the state database (written whole, then
//! renamed), so a restarted ferryd serves them again.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use ferry_cnm::sandbox::check_dns_label;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

/// CNI's codes for ferry-dns's errors (see `cni_api`).
const INVALID_NETWORK_CONFIG: u32 = 7;
const INTERNAL: u32 = 100;

/// One attachment's names on a CNI network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The conflist's `name`.
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(default)]
    pub names: Vec<String>,
    /// The container's addresses with their prefix (the subnet).
    pub addresses: Vec<IpNet>,
    /// Where the network's server listens.
    pub gateways: Vec<IpAddr>,
}

impl Registration {
    fn key(&self) -> (String, String, String) {
        key(&self.network, &self.container_id, &self.ifname)
    }
}

fn key(network: &str, container_id: &str, ifname: &str) -> (String, String, String) {
    (network.into(), container_id.into(), ifname.into())
}

/// The registrations, by (network, container ID, ifname), and their file.
pub struct Registry {
    path: PathBuf,
    regs: Mutex<BTreeMap<(String, String, String), Registration>>,
}

impl Registry {
    /// The registrations saved at `path` (none when there is no file; an
    /// unreadable file is logged and starts empty rather than stopping ferryd).
    pub fn open(path: PathBuf) -> Registry {
        let saved: Vec<Registration> = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::error!(path = %path.display(), error = %e, "DNS: CNI names file unreadable; starting without them");
                Vec::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "DNS: cannot read the CNI names file");
                Vec::new()
            }
        };
        Registry {
            regs: Mutex::new(saved.into_iter().map(|r| (r.key(), r)).collect()),
            path,
        }
    }

    /// Every registration.
    pub fn all(&self) -> Vec<Registration> {
        self.regs
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes the registrations with `f` and saves them; on a failed save
    /// the change is undone (ferryd keeps only what it could persist).
    fn update<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<(String, String, String), Registration>) -> T,
    ) -> Result<T, String> {
        let mut regs = self.regs.lock().map_err(|_| "registry poisoned")?;
        let before = regs.clone();
        let out = f(&mut regs);
        if *regs != before {
            if let Err(e) = self.save(&regs) {
                *regs = before;
                return Err(e);
            }
        }
        Ok(out)
    }

    fn save(&self, regs: &BTreeMap<(String, String, String), Registration>) -> Result<(), String> {
        let list: Vec<&Registration> = regs.values().collect();
        let tmp = self.path.with_extension("tmp");
        let body = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("saving {}: {e}", self.path.display()))
    }
}

#[derive(Deserialize)]
struct Attachment {
    network: String,
    container_id: String,
    ifname: String,
}

#[derive(Deserialize)]
struct Gc {
    network: String,
    #[serde(default)]
    valid: Vec<Valid>,
}

#[derive(Deserialize)]
struct Valid {
    container_id: String,
    ifname: String,
}

type Answer = (StatusCode, Json<Value>);

fn failed(status: StatusCode, code: u32, msg: impl Into<String>) -> Answer {
    (status, Json(json!({"error": msg.into(), "code": code})))
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Answer> {
    serde_json::from_value(v).map_err(|e| {
        failed(
            StatusCode::BAD_REQUEST,
            INVALID_NETWORK_CONFIG,
            format!("malformed request: {e}"),
        )
    })
}

fn saved<T>(r: Result<T, String>) -> Result<T, Answer> {
    r.map_err(|e| failed(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL, e))
}

async fn add(State(dns): State<super::Dns>, Json(v): Json<Value>) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let r: Registration = decode(v)?;
        for n in &r.names {
            check_dns_label(n).map_err(|e| {
                failed(
                    StatusCode::BAD_REQUEST,
                    INVALID_NETWORK_CONFIG,
                    format!("name {n:?}: {e}"),
                )
            })?;
        }
        if r.gateways.is_empty() || r.addresses.is_empty() {
            return Err(failed(
                StatusCode::BAD_REQUEST,
                INVALID_NETWORK_CONFIG,
                "an attachment's names need its addresses and the network's gateways",
            ));
        }
        saved(dns.cni.update(|regs| regs.insert(r.key(), r.clone())))?;
        Ok((StatusCode::OK, Json(json!({"nameservers": r.gateways}))))
    };
    run().unwrap_or_else(|e| e)
}

async fn del(State(dns): State<super::Dns>, Json(v): Json<Value>) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let a: Attachment = decode(v)?;
        let k = key(&a.network, &a.container_id, &a.ifname);
        saved(dns.cni.update(|regs| regs.remove(&k)))?;
        Ok((StatusCode::OK, Json(json!({}))))
    };
    run().unwrap_or_else(|e| e)
}

async fn check(State(dns): State<super::Dns>, Json(v): Json<Value>) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let a: Attachment = decode(v)?;
        let k = key(&a.network, &a.container_id, &a.ifname);
        let known = dns
            .cni
            .regs
            .lock()
            .map(|r| r.contains_key(&k))
            .unwrap_or(false);
        if !known {
            return Err(failed(
                StatusCode::NOT_FOUND,
                INTERNAL,
                format!(
                    "ferryd has no names of container {} ({}) on network {:?}",
                    a.container_id, a.ifname, a.network
                ),
            ));
        }
        Ok((StatusCode::OK, Json(json!({}))))
    };
    run().unwrap_or_else(|e| e)
}

async fn gc(State(dns): State<super::Dns>, Json(v): Json<Value>) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let g: Gc = decode(v)?;
        let removed = saved(dns.cni.update(|regs| {
            let before = regs.len();
            regs.retain(|(net, id, ifname), _| {
                *net != g.network
                    || g.valid
                        .iter()
                        .any(|v| v.container_id == *id && v.ifname == *ifname)
            });
            before - regs.len()
        }))?;
        Ok((StatusCode::OK, Json(json!({"removed": removed}))))
    };
    run().unwrap_or_else(|e| e)
}

/// The routes, merged into Ferry's API router (under the DNS middleware,
/// so the table is rebuilt before the plugin gets its answer).
pub fn router(dns: super::Dns) -> Router {
    Router::new()
        .route("/dns/cni/add", post(add))
        .route("/dns/cni/del", post(del))
        .route("/dns/cni/check", post(check))
        .route("/dns/cni/gc", post(gc))
        .with_state(dns)
}
