//! `loopback`: sets `lo` up in the container (and down on DEL), returning the
//! loopback addresses like the reference plugin.

use crate::conf;
use ferry_cni::result::{Interface, IpConfig, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_linux::{Family, Link, Netlink};
use serde_json::Value;

pub struct Loopback;

/// A netlink socket in the container's namespace, and its `lo`.
fn open_lo(netns: &str) -> CniResult<(Netlink, Link)> {
    let ns = conf::open_netns(netns)?;
    let mut nl = ns
        .netlink()
        .map_err(conf::kernel("failed to open netlink in netns"))?;
    let lo = nl
        .link_by_name("lo")
        .map_err(conf::kernel("no lo in netns"))?;
    Ok((nl, lo))
}

impl Plugin for Loopback {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let (mut nl, lo) = open_lo(&args.netns)?;
        nl.set_up(lo.index)
            .map_err(conf::kernel("failed to set lo up"))?;
        // A chained loopback passes prevResult through, as the reference does.
        if let Some(prev) = conf::prev_result(args)? {
            return Ok(serde_json::to_value(prev)?);
        }
        let addrs = nl
            .addresses(Some(lo.index), Family::All)
            .map_err(conf::kernel("failed to list lo addresses"))?;
        let result = CniResultType {
            cni_version: args.cni_version.clone(),
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: args.netns.clone(),
                ..Interface::default()
            }],
            ips: addrs
                .iter()
                .map(|a| IpConfig {
                    interface: Some(0),
                    ..IpConfig::new(a.net, None)
                })
                .collect(),
            ..CniResultType::default()
        };
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let Some(ns) = conf::open_netns_for_del(&args.netns) else {
            return Ok(());
        };
        let Ok(mut nl) = ns.netlink() else {
            return Ok(());
        };
        if let Ok(lo) = nl.link_by_name("lo") {
            nl.set_down(lo.index)
                .map_err(conf::kernel("failed to set lo down"))?;
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let (_, lo) = open_lo(&args.netns)?;
        if !lo.up {
            return Err(CniError::internal("lo is down"));
        }
        Ok(())
    }
}
