//! Many `host-local` processes on one network at once: every ADD gets its
//! own address, every DEL releases exactly its own, whether the processes are
//! Ferry's, the reference's, or both (they share the `lock` file).
//!
//! Run: `cargo test -p ferry-plugins --test ipam_concurrency` (as root, with
//! containernetworking-plugins installed).

#[path = "ipam_support.rs"]
mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::*;

const N: usize = 100;

fn addresses(outs: &[Out]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for out in outs {
        let v = out.ok();
        let ips = v["ips"].as_array().expect("ips");
        for ip in ips {
            let a = ip["address"].as_str().expect("address").to_string();
            assert!(seen.insert(a.clone()), "{a} handed out twice");
        }
    }
    seen
}

/// Runs one request per (implementation, container ID) at once.
fn parallel(bins: &Bins, command: &str, conf: &Value, who: &[(Impl, String)]) -> Vec<Out> {
    let children: Vec<_> = who
        .iter()
        .map(|(imp, cid)| spawn(bins, *imp, "host-local", &Req::new(command, cid, conf)))
        .collect();
    children.into_iter().map(finish).collect()
}

#[test]
fn hundred_parallel_adds_then_dels() {
    let bins = Bins::new();
    let dir = data_dir("par");
    let net = dir.path().join("net-par");
    let conf = host_local(
        "1.0.0",
        "net-par",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.18.81.0/24"}], [{"subnet": "fd00:64:e::/64"}]]}),
        json!({}),
    );
    let who: Vec<(Impl, String)> = (0..N).map(|i| (Impl::Ferry, format!("par-{i}"))).collect();
    let outs = parallel(&bins, "ADD", &conf, &who);
    let addrs = addresses(&outs);
    assert_eq!(addrs.len(), 2 * N);
    let res = reservations(&net);
    assert_eq!(res.len(), 2 * N);
    for (_, cid) in &who {
        let held = res.values().filter(|v| **v == holder(cid, "eth0")).count();
        assert_eq!(held, 2, "{cid}");
    }

    let outs = parallel(&bins, "DEL", &conf, &who);
    for (out, (_, cid)) in outs.iter().zip(&who) {
        assert!(out.success, "DEL {cid}: {}", out.stdout);
    }
    let left: Vec<String> = snapshot(&net).into_keys().collect();
    assert_eq!(left, ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
}

#[test]
fn ferry_and_reference_in_parallel_share_the_lock() {
    let bins = Bins::new();
    let dir = data_dir("mix");
    let net = dir.path().join("net-mix");
    let conf = host_local(
        "1.0.0",
        "net-mix",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.18.82.0/24"}]]}),
        json!({}),
    );
    let who: Vec<(Impl, String)> = (0..N)
        .map(|i| {
            let imp = if i % 2 == 0 {
                Impl::Ferry
            } else {
                Impl::Reference
            };
            (imp, format!("mix-{i}"))
        })
        .collect();
    let outs = parallel(&bins, "ADD", &conf, &who);
    assert_eq!(addresses(&outs).len(), N);
    assert_eq!(reservations(&net).len(), N);

    // Each releases the other's attachments.
    let swapped: Vec<(Impl, String)> = who
        .iter()
        .map(|(imp, cid)| {
            let other = match imp {
                Impl::Ferry => Impl::Reference,
                Impl::Reference => Impl::Ferry,
            };
            (other, cid.clone())
        })
        .collect();
    let outs = parallel(&bins, "DEL", &conf, &swapped);
    for (out, (imp, cid)) in outs.iter().zip(&swapped) {
        assert!(out.success, "{imp:?} DEL {cid}: {}", out.stdout);
    }
    assert!(reservations(&net).is_empty(), "{:?}", reservations(&net));
    // The reference's DELs leave Ferry's index entries behind as stale
    // hints (never leases): a GC with no valid attachment clears them.
    let mut gc = host_local(
        "1.1.0",
        "net-mix",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.18.82.0/24"}]]}),
        json!({}),
    );
    gc["cni.dev/valid-attachments"] = json!([]);
    assert!(run(&bins, Impl::Ferry, "host-local", &Req::new("GC", "", &gc)).success);
    let left: Vec<String> = snapshot(&net).into_keys().collect();
    assert_eq!(left, ["last_reserved_ip.0", "lock"]);
}
