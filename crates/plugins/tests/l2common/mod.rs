//! Shared by the macvlan, host-device and tap root tests: plugin directories
//! (Ferry's multi-call binary or the reference Go plugin under the type's
//! name), running one CNI verb with env + stdin, host parents, and the
//! `ip -j -d` snapshot used to compare Ferry with the reference.
#![allow(dead_code)]

pub use ferry_testkit::snapshot::assert_same;
use ferry_testkit::snapshot::Snapshot;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which implementation a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Ferry,
    Reference,
}

/// A CNI_PATH directory holding `plugin` (Ferry's or the reference's) and
/// `host-local` for IPAM: Ferry's when it is registered, for a Ferry run;
/// the reference's for a reference run.
pub struct PluginDir {
    pub dir: tempfile::TempDir,
    pub plugin: String,
}

impl PluginDir {
    pub fn new(plugin: &str, side: Side) -> PluginDir {
        let dir = tempfile::tempdir().unwrap();
        let ferry = PathBuf::from(env!("CARGO_BIN_EXE_ferry-plugin"));
        let target = match side {
            Side::Ferry => ferry.clone(),
            Side::Reference => require_reference(plugin),
        };
        std::os::unix::fs::symlink(&target, dir.path().join(plugin)).unwrap();
        let ipam = match side {
            Side::Ferry if ferry_plugins::find("host-local").is_some() => ferry,
            _ => require_reference("host-local"),
        };
        std::os::unix::fs::symlink(ipam, dir.path().join("host-local")).unwrap();
        PluginDir {
            dir,
            plugin: plugin.to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What one invocation printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub out: Value,
    pub raw: String,
}

impl Outcome {
    /// The CNI error code, or 0 on success.
    pub fn code(&self) -> u64 {
        if self.ok {
            0
        } else {
            self.out["code"].as_u64().unwrap_or(999)
        }
    }
    pub fn expect_ok(self, what: &str) -> Value {
        assert!(self.ok, "{what} failed: {}", self.raw);
        self.out
    }
}

/// One attachment: container id, namespace path and interface name.
#[derive(Debug, Clone)]
pub struct Att {
    pub id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

impl Att {
    pub fn new(id: &str, netns: &str, ifname: &str) -> Att {
        Att {
            id: id.into(),
            netns: netns.into(),
            ifname: ifname.into(),
            args: String::new(),
        }
    }
}

/// Runs `verb` of the directory's plugin with `conf` on stdin.
pub fn run(dir: &PluginDir, verb: &str, conf: &Value, att: &Att) -> Outcome {
    run_bytes(dir, verb, &serde_json::to_vec(conf).unwrap(), att)
}

/// Runs `verb` with `stdin` as given (for malformed input).
pub fn run_bytes(dir: &PluginDir, verb: &str, stdin: &[u8], att: &Att) -> Outcome {
    let out = run_with_stdin(
        Command::new(dir.path().join(&dir.plugin))
            .env_clear()
            .env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", &att.id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", &att.args)
            .env("CNI_PATH", dir.path())
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stderr(Stdio::piped()),
        stdin,
    );
    let raw = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome {
        ok: out.status.success(),
        out: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        raw,
    }
}

/// `conf` with `prevResult` set, for CHECK and DEL.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

/// A veth pair in the host namespace, both ends up: `a` serves as a master
/// (a macvlan parent needs a carrier) or as a device to move. Deleted on drop.
pub struct HostVeth {
    pub a: String,
    pub b: String,
}

impl HostVeth {
    pub fn new(prefix: &str) -> HostVeth {
        let a = unique(prefix);
        let b = format!("{a}p");
        assert!(b.len() <= 15);
        sh(&format!(
            "ip link add {a} type veth peer name {b} && ip link set {a} up && ip link set {b} up"
        ));
        HostVeth { a, b }
    }
}

impl Drop for HostVeth {
    fn drop(&mut self) {
        let _ = sh_ok(&format!("ip link del {}", self.a));
        let _ = sh_ok(&format!("ip link del {}", self.b));
    }
}

/// `ip -j -d link show DEV` in a namespace (None: host), or Null.
pub fn link_json(netns: Option<&str>, dev: &str) -> Value {
    let pre = netns.map(|n| format!("ip -n {n}")).unwrap_or("ip".into());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{pre} -j -d link show dev {dev} 2>/dev/null"))
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.get(0).cloned())
        .unwrap_or(Value::Null)
}

/// The namespace's links, addresses and routes, plus the notify sysctls of
/// `ifname`; MACs only when the test configured one.
pub fn snapshot(ns: &Netns, ifname: &str, macs: bool) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.namespace("ctr", Some(&ns.name), None, macs);
    snap.sysctls(
        "ctr",
        Some(&ns.name),
        &[
            &format!("net.ipv4.conf.{ifname}.arp_notify"),
            &format!("net.ipv6.conf.{ifname}.ndisc_notify"),
            &format!("net.ipv6.conf.{ifname}.disable_ipv6"),
        ],
    );
    snap
}

/// Results differ in random parts only: MACs (unless configured) and the sandbox path.
pub fn normalize_result(mut r: Value, keep_mac: bool) -> Value {
    for i in r["interfaces"].as_array_mut().into_iter().flatten() {
        if !keep_mac && i.get("mac").is_some() {
            i["mac"] = json!("MAC");
        }
        if i["sandbox"].as_str().is_some_and(|s| !s.is_empty()) {
            i["sandbox"] = json!("NETNS");
        }
    }
    r
}

/// Host links whose parent (`link`) is `master`: macvlans left on it.
pub fn children_of(master: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&sh("ip -j -d link show")).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["link"].as_str() == Some(master))
        .filter(|l| l["linkinfo"]["info_kind"].as_str() == Some("macvlan"))
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Interface names in a namespace.
pub fn ns_links(ns: &Netns) -> Vec<String> {
    let v: Value = serde_json::from_str(&ns.exec("ip -j link show")).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Lease files (reserved addresses) under a host-local data dir.
pub fn leases(data: &Path, network: &str) -> Vec<String> {
    files(&data.join(network))
        .into_iter()
        .filter(|f| f != "lock" && f != "ferry-index" && !f.starts_with("last_reserved_ip"))
        .collect()
}
