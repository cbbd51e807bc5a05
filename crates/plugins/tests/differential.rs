//! The same conflists through Ferry's plugins and the reference Go plugins
//! (/usr/lib/cni, Debian containernetworking-plugins 1.1.1), one after the
//! other with the same names and subnets in fresh namespaces, comparing what
//! each leaves behind (links, MTU, MACs where configured, addresses, routes,
//! bridge ports and their flags, sysctls, lease files) and the results. Each
//! remaining difference is listed with its reason. Subnets: 198.18.16-31.0/24,
//! fd00:16::/48.

mod ferrypath;

use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ferry_testkit::snapshot::{self, Snapshot};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::PathBuf;

struct Observed {
    snapshot: Snapshot,
    result: Value,
}

const SYSCTLS_HOST: &[&str] = &["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

/// Runs ADD, snapshots, CHECKs, DELs twice and checks nothing is left.
fn observe(
    paths: Vec<PathBuf>,
    conf: &Value,
    bridge: Option<&str>,
    prefix: &str,
    check: bool,
) -> Observed {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut conf = conf.clone();
    let name = conf["name"].as_str().unwrap().to_string();
    for p in conf["plugins"].as_array_mut().unwrap() {
        if p.get("ipam").is_some_and(|i| i.get("type").is_some()) {
            p["ipam"]["dataDir"] = json!(data.path());
        }
    }
    let list = NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).unwrap()).unwrap();
    let rt = CniConfig::new(paths, cache.path());
    let mut cleanup = Cleanup::default();
    if let Some(b) = bridge {
        cleanup.link(b);
    }
    let ns = Netns::new(prefix);
    let att = RuntimeConf {
        container_id: "diff-ctr".into(),
        netns: ns.path(),
        ifname: "eth0".into(),
        ..RuntimeConf::default()
    };
    {
        let (rt, list, att) = (rt.clone(), list.clone(), att.clone());
        cleanup.push(move || {
            let _ = rt.del_network_list(&list.name.clone(), Some(&list), &att);
        });
    }
    let result = rt
        .add_network_list(&list, &att)
        .unwrap_or_else(|e| panic!("ADD failed with {:?}: {e}", rt.plugin_paths));
    let host_ifaces: Vec<String> = result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["sandbox"].as_str().unwrap_or("").is_empty())
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect();
    let configured_mac = conf["plugins"][0].pointer("/args/cni/mac").is_some();

    let mut snap = Snapshot::default();
    snap.namespace("ctr", Some(&ns.name), None, configured_mac);
    snap.namespace("host", None, Some(&host_ifaces), false);
    if let Some(b) = bridge {
        snap.bridge_ports(b);
    }
    snap.sysctls("host", None, SYSCTLS_HOST);
    let mut ctr_sysctls = vec![
        "net.ipv6.conf.eth0.disable_ipv6",
        "net.ipv6.conf.eth0.accept_dad",
    ];
    if let Some(b) = bridge {
        snap.sysctls("host", None, &[&format!("net.ipv6.conf.{b}.accept_ra")]);
    }
    ctr_sysctls.push("net.ipv6.conf.lo.disable_ipv6");
    snap.sysctls("ctr", Some(&ns.name), &ctr_sysctls);
    for f in files(&data.path().join(&name)) {
        if f == "ferry-index" {
            continue; // Ferry's release index, invisible to the reference
        }
        let content = std::fs::read_to_string(data.path().join(&name).join(&f)).unwrap_or_default();
        snap.insert(format!("lease/{f}"), content);
    }

    if check {
        if let Err(e) = rt.check_network_list(&name, Some(&list), &att) {
            panic!("CHECK failed with {:?}: {e}", rt.plugin_paths);
        }
    }
    rt.del_network_list(&name, Some(&list), &att).unwrap();
    rt.del_network_list(&name, Some(&list), &att).unwrap();
    assert!(!ns.exec_ok("ip link show eth0"), "eth0 left after DEL");
    for h in host_ifaces.iter().filter(|h| Some(h.as_str()) != bridge) {
        assert!(host_links(h).is_empty(), "{h} left after DEL");
    }
    let leases: Vec<String> = files(&data.path().join(&name))
        .into_iter()
        .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
        .collect();
    assert!(leases.is_empty(), "leases left after DEL: {leases:?}");
    Observed {
        snapshot: snap,
        result: normalize_result(result, bridge),
    }
}

/// Results differ in random parts only: MACs, host veth names, the sandbox path.
fn normalize_result(mut r: Value, bridge: Option<&str>) -> Value {
    for i in r["interfaces"].as_array_mut().into_iter().flatten() {
        if i.get("mac").is_some() {
            i["mac"] = json!("MAC");
        }
        if i["sandbox"].as_str().is_some_and(|s| !s.is_empty()) {
            i["sandbox"] = json!("NETNS");
        } else if Some(i["name"].as_str().unwrap_or("")) != bridge {
            i["name"] = json!("HOSTVETH");
        }
    }
    r
}

/// Ferry adds the IPv6 gateway address it owns (on the bridge, on a ptp host
/// veth) without DAD, so the gateway answers at once; the reference's stays
/// tentative for a second or two, without its local route until DAD ends.
const GATEWAY_NODAD: &[(&str, &str)] = &[
    (
        "::1/64: scope=global tentative | scope=global nodad",
        "gateway address without DAD",
    ),
    (
        "::1/128: scope=global tentative | scope=global nodad",
        "gateway address without DAD",
    ),
    (
        "::1/dbr",
        "the local route of the gateway address exists at once",
    ),
    (
        "::1/veth*: <none>",
        "the local route of the gateway address exists at once",
    ),
];

/// Runs one case through both and fails on any difference not in `known`
/// (each a key substring and the reason it is accepted).
fn differential(case: &str, conf: Value, bridge: Option<&str>, known: &[(&str, &str)]) {
    differential_with(case, conf, bridge, known, true)
}

/// `reference_check`: false where the reference's CHECK is known to be broken.
fn differential_with(
    case: &str,
    conf: Value,
    bridge: Option<&str>,
    known: &[(&str, &str)],
    reference_check: bool,
) {
    require_root();
    for p in ["bridge", "ptp", "host-local", "loopback"] {
        require_reference(p);
    }
    let ferry_dir = ferrypath::plugin_dir(None);
    let reference = observe(
        vec!["/usr/lib/cni".into()],
        &conf,
        bridge,
        "dfr",
        reference_check,
    );
    let ferry = observe(
        vec![ferry_dir.path().to_path_buf()],
        &conf,
        bridge,
        "dff",
        true,
    );
    snapshot::assert_same(case, &reference.snapshot, &ferry.snapshot, known);
    assert_eq!(
        reference.result, ferry.result,
        "{case}: results differ (reference left, ferry right)"
    );
}

fn bridge_conf(name: &str, bridge: &str, extra: Value, ipam: Value) -> Value {
    let mut p = json!({"type": "bridge", "bridge": bridge});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    if !ipam.is_null() {
        p["ipam"] = ipam;
    }
    json!({"cniVersion": "1.0.0", "name": name, "plugins": [p]})
}

fn host_local(ranges: Value) -> Value {
    json!({"type": "host-local", "ranges": ranges, "routes": [{"dst": "0.0.0.0/0"}]})
}

#[test]
fn bridge_gateway_ipv4() {
    let br = unique("dbr");
    let conf = bridge_conf(
        &unique("d-gw"),
        &br,
        json!({"isGateway": true}),
        host_local(json!([[{"subnet": "198.18.16.0/24"}]])),
    );
    differential("bridge isGateway IPv4", conf, Some(&br), &[]);
}

#[test]
fn bridge_default_gateway_dual_stack_mtu_hairpin() {
    let br = unique("dbr");
    let conf = bridge_conf(
        &unique("d-ds"),
        &br,
        json!({"isDefaultGateway": true, "mtu": 1400, "hairpinMode": true}),
        json!({"type": "host-local", "ranges": [
            [{"subnet": "198.18.17.0/24"}],
            [{"subnet": "fd00:16:17::/64"}]
        ]}),
    );
    differential(
        "bridge isDefaultGateway dual-stack",
        conf,
        Some(&br),
        GATEWAY_NODAD,
    );
}

#[test]
fn bridge_ipv6_only() {
    let br = unique("dbr");
    let conf = bridge_conf(
        &unique("d-v6"),
        &br,
        json!({"isGateway": true}),
        json!({"type": "host-local", "ranges": [[{"subnet": "fd00:16:18::/64"}]],
               "routes": [{"dst": "::/0"}]}),
    );
    differential("bridge IPv6 only", conf, Some(&br), GATEWAY_NODAD);
}

#[test]
fn bridge_promisc_mac_no_gateway() {
    let br = unique("dbr");
    let conf = bridge_conf(
        &unique("d-pm"),
        &br,
        json!({"promiscMode": true, "args": {"cni": {"mac": "0e:00:00:18:19:01"}}}),
        host_local(json!([[{"subnet": "198.18.19.0/24", "gateway": "198.18.19.254"}]])),
    );
    differential("bridge promiscMode, configured MAC", conf, Some(&br), &[]);
}

#[test]
fn bridge_layer2_only() {
    let br = unique("dbr");
    let conf = bridge_conf(&unique("d-l2"), &br, json!({}), Value::Null);
    // The reference bridge 1.1.1 fails CHECK without IPAM ("no plugin name
    // provided"): only Ferry's CHECK runs here.
    differential_with("bridge without IPAM", conf, Some(&br), &[], false);
}

#[test]
fn ptp_ipv4_mtu() {
    let conf = json!({"cniVersion": "1.0.0", "name": unique("d-ptp"), "plugins": [{
        "type": "ptp", "mtu": 1280,
        "ipam": host_local(json!([[{"subnet": "198.18.20.0/24"}]]))
    }]});
    differential("ptp IPv4", conf, None, &[]);
}

#[test]
fn ptp_dual_stack() {
    let conf = json!({"cniVersion": "1.0.0", "name": unique("d-ptp6"), "plugins": [{
        "type": "ptp",
        "ipam": {"type": "host-local", "ranges": [
            [{"subnet": "198.18.21.0/24"}], [{"subnet": "fd00:16:21::/64"}]
        ], "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    }]});
    differential("ptp dual-stack", conf, None, GATEWAY_NODAD);
}

#[test]
fn loopback() {
    let conf =
        json!({"cniVersion": "1.0.0", "name": unique("d-lo"), "plugins": [{"type": "loopback"}]});
    // loopback's interface is lo, not eth0: compare through the snapshot of lo.
    require_root();
    require_reference("loopback");
    let ferry_dir = ferrypath::plugin_dir(None);
    let mut results = Vec::new();
    for paths in [
        vec![PathBuf::from("/usr/lib/cni")],
        vec![ferry_dir.path().to_path_buf()],
    ] {
        let ns = Netns::new("dlo");
        let cache = tempfile::tempdir().unwrap();
        let list = NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).unwrap()).unwrap();
        let rt = CniConfig::new(paths, cache.path());
        let att = RuntimeConf {
            container_id: "lo-ctr".into(),
            netns: ns.path(),
            ifname: "lo".into(),
            ..RuntimeConf::default()
        };
        let r = rt.add_network_list(&list, &att).unwrap();
        let mut snap = Snapshot::default();
        snap.namespace("ctr", Some(&ns.name), None, false);
        rt.check_network_list(&list.name, Some(&list), &att)
            .unwrap();
        rt.del_network_list(&list.name, Some(&list), &att).unwrap();
        rt.del_network_list(&list.name, Some(&list), &att).unwrap();
        results.push((snap, normalize_result(r, None)));
    }
    assert_eq!(results[0].0.diff(&results[1].0), Vec::<String>::new());
    assert_eq!(results[0].1, results[1].1);
}
