//! Ferry's own IPAM in-process: when the `host-local` or `static` that
//! CNI_PATH resolves to is the running executable, the interface plugins call
//! it without a process; any other file, a copy of the same binary included,
//! is executed. Both ways give the same result, leases, log lines, errors and
//! DEL; `strace -f -e trace=execve` shows one program run in-process and two
//! with the copy. Subnets: 198.19.84.0/24, 198.19.85.0/24, fd00:1984:1::/64.

#[path = "ipam_support.rs"]
mod ipam_support;

use ferry_testkit::*;
use ipam_support::snapshot;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the IPAM plugin is found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    /// CNI_PATH's `host-local`/`static` link to the test's ferry-plugin.
    InProcess,
    /// They link to a copy of it (another inode).
    Exec,
}

/// A CNI_PATH directory for `way`, and the copy it may hold.
struct Bins {
    dir: tempfile::TempDir,
}

impl Bins {
    fn new(way: Way) -> Bins {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_ferry-plugin"));
        let dir = tempfile::Builder::new()
            .prefix("pf-ipam-")
            .tempdir()
            .expect("temp dir");
        let ipam_bin = match way {
            Way::InProcess => bin.clone(),
            Way::Exec => {
                let copy = dir.path().join("ferry-plugin-copy");
                std::fs::copy(&bin, &copy).expect("copy ferry-plugin");
                copy
            }
        };
        for (name, target) in [
            ("bridge", &bin),
            ("ptp", &bin),
            ("host-local", &ipam_bin),
            ("static", &ipam_bin),
        ] {
            std::os::unix::fs::symlink(target, dir.path().join(name)).expect("symlink");
        }
        Bins { dir }
    }
}

/// One plugin run: its stdout, exit status and the programs it executed.
struct Run {
    ok: bool,
    stdout: String,
    execs: Vec<String>,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `plugin` of `bins` under `strace -f -e trace=execve`.
fn run(bins: &Bins, plugin: &str, command: &str, ns: &Netns, id: &str, conf: &Value) -> Run {
    let trace = bins.dir.path().join(format!("trace-{command}-{id}"));
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=execve", "-o"])
        .arg(&trace)
        .arg(bins.dir.path().join(plugin))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", ns.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bins.dir.path())
        .env("FERRY_METRICS_SOCKET", "")
        .stderr(Stdio::piped());
    let out = run_with_stdin(&mut cmd, &serde_json::to_vec(conf).expect("config"));
    let execs = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("execve(") && !l.contains("= -1"))
        .map(str::to_string)
        .collect();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        execs,
    }
}

/// The data dir's files with their contents, but the index stamp (a
/// directory's times, different in every run).
fn leases(dir: &Path) -> BTreeMap<String, String> {
    let mut files = snapshot(dir);
    files.retain(|k, _| !k.ends_with("ferry-index/stamp"));
    files
}

/// The log lines' plugin and command fields (durations and times differ).
fn log_ops(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.split(' ')
                .filter(|f| {
                    f.starts_with("plugin=")
                        || f.starts_with("command=")
                        || f.starts_with("outcome=")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A result without what differs by nature from one run to the next: MAC
/// addresses, the host veth's name and the namespace path.
fn comparable(mut result: Value, bridge: &str) -> Value {
    for i in result["interfaces"].as_array_mut().into_iter().flatten() {
        if let Some(o) = i.as_object_mut() {
            o.remove("mac");
            if o.contains_key("sandbox") {
                o.insert("sandbox".into(), json!("<netns>"));
            }
            if o.get("sandbox").is_none() && o.get("name").is_some_and(|n| n != bridge) {
                o.insert("name".into(), json!("<host veth>"));
            }
        }
    }
    result
}

/// What one way did with a bridge+host-local ADD, CHECK and DEL.
#[derive(Debug, PartialEq)]
struct Outcome {
    result: Value,
    leases_after_add: BTreeMap<String, String>,
    leases_after_del: BTreeMap<String, String>,
    log: Vec<String>,
    execs_per_run: Vec<usize>,
}

fn bridge_round(way: Way, bridge: &str) -> Outcome {
    let bins = Bins::new(way);
    let data = tempfile::Builder::new()
        .prefix("pf-ipam-data-")
        .tempdir()
        .expect("temp dir");
    let log = data.path().join("ops.log");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "pfinproc",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ferryLogFile": log,
        "ipam": {
            "type": "host-local",
            "dataDir": data.path().join("ipam"),
            "ranges": [
                [{"subnet": "198.19.84.0/24"}],
                [{"subnet": "fd00:1984:1::/64"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}]
        }
    });
    let ns = Netns::new("pfin");
    let id = "pf-inproc-1";
    let add = run(&bins, "bridge", "ADD", &ns, id, &conf);
    // DEL even when an assertion below fails.
    let mut del_guard = Cleanup::default();
    {
        let bins_dir = bins.dir.path().to_path_buf();
        let (ns_path, conf) = (ns.path(), conf.clone());
        del_guard.push(move || {
            let mut cmd = Command::new(bins_dir.join("bridge"));
            cmd.env("CNI_COMMAND", "DEL")
                .env("CNI_CONTAINERID", id)
                .env("CNI_NETNS", ns_path)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", &bins_dir);
            run_with_stdin(&mut cmd, &serde_json::to_vec(&conf).unwrap_or_default());
        });
    }
    assert!(add.ok, "{way:?}: ADD failed: {}", add.stdout);
    let result = add.json();
    assert!(
        ns.exec_ok("ping -c1 -W2 198.19.84.1"),
        "{way:?}: the container cannot reach its gateway"
    );
    let leases_after_add = leases(&data.path().join("ipam"));
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    let check = run(&bins, "bridge", "CHECK", &ns, id, &with_prev);
    assert!(check.ok, "{way:?}: CHECK failed: {}", check.stdout);
    let del = run(&bins, "bridge", "DEL", &ns, id, &with_prev);
    assert!(del.ok, "{way:?}: DEL failed: {}", del.stdout);
    let leases_after_del = leases(&data.path().join("ipam"));
    let log = log_ops(&log);
    drop(del_guard);
    Outcome {
        result: comparable(result, bridge),
        leases_after_add,
        leases_after_del,
        log,
        execs_per_run: [&add, &check, &del].iter().map(|r| r.execs.len()).collect(),
    }
}

#[test]
fn bridge_host_local_in_process_matches_the_exec() {
    require_root();
    let bridge = unique("pfbr");
    let mut cleanup = Cleanup::default();
    cleanup.link(&bridge);

    let inproc = bridge_round(Way::InProcess, &bridge);
    let exec = bridge_round(Way::Exec, &bridge);

    assert_eq!(
        inproc.execs_per_run,
        vec![1, 1, 1],
        "in-process: ADD, CHECK and DEL each run one program (the bridge), \
         host-local runs inside it"
    );
    assert_eq!(
        exec.execs_per_run,
        vec![2, 2, 2],
        "exec: the copy of ferry-plugin (another inode) is executed for ADD, CHECK and DEL"
    );
    assert_eq!(inproc.result, exec.result, "the same result both ways");
    assert!(
        inproc
            .leases_after_add
            .keys()
            .any(|k| k.contains("198.19.84.")),
        "a lease for the container: {:?}",
        inproc.leases_after_add
    );
    assert_eq!(
        inproc.leases_after_add, exec.leases_after_add,
        "the same lease files after ADD"
    );
    assert_eq!(
        inproc.leases_after_del, exec.leases_after_del,
        "the same lease files after DEL"
    );
    assert!(
        !inproc
            .leases_after_del
            .values()
            .any(|v| v.contains("pf-inproc-1")),
        "DEL released the leases: {:?}",
        inproc.leases_after_del
    );
    assert_eq!(
        inproc.log, exec.log,
        "the same log lines (host-local's own among them) both ways"
    );
    assert!(
        inproc
            .log
            .iter()
            .any(|l| l.contains("plugin=\"host-local\"")),
        "host-local logs its run in-process too: {:?}",
        inproc.log
    );
}

/// IPAM errors: the same error JSON both ways, and nothing left behind.
#[test]
fn ipam_errors_are_the_same_both_ways() {
    require_root();
    let cases = [
        // host-local: rangeStart outside its subnet.
        json!({"type": "host-local", "ranges": [[{"subnet": "198.19.85.0/24", "rangeStart": "198.19.86.1"}]]}),
        // static: an address that is not CIDR.
        json!({"type": "static", "addresses": [{"address": "198.19.85.7"}]}),
    ];
    for ipam in cases {
        let mut outs = Vec::new();
        for way in [Way::InProcess, Way::Exec] {
            let bins = Bins::new(way);
            let data = tempfile::Builder::new()
                .prefix("pf-ipam-data-")
                .tempdir()
                .expect("temp dir");
            let mut ipam = ipam.clone();
            if ipam["type"] == "host-local" {
                ipam["dataDir"] = json!(data.path());
            }
            let conf = json!({
                "cniVersion": "1.0.0",
                "name": "pfinerr",
                "type": "ptp",
                "ipam": ipam,
            });
            let ns = Netns::new("pfie");
            let add = run(&bins, "ptp", "ADD", &ns, "pf-inerr-1", &conf);
            assert!(
                !add.ok,
                "{way:?}: ADD with {ipam} succeeded: {}",
                add.stdout
            );
            let links = ns.exec("ip -o link show");
            assert_eq!(
                links.lines().count(),
                1,
                "{way:?}: a failed ADD left links in the container: {links}"
            );
            assert_eq!(
                add.execs.len(),
                if way == Way::InProcess { 1 } else { 2 },
                "{way:?}: programs run: {:#?}",
                add.execs
            );
            outs.push(add.json());
        }
        assert_eq!(outs[0], outs[1], "the same error both ways for {ipam}");
        assert!(
            outs[0]["code"].as_u64().is_some_and(|c| c != 0),
            "an error code: {}",
            outs[0]
        );
    }
}
