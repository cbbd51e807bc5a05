//! macvlan (root): Ferry's plugin run as `macvlan` from a CNI_PATH dir, on a
//! veth end in the host namespace as the master. Differential against the
//! reference /usr/lib/cni/macvlan (Debian containernetworking-plugins
//! 1.1.1), reachability between two containers on one master, DEL
//! idempotence, CHECK, and refused configs. Subnets: 198.18.128-135.0/24,
//! fd00:128:80-87::/64.

mod l2common;

use ferry_testkit::*;
use l2common::*;
use serde_json::{json, Value};

fn conf(name: &str, master: Option<&str>, extra: Value, ipam: Option<Value>) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": name, "type": "macvlan"});
    if let Some(m) = master {
        c["master"] = json!(m);
    }
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    if let Some(i) = ipam {
        c["ipam"] = i;
    }
    c
}

fn host_local(data: &std::path::Path, ranges: Value) -> Value {
    json!({"type": "host-local", "dataDir": data, "ranges": ranges,
           "routes": [{"dst": "0.0.0.0/0"}]})
}

/// ADD, snapshot, CHECK, DEL twice on one side; returns the snapshot and result.
fn observe(side: Side, c: &Value, macs: bool) -> (ferry_testkit::snapshot::Snapshot, Value) {
    let dir = PluginDir::new("macvlan", side);
    // Each side its own IPAM state, so both allocate the same first address.
    let data = tempfile::tempdir().unwrap();
    let mut c = c.clone();
    if c.get("ipam").is_some() {
        c["ipam"]["dataDir"] = json!(data.path());
    }
    let c = &c;
    let ns = Netns::new(if side == Side::Ferry { "mvf" } else { "mvr" });
    let att = Att::new("mv-diff", &ns.path(), "eth0");
    let result = run(&dir, "ADD", c, &att).expect_ok(&format!("{side:?} ADD"));
    let snap = snapshot(&ns, "eth0", macs);
    let check = run(&dir, "CHECK", &with_prev(c, &result), &att);
    assert!(check.ok, "{side:?} CHECK failed: {}", check.raw);
    run(&dir, "DEL", &with_prev(c, &result), &att).expect_ok("DEL");
    run(&dir, "DEL", &with_prev(c, &result), &att).expect_ok("second DEL");
    assert_eq!(
        ns_links(&ns),
        vec!["lo".to_string()],
        "{side:?}: links left"
    );
    (snap, normalize_result(result, macs))
}

/// Only the newer reference sets ndisc_notify (1.1.1 sets arp_notify only).
const NDISC: (&str, &str) = (
    "ndisc_notify",
    "Ferry also sets ndisc_notify, as reference releases after 1.1.1 do",
);

fn differential(case: &str, c: Value, macs: bool, known: &[(&str, &str)]) {
    require_root();
    require_reference("macvlan");
    require_reference("host-local");
    let (r_snap, r_res) = observe(Side::Reference, &c, macs);
    let (f_snap, f_res) = observe(Side::Ferry, &c, macs);
    assert_same(case, &r_snap, &f_snap, known);
    assert_eq!(
        r_res, f_res,
        "{case}: results differ (reference left, ferry right)"
    );
}

#[test]
fn differential_bridge_dual_stack_mtu_mac() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let c = conf(
        &unique("mvd"),
        Some(&m.a),
        json!({"mtu": 1400, "mac": "02:42:c6:12:80:02"}),
        Some(host_local(
            data.path(),
            json!([[{"subnet": "198.18.128.0/24"}], [{"subnet": "fd00:128:80::/64"}]]),
        )),
    );
    differential("bridge dual-stack mtu mac", c, true, &[NDISC]);
    assert!(children_of(&m.a).is_empty(), "macvlans left on the master");
}

#[test]
fn differential_private_l2_only() {
    require_root();
    let m = HostVeth::new("mvm");
    let c = conf(&unique("mvd"), Some(&m.a), json!({"mode": "private"}), None);
    differential("private L2 only", c, false, &[NDISC]);
}

#[test]
fn differential_vepa_ipv4() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let c = conf(
        &unique("mvd"),
        Some(&m.a),
        json!({"mode": "vepa"}),
        Some(host_local(
            data.path(),
            json!([[{"subnet": "198.18.129.0/24"}]]),
        )),
    );
    differential("vepa IPv4", c, false, &[NDISC]);
}

#[test]
fn differential_passthru() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let c = conf(
        &unique("mvd"),
        Some(&m.a),
        json!({"mode": "passthru"}),
        Some(host_local(
            data.path(),
            json!([[{"subnet": "198.18.130.0/24"}]]),
        )),
    );
    differential("passthru IPv4", c, false, &[NDISC]);
}

#[test]
fn differential_cni_0_4_0_ipv6_only() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let mut c = conf(
        &unique("mvd"),
        Some(&m.a),
        json!({}),
        Some(json!({"type": "host-local", "dataDir": data.path(),
            "ranges": [[{"subnet": "fd00:128:86::/64"}]],
            "routes": [{"dst": "::/0"}]})),
    );
    c["cniVersion"] = json!("0.4.0");
    differential("cniVersion 0.4.0, IPv6 only", c, false, &[NDISC]);
}

#[test]
fn two_containers_reach_each_other_v4_v6() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let dir = PluginDir::new("macvlan", Side::Ferry);
    let c = conf(
        &unique("mvp"),
        Some(&m.a),
        json!({}),
        Some(host_local(
            data.path(),
            json!([[{"subnet": "198.18.131.0/24"}], [{"subnet": "fd00:128:83::/64"}]]),
        )),
    );
    let a = Netns::new("mva");
    let b = Netns::new("mvb");
    let att_a = Att::new("mv-a", &a.path(), "eth0");
    let att_b = Att::new("mv-b", &b.path(), "net1");
    let ra = run(&dir, "ADD", &c, &att_a).expect_ok("ADD a");
    let rb = run(&dir, "ADD", &c, &att_b).expect_ok("ADD b");
    assert_eq!(ra["interfaces"][0]["sandbox"], json!(a.path()));
    assert_eq!(rb["interfaces"][0]["name"], json!("net1"));
    assert_eq!(ra["ips"].as_array().unwrap().len(), 2);
    for ip in ra["ips"].as_array().unwrap() {
        assert_eq!(ip["interface"], json!(0));
    }
    let mac_a = ra["interfaces"][0]["mac"].as_str().unwrap();
    assert_eq!(link_json(Some(&a.name), "eth0")["address"], json!(mac_a));
    let addr = |r: &Value, i: usize| {
        r["ips"][i]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    for i in 0..2 {
        let (to_b, to_a) = (addr(&rb, i), addr(&ra, i));
        assert!(
            a.exec_ok(&format!("ping -c1 -W2 {to_b}")),
            "a cannot ping b at {to_b}"
        );
        assert!(
            b.exec_ok(&format!("ping -c1 -W2 {to_a}")),
            "b cannot ping a at {to_a}"
        );
    }
    run(&dir, "DEL", &with_prev(&c, &ra), &att_a).expect_ok("DEL a");
    run(&dir, "DEL", &with_prev(&c, &rb), &att_b).expect_ok("DEL b");
    assert!(children_of(&m.a).is_empty());
    let name = c["name"].as_str().unwrap();
    assert!(leases(data.path(), name).is_empty(), "leases left");
}

#[test]
fn del_twice_and_with_namespace_gone_releases_ipam() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let dir = PluginDir::new("macvlan", Side::Ferry);
    let c = conf(
        &unique("mvx"),
        Some(&m.a),
        json!({}),
        Some(host_local(
            data.path(),
            json!([[{"subnet": "198.18.132.0/24"}]]),
        )),
    );
    let name = c["name"].as_str().unwrap().to_string();
    let ns = Netns::new("mvx");
    let att = Att::new("mv-x", &ns.path(), "eth0");
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD");
    assert_eq!(leases(data.path(), &name).len(), 1);
    sh(&format!("ip netns del {}", ns.name));
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL with the namespace gone");
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("second DEL");
    // An empty CNI_NETNS too.
    let att_empty = Att::new("mv-x", "", "eth0");
    run(&dir, "DEL", &c, &att_empty).expect_ok("DEL without CNI_NETNS");
    assert!(leases(data.path(), &name).is_empty(), "lease not released");
    assert!(children_of(&m.a).is_empty());
}

#[test]
fn check_detects_drift() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let dir = PluginDir::new("macvlan", Side::Ferry);
    let c = conf(
        &unique("mvc"),
        Some(&m.a),
        json!({"mode": "bridge"}),
        Some(host_local(
            data.path(),
            json!([[{"subnet": "198.18.133.0/24"}]]),
        )),
    );
    let ns = Netns::new("mvc");
    let att = Att::new("mv-c", &ns.path(), "eth0");
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD");
    let prev = with_prev(&c, &r);
    assert!(run(&dir, "CHECK", &prev, &att).ok);
    // Another mode in the config.
    let mut other = prev.clone();
    other["mode"] = json!("private");
    let o = run(&dir, "CHECK", &other, &att);
    assert!(!o.ok && o.raw.contains("mode"), "{}", o.raw);
    // Another MAC in prevResult.
    let mut wrong_mac = prev.clone();
    wrong_mac["prevResult"]["interfaces"][0]["mac"] = json!("02:00:00:00:00:01");
    assert!(!run(&dir, "CHECK", &wrong_mac, &att).ok);
    // No prevResult.
    assert!(!run(&dir, "CHECK", &c, &att).ok);
    // The address removed.
    let a = r["ips"][0]["address"].as_str().unwrap();
    ns.exec(&format!("ip addr del {a} dev eth0"));
    let o = run(&dir, "CHECK", &prev, &att);
    assert!(!o.ok && o.raw.contains("198.18.133"), "{}", o.raw);
    run(&dir, "DEL", &prev, &att).expect_ok("DEL");
}

#[test]
fn link_in_container_and_default_master() {
    require_root();
    let ns = Netns::new("mvl");
    // The master lives in the container: a veth pair inside it, one end
    // carrying the container's default route.
    ns.exec("ip link add up0 type veth peer name up1");
    ns.exec("ip link set up0 up");
    ns.exec("ip link set up1 up");
    let dir = PluginDir::new("macvlan", Side::Ferry);
    let att = Att::new("mv-l", &ns.path(), "eth0");
    let data = tempfile::tempdir().unwrap();
    // No routes: the container already has its default route (via up0).
    let ipam = json!({"type": "host-local", "dataDir": data.path(),
                      "ranges": [[{"subnet": "198.18.134.0/24"}]]});

    // No master and no default route in the container: code 7.
    let c = conf(
        &unique("mvl"),
        None,
        json!({"linkInContainer": true}),
        Some(ipam.clone()),
    );
    let o = run(&dir, "ADD", &c, &att);
    assert_eq!(o.code(), 7, "{}", o.raw);

    ns.exec("ip addr add 198.18.134.250/24 dev up0");
    ns.exec("ip route add default via 198.18.134.254 dev up0");
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD with the default master");
    let l = link_json(Some(&ns.name), "eth0");
    assert_eq!(l["linkinfo"]["info_kind"], json!("macvlan"));
    assert_eq!(l["link"], json!("up0"));
    assert!(run(&dir, "CHECK", &with_prev(&c, &r), &att).ok);
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL");

    // An explicit master in the container.
    let c2 = conf(
        &unique("mvl"),
        Some("up1"),
        json!({"linkInContainer": true}),
        None,
    );
    let r = run(&dir, "ADD", &c2, &att).expect_ok("ADD on up1");
    assert_eq!(link_json(Some(&ns.name), "eth0")["link"], json!("up1"));
    assert!(r.get("ips").is_none(), "L2 only: no ips in {r}");
    assert!(run(&dir, "CHECK", &with_prev(&c2, &r), &att).ok);
    run(&dir, "DEL", &with_prev(&c2, &r), &att).expect_ok("DEL");
    assert!(link_json(Some(&ns.name), "eth0").is_null());
}

#[test]
fn refused_configs_change_nothing() {
    require_root();
    let m = HostVeth::new("mvm");
    let data = tempfile::tempdir().unwrap();
    let dir = PluginDir::new("macvlan", Side::Ferry);
    let ns = Netns::new("mvbad");
    let att = Att::new("mv-bad", &ns.path(), "eth0");
    let name = unique("mvbad");
    let ipam = host_local(data.path(), json!([[{"subnet": "198.18.135.0/24"}]]));
    let master_before = link_json(None, &m.a);

    let cases: Vec<(&str, Value, u64)> = vec![
        (
            "unknown master",
            conf(&name, Some("mvnosuch0"), json!({}), Some(ipam.clone())),
            7,
        ),
        (
            "unknown mode",
            conf(
                &name,
                Some(&m.a),
                json!({"mode": "source"}),
                Some(ipam.clone()),
            ),
            7,
        ),
        (
            "MTU above the master's",
            conf(&name, Some(&m.a), json!({"mtu": 9000}), Some(ipam.clone())),
            7,
        ),
        (
            "mode of the wrong type",
            conf(&name, Some(&m.a), json!({"mode": 3}), Some(ipam.clone())),
            6,
        ),
        (
            "invalid MAC",
            conf(
                &name,
                Some(&m.a),
                json!({"mac": "nope"}),
                Some(ipam.clone()),
            ),
            7,
        ),
    ];
    for (what, c, code) in cases {
        let o = run(&dir, "ADD", &c, &att);
        assert_eq!(o.code(), code, "{what}: {}", o.raw);
    }
    // Bad JSON on stdin.
    let o = run_bytes(&dir, "ADD", b"{\"cniVersion\": \"1.0.0\", not json", &att);
    assert_eq!(o.code(), 6, "bad JSON: {}", o.raw);

    // CNI_IFNAME already present in the container: code 4, nothing reserved.
    ns.exec("ip link add eth0 type veth peer name eth0p");
    let c = conf(&name, Some(&m.a), json!({}), Some(ipam.clone()));
    let o = run(&dir, "ADD", &c, &att);
    assert_eq!(o.code(), 4, "ifname present: {}", o.raw);
    let mut links = ns_links(&ns);
    links.sort();
    assert_eq!(links, vec!["eth0", "eth0p", "lo"]);
    assert_eq!(
        link_json(Some(&ns.name), "eth0")["linkinfo"]["info_kind"],
        json!("veth")
    );

    // IPAM fails after the link exists: the link goes again.
    ns.exec("ip link del eth0");
    let c = conf(
        &name,
        Some(&m.a),
        json!({}),
        Some(json!({"type": "mvnosuchipam"})),
    );
    assert!(!run(&dir, "ADD", &c, &att).ok);
    assert_eq!(ns_links(&ns), vec!["lo".to_string()]);

    assert!(
        children_of(&m.a).is_empty(),
        "a macvlan was left on the master"
    );
    assert!(
        leases(data.path(), &name).is_empty(),
        "an address was reserved"
    );
    let master_after = link_json(None, &m.a);
    for k in ["ifname", "mtu", "address", "flags", "promiscuity"] {
        assert_eq!(master_before[k], master_after[k], "master {k} changed");
    }
}
