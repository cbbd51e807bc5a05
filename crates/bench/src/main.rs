//! `ferry-bench`: Ferry against its peers in the same run, interleaved, on
//! the same configs, in namespaces it creates and always removes.
//!
//! ```text
//! cargo run --release -p ferry-bench -- [--scale N] [--cycles N] [--cnm-cycles N] [--out DIR] [--smoke]
//! ```
//!
//! Scenarios: 1 bridge+host-local ADD/DEL (without and with `ipMasq`), 2 the
//! full chain, 3 ptp+host-local,
//! 4 parallel ADD-all/DEL-all, 5 scale on one /16, 6 peak RSS per plugin,
//! 7 CNM (`docker run --rm` on a Ferry network and on a Docker bridge
//! network, through a private dockerd and ferryd the bench starts), 8 the
//! floor (the kernel work of a bridge ADD in one process and in one process
//! per plugin; run with scenario 1), 9 CNM IPAM at scale (RequestAddress on
//! one /18 through a private ferryd's plugin socket), 10 the overlay, 11 DNS
//! (dnsperf against ferryd's server, aardvark-dns and Docker's resolver), 12
//! the plugins' cost of reporting to ferryd, 23 load on ferryd's sockets
//! (`socket_load.rs`). Outputs: `report.md` (also printed), `results.csv`, `scale.svg`.
//!
//! This binary is also the per-process floor's two "plugins": run through a
//! symlink named `fbfloor-bridge` or `fbfloor-ipam` it acts as one (see
//! `floor.rs`).

mod chaos;
mod cleanup;
mod ctx;
mod dns;
mod floor;
mod overlay;
mod peer;
mod report;
mod reporting;
mod rss;
mod scenarios;
mod socket_load;
mod util;

use clap::Parser;
use ctx::{Ctx, Sizes};
use ferry_testkit::docker;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser, Debug)]
#[command(
    name = "ferry-bench",
    about = "Side-by-side benchmark: Ferry, the reference CNI plugins, netavark and the kernel floor"
)]
struct Opts {
    /// Containers kept on the scale network per implementation (default 1000; smoke 20).
    #[arg(long)]
    scale: Option<usize>,
    /// ADD/DEL cycles of the sequential scenarios (default 200; smoke 5).
    #[arg(long)]
    cycles: Option<usize>,
    /// Namespaces of the parallel scenario (default 100; smoke 10).
    #[arg(long)]
    namespaces: Option<usize>,
    /// ADDs (and DELs) in flight in the parallel scenario.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Rounds of the parallel scenario (default 3; smoke 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// A tiny run (well under a minute) for tests.
    #[arg(long)]
    smoke: bool,
    /// Plugin of the scale scenario: bridge (at most 1000: a bridge holds
    /// 1023 ports) or ptp; auto picks bridge up to 1000, ptp above.
    #[arg(long, default_value = "auto")]
    scale_plugin: String,
    /// Scenarios to run, e.g. `1,5,6` (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// Ferry's multi-call plugin binary (default: build it with cargo next
    /// to this binary and use that).
    #[arg(long)]
    ferry_plugin: Option<PathBuf>,
    /// ferryd, for scenario 7 (default: build it with cargo next to this
    /// binary and use that).
    #[arg(long)]
    ferryd: Option<PathBuf>,
    /// `docker run --rm` cycles per network in scenario 7 (default 50; smoke 3).
    #[arg(long)]
    cnm_cycles: Option<usize>,
    /// RequestAddress calls on one pool in scenario 9 (default 10000; smoke 200).
    #[arg(long)]
    ipam_requests: Option<usize>,
    /// Attachments timed in scenario 10, the overlay (default 100; smoke 5).
    #[arg(long)]
    overlay_attachments: Option<usize>,
    /// Seconds of each dnsperf run in scenario 11, DNS (default 5; smoke 1).
    #[arg(long)]
    dns_seconds: Option<u64>,
    /// Concurrent requests of scenario 23's burst on ferryd's sockets
    /// (default 1000; smoke 100).
    #[arg(long)]
    socket_requests: Option<usize>,
    /// The reference plugins.
    #[arg(long, default_value = "/usr/lib/cni")]
    reference: PathBuf,
    /// netavark.
    #[arg(long, default_value = "/usr/lib/podman/netavark")]
    netavark: PathBuf,
    /// Crash points instead of the scenarios: N iterations per chain
    /// (bridge+host-local, the full chain) and killed verb (ADD, DEL), for
    /// Ferry and the reference; writes chaos.md and chaos.json.
    #[arg(long, value_name = "N")]
    chaos: Option<usize>,
    /// Seed of the chaos mode's kill moments (default: from the clock).
    #[arg(long)]
    chaos_seed: Option<u64>,
    /// Chaos mode without the reference plugins (CI).
    #[arg(long)]
    chaos_skip_reference: bool,
    /// The 4-character tag in every name (default: random).
    #[arg(long)]
    tag: Option<String>,
}

fn main() {
    if let Some(code) = floor::dispatch_argv0() {
        std::process::exit(code);
    }
    if let Some(code) = chaos::dispatch_child() {
        std::process::exit(code);
    }
    let opts = Opts::parse();
    std::process::exit(run(opts));
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn machine() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
        .unwrap_or_default();
    let os = read("/etc/os-release")
        .lines()
        .find(|l| l.starts_with("PRETTY_NAME="))
        .map(|l| {
            l.trim_start_matches("PRETTY_NAME=")
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_default();
    vec![
        (
            "kernel".into(),
            first_line(&read("/proc/sys/kernel/osrelease")),
        ),
        ("OS".into(), os),
        ("CPU".into(), model),
        ("cores".into(), cores),
        ("memory".into(), mem),
        (
            "load average at start".into(),
            first_line(&read("/proc/loadavg")),
        ),
    ]
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn ferry_version() -> String {
    let root = workspace_root();
    let git = util::output(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "describe",
            "--always",
            "--dirty",
        ],
    )
    .map(|s| format!("git {}", first_line(&s)))
    .unwrap_or_else(|| format!("source tree {}, not a git checkout", root.display()));
    format!("ferry-plugins {} ({git})", env!("CARGO_PKG_VERSION"))
}

fn reference_version(dir: &Path) -> String {
    let pkg = util::output(
        "dpkg-query",
        &["-W", "-f", "${Version}", "containernetworking-plugins"],
    )
    .unwrap_or_default();
    // The reference plugins print "CNI bridge plugin vX.Y.Z" when run bare.
    let about = Command::new(dir.join("bridge"))
        .env_clear()
        .output()
        .map(|o| first_line(&String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default();
    format!(
        "{about} (Debian containernetworking-plugins {pkg}) in {}",
        dir.display()
    )
}

/// A binary of this workspace: `given` (its option), else built by cargo
/// (same profile and target dir as this binary) and taken from next to it.
fn sibling_binary(
    given: Option<&PathBuf>,
    option: &str,
    package: &str,
    bin: &str,
) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return p
            .canonicalize()
            .map_err(|e| format!("{option} {}: {e}", p.display()));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory for this executable")?;
    let candidate = dir.join(bin);
    let profile_dir = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    // Binaries sit in <target>/<profile>, or in <target>/<tuple>/<profile>
    // with an explicit build target (.cargo/config.toml). Cargo marks both
    // <target> and <target>/<tuple> with CACHEDIR.TAG: take the outer one.
    let tagged = |d: &&Path| d.join("CACHEDIR.TAG").exists();
    let target_dir = dir
        .ancestors()
        .skip(1)
        .take(2)
        .filter(tagged)
        .last()
        .or(dir.parent());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = workspace_root().join("Cargo.toml");
    if let (Some(profile), Some(target)) = (profile_dir, target_dir) {
        if manifest.exists() {
            let mut cmd = Command::new(&cargo);
            // From the workspace root, so cargo reads its .cargo/config.toml.
            cmd.current_dir(workspace_root());
            cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
                .arg("--manifest-path")
                .arg(&manifest)
                .arg("--target-dir")
                .arg(target);
            if profile == "release" {
                cmd.arg("--release");
            } else if profile != "debug" {
                cmd.args(["--profile", &profile]);
            }
            eprintln!("ferry-bench: building {bin} ({profile}) with cargo");
            match cmd.status() {
                Ok(s) if s.success() => {}
                Ok(s) => return Err(format!("cargo build of {bin} failed ({s})")),
                Err(e) if candidate.exists() => {
                    eprintln!(
                        "ferry-bench: cannot run cargo ({e}); using {}",
                        candidate.display()
                    )
                }
                Err(e) => return Err(format!("cannot run cargo to build {bin}: {e}")),
            }
        }
    }
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(format!(
            "no {bin} next to {}; build it or pass {option}",
            exe.display()
        ))
    }
}

/// A CNI_PATH dir: every REGISTRY type -> Ferry's binary, the rest -> reference.
fn ferry_dir(work: &Path, bin: &Path, reference: Option<&Path>) -> Result<PathBuf, String> {
    let dir = work.join("ferry-bin");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for e in ferry_plugins::REGISTRY {
        std::os::unix::fs::symlink(bin, dir.join(e.name)).map_err(|e| e.to_string())?;
    }
    if let Some(r) = reference {
        for entry in std::fs::read_dir(r).map_err(|e| e.to_string())?.flatten() {
            let target = dir.join(entry.file_name());
            if !target.exists() {
                std::os::unix::fs::symlink(entry.path(), target).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(dir)
}

fn floor_dir(work: &Path) -> Result<PathBuf, String> {
    let dir = work.join("floor-bin");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for name in [floor::BRIDGE_HALF, floor::IPAM_HALF] {
        std::os::unix::fs::symlink(&exe, dir.join(name)).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

fn now_utc() -> String {
    util::output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        .map(|s| first_line(&s))
        .unwrap_or_default()
}

fn run(opts: Opts) -> i32 {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("ferry-bench: must run as root (it creates namespaces, links and rules)");
        return 2;
    }
    cleanup::install_stop_handler();
    let smoke = opts.smoke;
    let scale = opts.scale.unwrap_or(if smoke { 20 } else { 1000 });
    let scale_plugin = match opts.scale_plugin.as_str() {
        "auto" if scale <= 1000 => "bridge".to_string(),
        "auto" => "ptp".to_string(),
        p @ ("bridge" | "ptp") => p.to_string(),
        other => {
            eprintln!("ferry-bench: --scale-plugin {other:?}: use auto, bridge or ptp");
            return 2;
        }
    };
    let sizes = Sizes {
        cycles: opts.cycles.unwrap_or(if smoke { 5 } else { 200 }),
        namespaces: opts.namespaces.unwrap_or(if smoke { 10 } else { 100 }),
        parallel: opts.parallel.max(1),
        rounds: opts.rounds.unwrap_or(if smoke { 1 } else { 3 }).max(1),
        scale,
        scale_plugin,
        cnm_cycles: opts.cnm_cycles.unwrap_or(if smoke { 3 } else { 50 }),
        ipam_requests: opts
            .ipam_requests
            .unwrap_or(if smoke { 200 } else { 10_000 })
            .max(1),
        overlay_attachments: opts
            .overlay_attachments
            .unwrap_or(if smoke { 5 } else { 100 })
            .max(1),
        dns_seconds: opts.dns_seconds.unwrap_or(if smoke { 1 } else { 5 }).max(1),
        socket_requests: opts
            .socket_requests
            .unwrap_or(if smoke { 100 } else { 1000 })
            .max(100),
    };
    let tag = match &opts.tag {
        Some(t) if t.len() == 4 && t.chars().all(|c| c.is_ascii_alphanumeric()) => t.to_lowercase(),
        Some(t) => {
            eprintln!("ferry-bench: --tag {t:?}: give 4 letters or digits");
            return 2;
        }
        None => util::make_tag(),
    };
    let work = PathBuf::from("/run/ferry-bench").join(&tag);
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("ferry-bench: create {}: {e}", work.display());
        return 2;
    }
    let janitor = cleanup::Janitor::default();
    util::own_dir(&janitor, &work);
    util::own_new_firewall_tables(&janitor);
    util::own_forward_rule(&janitor);

    let mut run_notes: Vec<String> = Vec::new();
    let reference = opts
        .reference
        .join("bridge")
        .exists()
        .then(|| opts.reference.clone());
    if reference.is_none() {
        run_notes.push(format!(
            "reference plugins not found in {}: reference skipped (apt-get install containernetworking-plugins)",
            opts.reference.display()
        ));
    }
    let netavark = opts.netavark.exists().then(|| opts.netavark.clone());
    let wanted = |num: u8| {
        opts.chaos.is_none() && opts.only.is_empty()
            || opts.only.contains(&num)
            || (num == 1 && opts.only.contains(&8))
    };
    let mut s7_notes = Vec::new();
    let ferryd = if wanted(7) || wanted(9) || wanted(10) || wanted(11) || wanted(23) {
        match sibling_binary(opts.ferryd.as_ref(), "--ferryd", "ferryd", "ferryd") {
            Ok(p) => Some(p),
            Err(e) => {
                s7_notes.push(format!("skipped: ferryd not available: {e}"));
                None
            }
        }
    } else {
        None
    };
    let plugin = sibling_binary(
        opts.ferry_plugin.as_ref(),
        "--ferry-plugin",
        "ferry-plugins",
        "ferry-plugin",
    );
    let (ferry_dir, ferry_ver) = match plugin {
        Ok(bin) => match ferry_dir(&work, &bin, reference.as_deref()) {
            Ok(d) => (Some(d), format!("{} at {}", ferry_version(), bin.display())),
            Err(e) => {
                run_notes.push(format!("Ferry skipped: {e}"));
                (None, "not available".into())
            }
        },
        Err(e) => {
            run_notes.push(format!("Ferry skipped: {e}"));
            (None, "not available".into())
        }
    };
    let floor_dir = match floor_dir(&work) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ferry-bench: {e}");
            let _ = janitor.run_all();
            return 2;
        }
    };
    let mut peers = vec![("Ferry".to_string(), ferry_ver)];
    peers.push((
        "reference".into(),
        reference
            .as_deref()
            .map(reference_version)
            .unwrap_or_else(|| "missing: skipped".into()),
    ));
    peers.push((
        "netavark".into(),
        match &netavark {
            Some(n) => util::output(&n.display().to_string(), &["--version"])
                .map(|s| format!("{} at {}", first_line(&s), n.display()))
                .unwrap_or_else(|| n.display().to_string()),
            None => format!(
                "missing ({}): skipped (apt-get install netavark)",
                opts.netavark.display()
            ),
        },
    ));
    if wanted(7) {
        peers.push((
            "Docker (scenario 7)".into(),
            util::output(docker::DOCKERD, &["--version"])
                .map(|v| format!("{} (private daemon started by the bench)", first_line(&v)))
                .unwrap_or_else(|| {
                    format!(
                        "{} missing: skipped (apt-get install docker.io)",
                        docker::DOCKERD
                    )
                }),
        ));
    }
    if let Some(f) = &ferryd {
        peers.push(("ferryd (scenarios 7, 9)".into(), f.display().to_string()));
    }
    peers.push((
        "runtime".into(),
        "ferry-cni CniConfig (in the bench process) for Ferry, reference and floor-procs".into(),
    ));
    let mut mach = machine();
    let ctx = Ctx::new(
        tag,
        work,
        ferry_dir,
        reference,
        floor_dir,
        netavark,
        ferryd,
        sizes.clone(),
        janitor,
    );
    for n in run_notes {
        ctx.note("run", n);
    }
    for n in s7_notes {
        for (num, s) in [
            (7, scenarios::S7),
            (9, scenarios::S9),
            (10, scenarios::S10),
            (11, dns::S11),
            (23, socket_load::S23),
        ] {
            if wanted(num) {
                ctx.note(s, n.clone());
            }
        }
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let date = now_utc();
    if let Some(n) = opts.chaos {
        return chaos_main(&ctx, &opts, n, &command, &date, &mach);
    }

    type Scenario = fn(&Ctx) -> Result<(), String>;
    let list: [(u8, &str, Scenario); 12] = [
        (1, scenarios::S1, scenarios::bridge),
        (2, scenarios::S2, scenarios::chain),
        (3, scenarios::S3, scenarios::ptp),
        (4, scenarios::S4, scenarios::parallel_phases),
        (5, scenarios::S5, scenarios::scale),
        (6, scenarios::S6, rss::peak_rss),
        (7, scenarios::S7, scenarios::cnm),
        (9, scenarios::S9, scenarios::ipam),
        (10, scenarios::S10, overlay::overlay),
        (11, dns::S11, dns::dns),
        (12, reporting::S12, reporting::report_cost),
        (23, socket_load::S23, socket_load::sockets),
    ];
    let mut failures = Vec::new();
    for (num, name, f) in list {
        if !wanted(num) {
            continue;
        }
        if cleanup::stopped() {
            failures.push((name.to_string(), "not run: interrupted".to_string()));
            continue;
        }
        eprintln!("ferry-bench: scenario {name}");
        ctx.set_rule_baseline();
        let t = std::time::Instant::now();
        if let Err(e) = f(&ctx) {
            eprintln!("ferry-bench: scenario {name} failed: {e}");
            failures.push((name.to_string(), e));
        }
        eprintln!(
            "ferry-bench: scenario {name} took {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    mach.push((
        "load average at end".into(),
        first_line(&std::fs::read_to_string("/proc/loadavg").unwrap_or_default()),
    ));
    let cleanup_problems = ctx.janitor.run_all();
    let _ = std::fs::remove_dir("/run/ferry-bench");

    let rows = ctx.rows();
    let meta = report::Meta {
        command,
        date,
        machine: mach,
        peers,
        sizes: format!(
            "{} cycles, {} namespaces × {} in parallel × {} rounds, scale {} ({}), {} CNM cycles, {} IPAM requests, smoke: {}",
            sizes.cycles,
            sizes.namespaces,
            sizes.parallel,
            sizes.rounds,
            sizes.scale,
            sizes.scale_plugin,
            sizes.cnm_cycles,
            sizes.ipam_requests,
            smoke
        ),
        notes: ctx.notes(),
        failures: failures.clone(),
        cleanup: cleanup_problems.clone(),
    };
    let md = report::markdown(&rows, &meta) + &socket_load::markdown(&rows);
    println!("{md}");
    let write = |name: &str, body: String| -> Result<(), String> {
        let p = opts.out.join(name);
        std::fs::write(&p, body).map_err(|e| format!("write {}: {e}", p.display()))
    };
    let written = std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("create {}: {e}", opts.out.display()))
        .and_then(|_| write("report.md", md))
        .and_then(|_| write("results.csv", report::csv(&rows)))
        .and_then(|_| write("scale.svg", report::svg(&rows)));
    if let Err(e) = written {
        eprintln!("ferry-bench: {e}");
        return 1;
    }
    eprintln!(
        "ferry-bench: wrote {}/{{report.md,results.csv,scale.svg}}",
        opts.out.display()
    );
    if !failures.is_empty() || !cleanup_problems.is_empty() {
        1
    } else {
        0
    }
}

/// `--chaos N`: the crash-point run, its report on stdout and in
/// `OUT/chaos.{md,json}`. Exit 1 when the harness itself failed (leftovers
/// are its findings, in the report).
fn chaos_main(
    ctx: &Ctx,
    opts: &Opts,
    n: usize,
    command: &str,
    date: &str,
    mach: &[(String, String)],
) -> i32 {
    let seed = opts.chaos_seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let t = std::time::Instant::now();
    let result = chaos::run(ctx, n, seed, !opts.chaos_skip_reference);
    let took = t.elapsed().as_secs_f64();
    let cleanup_problems = ctx.janitor.run_all();
    let _ = std::fs::remove_dir("/run/ferry-bench");
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferry-bench: chaos run failed: {e}");
            for p in cleanup_problems {
                eprintln!("ferry-bench: cleanup: {p}");
            }
            return 1;
        }
    };
    let mut header = format!("`{command}`, {date}, seed {seed}, {took:.0} s\n\n");
    for (k, v) in mach {
        header.push_str(&format!("- {k}: {v}\n"));
    }
    for (_, note) in ctx.notes() {
        header.push_str(&format!("- {note}\n"));
    }
    let md = chaos::markdown(&stats, &header);
    println!("{md}");
    let json = serde_json::json!({"seed": seed, "seconds": took, "runs": chaos::to_json(&stats)});
    let written = std::fs::create_dir_all(&opts.out)
        .and_then(|_| std::fs::write(opts.out.join("chaos.md"), &md))
        .and_then(|_| std::fs::write(opts.out.join("chaos.json"), json.to_string()));
    if let Err(e) = written {
        eprintln!("ferry-bench: write {}: {e}", opts.out.display());
        return 1;
    }
    if !cleanup_problems.is_empty() {
        for p in cleanup_problems {
            eprintln!("ferry-bench: cleanup: {p}");
        }
        return 1;
    }
    0
}
