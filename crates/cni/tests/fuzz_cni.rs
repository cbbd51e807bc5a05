//! Property/fuzz tests of everything ferry-cni reads from outside: network
//! configs and conflists, plugin results of every version (and their
//! conversions), plugin VERSION output and the libcni cache files.
//!
//! Each property runs `ferry_testkit::fuzz_cases()` cases (256 by default,
//! `FERRY_FUZZ_CASES` raises it). "No panic" is the property wherever an
//! input is only read; the conversions also check what they keep.

use ferry_cni::cache::{Cache, CachedAttachment, CACHE_KIND};
use ferry_cni::config::{self, NetworkConfigList};
use ferry_cni::result::{self, Dns, Interface, IpConfig, Route};
use ferry_cni::version::{self, PluginInfo};
use ipnet::IpNet;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: ferry_testkit::fuzz_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0", "0.2.0", "0.1.0", "", "1", "9.9.9", "a.b"
        ])
        .prop_map(|s| Value::String(s.into())),
        prop::sample::select(vec![
            "198.18.92.1/22",
            "198.18.92.1",
            "fd00::1/64",
            "fd00::1",
            "0.0.0.0/0",
            "::/0",
            "300.1.1.1/24",
            "1.2.3.4/33",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Keys the parsers look at, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "cniVersion",
            "cniVersions",
            "name",
            "type",
            "plugins",
            "disableCheck",
            "disableGC",
            "loadOnlyInlinedPlugins",
            "capabilities",
            "ipam",
            "ips",
            "ip",
            "ip4",
            "ip6",
            "interfaces",
            "interface",
            "routes",
            "dns",
            "address",
            "gateway",
            "dst",
            "gw",
            "mtu",
            "table",
            "scope",
            "version",
            "supportedVersions",
            "kind",
            "containerId",
            "config",
            "ifName",
            "networkName",
            "cniArgs",
            "capabilityArgs",
            "result",
        ])
        .prop_map(String::from),
        "[a-zA-Z]{1,8}",
    ]
}

/// A conflist-shaped object whose fields are sometimes the right type and
/// sometimes anything.
fn conflist_like() -> impl Strategy<Value = Value> {
    let plugin = (
        prop_oneof![Just(json!("bridge")), Just(json!("../x")), any_json()],
        any_json(),
        prop::collection::vec((key(), any_json()), 0..4),
    )
        .prop_map(|(t, ipam, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("type".into(), t);
            m.insert("ipam".into(), ipam);
            Value::Object(m)
        });
    (
        prop_oneof![Just(json!("net1")), any_json()],
        any_json(),
        prop_oneof![
            prop::collection::vec(
                prop::sample::select(vec!["1.1.0", "0.4.0", "2.0.0", "x"]),
                0..4
            )
            .prop_map(|v| json!(v)),
            any_json()
        ],
        prop_oneof![
            prop::collection::vec(plugin, 0..4).prop_map(Value::Array),
            any_json()
        ],
        any_json(),
    )
        .prop_map(|(name, ver, vers, plugins, flag)| {
            json!({"name": name, "cniVersion": ver, "cniVersions": vers,
                   "plugins": plugins, "disableCheck": flag})
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conflist_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = NetworkConfigList::from_bytes(&bytes);
        let _ = NetworkConfigList::from_single_conf(&bytes);
    }

    #[test]
    fn conflist_from_structured_json(v in conflist_like()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(list) = NetworkConfigList::from_bytes(&bytes) {
            // What loads can be run: its effective form loads again.
            let _ = list.effective();
            for p in &list.plugins {
                let _ = (p.capabilities(), p.ipam_type());
            }
        }
        let _ = NetworkConfigList::from_single_conf(&bytes);
    }

    #[test]
    fn conflist_byte_mutations(v in conflist_like(), cut in any::<prop::sample::Index>(),
                               flip in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        let i = flip.index(bytes.len());
        bytes[i] = b;
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = NetworkConfigList::from_bytes(&bytes);
    }


    #[test]
    fn result_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512),
                                   to in version_strategy()) {
        if let Ok(r) = result::parse_result(bytes.as_slice(), "") {
            let _ = r.validate();
            let _ = r.to_version(&to);
        }
    }

    #[test]
    fn result_from_structured_json(v in result_like(), fallback in version_strategy(),
                                   to in version_strategy()) {
        if let Ok(r) = result::parse_result(&v, &fallback) {
            let _ = r.validate();
            if let Ok(out) = r.to_version(&to) {
                // Whatever Ferry writes, it reads back.
                prop_assert!(result::parse_result(&out, "").is_ok(), "{out}");
            }
        }
        let _ = result::convert(&v, &to);
    }

    /// A 1.x result written as 1.x and read back is unchanged.
    #[test]
    fn result_round_trip_1x(r in canonical_result(), to in prop::sample::select(vec!["1.0.0", "1.1.0"])) {
        let back = result::parse_result(r.to_version(to).unwrap(), "").unwrap();
        prop_assert_eq!(back, Result_{ cni_version: to.to_string(), ..r });
    }

    /// 1.x -> 0.3/0.4 -> 1.x keeps everything 0.4.0 can hold and drops the rest.
    #[test]
    fn result_round_trip_040(r in canonical_result(),
                             old in prop::sample::select(vec!["0.3.0", "0.3.1", "0.4.0"])) {
        let wire = r.to_version(old).unwrap();
        for ip in wire["ips"].as_array().into_iter().flatten() {
            let fam = if ip["address"].as_str().unwrap().contains(':') { "6" } else { "4" };
            prop_assert_eq!(ip["version"].as_str(), Some(fam));
        }
        let back = result::parse_result(&wire, "").unwrap();
        let expect = Result_ {
            cni_version: old.to_string(),
            interfaces: r.interfaces.iter().map(|i| Interface {
                name: i.name.clone(), mac: i.mac.clone(), sandbox: i.sandbox.clone(),
                ..Interface::default()
            }).collect(),
            routes: r.routes.iter().map(|rt| Route::new(rt.dst, rt.gw)).collect(),
            ..r.clone()
        };
        prop_assert_eq!(back, expect);
    }

    /// 1.x -> 0.1/0.2 -> 1.x keeps the (at most one per family) addresses,
    /// their gateways, the routes of families that have an address (v4
    /// first) and DNS; it refuses a result it would lose addresses of.
    #[test]
    fn result_round_trip_020(r in canonical_result(), old in prop::sample::select(vec!["0.1.0", "0.2.0"])) {
        let v4: Vec<&IpConfig> = r.ips.iter().filter(|i| i.is_ipv4()).collect();
        let v6: Vec<&IpConfig> = r.ips.iter().filter(|i| !i.is_ipv4()).collect();
        let converted = r.to_version(old);
        if v4.len() > 1 || v6.len() > 1 || r.ips.is_empty() {
            prop_assert!(converted.is_err());
            return Ok(());
        }
        let back = result::parse_result(converted.unwrap(), "").unwrap();
        let ips: Vec<IpConfig> = v4.iter().chain(v6.iter())
            .map(|i| IpConfig::new(i.address, i.gateway)).collect();
        let fam = |v4wanted: bool| r.routes.iter()
            .filter(move |rt| matches!(rt.dst, IpNet::V4(_)) == v4wanted)
            .map(|rt| Route::new(rt.dst, rt.gw));
        let mut routes = Vec::new();
        if !v4.is_empty() { routes.extend(fam(true)); }
        if !v6.is_empty() { routes.extend(fam(false)); }
        prop_assert_eq!(back, Result_ {
            cni_version: old.to_string(), interfaces: vec![], ips, routes, dns: r.dns.clone()
        });
    }

    #[test]
    fn version_strings(s in ".{0,24}", t in "[0-9.]{0,12}") {
        let _ = version::parse(&s);
        let _ = version::greater_than_or_equal_to(&s, &t);
        let _ = version::greater_than(&t, &s);
        let _ = version::PluginInfo::starting_from(&s);
        let _ = version::check_supported(&s, version::SUPPORTED);
    }

    #[test]
    fn plugin_version_output(v in prop_oneof![
        any_json(),
        (any_json(), any_json()).prop_map(|(c, s)| json!({"cniVersion": c, "supportedVersions": s})),
    ]) {
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(info) = PluginInfo::decode(&bytes) {
            let _ = info.check("1.1.0");
        }
    }


}

/// Properties that write files (and fsync) run a fiftieth of the cases
/// (at least 64): the disk, not the parser, would bound a long run.
fn disk_config() -> ProptestConfig {
    ProptestConfig {
        cases: (ferry_testkit::fuzz_cases() / 50).max(64),
        ..config()
    }
}

proptest! {
    #![proptest_config(disk_config())]

    #[test]
    fn config_directory_of_arbitrary_files(files in prop::collection::vec(
        (prop::sample::select(vec!["a.conflist", "b.conf", "c.json", "d.txt"]),
         prop::collection::vec(any::<u8>(), 0..256)), 0..4)) {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let _ = config::load_all(dir.path());
        let _ = config::load_network(dir.path(), "net1");
    }
    #[test]
    fn cache_file_of_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512),
                                     entry in cache_like()) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(cache.path("net1", "c1", "eth0"), &bytes).unwrap();
        let _ = cache.get("net1", "c1", "eth0");
        std::fs::write(cache.path("net1", "c2", "eth0"), serde_json::to_vec(&entry).unwrap()).unwrap();
        let _ = cache.get("net1", "c2", "eth0");
        let _ = cache.list(None);
        let _ = cache.list(Some("c2"));
    }
    /// What `put` writes, `get` reads back unchanged.
    #[test]
    fn cache_round_trip(config in prop::collection::vec(any::<u8>(), 0..128),
                        args in prop::collection::vec(("[a-z]{1,6}", ".{0,8}"), 0..3),
                        result in prop::option::of(canonical_result())) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let entry = CachedAttachment {
            kind: CACHE_KIND.into(),
            container_id: "c1".into(),
            config,
            if_name: "eth0".into(),
            network_name: "net1".into(),
            netns: "/var/run/netns/x".into(),
            cni_args: args.into_iter().map(|(k, v)| [k, v]).collect(),
            capability_args: Map::new(),
            result: result.map(|r| r.to_version("1.1.0").unwrap()),
        };
        cache.put(&entry).unwrap();
        prop_assert_eq!(cache.get("net1", "c1", "eth0"), Some(entry));
    }
}

type Result_ = result::Result;

fn version_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(version::SUPPORTED.to_vec()).prop_map(String::from),
        prop::sample::select(vec!["", "2.0.0", "0.0.1", "1.1", "x"]).prop_map(String::from),
    ]
}

/// A result-shaped object of any version's keys, fields often of the wrong type.
fn result_like() -> impl Strategy<Value = Value> {
    let ip = (any_json(), any_json(), any_json(), any_json())
        .prop_map(|(a, g, i, v)| json!({"address": a, "gateway": g, "interface": i, "version": v}));
    (
        any_json(),
        prop::collection::vec(ip.clone(), 0..3),
        prop::option::of(ip),
        any_json(),
        any_json(),
        any_json(),
    )
        .prop_map(|(ver, ips, ip4, routes, ifaces, dns)| {
            json!({"cniVersion": ver, "ips": ips, "ip4": ip4, "routes": routes,
                   "interfaces": ifaces, "dns": dns})
        })
}

fn cache_like() -> impl Strategy<Value = Value> {
    (any_json(), any_json(), any_json(), any_json()).prop_map(|(config, args, caps, result)| {
        json!({"kind": CACHE_KIND, "containerId": "c2", "ifName": "eth0", "networkName": "net1",
               "config": config, "cniArgs": args, "capabilityArgs": caps, "result": result})
    })
}

fn ipnet() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, p)| IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap()),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, p)| IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), p).unwrap()),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

/// `None` or a non-zero value: Go's `omitempty` int has no written zero.
fn nonzero() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(1u32..)
}

/// A valid canonical (1.x) result.
fn canonical_result() -> impl Strategy<Value = Result_> {
    let iface = (
        "[a-z0-9]{0,8}",
        "[0-9a-f:]{0,17}",
        nonzero(),
        ".{0,8}",
        ".{0,8}",
        ".{0,8}",
    )
        .prop_map(|(name, mac, mtu, sandbox, socket_path, pci_id)| Interface {
            name,
            mac,
            mtu,
            sandbox,
            socket_path,
            pci_id,
        });
    let route = (
        ipnet(),
        prop::option::of(ip()),
        nonzero(),
        nonzero(),
        nonzero(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(dst, gw, mtu, advmss, priority, table, scope)| Route {
            dst,
            gw,
            mtu,
            advmss,
            priority,
            table,
            scope,
        });
    let dns = (
        prop::collection::vec("[a-z0-9.]{1,8}", 0..2),
        "[a-z.]{0,8}",
        prop::collection::vec("[a-z.]{1,8}", 0..2),
        prop::collection::vec("[a-z:]{1,8}", 0..2),
    )
        .prop_map(|(nameservers, domain, search, options)| Dns {
            nameservers,
            domain,
            search,
            options,
        });
    (
        prop::collection::vec(iface, 0..3),
        prop::collection::vec(
            (ipnet(), prop::option::of(ip()), prop::option::of(0usize..3)),
            0..4,
        ),
        prop::collection::vec(route, 0..4),
        dns,
    )
        .prop_map(|(interfaces, ips, routes, dns)| {
            let n = interfaces.len();
            Result_ {
                cni_version: "1.1.0".into(),
                ips: ips
                    .into_iter()
                    .map(|(address, gateway, i)| IpConfig {
                        interface: i.filter(|i| *i < n),
                        address,
                        gateway,
                    })
                    .collect(),
                interfaces,
                routes,
                dns,
            }
        })
}

/// JSON nested far deeper than any config: an error, not a stack overflow.
#[test]
fn deeply_nested_inputs_are_refused() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(NetworkConfigList::from_bytes(deep.as_bytes()).is_err());
    assert!(result::parse_result(deep.as_bytes(), "1.1.0").is_err());
    let deep_obj = format!("{}1{}", r#"{"ipam":"#.repeat(50_000), "}".repeat(50_000));
    assert!(NetworkConfigList::from_single_conf(deep_obj.as_bytes()).is_err());
}
