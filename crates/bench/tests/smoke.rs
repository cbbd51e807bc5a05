//! Runs `ferry-bench --smoke` (root) and checks that the three outputs exist
//! and parse, that every scenario produced its rows, and that nothing the
//! run created is left: namespaces, links, the work directory, lease files
//! and rules mentioning the bench's address ranges. Never checks speed.

use ferry_testkit::docker::DOCKERD;
use ferry_testkit::{files, host_links, require_reference, require_root, sh};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

/// The bench's ranges (198.19.0.0/16 is also the pool of a dockerd a
/// neighbour may run, so only rules that appear during the run count).
fn bench_nets() -> Vec<IpNet> {
    ["198.18.224.0/19", "198.19.0.0/16", "fd00:bec::/32"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn rules_in_ranges() -> HashSet<String> {
    let nets = bench_nets();
    sh("nft list ruleset")
        .lines()
        .filter(|l| {
            l.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':' || c == '/'))
                .filter_map(|t| {
                    t.parse::<IpNet>()
                        .map(|n| n.addr())
                        .or_else(|_| t.parse::<IpAddr>())
                        .ok()
                })
                .any(|a| nets.iter().any(|n| n.contains(&a)))
        })
        // Counters change; compare the rules without them.
        .map(|l| {
            let mut out = Vec::new();
            let mut skip = false;
            for t in l.split_whitespace() {
                if skip {
                    skip = false;
                } else if t == "packets" || t == "bytes" {
                    skip = true;
                } else {
                    out.push(t);
                }
            }
            out.join(" ")
        })
        .collect()
}

#[test]
fn smoke_run_writes_outputs_and_leaves_nothing_behind() {
    require_root();
    require_reference("bridge");
    assert!(
        Path::new(DOCKERD).exists(),
        "{DOCKERD} missing: install the Debian package docker.io (scenario 7)"
    );
    let tag = format!("s{:03x}", std::process::id() % 0xfff);
    let prefix = format!("fb{tag}");
    let out = std::env::temp_dir().join(format!("ferry-bench-smoke-{}", std::process::id()));
    let rules_before = rules_in_ranges();
    // Ferry's firewall inserts one rule into iptables' filter FORWARD (ip and
    // ip6) when that chain exists; the bench removes what it added.
    let forward_rules = || {
        sh("nft list ruleset")
            .lines()
            .filter(|l| l.contains("accepted by Ferry"))
            .count()
    };
    let forward_before = forward_rules();

    let started = std::time::Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_ferry-bench"))
        .args(["--smoke", "--tag", &tag, "--out"])
        .arg(&out)
        .output()
        .expect("run ferry-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "ferry-bench --smoke failed ({}):\n{stderr}\n{stdout}",
        run.status
    );
    eprintln!("smoke run took {:.1} s", started.elapsed().as_secs_f64());

    // report.md: printed and written, with every section.
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert_eq!(report.trim(), stdout.trim(), "stdout is the report");
    for section in [
        "## Summary",
        "## Targets",
        "## 5. Scale",
        "## 7. CNM (docker run --rm)",
        "## 8. The floor",
        "## 9. CNM IPAM at scale",
        "## 11 DNS",
        "## 12. Plugin reporting cost",
        "kernel",
        "CPU",
    ] {
        assert!(
            report.contains(section),
            "report lacks {section:?}:\n{report}"
        );
    }
    assert!(!report.contains("FAILED"), "a scenario failed:\n{report}");
    assert!(
        report.contains("Ferry chain = Ferry bridge/host-local"),
        "the chain composition note is missing"
    );

    // results.csv: a header and rows of seven fields with numeric values.
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("scenario,participant,op,cycle,containers,value,unit")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for r in &rows {
        assert_eq!(r.len(), 7, "bad row {r:?}");
        r[3].parse::<usize>().expect("cycle");
        r[4].parse::<usize>().expect("containers");
        r[5].parse::<f64>().expect("value");
    }
    let count = |s: &str, p: &str, op: &str| {
        rows.iter()
            .filter(|r| r[0] == s && r[1] == p && r[2] == op)
            .count()
    };
    for (s, p, op, n) in [
        ("1-bridge", "ferry", "ADD", 5),
        ("1-bridge", "reference", "DEL", 5),
        ("1-bridge", "ferry", "DEL-gone", 5),
        ("1-bridge", "reference", "DEL-gone", 5),
        ("1-bridge", "floor-1proc", "ADD", 5),
        ("1-bridge", "floor-procs", "ADD", 5),
        ("2-chain", "ferry", "ADD", 5),
        ("3-ptp", "reference", "ADD", 5),
        ("4-parallel", "ferry", "ADD-phase", 1),
        ("4-parallel", "reference", "DEL-phase", 1),
        ("4-parallel", "ferry", "DEL-phase-gone", 1),
        ("5-scale", "ferry", "ADD", 20),
        ("5-scale", "reference", "DEL", 20),
        ("6-rss", "ferry", "bridge", 1),
        ("6-rss", "reference", "bridge", 1),
        ("7-cnm", "ferry", "run", 3),
        ("7-cnm", "docker", "run", 3),
        ("9-ipam", "ferry", "RequestAddress", 200),
        ("9-ipam", "ferry", "ReleaseAddress", 200),
        ("9-ipam", "ferry", "leftover-pools", 1),
        ("11-dns", "ferry", "local-qps", 1),
        ("11-dns", "aardvark-dns", "forwarded-p99", 1),
        ("11-dns", "docker", "local-p50", 1),
        ("23-sockets", "burst", "RequestAddress", 8),
        ("23-sockets", "unloaded", "GET /networks", 30),
        ("23-sockets", "loaded", "EndpointOperInfo", 30),
        ("12-report-cost", "ferry", "no-listener", 5),
        ("12-report-cost", "ferry", "listener", 5),
    ] {
        assert_eq!(count(s, p, op), n, "{s} {p} {op} rows");
    }
    // Every parallel ADD got its own address; the bench found nothing left.
    for r in rows.iter().filter(|r| r[2] == "distinct-ips") {
        assert_eq!(r[5].parse::<f64>().unwrap(), 10.0, "distinct IPs: {r:?}");
    }
    for r in rows.iter().filter(|r| r[2].starts_with("leftover-")) {
        assert_eq!(r[5].parse::<f64>().unwrap(), 0.0, "leftover: {r:?}");
    }

    // scale.svg: one SVG document with a point per scale ADD.
    let svg = std::fs::read_to_string(out.join("scale.svg")).expect("scale.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert_eq!(svg.matches("<circle").count(), 40);

    // Nothing left behind.
    let namespaces: Vec<String> = files(Path::new("/run/netns"))
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    assert!(
        host_links(&prefix).is_empty(),
        "links left: {:?}",
        host_links(&prefix)
    );
    assert!(
        !Path::new("/run/ferry-bench").join(&tag).exists(),
        "work directory left"
    );
    // Scenario 7's daemons: their directory, ferryd's plugin socket, processes.
    assert!(
        !Path::new(&format!("/var/tmp/ferry-bench-{tag}")).exists(),
        "dockerd/ferryd directory left"
    );
    assert!(
        !Path::new(&format!("/var/tmp/ferry-bench-{tag}-ipam")).exists(),
        "scenario 9's ferryd directory left"
    );
    // Scenario 11's dockerd directory and its namespace's resolv.conf.
    assert!(
        !Path::new(&format!("/var/tmp/ferry-bench-dns-{tag}")).exists(),
        "scenario 11's dockerd directory left"
    );
    assert!(
        !Path::new(&format!("/etc/netns/{prefix}dnh")).exists(),
        "scenario 11's /etc/netns directory left"
    );
    for s in ["d", "i9"] {
        assert!(
            !Path::new(&format!("/run/docker/plugins/{prefix}{s}.sock")).exists(),
            "ferryd's plugin socket {s} left"
        );
    }
    let daemons = sh("ps -eo args");
    assert!(
        !daemons.contains(&format!("ferry-bench-{tag}"))
            && !daemons.contains(&format!("ferry-bench-dns-{tag}"))
            && !daemons.contains(&format!("ferry-bench/{tag}/dns")),
        "dockerd or ferryd still running:\n{daemons}"
    );
    let new_rules: Vec<String> = rules_in_ranges()
        .difference(&rules_before)
        .cloned()
        .collect();
    assert!(new_rules.is_empty(), "rules left: {new_rules:?}");
    assert_eq!(
        forward_rules(),
        forward_before,
        "Ferry's iptables FORWARD rule left behind (or taken away)"
    );
    let _ = std::fs::remove_dir_all(&out);
}
