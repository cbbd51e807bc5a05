//! Ferry's runtime drives Debian's reference plugins (/usr/lib/cni) through
//! ADD, CHECK, STATUS, GC and DEL in namespaces the tests create, and checks
//! what is left behind. Subnets: 198.18.1.0/24 .. 198.18.15.0/24.

use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{Attachment, CniConfig, RuntimeConf};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;

fn runtime(cache: &Path) -> CniConfig {
    CniConfig::new(vec!["/usr/lib/cni".into()], cache)
}

fn attach(ns: &Netns, id: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.to_string(),
        netns: ns.path(),
        ifname: "eth0".into(),
        ..RuntimeConf::default()
    }
}

fn list(v: Value) -> NetworkConfigList {
    NetworkConfigList::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap()
}

/// The container's address (without prefix) from a 1.0.0 result.
fn address(result: &Value) -> String {
    let a = result["ips"][0]["address"]
        .as_str()
        .expect("result has an address");
    a.split('/').next().unwrap().to_string()
}

/// Names of host-side interfaces in a result (those without a sandbox).
fn host_interfaces(result: &Value) -> Vec<String> {
    result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["sandbox"].as_str().unwrap_or("").is_empty())
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

/// DELs the attachment when the guard drops (best effort, also on panic), so a
/// failing test leaves no links, leases or rules behind.
fn del_on_drop(cleanup: &mut Cleanup, rt: &CniConfig, conf: &NetworkConfigList, att: &RuntimeConf) {
    let (rt, conf, att) = (rt.clone(), conf.clone(), att.clone());
    cleanup.push(move || {
        let _ = rt.del_network_list(&conf.name.clone(), Some(&conf), &att);
    });
}

fn assert_has_address(ns: &Netns, ip: &str) {
    let out = ns.exec("ip -j addr show dev eth0");
    assert!(out.contains(ip), "{ip} not on eth0 in {}: {out}", ns.name);
}

fn leases(data: &Path, network: &str) -> Vec<String> {
    files(&data.join(network))
        .into_iter()
        .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
        .collect()
}

#[test]
fn bridge_host_local_add_check_status_gc_del() {
    require_root();
    require_reference("bridge");
    require_reference("host-local");
    // Dropped last: the guard DELs with the cache and data dirs still present.
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::default();
    let bridge = unique("rtbr");
    cleanup.link(&bridge);
    let name = unique("rt-br");
    let conf = list(json!({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{
            "type": "bridge", "bridge": bridge, "isGateway": true,
            "ipam": {"type": "host-local", "subnet": "198.18.1.0/24", "dataDir": data.path()}
        }]
    }));
    let rt = runtime(cache.path());
    let (a, b) = (Netns::new("rta"), Netns::new("rtb"));
    del_on_drop(&mut cleanup, &rt, &conf, &attach(&a, "ctr-a"));
    del_on_drop(&mut cleanup, &rt, &conf, &attach(&b, "ctr-b"));

    let ra = rt.add_network_list(&conf, &attach(&a, "ctr-a")).unwrap();
    let rb = rt.add_network_list(&conf, &attach(&b, "ctr-b")).unwrap();
    assert_eq!(ra["cniVersion"], "1.0.0");
    let (ipa, ipb) = (address(&ra), address(&rb));
    assert!(ipa.starts_with("198.18.1.") && ipb.starts_with("198.18.1.") && ipa != ipb);
    assert_has_address(&a, &ipa);
    assert_has_address(&b, &ipb);
    assert!(
        a.exec_ok(&format!("ping -c1 -W2 {ipb}")),
        "a cannot reach b"
    );
    assert_eq!(bridge_ports(&bridge).len(), 2);
    assert_eq!(
        leases(data.path(), &name),
        vec![ipa.clone(), ipb.clone()]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );

    rt.check_network_list(&name, Some(&conf), &attach(&a, "ctr-a"))
        .unwrap();
    rt.status_network_list(&conf).unwrap();

    // GC with only a valid: b is DELeted through its cache entry, a is untouched.
    let valid = [Attachment {
        container_id: "ctr-a".into(),
        ifname: "eth0".into(),
    }];
    rt.gc_network_list(&conf, Some(&valid)).unwrap();
    assert_eq!(leases(data.path(), &name), vec![ipa.clone()]);
    assert!(!b.exec_ok("ip link show eth0"), "b's interface survived GC");
    assert_eq!(bridge_ports(&bridge).len(), 1);
    assert_eq!(
        files(&cache.path().join("results")),
        vec![format!("{name}-ctr-a-eth0")]
    );

    let host_a: Vec<String> = host_interfaces(&ra)
        .into_iter()
        .filter(|h| *h != bridge)
        .collect();
    assert_eq!(host_a.len(), 1, "one host veth expected in {ra}");
    rt.del_network_list(&name, Some(&conf), &attach(&a, "ctr-a"))
        .unwrap();
    // DEL is idempotent, also without a cache entry and after the namespace is gone.
    rt.del_network_list(&name, Some(&conf), &attach(&a, "ctr-a"))
        .unwrap();
    drop(a);
    rt.del_network_list(
        &name,
        Some(&conf),
        &RuntimeConf {
            netns: String::new(),
            ..attach(&b, "ctr-a")
        },
    )
    .unwrap();

    assert!(leases(data.path(), &name).is_empty());
    assert!(files(&cache.path().join("results")).is_empty());
    assert!(bridge_ports(&bridge).is_empty());
    for h in host_a {
        assert!(host_links(&h).is_empty(), "host veth {h} left behind");
    }
}

#[test]
fn ptp_host_local_reachability_and_clean_del() {
    require_root();
    require_reference("ptp");
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let name = unique("rt-ptp");
    let conf = list(json!({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{
            "type": "ptp", "mtu": 1400,
            "ipam": {"type": "host-local", "subnet": "198.18.2.0/24", "dataDir": data.path()}
        }]
    }));
    let rt = runtime(cache.path());
    let (a, b) = (Netns::new("rpa"), Netns::new("rpb"));
    let mut cleanup = Cleanup::default();
    del_on_drop(&mut cleanup, &rt, &conf, &attach(&a, "ptp-a"));
    del_on_drop(&mut cleanup, &rt, &conf, &attach(&b, "ptp-b"));
    let ra = rt.add_network_list(&conf, &attach(&a, "ptp-a")).unwrap();
    let rb = rt.add_network_list(&conf, &attach(&b, "ptp-b")).unwrap();
    for h in host_interfaces(&ra).into_iter().chain(host_interfaces(&rb)) {
        cleanup.link(&h);
    }
    let (ipa, ipb) = (address(&ra), address(&rb));
    assert_has_address(&a, &ipa);
    assert!(a.exec("ip -j link show eth0").contains("\"mtu\":1400"));
    assert!(
        a.exec_ok(&format!("ping -c1 -W2 {ipb}")),
        "a cannot reach b over ptp"
    );
    rt.check_network_list(&name, Some(&conf), &attach(&b, "ptp-b"))
        .unwrap();

    for (ns, id, r) in [(&a, "ptp-a", &ra), (&b, "ptp-b", &rb)] {
        rt.del_network_list(&name, Some(&conf), &attach(ns, id))
            .unwrap();
        for h in host_interfaces(r) {
            assert!(host_links(&h).is_empty(), "host veth {h} left behind");
        }
        assert!(!ns.exec_ok("ip link show eth0"));
    }
    assert!(leases(data.path(), &name).is_empty());
    assert!(files(&cache.path().join("results")).is_empty());
}

fn ruleset() -> String {
    sh("iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; nft list ruleset 2>/dev/null")
}

#[test]
fn full_chain_bridge_portmap_firewall_tuning_bandwidth() {
    require_root();
    for p in [
        "bridge",
        "host-local",
        "portmap",
        "firewall",
        "tuning",
        "bandwidth",
    ] {
        require_reference(p);
    }
    // The reference's iptables tables and chains, which it keeps, go when
    // this binary's last guard does.
    let _tables = forward_rule_guard();
    // Dropped last: the guard DELs with the cache and data dirs still present.
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::default();
    let bridge = unique("rtfc");
    cleanup.link(&bridge);
    let name = unique("rt-full");
    let conf = list(json!({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "subnet": "198.18.3.0/24", "dataDir": data.path()}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning", "sysctl": {"net.core.somaxconn": "511"}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}}
        ]
    }));
    let rt = runtime(cache.path());
    let (a, b) = (Netns::new("rfa"), Netns::new("rfb"));
    let mut ra_conf = attach(&a, "full-a");
    ra_conf.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 18431, "containerPort": 80, "protocol": "tcp"}]),
    );
    ra_conf.capability_args.insert(
        "bandwidth".into(),
        json!({"ingressRate": 8000000, "ingressBurst": 1000000, "egressRate": 8000000, "egressBurst": 1000000}),
    );
    del_on_drop(&mut cleanup, &rt, &conf, &ra_conf);
    del_on_drop(&mut cleanup, &rt, &conf, &attach(&b, "full-b"));
    let ra = rt.add_network_list(&conf, &ra_conf).unwrap();
    let rb = rt.add_network_list(&conf, &attach(&b, "full-b")).unwrap();
    let host_a: Vec<String> = host_interfaces(&ra)
        .into_iter()
        .filter(|h| *h != bridge)
        .collect();
    for h in host_a.iter().chain(host_interfaces(&rb).iter()) {
        if *h != bridge {
            cleanup.link(h);
        }
    }
    let (ipa, ipb) = (address(&ra), address(&rb));
    assert_has_address(&a, &ipa);
    assert!(
        b.exec_ok(&format!("ping -c1 -W2 {ipa}")),
        "b cannot reach a"
    );
    assert_eq!(a.exec("cat /proc/sys/net/core/somaxconn").trim(), "511");
    assert!(
        ruleset().contains(&ipa),
        "no firewall/portmap rule mentions {ipa}"
    );
    assert!(
        sh("tc qdisc show").contains("tbf"),
        "bandwidth installed no tbf qdisc"
    );
    // The reference portmap 1.1.1 fails CHECK on IPv4-only attachments ("could not
    // check ipv6 dnat: chain ... not found"), a bug of that version: accept only that
    // failure from portmap; every other plugin's CHECK must pass.
    if let Err(e) = rt.check_network_list(&name, Some(&conf), &ra_conf) {
        assert!(
            e.msg.contains("\"portmap\" failed (CHECK)") && e.msg.contains("ipv6 dnat"),
            "CHECK failed: {e}"
        );
    }

    rt.del_network_list(&name, Some(&conf), &ra_conf).unwrap();
    rt.del_network_list(&name, Some(&conf), &attach(&b, "full-b"))
        .unwrap();
    let rules = ruleset();
    for ip in [&ipa, &ipb] {
        assert!(
            !rules.contains(ip.as_str()),
            "rules for {ip} left after DEL:\n{rules}"
        );
    }
    for h in &host_a {
        assert!(host_links(h).is_empty(), "{h} left behind after DEL");
    }
    assert!(leases(data.path(), &name).is_empty());
    assert!(files(&cache.path().join("results")).is_empty());
    assert!(bridge_ports(&bridge).is_empty());
}

#[test]
fn validate_a_whole_list_with_version() {
    require_reference("bridge");
    require_reference("portmap");
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let ok = list(json!({
        "cniVersion": "1.0.0", "name": "val-ok",
        "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local", "subnet": "198.18.10.0/24"}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    }));
    assert_eq!(
        rt.validate_network_list(&ok).unwrap(),
        vec!["portMappings".to_string()]
    );
    // The reference plugins stop at 1.0.0: a 1.1.0 list is refused, naming the plugin.
    let newer =
        list(json!({"cniVersion": "1.1.0", "name": "val-new", "plugins": [{"type": "bridge"}]}));
    let err = rt.validate_network_list(&newer).unwrap_err();
    assert_eq!(err.code, 1, "{err}");
    assert!(err.to_string().contains("bridge"), "{err}");
    // A missing IPAM plugin is found before anything runs.
    let no_ipam = list(json!({"cniVersion": "1.0.0", "name": "val-ipam",
        "plugins": [{"type": "bridge", "ipam": {"type": "no-such-ipam"}}]}));
    let err = rt.validate_network_list(&no_ipam).unwrap_err();
    assert_eq!(err.code, 7, "{err}");
    assert!(err.to_string().contains("no-such-ipam"), "{err}");
}
