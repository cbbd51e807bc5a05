//! Integration tests against the real kernel; they must run as root.
//! Every test works inside namespaces of its own, made and removed by a
//! guard, with addresses from 198.19.128.0/20 and fd00:1ee::/48.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::{in_ns, ip_json, link_json, ping, unique, Guard};
use ferry_linux::{
    create_tap, sysctl, AddrOptions, BridgePortFlags, Family, FdbEntry, LinkSpec, MacAddr,
    MacvlanMode, Netlink, Netns, OperState, Route, TapSpec, VxlanSpec, SCOPE_LINK,
};
use ipnet::IpNet;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ns_inode() -> u64 {
    Netns::current().unwrap().inode().unwrap()
}

#[test]
fn veth_bridge_addresses_routes_and_ping() {
    let before = ns_inode();
    let mut g = Guard::new();
    let (host_name, host) = g.netns("fh");
    let (c1_name, c1) = g.netns("fa");
    let (c2_name, c2) = g.netns("fb");
    let mut h = host.netlink().unwrap();

    let br = unique("br");
    h.create_link(&LinkSpec::bridge(&br).mtu(1400)).unwrap();
    let br_link = h.link_by_name(&br).unwrap();
    assert_eq!(br_link.kind.as_deref(), Some("bridge"));
    assert_eq!(br_link.mtu, Some(1400));
    h.add_address(
        br_link.index,
        net("198.19.128.1/24"),
        AddrOptions::default(),
    )
    .unwrap();
    h.set_up(br_link.index).unwrap();

    for (i, (cname, cns)) in [(&c1_name, &c1), (&c2_name, &c2)].into_iter().enumerate() {
        let host_end = unique("vh");
        let mac: MacAddr = format!("02:00:c6:13:80:{:02x}", i + 2).parse().unwrap();
        h.create_link(
            &LinkSpec::veth(&host_end, "eth0")
                .mtu(1400)
                .peer_netns(cns)
                .peer_mac(mac),
        )
        .unwrap();
        let he = h.link_by_name(&host_end).unwrap();
        assert_eq!(he.kind.as_deref(), Some("veth"));
        h.set_master(he.index, br_link.index).unwrap();
        h.set_up(he.index).unwrap();
        let he = h.link_by_index(he.index).unwrap();
        assert_eq!(he.master, Some(br_link.index));
        assert!(he.up);

        // The peer was created directly inside the container namespace.
        let mut c = cns.netlink().unwrap();
        let eth0 = c.link_by_name("eth0").unwrap();
        assert_eq!(eth0.mac, Some(mac));
        assert_eq!(eth0.mtu, Some(1400));
        let v4 = net(&format!("198.19.128.{}/24", i + 2));
        let v6 = net(&format!("fd00:1ee:1::{}/64", i + 2));
        c.add_address(eth0.index, v4, AddrOptions::default())
            .unwrap();
        c.add_address(
            eth0.index,
            v6,
            AddrOptions {
                nodad: true,
                replace: false,
            },
        )
        .unwrap();
        c.set_up(eth0.index).unwrap();
        c.add_route(
            &Route::default_via(ip("198.19.128.1"))
                .oif(eth0.index)
                .priority(100),
        )
        .unwrap();
        c.add_route(
            &Route::new(net("198.19.135.0/24"))
                .gateway(ip("198.19.128.1"))
                .mtu(1300)
                .advmss(1260)
                .src(v4.addr()),
        )
        .unwrap();
        c.add_route(
            &Route::new(net("198.19.136.0/24"))
                .oif(eth0.index)
                .table(100),
        )
        .unwrap();
        // replace changes the metric-keyed route in place.
        c.replace_route(
            &Route::new(net("198.19.136.0/24"))
                .oif(eth0.index)
                .table(100),
        )
        .unwrap();

        // Our own listing.
        let addrs = c.addresses(Some(eth0.index), Family::All).unwrap();
        assert!(addrs.iter().any(|a| a.net == v4), "{addrs:?}");
        let a6 = addrs.iter().find(|a| a.net == v6).expect("v6 listed");
        assert!(!a6.is_tentative());
        let routes = c.routes(Family::V4, Some(ferry_linux::TABLE_MAIN)).unwrap();
        let r = routes
            .iter()
            .find(|r| r.dst == net("198.19.135.0/24"))
            .expect("route listed");
        assert_eq!(r.mtu, Some(1300));
        assert_eq!(r.advmss, Some(1260));
        assert_eq!(r.src, Some(v4.addr()));
        let def = routes.iter().find(|r| r.dst.prefix_len() == 0).unwrap();
        assert_eq!(def.priority, Some(100));
        assert_eq!(def.gateway, Some(ip("198.19.128.1")));
        let t100 = c.routes(Family::V4, Some(100)).unwrap();
        assert_eq!(t100.len(), 1, "{t100:?}");
        assert_eq!(t100[0].scope, Some(SCOPE_LINK));

        // Oracles.
        let addr_json = ip_json(cname, &["addr", "show", "dev", "eth0"]);
        let infos = addr_json[0]["addr_info"].as_array().unwrap();
        assert!(infos
            .iter()
            .any(|a| a["local"] == format!("198.19.128.{}", i + 2) && a["prefixlen"] == 24));
        assert!(infos
            .iter()
            .any(|a| a["local"] == format!("fd00:1ee:1::{}", i + 2) && a["prefixlen"] == 64));
        let rj = ip_json(cname, &["route", "show", "198.19.135.0/24"]);
        assert_eq!(rj[0]["gateway"], "198.19.128.1");
        assert_eq!(rj[0]["prefsrc"], format!("198.19.128.{}", i + 2));
        let mtu_lock = rj[0]["metrics"]
            .as_array()
            .and_then(|m| m.iter().find_map(|x| x.get("mtu").cloned()));
        assert_eq!(mtu_lock, Some(serde_json::json!(1300)));
        let dj = ip_json(cname, &["route", "show", "default"]);
        assert_eq!(dj[0]["metric"], 100);
        let tj = ip_json(cname, &["route", "show", "table", "100"]);
        assert_eq!(tj[0]["dst"], "198.19.136.0/24");
        assert_eq!(tj[0]["scope"], "link");
    }

    // Host-side oracle: both ports on the bridge.
    let ports = ip_json(&host_name, &["link", "show", "master", &br]);
    assert_eq!(ports.as_array().unwrap().len(), 2);

    assert!(ping(&c1_name, "198.19.128.3"), "IPv4 ping c1 -> c2");
    assert!(ping(&c2_name, "198.19.128.2"), "IPv4 ping c2 -> c1");
    assert!(ping(&c1_name, "fd00:1ee:1::3"), "IPv6 ping c1 -> c2");
    assert!(ping(&c1_name, "198.19.128.1"), "ping the bridge");

    // After traffic, the neighbour entry is visible through our listing.
    let mut c = c1.netlink().unwrap();
    let eth0 = c.link_by_name("eth0").unwrap();
    assert_eq!(eth0.oper_state, OperState::Up);
    let neigh = c.neighbours(Some(eth0.index), Family::V4).unwrap();
    assert!(
        neigh.iter().any(|n| n.ip == ip("198.19.128.3")),
        "{neigh:?}"
    );

    // IPv6 route through the other container, with a metric.
    let r6 = Route::new(net("fd00:1ee:2::/64"))
        .gateway(ip("fd00:1ee:1::3"))
        .oif(eth0.index)
        .priority(300);
    c.add_route(&r6).unwrap();
    let listed6 = c.routes(Family::V6, None).unwrap();
    let got = listed6
        .iter()
        .find(|r| r.dst == net("fd00:1ee:2::/64"))
        .expect("v6 route listed");
    assert_eq!(got.gateway, Some(ip("fd00:1ee:1::3")));
    assert_eq!(got.priority, Some(300));
    let j6 = ip_json(&c1_name, &["-6", "route", "show", "fd00:1ee:2::/64"]);
    assert_eq!(j6[0]["gateway"], "fd00:1ee:1::3");
    assert_eq!(j6[0]["metric"], 300);
    c.del_route(&r6).unwrap();

    // Permanent neighbour entries.
    let nmac: MacAddr = "02:00:c6:13:80:32".parse().unwrap();
    c.set_neighbour(eth0.index, ip("198.19.128.50"), nmac)
        .unwrap();
    c.set_neighbour(eth0.index, ip("fd00:1ee:1::50"), nmac)
        .unwrap();
    let nj = ip_json(&c1_name, &["neigh", "show", "198.19.128.50"]);
    assert_eq!(nj[0]["lladdr"], "02:00:c6:13:80:32");
    assert_eq!(nj[0]["state"][0], "PERMANENT");
    let n6 = c.neighbours(Some(eth0.index), Family::V6).unwrap();
    let e6 = n6.iter().find(|n| n.ip == ip("fd00:1ee:1::50")).unwrap();
    assert_eq!(e6.mac, Some(nmac));
    assert_eq!(e6.state, ferry_linux::NUD_PERMANENT);
    c.del_neighbour(eth0.index, ip("198.19.128.50")).unwrap();
    let err = c
        .del_neighbour(eth0.index, ip("198.19.128.50"))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        ip_json(&c1_name, &["neigh", "show", "198.19.128.50"])
            .as_array()
            .map(|a| a.len()),
        Some(0)
    );

    // Deleting routes and addresses.
    c.del_route(&Route::new(net("198.19.135.0/24")).gateway(ip("198.19.128.1")))
        .unwrap();
    c.del_address(eth0.index, net("fd00:1ee:1::2/64")).unwrap();
    let rj = ip_json(&c1_name, &["route", "show", "198.19.135.0/24"]);
    assert_eq!(rj.as_array().unwrap().len(), 0);
    let a = ip_json(
        &c1_name,
        &["-6", "addr", "show", "dev", "eth0", "scope", "global"],
    );
    assert!(a[0]["addr_info"].as_array().is_none_or(|v| v.is_empty()));

    assert_eq!(ns_inode(), before, "the caller's namespace never changed");
}

#[test]
fn link_attribute_changes() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("fl");
    let (name2, ns2) = g.netns("fm");
    let mut nl = ns.netlink().unwrap();
    let a = unique("la");
    let b = unique("lb");
    nl.create_link(&LinkSpec::veth(&a, &b)).unwrap();
    let la = nl.link_by_name(&a).unwrap();
    let lb = nl.link_by_name(&b).unwrap();
    assert_eq!(la.parent, Some(lb.index), "veth IFLA_LINK is the peer");

    nl.set_mtu(la.index, 1280).unwrap();
    let mac: MacAddr = "02:00:c6:13:83:01".parse().unwrap();
    nl.set_mac(la.index, mac).unwrap();
    let renamed = unique("ln");
    nl.rename(la.index, &renamed).unwrap();
    nl.set_up(la.index).unwrap();
    let j = link_json(&name, &renamed);
    assert_eq!(j["mtu"], 1280);
    assert_eq!(j["address"], "02:00:c6:13:83:01");
    assert!(j["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let l = nl.link_by_index(la.index).unwrap();
    assert_eq!(l.name, renamed);
    assert!(l.up);
    // Peer is down, so the up end is LOWERLAYERDOWN.
    assert_eq!(l.oper_state, OperState::LowerLayerDown);
    nl.set_down(la.index).unwrap();
    assert!(!nl.link_by_index(la.index).unwrap().up);

    // Master / nomaster.
    let br = unique("lbr");
    nl.create_link(&LinkSpec::bridge(&br).vlan_filtering(false))
        .unwrap();
    let brl = nl.link_by_name(&br).unwrap();
    let bj = link_json(&name, &br);
    assert_eq!(bj["linkinfo"]["info_data"]["vlan_filtering"], 0);
    // This kernel may lack CONFIG_BRIDGE_VLAN_FILTERING (EOPNOTSUPP).
    let brv = unique("lbv");
    match nl.create_link(&LinkSpec::bridge(&brv).vlan_filtering(true)) {
        Ok(()) => {
            let vj = link_json(&name, &brv);
            assert_eq!(vj["linkinfo"]["info_data"]["vlan_filtering"], 1);
        }
        Err(e) => assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}"),
    }
    nl.set_master(la.index, brl.index).unwrap();
    assert_eq!(nl.link_by_index(la.index).unwrap().master, Some(brl.index));
    nl.set_nomaster(la.index).unwrap();
    assert_eq!(nl.link_by_index(la.index).unwrap().master, None);

    // Move to another namespace.
    nl.set_netns(lb.index, &ns2).unwrap();
    assert!(nl.link_by_name(&b).unwrap_err().is_not_found());
    let j2 = link_json(&name2, &b);
    assert_eq!(j2["ifname"], b.as_str());

    // All links listed; delete removes both veth ends.
    let all = nl.links().unwrap();
    assert!(all.iter().any(|l| l.name == renamed));
    assert!(all.iter().any(|l| l.name == "lo"));
    nl.delete_link(la.index).unwrap();
    let mut nl2 = ns2.netlink().unwrap();
    assert!(nl2.link_by_name(&b).unwrap_err().is_not_found());
}

#[test]
fn macvlan_in_another_namespace() {
    let mut g = Guard::new();
    let (_hname, host) = g.netns("fv");
    let (cname, c) = g.netns("fw");
    let mut h = host.netlink().unwrap();
    let parent = unique("mp");
    let peer = unique("mq");
    h.create_link(&LinkSpec::veth(&parent, &peer)).unwrap();
    let p = h.link_by_name(&parent).unwrap();
    h.set_up(p.index).unwrap();
    h.create_link(&LinkSpec::macvlan("mv0", p.index, MacvlanMode::Bridge).netns(&c))
        .unwrap();
    h.create_link(&LinkSpec::macvlan("mv1", p.index, MacvlanMode::Private).mtu(1400))
        .unwrap();

    let j = link_json(&cname, "mv0");
    assert_eq!(j["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(j["linkinfo"]["info_data"]["mode"], "bridge");
    let mut cn = c.netlink().unwrap();
    let mv0 = cn.link_by_name("mv0").unwrap();
    assert_eq!(mv0.kind.as_deref(), Some("macvlan"));
    assert!(
        mv0.link_netnsid.is_some(),
        "parent lives in another namespace"
    );

    let mv1 = h.link_by_name("mv1").unwrap();
    assert_eq!(mv1.parent, Some(p.index));
    assert_eq!(mv1.mtu, Some(1400));
    let j1 = link_json(&_hname, "mv1");
    assert_eq!(j1["linkinfo"]["info_data"]["mode"], "private");
}

#[test]
fn tap_devices() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("ft");
    let t0 = unique("tp");
    let t1 = unique("tq");
    create_tap(&TapSpec::new(&t0), Some(&ns)).unwrap();
    create_tap(
        &TapSpec {
            name: t1.clone(),
            multi_queue: true,
            owner: Some(54321),
            group: Some(54322),
        },
        Some(&ns),
    )
    .unwrap();

    let j0 = link_json(&name, &t0);
    assert_eq!(j0["linkinfo"]["info_kind"], "tun");
    assert_eq!(j0["linkinfo"]["info_data"]["type"], "tap");
    assert_eq!(j0["linkinfo"]["info_data"]["pi"], false);
    assert_eq!(j0["linkinfo"]["info_data"]["multi_queue"], false);
    assert_eq!(j0["linkinfo"]["info_data"]["persist"], true);
    let j1 = link_json(&name, &t1);
    assert_eq!(j1["linkinfo"]["info_data"]["multi_queue"], true);
    // ip prints the number for ids without a passwd/group entry.
    assert_eq!(j1["linkinfo"]["info_data"]["user"], 54321);
    assert_eq!(j1["linkinfo"]["info_data"]["group"], 54322);

    let mut nl = ns.netlink().unwrap();
    let l = nl.link_by_name(&t0).unwrap();
    assert_eq!(l.kind.as_deref(), Some("tun"));
    nl.set_up(l.index).unwrap();
    nl.delete_link(l.index).unwrap();
    assert!(nl.link_by_name(&t0).unwrap_err().is_not_found());
    // Nothing was created in the caller's namespace.
    assert!(Netlink::new()
        .unwrap()
        .link_by_name(&t1)
        .unwrap_err()
        .is_not_found());
}

#[test]
fn vxlan_and_fdb() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("fx");
    let mut nl = ns.netlink().unwrap();
    let u = unique("ua");
    let u2 = unique("ub");
    nl.create_link(&LinkSpec::veth(&u, &u2)).unwrap();
    let ul = nl.link_by_name(&u).unwrap();
    nl.add_address(ul.index, net("198.19.129.1/24"), AddrOptions::default())
        .unwrap();
    let vx = unique("vx");
    nl.create_link(&LinkSpec::vxlan(
        &vx,
        VxlanSpec {
            vni: 4242,
            local: Some(ip("198.19.129.1")),
            group: Some(ip("198.19.129.2")),
            port: Some(4789),
            dev: Some(ul.index),
            learning: Some(false),
            proxy: Some(true),
        },
    ))
    .unwrap();
    let j = link_json(&name, &vx);
    let d = &j["linkinfo"]["info_data"];
    assert_eq!(j["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(d["id"], 4242);
    assert_eq!(d["local"], "198.19.129.1");
    assert_eq!(d["remote"], "198.19.129.2");
    assert_eq!(d["port"], 4789);
    assert_eq!(d["link"], u.as_str());
    assert_eq!(d["learning"], false);
    assert_eq!(d["proxy"], true);

    // A multicast group, IPv6 underlay, default port.
    let vx6 = unique("vy");
    nl.create_link(&LinkSpec::vxlan(
        &vx6,
        VxlanSpec {
            vni: 7,
            group: Some(ip("ff05::1ee")),
            dev: Some(ul.index),
            ..Default::default()
        },
    ))
    .unwrap();
    let j6 = link_json(&name, &vx6);
    assert_eq!(j6["linkinfo"]["info_data"]["group6"], "ff05::1ee");

    // FDB: flood entries to two remotes plus one MAC entry.
    let vl = nl.link_by_name(&vx).unwrap();
    for remote in ["198.19.129.3", "198.19.129.4"] {
        let mut e = FdbEntry::new(vl.index, MacAddr::ZERO);
        e.dst = Some(ip(remote));
        nl.append_fdb(&e).unwrap();
    }
    let mac: MacAddr = "02:00:c6:13:81:05".parse().unwrap();
    let mut e = FdbEntry::new(vl.index, mac);
    e.dst = Some(ip("198.19.129.5"));
    nl.add_fdb(&e).unwrap();
    assert!(nl.add_fdb(&e).unwrap_err().is_exists());

    let fdb = nl.fdb(Some(vl.index)).unwrap();
    // The device's own remote plus the two appended ones.
    let zero: Vec<_> = fdb.iter().filter(|f| f.mac == MacAddr::ZERO).collect();
    assert_eq!(zero.len(), 3, "{fdb:?}");
    for remote in ["198.19.129.2", "198.19.129.3", "198.19.129.4"] {
        assert!(zero.iter().any(|f| f.dst == Some(ip(remote))), "{remote}");
    }
    assert!(fdb
        .iter()
        .any(|f| f.mac == mac && f.dst == Some(ip("198.19.129.5"))));
    let bj: serde_json::Value =
        serde_json::from_str(&in_ns(&name, &["bridge", "-j", "fdb", "show", "dev", &vx])).unwrap();
    let entries = bj.as_array().unwrap();
    assert!(entries
        .iter()
        .any(|x| x["mac"] == "02:00:c6:13:81:05" && x["dst"] == "198.19.129.5"));
    nl.del_fdb(&e).unwrap();
    assert!(!nl.fdb(Some(vl.index)).unwrap().iter().any(|f| f.mac == mac));
}

#[test]
fn bridge_port_flags() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("fp");
    let mut nl = ns.netlink().unwrap();
    let br = unique("pb");
    let a = unique("pa");
    let b = unique("pc");
    nl.create_link(&LinkSpec::bridge(&br)).unwrap();
    nl.create_link(&LinkSpec::veth(&a, &b)).unwrap();
    let brl = nl.link_by_name(&br).unwrap();
    let al = nl.link_by_name(&a).unwrap();
    assert_eq!(nl.bridge_port_flags(al.index).unwrap(), None);
    nl.set_master(al.index, brl.index).unwrap();
    let f = nl
        .bridge_port_flags(al.index)
        .unwrap()
        .expect("a bridge port");
    assert_eq!(f.hairpin, Some(false));
    assert_eq!(f.learning, Some(true));

    nl.set_bridge_port_flags(
        al.index,
        &BridgePortFlags {
            hairpin: Some(true),
            isolated: Some(true),
            learning: Some(false),
        },
    )
    .unwrap();
    let f = nl.bridge_port_flags(al.index).unwrap().unwrap();
    assert_eq!(
        f,
        BridgePortFlags {
            hairpin: Some(true),
            isolated: Some(true),
            learning: Some(false),
        }
    );
    let j = link_json(&name, &a);
    let sd = &j["linkinfo"]["info_slave_data"];
    assert_eq!(sd["hairpin"], true);
    assert_eq!(sd["isolated"], true);
    assert_eq!(sd["learning"], false);

    // Only the given flag changes.
    nl.set_bridge_port_flags(
        al.index,
        &BridgePortFlags {
            hairpin: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let f = nl.bridge_port_flags(al.index).unwrap().unwrap();
    assert_eq!(f.hairpin, Some(false));
    assert_eq!(f.isolated, Some(true));

    // Static FDB entry on the bridge port (master).
    let mac: MacAddr = "02:00:c6:13:82:09".parse().unwrap();
    let mut e = FdbEntry::new(al.index, mac);
    e.in_master = true;
    e.vlan = None;
    nl.add_fdb(&e).unwrap();
    let listed = nl.fdb(Some(al.index)).unwrap();
    let found = listed.iter().find(|f| f.mac == mac).expect("fdb listed");
    assert_eq!(found.master, Some(brl.index));
    assert!(found.is_static);
    nl.del_fdb(&e).unwrap();
}

#[test]
fn kernel_errnos() {
    let mut g = Guard::new();
    let (_name, ns) = g.netns("fe");
    let mut nl = ns.netlink().unwrap();
    let a = unique("ea");
    let b = unique("eb");
    nl.create_link(&LinkSpec::veth(&a, &b)).unwrap();

    let err = nl
        .create_link(&LinkSpec::veth(&a, &unique("ec")))
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
    assert!(err.is_exists());
    let text = err.to_string();
    assert!(
        text.contains("File exists (EEXIST)") && text.contains(&a),
        "{text}"
    );
    assert!(matches!(
        err,
        ferry_linux::Error::Kernel {
            errno: libc::EEXIST,
            ..
        }
    ));

    let err = nl.link_by_name("nosuchdev0").unwrap_err();
    assert!(
        matches!(err.errno(), Some(libc::ENODEV) | Some(libc::ENOENT)),
        "{err}"
    );
    assert!(err.is_not_found());
    let err = nl.delete_link(0x7fff_fff0).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = nl.set_up(0x7fff_fff0).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let al = nl.link_by_name(&a).unwrap();
    nl.add_address(al.index, net("198.19.130.1/24"), AddrOptions::default())
        .unwrap();
    let err = nl
        .add_address(al.index, net("198.19.130.1/24"), AddrOptions::default())
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    nl.add_address(
        al.index,
        net("198.19.130.1/24"),
        AddrOptions {
            replace: true,
            ..Default::default()
        },
    )
    .unwrap();
    let err = nl
        .del_address(al.index, net("198.19.130.9/24"))
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EADDRNOTAVAIL), "{err}");

    nl.set_up(al.index).unwrap();
    let r = Route::new(net("198.19.131.0/24")).oif(al.index);
    nl.add_route(&r).unwrap();
    assert!(nl.add_route(&r).unwrap_err().is_exists());
    nl.del_route(&r).unwrap();
    let err = nl.del_route(&r).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Names the kernel would refuse are refused before sending.
    assert!(matches!(
        nl.link_by_name("a-name-much-too-long"),
        Err(ferry_linux::Error::InvalidArgument(_))
    ));
    // A request naming a missing namespace fails cleanly.
    assert!(Netns::open("/run/netns/ferry-no-such-ns")
        .unwrap_err()
        .is_not_found());
}

#[test]
fn sysctl_write_if_different() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("fs");
    let root_before = sysctl::read("net.ipv4.ip_forward").unwrap();
    // A new namespace may inherit ip_forward from the root one: flip it.
    let inside = sysctl::read_in(&ns, "net.ipv4.ip_forward").unwrap();
    let want = if inside == "1" { "0" } else { "1" };
    assert!(sysctl::write_if_different_in(&ns, "net.ipv4.ip_forward", want).unwrap());
    assert!(!sysctl::write_if_different_in(&ns, "net.ipv4.ip_forward", want).unwrap());
    assert_eq!(
        in_ns(&name, &["sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
        want
    );
    // Per-interface keys with the path form.
    let mut nl = ns.netlink().unwrap();
    let a = unique("sa");
    nl.create_link(&LinkSpec::veth(&a, &unique("sb"))).unwrap();
    let key = format!("net/ipv4/conf/{a}/rp_filter");
    sysctl::write_if_different_in(&ns, &key, "2").unwrap();
    assert_eq!(sysctl::read_in(&ns, &key).unwrap(), "2");
    // Multi-value keys compare whitespace-insensitively.
    let range = sysctl::read_in(&ns, "net.ipv4.ip_local_port_range").unwrap();
    assert!(!sysctl::write_if_different_in(&ns, "net.ipv4.ip_local_port_range", &range).unwrap());
    // Missing keys are reported.
    let err = sysctl::read_in(&ns, "net.ipv4.no_such_key").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // The caller's namespace is untouched.
    assert_eq!(sysctl::read("net.ipv4.ip_forward").unwrap(), root_before);
}

/// `Link::ipv6` reports the link's `disable_ipv6` and `accept_dad` as
/// /proc/sys holds them, before and after writes (callers skip sysctl
/// writes on its word).
#[test]
fn link_reports_ipv6_conf() {
    let mut g = Guard::new();
    let (_name, ns) = g.netns("fi");
    let mut nl = ns.netlink().unwrap();
    let a = unique("ia");
    nl.create_link(&LinkSpec::veth(&a, &unique("ib"))).unwrap();
    let proc_conf = |key: &str| {
        sysctl::read_in(&ns, &format!("net/ipv6/conf/{a}/{key}"))
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    for (disable, dad) in [("1", "0"), ("0", "2"), ("0", "1")] {
        sysctl::write_all_in(
            &ns,
            &[
                (format!("net/ipv6/conf/{a}/disable_ipv6"), disable),
                (format!("net/ipv6/conf/{a}/accept_dad"), dad),
            ],
        )
        .unwrap();
        let conf = nl
            .link_by_name(&a)
            .unwrap()
            .ipv6
            .expect("the kernel reported no IPv6 settings with the link");
        assert_eq!(
            (conf.disable_ipv6, conf.accept_dad),
            (proc_conf("disable_ipv6") == 1, proc_conf("accept_dad")),
            "after writing disable_ipv6={disable} accept_dad={dad}"
        );
    }
}

#[test]
fn netns_create_delete_leaves_nothing() {
    let before = ns_inode();
    let name = unique("fn");
    let path = Path::new("/run/netns").join(&name);
    {
        let ns = Netns::create(&name).unwrap();
        assert!(path.exists());
        let listed = common::run(&["ip", "netns", "list"]);
        assert!(listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&name)));
        assert_ne!(ns.inode().unwrap(), before);
        assert_eq!(
            Netns::named(&name).unwrap().inode().unwrap(),
            ns.inode().unwrap()
        );
        // The new namespace has only a loopback device, and it is down.
        let links = ns.netlink().unwrap().links().unwrap();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].name, "lo");
        assert!(!links[0].up);
        let err = Netns::create(&name).unwrap_err();
        assert!(err.is_exists(), "{err}");
        assert_eq!(
            ns.run(|| Netns::current().unwrap().inode().unwrap())
                .unwrap(),
            ns.inode().unwrap()
        );
    }
    Netns::delete(&name).unwrap();
    assert!(!path.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("/run/netns/{name} ")),
        "mount left"
    );
    let listed = common::run(&["ip", "netns", "list"]);
    assert!(!listed
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&name)));
    assert!(Netns::delete(&name).unwrap_err().is_not_found());
    assert!(Netns::create("bad/name").is_err());
    // A plain file is refused at open, not at setns time.
    let plain = std::env::temp_dir().join(format!("ferry-linux-plain-{}", std::process::id()));
    std::fs::write(&plain, b"").unwrap();
    let err = Netns::open(&plain).unwrap_err();
    let _ = std::fs::remove_file(&plain);
    assert!(
        matches!(err, ferry_linux::Error::InvalidArgument(_)),
        "{err}"
    );
    assert_eq!(
        Netns::of_pid(std::process::id()).unwrap().inode().unwrap(),
        before
    );
    assert_eq!(ns_inode(), before);
}

#[test]
fn dumps_spanning_many_datagrams() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("fd");
    let mut nl = ns.netlink().unwrap();
    let pairs = 80;
    for i in 0..pairs {
        nl.create_link(&LinkSpec::veth(&format!("da{i}"), &format!("db{i}")))
            .unwrap();
        let a = nl.link_by_name(&format!("da{i}")).unwrap();
        let net = net(&format!("fd00:1ee:3:{i:x}::1/64"));
        nl.add_address(
            a.index,
            net,
            AddrOptions {
                nodad: true,
                replace: false,
            },
        )
        .unwrap();
    }
    let links = nl.links().unwrap();
    assert_eq!(links.len(), 2 * pairs + 1, "all links and lo");
    let oracle = ip_json(&name, &["link", "show"]);
    assert_eq!(oracle.as_array().unwrap().len(), links.len());
    let addrs = nl.addresses(None, Family::V6).unwrap();
    assert_eq!(
        addrs
            .iter()
            .filter(|a| a.net.to_string().starts_with("fd00:1ee:3:"))
            .count(),
        pairs
    );
    assert_eq!(nl.skipped_objects(), 0);
}

/// The workload `library_makes_no_exec` runs under strace (with
/// `--ignored --exact`): a bit of every kind of operation, using the library
/// only. Run by hand without `FERRY_LINUX_NOEXEC_WORKLOAD` it fails.
#[test]
#[ignore = "a helper: library_makes_no_exec runs it"]
fn noexec_workload() {
    assert!(
        std::env::var_os("FERRY_LINUX_NOEXEC_WORKLOAD").is_some(),
        "FERRY_LINUX_NOEXEC_WORKLOAD is not set: noexec_workload only runs under library_makes_no_exec"
    );
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Netns::delete(&self.0);
        }
    }
    let name = unique("fz");
    let ns = Netns::create(&name).unwrap();
    let _del = Del(name.clone());
    let name2 = unique("fy");
    let peer_ns = Netns::create(&name2).unwrap();
    let _del2 = Del(name2);
    let mut nl = ns.netlink().unwrap();
    nl.create_link(&LinkSpec::bridge("br0")).unwrap();
    nl.create_link(&LinkSpec::veth("v0", "eth0").peer_netns(&peer_ns))
        .unwrap();
    let br = nl.link_by_name("br0").unwrap();
    let v0 = nl.link_by_name("v0").unwrap();
    nl.set_master(v0.index, br.index).unwrap();
    nl.set_bridge_port_flags(
        v0.index,
        &BridgePortFlags {
            hairpin: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    nl.set_up(v0.index).unwrap();
    nl.set_up(br.index).unwrap();
    nl.add_address(br.index, net("198.19.132.1/24"), AddrOptions::default())
        .unwrap();
    nl.add_route(&Route::new(net("198.19.133.0/24")).gateway(ip("198.19.132.2")))
        .unwrap();
    nl.links().unwrap();
    nl.routes(Family::All, None).unwrap();
    create_tap(&TapSpec::new("tap0"), Some(&ns)).unwrap();
    sysctl::write_if_different_in(&ns, "net.ipv4.ip_forward", "1").unwrap();
    sysctl::read_in(&peer_ns, "net.ipv4.ip_forward").unwrap();
}

#[test]
fn library_makes_no_exec() {
    common::require("strace", "strace");
    let exe = std::env::current_exe().unwrap();
    let log = std::env::temp_dir().join(format!("ferry-linux-strace-{}.log", std::process::id()));
    let status = std::process::Command::new("strace")
        .arg("-f")
        .arg("-qq")
        .args(["-e", "trace=execve"])
        .arg("-o")
        .arg(&log)
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "noexec_workload",
            "--test-threads=1",
        ])
        .env("FERRY_LINUX_NOEXEC_WORKLOAD", "1")
        .output()
        .unwrap();
    let trace = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(
        status.status.success(),
        "workload failed: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    let execs: Vec<&str> = trace.lines().filter(|l| l.contains("execve(")).collect();
    assert_eq!(execs.len(), 1, "only the test binary itself: {execs:#?}");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("1 passed"),
        "the workload ran"
    );
}

/// A socket watching link notifications wakes for the delete of its link,
/// not for another link's, and times out when nothing is deleted.
#[test]
fn wait_link_deleted_sees_its_links_removal_only() {
    let mut g = Guard::new();
    let (_name, ns) = g.netns("fw");
    let mut nl = ns.netlink().unwrap();
    let mut other = ns.netlink().unwrap();
    let (a, b, c, d) = (unique("wa"), unique("wb"), unique("wc"), unique("wd"));
    nl.create_link(&LinkSpec::veth(&a, &b)).unwrap();
    nl.create_link(&LinkSpec::veth(&c, &d)).unwrap();
    let mine = nl.link_by_name(&a).unwrap().index;
    let theirs = nl.link_by_name(&c).unwrap().index;
    nl.watch_links().unwrap();

    let t = std::time::Instant::now();
    assert!(!nl.wait_link_deleted(mine, std::time::Duration::from_millis(100)));
    assert!(t.elapsed() >= std::time::Duration::from_millis(100));

    other.delete_link(theirs).unwrap();
    assert!(
        !nl.wait_link_deleted(mine, std::time::Duration::from_millis(100)),
        "woke for another link's delete"
    );
    // Requests on the watching socket still get their own answers.
    assert_eq!(nl.link_by_index(mine).unwrap().name, a);

    let deleter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        other.delete_link(mine).unwrap();
    });
    assert!(nl.wait_link_deleted(mine, std::time::Duration::from_secs(5)));
    deleter.join().unwrap();
    assert!(nl.link_by_index(mine).is_err());
}
