//! `host-local`: the reference host-local IPAM plugin on top of ferry-ipam.
//!
//! Same type name, config keys, defaults, on-disk state and result shape as
//! containernetworking/plugins `plugins/ipam/host-local`:
//!
//! - `ipam`: the deprecated top-level range (`subnet`, `rangeStart`,
//!   `rangeEnd`, `gateway`), `ranges` (range sets), `routes`, `dataDir`
//!   (default `/var/lib/cni/networks`), `resolvConf`.
//! - Range sets, in allocation (and `last_reserved_ip.<n>`) order: the
//!   `runtimeConfig.ipRanges` capability first, then the top-level range, then
//!   `ranges`. Like the reference, `ipRanges` is *prepended* to the configured
//!   ranges (so configs normally leave `ranges` empty when they advertise it);
//!   overlapping sets are rejected.
//! - Requested addresses, all honoured (each in the range set containing
//!   it): CNI_ARGS `IP` first, then `args.cni.ips`, then `runtimeConfig.ips`
//!   (`<ip>[/<prefix>]`; the prefix is ignored). CNI_ARGS keys other than
//!   `IP` and `IgnoreUnknown` are an error unless `IgnoreUnknown=1`, as in the
//!   reference. Ferry also accepts a comma-separated list in `IP`.
//! - cniVersion below 0.3.0 allows at most one range set per family.
//!
//! Verbs: ADD allocates one address per range set; DEL releases whatever the
//! attachment (container ID, ifname) holds and succeeds when it holds nothing;
//! CHECK fails unless the attachment holds an address (and, given a
//! `prevResult`, every address of it inside our ranges); STATUS (1.1.0) fails
//! with code 50 when some range set has no free address, counted exactly from
//! the reservation files (ADD needs one address from every set); GC (1.1.0)
//! releases every reservation whose holder is not in
//! `cni.dev/valid-attachments`, and nothing else.
//!
//! Error codes: a key of the wrong JSON type 6; invalid configuration 7;
//! CNI_ARGS 4; the store's lock 11; `resolvConf` missing 7, unreadable 5;
//! allocation failures (exhausted, requested address taken or outside the
//! ranges) 100.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use ferry_cni::result::{Dns, IpConfig, Result as CniResultType, Route};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, version, CniError, CniResult};
use ferry_ipam::{
    canonical_ip, pick_in_set, reserve_picks, Allocation, Allocator, Attachment, Config, DiskStore,
    IpamConfig, IpamError, Range, RangeConfig, RangeSet, Store, DEFAULT_DATA_DIR,
};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// The `host-local` plugin.
pub struct HostLocal;

/// The capability arguments host-local understands.
#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(rename = "ipRanges", default)]
    ip_ranges: Option<Vec<Vec<RangeConfig>>>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

/// `args.cni` (CONVENTIONS.md, "args in network config").
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CniArgsSection {
    #[serde(default)]
    pub(crate) ips: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct ArgsSection {
    #[serde(default)]
    cni: Option<CniArgsSection>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Deserialize)]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// A request, validated.
struct Loaded {
    name: String,
    config: Config,
    routes: Vec<Route>,
    requested: Vec<IpAddr>,
}

/// Decodes one section of the config: a value of the wrong JSON type is
/// code 6 (as `conf::parse`), any other bad value or missing key code 7.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, v: &Value) -> CniResult<T> {
    serde_json::from_value(v.clone()).map_err(|e| {
        let text = e.to_string();
        if text.starts_with("invalid type") {
            CniError::decoding(format!("{what}: {text}"))
        } else {
            CniError::invalid_config(format!("{what}: {text}"))
        }
    })
}

/// Decodes `config[key]`; missing or `null` is the default.
pub(crate) fn decode_key<T: DeserializeOwned + Default>(config: &Value, key: &str) -> CniResult<T> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => decode(key, v),
    }
}

/// The `ipam` object; code 7 when there is none, as the reference.
pub(crate) fn ipam_section(args: &CmdArgs) -> CniResult<&Value> {
    match args.config.get("ipam") {
        None | Some(Value::Null) => Err(CniError::invalid_config("IPAM config missing 'ipam' key")),
        Some(v) if v.is_object() => Ok(v),
        Some(other) => Err(CniError::decoding(format!(
            "ipam: invalid type: {other}, expected an object"
        ))),
    }
}

/// The network name (`name`).
pub(crate) fn network_name(args: &CmdArgs) -> String {
    args.config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A ferry-ipam error as a CNI error with its code.
fn ipam_err(e: IpamError) -> CniError {
    let msg = match e.cni_code() {
        ferry_ipam::CNI_INVALID_CONFIG => "invalid network config",
        ferry_ipam::CNI_TRY_AGAIN_LATER => "host-local: try again later",
        _ => "host-local: failed",
    };
    CniError::new(e.cni_code(), msg, e.to_string())
}

/// CNI_ARGS read like libcni's `types.LoadArgs`: `K=V` pairs separated by
/// `;`, exactly one `=` each; `IgnoreUnknown` (`1`/`true`/`0`/`false`,
/// any case) and the `known` keys (case-sensitive) are accepted; any other
/// key is an error unless `IgnoreUnknown` is true. Returns the known pairs in
/// order. Errors are code 4 (they come from the environment).
pub(crate) fn load_env_args(s: &str, known: &[&str]) -> CniResult<Vec<(String, String)>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in s.split(';') {
        let kv: Vec<&str> = pair.split('=').collect();
        let [k, v] = kv.as_slice() else {
            return Err(CniError::invalid_env(format!(
                "CNI_ARGS: invalid pair {pair:?}: expected KEY=VALUE"
            )));
        };
        if *k == "IgnoreUnknown" {
            ignore_unknown = match v.to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(CniError::invalid_env(format!(
                        "CNI_ARGS: error parsing value of pair {pair:?}: \
                         IgnoreUnknown must be 1, true, 0 or false"
                    )))
                }
            };
        } else if known.contains(k) {
            out.push((k.to_string(), v.to_string()));
        } else {
            unknown.push(pair.to_string());
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(CniError::invalid_env(format!(
            "CNI_ARGS: unknown args {unknown:?}; add IgnoreUnknown=1 to pass arguments \
             this plugin does not use"
        )));
    }
    Ok(out)
}

/// Parses `<ip>/<prefix>` like Go's `net.ParseCIDR`, keeping the host bits;
/// an IPv4-mapped IPv6 address becomes IPv4 (prefix less 96), as Go prints it.
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    let (ip, len) = s.split_once('/')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if len <= 128 => IpNet::new(IpAddr::V4(v4), len.saturating_sub(96)).ok(),
            _ => IpNet::new(ip, len).ok(),
        },
        IpAddr::V4(_) => IpNet::new(ip, len).ok(),
    }
}

/// Parses a requested address, `<ip>[/<prefix>]` (the reference's `ip.IP`);
/// only the address is used.
pub(crate) fn parse_ip_arg(s: &str) -> Option<IpAddr> {
    if s.contains('/') {
        parse_cidr(s).map(|n| n.addr())
    } else {
        s.parse::<IpAddr>().ok().map(canonical_ip)
    }
}

/// Drops the `null` members of an object (Go reads them as unset).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Reads and validates the request (the reference's `LoadIPAMConfig`).
/// `env_args`: whether to read CNI_ARGS (not for STATUS and GC).
fn load(args: &CmdArgs, env_args: bool) -> CniResult<Loaded> {
    let ipam = ipam_section(args)?;
    let mut ipam_conf: IpamConfig = decode("ipam", &without_nulls(ipam))?;
    let routes: Vec<Route> = decode_key(ipam, "routes")?;
    let rc: RuntimeConfig = decode_key(&args.config, "runtimeConfig")?;
    let cni_args: ArgsSection = decode_key(&args.config, "args")?;

    let mut requested = Vec::new();
    if env_args {
        // The last `IP=` wins, as a later pair overwrites the field in libcni.
        if let Some((_, v)) = load_env_args(&args.args, &["IP"])?.pop() {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let ip = parse_ip_arg(item).ok_or_else(|| {
                    CniError::invalid_env(format!(
                        "CNI_ARGS: invalid IP address {item:?} in IP={v}"
                    ))
                })?;
                requested.push(ip);
            }
        }
    }
    let lists = [
        ("args.cni.ips", cni_args.cni.and_then(|c| c.ips)),
        ("runtimeConfig.ips", rc.ips),
    ];
    for (what, list) in lists {
        for s in list.unwrap_or_default() {
            let ip = parse_ip_arg(&s).ok_or_else(|| {
                CniError::invalid_config(format!(
                    "{what}: invalid IP address {s:?}, expected <ip>[/<prefix>]"
                ))
            })?;
            requested.push(ip);
        }
    }

    if let Some(ip_ranges) = rc.ip_ranges.filter(|r| !r.is_empty()) {
        let mut sets = ip_ranges;
        if let Some(subnet) = ipam_conf.subnet.take() {
            sets.push(vec![RangeConfig {
                subnet,
                range_start: ipam_conf.range_start.take(),
                range_end: ipam_conf.range_end.take(),
                gateway: ipam_conf.gateway.take(),
            }]);
        }
        sets.append(&mut ipam_conf.ranges);
        ipam_conf.ranges = sets;
    }
    let config = ipam_conf.canonicalize().map_err(ipam_err)?;

    let v4 = config.ranges.iter().filter(|s| s.is_ipv4()).count();
    let v6 = config.ranges.len() - v4;
    if (v4 > 1 || v6 > 1)
        && !version::greater_than_or_equal_to(&args.cni_version, "0.3.0").unwrap_or(false)
    {
        return Err(CniError::invalid_config(format!(
            "CNI version {} does not support more than 1 address per family \
             ({v4} IPv4 and {v6} IPv6 range sets); use cniVersion 0.3.0 or later",
            args.cni_version
        )));
    }
    Ok(Loaded {
        name: network_name(args),
        config,
        routes,
        requested,
    })
}

/// DNS settings from a `resolv.conf`, parsed like the reference: `nameserver`
/// (first value), `domain` (last one wins), `search` and `options` (all
/// values, accumulated); comments (`#`, `;`) and lines with fewer than two
/// fields are skipped.
pub fn parse_resolv_conf(path: &Path) -> CniResult<Dns> {
    let text = std::fs::read(path).map_err(|e| {
        let msg = format!("cannot read resolvConf {}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::NotFound {
            CniError::invalid_config(msg)
        } else {
            CniError::io(msg)
        }
    })?;
    let text = String::from_utf8_lossy(&text);
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = fields[1..].iter().map(|s| s.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = fields[1].to_string(),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    Ok(dns)
}

fn attachment(args: &CmdArgs) -> Attachment {
    Attachment::new(&args.container_id, args.ifname.clone())
}

/// The addresses of `r` the allocator may hand out: start..=end less the
/// gateway, the network address and (IPv4) the broadcast address.
fn candidates(r: &Range) -> u128 {
    let n = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let (start, end) = (n(r.range_start), n(r.range_end));
    let mut skipped: Vec<u128> = vec![n(r.gateway), n(r.subnet.network())];
    if r.is_ipv4() {
        skipped.push(n(r.subnet.broadcast()));
    }
    skipped.sort_unstable();
    skipped.dedup();
    let inside = skipped
        .iter()
        .filter(|v| **v >= start && **v <= end)
        .count() as u128;
    (end - start + 1).saturating_sub(inside)
}

fn is_candidate(r: &Range, ip: IpAddr) -> bool {
    r.contains(ip)
        && ip != r.gateway
        && ip != r.subnet.network()
        && !(r.is_ipv4() && ip == r.subnet.broadcast())
}

/// Whether some address of `set` is neither reserved nor excluded.
fn has_free(set: &RangeSet, reserved: &HashSet<IpAddr>) -> bool {
    set.ranges().iter().any(|r| {
        let used = reserved.iter().filter(|ip| is_candidate(r, **ip)).count() as u128;
        used < candidates(r)
    })
}

/// One address per range set for `key`, under one lock; like
/// [`Allocator::allocate`], but every check that can fail without
/// allocating runs first: requested addresses outside every range or two in
/// one range set, and an existing lease in any range set. Then the range
/// sets with a requested address, then the others, all chosen before any is
/// reserved. So a failing request leaves the store as it was,
/// `last_reserved_ip.*` included.
fn allocate(
    store: &DiskStore,
    ranges: &[RangeSet],
    key: &Attachment,
    requested: &[IpAddr],
) -> Result<Vec<Allocation>, IpamError> {
    key.validate()?;
    let all = || {
        let sets: Vec<String> = ranges.iter().map(RangeSet::to_string).collect();
        sets.join(",")
    };
    let mut wanted: Vec<Option<IpAddr>> = vec![None; ranges.len()];
    for ip in requested.iter().copied().map(canonical_ip) {
        let idx = ranges
            .iter()
            .position(|s| s.contains(ip))
            .ok_or_else(|| IpamError::RequestedNotInRange { ip, ranges: all() })?;
        match wanted[idx] {
            Some(other) if other != ip => {
                return Err(IpamError::RequestedUnfulfilled(format!(
                    "{other} {ip} (both in range set {idx})"
                )))
            }
            _ => wanted[idx] = Some(ip),
        }
    }
    let mut txn = store.lock()?;
    let held = txn.get_by_id(key)?;
    for set in ranges {
        if let Some(ip) = held.iter().find(|ip| set.contains(**ip)) {
            return Err(IpamError::DuplicateAllocation {
                ip: *ip,
                container_id: key.container_id.clone(),
            });
        }
    }
    let order = (0..ranges.len())
        .filter(|i| wanted[*i].is_some())
        .chain((0..ranges.len()).filter(|i| wanted[*i].is_none()));
    // Every range set's address is chosen before any is reserved: a failure
    // (exhausted, requested address taken) leaves the store as it was, and
    // the reservation is one batch (one index update for all range sets).
    let mut picks = Vec::with_capacity(ranges.len());
    for idx in order {
        picks.push(pick_in_set(txn.as_mut(), idx, &ranges[idx], wanted[idx])?);
    }
    let mut done = reserve_picks(txn.as_mut(), key, &picks)?;
    done.sort_by_key(|a| a.range_set);
    Ok(done)
}

impl Plugin for HostLocal {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let l = load(args, true)?;
        // Before touching the store, as the reference: a bad resolvConf
        // leaves no trace.
        let dns = match &l.config.resolv_conf {
            Some(p) => parse_resolv_conf(p)?,
            None => Dns::default(),
        };
        let store = DiskStore::open(&l.name, &l.config.data_dir).map_err(ipam_err)?;
        let key = attachment(args);
        let ips = allocate(&store, &l.config.ranges, &key, &l.requested).map_err(ipam_err)?;
        let alloc = Allocator::new(l.config.ranges, store);
        let result = CniResultType {
            cni_version: version::CURRENT.to_string(),
            ips: ips
                .iter()
                .map(|a| IpConfig::new(a.address, Some(a.gateway)))
                .collect(),
            routes: l.routes,
            dns,
            ..CniResultType::default()
        };
        // Convert here so that a result the request's version cannot carry
        // releases the addresses instead of leaking them.
        match result.to_version(&args.cni_version) {
            Ok(v) => Ok(v),
            Err(e) => {
                let _ = alloc.release(&key);
                Err(e)
            }
        }
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let l = load(args, true)?;
        let store = DiskStore::open(&l.name, &l.config.data_dir).map_err(ipam_err)?;
        Allocator::new(l.config.ranges, store)
            .release(&attachment(args))
            .map_err(ipam_err)?;
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let l = load(args, true)?;
        let store = DiskStore::open(&l.name, &l.config.data_dir).map_err(ipam_err)?;
        let alloc = Allocator::new(l.config.ranges, store);
        let key = attachment(args);
        let held = alloc.get_by_id(&key).map_err(ipam_err)?;
        if held.is_empty() {
            return Err(CniError::internal(format!(
                "host-local: failed to find address added by container {} (ifname {})",
                key.container_id, key.ifname
            )));
        }
        if let Some(prev) = crate::conf::prev_result(args)? {
            for ip in &prev.ips {
                let a = ip.address.addr();
                if alloc.ranges().iter().any(|s| s.contains(a)) && !held.contains(&a) {
                    return Err(CniError::internal(format!(
                        "host-local: {a} of prevResult is not reserved for container {} \
                         (ifname {})",
                        key.container_id, key.ifname
                    )));
                }
            }
        }
        Ok(())
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        let l = load(args, false)?;
        if !l.config.data_dir.join(&l.name).is_dir() {
            // Nothing reserved yet; do not create state for a probe.
            return Ok(());
        }
        let store = DiskStore::open(&l.name, &l.config.data_dir).map_err(ipam_err)?;
        let reserved: HashSet<IpAddr> = store
            .lock()
            .and_then(|mut txn| txn.reservations())
            .map_err(ipam_err)?
            .into_iter()
            .map(|(ip, _)| ip)
            .collect();
        for (idx, set) in l.config.ranges.iter().enumerate() {
            if !has_free(set, &reserved) {
                return Err(CniError::new(
                    code::PLUGIN_NOT_AVAILABLE,
                    "host-local: no free addresses",
                    format!(
                        "range set {idx} ({set}) is exhausted; ADD needs one address from \
                         every range set: release unused attachments (DEL or GC) or widen it"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        // Without the list there is nothing to compare against: remove nothing.
        let Some(list) = args.config.get("cni.dev/valid-attachments") else {
            return Ok(());
        };
        let valid: Vec<ValidAttachment> = match list {
            Value::Null => Vec::new(),
            v => decode("cni.dev/valid-attachments", v)?,
        };
        let valid: HashSet<Attachment> = valid
            .into_iter()
            .map(|a| Attachment::new(&a.container_id, a.ifname))
            .collect();
        // GC needs only where the state is: a config whose ranges changed or
        // no longer validate must still be collectable.
        let ipam = ipam_section(args)?;
        let data_dir = match ipam.get("dataDir") {
            None | Some(Value::Null) => DEFAULT_DATA_DIR.to_string(),
            Some(Value::String(s)) if s.is_empty() => DEFAULT_DATA_DIR.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(CniError::decoding(format!(
                    "ipam.dataDir: invalid type: {other}, expected a string"
                )))
            }
        };
        let name = network_name(args);
        let data_dir = Path::new(&data_dir);
        if !data_dir.join(&name).is_dir() {
            return Ok(());
        }
        let store = DiskStore::open(&name, data_dir).map_err(ipam_err)?;
        store
            .lock()
            .and_then(|mut txn| txn.gc(&valid))
            .map_err(ipam_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_args_like_libcni() {
        assert!(load_env_args("", &["IP"]).unwrap().is_empty());
        assert_eq!(
            load_env_args("IP=198.18.64.5", &["IP"]).unwrap(),
            vec![("IP".to_string(), "198.18.64.5".to_string())]
        );
        assert_eq!(load_env_args("FOO=1", &["IP"]).unwrap_err().code, 4);
        assert_eq!(load_env_args("ip=1", &["IP"]).unwrap_err().code, 4);
        assert!(load_env_args("IgnoreUnknown=TRUE;FOO=1;IP=x", &["IP"]).is_ok());
        assert!(load_env_args("FOO=1;IgnoreUnknown=1", &["IP"]).is_ok());
        assert_eq!(
            load_env_args("IgnoreUnknown=yes", &["IP"])
                .unwrap_err()
                .code,
            4
        );
        assert_eq!(load_env_args("IP=a=b", &["IP"]).unwrap_err().code, 4);
        assert_eq!(load_env_args("IP=1;", &["IP"]).unwrap_err().code, 4);
    }

    #[test]
    fn cidr_and_ip_args() {
        assert_eq!(
            parse_cidr("198.18.64.5/24").unwrap().to_string(),
            "198.18.64.5/24"
        );
        assert_eq!(
            parse_cidr("::ffff:198.18.64.5/120").unwrap().to_string(),
            "198.18.64.5/24"
        );
        assert!(parse_cidr("198.18.64.5").is_none());
        assert!(parse_cidr("198.18.64.5/33").is_none());
        assert!(parse_cidr("198.18.64.5/+3").is_none());
        assert_eq!(
            parse_ip_arg("fd00:64::5/64").unwrap().to_string(),
            "fd00:64::5"
        );
        assert_eq!(
            parse_ip_arg("::ffff:198.18.64.5").unwrap().to_string(),
            "198.18.64.5"
        );
        assert!(parse_ip_arg("nope").is_none());
    }

    #[test]
    fn candidate_counts() {
        let set = |s: &str, start: Option<&str>, end: Option<&str>| {
            RangeSet::canonicalize(
                0,
                &[RangeConfig {
                    subnet: s.parse().unwrap(),
                    range_start: start.map(|x| x.parse().unwrap()),
                    range_end: end.map(|x| x.parse().unwrap()),
                    gateway: None,
                }],
            )
            .unwrap()
        };
        // .1 is the gateway, .0 and .255 are never handed out.
        assert_eq!(
            candidates(&set("198.18.64.0/24", None, None).ranges()[0]),
            253
        );
        assert_eq!(
            candidates(&set("198.18.64.0/30", None, None).ranges()[0]),
            1
        );
        assert_eq!(candidates(&set("fd00:64::/126", None, None).ranges()[0]), 2);
        let s = set("198.18.64.0/30", None, None);
        let mut reserved = HashSet::new();
        assert!(has_free(&s, &reserved));
        reserved.insert("198.18.64.2".parse().unwrap());
        assert!(!has_free(&s, &reserved));
        let s = set("198.18.64.0/24", Some("198.18.64.10"), Some("198.18.64.11"));
        reserved.insert("198.18.64.10".parse().unwrap());
        assert!(has_free(&s, &reserved));
        reserved.insert("198.18.64.11".parse().unwrap());
        assert!(!has_free(&s, &reserved));
    }

    #[test]
    fn resolv_conf_like_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(
            &p,
            "# c\n; c\nnameserver 198.18.64.53\nnameserver fd00:64::53 x\n\
             domain a.test\ndomain b.test\nsearch s1 s2\nsearch s3\noptions ndots:2\n\
             nameserver\n  options   rotate \n",
        )
        .unwrap();
        let dns = parse_resolv_conf(&p).unwrap();
        assert_eq!(dns.nameservers, ["198.18.64.53", "fd00:64::53"]);
        assert_eq!(dns.domain, "b.test");
        assert_eq!(dns.search, ["s1", "s2", "s3"]);
        assert_eq!(dns.options, ["ndots:2", "rotate"]);
        assert_eq!(
            parse_resolv_conf(&dir.path().join("missing"))
                .unwrap_err()
                .code,
            7
        );
    }
}
