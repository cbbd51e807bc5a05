//! The CNM front door through the CLI: `ferry network`, `ferry sandbox`,
//! `connect`, `disconnect`, `swap` and route arbitration, against a ferryd
//! started by the test, in namespaces it creates. 198.18.240.0/21, fd00:240::/48.

use ferry_testkit::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    api: PathBuf,
    _dir: tempfile::TempDir,
    sandboxes: Vec<String>,
    networks: Vec<String>,
    /// Dropped after Drop::drop has stopped ferryd.
    _forward: ForwardRuleGuard,
}

impl Daemon {
    fn start() -> Daemon {
        require_root();
        let forward = forward_rule_guard();
        let ferryd = env!("CARGO_BIN_EXE_ferry").replace("/ferry", "/ferryd");
        assert!(
            Path::new(&ferryd).exists(),
            "{ferryd} missing: build the workspace (cargo test --workspace builds ferryd)"
        );
        let dir = tempfile::tempdir().unwrap();
        let api = dir.path().join("api.sock");
        let child = Command::new(&ferryd)
            .arg("--plugin-socket")
            .arg(dir.path().join("plugin.sock"))
            .arg("--api-socket")
            .arg(&api)
            .arg("--state")
            .arg(dir.path().join("state.redb"))
            .args(["--default-address-pool", "base=198.18.240.0/22,size=24"])
            .args(["--default-address-pool", "base=fd00:240::/48,size=64"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&api).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ferryd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            api,
            _dir: dir,
            sandboxes: Vec::new(),
            networks: Vec::new(),
            _forward: forward,
        }
    }

    fn ferry(&self, args: &str) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args.split_whitespace())
            .env("FERRY_API_SOCKET", &self.api)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn ok(&self, args: &str) -> String {
        let (ok, out) = self.ferry(args);
        assert!(ok, "ferry {args}: {out}");
        out
    }

    fn json(&self, args: &str) -> Value {
        serde_json::from_str(&self.ok(&format!("--json {args}"))).unwrap()
    }

    fn sandbox(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        self.ok(&format!("sandbox create {name}"));
        self.sandboxes.push(name.clone());
        name
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for s in &self.sandboxes {
            let _ = self.ferry(&format!("sandbox rm {s}"));
            let _ = sh_ok(&format!("ip netns del {s}"));
        }
        for n in &self.networks {
            let _ = self.ferry(&format!("network rm {n}"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn default_route(ns: &str) -> String {
    sh(&format!("ip -n {ns} -4 route show default"))
        .trim()
        .to_string()
}

fn ping(ns: &str, ip: &str) -> bool {
    sh_ok(&format!("ip netns exec {ns} ping -c1 -W2 {ip}"))
}

fn addr(ep: &Value) -> String {
    ep["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn networks_sandboxes_connect_arbitrate_swap_and_clean_up() {
    let mut d = Daemon::start();
    let (na, nb, nc) = (unique("cna"), unique("cnb"), unique("cnc"));
    d.networks = vec![na.clone(), nb.clone(), nc.clone()];
    // Without a subnet (from the default pool), with one, and dual-stack.
    let a = d.json(&format!("network create {na}"));
    assert!(
        a["ipv4"][0]["Pool"]
            .as_str()
            .unwrap()
            .starts_with("198.18.24"),
        "{a}"
    );
    d.ok(&format!(
        "network create {nb} --subnet 198.18.246.0/24 --ipv6"
    ));
    d.ok(&format!("network create {nc} --subnet 198.18.247.0/30"));
    let (ok, out) = d.ferry(&format!(
        "network create {} --subnet 198.18.246.128/25",
        unique("cnx")
    ));
    assert!(!ok && out.contains("overlaps"), "{out}");

    let s1 = d.sandbox("cs1");
    let s2 = d.sandbox("cs2");
    let e1 = d.json(&format!("connect {na} {s1}"));
    let e2 = d.json(&format!("connect {na} {s2} --alias api --alias Db-1"));
    assert_eq!(e2["aliases"], serde_json::json!(["api", "Db-1"]), "{e2}");
    assert!(ping(&s1, &addr(&e2)), "s1 cannot reach s2 on {na}");

    // Two networks contest the default route: the higher priority wins...
    let e1b = d.json(&format!("connect {nb} {s1} --priority 5"));
    assert_eq!(e1b["ifname"], "eth1");
    assert!(
        e1b["address_v6"].as_str().unwrap().starts_with("fd00:240:"),
        "{e1b}"
    );
    assert!(
        default_route(&s1).contains("via 198.18.246.1 dev eth1"),
        "{}",
        default_route(&s1)
    );
    let inspect = d.json(&format!("sandbox inspect {s1}"));
    let conflicts = inspect["sandbox"]["conflicts"].to_string();
    assert!(
        conflicts.contains(&nb) && conflicts.contains("by priority"),
        "{conflicts}"
    );
    // ...and when it leaves, the other takes over with no gap.
    d.ok(&format!("disconnect {nb} {s1}"));
    assert!(
        default_route(&s1).contains("via 198.18.24"),
        "{}",
        default_route(&s1)
    );
    assert!(default_route(&s1).contains("dev eth0"));
    // Equal priorities: the network whose name sorts first.
    d.ok(&format!("connect {nb} {s1}"));
    let first = if na < nb { "eth0" } else { "eth1" };
    assert!(default_route(&s1).contains(first), "{}", default_route(&s1));
    d.ok(&format!("disconnect {nb} {s1}"));

    // swap keeps the interface name and moves the sandbox to the new network.
    let before = sh(&format!("ip -n {s2} -j link show eth0"));
    let moved = d.json(&format!("swap {s2} {na} {nb}"));
    assert_eq!(moved["ifname"], "eth0");
    assert!(addr(&moved).starts_with("198.18.246."), "{moved}");
    assert!(sh(&format!("ip -n {s2} -o addr show eth0")).contains(&addr(&moved)));
    assert_ne!(
        before,
        sh(&format!("ip -n {s2} -j link show eth0")),
        "eth0 was not replaced"
    );
    // Networks are isolated from each other, as Docker's bridges are.
    assert!(
        !ping(&s1, &addr(&moved)),
        "s1 (on {na} only) reached s2 on {nb}"
    );
    let nb_bridge = d.json(&format!("network inspect {nb}"))["bridge"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        bridge_ports(&nb_bridge),
        vec![moved["host_veth"].as_str().unwrap().to_string()],
        "s2's new interface is not on {nb}'s bridge"
    );
    d.ok(&format!("connect {nb} {s1}"));
    assert!(
        ping(&s1, &addr(&moved)),
        "s1 cannot reach s2 on {nb} after the swap"
    );
    d.ok(&format!("disconnect {nb} {s1}"));

    // A swap to a network with no free address leaves the sandbox where it was.
    let s3 = d.sandbox("cs3");
    d.ok(&format!("connect {nc} {s3}")); // takes the /30's only address
    let (ok, out) = d.ferry(&format!("swap {s2} {nb} {nc}"));
    assert!(!ok && out.contains("exhausted"), "{out}");
    assert!(
        sh(&format!("ip -n {s2} -o addr show eth0")).contains(&addr(&moved)),
        "s2 lost {nb}"
    );
    assert_eq!(
        sh(&format!("ip -n {s2} -o link")).lines().count(),
        2,
        "a half-made interface was left"
    );

    // Bad requests.
    let (ok, out) = d.ferry(&format!("connect nosuchnet {s1}"));
    assert!(!ok && out.contains("not found"), "{out}");
    let (ok, out) = d.ferry(&format!("connect {na} {s1}"));
    assert!(!ok && out.contains("already connected"), "{out}");
    let (ok, out) = d.ferry(&format!("network rm {na}"));
    assert!(!ok && out.contains("in use"), "{out}");
    let (ok, _) = d.ferry(&format!("sandbox create {s1}"));
    assert!(!ok);

    // enable_icc=false: sandboxes of one network cannot reach each other.
    let nicc = unique("cni");
    d.networks.push(nicc.clone());
    d.ok(&format!(
        "network create {nicc} --subnet 198.18.245.0/24 -o com.docker.network.bridge.enable_icc=false"
    ));
    let (i1, i2) = (d.sandbox("ci1"), d.sandbox("ci2"));
    d.ok(&format!("connect {nicc} {i1}"));
    let e_i2 = d.json(&format!("connect {nicc} {i2}"));
    assert!(!ping(&i1, &addr(&e_i2)), "enable_icc=false did not isolate");

    // A sandbox given by path (a namespace ferry did not make) is left in place.
    let ns = Netns::new("cext");
    d.ok(&format!("sandbox create {}x --path {}", ns.name, ns.path()));
    d.ok(&format!("connect {na} {}x", ns.name));
    assert!(ns.exec_ok("ip link show eth0"));
    d.ok(&format!("sandbox rm {}x", ns.name));
    assert!(!ns.exec_ok("ip link show eth0"), "rm did not disconnect");
    assert!(
        Path::new(&ns.path()).exists(),
        "rm deleted a namespace ferry did not make"
    );

    // Everything removed: no sandbox namespaces, links, endpoints or pools left.
    for s in d.sandboxes.clone() {
        d.ok(&format!("sandbox rm {s}"));
        assert!(
            !Path::new(&format!("/run/netns/{s}")).exists(),
            "namespace {s} left"
        );
    }
    d.sandboxes.clear();
    for n in std::mem::take(&mut d.networks) {
        d.ok(&format!("network rm {n}"));
    }
    assert_eq!(d.json("network ls"), serde_json::json!([]));
    assert!(
        host_links(e1["host_veth"].as_str().unwrap()).is_empty(),
        "a host veth was left"
    );
    assert!(
        host_links(a["bridge"].as_str().unwrap()).is_empty(),
        "a bridge was left"
    );
    assert!(host_links(&nb_bridge).is_empty(), "a bridge was left");
}

#[test]
fn macvlan_null_and_host_drivers() {
    let mut d = Daemon::start();
    // The macvlan parent: one end of a veth pair whose peer is up (carrier).
    let parent = unique("cmp");
    sh(&format!(
        "ip link add {parent} type veth peer name {parent}p"
    ));
    let mut links = Cleanup::default();
    links.link(&parent);
    sh(&format!(
        "ip link set {parent} up; ip link set {parent}p up"
    ));
    let (nm, nn, nh) = (unique("cnm"), unique("cnn"), unique("cnh"));
    d.networks = vec![nm.clone(), nn.clone(), nh.clone()];

    let (ok, out) = d.ferry(&format!("network create {} -d macvlan", unique("cnx")));
    assert!(!ok && out.contains("parent"), "{out}");
    let (ok, out) = d.ferry(&format!(
        "network create {} -d macvlan -o parent=nosuchif0",
        unique("cnx")
    ));
    assert!(!ok && out.contains("nosuchif0"), "{out}");
    let (ok, out) = d.ferry(&format!(
        "network create {} -d macvlan -o parent={parent} -o macvlan_mode=weird",
        unique("cnx")
    ));
    assert!(!ok && out.contains("macvlan_mode"), "{out}");
    d.ok(&format!(
        "network create {nm} -d macvlan -o parent={parent} --subnet 198.18.244.0/24"
    ));
    d.ok(&format!("network create {nn} -d null"));
    d.ok(&format!("network create {nh} -d host"));

    let s1 = d.sandbox("cm1");
    let s2 = d.sandbox("cm2");
    let e1 = d.json(&format!("connect {nm} {s1}"));
    let e2 = d.json(&format!("connect {nm} {s2}"));
    let kind = sh(&format!("ip -n {s1} -j -d link show eth0"));
    assert!(
        kind.contains("\"info_kind\":\"macvlan\"") && kind.contains("\"mode\":\"bridge\""),
        "{kind}"
    );
    assert!(
        ping(&s1, &addr(&e2)),
        "macvlan sandboxes cannot reach each other"
    );
    // null: connected, but no interface appears.
    let links_before = sh(&format!("ip -n {s1} -o link")).lines().count();
    d.ok(&format!("connect {nn} {s1}"));
    assert_eq!(
        sh(&format!("ip -n {s1} -o link")).lines().count(),
        links_before
    );
    let inspect = d.json(&format!("sandbox inspect {s1}"));
    assert_eq!(inspect["endpoints"].as_array().unwrap().len(), 2);
    // host: only for a sandbox that is the host's namespace.
    let (ok, out) = d.ferry(&format!("connect {nh} {s1}"));
    assert!(!ok && out.contains("host"), "{out}");
    let hs = unique("chs");
    d.ok(&format!("sandbox create {hs} --path /proc/self/ns/net"));
    d.ok(&format!("connect {nh} {hs}"));
    d.ok(&format!("sandbox rm {hs}"));
    assert!(
        sh_ok("ip link show lo"),
        "removing a host sandbox touched the host"
    );
    // swap from macvlan to null drops the interface, keeping the sandbox.
    d.ok(&format!("disconnect {nn} {s1}"));
    d.ok(&format!("swap {s1} {nm} {nn}"));
    assert!(
        !sh_ok(&format!("ip -n {s1} link show eth0")),
        "eth0 left after swapping to null"
    );
    let _ = e1;
    for s in std::mem::take(&mut d.sandboxes) {
        d.ok(&format!("sandbox rm {s}"));
    }
    for n in std::mem::take(&mut d.networks) {
        d.ok(&format!("network rm {n}"));
    }
    assert_eq!(d.json("network ls"), serde_json::json!([]));
}
