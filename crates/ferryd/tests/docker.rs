//! A real dockerd (Debian docker.io, started by the test) uses Ferry networks
//! through ferryd's remote NetworkDriver and IpamDriver: networks with and
//! without a subnet, containers reaching each other over IPv4 and IPv6,
//! connect/disconnect on a running container, kill -9 and restart of ferryd,
//! bad requests answered in Docker's error fields, and nothing left after rm.
//! Addresses: 198.18.232.0/21 and fd00:232::/48.

use ferry_testkit::docker::{Dockerd, Ferryd};
use ferry_testkit::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// ferryd under a driver name of its own, with the test's default pools.
fn start_ferryd(dir: &Path, name: &str) -> Ferryd {
    Ferryd::start(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir,
        name,
        &["base=198.18.232.0/22,size=24", "base=fd00:232::/48,size=64"],
    )
}

fn ip_of(d: &Dockerd, container: &str, network: &str, key: &str) -> String {
    d.run(&format!(
        "inspect -f '{{{{(index .NetworkSettings.Networks \"{network}\").{key}}}}}' {container}"
    ))
}

/// The host-side links of every endpoint ferryd holds now (the driver
/// names them at random), added to `seen`.
fn note_links(ferryd: &Ferryd, seen: &mut std::collections::BTreeSet<String>) {
    for e in ferryd.api("/endpoints").as_array().into_iter().flatten() {
        for key in ["host_veth", "container_veth"] {
            if let Some(name) = e[key].as_str().filter(|n| !n.is_empty()) {
                seen.insert(name.to_string());
            }
        }
    }
}

/// Those of `seen` (and Ferry's bridges) that still exist on the host.
fn ferry_links(seen: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut v = host_links("fr-");
    v.extend(seen.iter().filter(|n| !host_links(n).is_empty()).cloned());
    v
}

#[test]
fn docker_uses_ferry_networks_end_to_end() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("ferry-docker")
        .tempdir_in("/var/tmp")
        .unwrap();
    let name = format!("ferry-t{}", std::process::id());
    let mut ferryd = start_ferryd(dir.path(), &name);
    // Ferry's node-wide tables are created on first use; this test removes them.
    let _forward = forward_rule_guard();
    let mut tables = Cleanup::default();
    tables.push(ferry_testkit::remove_idle_ferry_tables);
    let docker = Dockerd::start(&dir.path().join("docker"));
    docker.import_busybox("ferrybox");
    let mut seen = std::collections::BTreeSet::new();
    let net = |n: &str, extra: &str| {
        docker.run(&format!(
            "network create -d {name} --ipam-driver {name} {extra} {n}"
        ))
    };

    // Without --subnet: a /24 carved from the default pool.
    net("fauto", "");
    let subnet = docker.run("network inspect -f '{{(index .IPAM.Config 0).Subnet}}' fauto");
    assert!(
        subnet.starts_with("198.18.23") && subnet.ends_with("/24"),
        "{subnet}"
    );
    // With --subnet, and two containers reaching each other.
    net("fsub", "--subnet 198.18.236.0/24");
    docker.run("run -d --name c1 --net fsub ferrybox sleep 600");
    docker.run("run -d --name c2 --net fsub ferrybox sleep 600");
    note_links(&ferryd, &mut seen);
    let ip1 = ip_of(&docker, "c1", "fsub", "IPAddress");
    assert!(ip1.starts_with("198.18.236."), "{ip1}");
    assert!(
        docker.ok(&format!("exec c2 ping -c1 -W2 {ip1}")),
        "c2 cannot reach c1"
    );

    // connect and disconnect on a running container.
    docker.run("network connect fauto c1");
    let ip1b = ip_of(&docker, "c1", "fauto", "IPAddress");
    assert!(docker.run("exec c1 ip -o -4 addr").contains(&ip1b));
    docker.run("network disconnect fauto c1");
    assert!(!docker.run("exec c1 ip -o -4 addr").contains(&ip1b));

    // Dual-stack: both addresses, reachable over IPv6.
    net(
        "fds",
        "--ipv6 --subnet 198.18.237.0/24 --subnet fd00:232:237::/64",
    );
    docker.run("run -d --name c3 --net fds ferrybox sleep 600");
    docker.run("run -d --name c4 --net fds ferrybox sleep 600");
    note_links(&ferryd, &mut seen);
    let ip3v6 = ip_of(&docker, "c3", "fds", "GlobalIPv6Address");
    assert!(ip3v6.starts_with("fd00:232:237::"), "{ip3v6}");
    assert!(
        docker.ok(&format!("exec c4 ping -6 -c1 -W2 {ip3v6}")),
        "no IPv6 between c4 and c3"
    );

    // Networks are isolated from each other; enable_icc=false isolates
    // the containers of one network too.
    assert!(
        !docker.ok(&format!("exec c4 ping -c1 -W1 {ip1}")),
        "fds reached fsub"
    );
    net(
        "ficc",
        "--subnet 198.18.238.64/26 -o com.docker.network.bridge.enable_icc=false",
    );
    docker.run("run -d --name i1 --net ficc ferrybox sleep 600");
    docker.run("run -d --name i2 --net ficc ferrybox sleep 600");
    note_links(&ferryd, &mut seen);
    let i1 = ip_of(&docker, "i1", "ficc", "IPAddress");
    assert!(
        !docker.ok(&format!("exec i2 ping -c1 -W1 {i1}")),
        "enable_icc=false did not isolate"
    );
    let ficc_id = docker.run("network inspect -f '{{.Id}}' ficc");
    let ficc_bridge = format!("fr-{}", &ficc_id[..12]);
    assert!(
        sh("nft list table inet ferry-firewall").contains(&format!("\"{ficc_bridge}\"")),
        "{ficc_bridge} isolated"
    );
    docker.run("rm -f i1 i2");
    docker.run("network rm ficc");
    // A removed network leaves no isolation entry behind.
    let fw = sh("nft list table inet ferry-firewall");
    assert!(
        !fw.contains(&format!("\"{ficc_bridge}\"")),
        "{ficc_bridge} left in {fw}"
    );

    // The macvlan driver (Docker's keys) and the null driver.
    let parent = unique("dmp");
    sh(&format!(
        "ip link add {parent} type veth peer name {parent}p"
    ));
    let mut links = Cleanup::default();
    links.link(&parent);
    sh(&format!(
        "ip link set {parent} up; ip link set {parent}p up"
    ));
    net(
        "fmac",
        &format!("-o ferry.driver=macvlan -o parent={parent} -o macvlan_mode=bridge --subnet 198.18.239.0/24"),
    );
    docker.run("run -d --name m1 --net fmac ferrybox sleep 600");
    docker.run("run -d --name m2 --net fmac ferrybox sleep 600");
    note_links(&ferryd, &mut seen);
    let m1 = ip_of(&docker, "m1", "fmac", "IPAddress");
    let key = docker.run("inspect -f '{{.NetworkSettings.SandboxKey}}' m2");
    let kind = sh(&format!("nsenter --net={key} ip -d link show eth0"));
    assert!(kind.contains("macvlan mode bridge"), "{kind}");
    assert!(
        docker.ok(&format!("exec m2 ping -c1 -W2 {m1}")),
        "macvlan containers cannot talk"
    );
    net("fnull", "-o ferry.driver=null");
    let links_in = docker.run("run --rm --net fnull ferrybox ip -o link");
    assert_eq!(
        links_in.lines().count(),
        1,
        "a null network gave an interface: {links_in}"
    );
    docker.run("rm -f m1 m2");
    docker.run("network rm fmac fnull");

    // A published port, reachable from the node through the bridge address and
    // through its loopback; a second container cannot take the same host port.
    docker.run("run -d --name web --net fsub -p 18480:80 ferrybox httpd -f -p 80");
    note_links(&ferryd, &mut seen);
    let http = |url: &str| {
        sh(&format!(
            "curl -s -o /dev/null -m 3 -w '%{{http_code}}' {url} || true"
        ))
    };
    let start = Instant::now();
    while http("http://198.18.236.1:18480/") == "000" && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        http("http://198.18.236.1:18480/"),
        "000",
        "published port not reachable via the bridge address"
    );
    assert_ne!(
        http("http://127.0.0.1:18480/"),
        "000",
        "published port not reachable via loopback"
    );
    let (ok, out) = docker.try_run("run -d --name web2 --net fsub -p 18480:80 ferrybox sleep 600");
    assert!(!ok && out.contains("already published"), "{out}");
    let _ = docker.try_run("rm -f web2");
    let (ok, out) = docker.try_run("run -d --name web3 --net fsub -p 80 ferrybox sleep 600");
    assert!(!ok && out.contains("host port"), "{out}");
    let _ = docker.try_run("rm -f web3");
    // host_binding_ipv4: bindings without an address use the network's default.
    net(
        "fbind",
        "--subnet 198.18.238.128/26 -o com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
    );
    docker.run("run -d --name webb --net fbind -p 18481:80 ferrybox httpd -f -p 80");
    note_links(&ferryd, &mut seen);
    let start = Instant::now();
    while http("http://127.0.0.1:18481/") == "000" && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        http("http://127.0.0.1:18481/"),
        "000",
        "not published on the default binding address"
    );
    assert_eq!(
        http("http://198.18.238.129:18481/"),
        "000",
        "published beyond the default binding address"
    );
    docker.run("rm -f webb");
    docker.run("network rm fbind");
    docker.run("rm -f web");
    assert_eq!(
        http("http://198.18.236.1:18480/"),
        "000",
        "the port stayed published after rm"
    );
    let elements = sh("nft -j list map inet ferry-portmap hostports4 2>/dev/null || true");
    assert!(
        !elements.contains("18480"),
        "portmap elements left: {elements}"
    );

    // Overlapping subnets and an exhausted pool: Docker-style errors.
    let (ok, out) = docker.try_run(&format!(
        "network create -d {name} --ipam-driver {name} --subnet 198.18.236.128/25 fover"
    ));
    assert!(!ok && out.contains("overlaps"), "{out}");
    net("ftiny", "--subnet 198.18.238.0/30");
    docker.run("run -d --name c5 --net ftiny ferrybox sleep 600");
    note_links(&ferryd, &mut seen);
    let (ok, out) = docker.try_run("run -d --name c6 --net ftiny ferrybox sleep 600");
    assert!(!ok && out.contains("exhausted"), "{out}");
    let _ = docker.try_run("rm -f c6");

    // kill -9 and restart: state survives, another container joins.
    ferryd.kill9();
    ferryd.spawn();
    docker.run("run -d --name c7 --net fsub ferrybox sleep 600");
    note_links(&ferryd, &mut seen);
    let ip7 = ip_of(&docker, "c7", "fsub", "IPAddress");
    assert!(ip7.starts_with("198.18.236.") && ip7 != ip1, "{ip7}");
    assert!(
        docker.ok(&format!("exec c7 ping -c1 -W2 {ip1}")),
        "c7 cannot reach c1 after restart"
    );

    // Bad requests straight to the plugin socket.
    let (status, body) = ferryd.call("NetworkDriver.CreateEndpoint", "{not json");
    assert_eq!(status, 400);
    assert!(
        body["Err"].as_str().unwrap_or("").contains("malformed"),
        "{body}"
    );
    let (_, body) = ferryd.call(
        "NetworkDriver.CreateEndpoint",
        r#"{"NetworkID":"0123456789abcdef0123","EndpointID":"fedcba9876543210fedc","Interface":{}}"#,
    );
    assert!(
        body["Err"].as_str().unwrap_or("").contains("not found"),
        "{body}"
    );
    let (_, body) = ferryd.call(
        "IpamDriver.RequestAddress",
        r#"{"PoolID":"local/198.18.239.0/24"}"#,
    );
    assert!(
        body["Error"].as_str().unwrap_or("").contains("not found"),
        "{body}"
    );
    let eps = ferryd.api("/endpoints");
    let joined = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| !e["sandbox"].is_null())
        .expect("a joined endpoint")
        .clone();
    let before = ferryd.api("/endpoints");
    let (_, body) = ferryd.call(
        "NetworkDriver.Join",
        &format!(
            r#"{{"NetworkID":"{}","EndpointID":"{}","SandboxKey":"/var/run/docker/netns/other"}}"#,
            joined["network_id"].as_str().unwrap(),
            joined["id"].as_str().unwrap()
        ),
    );
    assert!(
        body["Err"]
            .as_str()
            .unwrap_or("")
            .contains("already joined"),
        "{body}"
    );
    assert_eq!(
        ferryd.api("/endpoints"),
        before,
        "a refused Join changed state"
    );
    let (status, _) = ferryd.call("NetworkDriver.NoSuchMethod", "{}");
    assert_eq!(status, 404);

    // Remove everything: no links, endpoints or pools remain.
    docker.run("rm -f c1 c2 c3 c4 c5 c7");
    for n in ["fauto", "fsub", "fds", "ftiny"] {
        docker.run(&format!("network rm {n}"));
    }
    assert_eq!(ferryd.api("/endpoints"), serde_json::json!([]));
    assert_eq!(ferryd.api("/networks"), serde_json::json!([]));
    assert_eq!(ferryd.api("/pools"), serde_json::json!({}));
    assert!(seen.len() >= 8, "endpoints' links were noted: {seen:?}");
    let start = Instant::now();
    while !ferry_links(&seen).is_empty() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        ferry_links(&seen).is_empty(),
        "links left: {:?}",
        ferry_links(&seen)
    );
}
