//! `ferry-bench --chaos N`: crash points of the CNI door.
//!
//! Each iteration starts a runtime (this binary as `__chaos-child`, Ferry's
//! libcni-compatible runtime, in its own process group) that runs ADD, or
//! ADD then DEL, and kills the whole group with SIGKILL at a random moment
//! of ADD, or of DEL. Then it repeats DEL (even iterations) or runs GC with
//! the attachment no longer valid (odd ones) and checks that nothing is
//! left: links (`dying*` and ifbs too), nftables rules and elements, tc
//! qdiscs and filters, leases and Ferry's lease index, cache files, Ferry's
//! records and the tuning backup.
//!
//! Everything runs in a private "host" namespace per participant and chain
//! (`chTAG..h`, entered by the child), so the checks see only this run's
//! links, rules and qdiscs, and the chains never touch the machine's.
//!
//! Where the kill landed: the group is stopped (SIGSTOP) first and its
//! process tree read from /proc; the phase is the verb and the plugin(s)
//! running (`ADD bridge>host-local`), `runtime` when only the runtime was
//! (before, between or after plugins), or `done` when the verb had already
//! finished (the kill missed). Addresses: 198.19.20.0/22, fd00:1921::/48.

use crate::cleanup::{check_stop, Ticket};
use crate::ctx::Ctx;
use crate::peer::Part;
use crate::scenarios::{bridge_plugin, chained_plugins, host_local, port_caps};
use crate::util;
use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ferry_linux::Netns;
use ferry_testkit::files;
use ipnet::IpNet;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// argv[1] of the runtime child.
const CHILD_ARG: &str = "__chaos-child";
/// The bridge inside each private host namespace.
const BRIDGE: &str = "chbr0";
/// How long links may take to go after DEL (the detached delete runs on).
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Chain {
    /// bridge + host-local.
    Bridge,
    /// bridge (ipMasq) + host-local, portmap, firewall, tuning, bandwidth.
    Full,
}

impl Chain {
    fn label(self) -> &'static str {
        match self {
            Chain::Bridge => "bridge+host-local",
            Chain::Full => "full chain",
        }
    }

    fn code(self) -> char {
        match self {
            Chain::Bridge => 'b',
            Chain::Full => 'c',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Add,
    Del,
}

impl Verb {
    fn label(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
        }
    }
}

// ---------------------------------------------------------------- child

/// Runs the runtime child when this process is one; its exit code.
pub fn dispatch_child() -> Option<i32> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a == CHILD_ARG) != Some(true) {
        return None;
    }
    Some(match child(&args[2..]) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferry-bench chaos runtime: {e}");
            1
        }
    })
}

/// `__chaos-child SPEC VERB CONTAINER_ID`: enter the private host
/// namespace (with its own /sys, as `ip netns exec`), then run VERB
/// (`add`, `adddel`, `del`, `gc`) through Ferry's runtime. `adddel` prints
/// `added` between the two.
fn child(args: &[OsString]) -> Result<(), String> {
    let [spec, verb, cid] = args else {
        return Err("usage: __chaos-child SPEC VERB CONTAINER_ID".into());
    };
    let spec: Value = serde_json::from_slice(
        &std::fs::read(spec).map_err(|e| format!("read {}: {e}", spec.to_string_lossy()))?,
    )
    .map_err(|e| format!("spec: {e}"))?;
    let field = |k: &str| {
        spec[k]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("spec has no {k}"))
    };
    enter_host(&field("host_ns")?)?;
    let cni = CniConfig::new(
        vec![PathBuf::from(field("plugin_dir")?)],
        field("cache_dir")?,
    );
    let bytes = serde_json::to_vec(&spec["conflist"]).map_err(|e| e.to_string())?;
    let list = NetworkConfigList::from_bytes(&bytes).map_err(|e| format!("conflist: {e}"))?;
    let rt = RuntimeConf {
        container_id: cid.to_string_lossy().into_owned(),
        netns: field("netns")?,
        ifname: "eth0".into(),
        capability_args: spec["caps"].as_object().cloned().unwrap_or_default(),
        ..RuntimeConf::default()
    };
    let del = || {
        cni.del_network_list(&list.name, Some(&list), &rt)
            .map_err(|e| format!("DEL: {e}"))
    };
    match verb.to_str() {
        Some("add") => cni
            .add_network_list(&list, &rt)
            .map(|_| ())
            .map_err(|e| format!("ADD: {e}")),
        Some("adddel") => {
            cni.add_network_list(&list, &rt)
                .map_err(|e| format!("ADD: {e}"))?;
            println!("added");
            std::io::Write::flush(&mut std::io::stdout()).map_err(|e| e.to_string())?;
            del()
        }
        Some("del") => del(),
        Some("gc") => cni
            .gc_network_list(&list, Some(&[]))
            .map_err(|e| format!("GC: {e}")),
        _ => Err(format!("unknown verb {verb:?}")),
    }
}

fn enter_host(path: &str) -> Result<(), String> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{setns, unshare, CloneFlags};
    let ns = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {path}: {e}"))?;
    // A /sys of this namespace, for plugins that read /sys/class/net.
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount namespace: {e}"))?;
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_SLAVE | MsFlags::MS_REC, none)
        .map_err(|e| format!("make / a slave: {e}"))?;
    umount2("/sys", MntFlags::MNT_DETACH).map_err(|e| format!("unmount /sys: {e}"))?;
    mount(Some("sysfs"), "/sys", Some("sysfs"), MsFlags::empty(), none)
        .map_err(|e| format!("mount /sys: {e}"))
}

// ---------------------------------------------------------------- parent

/// xorshift64*: reproducible kill moments for a given seed.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counts of one participant, chain and killed verb.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub iterations: usize,
    /// Kills that found the verb still running.
    pub landed: usize,
    pub phases: BTreeMap<String, usize>,
    /// Iterations whose ADD failed by itself (DEL kills: nothing to kill).
    pub add_failed: usize,
    pub leftover_iterations: usize,
    /// What was left, `iteration: item`.
    pub leftovers: Vec<String>,
    /// Cleanups (DEL or GC after the kill) that failed.
    pub cleanup_failures: Vec<String>,
}

/// The stats of each participant, chain and killed verb, in that order.
pub type Report = Vec<((Part, Chain, Verb), Stats)>;

/// One participant and chain: its private namespaces, directories and
/// what the checks compare against.
struct Setup {
    part: Part,
    chain: Chain,
    host_ns: String,
    cont_ns: String,
    cont_ticket: Option<Ticket>,
    spec: PathBuf,
    data_dir: PathBuf,
    cache_dir: PathBuf,
    state_dir: PathBuf,
    tuning_dir: PathBuf,
    /// Ruleset and qdisc lines after clean ADD/DEL cycles, plus leftovers
    /// already reported (each is reported once).
    known: HashSet<String>,
    /// The kill windows: a clean verb's time, then adapted (a kill that
    /// came after the verb ended shrinks it, one that landed widens it),
    /// as the machine's load changes the verbs' times.
    add_time: Duration,
    del_time: Duration,
}

fn nets(idx: u8) -> Vec<IpNet> {
    [
        format!("198.19.{}.0/24", 20 + idx),
        format!("fd00:1921:{idx}::/64"),
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

fn conflist(name: &str, chain: Chain, n: &[IpNet], data: &Path, tuning: &Path) -> Value {
    let mut bridge = bridge_plugin(BRIDGE, host_local(n, data));
    let mut plugins = Vec::new();
    if chain == Chain::Full {
        bridge["ipMasq"] = json!(true);
        plugins.push(bridge);
        for mut p in chained_plugins() {
            if p["type"] == "tuning" {
                p["dataDir"] = json!(tuning);
            }
            plugins.push(p);
        }
    } else {
        plugins.push(bridge);
    }
    json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins})
}

impl Setup {
    fn new(ctx: &Ctx, part: Part, dir: &Path, chain: Chain, idx: u8) -> Result<Setup, String> {
        let key = format!("{}{}", part.code(), chain.code());
        let name = |s: &str| format!("ch{}{key}{s}", ctx.tag);
        let (host_path, _) = util::create_netns(&ctx.janitor, &name("h"))?;
        let (cont_path, cont_ticket) = util::create_netns(&ctx.janitor, &name("c"))?;
        let base = ctx.work.join(format!("chaos-{key}"));
        let [data, cache_dir, state_dir, tuning_dir] =
            ["data", "cache", "state", "tuning"].map(|d| base.join(d));
        for d in [&data, &cache_dir, &state_dir, &tuning_dir] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        let net = name("");
        let n = nets(idx);
        let spec = json!({
            "host_ns": host_path,
            "plugin_dir": dir,
            "cache_dir": cache_dir,
            "netns": cont_path,
            "conflist": conflist(&net, chain, &n, &data, &tuning_dir),
            "caps": if chain == Chain::Full { Value::Object(port_caps(40000)) } else { json!({}) },
        });
        let spec_path = base.join("spec.json");
        std::fs::write(&spec_path, spec.to_string())
            .map_err(|e| format!("write {}: {e}", spec_path.display()))?;
        Ok(Setup {
            part,
            chain,
            host_ns: name("h"),
            cont_ns: name("c"),
            cont_ticket: Some(cont_ticket),
            spec: spec_path,
            data_dir: data.join(&net),
            cache_dir,
            state_dir,
            tuning_dir,
            known: HashSet::new(),
            add_time: Duration::ZERO,
            del_time: Duration::ZERO,
        })
    }

    fn label(&self) -> String {
        format!("{} {}", self.part.label(), self.chain.label())
    }

    /// The runtime child for `verb` on `cid`, leader of its own group.
    fn spawn(&self, verb: &str, cid: &str) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        Command::new(exe)
            .arg(CHILD_ARG)
            .arg(&self.spec)
            .arg(verb)
            .arg(cid)
            .env("FERRY_STATE_DIR", &self.state_dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start the chaos runtime: {e}"))
    }

    /// Runs `verb` to its end.
    fn run(&self, verb: &str, cid: &str) -> Result<(), String> {
        let out = self
            .spawn(verb, cid)?
            .wait_with_output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{verb} {cid} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Clean ADD/DEL cycles: the kill windows (median of the timed ones)
    /// and the baseline the checks compare against.
    fn calibrate(&mut self, tag: &str) -> Result<(), String> {
        let mut adds = Vec::new();
        let mut dels = Vec::new();
        for k in 0..4 {
            let cid = format!("ch{tag}-{}{}-cal{k}", self.part.code(), self.chain.code());
            let t = Instant::now();
            let mut child = self.spawn("adddel", &cid)?;
            let added = wait_added(&mut child);
            let t_add = t.elapsed();
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            if !added || !out.status.success() {
                return Err(format!(
                    "{}: a clean ADD/DEL failed ({}): {}",
                    self.label(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            if k > 0 {
                adds.push(t_add);
                dels.push(t.elapsed() - t_add);
            }
        }
        adds.sort();
        dels.sort();
        self.add_time = adds[adds.len() / 2];
        self.del_time = dels[dels.len() / 2];
        self.settle();
        let left = self.inspect("calibration");
        let unexpected: Vec<&String> = left
            .iter()
            .filter(|l| !l.starts_with("nft: ") && !l.starts_with("tc: "))
            .collect();
        if !unexpected.is_empty() {
            return Err(format!(
                "{}: clean ADD/DEL cycles left {unexpected:?}",
                self.label()
            ));
        }
        self.known = left.into_iter().collect();
        Ok(())
    }

    /// Waits until no link but `lo` and the bridge is left (the detached
    /// deletes finishing), at most [`SETTLE`].
    fn settle(&self) {
        let t = Instant::now();
        while t.elapsed() < SETTLE {
            if self.links().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Links but `lo` (and the bridge, in the host namespace).
    fn links(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (ns, keep) in [(&self.host_ns, BRIDGE), (&self.cont_ns, "lo")] {
            let listed = Netns::named(ns)
                .and_then(|h| h.netlink())
                .and_then(|mut nl| nl.links());
            match listed {
                Ok(links) => out.extend(
                    links
                        .into_iter()
                        .filter(|l| l.name != "lo" && l.name != keep)
                        .map(|l| {
                            format!(
                                "link {} ({}) in {ns}",
                                l.name,
                                l.kind.as_deref().unwrap_or("?")
                            )
                        }),
                ),
                Err(e) => out.push(format!("cannot list the links of {ns}: {e}")),
            }
        }
        out
    }

    /// Everything there is now that an attachment could have left: links,
    /// rules, qdiscs and filters, and files (`cid`'s tuning backup in the
    /// reference's default place too).
    fn inspect(&self, cid: &str) -> Vec<String> {
        let mut out = self.links();
        match util::output(
            "ip",
            &["netns", "exec", &self.host_ns, "nft", "list", "ruleset"],
        ) {
            Some(rs) => out.extend(
                rs.lines()
                    .map(util::normalize_rule)
                    .filter(|l| !l.is_empty() && l != "}")
                    .map(|l| format!("nft: {l}")),
            ),
            None => out.push("nft: cannot list the ruleset".into()),
        }
        let tc = |args: &[&str]| {
            let mut a = vec!["-n", &self.host_ns];
            a.extend_from_slice(args);
            util::output("tc", &a).unwrap_or_default()
        };
        out.extend(
            tc(&["qdisc", "show"])
                .lines()
                .map(|l| format!("tc: {}", l.trim())),
        );
        for parent in ["root", "ingress"] {
            out.extend(
                tc(&["filter", "show", "dev", BRIDGE, parent])
                    .lines()
                    .map(|l| format!("tc: {BRIDGE} {parent} filter {}", l.trim())),
            );
        }
        for f in util::lease_files(&self.data_dir) {
            out.push(format!("lease {f}"));
        }
        for f in files(&self.data_dir.join("ferry-index")) {
            if f != "stamp" {
                out.push(format!("lease index entry {f}"));
            }
        }
        for f in files(&self.cache_dir.join("results")) {
            out.push(format!("cache file {f}"));
        }
        for f in files_under(&self.state_dir) {
            if !f.ends_with(".lock") {
                out.push(format!("Ferry record {f}"));
            }
        }
        for f in files(&self.tuning_dir) {
            out.push(format!("tuning backup {f}"));
        }
        let default_backup = Path::new("/run/cni/tuning").join(format!("{cid}_eth0.json"));
        if default_backup.exists() {
            out.push(format!("tuning backup {}", default_backup.display()));
        }
        out
    }

    /// Removes what an iteration left so the next one starts clean (the
    /// leftovers are reported already): the container namespace is made
    /// anew, leftover host links and files go.
    fn scrub(&mut self, ctx: &Ctx, left: &[String]) -> Result<(), String> {
        if left
            .iter()
            .any(|l| l.contains(&format!(" in {}", self.cont_ns)))
        {
            if let Some(t) = self.cont_ticket.take() {
                ctx.janitor.run(t)?;
            }
            let (_, t) = util::create_netns(&ctx.janitor, &self.cont_ns)?;
            self.cont_ticket = Some(t);
        }
        if let Ok(mut nl) = Netns::named(&self.host_ns).and_then(|h| h.netlink()) {
            for l in nl.links().unwrap_or_default() {
                if l.name != "lo" && l.name != BRIDGE {
                    let _ = nl.delete_link(l.index);
                }
            }
        }
        for l in left {
            let file = if let Some(f) = l.strip_prefix("lease ") {
                Some(self.data_dir.join(f))
            } else if let Some(f) = l.strip_prefix("lease index entry ") {
                Some(self.data_dir.join("ferry-index").join(f))
            } else if let Some(f) = l.strip_prefix("cache file ") {
                Some(self.cache_dir.join("results").join(f))
            } else if let Some(f) = l.strip_prefix("Ferry record ") {
                Some(self.state_dir.join(f))
            } else {
                l.strip_prefix("tuning backup ")
                    .map(|f| self.tuning_dir.join(f))
            };
            if let Some(f) = file {
                let _ = std::fs::remove_file(f);
            }
        }
        Ok(())
    }
}

/// Files below `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(dir.join(&rel))
            .into_iter()
            .flatten()
            .flatten()
        {
            let r = rel.join(e.file_name());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(r);
            } else {
                out.push(r.display().to_string());
            }
        }
    }
    out
}

/// Reads the child's `added` line; false when it ended without one.
fn wait_added(child: &mut Child) -> bool {
    let Some(out) = child.stdout.as_mut() else {
        return false;
    };
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).is_ok() && line.trim() == "added"
}

/// The process group `pgid`, stopped: which plugins run (the chain of
/// commands below the runtime), `runtime` when none, `done` when the
/// runtime had ended.
fn phase(pgid: i32) -> String {
    let mut members: Vec<(i32, i32, String, char)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(state), Some(ppid), Some(pgrp)) = (
            rest.first().and_then(|s| s.chars().next()),
            rest.get(1).and_then(|s| s.parse::<i32>().ok()),
            rest.get(2).and_then(|s| s.parse::<i32>().ok()),
        ) else {
            continue;
        };
        if pgrp == pgid {
            members.push((pid, ppid, comm, state));
        }
    }
    match members.iter().find(|m| m.0 == pgid) {
        None => return "done".into(),
        Some(m) if m.3 == 'Z' => return "done".into(),
        _ => {}
    }
    // Each chain of descendants of the runtime, e.g. bridge>host-local; a
    // child not yet exec'd still carries the runtime's name.
    let mut paths = Vec::new();
    let mut stack = vec![(pgid, String::new())];
    while let Some((pid, path)) = stack.pop() {
        let kids: Vec<&(i32, i32, String, char)> = members
            .iter()
            .filter(|m| m.1 == pid && m.0 != pid)
            .collect();
        if kids.is_empty() && !path.is_empty() {
            paths.push(path.clone());
        }
        for k in kids {
            let name = if k.2.starts_with("ferry-bench") {
                "(exec)"
            } else {
                k.2.as_str()
            };
            let p = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}>{name}")
            };
            stack.push((k.0, p));
        }
    }
    if paths.is_empty() {
        "runtime".into()
    } else {
        paths.sort();
        paths.join(" + ")
    }
}

/// One iteration: kill at a random moment of `verb`, clean up, check.
fn iteration(
    ctx: &Ctx,
    s: &mut Setup,
    verb: Verb,
    i: usize,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), String> {
    let cid = format!(
        "ch{}-{}{}{}-{i}",
        ctx.tag,
        s.part.code(),
        s.chain.code(),
        verb.label().to_lowercase()
    );
    stats.iterations += 1;
    let started = Instant::now();
    let mut child = s.spawn(if verb == Verb::Add { "add" } else { "adddel" }, &cid)?;
    let pgid = child.id() as i32;
    let window = match verb {
        Verb::Add => &mut s.add_time,
        Verb::Del => &mut s.del_time,
    };
    let from = if verb == Verb::Del {
        if !wait_added(&mut child) {
            stats.add_failed += 1;
        }
        Instant::now()
    } else {
        started
    };
    let at = from + window.mul_f64(rng.unit());
    let w = window.to_owned();
    if let Some(wait) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGSTOP);
    let ph = phase(pgid);
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    let _ = child.wait();
    if ph != "done" {
        stats.landed += 1;
        *window = w.mul_f64(1.05);
    } else {
        *window = w.mul_f64(0.85);
    }
    *stats
        .phases
        .entry(format!("{} {ph}", verb.label()))
        .or_default() += 1;

    let how = if i.is_multiple_of(2) { "del" } else { "gc" };
    if let Err(e) = s.run(how, &cid) {
        stats.cleanup_failures.push(format!("{i}: {e}"));
    }
    s.settle();
    let now = s.inspect(&cid);
    let new: Vec<String> = now
        .iter()
        .filter(|l| !s.known.contains(*l))
        .cloned()
        .collect();
    if !new.is_empty() {
        stats.leftover_iterations += 1;
        for l in &new {
            stats
                .leftovers
                .push(format!("{i} ({} {ph}, {how}): {l}", verb.label()));
        }
        s.known.extend(new.iter().cloned());
        s.scrub(ctx, &new)?;
    }
    Ok(())
}

/// The whole chaos run; returns the stats per participant, chain and verb.
pub fn run(ctx: &Ctx, n: usize, seed: u64, with_reference: bool) -> Result<Report, String> {
    let mut setups = Vec::new();
    let mut parts = vec![(Part::Ferry, ctx.ferry_dir.clone())];
    if with_reference {
        parts.push((Part::Reference, ctx.reference.clone()));
    }
    let mut idx = 0u8;
    for (part, dir) in parts {
        let Some(dir) = dir else {
            ctx.note("chaos", format!("{} not available: skipped", part.label()));
            continue;
        };
        for chain in [Chain::Bridge, Chain::Full] {
            let mut s = Setup::new(ctx, part, &dir, chain, idx)?;
            idx += 1;
            s.calibrate(&ctx.tag)?;
            ctx.note(
                "chaos",
                format!(
                    "{}: clean ADD {:.1} ms, DEL {:.1} ms (the kill windows)",
                    s.label(),
                    util::ms(s.add_time),
                    util::ms(s.del_time)
                ),
            );
            setups.push(s);
        }
    }
    let mut rng = Rng(seed.max(1));
    let mut stats: BTreeMap<(Part, Chain, Verb), Stats> = BTreeMap::new();
    for i in 0..n {
        for s in setups.iter_mut() {
            for verb in [Verb::Add, Verb::Del] {
                check_stop()?;
                let st = stats.entry((s.part, s.chain, verb)).or_default();
                iteration(ctx, s, verb, i, &mut rng, st)?;
            }
        }
        if (i + 1) % 50 == 0 {
            eprintln!("ferry-bench: chaos {}/{n}", i + 1);
        }
    }
    Ok(stats.into_iter().collect())
}

/// The report: a table per participant, chain and verb, the phases, and
/// what was left.
pub fn markdown(stats: &Report, header: &str) -> String {
    let mut md = format!("# Ferry chaos report\n\n{header}\n\n## Summary\n\n");
    md.push_str("| participant | chain | killed in | iterations | kills landed | kills after the verb ended | iterations with leftovers | items left | cleanup failures |\n");
    md.push_str("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for ((p, c, v), s) in stats {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.label(),
            c.label(),
            v.label(),
            s.iterations,
            s.landed,
            s.iterations - s.landed,
            s.leftover_iterations,
            s.leftovers.len(),
            s.cleanup_failures.len()
        ));
    }
    md.push_str("\n## Where the kills landed\n\n| participant | chain | phase | kills |\n| --- | --- | --- | ---: |\n");
    for ((p, c, _), s) in stats {
        for (ph, k) in &s.phases {
            md.push_str(&format!("| {} | {} | {ph} | {k} |\n", p.label(), c.label()));
        }
    }
    md.push_str("\n## What was left (first 20 per row)\n\n");
    let mut any = false;
    for ((p, c, v), s) in stats {
        for l in s.leftovers.iter().chain(s.cleanup_failures.iter()).take(20) {
            any = true;
            md.push_str(&format!(
                "- {} {} {}: {l}\n",
                p.label(),
                c.label(),
                v.label()
            ));
        }
    }
    if !any {
        md.push_str("Nothing.\n");
    }
    md
}

/// The same as JSON, for tests.
pub fn to_json(stats: &Report) -> Value {
    Value::Array(
        stats
            .iter()
            .map(|((p, c, v), s)| {
                json!({
                    "participant": p.label(),
                    "chain": c.label(),
                    "verb": v.label(),
                    "iterations": s.iterations,
                    "landed": s.landed,
                    "add_failed": s.add_failed,
                    "phases": s.phases,
                    "leftover_iterations": s.leftover_iterations,
                    "leftovers": s.leftovers,
                    "cleanup_failures": s.cleanup_failures,
                })
            })
            .collect(),
    )
}
