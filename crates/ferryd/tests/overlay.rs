//! Many hosts: three hosts as network namespaces on an underlay bridge
//! (198.18.100.0/24), a three-member etcd cluster (one member per host) and
//! one ferryd per host with its own sockets and state (`ferry_testkit::cluster`).
//! Overlay networks 198.19.224.0/24 + fd00:224::/64 and 198.19.225.0/24.
//!
//! Checked: sandboxes on all hosts reach each other over IPv4 and IPv6 and
//! hold a TCP connection; two overlay networks stay apart; with one etcd
//! member killed traffic goes on and new sandboxes attach; a ferryd killed
//! with -9 leaves its sandboxes' traffic alone and, restarted, puts back an
//! FDB entry deleted by hand; a host whose ferryd stops for good leaves the
//! other hosts' FDB and neighbour tables within its lease TTL + 1 s; h0's
//! `/metrics` (on its namespace's 127.0.0.1:9641) counts the other hosts
//! and their endpoints, and times its etcd calls.

use ferry_testkit::cluster::{endpoint_addrs, fdb_has, neigh_has, pings, wait_for, Cluster, Spec};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn until(what: &str, limit: Duration, ok: impl FnMut() -> bool) -> Duration {
    wait_for(limit, ok).unwrap_or_else(|t| panic!("{what}: not within {t:?}"))
}

/// A sample's value in `host`'s `/metrics` (ferryd's default address in
/// the host's namespace), or None.
fn metric(c: &Cluster, host: usize, sample: &str) -> Option<f64> {
    let body = c.hosts[host].sh("curl -s -m 5 http://127.0.0.1:9641/metrics || true");
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

fn connect(c: &Cluster, host: usize, network: &str, sb: &str) -> (String, String, String) {
    endpoint_addrs(&c.hosts[host].ok(
        "POST",
        "/connect",
        &json!({"network": network, "sandbox": sb}),
    ))
}

#[test]
fn three_hosts_share_overlay_networks() {
    require_root();
    let mut c = Cluster::start(&Spec {
        underlay: "198.18.100",
        hosts: 3,
        members: 3,
        ferryd: Path::new(env!("CARGO_BIN_EXE_ferryd")),
        pool: "base=198.19.228.0/22,size=24",
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Created on one host, listed on every host once its agent adopted it.
    c.hosts[0].ok(
        "POST",
        "/networks",
        &json!({"name": "ov1", "driver": "overlay", "subnets": ["198.19.224.0/24", "fd00:224::/64"]}),
    );
    for h in &c.hosts {
        until(&format!("ov1 on {}", h.ns), Duration::from_secs(10), || {
            matches!(h.call("GET", "/networks/ov1", &Value::Null), Ok((200, _)))
        });
    }
    let sbs: Vec<String> = (0..3).map(|i| c.sandbox(i, "ovs")).collect();
    let eps: Vec<(String, String, String)> =
        (0..3).map(|i| connect(&c, i, "ov1", &sbs[i])).collect();
    for (a, b) in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)] {
        until(
            &format!("{} -> {} over IPv4", sbs[a], eps[b].0),
            Duration::from_secs(10),
            || pings(&sbs[a], &eps[b].0, 1000),
        );
        assert!(
            pings(&sbs[a], &eps[b].1, 2000),
            "{} -> {} over IPv6",
            sbs[a],
            eps[b].1
        );
    }
    // No ARP or ND crossed the underlay: the entries are static.
    assert!(
        fdb_has(&c.hosts[0].ns, &eps[1].2),
        "FDB entry for h1's sandbox on h0"
    );
    assert!(
        neigh_has(&c.hosts[0].ns, &eps[1].0),
        "neighbour entry on h0"
    );
    // h0's agent sees two other hosts and programs their endpoints' four
    // addresses (IPv4 and IPv6 each).
    assert_eq!(metric(&c, 0, "ferry_overlay_hosts"), Some(2.0));
    assert_eq!(metric(&c, 0, "ferry_overlay_peers"), Some(4.0));
    let published =
        r#"ferry_cluster_store_duration_seconds_count{operation="publish_endpoint",outcome="ok"}"#;
    assert!(
        metric(&c, 0, published) >= Some(1.0),
        "h0's etcd writes are not timed"
    );
    // A TCP connection across hosts.
    sh(&format!(
        "ip netns exec {} timeout 20 python3 -m http.server 18500 --bind {} >/dev/null 2>&1 &",
        sbs[1], eps[1].0
    ));
    until("HTTP over the overlay", Duration::from_secs(10), || {
        sh(&format!(
            "ip netns exec {} curl -s -o /dev/null -m 2 -w '%{{http_code}}' http://{}:18500/ || true",
            sbs[0], eps[1].0
        )) == "200"
    });

    // A second overlay network stays apart from the first.
    c.hosts[1].ok(
        "POST",
        "/networks",
        &json!({"name": "ov2", "driver": "overlay", "subnets": ["198.19.225.0/24"]}),
    );
    until("ov2 on h0", Duration::from_secs(10), || {
        matches!(
            c.hosts[0].call("GET", "/networks/ov2", &Value::Null),
            Ok((200, _))
        )
    });
    let other = c.sandbox(1, "ovo");
    let (other_ip, _, _) = connect(&c, 1, "ov2", &other);
    let peer2 = c.sandbox(0, "ovq");
    let (peer2_ip, _, _) = connect(&c, 0, "ov2", &peer2);
    until("ov2 across hosts", Duration::from_secs(10), || {
        pings(&peer2, &other_ip, 1000)
    });
    assert!(
        !pings(&sbs[0], &other_ip, 1000),
        "ov1 reached ov2 across hosts"
    );
    assert!(
        !pings(&sbs[1], &peer2_ip, 1000),
        "ov1 reached ov2 on one host"
    );

    // One etcd member down: traffic goes on, new sandboxes attach. While the
    // two members left elect a leader (when the killed one led), an attach
    // may answer 503 "try again later", having changed nothing: retried as a
    // runtime would.
    c.hosts[2].kill_etcd();
    assert!(
        pings(&sbs[0], &eps[2].0, 1000),
        "traffic stopped with an etcd member down"
    );
    let late = c.sandbox(1, "ovl");
    let body = json!({"network": "ov1", "sandbox": late});
    let mut attached = None;
    until(
        "an attach with one etcd member down",
        Duration::from_secs(15),
        || match c.hosts[1].call("POST", "/connect", &body) {
            Ok((200, v)) => {
                attached = Some(v);
                true
            }
            Ok((503, _)) => false,
            other => panic!("connect with an etcd member down: {other:?}"),
        },
    );
    let (late_ip, _, _) = endpoint_addrs(&attached.expect("attached"));
    until(
        "a sandbox attached with one etcd member down",
        Duration::from_secs(10),
        || pings(&sbs[0], &late_ip, 1000),
    );

    // ferryd on h1 killed: its sandboxes keep their traffic; an FDB entry
    // deleted meanwhile is back after the restart.
    c.hosts[1].kill_ferryd();
    assert!(
        pings(&sbs[0], &eps[1].0, 1000),
        "traffic stopped with ferryd down"
    );
    let vx = c.hosts[1].sh("ip -o link show type vxlan");
    let dev = vx
        .split(": ")
        .nth(1)
        .map(|d| d.split('@').next().unwrap_or(d).to_string())
        .expect("a VXLAN device on h1");
    c.hosts[1].sh(&format!("bridge fdb del {} dev {dev} self", eps[0].2));
    assert!(!fdb_has(&c.hosts[1].ns, &eps[0].2));
    c.start_ferryd(1).unwrap_or_else(|e| panic!("{e}"));
    until("the FDB entry reconciled", Duration::from_secs(10), || {
        fdb_has(&c.hosts[1].ns, &eps[0].2)
    });
    assert!(pings(&sbs[1], &eps[0].0, 1000));

    // h2's ferryd stops for good: it leaves the others within TTL + 1 s.
    c.hosts[2].kill_ferryd();
    let killed = Instant::now();
    let gone = until(
        "h2's endpoint gone from h0",
        Duration::from_secs(11),
        || !fdb_has(&c.hosts[0].ns, &eps[2].2) && !neigh_has(&c.hosts[0].ns, &eps[2].0),
    );
    eprintln!("h2 left h0's tables after {gone:?}");
    // h1 follows the same lease, within the same TTL + 1 s of the kill.
    let left = Duration::from_secs(11).saturating_sub(killed.elapsed());
    until("h2's endpoint gone from h1", left, || {
        !fdb_has(&c.hosts[1].ns, &eps[2].2) && !neigh_has(&c.hosts[1].ns, &eps[2].0)
    });
    // h0's counts follow: h1 alone, with two dual-stack endpoints on ov1
    // and one IPv4 endpoint on ov2.
    assert_eq!(metric(&c, 0, "ferry_overlay_hosts"), Some(1.0));
    assert_eq!(metric(&c, 0, "ferry_overlay_peers"), Some(5.0));
}
