//! Scenario 11: DNS. `dnsperf` from a client namespace against three
//! servers, each serving one name (`target`) on its network and forwarding
//! the rest to a dnsmasq the bench starts (zone `fwd.test`):
//! - Ferry: ferryd's server on a Ferry network's gateway (198.19.50.0/24);
//! - aardvark-dns, driven as netavark drives it: a config directory with
//!   one file per network (first line: the listening gateway; then
//!   `ID IPv4 IPv6 NAMES`), port 53 on a bridge's gateway (198.19.51.0/24),
//!   the upstream from the namespace's resolv.conf;
//! - Docker's embedded resolver (127.0.0.11) in a container of a user
//!   network (198.19.52.0/24) of a private dockerd, `--dns` the dnsmasq;
//!   dnsperf runs in the container's namespace.
//!
//! Everything lives in a "host" namespace (ferryd, aardvark-dns, dockerd)
//! linked to dnsmasq's namespace (198.19.49.0/29). Rounds alternate the
//! servers; each run is `--dns-seconds` of queries of one kind (on-network
//! name, forwarded name). Measured: queries per second, p50/p99 latency
//! from dnsperf's per-query report (`-v`), and the answering process's CPU
//! time per query (ferryd, aardvark-dns, dockerd).

use crate::ctx::{Ctx, Row};
use crate::util;
use ferry_testkit::docker::Dockerd;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const S11: &str = "11-dns";
const UP_HOST: &str = "198.19.49.1";
const UPSTREAM: &str = "198.19.49.2";
const FERRY_NET: &str = "198.19.50.0/24";
const AARDVARK_GW: &str = "198.19.51.1";
const DOCKER_NET: &str = "198.19.52.0/24";
/// The servers, in report order.
pub const SERVERS: [&str; 3] = ["ferry", "aardvark-dns", "docker"];
/// The query kinds: the name on the network (the target's), a name the
/// server forwards.
pub const KINDS: [(&str, Option<&str>); 2] = [("local", None), ("forwarded", Some("www.fwd.test"))];

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where dnsperf runs and the server it asks.
struct Target {
    /// The command prefix that enters the client's namespace.
    enter: String,
    server: String,
    /// The process that answers (its CPU time is measured per query).
    pid: Option<u32>,
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's `(name)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map_err(|e| format!("sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Proc, String> {
    let f = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .process_group(0)
        .spawn()
        .map(Proc)
        .map_err(|e| format!("start {cmd:?}: {e}"))
}

/// Waits until `f` holds, up to `limit`.
fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `dig` from `enter` at `server`: does `name` answer?
fn answers(enter: &str, server: &str, name: &str) -> bool {
    sh(&format!(
        "{enter} dig +time=1 +tries=1 +short @{server} {name}"
    ))
    .is_ok_and(|o| !o.trim().is_empty())
}

pub fn dns(ctx: &Ctx) -> Result<(), String> {
    for bin in ["dnsperf", "dnsmasq", "dig"] {
        if util::output("sh", &["-c", &format!("command -v {bin}")]).is_none() {
            ctx.note(
                S11,
                format!(
                    "skipped: {bin} missing (apt-get install dnsperf dnsmasq-base bind9-dnsutils)"
                ),
            );
            return Ok(());
        }
    }
    let Some(ferryd) = ctx.ferryd.clone() else {
        return Ok(()); // main noted why
    };
    let dir = ctx.work.join("dns");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let host = ctx.name("dnh");
    let up = ctx.name("dnu");
    util::create_netns(&ctx.janitor, &host)?;
    util::create_netns(&ctx.janitor, &up)?;
    let (hv, uv) = (ctx.name("dnv0"), ctx.name("dnv1"));
    sh(&format!(
        "ip -n {host} link set lo up && ip -n {up} link set lo up && \
         ip -n {host} link add {hv} type veth peer name {uv} netns {up} && \
         ip -n {host} addr add {UP_HOST}/29 dev {hv} && ip -n {host} link set {hv} up && \
         ip -n {up} addr add {UPSTREAM}/29 dev {uv} && ip -n {up} link set {uv} up && \
         ip -n {up} route add 198.19.48.0/21 via {UP_HOST} && \
         ip netns exec {host} sysctl -qw net.ipv4.ip_forward=1"
    ))?;
    // The namespace's resolv.conf (`ip netns exec` mounts it): dnsmasq.
    let etc = PathBuf::from("/etc/netns").join(&host);
    util::own_dir(&ctx.janitor, &etc);
    std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
    std::fs::write(etc.join("resolv.conf"), format!("nameserver {UPSTREAM}\n"))
        .map_err(|e| e.to_string())?;
    let _dnsmasq = spawn(
        Command::new("ip")
            .args(["netns", "exec", &up, "dnsmasq", "--keep-in-foreground"])
            .args(["--no-resolv", "--no-hosts", "--port", "53", "--user=root"])
            .args(["--bind-interfaces", "--listen-address", UPSTREAM])
            .args(["--address=/fwd.test/198.19.49.9", "--server=/#/"])
            .args(["--cache-size=0"])
            .arg(format!("--pid-file={}/dnsmasq.pid", dir.display())),
        &dir.join("dnsmasq.log"),
    )?;
    let in_host = format!("ip netns exec {host}");
    until("dnsmasq answers", Duration::from_secs(10), || {
        answers(&in_host, UPSTREAM, "x.fwd.test")
    })?;

    let mut targets: Vec<(&str, Target)> = Vec::new();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    // One name for the target on every server (Ferry's sandboxes are host-wide).
    let target = ctx.name("dnt");
    match ferry(ctx, &dir, &ferryd, &host, &target) {
        Ok((t, k)) => {
            targets.push(("ferry", t));
            keep.push(k);
        }
        Err(e) => ctx.note(S11, format!("Ferry skipped: {e}")),
    }
    match aardvark(ctx, &dir, &host, &target) {
        Ok((t, k)) => {
            targets.push(("aardvark-dns", t));
            keep.push(k);
        }
        Err(e) => ctx.note(S11, format!("aardvark-dns skipped: {e}")),
    }
    match docker(ctx, &host, &target) {
        Ok((t, k)) => {
            targets.push(("docker", t));
            keep.push(k);
        }
        Err(e) => ctx.note(S11, format!("Docker skipped: {e}")),
    }
    let query = |fixed: Option<&str>| fixed.unwrap_or(&target).to_string();
    for (name, t) in &targets {
        for (kind, fixed) in KINDS {
            let q = query(fixed);
            until(
                &format!("{name} answers {kind} {q}"),
                Duration::from_secs(10),
                || answers(&t.enter, &t.server, &q),
            )
            .map_err(|e| {
                let dig = sh(&format!(
                    "{} dig +time=1 +tries=1 @{} {q}",
                    t.enter, t.server
                ));
                format!("{e}: {}", dig.unwrap_or_else(|e| e))
            })?;
        }
    }
    let secs = ctx.sizes.dns_seconds;
    for round in 0..ctx.sizes.rounds {
        for (name, t) in &targets {
            for (kind, fixed) in KINDS {
                crate::cleanup::check_stop()?;
                let cpu_before = t.pid.and_then(cpu_seconds);
                let run = dnsperf(&dir, t, &query(fixed), secs)?;
                ctx.record(S11, name, &format!("{kind}-qps"), round, 0, run.qps, "q/s");
                if let (Some(b), Some(a)) = (cpu_before, t.pid.and_then(cpu_seconds)) {
                    // The server's CPU per answered query: what bounds it when it is busy.
                    let us = (a - b) * 1e6 / (run.qps * secs as f64).max(1.0);
                    ctx.record(S11, name, &format!("{kind}-cpu"), round, 0, us, "us/query");
                }
                for (p, v) in [("p50", 50.0), ("p99", 99.0)] {
                    let ms = crate::report::percentile(&run.latencies_ms, v).unwrap_or(f64::NAN);
                    ctx.record(S11, name, &format!("{kind}-{p}"), round, 0, ms, "ms");
                }
                if run.lost > 0 {
                    ctx.note(
                        S11,
                        format!("{name} {kind} round {round}: {} queries lost", run.lost),
                    );
                }
            }
        }
    }
    drop(keep);
    Ok(())
}

/// One dnsperf run's numbers.
struct Run {
    qps: f64,
    lost: u64,
    latencies_ms: Vec<f64>,
}

/// `secs` seconds of `name A` against `t`, 2 clients, 64 queries in flight.
fn dnsperf(dir: &Path, t: &Target, name: &str, secs: u64) -> Result<Run, String> {
    let data = dir.join("queries");
    std::fs::write(&data, format!("{name} A\n")).map_err(|e| e.to_string())?;
    let out = sh(&format!(
        "{} dnsperf -s {} -d {} -l {secs} -c 2 -q 64 -t 2 -v",
        t.enter,
        t.server,
        data.display()
    ))?;
    let field = |key: &str| -> Option<f64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let qps =
        field("Queries per second:").ok_or_else(|| format!("no qps in dnsperf's output: {out}"))?;
    let lost = field("Queries lost:").unwrap_or(0.0) as u64;
    // `> NOERROR target A 0.000123`: the last field is the latency in seconds.
    let latencies_ms = out
        .lines()
        .filter(|l| l.starts_with('>'))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|s| s * 1000.0)
        .collect();
    Ok(Run {
        qps,
        lost,
        latencies_ms,
    })
}

/// ferryd in the host namespace, a Ferry network with `target` and the
/// client on it.
fn ferry(
    ctx: &Ctx,
    dir: &Path,
    ferryd: &Path,
    host: &str,
    target: &str,
) -> Result<(Target, Box<dyn std::any::Any>), String> {
    let fdir = dir.join("ferryd");
    std::fs::create_dir_all(&fdir).map_err(|e| e.to_string())?;
    let api = fdir.join("api.sock");
    // nsenter, not `ip netns exec`: the sandboxes ferryd mounts under
    // /run/netns must be seen outside (ip netns exec gives a mount namespace).
    let d = spawn(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{host}"))
            .arg(ferryd)
            .arg("--plugin-socket")
            .arg(fdir.join("plugin.sock"))
            .arg("--api-socket")
            .arg(&api)
            .arg("--state")
            .arg(fdir.join("ferryd.redb"))
            .args(["--default-address-pool", "base=198.19.50.0/24,size=24"])
            .args(["--metrics-socket"])
            .arg(fdir.join("metrics.sock"))
            .arg("--dns-resolv-conf")
            .arg(Path::new("/etc/netns").join(host).join("resolv.conf"))
            .args(["--log-level", "warn"]),
        &fdir.join("ferryd.log"),
    )?;
    until("ferryd's API", Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&api).is_ok()
    })?;
    let call =
        |verb: &str, path: &str, body: serde_json::Value| match ferry_testkit::docker::try_http(
            &api,
            verb,
            path,
            &body.to_string(),
        )? {
            (200, v) => Ok(v),
            (s, v) => Err(format!("{verb} {path}: HTTP {s}: {v}")),
        };
    let net = call(
        "POST",
        "/networks",
        serde_json::json!({"name": "dnsbench", "subnets": [FERRY_NET]}),
    )?;
    let gw = net["ipv4"][0]["Gateway"]
        .as_str()
        .and_then(|g| g.split('/').next())
        .ok_or_else(|| format!("no gateway: {net}"))?
        .to_string();
    let client = ctx.name("dnfc");
    for sb in [target.to_string(), client.clone()] {
        // ferryd makes the namespace; the janitor removes it.
        call("POST", "/sandboxes", serde_json::json!({ "name": sb }))?;
        util::own_netns(&ctx.janitor, &sb);
        call(
            "POST",
            "/connect",
            serde_json::json!({"network": "dnsbench", "sandbox": sb}),
        )?;
    }
    Ok((
        Target {
            enter: format!("ip netns exec {client}"),
            server: gw,
            pid: Some(d.0.id()),
        },
        Box::new(d),
    ))
}

/// aardvark-dns on a bridge of the host namespace, as netavark configures it.
fn aardvark(
    ctx: &Ctx,
    dir: &Path,
    host: &str,
    target: &str,
) -> Result<(Target, Box<dyn std::any::Any>), String> {
    let bin = Path::new("/usr/lib/podman/aardvark-dns");
    if !bin.exists() {
        return Err("/usr/lib/podman/aardvark-dns missing (apt-get install aardvark-dns)".into());
    }
    let client = ctx.name("dnac");
    util::create_netns(&ctx.janitor, &client)?;
    let (br, hv, cv) = (ctx.name("dnab"), ctx.name("dnav0"), ctx.name("dnav1"));
    sh(&format!(
        "ip -n {host} link add {br} type bridge && ip -n {host} addr add {AARDVARK_GW}/24 dev {br} && \
         ip -n {host} link set {br} up && \
         ip -n {host} link add {hv} type veth peer name {cv} netns {client} && \
         ip -n {host} link set {hv} master {br} up && \
         ip -n {client} addr add 198.19.51.2/24 dev {cv} && ip -n {client} link set {cv} up && \
         ip -n {client} link set lo up"
    ))?;
    let conf = dir.join("aardvark");
    std::fs::create_dir_all(&conf).map_err(|e| e.to_string())?;
    // netavark's format: gateways; then `ID IPV4S IPV6S NAMES` per container.
    std::fs::write(
        conf.join("dnsbench"),
        format!("{AARDVARK_GW}\n{} 198.19.51.3  {target}\n", "a".repeat(64)),
    )
    .map_err(|e| e.to_string())?;
    // `run` forks into the background, as netavark starts it.
    sh(&format!(
        "ip netns exec {host} {} --config {} -p 53 run",
        bin.display(),
        conf.display()
    ))?;
    let pid_file = conf.join("aardvark.pid");
    until("aardvark-dns's pid file", Duration::from_secs(5), || {
        pid_file.exists()
    })?;
    let pid = std::fs::read_to_string(&pid_file)
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    let stop = pid.clone();
    ctx.janitor
        .push(crate::cleanup::Stage::Daemon, "aardvark-dns", move || {
            sh(&format!("kill {stop}")).map(|_| ())
        });
    Ok((
        Target {
            enter: format!("ip netns exec {client}"),
            server: AARDVARK_GW.into(),
            pid: pid.parse().ok(),
        },
        Box::new(pid),
    ))
}

/// A private dockerd in the host namespace, `target` and a client container
/// on a user network; dnsperf runs in the client's namespace.
fn docker(ctx: &Ctx, host: &str, target: &str) -> Result<(Target, Box<dyn std::any::Any>), String> {
    if !Path::new(ferry_testkit::docker::DOCKERD).exists() {
        return Err("dockerd missing (apt-get install docker.io)".into());
    }
    // Docker's layers want a real filesystem: /var/tmp, as scenario 7.
    let ddir = PathBuf::from(format!("/var/tmp/ferry-bench-dns-{}", ctx.tag));
    util::own_dir(&ctx.janitor, &ddir);
    let d = Dockerd::try_start_in(Some(host), &ddir, &[])?;
    d.try_import_busybox("fbdns")?;
    let run = |args: &str| -> Result<String, String> {
        match d.try_run(args) {
            (true, out) => Ok(out.trim().to_string()),
            (false, out) => Err(format!("docker {args}: {out}")),
        }
    };
    run(&format!("network create --subnet {DOCKER_NET} dnsbench"))?;
    run(&format!(
        "run -d --name {target} --network dnsbench fbdns sleep 100000"
    ))?;
    run(&format!(
        "run -d --name client --network dnsbench --dns {UPSTREAM} fbdns sleep 100000"
    ))?;
    let pid = run("inspect -f '{{.State.Pid}}' client")?;
    // The embedded resolver runs inside dockerd.
    let dockerd = std::fs::read_to_string(ddir.join("dockerd.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    Ok((
        Target {
            enter: format!("nsenter --net=/proc/{pid}/ns/net"),
            server: "127.0.0.11".into(),
            pid: dockerd,
        },
        Box::new(d),
    ))
}

/// The scenario's report section: per server and kind, the median of the
/// rounds of qps, p50 and p99; Ferry's qps against each peer's.
pub fn markdown(rows: &[Row]) -> Option<String> {
    if !rows.iter().any(|r| r.scenario == S11) {
        return None;
    }
    let median = |part: &str, op: &str| -> Option<f64> {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| r.scenario == S11 && r.part == part && r.op == op)
            .map(|r| r.value)
            .collect();
        v.sort_by(f64::total_cmp);
        crate::report::percentile(&v, 50.0)
    };
    let fmt = |v: Option<f64>, digits: usize| {
        v.map(|v| format!("{v:.digits$}"))
            .unwrap_or_else(|| "—".into())
    };
    let mut w = String::new();
    let _ = writeln!(w, "\n## 11 DNS (dnsperf, median of rounds)\n");
    let _ = writeln!(
        w,
        "| server | names | queries/s | p50 ms | p99 ms | server CPU µs/query | Ferry's q/s ÷ this |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for (kind, _) in KINDS {
        let ferry = median("ferry", &format!("{kind}-qps"));
        for s in SERVERS {
            let qps = median(s, &format!("{kind}-qps"));
            let ratio = match (ferry, qps) {
                (Some(f), Some(q)) if q > 0.0 => format!("{:.2}×", f / q),
                _ => "—".into(),
            };
            let _ = writeln!(
                w,
                "| {s} | {kind} | {} | {} | {} | {} | {ratio} |",
                fmt(qps, 0),
                fmt(median(s, &format!("{kind}-p50")), 3),
                fmt(median(s, &format!("{kind}-p99")), 3),
                fmt(median(s, &format!("{kind}-cpu")), 1),
            );
        }
    }
    Some(w)
}
