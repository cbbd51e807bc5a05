//! `bandwidth`: a chained plugin that shapes a container's traffic with token
//! bucket filters, as the reference plugin (containernetworking/plugins
//! 1.1.1, `plugins/meta/bandwidth`) does:
//!
//! * the limits come from the config's `ingressRate`/`ingressBurst`/
//!   `egressRate`/`egressBurst` (bits per second, bits) when any of them is
//!   set, else from `runtimeConfig.bandwidth` (the `bandwidth` capability);
//!   a rate without a burst, or a burst without a rate, is code 7;
//! * the host interface is the host end of the container interface's veth,
//!   and must be an interface of `prevResult` outside the sandbox;
//! * ingress (traffic into the container) is a tbf at the root of the host
//!   veth (`1:`, latency 25 ms);
//! * egress (traffic from the container) arrives on the host veth: an
//!   ingress qdisc there redirects all of it (u32 match-all at pref 1,
//!   `mirred egress redirect`) to an IFB named `bwp` + the first 12 hex
//!   digits of sha512(network name + container ID), whose root is the tbf;
//!   the IFB is appended to the result's interfaces.
//!
//! The tc work (and how it shares tc with other users) is the driver
//! layer's [`ferry_drivers::qos`]; this module parses the limits, finds the
//! host veth through `prevResult` and passes the result on. GC has nothing
//! to collect: everything dies with the veth or is named after the
//! attachment and removed by its DEL.

use crate::conf::{self, kernel};
use ferry_cni::result::{Interface, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_drivers::link::detach::Deleter;
use ferry_drivers::qos::{self, Limits, Shaping};
use ferry_linux::{Link, Netlink};
use serde_json::Value;

pub use ferry_drivers::qos::ifb_name;

const LIMIT_KEYS: [&str; 4] = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"];

/// One limit: absent or null is 0; a negative or fractional number is code 7
/// (the reference answers those with a JSON error); another type is code 6.
fn limit_value(obj: &serde_json::Map<String, Value>, key: &str, from: &str) -> CniResult<u64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            CniError::invalid_config(format!(
                "{from}{key} must be a whole, non-negative number, got {n}"
            ))
        }),
        Some(other) => Err(CniError::decoding(format!(
            "failed to load netconf: {from}{key} must be a number, got {other}"
        ))),
    }
}

/// The limits of a request: the top-level keys when any is present (as
/// Go allocates the embedded entry), else `runtimeConfig.bandwidth`.
pub fn limits_from_config(config: &Value) -> CniResult<Option<Limits>> {
    let top = config.as_object();
    let has_top = top.is_some_and(|o| {
        LIMIT_KEYS
            .iter()
            .chain(["unshapedSubnets", "shapedSubnets"].iter())
            .any(|k| o.contains_key(*k))
    });
    let (obj, from) = if has_top {
        (top, "")
    } else {
        match config.pointer("/runtimeConfig/bandwidth") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => (Some(o), "runtimeConfig.bandwidth."),
            Some(other) => {
                return Err(CniError::decoding(format!(
                    "failed to load netconf: runtimeConfig.bandwidth must be an object, got {other}"
                )))
            }
        }
    };
    let Some(obj) = obj else { return Ok(None) };
    for key in ["unshapedSubnets", "shapedSubnets"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => {
                return Err(CniError::unsupported_field(format!(
                "{from}{key}: Ferry's bandwidth shapes all traffic (tbf, as the reference 1.1.1); \
                     per-subnet shaping is not supported"
            )))
            }
        }
    }
    Ok(Some(Limits {
        ingress_rate: limit_value(obj, "ingressRate", from)?,
        ingress_burst: limit_value(obj, "ingressBurst", from)?,
        egress_rate: limit_value(obj, "egressRate", from)?,
        egress_burst: limit_value(obj, "egressBurst", from)?,
    }))
}

fn network_name(args: &CmdArgs) -> String {
    args.config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The host end of the container interface's veth, which must be one of
/// `prevResult`'s host-side interfaces (as the reference finds it).
fn host_interface(args: &CmdArgs, prev: &CniResultType, host: &mut Netlink) -> CniResult<Link> {
    if prev.interfaces.is_empty() {
        return Err(CniError::invalid_config(
            "bandwidth: prevResult has no interfaces",
        ));
    }
    let ns = conf::open_netns(&args.netns)?;
    let mut inside = ns
        .netlink()
        .map_err(kernel("failed to open netlink in the container's netns"))?;
    let ifname = &args.ifname;
    let link = inside.link_by_name(ifname).map_err(|e| {
        CniError::invalid_config(format!(
            "container interface {ifname} has no veth peer: {e}"
        ))
    })?;
    let peer = match (link.kind.as_deref(), link.parent) {
        (Some("veth"), Some(p)) if p > 0 => p,
        _ => {
            return Err(CniError::invalid_config(format!(
                "container interface {ifname} has no veth peer (it is {})",
                link.kind.as_deref().unwrap_or("not a virtual device")
            )))
        }
    };
    let host_link = host.link_by_index(peer).map_err(|_| {
        CniError::invalid_config(format!("veth peer with index {peer} is not in host ns"))
    })?;
    if prev
        .interfaces
        .iter()
        .any(|i| i.sandbox.is_empty() && i.name == host_link.name)
    {
        Ok(host_link)
    } else {
        Err(CniError::invalid_config(format!(
            "no veth peer of container interface found in host ns ({} is not in prevResult's interfaces)",
            host_link.name
        )))
    }
}

fn open_host() -> CniResult<Netlink> {
    Netlink::new().map_err(kernel("failed to open netlink"))
}

/// The request's limits as tbfs (code 7 when they do not make sense).
fn shaping(args: &CmdArgs) -> CniResult<Shaping> {
    match limits_from_config(&args.config)? {
        Some(l) => l.shaping().map_err(conf::driver_err),
        None => Ok(Shaping::default()),
    }
}

pub struct Bandwidth;

impl Plugin for Bandwidth {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let shaping = shaping(args)?;
        let mut result = conf::required_prev_result(args, "bandwidth")?;
        if shaping.is_none() {
            return Ok(serde_json::to_value(result)?);
        }
        let mut nl = open_host()?;
        let host = host_interface(args, &result, &mut nl)?;
        let name = ifb_name(&network_name(args), &args.container_id);
        if let Some(ifb) = qos::apply(&mut nl, &host, &shaping, &name).map_err(conf::driver_err)? {
            result.interfaces.push(Interface {
                name,
                mac: ifb.mac.map(|m| m.to_string()).unwrap_or_default(),
                ..Interface::default()
            });
        }
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let mut nl = open_host()?;
        let name = ifb_name(&network_name(args), &args.container_id);
        // The host veth is found as at ADD, through the cached prevResult;
        // when the namespace or the veth is gone, so are its qdiscs.
        let host = match conf::prev_result(args) {
            Ok(Some(prev)) if conf::open_netns_for_del(&args.netns).is_some() => {
                host_interface(args, &prev, &mut nl).ok()
            }
            _ => None,
        };
        qos::remove(Deleter::Fork, nl, host.as_ref(), &name).map_err(conf::driver_err)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let shaping = shaping(args)?;
        let prev = conf::prev_result(args)?.ok_or_else(|| {
            CniError::invalid_config("must be called as a chained plugin (no prevResult)")
        })?;
        let mut nl = open_host()?;
        let host = host_interface(args, &prev, &mut nl)?;
        let name = ifb_name(&network_name(args), &args.container_id);
        qos::check(&mut nl, &host, &shaping, &name).map_err(conf::driver_err)
    }

    fn gc(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }

    /// As the reference: 0.3.0 and later (older results have no interfaces
    /// to find the host veth in).
    fn supported_versions(&self) -> &'static [&'static str] {
        &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_come_from_the_top_level_first() {
        let c = json!({"ingressRate": 8, "ingressBurst": 16,
                       "runtimeConfig": {"bandwidth": {"egressRate": 1, "egressBurst": 8}}});
        let l = limits_from_config(&c).unwrap().unwrap();
        assert_eq!((l.ingress_rate, l.egress_rate), (8, 0));
        let c = json!({"runtimeConfig": {"bandwidth": {"egressRate": 800, "egressBurst": 80}}});
        let l = limits_from_config(&c).unwrap().unwrap();
        assert_eq!((l.egress_rate, l.egress_burst), (800, 80));
        assert_eq!(limits_from_config(&json!({})).unwrap(), None);
        assert!(
            limits_from_config(&json!({"runtimeConfig": {"bandwidth": {}}}))
                .unwrap()
                .unwrap()
                .is_zero()
        );
    }

    #[test]
    fn bad_limits_are_code_7_and_bad_types_code_6() {
        let code_of = |c: Value| {
            limits_from_config(&c)
                .and_then(|l| {
                    l.unwrap_or_default()
                        .shaping()
                        .map(|_| ())
                        .map_err(conf::driver_err)
                })
                .unwrap_err()
                .code
        };
        assert_eq!(code_of(json!({"ingressRate": 1000})), 7);
        assert_eq!(code_of(json!({"egressBurst": 1000})), 7);
        assert_eq!(code_of(json!({"ingressRate": -1, "ingressBurst": 1000})), 7);
        assert_eq!(
            code_of(json!({"ingressRate": 1.5, "ingressBurst": 1000})),
            7
        );
        assert_eq!(
            code_of(json!({"ingressRate": 1000, "ingressBurst": 40_000_000_000u64})),
            7
        );
        assert_eq!(
            code_of(json!({"ingressRate": "fast", "ingressBurst": 1})),
            6
        );
        assert_eq!(code_of(json!({"shapedSubnets": ["10.0.0.0/8"]})), 2);
        // A rate under one byte per second cannot be shaped.
        assert_eq!(code_of(json!({"ingressRate": 7, "ingressBurst": 800})), 7);
    }
}
