//! The `portmap` plugin on a node in a namespace (see nodecommon): published
//! ports reachable from outside, from the node's loopback and from the
//! container itself (hairpin) over IPv4 and IPv6; the rendered ruleset
//! against a golden file; ADD/DEL cycles leaving the ruleset as it was; no
//! program executed; bad config refused with nothing changed; GC; and the
//! same reachability as the reference portmap 1.1.1.
//! Subnets: 198.18.208-215.0/24, fd00:208:d0-d7::/64 (each node is its own
//! namespace world; the differential runs Ferry and the reference on
//! identical addresses).

mod nodecommon;

use nodecommon::*;
use serde_json::{json, Value};

fn portmap() -> Value {
    json!({"type": "portmap", "capabilities": {"portMappings": true}})
}

fn ports() -> Value {
    json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": "::"}
    ])
}

/// What the node's clients see: (from outside v4, outside v6, node
/// loopback, hairpin) each the source address the server saw, or None.
fn observe(node: &Node, c: &Netns, result: &Value) -> [Option<String>; 4] {
    serve(c, 80);
    let _ = result;
    settle(c);
    settle(&node.outside);
    [
        whoami(&node.outside, node.v4(), 8080),
        whoami(&node.outside, node.v6(), 8081),
        whoami(&node.host, "127.0.0.1".parse().unwrap(), 8080),
        whoami(c, node.v4(), 8080),
    ]
}

#[test]
fn published_ports_reachable_v4_v6_loopback_hairpin() {
    let node = Node::new(208, &[], &[]);
    let br = unique("pmb");
    // As kubenet writes it: Ferry masquerades the loopback and hairpin
    // connections itself, so kube-proxy's mark chain is accepted, unused.
    let mut pm = portmap();
    pm["externalSetMarkChain"] = json!("KUBE-MARK-MASQ");
    let net = node.net("pmreach", bridge_conf(&br, 209, false, vec![pm]));
    let c = node.container();
    let att = net.att(&c, "pmreach1", ports());
    let result = net.add(&att);
    let seen = observe(&node, &c, &result);
    let cv4 = addr_of(&result, false);
    let _ = cv4;
    // Outside clients keep their address; the loopback and hairpin ones
    // are masqueraded to the bridge's gateway address.
    assert_eq!(seen[0].as_deref(), Some("198.18.208.2"), "{seen:?}");
    assert_eq!(
        seen[1].as_deref(),
        Some("fd00:208:d0::2"),
        "{seen:?} direct {:?} host {:?} hostnat {:?}\n{}\n{}\n{}\n{}",
        whoami(&node.outside, addr_of(&result, true), 80),
        whoami(&node.host, addr_of(&result, true), 80),
        whoami(&node.host, node.v6(), 8081),
        node.nft("ruleset"),
        c.exec("ip -6 addr"),
        c.exec("ip -6 route"),
        node.host.exec("ip -6 addr")
    );
    assert_eq!(seen[2].as_deref(), Some("198.18.209.1"), "{seen:?}");
    assert_eq!(seen[3].as_deref(), Some("198.18.209.1"), "{seen:?}");
    net.check(&att).unwrap();
    net.del(&att);
    assert_eq!(whoami(&node.outside, node.v4(), 8080), None);
    assert!(!node.nft("table inet ferry-portmap").contains("elements"));
    net.del(&att);
}

#[test]
fn golden_ruleset() {
    let node = Node::new(210, &[], &[]);
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "pmgbr"}, {"name": "pmgv"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "198.18.210.5/24", "interface": 2}, {"address": "fd00:208:d2::5/64", "interface": 2}]});
    let conf = json!({"cniVersion": "1.0.0", "name": "pmgold", "type": "portmap",
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "198.18.210.1"},
            {"hostPort": 9000, "containerPort": 9000, "protocol": "sctp", "hostIP": "fd00:208:d2::1"}]},
        "prevResult": prev});
    let (ok, out) = node.run_plugin("portmap", "ADD", "pmgold1", &node.host.path(), &conf);
    assert!(ok, "{out}");
    assert_eq!(out["ips"], prev["ips"], "prevResult passed on");
    // A second container whose network sets conditions: its own profile.
    let mut cond = conf.clone();
    cond["conditionsV4"] = json!(["ip", "daddr", "!=", "192.0.2.0/24", "iifname", "!=", "pmgx"]);
    cond["runtimeConfig"]["portMappings"] =
        json!([{"hostPort": 8443, "containerPort": 443, "protocol": "tcp"}]);
    cond["prevResult"]["ips"] = json!([{"address": "198.18.210.6/24", "interface": 2}]);
    let (ok, out) = node.run_plugin("portmap", "ADD", "pmgold2", &node.host.path(), &cond);
    assert!(ok, "{out}");
    let got = node.nft("table inet ferry-portmap");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/portmap.nft");
    if std::env::var_os("FERRY_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(got, want, "ruleset differs from {}", path.display());
    let (ok, _) = node.run_plugin("portmap", "DEL", "pmgold1", &node.host.path(), &conf);
    assert!(ok);
    let (ok, _) = node.run_plugin("portmap", "DEL", "pmgold2", &node.host.path(), &cond);
    assert!(ok);
    assert!(!node.nft("table inet ferry-portmap").contains("elements"));
}

#[test]
fn add_del_cycles_leave_the_ruleset_unchanged_and_exec_nothing() {
    // 200 cycles in CI (each is two plugin processes); FERRY_PM_CYCLES=1000
    // for the full run.
    let cycles: usize = std::env::var("FERRY_PM_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let node = Node::new(211, &[], &["portmap"]);
    let conf = |i: usize| {
        json!({"cniVersion": "1.0.0", "name": "pmcyc", "type": "portmap",
            "runtimeConfig": {"portMappings": [
                {"hostPort": 10000 + (i % 5000) as i64, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 20000, "containerPort": 53, "protocol": "udp", "hostIP": "198.18.211.1"}]},
            "prevResult": {"cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                "ips": [{"address": format!("198.18.211.{}/24", 10 + i % 200), "interface": 0},
                        {"address": "fd00:208:d3::2/64", "interface": 0}]}})
    };
    let h = node.host.path();
    let run = |cmd: &str, i: usize| {
        let (ok, out) = node.run_plugin("portmap", cmd, &format!("pmcyc{i}"), &h, &conf(i));
        assert!(ok, "{cmd} {i}: {out}");
    };
    run("ADD", 0);
    run("CHECK", 0);
    run("DEL", 0);
    let start = node.nft("ruleset");
    assert!(start.contains("table inet ferry-portmap") && !start.contains("elements"));
    let execs = node.execs();
    assert_eq!(
        execs.len(),
        3,
        "only the plugin itself may be executed: {execs:#?}"
    );
    for i in 1..=cycles {
        run("ADD", i);
        run("DEL", i);
    }
    assert_eq!(node.nft("ruleset"), start);
    assert!(files(&node.state_dir().join("portmap/pmcyc")).is_empty());
}

#[test]
fn bad_config_changes_nothing() {
    let node = Node::new(212, &[], &[]);
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "198.18.212.5/24", "interface": 0}]});
    let with = |extra: Value, pm: Value| {
        let mut c = json!({"cniVersion": "1.0.0", "name": "pmbad", "type": "portmap",
            "runtimeConfig": {"portMappings": pm}, "prevResult": prev});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    let cases = [
        (
            with(
                json!({}),
                json!([{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]),
            ),
            7,
        ),
        (
            with(
                json!({}),
                json!([{"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}]),
            ),
            7,
        ),
        (
            with(
                json!({}),
                json!([{"hostPort": 80, "containerPort": 0, "protocol": "tcp"}]),
            ),
            7,
        ),
        (
            with(
                json!({}),
                json!([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]),
            ),
            7,
        ),
        (
            with(
                json!({}),
                json!([{"hostPort": 80, "containerPort": 80, "hostIP": "nope"}]),
            ),
            7,
        ),
        (with(json!({"backend": "ebpf"}), good.clone()), 7),
        (with(json!({"markMasqBit": 40}), good.clone()), 7),
        (
            with(
                json!({"externalSetMarkChain": "KUBE-MARK-MASQ", "markMasqBit": 13}),
                good.clone(),
            ),
            7,
        ),
        (
            with(json!({"conditionsV4": ["meta", "mark", "1"]}), good.clone()),
            7,
        ),
        (
            with(
                json!({"conditionsV6": ["ip", "daddr", "192.0.2.0/24"]}),
                good.clone(),
            ),
            7,
        ),
    ];
    for (conf, code) in cases {
        let (ok, out) = node.run_plugin("portmap", "ADD", "pmbad1", &node.host.path(), &conf);
        assert!(!ok, "{conf}");
        assert_eq!(out["code"], json!(code), "{conf}: {out}");
    }
    assert_eq!(node.nft("ruleset"), "", "nothing changed");
    // No mappings: no work at all, prevResult passed on.
    let (ok, out) = node.run_plugin(
        "portmap",
        "ADD",
        "pmbad1",
        &node.host.path(),
        &with(json!({}), json!([])),
    );
    assert!(ok && out["ips"] == prev["ips"], "{out}");
    assert_eq!(node.nft("ruleset"), "");
    // Another container cannot take a published host port.
    let (ok, _) = node.run_plugin(
        "portmap",
        "ADD",
        "pmbad2",
        &node.host.path(),
        &with(json!({}), good.clone()),
    );
    assert!(ok);
    let mut other = with(json!({}), good);
    other["prevResult"]["ips"][0]["address"] = json!("198.18.212.6/24");
    let (ok, out) = node.run_plugin("portmap", "ADD", "pmbad3", &node.host.path(), &other);
    assert!(!ok, "{out}");
    assert!(!files(&node.state_dir().join("portmap/pmbad"))
        .iter()
        .any(|f| f.starts_with("pmbad3")));
}

#[test]
fn gc_removes_stale_attachments() {
    let node = Node::new(213, &[], &[]);
    let conf = |ip: &str, port: i64| {
        json!({"cniVersion": "1.1.0", "name": "pmgc", "type": "portmap",
            "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": {"cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                "ips": [{"address": ip, "interface": 0}]}})
    };
    let h = node.host.path();
    assert!(
        node.run_plugin("portmap", "ADD", "keep", &h, &conf("198.18.213.2/24", 8001))
            .0
    );
    assert!(
        node.run_plugin("portmap", "ADD", "gone", &h, &conf("198.18.213.3/24", 8002))
            .0
    );
    let gc = json!({"cniVersion": "1.1.0", "name": "pmgc", "type": "portmap",
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]});
    let (ok, out) = node.run_plugin("portmap", "GC", "", "", &gc);
    assert!(ok, "{out}");
    let rules = node.nft("table inet ferry-portmap");
    assert!(rules.contains("8001") && !rules.contains("8002"), "{rules}");
    assert!(
        node.run_plugin(
            "portmap",
            "CHECK",
            "keep",
            &h,
            &conf("198.18.213.2/24", 8001)
        )
        .0
    );
    assert!(
        !node
            .run_plugin(
                "portmap",
                "CHECK",
                "gone",
                &h,
                &conf("198.18.213.3/24", 8002)
            )
            .0
    );
}

/// Ferry's portmap and the reference's (iptables) give the same
/// reachability on the same node layout.
#[test]
fn differential_reachability_against_reference() {
    require_reference("portmap");
    let mut seen = Vec::new();
    for reference in [false, true] {
        let refs: &[&str] = if reference { &["portmap"] } else { &[] };
        let node = Node::new(214, refs, &[]);
        let br = unique("pmb");
        let net = node.net("pmdiff", bridge_conf(&br, 215, false, vec![portmap()]));
        let c = node.container();
        let att = net.att(&c, "pmdiff1", ports());
        let result = net.add(&att);
        let obs = observe(&node, &c, &result);
        net.del(&att);
        seen.push(obs);
    }
    assert_eq!(
        seen[0], seen[1],
        "Ferry vs reference: outside v4, outside v6, loopback, hairpin"
    );
}

/// A UDP flow that reached the node's port before it was published keeps
/// its un-NATed conntrack entry; ADD deletes it (ctnetlink), so the same
/// flow reaches the container right after.
#[test]
fn udp_flow_started_before_add_reaches_the_container() {
    use std::net::UdpSocket;
    use std::time::Duration;
    let node = Node::new(208, &[], &["portmap"]);
    let br = unique("pmb");
    let net = node.net("pmudp", bridge_conf(&br, 209, false, vec![portmap()]));
    let c = node.container();
    let cn = ferry_linux::Netns::open(c.path()).unwrap();
    let server = cn.run(|| UdpSocket::bind("0.0.0.0:53").unwrap()).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, peer)) = server.recv_from(&mut buf) {
            let _ = server.send_to(peer.ip().to_string().as_bytes(), peer);
        }
    });
    // Conntrack runs in a namespace only once something uses it (Docker's
    // or kube-proxy's rules on a real node).
    node.host.exec(
        "nft 'add table ip pmt; add chain ip pmt c { type filter hook prerouting priority 0; }; add rule ip pmt c ct state new counter'",
    );
    let on = ferry_linux::Netns::open(node.outside.path()).unwrap();
    let client = on
        .run(|| UdpSocket::bind("0.0.0.0:40000").unwrap())
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let to = (node.v4(), 5353);
    let _ = client.send_to(b"early", to);
    std::thread::sleep(Duration::from_millis(200));
    let att = net.att(
        &c,
        "pmudp1",
        json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]),
    );
    net.add(&att);
    let mut buf = [0u8; 64];
    let mut got = None;
    for _ in 0..3 {
        let _ = client.send_to(b"again", to);
        if let Ok((n, _)) = client.recv_from(&mut buf) {
            got = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some("198.18.208.2"));
    net.del(&att);
    let bin = env!("CARGO_BIN_EXE_ferry-plugin");
    for e in node.execs() {
        assert!(
            e.contains(&format!("execve(\"{bin}\"")),
            "only the plugin runs: {e}"
        );
    }
}

/// conditionsV4 (nft style) keeps the outside client from the published
/// port while the node's own loopback still reaches it; an iptables-style
/// list in another network is a second profile beside it.
#[test]
fn conditions_exclude_a_source() {
    let node = Node::new(208, &[], &[]);
    let br = unique("pmb");
    let cond = json!({"type": "portmap", "capabilities": {"portMappings": true},
        "conditionsV4": ["ip", "saddr", "!=", "198.18.208.0/24"]});
    let net = node.net("pmcond", bridge_conf(&br, 209, false, vec![cond]));
    let c = node.container();
    let att = net.att(&c, "pmcond1", ports());
    net.add(&att);
    serve(&c, 80);
    settle(&c);
    assert_eq!(
        whoami(&node.outside, node.v4(), 8080),
        None,
        "excluded source"
    );
    assert_eq!(
        whoami(&node.host, "127.0.0.1".parse().unwrap(), 8080).as_deref(),
        Some("198.18.209.1")
    );
    assert_eq!(
        whoami(&node.outside, node.v6(), 8081).as_deref(),
        Some("fd00:208:d0::2"),
        "no conditionsV6: IPv6 open"
    );
    let br2 = unique("pmb");
    let ipt = json!({"type": "portmap", "capabilities": {"portMappings": true},
        "conditionsV4": ["!", "-s", "198.18.208.2"]});
    let net2 = node.net("pmcond2", bridge_conf(&br2, 210, false, vec![ipt]));
    let c2 = node.container();
    let att2 = net2.att(
        &c2,
        "pmcond2",
        json!([{"hostPort": 9090, "containerPort": 80, "protocol": "tcp"}]),
    );
    net2.add(&att2);
    serve(&c2, 80);
    assert_eq!(whoami(&node.outside, node.v4(), 9090), None);
    let rules = node.nft("table inet ferry-portmap");
    assert_eq!(rules.matches("chain hostports").count(), 1, "{rules}");
    assert!(rules.contains("ip saddr != 198.18.208.0/24"), "{rules}");
    assert!(rules.contains("ip saddr != 198.18.208.2"), "{rules}");
    net.check(&att).unwrap();
    net.del(&att);
    net2.del(&att2);
    assert!(!rules.is_empty());
    assert!(!node.nft("table inet ferry-portmap").contains("elements"));
}

/// Behind ptp (a routed host veth, no bridge): published port from outside
/// and from the node's loopback (`route_localnet` on the host veth); a
/// repeated ADD of the same attachment replaces its mappings.
#[test]
fn ptp_loopback_and_repeated_add() {
    let node = Node::new(208, &[], &[]);
    let net = node.net(
        "pmptp",
        json!([
            {"type": "ptp", "ipam": {"type": "host-local", "subnet": "198.18.211.0/24",
                "routes": [{"dst": "0.0.0.0/0"}]}},
            portmap()
        ]),
    );
    let c = node.container();
    let att = net.att(
        &c,
        "pmptp1",
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    let r = net.add(&att);
    serve(&c, 80);
    let cv4 = addr_of(&r, false);
    assert_eq!(
        whoami(&node.outside, node.v4(), 8080).as_deref(),
        Some("198.18.208.2")
    );
    let lo = whoami(&node.host, "127.0.0.1".parse().unwrap(), 8080);
    assert!(lo.is_some() && lo != Some(cv4.to_string()), "{lo:?}");
    // The same attachment again with another port: the old one is gone.
    let conf = json!({"cniVersion": "1.0.0", "name": "pmptp", "type": "portmap",
        "runtimeConfig": {"portMappings": [{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": r});
    let (ok, out) = node.run_plugin("portmap", "ADD", "pmptp1", &node.host.path(), &conf);
    assert!(ok, "{out}");
    assert_eq!(whoami(&node.outside, node.v4(), 8080), None);
    assert_eq!(
        whoami(&node.outside, node.v4(), 8090).as_deref(),
        Some("198.18.208.2")
    );
    let (ok, _) = node.run_plugin("portmap", "DEL", "pmptp1", &node.host.path(), &conf);
    assert!(ok);
    assert!(!node.nft("table inet ferry-portmap").contains("elements"));
    net.del(&att);
}
