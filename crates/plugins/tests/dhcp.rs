//! The `dhcp` IPAM plugin and its daemon against a real DHCP server:
//! dnsmasq (Debian `dnsmasq-base`) in a server namespace on the node's
//! bridge, serving 198.18.160.10-100/24 with a router and a DNS option.
//! The daemon runs as a child process (`ferry-plugin dhcp daemon`) with its
//! own socket and state directory; containers are attached with `bridge`
//! (no gateway, no masquerade) or `macvlan` (on a veth whose peer is a port
//! of that bridge) + `ipam: {type: dhcp}` through the node's plugin
//! wrappers. Nodes use 198.19.16.0/24 and fd00:1916::/64 for their link to
//! the outside, names start with `dh`.
//!
//! Run: `cargo test -p ferry-plugins --test dhcp` (root).

#[path = "nodecommon/mod.rs"]
mod nodecommon;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_cni::runtime::RuntimeConf;
use nodecommon::*;
use serde_json::{json, Value};

/// The DHCP daemon under test.
struct Daemon {
    proc: Option<KillOnDrop>,
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
        self.proc = Some(KillOnDrop(child));
        wait_for(|| std::os::unix::net::UnixStream::connect(&self.socket).is_ok());
    }

    fn kill9(&mut self) {
        self.proc = None;
    }

    fn lease_files(&self) -> Vec<String> {
        files(&self.state)
    }

    /// Killed, its lease files gone, and started again: a daemon that lost
    /// its state.
    fn restart_without_state(&mut self) {
        self.kill9();
        for f in self.lease_files() {
            std::fs::remove_file(self.state.join(f)).expect("remove a lease file");
        }
        self.spawn();
    }
}

fn wait_for(ok: impl FnMut() -> bool) -> bool {
    wait_up_to(Duration::from_secs(5), ok)
}

fn wait_up_to(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A node for these tests, in this test's ranges.
fn node(reference: &[&str]) -> Node {
    Node::in_ranges("dh", "198.19.16", "fd00:1916:0", reference, &[])
}

/// What dnsmasq serves unless a test says otherwise: a 2 min lease (its
/// minimum) from .10-.100, router .1, DNS .53.
const SERVE: &[&str] = &[
    "--dhcp-range=198.18.160.10,198.18.160.100,255.255.255.0,2m",
    "--dhcp-option=option:router,198.18.160.1",
    "--dhcp-option=option:dns-server,198.18.160.53",
];

/// Renew every 3 s (options 58 and 59 in every ACK; the lease stays 2 min).
const SHORT_T1: &[&str] = &["--dhcp-option=option:T1,3", "--dhcp-option=option:T2,6"];

/// The node's bridge with a server namespace on it (198.18.160.2), and
/// dnsmasq serving it once [`Lan::serve`] starts it.
struct Lan {
    bridge: String,
    server: Netns,
    leases: PathBuf,
    pidfile: PathBuf,
    dnsmasq: Option<KillOnDrop>,
}

impl Lan {
    fn new(node: &Node) -> Lan {
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
        Lan {
            bridge,
            server,
            leases: node.dir.path().join("dnsmasq.leases"),
            pidfile: node.dir.path().join("dnsmasq.pid"),
            dnsmasq: None,
        }
    }

    /// (Re)starts dnsmasq with `args` (its lease file kept across restarts).
    fn serve(&mut self, args: &[&[&str]]) {
        self.dnsmasq = None;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server.name, "dnsmasq", "--no-daemon"])
            .args([
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
                "--user=root",
                "--dhcp-authoritative",
            ])
            .args(args.concat())
            .arg(format!("--dhcp-leasefile={}", self.leases.display()))
            .arg(format!("--pid-file={}", self.pidfile.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian dnsmasq-base) is installed");
        self.dnsmasq = Some(KillOnDrop(child));
        assert!(
            wait_for(|| self.server.exec_ok("ss -uln sport = :67 | grep -q 67")),
            "dnsmasq listens on port 67"
        );
    }

    /// dnsmasq's lease file.
    fn lease_file(&self) -> String {
        std::fs::read_to_string(&self.leases).unwrap_or_default()
    }

    /// The expiry (unix seconds) dnsmasq's lease file gives `addr`.
    fn expiry(&self, addr: &str) -> Option<u64> {
        self.lease_file().lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&addr)).then(|| f[0].parse().ok())?
        })
    }

    /// A macvlan master reaching the bridge: a veth in the node whose peer
    /// is a bridge port.
    fn macvlan_master(&self, node: &Node) -> String {
        let (m, p) = (unique("dhm"), unique("dhp"));
        node.host
            .exec(&format!("ip link add {m} type veth peer name {p}"));
        node.host
            .exec(&format!("ip link set {p} master {} up", self.bridge));
        node.host.exec(&format!("ip link set {m} up"));
        m
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The container's address in `r` split: ("198.18.160.N", N).
fn leased(r: &Value) -> (String, u8) {
    let ip = r["ips"][0]["address"].as_str().unwrap_or_default();
    let addr = ip.split_once('/').map(|(a, _)| a).unwrap_or_default();
    let last = addr
        .strip_prefix("198.18.160.")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an address of 198.18.160.0/24: {r}"));
    (addr.to_string(), last)
}

fn plugins(lan: &Lan, d: &Daemon, timeout: &str) -> Value {
    json!([{
        "type": "bridge", "bridge": lan.bridge, "isGateway": false, "ipMasq": false,
        "ipam": {"type": "dhcp", "daemonSocketPath": d.socket, "timeout": timeout}
    }])
}

#[test]
fn lease_survives_a_daemon_restart_and_is_released() {
    let node = node(&[]);
    let mut lan = Lan::new(&node);
    lan.serve(&[SERVE]);
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

/// The container's IPv4 addresses on eth0 ("A.B.C.D/P").
fn addrs(c: &Netns) -> Vec<String> {
    c.exec("ip -4 -o addr show eth0")
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "inet")?;
            w.get(i + 1).map(|a| a.to_string())
        })
        .collect()
}

/// DEL, and the RELEASE reached the server: `addr` left its lease file.
fn del_releases(net: &Net, att: &RuntimeConf, lan: &Lan, addr: &str) {
    net.del(att);
    assert!(
        wait_for(|| lan.expiry(addr).is_none()),
        "DEL released {addr}: {}",
        lan.lease_file()
    );
}

fn reaches_server(c: &Netns) {
    assert!(
        ping(c, "198.18.160.2".parse().unwrap()),
        "the server answers ping"
    );
}

#[test]
fn short_lease_is_renewed_across_a_daemon_kill_and_released() {
    let node = node(&[]);
    let mut lan = Lan::new(&node);
    lan.serve(&[SERVE, SHORT_T1]);
    let mut d = Daemon::start(node.dir.path());
    let net = node.net("dhcpnet", plugins(&lan, &d, "10s"));
    let c = node.container();
    let att = net.att(&c, "dhcp-renew", Value::Null);
    let (addr, _) = leased(&net.add(&att));

    // dnsmasq writes expiry = time of the ACK + 120 s: a renewal after
    // `since` shows as an expiry beyond since + 120.
    let renewed_after = |since: u64, what: &str| {
        assert!(
            wait_up_to(Duration::from_secs(30), || lan
                .expiry(&addr)
                .is_some_and(|e| e > since + 120)),
            "{what}: dnsmasq's lease file shows no renewal of {addr} after {since}: {}",
            lan.lease_file()
        );
    };
    let first = lan.expiry(&addr).expect("dnsmasq holds the lease");
    renewed_after(first - 120, "first renewal");
    let second = lan.expiry(&addr).unwrap_or_default();
    renewed_after(second - 120, "second renewal");
    assert_eq!(
        addrs(&c),
        vec![format!("{addr}/24")],
        "the container keeps its address"
    );
    net.check(&att).expect("CHECK while renewing");

    // kill -9 and a restart: the reloaded lease is renewed still.
    d.kill9();
    let restarted = now();
    d.spawn();
    renewed_after(restarted, "after the daemon was killed and restarted");
    assert_eq!(addrs(&c), vec![format!("{addr}/24")]);

    del_releases(&net, &att, &lan, &addr);
    assert!(d.lease_files().is_empty(), "{:?}", d.lease_files());
    net.del(&att);

    // DEL after the daemon lost its state succeeds and removes the link.
    let c2 = node.container();
    let att2 = net.att(&c2, "dhcp-lost", Value::Null);
    net.add(&att2);
    d.restart_without_state();
    net.del(&att2);
    assert!(
        !c2.exec_ok("ip link show eth0"),
        "eth0 left in the container"
    );
    net.del(&att2);
}

#[test]
fn macvlan_container_gets_its_lease_and_reaches_the_server() {
    let node = node(&[]);
    let mut lan = Lan::new(&node);
    lan.serve(&[SERVE]);
    let d = Daemon::start(node.dir.path());
    let master = lan.macvlan_master(&node);
    let net = node.net(
        "dhcpmv",
        json!([{
            "type": "macvlan", "master": master, "mode": "bridge",
            "ipam": {"type": "dhcp", "daemonSocketPath": d.socket, "timeout": "10s"}
        }]),
    );
    let c = node.container();
    let att = net.att(&c, "dhcp-mv", Value::Null);
    let r = net.add(&att);
    let (addr, last) = leased(&r);
    assert!((10..=100).contains(&last), "{r}");
    assert_eq!(r["ips"][0]["gateway"], "198.18.160.1", "{r}");
    // macvlan's result carries the config's `dns`, never IPAM's (as the
    // reference's macvlan); the server's DNS option is in the daemon's lease.
    assert_eq!(r["dns"], json!({}), "{r}");
    let held = std::fs::read_to_string(d.state.join(&d.lease_files()[0])).unwrap_or_default();
    let held: Value = serde_json::from_str(&held).unwrap_or_default();
    assert_eq!(held["dns"], json!(["198.18.160.53"]), "{held}");
    assert!(
        c.exec("ip -d link show eth0").contains("macvlan"),
        "eth0 is a macvlan"
    );
    assert_eq!(addrs(&c), vec![format!("{addr}/24")]);
    assert!(
        c.exec("ip -4 route show default")
            .contains("via 198.18.160.1"),
        "default route via the server's router"
    );
    reaches_server(&c);
    assert!(lan.expiry(&addr).is_some(), "{}", lan.lease_file());

    del_releases(&net, &att, &lan, &addr);
    assert!(
        !c.exec_ok("ip link show eth0"),
        "eth0 left in the container"
    );
}

#[test]
fn container_follows_a_lease_that_changes() {
    let node = node(&[]);
    let mut lan = Lan::new(&node);
    // At first also a route to 198.19.17.0/24 via .4 (option 121).
    lan.serve(&[
        SERVE,
        SHORT_T1,
        &["--dhcp-option=option:classless-static-route,198.19.17.0/24,198.18.160.4,0.0.0.0/0,198.18.160.1"],
    ]);
    let d = Daemon::start(node.dir.path());
    let net = node.net("dhcpnet", plugins(&lan, &d, "10s"));
    let c = node.container();
    let att = net.att(&c, "dhcp-move", Value::Null);
    let (old, _) = leased(&net.add(&att));
    assert!(c
        .exec("ip -4 route show default")
        .contains("via 198.18.160.1"));
    let extra = c.exec("ip -4 route show 198.19.17.0/24");
    assert!(
        extra.contains("via 198.18.160.4"),
        "option 121 route: {extra}"
    );

    // The server now hands out .110-.150 with router .3 and no option 121:
    // it refuses the next renewal (NAK), the daemon acquires anew, and eth0
    // follows.
    lan.serve(&[
        &[
            "--dhcp-range=198.18.160.110,198.18.160.150,255.255.255.0,2m",
            "--dhcp-option=option:router,198.18.160.3",
            "--dhcp-option=option:dns-server,198.18.160.53",
        ],
        SHORT_T1,
    ]);
    let moved = || {
        let a = addrs(&c);
        a.len() == 1 && leased(&json!({"ips": [{"address": a[0]}]})).1 >= 110
    };
    assert!(
        wait_up_to(Duration::from_secs(30), moved),
        "eth0 did not move from {old} to .110-.150: {:?}; dnsmasq: {}",
        addrs(&c),
        lan.lease_file()
    );
    let new = addrs(&c)[0].trim_end_matches("/24").to_string();
    let route = c.exec("ip -4 route show default");
    assert!(route.contains("via 198.18.160.3"), "default route: {route}");
    assert!(
        !route.contains("198.18.160.1 "),
        "old default route left: {route}"
    );
    let gone = c.exec("ip -4 route show 198.19.17.0/24");
    assert!(
        gone.is_empty(),
        "the old lease's option 121 route is left: {gone}"
    );
    reaches_server(&c);
    assert!(lan.expiry(&new).is_some(), "{}", lan.lease_file());
    // prevResult still has the old address (README says so).
    assert!(
        net.check(&att).is_err(),
        "CHECK against the stale prevResult"
    );

    del_releases(&net, &att, &lan, &new);
    assert!(d.lease_files().is_empty(), "{:?}", d.lease_files());
}

#[test]
fn config_errors_and_a_silent_server() {
    let node = node(&[]);
    let lan = Lan::new(&node);
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
    let shape = |reference: bool| -> Value {
        let refs: &[&str] = if reference { &["bridge", "dhcp"] } else { &[] };
        let node = node(refs);
        let mut lan = Lan::new(&node);
        lan.serve(&[SERVE]);
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
            (Some(KillOnDrop(child)), None)
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
    let mut reference = shape(true);
    let mut ferry = shape(false);
    // The reference prints its empty DNS as `{}`.
    assert_eq!(
        reference.as_object_mut().unwrap().remove("dns"),
        Some(json!({}))
    );
    assert_eq!(ferry["dns"], json!({"nameservers": ["198.18.160.53"]}));
    ferry.as_object_mut().unwrap().remove("dns");
    assert_eq!(ferry, reference);
}

/// The daemon logs through `tracing` on stderr, nothing on stdout: one event
/// per request with its operation, attachment, duration and outcome. No
/// DHCP server needed: a CHECK of an attachment it does not hold, and a line
/// that is not a request.
#[test]
fn daemon_logs_one_event_per_request() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dhcp.sock");
    let mut proc = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_ferry-plugin"))
            .args(["dhcp", "daemon", "-socketpath"])
            .arg(&socket)
            .arg("-statedir")
            .arg(dir.path().join("leases"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the dhcp daemon"),
    );
    assert!(
        wait_for(|| std::os::unix::net::UnixStream::connect(&socket).is_ok()),
        "the daemon never listened on {}",
        socket.display()
    );
    let ask = |line: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    };
    let reply = ask(r#"{"op":"check","container_id":"poc1","network":"ponet","ifname":"eth0"}"#);
    assert!(reply.contains("holds no lease"), "{reply}");
    let reply = ask("not a request");
    assert!(reply.contains("bad request"), "{reply}");
    // A STATUS is logged at debug only: not at the default level.
    ask(r#"{"op":"status"}"#);

    let mut stdout = proc.0.stdout.take().unwrap();
    let mut stderr = proc.0.stderr.take().unwrap();
    drop(proc);
    let (mut out, mut err) = (String::new(), String::new());
    stdout.read_to_string(&mut out).unwrap();
    stderr.read_to_string(&mut err).unwrap();
    assert!(out.is_empty(), "the daemon printed on stdout: {out}");
    let events: Vec<&str> = err.lines().filter(|l| l.contains(" request ")).collect();
    assert_eq!(
        events.len(),
        2,
        "one event per request (STATUS at debug):\n{err}"
    );
    let check = events
        .iter()
        .find(|l| l.contains("op=\"check\""))
        .expect("an event for the CHECK");
    for field in [
        "op=\"check\"",
        "attachment=\"poc1/ponet/eth0\"",
        "duration_ms=",
        "outcome=\"error\"",
        "holds no lease",
    ] {
        assert!(check.contains(field), "{field} missing from {check:?}");
    }
    assert!(
        events
            .iter()
            .any(|l| l.contains("op=\"invalid\"") && l.contains("outcome=\"error\"")),
        "no event for the bad line:\n{err}"
    );
    assert!(err.contains("serving"), "no start event:\n{err}");
}

/// Under a `Type=notify` unit (a test socket stands in for systemd's, at
/// an abstract name): READY=1 once the socket answers and the leases are
/// reloaded, WATCHDOG=1 every half WATCHDOG_USEC when WATCHDOG_PID names
/// it, STOPPING=1 and exit 0 on SIGTERM with the socket removed. No DHCP
/// server needed.
#[test]
fn daemon_notifies_systemd() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dhcp.sock");
    let systemd = ferry_testkit::notify::Systemd::abstract_name(&format!(
        "ferry-dhcp-notify-{}",
        std::process::id()
    ));
    // WATCHDOG_PID is the daemon's own pid, as systemd sets it: the shell's,
    // which exec keeps.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "WATCHDOG_PID=$$ exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_ferry-plugin"))
        .args(["dhcp", "daemon", "-socketpath"])
        .arg(&socket)
        .arg("-statedir")
        .arg(dir.path().join("leases"))
        .env("NOTIFY_SOCKET", &systemd.notify_socket)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut proc = KillOnDrop(cmd.spawn().expect("start the dhcp daemon"));

    let ready = systemd.wait_for("READY=1", Duration::from_secs(30));
    let mut s = std::os::unix::net::UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("socket not answering at READY=1: {e}"));
    s.write_all(b"{\"op\":\"status\"}\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(!reply.is_empty(), "no answer to a status at READY=1");
    assert!(
        ready.contains("STATUS=serving: 0 leases"),
        "READY without the status: {ready:?}"
    );
    for _ in 0..3 {
        systemd.wait_for("WATCHDOG=1", Duration::from_secs(10));
    }

    let pid = nix::unistd::Pid::from_raw(proc.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    systemd.wait_for("STOPPING=1", Duration::from_secs(20));
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon still runs after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "SIGTERM: {exit}");
    assert!(!socket.exists(), "socket left after SIGTERM");
}
