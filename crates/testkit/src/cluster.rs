//! Several hosts on one machine, for overlay tests and the benchmark: each
//! host a network namespace on an underlay bridge (`PREFIX.N/24`, N from 1),
//! an etcd member on the first `members` hosts, and a ferryd per host
//! (started with `nsenter --net`, its own sockets, state and log under the
//! cluster's directory; `build` then `start_ferryd` for a caller that sets
//! ferryd's arguments or a host's plugin socket first). Everything is removed on drop, also after a panic:
//! processes, the namespaces of the hosts and of the sandboxes the caller
//! registered, and the underlay bridge.

use crate::docker::try_http;
use crate::{sh, sh_ok, unique};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One host: its namespace, directory, etcd member and ferryd.
pub struct Host {
    pub index: usize,
    pub ns: String,
    pub ip: String,
    pub dir: PathBuf,
    /// Where ferryd serves Docker's plugin protocol: in `dir`, unless the
    /// caller puts it where a dockerd looks (`/run/docker/plugins/`) before
    /// `start_ferryd`. Removed on drop.
    pub plugin_socket: PathBuf,
    etcd: Option<Child>,
    ferryd: Option<Child>,
}

impl Host {
    /// Ferry's API socket of this host's ferryd.
    pub fn api(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// An API call: (HTTP status, JSON body).
    pub fn call(&self, verb: &str, path: &str, body: &Value) -> Result<(u16, Value), String> {
        try_http(&self.api(), verb, path, &body.to_string())
    }

    /// An API call that must answer 200.
    pub fn ok(&self, verb: &str, path: &str, body: &Value) -> Value {
        match self.call(verb, path, body) {
            Ok((200, v)) => v,
            other => panic!("{} {verb} {path} {body}: {other:?}", self.ns),
        }
    }

    /// Runs a command line inside the host's namespace.
    pub fn sh(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} {cmd}", self.ns))
    }

    pub fn kill_ferryd(&mut self) {
        if let Some(mut c) = self.ferryd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// ferryd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ferryd.log")).unwrap_or_default()
    }
}

/// The hosts, their etcd cluster and their ferryds.
pub struct Cluster {
    pub hosts: Vec<Host>,
    pub underlay: String,
    /// More arguments for the ferryds started from now on.
    pub ferryd_args: Vec<String>,
    ferryd: PathBuf,
    etcd_endpoints: String,
    pool: String,
    sandboxes: Vec<String>,
    _dir: tempfile::TempDir,
}

/// What to build.
pub struct Spec<'a> {
    /// The underlay's first three octets, e.g. "198.18.100".
    pub underlay: &'a str,
    pub hosts: usize,
    /// etcd members, on the first hosts (at least 1).
    pub members: usize,
    /// The ferryd binary.
    pub ferryd: &'a Path,
    /// ferryd's `--default-address-pool` ("": ferryd's own default).
    pub pool: &'a str,
}

impl Cluster {
    /// Builds the hosts, starts etcd and one ferryd per host.
    pub fn start(spec: &Spec) -> Result<Cluster, String> {
        let mut c = Cluster::build(spec)?;
        for i in 0..spec.hosts {
            c.start_ferryd(i)?;
        }
        Ok(c)
    }

    /// Builds the hosts and starts etcd; no ferryd runs until `start_ferryd`.
    pub fn build(spec: &Spec) -> Result<Cluster, String> {
        for bin in ["etcd", "nsenter"] {
            if !sh_ok(&format!("command -v {bin} >/dev/null")) {
                return Err(format!(
                    "{bin} is missing (Debian packages etcd-server, util-linux)"
                ));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("ferry-cluster")
            .tempdir_in("/var/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let underlay = unique("ovul");
        let ip = |i: usize| format!("{}.{}", spec.underlay, i + 1);
        let members = spec.members.clamp(1, spec.hosts);
        let mut c = Cluster {
            hosts: Vec::new(),
            underlay: underlay.clone(),
            ferryd_args: Vec::new(),
            ferryd: spec.ferryd.to_path_buf(),
            etcd_endpoints: (0..members)
                .map(|i| format!("{}:2379", ip(i)))
                .collect::<Vec<_>>()
                .join(","),
            pool: spec.pool.to_string(),
            sandboxes: Vec::new(),
            _dir: dir,
        };
        if !sh_ok(&format!(
            "ip link add {underlay} type bridge && ip link set {underlay} up"
        )) {
            return Err(format!("cannot create the underlay bridge {underlay}"));
        }
        for i in 0..spec.hosts {
            let ns = unique(&format!("ovh{i}"));
            let hdir = c._dir.path().join(format!("h{i}"));
            std::fs::create_dir_all(&hdir).map_err(|e| format!("host dir: {e}"))?;
            let peer = unique("ovp");
            // Registered first, so that drop removes a half-built host too.
            c.hosts.push(Host {
                index: i,
                ns: ns.clone(),
                ip: ip(i),
                plugin_socket: hdir.join("plugin.sock"),
                dir: hdir,
                etcd: None,
                ferryd: None,
            });
            let built = sh_ok(&format!(
                "ip netns add {ns} && ip link add {peer} type veth peer name ul0 netns {ns} && \
                 ip link set {peer} master {underlay} up && \
                 ip -n {ns} addr add {}/24 dev ul0 && ip -n {ns} link set ul0 up && \
                 ip -n {ns} link set lo up",
                ip(i)
            ));
            if !built {
                return Err(format!("cannot build host {ns}"));
            }
        }
        let initial: Vec<String> = (0..members)
            .map(|i| format!("m{i}=http://{}:2380", ip(i)))
            .collect();
        for h in c.hosts.iter_mut().take(members) {
            let log = std::fs::File::create(h.dir.join("etcd.log"))
                .map_err(|e| format!("etcd log: {e}"))?;
            let child = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", h.ns))
                .arg("etcd")
                .args(["--name", &format!("m{}", h.index)])
                .arg("--data-dir")
                .arg(h.dir.join("etcd"))
                .args(["--listen-client-urls", &format!("http://{}:2379", h.ip)])
                .args(["--advertise-client-urls", &format!("http://{}:2379", h.ip)])
                .args(["--listen-peer-urls", &format!("http://{}:2380", h.ip)])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://{}:2380", h.ip),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("start etcd: {e}"))?;
            h.etcd = Some(child);
        }
        Ok(c)
    }

    /// The etcd client endpoints, `IP:2379,...`.
    pub fn etcd_endpoints(&self) -> &str {
        &self.etcd_endpoints
    }

    /// Starts (again) the ferryd of host `i` and waits for its API.
    pub fn start_ferryd(&mut self, i: usize) -> Result<(), String> {
        let h = &mut self.hosts[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(h.dir.join("ferryd.log"))
            .map_err(|e| format!("ferryd log: {e}"))?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", h.ns))
            .arg(&self.ferryd)
            .arg("--plugin-socket")
            .arg(&h.plugin_socket)
            .arg("--api-socket")
            .arg(h.api())
            .arg("--state")
            .arg(h.dir.join("state.redb"))
            .arg("--cluster-store")
            .arg(format!("etcd://{}", self.etcd_endpoints))
            .arg("--advertise-address")
            .arg(&h.ip)
            .arg("--node-name")
            .arg(format!("h{i}"))
            .args(&self.ferryd_args);
        if !self.pool.is_empty() {
            cmd.args(["--default-address-pool", &self.pool]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start ferryd: {e}"))?;
        h.ferryd = Some(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(h.api()).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("ferryd on {} did not start: {}", h.ns, h.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// A new Ferry sandbox on host `i`, removed on drop.
    pub fn sandbox(&mut self, i: usize, prefix: &str) -> String {
        let name = self.sandbox_name(prefix);
        self.hosts[i].ok("POST", "/sandboxes", &serde_json::json!({"name": name}));
        name
    }

    /// A unique name for a sandbox the caller creates (e.g. through the
    /// CLI), its namespace removed on drop.
    pub fn sandbox_name(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        self.sandboxes.push(name.clone());
        name
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.kill_ferryd();
            h.kill_etcd();
            // A socket outside the cluster's directory stays behind a SIGKILL.
            let _ = std::fs::remove_file(&h.plugin_socket);
        }
        for s in &self.sandboxes {
            let _ = sh_ok(&format!("ip netns del {s} 2>/dev/null"));
        }
        for h in &self.hosts {
            // The host's links (bridges, VXLAN devices, veths) go with it.
            let _ = sh_ok(&format!("ip netns del {} 2>/dev/null", h.ns));
        }
        let _ = sh_ok(&format!("ip link del {} 2>/dev/null", self.underlay));
    }
}

/// The parts of an endpoint the API returns: IPv4, IPv6 (either may be
/// empty) and MAC.
pub fn endpoint_addrs(ep: &Value) -> (String, String, String) {
    let addr = |k: &str| {
        ep[k]
            .as_str()
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string()
    };
    (
        addr("address"),
        addr("address_v6"),
        ep["mac"].as_str().unwrap_or("").to_string(),
    )
}

/// Whether namespace `from` pings `to` (one packet, `wait_ms` at most).
pub fn pings(from: &str, to: &str, wait_ms: u32) -> bool {
    let six = if to.contains(':') { "-6 " } else { "" };
    let w = if wait_ms >= 1000 {
        format!("-W{}", wait_ms / 1000)
    } else {
        format!("-W0.{:03}", wait_ms)
    };
    sh_ok(&format!(
        "ip netns exec {from} ping {six}-c1 {w} {to} >/dev/null 2>&1"
    ))
}

/// Whether host namespace `ns` has a static FDB entry with a remote
/// destination for `mac`.
pub fn fdb_has(ns: &str, mac: &str) -> bool {
    sh(&format!("ip netns exec {ns} bridge fdb show"))
        .lines()
        .any(|l| l.starts_with(mac) && l.contains("dst"))
}

/// Whether host namespace `ns` has a permanent neighbour entry for `ip`.
pub fn neigh_has(ns: &str, ip: &str) -> bool {
    sh(&format!("ip -n {ns} neigh show"))
        .lines()
        .any(|l| l.starts_with(&format!("{ip} ")) && l.contains("PERMANENT"))
}

/// Polls `ok` every 20 ms until it holds; Err after `limit`.
pub fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if ok() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
