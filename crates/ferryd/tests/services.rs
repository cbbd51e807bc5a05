//! Services that move, on a real kernel: ferryd runs in a test "host"
//! namespace with a dual-stack bridge network and three sandboxes (client,
//! old, new). A TCP server in old and in new answers with its sandbox's
//! name; the client loops TCP connects to the service's address and the
//! host loops connects to its published port, recording who answered when.
//! `ferry service move` must keep address, name and published port, and the
//! gap between the last answer from old and the first from new is at most
//! 100 ms. 198.19.56.0/21, fd00:1956::/48, host ports 19656-19663.

use ferry_testkit::docker::{http, Ferryd};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PORT: u16 = 8080;
const HOST_PORT: u16 = 19656;

fn api(sock: &Path, verb: &str, path: &str, body: Value) -> Value {
    let (status, v) = http(sock, verb, path, &body.to_string());
    assert_eq!(status, 200, "{verb} {path} {body}: {v}");
    v
}

fn ip_of(v: &Value) -> IpAddr {
    let s = v.as_str().unwrap_or_else(|| panic!("no address: {v}"));
    s.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad address {s}"))
}

/// Enters the network namespace at `path` on the calling thread (a thread
/// of its own, which then lives there).
fn enter(path: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

/// Runs `f` on a thread inside the namespace at `path`.
fn in_netns<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = path.to_string();
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
}

/// A TCP server on port `PORT` (both families) answering `name` to every connection.
fn server(path: &str, name: &str, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let name = name.to_string();
    in_netns(path, move || {
        let l = TcpListener::bind(("::", PORT)).expect("bind the server");
        l.set_nonblocking(true).expect("nonblocking");
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(name.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    })
}

/// One connect: who answered, or `None` (refused, timed out, nothing read).
/// Short timeouts: a connection the old sandbox's kernel accepted just
/// before the switch never gets its answer, and a try that waits long for
/// it would hide how soon the new sandbox answers.
fn ask(to: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(20)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(20))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out).filter(|o| !o.is_empty())
}

/// Connects to `to` every 2 ms from the namespace at `path` until stopped:
/// (when, who answered).
type Log = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

fn client(path: &str, to: SocketAddr, stop: Arc<AtomicBool>) -> (JoinHandle<()>, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let h = in_netns(path, move || {
        while !stop.load(Ordering::Relaxed) {
            let who = ask(to);
            l.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now(), who));
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    (h, log)
}

/// The gap between the last answer from `old` and the first from `new`;
/// fails if old answers after new did, or either never answered.
fn gap(what: &str, log: &Log, old: &str, new: &str) -> Duration {
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    let last_old = log.iter().rposition(|(_, w)| w.as_deref() == Some(old));
    let first_new = log.iter().position(|(_, w)| w.as_deref() == Some(new));
    let (Some(o), Some(n)) = (last_old, first_new) else {
        panic!(
            "{what}: old answered: {last_old:?}, new answered: {first_new:?} ({} tries)",
            log.len()
        );
    };
    assert!(o < n, "{what}: {old} answered after {new} did");
    let failed = log[o..n].iter().filter(|(_, w)| w.is_none()).count();
    let g = log[n].0 - log[o].0;
    eprintln!("{what}: gap {g:?} between the last answer from {old} and the first from {new} ({failed} failed tries between, {} tries in all)", log.len());
    g
}

/// Watches the namespace at `path` for `secs` for a gratuitous ARP of `v4`
/// and an unsolicited neighbour advertisement (override flag) of `v6`.
fn watch_announcements(
    path: &str,
    v4: [u8; 4],
    v6: [u8; 16],
    secs: u64,
) -> JoinHandle<(bool, bool)> {
    in_netns(path, move || {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: fd is open; tv is a valid timeval for the length given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let (mut garp, mut na) = (false, false);
        let end = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 2048];
        while Instant::now() < end && !(garp && na) {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let f = &buf[..n as usize];
            if f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1] {
                garp |= f[28..32] == v4 && f[38..42] == v4;
            }
            if f.len() >= 78 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 136 {
                na |= f[62..78] == v6 && f[58] & 0x20 != 0;
            }
        }
        // SAFETY: fd is open and owned here.
        unsafe { libc::close(fd) };
        (garp, na)
    })
}

struct World {
    api: PathBuf,
    // Dropped first: ferryd goes before its namespace and directory.
    _ferryd: Ferryd,
    host: Netns,
    _dir: tempfile::TempDir,
}

/// ferryd in a namespace of its own, the test's "host".
fn world() -> World {
    let dir = tempfile::Builder::new()
        .prefix("ferry-services")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let host = Netns::new("svh");
    sh(&format!("ip -n {} link set lo up", host.name));
    // No upstream: the names asked here are Ferry's.
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "").expect("resolv.conf");
    let metrics = dir.path().join("metrics.sock");
    let extra = [
        "--metrics-socket",
        path_str(&metrics),
        "--dns-resolv-conf",
        path_str(&resolv),
    ];
    let ferryd = Ferryd::start_in(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &unique("svd"),
        &["base=198.19.56.0/21,size=24", "base=fd00:1956::/48,size=64"],
        &host.path(),
        &extra,
    );
    World {
        api: ferryd.api_socket.clone(),
        _ferryd: ferryd,
        host,
        _dir: dir,
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn sandbox(w: &World, cleanup: &mut Cleanup, prefix: &str) -> String {
    let name = unique(prefix);
    api(&w.api, "POST", "/sandboxes", json!({ "name": name }));
    let n = name.clone();
    cleanup.push(move || {
        let _ = sh_ok(&format!("ip netns del {n}"));
    });
    name
}

/// Waits until `f` holds, at most 10 s.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The bridge port (host veth) the bridge's FDB has `mac` on.
fn fdb_port(host: &Netns, bridge: &str, mac: &str) -> Option<String> {
    let out = host.exec(&format!("bridge -j fdb show br {bridge}"));
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v.as_array()?
        .iter()
        .find(|e| e["mac"] == mac && e["ifname"].is_string())
        .and_then(|e| e["ifname"].as_str().map(str::to_string))
}

#[test]
fn a_moved_service_keeps_address_name_and_port_with_a_short_gap() {
    require_root();
    assert!(
        sh_ok("command -v dig"),
        "dig is missing: apt-get install bind9-dnsutils"
    );
    let w = world();
    let mut cleanup = Cleanup::default();
    let net = unique("svn");
    let n = api(
        &w.api,
        "POST",
        "/networks",
        json!({"name": net, "ipv6": true, "subnets": ["198.19.57.0/24", "fd00:1956:57::/64"]}),
    );
    let gw4 = ip_of(&n["ipv4"][0]["Gateway"]);
    let bridge = n["bridge"].as_str().expect("bridge").to_string();
    let (cl, old, new) = (
        sandbox(&w, &mut cleanup, "svc"),
        sandbox(&w, &mut cleanup, "svo"),
        sandbox(&w, &mut cleanup, "svw"),
    );
    api(
        &w.api,
        "POST",
        "/connect",
        json!({"network": net, "sandbox": cl}),
    );
    let name = unique("svs");
    let svc = api(
        &w.api,
        "POST",
        "/services",
        json!({"name": name, "network": net, "addresses": ["198.19.57.100"],
               "publish": [format!("{HOST_PORT}:{PORT}/tcp")]}),
    );
    let v4 = ip_of(&svc["address"]);
    let v6 = ip_of(&svc["address_v6"]);
    let mac = svc["mac"].as_str().expect("mac").to_string();
    assert_eq!(v4.to_string(), "198.19.57.100");
    assert!(
        svc["sandbox"].is_null(),
        "no sandbox holds a new service: {svc}"
    );
    let held = api(
        &w.api,
        "POST",
        "/services/attach",
        json!({"service": name, "sandbox": old}),
    );
    assert_eq!(held["sandbox"], json!(old));

    let stop = Arc::new(AtomicBool::new(false));
    let servers = [
        server(&format!("/run/netns/{old}"), &old, stop.clone()),
        server(&format!("/run/netns/{new}"), &new, stop.clone()),
    ];
    let cl_path = format!("/run/netns/{cl}");
    eventually("the client reaches the service in old", || {
        let to = SocketAddr::new(v4, PORT);
        in_netns(&cl_path, move || ask(to))
            .join()
            .ok()
            .flatten()
            .as_deref()
            == Some(old.as_str())
    });
    let (c4, log4) = client(&cl_path, SocketAddr::new(v4, PORT), stop.clone());
    let (c6, log6) = client(&cl_path, SocketAddr::new(v6, PORT), stop.clone());
    let (ch, logh) = client(
        &w.host.path(),
        SocketAddr::new([127, 0, 0, 1].into(), HOST_PORT),
        stop.clone(),
    );
    let octets4 = match v4 {
        IpAddr::V4(a) => a.octets(),
        _ => unreachable!(),
    };
    let octets6 = match v6 {
        IpAddr::V6(a) => a.octets(),
        _ => unreachable!(),
    };
    std::thread::sleep(Duration::from_millis(300));
    let announced = watch_announcements(&cl_path, octets4, octets6, 3);
    std::thread::sleep(Duration::from_millis(50));
    let ferry = workspace_bin(env!("CARGO_BIN_EXE_ferryd"), "ferry");
    let cli = format!("{} --api-socket {}", ferry.display(), w.api.display());
    let t = Instant::now();
    let moved = sh(&format!("{cli} --json service move {name} {new}"));
    eprintln!("ferry service move answered in {:?}", t.elapsed());
    let moved: Value = serde_json::from_str(&moved).unwrap_or_else(|e| panic!("{e}: {moved}"));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for h in [c4, c6, ch] {
        h.join().expect("client loop");
    }
    for h in servers {
        h.join().expect("server");
    }
    let (garp, na) = announced.join().expect("watcher");

    assert_eq!(moved["sandbox"], json!(new));
    assert_eq!(
        (ip_of(&moved["address"]), ip_of(&moved["address_v6"])),
        (v4, v6),
        "the addresses stay"
    );
    assert_eq!(moved["mac"], json!(mac), "the MAC stays");
    let g4 = gap("client -> service IPv4", &log4, &old, &new);
    let g6 = gap("client -> service IPv6", &log6, &old, &new);
    let gh = gap("host -> published port", &logh, &old, &new);
    for (what, g) in [("IPv4", g4), ("IPv6", g6), ("published port", gh)] {
        assert!(
            g <= Duration::from_millis(100),
            "{what}: gap {g:?} over 100 ms"
        );
    }
    assert!(garp, "no gratuitous ARP for {v4} reached the client");
    assert!(
        na,
        "no unsolicited neighbour advertisement for {v6} reached the client"
    );

    // The bridge learnt the MAC on the new interface's port; the old port is gone.
    let new_port = moved["link"]["host_ifname"]
        .as_str()
        .expect("host veth")
        .to_string();
    let old_port = held["link"]["host_ifname"]
        .as_str()
        .expect("host veth")
        .to_string();
    assert_eq!(
        fdb_port(&w.host, &bridge, &mac).as_deref(),
        Some(new_port.as_str())
    );
    eventually("the old interface is deleted", || {
        !w.host.exec_ok(&format!("ip link show {old_port}"))
    });
    assert!(
        !sh_ok(&format!("ip -n {old} addr show | grep -q {v4}")),
        "old still holds {v4}"
    );
    // The name follows the service.
    let out = sh(&format!(
        "ip netns exec {cl} dig +time=1 +tries=2 +short @{gw4} {name}"
    ));
    assert_eq!(out.trim(), v4.to_string(), "dig @{gw4} {name}");
    let out = sh(&format!(
        "ip netns exec {cl} dig +time=1 +tries=2 +short @{gw4} {name} AAAA"
    ));
    assert_eq!(out.trim(), v6.to_string(), "dig @{gw4} {name} AAAA");

    // ls shows where it is; detach and rm leave nothing.
    let ls = sh(&format!("{cli} service ls"));
    let row = ls
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} not in {ls}"));
    for want in [
        net.as_str(),
        "198.19.57.100",
        &format!("{HOST_PORT}:{PORT}/tcp"),
        new.as_str(),
    ] {
        assert!(row.contains(want), "{want} missing from `{row}`");
    }
    let d = api(&w.api, "POST", "/services/detach", json!({"service": name}));
    assert!(d["sandbox"].is_null());
    eventually("the new interface is deleted", || {
        !w.host.exec_ok(&format!("ip link show {new_port}"))
    });
    api(&w.api, "DELETE", &format!("/services/{name}"), json!({}));
    let left = w
        .host
        .exec("nft list table inet ferry-portmap 2>/dev/null || true");
    assert!(
        !left.contains(&v4.to_string()),
        "published port left behind: {left}"
    );
    let (status, _) = http(&w.api, "GET", &format!("/services/{name}"), "");
    assert_eq!(status, 404);
}

#[test]
fn service_errors_over_the_api() {
    require_root();
    let w = world();
    let mut cleanup = Cleanup::default();
    let net = unique("svn");
    api(
        &w.api,
        "POST",
        "/networks",
        json!({"name": net, "subnets": ["198.19.58.0/24"]}),
    );
    let sb = sandbox(&w, &mut cleanup, "sve");
    let create = |body: Value| http(&w.api, "POST", "/services", &body.to_string());
    let (s, v) =
        create(json!({"name": "v6only", "network": net, "addresses": ["fd00:1956:58::5"]}));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("no IPv6 subnet"),
        "{v}"
    );
    let (s, v) = create(json!({"name": "bad", "network": net, "publish": ["19657"]}));
    assert_eq!(s, 400, "{v}");
    let (s, _) = create(json!({"name": "svx", "network": net, "addresses": ["198.19.58.7"]}));
    assert_eq!(s, 200);
    let (s, v) = create(json!({"name": "svy", "network": net, "addresses": ["198.19.58.7"]}));
    assert_ne!(s, 200, "address in use: {v}");
    let (s, _) = http(
        &w.api,
        "POST",
        "/services/attach",
        &json!({"service": "nope", "sandbox": sb}).to_string(),
    );
    assert_eq!(s, 404);
    let (s, _) = http(
        &w.api,
        "POST",
        "/services/attach",
        &json!({"service": "svx", "sandbox": "nope"}).to_string(),
    );
    assert_eq!(s, 404);
    api(
        &w.api,
        "POST",
        "/services/attach",
        json!({"service": "svx", "sandbox": sb}),
    );
    let (s, v) = http(
        &w.api,
        "POST",
        "/services/attach",
        &json!({"service": "svx", "sandbox": sb}).to_string(),
    );
    assert_eq!(s, 400, "already attached: {v}");
    api(&w.api, "DELETE", "/services/svx", json!({}));
    assert!(
        !sh_ok(&format!("ip -n {sb} addr show | grep -q 198.19.58.7")),
        "rm of an attached service leaves its interface"
    );
}
