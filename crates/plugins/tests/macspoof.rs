//! The bridge's `macspoofchk` on a node in a namespace (see nodecommon):
//! a container that changes its MAC is cut off from its neighbour, as with
//! the reference bridge 1.1.1; CHECK, DEL, GC and the absence of exec on
//! Ferry's side. Subnets: 198.18.11.0/24 (node link), 198.18.14.0/24 and
//! fd00:208:e::/64 (bridge).

mod nodecommon;

use nodecommon::*;
use serde_json::{json, Value};

fn conf(br: &str) -> Value {
    let mut plugins = bridge_conf(br, 14, false, vec![]);
    plugins[0]["macspoofchk"] = json!(true);
    plugins
}

/// Pings c2 from c1, then again after c1 takes another MAC (both
/// neighbour caches flushed so the new MAC is what c2 learns).
fn ping_before_and_after_spoofing(c1: &Netns, c2: &Netns, to: std::net::IpAddr) -> [bool; 2] {
    let before = ping(c1, to);
    c1.exec("ip link set eth0 address 02:00:c6:12:0e:99");
    c1.exec("ip neigh flush dev eth0");
    c2.exec("ip neigh flush dev eth0");
    [before, ping(c1, to)]
}

#[test]
fn spoofed_mac_is_dropped_like_the_reference() {
    let mut seen = Vec::new();
    for reference in [false, true] {
        let refs: &[&str] = if reference { &["bridge"] } else { &[] };
        let node = Node::new(11, refs, &[]);
        let n = node.net("macspoof", conf(&unique("msp")));
        let (c1, c2) = (node.container(), node.container());
        let (a1, a2) = (
            n.att(&c1, "msp1", Value::Null),
            n.att(&c2, "msp2", Value::Null),
        );
        let (_r1, r2) = (n.add(&a1), n.add(&a2));
        seen.push(ping_before_and_after_spoofing(
            &c1,
            &c2,
            addr_of(&r2, false),
        ));
    }
    assert_eq!(
        seen,
        [[true, false], [true, false]],
        "[before, after] the MAC change: Ferry, then the reference"
    );
}

#[test]
fn elements_follow_add_check_del_and_gc_without_exec() {
    let node = Node::new(11, &[], &["bridge"]);
    let br = unique("msq");
    let n = node.net("macspoof2", conf(&br));
    let (c1, c2) = (node.container(), node.container());
    let (a1, a2) = (
        n.att(&c1, "msq1", Value::Null),
        n.att(&c2, "msq2", Value::Null),
    );
    let (r1, r2) = (n.add(&a1), n.add(&a2));
    let mac = |r: &Value| r["interfaces"][2]["mac"].as_str().unwrap().to_lowercase();
    let host_veth = |r: &Value| r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let table = node.nft("table bridge ferry-macspoof");
    for r in [&r1, &r2] {
        assert!(
            table.contains(&format!("\"{}\" . {}", host_veth(r), mac(r))),
            "{} . {} allowed: {table}",
            host_veth(r),
            mac(r)
        );
    }
    n.check(&a1).unwrap();
    // CHECK notices a removed element.
    node.host.exec(&format!(
        "nft delete element bridge ferry-macspoof allowed '{{ \"{}\" . {} }}'",
        host_veth(&r1),
        mac(&r1)
    ));
    assert!(n.check(&a1).is_err(), "CHECK must see the missing element");
    n.del(&a1);
    n.del(&a1);
    let table = node.nft("table bridge ferry-macspoof");
    assert!(!table.contains(&host_veth(&r1)), "DEL removed c1: {table}");
    assert!(table.contains(&host_veth(&r2)), "c2 kept: {table}");

    // GC with an empty valid list removes c2's elements too.
    let mut gc = conf(&br)[0].clone();
    gc.as_object_mut().unwrap().remove("ipam");
    gc["cniVersion"] = json!("1.1.0");
    gc["name"] = json!("macspoof2");
    gc["cni.dev/valid-attachments"] = json!([]);
    let (ok, out) = node.run_plugin("bridge", "GC", "", "", &gc);
    assert!(ok, "GC failed: {out}");
    let table = node.nft("table bridge ferry-macspoof");
    assert!(!table.contains(&host_veth(&r2)), "GC removed c2: {table}");

    let bin = env!("CARGO_BIN_EXE_ferry-plugin");
    let execs = node.execs();
    assert!(!execs.is_empty());
    for e in &execs {
        assert!(
            e.contains(&format!("execve(\"{bin}\"")) || e.contains("host-local"),
            "only the plugin and its IPAM run: {execs:#?}"
        );
    }
}
