//! Helpers for the root-only integration tests: unique names, namespaces
//! removed by a guard (also on panic), and `ip`/`bridge`/`sysctl` oracles.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use ferry_linux::Netns;
use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `prefix` + pid + counter, at most
/// 15 bytes with a prefix of up to 4 bytes.
pub fn unique(prefix: &str) -> String {
    assert!(prefix.len() <= 4);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("{prefix}{:x}x{n}", std::process::id() & 0xffff);
    assert!(name.len() <= 15, "{name} too long");
    name
}

/// Fails the test with the package name when a tool is missing.
pub fn require(cmd: &str, package: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "this test needs `{cmd}`: apt-get install {package}");
}

/// Deletes its namespaces when dropped, including on panic.
pub struct Guard {
    names: Vec<String>,
}

impl Guard {
    pub fn new() -> Self {
        require("ip", "iproute2");
        Guard { names: Vec::new() }
    }

    /// Creates a named namespace that the guard will delete; brings its
    /// loopback up.
    pub fn netns(&mut self, prefix: &str) -> (String, Netns) {
        let name = unique(prefix);
        let ns = Netns::create(&name).expect("create netns");
        self.names.push(name.clone());
        let mut nl = ns.netlink().expect("netlink in ns");
        let lo = nl.link_by_name("lo").expect("lo");
        nl.set_up(lo.index).expect("lo up");
        (name, ns)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            if let Err(e) = Netns::delete(name) {
                eprintln!("cleanup: delete netns {name}: {e}");
            }
        }
    }
}

/// Runs a command, panicking with its stderr on failure; returns stdout.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and tells whether it succeeded.
pub fn succeeds(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `ip -n NS -j ARGS` parsed as JSON.
pub fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut all = vec!["ip", "-n", ns, "-j"];
    all.extend_from_slice(args);
    let out = run(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("parse {all:?} output {out:?}: {e}"))
}

/// `ip -n NS -j -d link show dev DEV` as the one JSON object.
pub fn link_json(ns: &str, dev: &str) -> Value {
    let v = ip_json(ns, &["-d", "link", "show", "dev", dev]);
    v[0].clone()
}

/// `ip netns exec NS ARGS`.
pub fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// Pings `addr` from namespace `ns`, retrying a few times.
pub fn ping(ns: &str, addr: &str) -> bool {
    require("ping", "iputils-ping");
    (0..5).any(|_| succeeds(&["ip", "netns", "exec", ns, "ping", "-c1", "-W1", addr]))
}
