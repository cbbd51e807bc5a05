//! `dhcp daemon`: holds the leases of every attachment, renews them at T1,
//! rebinds at T2, acquires again after a NAK or expiry, moves the
//! container's interface when the lease's address or router changes, and
//! keeps each lease in a file of its state directory so that a restarted
//! daemon reloads and keeps renewing them. One thread per connection and one
//! per lease. Run by `contrib/systemd/ferry-dhcp.service`.
//!
//! Flags, as the reference's: `-socketpath PATH` (default
//! `/run/cni/dhcp.sock`), `-timeout DURATION` (acquisition, default 10s),
//! `-broadcast`, `-pidfile PATH`; Ferry's own: `-statedir DIR` (default
//! `/var/lib/cni/dhcp`).
//!
//! It logs through `tracing` to stderr (the journal under systemd): one event
//! per request with its duration and outcome, and the renewals. `RUST_LOG`
//! sets the level (default `info`; `status` requests log at `debug`). The
//! subscriber is installed by [`init_logging`] in daemon mode only: the
//! plugin verbs never set one up.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ferry_cni::error::code;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use ferry_drivers::link::iface::{self, Address, InterfaceConfig, RouteConfig};
use ipnet::IpNet;

use super::client::{self, unix_now, Params, Renewed};
use super::proto::{Lease, Reply, Request};
use super::{parse_duration, DEFAULT_SOCKET};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/dhcp";

/// The daemon's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub timeout: Duration,
    pub broadcast: bool,
    pub pidfile: Option<PathBuf>,
}

impl Settings {
    /// Parses the flags after `daemon` (`-flag value`, `--flag value` or `-flag=value`).
    pub fn parse(args: &[String]) -> Result<Settings, String> {
        let mut s = Settings {
            socket: PathBuf::from(DEFAULT_SOCKET),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            timeout: Duration::from_secs(10),
            broadcast: false,
            pidfile: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let flag = a.trim_start_matches('-');
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "broadcast" {
                s.broadcast = inline.as_deref().is_none_or(|v| v == "true");
                continue;
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("flag -{name} needs a value"))
            };
            match name {
                "socketpath" => s.socket = PathBuf::from(value()?),
                "statedir" => s.state_dir = PathBuf::from(value()?),
                "pidfile" => s.pidfile = Some(PathBuf::from(value()?)),
                "timeout" => s.timeout = parse_duration(&value()?)?,
                // Accepted for compatibility; Ferry's client resends with its own backoff.
                "resendmax" | "hostprefix" => {
                    value()?;
                }
                _ => return Err(format!("unknown flag {a:?}")),
            }
        }
        Ok(s)
    }
}

/// Stops one lease's renewal thread.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    fn stop(&self) {
        if let Ok(mut s) = self.stopped.lock() {
            *s = true;
        }
        self.cv.notify_all();
    }

    /// Waits until unix time `until`; true when stopped meanwhile.
    fn wait_until(&self, until: u64) -> bool {
        let Ok(mut stopped) = self.stopped.lock() else {
            return true;
        };
        loop {
            if *stopped {
                return true;
            }
            let now = unix_now();
            if now >= until {
                return false;
            }
            let wait = Duration::from_secs((until - now).min(3600));
            stopped = match self.cv.wait_timeout(stopped, wait) {
                Ok((g, _)) => g,
                Err(_) => return true,
            };
        }
    }
}

struct Held {
    lease: Lease,
    stop: Arc<Stop>,
}

struct Daemon {
    leases: Mutex<HashMap<String, Held>>,
    settings: Settings,
}

/// The key of an attachment: container, network, interface.
fn key(container_id: &str, network: &str, ifname: &str) -> String {
    format!("{container_id}/{network}/{ifname}")
}

/// Installs the stderr subscriber of daemon mode: `RUST_LOG` directives,
/// else `info`. No ANSI colours: the journal keeps the text as written.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

impl Daemon {
    fn file(&self, key: &str) -> PathBuf {
        let digest = Sha256::digest(key.as_bytes());
        let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.settings.state_dir.join(format!("{name}.json"))
    }

    fn persist(&self, key: &str, l: &Lease) -> Result<(), String> {
        let path = self.file(key);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(l).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing lease file {}: {e}", path.display()))
    }

    fn get(&self, key: &str) -> Option<Lease> {
        self.leases.lock().ok()?.get(key).map(|h| h.lease.clone())
    }

    /// Starts holding `lease`: the file, the table, the renewal thread.
    fn hold(self: &Arc<Self>, key: String, lease: Lease) -> Result<(), String> {
        self.persist(&key, &lease)?;
        let stop = Arc::new(Stop::default());
        let old = self
            .leases
            .lock()
            .map_err(|_| "lease table poisoned".to_string())?
            .insert(
                key.clone(),
                Held {
                    lease,
                    stop: stop.clone(),
                },
            );
        if let Some(old) = old {
            old.stop.stop();
        }
        let d = self.clone();
        std::thread::spawn(move || d.maintain(&key, &stop));
        Ok(())
    }

    /// Stops holding the lease of `key`; RELEASE to the server.
    fn drop_lease(&self, key: &str) {
        let held = self.leases.lock().ok().and_then(|mut m| m.remove(key));
        let _ = std::fs::remove_file(self.file(key));
        if let Some(h) = held {
            h.stop.stop();
            if let Err(e) = client::release(&h.lease) {
                warn!(attachment = key, address = %h.lease.grant.address, error = %e, "RELEASE failed");
            }
        }
    }

    /// The renewal loop of one lease: renew at T1, rebind at T2, acquire
    /// again once expired; retry a failure after half the time left to the
    /// next step (1 s to 60 s).
    fn maintain(&self, key: &str, stop: &Stop) {
        loop {
            let Some(l) = self.get(key) else { return };
            if stop.wait_until(l.t1) {
                return;
            }
            let now = unix_now();
            let timeout = Duration::from_millis(l.timeout_ms.max(1000));
            let acquire = || {
                client::acquire(&Params {
                    netns: &l.netns,
                    ifname: &l.ifname,
                    request: &l.request,
                    provide: &l.provide,
                    timeout,
                })
            };
            let outcome = if now < l.expires {
                let rebind = now >= l.t2;
                match client::renew(&l, rebind, timeout.min(Duration::from_secs(5))) {
                    Ok(Renewed::Ack(ack)) => Ok(ack),
                    // RFC 2131 4.4.5: a NAK sends the client back to INIT.
                    Ok(Renewed::Nak(why)) => {
                        info!(attachment = key, address = %l.grant.address, reason = %why, "renewal refused (NAK); acquiring anew");
                        acquire()
                    }
                    Err(e) => Err(e),
                }
            } else {
                acquire()
            };
            if stop.wait_until(0) {
                return;
            }
            match outcome {
                Ok(ack) => {
                    let mut next = l.clone();
                    ack.apply(&mut next);
                    if next.grant.address != l.grant.address || next.grant.router != l.grant.router
                    {
                        follow(key, &l, &next);
                    }
                    if let Err(e) = self.persist(key, &next) {
                        warn!(attachment = key, error = %e, "renewed lease not saved");
                    }
                    debug!(attachment = key, address = %next.grant.address, expires = next.expires, "renewed");
                    if let Ok(mut m) = self.leases.lock() {
                        if let Some(h) = m.get_mut(key) {
                            h.lease = next;
                        }
                    }
                }
                Err(e) => {
                    if !Path::new(&l.netns).exists() {
                        info!(attachment = key, netns = %l.netns, "namespace gone; lease forgotten");
                        self.forget(key);
                        return;
                    }
                    let next = if now < l.t2 {
                        l.t2
                    } else if now < l.expires {
                        l.expires
                    } else {
                        now + 20
                    };
                    let retry = (next.saturating_sub(now) / 2).clamp(1, 60);
                    warn!(attachment = key, address = %l.grant.address, error = %e, retry_seconds = retry, "renewal failed");
                    if stop.wait_until(unix_now() + retry) {
                        return;
                    }
                }
            }
        }
    }

    fn forget(&self, key: &str) {
        if let Ok(mut m) = self.leases.lock() {
            m.remove(key);
        }
        let _ = std::fs::remove_file(self.file(key));
    }

    /// Reloads the lease files of a previous run and resumes their renewal.
    fn reload(self: &Arc<Self>) {
        let Ok(dir) = std::fs::read_dir(&self.settings.state_dir) else {
            return;
        };
        for e in dir.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let lease: Lease = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(l) => l,
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "lease file ignored");
                    continue;
                }
            };
            let k = key(&lease.container_id, &lease.network, &lease.ifname);
            if !Path::new(&lease.netns).exists() {
                info!(attachment = k, netns = %lease.netns, "namespace gone; lease file dropped");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            info!(attachment = k, address = %lease.grant.address, "lease reloaded");
            if let Err(e) = self.hold(k.clone(), lease) {
                warn!(attachment = k, error = %e, "reloaded lease not held");
            }
        }
    }

    fn handle(self: &Arc<Self>, req: Request) -> Reply {
        let k = key(&req.container_id, &req.network, &req.ifname);
        let fail = |code: u32, msg: String| Reply {
            error: Some(msg),
            code,
            ..Reply::default()
        };
        match req.op.as_str() {
            "status" => Reply::default(),
            "add" => {
                if let Some(l) = self.get(&k) {
                    return Reply {
                        lease: Some(l),
                        ..Reply::default()
                    };
                }
                let timeout = match req.timeout_ms {
                    0 => self.settings.timeout,
                    ms => Duration::from_millis(ms),
                };
                let p = Params {
                    netns: &req.netns,
                    ifname: &req.ifname,
                    request: &req.request,
                    provide: &req.provide,
                    timeout,
                };
                let ack = match client::acquire(&p) {
                    Ok(a) => a,
                    Err(e) => {
                        return fail(
                            code::TRY_AGAIN_LATER,
                            format!("dhcp: no lease for {} in {}: {e}", req.ifname, req.netns),
                        )
                    }
                };
                let client_id = req
                    .provide
                    .iter()
                    .find(|(c, _)| *c == super::options::CLIENT_ID)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let mut lease = Lease {
                    container_id: req.container_id.clone(),
                    network: req.network.clone(),
                    netns: req.netns.clone(),
                    ifname: req.ifname.clone(),
                    client_id,
                    request: req.request.clone(),
                    provide: req.provide.clone(),
                    broadcast: req.broadcast || self.settings.broadcast,
                    timeout_ms: timeout.as_millis() as u64,
                    grant: ack.grant.clone(),
                    acquired: 0,
                    t1: 0,
                    t2: 0,
                    expires: 0,
                };
                ack.apply(&mut lease);
                if let Err(e) = self.hold(k.clone(), lease.clone()) {
                    let _ = client::release(&lease);
                    self.forget(&k);
                    return fail(code::INTERNAL, format!("dhcp: {e}"));
                }
                Reply {
                    lease: Some(lease),
                    ..Reply::default()
                }
            }
            "check" => match self.get(&k) {
                Some(l) => Reply {
                    lease: Some(l),
                    ..Reply::default()
                },
                None => fail(
                    code::INTERNAL,
                    format!("dhcp: the daemon holds no lease for {k}"),
                ),
            },
            "del" => {
                self.drop_lease(&k);
                Reply::default()
            }
            "gc" => {
                let stale: Vec<String> = self
                    .leases
                    .lock()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, h)| h.lease.network == req.network)
                            .filter(|(_, h)| {
                                let att = format!("{}:{}", h.lease.container_id, h.lease.ifname);
                                !req.valid.contains(&att)
                            })
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for k in stale {
                    info!(attachment = k, "released by GC");
                    self.drop_lease(&k);
                }
                Reply::default()
            }
            other => fail(code::INTERNAL, format!("unknown operation {other:?}")),
        }
    }

    fn serve_conn(self: &Arc<Self>, s: UnixStream) {
        let mut line = String::new();
        let Ok(mut w) = s.try_clone() else { return };
        // A connection that sends nothing (a liveness probe) is no request.
        if matches!(BufReader::new(s).read_line(&mut line), Ok(0) | Err(_)) {
            return;
        }
        let start = Instant::now();
        let (op, k, reply) = match serde_json::from_str::<Request>(&line) {
            Ok(req) => (
                req.op.clone(),
                key(&req.container_id, &req.network, &req.ifname),
                self.handle(req),
            ),
            Err(e) => (
                "invalid".to_string(),
                String::new(),
                Reply {
                    error: Some(format!("bad request: {e}")),
                    code: code::DECODING_FAILURE,
                    ..Reply::default()
                },
            ),
        };
        log_request(&op, &k, &reply, start.elapsed());
        if let Ok(mut bytes) = serde_json::to_vec(&reply) {
            bytes.push(b'\n');
            let _ = w.write_all(&bytes);
        }
    }
}

/// The one event of a request: operation, attachment, duration, outcome.
fn log_request(op: &str, attachment: &str, reply: &Reply, took: Duration) {
    let duration_ms = took.as_secs_f64() * 1e3;
    let address = reply.lease.as_ref().map(|l| l.grant.address.to_string());
    match &reply.error {
        Some(e) => warn!(
            op,
            attachment,
            duration_ms,
            outcome = "error",
            code = reply.code,
            error = %e,
            "request"
        ),
        // Runtimes poll STATUS; keep it out of the default level.
        None if op == "status" => debug!(op, duration_ms, outcome = "ok", "request"),
        None => info!(
            op,
            attachment,
            duration_ms,
            outcome = "ok",
            address = address.as_deref().unwrap_or(""),
            "request"
        ),
    }
}

/// A renewal brought another address or router: the container's interface
/// follows (address replaced, routes via the new router).
fn follow(key: &str, old: &Lease, new: &Lease) {
    let iface = |l: &Lease| InterfaceConfig {
        addresses: vec![Address {
            net: IpNet::V4(l.grant.address),
            gateway: l.grant.router.map(IpAddr::V4),
        }],
        routes: super::result_of(l)
            .routes
            .iter()
            .map(|r| RouteConfig::new(r.dst, r.gw))
            .collect(),
    };
    match iface::follow_lease(&new.netns, &new.ifname, &iface(old), &iface(new)) {
        Ok(()) => info!(
            attachment = key,
            from = %old.grant.address,
            old_router = ?old.grant.router,
            to = %new.grant.address,
            router = ?new.grant.router,
            "lease changed; the interface follows"
        ),
        Err(e) => warn!(
            attachment = key,
            to = %new.grant.address,
            ifname = %new.ifname,
            error = %e,
            "lease changed; the interface could not follow"
        ),
    }
}

/// Runs the daemon until killed.
pub fn run(settings: Settings) -> Result<(), String> {
    let notify = systemd::notifier()?;
    ferry_linux::fs::create_state_dir(&settings.state_dir, 0o755)
        .map_err(|e| format!("state directory {}: {e}", settings.state_dir.display()))?;
    if let Some(dir) = settings.socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // A socket file nobody answers on is left over from a killed daemon.
    if settings.socket.exists() {
        if UnixStream::connect(&settings.socket).is_ok() {
            return Err(format!(
                "a daemon already serves {}",
                settings.socket.display()
            ));
        }
        let _ = std::fs::remove_file(&settings.socket);
    }
    let listener = UnixListener::bind(&settings.socket)
        .map_err(|e| format!("listening on {}: {e}", settings.socket.display()))?;
    if let Some(p) = &settings.pidfile {
        std::fs::write(p, std::process::id().to_string())
            .map_err(|e| format!("pidfile {}: {e}", p.display()))?;
    }
    let d = Arc::new(Daemon {
        leases: Mutex::new(HashMap::new()),
        settings,
    });
    d.reload();
    info!(socket = %d.settings.socket.display(), "serving");
    if let Some(n) = notify {
        systemd::serving(n, &d)?;
    }
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                let d = d.clone();
                std::thread::spawn(move || d.serve_conn(s));
            }
            Err(e) => warn!(error = %e, "accept failed"),
        }
    }
    Ok(())
}

/// The daemon under a `Type=notify` unit (nothing without `NOTIFY_SOCKET`):
/// READY=1 once the socket listens and the leases are reloaded, WATCHDOG=1
/// every half `WATCHDOG_USEC` while the lease table answers, STOPPING=1 on
/// SIGTERM before exiting 0 (the leases stay in their files).
mod systemd {
    use super::Daemon;
    use ferry_linux::notify::{watchdog_interval, Notifier};
    use nix::sys::signal::{SigSet, Signal};
    use std::sync::Arc;
    use tracing::{error, info, warn};

    /// The notifier, with SIGTERM blocked in this thread: call it before
    /// any thread starts so that every thread inherits the mask and the
    /// signal waits for [`serving`]'s thread.
    pub fn notifier() -> Result<Option<Arc<Notifier>>, String> {
        let n = Notifier::from_env().map_err(|e| format!("NOTIFY_SOCKET: {e}"))?;
        if n.is_some() {
            let mut term = SigSet::empty();
            term.add(Signal::SIGTERM);
            term.thread_block()
                .map_err(|e| format!("blocking SIGTERM: {e}"))?;
        }
        Ok(n.map(Arc::new))
    }

    fn send(n: &Notifier, state: &str) {
        if let Err(e) = n.send(state) {
            warn!(error = %e, state, "systemd notification failed");
        }
    }

    /// Tells systemd the daemon serves, and starts the SIGTERM and
    /// watchdog threads.
    pub fn serving(n: Arc<Notifier>, d: &Arc<Daemon>) -> Result<(), String> {
        let socket = d.settings.socket.clone();
        let waiter = n.clone();
        std::thread::Builder::new()
            .name("sigterm".into())
            .spawn(move || {
                let mut term = SigSet::empty();
                term.add(Signal::SIGTERM);
                if let Err(e) = term.wait() {
                    error!(error = %e, "waiting for SIGTERM");
                    return;
                }
                send(&waiter, "STOPPING=1");
                info!(signal = "SIGTERM", "shutting down");
                let _ = std::fs::remove_file(&socket);
                std::process::exit(0);
            })
            .map_err(|e| format!("SIGTERM thread: {e}"))?;
        let held = d.leases.lock().map(|l| l.len()).unwrap_or_default();
        send(&n, &format!("READY=1\nSTATUS=serving: {held} leases"));
        let Some(every) = watchdog_interval(|k| std::env::var(k).ok(), std::process::id()) else {
            return Ok(());
        };
        let d = d.clone();
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                // A lease table that cannot be locked stops the pings.
                match d.leases.lock() {
                    Ok(_) => send(&n, "WATCHDOG=1"),
                    Err(_) => error!("lease table poisoned: no watchdog ping"),
                }
            })
            .map_err(|e| format!("watchdog thread: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let a: Vec<String> = [
            "-socketpath",
            "/x.sock",
            "--statedir=/s",
            "-timeout",
            "3s",
            "-broadcast",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = Settings::parse(&a).unwrap();
        assert_eq!(s.socket, PathBuf::from("/x.sock"));
        assert_eq!(s.state_dir, PathBuf::from("/s"));
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert!(s.broadcast);
        assert!(Settings::parse(&["-bogus".to_string()]).is_err());
        assert!(Settings::parse(&["-socketpath".to_string()]).is_err());
    }

    /// The systemd unit runs the daemon with flags it accepts, on the
    /// reference's socket.
    #[test]
    fn systemd_unit_flags() {
        let unit = include_str!("../../../../contrib/systemd/ferry-dhcp.service");
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
        assert_eq!(words[..2], ["/opt/cni/bin/dhcp", "daemon"]);
        let s = Settings::parse(&words[2..]).unwrap();
        assert_eq!(s.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(s.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert!(unit.contains("StateDirectory=cni/dhcp"));
        // The daemon notifies systemd (READY=1, watchdog pings).
        assert!(unit.lines().any(|l| l == "Type=notify"));
        assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    }

    #[test]
    fn stop_interrupts_a_wait() {
        let s = Arc::new(Stop::default());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait_until(unix_now() + 30));
        std::thread::sleep(Duration::from_millis(50));
        s.stop();
        assert!(t.join().unwrap());
        assert!(!Stop::default().wait_until(0));
    }
}
