//! `static`: the reference static IPAM plugin. Returns the configured
//! addresses, routes and DNS; allocates nothing, so DEL, GC and STATUS
//! always succeed.
//!
//! Inputs, as containernetworking/plugins `plugins/ipam/static` (1.1.x):
//! - `ipam.addresses`: `[{"address": "<ip>/<prefix>", "gateway": "<ip>"}]`,
//!   `ipam.routes`, `ipam.dns` (`nameservers`, `domain`, `search`, `options`);
//! - CNI_ARGS `IP` (comma-separated CIDRs, appended to the configured
//!   addresses) and `GATEWAY` (comma-separated; each is set as the gateway of
//!   the CNI_ARGS addresses whose subnet contains it: the reference matches
//!   before it has parsed the configured addresses, so those keep their own
//!   gateway);
//! - `args.cni.ips`, then `runtimeConfig.ips` (capability `ips`): a non-empty
//!   list *replaces* all addresses so far, without gateways. So the
//!   capability wins over `args`, which wins over CNI_ARGS.
//!
//! cniVersion below 0.3.0 allows at most one address per family. CHECK
//! compares the config with the `prevResult` as the reference does: it needs
//! one, and fails when an address it lists carries another gateway than the
//! configured one.
//!
//! Error codes: a key of the wrong JSON type 6; invalid configuration 7;
//! CNI_ARGS 4; CHECK mismatch 100.

use std::net::IpAddr;

use ferry_cni::result::{Dns, IpConfig, Result as CniResultType, Route};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{version, CniError, CniResult};
use ferry_ipam::canonical_ip;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::host_local::{decode_key, ipam_section, load_env_args, parse_cidr, CniArgsSection};

/// The `static` plugin.
pub struct Static;

#[derive(Debug, Default, Deserialize)]
struct AddressConf {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct ArgsSection {
    #[serde(default)]
    cni: Option<CniArgsSection>,
}

/// An address on its way through the inputs: configured ones are parsed
/// last, as in the reference (which is why CNI_ARGS `GATEWAY` skips them).
struct Pending {
    text: String,
    net: Option<IpNet>,
    gateway: Option<IpAddr>,
}

/// The validated request.
struct Loaded {
    addresses: Vec<(IpNet, Option<IpAddr>)>,
    routes: Vec<Route>,
    dns: Dns,
}

fn parse_gateway(what: &str, s: &str) -> CniResult<Option<IpAddr>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<IpAddr>()
        .map(|ip| Some(canonical_ip(ip)))
        .map_err(|_| CniError::invalid_config(format!("{what}: invalid IP address: {s}")))
}

fn replace_from(what: &str, list: Option<Vec<String>>, out: &mut Vec<Pending>) -> CniResult<()> {
    let list = list.unwrap_or_default();
    if list.is_empty() {
        return Ok(());
    }
    out.clear();
    for s in list {
        let net = parse_cidr(&s).ok_or_else(|| {
            CniError::invalid_config(format!(
                "an entry in the '{what}' field is NOT in CIDR notation, got: '{s}'"
            ))
        })?;
        out.push(Pending {
            text: s,
            net: Some(net),
            gateway: None,
        });
    }
    Ok(())
}

fn load(args: &CmdArgs) -> CniResult<Loaded> {
    let ipam = ipam_section(args)?;
    let configured: Vec<AddressConf> = decode_key(ipam, "addresses")?;
    let routes: Vec<Route> = decode_key(ipam, "routes")?;
    let dns: Dns = decode_key(ipam, "dns")?;
    let rc: RuntimeConfig = decode_key(&args.config, "runtimeConfig")?;
    let cni_args: ArgsSection = decode_key(&args.config, "args")?;

    let mut addrs = Vec::new();
    for a in configured {
        addrs.push(Pending {
            text: a.address.unwrap_or_default(),
            net: None,
            gateway: parse_gateway("ipam.addresses gateway", a.gateway.as_deref().unwrap_or(""))?,
        });
    }

    let env = load_env_args(&args.args, &["IP", "GATEWAY"])?;
    // A later pair overwrites an earlier one of the same key, as in libcni.
    let last = |k: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (ip_arg, gw_arg) = (last("IP"), last("GATEWAY"));
    if !ip_arg.is_empty() {
        for item in ip_arg.split(',').map(str::trim) {
            let net = parse_cidr(item).ok_or_else(|| {
                CniError::invalid_env(format!(
                    "the 'ip' field is expected to be in CIDR notation, got: '{item}'"
                ))
            })?;
            addrs.push(Pending {
                text: item.to_string(),
                net: Some(net),
                gateway: None,
            });
        }
    }
    if !gw_arg.is_empty() {
        for item in gw_arg.split(',') {
            let gw = item
                .trim()
                .parse::<IpAddr>()
                .map(canonical_ip)
                .map_err(|_| CniError::invalid_env(format!("invalid gateway address: {item}")))?;
            for a in addrs.iter_mut() {
                if a.net.is_some_and(|n| n.contains(&gw)) {
                    a.gateway = Some(gw);
                }
            }
        }
    }

    replace_from("ips", cni_args.cni.and_then(|c| c.ips), &mut addrs)?;
    replace_from("ips", rc.ips, &mut addrs)?;

    let mut addresses = Vec::with_capacity(addrs.len());
    for a in addrs {
        let net = match a.net {
            Some(n) => n,
            None => parse_cidr(&a.text).ok_or_else(|| {
                CniError::invalid_config(format!(
                    "the 'address' field is expected to be in CIDR notation, got: '{}'",
                    a.text
                ))
            })?,
        };
        addresses.push((net, a.gateway));
    }

    let v4 = addresses.iter().filter(|(n, _)| n.addr().is_ipv4()).count();
    let v6 = addresses.len() - v4;
    if (v4 > 1 || v6 > 1)
        && !version::greater_than_or_equal_to(&args.cni_version, "0.3.0").unwrap_or(false)
    {
        return Err(CniError::invalid_config(format!(
            "CNI version {} does not support more than 1 address per family \
             ({v4} IPv4 and {v6} IPv6 addresses); use cniVersion 0.3.0 or later",
            args.cni_version
        )));
    }
    Ok(Loaded {
        addresses,
        routes,
        dns,
    })
}

impl Plugin for Static {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let l = load(args)?;
        let result = CniResultType {
            cni_version: version::CURRENT.to_string(),
            ips: l
                .addresses
                .iter()
                .map(|(net, gw)| IpConfig::new(*net, *gw))
                .collect(),
            routes: l.routes,
            dns: l.dns,
            ..CniResultType::default()
        };
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, _args: &CmdArgs) -> CniResult<()> {
        // Nothing was allocated.
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let l = load(args)?;
        let prev = crate::conf::prev_result(args)?
            .ok_or_else(|| CniError::invalid_config("Required prevResult missing"))?;
        for (net, gw) in &l.addresses {
            if let Some(have) = prev.ips.iter().find(|ip| ip.address.addr() == net.addr()) {
                if gw.is_some() && *gw != have.gateway {
                    return Err(CniError::internal(format!(
                        "static: Failed to match addr {} on interface {}: gateway {} expected, \
                         prevResult has {}",
                        net.addr(),
                        args.ifname,
                        gw.map(|g| g.to_string()).unwrap_or_default(),
                        have.gateway
                            .map(|g| g.to_string())
                            .unwrap_or_else(|| "none".into())
                    )));
                }
            }
        }
        Ok(())
    }

    fn gc(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cni::skel::Command;

    fn args(config: Value, cni_args: &str) -> CmdArgs {
        CmdArgs {
            command: Command::Add,
            container_id: "c1".into(),
            netns: "/dev/null".into(),
            ifname: "eth0".into(),
            args: cni_args.into(),
            path: String::new(),
            stdin: serde_json::to_vec(&config).unwrap(),
            cni_version: config["cniVersion"].as_str().unwrap_or("").to_string(),
            config,
        }
    }

    fn add(config: Value, cni_args: &str) -> CniResult<Value> {
        Static.add(&args(config, cni_args))
    }

    #[test]
    fn precedence_and_gateways() {
        let cfg = serde_json::json!({
            "cniVersion": "1.0.0", "name": "s",
            "ipam": {"type": "static", "addresses": [{"address": "198.18.65.5/24"}]}
        });
        let v = add(cfg.clone(), "IP=198.18.65.7/24;GATEWAY=198.18.65.254").unwrap();
        assert_eq!(
            v["ips"],
            serde_json::json!([
                {"address": "198.18.65.5/24"},
                {"address": "198.18.65.7/24", "gateway": "198.18.65.254"}
            ])
        );
        let mut c = cfg.clone();
        c["args"] = serde_json::json!({"cni": {"ips": ["198.18.65.9/24"]}});
        let v = add(c.clone(), "IP=198.18.65.7/24").unwrap();
        assert_eq!(v["ips"], serde_json::json!([{"address": "198.18.65.9/24"}]));
        c["runtimeConfig"] = serde_json::json!({"ips": ["198.18.65.10/24"]});
        let v = add(c, "").unwrap();
        assert_eq!(
            v["ips"],
            serde_json::json!([{"address": "198.18.65.10/24"}])
        );
    }

    #[test]
    fn errors() {
        let base = |addr: &str| {
            serde_json::json!({
                "cniVersion": "0.2.0", "name": "s",
                "ipam": {"type": "static", "addresses": [{"address": addr}]}
            })
        };
        assert_eq!(add(base("198.18.65.5"), "").unwrap_err().code, 7);
        assert_eq!(
            add(base("198.18.65.5/24"), "IP=198.18.65.6")
                .unwrap_err()
                .code,
            4
        );
        assert_eq!(add(base("198.18.65.5/24"), "FOO=1").unwrap_err().code, 4);
        assert_eq!(
            add(base("198.18.65.5/24"), "IP=198.18.65.6/24")
                .unwrap_err()
                .code,
            7
        );
        let no_ipam = serde_json::json!({"cniVersion": "1.0.0", "name": "s"});
        assert_eq!(add(no_ipam, "").unwrap_err().code, 7);
        let bad_type = serde_json::json!({
            "cniVersion": "1.0.0", "name": "s",
            "ipam": {"type": "static", "addresses": "x"}
        });
        assert_eq!(add(bad_type, "").unwrap_err().code, 6);
    }
}
