//! One test body run against both backends: networks (VNI allocation,
//! conflicts), concurrent block claims, blocks running out, endpoints, and
//! the watch.

mod common;

use common::{wait_for, Etcd};
use ferry_cluster::{open, ClusterStore, EndpointRecord, Error, Event, HostRecord, NetworkRecord};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn net(name: &str, vni: u32, subnets: &[&str]) -> NetworkRecord {
    NetworkRecord {
        name: name.into(),
        vni,
        subnets: subnets.iter().map(|s| s.parse().expect("subnet")).collect(),
        options: Default::default(),
    }
}

fn host(id: &str, vtep: &str) -> HostRecord {
    HostRecord {
        id: id.into(),
        vtep: vtep.parse().expect("vtep"),
        mac: String::new(),
        registered_unix: 0,
    }
}

/// `a` and `b` are two hosts (for redb, one host: the same store twice).
fn exercise(a: Arc<dyn ClusterStore>, b: Arc<dyn ClusterStore>, a_id: &str, b_id: &str) {
    let rx = a.watch().expect("watch");
    match rx.recv_timeout(WAIT).expect("first event") {
        Event::Snapshot(s) => assert!(s.networks.is_empty() && s.endpoints.is_empty()),
        other => panic!("first event is not a Snapshot: {other:?}"),
    }
    a.register_host(&host(a_id, "198.18.200.1"))
        .expect("register a");
    b.register_host(&host(b_id, "198.18.200.2"))
        .expect("register b");
    let ids: BTreeSet<String> = a
        .hosts()
        .expect("hosts")
        .into_iter()
        .map(|(h, _)| h.id)
        .collect();
    assert_eq!(ids, [a_id, b_id].into_iter().map(String::from).collect());
    wait_for(&rx, WAIT, "HostUp", |e| {
        matches!(e, Event::HostUp(h) if h.id == a_id).then_some(())
    });

    // Networks: a VNI allocated, the same request answered with the record,
    // other subnets and a used VNI refused.
    let n1 = a
        .create_network(&net("n1", 0, &["198.18.10.0/24", "fd00:18:10::/120"]))
        .expect("create n1");
    assert_ne!(n1.vni, 0);
    assert_eq!(
        b.create_network(&net("n1", 0, &["fd00:18:10::/120", "198.18.10.0/24"]))
            .expect("again"),
        n1
    );
    match b.create_network(&net("n1", 0, &["198.18.11.0/24"])) {
        Err(Error::Conflict(m)) => {
            assert!(
                m.contains("198.18.10.0/24") && m.contains("198.18.11.0/24"),
                "{m}"
            )
        }
        other => panic!("conflicting subnets accepted: {other:?}"),
    }
    let n2 = b
        .create_network(&net("n2", 0, &["198.18.12.0/26"]))
        .expect("create n2");
    assert_ne!(n2.vni, n1.vni);
    match a.create_network(&net("n3", n1.vni, &["198.18.13.0/24"])) {
        Err(Error::Conflict(m)) => assert!(m.contains("n1"), "{m}"),
        other => panic!("a used VNI accepted: {other:?}"),
    }
    assert_eq!(a.networks().expect("networks").len(), 2);
    wait_for(&rx, WAIT, "NetworkUp n1", |e| {
        matches!(e, Event::NetworkUp(n) if *n == n1).then_some(())
    });

    // Both hosts claim IPv4 blocks at once until none is left: 4 /26 blocks
    // of a /24, each given once.
    let claim = |s: Arc<dyn ClusterStore>| {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(b) = s.claim_block("n1", false).expect("claim") {
                got.push(b);
            }
            got
        })
    };
    let (ta, tb) = (claim(a.clone()), claim(b.clone()));
    let got_a = ta.join().expect("thread a");
    let got_b = tb.join().expect("thread b");
    let all: BTreeSet<_> = got_a.iter().chain(&got_b).copied().collect();
    assert_eq!(
        all.len(),
        got_a.len() + got_b.len(),
        "a block given twice: {got_a:?} {got_b:?}"
    );
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(a.claim_block("n1", false).expect("claim"), None);
    let held = a.blocks("n1").expect("blocks");
    assert_eq!(held.len(), 4);
    for r in &held {
        let want = if got_a.contains(&r.block) { a_id } else { b_id };
        assert_eq!(r.host, want, "{r:?}");
    }
    let v6 = a
        .claim_block("n1", true)
        .expect("claim v6")
        .expect("a v6 block");
    assert_eq!(v6.to_string(), "fd00:18:10::/122");
    wait_for(&rx, WAIT, "BlockUp v6", |e| {
        matches!(e, Event::BlockUp(r) if r.block == v6).then_some(())
    });
    a.release_block("n1", v6).expect("release");
    wait_for(&rx, WAIT, "BlockDown v6", |e| {
        matches!(e, Event::BlockDown { block, .. } if *block == v6).then_some(())
    });
    assert!(matches!(
        a.claim_block("nope", false),
        Err(Error::NotFound(_))
    ));

    // Endpoints.
    let ep = EndpointRecord {
        network: "n1".into(),
        ip: "198.18.10.2".parse().expect("ip"),
        mac: "02:00:00:00:00:02".into(),
        host: a_id.into(),
        name: Some("c1".into()),
        aliases: Vec::new(),
    };
    a.publish_endpoint(&ep).expect("publish");
    assert_eq!(
        b.endpoints(Some("n1")).expect("endpoints"),
        vec![ep.clone()]
    );
    assert!(b.endpoints(Some("n2")).expect("endpoints").is_empty());
    wait_for(&rx, WAIT, "EndpointUp", |e| {
        matches!(e, Event::EndpointUp(r) if *r == ep).then_some(())
    });
    a.withdraw_endpoint("n1", ep.ip).expect("withdraw");
    a.withdraw_endpoint("n1", ep.ip).expect("withdraw again");
    assert!(b.endpoints(None).expect("endpoints").is_empty());
    wait_for(&rx, WAIT, "EndpointDown", |e| {
        matches!(e, Event::EndpointDown { network, ip } if network == "n1" && *ip == ep.ip)
            .then_some(())
    });

    // A new watcher's Snapshot holds what is there now.
    let rx2 = b.watch().expect("watch b");
    match rx2.recv_timeout(WAIT).expect("snapshot") {
        Event::Snapshot(s) => {
            assert_eq!(s.networks.len(), 2);
            assert_eq!(s.blocks.len(), 4);
            assert!(s.endpoints.is_empty());
        }
        other => panic!("first event is not a Snapshot: {other:?}"),
    }

    // Deleting a network takes its blocks; twice is fine.
    a.delete_network("n1").expect("delete");
    a.delete_network("n1").expect("delete again");
    assert!(a.blocks("n1").expect("blocks").is_empty());
    wait_for(&rx, WAIT, "NetworkDown", |e| {
        matches!(e, Event::NetworkDown(n) if n == "n1").then_some(())
    });

    // Clean shutdown: the host and its records go.
    a.publish_endpoint(&EndpointRecord {
        network: "n2".into(),
        ..ep.clone()
    })
    .expect("publish n2");
    a.unregister_host().expect("unregister");
    assert!(a.hosts().expect("hosts").iter().all(|(h, _)| h.id != a_id));
    assert!(b.endpoints(None).expect("endpoints").is_empty());
    wait_for(&rx, WAIT, "HostDown", |e| {
        matches!(e, Event::HostDown(h) if h == a_id).then_some(())
    });
}

#[test]
fn redb_backend() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cluster.redb");
    let a = open(None, &path, "h1", Duration::from_secs(10)).expect("open redb");
    assert_eq!(a.backend(), "redb");
    exercise(a.clone(), a, "h1", "h1");
}

#[test]
fn etcd_backend() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = etcd.url();
    let a = open(
        Some(&url),
        &dir.path().join("a"),
        "h1",
        Duration::from_secs(10),
    )
    .expect("open a");
    let b = open(
        Some(&url),
        &dir.path().join("b"),
        "h2",
        Duration::from_secs(10),
    )
    .expect("open b");
    assert_eq!(a.backend(), "etcd");
    exercise(a, b, "h1", "h2");
}
