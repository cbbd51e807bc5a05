//! `ferry hosts` and `ferry network inspect` of an overlay network, through
//! the CLI: two hosts as network namespaces on an underlay bridge
//! (198.18.105.0/24; `ferry_testkit::cluster`, nodes h0 and h1), one etcd
//! in host 1's namespace and one ferryd per host. Overlay network
//! 198.19.236.0/24.
//!
//! Checked: every host lists both hosts with their VTEPs (and which one it
//! is); inspect shows the VNI, both hosts, one block per host and each
//! sandbox's endpoint with its host; with etcd gone both commands and a
//! new attachment fail quickly with "cluster store unavailable" while the
//! sandboxes' traffic goes on.

use ferry_testkit::cluster::{Cluster, Host, Spec};
use ferry_testkit::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SUBNET: &str = "198.19.236.0/24";

fn host_ip(i: usize) -> String {
    format!("198.18.105.{}", i + 1)
}

/// The node name `ferry_testkit::cluster` gives host `i`.
fn node(i: usize) -> String {
    format!("h{i}")
}

/// The CLI, run against a host's ferryd.
trait Cli {
    /// Runs `ferry --api-socket API ARGS`: success, stdout, stderr, how long it took.
    fn ferry(&self, args: &[&str]) -> (bool, String, String, Duration);
    /// `ferry ARGS`, which must succeed: its stdout.
    fn ferry_ok(&self, args: &[&str]) -> String;
    /// `ferry --json ARGS`, which must succeed: its JSON.
    fn ferry_json(&self, args: &[&str]) -> Value;
}

impl Cli for Host {
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

    fn ferry_ok(&self, args: &[&str]) -> String {
        let (ok, out, err, _) = self.ferry(args);
        assert!(ok, "{}: ferry {args:?}: {err}{out}", self.ns);
        out
    }

    fn ferry_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ferry_ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ferry {args:?}: {e}: {out}"))
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup() -> Cluster {
    require_root();
    let ferryd = Path::new(env!("CARGO_BIN_EXE_ferry")).with_file_name("ferryd");
    assert!(
        ferryd.exists(),
        "{} missing: build it first (cargo build -p ferryd)",
        ferryd.display()
    );
    Cluster::start(&Spec {
        underlay: "198.18.105",
        hosts: 2,
        members: 1,
        ferryd: &ferryd,
        pool: "",
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The hosts `ferry hosts --json` lists: (id, vtep, this host).
fn hosts(h: &Host) -> Vec<(String, String, bool)> {
    let list = h.ferry_json(&["hosts"]);
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
    let table = c.hosts[0].ferry_ok(&["hosts"]);
    let mine = table
        .lines()
        .find(|l| l.starts_with("h0 "))
        .unwrap_or_else(|| panic!("h0 in {table}"));
    assert!(
        mine.contains(&host_ip(0)) && mine.contains("(this host)"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("h1 ") && !l.contains("(this host)")),
        "{table}"
    );

    // Created on host 1, adopted by host 2.
    c.hosts[0].ferry_ok(&[
        "network", "create", "ov", "-d", "overlay", "--subnet", SUBNET,
    ]);
    wait_for("ov on host 2", Duration::from_secs(10), || {
        c.hosts[1].ferry(&["network", "inspect", "ov"]).0
    });
    let mut sandboxes = Vec::new();
    for i in 0..2 {
        let sb = c.sandbox_name("cls");
        c.hosts[i].ferry_ok(&["sandbox", "create", &sb]);
        let ep = c.hosts[i].ferry_json(&["connect", "ov", &sb]);
        let ip = ep["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("an address: {ep}"))
            .to_string();
        sandboxes.push((sb, ip, ep["mac"].as_str().unwrap_or("").to_string()));
    }

    let n = c.hosts[0].ferry_json(&["network", "inspect", "ov"]);
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
    assert_eq!(ids, ["h0", "h1"], "{cl}");
    let subnet: ipnet::Ipv4Net = SUBNET.parse().expect("subnet");
    let mut block_hosts: Vec<&str> = Vec::new();
    for b in cl["blocks"].as_array().into_iter().flatten() {
        let block: ipnet::Ipv4Net = b["block"].as_str().unwrap_or("").parse().expect("block");
        assert_eq!(block.prefix_len(), 26, "a /26 per host: {b}");
        assert!(subnet.contains(&block), "{block} in {subnet}");
        block_hosts.push(b["host"].as_str().unwrap_or(""));
    }
    block_hosts.sort();
    assert_eq!(block_hosts, ["h0", "h1"], "one block per host: {cl}");
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
    let n2 = c.hosts[1].ferry_json(&["network", "inspect", "ov"]);
    assert_eq!(n2["cluster"]["endpoints"].as_array().map(Vec::len), Some(2));

    let pings = |from: &str, to: &str| sh_ok(&format!("ip netns exec {from} ping -c1 -W1 {to}"));
    let (a, b) = (&sandboxes[0], &sandboxes[1]);
    wait_for("host 1 -> host 2 over ov", Duration::from_secs(10), || {
        pings(&a.0, &b.1)
    });

    // etcd gone: both commands say so, with a non-zero exit, within the
    // store's deadline (3 s) and some slack; traffic goes on; a new
    // attachment fails the same way.
    c.hosts[0].kill_etcd();
    assert!(pings(&a.0, &b.1), "traffic stopped with etcd down");
    let late = c.sandbox_name("cls");
    c.hosts[1].ferry_ok(&["sandbox", "create", &late]);
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
