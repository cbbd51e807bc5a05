//! A small client for ferryd's API: HTTP/1.1 over its unix socket, one
//! request per connection, JSON in and out. Used by `ferry` and by the
//! `ferry-overlay` plugin (which must not exec anything).

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Why a request got no answer.
#[derive(Debug)]
pub enum CallError {
    /// The socket could not be connected: ferryd is not running there.
    Unreachable(std::io::Error),
    /// The exchange failed or the answer was not HTTP with JSON.
    Broken(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "cannot reach ferryd: {e}"),
            CallError::Broken(m) => f.write_str(m),
        }
    }
}

/// Sends a request; returns the status and the JSON body (`null` when empty).
pub fn request(
    socket: &Path,
    verb: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), CallError> {
    let mut s = UnixStream::connect(socket).map_err(CallError::Unreachable)?;
    let broken = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| CallError::Broken(format!("{what} ferryd: {e}"))
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{verb} {path} HTTP/1.1\r\nHost: ferryd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(broken("writing to"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(broken("reading from"))?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, payload) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| CallError::Broken("ferryd sent no HTTP response".into()))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| CallError::Broken("ferryd sent a malformed status line".into()))?;
    let value: Value = if payload.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(payload)
            .map_err(|e| CallError::Broken(format!("ferryd sent malformed JSON: {e}")))?
    };
    Ok((status, value))
}

/// The `error` text of a failed answer.
pub fn error_text(status: u16, value: &Value) -> String {
    value["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("ferryd answered {status}: {value}"))
}
