//! `tuning`: a chained plugin that changes sysctls of the container's
//! namespace (only `net.*`, `IFNAME` in a key standing for CNI_IFNAME) and
//! attributes of CNI_IFNAME: `mac`, `mtu`, `promisc`, `allmulti` and
//! `txQLen`. Values come from the config, `runtimeConfig.mac` (capability
//! `mac`), CNI_ARGS `MAC=` and `args.cni`, in the reference's precedence:
//! `args.cni` over `runtimeConfig` over CNI_ARGS over the config's keys.
//!
//! The original values are saved before anything changes, in the reference's
//! file (`<dataDir>/<containerID>_<ifname>.json`, dataDir
//! `/run/cni/tuning` by default, same JSON) so either implementation's DEL
//! restores the other's ADD. Ferry adds one key the reference ignores,
//! `sysctl`: the sysctls written with their old values, restored on DEL when
//! they still hold what tuning wrote.
//!
//! Every value is checked before the first change (`net.*` keys, the
//! allowlist `/etc/cni/tuning/allowlist.conf` when it exists, MAC syntax,
//! MTU and txQLen ranges), and a failing ADD puts back what it changed.
//! `FERRY_TUNING_ALLOWLIST` names another allowlist file (for tests).

mod allowlist;
mod backup;
mod config;

use crate::conf::{self, kernel};
use backup::{backup_path, link_backup, write_backup, Backup, SavedSysctl};
use config::{load, SysctlSetting, TuningConf, Wanted};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::{sysctl, Link, MacAddr, Netlink, Netns};
use serde_json::Value;

pub use config::{ALLOWLIST_ENV, ALLOWLIST_FILE, DEFAULT_DATA_DIR};

/// Kernel refusals of a value are the config's fault (code 7); others 100.
fn apply_err(what: String) -> impl FnOnce(ferry_linux::Error) -> CniError {
    move |e| match e.errno() {
        Some(libc::EINVAL | libc::ERANGE | libc::EADDRNOTAVAIL) => {
            CniError::new(code::INVALID_NETWORK_CONFIG, what, e.to_string())
        }
        _ => CniError::new(code::INTERNAL, what, e.to_string()),
    }
}

fn sysctl_err(path: &str) -> impl FnOnce(ferry_linux::Error) -> CniError + '_ {
    move |e| match e.errno() {
        Some(libc::ENOENT) => CniError::new(
            code::INVALID_NETWORK_CONFIG,
            format!("no sysctl {path:?} in the container's namespace"),
            e.to_string(),
        ),
        Some(libc::EINVAL | libc::ERANGE) => CniError::new(
            code::INVALID_NETWORK_CONFIG,
            format!("the kernel refused the value of sysctl {path:?}"),
            e.to_string(),
        ),
        _ => CniError::new(
            code::IO_FAILURE,
            format!("failed to write sysctl {path:?}"),
            e.to_string(),
        ),
    }
}

/// Reads a sysctl inside the namespace.
fn read_sysctl(netns: &Netns, path: &str) -> CniResult<String> {
    netns
        .run(|| sysctl::read(path))
        .map_err(kernel("failed to enter the container's namespace"))?
        .map_err(sysctl_err(path))
}

/// Reads sysctls inside the namespace, in one visit (a thread).
fn read_sysctls(netns: &Netns, sysctls: &[SysctlSetting]) -> CniResult<Vec<String>> {
    if sysctls.is_empty() {
        return Ok(Vec::new());
    }
    netns
        .run(|| {
            sysctls
                .iter()
                .map(|s| sysctl::read(&s.path).map_err(sysctl_err(&s.path)))
                .collect::<CniResult<Vec<String>>>()
        })
        .map_err(kernel("failed to enter the container's namespace"))?
}

fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// Puts back what `b` saved: link attributes (when the link is given) in the
/// reference's order, then sysctls that still hold what tuning wrote, newest
/// first. Returns the failures.
fn restore(netns: &Netns, link: Option<(&mut Netlink, &Link)>, b: &Backup) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some((nl, link)) = link {
        let i = link.index;
        if b.mtu > 0 {
            match u32::try_from(b.mtu) {
                Ok(mtu) => {
                    if let Err(e) = nl.set_mtu(i, mtu) {
                        errors.push(format!("failed to restore MTU: {e}"));
                    }
                }
                Err(_) => errors.push(format!("failed to restore MTU: bad value {}", b.mtu)),
            }
        }
        if !b.mac.is_empty() {
            match b.mac.parse::<MacAddr>() {
                Ok(mac) => {
                    if let Err(e) = nl.set_mac(i, mac) {
                        errors.push(format!("failed to restore MAC address: {e}"));
                    }
                }
                Err(_) => errors.push(format!("failed to restore MAC address: bad {:?}", b.mac)),
            }
        }
        if let Some(p) = b.promisc {
            if let Err(e) = nl.set_promisc(i, p) {
                errors.push(format!("failed to restore promiscuous mode: {e}"));
            }
        }
        if let Some(a) = b.allmulti {
            if let Err(e) = nl.set_allmulti(i, a) {
                errors.push(format!("failed to restore all-multicast mode: {e}"));
            }
        }
        if let Some(q) = b.txqlen {
            match u32::try_from(q) {
                Ok(q) => {
                    if let Err(e) = nl.set_txqlen(i, q) {
                        errors.push(format!("failed to restore txQLen: {e}"));
                    }
                }
                Err(_) => errors.push(format!("failed to restore txQLen: bad value {q}")),
            }
        }
    }
    if b.sysctl.is_empty() {
        return errors;
    }
    // One visit of the namespace for all of them: each visit is a thread.
    let restored = netns.run(|| {
        let mut errors = Vec::new();
        for s in b.sysctl.iter().rev() {
            // A per-interface sysctl vanishes with its interface: nothing to do.
            let current = match sysctl::read(&s.path) {
                Ok(v) => v,
                Err(e) if e.errno() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    errors.push(format!("failed to restore sysctl {}: {e}", s.path));
                    continue;
                }
            };
            // Someone changed it since: theirs wins.
            if !same_value(&current, &s.new) {
                continue;
            }
            if let Err(e) = sysctl::write_if_different(&s.path, &s.old) {
                let e = sysctl_err(&s.path)(e);
                errors.push(format!("failed to restore sysctl {}: {e}", s.path));
            }
        }
        errors
    });
    match restored {
        Ok(e) => errors.extend(e),
        Err(e) => errors.push(format!("failed to restore sysctls: {e}")),
    }
    errors
}

/// Netlink in the container when `needed` (opening it is a thread in the
/// namespace: skipped for sysctls alone).
fn container_netlink(netns: &Netns, needed: bool) -> CniResult<Option<Netlink>> {
    if !needed {
        return Ok(None);
    }
    netns
        .netlink()
        .map(Some)
        .map_err(kernel("failed to open netlink in the container"))
}

fn link_by_name(nl: &mut Netlink, ifname: &str) -> CniResult<Link> {
    nl.link_by_name(ifname).map_err(|e| {
        if e.is_not_found() {
            CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("failed to get {ifname:?}: no such interface in the container's namespace"),
                e.to_string(),
            )
        } else {
            kernel(format!("failed to get {ifname:?}"))(e)
        }
    })
}

/// Applies `w` on `link`, recording the original values in `b` as it goes.
fn apply(
    netns: &Netns,
    link: Option<(&mut Netlink, &Link)>,
    w: &Wanted,
    b: &mut Backup,
) -> CniResult<()> {
    if !w.sysctls.is_empty() {
        // One visit of the namespace for all of them: each visit is a thread.
        netns
            .run(|| -> CniResult<()> {
                for s in &w.sysctls {
                    let old = sysctl::read(&s.path).map_err(sysctl_err(&s.path))?;
                    if same_value(&old, &s.value) {
                        continue;
                    }
                    // Saved before writing, so a failed write is undone too.
                    b.sysctl.push(SavedSysctl {
                        path: s.path.clone(),
                        old,
                        new: s.value.clone(),
                    });
                    sysctl::write_if_different(&s.path, &s.value).map_err(sysctl_err(&s.path))?;
                }
                Ok(())
            })
            .map_err(kernel("failed to enter the container's namespace"))??;
    }
    let Some((nl, link)) = link else {
        return Ok(());
    };
    let i = link.index;
    if let Some(mac) = w.mac {
        nl.set_mac(i, mac)
            .map_err(apply_err(format!("failed to set MAC address {mac}")))?;
    }
    if w.promisc {
        nl.set_promisc(i, true)
            .map_err(apply_err("failed to set promiscuous mode".into()))?;
    }
    if let Some(mtu) = w.mtu {
        nl.set_mtu(i, mtu)
            .map_err(apply_err(format!("failed to set MTU {mtu}")))?;
    }
    if let Some(a) = w.allmulti {
        nl.set_allmulti(i, a)
            .map_err(apply_err("failed to set all-multicast mode".into()))?;
    }
    if let Some(q) = w.txqlen {
        nl.set_txqlen(i, q)
            .map_err(apply_err(format!("failed to set txQLen {q}")))?;
    }
    Ok(())
}

pub struct Tuning;

impl Plugin for Tuning {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let (c, w) = load(args, true)?;
        let mut prev = conf::required_prev_result(args, "tuning")?;
        let netns = conf::open_netns(&args.netns)?;
        // Netlink in the container only for link attributes.
        let mut nl = container_netlink(&netns, w.touches_link())?;
        let link = match nl.as_mut() {
            Some(nl) => Some(link_by_name(nl, &args.ifname)?),
            None => None,
        };
        // Every sysctl must exist before anything changes.
        let olds = read_sysctls(&netns, &w.sysctls)?;
        let path = backup_path(&c.data_dir(), &args.container_id, &args.ifname);
        let mut backup = link
            .as_ref()
            .map(|l| link_backup(l, &w))
            .unwrap_or_default();
        // The file is written before the first change, with every original
        // value it may need, so a crash halfway leaves enough for DEL.
        let mut planned = backup.clone();
        for (s, old) in w.sysctls.iter().zip(olds) {
            if !same_value(&old, &s.value) {
                planned.sysctl.push(SavedSysctl {
                    path: s.path.clone(),
                    old,
                    new: s.value.clone(),
                });
            }
        }
        if !planned.is_empty() {
            write_backup(&path, &planned)?;
        }
        if let Err(e) = apply(&netns, nl.as_mut().zip(link.as_ref()), &w, &mut backup) {
            let failed = restore(&netns, nl.as_mut().zip(link.as_ref()), &backup);
            if failed.is_empty() {
                let _ = std::fs::remove_file(&path);
            } else {
                eprintln!("tuning: rollback incomplete: {}", failed.join("; "));
            }
            return Err(e);
        }
        if let Some(mac) = w.mac {
            for i in prev.interfaces.iter_mut().filter(|i| i.name == args.ifname) {
                i.mac = mac.to_string();
            }
        }
        Ok(serde_json::to_value(prev)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c: TuningConf = conf::parse(args)?;
        let path = backup_path(&c.data_dir(), &args.container_id, &args.ifname);
        // A backup whose writer was killed before its rename.
        ferry_linux::fs::remove_stale_temps(&path);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(CniError::io(format!(
                    "failed to open file {}: {e}",
                    path.display()
                )))
            }
        };
        let remove = || {
            let _ = std::fs::remove_file(&path);
        };
        let Ok(backup) = serde_json::from_slice::<Backup>(&data) else {
            ferry_cni::oplog::warn(format!(
                "tuning: ignoring unreadable backup {}",
                path.display()
            ));
            remove();
            return Ok(());
        };
        // Namespace gone: nothing left to restore.
        let Some(netns) = conf::open_netns_for_del(&args.netns) else {
            remove();
            return Ok(());
        };
        // Netlink in the container only for saved link attributes.
        let mut nl = container_netlink(&netns, backup.has_link_settings())?;
        let link = match nl.as_mut().map(|nl| nl.link_by_name(&args.ifname)) {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) if e.is_not_found() => None,
            Some(Err(e)) => return Err(kernel(format!("failed to get {:?}", args.ifname))(e)),
            None => None,
        };
        let failed = restore(&netns, nl.as_mut().zip(link.as_ref()), &backup);
        if failed.is_empty() {
            remove();
        } else {
            // As the reference: DEL succeeds, the file stays for a retry.
            ferry_cni::oplog::warn(format!("tuning: {}", failed.join("; ")));
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let (_, w) = load(args, false)?;
        conf::required_prev_result(args, "tuning")?;
        let netns = conf::open_netns(&args.netns)?;
        for s in &w.sysctls {
            let current = read_sysctl(&netns, &s.path)?;
            if !same_value(&current, &s.value) {
                return Err(CniError::internal(format!(
                    "Error: Tuning configured value of /proc/sys/{} is {}, current value is {current}",
                    s.path, s.value
                )));
            }
        }
        let mut nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let link = nl.link_by_name(&args.ifname).map_err(|e| {
            CniError::internal(format!("Cannot find container link {}: {e}", args.ifname))
        })?;
        let ifname = &args.ifname;
        if let Some(mac) = w.mac {
            if link.mac != Some(mac) {
                return Err(CniError::internal(format!(
                    "Error: Tuning configured Ethernet of {ifname} is {mac}, current value is {}",
                    link.mac.map(|m| m.to_string()).unwrap_or_default()
                )));
            }
        }
        let promisc = link.flags & libc::IFF_PROMISC as u32 != 0;
        if promisc != w.promisc {
            return Err(CniError::internal(format!(
                "Error: Tuning link {ifname} configured promisc is {}, current value is {}",
                w.promisc,
                u8::from(promisc)
            )));
        }
        if let Some(mtu) = w.mtu {
            if link.mtu != Some(mtu) {
                return Err(CniError::internal(format!(
                    "Error: Tuning configured MTU of {ifname} is {mtu}, current value is {}",
                    link.mtu.unwrap_or(0)
                )));
            }
        }
        if let Some(a) = w.allmulti {
            if link.allmulti != a {
                return Err(CniError::internal(format!(
                    "Error: Tuning configured all-multicast mode of {ifname} is {a}, current value is {}",
                    link.allmulti
                )));
            }
        }
        if let Some(q) = w.txqlen {
            if link.txqlen != Some(q) {
                return Err(CniError::internal(format!(
                    "Error: Tuning configured txQLen of {ifname} is {q}, current value is {}",
                    link.txqlen.unwrap_or(0)
                )));
            }
        }
        Ok(())
    }
}
