//! Result parsing and conversion between every pair of CNI versions, and a
//! conformance check against the reference `host-local` plugin (libcni).

use ferry_cni::result::{
    convert, parse_result, version_of, Dns, Interface, IpConfig, Result, Route,
};
use ferry_cni::version::{self, PluginInfo, SUPPORTED};
use ferry_cni::CniError;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// What a version family can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// 0.1.0, 0.2.0: ip4/ip6 only.
    Old,
    /// 0.3.0, 0.3.1, 0.4.0.
    Mid,
    /// 1.0.0, 1.1.0.
    Cur,
}

fn class(v: &str) -> Class {
    match v {
        "0.1.0" | "0.2.0" => Class::Old,
        "0.3.0" | "0.3.1" | "0.4.0" => Class::Mid,
        "1.0.0" | "1.1.0" => Class::Cur,
        _ => panic!("unknown version {v}"),
    }
}

/// Independent model of what survives being written in version `v`.
fn keep_in(r: &Result, v: &str) -> Result {
    let mut out = r.clone();
    out.cni_version = v.to_string();
    if class(v) <= Class::Mid {
        for i in &mut out.interfaces {
            i.mtu = None;
            i.socket_path.clear();
            i.pci_id.clear();
        }
        out.routes = out
            .routes
            .iter()
            .map(|rt| Route::new(rt.dst, rt.gw))
            .collect();
    }
    if class(v) == Class::Old {
        out.interfaces.clear();
        let v4: Vec<IpConfig> = r.ips.iter().filter(|i| i.is_ipv4()).cloned().collect();
        let v6: Vec<IpConfig> = r.ips.iter().filter(|i| !i.is_ipv4()).cloned().collect();
        let mut routes = Vec::new();
        if !v4.is_empty() {
            routes.extend(
                out.routes
                    .iter()
                    .filter(|rt| rt.dst.addr().is_ipv4())
                    .cloned(),
            );
        }
        if !v6.is_empty() {
            routes.extend(
                out.routes
                    .iter()
                    .filter(|rt| rt.dst.addr().is_ipv6())
                    .cloned(),
            );
        }
        out.routes = routes;
        out.ips = v4
            .into_iter()
            .chain(v6)
            .map(|i| IpConfig::new(i.address, i.gateway))
            .collect();
    }
    out
}

/// A result using every 1.1 field, with one address per family.
fn rich() -> Result {
    Result {
        cni_version: "1.1.0".into(),
        interfaces: vec![
            Interface {
                name: "veth96a".into(),
                mac: "9a:0c:1e:00:00:01".into(),
                ..Default::default()
            },
            Interface {
                name: "eth0".into(),
                mac: "9a:0c:1e:00:00:02".into(),
                mtu: Some(1450),
                sandbox: "/var/run/netns/rconv".into(),
                socket_path: "/run/vhost/rconv.sock".into(),
                pci_id: "0000:00:1f.6".into(),
            },
        ],
        ips: vec![
            IpConfig {
                interface: Some(1),
                address: net("198.19.96.10/24"),
                gateway: Some(ip("198.19.96.1")),
            },
            IpConfig {
                interface: Some(1),
                address: net("fd00:96::10/64"),
                gateway: Some(ip("fd00:96::1")),
            },
        ],
        routes: vec![
            Route {
                dst: net("198.19.104.0/22"),
                gw: Some(ip("198.19.96.254")),
                mtu: Some(1400),
                advmss: Some(1360),
                priority: Some(10),
                table: Some(100),
                scope: Some(0),
            },
            Route::new(net("198.19.100.0/24"), None),
            Route {
                scope: Some(253),
                ..Route::new(net("fd00:96:1::/64"), Some(ip("fd00:96::fe")))
            },
        ],
        dns: Dns {
            nameservers: vec!["198.19.96.53".into(), "fd00:96::53".into()],
            domain: "rconv.test".into(),
            search: vec!["a.rconv.test".into(), "rconv.test".into()],
            options: vec!["ndots:2".into()],
        },
    }
}

#[test]
fn rich_wire_forms_are_exact() {
    let r = rich();
    assert_eq!(
        r.to_version("1.1.0").unwrap().to_string(),
        concat!(
            r#"{"cniVersion":"1.1.0","interfaces":[{"name":"veth96a","mac":"9a:0c:1e:00:00:01"},"#,
            r#"{"name":"eth0","mac":"9a:0c:1e:00:00:02","mtu":1450,"sandbox":"/var/run/netns/rconv","#,
            r#""socketPath":"/run/vhost/rconv.sock","pciID":"0000:00:1f.6"}],"#,
            r#""ips":[{"interface":1,"address":"198.19.96.10/24","gateway":"198.19.96.1"},"#,
            r#"{"interface":1,"address":"fd00:96::10/64","gateway":"fd00:96::1"}],"#,
            r#""routes":[{"dst":"198.19.104.0/22","gw":"198.19.96.254","mtu":1400,"advmss":1360,"priority":10,"table":100,"scope":0},"#,
            r#"{"dst":"198.19.100.0/24"},{"dst":"fd00:96:1::/64","gw":"fd00:96::fe","scope":253}],"#,
            r#""dns":{"nameservers":["198.19.96.53","fd00:96::53"],"domain":"rconv.test","#,
            r#""search":["a.rconv.test","rconv.test"],"options":["ndots:2"]}}"#
        )
    );
    assert_eq!(
        r.to_version("0.4.0").unwrap().to_string(),
        concat!(
            r#"{"cniVersion":"0.4.0","interfaces":[{"name":"veth96a","mac":"9a:0c:1e:00:00:01"},"#,
            r#"{"name":"eth0","mac":"9a:0c:1e:00:00:02","sandbox":"/var/run/netns/rconv"}],"#,
            r#""ips":[{"version":"4","interface":1,"address":"198.19.96.10/24","gateway":"198.19.96.1"},"#,
            r#"{"version":"6","interface":1,"address":"fd00:96::10/64","gateway":"fd00:96::1"}],"#,
            r#""routes":[{"dst":"198.19.104.0/22","gw":"198.19.96.254"},{"dst":"198.19.100.0/24"},"#,
            r#"{"dst":"fd00:96:1::/64","gw":"fd00:96::fe"}],"#,
            r#""dns":{"nameservers":["198.19.96.53","fd00:96::53"],"domain":"rconv.test","#,
            r#""search":["a.rconv.test","rconv.test"],"options":["ndots:2"]}}"#
        )
    );
    assert_eq!(
        r.to_version("0.2.0").unwrap().to_string(),
        concat!(
            r#"{"cniVersion":"0.2.0","#,
            r#""ip4":{"ip":"198.19.96.10/24","gateway":"198.19.96.1","routes":[{"dst":"198.19.104.0/22","gw":"198.19.96.254"},{"dst":"198.19.100.0/24"}]},"#,
            r#""ip6":{"ip":"fd00:96::10/64","gateway":"fd00:96::1","routes":[{"dst":"fd00:96:1::/64","gw":"fd00:96::fe"}]},"#,
            r#""dns":{"nameservers":["198.19.96.53","fd00:96::53"],"domain":"rconv.test","#,
            r#""search":["a.rconv.test","rconv.test"],"options":["ndots:2"]}}"#
        )
    );
    // 1.0.0 and 1.1.0 share one schema (libcni): nothing is dropped.
    let mut v100 = r.to_version("1.1.0").unwrap();
    v100["cniVersion"] = json!("1.0.0");
    assert_eq!(r.to_version("1.0.0").unwrap(), v100);
    // 0.3.0 and 0.3.1 are the 0.4.0 form with another cniVersion; 0.1.0 likewise for 0.2.0.
    for (v, base) in [("0.3.0", "0.4.0"), ("0.3.1", "0.4.0"), ("0.1.0", "0.2.0")] {
        let mut b = r.to_version(base).unwrap();
        b["cniVersion"] = json!(v);
        assert_eq!(r.to_version(v).unwrap().to_string(), b.to_string());
    }
}

#[test]
fn every_ordered_pair_and_round_trip() {
    let r = rich();
    let mut pairs = 0;
    for from in SUPPORTED {
        let src_model = keep_in(&r, from);
        let src = r.to_version(from).unwrap();
        assert_eq!(version_of(&src), *from);
        assert_eq!(
            parse_result(&src, "").unwrap(),
            src_model,
            "read back {from}"
        );
        for to in SUPPORTED {
            let out = convert(&src, to).unwrap();
            assert_eq!(version_of(&out), *to, "{from}->{to}");
            let got = parse_result(&out, "").unwrap();
            assert_eq!(got, keep_in(&src_model, to), "{from}->{to}");

            // Shape of the target form.
            let obj = out.as_object().unwrap();
            match class(to) {
                Class::Old => {
                    assert!(
                        obj.contains_key("ip4") && obj.contains_key("ip6"),
                        "{from}->{to}"
                    );
                    assert!(!obj.contains_key("ips") && !obj.contains_key("interfaces"));
                    assert!(!obj.contains_key("routes"));
                }
                Class::Mid => {
                    for ipc in out["ips"].as_array().unwrap() {
                        let want = if ipc["address"].as_str().unwrap().contains(':') {
                            "6"
                        } else {
                            "4"
                        };
                        assert_eq!(ipc["version"], json!(want));
                    }
                    for rt in out["routes"].as_array().unwrap() {
                        let keys: Vec<&String> = rt.as_object().unwrap().keys().collect();
                        assert!(keys.iter().all(|k| *k == "dst" || *k == "gw"), "{keys:?}");
                    }
                }
                Class::Cur => {
                    for ipc in out["ips"].as_array().unwrap() {
                        assert!(ipc.get("version").is_none());
                    }
                }
            }

            // Round trip: exact when the target holds everything the source had.
            let back = convert(&out, from).unwrap();
            assert_eq!(
                parse_result(&back, "").unwrap(),
                keep_in(&keep_in(&src_model, to), from),
                "{from}->{to}->{from}"
            );
            if class(to) >= class(from) {
                assert_eq!(
                    back.to_string(),
                    src.to_string(),
                    "{from}->{to}->{from} must be lossless"
                );
            } else {
                assert_ne!(
                    back.to_string(),
                    src.to_string(),
                    "{from}->{to}->{from} must lose data"
                );
            }
            pairs += 1;
        }
    }
    assert_eq!(pairs, SUPPORTED.len() * SUPPORTED.len());
}

#[test]
fn exactly_what_a_down_conversion_loses() {
    let r = rich();
    // 1.1 -> 0.4 -> 1.1: interface mtu/socketPath/pciID and route extras are gone, the rest is kept.
    let back = parse_result(
        convert(r.to_version("1.1.0").unwrap(), "0.4.0").unwrap(),
        "",
    )
    .unwrap();
    let back = parse_result(back.to_version("1.1.0").unwrap(), "").unwrap();
    assert_eq!(back.interfaces[1].mtu, None);
    assert_eq!(back.interfaces[1].socket_path, "");
    assert_eq!(back.interfaces[1].pci_id, "");
    assert_eq!(back.interfaces[1].sandbox, "/var/run/netns/rconv");
    assert_eq!(back.ips, r.ips);
    assert_eq!(
        back.routes[0],
        Route::new(net("198.19.104.0/22"), Some(ip("198.19.96.254")))
    );
    assert_eq!(back.dns, r.dns);

    // 1.1 -> 0.2 -> 1.1: interfaces and interface indices are gone too.
    let back = parse_result(
        convert(r.to_version("1.1.0").unwrap(), "0.2.0").unwrap(),
        "",
    )
    .unwrap();
    let back = parse_result(back.to_version("1.1.0").unwrap(), "").unwrap();
    assert!(back.interfaces.is_empty());
    assert!(back.ips.iter().all(|i| i.interface.is_none()));
    assert_eq!(
        back.ips
            .iter()
            .map(|i| (i.address, i.gateway))
            .collect::<Vec<_>>(),
        r.ips
            .iter()
            .map(|i| (i.address, i.gateway))
            .collect::<Vec<_>>()
    );
    assert_eq!(back.routes.len(), 3);
    assert_eq!(back.dns, r.dns);
}

#[test]
fn old_to_current_is_exact() {
    let old = r#"{"cniVersion":"0.2.0",
        "ip4":{"ip":"198.19.96.7/24","gateway":"198.19.96.1","routes":[{"dst":"198.19.100.0/24","gw":"198.19.96.254"}]},
        "ip6":{"ip":"fd00:96::7/64","routes":[{"dst":"fd00:96:1::/64"}]},
        "dns":{"nameservers":["198.19.96.53"]}}"#;
    assert_eq!(
        convert(old, "1.0.0").unwrap().to_string(),
        concat!(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"198.19.96.7/24","gateway":"198.19.96.1"},"#,
            r#"{"address":"fd00:96::7/64"}],"routes":[{"dst":"198.19.100.0/24","gw":"198.19.96.254"},"#,
            r#"{"dst":"fd00:96:1::/64"}],"dns":{"nameservers":["198.19.96.53"]}}"#
        )
    );
    assert_eq!(
        convert(old, "0.3.1").unwrap().to_string(),
        concat!(
            r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"198.19.96.7/24","gateway":"198.19.96.1"},"#,
            r#"{"version":"6","address":"fd00:96::7/64"}],"routes":[{"dst":"198.19.100.0/24","gw":"198.19.96.254"},"#,
            r#"{"dst":"fd00:96:1::/64"}],"dns":{"nameservers":["198.19.96.53"]}}"#
        )
    );
    // 0.4 -> 1.0 drops `version` and keeps interfaces and indices.
    let mid = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/proc/1/ns/net"}],
        "ips":[{"version":"4","interface":0,"address":"198.19.96.8/24"}],"dns":{}}"#;
    assert_eq!(
        convert(mid, "1.0.0").unwrap().to_string(),
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/proc/1/ns/net"}],"ips":[{"interface":0,"address":"198.19.96.8/24"}],"dns":{}}"#
    );
}

fn dual(v4_first: bool) -> Result {
    let a = IpConfig::new(net("198.19.96.20/24"), Some(ip("198.19.96.1")));
    let b = IpConfig::new(net("fd00:96::20/64"), Some(ip("fd00:96::1")));
    Result {
        cni_version: "1.0.0".into(),
        ips: if v4_first { vec![a, b] } else { vec![b, a] },
        routes: vec![
            Route::new(net("fd00:96:1::/64"), None),
            Route::new(net("198.19.104.0/22"), None),
            Route::new(net("fd00:96:2::/64"), None),
        ],
        ..Default::default()
    }
}

#[test]
fn dual_stack_through_old_versions() {
    for v4_first in [true, false] {
        let r = dual(v4_first);
        let old = r.to_version("0.2.0").unwrap();
        assert_eq!(
            old.to_string(),
            concat!(
                r#"{"cniVersion":"0.2.0","ip4":{"ip":"198.19.96.20/24","gateway":"198.19.96.1","routes":[{"dst":"198.19.104.0/22"}]},"#,
                r#""ip6":{"ip":"fd00:96::20/64","gateway":"fd00:96::1","routes":[{"dst":"fd00:96:1::/64"},{"dst":"fd00:96:2::/64"}]},"dns":{}}"#
            )
        );
        // Back up: addresses come back IPv4 first, routes grouped IPv4 then IPv6.
        let back = parse_result(convert(&old, "1.0.0").unwrap(), "").unwrap();
        assert_eq!(back.ips[0].address, net("198.19.96.20/24"));
        assert_eq!(back.ips[1].address, net("fd00:96::20/64"));
        assert_eq!(
            back.routes
                .iter()
                .map(|r| r.dst.to_string())
                .collect::<Vec<_>>(),
            ["198.19.104.0/22", "fd00:96:1::/64", "fd00:96:2::/64"]
        );
        // Same addresses, gateways and routes as a set: only order changed.
        let mut want = r.clone();
        want.ips.sort_by_key(|i| !i.is_ipv4());
        want.routes.sort_by_key(|r| !r.dst.addr().is_ipv4());
        assert_eq!(back, want);
        // 0.4 keeps the original order.
        let mid = parse_result(
            convert(r.to_version("1.0.0").unwrap(), "0.4.0").unwrap(),
            "",
        )
        .unwrap();
        assert_eq!(
            mid.to_version("1.0.0").unwrap(),
            r.to_version("1.0.0").unwrap()
        );
    }
}

#[test]
fn single_stack_through_old_versions() {
    let v4 = Result {
        cni_version: "1.1.0".into(),
        ips: vec![IpConfig::new(net("198.19.96.30/24"), None)],
        routes: vec![
            Route::new(net("198.19.104.0/22"), Some(ip("198.19.96.1"))),
            // No IPv6 address: 0.2.0 has nowhere to put this route (libcni drops it too).
            Route::new(net("fd00:96:1::/64"), None),
        ],
        ..Default::default()
    };
    let old = v4.to_version("0.1.0").unwrap();
    assert_eq!(
        old.to_string(),
        r#"{"cniVersion":"0.1.0","ip4":{"ip":"198.19.96.30/24","routes":[{"dst":"198.19.104.0/22","gw":"198.19.96.1"}]},"dns":{}}"#
    );
    let back = parse_result(&old, "").unwrap();
    assert_eq!(back.routes, vec![v4.routes[0].clone()]);

    let v6 = Result {
        cni_version: "0.4.0".into(),
        ips: vec![IpConfig::new(net("fd00:96::30/64"), Some(ip("fd00:96::1")))],
        ..Default::default()
    };
    let old = v6.to_version("0.2.0").unwrap();
    assert_eq!(
        old.to_string(),
        r#"{"cniVersion":"0.2.0","ip6":{"ip":"fd00:96::30/64","gateway":"fd00:96::1"},"dns":{}}"#
    );
    let mut want = v6.clone();
    want.cni_version = "0.2.0".into();
    assert_eq!(parse_result(&old, "").unwrap(), want);
}

fn assert_incompatible(e: &CniError, needles: &[&str]) {
    assert_eq!(e.code, 1, "{e}");
    for n in needles {
        assert!(e.to_string().contains(n), "{e:?} should mention {n:?}");
    }
}

#[test]
fn multi_ip_to_old_versions_is_an_error() {
    let mut r = dual(true);
    r.ips.push(IpConfig::new(net("198.19.97.20/24"), None));
    for v in ["0.1.0", "0.2.0"] {
        let e = r.to_version(v).unwrap_err();
        assert_incompatible(
            &e,
            &[
                v,
                "2 IPv4 addresses",
                "198.19.96.20/24",
                "198.19.97.20/24",
                "at most one IPv4 and one IPv6",
            ],
        );
        assert_eq!(e.cni_version, v);
        let e = convert(r.to_version("0.4.0").unwrap(), v).unwrap_err();
        assert_incompatible(&e, &["2 IPv4 addresses"]);
    }
    // Newer versions hold any number of addresses.
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        assert_eq!(
            parse_result(r.to_version(v).unwrap(), "")
                .unwrap()
                .ips
                .len(),
            3
        );
    }
    let mut r6 = dual(true);
    r6.ips.push(IpConfig::new(net("fd00:96:5::1/64"), None));
    assert_incompatible(
        &r6.to_version("0.2.0").unwrap_err(),
        &["2 IPv6 addresses", "fd00:96:5::1/64"],
    );

    let none = Result::new("1.0.0");
    assert_incompatible(
        &none.to_version("0.2.0").unwrap_err(),
        &["no valid IP addresses"],
    );
    assert!(none.to_version("0.4.0").is_ok());
}

#[test]
fn unsupported_versions_are_errors() {
    let src = rich().to_version("1.1.0").unwrap();
    for bad in ["0.5.0", "1.2.0", "2.0.0", "1.0", "v1.0.0", "0.3"] {
        assert_incompatible(
            &convert(&src, bad).unwrap_err(),
            &[bad, "unsupported CNI result version"],
        );
        assert_incompatible(&rich().to_version(bad).unwrap_err(), &[bad]);
    }
    let mut future = src.clone();
    future["cniVersion"] = json!("9.9.9");
    assert_incompatible(&parse_result(&future, "1.0.0").unwrap_err(), &["9.9.9"]);
    assert_incompatible(
        &parse_result(r#"{"ips":[]}"#, "0.9.0").unwrap_err(),
        &["0.9.0"],
    );
}

#[test]
fn decoding_errors_are_code_6() {
    for bad in [
        r#"{"cniVersion":"1.0.0","ips":[{"address":"198.19.96.1"}]}"#,
        r#"{"cniVersion":"1.0.0","ips":[{"address":"198.19.96.1/24","gateway":"nope"}]}"#,
        r#"{"cniVersion":"0.4.0","ips":[{"version":"4"}]}"#,
        r#"{"cniVersion":"0.2.0","ip4":{"ip":"garbage"}}"#,
        r#"{"cniVersion":1}"#,
        r#"[]"#,
        r#"{"#,
    ] {
        let e = parse_result(bad, "").unwrap_err();
        assert_eq!(e.code, 6, "{bad}: {e}");
    }
}

#[test]
fn version_comes_from_the_result_then_the_argument_then_0_1_0() {
    let no_version = r#"{"ips":[{"version":"4","address":"198.19.96.9/24"}],"dns":{}}"#;
    let r = parse_result(no_version, "0.4.0").unwrap();
    assert_eq!(r.cni_version, "0.4.0");
    assert_eq!(r.ips.len(), 1);
    // Without either, "0.1.0" is assumed: the 0.1.0 schema has no `ips`.
    let r = parse_result(no_version, "").unwrap();
    assert_eq!(r.cni_version, "0.1.0");
    assert!(r.ips.is_empty());
    // The result's own version wins over the argument.
    let own = r#"{"cniVersion":"0.2.0","ip4":{"ip":"198.19.96.9/24"}}"#;
    assert_eq!(parse_result(own, "1.0.0").unwrap().cni_version, "0.2.0");
    assert_eq!(parse_result(own, "1.0.0").unwrap().ips.len(), 1);

    assert_eq!(version_of(&json!({"cniVersion": "0.3.1"})), "0.3.1");
    assert_eq!(version_of(&json!({"cniVersion": ""})), "0.1.0");
    assert_eq!(version_of(&json!({})), "0.1.0");
    assert_eq!(version_of(&json!({"cniVersion": 4})), "0.1.0");
    assert_eq!(version_of(&json!("x")), "0.1.0");
    let bare = r#"{"ips":[{"address":"198.19.96.9/24"}]}"#;
    assert_eq!(
        ferry_cni::result::convert_with_fallback(bare, "1.0.0", "0.4.0")
            .unwrap()
            .to_string(),
        r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"198.19.96.9/24"}],"dns":{}}"#
    );
    // convert() of an empty target means 0.1.0 as in libcni.
    assert_eq!(version_of(&convert(own, "").unwrap()), "0.1.0");
}

#[test]
fn go_leniency_on_input() {
    let r = parse_result(
        r#"{"cniVersion":"1.0.0","interfaces":null,"ips":[{"interface":-1,"address":"198.19.96.2/24","gateway":""},
            {"address":"fd00:96::2/64","gateway":null}],"routes":[{"dst":"198.19.104.0/22","gw":"","mtu":0,"priority":0}],
            "dns":null,"unknown":{"x":1}}"#,
        "",
    )
    .unwrap();
    assert!(r.interfaces.is_empty());
    assert_eq!(r.ips[0].interface, None);
    assert_eq!(r.ips[0].gateway, None);
    assert_eq!(r.ips[1].gateway, None);
    assert_eq!(r.routes[0], Route::new(net("198.19.104.0/22"), None));
    assert!(r.dns.is_empty());
    // The 0.3.0 text named the list `ip`.
    let r = parse_result(
        r#"{"cniVersion":"0.3.0","ip":[{"version":"4","address":"198.19.96.3/24"}]}"#,
        "",
    )
    .unwrap();
    assert_eq!(r.ips.len(), 1);
    // libcni's 0.4.0 output can carry 1.1 route fields (shared Go type): kept on the way up.
    let r = parse_result(
        r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"198.19.96.3/24"}],"routes":[{"dst":"198.19.104.0/22","mtu":1400,"table":5}]}"#,
        "",
    )
    .unwrap();
    assert_eq!(r.routes[0].mtu, Some(1400));
    assert_eq!(r.routes[0].table, Some(5));
    assert_eq!(
        r.to_version("0.4.0").unwrap()["routes"].to_string(),
        r#"[{"dst":"198.19.104.0/22"}]"#
    );
}

#[test]
fn ipam_results_have_no_interfaces() {
    let ipam = rich().to_ipam();
    ipam.validate().unwrap();
    for v in SUPPORTED {
        let text = ipam.to_version(v).unwrap().to_string();
        assert!(!text.contains("\"interfaces\""), "{v}: {text}");
        assert!(!text.contains("\"interface\""), "{v}: {text}");
        let back = parse_result(text.as_str(), "").unwrap();
        assert!(back.interfaces.is_empty());
        assert!(back.ips.iter().all(|i| i.interface.is_none()));
    }
    let mut bad = rich();
    bad.ips[0].interface = Some(2);
    assert_eq!(bad.validate().unwrap_err().code, 6);
}

#[test]
fn pretty_output_matches_go_indent() {
    let r = Result {
        cni_version: "1.0.0".into(),
        ips: vec![IpConfig::new(
            net("198.19.96.2/24"),
            Some(ip("198.19.96.1")),
        )],
        ..Default::default()
    };
    assert_eq!(
        r.to_version_string("1.0.0").unwrap(),
        "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"198.19.96.2/24\",\n            \"gateway\": \"198.19.96.1\"\n        }\n    ],\n    \"dns\": {}\n}"
    );
}

// ---------------------------------------------------------------------------
// The reference plugin.

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

fn host_local() -> &'static Path {
    let p = Path::new(HOST_LOCAL);
    assert!(
        p.is_file(),
        "{HOST_LOCAL} is missing: install the Debian package `containernetworking-plugins` \
         (apt-get install containernetworking-plugins); this test needs the reference plugin"
    );
    p
}

struct Output {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

fn run_plugin(command: &str, container: &str, stdin: &str) -> Output {
    let out = ferry_testkit::run_with_stdin(
        &mut ferry_testkit::reference_host_local(command, container),
        stdin.as_bytes(),
    );
    Output {
        ok: out.status.success(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One host-local allocation; DEL runs on drop if the test did not do it.
struct Attachment {
    container: String,
    conf: String,
    data_dir: PathBuf,
    deleted: bool,
}

impl Attachment {
    fn del(mut self) {
        self.deleted = true;
        let out = run_plugin("DEL", &self.container, &self.conf);
        assert!(
            out.ok,
            "DEL failed: {} {}",
            String::from_utf8_lossy(&out.stdout),
            out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "DEL printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        // host-local keeps one file per allocated address; none may remain.
        for entry in std::fs::read_dir(&self.data_dir).unwrap().flatten() {
            for f in std::fs::read_dir(entry.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                assert!(
                    name.parse::<IpAddr>().is_err(),
                    "allocation {name} left after DEL"
                );
            }
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = run_plugin("DEL", &self.container, &self.conf);
        }
    }
}

fn plugin_conf(version: &str, name: &str, dual: bool, data_dir: &Path, resolv: &Path) -> String {
    let ipam = if dual {
        json!({
            "type": "host-local",
            "ranges": [
                [{"subnet": "198.19.97.0/24", "gateway": "198.19.97.1"}],
                [{"subnet": "fd00:96::/64"}]
            ],
            "routes": [
                {"dst": "198.19.104.0/22"},
                {"dst": "fd00:96:1::/64", "gw": "fd00:96::fe"}
            ],
            "resolvConf": resolv,
            "dataDir": data_dir,
        })
    } else {
        json!({
            "type": "host-local",
            "subnet": "198.19.96.0/24",
            "routes": [{"dst": "198.19.100.0/24", "gw": "198.19.96.254"}],
            "dataDir": data_dir,
        })
    };
    json!({"cniVersion": version, "name": name, "ipam": ipam}).to_string()
}

#[test]
fn host_local_reference_results() {
    let bin = host_local();
    let tmp = tempfile::tempdir().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 198.19.96.53\nnameserver fd00:96::53\ndomain rconv.test\nsearch a.rconv.test rconv.test\noptions ndots:2\n",
    )
    .unwrap();

    // Ask the plugin which versions it speaks.
    let out = run_plugin("VERSION", "", r#"{"cniVersion":"1.0.0"}"#);
    assert!(out.ok, "{} VERSION failed: {}", bin.display(), out.stderr);
    let info = PluginInfo::decode(&out.stdout).unwrap();
    let accepted: Vec<&str> = SUPPORTED
        .iter()
        .copied()
        .filter(|v| info.is_supported(v))
        .collect();
    assert!(
        accepted.contains(&"0.2.0") && accepted.contains(&"1.0.0"),
        "{info:?}"
    );

    let mut n = 0;
    for dual in [false, true] {
        // Raw ADD output per version. Every ADD gets a fresh data dir so the
        // plugin allocates the same addresses each time and outputs of
        // different versions describe the same result.
        let mut raw: Vec<(&str, Value)> = Vec::new();
        for v in SUPPORTED {
            n += 1;
            let data_dir = tmp.path().join(format!("data-{n}"));
            let name = format!("rconv-{n}");
            let conf = plugin_conf(v, &name, dual, &data_dir, &resolv);
            let container = format!("rconv-{}-{n}", std::process::id());
            let out = run_plugin("ADD", &container, &conf);
            if !accepted.contains(v) {
                // Refused with libcni's error, which our check reproduces verbatim.
                assert!(!out.ok, "{v} should be refused");
                let err: CniError = serde_json::from_slice(&out.stdout).unwrap();
                let ours = version::check_supported(v, &info.supported_versions).unwrap_err();
                assert_eq!(
                    (err.code, &err.msg, &err.details),
                    (ours.code, &ours.msg, &ours.details)
                );
                let _ = run_plugin("DEL", &container, &conf);
                continue;
            }
            let att = Attachment {
                container,
                conf,
                data_dir,
                deleted: false,
            };
            assert!(
                out.ok,
                "ADD {v} failed: {} {}",
                String::from_utf8_lossy(&out.stdout),
                out.stderr
            );
            let value: Value = serde_json::from_slice(&out.stdout).unwrap();
            let res = parse_result(out.stdout.as_slice(), v).unwrap();
            assert_eq!(res.cni_version, *v);
            assert!(res.interfaces.is_empty());
            if dual {
                assert_eq!(res.ips.len(), 2, "{v}: {value}");
                assert_eq!(res.ips[0].address, net("198.19.97.2/24"));
                assert_eq!(res.ips[0].gateway, Some(ip("198.19.97.1")));
                assert_eq!(res.ips[1].address, net("fd00:96::2/64"));
                assert_eq!(res.routes.len(), 2);
                assert_eq!(res.dns.nameservers, ["198.19.96.53", "fd00:96::53"]);
                assert_eq!(res.dns.search, ["a.rconv.test", "rconv.test"]);
            } else {
                assert_eq!(res.ips.len(), 1, "{v}: {value}");
                assert_eq!(res.ips[0].address, net("198.19.96.2/24"));
                assert_eq!(res.ips[0].gateway, Some(ip("198.19.96.1")));
                assert_eq!(
                    res.routes,
                    [Route::new(
                        net("198.19.100.0/24"),
                        Some(ip("198.19.96.254"))
                    )]
                );
            }
            // Our encoding of what we read is the plugin's output, key order included.
            assert_eq!(
                res.to_version(v).unwrap().to_string(),
                value.to_string(),
                "{v}"
            );
            // To every other version and back, losslessly (one address per family,
            // no interfaces, no 1.1-only fields).
            for to in SUPPORTED {
                let conv = convert(&value, to).unwrap();
                assert_eq!(version_of(&conv), *to);
                let mut again = parse_result(&conv, "").unwrap();
                again.cni_version = v.to_string();
                assert_eq!(again, res, "{v}->{to}");
                assert_eq!(
                    convert(&conv, v).unwrap().to_string(),
                    value.to_string(),
                    "{v}->{to}->{v}"
                );
            }
            att.del();
            raw.push((v, value));
        }
        // libcni conformance: converting the plugin's output for one version
        // gives exactly the plugin's own output for the other.
        for (from, a) in &raw {
            for (to, b) in &raw {
                assert_eq!(
                    convert(a, to).unwrap().to_string(),
                    b.to_string(),
                    "{from}->{to} (dual={dual})"
                );
            }
        }
    }
    drop(tmp);
}
