//! host-device (root): a veth end in the host namespace is the "device"
//! (this kernel has no dummy). Differential against the reference
//! /usr/lib/cni/host-device (Debian containernetworking-plugins 1.1.1):
//! what the container holds after ADD and what the host holds after DEL.
//! Selection by name and MAC, the original name kept in the alias, DEL
//! idempotence, refused configs. Subnets: 198.18.136-139.0/24, fd00:128:88::/64.

mod l2common;

use ferry_testkit::snapshot::Snapshot;
use ferry_testkit::*;
use l2common::*;
use serde_json::{json, Value};

fn conf(name: &str, extra: Value, ipam: Option<Value>) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": name, "type": "host-device"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    if let Some(i) = ipam {
        c["ipam"] = i;
    }
    c
}

/// The device as the host sees it after DEL.
fn host_side(dev: &str) -> Snapshot {
    let l = link_json(None, dev);
    let mut s = Snapshot::default();
    s.insert("host/dev/name", l["ifname"].as_str().unwrap_or("<gone>"));
    s.insert("host/dev/mtu", l["mtu"].to_string());
    s.insert("host/dev/mac", l["address"].to_string());
    let up = l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    s.insert("host/dev/up", up.to_string());
    s.insert("host/dev/alias", l["ifalias"].to_string());
    s
}

fn observe(side: Side, c: &Value, dev: &str) -> (Snapshot, Snapshot, Value) {
    let dir = PluginDir::new("host-device", side);
    let data = tempfile::tempdir().unwrap();
    let mut c = c.clone();
    if c.get("ipam").is_some() {
        c["ipam"]["dataDir"] = json!(data.path());
    }
    let ns = Netns::new(if side == Side::Ferry { "hdf" } else { "hdr" });
    let att = Att::new("hd-diff", &ns.path(), "eth0");
    let result = run(&dir, "ADD", &c, &att).expect_ok(&format!("{side:?} ADD"));
    assert!(
        link_json(None, dev).is_null(),
        "{side:?}: {dev} still on the host"
    );
    let mut ctr = snapshot(&ns, "eth0", true);
    ctr.insert(
        "ctr/link/eth0/alias",
        link_json(Some(&ns.name), "eth0")["ifalias"].to_string(),
    );
    let check = run(&dir, "CHECK", &with_prev(&c, &result), &att);
    assert!(check.ok, "{side:?} CHECK failed: {}", check.raw);
    run(&dir, "DEL", &with_prev(&c, &result), &att).expect_ok("DEL");
    let host = host_side(dev);
    assert_eq!(
        ns_links(&ns),
        vec!["lo".to_string()],
        "{side:?}: links left"
    );
    (ctr, host, normalize_result(result, true))
}

fn differential(case: &str, c: Value, dev: &str, known: &[(&str, &str)]) {
    require_root();
    require_reference("host-device");
    require_reference("host-local");
    let (r_ctr, r_host, r_res) = observe(Side::Reference, &c, dev);
    let (f_ctr, f_host, f_res) = observe(Side::Ferry, &c, dev);
    assert_eq!(
        r_ctr.0.get("ctr/link/eth0/kind").map(String::as_str),
        Some("veth"),
        "{case}: the reference did not move the device in as eth0: {r_ctr:?}"
    );
    assert_eq!(r_host.0["host/dev/name"], dev, "{case}: not moved back");
    assert_same(case, &r_ctr, &f_ctr, known);
    assert_same(case, &r_host, &f_host, known);
    assert_eq!(
        r_res, f_res,
        "{case}: results differ (reference left, ferry right)"
    );
}

#[test]
fn differential_by_name_dual_stack() {
    require_root();
    let d = HostVeth::new("hdv");
    let c = conf(
        &unique("hdd"),
        json!({"device": d.a}),
        Some(
            json!({"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
            "ranges": [[{"subnet": "198.18.136.0/24"}], [{"subnet": "fd00:128:88::/64"}]]}),
        ),
    );
    differential("by name, dual-stack", c, &d.a, &[]);
}

#[test]
fn differential_by_mac_l2_only() {
    require_root();
    let d = HostVeth::new("hdv");
    sh(&format!("ip link set {} address 02:42:c6:12:88:07", d.a));
    let c = conf(&unique("hdd"), json!({"hwaddr": "02:42:C6:12:88:07"}), None);
    differential("by MAC, L2 only", c, &d.a, &[]);
}

#[test]
fn del_is_idempotent_and_survives_a_gone_namespace() {
    require_root();
    let d = HostVeth::new("hdv");
    let dir = PluginDir::new("host-device", Side::Ferry);
    let data = tempfile::tempdir().unwrap();
    let c = conf(
        &unique("hdx"),
        json!({"device": d.a}),
        Some(json!({"type": "host-local", "dataDir": data.path(),
            "ranges": [[{"subnet": "198.18.137.0/24"}]]})),
    );
    let name = c["name"].as_str().unwrap().to_string();
    let ns = Netns::new("hdx");
    let att = Att::new("hd-x", &ns.path(), "net7");
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD");
    assert_eq!(r["interfaces"][0]["name"], json!("net7"));
    let l = link_json(Some(&ns.name), "net7");
    assert_eq!(l["ifalias"], json!(d.a), "original name kept in the alias");
    assert!(
        l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "net7 not up"
    );
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL");
    assert!(
        !link_json(None, &d.a).is_null(),
        "{} not back on the host",
        d.a
    );
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("second DEL");
    assert!(leases(data.path(), &name).is_empty());

    // ADD again, then the namespace goes away (taking the veth with it).
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD again");
    sh(&format!("ip netns del {}", ns.name));
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL with the namespace gone");
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL again");
    assert!(leases(data.path(), &name).is_empty(), "lease not released");
}

#[test]
fn check_detects_drift() {
    require_root();
    let d = HostVeth::new("hdv");
    let dir = PluginDir::new("host-device", Side::Ferry);
    let data = tempfile::tempdir().unwrap();
    let c = conf(
        &unique("hdc"),
        json!({"device": d.a}),
        Some(json!({"type": "host-local", "dataDir": data.path(),
            "ranges": [[{"subnet": "198.18.138.0/24"}]]})),
    );
    let ns = Netns::new("hdc");
    let att = Att::new("hd-c", &ns.path(), "eth0");
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD");
    let prev = with_prev(&c, &r);
    assert!(run(&dir, "CHECK", &prev, &att).ok);
    let mut wrong = prev.clone();
    wrong["prevResult"]["interfaces"][0]["mac"] = json!("02:00:00:00:00:01");
    assert!(!run(&dir, "CHECK", &wrong, &att).ok);
    let mut other_ns = prev.clone();
    other_ns["prevResult"]["interfaces"][0]["sandbox"] = json!("/run/netns/elsewhere");
    assert!(!run(&dir, "CHECK", &other_ns, &att).ok);
    ns.exec(&format!(
        "ip addr del {} dev eth0",
        r["ips"][0]["address"].as_str().unwrap()
    ));
    assert!(!run(&dir, "CHECK", &prev, &att).ok);
    run(&dir, "DEL", &prev, &att).expect_ok("DEL");
    assert!(!link_json(None, &d.a).is_null());
}

#[test]
fn refused_configs_change_nothing() {
    require_root();
    let d = HostVeth::new("hdv");
    let dir = PluginDir::new("host-device", Side::Ferry);
    let data = tempfile::tempdir().unwrap();
    let ns = Netns::new("hdbad");
    let att = Att::new("hd-bad", &ns.path(), "eth0");
    let name = unique("hdbad");
    let ipam = json!({"type": "host-local", "dataDir": data.path(),
        "ranges": [[{"subnet": "198.18.139.0/24"}]]});
    let before = link_json(None, &d.a);
    let cases: Vec<(&str, Value, u64)> = vec![
        ("no selector", conf(&name, json!({}), Some(ipam.clone())), 7),
        (
            "unknown device",
            conf(&name, json!({"device": "hdnosuch0"}), Some(ipam.clone())),
            7,
        ),
        (
            "unknown MAC",
            conf(
                &name,
                json!({"hwaddr": "02:00:00:ee:ee:ee"}),
                Some(ipam.clone()),
            ),
            7,
        ),
        (
            "invalid MAC",
            conf(&name, json!({"hwaddr": "zz"}), Some(ipam.clone())),
            7,
        ),
        (
            "relative kernelpath",
            conf(
                &name,
                json!({"kernelpath": "devices/x"}),
                Some(ipam.clone()),
            ),
            7,
        ),
        (
            "unknown PCI address",
            conf(
                &name,
                json!({"pciBusID": "0000:ff:1f.7"}),
                Some(ipam.clone()),
            ),
            7,
        ),
        (
            "unknown runtimeConfig.deviceID",
            conf(
                &name,
                json!({"device": d.a, "runtimeConfig": {"deviceID": "0000:ff:1f.6"}}),
                Some(ipam.clone()),
            ),
            7,
        ),
        (
            "device of the wrong type",
            conf(&name, json!({"device": 5}), Some(ipam.clone())),
            6,
        ),
    ];
    for (what, c, code) in cases {
        let o = run(&dir, "ADD", &c, &att);
        assert_eq!(o.code(), code, "{what}: {}", o.raw);
    }
    let o = run_bytes(&dir, "ADD", b"{\"cniVersion\": ", &att);
    assert_eq!(o.code(), 6, "bad JSON: {}", o.raw);

    // CNI_IFNAME already in the container: code 4, the device stays put.
    ns.exec("ip link add eth0 type veth peer name eth0p");
    let c = conf(&name, json!({"device": d.a}), Some(ipam.clone()));
    let o = run(&dir, "ADD", &c, &att);
    assert_eq!(o.code(), 4, "ifname present: {}", o.raw);
    let after = link_json(None, &d.a);
    for k in ["ifname", "ifindex", "mtu", "address", "flags", "ifalias"] {
        assert_eq!(before[k], after[k], "device {k} changed");
    }

    // IPAM fails after the move: the device comes back as it was (name,
    // alias, up), and the container is as before.
    ns.exec("ip link del eth0");
    let c = conf(
        &name,
        json!({"device": d.a}),
        Some(json!({"type": "hdnosuchipam"})),
    );
    let o = run(&dir, "ADD", &c, &att);
    assert!(!o.ok, "ADD with a missing IPAM plugin succeeded");
    let after = link_json(None, &d.a);
    for k in ["ifname", "mtu", "address", "flags", "ifalias"] {
        assert_eq!(before[k], after[k], "device {k} changed by the rollback");
    }
    assert_eq!(ns_links(&ns), vec!["lo".to_string()]);
    assert!(
        leases(data.path(), &name).is_empty(),
        "an address was reserved"
    );
}
