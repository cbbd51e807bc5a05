//! DEL does not wait for the kernel's grace period after nftables
//! deletions (`ferry_drivers::link::detach::close_nft`): bridge with
//! `ipMasq`, portmap and firewall, chained, each DEL'd under `strace -f`
//! in a node namespace. What each one deleted is gone from the ruleset when
//! its DEL answers, and the last reference to its nf_tables socket is held by
//! a forked child that exits only after the plugin has closed its copy, so
//! the close that waits is the child's. Subnets: 198.19.87.0/24,
//! fd00:1984:3::/64.

use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Runs `plugin` in namespace `node` (optionally under strace into `trace`).
fn run(
    node: &Netns,
    dir: &Path,
    plugin: &str,
    command: &str,
    netns: &Netns,
    conf: &Value,
    trace: Option<&Path>,
) -> (bool, String) {
    let bin = env!("CARGO_BIN_EXE_ferry-plugin");
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", node.path())).arg("--");
    if let Some(t) = trace {
        cmd.args(["strace", "-f", "-q", "-s", "256", "-o"]).arg(t);
    }
    cmd.args([bin, plugin])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "pf-grace-1")
        .env("CNI_NETNS", netns.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", dir.join("bin"))
        .env("FERRY_STATE_DIR", dir.join("state"))
        .env("FERRY_METRICS_SOCKET", "");
    let out = run_with_stdin(&mut cmd, &serde_json::to_vec(conf).expect("config"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// From an `strace -f` log of one plugin run: whether a child forked after
/// the plugin opened its nf_tables socket was still alive when the plugin
/// closed that socket (so the plugin's close was not the last one), for
/// every nf_tables socket the plugin deleted something on and closed.
fn close_handed_to_child(trace: &str) -> Result<(), String> {
    let joined = join_split_calls(trace);
    let lines: Vec<&str> = joined.iter().map(String::as_str).collect();
    let pid_of = |l: &str| l.split_whitespace().next().unwrap_or("").to_string();
    let main = lines.first().map(|l| pid_of(l)).ok_or("empty trace")?;
    let mine = |l: &&str| pid_of(l) == main;
    let mut checked = 0;
    for (i, l) in lines.iter().enumerate() {
        if !(mine(l) && l.contains("NETLINK_NETFILTER") && l.contains("socket(")) {
            continue;
        }
        let fd = l.rsplit("= ").next().unwrap_or("").trim().to_string();
        // `close(3)`, or `close(3 <unfinished ...>` when another process
        // interleaves.
        let closes = [format!("close({fd})"), format!("close({fd} <unfinished")];
        let Some(c) = (i + 1..lines.len())
            .find(|&j| mine(&lines[j]) && closes.iter().any(|x| lines[j].contains(x)))
        else {
            continue; // closed at exit: no close() line to judge
        };
        let sent_on = format!("sendto({fd}, ");
        let deleted = lines[i..c]
            .iter()
            .any(|l| mine(l) && l.contains(&sent_on) && is_delete(l));
        if !deleted {
            continue; // nothing for the kernel to free: the close does not wait
        }
        // Children forked between the socket's open and its close: the PID
        // ends `clone(...) = PID`, or `<... clone resumed>...) = PID` when
        // another process interleaved (`clone(... <unfinished ...>`).
        let children: Vec<String> = lines[i..c]
            .iter()
            .filter(|l| mine(l) && (l.contains("clone") || l.contains("fork")))
            .filter_map(|l| l.rsplit("= ").next().map(|p| p.trim().to_string()))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let alive_after_close = children.iter().any(|child| {
            lines[c..]
                .iter()
                .any(|l| pid_of(l) == *child && l.contains("+++ exited"))
        });
        if !alive_after_close {
            return Err(format!(
                "socket fd {fd} (line {}) was closed at line {} with no forked child \
                 holding it: that close waits for the grace period",
                i + 1,
                c + 1
            ));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err("no nf_tables socket the plugin deleted on and closed".into());
    }
    Ok(())
}

/// An `strace -f` log with every call that another process's line split
/// (`PID name(args <unfinished ...>` ... `PID <... name resumed>rest`)
/// joined into one line, kept where the call started.
fn join_split_calls(trace: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = Default::default();
    for l in trace.lines() {
        let pid = l.split_whitespace().next().unwrap_or("").to_string();
        if let Some(head) = l.strip_suffix(" <unfinished ...>") {
            open.insert(pid, out.len());
            out.push(head.to_string());
        } else if let Some(at) = l.find(" resumed>") {
            let rest = &l[at + " resumed>".len()..];
            match open.remove(&pid) {
                Some(i) => out[i].push_str(rest),
                None => out.push(l.to_string()),
            }
        } else {
            out.push(l.to_string());
        }
    }
    out
}

/// Whether a traced sendto carries a delete: `NFT_MSG_DEL*`, or
/// `NFT_MSG_DESTROYSETELEM` (30), which strace may print as a number.
fn is_delete(line: &str) -> bool {
    line.contains("NFT_MSG_DEL") || line.contains("NFT_MSG_DESTROY") || line.contains("<<8|0x1e")
}

#[test]
fn chain_del_hands_the_nft_close_to_a_child() {
    require_root();
    let node = Netns::new("pfgn");
    let container = Netns::new("pfgc");
    let dir = tempfile::Builder::new()
        .prefix("pf-grace-")
        .tempdir()
        .expect("temp dir");
    std::fs::create_dir_all(dir.path().join("bin")).expect("bin dir");
    let bin = env!("CARGO_BIN_EXE_ferry-plugin");
    std::os::unix::fs::symlink(bin, dir.path().join("bin/host-local")).expect("symlink");
    let bridge = unique("pfgb");
    let base = |t: &str| json!({"cniVersion": "1.0.0", "name": "pfgrace", "type": t});
    let mut br = base("bridge");
    br["bridge"] = json!(bridge);
    br["isGateway"] = json!(true);
    br["ipMasq"] = json!(true);
    br["ipam"] = json!({"type": "host-local", "dataDir": dir.path().join("ipam"),
        "ranges": [[{"subnet": "198.19.87.0/24"}], [{"subnet": "fd00:1984:3::/64"}]]});
    let mut pm = base("portmap");
    pm["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8480, "containerPort": 80, "protocol": "tcp"}]});
    let fw = base("firewall");

    // ADD the chain, each plugin getting the previous result.
    let mut prev = Value::Null;
    let mut confs = Vec::new();
    for (t, mut conf) in [("bridge", br), ("portmap", pm), ("firewall", fw)] {
        if !prev.is_null() {
            conf["prevResult"] = prev.clone();
        }
        let (ok, out) = run(&node, dir.path(), t, "ADD", &container, &conf, None);
        assert!(ok, "{t} ADD failed: {out}");
        prev = serde_json::from_str(&out).expect("ADD result");
        confs.push((t, conf));
    }
    let ruleset = || node.exec("nft list ruleset");
    for (table, what) in [
        ("ferry-masq", "masquerade"),
        ("ferry-portmap", "portmap"),
        ("ferry-firewall", "firewall"),
    ] {
        assert!(
            ruleset().contains(table),
            "{what}: no table {table} after ADD:\n{}",
            ruleset()
        );
    }
    assert!(
        ruleset().contains("198.19.87."),
        "the container's address is in the ruleset after ADD:\n{}",
        ruleset()
    );

    // DEL in reverse order, traced; every prevResult is the final result.
    for (t, conf) in confs.iter_mut().rev() {
        conf["prevResult"] = prev.clone();
        let trace = dir.path().join(format!("{t}.trace"));
        let (ok, out) = run(&node, dir.path(), t, "DEL", &container, conf, Some(&trace));
        assert!(ok, "{t} DEL failed: {out}");
        let text = std::fs::read_to_string(&trace).expect("strace output");
        if let Err(e) = close_handed_to_child(&text) {
            panic!("{t} DEL: {e}\n{text}");
        }
    }
    let left = ruleset();
    assert!(
        !left.contains("198.19.87.") && !left.contains("fd00:1984:3:"),
        "the chain's DELs left the container's addresses in the ruleset:\n{left}"
    );
    node.exec(&format!("ip link del {bridge}"));
}

/// The trace reader itself: a clone that strace split around another
/// process's line still counts, and a close with no child is refused.
#[test]
fn the_trace_reader_follows_split_clones() {
    let split = "\
10 socket(AF_NETLINK, SOCK_DGRAM|SOCK_CLOEXEC, NETLINK_NETFILTER) = 3
10 sendto(3, [{nlmsg_type=NFNL_SUBSYS_NFTABLES<<8|0x1e}], 80, 0, NULL, 0) = 80
10 clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>
11 set_robust_list(0x1, 24) = 0
10 <... clone resumed>, child_tidptr=0x2) = 11
10 close(3) = 0
11 +++ exited with 0 +++
10 +++ exited with 0 +++
";
    assert_eq!(close_handed_to_child(split), Ok(()));
    // The socket call itself split by a child's line (seen in CI).
    let split_socket = "\
10 socket(AF_NETLINK, SOCK_DGRAM|SOCK_CLOEXEC, NETLINK_NETFILTER <unfinished ...>
9 dup2(4, 1) = 1
10 <... socket resumed>) = 3
10 sendto(3, [{nlmsg_type=NFNL_SUBSYS_NFTABLES<<8|0x1e}], 80, 0, NULL, 0 <unfinished ...>
9 dup2(4, 2) = 2
10 <... sendto resumed>) = 80
10 clone(child_stack=NULL, flags=SIGCHLD) = 11
10 close(3 <unfinished ...>
11 set_robust_list(0x1, 24) = 0
10 <... close resumed>) = 0
11 +++ exited with 0 +++
10 +++ exited with 0 +++
";
    assert_eq!(close_handed_to_child(split_socket), Ok(()));
    let no_child = "\
10 socket(AF_NETLINK, SOCK_DGRAM|SOCK_CLOEXEC, NETLINK_NETFILTER) = 3
10 sendto(3, [{nlmsg_type=NFNL_SUBSYS_NFTABLES<<8|0x1e}], 80, 0, NULL, 0) = 80
10 close(3) = 0
10 +++ exited with 0 +++
";
    assert!(close_handed_to_child(no_child).is_err());
}
