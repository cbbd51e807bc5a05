//! A stand-in for systemd's notify socket: a daemon started with
//! `NOTIFY_SOCKET` pointing here sends its `READY=1`, `WATCHDOG=1`,
//! `STOPPING=1` datagrams to [`Systemd`], which a test reads in order.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::{Duration, Instant};

/// The receiving end, and the `NOTIFY_SOCKET` value that reaches it.
pub struct Systemd {
    socket: UnixDatagram,
    /// What to put in the daemon's `NOTIFY_SOCKET`.
    pub notify_socket: String,
}

impl Systemd {
    /// A socket at `path` (removed with the test's directory).
    pub fn at_path(path: &Path) -> Systemd {
        let socket = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("notify socket {}: {e}", path.display()));
        Systemd {
            socket,
            notify_socket: path.display().to_string(),
        }
    }

    /// A socket named `name` in the abstract namespace (`@name`; it goes
    /// away with the socket, nothing to clean up).
    pub fn abstract_name(name: &str) -> Systemd {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let socket = UnixDatagram::bind_addr(&addr)
            .unwrap_or_else(|e| panic!("abstract notify socket @{name}: {e}"));
        Systemd {
            socket,
            notify_socket: format!("@{name}"),
        }
    }

    /// The next datagram, or `None` when none arrives within `limit`.
    pub fn next(&self, limit: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .expect("read timeout");
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Reads datagrams until one has the line `line` (`READY=1`) and
    /// returns it; panics within `limit` with what arrived instead.
    pub fn wait_for(&self, line: &str, limit: Duration) -> String {
        let start = Instant::now();
        let mut seen = Vec::new();
        while let Some(left) = limit.checked_sub(start.elapsed()) {
            match self.next(left) {
                Some(m) if m.lines().any(|l| l == line) => return m,
                Some(m) => seen.push(m),
                None => break,
            }
        }
        panic!("no {line} within {limit:?}; received {seen:?}")
    }
}
