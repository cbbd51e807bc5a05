//! The etcd backend's lease, watch and failure behaviour against a private
//! etcd.

mod common;

use common::{until, wait_for, Etcd};
use ferry_cluster::{open, ClusterStore, EndpointRecord, Error, Event, HostRecord, NetworkRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(2);

fn store(etcd: &Etcd, id: &str) -> Arc<dyn ClusterStore> {
    let dir = std::env::temp_dir();
    open(Some(&etcd.url()), &dir.join("unused.redb"), id, TTL).expect("open etcd store")
}

/// Registers `id`, creates network `net` (one /24) if needed, claims a block
/// and publishes one endpoint in it.
fn populate(s: &dyn ClusterStore, id: &str, net: &str, ip: &str) -> EndpointRecord {
    s.register_host(&HostRecord {
        id: id.into(),
        vtep: "198.18.201.1".parse().expect("vtep"),
        mac: "02:00:00:00:01:01".into(),
        registered_unix: 0,
    })
    .expect("register");
    let subnets = vec!["198.18.20.0/24".parse().expect("subnet")];
    s.create_network(&NetworkRecord {
        name: net.into(),
        vni: 0,
        subnets,
        options: Default::default(),
    })
    .expect("create network");
    s.claim_block(net, false).expect("claim").expect("a block");
    let ep = EndpointRecord {
        network: net.into(),
        ip: ip.parse().expect("ip"),
        mac: "02:00:00:00:00:09".into(),
        host: id.into(),
        name: None,
        aliases: Vec::new(),
    };
    s.publish_endpoint(&ep).expect("publish");
    ep
}

fn holds(s: &dyn ClusterStore, id: &str, net: &str) -> (bool, usize, usize) {
    let host = s
        .hosts()
        .map(|h| h.iter().any(|(h, _)| h.id == id))
        .unwrap_or(false);
    let blocks = s
        .blocks(net)
        .map(|b| b.iter().filter(|b| b.host == id).count())
        .unwrap_or(0);
    let eps = s
        .endpoints(Some(net))
        .map(|e| e.iter().filter(|e| e.host == id).count())
        .unwrap_or(0);
    (host, blocks, eps)
}

#[test]
fn a_dead_host_disappears_with_its_records_within_ttl() {
    let etcd = Etcd::start();
    let a = store(&etcd, "dead");
    let b = store(&etcd, "alive");
    let ep = populate(a.as_ref(), "dead", "nd", "198.18.20.5");
    let rx = b.watch().expect("watch");
    assert!(matches!(
        rx.recv_timeout(TTL).expect("snapshot"),
        Event::Snapshot(_)
    ));
    assert_eq!(holds(b.as_ref(), "dead", "nd"), (true, 1, 1));

    drop(a); // no unregister: the keepalive stops, as when the process dies
    let took = until(TTL + Duration::from_secs(1), "dead host gone", || {
        holds(b.as_ref(), "dead", "nd") == (false, 0, 0)
    });
    eprintln!("dead host gone after {took:?} (TTL {TTL:?})");
    wait_for(&rx, Duration::from_secs(1), "HostDown", |e| {
        matches!(e, Event::HostDown(h) if h == "dead").then_some(())
    });
    // The watcher saw the endpoint go too (events may come in any order).
    let rx2 = b.watch().expect("watch");
    match rx2.recv_timeout(TTL).expect("snapshot") {
        Event::Snapshot(s) => assert!(s.endpoints.is_empty() && s.blocks.is_empty()),
        other => panic!("{other:?}"),
    }
    drop(rx2);
    let _ = ep;
}

#[test]
fn a_dead_host_s_endpoint_down_reaches_the_watcher() {
    let etcd = Etcd::start();
    let a = store(&etcd, "gone");
    let b = store(&etcd, "watcher");
    let ep = populate(a.as_ref(), "gone", "ne", "198.18.20.6");
    let rx = b.watch().expect("watch");
    drop(a);
    wait_for(&rx, TTL + Duration::from_secs(1), "EndpointDown", |e| {
        matches!(e, Event::EndpointDown { network, ip } if network == "ne" && *ip == ep.ip)
            .then_some(())
    });
}

#[test]
fn a_watch_behind_compaction_lists_again() {
    let etcd = Etcd::start();
    let a = store(&etcd, "ca");
    populate(a.as_ref(), "ca", "nc", "198.18.20.7");
    let old = etcd.revision();
    for i in 10..20 {
        let ep = EndpointRecord {
            network: "nc".into(),
            ip: format!("198.18.20.{i}").parse().expect("ip"),
            mac: "02:00:00:00:00:0a".into(),
            host: "ca".into(),
            name: None,
            aliases: Vec::new(),
        };
        a.publish_endpoint(&ep).expect("publish");
    }
    let now = etcd.revision();
    etcd.raw(async |c| c.compact(now, None).await)
        .expect("compact");
    // A watcher at `old`, now compacted away.
    let (_w, rx) =
        ferry_cluster::testing::etcd_watch_from(&etcd.endpoint(), "cw", old).expect("watch");
    let snap = wait_for(
        &rx,
        Duration::from_secs(5),
        "Snapshot after compaction",
        |e| match e {
            Event::Snapshot(s) => Some(s.clone()),
            _ => None,
        },
    );
    assert_eq!(snap.endpoints.len(), 11);
    // Changes flow after the re-list.
    a.withdraw_endpoint("nc", "198.18.20.7".parse().expect("ip"))
        .expect("withdraw");
    wait_for(
        &rx,
        Duration::from_secs(5),
        "EndpointDown after re-list",
        |e| matches!(e, Event::EndpointDown { network, .. } if network == "nc").then_some(()),
    );
}

#[test]
fn publish_endpoint_is_one_write() {
    let etcd = Etcd::start();
    let a = store(&etcd, "ow");
    populate(a.as_ref(), "ow", "no", "198.18.20.8");
    let before = etcd.revision();
    let ep = EndpointRecord {
        network: "no".into(),
        ip: "198.18.20.9".parse().expect("ip"),
        mac: "02:00:00:00:00:0b".into(),
        host: "ow".into(),
        name: Some("c".into()),
        aliases: Vec::new(),
    };
    a.publish_endpoint(&ep).expect("publish");
    assert_eq!(etcd.revision(), before + 1);
}

#[test]
fn a_lost_lease_is_granted_again_and_records_republished() {
    let etcd = Etcd::start();
    let a = store(&etcd, "rl");
    populate(a.as_ref(), "rl", "nr", "198.18.20.10");
    // Revoke every lease behind the store's back: its records vanish.
    etcd.raw(async |c| {
        for l in c.leases().await?.leases().to_vec() {
            c.lease_revoke(l.id()).await?;
        }
        Ok(())
    })
    .expect("revoke");
    let b = store(&etcd, "observer");
    assert_eq!(holds(b.as_ref(), "rl", "nr"), (false, 0, 0));
    let took = until(TTL + Duration::from_secs(3), "re-published", || {
        holds(b.as_ref(), "rl", "nr") == (true, 1, 1)
    });
    eprintln!("re-published {took:?} after the lease was revoked");
}

#[test]
fn unreachable_etcd_fails_fast_and_the_store_recovers() {
    let mut etcd = Etcd::start();
    let a = store(&etcd, "ua");
    let b = store(&etcd, "ub");
    populate(a.as_ref(), "ua", "nu", "198.18.20.11");
    let rx = b.watch().expect("watch");
    assert!(matches!(
        rx.recv_timeout(TTL).expect("snapshot"),
        Event::Snapshot(_)
    ));

    etcd.kill();
    let ep = EndpointRecord {
        network: "nu".into(),
        ip: "198.18.20.12".parse().expect("ip"),
        mac: "02:00:00:00:00:0c".into(),
        host: "ua".into(),
        name: None,
        aliases: Vec::new(),
    };
    for (what, res) in [
        (
            "networks",
            Box::new(|| a.networks().map(drop)) as Box<dyn Fn() -> Result<(), Error>>,
        ),
        ("publish", Box::new(|| a.publish_endpoint(&ep))),
        ("claim", Box::new(|| a.claim_block("nu", false).map(drop))),
    ] {
        let start = Instant::now();
        let r = res();
        let took = start.elapsed();
        eprintln!("{what} with etcd down: {r:?} after {took:?}");
        assert!(matches!(r, Err(Error::Unavailable(_))), "{what}: {r:?}");
        assert!(took < Duration::from_millis(3500), "{what} took {took:?}");
    }
    std::thread::sleep(TTL * 2); // longer than the lease: etcd renews leases on restart

    etcd.restart();
    let took = until(Duration::from_secs(15), "store answers again", || {
        a.networks().is_ok()
    });
    eprintln!("store answered {took:?} after etcd restarted");
    until(Duration::from_secs(10), "host and records back", || {
        holds(b.as_ref(), "ua", "nu") == (true, 1, 1)
    });
    // The watch lists again and changes flow.
    wait_for(
        &rx,
        Duration::from_secs(10),
        "Snapshot after restart",
        |e| matches!(e, Event::Snapshot(_)).then_some(()),
    );
    a.publish_endpoint(&ep).expect("publish after restart");
    wait_for(
        &rx,
        Duration::from_secs(5),
        "EndpointUp after restart",
        |e| matches!(e, Event::EndpointUp(r) if *r == ep).then_some(()),
    );
    // The lease is kept alive again: the records outlive several TTLs.
    std::thread::sleep(TTL * 2);
    assert_eq!(holds(b.as_ref(), "ua", "nu"), (true, 1, 2));
}
