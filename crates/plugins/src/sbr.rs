//! `sbr`: source-based routing for the interface a previous plugin set up.
//! For each of its addresses (from prevResult), in order: a routing table
//! (the first free one from 100: no rule and no route uses it), a rule
//! `from <ip>/32|128 lookup <table>`, a default route via the address's
//! gateway in that table, and a copy of the interface's main-table routes
//! that belong to the address (source or gateway in its subnet, or neither
//! set); the interface's main-table routes are then removed, as the
//! reference does. With `table` set, only the rules are added, pointing at
//! that table, and routes are left alone.
//!
//! DEL removes the rules whose source is an address of the interface (the
//! prevResult's addresses when the interface is gone) and, without
//! `table`, the interface's routes in the tables those rules pointed at.
//! Work in a namespace is serialised with the reference's lock (`flock` on
//! the namespace file).

use std::net::IpAddr;

use crate::conf::{self, kernel};
use ferry_cni::result::{IpConfig, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::{Family, Link, Netlink, Route, Rule, TABLE_MAIN};
use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;
use serde_json::Value;

/// The first table the reference hands out.
pub const FIRST_TABLE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SbrConf {
    table: Option<i64>,
}

impl SbrConf {
    fn load(args: &CmdArgs) -> CniResult<Option<u32>> {
        let c: SbrConf = conf::parse(args)?;
        match c.table {
            None => Ok(None),
            Some(t) if t > 0 && t <= i64::from(u32::MAX) => Ok(Some(t as u32)),
            Some(t) => Err(CniError::invalid_config(format!(
                "invalid table {t}: must be between 1 and {}",
                u32::MAX
            ))),
        }
    }
}

/// The prevResult's addresses of CNI_IFNAME: those whose interface index
/// names it, or that name no interface.
fn ip_configs(prev: &CniResultType, ifname: &str) -> CniResult<Vec<IpConfig>> {
    if prev.ips.is_empty() {
        return Err(CniError::invalid_config(format!(
            "No IP addresses supplied on interface: {ifname}"
        )));
    }
    Ok(prev
        .ips
        .iter()
        .filter(|ip| match ip.interface {
            None => true,
            Some(i) => prev
                .interfaces
                .get(i)
                .is_none_or(|iface| iface.name == ifname),
        })
        .cloned()
        .collect())
}

/// The single-address prefix a rule matches.
fn host_prefix(ip: IpAddr) -> IpNet {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    // A full-length prefix is always valid.
    IpNet::new(ip, len).unwrap_or_else(|_| IpNet::from(ip))
}

/// The reference's lock: an exclusive `flock` on the namespace file, held
/// until dropped.
fn lock_netns(path: &str) -> CniResult<Flock<std::fs::File>> {
    let f = std::fs::File::open(path)
        .map_err(|e| CniError::io(format!("failed to open {path} to lock it: {e}")))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| CniError::io(format!("failed to lock {path}: {e}")))
}

fn link_by_name(nl: &mut Netlink, ifname: &str) -> CniResult<Link> {
    nl.link_by_name(ifname).map_err(|e| {
        if e.is_not_found() {
            CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("Cannot find network interface {ifname}"),
                e.to_string(),
            )
        } else {
            kernel(format!("failed to look up {ifname}"))(e)
        }
    })
}

/// What ADD changed, to undo on failure.
#[derive(Default)]
struct Undo {
    rules: Vec<Rule>,
    tables: Vec<u32>,
    removed_main: Vec<Route>,
}

impl Undo {
    fn run(self, nl: &mut Netlink, oif: Option<u32>) {
        for r in self.rules.iter().rev() {
            let _ = nl.del_rule(r);
        }
        if let Some(oif) = oif {
            flush_tables(nl, &self.tables, oif);
        }
        for r in &self.removed_main {
            let _ = nl.replace_route(r);
        }
    }
}

/// Deletes the routes through `oif` in `tables`; returns the last failure.
fn flush_tables(nl: &mut Netlink, tables: &[u32], oif: u32) -> Option<String> {
    let mut failure = None;
    let routes = match nl.routes(Family::All, None) {
        Ok(r) => r,
        Err(e) => return Some(format!("failed to list routes: {e}")),
    };
    for r in routes
        .iter()
        .filter(|r| tables.contains(&r.table) && r.oif == Some(oif))
    {
        match nl.del_route(r) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => failure = Some(format!("failed to delete route {}: {e}", r.dst)),
        }
    }
    failure
}

/// The reference's `doRoutes`: a table, rule, default route and route
/// copies per address, then the interface's main-table routes removed.
fn do_routes(nl: &mut Netlink, ips: &[IpConfig], link: &Link, undo: &mut Undo) -> CniResult<()> {
    let rules = nl
        .rules(Family::All)
        .map_err(kernel("Failed to list all rules"))?;
    let all_routes = nl
        .routes(Family::All, None)
        .map_err(kernel("Failed to list all routes"))?;
    let used =
        |t: u32| rules.iter().any(|r| r.table == t) || all_routes.iter().any(|r| r.table == t);
    let next_free = |mut t: u32| {
        while used(t) {
            t = t.saturating_add(1);
        }
        t
    };
    let on_link: Vec<Route> = nl
        .routes(Family::All, Some(TABLE_MAIN))
        .map_err(kernel("Unable to list routes"))?
        .into_iter()
        .filter(|r| r.oif == Some(link.index))
        .collect();

    let mut table = next_free(FIRST_TABLE);
    for ip in ips {
        let addr = ip.address.addr();
        let rule = Rule::from_src(host_prefix(addr), table);
        nl.add_rule(&rule).map_err(kernel(format!(
            "Failed to add rule from {addr} lookup {table}"
        )))?;
        undo.rules.push(rule);
        undo.tables.push(table);
        if let Some(gw) = ip.gateway {
            let route = Route::default_via(gw).oif(link.index).table(table);
            nl.add_route(&route)
                .map_err(kernel(format!("Failed to add default route to {gw}")))?;
        }
        let subnet = ip.address;
        for r in &on_link {
            let belongs = r.src.is_some_and(|s| subnet.contains(&s))
                || r.gateway.is_some_and(|g| subnet.contains(&g))
                || (r.src.is_none() && r.gateway.is_none());
            if !belongs {
                continue;
            }
            let copy = r.clone().table(table);
            nl.replace_route(&copy).map_err(kernel(format!(
                "Failed to readd route {} in table {table}",
                r.dst
            )))?;
        }
        table = next_free(table.saturating_add(1));
    }
    // Removed only after every copy, so addresses sharing a subnet all get theirs.
    for r in &on_link {
        match nl.del_route(r) {
            Ok(()) => undo.removed_main.push(r.clone()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(kernel(format!("Failed to delete route {}", r.dst))(e)),
        }
    }
    Ok(())
}

pub struct Sbr;

impl Plugin for Sbr {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let table = SbrConf::load(args)?;
        let prev = conf::required_prev_result(args, "sbr")?;
        let ips = ip_configs(&prev, &args.ifname)?;
        let netns = conf::open_netns(&args.netns)?;
        let _lock = lock_netns(&args.netns)?;
        let mut nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let mut undo = Undo::default();
        let mut oif = None;
        let done = match table {
            Some(t) => ips.iter().try_for_each(|ip| {
                let rule = Rule::from_src(host_prefix(ip.address.addr()), t);
                nl.add_rule(&rule).map_err(kernel(format!(
                    "failed to add rule from {} lookup {t}",
                    ip.address.addr()
                )))?;
                undo.rules.push(rule);
                Ok(())
            }),
            None => link_by_name(&mut nl, &args.ifname).and_then(|link| {
                oif = Some(link.index);
                do_routes(&mut nl, &ips, &link, &mut undo)
            }),
        };
        if let Err(e) = done {
            undo.run(&mut nl, oif);
            return Err(e);
        }
        Ok(serde_json::to_value(prev)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let table = SbrConf::load(args)?;
        let Some(netns) = conf::open_netns_for_del(&args.netns) else {
            return Ok(());
        };
        let _lock = lock_netns(&args.netns)?;
        let mut nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let link = match nl.link_by_name(&args.ifname) {
            Ok(l) => Some(l),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(kernel(format!("Failed to get link {}", args.ifname))(e)),
        };
        let addrs: Vec<IpAddr> = match &link {
            Some(l) => nl
                .addresses(Some(l.index), Family::All)
                .map_err(kernel("Failed to list all addrs"))?
                .into_iter()
                .map(|a| a.net.addr())
                .collect(),
            // The interface is gone: the addresses it had, from prevResult.
            None => match conf::prev_result(args) {
                Ok(Some(prev)) => ip_configs(&prev, &args.ifname)
                    .unwrap_or_default()
                    .iter()
                    .map(|i| i.address.addr())
                    .collect(),
                _ => Vec::new(),
            },
        };
        let rules = nl
            .rules(Family::All)
            .map_err(kernel("Failed to list all rules to tidy"))?;
        let mut failure = None;
        let mut tables = Vec::new();
        for r in &rules {
            let Some(src) = r.src else { continue };
            if table.is_some_and(|t| t != r.table) || !addrs.contains(&src.addr()) {
                continue;
            }
            match nl.del_rule(r) {
                Ok(()) => tables.push(r.table),
                Err(e) if e.is_not_found() => {}
                Err(e) => failure = Some(format!("Failed to delete rule: {e}")),
            }
        }
        // Without `table` the tables were sbr's own: empty them of this
        // interface's routes unless another rule still uses them.
        if let (None, Some(l)) = (table, &link) {
            let left = nl
                .rules(Family::All)
                .map_err(kernel("Failed to list all rules"))?;
            tables.retain(|t| *t != TABLE_MAIN && !left.iter().any(|r| r.table == *t));
            tables.sort_unstable();
            tables.dedup();
            if let Some(f) = flush_tables(&mut nl, &tables, l.index) {
                failure = Some(f);
            }
        }
        match failure {
            None => Ok(()),
            Some(f) => Err(CniError::internal(f)),
        }
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let table = SbrConf::load(args)?;
        let prev = conf::required_prev_result(args, "sbr")?;
        let ips = ip_configs(&prev, &args.ifname)?;
        let netns = conf::open_netns(&args.netns)?;
        let mut nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let rules = nl
            .rules(Family::All)
            .map_err(kernel("Failed to list all rules"))?;
        for ip in &ips {
            let want = host_prefix(ip.address.addr());
            let found = rules
                .iter()
                .any(|r| r.src == Some(want) && table.is_none_or(|t| t == r.table));
            if !found {
                return Err(CniError::internal(format!(
                    "no source-based routing rule from {want} in the container's namespace"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cni::result::Interface;

    #[test]
    fn addresses_of_the_interface() {
        let prev = CniResultType {
            interfaces: vec![
                Interface {
                    name: "eth0".into(),
                    ..Interface::default()
                },
                Interface {
                    name: "net1".into(),
                    ..Interface::default()
                },
            ],
            ips: vec![
                IpConfig::new("198.18.176.5/24".parse().unwrap(), None),
                IpConfig {
                    interface: Some(1),
                    ..IpConfig::new("198.18.177.5/24".parse().unwrap(), None)
                },
                IpConfig {
                    interface: Some(0),
                    ..IpConfig::new("fd00:176::5/64".parse().unwrap(), None)
                },
            ],
            ..CniResultType::default()
        };
        let got: Vec<String> = ip_configs(&prev, "eth0")
            .unwrap()
            .iter()
            .map(|i| i.address.to_string())
            .collect();
        assert_eq!(got, ["198.18.176.5/24", "fd00:176::5/64"]);
        let empty = CniResultType::default();
        assert_eq!(ip_configs(&empty, "eth0").unwrap_err().code, 7);
        assert_eq!(
            host_prefix("fd00:176::5".parse().unwrap()).prefix_len(),
            128
        );
    }
}
