//! A ferryd killed between creating a Docker endpoint's veth pair and making
//! its host end a bridge port (older versions: two netlink requests apart)
//! left an unattached `vethXXXXXXXX@ctrXXXXXXXX` pair that nothing deleted.
//! Now the pair is a bridge port from its creation, and a restarted ferryd
//! deletes such pairs, and nothing Ferry did not make (issue 16). ferryd
//! runs in a namespace of the test's (its "host"), so no other test's links
//! are in view. Addresses: 198.19.32.0/22.

use ferry_testkit::docker::Ferryd;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A plugin-protocol call that must succeed.
fn ok(f: &Ferryd, method: &str, body: Value) -> Value {
    let (status, v) = f.call(method, &body.to_string());
    assert!(
        status == 200 && v["Err"].as_str().unwrap_or_default().is_empty(),
        "{method} {body}: HTTP {status} {v}"
    );
    v
}

/// The links of the namespace `ns`, by name.
fn links(ns: &Netns) -> Vec<String> {
    ip_links(&format!("-n {} link show", ns.name))
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn restart_deletes_the_unattached_pairs_an_old_ferryd_left_and_nothing_else() {
    require_root();
    let host = Netns::new("hvh");
    let other = Netns::new("hvc");
    let dir = tempfile::Builder::new()
        .prefix("ferry-hv")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    // Declared after the namespaces: dropped (killed) before they go.
    let mut ferryd = Ferryd::start_in(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &unique("hvd"),
        &["base=198.19.34.0/23,size=24"],
        &host.path(),
        &[],
    );
    let ip = |cmd: &str| sh(&format!("ip -n {} {cmd}", host.name));

    // Docker's requests for a network and an endpoint: the endpoint's pair
    // is a port of the network's bridge as soon as it exists.
    let pool = ok(
        &ferryd,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "local", "Pool": "198.19.32.0/24"}),
    );
    let pool_id = pool["PoolID"].as_str().expect("PoolID").to_string();
    let gw = ok(
        &ferryd,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    );
    let net = format!("{:0<64}", "be");
    ok(
        &ferryd,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": net, "IPv4Data": [{"AddressSpace": "local", "Pool": "198.19.32.0/24", "Gateway": gw["Address"]}]}),
    );
    let ep = format!("{:0<64}", "e1");
    ok(
        &ferryd,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": net, "EndpointID": ep, "Interface": {"Address": "198.19.32.2/24"}}),
    );
    let bridge = format!("fr-{}", &net[..12]);
    let made = ferry_host_pairs(Some(&host.name));
    assert_eq!(
        made.len(),
        1,
        "one pair for one endpoint in the namespace: {made:?}"
    );
    assert_eq!(
        made[0].master.as_deref(),
        Some(bridge.as_str()),
        "the endpoint's host end is no port of {bridge}: {made:?}"
    );
    let claimed = made[0].clone();
    // Released from its bridge by hand: unattached, but an endpoint's.
    ip(&format!("link set {} nomaster", claimed.host));

    // What an interrupted older ferryd left: two unattached pairs (killed
    // before and after bringing the host end up).
    ip("link add vethdea0000a type veth peer name ctrdea0000a");
    ip("link add vethdea0000b type veth peer name ctrdea0000b");
    ip("link set vethdea0000b up");
    // Not Ferry's, or not unattached: all stay.
    // Docker's bridge driver (7 hex digits), before it moves its end.
    ip("link add veth1234567 type veth peer name vethabcdef0");
    // A CNI host end: its peer in a container.
    ip(&format!(
        "link add veth0c000001 type veth peer name eth0 netns {}",
        other.name
    ));
    // A `ctr` name on a peer of a link Ferry did not name, and the reverse.
    ip("link add hvx0 type veth peer name ctr0c000002");
    ip("link add veth0c000003 type veth peer name hvx1");
    // Not quite Ferry's names (9 digits, upper case).
    ip("link add veth0c0000004 type veth peer name ctr0c000004");
    ip("link add veth0C000005 type veth peer name ctr0C000005");
    // A Ferry-named pair on a bridge that is no network of this ferryd's.
    ip("link add hvbr0 type bridge");
    ip("link add veth0c000006 master hvbr0 type veth peer name ctr0c000006");
    let kept = [
        claimed.host.as_str(),
        claimed.peer.as_str(),
        "veth1234567",
        "vethabcdef0",
        "veth0c000001",
        "hvx0",
        "ctr0c000002",
        "veth0c000003",
        "hvx1",
        "veth0c0000004",
        "ctr0c000004",
        "veth0C000005",
        "ctr0C000005",
        "hvbr0",
        "veth0c000006",
        "ctr0c000006",
    ];
    let gone = ["vethdea0000a", "ctrdea0000a", "vethdea0000b", "ctrdea0000b"];

    ferryd.kill9();
    ferryd.spawn();
    // The sweep runs before ferryd serves; its deletes may finish after.
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = || -> Vec<String> {
        let now = links(&host);
        gone.iter()
            .filter(|g| now.iter().any(|l| l == *g))
            .map(|g| g.to_string())
            .collect()
    };
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        left().is_empty(),
        "unattached pairs an older ferryd left, still there after a restart: {:?}",
        left()
    );
    let now = links(&host);
    let touched: Vec<&&str> = kept
        .iter()
        .filter(|k| !now.iter().any(|l| l == *k))
        .collect();
    assert!(
        touched.is_empty(),
        "the restart deleted links it must keep: {touched:?}"
    );
    assert!(
        sh(&format!("ip -n {} -j link show dev eth0", other.name)).contains("eth0"),
        "the CNI host end's peer went"
    );

    // The endpoint still works through Docker's door and goes when deleted.
    let r = json!({"NetworkID": net, "EndpointID": ep});
    ok(&ferryd, "NetworkDriver.EndpointOperInfo", r.clone());
    ok(&ferryd, "NetworkDriver.DeleteEndpoint", r);
    let deadline = Instant::now() + Duration::from_secs(5);
    while links(&host).contains(&claimed.host) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !links(&host).contains(&claimed.host),
        "the endpoint's host end {} outlived DeleteEndpoint",
        claimed.host
    );
}
