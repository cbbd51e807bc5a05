//! ferryd's `/metrics` and `/events`, end to end: CNI runs of Ferry's
//! `loopback` plugin report to ferryd's datagram socket, Docker-protocol
//! and API requests go through the middleware, and the scrape shows them
//! as valid OpenMetrics; `ferry events --json` shows a scripted create,
//! connect, swap, disconnect and remove in order; the topology page, in a
//! headless Chromium, draws what the test made and follows it live. Root;
//! 198.18.96.0/22, 198.19.32.0/21 and fd00:1932::/48.
//! Needs the workspace's binaries (`ferry`, `ferry-plugin`) beside ferryd.

use ferry_testkit::docker::http;
use ferry_testkit::*;
use prometheus_parse::{Sample, Scrape, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary of the workspace, beside ferryd.
fn workspace_bin(name: &str) -> PathBuf {
    ferry_testkit::workspace_bin(env!("CARGO_BIN_EXE_ferryd"), name)
}

/// A ferryd with everything in a temp dir and its metrics on a free port;
/// killed on drop.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// [`Daemon::start`] with more arguments.
    fn start_with(args: &[&str]) -> Daemon {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
            .arg("--plugin-socket")
            .arg(dir.path().join("plugin.sock"))
            .arg("--api-socket")
            .arg(dir.path().join("api.sock"))
            .arg("--state")
            .arg(dir.path().join("state.redb"))
            .arg("--metrics-socket")
            .arg(dir.path().join("metrics.sock"))
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--default-address-pool", "base=198.18.99.0/24,size=26"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child, dir, port };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(d.api()).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ferryd did not start: {}",
                std::fs::read_to_string(d.dir.path().join("stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn api(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    /// GET /metrics: the content type and the body.
    fn scrape(&self) -> (String, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let ctype = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default();
        (ctype.to_string(), body.to_string())
    }

    fn ferry(&self) -> Command {
        let mut c = Command::new(workspace_bin("ferry"));
        c.env("FERRY_API_SOCKET", self.api());
        c
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line is one the OpenMetrics text grammar allows for what ferryd
/// emits, and the exposition ends with `# EOF`.
fn check_grammar(body: &str) {
    let name = r"[a-zA-Z_:][a-zA-Z0-9_:]*";
    let labels = r#"\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*")*)?\}"#;
    let number = r"(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[+-]Inf|NaN)";
    let sample = regex_lite::Regex::new(&format!("^{name}({labels})? {number}$")).unwrap();
    let meta = regex_lite::Regex::new(&format!(
        "^# (HELP {name} .*|TYPE {name} (counter|gauge|histogram|summary|unknown|info|stateset|gaugehistogram)|UNIT {name} .*)$"
    ))
    .unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "{body}");
    for l in &lines[..lines.len() - 1] {
        assert!(
            sample.is_match(l) || meta.is_match(l),
            "not OpenMetrics: {l:?}"
        );
    }
}

fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
}

fn number(s: Option<&Sample>) -> f64 {
    match s.map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        _ => 0.0,
    }
}

/// The histogram's count (its +Inf bucket).
fn observed(s: Option<&Sample>) -> f64 {
    match s.map(|s| &s.value) {
        Some(Value::Histogram(b)) => b
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map_or(0.0, |b| b.count),
        _ => 0.0,
    }
}

/// Runs Ferry's loopback plugin with the CNI variables, reporting to `socket`.
fn loopback(cni: &Path, socket: &Path, command: &str, id: &str, netns: &str) {
    let out = run_with_stdin(
        Command::new(cni.join("loopback"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "lo")
            .env("CNI_PATH", cni)
            .env("FERRY_METRICS_SOCKET", socket),
        br#"{"cniVersion":"1.0.0","name":"fm-lo","type":"loopback"}"#,
    );
    assert!(out.status.success(), "loopback {command}: {out:?}");
}

#[test]
fn metrics_count_cni_docker_and_api_operations() {
    let d = Daemon::start();
    let _forward = forward_rule_guard();
    let ns = Netns::new("fm");
    let cni = d.dir.path().join("cni");
    std::fs::create_dir(&cni).unwrap();
    std::os::unix::fs::symlink(workspace_bin("ferry-plugin"), cni.join("loopback")).unwrap();
    let id = unique("fm");
    let socket = d.dir.path().join("metrics.sock");
    loopback(&cni, &socket, "ADD", &id, &ns.path());
    loopback(&cni, &socket, "DEL", &id, &ns.path());
    // The Docker door: one method that works, one that fails.
    let plugin = d.dir.path().join("plugin.sock");
    assert_eq!(
        http(&plugin, "POST", "/NetworkDriver.GetCapabilities", "{}").0,
        200
    );
    assert_eq!(
        http(&plugin, "POST", "/NetworkDriver.Join", "{not json").0,
        400
    );
    // The API door, and a network for the gauges.
    let net = unique("fm");
    let (status, v) = http(
        &d.api(),
        "POST",
        "/networks",
        &format!(r#"{{"name":"{net}","subnets":["198.18.96.0/24"]}}"#),
    );
    let created = status == 200;
    let _remove = scopeguard(d.api(), net.clone());
    assert!(created, "{v}");

    // The plugins' datagrams arrive asynchronously.
    let cni_ops = [("door", "cni"), ("plugin", "loopback"), ("outcome", "ok")];
    let start = Instant::now();
    let (ctype, body, scrape) = loop {
        let (ctype, body) = d.scrape();
        let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
        let del = [&cni_ops[..], &[("verb", "DEL")]].concat();
        if number(find(&s, "ferry_operations_total", &del)) >= 1.0
            || start.elapsed() > Duration::from_secs(5)
        {
            break (ctype, body, s);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    check_grammar(&body);
    for verb in ["ADD", "DEL"] {
        let l = [&cni_ops[..], &[("verb", verb)]].concat();
        assert_eq!(
            number(find(&scrape, "ferry_operations_total", &l)),
            1.0,
            "{verb}\n{body}"
        );
        assert_eq!(
            observed(find(&scrape, "ferry_operation_duration_seconds", &l)),
            1.0,
            "{verb}\n{body}"
        );
    }
    let docker = |verb, outcome| {
        number(find(
            &scrape,
            "ferry_operations_total",
            &[
                ("door", "docker"),
                ("plugin", "NetworkDriver"),
                ("verb", verb),
                ("outcome", outcome),
            ],
        ))
    };
    assert_eq!(docker("GetCapabilities", "ok"), 1.0, "{body}");
    assert_eq!(docker("Join", "error"), 1.0, "{body}");
    let api = [
        ("door", "api"),
        ("verb", "POST /networks"),
        ("outcome", "ok"),
    ];
    assert_eq!(
        observed(find(&scrape, "ferry_operation_duration_seconds", &api)),
        1.0,
        "{body}"
    );
    assert_eq!(number(find(&scrape, "ferry_networks", &[])), 1.0, "{body}");
    let used = find(
        &scrape,
        "ferry_pool_utilisation_ratio",
        &[("network", &net), ("subnet", "198.18.96.0/24")],
    );
    assert!(used.is_some(), "{body}");
    assert!((0.0..=1.0).contains(&number(used)), "{body}");
}

/// Removes the network through the API when dropped (also on failure).
struct NetworkGuard(PathBuf, String);
impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = http(&self.0, "DELETE", &format!("/networks/{}", self.1), "");
    }
}
fn scopeguard(api: PathBuf, net: String) -> NetworkGuard {
    NetworkGuard(api, net)
}

#[test]
fn events_show_a_scripted_session_in_order() {
    let d = Daemon::start();
    let _forward = forward_rule_guard();
    let (n1, n2, sb) = (unique("fe"), unique("fe"), unique("fe"));
    let mut events = d
        .ferry()
        .args(["--json", "events", "--since", "5m"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut cleanup = Cleanup::default();
    {
        let (api, n1, n2, sb) = (d.api(), n1.clone(), n2.clone(), sb.clone());
        let ferry = workspace_bin("ferry");
        cleanup.push(move || {
            for args in [
                vec!["sandbox", "rm", &sb],
                vec!["network", "rm", &n1],
                vec!["network", "rm", &n2],
            ] {
                let _ = Command::new(&ferry)
                    .args(args)
                    .env("FERRY_API_SOCKET", &api)
                    .output();
            }
            let _ = sh_ok(&format!("ip netns del {sb}"));
        });
    }
    let script = [
        format!("network create {n1} --subnet 198.18.97.0/24"),
        format!("network create {n2} --subnet 198.18.98.0/24"),
        format!("sandbox create {sb}"),
        format!("connect {n1} {sb}"),
        format!("swap {sb} {n1} {n2}"),
        format!("disconnect {n2} {sb}"),
        format!("sandbox rm {sb}"),
        format!("network rm {n1}"),
        format!("network rm {n2}"),
    ];
    for step in &script {
        let out = d.ferry().args(step.split_whitespace()).output().unwrap();
        assert!(out.status.success(), "ferry {step}: {out:?}");
    }
    let want: Vec<(&str, &str, Option<&str>, Option<&str>)> = vec![
        ("network", "created", Some(&n1), None),
        ("network", "created", Some(&n2), None),
        ("sandbox", "created", None, Some(&sb)),
        ("endpoint", "connected", Some(&n1), Some(&sb)),
        ("endpoint", "swapped", Some(&n2), Some(&sb)),
        ("endpoint", "disconnected", Some(&n2), Some(&sb)),
        ("sandbox", "removed", None, Some(&sb)),
        ("network", "removed", Some(&n1), None),
        ("network", "removed", Some(&n2), None),
    ];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        got.push(v);
    }
    let _ = events.kill();
    let _ = events.wait();
    let seen: Vec<_> = got
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default(),
                e["action"].as_str().unwrap_or_default(),
                e["network"].as_str(),
                e["sandbox"].as_str(),
            )
        })
        .collect();
    assert_eq!(seen, want, "{got:#?}");
    assert!(got
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    assert!(got
        .iter()
        .all(|e| e["time"].is_string() && e["reason"].is_string()));
}

/// Removes sandboxes (and their namespaces), then networks, through the CLI.
fn remove_later(cleanup: &mut Cleanup, d: &Daemon, sandboxes: &[&str], networks: &[&str]) {
    let (api, ferry) = (d.api(), workspace_bin("ferry"));
    let sandboxes: Vec<String> = sandboxes.iter().map(|s| s.to_string()).collect();
    let networks: Vec<String> = networks.iter().map(|s| s.to_string()).collect();
    cleanup.push(move || {
        let run = |args: &[&str]| {
            let _ = Command::new(&ferry)
                .args(args)
                .env("FERRY_API_SOCKET", &api)
                .output();
        };
        for sb in &sandboxes {
            run(&["sandbox", "rm", sb]);
            let _ = sh_ok(&format!("ip netns del {sb} 2>/dev/null"));
        }
        for n in &networks {
            run(&["network", "rm", n]);
        }
    });
}

#[test]
fn topology_page_draws_the_nodes_and_follows_events_in_a_browser() {
    if let Some(why) = ferry_testkit::browser::unavailable() {
        eprintln!("SKIPPED: no headless browser: {why}");
        return;
    }
    let d = Daemon::start();
    let _forward = forward_rule_guard();
    let (n1, n2) = (unique("tpn"), unique("tpn"));
    let (s1, s2, s3) = (unique("tps"), unique("tps"), unique("tps"));
    let mut cleanup = Cleanup::default();
    remove_later(&mut cleanup, &d, &[&s1, &s2, &s3], &[&n1, &n2]);
    let ferry = |step: String| {
        let out = d.ferry().args(step.split_whitespace()).output().unwrap();
        assert!(out.status.success(), "ferry {step}: {out:?}");
    };
    ferry(format!("network create {n1} --subnet 198.19.32.0/24"));
    ferry(format!(
        "network create {n2} --subnet 198.19.33.0/24 --subnet fd00:1932:33::/64"
    ));
    for sb in [&s1, &s2, &s3] {
        ferry(format!("sandbox create {sb}"));
    }
    // s1 on both networks: their default routes contest, n1 wins on priority.
    ferry(format!("connect {n1} {s1} --priority 10"));
    ferry(format!("connect {n2} {s1}"));
    ferry(format!("connect {n1} {s2}"));

    let profile = d.dir.path().join("chromium");
    let browser = ferry_testkit::browser::Browser::start(&profile, 1400, 1300)
        .unwrap_or_else(|e| panic!("chromium is installed but does not run: {e}"));
    let url = format!("http://127.0.0.1:{}/", d.port);
    browser.goto(&url).unwrap();
    let drawn = |kind: &str, name: &str| {
        format!(r#"return document.querySelector('#graph [data-{kind}="{name}"]') !== null;"#)
    };
    for (kind, name) in [
        ("network", &n1),
        ("network", &n2),
        ("sandbox", &s1),
        ("sandbox", &s2),
    ] {
        assert!(
            browser
                .wait_for(&drawn(kind, name), Duration::from_secs(15))
                .unwrap(),
            "{kind} {name} is not drawn at {url}; page text: {}",
            browser.eval("return document.body.innerText").unwrap()
        );
    }
    // s1's two links are drawn as labelled edges; its contest is listed.
    let graph = browser
        .eval("return document.getElementById('graph').textContent")
        .unwrap();
    let graph = graph.as_str().unwrap_or_default().to_string();
    assert!(graph.contains("eth0 198.19.32.2/24"), "{graph}");
    assert!(
        graph.contains("eth1 198.19.33.2/24fd00:1932:33::2/64"),
        "{graph}"
    );
    let conflicts = browser
        .eval("return document.getElementById('conflicts').textContent")
        .unwrap();
    assert!(
        conflicts.as_str().unwrap_or_default().contains(&s1),
        "no route contest listed for {s1}: {conflicts}"
    );

    // A sandbox connected now appears without a reload.
    browser
        .eval("window.tpMark = 'loaded once'; return 0")
        .unwrap();
    ferry(format!("connect {n2} {s3}"));
    assert!(
        browser
            .wait_for(&drawn("sandbox", &s3), Duration::from_secs(15))
            .unwrap(),
        "{s3}, connected after the page loaded, was not drawn; page text: {}",
        browser.eval("return document.body.innerText").unwrap()
    );
    assert_eq!(
        browser.eval("return window.tpMark").unwrap(),
        "loaded once",
        "the page reloaded"
    );
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ferryd-topology.png");
    browser.screenshot(&shot).unwrap();
    println!("screenshot: {}", shot.display());
    let errors: Vec<_> = browser
        .console()
        .unwrap()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// A counter's or gauge's value, 0 when absent.
fn value(body: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    number(find(&s, metric, labels))
}

/// The count of a histogram's samples with these labels.
fn count(body: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    observed(find(&s, metric, labels))
}

#[test]
fn metrics_count_kernel_refusals_dns_queries_and_store_calls() {
    // A cluster of this host alone (the embedded store): its VTEP is only
    // recorded, no overlay network is made.
    let d = Daemon::start_with(&[
        "--advertise-address",
        "198.19.39.1",
        "--node-name",
        "tpnode",
    ]);
    let _forward = forward_rule_guard();
    let (net, bad, sb) = (unique("tpn"), unique("tpn"), unique("tps"));
    let mut cleanup = Cleanup::default();
    remove_later(&mut cleanup, &d, &[&sb], &[&net, &bad]);
    let (_, before) = d.scrape();
    for family in [
        "ferry_netlink_errors counter",
        "ferry_nftables_errors counter",
        "ferry_dns_queries counter",
        "ferry_cluster_store_duration_seconds histogram",
        "ferry_overlay_hosts gauge",
        "ferry_overlay_peers gauge",
    ] {
        assert!(
            before.contains(&format!("# TYPE {family}\n")),
            "no {family}:\n{before}"
        );
    }
    assert_eq!(value(&before, "ferry_overlay_hosts", &[]), 0.0, "{before}");
    assert_eq!(value(&before, "ferry_overlay_peers", &[]), 0.0, "{before}");

    // The kernel refuses an IPv6 address on a link whose MTU is below
    // IPv6's minimum (1280): the create fails and is rolled back.
    let out = d
        .ferry()
        .args([
            "network",
            "create",
            &bad,
            "--subnet",
            "fd00:1932:34::/64",
            "--mtu",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an IPv6 bridge with MTU 100 was made: {out:?}"
    );
    // DNS: a name Ferry knows, and a reverse name in the subnet nobody holds.
    for step in [
        format!("network create {net} --subnet 198.19.34.0/24"),
        format!("sandbox create {sb}"),
        format!("connect {net} {sb}"),
    ] {
        let out = d.ferry().args(step.split_whitespace()).output().unwrap();
        assert!(out.status.success(), "ferry {step}: {out:?}");
    }
    let dig = |args: &str| {
        sh(&format!(
            "ip netns exec {sb} dig +time=2 +tries=1 +noall +comments @198.19.34.1 {args} || true"
        ))
    };
    let a = dig(&format!("{sb} A"));
    assert!(a.contains("status: NOERROR"), "{a}");
    let ptr = dig("-x 198.19.34.200");
    assert!(ptr.contains("status: NXDOMAIN"), "{ptr}");
    // A read of the cluster store.
    let (status, hosts) = http(&d.api(), "GET", "/hosts", "");
    assert_eq!(status, 200, "{hosts}");

    let (_, after) = d.scrape();
    check_grammar(&after);
    let refused = [("operation", "RTM_NEWADDR"), ("errno", "EINVAL")];
    assert_eq!(
        value(&after, "ferry_netlink_errors_total", &refused),
        value(&before, "ferry_netlink_errors_total", &refused) + 1.0,
        "{after}"
    );
    for (outcome, rcode) in [("local", "NOERROR"), ("local", "NXDOMAIN")] {
        let l = [
            ("network", net.as_str()),
            ("outcome", outcome),
            ("rcode", rcode),
        ];
        assert_eq!(
            value(&after, "ferry_dns_queries_total", &l),
            1.0,
            "{l:?}\n{after}"
        );
    }
    let timed = |body: &str, op| {
        count(
            body,
            "ferry_cluster_store_duration_seconds",
            &[("operation", op), ("outcome", "ok")],
        )
    };
    assert!(timed(&after, "register_host") >= 1.0, "{after}");
    assert!(timed(&after, "hosts") > timed(&before, "hosts"), "{after}");
}
