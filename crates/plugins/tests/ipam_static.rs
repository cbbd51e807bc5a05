//! Ferry's `static` against the reference `/usr/lib/cni/static`
//! (containernetworking-plugins 1.1.1): same config, CNI_ARGS and stdin, same
//! result (JSON compared with whitespace removed and key order kept).
//!
//! Known differences, asserted below:
//! - error codes: the reference prints 999 for everything but malformed JSON
//!   (6); Ferry prints 6 for malformed JSON or a key of the wrong type, 7 for
//!   invalid config, 4 for bad CNI_ARGS, 1 when the result cannot be written
//!   in a 0.1.0/0.2.0 request's version;
//! - routes keep the CNI 1.1 members (`mtu`, `advmss`, `priority`, `table`,
//!   `scope`) in 1.x results; the reference (libcni 1.0 types) drops them;
//! - GC and STATUS need CNI 1.1.0, which the reference does not speak: Ferry
//!   alone, both succeed.
//!
//! Run: `cargo test -p ferry-plugins --test ipam_static`.

#[path = "ipam_support.rs"]
mod support;

use serde_json::{json, Value};
use support::*;

fn conf(version: &str, ipam: Value, top: Value) -> Value {
    let mut ipam_obj = json!({"type": "static"});
    merge(&mut ipam_obj, ipam);
    let mut c =
        json!({"cniVersion": version, "name": "net-static", "type": "bridge", "ipam": ipam_obj});
    merge(&mut c, top);
    c
}

fn both(bins: &Bins, req: &Req) -> (Out, Out) {
    (
        run(bins, Impl::Reference, "static", req),
        run(bins, Impl::Ferry, "static", req),
    )
}

fn same(bins: &Bins, label: &str, req: &Req) -> Value {
    let (r, f) = both(bins, req);
    assert!(r.success, "{label}: reference failed: {}", r.stdout);
    assert!(f.success, "{label}: ferry failed: {}{}", f.stdout, f.stderr);
    assert_eq!(f.canonical(), r.canonical(), "{label}");
    f.json()
}

fn full_ipam() -> Value {
    json!({
        "addresses": [
            {"address": "198.18.83.5/24", "gateway": "198.18.83.1"},
            {"address": "fd00:64:f::5/64"}
        ],
        "routes": [
            {"dst": "0.0.0.0/0"},
            {"dst": "198.18.0.0/16", "gw": "198.18.83.9"},
            {"dst": "fd00:64:10::1/64"}
        ],
        "dns": {
            "nameservers": ["198.18.83.53"],
            "domain": "ferry.test",
            "search": ["ferry.test"],
            "options": ["ndots:1"]
        }
    })
}

#[test]
fn results_match_the_reference() {
    let bins = Bins::new();
    for v in ["1.0.0", "0.4.0", "0.3.1", "0.3.0", "0.2.0"] {
        same(
            &bins,
            v,
            &Req::new("ADD", "a", &conf(v, full_ipam(), json!({}))),
        );
    }
    let one = json!({"addresses": [{"address": "198.18.83.6/24", "gateway": "198.18.83.1"}],
                     "routes": [{"dst": "0.0.0.0/0"}]});
    same(
        &bins,
        "0.1.0",
        &Req::new("ADD", "a", &conf("0.1.0", one, json!({}))),
    );
    same(
        &bins,
        "no addresses",
        &Req::new("ADD", "a", &conf("1.0.0", json!({}), json!({}))),
    );
    let v = same(
        &bins,
        "v4-mapped",
        &Req::new(
            "ADD",
            "a",
            &conf(
                "1.0.0",
                json!({"addresses": [{"address": "::ffff:198.18.83.7/120",
                                                    "gateway": "::ffff:198.18.83.1"}]}),
                json!({}),
            ),
        ),
    );
    assert_eq!(v["ips"][0]["address"], "198.18.83.7/24");
    assert_eq!(v["ips"][0]["gateway"], "198.18.83.1");
    same(
        &bins,
        "host bits and empty gateway",
        &Req::new(
            "ADD",
            "a",
            &conf(
                "1.0.0",
                json!({"addresses": [{"address": "198.18.83.200/25", "gateway": ""}]}),
                json!({}),
            ),
        ),
    );
}

#[test]
fn cni_args_args_and_runtime_config() {
    let bins = Bins::new();
    let base = conf("1.0.0", full_ipam(), json!({}));
    // CNI_ARGS IP is appended; GATEWAY applies to the CNI_ARGS addresses
    // only (the configured ones are not parsed yet when it is applied).
    let v = same(
        &bins,
        "IP and GATEWAY",
        &Req::new("ADD", "a", &base)
            .args("IP=198.18.83.20/24, fd00:64:f::20/64;GATEWAY=198.18.83.254,fd00:64:f::1"),
    );
    assert_eq!(v["ips"].as_array().unwrap().len(), 4);
    assert_eq!(v["ips"][0]["gateway"], "198.18.83.1");
    assert_eq!(v["ips"][1].get("gateway"), None);
    assert_eq!(v["ips"][2]["gateway"], "198.18.83.254");
    assert_eq!(v["ips"][3]["gateway"], "fd00:64:f::1");
    same(
        &bins,
        "IgnoreUnknown",
        &Req::new("ADD", "a", &base).args("IgnoreUnknown=1;K8S_POD_NAME=p;IP=198.18.83.21/24"),
    );
    same(&bins, "empty IP", &Req::new("ADD", "a", &base).args("IP="));

    // args.cni.ips replaces everything so far; runtimeConfig.ips replaces that.
    let mut c = base.clone();
    c["args"] = json!({"cni": {"ips": ["198.18.83.30/24", "fd00:64:f::30/64"]}});
    let v = same(
        &bins,
        "args",
        &Req::new("ADD", "a", &c).args("IP=198.18.83.20/24;GATEWAY=198.18.83.254"),
    );
    assert_eq!(
        v["ips"],
        json!([{"address": "198.18.83.30/24"}, {"address": "fd00:64:f::30/64"}])
    );
    c["runtimeConfig"] = json!({"ips": ["198.18.83.40/24"]});
    let v = same(&bins, "runtimeConfig", &Req::new("ADD", "a", &c));
    assert_eq!(v["ips"], json!([{"address": "198.18.83.40/24"}]));
    // Empty lists change nothing.
    let mut c = base.clone();
    c["args"] = json!({"cni": {"ips": []}});
    c["runtimeConfig"] = json!({"ips": []});
    same(&bins, "empty lists", &Req::new("ADD", "a", &c));
}

#[test]
fn errors() {
    let bins = Bins::new();
    let good = conf("1.0.0", full_ipam(), json!({}));
    let with_addr = |a: Value| conf("1.0.0", json!({"addresses": [a]}), json!({}));
    let mut two_v4 = conf(
        "0.2.0",
        json!({"addresses": [{"address": "198.18.83.5/24"}, {"address": "198.18.83.6/24"}]}),
        json!({}),
    );
    let mut bad_args = good.clone();
    bad_args["args"] = json!({"cni": {"ips": ["198.18.83.5"]}});
    let mut bad_rc = good.clone();
    bad_rc["runtimeConfig"] = json!({"ips": ["bogus"]});
    let cases: Vec<(&str, Req, u64)> = vec![
        (
            "address without prefix",
            Req::new("ADD", "a", &with_addr(json!({"address": "198.18.83.5"}))),
            7,
        ),
        (
            "address missing",
            Req::new("ADD", "a", &with_addr(json!({"gateway": "198.18.83.1"}))),
            7,
        ),
        (
            "gateway not an address",
            Req::new(
                "ADD",
                "a",
                &with_addr(json!({"address": "198.18.83.5/24", "gateway": "bogus"})),
            ),
            7,
        ),
        (
            "CNI_ARGS IP without prefix",
            Req::new("ADD", "a", &good).args("IP=198.18.83.5"),
            4,
        ),
        (
            "CNI_ARGS bad GATEWAY",
            Req::new("ADD", "a", &good).args("IP=198.18.83.5/24;GATEWAY=x"),
            4,
        ),
        (
            "unknown CNI_ARGS",
            Req::new("ADD", "a", &good).args("FOO=bar"),
            4,
        ),
        (
            "args ips without prefix",
            Req::new("ADD", "a", &bad_args),
            7,
        ),
        ("runtimeConfig ips bogus", Req::new("ADD", "a", &bad_rc), 7),
        (
            "missing ipam",
            Req::new(
                "ADD",
                "a",
                &json!({"cniVersion": "1.0.0", "name": "net-static"}),
            ),
            7,
        ),
        ("two v4 in 0.2.0", Req::new("ADD", "a", &two_v4), 7),
        (
            "addresses of the wrong type",
            Req::new(
                "ADD",
                "a",
                &conf("1.0.0", json!({"addresses": {}}), json!({})),
            ),
            6,
        ),
        (
            "no address in 0.2.0",
            Req::new("ADD", "a", &conf("0.2.0", json!({}), json!({}))),
            1,
        ),
        (
            "malformed JSON",
            Req::new("ADD", "a", &good).raw(br#"{"cniVersion": "1.0.0", "ipam": "#),
            6,
        ),
    ];
    for (label, req, code) in cases {
        let (r, f) = both(&bins, &req);
        let want_r = if label == "malformed JSON" { 6 } else { 999 };
        assert_eq!(r.err_code(), want_r, "{label}: reference: {}", r.stdout);
        assert_eq!(f.err_code(), code, "{label}: ferry: {}", f.stdout);
    }
    // The 0.2.0 rule is about the addresses that remain.
    two_v4["runtimeConfig"] = json!({"ips": ["198.18.83.7/24"]});
    same(&bins, "replaced", &Req::new("ADD", "a", &two_v4));
}

#[test]
fn routes_keep_cni_1_1_members() {
    let bins = Bins::new();
    let c = conf(
        "1.0.0",
        json!({"addresses": [{"address": "198.18.83.5/24"}],
               "routes": [{"dst": "198.18.0.0/16", "gw": "198.18.83.1", "mtu": 1400, "table": 100}]}),
        json!({}),
    );
    let (r, f) = both(&bins, &Req::new("ADD", "a", &c));
    assert_eq!(
        r.ok()["routes"],
        json!([{"dst": "198.18.0.0/16", "gw": "198.18.83.1"}])
    );
    assert_eq!(
        f.ok()["routes"],
        json!([{"dst": "198.18.0.0/16", "gw": "198.18.83.1", "mtu": 1400, "table": 100}])
    );
    // Written as 0.4.0 they go, as in the reference.
    let mut c4 = c.clone();
    c4["cniVersion"] = json!("0.4.0");
    same(&bins, "0.4.0 routes", &Req::new("ADD", "a", &c4));
}

#[test]
fn del_check_gc_status() {
    let bins = Bins::new();
    let c = conf("1.0.0", full_ipam(), json!({}));
    // DEL allocates nothing to release, whatever the config.
    for cfg in [
        c.clone(),
        json!({"cniVersion": "1.0.0", "name": "net-static"}),
    ] {
        let (r, f) = both(&bins, &Req::new("DEL", "a", &cfg));
        assert!(r.success && f.success, "{}{}", r.stdout, f.stdout);
        assert!(f.stdout.is_empty());
    }
    // CHECK compares with prevResult, as the reference.
    let prev = run(&bins, Impl::Ferry, "static", &Req::new("ADD", "a", &c)).ok();
    let mut chk = c.clone();
    chk["prevResult"] = prev.clone();
    let (r, f) = both(&bins, &Req::new("CHECK", "a", &chk));
    assert!(r.success && f.success, "{}{}", r.stdout, f.stdout);
    chk["prevResult"]["ips"][0]["gateway"] = json!("198.18.83.2");
    let (r, f) = both(&bins, &Req::new("CHECK", "a", &chk));
    assert_eq!((r.err_code(), f.err_code()), (999, 100));
    let (r, f) = both(&bins, &Req::new("CHECK", "a", &c));
    assert_eq!((r.err_code(), f.err_code()), (999, 7));
    // GC and STATUS (1.1.0, Ferry only) have nothing to do.
    let mut c11 = c.clone();
    c11["cniVersion"] = json!("1.1.0");
    c11["cni.dev/valid-attachments"] = json!([]);
    for verb in ["GC", "STATUS"] {
        let out = run(&bins, Impl::Ferry, "static", &Req::new(verb, "", &c11));
        assert!(out.success, "{verb}: {}", out.stdout);
    }
}
