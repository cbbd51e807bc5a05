//! ferryd's DNS server, in namespaces: ferryd runs in a test "host"
//! namespace whose resolv.conf lists a dead server first and a dnsmasq (in
//! its own namespace, behind a veth) second; `dig` runs in the sandboxes.
//! 198.18.88.0/22 and fd00:88::/48; the CNI test 198.19.48.0/21 and
//! fd00:1948::/48.

use ferry_testkit::docker::http;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Replaced to restart or stop ferryd.
    ferryd: std::cell::RefCell<KillOnDrop>,
    _dnsmasq: KillOnDrop,
    dir: tempfile::TempDir,
    // Dropped last: deleting the namespaces removes bridges, veths and nft tables.
    host: Netns,
    _up: Netns,
}

/// A world's addresses: the /29 link to the upstream (`LINK.1` the host,
/// `LINK.2` dnsmasq, `LINK.3` a dead server; dnsmasq answers
/// `upstream.test` with `LINK.9`) and ferryd's default pools.
struct Ranges {
    link: &'static str,
    pools: [&'static str; 2],
}

const RANGES: Ranges = Ranges {
    link: "198.18.91",
    pools: ["base=198.18.88.0/22,size=24", "base=fd00:88::/48,size=64"],
};

/// The namespaces, dnsmasq (answering `upstream.test`) and ferryd.
fn world(r: &Ranges) -> World {
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
    let link = r.link;
    sh(&format!(
        "ip -n {hn} link set lo up && ip -n {un} link set lo up && \
         ip -n {hn} link add {h} type veth peer name {u} netns {un} && \
         ip -n {hn} addr add {link}.1/29 dev {h} && ip -n {hn} link set {h} up && \
         ip -n {un} addr add {link}.2/29 dev {u} && ip -n {un} link set {u} up",
        hn = host.name,
        un = up.name
    ));
    let dnsmasq = Command::new("ip")
        .args(["netns", "exec", &up.name, "dnsmasq", "--keep-in-foreground"])
        .args(["--no-resolv", "--no-hosts", "--port", "53", "--user=root"])
        .args([
            "--bind-interfaces",
            "--listen-address",
            &format!("{link}.2"),
        ])
        .arg(format!("--address=/upstream.test/{link}.9"))
        // Every other name is unknown (NXDOMAIN), as on a real resolver.
        .arg("--server=/#/")
        .arg(format!("--pid-file={}/dnsmasq.pid", dir.path().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    let dnsmasq = KillOnDrop(dnsmasq);
    // LINK.3 is on the link but nobody holds it: a dead server.
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {link}.3\nnameserver {link}.2\n"),
    )
    .expect("resolv.conf");
    let api = dir.path().join("api.sock");
    let ferryd = start_ferryd(dir.path(), &host, r);
    eventually("dnsmasq answers", || {
        host.exec(&format!(
            "dig +time=1 +tries=1 +short @{link}.2 x.upstream.test"
        ))
        .contains(&format!("{link}.9"))
    });
    World {
        api,
        ferryd: std::cell::RefCell::new(ferryd),
        _dnsmasq: dnsmasq,
        dir,
        host,
        _up: up,
    }
}

/// ferryd in the host namespace, its files in `dir`; returns once its API answers.
fn start_ferryd(dir: &Path, host: &Netns, r: &Ranges) -> KillOnDrop {
    let api = dir.join("api.sock");
    let _ = std::fs::remove_file(&api);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ferryd.log"))
        .expect("log");
    let ferryd = Command::new("nsenter")
        .arg(format!("--net={}", host.path()))
        .arg(env!("CARGO_BIN_EXE_ferryd"))
        .arg("--plugin-socket")
        .arg(dir.join("plugin.sock"))
        .arg("--api-socket")
        .arg(&api)
        .arg("--state")
        .arg(dir.join("ferryd.redb"))
        .args(["--default-address-pool", r.pools[0]])
        .args(["--default-address-pool", r.pools[1]])
        .arg("--dns-resolv-conf")
        .arg(dir.join("resolv.conf"))
        .args(["--dns-ttl", "7", "--log-level", "debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ferryd");
    let ferryd = KillOnDrop(ferryd);
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&api).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ferryd did not start: {}",
            std::fs::read_to_string(dir.join("ferryd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ferryd
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
    let w = world(&RANGES);
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
    // 200 connects and disconnects, each a rebuilt table (the figure).
    for i in 0..200 {
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

/// A binary of the workspace, beside ferryd (`cargo build --workspace` first).
fn workspace_bin(name: &str) -> PathBuf {
    ferry_testkit::workspace_bin(env!("CARGO_BIN_EXE_ferryd"), name)
}

/// `ferry --json cni ARGS` in the host namespace, with the test's conflists
/// and Ferry's bridge, host-local and ferry-dns in CNI_PATH.
fn cni(w: &World, cni_path: &Path, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net={}", w.host.path()))
        .arg(workspace_bin("ferry"))
        .args(["--json", "cni"])
        .args(args)
        .env("NETCONFPATH", w.dir.path().join("net.d"))
        .env("CNI_PATH", cni_path)
        .env("FERRY_CNI_CACHE_DIR", w.dir.path().join("cache"))
        .env("FERRY_STATE_DIR", w.dir.path().join("plugin-state"))
        .output()
        .expect("run ferry cni")
}

fn cni_ok(w: &World, cni_path: &Path, args: &[&str]) -> Value {
    ok_json(&cni(w, cni_path, args), &format!("ferry cni {args:?}"))
}

/// The container's address of `family` (4 or 6) in a CNI result.
fn result_ip(result: &Value, v6: bool) -> String {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ip| ip_of(&ip["address"]))
        .find(|a| a.contains(':') == v6)
        .unwrap_or_else(|| panic!("no address (v6: {v6}) in {result}"))
}

#[test]
fn cni_attachments_get_names_through_ferry_dns() {
    require_root();
    let r = Ranges {
        link: "198.19.55",
        pools: ["base=198.19.48.0/22,size=24", "base=fd00:1948::/48,size=64"],
    };
    let w = world(&r);
    let plugin = workspace_bin("ferry-plugin");
    let path = cni_path(
        plugin.to_str().expect("utf-8 path"),
        ["bridge", "host-local", "ferry-dns"],
    );
    let netd = w.dir.path().join("net.d");
    std::fs::create_dir_all(&netd).expect("net.d");
    let (gw4, gw6) = ("198.19.52.1", "fd00:1948:52::1");
    std::fs::write(
        netd.join("10-dncni.conflist"),
        json!({
            "cniVersion": "1.1.0",
            "name": "dncni",
            "plugins": [
                {"type": "bridge", "bridge": unique("dnbr"), "isGateway": true,
                 "ipam": {"type": "host-local",
                          "dataDir": w.dir.path().join("ipam"),
                          "ranges": [[{"subnet": "198.19.52.0/24"}],
                                     [{"subnet": "fd00:1948:52::/64"}]]}},
                {"type": "ferry-dns", "apiSocket": w.api,
                 "capabilities": {"aliases": true}},
            ],
        })
        .to_string(),
    )
    .expect("conflist");
    let server = Netns::new("dnc");
    let client = Netns::new("dnc");
    let add = |ns: &Netns, id: &str, pod: &str, aliases: Value| {
        let netns = ns.path();
        let caps = json!({ "aliases": aliases }).to_string();
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}");
        cni_ok(
            &w,
            path.path(),
            &[
                "add",
                "dncni",
                &netns,
                "--container-id",
                id,
                "--cap-args",
                &caps,
                "--cni-args",
                &args,
            ],
        )
    };
    let del = |ns: &Netns, id: &str| {
        cni_ok(
            &w,
            path.path(),
            &["del", "dncni", &ns.path(), "--container-id", id],
        )
    };
    // The aliases of another network are not this attachment's.
    let result = add(
        &server,
        "dnctr1",
        "web-0",
        json!({"dncni": ["db", "Primary"], "othernet": ["elsewhere"]}),
    );
    let servers: Vec<&str> = result["dns"]["nameservers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        servers,
        [gw4, gw6],
        "the gateways are the resolvers: {result}"
    );
    assert!(
        result["interfaces"]
            .as_array()
            .is_some_and(|i| i.len() == 3),
        "prevResult passes through: {result}"
    );
    let (ip4, ip6) = (result_ip(&result, false), result_ip(&result, true));
    add(&client, "dnctr2", "client-0", json!({}));
    eventually("the client reaches the IPv6 gateway", || {
        client.exec_ok(&format!("ping -6 -c1 -W1 {gw6}"))
    });

    // The aliases and the pod's name, A and AAAA, over both transports.
    let resolves = |name: &str| {
        for gw in [gw4, gw6] {
            let a = dig(&client.name, gw, &format!("{name} A"));
            assert_eq!(
                (a.status.as_str(), a.data.clone()),
                ("NOERROR", vec![ip4.clone()]),
                "{name} A @{gw}"
            );
            let a = dig(&client.name, gw, &format!("{name} AAAA"));
            assert_eq!(a.data, vec![ip6.clone()], "{name} AAAA @{gw}");
        }
    };
    for name in ["db", "primary", "web-0"] {
        resolves(name);
    }
    let a = dig(&client.name, gw4, "elsewhere A");
    // Not Ferry's name here: forwarded, and the upstream knows nothing of it.
    assert!(a.data.is_empty(), "another network's alias: {a:?}");
    let ptr: BTreeSet<String> = dig(&client.name, gw4, &format!("-x {ip4}"))
        .data
        .into_iter()
        .collect();
    let want: BTreeSet<String> = ["db.", "primary.", "web-0."].map(String::from).into();
    assert_eq!(ptr, want, "PTR {ip4}");
    let check = cni(
        &w,
        path.path(),
        &["check", "dncni", &server.path(), "--container-id", "dnctr1"],
    );
    assert!(
        check.status.success(),
        "CHECK: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A restarted ferryd serves them again (they are kept on disk).
    stop_ferryd(&w);
    w.ferryd.replace(start_ferryd(w.dir.path(), &w.host, &r));
    eventually("names after a restart", || {
        dig(&client.name, gw4, "db A").data == [ip4.clone()]
    });

    // DEL: the names are gone; DEL again succeeds.
    del(&server, "dnctr1");
    for name in ["db", "web-0"] {
        let a = dig(&client.name, gw4, &format!("{name} A"));
        assert_eq!(a.status, "NXDOMAIN", "{name} after DEL: {a:?}");
    }
    del(&server, "dnctr1");
    resolves_self(&client, gw4, "client-0");

    // GC: an attachment not in the valid list loses its names, a valid one keeps them.
    add(&server, "dnctr1", "web-0", json!({"dncni": ["db"]}));
    cni_ok(&w, path.path(), &["gc", "dncni", "--valid", "dnctr1/eth0"]);
    let a = dig(&server.name, gw4, "client-0 A");
    assert_eq!(a.status, "NXDOMAIN", "client-0 after GC: {a:?}");
    resolves_self(&server, gw4, "db");

    // Without ferryd: ADD is code 11, DEL succeeds.
    stop_ferryd(&w);
    let out = cni(
        &w,
        path.path(),
        &[
            "add",
            "dncni",
            &client.path(),
            "--container-id",
            "dnctr3",
            "--cni-args",
            "IgnoreUnknown=1;K8S_POD_NAME=late",
        ],
    );
    let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(!out.status.success(), "ADD without ferryd succeeded: {err}");
    assert_eq!(err["code"], 11, "ADD without ferryd: {err}");
    del(&client, "dnctr3");
    del(&server, "dnctr1");
}

/// Kills ferryd (its socket stays behind, as after a crash).
fn stop_ferryd(w: &World) {
    drop(
        w.ferryd
            .replace(KillOnDrop(Command::new("true").spawn().expect("true"))),
    );
}

/// `name` resolves (A) at `gw` from `ns`.
fn resolves_self(ns: &Netns, gw: &str, name: &str) {
    let a = dig(&ns.name, gw, &format!("{name} A"));
    assert_eq!(a.status, "NOERROR", "{name}: {a:?}");
    assert_eq!(a.data.len(), 1, "{name}: {a:?}");
}
