//! The overlay driver across two "hosts": network namespaces joined by a
//! veth underlay (198.18.101.0/24, MTU 1400), each running the driver in its
//! own namespace as ferryd would, each with a container namespace on the
//! overlay (198.18.102.0/24 and fd00:102::/64). `ip`, `bridge` and `ping`
//! run inside the namespaces as oracles. Runs as root; every namespace is
//! unique and deleted on drop, taking all its links with it.

use ferry_drivers::link::detach::Deleter;
use ferry_drivers::link::iface::{Address, InterfaceConfig};
use ferry_drivers::network::overlay::{OverlayDriver, Peer, Reconciled};
use ferry_drivers::network::{
    Endpoint, EndpointSpec, NetworkDriver, NetworkKind, NetworkSpec, OverlayConfig, Placement,
};
use ferry_drivers::{Error, MacAddr};
use ferry_testkit::{require_root, Netns};
use serde_json::Value;
use std::collections::BTreeSet;

const UNDERLAY_MTU: u64 = 1400;

/// Runs `f` on a thread inside `ns` (the drivers act on the calling
/// thread's namespace).
fn on<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    ferry_linux::Netns::open(ns.path()).unwrap().run(f).unwrap()
}

/// A host: its namespace and its VTEP address.
struct Host {
    ns: Netns,
    vtep: &'static str,
}

/// Two hosts joined by a veth pair `ul` (198.18.101.1 and .2).
fn hosts() -> (Host, Host) {
    require_root();
    let h1 = Host {
        ns: Netns::new("ovh"),
        vtep: "198.18.101.1",
    };
    let h2 = Host {
        ns: Netns::new("ovh"),
        vtep: "198.18.101.2",
    };
    h1.ns.exec(&format!(
        "ip link add ul mtu {UNDERLAY_MTU} type veth peer name ul netns {}",
        h2.ns.name
    ));
    for h in [&h1, &h2] {
        h.ns.exec("ip link set lo up");
        h.ns.exec(&format!("ip link set ul mtu {UNDERLAY_MTU}"));
        h.ns.exec(&format!("ip addr add {}/24 dev ul", h.vtep));
        h.ns.exec("ip link set ul up");
    }
    (h1, h2)
}

fn overlay(h: &Host, vni: u32, suffix: &str, gateways: &[&str]) -> NetworkSpec {
    NetworkSpec {
        id: format!("ov{vni}"),
        kind: NetworkKind::Overlay(OverlayConfig {
            vni,
            bridge: format!("ovb{suffix}"),
            vxlan: format!("ovx{suffix}"),
            local: h.vtep.parse().unwrap(),
            port: 4789,
        }),
        mtu: None,
        gateways: gateways.iter().map(|g| g.parse().unwrap()).collect(),
        forwarding: false,
        masquerade: false,
    }
}

/// A container on the overlay: its namespace, endpoint and peer entries.
struct Container {
    ns: Netns,
    ep: Endpoint,
    mac: MacAddr,
    v4: String,
    v6: Option<String>,
}

impl Container {
    /// What the other hosts program for it.
    fn peers(&self, vtep: &str) -> Vec<Peer> {
        let mut ips = vec![self.v4.clone()];
        ips.extend(self.v6.clone());
        ips.iter()
            .map(|ip| Peer {
                ip: ip.parse().unwrap(),
                mac: self.mac,
                vtep: vtep.parse().unwrap(),
            })
            .collect()
    }
}

/// Creates an endpoint in a new container namespace under `h` and joins it
/// as eth0 with `198.18.102.LAST/24` (and `fd00:102::LAST/64`, LAST in hex,
/// when `v6`), MAC `02:00:c6:12:66:MAC`.
fn container(
    d: &OverlayDriver,
    h: &Host,
    n: &NetworkSpec,
    last: u8,
    mac: u8,
    v6: bool,
) -> Container {
    let ns = Netns::new("ovc");
    ns.exec("ip link set lo up");
    let mac: MacAddr = format!("02:00:c6:12:66:{mac:02x}").parse().unwrap();
    let v4 = format!("198.18.102.{last}");
    let v6 = v6.then(|| format!("fd00:102::{last:x}"));
    let mut addresses = vec![Address {
        net: format!("{v4}/24").parse().unwrap(),
        gateway: None,
    }];
    if let Some(v6) = &v6 {
        addresses.push(Address {
            net: format!("{v6}/64").parse().unwrap(),
            gateway: None,
        });
    }
    let spec = EndpointSpec {
        id: format!("c{last}:eth0"),
        mac: Some(mac),
        addresses: addresses.iter().map(|a| a.net).collect(),
    };
    let cfg = InterfaceConfig {
        addresses,
        routes: vec![],
    };
    let path = ns.path();
    let ep = on(&h.ns, || {
        let place = Placement::Netns {
            netns: &path,
            ifname: "eth0",
        };
        let ep = d.create_endpoint(n, &spec, place).unwrap();
        let ep = d.join(n, &ep, &path, "eth0", &cfg).unwrap();
        d.check(n, &ep, &cfg).unwrap();
        ep
    });
    Container {
        ns,
        ep,
        mac,
        v4,
        v6,
    }
}

fn ping(from: &Container, to: &str) -> bool {
    from.ns.exec_ok(&format!("ping -c1 -W2 {to}"))
}

fn json(ns: &Netns, cmd: &str) -> Value {
    serde_json::from_str(&ns.exec(cmd)).unwrap()
}

/// The VXLAN device's per-peer FDB entries: (MAC, dst), as `bridge` lists them.
fn fdb(h: &Host, vx: &str) -> BTreeSet<(String, String)> {
    json(&h.ns, &format!("bridge -j fdb show dev {vx}"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("dst").is_some())
        .map(|e| {
            let flags: Vec<&str> = e["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(flags.contains(&"self"), "not a device entry: {e}");
            assert_eq!(e["state"], "permanent", "{e}");
            (
                e["mac"].as_str().unwrap().to_string(),
                e["dst"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The VXLAN device's permanent neighbours: (IP, MAC).
fn neighbours(h: &Host, vx: &str) -> BTreeSet<(String, String)> {
    json(&h.ns, &format!("ip -j neigh show dev {vx} nud permanent"))
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["dst"].as_str().unwrap().to_string(),
                n["lladdr"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn link_names(ns: &Netns) -> BTreeSet<String> {
    json(ns, "ip -j link show")
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_hosts_one_subnet_peers_reconcile_and_teardown() {
    let (h1, h2) = hosts();
    let state = tempfile::tempdir().unwrap();
    let d = OverlayDriver::new(Deleter::Thread, state.path().to_path_buf());
    let n1 = overlay(&h1, 4242, "", &["198.18.102.1/24", "fd00:102::1/64"]);
    let n2 = overlay(&h2, 4242, "", &["198.18.102.2/24", "fd00:102::2/64"]);
    for (h, n) in [(&h1, &n1), (&h2, &n2)] {
        on(&h.ns, || {
            d.validate(n).unwrap();
            d.create_network(n).unwrap();
            // Idempotent, as a restarted agent calls it again.
            d.create_network(n).unwrap();
        });
    }

    // The VXLAN device, as asked, and the MTU through the tunnel.
    let want_mtu = UNDERLAY_MTU - 50;
    let vx = &json(&h1.ns, "ip -d -j link show ovx")[0];
    let info = &vx["linkinfo"]["info_data"];
    assert_eq!(vx["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(info["id"], 4242);
    assert_eq!(info["local"], "198.18.101.1");
    assert_eq!(info["port"], 4789);
    assert_eq!(info["link"], "ul", "bound to the underlay device");
    assert_eq!(info["learning"], false, "{info}");
    assert_eq!(info["proxy"], true, "{info}");
    assert_eq!(vx["mtu"], want_mtu);
    assert_eq!(vx["master"], "ovb");
    assert!(vx["flags"].to_string().contains("\"UP\""), "{vx}");
    let br = &json(&h1.ns, "ip -d -j link show ovb")[0];
    assert_eq!(br["mtu"], want_mtu);
    let addrs = h1.ns.exec("ip -o addr show dev ovb");
    assert!(
        addrs.contains("198.18.102.1/24") && addrs.contains("fd00:102::1/64"),
        "{addrs}"
    );

    let c1 = container(&d, &h1, &n1, 0x11, 0x11, true);
    let c2 = container(&d, &h2, &n2, 0x12, 0x12, true);
    let eth0 = &json(&c1.ns, "ip -j link show eth0")[0];
    assert_eq!(eth0["mtu"], want_mtu, "endpoints use the tunnel's MTU");

    // No peers yet: nothing crosses.
    assert!(!ping(&c1, &c2.v4));

    let p2 = c2.peers(h2.vtep);
    let p1 = c1.peers(h1.vtep);
    on(&h1.ns, || {
        for p in &p2 {
            d.add_peer(&n1, p).unwrap();
            d.add_peer(&n1, p).unwrap();
        }
    });
    on(&h2.ns, || {
        for p in &p1 {
            d.add_peer(&n2, p).unwrap();
        }
    });
    let c2_mac = c2.mac.to_string();
    assert_eq!(fdb(&h1, "ovx"), set(&[(&c2_mac, "198.18.101.2")]));
    assert_eq!(
        neighbours(&h1, "ovx"),
        set(&[("198.18.102.18", &c2_mac), ("fd00:102::12", &c2_mac)])
    );
    for (from, to) in [(&c1, &c2), (&c2, &c1)] {
        assert!(ping(from, &to.v4), "no IPv4 ping to {}", to.v4);
        let v6 = to.v6.as_deref().unwrap();
        assert!(ping(from, v6), "no IPv6 ping to {v6}");
    }
    // The containers learnt the peer's MAC from the proxy, not over the wire:
    // the FDB has still only the one static entry (learning is off).
    assert_eq!(fdb(&h1, "ovx"), set(&[(&c2_mac, "198.18.101.2")]));

    // remove_peer: the entries go and the ping breaks; twice is fine.
    on(&h1.ns, || {
        for p in &p2 {
            d.remove_peer(&n1, p).unwrap();
            d.remove_peer(&n1, p).unwrap();
        }
    });
    assert!(fdb(&h1, "ovx").is_empty());
    assert!(neighbours(&h1, "ovx").is_empty());
    assert!(!ping(&c1, &c2.v4), "ping after remove_peer");

    // reconcile: one needed entry missing, one stray FDB entry and one
    // stray neighbour; exactly the given set remains.
    on(&h1.ns, || {
        for p in &p2 {
            d.add_peer(&n1, p).unwrap();
        }
    });
    h1.ns.exec(&format!(
        "bridge fdb del {c2_mac} dev ovx dst 198.18.101.2 self"
    ));
    h1.ns
        .exec("bridge fdb append 02:00:c6:12:66:99 dev ovx dst 198.18.101.77 self permanent");
    h1.ns
        .exec("ip neigh replace 198.18.102.153 lladdr 02:00:c6:12:66:99 dev ovx nud permanent");
    let r = on(&h1.ns, || d.reconcile(&n1, &p2).unwrap());
    assert_eq!(
        r,
        Reconciled {
            added: 1,
            removed: 2
        }
    );
    assert_eq!(fdb(&h1, "ovx"), set(&[(&c2_mac, "198.18.101.2")]));
    assert_eq!(
        neighbours(&h1, "ovx"),
        set(&[("198.18.102.18", &c2_mac), ("fd00:102::12", &c2_mac)])
    );
    assert!(ping(&c1, &c2.v4), "no ping after reconcile");
    let again = on(&h1.ns, || d.reconcile(&n1, &p2).unwrap());
    assert_eq!(
        again,
        Reconciled::default(),
        "a second reconcile changes nothing"
    );
    // Reconciling to no peers empties the set.
    let none = on(&h1.ns, || d.reconcile(&n1, &[]).unwrap());
    assert_eq!(
        none,
        Reconciled {
            added: 0,
            removed: 3
        }
    );
    assert!(fdb(&h1, "ovx").is_empty() && neighbours(&h1, "ovx").is_empty());

    // Teardown leaves the host as it was: the underlay and lo.
    for (h, n, c) in [(&h1, &n1, &c1), (&h2, &n2, &c2)] {
        on(&h.ns, || {
            d.delete_endpoint(n, &c.ep).unwrap().finish();
            d.delete_network(n).unwrap();
            d.delete_network(n).unwrap();
        });
        assert_eq!(
            link_names(&h.ns),
            ["lo", "ul"].iter().map(|s| s.to_string()).collect()
        );
        assert!(!c.ns.exec_ok("ip link show dev eth0"), "container end left");
    }
}

#[test]
fn vnis_keep_overlapping_subnets_apart() {
    let (h1, h2) = hosts();
    let state = tempfile::tempdir().unwrap();
    let d = OverlayDriver::new(Deleter::Thread, state.path().to_path_buf());
    // A routes the subnet on the hosts; B, with the same subnet, is internal
    // (a host cannot route one prefix to two bridges).
    let a1 = overlay(&h1, 101, "a", &["198.18.102.1/24"]);
    let a2 = overlay(&h2, 101, "a", &["198.18.102.2/24"]);
    let b1 = overlay(&h1, 102, "b", &[]);
    let b2 = overlay(&h2, 102, "b", &[]);
    for (h, nets) in [(&h1, [&a1, &b1]), (&h2, [&a2, &b2])] {
        on(&h.ns, || {
            for n in nets {
                d.create_network(n).unwrap();
            }
        });
    }
    // The same addresses on both networks, distinct MACs.
    let ca1 = container(&d, &h1, &a1, 0x11, 0x11, false);
    let ca2 = container(&d, &h2, &a2, 0x12, 0x12, false);
    let cb1 = container(&d, &h1, &b1, 0x11, 0x21, false);
    let cb2 = container(&d, &h2, &b2, 0x12, 0x22, false);
    on(&h1.ns, || {
        d.add_peer(&a1, &ca2.peers(h2.vtep)[0]).unwrap();
        d.add_peer(&b1, &cb2.peers(h2.vtep)[0]).unwrap();
    });
    on(&h2.ns, || {
        d.add_peer(&a2, &ca1.peers(h1.vtep)[0]).unwrap();
        d.add_peer(&b2, &cb1.peers(h1.vtep)[0]).unwrap();
    });
    assert!(ping(&ca1, "198.18.102.18"), "A does not work");
    assert!(ping(&cb1, "198.18.102.18"), "B does not work");
    let lladdr = |c: &Container| {
        json(&c.ns, "ip -j neigh show 198.18.102.18 dev eth0")[0]["lladdr"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(lladdr(&ca1), ca2.mac.to_string(), "A reached B's container");
    assert_eq!(lladdr(&cb1), cb2.mac.to_string(), "B reached A's container");

    // Point A at B's container on the right host: the frames leave with
    // A's VNI, which h2 delivers only to A's bridge, where that MAC is not.
    on(&h1.ns, || {
        d.remove_peer(&a1, &ca2.peers(h2.vtep)[0]).unwrap();
        d.add_peer(&a1, &cb2.peers(h2.vtep)[0]).unwrap();
    });
    ca1.ns.exec("ip neigh flush dev eth0");
    assert!(!ping(&ca1, "198.18.102.18"), "A reached VNI B");
    assert!(ping(&cb1, "198.18.102.18"), "B broke");

    for (h, nets, cs) in [
        (&h1, [&a1, &b1], [&ca1, &cb1]),
        (&h2, [&a2, &b2], [&ca2, &cb2]),
    ] {
        on(&h.ns, || {
            for (n, c) in nets.iter().zip(cs) {
                d.delete_endpoint(n, &c.ep).unwrap().finish();
                d.delete_network(n).unwrap();
            }
        });
        assert_eq!(
            link_names(&h.ns),
            ["lo", "ul"].iter().map(|s| s.to_string()).collect()
        );
    }
}

#[test]
fn validation_needs_a_vtep_address_on_the_host() {
    let (h1, _h2) = hosts();
    let d = OverlayDriver::new(Deleter::Thread, std::env::temp_dir());
    let mut n = overlay(&h1, 7, "", &[]);
    on(&h1.ns, || d.validate(&n).unwrap());
    if let NetworkKind::Overlay(c) = &mut n.kind {
        c.local = "198.18.101.9".parse().unwrap();
    }
    on(&h1.ns, || {
        assert!(matches!(d.validate(&n), Err(Error::Invalid(m)) if m.contains("198.18.101.9")));
        assert!(matches!(d.create_network(&n), Err(Error::Invalid(_))));
    });
    let mut n = overlay(&h1, 0, "", &[]);
    on(&h1.ns, || {
        assert!(matches!(d.create_network(&n), Err(Error::Invalid(_))))
    });
    if let NetworkKind::Overlay(c) = &mut n.kind {
        c.vni = 7;
    }
    n.mtu = Some(UNDERLAY_MTU as u32);
    on(&h1.ns, || {
        assert!(matches!(d.create_network(&n), Err(Error::Invalid(m)) if m.contains("MTU")))
    });
    // Nothing was made by the refused calls.
    assert_eq!(
        link_names(&h1.ns),
        ["lo", "ul"].iter().map(|s| s.to_string()).collect()
    );
}
