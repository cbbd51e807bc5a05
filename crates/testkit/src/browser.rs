//! A headless Chromium driven over WebDriver: Debian's `chromedriver`
//! (package `chromium-driver`) on a free port, spoken to with a minimal
//! HTTP/1.1 client. Enough to load a page, run a script, read the
//! browser's console log and take a screenshot.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Why the browser cannot run here at all (its packages are missing), or
/// `None` when it can. Anything else that fails later is a test failure.
pub fn unavailable() -> Option<String> {
    for (bin, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !Path::new(bin).exists() {
            return Some(format!("{bin} is missing (Debian package {package})"));
        }
    }
    None
}

/// One chromedriver and one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`x`height`
    /// window, its profile under `profile`.
    pub fn start(profile: &Path, width: u32, height: u32) -> Result<Browser, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        std::fs::create_dir_all(profile).map_err(|e| format!("{}: {e}", profile.display()))?;
        // Chromium's scratch directories go with the profile, not to /tmp.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TMPDIR", profile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {CHROMEDRIVER}: {e}"))?;
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        let start = Instant::now();
        while b.call("GET", "/status", None).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err("chromedriver did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let v = b.call("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session in {v}"))?
            .to_string();
        Ok(b)
    }

    /// Opens `url` and waits until it has loaded.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.session_call("POST", "url", Some(json!({ "url": url })))
            .map(drop)
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Result<Value, String> {
        self.session_call(
            "POST",
            "execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls `script` until it returns true or `timeout` passes.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> Result<bool, String> {
        let start = Instant::now();
        loop {
            if self.eval(script)? == Value::Bool(true) {
                return Ok(true);
            }
            if start.elapsed() > timeout {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The console messages since the last call: `(level, message)`.
    pub fn console(&self) -> Result<Vec<(String, String)>, String> {
        let v = self.session_call("POST", "se/log", Some(json!({"type": "browser"})))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let v = self.session_call("GET", "screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().ok_or("screenshot: no data")?)
            .map_err(|e| format!("screenshot: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("write {}: {e}", path.display()))
    }

    fn session_call(&self, verb: &str, what: &str, body: Option<Value>) -> Result<Value, String> {
        self.call(verb, &format!("/session/{}/{what}", self.session), body)
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn call(&self, verb: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| format!("chromedriver: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "{verb} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| format!("chromedriver: {e}"))?;
        // chromedriver keeps the connection open: the answer ends where its
        // length (or its last chunk) says.
        let (mut raw, mut chunk) = (Vec::new(), [0u8; 16 * 1024]);
        let (head, body) = loop {
            let n = s
                .read(&mut chunk)
                .map_err(|e| format!("chromedriver {verb} {path}: {e}"))?;
            raw.extend_from_slice(&chunk[..n]);
            if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
                let body = &raw[split + 4..];
                let length = head.lines().find_map(|l| {
                    l.strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                let complete = match length {
                    Some(len) => body.len() >= len,
                    None => body.ends_with(b"0\r\n\r\n"),
                };
                if complete || n == 0 {
                    let body = match length {
                        Some(len) => body[..len.min(body.len())].to_vec(),
                        None => dechunk(body),
                    };
                    break (head, body);
                }
            }
            if n == 0 {
                return Err(format!("chromedriver {verb} {path}: connection closed"));
            }
        };
        let body = String::from_utf8_lossy(&body);
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("chromedriver {verb} {path}: {e}: {body}"))?;
        let ok = head.split_whitespace().nth(1) == Some("200");
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(format!("chromedriver {verb} {path}: {}", v["value"]))
        }
    }
}

/// A chunked body's data (one answer, read to its end).
fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..eol]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
