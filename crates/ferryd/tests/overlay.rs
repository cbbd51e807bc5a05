//! Many hosts: three hosts as network namespaces on an underlay bridge
//! (198.18.100.0/24), a three-member etcd cluster (one member per host) and
//! one ferryd per host with its own sockets and state. Overlay networks
//! 198.19.224.0/24 + fd00:224::/64 and 198.19.225.0/24.
//!
//! Checked: sandboxes on all hosts reach each other over IPv4 and IPv6 and
//! hold a TCP connection; two overlay networks stay apart; with one etcd
//! member killed traffic goes on and new sandboxes attach; a ferryd killed
//! with -9 leaves its sandboxes' traffic alone and, restarted, puts back an
//! FDB entry deleted by hand; a host whose ferryd stops for good leaves the
//! other hosts' FDB and neighbour tables within its lease TTL + 1 s.

use ferry_testkit::docker::http;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOSTS: usize = 3;

fn host_ip(i: usize) -> String {
    format!("198.18.100.{}", i + 1)
}

struct Host {
    ns: String,
    dir: PathBuf,
    etcd: Option<Child>,
    ferryd: Option<Child>,
}

impl Host {
    fn api(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    fn call(&self, verb: &str, path: &str, body: Value) -> (u16, Value) {
        http(&self.api(), verb, path, &body.to_string())
    }

    fn ok(&self, verb: &str, path: &str, body: Value) -> Value {
        let (status, v) = self.call(verb, path, body.clone());
        assert_eq!(status, 200, "{} {verb} {path} {body}: {v}", self.ns);
        v
    }

    fn start_ferryd(&mut self, i: usize) {
        let endpoints: Vec<String> = (0..HOSTS).map(|j| format!("{}:2379", host_ip(j))).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("ferryd.log"))
            .expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(env!("CARGO_BIN_EXE_ferryd"))
            .arg("--plugin-socket")
            .arg(self.dir.join("plugin.sock"))
            .arg("--api-socket")
            .arg(self.api())
            .arg("--state")
            .arg(self.dir.join("state.redb"))
            .arg("--cluster-store")
            .arg(format!("etcd://{}", endpoints.join(",")))
            .arg("--advertise-address")
            .arg(host_ip(i))
            .arg("--node-name")
            .arg(format!("h{i}"))
            .args(["--default-address-pool", "base=198.19.228.0/22,size=24"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferryd");
        self.ferryd = Some(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(self.api()).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "ferryd on {} did not start: {}",
                self.ns,
                std::fs::read_to_string(self.dir.join("ferryd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_ferryd(&mut self) {
        if let Some(mut c) = self.ferryd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Everything the test made, removed on drop (also when it fails).
struct Cluster {
    hosts: Vec<Host>,
    underlay: String,
    sandboxes: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.kill_ferryd();
            h.kill_etcd();
        }
        for s in &self.sandboxes {
            let _ = sh_ok(&format!("ip netns del {s}"));
        }
        for h in &self.hosts {
            // The host's links (bridges, VXLAN devices, veths) go with it.
            let _ = sh_ok(&format!("ip netns del {}", h.ns));
        }
        let _ = sh_ok(&format!("ip link del {}", self.underlay));
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn setup() -> Cluster {
    require_root();
    for bin in ["etcd", "nsenter"] {
        assert!(
            sh_ok(&format!("command -v {bin}")),
            "{bin} is missing (Debian packages etcd-server, util-linux)"
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("ferry-overlay")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let underlay = unique("ovul");
    let mut c = Cluster {
        hosts: Vec::new(),
        underlay: underlay.clone(),
        sandboxes: Vec::new(),
        _dir: dir,
    };
    sh(&format!(
        "ip link add {underlay} type bridge && ip link set {underlay} up"
    ));
    for i in 0..HOSTS {
        let ns = unique(&format!("ovh{i}"));
        let hdir = c._dir.path().join(format!("h{i}"));
        std::fs::create_dir_all(&hdir).expect("host dir");
        let peer = unique("ovp");
        sh(&format!(
            "ip netns add {ns} && ip link add {peer} type veth peer name ul0 netns {ns} && \
             ip link set {peer} master {underlay} up && \
             ip -n {ns} addr add {}/24 dev ul0 && ip -n {ns} link set ul0 up && \
             ip -n {ns} link set lo up",
            host_ip(i)
        ));
        c.hosts.push(Host {
            ns,
            dir: hdir,
            etcd: None,
            ferryd: None,
        });
    }
    let members: Vec<String> = (0..HOSTS)
        .map(|i| format!("m{i}=http://{}:2380", host_ip(i)))
        .collect();
    for (i, h) in c.hosts.iter_mut().enumerate() {
        let ip = host_ip(i);
        let log = std::fs::File::create(h.dir.join("etcd.log")).expect("etcd log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", h.ns))
            .arg("etcd")
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(h.dir.join("etcd"))
            .args(["--listen-client-urls", &format!("http://{ip}:2379")])
            .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
            .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:2380"),
            ])
            .args(["--initial-cluster", &members.join(",")])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        h.etcd = Some(child);
    }
    for i in 0..HOSTS {
        c.hosts[i].start_ferryd(i);
    }
    c
}

fn sandbox(c: &mut Cluster, host: usize, prefix: &str) -> String {
    let name = unique(prefix);
    c.sandboxes.push(name.clone());
    c.hosts[host].ok("POST", "/sandboxes", json!({"name": name}));
    name
}

fn connect(c: &Cluster, host: usize, network: &str, sb: &str) -> (String, String, String) {
    let ep = c.hosts[host].ok(
        "POST",
        "/connect",
        json!({"network": network, "sandbox": sb}),
    );
    let addr = |k: &str| {
        ep[k]
            .as_str()
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string()
    };
    (
        addr("address"),
        addr("address_v6"),
        ep["mac"].as_str().unwrap_or("").to_string(),
    )
}

fn pings(from: &str, to: &str) -> bool {
    let six = if to.contains(':') { "-6 " } else { "" };
    sh_ok(&format!("ip netns exec {from} ping {six}-c1 -W1 {to}"))
}

fn fdb_has(host_ns: &str, mac: &str) -> bool {
    sh(&format!("ip netns exec {host_ns} bridge fdb show"))
        .lines()
        .any(|l| l.starts_with(mac) && l.contains("dst"))
}

fn neigh_has(host_ns: &str, ip: &str) -> bool {
    sh(&format!("ip -n {host_ns} neigh show"))
        .lines()
        .any(|l| l.starts_with(&format!("{ip} ")) && l.contains("PERMANENT"))
}

#[test]
fn three_hosts_share_overlay_networks() {
    let mut c = setup();
    // Created on one host, listed on every host once its agent has adopted it.
    c.hosts[0].ok(
        "POST",
        "/networks",
        json!({"name": "ov1", "driver": "overlay", "subnets": ["198.19.224.0/24", "fd00:224::/64"]}),
    );
    for h in &c.hosts {
        wait_for(&format!("ov1 on {}", h.ns), Duration::from_secs(10), || {
            h.call("GET", "/networks/ov1", Value::Null).0 == 200
        });
    }
    let sbs: Vec<String> = (0..HOSTS).map(|i| sandbox(&mut c, i, "ovs")).collect();
    let eps: Vec<(String, String, String)> =
        (0..HOSTS).map(|i| connect(&c, i, "ov1", &sbs[i])).collect();
    for (a, b) in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)] {
        wait_for(
            &format!("{} -> {} over IPv4", sbs[a], eps[b].0),
            Duration::from_secs(10),
            || pings(&sbs[a], &eps[b].0),
        );
        assert!(
            pings(&sbs[a], &eps[b].1),
            "{} -> {} over IPv6",
            sbs[a],
            eps[b].1
        );
    }
    // No ARP or ND crossed the underlay: the entries are static.
    assert!(
        fdb_has(&c.hosts[0].ns, &eps[1].2),
        "FDB entry for h1's sandbox on h0"
    );
    assert!(
        neigh_has(&c.hosts[0].ns, &eps[1].0),
        "neighbour entry on h0"
    );
    // A TCP connection across hosts.
    let server = format!(
        "ip netns exec {} timeout 20 python3 -m http.server 18500 --bind {} >/dev/null 2>&1 &",
        sbs[1], eps[1].0
    );
    sh(&server);
    wait_for("HTTP over the overlay", Duration::from_secs(10), || {
        sh(&format!(
            "ip netns exec {} curl -s -o /dev/null -m 2 -w '%{{http_code}}' http://{}:18500/ || true",
            sbs[0], eps[1].0
        )) == "200"
    });

    // A second overlay network stays apart from the first.
    c.hosts[1].ok(
        "POST",
        "/networks",
        json!({"name": "ov2", "driver": "overlay", "subnets": ["198.19.225.0/24"]}),
    );
    wait_for("ov2 on h0", Duration::from_secs(10), || {
        c.hosts[0].call("GET", "/networks/ov2", Value::Null).0 == 200
    });
    let other = sandbox(&mut c, 1, "ovo");
    let (other_ip, _, _) = connect(&c, 1, "ov2", &other);
    let peer2 = sandbox(&mut c, 0, "ovq");
    let (peer2_ip, _, _) = connect(&c, 0, "ov2", &peer2);
    wait_for("ov2 across hosts", Duration::from_secs(10), || {
        pings(&peer2, &other_ip)
    });
    assert!(!pings(&sbs[0], &other_ip), "ov1 reached ov2 across hosts");
    assert!(!pings(&sbs[1], &peer2_ip), "ov1 reached ov2 on one host");

    // One etcd member down: traffic goes on, new sandboxes attach.
    c.hosts[2].kill_etcd();
    assert!(
        pings(&sbs[0], &eps[2].0),
        "traffic stopped with an etcd member down"
    );
    let late = sandbox(&mut c, 1, "ovl");
    let (late_ip, _, _) = connect(&c, 1, "ov1", &late);
    wait_for(
        "a sandbox attached with one etcd member down",
        Duration::from_secs(10),
        || pings(&sbs[0], &late_ip),
    );

    // ferryd on h1 killed: its sandboxes keep their traffic; an FDB entry
    // deleted meanwhile is back after the restart.
    c.hosts[1].kill_ferryd();
    assert!(
        pings(&sbs[0], &eps[1].0),
        "traffic stopped with ferryd down"
    );
    let vx = sh(&format!("ip -n {} -o link show type vxlan", c.hosts[1].ns));
    let dev = vx
        .split(": ")
        .nth(1)
        .map(|d| d.split('@').next().unwrap_or(d).to_string())
        .expect("a VXLAN device on h1");
    sh(&format!(
        "ip netns exec {} bridge fdb del {} dev {dev} self",
        c.hosts[1].ns, eps[0].2
    ));
    assert!(!fdb_has(&c.hosts[1].ns, &eps[0].2));
    c.hosts[1].start_ferryd(1);
    wait_for("the FDB entry reconciled", Duration::from_secs(10), || {
        fdb_has(&c.hosts[1].ns, &eps[0].2)
    });
    assert!(pings(&sbs[1], &eps[0].0));

    // h2's ferryd stops for good: it leaves the others within TTL + 1 s.
    c.hosts[2].kill_ferryd();
    let gone = wait_for(
        "h2's endpoint gone from h0",
        Duration::from_secs(11),
        || !fdb_has(&c.hosts[0].ns, &eps[2].2) && !neigh_has(&c.hosts[0].ns, &eps[2].0),
    );
    eprintln!("h2 left h0's tables after {gone:?}");
    assert!(
        !fdb_has(&c.hosts[1].ns, &eps[2].2),
        "h2's endpoint still on h1"
    );
}
