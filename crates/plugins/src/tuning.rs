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

use std::path::{Path, PathBuf};

use crate::conf::{self, kernel};
use crate::host_local::load_env_args;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::{sysctl, Link, MacAddr, Netlink, Netns};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The reference's default `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";
/// The reference's allowlist file.
pub const ALLOWLIST_FILE: &str = "/etc/cni/tuning/allowlist.conf";
/// Environment variable naming another allowlist file.
pub const ALLOWLIST_ENV: &str = "FERRY_TUNING_ALLOWLIST";

/// `sysctl` as an ordered list of pairs; a key given twice is refused, as
/// the newer reference does.
#[derive(Debug, Default, Clone)]
struct Sysctls(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Sysctls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Sysctls;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of sysctl names to string values")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Sysctls, E> {
                Ok(Sysctls::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sysctls, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(x, _)| *x == k) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicated sysctl keys are not allowed: {k:?}"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(Sysctls(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    mac: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ArgsCni {
    sysctl: Option<Sysctls>,
    mac: Option<String>,
    promisc: Option<bool>,
    mtu: Option<i64>,
    allmulti: Option<bool>,
    #[serde(rename = "txQLen")]
    txqlen: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Args {
    cni: Option<ArgsCni>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TuningConf {
    #[serde(rename = "dataDir")]
    data_dir: Option<String>,
    sysctl: Option<Sysctls>,
    mac: Option<String>,
    promisc: Option<bool>,
    mtu: Option<i64>,
    allmulti: Option<bool>,
    #[serde(rename = "txQLen")]
    txqlen: Option<i64>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<RuntimeConfig>,
    args: Option<Args>,
}

impl TuningConf {
    fn data_dir(&self) -> PathBuf {
        match self.data_dir.as_deref() {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// One sysctl to set: its path relative to /proc/sys (IFNAME
/// substituted) and the value.
#[derive(Debug, Clone)]
struct SysctlSetting {
    path: String,
    value: String,
}

/// What the request asks for, after precedence and validation.
#[derive(Debug, Default)]
struct Wanted {
    sysctls: Vec<SysctlSetting>,
    mac: Option<MacAddr>,
    promisc: bool,
    mtu: Option<u32>,
    allmulti: Option<bool>,
    txqlen: Option<u32>,
}

impl Wanted {
    fn touches_link(&self) -> bool {
        self.mac.is_some()
            || self.promisc
            || self.mtu.is_some()
            || self.allmulti.is_some()
            || self.txqlen.is_some()
    }
}

/// `net.ipv4.conf.IFNAME.arp_filter` -> `net/ipv4/conf/eth0/arp_filter`:
/// dots become slashes first, so an interface name with dots survives.
/// Refuses keys outside /proc/sys/net (code 7).
fn sysctl_rel_path(key: &str, ifname: &str) -> CniResult<String> {
    let rel = key.replace('.', "/").replacen("IFNAME", ifname, 1);
    let parts: Vec<&str> = rel.split('/').collect();
    let ok = parts.len() >= 2
        && parts[0] == "net"
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..");
    if !ok {
        return Err(CniError::invalid_config(format!(
            "invalid net sysctl key: {key:?}: only sysctls under net.* of the container's namespace can be set"
        )));
    }
    Ok(rel)
}

fn parse_mac(text: &str) -> CniResult<MacAddr> {
    text.parse::<MacAddr>().map_err(|_| {
        CniError::invalid_config(format!(
            "invalid args {text} for MAC addr: not a 6-byte MAC address"
        ))
    })
}

fn allowlist_path() -> PathBuf {
    match std::env::var_os(ALLOWLIST_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(ALLOWLIST_FILE),
    }
}

/// Every sysctl key must match one pattern of the allowlist, when there is one.
fn check_allowlist(path: &Path, sysctls: &[(String, String)]) -> CniResult<()> {
    let list = allowlist::read(path).map_err(|e| {
        CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "failed to read the sysctl allowlist",
            e,
        )
    })?;
    let Some(list) = list else { return Ok(()) };
    for (key, _) in sysctls {
        if !list.iter().any(|(_, re)| re.is_match(key)) {
            let patterns: Vec<&str> = list.iter().map(|(p, _)| p.as_str()).collect();
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                format!("Sysctl {key} is not allowed"),
                format!(
                    "only the sysctls matching {} are allowed: {patterns:?}",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Parses the request into the config and what it asks for; changes nothing.
fn load(args: &CmdArgs, with_allowlist: bool) -> CniResult<(TuningConf, Wanted)> {
    let c: TuningConf = conf::parse(args)?;
    let cni = c.args.as_ref().and_then(|a| a.cni.as_ref());

    // sysctl: args.cni entries override (and extend) the config's.
    let mut sysctls = c.sysctl.clone().unwrap_or_default().0;
    if let Some(extra) = cni.and_then(|a| a.sysctl.as_ref()) {
        for (k, v) in &extra.0 {
            match sysctls.iter_mut().find(|(x, _)| x == k) {
                Some(slot) => slot.1 = v.clone(),
                None => sysctls.push((k.clone(), v.clone())),
            }
        }
    }
    if with_allowlist {
        check_allowlist(&allowlist_path(), &sysctls)?;
    }
    let mut w = Wanted::default();
    for (key, value) in sysctls {
        let path = sysctl_rel_path(&key, &args.ifname)?;
        w.sysctls.push(SysctlSetting { path, value });
    }

    // mac: config < CNI_ARGS MAC < runtimeConfig.mac < args.cni.mac.
    let mut mac = c.mac.clone().unwrap_or_default();
    let env = load_env_args(&args.args, &["MAC"])?;
    if let Some((_, m)) = env.iter().rev().find(|(k, _)| k == "MAC") {
        if !m.is_empty() {
            mac = m.clone();
        }
    }
    if let Some(m) = c.runtime_config.as_ref().and_then(|r| r.mac.as_deref()) {
        if !m.is_empty() {
            mac = m.to_string();
        }
    }
    if let Some(m) = cni.and_then(|a| a.mac.as_deref()) {
        mac = m.to_string();
    }
    if !mac.is_empty() {
        w.mac = Some(parse_mac(&mac)?);
    }

    w.promisc = cni.and_then(|a| a.promisc).or(c.promisc).unwrap_or(false);
    let mtu = cni.and_then(|a| a.mtu).or(c.mtu).unwrap_or(0);
    if mtu < 0 || mtu > i64::from(u32::MAX) {
        return Err(CniError::invalid_config(format!(
            "invalid MTU {mtu}: must be a positive number"
        )));
    }
    w.mtu = (mtu > 0).then_some(mtu as u32);
    w.allmulti = cni.and_then(|a| a.allmulti).or(c.allmulti);
    if let Some(q) = cni.and_then(|a| a.txqlen).or(c.txqlen) {
        if q < 0 || q > i64::from(u32::MAX) {
            return Err(CniError::invalid_config(format!(
                "invalid txQLen {q}: must be zero or a positive number"
            )));
        }
        w.txqlen = Some(q as u32);
    }
    Ok((c, w))
}

/// A sysctl tuning changed: its path, old and new value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SavedSysctl {
    path: String,
    old: String,
    new: String,
}

/// The reference's `configToRestore` (same keys, same omissions), plus the
/// sysctls Ferry restores.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
struct Backup {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "is_zero")]
    mtu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allmulti: Option<bool>,
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    txqlen: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sysctl: Vec<SavedSysctl>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Backup {
    fn is_empty(&self) -> bool {
        *self == Backup::default()
    }

    /// True when a link attribute is saved (what [`restore`] needs netlink for).
    fn has_link_settings(&self) -> bool {
        !self.mac.is_empty()
            || self.promisc.is_some()
            || self.mtu > 0
            || self.allmulti.is_some()
            || self.txqlen.is_some()
    }

    /// Go's `json.MarshalIndent(v, "", " ")`.
    fn to_json(&self) -> CniResult<Vec<u8>> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser)
            .map_err(|e| CniError::internal(format!("failed to marshal backup: {e}")))?;
        Ok(out)
    }
}

fn backup_path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}_{ifname}.json"))
}

fn write_backup(path: &Path, b: &Backup) -> CniResult<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                CniError::io(format!(
                    "failed to create backup directory {}: {e}",
                    dir.display()
                ))
            })?;
    }
    let data = b.to_json()?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CniError::io(format!("failed to save file {}: {e}", path.display()))
    })
}

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

/// The link attributes the reference saves: only those the request changes.
fn link_backup(link: &Link, w: &Wanted) -> Backup {
    Backup {
        mac: if w.mac.is_some() {
            link.mac.map(|m| m.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
        promisc: w
            .promisc
            .then_some(link.flags & libc::IFF_PROMISC as u32 != 0),
        mtu: if w.mtu.is_some() {
            i64::from(link.mtu.unwrap_or(0))
        } else {
            0
        },
        allmulti: w.allmulti.map(|_| link.allmulti),
        txqlen: w.txqlen.map(|_| i64::from(link.txqlen.unwrap_or(0))),
        sysctl: Vec::new(),
    }
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
            eprintln!("tuning: ignoring unreadable backup {}", path.display());
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
            eprintln!("tuning: {}", failed.join("; "));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            sysctl_rel_path("net.ipv4.conf.IFNAME.arp_filter", "eth0.100").unwrap(),
            "net/ipv4/conf/eth0.100/arp_filter"
        );
        assert_eq!(
            sysctl_rel_path("net.core.somaxconn", "eth0").unwrap(),
            "net/core/somaxconn"
        );
        for bad in [
            "kernel.pid_max",
            "net",
            "net..x",
            "vm.swappiness",
            "..net.x",
            "",
        ] {
            assert_eq!(sysctl_rel_path(bad, "eth0").unwrap_err().code, 7, "{bad}");
        }
    }

    #[test]
    fn backup_json_is_the_references() {
        let b = Backup {
            mac: "ea:94:3c:46:64:03".into(),
            promisc: Some(false),
            mtu: 1500,
            allmulti: Some(false),
            ..Backup::default()
        };
        let text = String::from_utf8(b.to_json().unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n \"mac\": \"ea:94:3c:46:64:03\",\n \"promisc\": false,\n \"mtu\": 1500,\n \"allmulti\": false\n}"
        );
        let back: Backup = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
        assert!(Backup::default().is_empty());
    }

    #[test]
    fn duplicate_sysctl_keys_are_refused() {
        let r: Result<TuningConf, _> = serde_json::from_str(
            r#"{"sysctl": {"net.core.somaxconn": "1", "net.core.somaxconn": "2"}}"#,
        );
        assert!(r.unwrap_err().to_string().contains("duplicated"));
        let ok: TuningConf = serde_json::from_str(r#"{"sysctl": {"b": "1", "a": "2"}}"#).unwrap();
        let keys: Vec<&str> = ok
            .sysctl
            .as_ref()
            .unwrap()
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["b", "a"], "config order is kept");
    }

    #[test]
    fn allowlist_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("allowlist.conf");
        let s = |k: &str| vec![(k.to_string(), "1".to_string())];
        assert!(
            check_allowlist(&p, &s("net.core.somaxconn")).is_ok(),
            "no file: all allowed"
        );
        std::fs::write(
            &p,
            "^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n\n  ^net\\.core\\.somaxconn$  \n",
        )
        .unwrap();
        assert!(check_allowlist(&p, &s("net.core.somaxconn")).is_ok());
        assert!(check_allowlist(&p, &s("net.ipv4.conf.IFNAME.arp_filter")).is_ok());
        let e = check_allowlist(&p, &s("net.ipv4.conf.eth0.arp_filter")).unwrap_err();
        assert_eq!(e.code, 7);
        std::fs::write(&p, "(unclosed\n").unwrap();
        assert_eq!(
            check_allowlist(&p, &s("net.core.somaxconn"))
                .unwrap_err()
                .code,
            7
        );
    }
}
