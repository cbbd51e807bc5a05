//! The HTTP side: Docker's plugin protocol (every method of remote.md and
//! ipam.md; network driver errors in `Err`, IPAM errors in `Error`) and
//! Ferry's read API. Handlers run on the blocking pool: the controller speaks
//! netlink synchronously and its lock is never held across an await.
//! Both routers log every request through [`log::requests`]; a failed
//! response carries its error ([`Failure`]) for that event.

use crate::log::{self, Failure, Hooks, Socket};
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferry_cnm::{wire, CnmError, Controller};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tokio::net::UnixListener;

use crate::state::{Shared, View};

const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The largest request body either socket reads (Docker's biggest, a port
/// map of thousands of ports, is a few hundred KiB); beyond it: 413.
pub const MAX_BODY: usize = 1 << 20;

/// Binds a unix socket, replacing a stale one, with the given mode. The
/// socket is bound under a temporary name, given its mode, then renamed
/// into place: it is never reachable with the umask's wider mode.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, String> {
    bind_with(path, mode, |p| UnixListener::bind(p))
}

/// Binds a unix socket of any kind with `bind`, as [`bind`] does.
pub fn bind_with<T>(
    path: &Path,
    mode: u32,
    bind: impl FnOnce(&Path) -> std::io::Result<T>,
) -> Result<T, String> {
    use std::os::unix::fs::PermissionsExt;
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let l = bind(&tmp).map_err(at)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(at(e));
    }
    Ok(l)
}

pub async fn serve(listener: UnixListener, router: Router) -> Result<(), String> {
    axum::serve(listener, router)
        .await
        .map_err(|e| e.to_string())
}

fn reply(status: StatusCode, body: Value) -> Response {
    reply_ref(status, &body)
}

fn reply_ref(status: StatusCode, body: &Value) -> Response {
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

/// An error on its way into a response (and, through [`Failure`], the log).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed request: `{field: message}` with the error attached for the log.
fn failed(status: StatusCode, field: &str, err: BoxError) -> Response {
    let mut r = reply(status, json!({ field: err.to_string() }));
    r.extensions_mut().insert(Failure(err.into()));
    r
}

/// One request: decode (400 on failure), run against the controller; a
/// controller error gets the status `status` gives it.
fn apply<T, F>(
    ctl: &Shared,
    body: &[u8],
    status: fn(&CnmError) -> StatusCode,
    f: F,
) -> Result<Value, (StatusCode, BoxError)>
where
    T: DeserializeOwned,
    F: FnOnce(&mut Controller, T) -> Result<Value, CnmError>,
{
    let req: T = decode(body).map_err(|e| (StatusCode::BAD_REQUEST, e.into()))?;
    let mut c = ctl
        .lock()
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, POISONED.into()))?;
    f(&mut c, req).map_err(|e| (status(&e), e.into()))
}

const POISONED: &str = "controller poisoned";

/// One Docker method: as [`apply`], with status 200 on a controller error
/// (Docker reads the method's error field).
fn call<T, F>(ctl: &Shared, body: &[u8], f: F) -> Result<Value, (StatusCode, BoxError)>
where
    T: DeserializeOwned,
    F: FnOnce(&mut Controller, T) -> Result<Value, CnmError>,
{
    apply(ctl, body, |_| StatusCode::OK, f)
}

fn handle(ctl: &Shared, method: &str, body: &[u8]) -> Result<Value, (StatusCode, BoxError)> {
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
        // A read: from the snapshot, never behind a write.
        "NetworkDriver.EndpointOperInfo" => {
            let r: wire::EndpointRef =
                decode(body).map_err(|e| (StatusCode::BAD_REQUEST, e.into()))?;
            ctl.view()
                .oper_info(&r.endpoint_id)
                .map(|v| json!({ "Value": v }))
                .map_err(|e| (StatusCode::OK, e.into()))
        }
        "NetworkDriver.Join" => call(ctl, body, |c, r: wire::Join| c.join(&r).map(|v| json!(v))),
        "NetworkDriver.Leave" => call(ctl, body, |c, r: wire::EndpointRef| {
            c.leave(&r).map(|_| json!({}))
        }),
        "NetworkDriver.ProgramExternalConnectivity" => {
            call(ctl, body, |c, r: wire::ExternalConnectivity| {
                c.program_external_connectivity(&r).map(|_| json!({}))
            })
        }
        "NetworkDriver.RevokeExternalConnectivity" => call(ctl, body, |c, r: wire::EndpointRef| {
            c.revoke_external_connectivity(&r).map(|_| json!({}))
        }),
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
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("unknown method {method}").into(),
        )),
    }
}

async fn docker(ctl: Shared, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/').to_string();
    let m = method.clone();
    let done = tokio::task::spawn_blocking(move || handle(&ctl, &m, &body)).await;
    match done {
        Ok(Ok(v)) => reply(StatusCode::OK, v),
        Ok(Err((status, e))) => failed(status, error_field(&method), e),
        Err(e) => failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            error_field(&method),
            format!("handler failed: {e}").into(),
        ),
    }
}

/// Docker's plugin protocol: every method is a POST to `/<Method>`.
pub fn docker_router(ctl: Shared, hooks: Hooks) -> Router {
    Router::new()
        .fallback(post(move |uri: Uri, body: Bytes| {
            docker(ctl.clone(), uri, body)
        }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn_with_state(
            Hooks {
                socket: Socket::Docker,
                ..hooks
            },
            log::requests,
        ))
}

/// Ferry's own API (root-only socket): networks by name, sandboxes, connect,
/// disconnect, swap and the event stream. Errors are `{"error": ...}` with a fitting status.
pub fn ferry_router(ctl: Shared, hooks: Hooks) -> Router {
    use axum::extract::Path as P;
    let c = ctl;
    macro_rules! with {
        ($c:expr, |$ctl:ident| $body:expr) => {{
            let shared = $c.clone();
            move || {
                let $ctl = shared;
                async move { $body }
            }
        }};
    }
    Router::new()
        .merge(crate::cluster_api::router(c.clone()))
        .route(
            "/networks",
            get(with!(c, |ctl| read(&ctl, |v| v.networks()))).post({
                let ctl = c.clone();
                move |body: Bytes| {
                    write(ctl, body, |c, r: ferry_cnm::sandbox::NetworkCreate| {
                        c.create_named_network(&r).map(|n| json!(n))
                    })
                }
            }),
        )
        .route(
            "/networks/{name}",
            get({
                let ctl = c.clone();
                move |P(name): P<String>| async move { read_result(&ctl, |v| v.network(&name)) }
            })
            .delete({
                let ctl = c.clone();
                move |P(name): P<String>| {
                    write(ctl, Bytes::from_static(b"{}"), move |c, _: Value| {
                        c.remove_named_network(&name).map(|_| json!({}))
                    })
                }
            }),
        )
        .route(
            "/endpoints",
            get(with!(c, |ctl| read(&ctl, |v| v.endpoints()))),
        )
        // `ferry doctor` compares it with its own.
        .route(
            "/version",
            get(|| async { axum::Json(json!({"version": env!("CARGO_PKG_VERSION")})) }),
        )
        .route("/pools", get(with!(c, |ctl| read(&ctl, |v| v.pools()))))
        .route(
            "/sandboxes",
            get(with!(c, |ctl| read(&ctl, |v| v.sandboxes()))).post({
                let ctl = c.clone();
                move |body: Bytes| {
                    write(ctl, body, |c, r: SandboxCreate| {
                        c.create_sandbox(&r.name, r.path.as_deref())
                            .map(|s| json!(s))
                    })
                }
            }),
        )
        .route(
            "/sandboxes/{name}",
            get({
                let ctl = c.clone();
                move |P(name): P<String>| async move { read_result(&ctl, |v| v.sandbox(&name)) }
            })
            .delete({
                let ctl = c.clone();
                move |P(name): P<String>| {
                    write(ctl, Bytes::from_static(b"{}"), move |c, _: Value| {
                        c.remove_sandbox(&name).map(|_| json!({}))
                    })
                }
            }),
        )
        .route(
            "/connect",
            post({
                let ctl = c.clone();
                move |body: Bytes| {
                    write(ctl, body, |c, r: ferry_cnm::sandbox::Connect| {
                        c.connect(&r).map(|e| json!(e))
                    })
                }
            }),
        )
        .route(
            "/disconnect",
            post({
                let ctl = c.clone();
                move |body: Bytes| {
                    write(ctl, body, |c, r: Disconnect| {
                        c.disconnect(&r.network, &r.sandbox).map(|_| json!({}))
                    })
                }
            }),
        )
        .route(
            "/swap",
            post({
                let ctl = c.clone();
                move |body: Bytes| {
                    write(ctl, body, |c, r: Swap| {
                        c.swap(&r.sandbox, &r.from, &r.to).map(|e| json!(e))
                    })
                }
            }),
        )
        .merge(services_router(c.clone()))
        .merge(crate::cni_api::router(c))
        .merge(crate::events::router(hooks.events.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn_with_state(
            Hooks {
                socket: Socket::Api,
                ..hooks
            },
            log::requests,
        ))
}

#[derive(serde::Deserialize)]
struct SandboxCreate {
    name: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(serde::Deserialize)]
struct Disconnect {
    network: String,
    sandbox: String,
}

/// Services that move: `GET|POST /services`, `GET|DELETE /services/{name}`,
/// `POST /services/attach|move` (`{service, sandbox}`) and `/services/detach` (`{service}`).
fn services_router(ctl: Shared) -> Router {
    use axum::extract::Path as P;
    use ferry_cnm::service::ServiceCreate;
    let to =
        |f: fn(&mut Controller, &str, &str) -> Result<ferry_cnm::service::Service, CnmError>| {
            let ctl = ctl.clone();
            post(move |body: Bytes| {
                write(ctl, body, move |c, r: ServiceTo| {
                    f(c, &r.service, &r.sandbox).map(|s| json!(s))
                })
            })
        };
    Router::new()
        .route(
            "/services",
            get({
                let ctl = ctl.clone();
                move || async move { read(&ctl, |v| v.services()) }
            })
            .post({
                let ctl = ctl.clone();
                move |body: Bytes| {
                    write(ctl, body, |c, r: ServiceCreate| {
                        c.create_service(&r).map(|s| json!(s))
                    })
                }
            }),
        )
        .route(
            "/services/{name}",
            get({
                let ctl = ctl.clone();
                move |P(name): P<String>| async move { read_result(&ctl, |v| v.service(&name)) }
            })
            .delete({
                let ctl = ctl.clone();
                move |P(name): P<String>| {
                    write(ctl, Bytes::from_static(b"{}"), move |c, _: Value| {
                        c.remove_service(&name).map(|_| json!({}))
                    })
                }
            }),
        )
        .route("/services/attach", to(Controller::attach_service))
        .route("/services/move", to(Controller::move_service))
        .route(
            "/services/detach",
            post({
                let ctl = ctl.clone();
                move |body: Bytes| {
                    write(ctl, body, |c, r: ServiceRef| {
                        c.detach_service(&r.service).map(|s| json!(s))
                    })
                }
            }),
        )
}

#[derive(serde::Deserialize)]
struct ServiceTo {
    service: String,
    sandbox: String,
}

#[derive(serde::Deserialize)]
struct ServiceRef {
    service: String,
}

#[derive(serde::Deserialize)]
struct Swap {
    sandbox: String,
    from: String,
    to: String,
}

fn status_of(e: &CnmError) -> StatusCode {
    match e {
        CnmError::NotFound { .. } => StatusCode::NOT_FOUND,
        CnmError::Driver(_) | CnmError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        CnmError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CnmError::PoolOverlap { .. } | CnmError::AlreadyJoined(_) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A whole-list read: the snapshot's answer, shared by the reads of one
/// state, serialised without a copy.
fn read(ctl: &Shared, f: impl FnOnce(&View) -> Arc<Value>) -> Response {
    reply_ref(StatusCode::OK, &f(&ctl.view()))
}

/// A read answers from the snapshot of the last write: it takes no lock.
fn read_result(ctl: &Shared, f: impl FnOnce(&View) -> Result<Value, CnmError>) -> Response {
    match f(&ctl.view()) {
        Ok(v) => reply(StatusCode::OK, v),
        Err(e) => failed(status_of(&e), "error", e.into()),
    }
}

async fn write<T, F>(ctl: Shared, body: Bytes, f: F) -> Response
where
    T: DeserializeOwned + Send + 'static,
    F: FnOnce(&mut Controller, T) -> Result<Value, CnmError> + Send + 'static,
{
    match tokio::task::spawn_blocking(move || apply(&ctl, &body, status_of, f)).await {
        Ok(Ok(v)) => reply(StatusCode::OK, v),
        Ok(Err((status, e))) => failed(status, "error", e),
        Err(e) => failed(StatusCode::INTERNAL_SERVER_ERROR, "error", e.into()),
    }
}
