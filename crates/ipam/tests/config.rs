//! Config canonicalisation and validation, compared with the reference.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;

use common::ip;
use ferry_ipam::{IpamConfig, IpamError, RangeConfig, RangeSet, DEFAULT_DATA_DIR};

fn parse(json: &str) -> IpamConfig {
    serde_json::from_str(json).expect("parses")
}

fn err(json: &str) -> IpamError {
    parse(json).canonicalize().expect_err("must be rejected")
}

#[test]
fn ipv4_defaults() {
    let c = parse(r#"{"type":"host-local","ranges":[[{"subnet":"198.19.64.0/24"}]]}"#)
        .canonicalize()
        .unwrap();
    let r = &c.ranges[0].ranges()[0];
    assert_eq!(r.range_start, ip("198.19.64.1"));
    assert_eq!(r.range_end, ip("198.19.64.254"));
    assert_eq!(r.gateway, ip("198.19.64.1"));
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.resolv_conf, None);
    assert_eq!(c.ranges[0].to_string(), "198.19.64.1-198.19.64.254");
}

#[test]
fn ipv6_defaults_end_at_last_address() {
    let c = parse(r#"{"ranges":[[{"subnet":"fd00:1a::/64"}]]}"#)
        .canonicalize()
        .unwrap();
    let r = &c.ranges[0].ranges()[0];
    assert_eq!(r.range_start, ip("fd00:1a::1"));
    assert_eq!(r.range_end, ip("fd00:1a::ffff:ffff:ffff:ffff"));
    assert_eq!(r.gateway, ip("fd00:1a::1"));
}

#[test]
fn all_keys_camel_case_and_explicit_values_kept() {
    let c = parse(
        r#"{
        "type": "host-local",
        "ranges": [[{"subnet":"198.19.64.0/24","rangeStart":"198.19.64.20",
                     "rangeEnd":"198.19.64.50","gateway":"198.19.64.254"}]],
        "routes": [{"dst":"0.0.0.0/0"},{"dst":"198.19.70.0/24","gw":"198.19.64.5"}],
        "dataDir": "/run/x",
        "resolvConf": "/etc/resolv.conf",
        "unknownKey": 1
    }"#,
    )
    .canonicalize()
    .unwrap();
    let r = &c.ranges[0].ranges()[0];
    assert_eq!(r.range_start, ip("198.19.64.20"));
    assert_eq!(r.range_end, ip("198.19.64.50"));
    assert_eq!(r.gateway, ip("198.19.64.254"));
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].gw, None);
    assert_eq!(c.routes[1].gw, Some(ip("198.19.64.5")));
    assert_eq!(c.data_dir, PathBuf::from("/run/x"));
    assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));

    // Serialising uses the same keys.
    let raw = parse(r#"{"subnet":"198.19.64.0/24","rangeStart":"198.19.64.9","dataDir":"/d"}"#);
    let v = serde_json::to_value(&raw).unwrap();
    assert_eq!(v["rangeStart"], "198.19.64.9");
    assert_eq!(v["dataDir"], "/d");
}

#[test]
fn legacy_top_level_range_is_prepended() {
    let c = parse(
        r#"{"subnet":"198.19.65.0/24","rangeStart":"198.19.65.10","gateway":"198.19.65.1",
            "ranges":[[{"subnet":"fd00:1a::/64"}]]}"#,
    )
    .canonicalize()
    .unwrap();
    assert_eq!(c.ranges.len(), 2);
    assert!(c.ranges[0].is_ipv4());
    assert_eq!(c.ranges[0].ranges()[0].range_start, ip("198.19.65.10"));
    assert!(!c.ranges[1].is_ipv4());
}

#[test]
fn empty_strings_mean_unset_like_go() {
    let c = parse(
        r#"{"ranges":[[{"subnet":"198.19.64.0/24","rangeStart":"","gateway":""}]],"dataDir":""}"#,
    )
    .canonicalize()
    .unwrap();
    assert_eq!(c.ranges[0].ranges()[0].range_start, ip("198.19.64.1"));
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
}

#[test]
fn too_small_subnets_rejected() {
    for s in [
        "198.19.64.0/31",
        "198.19.64.0/32",
        "fd00:1a::/127",
        "fd00:1a::/128",
    ] {
        let e = err(&format!(r#"{{"ranges":[[{{"subnet":"{s}"}}]]}}"#));
        assert!(matches!(e, IpamError::SubnetTooSmall { .. }), "{s}: {e}");
        assert!(e.to_string().contains("too small"), "{e}");
        assert_eq!(e.cni_code(), 7);
    }
    // /30 is the smallest usable IPv4 subnet: .1 (gateway) and .2.
    let c = parse(r#"{"ranges":[[{"subnet":"198.19.64.0/30"}]]}"#)
        .canonicalize()
        .unwrap();
    assert_eq!(c.ranges[0].ranges()[0].range_end, ip("198.19.64.2"));
}

#[test]
fn host_bits_rejected_with_the_network_named() {
    let e = err(r#"{"ranges":[[{"subnet":"198.19.64.7/24"}]]}"#);
    assert!(matches!(e, IpamError::HostBitsSet { .. }), "{e}");
    assert!(e.to_string().contains("198.19.64.0/24"), "{e}");
}

#[test]
fn bounds_and_gateway_must_be_in_subnet() {
    for (field, json) in [
        (
            "rangeStart",
            r#"{"ranges":[[{"subnet":"198.19.64.0/24","rangeStart":"198.19.65.1"}]]}"#,
        ),
        (
            "rangeEnd",
            r#"{"ranges":[[{"subnet":"198.19.64.0/24","rangeEnd":"198.19.65.1"}]]}"#,
        ),
        (
            "gateway",
            r#"{"ranges":[[{"subnet":"198.19.64.0/24","gateway":"198.19.65.1"}]]}"#,
        ),
        (
            "rangeStart",
            r#"{"ranges":[[{"subnet":"198.19.64.0/24","rangeStart":"fd00:1a::1"}]]}"#,
        ),
    ] {
        let e = err(json);
        match &e {
            IpamError::NotInSubnet { field: f, .. } => assert_eq!(*f, field),
            other => panic!("{json}: {other}"),
        }
        assert!(e.to_string().contains(field), "{e}");
        assert_eq!(e.cni_code(), 7);
    }
}

#[test]
fn end_before_start_rejected() {
    let e = err(
        r#"{"ranges":[[{"subnet":"198.19.64.0/24","rangeStart":"198.19.64.50","rangeEnd":"198.19.64.20"}]]}"#,
    );
    assert!(matches!(e, IpamError::EndBeforeStart { .. }), "{e}");
    // A start at the broadcast address is after the default end, too.
    let e = err(r#"{"ranges":[[{"subnet":"198.19.64.0/24","rangeStart":"198.19.64.255"}]]}"#);
    assert!(matches!(e, IpamError::EndBeforeStart { .. }), "{e}");
}

#[test]
fn one_family_per_range_set() {
    let e = err(r#"{"ranges":[[{"subnet":"198.19.64.0/24"},{"subnet":"fd00:1a::/64"}]]}"#);
    assert!(matches!(e, IpamError::MixedFamilies { set: 0 }), "{e}");
}

#[test]
fn overlapping_ranges_in_a_set_rejected() {
    let e = err(r#"{"ranges":[[{"subnet":"198.19.64.0/24"},
                       {"subnet":"198.19.64.0/25","rangeStart":"198.19.64.100"}]]}"#);
    assert!(matches!(e, IpamError::RangesOverlap { set: 0, .. }), "{e}");
    // Same subnet, disjoint ranges: fine.
    parse(
        r#"{"ranges":[[{"subnet":"198.19.64.0/24","rangeEnd":"198.19.64.99"},
                       {"subnet":"198.19.64.0/24","rangeStart":"198.19.64.100"}]]}"#,
    )
    .canonicalize()
    .unwrap();
}

#[test]
fn overlapping_range_sets_rejected() {
    let e = err(r#"{"ranges":[[{"subnet":"198.19.64.0/24"}],[{"subnet":"198.19.64.0/25"}]]}"#);
    assert!(
        matches!(e, IpamError::RangeSetsOverlap { a: 0, b: 1 }),
        "{e}"
    );
}

#[test]
fn empty_configs_rejected() {
    assert!(matches!(
        err(r#"{"type":"host-local"}"#),
        IpamError::NoRanges
    ));
    assert!(matches!(err(r#"{"ranges":[]}"#), IpamError::NoRanges));
    assert!(matches!(
        err(r#"{"ranges":[[{"subnet":"198.19.64.0/24"}],[]]}"#),
        IpamError::EmptyRangeSet { set: 1 }
    ));
}

#[test]
fn garbage_is_a_parse_error() {
    assert!(serde_json::from_str::<IpamConfig>(r#"{"ranges":[[{"subnet":"nope"}]]}"#).is_err());
    assert!(serde_json::from_str::<IpamConfig>(
        r#"{"ranges":[[{"subnet":"198.19.64.0/24","gateway":"x"}]]}"#
    )
    .is_err());
}

#[test]
fn range_set_queries() {
    let rs = RangeSet::canonicalize(
        0,
        &[
            RangeConfig {
                subnet: "198.19.64.0/24".parse().unwrap(),
                range_start: Some(ip("198.19.64.10")),
                range_end: Some(ip("198.19.64.20")),
                gateway: None,
            },
            RangeConfig::new("198.19.65.0/24".parse().unwrap()),
        ],
    )
    .unwrap();
    assert!(rs.contains(ip("198.19.64.10")));
    assert!(rs.contains(ip("198.19.64.20")));
    assert!(!rs.contains(ip("198.19.64.9")));
    assert!(!rs.contains(ip("198.19.64.21")));
    assert!(rs.contains(ip("198.19.65.77")));
    assert!(!rs.contains(ip("fd00:1a::1")));
    // IPv4-mapped IPv6 is treated as IPv4, as Go's To4() does.
    let mapped: IpAddr = "::ffff:198.19.64.15".parse().unwrap();
    assert!(rs.contains(mapped));
    assert_eq!(
        rs.range_for(ip("198.19.65.77"))
            .unwrap()
            .with_prefix(ip("198.19.65.77"))
            .to_string(),
        "198.19.65.77/24"
    );
}
