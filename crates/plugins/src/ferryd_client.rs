//! A small client for ferryd's API: HTTP/1.1 over its unix socket, one
//! request per connection, JSON in and out. Used by `ferry` and by the
//! `ferry-overlay` and `ferry-dns` plugins (which must not exec anything).

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

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

/// The default of the plugins' `apiSocket` key.
pub const DEFAULT_API_SOCKET: &str = "/run/ferry/ferry.sock";

/// Why a plugin's call to ferryd failed.
pub enum Failed {
    /// ferryd's socket could not be connected.
    Unreachable(std::io::Error),
    /// ferryd, or the exchange with it, failed: the CNI error to print.
    Cni(ferry_cni::CniError),
}

impl Failed {
    /// As a CNI error: an unreachable ferryd is worth another try later.
    pub fn cni(self, socket: &Path) -> ferry_cni::CniError {
        match self {
            Failed::Unreachable(e) => ferry_cni::CniError::new(
                ferry_cni::code::TRY_AGAIN_LATER,
                format!("cannot reach ferryd at {}", socket.display()),
                format!("{e} (is ferryd running? see apiSocket)"),
            ),
            Failed::Cni(e) => e,
        }
    }

    /// No socket at all: ferryd and its state are gone from the node, so
    /// there is nothing left to delete (DEL and GC succeed).
    pub fn is_gone(&self) -> bool {
        matches!(self, Failed::Unreachable(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The socket a plugin's `apiSocket` key names, or the default.
pub fn api_socket(configured: &Option<PathBuf>) -> &Path {
    configured
        .as_deref()
        .unwrap_or(Path::new(DEFAULT_API_SOCKET))
}

/// A plugin's side of ferryd's API: its verbs are POSTs to `{base}/VERB`
/// on `socket`, about one `network`.
pub struct PluginApi<'a> {
    pub socket: &'a Path,
    /// `/cni` (ferry-overlay) or `/dns/cni` (ferry-dns).
    pub base: &'static str,
    /// What a refusal calls the work: "" or "DNS ".
    pub what: &'static str,
    pub network: &'a str,
}

impl PluginApi<'_> {
    /// POST `{base}/VERB`: the answer, or the CNI error ferryd chose.
    pub fn call(&self, verb: &str, body: &Value) -> Result<Value, Failed> {
        let refused = format!(
            "ferryd refused {}{verb} on network {:?}",
            self.what, self.network
        );
        call(
            self.socket,
            &format!("{}/{verb}", self.base),
            body,
            &refused,
        )
    }

    /// A verb whose answer is only success or a CNI error.
    pub fn run(&self, verb: &str, body: &Value) -> ferry_cni::CniResult<()> {
        self.call(verb, body)
            .map(|_| ())
            .map_err(|f| f.cni(self.socket))
    }

    /// GC: ferryd keeps the runtime's valid attachments
    /// (`cni.dev/valid-attachments` in `config`) of the network and drops
    /// the rest. No socket at all is success (nothing is left to collect).
    pub fn gc(&self, config: &Value) -> ferry_cni::CniResult<()> {
        let valid: Vec<Value> = config
            .get("cni.dev/valid-attachments")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|v| {
                        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
                        serde_json::json!({"container_id": text("containerID"), "ifname": text("ifname")})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = serde_json::json!({"network": self.network, "valid": valid});
        let refused = format!("ferryd refused GC on network {:?}", self.network);
        match call(self.socket, &format!("{}/gc", self.base), &body, &refused) {
            Ok(_) => Ok(()),
            Err(f) if f.is_gone() => Ok(()),
            Err(f) => Err(f.cni(self.socket)),
        }
    }
}

/// A plugin's POST to ferryd: the answer, or the CNI error ferryd chose
/// (its `code`), described as `refused` (e.g. "ferryd refused add").
fn call(socket: &Path, path: &str, body: &Value, refused: &str) -> Result<Value, Failed> {
    use ferry_cni::{code, CniError};
    let (status, v) = request(socket, "POST", path, Some(body)).map_err(|e| match e {
        CallError::Unreachable(e) => Failed::Unreachable(e),
        other => Failed::Cni(CniError::new(
            code::IO_FAILURE,
            format!("ferryd at {} did not answer", socket.display()),
            other.to_string(),
        )),
    })?;
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let code = v["code"]
        .as_u64()
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(code::INTERNAL);
    Err(Failed::Cni(CniError::new(
        code,
        refused,
        error_text(status, &v),
    )))
}

/// A plugin's STATUS: code 50 while ferryd's socket cannot be reached.
pub fn status(socket: &Path) -> ferry_cni::CniResult<()> {
    UnixStream::connect(socket).map(|_| ()).map_err(|e| {
        ferry_cni::CniError::new(
            ferry_cni::code::PLUGIN_NOT_AVAILABLE,
            format!("ferryd is not reachable at {}", socket.display()),
            e.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    /// A one-shot ferryd on `socket`: answers `status` with `body`, and
    /// hands back the request line it got.
    fn answer_once(socket: &Path, status: &str, body: &str) -> std::thread::JoinHandle<String> {
        let listener = UnixListener::bind(socket).expect("bind");
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            let mut line = String::new();
            std::io::BufReader::new(&s)
                .read_line(&mut line)
                .expect("request line");
            (&s).write_all(reply.as_bytes()).expect("reply");
            line
        })
    }

    #[test]
    fn plugin_api_posts_to_its_base_and_keeps_ferryds_code() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("api.sock");
        let api = PluginApi {
            socket: &socket,
            base: "/dns/cni",
            what: "DNS ",
            network: "n1",
        };
        let seen = answer_once(&socket, "409 Conflict", r#"{"error":"taken","code":18}"#);
        let e = api.run("add", &serde_json::json!({})).expect_err("refused");
        assert_eq!(
            seen.join().expect("server"),
            "POST /dns/cni/add HTTP/1.1\r\n"
        );
        assert_eq!(
            (e.code, e.msg.as_str()),
            (18, "ferryd refused DNS add on network \"n1\"")
        );
        assert_eq!(e.details, "taken");

        // The socket file is bound once per listener: a fresh one for GC.
        std::fs::remove_file(&socket).expect("old socket");
        let seen = answer_once(&socket, "503 Unavailable", "{}");
        let e = api.gc(&Value::Null).expect_err("refused");
        assert_eq!(
            seen.join().expect("server"),
            "POST /dns/cni/gc HTTP/1.1\r\n"
        );
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                ferry_cni::code::INTERNAL,
                "ferryd refused GC on network \"n1\""
            )
        );
    }

    #[test]
    fn no_ferryd_is_try_again_later_and_gone_for_gc() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("none.sock");
        let api = PluginApi {
            socket: &socket,
            base: "/cni",
            what: "",
            network: "n1",
        };
        let e = api.run("check", &Value::Null).expect_err("no ferryd");
        assert_eq!(e.code, ferry_cni::code::TRY_AGAIN_LATER);
        assert!(
            api.gc(&Value::Null).is_ok(),
            "no socket: nothing to collect"
        );
        assert_eq!(
            status(&socket).expect_err("no ferryd").code,
            ferry_cni::code::PLUGIN_NOT_AVAILABLE
        );
    }
}
