//! A small client for ferryd's API: HTTP/1.1 over the unix socket, one
//! request per connection, JSON in and out.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Sends a request; a non-2xx answer becomes its `error` text.
pub fn call(socket: &Path, verb: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach ferryd at {}: {e} (is ferryd running? see --api-socket)",
            socket.display()
        )
    })?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{verb} {path} HTTP/1.1\r\nHost: ferryd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("writing to ferryd: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("reading from ferryd: {e}"))?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, payload) = raw
        .split_once("\r\n\r\n")
        .ok_or("ferryd sent no HTTP response")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("ferryd sent a malformed status line")?;
    let value: Value = if payload.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(payload).map_err(|e| format!("ferryd sent malformed JSON: {e}"))?
    };
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        Err(value["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("ferryd answered {status}: {value}")))
    }
}
