//! The `dhcp` IPAM plugin and its daemon against a real DHCP server:
//! dnsmasq (Debian `dnsmasq-base`) in a server namespace on the node's
//! bridge, serving 198.18.160.10-100/24 with a router and a DNS option.
//! The daemon runs as a child process (`ferry-plugin dhcp daemon`) with its
//! own socket and state directory; containers are attached with `bridge`
//! (no gateway, no masquerade) + `ipam: {type: dhcp}` through the node's
//! plugin wrappers.
//!
//! Run: `cargo test -p ferry-plugins --test dhcp` (root).

#[path = "nodecommon/mod.rs"]
mod nodecommon;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodecommon::*;
use serde_json::{json, Value};

/// A child process killed (SIGKILL) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The DHCP daemon under test.
struct Daemon {
    proc: Option<Proc>,
    socket: PathBuf,
    state: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let mut d = Daemon {
            proc: None,
            socket: dir.join("dhcp.sock"),
            state: dir.join("leases"),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_ferry-plugin"))
            .args(["dhcp", "daemon", "-socketpath"])
            .arg(&self.socket)
            .arg("-statedir")
            .arg(&self.state)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the dhcp daemon");
        self.proc = Some(Proc(child));
        wait_for(|| std::os::unix::net::UnixStream::connect(&self.socket).is_ok());
    }

    fn kill9(&mut self) {
        self.proc = None;
    }

    fn lease_files(&self) -> Vec<String> {
        files(&self.state)
    }
}

fn wait_for(mut ok: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The node's bridge with a server namespace on it (198.18.160.2), and
/// dnsmasq serving it when `serve`.
struct Lan {
    bridge: String,
    _server: Netns,
    leases: PathBuf,
    _dnsmasq: Option<Proc>,
}

impl Lan {
    fn new(node: &Node, serve: bool) -> Lan {
        let bridge = unique("dhb");
        let server = Netns::new("dhs");
        let h = &node.host;
        h.exec(&format!("ip link add {bridge} type bridge"));
        h.exec(&format!("ip link set {bridge} up"));
        let v = unique("dhv");
        sh(&format!(
            "ip link add {v} netns {} type veth peer name eth0 netns {}",
            h.name, server.name
        ));
        h.exec(&format!("ip link set {v} master {bridge} up"));
        server.exec("ip link set lo up");
        server.exec("ip addr add 198.18.160.2/24 dev eth0");
        server.exec("ip link set eth0 up");
        let leases = node.dir.path().join("dnsmasq.leases");
        let dnsmasq = serve.then(|| {
            let child = Command::new("ip")
                .args(["netns", "exec", &server.name, "dnsmasq", "--no-daemon"])
                .args([
                    "--port=0",
                    "--interface=eth0",
                    "--bind-interfaces",
                    "--user=root",
                    "--dhcp-authoritative",
                    "--dhcp-range=198.18.160.10,198.18.160.100,255.255.255.0,2m",
                    "--dhcp-option=option:router,198.18.160.1",
                    "--dhcp-option=option:dns-server,198.18.160.53",
                ])
                .arg(format!("--dhcp-leasefile={}", leases.display()))
                .arg(format!(
                    "--pid-file={}",
                    node.dir.path().join("dnsmasq.pid").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq (Debian dnsmasq-base) is installed");
            Proc(child)
        });
        if serve {
            assert!(wait_for(
                || server.exec_ok("ss -uln sport = :67 | grep -q 67")
            ));
        }
        Lan {
            bridge,
            _server: server,
            leases,
            _dnsmasq: dnsmasq,
        }
    }

    /// dnsmasq's lease file.
    fn lease_file(&self) -> String {
        std::fs::read_to_string(&self.leases).unwrap_or_default()
    }
}

fn plugins(lan: &Lan, d: &Daemon, timeout: &str) -> Value {
    json!([{
        "type": "bridge", "bridge": lan.bridge, "isGateway": false, "ipMasq": false,
        "ipam": {"type": "dhcp", "daemonSocketPath": d.socket, "timeout": timeout}
    }])
}

#[test]
fn lease_survives_a_daemon_restart_and_is_released() {
    let node = Node::new(161, &[], &[]);
    let lan = Lan::new(&node, true);
    let mut d = Daemon::start(node.dir.path());
    let net = node.net("dhcpnet", plugins(&lan, &d, "10s"));
    let c = node.container();
    let att = net.att(&c, "dhcp-c1", Value::Null);

    let r = net.add(&att);
    let ip = r["ips"][0]["address"].as_str().unwrap().to_string();
    let (addr, prefix) = ip.split_once('/').unwrap();
    let last: u8 = addr.strip_prefix("198.18.160.").unwrap().parse().unwrap();
    assert!((10..=100).contains(&last), "{r}");
    assert_eq!(prefix, "24", "the subnet mask option: {r}");
    assert_eq!(r["ips"][0]["gateway"], "198.18.160.1", "{r}");
    assert_eq!(r["dns"]["nameservers"], json!(["198.18.160.53"]), "{r}");
    assert!(
        r["routes"]
            .as_array()
            .unwrap()
            .contains(&json!({"dst": "0.0.0.0/0", "gw": "198.18.160.1"})),
        "{r}"
    );
    assert!(c.exec("ip -4 addr show eth0").contains(&ip));
    assert!(ping(&c, "198.18.160.2".parse().unwrap()));
    assert!(lan.lease_file().contains(addr), "{}", lan.lease_file());
    // The client ID is CONTAINERID/NETWORK/IFNAME, as the reference's.
    let client_id: Vec<String> = b"dhcp-c1/dhcpnet/eth0"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        lan.lease_file().contains(&client_id.join(":")),
        "{}",
        lan.lease_file()
    );
    assert_eq!(d.lease_files().len(), 1);

    // A second ADD of the same attachment answers the held lease.
    net.check(&att).expect("CHECK with the lease held");

    // Killed and restarted: the lease comes back from the state directory.
    d.kill9();
    d.spawn();
    net.check(&att).expect("CHECK after the daemon restarted");

    net.del(&att);
    assert!(
        wait_for(|| !lan.lease_file().contains(addr)),
        "RELEASE reached dnsmasq: {}",
        lan.lease_file()
    );
    assert!(d.lease_files().is_empty(), "{:?}", d.lease_files());
    net.del(&att);

    // DEL of an attachment the daemon never knew succeeds too.
    let other = net.att(&c, "dhcp-never", Value::Null);
    net.del(&other);
}

#[test]
fn config_errors_and_a_silent_server() {
    let node = Node::new(162, &[], &[]);
    let lan = Lan::new(&node, false);
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let c = node.container();

    let socket = d.socket.clone();
    let ipam = |extra: Value| {
        let mut i = json!({"type": "dhcp", "daemonSocketPath": socket});
        for (k, v) in extra.as_object().unwrap() {
            i[k] = v.clone();
        }
        json!({"cniVersion": "1.1.0", "name": "dhcpnet", "type": "dhcp", "ipam": i})
    };
    let (ok, v) = node.run_plugin(
        "dhcp",
        "ADD",
        "dhcp-e1",
        &c.path(),
        &ipam(json!({"request": [{"option": "no-such-option"}]})),
    );
    assert!(!ok);
    assert_eq!(v["code"], 7, "{v}");
    assert!(v.to_string().contains("no-such-option"), "{v}");

    let (ok, _) = node.run_plugin("dhcp", "STATUS", "", "", &ipam(json!({})));
    assert!(ok, "STATUS with the daemon up");

    // A server that never answers: a clear error within the timeout, and
    // nothing left (no lease, no link in the container, no bridge port).
    let net = node.net("dhcpnet", plugins(&lan, &d, "2s"));
    let att = net.att(&c, "dhcp-silent", Value::Null);
    let t = Instant::now();
    let err = net
        .rt
        .add_network_list(&net.list, &att)
        .expect_err("no DHCP server answers");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        err.to_string().contains("no answer from a DHCP server"),
        "{err}"
    );
    assert!(d.lease_files().is_empty());
    assert!(!c.exec_ok("ip link show eth0"));
    assert_eq!(
        node.host
            .exec(&format!("ip -o link show master {}", lan.bridge))
            .lines()
            .count(),
        1,
        "only the server's port is left"
    );

    // No daemon: STATUS is 50.
    d.kill9();
    let (ok, v) = node.run_plugin("dhcp", "STATUS", "", "", &ipam(json!({})));
    assert!(!ok);
    assert_eq!(v["code"], 50, "{v}");
}

/// The same conflist through the reference (`/usr/lib/cni/bridge` + `dhcp`
/// with the reference daemon) and through Ferry: the same result shape.
/// Known difference: Ferry's result carries the server's DNS option, the
/// reference's an empty `dns`.
#[test]
fn result_shape_matches_the_reference() {
    require_reference("dhcp");
    let shape = |reference: bool, k: u8| -> Value {
        let refs: &[&str] = if reference { &["bridge", "dhcp"] } else { &[] };
        let node = Node::new(k, refs, &[]);
        let lan = Lan::new(&node, true);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dhcp.sock");
        let _daemon = if reference {
            let child = Command::new("/usr/lib/cni/dhcp")
                .args(["daemon", "-socketpath"])
                .arg(&socket)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            assert!(wait_for(|| std::os::unix::net::UnixStream::connect(
                &socket
            )
            .is_ok()));
            (Some(Proc(child)), None)
        } else {
            (None, Some(Daemon::start(dir.path())))
        };
        let net = node.net(
            "dhcpnet",
            json!([{
                "type": "bridge", "bridge": lan.bridge, "isGateway": false, "ipMasq": false,
                "ipam": {"type": "dhcp", "daemonSocketPath": socket}
            }]),
        );
        let c = node.container();
        let att = net.att(&c, "dhcp-diff", Value::Null);
        let mut r = net.add(&att);
        net.del(&att);
        // The address differs run to run; its prefix and the rest must not.
        let ip = r["ips"][0]["address"].as_str().unwrap().to_string();
        assert!(ip.starts_with("198.18.160.") && ip.ends_with("/24"), "{r}");
        r["ips"][0]["address"] = json!("ADDR/24");
        for i in r["interfaces"].as_array_mut().unwrap() {
            i["name"] = json!("-");
            i["mac"] = json!("-");
            i["sandbox"] = json!("-");
        }
        r
    };
    let mut reference = shape(true, 163);
    let mut ferry = shape(false, 164);
    // The reference prints its empty DNS as `{}`.
    assert_eq!(
        reference.as_object_mut().unwrap().remove("dns"),
        Some(json!({}))
    );
    assert_eq!(ferry["dns"], json!({"nameservers": ["198.18.160.53"]}));
    ferry.as_object_mut().unwrap().remove("dns");
    assert_eq!(ferry, reference);
}
