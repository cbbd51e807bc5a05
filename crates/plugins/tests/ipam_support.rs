//! Shared by the `ipam_*` tests (included with `#[path]`): run Ferry's
//! multi-call binary as `host-local`/`static` and the reference plugins from
//! `/usr/lib/cni` with the same environment and stdin, and compare what they
//! print and what they leave on disk.
//!
//! Every test keeps its state in temporary directories (removed on drop, so
//! also on panic) and uses its own /24 of 198.18.64.0/18 and /64 of
//! fd00:64::/48. The plugins touch no kernel state.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry-plugin");

/// A namespace path for ADD/CHECK: the IPAM plugins never open it.
pub const NETNS: &str = "/var/run/netns/ferry-ipam-unused";

/// Which implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Ferry,
    Reference,
}

/// Plugin binaries: Ferry's under a temporary CNI_PATH of symlinks named by
/// type, the reference's in /usr/lib/cni (missing: fail naming the package).
pub struct Bins {
    dir: tempfile::TempDir,
}

impl Default for Bins {
    fn default() -> Self {
        Bins::new()
    }
}

impl Bins {
    pub fn new() -> Bins {
        ferry_testkit::require_reference("host-local");
        ferry_testkit::require_reference("static");
        let dir = tempfile::Builder::new()
            .prefix("ferry-ipam-bin")
            .tempdir()
            .expect("temp dir");
        for name in ["host-local", "static"] {
            std::os::unix::fs::symlink(FERRY, dir.path().join(name)).expect("symlink");
        }
        Bins { dir }
    }

    pub fn path(&self, imp: Impl, plugin: &str) -> PathBuf {
        match imp {
            Impl::Ferry => self.dir.path().join(plugin),
            Impl::Reference => Path::new("/usr/lib/cni").join(plugin),
        }
    }

    pub fn cni_path(&self, imp: Impl) -> String {
        match imp {
            Impl::Ferry => self.dir.path().display().to_string(),
            Impl::Reference => "/usr/lib/cni".into(),
        }
    }
}

/// One invocation.
#[derive(Debug, Clone)]
pub struct Req {
    pub command: String,
    pub container_id: String,
    pub ifname: String,
    pub cni_args: String,
    pub stdin: Vec<u8>,
}

impl Req {
    pub fn new(command: &str, container_id: &str, config: &Value) -> Req {
        Req {
            command: command.into(),
            container_id: container_id.into(),
            ifname: "eth0".into(),
            cni_args: String::new(),
            stdin: serde_json::to_vec(config).expect("config"),
        }
    }
    pub fn ifname(mut self, ifname: &str) -> Req {
        self.ifname = ifname.into();
        self
    }
    pub fn args(mut self, cni_args: &str) -> Req {
        self.cni_args = cni_args.into();
        self
    }
    pub fn raw(mut self, stdin: &[u8]) -> Req {
        self.stdin = stdin.to_vec();
        self
    }
}

/// What a plugin printed and how it exited.
#[derive(Debug, Clone)]
pub struct Out {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The JSON printed (`Null` when nothing was).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
        }
    }

    /// The printed JSON with the whitespace removed and key order kept: the
    /// reference indents with 4 spaces and no final newline, Ferry's skeleton
    /// with 2 spaces and a newline; everything else is compared byte for byte.
    pub fn canonical(&self) -> String {
        serde_json::to_string(&self.json()).expect("serialize")
    }

    /// The result of a successful ADD.
    pub fn ok(&self) -> Value {
        assert!(
            self.success,
            "expected success, got {}{}",
            self.stdout, self.stderr
        );
        self.json()
    }

    /// The CNI error code of a failure.
    pub fn err_code(&self) -> u64 {
        assert!(
            !self.success,
            "expected failure, got success: {}",
            self.stdout
        );
        self.json()["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code in {}", self.stdout))
    }
}

pub fn command(bins: &Bins, imp: Impl, plugin: &str, req: &Req) -> Command {
    let mut cmd = Command::new(bins.path(imp, plugin));
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", &req.command)
        .env("CNI_CONTAINERID", &req.container_id)
        .env("CNI_NETNS", NETNS)
        .env("CNI_IFNAME", &req.ifname)
        .env("CNI_PATH", bins.cni_path(imp))
        .env("CNI_ARGS", &req.cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts a plugin and feeds it its stdin; collect it with [`finish`].
pub fn spawn(bins: &Bins, imp: Impl, plugin: &str, req: &Req) -> Child {
    let mut child = command(bins, imp, plugin, req)
        .spawn()
        .unwrap_or_else(|e| panic!("run {plugin} ({imp:?}): {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&req.stdin).expect("write stdin");
    drop(stdin);
    child
}

pub fn finish(child: Child) -> Out {
    let out = child.wait_with_output().expect("wait");
    Out {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run(bins: &Bins, imp: Impl, plugin: &str, req: &Req) -> Out {
    finish(spawn(bins, imp, plugin, req))
}

/// A temporary data directory (`dataDir`), removed on drop.
pub fn data_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ferry-ipam-{tag}-"))
        .tempdir()
        .expect("temp dir")
}

/// Every file under `dir` (recursively) with its content; directories as
/// `name/`. Empty when `dir` does not exist.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("prefix").display().to_string();
            if p.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(base, &p, out);
            } else {
                let data = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, String::from_utf8_lossy(&data).into_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The reference's state of a network: reservation files and
/// `last_reserved_ip.*`, with contents; not `lock` (created by both) nor
/// Ferry's `ferry-index/` hints.
pub fn leases(net_dir: &Path) -> BTreeMap<String, String> {
    snapshot(net_dir)
        .into_iter()
        .filter(|(k, _)| k != "lock" && !k.starts_with("ferry-index"))
        .collect()
}

/// Only the reservation files (named by an address).
pub fn reservations(net_dir: &Path) -> BTreeMap<String, String> {
    leases(net_dir)
        .into_iter()
        .filter(|(k, _)| k.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

/// `containerID\r\nifname`, as both write it.
pub fn holder(id: &str, ifname: &str) -> String {
    format!("{id}\r\n{ifname}")
}

/// A host-local network config of `version` on `data_dir` with the given
/// `ipam` members (besides `type` and `dataDir`) and top-level members.
pub fn host_local(version: &str, name: &str, dir: &Path, ipam: Value, top: Value) -> Value {
    let mut ipam_obj = serde_json::json!({"type": "host-local", "dataDir": dir});
    merge(&mut ipam_obj, ipam);
    let mut conf = serde_json::json!({
        "cniVersion": version,
        "name": name,
        "type": "bridge",
        "ipam": ipam_obj,
    });
    merge(&mut conf, top);
    conf
}

/// Sets every member of `extra` (an object) on `v`.
pub fn merge(v: &mut Value, extra: Value) {
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
        for (k, val) in extra {
            obj.insert(k, val);
        }
    }
}

/// The same config with another `dataDir`.
pub fn with_dir(conf: &Value, dir: &Path) -> Value {
    let mut c = conf.clone();
    c["ipam"]["dataDir"] = Value::String(dir.display().to_string());
    c
}
