//! ferryd under a `Type=notify` unit, with a test socket standing in for
//! systemd's: READY=1 arrives once the API and plugin sockets answer (the
//! status counts what was reloaded), WATCHDOG=1 every half WATCHDOG_USEC,
//! STOPPING=1 on SIGTERM, then exit 0 with every socket removed and the
//! state kept for the next start. No kernel state is touched.

use ferry_testkit::docker::{http, try_http};
use ferry_testkit::notify::Systemd;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// A loaded 2-core CI machine may take a while to start a debug ferryd.
const START: Duration = Duration::from_secs(30);

/// A ferryd with everything under `dir`, killed on drop.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn spawn(dir: &Path, systemd: &Systemd, watchdog_usec: Option<&str>) -> Daemon {
        let mut cmd = ferry_testkit::ferryd_in(Path::new(env!("CARGO_BIN_EXE_ferryd")), dir);
        cmd.args(["--default-address-pool", "base=198.19.56.0/22,size=24"])
            .env("NOTIFY_SOCKET", &systemd.notify_socket)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        if let Some(u) = watchdog_usec {
            cmd.env("WATCHDOG_USEC", u);
        }
        Daemon {
            child: cmd.spawn().expect("start ferryd"),
            dir: dir.to_path_buf(),
        }
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// SIGTERM; the exit status within `limit`.
    fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "ferryd still runs {limit:?} after SIGTERM: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const POOL: &str = r#"{"AddressSpace":"LocalDefault","Pool":"198.19.57.0/24"}"#;

#[test]
fn ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let systemd = Systemd::at_path(&dir.path().join("notify.sock"));
    let mut d = Daemon::spawn(dir.path(), &systemd, Some("200000"));

    // READY=1 only once both sockets listen: they answer at that moment.
    let ready = systemd.wait_for("READY=1", START);
    let (status, nets) = try_http(&d.socket("api.sock"), "GET", "/networks", "")
        .unwrap_or_else(|e| panic!("API socket not answering at READY=1: {e}"));
    assert_eq!(status, 200, "GET /networks at READY=1: {nets}");
    let (status, v) = try_http(&d.socket("plugin.sock"), "POST", "/Plugin.Activate", "{}")
        .unwrap_or_else(|e| panic!("plugin socket not answering at READY=1: {e}"));
    assert_eq!(status, 200, "Plugin.Activate at READY=1: {v}");
    assert!(
        ready.contains("STATUS=serving: 0 networks, 0 endpoints, 0 sandboxes"),
        "READY without the status: {ready:?}"
    );

    // WATCHDOG_USEC=200ms: a ping every 100 ms; three within 10 s even loaded.
    for _ in 0..3 {
        systemd.wait_for("WATCHDOG=1", Duration::from_secs(10));
    }

    // State written before SIGTERM survives it.
    let (status, v) = http(
        &d.socket("plugin.sock"),
        "POST",
        "/IpamDriver.RequestPool",
        POOL,
    );
    assert!(
        status == 200 && v["PoolID"].is_string(),
        "RequestPool: {status} {v}"
    );

    let exit = d.terminate(Duration::from_secs(20));
    systemd.wait_for("STOPPING=1", Duration::from_secs(1));
    assert!(exit.success(), "SIGTERM: {exit}: {}", d.stderr());
    for s in ["plugin.sock", "api.sock", "metrics.sock"] {
        assert!(!d.socket(s).exists(), "{s} left after SIGTERM");
    }
    let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    assert_eq!(stdout, "", "ferryd wrote to stdout");

    // Restarted on the same state, without a watchdog: ready again, the
    // pool still held, and no ping.
    drop(d);
    let d = Daemon::spawn(dir.path(), &systemd, None);
    systemd.wait_for("READY=1", START);
    let (_, v) = http(
        &d.socket("plugin.sock"),
        "POST",
        "/IpamDriver.RequestPool",
        POOL,
    );
    let err = v["Error"].as_str().unwrap_or_default();
    assert!(
        err.contains("198.19.57.0/24"),
        "the pool requested before SIGTERM is not held after the restart: {v}"
    );
    if let Some(m) = systemd.next(Duration::from_millis(500)) {
        panic!("without WATCHDOG_USEC ferryd sent {m:?}");
    }
}
