//! The HTTP side: Docker's plugin protocol (every method of remote.md and
//! ipam.md; network driver errors in `Err`, IPAM errors in `Error`) and
//! Ferry's read API. Handlers run on the blocking pool: the controller speaks
//! netlink synchronously and its lock is never held across an await.

use axum::body::Bytes;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferry_cnm::{wire, CnmError, Controller};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::net::UnixListener;

type Shared = Arc<Mutex<Controller>>;

const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// Binds a unix socket, replacing a stale one, with the given mode.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(l)
}

pub async fn serve(listener: UnixListener, router: Router) -> Result<(), String> {
    axum::serve(listener, router)
        .await
        .map_err(|e| e.to_string())
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// Which error field Docker reads for a method.
fn error_field(method: &str) -> &'static str {
    if method.starts_with("IpamDriver.") {
        "Error"
    } else {
        "Err"
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("malformed request: {e}"))
}

/// One method: decode (400 on failure), run against the controller, answer
/// the result or the error in the method's error field.
fn call<T, F>(ctl: &Shared, body: &[u8], f: F) -> Result<Value, (StatusCode, String)>
where
    T: DeserializeOwned,
    F: FnOnce(&mut Controller, T) -> Result<Value, CnmError>,
{
    let req: T = decode(body).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let mut c = ctl.lock().map_err(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "controller poisoned".to_string(),
        )
    })?;
    f(&mut c, req).map_err(|e| (StatusCode::OK, e.to_string()))
}

fn handle(ctl: &Shared, method: &str, body: &[u8]) -> Result<Value, (StatusCode, String)> {
    let empty = || Ok(json!({}));
    match method {
        "Plugin.Activate" => Ok(json!(wire::Activate {
            implements: vec!["NetworkDriver", "IpamDriver"]
        })),
        "NetworkDriver.GetCapabilities" => Ok(json!(wire::DriverCapabilities {
            scope: "local",
            connectivity_scope: "local"
        })),
        "NetworkDriver.CreateNetwork" => call(ctl, body, |c, r: wire::CreateNetwork| {
            c.create_network(&r).map(|_| json!({}))
        }),
        "NetworkDriver.DeleteNetwork" => call(ctl, body, |c, r: wire::NetworkRef| {
            c.delete_network(&r.network_id).map(|_| json!({}))
        }),
        "NetworkDriver.CreateEndpoint" => call(ctl, body, |c, r: wire::CreateEndpoint| {
            c.create_endpoint(&r).map(|v| json!(v))
        }),
        "NetworkDriver.DeleteEndpoint" => call(ctl, body, |c, r: wire::EndpointRef| {
            c.delete_endpoint(&r).map(|_| json!({}))
        }),
        "NetworkDriver.EndpointOperInfo" => call(ctl, body, |c, r: wire::EndpointRef| {
            c.endpoint_oper_info(&r).map(|v| json!({ "Value": v }))
        }),
        "NetworkDriver.Join" => call(ctl, body, |c, r: wire::Join| c.join(&r).map(|v| json!(v))),
        "NetworkDriver.Leave" => call(ctl, body, |c, r: wire::EndpointRef| {
            c.leave(&r).map(|_| json!({}))
        }),
        "NetworkDriver.ProgramExternalConnectivity" => {
            call(ctl, body, |c, r: wire::ExternalConnectivity| {
                c.program_external_connectivity(&r).map(|_| json!({}))
            })
        }
        "NetworkDriver.RevokeExternalConnectivity" => {
            call(ctl, body, |_, _r: wire::EndpointRef| Ok(json!({})))
        }
        // Swarm-only and discovery notifications: nothing to do locally.
        "NetworkDriver.DiscoverNew"
        | "NetworkDriver.DiscoverDelete"
        | "NetworkDriver.AllocateNetwork"
        | "NetworkDriver.FreeNetwork" => call(ctl, body, |_, _r: Value| empty()),
        "IpamDriver.GetCapabilities" => Ok(json!(wire::IpamCapabilities {
            requires_mac_address: false,
            requires_request_replay: false
        })),
        "IpamDriver.GetDefaultAddressSpaces" => Ok(json!(wire::AddressSpaces {
            local: ferry_cnm::ipam::LOCAL_SPACE,
            global: ferry_cnm::ipam::GLOBAL_SPACE
        })),
        "IpamDriver.RequestPool" => call(ctl, body, |c, r: wire::RequestPool| {
            c.request_pool(&r).map(|v| json!(v))
        }),
        "IpamDriver.ReleasePool" => call(ctl, body, |c, r: wire::PoolRef| {
            c.release_pool(&r.pool_id).map(|_| json!({}))
        }),
        "IpamDriver.RequestAddress" => call(ctl, body, |c, r: wire::RequestAddress| {
            c.request_address(&r).map(|v| json!(v))
        }),
        "IpamDriver.ReleaseAddress" => call(ctl, body, |c, r: wire::ReleaseAddress| {
            c.release_address(&r).map(|_| json!({}))
        }),
        _ => Err((StatusCode::NOT_FOUND, format!("unknown method {method}"))),
    }
}

async fn docker(ctl: Shared, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/').to_string();
    let m = method.clone();
    let done = tokio::task::spawn_blocking(move || handle(&ctl, &m, &body)).await;
    match done {
        Ok(Ok(v)) => reply(StatusCode::OK, v),
        Ok(Err((status, msg))) => {
            eprintln!("ferryd: {method}: {msg}");
            reply(status, json!({ error_field(&method): msg }))
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ error_field(&method): format!("handler failed: {e}") }),
        ),
    }
}

/// Docker's plugin protocol: every method is a POST to `/<Method>`.
pub fn docker_router(ctl: Shared) -> Router {
    Router::new().fallback(post(move |uri: Uri, body: Bytes| {
        docker(ctl.clone(), uri, body)
    }))
}

/// Ferry's read API: what the controller holds.
pub fn ferry_router(ctl: Shared) -> Router {
    let c1 = ctl.clone();
    let c2 = ctl.clone();
    let c3 = ctl;
    Router::new()
        .route(
            "/networks",
            get(move || async move { snapshot(&c1, |c| json!(c.networks().collect::<Vec<_>>())) }),
        )
        .route(
            "/endpoints",
            get(move || async move { snapshot(&c2, |c| json!(c.endpoints().collect::<Vec<_>>())) }),
        )
        .route(
            "/pools",
            get(move || async move { snapshot(&c3, |c| json!(c.ipam().pools)) }),
        )
}

fn snapshot(ctl: &Shared, f: impl FnOnce(&Controller) -> Value) -> Response {
    match ctl.lock() {
        Ok(c) => reply(StatusCode::OK, f(&c)),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"Err": "controller poisoned"}),
        ),
    }
}
