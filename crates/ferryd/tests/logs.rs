//! ferryd's logs: stdout stays empty, stderr has one event per request (on
//! either socket) with the method, the IDs, the duration and the outcome, the
//! error's message when it failed; `--log-level` and RUST_LOG choose the level.
//! No dockerd: the requests are made directly, and touch no kernel state.

use ferry_testkit::docker::http;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A ferryd with its sockets and state in `dir`, stdout and stderr in files.
/// Killed on drop (also when an assertion fails).
struct Daemon {
    child: Child,
    plugin: std::path::PathBuf,
    api: std::path::PathBuf,
}

/// ferryd with everything in `dir`: sockets, state, stdout and stderr.
fn ferryd(dir: &Path, log_level: Option<&str>, rust_log: Option<&str>) -> Command {
    let mut cmd = ferry_testkit::ferryd_in(Path::new(env!("CARGO_BIN_EXE_ferryd")), dir);
    cmd.env_remove("RUST_LOG");
    if let Some(l) = log_level {
        cmd.args(["--log-level", l]);
    }
    if let Some(l) = rust_log {
        cmd.env("RUST_LOG", l);
    }
    cmd
}

impl Daemon {
    fn start(dir: &Path, log_level: Option<&str>, rust_log: Option<&str>) -> Daemon {
        let d = Daemon {
            child: ferryd(dir, log_level, rust_log).spawn().unwrap(),
            plugin: dir.join("plugin.sock"),
            api: dir.join("api.sock"),
        };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&d.api).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ferryd did not start: {}",
                std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn call(&self, method: &str, body: &str) -> (u16, serde_json::Value) {
        http(&self.plugin, "POST", &format!("/{method}"), body)
    }

    /// SIGTERM, and wait: everything it logged is in the files afterwards.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request events in stderr.
fn requests(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" request ")).collect()
}

const BAD_POOL: &str = r#"{"AddressSpace":"LocalDefault","Pool":"198.18.300.0/24"}"#;

#[test]
fn one_event_per_request_on_stderr_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), Some("debug"), None);

    let (status, caps) = d.call("NetworkDriver.GetCapabilities", "");
    assert_eq!((status, caps["Scope"].as_str()), (200, Some("local")));
    let (status, bad) = d.call("IpamDriver.RequestPool", BAD_POOL);
    let msg = bad["Error"].as_str().unwrap_or_default().to_string();
    assert!(status == 200 && msg.contains("198.18.300.0/24"), "{bad}");
    let (status, _) = http(&d.api, "GET", "/sandboxes/ferry-logs-none", "");
    assert_eq!(status, 404);
    d.stop();

    let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(stdout, "", "ferryd wrote to stdout");
    let events = requests(&stderr);
    assert_eq!(events.len(), 3, "{stderr}");
    for e in &events {
        assert!(e.contains(" duration="), "no duration: {e}");
    }
    let [caps, pool, sandbox] = events[..] else {
        unreachable!()
    };
    assert!(
        caps.contains("INFO")
            && caps.contains(r#"method="NetworkDriver.GetCapabilities""#)
            && caps.contains(r#"outcome="ok""#),
        "{caps}"
    );
    assert!(
        pool.contains("WARN")
            && pool.contains(r#"method="IpamDriver.RequestPool""#)
            && pool.contains(r#"outcome="failed""#)
            && pool.contains(&format!("error={msg}")),
        "{pool} lacks {msg}"
    );
    assert!(
        sandbox.contains(r#"method="GET /sandboxes/{name}""#)
            && sandbox.contains(r#"sandbox="ferry-logs-none""#)
            && sandbox.contains("status=404")
            && sandbox.contains("not found"),
        "{sandbox}"
    );
    // Startup names the sockets and the state file; shutdown is logged.
    let plugin = d.plugin.display().to_string();
    assert!(
        stderr.lines().any(|l| l.contains(&plugin)
            && l.contains(&d.api.display().to_string())
            && l.contains("state.redb")),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"shutting down signal="SIGTERM""#),
        "{stderr}"
    );
}

#[test]
fn rust_log_sets_the_level_and_the_flag_wins() {
    // RUST_LOG=warn: successes are not logged, failures are.
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), None, Some("warn"));
    d.call("NetworkDriver.GetCapabilities", "");
    d.call("IpamDriver.RequestPool", BAD_POOL);
    d.stop();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    let events = requests(&stderr);
    assert_eq!(events.len(), 1, "{stderr}");
    assert!(events[0].contains("IpamDriver.RequestPool"), "{stderr}");

    // --log-level info over RUST_LOG=warn: both are.
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), Some("info"), Some("warn"));
    d.call("NetworkDriver.GetCapabilities", "");
    d.call("IpamDriver.RequestPool", BAD_POOL);
    d.stop();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(requests(&stderr).len(), 2, "{stderr}");
}

#[test]
fn a_bad_log_level_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon {
        child: ferryd(dir.path(), Some("ferryd=loud"), None)
            .spawn()
            .unwrap(),
        plugin: dir.path().join("plugin.sock"),
        api: dir.path().join("api.sock"),
    };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "ferryd runs");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
    assert_eq!(read("stdout"), "");
    assert!(read("stderr").contains("ferryd=loud"), "{}", read("stderr"));
    assert!(!d.plugin.exists(), "ferryd served with a bad log level");
}
