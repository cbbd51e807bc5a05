//! Plugins report each run to ferryd, the long-lived daemon that exports
//! metrics (a plugin lives too briefly to be scraped): one datagram on a
//! unix DATAGRAM socket, `FERRY_METRICS_SOCKET` or [`DEFAULT_SOCKET`]. The
//! send never blocks (`MSG_DONTWAIT`) and never fails the operation: when
//! no ferryd listens, or its queue is full, the report is dropped silently.

use nix::sys::socket::{sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variable naming ferryd's metrics socket; empty turns reporting off.
pub const ENV: &str = "FERRY_METRICS_SOCKET";
/// Where ferryd listens by default (`ferryd --metrics-socket`).
pub const DEFAULT_SOCKET: &str = "/run/ferry/metrics.sock";

/// One plugin run, as sent (a JSON datagram).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub plugin: String,
    /// CNI_COMMAND (`ADD`, `DEL`, ...).
    pub command: String,
    /// The network config's name, when it has one.
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
    pub duration_seconds: f64,
    /// The error printed, when the run failed.
    #[serde(default)]
    pub error: Option<String>,
}

impl Report {
    pub fn new(plugin: &str, command: &str, duration: Duration) -> Report {
        Report {
            plugin: plugin.to_string(),
            command: command.to_string(),
            network: String::new(),
            container_id: String::new(),
            ifname: String::new(),
            duration_seconds: duration.as_secs_f64(),
            error: None,
        }
    }
}

/// The socket to report to: `FERRY_METRICS_SOCKET` (none when empty), else
/// the default.
pub fn target(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env(ENV) {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(DEFAULT_SOCKET)),
    }
}

/// Sends the report without waiting; every failure is ignored (the
/// operation's outcome does not depend on metrics).
pub fn send(socket_path: &Path, report: &Report) {
    let Ok(buf) = serde_json::to_vec(report) else {
        return;
    };
    let Ok(addr) = UnixAddr::new(socket_path) else {
        return;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return;
    };
    let _ = sendto(fd.as_raw_fd(), &buf, &addr, MsgFlags::MSG_DONTWAIT);
}

/// The most a plugin may spend reporting one run (issue 14).
pub const BUDGET_MICROS: u64 = 50;

/// The mean cost of one [`send`], with no listener and with one draining
/// the socket.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub without: Duration,
    pub with: Duration,
    /// Sends per measurement, and how many the listener got.
    pub sends: u32,
    pub received: u32,
}

/// Measures a plugin's reporting cost: `sends` reports of a typical size to
/// `socket_path` (which must not exist: it is bound for the second half and
/// removed after), first with nobody listening, then with a thread draining.
/// For the unit test and the benchmark.
pub fn measure_cost(socket_path: &Path, sends: u32) -> std::io::Result<Cost> {
    use std::os::unix::net::UnixDatagram;
    use std::time::Instant;
    let sends = sends.max(1);
    let r = Report {
        network: "mynet".into(),
        container_id: "0123456789abcdef".repeat(4),
        ifname: "eth0".into(),
        ..Report::new("bridge", "ADD", Duration::from_micros(1234))
    };
    let mean = || {
        let start = Instant::now();
        for _ in 0..sends {
            send(socket_path, &r);
        }
        start.elapsed() / sends
    };
    let without = mean();
    let rx = UnixDatagram::bind(socket_path)?;
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut n = 0;
        while rx.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let with = mean();
    let received = drain.join().unwrap_or(0);
    let _ = std::fs::remove_file(socket_path);
    Ok(Cost {
        without,
        with,
        sends,
        received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::time::Instant;

    #[test]
    fn target_defaults_and_can_be_turned_off() {
        assert_eq!(target(|_| None), Some(PathBuf::from(DEFAULT_SOCKET)));
        assert_eq!(target(|_| Some(String::new())), None);
        assert_eq!(
            target(|_| Some("/tmp/m.sock".into())),
            Some(PathBuf::from("/tmp/m.sock"))
        );
    }

    #[test]
    fn a_listener_receives_the_report_and_no_listener_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sock");
        // Nothing listens: the send returns quietly.
        let mut r = Report::new("bridge", "ADD", Duration::from_millis(3));
        send(&path, &r);
        let rx = UnixDatagram::bind(&path).unwrap();
        r.error = Some("boom (code 11)".into());
        send(&path, &r);
        let mut buf = [0u8; 4096];
        let n = rx.recv(&mut buf).unwrap();
        let got: Report = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(got, r);
        // A full queue (nobody reading) never blocks the sender.
        rx.set_nonblocking(true).unwrap();
        let start = Instant::now();
        for _ in 0..2000 {
            send(&path, &r);
        }
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    /// The plugin's cost of reporting, printed (`--nocapture`) and held
    /// under 50 µs (`cargo test --release -p ferry-cni report_cost`).
    #[test]
    fn report_cost_under_50_microseconds() {
        let dir = tempfile::tempdir().unwrap();
        let cost = measure_cost(&dir.path().join("m.sock"), 2000).unwrap();
        println!(
            "report cost: {:?} per send without a listener, {:?} with one ({} of {} received)",
            cost.without, cost.with, cost.received, cost.sends
        );
        assert!(cost.received > 0, "the listener received no report");
        // The target holds for the plugins as shipped (release); an
        // unoptimised test build gets a looser bound.
        let bound = if cfg!(debug_assertions) {
            500
        } else {
            BUDGET_MICROS
        };
        let bound = Duration::from_micros(bound);
        assert!(
            cost.without < bound,
            "without a listener: {:?}",
            cost.without
        );
        assert!(cost.with < bound, "with a listener: {:?}", cost.with);
    }
}
