//! Scenario 23: load on ferryd's two sockets (issue 16, part 3).
//!
//! 1. A burst: 1,000 requests started at once from 1,000 threads, each its
//!    own connection as Docker makes them. Plugin socket: endpoint lives
//!    (RequestAddress, CreateEndpoint, Join, Leave, DeleteEndpoint,
//!    ReleaseAddress, in order within a life) and `EndpointOperInfo`; API
//!    socket: `/connect` and `/disconnect` of sandboxes, `GET /networks`,
//!    `/endpoints`, `/pools`, `/sandboxes`. Latency per kind, throughput.
//! 2. Reads under write load: a few readers time `GET /networks` and
//!    `EndpointOperInfo` alone, then again while writers create and join
//!    endpoints with real veths. Goal: loaded p99 within 5x unloaded p99.
//!
//! Every request must succeed (each would alone); one that fails fails the
//! scenario with its answer. Addresses: 198.19.24.0/21 (pools below).

use crate::cleanup::Stage;
use crate::ctx::Ctx;
use crate::report::percentile;
use crate::util::{ms, own_link};
use ferry_testkit::docker::{try_http, Ferryd};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

pub const S23: &str = "23-sockets";

/// The Docker-side pool (plugin socket) and the API network's subnet.
const PLUGIN_POOL: &str = "198.19.24.0/23";
const API_SUBNET: &str = "198.19.26.0/24";
/// ferryd's default pools (unused by the requests, which name theirs).
const DEFAULT_POOL: &str = "base=198.19.28.0/22,size=24";

/// The burst's mix, per 100 requests: 8 plugin endpoint lives (6 requests
/// each), 4 API lives (connect, disconnect), 44 reads of 5 kinds.
const PLUGIN_LIVES: usize = 8;
const API_LIVES: usize = 4;
/// Reads under write load: readers and writers; each reader makes 15 reads
/// per 100 burst requests in each phase, one every 5 ms.
const READERS: usize = 4;
const WRITERS: usize = 4;
const READ_PACE: Duration = Duration::from_millis(5);

/// One timed request: kind, start (since the phase began) and latency.
struct Sample {
    kind: &'static str,
    start: Duration,
    took: Duration,
}

type Samples = Arc<Mutex<Vec<Sample>>>;

struct Rig {
    ferryd: Arc<Ferryd>,
    /// Docker's NetworkID on the plugin socket.
    net: String,
    pool_id: String,
    /// The API network's name.
    api_net: String,
    /// An endpoint that stays for `EndpointOperInfo`.
    fixed: String,
    tag: String,
}

impl Rig {
    fn ep(&self, what: &str, n: usize) -> String {
        format!("{:0<64}", format!("{}{what}{n:08x}", self.tag))
    }
}

/// One plugin call; an HTTP error or an `Err`/`Error` in the answer is an error.
fn call(f: &Ferryd, method: &str, body: Value) -> Result<Value, String> {
    let (status, v) = f.try_call(method, &body.to_string())?;
    let err = v["Err"].as_str().or(v["Error"].as_str()).unwrap_or("");
    if status != 200 || !err.is_empty() {
        return Err(format!("{method} {body}: {status} {v}"));
    }
    Ok(v)
}

/// One API call; a status other than 200 is an error.
fn api(f: &Ferryd, verb: &str, path: &str, body: Value) -> Result<Value, String> {
    let (status, v) = try_http(&f.api_socket, verb, path, &body.to_string())?;
    if status != 200 {
        return Err(format!("{verb} {path} {body}: {status} {v}"));
    }
    Ok(v)
}

/// Runs `f`, recording its latency under `kind`.
fn timed<T>(
    log: &Samples,
    t0: Instant,
    kind: &'static str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let start = t0.elapsed();
    let t = Instant::now();
    let r = f();
    let took = t.elapsed();
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Sample { kind, start, took });
    r
}

pub fn sockets(ctx: &Ctx) -> Result<(), String> {
    let Some(bin) = ctx.ferryd.clone() else {
        return Ok(()); // main noted why
    };
    crate::scenarios::with_ferryd(ctx, &bin, "s23", DEFAULT_POOL, |ferryd| {
        let rig = Arc::new(rig(ctx, ferryd.clone())?);
        let r = burst(ctx, &rig).and_then(|_| reads_under_writes(ctx, &rig));
        r.and(teardown(&rig))
    })
}

/// The networks on both sockets and the endpoint that stays.
fn rig(ctx: &Ctx, ferryd: Arc<Ferryd>) -> Result<Rig, String> {
    let tag: String = ctx.tag.bytes().map(|b| format!("{b:02x}")).collect();
    let net = format!("{:0<64}", format!("5b{tag}"));
    let pool = call(
        &ferryd,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "local", "Pool": PLUGIN_POOL}),
    )?;
    let pool_id = pool["PoolID"].as_str().unwrap_or_default().to_string();
    let gw = call(
        &ferryd,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    )?;
    let gateway = gw["Address"].as_str().unwrap_or_default();
    own_link(&ctx.janitor, &format!("fr-{}", &net[..12]));
    call(
        &ferryd,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": net, "IPv4Data": [{"AddressSpace": "local", "Pool": PLUGIN_POOL, "Gateway": gateway}]}),
    )?;
    let api_net = ctx.name("sbn");
    let n = api(
        &ferryd,
        "POST",
        "/networks",
        json!({"name": api_net, "subnets": [API_SUBNET]}),
    )?;
    if let Some(b) = n["bridge"].as_str() {
        own_link(&ctx.janitor, b);
    }
    let rig = Rig {
        ferryd,
        net,
        pool_id,
        api_net,
        fixed: String::new(),
        tag,
    };
    let fixed = rig.ep("f", 0);
    call(
        &rig.ferryd,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": rig.net, "EndpointID": fixed, "Interface": {}}),
    )?;
    Ok(Rig { fixed, ..rig })
}

/// One endpoint's life through the plugin socket, as Docker drives it.
fn plugin_life(rig: &Rig, ep: &str, log: &Samples, t0: Instant) -> Result<(), String> {
    let f = &rig.ferryd;
    let a = timed(log, t0, "RequestAddress", || {
        call(
            f,
            "IpamDriver.RequestAddress",
            json!({"PoolID": rig.pool_id}),
        )
    })?;
    let address = a["Address"].as_str().unwrap_or_default().to_string();
    let r = json!({"NetworkID": rig.net, "EndpointID": ep});
    timed(log, t0, "CreateEndpoint", || {
        call(
            f,
            "NetworkDriver.CreateEndpoint",
            json!({"NetworkID": rig.net, "EndpointID": ep, "Interface": {"Address": address}}),
        )
    })?;
    timed(log, t0, "Join", || {
        call(
            f,
            "NetworkDriver.Join",
            json!({"NetworkID": rig.net, "EndpointID": ep, "SandboxKey": format!("/var/run/docker/netns/{ep}"), "Options": {}}),
        )
    })?;
    timed(log, t0, "Leave", || {
        call(f, "NetworkDriver.Leave", r.clone())
    })?;
    timed(log, t0, "DeleteEndpoint", || {
        call(f, "NetworkDriver.DeleteEndpoint", r.clone())
    })?;
    timed(log, t0, "ReleaseAddress", || {
        call(
            f,
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": rig.pool_id, "Address": address}),
        )
    })?;
    Ok(())
}

/// One of the two timed reads; `i` picks which.
fn read(rig: &Rig, i: usize, log: &Samples, t0: Instant) -> Result<(), String> {
    let f = &rig.ferryd;
    if i.is_multiple_of(2) {
        timed(log, t0, "GET /networks", || {
            api(f, "GET", "/networks", Value::Null)
        })?;
    } else {
        let r = json!({"NetworkID": rig.net, "EndpointID": rig.fixed});
        timed(log, t0, "EndpointOperInfo", || {
            call(f, "NetworkDriver.EndpointOperInfo", r)
        })?;
    }
    Ok(())
}

/// Runs the jobs on threads of their own, all started together; the
/// errors of those that failed.
fn run_all(jobs: Vec<Box<dyn FnOnce() -> Result<(), String> + Send>>) -> Vec<String> {
    let gate = Arc::new(Barrier::new(jobs.len()));
    let threads: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let gate = gate.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    gate.wait();
                    job()
                })
        })
        .collect();
    let mut errors = Vec::new();
    for t in threads {
        match t.map_err(|e| e.to_string()).map(|t| t.join()) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => errors.push(e),
            Ok(Err(_)) => errors.push("a request thread panicked".into()),
            Err(e) => errors.push(format!("spawn: {e}")),
        }
    }
    errors
}

fn failed(what: &str, errors: &[String]) -> Result<(), String> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{what}: {} request(s) failed that succeed alone, e.g. {}",
        errors.len(),
        errors[..errors.len().min(3)].join("; ")
    ))
}

/// Part 1: 1,000 requests at once.
fn burst(ctx: &Ctx, rig: &Arc<Rig>) -> Result<(), String> {
    let hundreds = ctx.sizes.socket_requests / 100;
    let mut sandboxes = Vec::new();
    for i in 0..API_LIVES * hundreds {
        let name = format!("sb{}{i}", ctx.tag);
        // Created by ferryd; ours to remove if the run stops half-way.
        let n = name.clone();
        ctx.janitor
            .push(Stage::Netns, format!("namespace {name}"), move || {
                let _ = crate::util::output("ip", &["netns", "del", &n]);
                Ok(())
            });
        api(&rig.ferryd, "POST", "/sandboxes", json!({ "name": name }))?;
        sandboxes.push(name);
    }
    let log: Samples = Arc::default();
    let t0 = Instant::now();
    let mut jobs: Vec<Box<dyn FnOnce() -> Result<(), String> + Send>> = Vec::new();
    for i in 0..PLUGIN_LIVES * hundreds {
        let (rig, log) = (rig.clone(), log.clone());
        jobs.push(Box::new(move || {
            plugin_life(&rig, &rig.ep("b", i), &log, t0)
        }));
    }
    for sb in sandboxes.clone() {
        let (rig, log) = (rig.clone(), log.clone());
        jobs.push(Box::new(move || {
            let c = json!({"network": rig.api_net, "sandbox": sb});
            timed(&log, t0, "POST /connect", || {
                api(&rig.ferryd, "POST", "/connect", c.clone())
            })?;
            timed(&log, t0, "POST /disconnect", || {
                api(&rig.ferryd, "POST", "/disconnect", c)
            })?;
            Ok(())
        }));
    }
    let reads = (100 - 6 * PLUGIN_LIVES - 2 * API_LIVES) * hundreds;
    for i in 0..reads {
        let (rig, log) = (rig.clone(), log.clone());
        jobs.push(Box::new(move || {
            let (kind, path) = [
                ("GET /networks", "/networks"),
                ("GET /endpoints", "/endpoints"),
                ("GET /pools", "/pools"),
                ("GET /sandboxes", "/sandboxes"),
                ("EndpointOperInfo", ""),
            ][i % 5];
            if path.is_empty() {
                return read(&rig, 1, &log, t0);
            }
            timed(&log, t0, kind, || {
                api(&rig.ferryd, "GET", path, Value::Null)
            })
            .map(|_| ())
        }));
    }
    let errors = run_all(jobs);
    let wall = t0.elapsed();
    let samples = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
    let mut spans: Vec<(&str, Duration, Duration)> = Vec::new();
    for s in &samples {
        ctx.record(S23, "burst", s.kind, 0, 0, ms(s.took), "ms");
        let end = s.start + s.took;
        match spans.iter_mut().find(|(k, ..)| *k == s.kind) {
            Some((_, first, last)) => (*first, *last) = ((*first).min(s.start), (*last).max(end)),
            None => spans.push((s.kind, s.start, end)),
        }
    }
    // Throughput of a kind: its requests over the time from its first
    // start to its last answer.
    for (kind, first, last) in spans {
        ctx.record(S23, "burst-span", kind, 0, 0, ms(last - first), "ms");
    }
    ctx.record(
        S23,
        "burst",
        "requests",
        0,
        0,
        samples.len() as f64,
        "count",
    );
    ctx.record(S23, "burst", "wall", 0, 0, ms(wall), "ms");
    ctx.record(S23, "burst", "failed", 0, 0, errors.len() as f64, "count");
    for sb in &sandboxes {
        api(
            &rig.ferryd,
            "DELETE",
            &format!("/sandboxes/{sb}"),
            Value::Null,
        )?;
    }
    failed("burst", &errors)
}

/// Part 2: the two reads alone, then under endpoint create/join.
fn reads_under_writes(ctx: &Ctx, rig: &Arc<Rig>) -> Result<(), String> {
    let hundreds = ctx.sizes.socket_requests / 100;
    for loaded in [false, true] {
        let log: Samples = Arc::default();
        let writes: Samples = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let mut jobs: Vec<Box<dyn FnOnce() -> Result<(), String> + Send>> = Vec::new();
        for r in 0..READERS {
            let (rig, log, done) = (rig.clone(), log.clone(), done.clone());
            jobs.push(Box::new(move || {
                // Let the writers get going first.
                if loaded {
                    std::thread::sleep(Duration::from_millis(200));
                }
                // Paced, so that the reads span many writes.
                let res = (0..15 * hundreds).try_for_each(|i| {
                    std::thread::sleep(READ_PACE);
                    read(&rig, i + r, &log, t0)
                });
                done.store(true, Ordering::Relaxed);
                res
            }));
        }
        for w in 0..if loaded { WRITERS } else { 0 } {
            let (rig, log, done) = (rig.clone(), writes.clone(), done.clone());
            jobs.push(Box::new(move || {
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    plugin_life(&rig, &rig.ep("w", w * 100_000 + i), &log, t0)?;
                    i += 1;
                }
                Ok(())
            }));
        }
        let errors = run_all(jobs);
        let part = if loaded { "loaded" } else { "unloaded" };
        let samples = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
        for s in &samples {
            ctx.record(S23, part, s.kind, 0, 0, ms(s.took), "ms");
        }
        let writes = std::mem::take(&mut *writes.lock().unwrap_or_else(|p| p.into_inner()));
        // The writes that overlapped the reads.
        let from = samples.iter().map(|s| s.start).min().unwrap_or_default();
        let to = samples.iter().map(|s| s.start + s.took).max();
        let to = to.unwrap_or_default();
        for s in writes
            .iter()
            .filter(|s| s.start < to && s.start + s.took > from)
        {
            ctx.record(S23, "writes", s.kind, 0, 0, ms(s.took), "ms");
        }
        failed(part, &errors)?;
    }
    Ok(())
}

/// Removes what the rig made; what is left is an error.
fn teardown(rig: &Rig) -> Result<(), String> {
    let f = &rig.ferryd;
    let r = json!({"NetworkID": rig.net, "EndpointID": rig.fixed});
    call(f, "NetworkDriver.DeleteEndpoint", r)?;
    let eps = api(f, "GET", "/endpoints", Value::Null)?;
    if eps.as_array().is_some_and(|a| !a.is_empty()) {
        return Err(format!("endpoints left after the load: {eps}"));
    }
    call(
        f,
        "NetworkDriver.DeleteNetwork",
        json!({"NetworkID": rig.net}),
    )?;
    api(
        f,
        "DELETE",
        &format!("/networks/{}", rig.api_net),
        Value::Null,
    )?;
    Ok(())
}

/// The report's section: per kind n, p50, p99 and throughput; the reads'
/// p99 loaded against unloaded.
pub fn markdown(rows: &[crate::ctx::Row]) -> String {
    let values = |part: &str, op: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.scenario == S23 && r.part == part && r.op == op)
            .map(|r| r.value)
            .collect()
    };
    let one = |part: &str, op: &str| values(part, op).first().copied().unwrap_or(0.0);
    if !rows.iter().any(|r| r.scenario == S23) {
        return String::new();
    }
    let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    let mut md = String::from("\n## Scenario 23: load on ferryd's sockets\n\n");
    let wall = one("burst", "wall");
    md += &format!(
        "Burst: {} requests at once, {} failed, {:.0} ms wall, {:.0} requests/s.\n\n",
        one("burst", "requests"),
        one("burst", "failed"),
        wall,
        one("burst", "requests") / (wall / 1000.0).max(1e-9)
    );
    md += "| request | n | p50 ms | p99 ms | requests/s |\n|---|---|---|---|---|\n";
    let mut kinds: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| r.scenario == S23 && r.unit == "ms") {
        if r.part == "burst" && r.op != "wall" && !kinds.contains(&r.op.as_str()) {
            kinds.push(&r.op);
        }
    }
    for k in kinds {
        let v = values("burst", k);
        let span = one("burst-span", k) / 1000.0;
        md += &format!(
            "| {k} | {} | {} | {} | {:.0} |\n",
            v.len(),
            f(percentile(&v, 50.0)),
            f(percentile(&v, 99.0)),
            v.len() as f64 / span.max(1e-9)
        );
    }
    md +=
        "\nReads alone and under endpoint create/join (target: loaded p99 within 5x unloaded):\n\n";
    md += "| read | unloaded p50 | unloaded p99 | loaded p50 | loaded p99 | p99 ratio |\n|---|---|---|---|---|---|\n";
    for k in ["GET /networks", "EndpointOperInfo"] {
        let (u, l) = (values("unloaded", k), values("loaded", k));
        let ratio = percentile(&l, 99.0)
            .zip(percentile(&u, 99.0))
            .map(|(l, u)| l / u);
        md += &format!(
            "| {k} | {} | {} | {} | {} | {}x |\n",
            f(percentile(&u, 50.0)),
            f(percentile(&u, 99.0)),
            f(percentile(&l, 50.0)),
            f(percentile(&l, 99.0)),
            f(ratio)
        );
    }
    let w = values("writes", "CreateEndpoint");
    md += &format!(
        "\nWrites overlapping the loaded reads ({WRITERS} writers, endpoint lives with real veths): {} CreateEndpoint (p50 {} ms), {} Join (p50 {} ms).\n",
        w.len(),
        f(percentile(&w, 50.0)),
        values("writes", "Join").len(),
        f(percentile(&values("writes", "Join"), 50.0))
    );
    md
}
