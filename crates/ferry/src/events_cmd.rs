//! `ferry events`: ferryd's event stream (`GET /events`), one line per
//! event as it happens, like `docker events`. The request is HTTP/1.0, so
//! ferryd sends the endless body as is (no chunks) until the connection
//! closes.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

pub fn run(socket: &Path, since: Option<String>, json: bool) -> ExitCode {
    match stream(socket, since.as_deref(), json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry events: {e}");
            ExitCode::FAILURE
        }
    }
}

fn stream(socket: &Path, since: Option<&str>, json: bool) -> Result<(), String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach ferryd at {}: {e} (is ferryd running? see --api-socket)",
            socket.display()
        )
    })?;
    let query = since.map(|d| format!("?since={d}")).unwrap_or_default();
    write!(s, "GET /events{query} HTTP/1.0\r\nHost: ferryd\r\n\r\n")
        .map_err(|e| format!("writing to ferryd: {e}"))?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let read = |r: &mut BufReader<UnixStream>, line: &mut String| {
        line.clear();
        r.read_line(line)
            .map_err(|e| format!("reading from ferryd: {e}"))
    };
    read(&mut r, &mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("ferryd sent a malformed status line")?;
    // The headers, up to the empty line.
    while read(&mut r, &mut line)? > 0 && !line.trim_end().is_empty() {}
    if status != 200 {
        read(&mut r, &mut line)?;
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        return Err(ferry_plugins::ferryd_client::error_text(status, &v));
    }
    let mut out = std::io::stdout().lock();
    while read(&mut r, &mut line)? > 0 {
        let text = if json {
            line.trim_end().to_string()
        } else {
            human(&serde_json::from_str(&line).unwrap_or(Value::Null))
        };
        // A closed stdout (`| head`) ends the stream.
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

/// `TIME TYPE ACTION ID (network=.., sandbox=.., reason=..)`.
fn human(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let attrs: Vec<String> = ["network", "sandbox", "ifname", "reason"]
        .iter()
        .filter(|k| e[**k].is_string())
        .map(|k| format!("{k}={}", s(k)))
        .collect();
    let id = e["id"].as_str().unwrap_or("-");
    format!(
        "{} {} {} {id} ({})",
        s("time"),
        s("type"),
        s("action"),
        attrs.join(", ")
    )
}
