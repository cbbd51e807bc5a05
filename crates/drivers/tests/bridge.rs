//! The bridge driver called directly, as both doors call it: Docker's flow
//! (the container end left on the host, moved by the test as Docker would),
//! Ferry's flow (created in the sandbox under a temporary name, joined as
//! eth0), deletes that leave nothing, and undo on failure. `ip` is the
//! oracle. Runs as root, on the host, with unique names and
//! 198.19.170.0/24 - 198.19.175.0/24 and 198.19.36.0/24 (the last two
//! inside a namespace acting as the node).

use ferry_drivers::link::detach::Deleter;
use ferry_drivers::link::iface::{Address, InterfaceConfig, RouteConfig};
use ferry_drivers::network::bridge::BridgeDriver;
use ferry_drivers::network::{
    BridgeConfig, Endpoint, EndpointSpec, NetworkDriver, NetworkKind, NetworkSpec, Placement,
};
use ferry_drivers::Error;
use ferry_testkit::{bridge_ports, require_root, sh, sh_ok, unique, Cleanup, Netns};
use ipnet::IpNet;

fn net(bridge: &str, gateway: &str, cfg: BridgeConfig) -> NetworkSpec {
    NetworkSpec {
        id: unique("n"),
        kind: NetworkKind::Bridge(BridgeConfig {
            bridge: bridge.to_string(),
            icc: true,
            ..cfg
        }),
        mtu: Some(1400),
        gateways: vec![gateway.parse().unwrap()],
        forwarding: false,
        masquerade: false,
    }
}

fn spec(addr: &str) -> EndpointSpec {
    EndpointSpec {
        id: unique("ep"),
        mac: None,
        addresses: vec![addr.parse().unwrap()],
    }
}

/// A fresh bridge network with its own state dir; the bridge goes on drop.
fn setup(prefix: &str, gateway: &str) -> (BridgeDriver, NetworkSpec, tempfile::TempDir, Cleanup) {
    require_root();
    let state = tempfile::tempdir().unwrap();
    let d = BridgeDriver::new(Deleter::Thread, state.path().to_path_buf());
    let br = unique(prefix);
    let mut cleanup = Cleanup::default();
    cleanup.link(&br);
    let n = net(&br, gateway, BridgeConfig::default());
    (d, n, state, cleanup)
}

fn bridge_name(n: &NetworkSpec) -> String {
    match &n.kind {
        NetworkKind::Bridge(c) => c.bridge.clone(),
        _ => unreachable!(),
    }
}

fn link_exists(name: &str) -> bool {
    sh_ok(&format!("ip link show dev {name}"))
}

fn host_ipv6_off(ep: &Endpoint) -> String {
    let host = ep.host_ifname.as_deref().unwrap();
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"))
        .unwrap()
        .trim()
        .to_string()
}

/// Deletes the endpoint's host veth when dropped (a failing test leaves nothing).
fn guard_host(cleanup: &mut Cleanup, ep: &Endpoint) {
    if let Some(h) = &ep.host_ifname {
        cleanup.link(h);
    }
}

#[test]
fn docker_flow_host_placement_then_moved_by_the_owner() {
    let (d, n, _state, mut cleanup) = setup("tdh", "198.19.170.1/24");
    let br = bridge_name(&n);
    d.validate(&n).unwrap();
    d.create_network(&n).unwrap();
    // Idempotent, as a CNI ADD calls it every time.
    d.create_network(&n).unwrap();
    let addrs = sh(&format!("ip -4 -o addr show dev {br}"));
    assert!(addrs.contains("198.19.170.1/24"), "{addrs}");
    assert!(sh(&format!("ip -o link show dev {br}")).contains("mtu 1400"));

    let ep = d
        .create_endpoint(&n, &spec("198.19.170.2/24"), Placement::Host)
        .unwrap();
    guard_host(&mut cleanup, &ep);
    cleanup.link(&ep.ifname);
    let host = ep.host_ifname.clone().unwrap();
    assert_eq!(ep.netns, None);
    assert_eq!(ep.master.as_deref(), Some(br.as_str()));
    assert!(ep.master_mac.is_some() && ep.mac.is_some() && ep.host_mac.is_some());
    // The container end waits on the host, down, for its owner.
    let cont = sh(&format!("ip -o link show dev {}", ep.ifname));
    assert!(cont.contains("state DOWN"), "{cont}");
    assert!(!cont.contains(",UP"), "{cont}");
    assert_eq!(bridge_ports(&br), vec![host.clone()]);
    assert!(sh(&format!("ip -o link show dev {host}")).contains(",UP"));
    assert_eq!(host_ipv6_off(&ep), "1", "a bridge port has no IPv6");

    // What Docker does with it.
    let ns = Netns::new("tdh");
    sh(&format!(
        "ip link set {} netns {} name eth0",
        ep.ifname, ns.name
    ));
    ns.exec("ip link set lo up");
    ns.exec("ip addr add 198.19.170.2/24 dev eth0");
    ns.exec("ip link set eth0 up");
    assert!(
        ns.exec_ok("ping -c1 -W2 198.19.170.1"),
        "no ping to the gateway"
    );

    d.delete_endpoint(&n, &ep).unwrap().finish();
    assert!(!link_exists(&host), "host veth left");
    assert!(!ns.exec_ok("ip link show dev eth0"), "container end left");
    // Idempotent.
    d.delete_endpoint(&n, &ep).unwrap().finish();
    d.delete_network(&n).unwrap();
    assert!(!link_exists(&br), "bridge left");
    d.delete_network(&n).unwrap();
}

#[test]
fn ferry_flow_temporary_name_then_joined_as_eth0() {
    let (d, n, _state, mut cleanup) = setup("tdf", "198.19.171.1/24");
    let br = bridge_name(&n);
    d.create_network(&n).unwrap();
    let ns = Netns::new("tdf");
    ns.exec("ip link set lo up");
    let temp = unique("fc");
    let place = Placement::Netns {
        netns: &ns.path(),
        ifname: &temp,
    };
    let ep = d
        .create_endpoint(&n, &spec("198.19.171.2/24"), place)
        .unwrap();
    guard_host(&mut cleanup, &ep);
    assert_eq!(ep.ifname, temp);
    assert_eq!(ep.netns.as_deref(), Some(ns.path().as_str()));
    assert!(ns.exec_ok(&format!("ip link show dev {temp}")));
    assert_eq!(host_ipv6_off(&ep), "1", "a bridge port has no IPv6");

    let cfg = InterfaceConfig {
        addresses: vec![Address {
            net: "198.19.171.2/24".parse().unwrap(),
            gateway: Some("198.19.171.1".parse().unwrap()),
        }],
        routes: vec![RouteConfig::new(
            "198.19.172.0/24".parse::<IpNet>().unwrap(),
            None,
        )],
    };
    let joined = d.join(&n, &ep, &ns.path(), "eth0", &cfg).unwrap();
    assert_eq!(joined.ifname, "eth0");
    assert!(
        !ns.exec_ok(&format!("ip link show dev {temp}")),
        "temp name left"
    );
    let eth0 = ns.exec("ip -o addr show dev eth0");
    assert!(eth0.contains("198.19.171.2/24"), "{eth0}");
    assert!(ns
        .exec("ip route")
        .contains("198.19.172.0/24 via 198.19.171.1 dev eth0"));
    assert!(
        ns.exec_ok("ping -c1 -W2 198.19.171.1"),
        "no ping to the gateway"
    );
    d.check(&n, &joined, &cfg).unwrap();
    assert_eq!(bridge_ports(&br), vec![joined.host_ifname.clone().unwrap()]);

    d.delete_endpoint(&n, &joined).unwrap().finish();
    assert!(!ns.exec_ok("ip link show dev eth0"), "container end left");
    assert!(matches!(
        d.check(&n, &joined, &cfg),
        Err(Error::Kernel { .. })
    ));
    d.delete_network(&n).unwrap();
    assert!(!link_exists(&br), "bridge left");
}

#[test]
fn thread_deleter_leaves_no_link_behind() {
    let (d, n, _state, mut cleanup) = setup("tdt", "198.19.172.1/24");
    d.create_network(&n).unwrap();
    let ep = d
        .create_endpoint(&n, &spec("198.19.172.2/24"), Placement::Host)
        .unwrap();
    guard_host(&mut cleanup, &ep);
    let host = ep.host_ifname.clone().unwrap();
    let index = |name: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
            .unwrap()
            .trim()
            .to_string()
    };
    let (host_index, cont_index) = (index(&host), index(&ep.ifname));
    let pending = d.delete_endpoint(&n, &ep).unwrap();
    // The names are free at once (the link stepped aside before the delete).
    assert!(!link_exists(&host) && !link_exists(&ep.ifname));
    pending.finish();
    // Neither end is listed any more, under any name.
    let links: serde_json::Value = serde_json::from_str(&sh("ip -j link show")).unwrap();
    for l in links.as_array().unwrap() {
        let i = l["ifindex"].to_string();
        assert!(
            i != host_index && i != cont_index,
            "link {} still there",
            l["ifname"]
        );
    }
    d.delete_network(&n).unwrap();
}

#[test]
fn taken_ifname_is_refused_before_anything_is_made() {
    let (d, n, _state, _cleanup) = setup("tdx", "198.19.173.1/24");
    let br = bridge_name(&n);
    d.create_network(&n).unwrap();
    let ns = Netns::new("tdx");
    ns.exec("ip link add eth0 type veth peer name eth0p");
    let before = ns.exec("ip -o link show");
    let place = Placement::Netns {
        netns: &ns.path(),
        ifname: "eth0",
    };
    match d.create_endpoint(&n, &spec("198.19.173.2/24"), place) {
        Err(Error::Exists(m)) => assert!(m.contains("already exists"), "{m}"),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(ns.exec("ip -o link show"), before, "the namespace changed");
    assert!(bridge_ports(&br).is_empty(), "a host veth was left");
    d.delete_network(&n).unwrap();
}

#[test]
fn a_step_failing_after_the_veth_undoes_it() {
    require_root();
    // The MAC spoof check cannot write its bookkeeping under a regular file.
    let not_a_dir = tempfile::NamedTempFile::new().unwrap();
    let d = BridgeDriver::new(Deleter::Thread, not_a_dir.path().to_path_buf());
    let br = unique("tdu");
    let mut cleanup = Cleanup::default();
    cleanup.link(&br);
    let n = net(
        &br,
        "198.19.174.1/24",
        BridgeConfig {
            macspoofchk: true,
            ..BridgeConfig::default()
        },
    );
    d.create_network(&n).unwrap();
    let ns = Netns::new("tdu");
    let before = ns.exec("ip -o link show");
    let place = Placement::Netns {
        netns: &ns.path(),
        ifname: "eth0",
    };
    let err = d
        .create_endpoint(&n, &spec("198.19.174.2/24"), place)
        .expect_err("the bookkeeping cannot be written");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(
        ns.exec("ip -o link show"),
        before,
        "the container end was left"
    );
    assert!(bridge_ports(&br).is_empty(), "the host veth was left");
    d.delete_network(&n).unwrap();
}

#[test]
fn validate_refuses_bad_settings_without_touching_anything() {
    let d = BridgeDriver::new(Deleter::Thread, std::env::temp_dir());
    let mut n = net("tdv0", "198.19.174.1/24", BridgeConfig::default());
    n.mtu = Some(70000);
    assert!(matches!(d.validate(&n), Err(Error::Invalid(m)) if m.contains("MTU")));
    n.mtu = Some(0);
    assert!(matches!(d.validate(&n), Err(Error::Invalid(_))));
    let n = net(
        "tdv0",
        "198.19.174.1/24",
        BridgeConfig {
            hairpin: true,
            promisc: true,
            ..BridgeConfig::default()
        },
    );
    assert!(matches!(d.validate(&n), Err(Error::Invalid(m)) if m.contains("hairpin")));
    let n = net(
        "a-name-far-too-long",
        "198.19.174.1/24",
        BridgeConfig::default(),
    );
    assert!(matches!(d.validate(&n), Err(Error::Invalid(m)) if m.contains("bridge name")));
}

/// `nft list table FAMILY NAME` in `ns` ("" when there is no such table).
fn nft_table(ns: &Netns, family: &str, name: &str) -> String {
    let cmd = format!("ip netns exec {} nft list table {family} {name}", ns.name);
    if sh_ok(&cmd) {
        sh(&cmd)
    } else {
        String::new()
    }
}

#[test]
fn docker_isolation_published_ports_and_masquerade_come_and_go() {
    require_root();
    // A namespace acting as the node: the packet filter tables are its own.
    let node = Netns::new("tdn");
    let ctr = Netns::new("tdc");
    let state = tempfile::tempdir().unwrap();
    let d = BridgeDriver::new(Deleter::Thread, state.path().to_path_buf());
    let mut n = net(
        "br-iso",
        "198.19.175.1/24",
        BridgeConfig {
            isolate: true,
            ..BridgeConfig::default()
        },
    );
    n.masquerade = true;
    if let NetworkKind::Bridge(c) = &mut n.kind {
        c.icc = false;
    }
    let ep_spec = spec("198.19.175.2/24");
    let on_node = ferry_linux::Netns::open(node.path()).unwrap();
    let (ep, host) = on_node
        .run(|| {
            d.create_network(&n).unwrap();
            let place = Placement::Netns {
                netns: &ctr.path(),
                ifname: "eth0",
            };
            let ep = d.create_endpoint(&n, &ep_spec, place).unwrap();
            let host = ep.host_ifname.clone().unwrap();
            (ep, host)
        })
        .unwrap();
    // icc off: the port is an isolated one, the bridge an isolated bridge.
    let fw = nft_table(&node, "bridge", "ferry-firewall");
    assert!(fw.contains(&host), "{fw}");
    let fw = nft_table(&node, "inet", "ferry-firewall");
    assert!(fw.contains("br-iso") && fw.contains("198.19.175.2"), "{fw}");

    let ext = ferry_drivers::network::External {
        mappings: vec![ferry_drivers::portmap::Mapping::new(8080, 80, "tcp", None).unwrap()],
    };
    on_node
        .run(|| d.program_external_connectivity(&n, &ep, &ext).unwrap())
        .unwrap();
    assert!(nft_table(&node, "inet", "ferry-portmap").contains("8080"));
    assert!(nft_table(&node, "inet", "ferry-masq").contains("198.19.175.2"));
    assert_eq!(
        node.exec("cat /proc/sys/net/ipv4/conf/br-iso/route_localnet")
            .trim(),
        "1"
    );
    on_node
        .run(|| {
            d.revoke_external_connectivity(&n, &ep).unwrap();
            d.revoke_external_connectivity(&n, &ep).unwrap();
        })
        .unwrap();
    assert!(!nft_table(&node, "inet", "ferry-portmap").contains("8080"));
    assert!(!nft_table(&node, "inet", "ferry-masq").contains("198.19.175.2"));

    on_node
        .run(|| d.delete_endpoint(&n, &ep).unwrap().finish())
        .unwrap();
    assert!(!nft_table(&node, "bridge", "ferry-firewall").contains(&host));
    assert!(!nft_table(&node, "inet", "ferry-firewall").contains("198.19.175.2"));
    assert!(!ctr.exec_ok("ip link show dev eth0"), "container end left");
    on_node.run(|| d.delete_network(&n).unwrap()).unwrap();
    assert!(!nft_table(&node, "inet", "ferry-firewall").contains("br-iso"));
    assert!(!node.exec_ok("ip link show dev br-iso"), "bridge left");
}

#[test]
fn the_host_end_is_a_port_with_its_flags_from_its_creation() {
    require_root();
    // A namespace acting as the node: its links are the test's alone.
    let node = Netns::new("hvn");
    let state = tempfile::tempdir().unwrap();
    let d = BridgeDriver::new(Deleter::Thread, state.path().to_path_buf());
    let n = net(
        "hvbr",
        "198.19.36.1/24",
        BridgeConfig {
            hairpin: true,
            port_isolation: true,
            ..BridgeConfig::default()
        },
    );
    let on_node = ferry_linux::Netns::open(node.path()).unwrap();
    let ep = on_node
        .run(|| {
            d.create_network(&n).unwrap();
            d.create_endpoint(&n, &spec("198.19.36.2/24"), Placement::Host)
                .unwrap()
        })
        .unwrap();
    let host = ep.host_ifname.clone().unwrap();
    let port = node.exec(&format!("ip -d -o link show dev {host}"));
    for want in ["master hvbr", "hairpin on", "isolated on", ",UP"] {
        assert!(port.contains(want), "{host} lacks {want:?}: {port}");
    }

    // The kernel refuses to enslave to a link that is no bridge (a veth): the request
    // that would create the pair creates nothing.
    node.exec("ip link add hvnobr type veth peer name hvnobr1");
    let bad = net("hvnobr", "198.19.36.1/24", BridgeConfig::default());
    let before = node.exec("ip -o link show");
    let err = on_node
        .run(|| d.create_endpoint(&bad, &spec("198.19.36.3/24"), Placement::Host))
        .unwrap()
        .expect_err("a dummy is no bridge");
    assert!(err.to_string().contains("hvnobr"), "{err}");
    assert_eq!(
        node.exec("ip -o link show"),
        before,
        "a refused enslavement left links"
    );
}
