//! Names across hosts: two hosts (`ferry_testkit::cluster`, underlay
//! 198.19.54.0/24, one etcd) share overlay network 198.19.53.0/24 +
//! fd00:1948:53::/64. A sandbox on host 0 resolves a sandbox of host 1 by
//! its name and its alias at its own gateway (the names travel in the
//! cluster store's endpoint records); after the disconnect on host 1 they
//! are gone on host 0.

use ferry_testkit::cluster::{endpoint_addrs, wait_for, Cluster, Spec};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// `dig +short @server NAME TYPE` from inside `sandbox` (1 s, one try).
fn dig(sandbox: &str, server: &str, name: &str, ty: &str) -> String {
    sh(&format!(
        "ip netns exec {sandbox} dig +time=1 +tries=1 +short @{server} {name} {ty} || true"
    ))
    .trim()
    .to_string()
}

/// `dig` until it answers `want`, within 10 s.
fn resolves(sandbox: &str, server: &str, name: &str, ty: &str, want: &str) {
    let mut last = String::new();
    let done = wait_for(Duration::from_secs(10), || {
        last = dig(sandbox, server, name, ty);
        last == want
    });
    assert!(
        done.is_ok(),
        "{name} {ty} @{server} from {sandbox}: {last:?}, want {want:?}"
    );
}

#[test]
fn overlay_names_resolve_on_every_host() {
    require_root();
    assert!(
        sh_ok("command -v dig"),
        "dig is missing: apt-get install bind9-dnsutils"
    );
    let mut c = Cluster::start(&Spec {
        underlay: "198.19.54",
        hosts: 2,
        members: 1,
        ferryd: Path::new(env!("CARGO_BIN_EXE_ferryd")),
        pool: "base=198.19.50.0/23,size=24",
    })
    .unwrap_or_else(|e| panic!("{e}"));
    c.hosts[0].ok(
        "POST",
        "/networks",
        &json!({"name": "dnov", "driver": "overlay",
               "subnets": ["198.19.53.0/24", "fd00:1948:53::/64"]}),
    );
    let adopted = wait_for(Duration::from_secs(10), || {
        matches!(
            c.hosts[1].call("GET", "/networks/dnov", &Value::Null),
            Ok((200, _))
        )
    });
    assert!(adopted.is_ok(), "dnov not adopted by host 1");
    let net = c.hosts[0].ok("GET", "/networks/dnov", &Value::Null);
    let gw = |family: &str| {
        net[family][0]["Gateway"]
            .as_str()
            .and_then(|g| g.split('/').next())
            .unwrap_or_else(|| panic!("no {family} gateway: {net}"))
            .to_string()
    };
    let (gw4, gw6) = (gw("ipv4"), gw("ipv6"));
    let a = c.sandbox(0, "dnoa");
    let b = c.sandbox(1, "dnob");
    c.hosts[0].ok(
        "POST",
        "/connect",
        &json!({"network": "dnov", "sandbox": a}),
    );
    let (b4, b6, _) = endpoint_addrs(&c.hosts[1].ok(
        "POST",
        "/connect",
        &json!({"network": "dnov", "sandbox": b, "aliases": ["dnsvc"]}),
    ));

    // Host 0's server answers host 1's names: A and AAAA, over both transports.
    resolves(&a, &gw4, &b, "A", &b4);
    resolves(&a, &gw4, "dnsvc", "A", &b4);
    resolves(&a, &gw4, "dnsvc", "AAAA", &b6);
    let ready = wait_for(Duration::from_secs(10), || {
        sh_ok(&format!("ip netns exec {a} ping -6 -c1 -W1 {gw6}"))
    });
    assert!(ready.is_ok(), "{a} does not reach the IPv6 gateway {gw6}");
    resolves(&a, &gw6, &b, "AAAA", &b6);
    let ptr = dig(&a, &gw4, &format!("-x {b4}"), "");
    let mut names: Vec<&str> = ptr.lines().collect();
    names.sort();
    let mut want = vec![format!("{b}."), "dnsvc.".to_string()];
    want.sort();
    assert_eq!(names, want, "PTR {b4} on host 0");

    // Disconnected on host 1: gone on host 0.
    c.hosts[1].ok(
        "POST",
        "/disconnect",
        &json!({"network": "dnov", "sandbox": b}),
    );
    resolves(&a, &gw4, &b, "A", "");
    resolves(&a, &gw4, "dnsvc", "A", "");
}
