//! `ferry hosts` and `ferry network inspect` of an overlay network, through
//! the CLI: two hosts as network namespaces on an underlay bridge
//! (198.18.105.0/24), one etcd in host 1's namespace and one ferryd per
//! host. Overlay network 198.19.236.0/24.
//!
//! Checked: every host lists both hosts with their VTEPs (and which one it
//! is); inspect shows the VNI, both hosts, one block per host and each
//! sandbox's endpoint with its host; with etcd gone both commands and a
//! new attachment fail quickly with "cluster store unavailable" while the
//! sandboxes' traffic goes on.

use ferry_testkit::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUBNET: &str = "198.19.236.0/24";

fn host_ip(i: usize) -> String {
    format!("198.18.105.{}", i + 1)
}

fn node(i: usize) -> String {
    format!("h{}", i + 1)
}

struct Host {
    ns: String,
    dir: PathBuf,
    ferryd: Option<Child>,
}

impl Host {
    fn api(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// Runs `ferry --api-socket API ARGS`: success, stdout, stderr, how long it took.
    fn ferry(&self, args: &[&str]) -> (bool, String, String, Duration) {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("--api-socket")
            .arg(self.api())
            .args(args)
            .output()
            .expect("run ferry");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            start.elapsed(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err, _) = self.ferry(args);
        assert!(ok, "{}: ferry {args:?}: {err}{out}", self.ns);
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ferry {args:?}: {e}: {out}"))
    }
}

/// Everything the test made, removed on drop (also when it fails).
struct Cluster {
    hosts: Vec<Host>,
    etcd: Option<Child>,
    underlay: String,
    sandboxes: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn kill_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut c) = h.ferryd.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.kill_etcd();
        for s in &self.sandboxes {
            let _ = sh_ok(&format!("ip netns del {s}"));
        }
        for h in &self.hosts {
            // The host's links (bridge, VXLAN device, veths) go with it.
            let _ = sh_ok(&format!("ip netns del {}", h.ns));
        }
        let _ = sh_ok(&format!("ip link del {}", self.underlay));
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn in_ns(ns: &str, bin: impl AsRef<std::ffi::OsStr>, log: &Path) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .arg(bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    cmd
}

fn setup() -> Cluster {
    require_root();
    for bin in ["etcd", "nsenter"] {
        assert!(
            sh_ok(&format!("command -v {bin}")),
            "{bin} is missing (Debian packages etcd-server, util-linux)"
        );
    }
    let ferryd = Path::new(env!("CARGO_BIN_EXE_ferry")).with_file_name("ferryd");
    assert!(
        ferryd.exists(),
        "{} missing: build it first (cargo build -p ferryd)",
        ferryd.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("ferry-cluster-cli")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let underlay = unique("clul");
    let mut c = Cluster {
        hosts: Vec::new(),
        etcd: None,
        underlay: underlay.clone(),
        sandboxes: Vec::new(),
        _dir: dir,
    };
    sh(&format!(
        "ip link add {underlay} type bridge && ip link set {underlay} up"
    ));
    for i in 0..2 {
        let ns = unique(&format!("clh{i}"));
        let hdir = c._dir.path().join(node(i));
        std::fs::create_dir_all(&hdir).expect("host dir");
        // In the cluster before the commands that follow can fail.
        c.hosts.push(Host {
            ns: ns.clone(),
            dir: hdir,
            ferryd: None,
        });
        let peer = unique("clp");
        sh(&format!(
            "ip netns add {ns} && ip link add {peer} type veth peer name ul0 netns {ns} && \
             ip link set {peer} master {underlay} up && \
             ip -n {ns} addr add {}/24 dev ul0 && ip -n {ns} link set ul0 up && \
             ip -n {ns} link set lo up",
            host_ip(i)
        ));
    }
    let ip = host_ip(0);
    let etcd = in_ns(&c.hosts[0].ns, "etcd", &c._dir.path().join("etcd.log"))
        .args(["--name", "m0", "--data-dir"])
        .arg(c._dir.path().join("etcd"))
        .args(["--listen-client-urls", &format!("http://{ip}:2379")])
        .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
        .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://{ip}:2380"),
        ])
        .args(["--initial-cluster", &format!("m0=http://{ip}:2380")])
        .spawn()
        .expect("start etcd");
    c.etcd = Some(etcd);
    for i in 0..2 {
        let h = &mut c.hosts[i];
        let child = in_ns(&h.ns, &ferryd, &h.dir.join("ferryd.log"))
            .arg("--plugin-socket")
            .arg(h.dir.join("plugin.sock"))
            .arg("--api-socket")
            .arg(h.dir.join("api.sock"))
            .arg("--state")
            .arg(h.dir.join("state.redb"))
            .args(["--cluster-store", &format!("etcd://{ip}:2379")])
            .args(["--advertise-address", &host_ip(i)])
            .args(["--node-name", &node(i)])
            .spawn()
            .expect("start ferryd");
        h.ferryd = Some(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(h.api()).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "ferryd on {} did not start: {}",
                h.ns,
                std::fs::read_to_string(h.dir.join("ferryd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    c
}

/// The hosts `ferry hosts --json` lists: (id, vtep, this host).
fn hosts(h: &Host) -> Vec<(String, String, bool)> {
    let list = h.json(&["hosts"]);
    list.as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                h["id"].as_str().unwrap_or("").to_string(),
                h["vtep"].as_str().unwrap_or("").to_string(),
                h["this_host"] == true,
            )
        })
        .collect()
}

#[test]
fn hosts_and_overlay_inspect_through_the_cli() {
    let mut c = setup();
    // Both hosts register under their leases (retried until etcd is up).
    let want = |me: usize| -> Vec<(String, String, bool)> {
        (0..2).map(|i| (node(i), host_ip(i), i == me)).collect()
    };
    wait_for(
        "both hosts in `ferry hosts`",
        Duration::from_secs(20),
        || hosts(&c.hosts[1]) == want(1),
    );
    assert_eq!(hosts(&c.hosts[0]), want(0));
    let table = c.hosts[0].ok(&["hosts"]);
    let mine = table
        .lines()
        .find(|l| l.starts_with("h1 "))
        .unwrap_or_else(|| panic!("h1 in {table}"));
    assert!(
        mine.contains(&host_ip(0)) && mine.contains("(this host)"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("h2 ") && !l.contains("(this host)")),
        "{table}"
    );

    // Created on host 1, adopted by host 2.
    c.hosts[0].ok(&[
        "network", "create", "ov", "-d", "overlay", "--subnet", SUBNET,
    ]);
    wait_for("ov on host 2", Duration::from_secs(10), || {
        c.hosts[1].ferry(&["network", "inspect", "ov"]).0
    });
    let mut sandboxes = Vec::new();
    for i in 0..2 {
        let sb = unique("cls");
        c.sandboxes.push(sb.clone());
        c.hosts[i].ok(&["sandbox", "create", &sb]);
        let ep = c.hosts[i].json(&["connect", "ov", &sb]);
        let ip = ep["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("an address: {ep}"))
            .to_string();
        sandboxes.push((sb, ip, ep["mac"].as_str().unwrap_or("").to_string()));
    }

    let n = c.hosts[0].json(&["network", "inspect", "ov"]);
    let cl = &n["cluster"];
    assert!(cl["vni"].as_u64().unwrap_or(0) > 0, "a VNI: {n}");
    assert_eq!(
        cl["vni"], n["driver"]["vni"],
        "the store's VNI is the local one"
    );
    assert_eq!(cl["subnets"], serde_json::json!([SUBNET]));
    let ids: Vec<&str> = cl["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["h1", "h2"], "{cl}");
    let subnet: ipnet::Ipv4Net = SUBNET.parse().expect("subnet");
    let mut block_hosts: Vec<&str> = Vec::new();
    for b in cl["blocks"].as_array().into_iter().flatten() {
        let block: ipnet::Ipv4Net = b["block"].as_str().unwrap_or("").parse().expect("block");
        assert_eq!(block.prefix_len(), 26, "a /26 per host: {b}");
        assert!(subnet.contains(&block), "{block} in {subnet}");
        block_hosts.push(b["host"].as_str().unwrap_or(""));
    }
    block_hosts.sort();
    assert_eq!(block_hosts, ["h1", "h2"], "one block per host: {cl}");
    let endpoints = cl["endpoints"].as_array().cloned().unwrap_or_default();
    assert_eq!(endpoints.len(), 2, "{cl}");
    for (i, (sb, ip, mac)) in sandboxes.iter().enumerate() {
        let ep = endpoints
            .iter()
            .find(|e| e["ip"] == ip.as_str())
            .unwrap_or_else(|| panic!("endpoint {ip} in {cl}"));
        assert_eq!(ep["host"], node(i).as_str(), "{ep}");
        assert_eq!(ep["mac"], mac.as_str(), "{ep}");
        assert_eq!(ep["name"], sb.as_str(), "{ep}");
    }
    // Host 2 sees the same cluster side.
    let n2 = c.hosts[1].json(&["network", "inspect", "ov"]);
    assert_eq!(n2["cluster"]["endpoints"].as_array().map(Vec::len), Some(2));

    let pings = |from: &str, to: &str| sh_ok(&format!("ip netns exec {from} ping -c1 -W1 {to}"));
    let (a, b) = (&sandboxes[0], &sandboxes[1]);
    wait_for("host 1 -> host 2 over ov", Duration::from_secs(10), || {
        pings(&a.0, &b.1)
    });

    // etcd gone: both commands say so, with a non-zero exit, within the
    // store's deadline (3 s) and some slack; traffic goes on; a new
    // attachment fails the same way.
    c.kill_etcd();
    assert!(pings(&a.0, &b.1), "traffic stopped with etcd down");
    let late = unique("cls");
    c.sandboxes.push(late.clone());
    c.hosts[1].ok(&["sandbox", "create", &late]);
    for args in [
        &["hosts"][..],
        &["network", "inspect", "ov"],
        &["connect", "ov", &late],
    ] {
        let (ok, out, err, took) = c.hosts[1].ferry(args);
        eprintln!("ferry {args:?} with etcd down: {took:?}");
        assert!(!ok, "ferry {args:?} succeeded with etcd down: {out}");
        assert!(
            err.contains("cluster store unavailable, try again later"),
            "ferry {args:?}: {err}"
        );
        assert!(
            took < Duration::from_secs(5),
            "ferry {args:?} took {took:?}"
        );
    }
}
