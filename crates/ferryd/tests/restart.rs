//! ferryd killed with -9 while it holds networks, sandboxes (its own and
//! Docker's containers) and published ports: after a restart every object
//! is back and can be connected, swapped, disconnected and removed, and
//! nothing leaks. 198.19.200.0/21 and fd00:1920::/48. The writes ferryd
//! defers (no fsync: Docker's sandbox keys, its address releases) are
//! recovered after a kill -9: 198.19.44.0/24.

use ferry_testkit::cluster::endpoint_addrs;
use ferry_testkit::docker::{http, Dockerd, Ferryd};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn api(f: &Ferryd, verb: &str, path: &str, body: Value) -> Value {
    let (status, v) = http(&f.api_socket, verb, path, &body.to_string());
    assert_eq!(status, 200, "{verb} {path} {body}: {v}");
    v
}

fn curl(url: &str) -> String {
    sh(&format!(
        "curl -s -o /dev/null -m 3 -w '%{{http_code}}' {url} || true"
    ))
}

fn wait_http(url: &str) -> String {
    let start = Instant::now();
    loop {
        let code = curl(url);
        if code != "000" || start.elapsed() > Duration::from_secs(5) {
            return code;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sandbox's interface names and addresses, from inside it.
fn addrs_in(sandbox: &str) -> String {
    sh(&format!("ip -n {sandbox} -o addr show"))
}

#[test]
fn everything_survives_kill_9_and_can_be_worked_with() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("ferry-restart")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let name = format!("ferry-r{}", std::process::id());
    let mut ferryd = Ferryd::start(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &name,
        &[
            "base=198.19.200.0/22,size=24",
            "base=fd00:1920::/48,size=64",
        ],
    );
    let _forward = forward_rule_guard();
    let mut cleanup = Cleanup::default();
    cleanup.push(ferry_testkit::remove_idle_ferry_tables);
    let sb1 = unique("rsa");
    let sb2 = unique("rsb");
    for sb in [sb1.clone(), sb2.clone()] {
        cleanup.push(move || {
            let _ = sh_ok(&format!("ip netns del {sb}"));
        });
    }

    // Ferry's door: three networks, two sandboxes, one connected to two.
    for body in [
        json!({"name": "rweb", "ipv6": true}),
        json!({"name": "rdb", "subnets": ["198.19.206.0/24"]}),
        json!({"name": "rspare", "subnets": ["198.19.207.0/24"]}),
    ] {
        let n = api(&ferryd, "POST", "/networks", body);
        // The test removes them; this guard acts only when it fails halfway.
        cleanup.link(n["bridge"].as_str().expect("a bridge"));
    }
    api(&ferryd, "POST", "/sandboxes", json!({"name": sb1}));
    api(&ferryd, "POST", "/sandboxes", json!({"name": sb2}));
    assert!(
        sh(&format!("ip -n {sb1} -o link show lo")).contains("UP"),
        "a sandbox Ferry creates has lo up"
    );
    let e1 = api(
        &ferryd,
        "POST",
        "/connect",
        json!({"network": "rweb", "sandbox": sb1}),
    );
    api(
        &ferryd,
        "POST",
        "/connect",
        json!({"network": "rdb", "sandbox": sb1, "priority": 5}),
    );
    let e2 = api(
        &ferryd,
        "POST",
        "/connect",
        json!({"network": "rweb", "sandbox": sb2}),
    );
    let (ip2, _, _) = endpoint_addrs(&e2);
    assert!(!ip2.is_empty(), "no address in {e2}");
    assert!(
        sh_ok(&format!("ip netns exec {sb1} ping -c1 -W2 {ip2}")),
        "sandboxes on rweb cannot talk"
    );
    // Host veths of bridge endpoints have IPv6 off, as the CNI bridge's.
    let host_veth = e1["host_veth"].as_str().expect("host veth").to_string();
    let v6_off =
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{host_veth}/disable_ipv6"))
            .expect("the host veth's sysctl");
    assert_eq!(v6_off.trim(), "1");

    // Docker's door: a network, a container with a published port.
    let docker = Dockerd::start(&dir.path().join("docker"));
    docker.import_busybox("ferrybox");
    docker.run(&format!(
        "network create -d {name} --ipam-driver {name} --subnet 198.19.204.0/24 rdock"
    ));
    let dock_id = docker.run("network inspect -f '{{.Id}}' rdock");
    cleanup.link(&format!("fr-{}", &dock_id[..12]));
    docker.run("run -d --name rc1 --net rdock -p 18490:80 ferrybox httpd -f -p 80");
    assert_ne!(
        wait_http("http://198.19.204.1:18490/"),
        "000",
        "not published"
    );

    let networks_before = ferryd.api("/networks");
    let endpoints_before = ferryd.api("/endpoints");
    let sandboxes_before = ferryd.api("/sandboxes");

    ferryd.kill9();
    // The dataplane does not need ferryd.
    assert!(sh_ok(&format!("ip netns exec {sb1} ping -c1 -W2 {ip2}")));
    assert_ne!(curl("http://198.19.204.1:18490/"), "000");
    ferryd.spawn();

    assert_eq!(ferryd.api("/networks"), networks_before);
    assert_eq!(ferryd.api("/endpoints"), endpoints_before);
    assert_eq!(ferryd.api("/sandboxes"), sandboxes_before);
    let inspect = api(&ferryd, "GET", &format!("/sandboxes/{sb1}"), Value::Null);
    assert_eq!(
        inspect["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{inspect}"
    );

    // Work with what came back: swap, connect, disconnect.
    let swapped = api(
        &ferryd,
        "POST",
        "/swap",
        json!({"sandbox": sb2, "from": "rweb", "to": "rspare"}),
    );
    assert_eq!(swapped["ifname"], "eth0");
    assert!(addrs_in(&sb2).contains("198.19.207."), "{}", addrs_in(&sb2));
    let e3 = api(
        &ferryd,
        "POST",
        "/connect",
        json!({"network": "rdb", "sandbox": sb2}),
    );
    let (ip3, _, _) = endpoint_addrs(&e3);
    assert!(!ip3.is_empty(), "no address in {e3}");
    assert!(
        sh_ok(&format!("ip netns exec {sb1} ping -c1 -W2 {ip3}")),
        "rdb after restart"
    );
    api(
        &ferryd,
        "POST",
        "/disconnect",
        json!({"network": "rdb", "sandbox": sb1}),
    );
    assert!(!addrs_in(&sb1).contains("198.19.206."));

    // Docker: the published port stays, another container joins, rm works.
    assert_ne!(curl("http://198.19.204.1:18490/"), "000");
    docker.run("run -d --name rc2 --net rdock ferrybox sleep 600");
    let ip_rc1 =
        docker.run("inspect -f '{{(index .NetworkSettings.Networks \"rdock\").IPAddress}}' rc1");
    assert!(docker.ok(&format!("exec rc2 ping -c1 -W2 {ip_rc1}")));
    docker.run("rm -f rc1 rc2");
    assert_eq!(
        curl("http://198.19.204.1:18490/"),
        "000",
        "still published after rm"
    );
    docker.run("network rm rdock");

    // Remove everything Ferry's door made.
    for sb in [&sb1, &sb2] {
        http(
            &ferryd.api_socket,
            "DELETE",
            &format!("/sandboxes/{sb}"),
            "",
        );
    }
    for n in ["rweb", "rdb", "rspare"] {
        http(&ferryd.api_socket, "DELETE", &format!("/networks/{n}"), "");
    }
    assert_eq!(ferryd.api("/networks"), json!([]));
    assert_eq!(ferryd.api("/endpoints"), json!([]));
    assert_eq!(ferryd.api("/sandboxes"), json!([]));
    let namespaces = sh("ip netns list");
    assert!(
        !namespaces.contains(&sb1) && !namespaces.contains(&sb2),
        "namespaces left: {namespaces}"
    );
    let start = Instant::now();
    while ferry_host_links().iter().any(|l| l == &host_veth)
        && start.elapsed() < Duration::from_secs(2)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!ferry_host_links().contains(&host_veth), "{host_veth} left");
    let portmap = sh("nft -j list map inet ferry-portmap hostports4 2>/dev/null || true");
    assert!(
        !portmap.contains("18490"),
        "portmap elements left: {portmap}"
    );
}

/// A plugin call that must succeed.
fn ok(f: &Ferryd, method: &str, body: Value) -> Value {
    f.call_ok(method, &body)
}

/// Whether ferryd's IPAM holds `ip` in pool `pool_id`.
fn allocated(f: &Ferryd, pool_id: &str, ip: &str) -> bool {
    let pools = f.api("/pools");
    let held = pools[pool_id]["allocated"].as_array().cloned();
    held.unwrap_or_default().contains(&json!(ip))
}

/// Docker's Join and Leave keys and its ReleaseAddress are committed
/// without an fsync (no fsync on `docker run`'s path): a clean stop keeps
/// them, a kill -9 right after loses them. The endpoint itself is durable;
/// the lost release leaves the address allocated with no endpoint claiming
/// it, and the address sweep frees it after its grace, so the pool ends
/// empty.
#[test]
fn deferred_writes_survive_a_clean_stop_and_kill_9_losses_are_recovered() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("ferry-defer")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let grace = Duration::from_secs(1);
    let mut ferryd = Ferryd::try_start_with(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &unique("svdf"),
        &["base=198.19.45.0/24,size=24"],
        &["--unclaimed-address-grace", &grace.as_secs().to_string()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut cleanup = Cleanup::default();
    cleanup.push(ferry_testkit::remove_idle_ferry_tables);
    let bridge = unique("svdb");
    cleanup.link(&bridge);
    let net = format!("{:0>64}", format!("5d{}", std::process::id()));
    let ep = format!("{:0>64}", format!("5e{}", std::process::id()));
    let (pool_id, gateway) = ferryd.request_pool_and_gateway("198.19.44.0/24");
    ok(
        &ferryd,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": net,
               "Options": {"com.docker.network.generic": {"com.docker.network.bridge.name": bridge}},
               "IPv4Data": [{"AddressSpace": "local", "Pool": "198.19.44.0/24", "Gateway": gateway}]}),
    );
    let a = ok(
        &ferryd,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id}),
    );
    let address = a["Address"].as_str().expect("Address").to_string();
    let ip = address.split('/').next().unwrap_or_default().to_string();
    let r = json!({"NetworkID": net, "EndpointID": ep});
    ok(
        &ferryd,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": net, "EndpointID": ep, "Interface": {"Address": address}}),
    );
    let key = "/var/run/docker/netns/svdefer";
    ok(
        &ferryd,
        "NetworkDriver.Join",
        json!({"NetworkID": net, "EndpointID": ep, "SandboxKey": key}),
    );
    ok(
        &ferryd,
        "NetworkDriver.ProgramExternalConnectivity",
        r.clone(),
    );
    // A clean stop commits the deferred Join key.
    ferryd.terminate();
    ferryd.spawn();
    let eps = ferryd.api("/endpoints");
    assert_eq!(
        eps[0]["sandbox"],
        json!(key),
        "Join lost at a clean stop: {eps}"
    );
    ferryd.kill9();
    ferryd.spawn();
    // CreateEndpoint was committed.
    let eps = ferryd.api("/endpoints");
    let kept = eps.as_array().cloned().unwrap_or_default();
    assert_eq!(kept.len(), 1, "the endpoint did not survive kill -9: {eps}");
    assert!(
        allocated(&ferryd, &pool_id, &ip),
        "{ip} lost: {}",
        ferryd.api("/pools")
    );
    for m in [
        "NetworkDriver.RevokeExternalConnectivity",
        "NetworkDriver.Leave",
        "NetworkDriver.DeleteEndpoint",
    ] {
        ok(&ferryd, m, r.clone());
    }
    ok(
        &ferryd,
        "IpamDriver.ReleaseAddress",
        json!({"PoolID": pool_id, "Address": ip}),
    );
    ferryd.kill9();
    ferryd.spawn();
    assert_eq!(
        ferryd.api("/endpoints"),
        json!([]),
        "DeleteEndpoint was lost"
    );
    // The release was deferred, so it is lost unless the sweep already ran;
    // either way the sweep must leave the address free.
    let deadline = Instant::now() + grace * 3 + Duration::from_secs(3);
    while allocated(&ferryd, &pool_id, &ip) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !allocated(&ferryd, &pool_id, &ip),
        "the released {ip} is still allocated after kill -9 and the sweep's grace: {}",
        ferryd.api("/pools")
    );
    ferryd.remove_docker_network(&net, &pool_id, &gateway);
    // With the network gone its releases are committed: nothing comes back.
    ferryd.kill9();
    ferryd.spawn();
    assert_eq!(ferryd.api("/pools"), json!({}), "pools left");
    assert!(host_links(&bridge).is_empty(), "bridge {bridge} left");
}

fn ferry_host_links() -> Vec<String> {
    sh("ip -o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}
