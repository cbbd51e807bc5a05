//! The CNI door of an overlay network: two hosts as network namespaces on
//! an underlay bridge (198.18.104.1 and .2), one etcd (in host 0) and one
//! ferryd per host. Overlay network 198.19.232.0/24 + fd00:232:1::/64,
//! host port 18520.
//!
//! A conflist `ferry-overlay` + `portmap` is run by `ferry cni` inside host
//! 0's namespace (as a runtime on that node would): the container answers
//! HTTP on host 0's published port from host 1, pings a Ferry sandbox on
//! host 1, passes CHECK; GC removes an attachment not in the valid list;
//! DEL twice succeeds and the endpoint leaves host 1's FDB. With etcd down
//! ADD answers code 11; with ferryd down STATUS answers 50.
//!
//! Needs the workspace's binaries (`ferry`, `ferry-plugin`) built beside
//! ferryd: `cargo build --workspace` first.

use ferry_testkit::cluster::{self, fdb_has, Spec};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const HOST_PORT: u16 = 18520;

/// A binary of the workspace, beside ferryd.
fn workspace_bin(name: &str) -> PathBuf {
    ferry_testkit::workspace_bin(env!("CARGO_BIN_EXE_ferryd"), name)
}

/// The hosts (`ferry_testkit::cluster`) and what this test adds to them,
/// removed on drop (also when it fails).
struct World {
    cluster: cluster::Cluster,
    servers: Vec<Child>,
    namespaces: Vec<String>,
    dir: tempfile::TempDir,
    cni_path: tempfile::TempDir,
}

impl std::ops::Deref for World {
    type Target = cluster::Cluster;
    fn deref(&self) -> &cluster::Cluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for World {
    fn deref_mut(&mut self) -> &mut cluster::Cluster {
        &mut self.cluster
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for s in &self.namespaces {
            let _ = sh_ok(&format!("ip netns del {s}"));
        }
    }
}

fn wait_for(what: &str, limit: Duration, ok: impl FnMut() -> bool) {
    cluster::wait_for(limit, ok).unwrap_or_else(|t| panic!("{what}: not within {t:?}"));
}

fn pings(from: &str, to: &str) -> bool {
    cluster::pings(from, to, 1000)
}

impl World {
    /// A namespace removed with the world, `lo` up.
    fn namespace(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        self.namespaces.push(name.clone());
        name
    }

    /// `ferry --json cni ARGS` inside host `h`'s namespace, with the
    /// conflists of the test and Ferry's plugins in CNI_PATH.
    fn cni(&self, h: usize, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.hosts[h].ns))
            .arg(workspace_bin("ferry"))
            .args(["--json", "cni"])
            .args(args)
            .env("NETCONFPATH", self.dir.path().join("net.d"))
            .env("CNI_PATH", self.cni_path.path())
            .env("FERRY_CNI_CACHE_DIR", self.dir.path().join("cache"))
            .env("FERRY_STATE_DIR", self.dir.path().join("plugin-state"))
            .output()
            .expect("run ferry cni")
    }

    fn cni_ok(&self, h: usize, args: &[&str]) -> Value {
        ok_json(&self.cni(h, args), &format!("ferry cni {args:?}"))
    }

    /// The CNI error code of a failed `ferry cni`.
    fn cni_code(&self, h: usize, args: &[&str]) -> u64 {
        let out = self.cni(h, args);
        assert!(!out.status.success(), "ferry cni {args:?} succeeded");
        let err: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ferry cni {args:?}: error is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        err["code"].as_u64().unwrap_or(0)
    }
}

fn setup() -> World {
    require_root();
    for bin in ["curl", "python3"] {
        assert!(
            sh_ok(&format!("command -v {bin}")),
            "{bin} is missing (Debian packages curl, python3)"
        );
    }
    let plugin = workspace_bin("ferry-plugin");
    let cluster = cluster::Cluster::start(&Spec {
        underlay: "198.18.104",
        hosts: 2,
        members: 1,
        ferryd: Path::new(env!("CARGO_BIN_EXE_ferryd")),
        pool: "base=198.19.232.0/24,size=24",
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let c = World {
        cluster,
        servers: Vec::new(),
        namespaces: Vec::new(),
        cni_path: cni_path(
            plugin.to_str().expect("utf-8 path"),
            ["ferry-overlay", "portmap"],
        ),
        dir: tempfile::Builder::new()
            .prefix("ferry-ovcni")
            .tempdir_in("/var/tmp")
            .expect("temp dir"),
    };
    let netd = c.dir.path().join("net.d");
    std::fs::create_dir_all(&netd).expect("net.d");
    std::fs::write(
        netd.join("10-ovc.conflist"),
        json!({
            "cniVersion": "1.1.0",
            "name": "ovcnet",
            "plugins": [
                {"type": "ferry-overlay", "network": "ovc", "apiSocket": c.hosts[0].api()},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        })
        .to_string(),
    )
    .expect("conflist");
    c
}

fn addr(v: &Value) -> String {
    v.as_str()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_cni_container_joins_the_overlay_and_publishes_a_port() {
    let mut c = setup();
    c.hosts[0].ok(
        "POST",
        "/networks",
        &json!({"name": "ovc", "driver": "overlay",
               "subnets": ["198.19.232.0/24", "fd00:232:1::/64"]}),
    );
    wait_for("ovc on h1", Duration::from_secs(10), || {
        matches!(
            c.hosts[1].call("GET", "/networks/ovc", &Value::Null),
            Ok((200, _))
        )
    });
    c.cni_ok(0, &["status", "ovcnet"]);

    // ADD: an ordinary result, the default route via the host's gateway.
    let ctr = c.namespace("occ");
    let netns = format!("/run/netns/{ctr}");
    let ports = json!({"portMappings": [
        {"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}
    ]})
    .to_string();
    let add = [
        "add",
        "ovcnet",
        netns.as_str(),
        "--container-id",
        "ctr1",
        "--cap-args",
        ports.as_str(),
    ];
    let result = c.cni_ok(0, &add);
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifaces.len(), 2, "{result}");
    let host_veth = ifaces[0]["name"].as_str().expect("host veth");
    assert!(ifaces[0]["sandbox"].is_null(), "{result}");
    assert!(
        sh_ok(&format!("ip -n {} link show {host_veth}", c.hosts[0].ns)),
        "host veth {host_veth} is not on h0"
    );
    assert_eq!(ifaces[1]["name"], "eth0");
    assert_eq!(ifaces[1]["sandbox"], netns.as_str());
    let mac = ifaces[1]["mac"].as_str().expect("mac").to_string();
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 2, "{result}");
    let v4 = ips
        .iter()
        .find(|i| !i["address"].as_str().unwrap_or("").contains(':'))
        .expect("an IPv4 address");
    assert!(
        v4["address"].as_str().unwrap_or("").ends_with("/24"),
        "{v4}"
    );
    assert_eq!(v4["interface"], 1);
    let ip = addr(&v4["address"]);
    assert!(ip.starts_with("198.19.232."), "{ip}");
    let gw = v4["gateway"].as_str().expect("gateway").to_string();
    assert!(
        result["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .any(|r| r["dst"] == "0.0.0.0/0" && r["gw"] == gw.as_str()),
        "{result}"
    );
    let route = sh(&format!("ip -n {ctr} route show default"));
    assert!(route.contains(&format!("via {gw}")), "{route}");
    assert!(
        sh(&format!("ip -n {ctr} -6 route show default")).contains("via fd00:232:1:"),
        "no IPv6 default route via the gateway"
    );

    // Published on host 0, reached from host 1 over the underlay.
    c.servers.push(
        Command::new("ip")
            .args(["netns", "exec", &ctr])
            .args(["python3", "-m", "http.server", "80", "--bind", "0.0.0.0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("http server"),
    );
    let url = format!("http://{}:{HOST_PORT}/", c.hosts[0].ip);
    wait_for(
        "HTTP on h0's published port from h1",
        Duration::from_secs(10),
        || {
            sh(&format!(
                "ip netns exec {} curl -s -o /dev/null -m 2 -w '%{{http_code}}' {url} || true",
                c.hosts[1].ns
            )) == "200"
        },
    );

    // Over the overlay to a Ferry sandbox on host 1, both ways.
    let sb = unique("ocs");
    c.namespaces.push(sb.clone());
    c.hosts[1].ok("POST", "/sandboxes", &json!({"name": sb}));
    let ep = c.hosts[1].ok(
        "POST",
        "/connect",
        &json!({"network": "ovc", "sandbox": sb}),
    );
    let sb_ip = addr(&ep["address"]);
    wait_for(
        "CNI container -> h1 sandbox",
        Duration::from_secs(10),
        || pings(&ctr, &sb_ip),
    );
    assert!(pings(&sb, &ip), "h1 sandbox -> CNI container");
    assert!(
        fdb_has(&c.hosts[1].ns, &mac),
        "the CNI endpoint is not in h1's FDB"
    );

    // CHECK asks ferryd.
    let check = ["check", "ovcnet", netns.as_str(), "--container-id", "ctr1"];
    c.cni_ok(0, &check);

    // GC: an attachment not in the valid list goes.
    let other = c.namespace("occ");
    let other_ns = format!("/run/netns/{other}");
    let r2 = c.cni_ok(0, &["add", "ovcnet", &other_ns, "--container-id", "ctr2"]);
    let mac2 = r2["interfaces"][1]["mac"]
        .as_str()
        .expect("mac")
        .to_string();
    wait_for("ctr2 in h1's FDB", Duration::from_secs(10), || {
        fdb_has(&c.hosts[1].ns, &mac2)
    });
    c.cni_ok(0, &["gc", "ovcnet", "--valid", "ctr1/eth0"]);
    assert!(
        !sh(&format!("ip -n {other} link")).contains("eth0"),
        "GC left ctr2's interface"
    );
    wait_for("ctr2 gone from h1's FDB", Duration::from_secs(10), || {
        !fdb_has(&c.hosts[1].ns, &mac2)
    });
    assert!(fdb_has(&c.hosts[1].ns, &mac), "GC removed the valid ctr1");

    // DEL twice; the endpoint leaves the store, so h1's FDB.
    let del = ["del", "ovcnet", netns.as_str(), "--container-id", "ctr1"];
    c.cni_ok(0, &del);
    c.cni_ok(0, &del);
    let eps = c.hosts[0].ok("GET", "/endpoints", &Value::Null);
    assert!(
        eps.as_array().expect("endpoints").is_empty(),
        "h0 still has endpoints: {eps}"
    );
    assert!(
        !sh_ok(&format!("ip -n {} link show {host_veth}", c.hosts[0].ns)),
        "DEL left {host_veth}"
    );
    wait_for("ctr1 gone from h1's FDB", Duration::from_secs(10), || {
        !fdb_has(&c.hosts[1].ns, &mac)
    });

    // The store down: ADD is worth another try later (11).
    c.hosts[0].kill_etcd();
    let late = c.namespace("occ");
    let late_ns = format!("/run/netns/{late}");
    assert_eq!(
        c.cni_code(0, &["add", "ovcnet", &late_ns, "--container-id", "ctr3"]),
        11
    );

    // ferryd down: STATUS is 50; DEL with ferryd's socket gone succeeds.
    c.hosts[0].kill_ferryd();
    assert_eq!(c.cni_code(0, &["status", "ovcnet"]), 50);
    std::fs::remove_file(c.hosts[0].api()).expect("remove the socket");
    c.cni_ok(0, &["del", "ovcnet", &late_ns, "--container-id", "ctr3"]);
}
