//! ferryd's DNS server, in namespaces: ferryd runs in a test "host"
//! namespace whose resolv.conf lists a dead server first and a dnsmasq (in
//! its own namespace, behind a veth) second; `dig` runs in the sandboxes.
//! 198.18.88.0/22 and fd00:88::/48.

use ferry_testkit::docker::http;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn api(sock: &Path, verb: &str, path: &str, body: Value) -> Value {
    let (status, v) = http(sock, verb, path, &body.to_string());
    assert_eq!(status, 200, "{verb} {path} {body}: {v}");
    v
}

/// The address of an `addr/prefix` field.
fn ip_of(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("no address: {v}"));
    s.split('/').next().unwrap_or(s).to_string()
}

/// One dig answer: the status and the answer section's data.
#[derive(Debug)]
struct Answer {
    status: String,
    data: Vec<String>,
}

fn parse(out: &str) -> Vec<Answer> {
    let mut answers: Vec<Answer> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            let status = rest.split(',').next().unwrap_or("").to_string();
            answers.push(Answer {
                status,
                data: Vec::new(),
            });
        } else if !line.starts_with(';') && !line.trim().is_empty() {
            if let (Some(a), Some(d)) = (answers.last_mut(), line.split_whitespace().nth(4)) {
                a.data.push(d.to_string());
            }
        }
    }
    answers
}

/// `dig @server ARGS` from inside a sandbox (1 s, one try).
fn dig(sandbox: &str, server: &str, args: &str) -> Answer {
    let out = sh(&format!(
        "ip netns exec {sandbox} dig +time=1 +tries=1 +noall +comments +answer @{server} {args} || true"
    ));
    parse(&out).pop().unwrap_or(Answer {
        status: format!("no answer: {out}"),
        data: Vec::new(),
    })
}

/// Waits until `f` holds (IPv6 addresses finish duplicate address detection).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct World {
    api: PathBuf,
    _ferryd: Proc,
    _dnsmasq: Proc,
    _dir: tempfile::TempDir,
    // Dropped last: deleting the namespaces removes bridges, veths and nft tables.
    _host: Netns,
    _up: Netns,
}

/// The namespaces, dnsmasq (answering `upstream.test`) and ferryd.
fn world() -> World {
    assert!(
        sh_ok("command -v dig"),
        "dig is missing: apt-get install bind9-dnsutils"
    );
    let dir = tempfile::Builder::new()
        .prefix("ferry-dns")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let host = Netns::new("dnh");
    let up = Netns::new("dnu");
    let (h, u) = (unique("dnv"), unique("dnv"));
    sh(&format!(
        "ip -n {hn} link set lo up && ip -n {un} link set lo up && \
         ip -n {hn} link add {h} type veth peer name {u} netns {un} && \
         ip -n {hn} addr add 198.18.91.1/29 dev {h} && ip -n {hn} link set {h} up && \
         ip -n {un} addr add 198.18.91.2/29 dev {u} && ip -n {un} link set {u} up",
        hn = host.name,
        un = up.name
    ));
    let dnsmasq = Command::new("ip")
        .args(["netns", "exec", &up.name, "dnsmasq", "--keep-in-foreground"])
        .args(["--no-resolv", "--no-hosts", "--port", "53", "--user=root"])
        .args(["--bind-interfaces", "--listen-address", "198.18.91.2"])
        .arg("--address=/upstream.test/198.18.91.9")
        .arg(format!("--pid-file={}/dnsmasq.pid", dir.path().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let dnsmasq = Proc(dnsmasq);
    // 198.18.91.3 is on the link but nobody holds it: a dead server.
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 198.18.91.3\nnameserver 198.18.91.2\n")
        .expect("resolv.conf");
    let api = dir.path().join("api.sock");
    let log = std::fs::File::create(dir.path().join("ferryd.log")).expect("log");
    let ferryd = Command::new("nsenter")
        .arg(format!("--net={}", host.path()))
        .arg(env!("CARGO_BIN_EXE_ferryd"))
        .arg("--plugin-socket")
        .arg(dir.path().join("plugin.sock"))
        .arg("--api-socket")
        .arg(&api)
        .arg("--state")
        .arg(dir.path().join("ferryd.redb"))
        .args(["--default-address-pool", "base=198.18.88.0/22,size=24"])
        .args(["--default-address-pool", "base=fd00:88::/48,size=64"])
        .arg("--dns-resolv-conf")
        .arg(&resolv)
        .args(["--dns-ttl", "7", "--log-level", "debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ferryd");
    let ferryd = Proc(ferryd);
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&api).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ferryd did not start: {}",
            std::fs::read_to_string(dir.path().join("ferryd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eventually("dnsmasq answers", || {
        host.exec("dig +time=1 +tries=1 +short @198.18.91.2 x.upstream.test")
            .contains("198.18.91.9")
    });
    World {
        api,
        _ferryd: ferryd,
        _dnsmasq: dnsmasq,
        _dir: dir,
        _host: host,
        _up: up,
    }
}

/// A network's IPv4 and IPv6 gateway addresses.
fn gateways(n: &Value) -> (String, String) {
    let gw = |v: &str| ip_of(&n[v][0]["Gateway"]);
    (gw("ipv4"), gw("ipv6"))
}

/// A sandbox (deleted by the cleanup guard if the test fails).
fn sandbox(w: &World, cleanup: &mut Cleanup, prefix: &str) -> String {
    let name = unique(prefix);
    api(&w.api, "POST", "/sandboxes", json!({ "name": name }));
    let n = name.clone();
    cleanup.push(move || {
        let _ = sh_ok(&format!("ip netns del {n}"));
    });
    name
}

fn connect(w: &World, net: &str, sb: &str, aliases: &[&str]) -> (String, String) {
    let ep = api(
        &w.api,
        "POST",
        "/connect",
        json!({"network": net, "sandbox": sb, "aliases": aliases}),
    );
    let v6 = if ep["address_v6"].is_null() {
        String::new()
    } else {
        ip_of(&ep["address_v6"])
    };
    (ip_of(&ep["address"]), v6)
}

#[test]
fn sandboxes_resolve_each_other_and_the_world_but_not_other_networks() {
    require_root();
    let w = world();
    let mut cleanup = Cleanup::default();
    let a = api(
        &w.api,
        "POST",
        "/networks",
        json!({"name": "dnsa", "ipv6": true, "subnets": ["198.18.88.0/24", "fd00:88:1::/64"]}),
    );
    let b = api(
        &w.api,
        "POST",
        "/networks",
        json!({"name": "dnsb", "ipv6": true, "subnets": ["198.18.89.0/24", "fd00:88:2::/64"]}),
    );
    let (gw4, gw6) = gateways(&a);
    let (gwb4, _) = gateways(&b);
    let s1 = sandbox(&w, &mut cleanup, "dsa");
    let s2 = sandbox(&w, &mut cleanup, "dsb");
    let s3 = sandbox(&w, &mut cleanup, "dsc");
    let s4 = sandbox(&w, &mut cleanup, "dsd");
    let (ip1, ip1v6) = connect(&w, "dnsa", &s1, &["web", "pool"]);
    let (ip2, _) = connect(&w, "dnsa", &s2, &["pool"]);
    let (ip3, _) = connect(&w, "dnsa", &s3, &["pool"]);
    let (ipb, _) = connect(&w, "dnsb", &s4, &[]);
    eventually("the sandbox reaches the IPv6 gateway", || {
        sh_ok(&format!("ip netns exec {s2} ping -6 -c1 -W1 {gw6}"))
    });

    // By name and by alias, A and AAAA, over IPv4 and IPv6 transport; the TTL is --dns-ttl.
    for server in [&gw4, &gw6] {
        let r = dig(&s2, server, &format!("{s1} A"));
        assert_eq!(
            (r.status.as_str(), r.data.clone()),
            ("NOERROR", vec![ip1.clone()]),
            "{s1} A @{server}"
        );
        let r = dig(&s2, server, &format!("{} AAAA", s1.to_uppercase()));
        assert_eq!(
            r.data,
            vec![ip1v6.clone()],
            "{s1} AAAA @{server} (case-insensitive)"
        );
        let r = dig(&s2, server, "web A");
        assert_eq!(r.data, vec![ip1.clone()], "alias web @{server}");
        let r = dig(&s2, server, "web AAAA");
        assert_eq!(r.data, vec![ip1v6.clone()], "alias web AAAA @{server}");
    }
    let ttl = sh(&format!(
        "ip netns exec {s2} dig +time=1 +tries=1 +noall +answer @{gw4} {s1} A"
    ));
    assert_eq!(ttl.split_whitespace().nth(1), Some("7"), "TTL: {ttl}");
    // PTR for both families: the sandbox's name and its aliases.
    for ip in [&ip1, &ip1v6] {
        let r = dig(&s2, &gw4, &format!("-x {ip}"));
        let names: BTreeSet<String> = r.data.into_iter().collect();
        let want: BTreeSet<String> = [format!("{s1}."), "web.".into(), "pool.".into()].into();
        assert_eq!(names, want, "PTR {ip}");
    }
    assert_eq!(dig(&s2, &gw4, "-x 198.18.88.250").status, "NXDOMAIN");

    // Three endpoints behind one alias: all of them, the order turning.
    let mut firsts = BTreeSet::new();
    for _ in 0..6 {
        let r = dig(&s1, &gw4, "pool A");
        let got: BTreeSet<String> = r.data.iter().cloned().collect();
        let want: BTreeSet<String> = [ip1.clone(), ip2.clone(), ip3.clone()].into();
        assert_eq!(got, want, "pool");
        firsts.insert(r.data[0].clone());
    }
    assert_eq!(firsts.len(), 3, "the first answer rotates: {firsts:?}");

    // Another network learns nothing of dnsa: its own server does not know
    // the names, and dnsa's server refuses it.
    for name in [s1.as_str(), "web", "pool"] {
        let r = dig(&s4, &gwb4, &format!("{name} A"));
        assert!(
            r.status == "NXDOMAIN" || r.status == "REFUSED",
            "{name} from dnsb: {r:?}"
        );
        assert!(r.data.is_empty(), "{name} from dnsb: {r:?}");
        let r = dig(&s4, &gw4, &format!("{name} A"));
        assert_eq!(r.status, "REFUSED", "{name} at dnsa's server from dnsb");
        assert!(r.data.is_empty());
    }
    let r = dig(&s4, &gwb4, &format!("-x {ip1}"));
    assert!(r.data.is_empty(), "PTR of dnsa's address from dnsb: {r:?}");
    let r = dig(&s1, &gw4, &format!("{s4} A"));
    assert!(!r.data.contains(&ipb), "dnsb's address from dnsa: {r:?}");

    // Other names go upstream: the first server is dead, the second answers in time.
    for server in [&gw4, &gw6] {
        let start = Instant::now();
        let r = dig(&s2, server, "www.upstream.test A");
        let took = start.elapsed();
        assert_eq!(
            r.data,
            vec!["198.18.91.9".to_string()],
            "forwarded @{server}: {r:?}"
        );
        assert!(took < Duration::from_millis(1500), "forwarded in {took:?}");
        // The dead server was asked first and given up on after its 500 ms.
        assert!(took >= Duration::from_millis(500), "forwarded in {took:?}");
    }
    let r = sh(&format!(
        "ip netns exec {s2} dig +tcp +time=2 +tries=1 +short @{gw4} www.upstream.test A"
    ));
    assert_eq!(r.trim(), "198.18.91.9", "forwarded over TCP");

    // Connects and disconnects while s2 keeps asking: no query is lost.
    let stop = Arc::new(AtomicBool::new(false));
    let asker = {
        let (stop, s2, gw4, s1, ip1) = (
            stop.clone(),
            s2.clone(),
            gw4.clone(),
            s1.clone(),
            ip1.clone(),
        );
        std::thread::spawn(move || {
            let batch: String = (0..25)
                .map(|i| {
                    // Both transports: UDP and TCP queries.
                    let tcp = if i % 5 == 0 { "+tcp" } else { "" };
                    format!("@{gw4} {tcp} {s1} A\n")
                })
                .collect();
            let file = std::env::temp_dir().join(format!("dns-batch-{s2}"));
            std::fs::write(&file, batch).expect("batch");
            let (mut sent, mut answered) = (0, 0);
            while !stop.load(Ordering::SeqCst) || sent < 200 {
                let out = sh(&format!(
                    "ip netns exec {s2} dig +time=1 +tries=1 +noall +comments +answer -f {} || true",
                    file.display()
                ));
                sent += 25;
                answered += parse(&out)
                    .iter()
                    .filter(|a| a.status == "NOERROR" && a.data == [ip1.clone()])
                    .count();
            }
            let _ = std::fs::remove_file(&file);
            (sent, answered)
        })
    };
    let s5 = sandbox(&w, &mut cleanup, "dse");
    for i in 0..20 {
        let alias = format!("burst{i}");
        connect(&w, "dnsa", &s5, &[alias.as_str()]);
        assert_eq!(
            dig(&s1, &gw4, &format!("{alias} A")).status,
            "NOERROR",
            "{alias} right after connect"
        );
        api(
            &w.api,
            "POST",
            "/disconnect",
            json!({"network": "dnsa", "sandbox": s5}),
        );
    }
    // A network created now gets its listener; the others keep theirs.
    let c = api(
        &w.api,
        "POST",
        "/networks",
        json!({"name": "dnsc", "subnets": ["198.18.90.0/24"]}),
    );
    connect(&w, "dnsc", &s5, &[]);
    let gwc4 = ip_of(&c["ipv4"][0]["Gateway"]);
    assert_eq!(
        dig(&s5, &gwc4, &format!("{s5} A")).status,
        "NOERROR",
        "dnsc's server"
    );
    stop.store(true, Ordering::SeqCst);
    let (sent, answered) = asker.join().expect("asker");
    assert!(sent >= 200);
    assert_eq!(answered, sent, "queries answered during the burst");

    // Removed, a sandbox's names are gone.
    api(&w.api, "DELETE", &format!("/sandboxes/{s3}"), json!({}));
    let r = dig(&s1, &gw4, "pool A");
    assert_eq!(r.data.len(), 2, "pool after removing {s3}: {r:?}");
    for sb in [&s1, &s2, &s4, &s5] {
        api(&w.api, "DELETE", &format!("/sandboxes/{sb}"), json!({}));
    }
    for n in ["dnsa", "dnsb", "dnsc"] {
        api(&w.api, "DELETE", &format!("/networks/{n}"), json!({}));
    }
}
