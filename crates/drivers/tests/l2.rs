//! The macvlan, tap, host and null drivers and QoS, called directly in
//! namespaces the test makes: one acting as the node (the drivers' "host")
//! and one as the container.

use ferry_drivers::link::detach::Deleter;
use ferry_drivers::link::iface::{Address, InterfaceConfig};
use ferry_drivers::network::host::HostDriver;
use ferry_drivers::network::macvlan::MacvlanDriver;
use ferry_drivers::network::null::NullDriver;
use ferry_drivers::network::tap::TapDriver;
use ferry_drivers::network::{MacvlanConfig, TapConfig};
use ferry_drivers::qos::{self, Limits};
use ferry_drivers::{EndpointSpec, Error, NetworkDriver, NetworkKind, NetworkSpec, Placement};
use ferry_linux::{MacvlanMode, Netlink};
use ferry_testkit::{require_root, sh, unique, Netns};
use std::path::PathBuf;

/// Runs `f` on a thread inside `ns` (the drivers' host namespace there).
fn on_node<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    ferry_linux::Netns::open(ns.path())
        .expect("open the node namespace")
        .run(f)
        .expect("enter the node namespace")
}

fn network(kind: NetworkKind, mtu: Option<u32>) -> NetworkSpec {
    NetworkSpec {
        id: unique("l2net"),
        kind,
        mtu,
        gateways: Vec::new(),
        forwarding: false,
        masquerade: false,
    }
}

fn macvlan(master: &str) -> NetworkKind {
    NetworkKind::Macvlan(MacvlanConfig {
        master: master.into(),
        mode: MacvlanMode::Bridge,
        link_in_container: false,
    })
}

fn state() -> PathBuf {
    std::env::temp_dir()
}

/// A node namespace with a veth pair `m0`/`m1` (up): `m0` is the master.
fn node_with_master() -> Netns {
    let node = Netns::new("l2n");
    node.exec("ip link add m0 mtu 1500 type veth peer name m1");
    node.exec("ip link set m0 up");
    node.exec("ip link set m1 up");
    node
}

fn links(ns: &Netns) -> Vec<String> {
    let mut v: Vec<String> = ns
        .exec("ip -o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    v.sort();
    v
}

fn addr(net: &str) -> InterfaceConfig {
    InterfaceConfig {
        addresses: vec![Address {
            net: net.parse().unwrap(),
            gateway: None,
        }],
        routes: Vec::new(),
    }
}

/// The CNM flow: the macvlan is made on the host, moved into the sandbox
/// by its owner (Docker), then joined under its final name.
#[test]
fn macvlan_on_the_host_then_moved_and_joined() {
    require_root();
    let node = node_with_master();
    let ctr = Netns::new("l2c");
    let drv = MacvlanDriver::new(Deleter::Thread, state());
    let net = network(macvlan("m0"), Some(1400));
    let spec = EndpointSpec {
        id: "0123456789ab".into(),
        mac: Some("02:42:c6:12:01:02".parse().unwrap()),
        addresses: Vec::new(),
    };
    let ep = on_node(&node, || drv.create_endpoint(&net, &spec, Placement::Host)).unwrap();
    assert_eq!(ep.netns, None);
    assert!(ep.ifname.starts_with("mv"), "{}", ep.ifname);
    let shown = node.exec(&format!("ip -d link show {}", ep.ifname));
    assert!(shown.contains("macvlan mode bridge"), "{shown}");
    assert!(
        shown.contains("mtu 1400") && shown.contains("state DOWN"),
        "{shown}"
    );
    assert!(shown.contains("02:42:c6:12:01:02"), "{shown}");

    // Docker's part.
    node.exec(&format!("ip link set {} netns {}", ep.ifname, ctr.name));
    let cfg = addr("198.18.150.2/24");
    let joined = on_node(&node, || drv.join(&net, &ep, &ctr.path(), "eth0", &cfg)).unwrap();
    assert_eq!(joined.ifname, "eth0");
    assert_eq!(joined.netns.as_deref(), Some(ctr.path().as_str()));
    let shown = ctr.exec("ip addr show eth0");
    assert!(
        shown.contains("198.18.150.2/24") && shown.contains("UP"),
        "{shown}"
    );
    on_node(&node, || drv.check(&net, &joined, &cfg)).unwrap();

    on_node(&node, || {
        drv.delete_endpoint(&net, &joined).map(|p| p.finish())
    })
    .unwrap();
    assert_eq!(links(&ctr), vec!["lo"]);
    // Idempotent: already gone is success.
    on_node(&node, || {
        drv.delete_endpoint(&net, &joined).map(|p| p.finish())
    })
    .unwrap();
}

/// Ferry's own door: straight into the sandbox under a temporary name,
/// renamed by join; a taken name is `Exists`.
#[test]
fn macvlan_in_the_sandbox_under_a_temporary_name() {
    require_root();
    let node = node_with_master();
    let ctr = Netns::new("l2c");
    let drv = MacvlanDriver::new(Deleter::Thread, state());
    let net = network(macvlan("m0"), None);
    let spec = EndpointSpec {
        id: "cafe".into(),
        ..EndpointSpec::default()
    };
    let place = Placement::Netns {
        netns: &ctr.path(),
        ifname: "fctemp0",
    };
    let path = ctr.path();
    let ep = on_node(&node, || drv.create_endpoint(&net, &spec, place)).unwrap();
    assert_eq!(ep.ifname, "fctemp0");
    assert_eq!(links(&ctr), vec!["fctemp0", "lo"]);
    let again = on_node(&node, || drv.create_endpoint(&net, &spec, place));
    assert!(matches!(again, Err(Error::Exists(_))), "{again:?}");
    let cfg = addr("198.18.151.2/24");
    let joined = on_node(&node, || drv.join(&net, &ep, &path, "eth1", &cfg)).unwrap();
    assert_eq!(links(&ctr), vec!["eth1", "lo"]);
    on_node(&node, || drv.check(&net, &joined, &cfg)).unwrap();
    // The namespace gone took the macvlan along: deleting is still success.
    drop(ctr);
    on_node(&node, || {
        drv.delete_endpoint(&net, &joined).map(|p| p.finish())
    })
    .unwrap();
}

#[test]
fn macvlan_mtu_above_the_masters_is_refused_before_anything_is_made() {
    require_root();
    let node = node_with_master();
    let ctr = Netns::new("l2c");
    let drv = MacvlanDriver::new(Deleter::Thread, state());
    let net = network(macvlan("m0"), Some(9000));
    let v = on_node(&node, || drv.validate(&net));
    assert!(
        matches!(v, Err(Error::Invalid(ref m)) if m.contains("1500")),
        "{v:?}"
    );
    let spec = EndpointSpec::default();
    let place = Placement::Netns {
        netns: &ctr.path(),
        ifname: "eth0",
    };
    let made = on_node(&node, || drv.create_endpoint(&net, &spec, place));
    assert!(matches!(made, Err(Error::Invalid(_))), "{made:?}");
    assert_eq!(links(&ctr), vec!["lo"]);
    assert!(node.exec("ip -o link show type macvlan").is_empty());
    // An unknown master is invalid too.
    let v = on_node(&node, || drv.validate(&network(macvlan("nosuch0"), None)));
    assert!(matches!(v, Err(Error::Invalid(_))), "{v:?}");
}

#[test]
fn host_driver_refuses_a_namespace_of_its_own() {
    require_root();
    let node = Netns::new("l2n");
    let ctr = Netns::new("l2c");
    let drv = HostDriver::new(Deleter::Thread, state());
    let net = network(NetworkKind::Host, None);
    let spec = EndpointSpec {
        id: "h1".into(),
        ..EndpointSpec::default()
    };
    let ep = on_node(&node, || drv.create_endpoint(&net, &spec, Placement::Host)).unwrap();
    assert!(ep.ifname.is_empty());
    let cfg = InterfaceConfig::default();
    let refused = on_node(&node, || drv.join(&net, &ep, &ctr.path(), "eth0", &cfg));
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    let place = Placement::Netns {
        netns: &ctr.path(),
        ifname: "eth0",
    };
    let refused = on_node(&node, || drv.create_endpoint(&net, &spec, place));
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    // The node's own namespace is the host's.
    let joined = on_node(&node, || drv.join(&net, &ep, &node.path(), "eth0", &cfg)).unwrap();
    assert!(joined.ifname.is_empty());

    // null: no interface, nothing made.
    let null = NullDriver::new(Deleter::Thread, state());
    let place = Placement::Netns {
        netns: &ctr.path(),
        ifname: "eth0",
    };
    let ep = null.create_endpoint(&net, &spec, place).unwrap();
    assert!(ep.ifname.is_empty());
    null.join(&net, &ep, &ctr.path(), "eth0", &cfg).unwrap();
    assert_eq!(links(&ctr), vec!["lo"]);
}

/// A step after the tap exists fails (an MTU the kernel refuses for a
/// tap): the tap goes again.
#[test]
fn tap_rolls_back_when_a_later_step_fails() {
    require_root();
    let ctr = Netns::new("l2c");
    let drv = TapDriver::new(Deleter::Thread, state());
    let net = network(NetworkKind::Tap(TapConfig::default()), Some(65535));
    drv.validate(&net).unwrap();
    let spec = EndpointSpec::default();
    let place = Placement::Netns {
        netns: &ctr.path(),
        ifname: "tap0",
    };
    let r = drv.create_endpoint(&net, &spec, place);
    assert!(matches!(r, Err(Error::Kernel { .. })), "{r:?}");
    assert_eq!(links(&ctr), vec!["lo"]);

    // The same with a good MTU works and joins.
    let net = network(NetworkKind::Tap(TapConfig::default()), Some(1400));
    let ep = drv.create_endpoint(&net, &spec, place).unwrap();
    let cfg = addr("198.18.152.2/24");
    let joined = drv.join(&net, &ep, &ctr.path(), "tap0", &cfg).unwrap();
    drv.check(&net, &joined, &cfg).unwrap();
    drv.delete_endpoint(&net, &joined).unwrap().finish();
    assert_eq!(links(&ctr), vec!["lo"]);
    let bad = network(NetworkKind::Tap(TapConfig::default()), Some(70000));
    assert!(matches!(drv.validate(&bad), Err(Error::Invalid(_))));
}

#[test]
fn qos_apply_then_remove_leaves_no_qdisc_or_ifb() {
    require_root();
    let node = Netns::new("l2n");
    node.exec("ip link add h0 type veth peer name c0");
    node.exec("ip link set h0 up");
    node.exec("ip link set c0 up");
    let before = node.exec("tc qdisc show dev h0");
    let shaping = Limits {
        ingress_rate: 8_000_000,
        ingress_burst: 800_000,
        egress_rate: 16_000_000,
        egress_burst: 800_000,
    }
    .shaping()
    .unwrap();
    let ifb = qos::ifb_name("l2net", &unique("ctr"));
    let made = on_node(&node, || {
        let mut nl = Netlink::new().unwrap();
        let host = nl.link_by_name("h0").unwrap();
        let made = qos::apply(&mut nl, &host, &shaping, &ifb).unwrap();
        // Idempotent.
        qos::apply(&mut nl, &host, &shaping, &ifb).unwrap();
        qos::check(&mut nl, &host, &shaping, &ifb).unwrap();
        made
    });
    assert_eq!(made.map(|l| l.name), Some(ifb.clone()));
    let q = node.exec("tc qdisc show dev h0");
    assert!(
        q.contains("tbf 1: root") && q.contains("ingress ffff:"),
        "{q}"
    );
    assert!(node
        .exec(&format!("tc qdisc show dev {ifb}"))
        .contains("tbf"));

    on_node(&node, || {
        let mut nl = Netlink::new().unwrap();
        let host = nl.link_by_name("h0").unwrap();
        qos::remove(Deleter::Thread, nl, Some(&host), &ifb).unwrap();
        // Again: nothing left is success.
        let nl = Netlink::new().unwrap();
        qos::remove(Deleter::Thread, nl, Some(&host), &ifb).unwrap();
    });
    assert_eq!(node.exec("tc qdisc show dev h0"), before);
    assert!(!sh(&format!("ip -n {} -o link show", node.name)).contains(&ifb));
}
