//! ferryd's logs: `tracing` events on stderr (stdout stays empty), and one
//! event per request on either socket, written by one middleware: the
//! method, the IDs the request names, the status, how long it took and the
//! outcome, with the error's cause chain when it failed. The same
//! middleware counts the request in the metrics and makes its event.

use crate::metrics::Door;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber with these filter directives (env-filter
/// syntax, e.g. `debug` or `ferryd=debug`). Bad directives are an error, after
/// installing the default (`info`) so that the error can be logged.
pub fn init(directives: &str) -> Result<(), String> {
    let (filter, bad) = match EnvFilter::try_new(directives) {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new("info"),
            Some(format!("log level {directives:?}: {e}")),
        ),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    bad.map_or(Ok(()), Err)
}

/// The error behind a failed response. Handlers attach it to the response
/// so that the request's event carries the error itself, not only its text.
#[derive(Clone)]
pub struct Failure(pub Arc<dyn Error + Send + Sync>);

/// Which socket a request came in on: it decides how the method is named.
#[derive(Clone, Copy)]
pub enum Socket {
    /// Docker's plugin protocol: the method is the path (`NetworkDriver.Join`).
    Docker,
    /// Ferry's API: the method is the verb and the route (`GET /sandboxes/{name}`).
    Api,
}

/// What the middleware feeds besides the log: the metrics and the events.
#[derive(Clone)]
pub struct Hooks {
    pub socket: Socket,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub events: Arc<crate::events::Events>,
}

/// Bodies above this are refused, as axum's `Bytes` extractor does by default.
const BODY_LIMIT: usize = 2 << 20;

/// The middleware (`axum::middleware::from_fn_with_state`) behind both routers.
pub async fn requests(State(hooks): State<Hooks>, req: Request, next: Next) -> Response {
    let (start, socket) = (Instant::now(), hooks.socket);
    let method = match (socket, req.extensions().get::<MatchedPath>()) {
        (Socket::Docker, _) => req.uri().path().trim_start_matches('/').to_string(),
        (Socket::Api, Some(route)) => format!("{} {}", req.method(), route.as_str()),
        (Socket::Api, None) => format!("{} {}", req.method(), req.uri().path()),
    };
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            warn!(%method, error = &e as &dyn Error, "request body unreadable");
            return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response();
        }
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ids = Ids::of(&method, &path, &json);
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (status, duration) = (resp.status(), start.elapsed());
    let failure: Option<&Failure> = resp.extensions().get();
    log(&method, &ids, status, duration, failure);
    let ok = failure.is_none() && status.is_success();
    // Docker's methods are `Driver.Verb`; Ferry's API is ferryd's own.
    let (door, plugin, verb) = match socket {
        Socket::Docker => {
            let (driver, verb) = method.split_once('.').unwrap_or(("", &method));
            (Door::Docker, driver, verb)
        }
        Socket::Api => (Door::Api, "ferryd", method.as_str()),
    };
    hooks.metrics.observe(door, plugin, verb, ok, duration);
    let error = match failure {
        Some(Failure(e)) => Some(e.to_string()),
        None if !ok => Some(status.to_string()),
        None => None,
    };
    // `DELETE /services/{name}` names its service in the path only.
    let mut json = json;
    if let (Some(svc), Value::Object(m)) = (&ids.service, &mut json) {
        m.entry("service").or_insert_with(|| svc.clone().into());
    }
    if let (Some(svc), Value::Null) = (&ids.service, &json) {
        json = serde_json::json!({ "service": svc });
    }
    hooks.events.request(
        &method,
        ids.network.as_deref(),
        ids.sandbox.as_deref(),
        &json,
        error,
    );
    resp
}

/// The IDs and names a request carries, where present.
#[derive(Debug, Default, PartialEq)]
struct Ids {
    network_id: Option<String>,
    endpoint_id: Option<String>,
    pool_id: Option<String>,
    /// Ferry's API: a network or sandbox by name.
    network: Option<String>,
    sandbox: Option<String>,
    service: Option<String>,
}

impl Ids {
    fn of(method: &str, path: &str, body: &Value) -> Ids {
        let key = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        // `/networks/{name}` names one in the path, `POST /networks` in the body.
        let named = |collection: &str| {
            let route = method.split_once(' ').map_or("", |(_, r)| r);
            if route.strip_prefix(collection) == Some("/{name}") {
                path.rsplit('/').next().map(str::to_string)
            } else if route == collection {
                key("name")
            } else {
                None
            }
        };
        Ids {
            network_id: key("NetworkID"),
            endpoint_id: key("EndpointID"),
            pool_id: key("PoolID"),
            network: key("network").or_else(|| named("/networks")),
            sandbox: key("sandbox").or_else(|| named("/sandboxes")),
            service: key("service").or_else(|| named("/services")),
        }
    }
}

/// The request's one event: info when it succeeded, warn when it failed,
/// error when ferryd itself failed (5xx).
fn log(method: &str, ids: &Ids, status: StatusCode, duration: Duration, failure: Option<&Failure>) {
    macro_rules! event {
        ($macro:ident, $($outcome:tt)*) => {
            $macro!(
                method,
                network_id = ids.network_id.as_deref(),
                endpoint_id = ids.endpoint_id.as_deref(),
                pool_id = ids.pool_id.as_deref(),
                network = ids.network.as_deref(),
                sandbox = ids.sandbox.as_deref(),
                status = status.as_u16(),
                ?duration,
                $($outcome)*
            )
        };
    }
    match failure {
        None if status.is_success() => event!(info, outcome = "ok", "request"),
        // No handler error (a route or verb axum refused): the status says it.
        None => event!(warn, outcome = "failed", error = %status, "request"),
        Some(Failure(e)) => {
            let e: &(dyn Error + 'static) = &**e;
            if status.is_server_error() {
                event!(error, outcome = "failed", error = e, "request")
            } else {
                event!(warn, outcome = "failed", error = e, "request")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(method: &str, path: &str, body: &str) -> Ids {
        Ids::of(
            method,
            path,
            &serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    #[test]
    fn ids_from_docker_bodies_and_api_routes() {
        assert_eq!(
            ids(
                "NetworkDriver.Join",
                "/NetworkDriver.Join",
                r#"{"NetworkID":"n1","EndpointID":"e1","SandboxKey":"/x"}"#
            ),
            Ids {
                network_id: Some("n1".into()),
                endpoint_id: Some("e1".into()),
                ..Ids::default()
            }
        );
        assert_eq!(
            ids(
                "IpamDriver.ReleasePool",
                "/IpamDriver.ReleasePool",
                r#"{"PoolID":"p"}"#
            )
            .pool_id,
            Some("p".into())
        );
        assert_eq!(
            ids("GET /sandboxes/{name}", "/sandboxes/sb1", "").sandbox,
            Some("sb1".into())
        );
        assert_eq!(
            ids("POST /sandboxes", "/sandboxes", r#"{"name":"sb2"}"#).sandbox,
            Some("sb2".into())
        );
        let c = ids(
            "POST /connect",
            "/connect",
            r#"{"network":"n","sandbox":"s"}"#,
        );
        assert_eq!(
            (c.network.as_deref(), c.sandbox.as_deref()),
            (Some("n"), Some("s"))
        );
        assert_eq!(
            ids("DELETE /networks/{name}", "/networks/web", "").network,
            Some("web".into())
        );
        assert_eq!(
            ids("DELETE /services/{name}", "/services/api", "").service,
            Some("api".into())
        );
        assert_eq!(ids("GET /pools", "/pools", "not json"), Ids::default());
    }

    #[derive(Debug)]
    struct Chained(&'static str, Option<Box<Chained>>);
    impl std::fmt::Display for Chained {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Chained {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn failed_request_event_carries_the_cause_chain() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .finish();
        let err = Chained("create bridge", Some(Box::new(Chained("EPERM", None))));
        let ids = Ids {
            network_id: Some("n1".into()),
            ..Ids::default()
        };
        tracing::subscriber::with_default(sub, || {
            log(
                "NetworkDriver.CreateNetwork",
                &ids,
                StatusCode::OK,
                Duration::from_millis(3),
                Some(&Failure(Arc::new(err))),
            )
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        for want in [
            "WARN",
            "method=\"NetworkDriver.CreateNetwork\"",
            "network_id=\"n1\"",
            "duration=3ms",
            "outcome=\"failed\"",
            "error=create bridge",
            "error.sources=[EPERM]",
        ] {
            assert!(out.contains(want), "{want} not in {out}");
        }
        assert_eq!(out.lines().count(), 1, "{out}");
    }
}
