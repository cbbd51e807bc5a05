//! Docker's door to an overlay network: two hosts as network namespaces on
//! an underlay bridge (198.18.106.0/24), one etcd in host A's namespace, a
//! ferryd per host, and a dockerd started inside host A's namespace with
//! private paths. The overlay (198.19.240.0/24) is created through host B's
//! Ferry API; `docker network create -o ferry.driver=overlay -o
//! ferry.network=NAME` on A joins it, and a container on A and a Ferry
//! sandbox on B ping each other. A disagreeing --subnet is refused; `docker
//! rm -f` and `docker network rm` leave no endpoint in the store.
//! Docker's own default pools: 198.19.246.0/23; ferryd's: 198.19.244.0/23.

use ferry_testkit::cluster::{Cluster, Spec};
use ferry_testkit::docker::{http, Dockerd};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SUBNET: &str = "198.19.240.0/24";

/// Everything the test made, removed on drop (also when it fails), in
/// order: dockerd (with its containers and networks), then the cluster
/// (ferryds, etcd, sandboxes, the hosts and the underlay).
struct World {
    docker: Option<Dockerd>,
    cluster: Cluster,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(d) = &self.docker {
            let _ = d.try_run("rmi -f ferrybox");
        }
        self.docker.take();
    }
}

impl World {
    fn api(&self, host: usize) -> PathBuf {
        self.cluster.hosts[host].api()
    }

    fn ok(&self, host: usize, verb: &str, path: &str, body: Value) -> Value {
        self.cluster.hosts[host].ok(verb, path, &body)
    }

    fn docker(&self) -> &Dockerd {
        self.docker.as_ref().expect("dockerd")
    }

    /// The endpoint keys etcd holds for network `net`.
    fn stored_endpoints(&self, net: &str) -> Vec<String> {
        self.cluster.hosts[0]
            .sh(&format!(
                "env ETCDCTL_API=3 etcdctl --endpoints http://{} get --prefix '' --keys-only",
                self.cluster.etcd_endpoints()
            ))
            .lines()
            .filter(|k| k.contains(&format!("endpoints/{net}/")))
            .map(str::to_string)
            .collect()
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup(driver: &str) -> World {
    require_root();
    for bin in ["etcdctl", ferry_testkit::docker::DOCKERD] {
        assert!(
            sh_ok(&format!("command -v {bin}")),
            "{bin} is missing (Debian packages etcd-client, docker.io)"
        );
    }
    let spec = Spec {
        underlay: "198.18.106",
        hosts: 2,
        members: 1,
        ferryd: Path::new(env!("CARGO_BIN_EXE_ferryd")),
        pool: "base=198.19.244.0/23,size=24",
    };
    let mut cluster = Cluster::build(&spec).unwrap_or_else(|e| panic!("{e}"));
    cluster.ferryd_args = vec!["--log-level".into(), "debug".into()];
    // Host A's plugin socket is where its dockerd finds the driver.
    let plugin_socket = PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
    cluster.hosts[0].plugin_socket = plugin_socket.clone();
    for i in 0..spec.hosts {
        cluster.start_ferryd(i).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut w = World {
        docker: None,
        cluster,
    };
    wait_for(
        "ferryd's plugin socket on h0",
        Duration::from_secs(10),
        || std::os::unix::net::UnixStream::connect(&plugin_socket).is_ok(),
    );
    let docker = Dockerd::try_start_in(
        Some(&w.cluster.hosts[0].ns),
        &w.cluster.hosts[0].dir.join("docker"),
        &["--default-address-pool", "base=198.19.246.0/23,size=24"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    w.docker = Some(docker);
    w.docker().import_busybox("ferrybox");
    w
}

#[test]
fn a_docker_container_reaches_a_ferry_sandbox_over_the_overlay() {
    let driver = format!("ferry-ovd{}", std::process::id());
    let mut w = setup(&driver);
    let net = "ovd";
    // The overlay is the cluster's: created through host B's Ferry API.
    w.ok(
        1,
        "POST",
        "/networks",
        json!({"name": net, "driver": "overlay", "subnets": [SUBNET]}),
    );
    let create = |w: &World, name: &str, subnet: &str| {
        w.docker().try_run(&format!(
            "network create -d {driver} --ipam-driver {driver} -o ferry.driver=overlay \
             -o ferry.network={net} --subnet {subnet} {name}"
        ))
    };
    // A subnet that disagrees with the cluster's is refused, clearly.
    let (ok, out) = create(&w, "dbad", "198.19.241.0/24");
    assert!(!ok, "a disagreeing subnet was accepted: {out}");
    assert!(
        out.contains("disagrees") && out.contains(SUBNET),
        "unclear refusal: {out}"
    );
    let (ok, out) = create(&w, "dov", SUBNET);
    assert!(ok, "docker network create: {out}");
    w.docker()
        .run("run -d --name c1 --net dov ferrybox sleep 600");
    let ip = w
        .docker()
        .run("inspect -f '{{(index .NetworkSettings.Networks \"dov\").IPAddress}}' c1");
    // Host A's block and gateway, not what a local pool would hand out.
    let a_net = w.ok(0, "GET", &format!("/networks/{net}"), Value::Null);
    let block = a_net["blocks"][0].as_str().expect("A's block").to_string();
    let gw = a_net["ipv4"][0]["Gateway"]
        .as_str()
        .and_then(|g| g.split('/').next())
        .expect("A's gateway")
        .to_string();
    let in_block = |ip: &str| {
        let block: ipnet::IpNet = block.parse().expect("block");
        block.contains(&ip.parse::<std::net::IpAddr>().expect("ip"))
    };
    assert!(
        in_block(&ip) && in_block(&gw),
        "{ip} and {gw} in A's block {block}"
    );
    assert_eq!(
        w.docker().run("exec c1 ip -4 route show default").trim(),
        format!("default via {gw} dev eth0"),
        "the container routes through host A's gateway"
    );
    assert_eq!(
        w.stored_endpoints(net).len(),
        1,
        "the container is published"
    );

    // A Ferry sandbox on host B on the same overlay.
    let sb = w.cluster.sandbox(1, "ovds");
    let ep = w.ok(
        1,
        "POST",
        "/connect",
        json!({"network": net, "sandbox": sb}),
    );
    let sb_ip = ep["address"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    assert!(sb_ip.starts_with("198.19.240.") && sb_ip != ip, "{sb_ip}");
    wait_for(
        "container on A -> sandbox on B",
        Duration::from_secs(10),
        || w.docker().ok(&format!("exec c1 ping -c1 -W1 {sb_ip}")),
    );
    assert!(
        sh_ok(&format!("ip netns exec {sb} ping -c1 -W1 {ip}")),
        "sandbox on B -> container on A"
    );

    // rm -f and network rm leave no Docker endpoint in the store.
    w.docker().run("rm -f c1");
    let left = w.stored_endpoints(net);
    assert!(
        left.len() == 1 && left[0].ends_with(&format!("/{sb_ip}")),
        "only B's sandbox stays published: {left:?}"
    );
    w.docker().run("network rm dov");
    assert!(
        !w.stored_endpoints(net)
            .iter()
            .any(|k| k.ends_with(&format!("/{ip}"))),
        "no endpoint of the container in the store"
    );
    assert_eq!(
        http(&w.api(0), "GET", "/endpoints", "").1,
        json!([]),
        "host A holds no endpoint"
    );
    // The network stays the cluster's: Docker can join it again.
    let (ok, out) = create(&w, "dov2", SUBNET);
    assert!(ok, "docker network create again: {out}");
    w.docker().run("network rm dov2");
}
