//! `macvlan`: a macvlan of a host interface (the master) in the container,
//! with its own MAC address. Created directly in the container's namespace
//! under a temporary name and renamed to CNI_IFNAME, as the reference does
//! (the kernel work is [`ferry_drivers::network::macvlan`]). IPAM is
//! optional: without an `ipam.type` the interface is L2 only and the result
//! has no IPs. Config keys and defaults as the reference plugin.

use crate::conf;
use crate::{netconf, single};
use ferry_cni::result::Dns;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_drivers::link::detach::Deleter;
use ferry_drivers::network::macvlan::MacvlanDriver;
use ferry_drivers::network::MacvlanConfig;
use ferry_drivers::{NetworkDriver, NetworkKind, NetworkSpec};
use ferry_linux::MacvlanMode;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MacvlanConf {
    name: String,
    master: String,
    mode: String,
    mtu: i64,
    #[serde(rename = "linkInContainer")]
    link_in_container: bool,
    dns: Option<Dns>,
}

/// The reference's mode names; empty is bridge.
fn parse_mode(s: &str) -> CniResult<MacvlanMode> {
    match s {
        "" | "bridge" => Ok(MacvlanMode::Bridge),
        "private" => Ok(MacvlanMode::Private),
        "vepa" => Ok(MacvlanMode::Vepa),
        "passthru" => Ok(MacvlanMode::Passthru),
        other => Err(CniError::invalid_config(format!(
            "unknown macvlan mode: {other:?} (one of bridge, private, vepa, passthru)"
        ))),
    }
}

/// The config (codes 6 and 7) as the driver's network.
fn load(args: &CmdArgs) -> CniResult<(MacvlanConf, NetworkSpec)> {
    let c: MacvlanConf = conf::parse(args)?;
    let mode = parse_mode(&c.mode)?;
    let mtu = u32::try_from(c.mtu).map_err(|_| {
        CniError::invalid_config(format!("invalid MTU {}, must not be negative", c.mtu))
    })?;
    let net = network(&c, mode, mtu);
    Ok((c, net))
}

fn network(c: &MacvlanConf, mode: MacvlanMode, mtu: u32) -> NetworkSpec {
    NetworkSpec {
        id: c.name.clone(),
        kind: NetworkKind::Macvlan(MacvlanConfig {
            master: c.master.clone(),
            mode,
            link_in_container: c.link_in_container,
        }),
        mtu: (mtu > 0).then_some(mtu),
        gateways: Vec::new(),
        forwarding: false,
        masquerade: false,
    }
}

fn driver() -> MacvlanDriver {
    MacvlanDriver::new(Deleter::Fork, ferry_drivers::state_dir())
}

pub struct Macvlan;

impl Plugin for Macvlan {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let (c, net) = load(args)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        conf::open_netns(&args.netns)?;
        let drv = driver();
        // The master and the MTU against it (with linkInContainer, checked
        // in the container when the link is made).
        drv.validate(&net).map_err(conf::driver_err)?;
        let mac = netconf::container_mac(args)?;
        let result = single::add(args, &drv, &net, mac, ipam_type.as_deref(), c.dns)?;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        // DEL does not judge the config beyond its JSON: the link goes anyway.
        let c: MacvlanConf = conf::parse(args)?;
        let net = network(&c, MacvlanMode::default(), 0);
        let ipam_type = conf::optional_ipam_type(args)?;
        single::del(args, &driver(), &net, ipam_type.as_deref())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let (_, net) = load(args)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        conf::open_netns(&args.netns)?;
        let drv = driver();
        // The master and the MTU against it (with linkInContainer, checked
        // in the container when the link is made).
        drv.validate(&net).map_err(conf::driver_err)?;
        single::check(args, &drv, &net, ipam_type.as_deref(), "macvlan")
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        single::ipam_only(args, "STATUS")
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        single::ipam_only(args, "GC")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_drivers::network::macvlan::mode_name;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("").unwrap(), MacvlanMode::Bridge);
        assert_eq!(parse_mode("passthru").unwrap(), MacvlanMode::Passthru);
        assert_eq!(parse_mode("source").unwrap_err().code, 7);
        for m in ["bridge", "private", "vepa", "passthru"] {
            assert_eq!(mode_name(parse_mode(m).unwrap()), m);
        }
    }
}
