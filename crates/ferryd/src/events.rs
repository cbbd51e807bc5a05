//! ferryd's event stream (`ferry events`, `GET /events`): network,
//! endpoint, sandbox and CNI attachment events, made in one place each:
//! the request middleware turns a request on either socket into its event
//! ([`Events::request`]) and the plugins' reports become attachment events
//! ([`Events::cni`]). The last [`KEPT`] events stay in memory for `?since=`.

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// How many past events ferryd keeps.
pub const KEPT: usize = 1024;

/// One event, as streamed (a JSON line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event {
    /// Increases by one with each event.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// `network`, `endpoint`, `sandbox`, `service` or `cni`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `created`, `joined`, `left`, `connected`, `disconnected`, `swapped`,
    /// `attached`, `moved`, `detached`, `removed` or `failed`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// What happened: the operation, and the error when it failed.
    pub reason: String,
    #[serde(skip)]
    at: Option<SystemTime>,
}

struct Ring {
    seq: u64,
    kept: VecDeque<Event>,
}

/// The stream: kept events and live subscribers.
pub struct Events {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            ring: Mutex::new(Ring {
                seq: 0,
                kept: VecDeque::new(),
            }),
            live: broadcast::channel(KEPT).0,
        }
    }
}

/// The event a request on ferryd's sockets makes: its type, action and ID
/// field; `None` for requests that change nothing worth an event.
fn kind_of(method: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match method {
        "NetworkDriver.CreateNetwork" => ("network", "created", "NetworkID"),
        "NetworkDriver.DeleteNetwork" => ("network", "removed", "NetworkID"),
        "NetworkDriver.CreateEndpoint" => ("endpoint", "created", "EndpointID"),
        "NetworkDriver.DeleteEndpoint" => ("endpoint", "removed", "EndpointID"),
        "NetworkDriver.Join" => ("endpoint", "joined", "EndpointID"),
        "NetworkDriver.Leave" => ("endpoint", "left", "EndpointID"),
        "POST /networks" => ("network", "created", ""),
        "DELETE /networks/{name}" => ("network", "removed", ""),
        "POST /sandboxes" => ("sandbox", "created", ""),
        "DELETE /sandboxes/{name}" => ("sandbox", "removed", ""),
        "POST /connect" => ("endpoint", "connected", ""),
        "POST /disconnect" => ("endpoint", "disconnected", ""),
        "POST /swap" => ("endpoint", "swapped", ""),
        "POST /services" => ("service", "created", "name"),
        "POST /services/attach" => ("service", "attached", "service"),
        "POST /services/move" => ("service", "moved", "service"),
        "POST /services/detach" => ("service", "detached", "service"),
        "DELETE /services/{name}" => ("service", "removed", "service"),
        "POST /cni/add" => ("cni", "attached", "container_id"),
        "POST /cni/del" => ("cni", "detached", "container_id"),
        _ => return None,
    })
}

impl Events {
    /// Records an event: numbered, timed, kept and sent to every subscriber.
    pub fn push(&self, mut e: Event) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let at = SystemTime::now();
        ring.seq += 1;
        e.seq = ring.seq;
        e.time = ferry_cni::oplog::rfc3339_millis(at);
        e.at = Some(at);
        if ring.kept.len() == KEPT {
            ring.kept.pop_front();
        }
        ring.kept.push_back(e.clone());
        // Sent under the lock, so subscribers see the order of `seq`.
        let _ = self.live.send(e);
    }

    /// The event of a request, if it makes one: `network` and `sandbox` are
    /// the names the request carries, `body` its JSON, `error` why it failed.
    pub fn request(
        &self,
        method: &str,
        network: Option<&str>,
        sandbox: Option<&str>,
        body: &Value,
        error: Option<String>,
    ) {
        let Some((kind, action, id_field)) = kind_of(method) else {
            return;
        };
        let key = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let (network, reason) = match (method, &error) {
            // A swap leaves one network for another: the event names the new one.
            ("POST /swap", None) => (
                key("to"),
                format!("{method}: from {}", key("from").unwrap_or_default()),
            ),
            (_, None) => (network.map(str::to_string), method.to_string()),
            (_, Some(e)) => (network.map(str::to_string), format!("{method}: {e}")),
        };
        self.push(Event {
            kind,
            action: if error.is_some() { "failed" } else { action },
            id: key(id_field),
            network: network.or_else(|| key("NetworkID")),
            sandbox: sandbox.map(str::to_string),
            ifname: key("ifname"),
            reason,
            ..Event::default()
        });
    }

    /// The event of a CNI plugin's run: ADD and DEL attach and detach, a
    /// failed ADD, DEL or CHECK fails.
    pub fn cni(&self, r: &ferry_cni::report::Report) {
        let action = match (r.command.as_str(), &r.error) {
            ("ADD" | "DEL" | "CHECK", Some(_)) => "failed",
            ("ADD", None) => "attached",
            ("DEL", None) => "detached",
            _ => return,
        };
        let reason = match &r.error {
            Some(e) => format!("{} {}: {e}", r.plugin, r.command),
            None => format!("{} {}", r.plugin, r.command),
        };
        let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        self.push(Event {
            kind: "cni",
            action,
            id: some(&r.container_id),
            network: some(&r.network),
            ifname: some(&r.ifname),
            reason,
            ..Event::default()
        });
    }

    /// The kept events at most `since` old (none without `since`), and a
    /// subscription to those that follow, without a gap or a repeat.
    fn subscribe(&self, since: Option<Duration>) -> (VecDeque<Event>, broadcast::Receiver<Event>) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.live.subscribe();
        let past = match since.and_then(|d| SystemTime::now().checked_sub(d)) {
            Some(from) => ring
                .kept
                .iter()
                .filter(|e| e.at.is_some_and(|at| at >= from))
                .cloned()
                .collect(),
            None => VecDeque::new(),
        };
        (past, rx)
    }
}

/// `10s`, `5m`, `2h`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// `GET /events[?since=DURATION]`: JSON lines, as events happen, for as
/// long as the client reads.
pub fn router(events: Arc<Events>) -> Router {
    Router::new().route(
        "/events",
        get(move |uri: Uri| async move {
            let since = uri
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="));
            let since = match since.map(|s| (s, parse_duration(s))) {
                Some((s, None)) => {
                    let body = serde_json::json!({"error": format!("since {s:?}: not a duration (10s, 5m, 2h)")});
                    return (StatusCode::BAD_REQUEST, body.to_string()).into_response();
                }
                Some((_, d)) => d,
                None => None,
            };
            stream(events.subscribe(since))
        }),
    )
}

fn stream((past, rx): (VecDeque<Event>, broadcast::Receiver<Event>)) -> Response {
    let lines = futures_util::stream::unfold((past, rx), |(mut past, mut rx)| async move {
        let e = match past.pop_front() {
            Some(e) => e,
            None => loop {
                match rx.recv().await {
                    Ok(e) => break e,
                    // A reader too slow for KEPT events misses some.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        };
        let mut line = serde_json::to_vec(&e).unwrap_or_default();
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(line)),
            (past, rx),
        ))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_requests_make_service_events() {
        let ev = Events::default();
        let body = json!({"service": "api", "sandbox": "new"});
        ev.request(
            "POST /services",
            Some("web"),
            None,
            &json!({"name": "api"}),
            None,
        );
        ev.request("POST /services/attach", None, Some("old"), &body, None);
        ev.request("POST /services/move", None, Some("new"), &body, None);
        ev.request(
            "POST /services/detach",
            None,
            None,
            &json!({"service": "api"}),
            None,
        );
        ev.request(
            "DELETE /services/{name}",
            None,
            None,
            &json!({"service": "api"}),
            None,
        );
        let (past, _rx) = ev.subscribe(Some(Duration::from_secs(60)));
        let got: Vec<_> = past
            .iter()
            .map(|e| (e.kind, e.action, e.id.as_deref()))
            .collect();
        let want = ["created", "attached", "moved", "detached", "removed"];
        assert_eq!(
            got,
            want.iter()
                .map(|a| ("service", *a, Some("api")))
                .collect::<Vec<_>>()
        );
        assert_eq!(past[2].sandbox.as_deref(), Some("new"));
        assert_eq!(past[0].network.as_deref(), Some("web"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("3d"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn requests_make_events_in_order_and_since_replays_them() {
        let ev = Events::default();
        ev.request(
            "POST /networks",
            Some("n1"),
            None,
            &json!({"name": "n1"}),
            None,
        );
        ev.request("GET /networks", None, None, &Value::Null, None);
        ev.request(
            "POST /swap",
            None,
            Some("s1"),
            &json!({"sandbox": "s1", "from": "n1", "to": "n2"}),
            None,
        );
        ev.request(
            "NetworkDriver.Join",
            None,
            None,
            &json!({"NetworkID": "abc", "EndpointID": "e1"}),
            Some("no such endpoint".into()),
        );
        let (past, _rx) = ev.subscribe(Some(Duration::from_secs(60)));
        let got: Vec<_> = past
            .iter()
            .map(|e| (e.seq, e.kind, e.action, e.network.clone(), e.id.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "network", "created", Some("n1".into()), None),
                (2, "endpoint", "swapped", Some("n2".into()), None),
                (
                    3,
                    "endpoint",
                    "failed",
                    Some("abc".into()),
                    Some("e1".into())
                ),
            ]
        );
        assert_eq!(past[1].reason, "POST /swap: from n1");
        assert_eq!(past[2].reason, "NetworkDriver.Join: no such endpoint");
        assert!(ev.subscribe(None).0.is_empty());
    }
}
