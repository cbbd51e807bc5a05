//! The `firewall` plugin and `ipMasq` on a node in a namespace (see
//! nodecommon): ingressPolicy same-bridge and isolated, the admin chain,
//! CHECK and DEL, no program executed, masquerade seen by a peer, and how
//! an iptables FORWARD policy DROP on the node is handled (compared with the
//! reference firewall 1.1.1). Subnets: 198.18.216-222.0/24, fd00:208:d8-de::/64.

mod nodecommon;

use nodecommon::*;
use serde_json::{json, Value};

fn fw(policy: &str) -> Value {
    json!({"type": "firewall", "backend": "iptables", "ingressPolicy": policy})
}

fn v4(r: &Value) -> std::net::IpAddr {
    addr_of(r, false)
}

#[test]
fn same_bridge_isolation_admin_chain_check_del_and_no_exec() {
    let node = Node::new(216, &[], &["firewall"]);
    let (ba, bb) = (unique("fwa"), unique("fwb"));
    let na = node.net(
        "fwnetA",
        bridge_conf(&ba, 217, false, vec![fw("same-bridge")]),
    );
    let nb = node.net(
        "fwnetB",
        bridge_conf(&bb, 218, false, vec![fw("same-bridge")]),
    );
    let (c1, c2, c3) = (node.container(), node.container(), node.container());
    let (a1, a2, a3) = (
        na.att(&c1, "fw1", Value::Null),
        na.att(&c2, "fw2", Value::Null),
        nb.att(&c3, "fw3", Value::Null),
    );
    let (r1, r2, r3) = (na.add(&a1), na.add(&a2), nb.add(&a3));
    assert!(ping(&c1, v4(&r2)), "same bridge: open");
    assert!(!ping(&c1, v4(&r3)), "other isolated bridge: blocked");
    assert!(!ping(&c3, v4(&r1)), "other isolated bridge: blocked");
    assert!(ping(&c1, node.outside_v4()), "out of the node: open");
    let rules = node.nft("table inet ferry-firewall");
    let forward = rules.split("chain forward").nth(1).unwrap_or("");
    let admin = forward.find("jump admin").unwrap_or(usize::MAX);
    assert!(
        admin < forward.find("jump isolation").unwrap_or(0),
        "{rules}"
    );
    assert!(rules.contains(&v4(&r1).to_string()), "{rules}");
    // The operator's admin chain runs first and is kept.
    node.host.exec(&format!(
        "nft add rule inet ferry-firewall admin ip daddr {} drop",
        v4(&r2)
    ));
    assert!(
        !ping(&node.outside, v4(&r2)),
        "admin drop applies to forwarded traffic"
    );
    na.check(&a1).unwrap();
    na.del(&a1);
    na.del(&a1);
    let rules = node.nft("table inet ferry-firewall");
    assert!(
        !rules.contains(&format!("{} ", v4(&r1))) && !rules.contains(&format!("{},", v4(&r1))),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("ip daddr {} drop", v4(&r2))),
        "admin chain kept: {rules}"
    );
    let bin = env!("CARGO_BIN_EXE_ferry-plugin");
    let execs = node.execs();
    assert!(!execs.is_empty());
    for e in &execs {
        assert!(
            e.contains(&format!("execve(\"{bin}\"")),
            "only the plugin runs: {execs:#?}"
        );
    }
    let _ = (r3, a2, a3);
}

#[test]
fn isolated_blocks_the_same_bridge() {
    let node = Node::new(216, &[], &[]);
    let b = unique("fwi");
    let n = node.net("fwiso", bridge_conf(&b, 219, false, vec![fw("isolated")]));
    let (c1, c2) = (node.container(), node.container());
    let (a1, a2) = (
        n.att(&c1, "fwi1", Value::Null),
        n.att(&c2, "fwi2", Value::Null),
    );
    let (r1, r2) = (n.add(&a1), n.add(&a2));
    assert!(!ping(&c1, v4(&r2)), "isolated: same bridge blocked");
    assert!(
        ping(&c1, node.outside_v4()),
        "isolated: the way out stays open"
    );
    let port = |r: &Value| r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let table = node.nft("table bridge ferry-firewall");
    assert!(table.contains(&port(&r1)), "{table}");
    n.del(&a1);
    n.del(&a2);
    let table = node.nft("table bridge ferry-firewall");
    assert!(
        !table.contains(&port(&r1)) && !table.contains(&port(&r2)),
        "DEL removes the isolated ports: {table}"
    );
}

#[test]
fn ip_masq_hides_the_container_address_and_del_removes_it() {
    let node = Node::new(216, &[], &[]);
    serve(&node.outside, 80);
    let (bm, bp) = (unique("fwm"), unique("fwp"));
    let masq = node.net("fwmasq", bridge_conf(&bm, 220, true, vec![]));
    let plain = node.net("fwplain", bridge_conf(&bp, 221, false, vec![]));
    let (c1, c2) = (node.container(), node.container());
    let a1 = masq.att(&c1, "fwm1", Value::Null);
    let a2 = plain.att(&c2, "fwp1", Value::Null);
    let r1 = masq.add(&a1);
    let r2 = plain.add(&a2);
    assert_eq!(
        whoami(&c1, node.outside_v4(), 80).as_deref(),
        Some("198.18.216.1"),
        "masqueraded to the node's address"
    );
    assert_eq!(
        whoami(&c2, node.outside_v4(), 80),
        Some(v4(&r2).to_string()),
        "no ipMasq: the container's own address"
    );
    // ptp with ipMasq too.
    let ptp = node.net(
        "fwptp",
        json!([{"type": "ptp", "ipMasq": true, "ipam": {"type": "host-local",
            "subnet": "198.18.222.0/24", "routes": [{"dst": "0.0.0.0/0"}]}}]),
    );
    let c3 = node.container();
    let a3 = ptp.att(&c3, "fwpt1", Value::Null);
    ptp.add(&a3);
    assert_eq!(
        whoami(&c3, node.outside_v4(), 80).as_deref(),
        Some("198.18.216.1")
    );
    masq.check(&a1).unwrap();
    ptp.check(&a3).unwrap();
    // CHECK notices a masquerade element removed behind Ferry's back.
    node.host.exec(&format!(
        "nft delete element inet ferry-masq ctr4 {{ {} }}",
        addr_of(&r1, false)
    ));
    assert!(masq.check(&a1).is_err());
    masq.del(&a1);
    ptp.del(&a3);
    assert!(!node.nft("table inet ferry-masq").contains("elements"));
}

/// With `iptables -P FORWARD DROP` on the node (Docker does this), the
/// reference firewall inserts ACCEPT rules into the iptables FORWARD chain
/// and the container gets out; Ferry's one marked-accept rule there does
/// the same, and `iptables` still reads the table.
#[test]
fn forward_policy_drop_is_passed_like_the_reference() {
    require_reference("firewall");
    assert!(
        sh_ok("command -v iptables"),
        "iptables missing: install the Debian package iptables"
    );
    let mut out = Vec::new();
    for reference in [false, true] {
        let refs: &[&str] = if reference { &["firewall"] } else { &[] };
        let node = Node::new(216, refs, &[]);
        node.host.exec("iptables -P FORWARD DROP");
        let b = unique("fwd");
        let n = node.net(
            "fwdrop",
            bridge_conf(
                &b,
                217,
                false,
                vec![json!({"type": "firewall", "backend": "iptables"})],
            ),
        );
        let c = node.container();
        let a = n.att(&c, "fwd1", Value::Null);
        n.add(&a);
        out.push(ping(&c, node.outside_v4()));
        if !reference {
            let rules = node.host.exec("iptables -S FORWARD 2>&1");
            assert!(
                rules.contains(
                    "-A FORWARD -m mark --mark 0x200000/0x200000 -m comment --comment \"ferry-firewall: accepted by Ferry\" -j ACCEPT"
                ) && !rules.contains("incompatible"),
                "{rules}"
            );
            // A second container does not add a second rule.
            let c2 = node.container();
            n.add(&n.att(&c2, "fwd2", Value::Null));
            let again = node.host.exec("iptables -S FORWARD");
            assert_eq!(again.matches("ferry-firewall").count(), 1, "{again}");
            // Uninstalling takes it out again, leaving iptables' own rules.
            let ns = ferry_linux::Netns::open(node.host.path()).unwrap();
            let state = node.state_dir();
            ns.run(move || {
                let mut sock = ferry_linux::nft::Socket::new().unwrap();
                let store = ferry_drivers::firewall::store(&state);
                assert!(ferry_drivers::forward::present(&mut sock).unwrap());
                ferry_drivers::forward::remove(&mut sock, &store).unwrap();
                assert!(!ferry_drivers::forward::present(&mut sock).unwrap());
            })
            .unwrap();
            let after = node.host.exec("iptables -S FORWARD");
            assert!(
                !after.contains("ferry") && after.contains("-P FORWARD DROP"),
                "{after}"
            );
        }
        n.del(&a);
    }
    assert_eq!(out, [true, true], "Ferry, then the reference");
}

/// The same two bridges with ingressPolicy same-bridge through Ferry and
/// through the reference firewall 1.1.1 (iptables): the same pings pass.
#[test]
fn same_bridge_matches_the_reference() {
    require_reference("firewall");
    let mut seen = Vec::new();
    for reference in [false, true] {
        let refs: &[&str] = if reference { &["firewall"] } else { &[] };
        let node = Node::new(216, refs, &[]);
        let (ba, bb) = (unique("fwa"), unique("fwb"));
        let na = node.net(
            "fwdifA",
            bridge_conf(&ba, 217, false, vec![fw("same-bridge")]),
        );
        let nb = node.net(
            "fwdifB",
            bridge_conf(&bb, 218, false, vec![fw("same-bridge")]),
        );
        let (c1, c2, c3) = (node.container(), node.container(), node.container());
        let (a1, a2, a3) = (
            na.att(&c1, "fwd1", Value::Null),
            na.att(&c2, "fwd2", Value::Null),
            nb.att(&c3, "fwd3", Value::Null),
        );
        let (_r1, r2, r3) = (na.add(&a1), na.add(&a2), nb.add(&a3));
        seen.push([
            ping(&c1, v4(&r2)),
            ping(&c1, v4(&r3)),
            ping(&c3, v4(&r2)),
            ping(&c1, node.outside_v4()),
        ]);
    }
    assert_eq!(
        seen[0], seen[1],
        "Ferry vs reference: same bridge, other bridge both ways, outside"
    );
    assert_eq!(seen[0], [true, false, false, true]);
}

#[test]
fn gc_removes_stale_addresses() {
    let node = Node::new(216, &[], &[]);
    let prev = |ip: &str| {
        json!({"cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": ip, "interface": 0}]})
    };
    let conf = |ip: &str| json!({"cniVersion": "1.1.0", "name": "fwgc", "type": "firewall", "prevResult": prev(ip)});
    let h = node.host.path();
    assert!(
        node.run_plugin("firewall", "ADD", "keep", &h, &conf("198.18.217.2/24"))
            .0
    );
    assert!(
        node.run_plugin("firewall", "ADD", "gone", &h, &conf("198.18.217.3/24"))
            .0
    );
    let gc = json!({"cniVersion": "1.1.0", "name": "fwgc", "type": "firewall",
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]});
    let (ok, out) = node.run_plugin("firewall", "GC", "", "", &gc);
    assert!(ok, "{out}");
    let rules = node.nft("set inet ferry-firewall ctr4");
    assert!(
        rules.contains("198.18.217.2") && !rules.contains("198.18.217.3"),
        "{rules}"
    );
    assert!(
        node.run_plugin("firewall", "CHECK", "keep", &h, &conf("198.18.217.2/24"))
            .0
    );
    assert!(
        !node
            .run_plugin("firewall", "CHECK", "gone", &h, &conf("198.18.217.3/24"))
            .0
    );
    // DEL without a bookkeeping file still removes the prevResult's address.
    std::fs::remove_dir_all(node.state_dir().join("firewall")).unwrap();
    assert!(
        node.run_plugin("firewall", "DEL", "keep", &h, &conf("198.18.217.2/24"))
            .0
    );
    assert!(!node
        .nft("set inet ferry-firewall ctr4")
        .contains("198.18.217.2"));
}

/// A real dockerd with its iptables rules, inside the node namespace: its
/// own bridge and FORWARD policy DROP there, nothing on the machine's host.
struct NodeDockerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl NodeDockerd {
    fn start(node: &Node, bip: &str) -> NodeDockerd {
        assert!(
            std::path::Path::new("/usr/sbin/dockerd").exists(),
            "dockerd missing: install the Debian package docker.io"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s).display().to_string();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        // nsenter, not `ip netns exec`: that also remounts /sys, hiding
        // the cgroup mounts dockerd needs.
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", node.host.path()))
            .arg("/usr/sbin/dockerd")
            .args(["--data-root", &p("data"), "--exec-root", &p("exec")])
            .args(["--pidfile", &p("dockerd.pid")])
            .args(["-H", &format!("unix://{}", p("docker.sock"))])
            .args(["--bip", bip, "--iptables=true", "--ip6tables=false"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let d = NodeDockerd { child, dir };
        for _ in 0..300 {
            if d.docker("info").0 {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!(
            "dockerd did not answer within 60s: {}",
            std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default()
        );
    }

    fn docker(&self, args: &str) -> (bool, String) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("docker {args} 2>&1"))
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.path().join("docker.sock").display()),
            )
            .output()
            .expect("docker");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for NodeDockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..150 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dockerd running on the node sets FORWARD's policy to DROP and keeps its
/// chains; a plain bridge container is cut off, Ferry's firewall lets its
/// containers out and their published ports in, and Docker still manages
/// its table afterwards. Subnets: 198.18.223.0/24 (node link),
/// 198.18.12.0/24 and 198.18.14.0/24 (bridges), 198.18.13.0/24 (Docker's).
#[test]
fn coexists_with_a_running_dockerd() {
    let node = Node::new(223, &[], &[]);
    // As on a fresh host: Docker sets FORWARD to DROP when it has to turn
    // forwarding on itself.
    node.host.exec("sysctl -qw net.ipv4.ip_forward=0");
    let dockerd = NodeDockerd::start(&node, "198.18.13.1/25");
    let rules = node.host.exec("iptables -S FORWARD");
    assert!(
        rules.contains("-P FORWARD DROP") && rules.contains("DOCKER"),
        "dockerd's rules: {rules}"
    );

    let plain = node.net("dkplain", bridge_conf(&unique("dkp"), 14, false, vec![]));
    let c0 = node.container();
    let a0 = plain.att(&c0, "dk0", Value::Null);
    plain.add(&a0);
    assert!(
        !ping(&c0, node.outside_v4()),
        "without Ferry's firewall, Docker's DROP applies"
    );
    plain.del(&a0);

    let n = node.net(
        "dkfw",
        bridge_conf(
            &unique("dkf"),
            12,
            false,
            vec![
                json!({"type": "firewall"}),
                json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            ],
        ),
    );
    let c1 = node.container();
    let a1 = n.att(
        &c1,
        "dk1",
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    n.add(&a1);
    assert!(ping(&c1, node.outside_v4()), "out through Docker's DROP");
    serve(&c1, 80);
    assert_eq!(
        whoami(&node.outside, node.v4(), 8080),
        Some(node.outside_v4().to_string()),
        "a published port is reachable through Docker's DROP"
    );

    // Docker still reads and writes its table.
    let (ok, out) = dockerd.docker("network create --subnet 198.18.13.128/25 dkcheck");
    assert!(ok, "docker network create: {out}");
    let (ok, out) = dockerd.docker("network rm dkcheck");
    assert!(ok, "docker network rm: {out}");
    let all = node.host.exec("iptables -S 2>&1");
    assert!(
        !all.contains("incompatible") && all.contains("ferry-firewall"),
        "{all}"
    );
    n.del(&a1);
}

/// The rendered ruleset of two containers, one on an isolated bridge and
/// one on a same-bridge bridge, on a node whose iptables FORWARD policy is
/// DROP: both Ferry tables and the iptables chain against a golden file
/// (FERRY_UPDATE_GOLDEN=1 rewrites it). DEL leaves no element.
#[test]
fn golden_ruleset() {
    let node = Node::new(220, &[], &[]);
    node.host.exec("iptables -P FORWARD DROP");
    for br in ["fwgbr1", "fwgbr2"] {
        node.host.exec(&format!("ip link add {br} type bridge"));
    }
    let conf = |policy: &str, br: &str, veth: &str, ip: &str| {
        json!({"cniVersion": "1.0.0", "name": format!("fwgold-{policy}"), "type": "firewall",
            "ingressPolicy": policy,
            "prevResult": {"cniVersion": "1.0.0",
                "interfaces": [{"name": br}, {"name": veth}, {"name": "eth0", "sandbox": "/run/netns/x"}],
                "ips": [{"address": ip, "interface": 2}]}})
    };
    let iso = conf("isolated", "fwgbr1", "fwgv1", "198.18.220.5/24");
    let same = conf("same-bridge", "fwgbr2", "fwgv2", "fd00:208:dc::6/64");
    for (id, c) in [("fwg1", &iso), ("fwg2", &same)] {
        let (ok, out) = node.run_plugin("firewall", "ADD", id, &node.host.path(), c);
        assert!(ok, "{out}");
    }
    let got = format!(
        "{}{}# iptables -S FORWARD\n{}",
        node.nft("table inet ferry-firewall"),
        node.nft("table bridge ferry-firewall"),
        node.host.exec("iptables -S FORWARD")
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/firewall.nft");
    if std::env::var_os("FERRY_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "ruleset differs from {}", path.display());
    for (id, c) in [("fwg1", &iso), ("fwg2", &same)] {
        let (ok, out) = node.run_plugin("firewall", "DEL", id, &node.host.path(), c);
        assert!(ok, "{out}");
    }
    let after = node.nft("table inet ferry-firewall") + &node.nft("table bridge ferry-firewall");
    for gone in ["198.18.220.5", "fd00:208:dc::6", "fwgv1"] {
        assert!(!after.contains(gone), "{gone} left after DEL: {after}");
    }
}
