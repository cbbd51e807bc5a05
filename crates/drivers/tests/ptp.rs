//! The ptp driver called directly, inside a namespace acting as the node:
//! an endpoint created under a temporary name in the container, joined as
//! eth0 with its routes through the host end, and deleted without a trace.
//! 198.19.176.0/24; `ip` is the oracle.

use ferry_drivers::link::detach::Deleter;
use ferry_drivers::link::iface::{Address, InterfaceConfig};
use ferry_drivers::network::ptp::PtpDriver;
use ferry_drivers::network::{EndpointSpec, NetworkDriver, NetworkKind, NetworkSpec, Placement};
use ferry_testkit::{require_root, Netns};

#[test]
fn ptp_endpoint_routes_through_the_host_and_goes_away() {
    require_root();
    let node = Netns::new("tpn");
    let ctr = Netns::new("tpc");
    ctr.exec("ip link set lo up");
    let state = tempfile::tempdir().unwrap();
    let d = PtpDriver::new(Deleter::Thread, state.path().to_path_buf());
    let n = NetworkSpec {
        id: "ptp-test".into(),
        kind: NetworkKind::Ptp,
        mtu: Some(1400),
        gateways: Vec::new(),
        forwarding: true,
        masquerade: false,
    };
    let spec = EndpointSpec {
        id: "c1:eth0".into(),
        mac: None,
        addresses: vec!["198.19.176.2/24".parse().unwrap()],
    };
    let cfg = InterfaceConfig {
        addresses: vec![Address {
            net: "198.19.176.2/24".parse().unwrap(),
            gateway: Some("198.19.176.1".parse().unwrap()),
        }],
        routes: Vec::new(),
    };
    let on_node = ferry_linux::Netns::open(node.path()).unwrap();
    let joined = on_node
        .run(|| {
            d.validate(&n).unwrap();
            d.create_network(&n).unwrap();
            let place = Placement::Netns {
                netns: &ctr.path(),
                ifname: "tmp0",
            };
            let ep = d.create_endpoint(&n, &spec, place).unwrap();
            let joined = d.join(&n, &ep, &ctr.path(), "eth0", &cfg).unwrap();
            d.check(&n, &joined, &cfg).unwrap();
            joined
        })
        .unwrap();
    let host = joined.host_ifname.clone().unwrap();
    assert_eq!(joined.ifname, "eth0");
    // IPv4 only: the host end has no IPv6.
    assert_eq!(
        node.exec(&format!("cat /proc/sys/net/ipv6/conf/{host}/disable_ipv6"))
            .trim(),
        "1"
    );
    assert!(node
        .exec(&format!("ip -o addr show dev {host}"))
        .contains("198.19.176.1/32"));
    assert!(node
        .exec("ip route")
        .contains(&format!("198.19.176.2 dev {host} scope host")));
    let routes = ctr.exec("ip route");
    assert!(
        routes.contains("198.19.176.0/24 via 198.19.176.1 dev eth0"),
        "{routes}"
    );
    assert!(
        ctr.exec_ok("ping -c1 -W2 198.19.176.1"),
        "no ping to the gateway"
    );

    on_node
        .run(|| d.delete_endpoint(&n, &joined).unwrap().finish())
        .unwrap();
    assert!(
        !node.exec_ok(&format!("ip link show dev {host}")),
        "host veth left"
    );
    assert!(!ctr.exec_ok("ip link show dev eth0"), "container end left");
    assert!(
        !node.exec("ip route").contains("198.19.176.2"),
        "host route left"
    );
}
