//! The tuning config and what a request asks for: precedence of the config,
//! CNI_ARGS, `runtimeConfig` and `args.cni`, and every check made before the
//! first change (`net.*` keys, the allowlist, MAC syntax, MTU and txQLen).

use std::path::{Path, PathBuf};

use super::allowlist;
use crate::conf;
use crate::host_local::load_env_args;
use ferry_cni::skel::CmdArgs;
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::MacAddr;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

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
pub(super) struct TuningConf {
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
    pub(super) fn data_dir(&self) -> PathBuf {
        match self.data_dir.as_deref() {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(DEFAULT_DATA_DIR),
        }
    }
}

/// One sysctl to set: its path relative to /proc/sys (IFNAME
/// substituted) and the value.
#[derive(Debug, Clone)]
pub(super) struct SysctlSetting {
    pub(super) path: String,
    pub(super) value: String,
}

/// What the request asks for, after precedence and validation.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    pub(super) sysctls: Vec<SysctlSetting>,
    pub(super) mac: Option<MacAddr>,
    pub(super) promisc: bool,
    pub(super) mtu: Option<u32>,
    pub(super) allmulti: Option<bool>,
    pub(super) txqlen: Option<u32>,
}

impl Wanted {
    pub(super) fn touches_link(&self) -> bool {
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
pub(super) fn load(args: &CmdArgs, with_allowlist: bool) -> CniResult<(TuningConf, Wanted)> {
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
