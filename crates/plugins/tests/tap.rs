//! tap (root): TAP devices created in the container's namespace with MAC,
//! MTU, multi-queue, owner and group, optionally on a bridge there; DEL
//! idempotence, CHECK and refused configs. The reference tap plugin arrived
//! in containernetworking-plugins 1.2.0 and Debian 12 ships 1.1.1, so the
//! differential test is ignored unless a newer reference is installed
//! (`--ignored`). Subnets: 198.18.140-143.0/24, fd00:128:8c::/64.

mod l2common;

use ferry_testkit::*;
use l2common::*;
use serde_json::{json, Value};

fn conf(name: &str, extra: Value, ipam: Option<Value>) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": name, "type": "tap"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    if let Some(i) = ipam {
        c["ipam"] = i;
    }
    c
}

fn flags(l: &Value) -> Vec<String> {
    l["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

#[test]
fn tap_with_every_option_dual_stack() {
    require_root();
    let dir = PluginDir::new("tap", Side::Ferry);
    let data = tempfile::tempdir().unwrap();
    let c = conf(
        &unique("tpf"),
        json!({"mac": "02:42:c6:12:8c:05", "mtu": 1400, "multiQueue": true,
               "owner": 4242, "group": 4343}),
        Some(json!({"type": "host-local", "dataDir": data.path(),
            "ranges": [[{"subnet": "198.18.140.0/24"}], [{"subnet": "fd00:128:8c::/64"}]]})),
    );
    let name = c["name"].as_str().unwrap().to_string();
    let ns = Netns::new("tpf");
    let att = Att::new("tp-f", &ns.path(), "tap0");
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD");
    assert_eq!(
        r["interfaces"],
        json!([{"name": "tap0", "mac": "02:42:c6:12:8c:05", "sandbox": ns.path()}])
    );
    assert_eq!(r["ips"][0]["interface"], json!(0));
    assert_eq!(r["ips"][1]["interface"], json!(0));

    let l = link_json(Some(&ns.name), "tap0");
    assert_eq!(l["linkinfo"]["info_kind"], json!("tun"));
    let info = &l["linkinfo"]["info_data"];
    assert_eq!(info["type"], json!("tap"));
    assert_eq!(info["multi_queue"], json!(true));
    assert_eq!(info["persist"], json!(true));
    assert_eq!(info["pi"], json!(false));
    assert_eq!(l["mtu"], json!(1400));
    assert_eq!(l["address"], json!("02:42:c6:12:8c:05"));
    assert!(flags(&l).contains(&"UP".to_string()));
    assert_eq!(ns.exec("cat /sys/class/net/tap0/owner").trim(), "4242");
    assert_eq!(ns.exec("cat /sys/class/net/tap0/group").trim(), "4343");
    let addrs = ns.exec("ip -o addr show dev tap0");
    assert!(addrs.contains("198.18.140.2/24"), "{addrs}");
    assert!(addrs.contains("fd00:128:8c::2/64"), "{addrs}");
    assert_eq!(
        ns.exec("cat /proc/sys/net/ipv4/conf/tap0/arp_notify")
            .trim(),
        "1"
    );

    let prev = with_prev(&c, &r);
    let o = run(&dir, "CHECK", &prev, &att);
    assert!(o.ok, "CHECK: {}", o.raw);
    let mut wrong = prev.clone();
    wrong["prevResult"]["interfaces"][0]["mac"] = json!("02:00:00:00:00:01");
    assert!(!run(&dir, "CHECK", &wrong, &att).ok);

    run(&dir, "DEL", &prev, &att).expect_ok("DEL");
    assert!(link_json(Some(&ns.name), "tap0").is_null());
    run(&dir, "DEL", &prev, &att).expect_ok("second DEL");
    assert!(leases(data.path(), &name).is_empty());

    // DEL with the namespace gone releases the address.
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD again");
    assert_eq!(leases(data.path(), &name).len(), 2);
    sh(&format!("ip netns del {}", ns.name));
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL with the namespace gone");
    assert!(leases(data.path(), &name).is_empty(), "leases not released");
}

#[test]
fn tap_on_a_bridge_in_the_container_l2_only() {
    require_root();
    let dir = PluginDir::new("tap", Side::Ferry);
    let ns = Netns::new("tpb");
    ns.exec("ip link add br0 type bridge");
    let c = conf(&unique("tpb"), json!({"bridge": "br0"}), None);
    let att = Att::new("tp-b", &ns.path(), "tap1");
    let r = run(&dir, "ADD", &c, &att).expect_ok("ADD");
    assert!(r.get("ips").is_none(), "L2 only: {r}");
    let l = link_json(Some(&ns.name), "tap1");
    assert_eq!(l["master"], json!("br0"));
    assert_eq!(l["linkinfo"]["info_data"]["multi_queue"], json!(false));
    // No owner or group: -1 in sysfs.
    assert_eq!(ns.exec("cat /sys/class/net/tap1/owner").trim(), "-1");
    assert!(run(&dir, "CHECK", &with_prev(&c, &r), &att).ok);
    run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL");
    let mut links = ns_links(&ns);
    links.sort();
    assert_eq!(links, vec!["br0", "lo"]);
}

#[test]
fn refused_configs_change_nothing() {
    require_root();
    let dir = PluginDir::new("tap", Side::Ferry);
    let data = tempfile::tempdir().unwrap();
    let ns = Netns::new("tpbad");
    ns.exec("ip link add notbr0 type veth peer name notbr1");
    let att = Att::new("tp-bad", &ns.path(), "tap0");
    let name = unique("tpbad");
    let ipam = json!({"type": "host-local", "dataDir": data.path(),
        "ranges": [[{"subnet": "198.18.141.0/24"}]]});
    let cases: Vec<(&str, Value, u64)> = vec![
        (
            "missing bridge",
            conf(&name, json!({"bridge": "nosuchbr"}), Some(ipam.clone())),
            7,
        ),
        (
            "bridge that is no bridge",
            conf(&name, json!({"bridge": "notbr0"}), Some(ipam.clone())),
            7,
        ),
        (
            "selinuxContext",
            conf(
                &name,
                json!({"selinuxContext": "system_u:system_r:container_t:s0"}),
                Some(ipam.clone()),
            ),
            2,
        ),
        (
            "selinuxcontext (README spelling)",
            conf(
                &name,
                json!({"selinuxcontext": "system_u:system_r:container_t:s0"}),
                Some(ipam.clone()),
            ),
            2,
        ),
        (
            "negative MTU",
            conf(&name, json!({"mtu": -1}), Some(ipam.clone())),
            7,
        ),
        (
            "invalid MAC",
            conf(&name, json!({"mac": "02:42"}), Some(ipam.clone())),
            7,
        ),
        (
            "owner of the wrong type",
            conf(&name, json!({"owner": "root"}), Some(ipam.clone())),
            6,
        ),
    ];
    for (what, c, code) in cases {
        let o = run(&dir, "ADD", &c, &att);
        assert_eq!(o.code(), code, "{what}: {}", o.raw);
    }
    let o = run_bytes(&dir, "ADD", b"[", &att);
    assert_eq!(o.code(), 6, "bad JSON: {}", o.raw);

    ns.exec("ip tuntap add dev tap0 mode tap");
    let o = run(
        &dir,
        "ADD",
        &conf(&name, json!({}), Some(ipam.clone())),
        &att,
    );
    assert_eq!(o.code(), 4, "ifname present: {}", o.raw);

    // IPAM fails after the tap exists: the tap goes again.
    let att1 = Att::new("tp-bad", &ns.path(), "tap1");
    let c = conf(&name, json!({}), Some(json!({"type": "tpnosuchipam"})));
    assert!(!run(&dir, "ADD", &c, &att1).ok);

    let mut links = ns_links(&ns);
    links.sort();
    assert_eq!(links, vec!["lo", "notbr0", "notbr1", "tap0"]);
    assert!(
        leases(data.path(), &name).is_empty(),
        "an address was reserved"
    );
}

/// Needs a reference tap (containernetworking-plugins >= 1.2.0).
#[test]
#[ignore = "the reference tap plugin is in containernetworking-plugins >= 1.2.0; Debian 12 ships 1.1.1"]
fn differential_against_the_reference() {
    require_root();
    require_reference("tap");
    let mut seen = Vec::new();
    for side in [Side::Reference, Side::Ferry] {
        let dir = PluginDir::new("tap", side);
        let data = tempfile::tempdir().unwrap();
        let c = conf(
            "tpdiff",
            json!({"mac": "02:42:c6:12:8e:05", "mtu": 1400, "multiQueue": true}),
            Some(json!({"type": "host-local", "dataDir": data.path(),
                "ranges": [[{"subnet": "198.18.142.0/24"}]]})),
        );
        let ns = Netns::new("tpd");
        let att = Att::new("tp-d", &ns.path(), "tap0");
        let r = run(&dir, "ADD", &c, &att).expect_ok(&format!("{side:?} ADD"));
        seen.push((
            snapshot(&ns, "tap0", true),
            normalize_result(r.clone(), true),
        ));
        run(&dir, "DEL", &with_prev(&c, &r), &att).expect_ok("DEL");
    }
    assert_same("tap", &seen[0].0, &seen[1].0, &[]);
    assert_eq!(seen[0].1, seen[1].1);
}
