//! Ferry's bridge and ptp plugins on their own and chained: reachability over
//! IPv4 and IPv6, 100 parallel ADDs, cross-chaining with the reference tuning
//! and bandwidth plugins, and bad config answering the right code with the
//! host unchanged. Subnets: 198.18.32-47.0/24 and 198.18.48.0/22, fd00:32::/48.

mod ferrypath;

use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ferry_testkit::*;
use serde_json::{json, Value};

/// A network under test. Field order is drop order: the DELs registered in
/// `dels` run first, while the plugin, cache and data dirs still exist.
struct Net {
    dels: std::sync::Mutex<Cleanup>,
    rt: CniConfig,
    list: NetworkConfigList,
    _plugins: tempfile::TempDir,
    _cache: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Net {
    /// `plugins`: the conflist's plugins; every `ipam` gets this network's data dir.
    fn new(name: &str, mut plugins: Value) -> Net {
        require_root();
        require_reference("host-local");
        let data = tempfile::tempdir().unwrap();
        for p in plugins.as_array_mut().unwrap() {
            if p.get("ipam").is_some() {
                p["ipam"]["dataDir"] = json!(data.path());
            }
        }
        let conf = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        let list = NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).unwrap()).unwrap();
        let plugins = ferrypath::plugin_dir(None);
        let cache = tempfile::tempdir().unwrap();
        Net {
            dels: Default::default(),
            rt: CniConfig::new(vec![plugins.path().to_path_buf()], cache.path()),
            list,
            _plugins: plugins,
            _cache: cache,
            data,
        }
    }

    fn att(&self, ns: &Netns, id: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: id.into(),
            netns: ns.path(),
            ifname: "eth0".into(),
            ..RuntimeConf::default()
        }
    }

    /// DELs `att` when the network is dropped (also on panic).
    fn del_on_drop(&self, att: &RuntimeConf) {
        let (rt, list, a) = (self.rt.clone(), self.list.clone(), att.clone());
        let mut dels = self.dels.lock().unwrap();
        dels.push(move || {
            let _ = rt.del_network_list(&list.name.clone(), Some(&list), &a);
        });
    }

    fn add(&self, att: &RuntimeConf) -> Value {
        self.del_on_drop(att);
        self.rt
            .add_network_list(&self.list, att)
            .unwrap_or_else(|e| panic!("ADD failed: {e}"))
    }

    fn del(&self, att: &RuntimeConf) {
        self.rt
            .del_network_list(&self.list.name, Some(&self.list), att)
            .unwrap_or_else(|e| panic!("DEL failed: {e}"));
    }

    fn leases(&self) -> Vec<String> {
        files(&self.data.path().join(&self.list.name))
            .into_iter()
            .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip") && f != "ferry-index")
            .collect()
    }
}

fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn ping(from: &Netns, to: &str) -> bool {
    let six = if to.contains(':') { "-6" } else { "" };
    from.exec_ok(&format!("ping {six} -c1 -W2 {to}"))
}

#[test]
fn bridge_dual_stack_and_ipv6_only_reachability() {
    let mut cleanup = Cleanup::default();
    for (case, ranges) in [
        (
            "dual",
            json!([[{"subnet": "198.18.32.0/24"}], [{"subnet": "fd00:32:1::/64"}]]),
        ),
        ("v6", json!([[{"subnet": "fd00:32:2::/64"}]])),
    ] {
        let br = unique("tbr");
        cleanup.link(&br);
        let net = Net::new(
            &unique(&format!("t-{case}")),
            json!([{"type": "bridge", "bridge": br, "isGateway": true,
                    "ipam": {"type": "host-local", "ranges": ranges}}]),
        );
        let (a, b) = (Netns::new("tba"), Netns::new("tbb"));
        let ra = net.add(&net.att(&a, "r-a"));
        let rb = net.add(&net.att(&b, "r-b"));
        let (ips_a, ips_b) = (addresses(&ra), addresses(&rb));
        assert_eq!(ips_a.len(), if case == "dual" { 2 } else { 1 });
        // The ports have no IPv6 of their own; the bridge still carries it.
        let port = ra["interfaces"][1]["name"].as_str().unwrap();
        assert_eq!(
            sh(&format!("cat /proc/sys/net/ipv6/conf/{port}/disable_ipv6")).trim(),
            "1",
            "{case}: bridge port {port}"
        );
        for ip in &ips_b {
            assert!(ping(&a, ip), "{case}: a cannot reach b at {ip}");
        }
        for ip in &ips_a {
            assert!(ping(&b, ip), "{case}: b cannot reach a at {ip}");
        }
        net.del(&net.att(&a, "r-a"));
        net.del(&net.att(&b, "r-b"));
        assert!(net.leases().is_empty());
        assert!(bridge_ports(&br).is_empty());
    }
}

#[test]
fn ptp_ipv6_reachability() {
    let net = Net::new(
        &unique("t-p6"),
        json!([{"type": "ptp", "ipam": {"type": "host-local",
                "ranges": [[{"subnet": "fd00:32:3::/64"}]], "routes": [{"dst": "::/0"}]}}]),
    );
    let (a, b) = (Netns::new("tpa"), Netns::new("tpb"));
    let _ra = net.add(&net.att(&a, "p-a"));
    let rb = net.add(&net.att(&b, "p-b"));
    let ip_b = &addresses(&rb)[0];
    assert!(ping(&a, ip_b), "a cannot reach b over ptp IPv6");
    net.del(&net.att(&a, "p-a"));
    net.del(&net.att(&b, "p-b"));
    assert!(net.leases().is_empty());
}

#[test]
fn hundred_parallel_adds_get_distinct_addresses_and_dels_leave_nothing() {
    let mut cleanup = Cleanup::default();
    let br = unique("tbh");
    cleanup.link(&br);
    let net = Net::new(
        &unique("t-100"),
        json!([{"type": "bridge", "bridge": br, "isGateway": true,
                "ipam": {"type": "host-local", "subnet": "198.18.48.0/22"}}]),
    );
    let namespaces: Vec<Netns> = (0..100).map(|_| Netns::new("th")).collect();
    let atts: Vec<RuntimeConf> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| net.att(ns, &format!("par-{i}")))
        .collect();
    for att in &atts {
        net.del_on_drop(att);
    }
    let results: Vec<Result<Value, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = atts
            .iter()
            .map(|att| {
                s.spawn(|| {
                    net.rt
                        .add_network_list(&net.list, att)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<String> = results
        .iter()
        .map(|r| {
            addresses(
                r.as_ref()
                    .unwrap_or_else(|e| panic!("parallel ADD failed: {e}")),
            )[0]
            .clone()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 100, "addresses are not distinct");
    assert_eq!(net.leases().len(), 100);
    assert_eq!(bridge_ports(&br).len(), 100);

    std::thread::scope(|s| {
        for att in &atts {
            s.spawn(|| net.del(att));
        }
    });
    assert!(net.leases().is_empty(), "leases left: {:?}", net.leases());
    assert!(
        bridge_ports(&br).is_empty(),
        "ports left: {:?}",
        bridge_ports(&br)
    );
    for ns in &namespaces {
        assert!(!ns.exec_ok("ip link show eth0"));
    }
}

#[test]
fn ferry_bridge_chains_with_reference_tuning_and_bandwidth() {
    require_reference("tuning");
    require_reference("bandwidth");
    let mut cleanup = Cleanup::default();
    let br = unique("tbc");
    cleanup.link(&br);
    let net = Net::new(
        &unique("t-chain"),
        json!([
            {"type": "bridge", "bridge": br, "isGateway": true,
             "ipam": {"type": "host-local", "subnet": "198.18.33.0/24"}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.log_martians": "1"}, "mtu": 1300},
            {"type": "bandwidth", "ingressRate": 8000000, "ingressBurst": 1000000,
             "egressRate": 8000000, "egressBurst": 1000000}
        ]),
    );
    let ns = Netns::new("tbc");
    let att = net.att(&ns, "chain-1");
    let r = net.add(&att);
    let host_veth = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let ifb: Vec<String> = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .filter(|n| n.starts_with("bwp"))
        .map(str::to_string)
        .collect();
    assert_eq!(ifb.len(), 1, "bandwidth added no ifb to the result: {r}");
    assert_eq!(
        ns.exec("cat /proc/sys/net/ipv4/conf/eth0/log_martians")
            .trim(),
        "1"
    );
    assert!(ns.exec("ip -j link show eth0").contains("\"mtu\":1300"));
    assert!(
        sh(&format!("tc qdisc show dev {host_veth}")).contains("tbf"),
        "no tbf on {host_veth}"
    );
    // The reference plugins' CHECK accepts Ferry's result as prevResult.
    net.rt
        .check_network_list(&net.list.name, Some(&net.list), &att)
        .unwrap();
    net.del(&att);
    assert!(host_links(&host_veth).is_empty());
    assert!(net.leases().is_empty());
    assert!(
        host_links(&ifb[0]).is_empty(),
        "bandwidth's ifb {} left behind",
        ifb[0]
    );
}

/// Runs ADD and expects `code`; nothing may be left: no lease, no host veth,
/// no interface in the namespace, and (when it did not exist) no bridge.
fn refused(plugin: Value, code: u64, needle: &str, ns: &Netns, bridge: &str) {
    let net = Net::new(&unique("t-bad"), json!([plugin]));
    let before_ns = ns.exec("ip -j link show");
    let err = net
        .rt
        .add_network_list(&net.list, &net.att(ns, "bad-1"))
        .expect_err("ADD should fail");
    assert_eq!(u64::from(err.code), code, "{err}");
    assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    assert!(net.leases().is_empty(), "lease left: {:?}", net.leases());
    assert_eq!(
        ns.exec("ip -j link show"),
        before_ns,
        "the namespace changed"
    );
    // A host veth cannot outlive its container end: an unchanged namespace
    // means no pair was left behind.
    let _ = bridge;
}

#[test]
fn bad_config_answers_the_right_code_and_changes_nothing() {
    let ns = Netns::new("tbad");
    let br = unique("tbx");
    let mut cleanup = Cleanup::default();
    cleanup.link(&br);
    let ipam = json!({"type": "host-local", "subnet": "198.18.34.0/24"});
    let bridge = |extra: Value| {
        let mut p = json!({"type": "bridge", "bridge": br, "ipam": ipam});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    refused(
        bridge(json!({"hairpinMode": true, "promiscMode": true})),
        7,
        "hairpin",
        &ns,
        &br,
    );
    refused(bridge(json!({"vlan": 100})), 2, "vlan", &ns, &br);
    refused(
        bridge(json!({"ipMasq": true, "ipMasqBackend": "ebpf"})),
        7,
        "ipMasq",
        &ns,
        &br,
    );
    refused(bridge(json!({"mtu": -5})), 7, "MTU", &ns, &br);
    refused(
        bridge(json!({"args": {"cni": {"mac": "not-a-mac"}}})),
        7,
        "MAC",
        &ns,
        &br,
    );
    refused(bridge(json!({"mtu": "big"})), 6, "netconf", &ns, &br);
    refused(
        bridge(json!({"ipam": {"subnet": "198.18.34.0/24"}})),
        7,
        "ipam",
        &ns,
        &br,
    );
    // A subnet too small for host-local: IPAM refuses before anything is made.
    refused(
        bridge(json!({"ipam": {"type": "host-local", "subnet": "198.18.35.0/31"}})),
        if ferry_plugins::find("host-local").is_some() {
            7
        } else {
            999
        },
        "198.18.35.0/31",
        &ns,
        &br,
    );
    assert!(
        host_links(&br).is_empty(),
        "the bridge was created for a refused ADD"
    );
    // A host link of the bridge's name that is not a bridge.
    let not_bridge = unique("tbn");
    sh(&format!(
        "ip link add {not_bridge} type veth peer name {not_bridge}p"
    ));
    cleanup.link(&not_bridge);
    let mut p = bridge(json!({}));
    p["bridge"] = json!(not_bridge);
    refused(p, 7, "not a bridge", &ns, &not_bridge);
    // CNI_IFNAME already present in the namespace.
    ns.exec("ip link add eth0 type veth peer name eth0p");
    refused(bridge(json!({})), 4, "already exists", &ns, &br);
    refused(
        json!({"type": "ptp", "ipam": {"type": "host-local", "subnet": "198.18.36.0/24"}}),
        4,
        "already exists",
        &ns,
        &br,
    );
    refused(json!({"type": "ptp"}), 7, "ipam", &ns, &br);
    refused(
        json!({"type": "ptp", "ipMasq": true, "ipMasqBackend": "ebpf", "ipam": {"type": "host-local", "subnet": "198.18.36.0/24"}}),
        7,
        "ipMasq",
        &ns,
        &br,
    );
}

#[test]
fn cni_1_1_0_gc_removes_exactly_the_stale_and_status_reports_exhaustion() {
    let br = unique("tbg");
    let mut links = Cleanup::default();
    links.link(&br);
    let mut net = Net::new(
        &unique("t-gc"),
        json!([{"type": "bridge", "bridge": br, "isGateway": true,
                "ipam": {"type": "host-local", "subnet": "198.18.37.0/29"}}]),
    );
    // Ferry's own plugins speak 1.1.0, so STATUS and GC reach them.
    net.list.cni_version = "1.1.0".into();
    net.rt.status_network_list(&net.list).unwrap();
    let (a, b, c) = (Netns::new("tga"), Netns::new("tgb"), Netns::new("tgc"));
    let ra = net.add(&net.att(&a, "gc-a"));
    net.add(&net.att(&b, "gc-b"));
    // c is added by another runtime (its own cache) and then its container dies:
    // only GC's valid list can tell that its lease is stale.
    let other_cache = tempfile::tempdir().unwrap();
    let other = CniConfig::new(net.rt.plugin_paths.clone(), other_cache.path());
    other
        .add_network_list(&net.list, &net.att(&c, "gc-c"))
        .unwrap();
    drop(c);
    assert_eq!(net.leases().len(), 3);

    let valid = [ferry_cni::runtime::Attachment {
        container_id: "gc-a".into(),
        ifname: "eth0".into(),
    }];
    net.rt.gc_network_list(&net.list, Some(&valid)).unwrap();
    assert_eq!(
        net.leases(),
        addresses(&ra),
        "GC must keep exactly a's lease"
    );
    assert!(
        !b.exec_ok("ip link show eth0"),
        "b (cached, not valid) was not DELeted"
    );
    assert!(a.exec_ok("ip link show eth0"), "a (valid) was touched");

    // Fill the /29 (5 usable addresses): STATUS then reports code 50.
    let more: Vec<Netns> = (0..4).map(|_| Netns::new("tgm")).collect();
    for (i, ns) in more.iter().enumerate() {
        net.add(&net.att(ns, &format!("gc-m{i}")));
    }
    let err = net.rt.status_network_list(&net.list).unwrap_err();
    assert_eq!(err.code, 50, "{err}");
    for (i, ns) in more.iter().enumerate() {
        net.del(&net.att(ns, &format!("gc-m{i}")));
    }
    net.del(&net.att(&a, "gc-a"));
    net.rt.status_network_list(&net.list).unwrap();
    assert!(net.leases().is_empty());
}

/// DEL leaves the kernel's slow part of the veth delete to a detached child
/// (`ferry_plugins::detach`), but its promise stands: when DEL answers, the
/// name is free in the container and both ends are gone from their
/// namespaces, so ADD with the same name can follow at once.
#[test]
fn del_frees_the_interface_before_it_answers() {
    let br = unique("tbd");
    let mut cleanup = Cleanup::default();
    cleanup.link(&br);
    for (case, plugin) in [
        (
            "bridge",
            json!({"type": "bridge", "bridge": br,
                   "ipam": {"type": "host-local", "subnet": "198.18.38.0/24"}}),
        ),
        (
            "ptp",
            json!({"type": "ptp", "ipam": {"type": "host-local", "subnet": "198.18.39.0/24"}}),
        ),
    ] {
        let net = Net::new(&unique("t-df"), json!([plugin]));
        let ns = Netns::new("tdf");
        for round in 0..5 {
            let att = net.att(&ns, &format!("df-{round}"));
            let r = net.add(&att);
            let host = r["interfaces"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["sandbox"].is_null())
                .filter_map(|i| i["name"].as_str())
                .find(|n| n.starts_with("veth"))
                .unwrap_or_else(|| panic!("{case}: no host veth in {r}"))
                .to_string();
            net.del(&att);
            // Asked over netlink at once, not through `ip`, which takes longer
            // to start than the kernel takes to unlist a link.
            let gone = ferry_linux::Netlink::new()
                .unwrap()
                .link_by_name(&host)
                .is_err_and(|e| e.is_not_found());
            assert!(
                gone,
                "{case}: host veth {host} still there when DEL answered"
            );
            let inside = ns.exec("ip -o link show");
            assert_eq!(
                inside.lines().count(),
                1,
                "{case}: round {round}: links left in the container:\n{inside}"
            );
        }
        assert!(net.leases().is_empty(), "{case}: {:?}", net.leases());
    }
}

/// An IPv4-only ptp attachment turns IPv6 off on its host veth (each host
/// end with IPv6 made every later ADD walk more IPv6 routes); IPv4 between
/// two containers still works, and a dual-stack one keeps IPv6 on.
#[test]
fn ptp_ipv4_only_host_veth_has_no_ipv6() {
    let net = Net::new(
        &unique("t-p4"),
        json!([{"type": "ptp", "ipam": {"type": "host-local", "subnet": "198.18.40.0/24"}}]),
    );
    let (a, b) = (Netns::new("tqa"), Netns::new("tqb"));
    let ra = net.add(&net.att(&a, "q-a"));
    let rb = net.add(&net.att(&b, "q-b"));
    let host_a = ra["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert_eq!(
        sh(&format!(
            "cat /proc/sys/net/ipv6/conf/{host_a}/disable_ipv6"
        ))
        .trim(),
        "1"
    );
    assert!(
        !sh(&format!("ip -6 addr show dev {host_a}")).contains("fe80"),
        "{host_a} has an IPv6 link-local address"
    );
    assert!(
        ping(&a, &addresses(&rb)[0]),
        "a cannot reach b over ptp IPv4"
    );

    let dual = Net::new(
        &unique("t-p46"),
        json!([{"type": "ptp", "ipam": {"type": "host-local",
                "ranges": [[{"subnet": "198.18.41.0/24"}], [{"subnet": "fd00:32:4::/64"}]]}}]),
    );
    let c = Netns::new("tqc");
    let rc = dual.add(&dual.att(&c, "q-c"));
    let host_c = rc["interfaces"][0]["name"].as_str().unwrap();
    assert_eq!(
        sh(&format!(
            "cat /proc/sys/net/ipv6/conf/{host_c}/disable_ipv6"
        ))
        .trim(),
        "0"
    );
}
