//! Scenario 6: peak RSS of one ADD per plugin type, Ferry's and the
//! reference's. The plugin binary is run directly (CNI env + config on
//! stdin); its peak RSS is `VmHWM` read at its exit (see [`run_traced`] for
//! why not wait4's `ru_maxrss`). A delegating plugin (bridge, ptp, macvlan)
//! runs its IPAM plugin as a separate process, measured on its own as
//! host-local.

use crate::cleanup::check_stop;
use crate::ctx::Ctx;
use crate::peer::Part;
use crate::scenarios::S6;
use crate::util;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Output, exit status and peak RSS (KiB) of one plugin run.
struct Run {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: std::process::ExitStatus,
    mem: Mem,
}

/// Memory figures of a process at its exit stop, KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    /// Peak RSS (`VmHWM`).
    hwm: i64,
    /// Anonymous (heap, stacks, relocated data) and file-backed (the
    /// binary's and libraries' pages) parts of the RSS at exit.
    anon: i64,
    file: i64,
}

/// `VmHWM`, `RssAnon` and `RssFile` of `pid`, from /proc/PID/status.
fn mem_of(pid: libc::pid_t) -> Option<Mem> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<i64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Mem {
        hwm: field("VmHWM:")?,
        anon: field("RssAnon:").unwrap_or(0),
        file: field("RssFile:").unwrap_or(0),
    })
}

fn waitpid(pid: libc::pid_t) -> Result<libc::c_int, String> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is valid for writes; `pid` is our own child,
        // reaped only here (std's Child is never waited on).
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return Ok(status);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid {pid}: {err}"));
        }
    }
}

fn ptrace(req: libc::c_uint, pid: libc::pid_t, data: usize) -> Result<(), String> {
    // SAFETY: PTRACE_SETOPTIONS and PTRACE_CONT take no pointers (addr is
    // ignored, data is an integer); `pid` is our stopped tracee.
    let r = unsafe { libc::ptrace(req, pid, std::ptr::null_mut::<libc::c_void>(), data) };
    if r == -1 {
        return Err(format!(
            "ptrace({req}) on {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Runs `bin` with `env` and `stdin`, traced (PTRACE_TRACEME, then only the
/// exit event): at its PTRACE_EVENT_EXIT stop the process still has its
/// memory, and /proc/PID/status `VmHWM` is the peak RSS of the plugin image
/// itself.
///
/// Why not wait4's `ru_maxrss`: the kernel folds the high-water mark of the
/// address space that exec replaces into it, so a plugin forked from the
/// bench reports at least the bench's own RSS (every plugin read the same
/// 11 MiB in a first version of this scenario). Children the plugin starts
/// (its IPAM plugin) are not traced: they are measured on their own.
fn run_traced(bin: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Result<Run, String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes the ptrace(2) system call, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::ptrace(
                libc::PTRACE_TRACEME,
                0,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            );
            if r == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("run {}: {e}", bin.display()))?;
    let pid = child.id() as libc::pid_t;
    // The child is stopped by SIGTRAP right after its exec; pipes are
    // served by threads so a stopped tracee never blocks them.
    let input = stdin.to_vec();
    let writer = child.stdin.take().map(|mut p| {
        std::thread::spawn(move || {
            let _ = p.write_all(&input);
        })
    });
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = p.read_to_end(&mut buf);
                buf
            })
        })
    };
    let out_reader = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_reader = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );

    let mut hwm = None;
    let mut first = true;
    let status = loop {
        let st = waitpid(pid)?;
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            break st;
        }
        if !libc::WIFSTOPPED(st) {
            continue;
        }
        let sig = libc::WSTOPSIG(st);
        let event = (st >> 16) & 0xff;
        if first && sig == libc::SIGTRAP {
            first = false;
            let opts = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
            ptrace(libc::PTRACE_SETOPTIONS, pid, opts as usize)?;
            ptrace(libc::PTRACE_CONT, pid, 0)?;
        } else if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
            hwm = mem_of(pid);
            ptrace(libc::PTRACE_CONT, pid, 0)?;
        } else {
            // A signal for the plugin (SIGCHLD, Go's SIGURG, ...): deliver it.
            ptrace(libc::PTRACE_CONT, pid, sig as usize)?;
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err_reader.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Run {
        stdout,
        stderr,
        status: std::process::ExitStatus::from_raw(status),
        mem: hwm.ok_or("no VmHWM at the exit stop")?,
    })
}

/// One plugin type to measure.
struct Case {
    name: &'static str,
    /// The plugin config (without name and cniVersion), given the bench's
    /// helper link names and a data dir and subnet.
    conf: fn(&Helpers, &Path, &str) -> Value,
}

struct Helpers {
    /// One bridge per participant (each puts its own gateway on it).
    bridge: String,
    macvlan_master: String,
    host_device: String,
}

fn hl(data: &Path, subnet: &str) -> Value {
    json!({"type": "host-local", "dataDir": data, "ranges": [[{"subnet": subnet}]]})
}

const CASES: &[Case] = &[
    Case {
        name: "loopback",
        conf: |_, _, _| json!({"type": "loopback"}),
    },
    Case {
        name: "bridge",
        conf: |h, d, s| json!({"type": "bridge", "bridge": h.bridge, "isGateway": true, "ipam": hl(d, s)}),
    },
    Case {
        name: "ptp",
        conf: |_, d, s| json!({"type": "ptp", "ipam": hl(d, s)}),
    },
    Case {
        name: "macvlan",
        conf: |h, d, s| json!({"type": "macvlan", "master": h.macvlan_master, "ipam": hl(d, s)}),
    },
    Case {
        name: "host-device",
        conf: |h, _, _| json!({"type": "host-device", "device": h.host_device}),
    },
    Case {
        name: "host-local",
        conf: |_, d, s| json!({"type": "host-local", "ipam": hl(d, s)}),
    },
    Case {
        name: "static",
        conf: |_, _, s| {
            let a = s.replace(".0/24", ".5/24");
            json!({"type": "static", "ipam": {"type": "static", "addresses": [{"address": a}]}})
        },
    },
    Case {
        name: "tap",
        conf: |_, d, s| json!({"type": "tap", "ipam": hl(d, s)}),
    },
];

pub fn peak_rss(ctx: &Ctx) -> Result<(), String> {
    let mut helpers = Helpers {
        bridge: String::new(),
        macvlan_master: ctx.name("mvm"),
        host_device: ctx.name("hd"),
    };
    for part in [Part::Ferry, Part::Reference] {
        util::own_link(&ctx.janitor, &ctx.name(&format!("brs{}", part.code())));
    }
    // A veth pair: one end is macvlan's parent, the other the device that
    // host-device moves into the container (and back on DEL).
    {
        let mut nl = ferry_linux::Netlink::new().map_err(|e| e.to_string())?;
        nl.create_link(&ferry_linux::LinkSpec::veth(
            &helpers.macvlan_master,
            &helpers.host_device,
        ))
        .map_err(|e| format!("create helper veth: {e}"))?;
        util::own_link(&ctx.janitor, &helpers.macvlan_master);
        let m = nl
            .link_by_name(&helpers.macvlan_master)
            .map_err(|e| e.to_string())?;
        nl.set_up(m.index).map_err(|e| e.to_string())?;
    }
    let data = ctx.work.join("data-6");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let registry: Vec<&str> = ferry_plugins::REGISTRY.iter().map(|e| e.name).collect();
    for (ci, case) in CASES.iter().enumerate() {
        for (pi, part) in [Part::Ferry, Part::Reference].into_iter().enumerate() {
            check_stop()?;
            helpers.bridge = ctx.name(&format!("brs{}", part.code()));
            let dir: Option<PathBuf> = match part {
                Part::Ferry if registry.contains(&case.name) => ctx.ferry_dir.clone(),
                Part::Ferry => None,
                _ => ctx.reference.clone(),
            };
            let Some(dir) = dir.filter(|d| d.join(case.name).exists()) else {
                ctx.note(
                    S6,
                    format!(
                        "{} {}: no such plugin, not measured",
                        part.label(),
                        case.name
                    ),
                );
                continue;
            };
            let subnet = format!("198.18.{}.0/24", 244 + (2 * ci + pi) % 12);
            let name = ctx.name(&format!("6{}{ci}", part.code()));
            let mut conf = (case.conf)(&helpers, &data, &subnet);
            conf["cniVersion"] = json!("1.0.0");
            conf["name"] = json!(name);
            let stdin = serde_json::to_vec(&conf).map_err(|e| e.to_string())?;
            let (ns, ns_ticket) = util::create_netns(&ctx.janitor, &name)?;
            let cni_path = dir.display().to_string();
            let cid = format!("{}-6{}{ci}", ctx.tag, part.code());
            let env = |cmd: &'static str| -> Vec<(&'static str, String)> {
                vec![
                    ("CNI_COMMAND", cmd.to_string()),
                    ("CNI_CONTAINERID", cid.clone()),
                    ("CNI_NETNS", ns.clone()),
                    ("CNI_IFNAME", "eth0".to_string()),
                    ("CNI_PATH", cni_path.clone()),
                ]
            };
            let bin = dir.join(case.name);
            let add_env = env("ADD");
            let add_env: Vec<(&str, &str)> =
                add_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let add = run_traced(&bin, &add_env, &stdin);
            // DEL always, with the ADD result as prevResult when there is one.
            let mut del_conf = conf.clone();
            if let Ok(r) = &add {
                if let Ok(v) = serde_json::from_slice::<Value>(&r.stdout) {
                    if v.get("code").is_none() {
                        del_conf["prevResult"] = v;
                    }
                }
            }
            let del_stdin = serde_json::to_vec(&del_conf).map_err(|e| e.to_string())?;
            let del_env = env("DEL");
            let del_env: Vec<(&str, &str)> =
                del_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let del = run_traced(&bin, &del_env, &del_stdin);
            match add {
                Ok(r) if r.status.success() => {
                    let l = part.label();
                    ctx.record(S6, l, case.name, 0, 1, r.mem.hwm as f64, "KiB");
                    ctx.record(
                        S6,
                        l,
                        &format!("{} anon@exit", case.name),
                        0,
                        1,
                        r.mem.anon as f64,
                        "KiB",
                    );
                    ctx.record(
                        S6,
                        l,
                        &format!("{} file@exit", case.name),
                        0,
                        1,
                        r.mem.file as f64,
                        "KiB",
                    );
                }
                Ok(r) => ctx.note(
                    S6,
                    format!(
                        "{} {} ADD failed ({}): {}{}",
                        part.label(),
                        case.name,
                        r.status,
                        String::from_utf8_lossy(&r.stdout).trim(),
                        String::from_utf8_lossy(&r.stderr).trim()
                    ),
                ),
                Err(e) => ctx.note(S6, format!("{} {}: {e}", part.label(), case.name)),
            }
            match del {
                Ok(r) if r.status.success() => {}
                Ok(r) => ctx.note(
                    S6,
                    format!(
                        "{} {} DEL failed ({}): {}",
                        part.label(),
                        case.name,
                        r.status,
                        String::from_utf8_lossy(&r.stdout).trim()
                    ),
                ),
                Err(e) => ctx.note(S6, format!("{} {} DEL: {e}", part.label(), case.name)),
            }
            // host-device gives the device back on DEL; had it not, the
            // namespace's removal destroys it (and its veth peer) here.
            let _ = ctx.janitor.run(ns_ticket);
        }
    }
    Ok(())
}
