//! `macvlan`: a macvlan of a host interface (the master) in the container,
//! with its own MAC address. Created directly in the container's namespace
//! under a temporary name and renamed to CNI_IFNAME, as the reference does.
//! IPAM is optional: without an `ipam.type` the interface is L2 only and the
//! result has no IPs. Config keys and defaults as the reference plugin.

use crate::conf::{self, kernel};
use crate::{delegate, detach, iface, linkattr, netconf};
use ferry_cni::result::{Dns, Interface, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::{Family, Link, LinkSpec, MacvlanMode, Netlink, Netns, TABLE_MAIN};
use serde::Deserialize;
use serde_json::Value;

/// Index of the container interface in the result.
const CONTAINER_IFACE: usize = 0;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MacvlanConf {
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

fn mode_name(m: MacvlanMode) -> &'static str {
    match m {
        MacvlanMode::Bridge => "bridge",
        MacvlanMode::Private => "private",
        MacvlanMode::Vepa => "vepa",
        MacvlanMode::Passthru => "passthru",
    }
}

/// The interface of the first default route of the main table (IPv4 first,
/// then IPv6), as the reference's `getDefaultRouteInterfaceName`.
pub fn default_route_interface(nl: &mut Netlink) -> CniResult<String> {
    for family in [Family::V4, Family::V6] {
        let routes = nl
            .routes(family, Some(TABLE_MAIN))
            .map_err(kernel("failed to list routes"))?;
        if let Some(oif) = routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0)
            .find_map(|r| r.oif)
        {
            let link = nl
                .link_by_index(oif)
                .map_err(kernel(format!("failed to look up link #{oif}")))?;
            return Ok(link.name);
        }
    }
    Err(CniError::invalid_config(
        "no \"master\" given and no default route interface found",
    ))
}

/// The parsed config with the master resolved.
struct Loaded {
    conf: MacvlanConf,
    mode: MacvlanMode,
    master: Link,
}

/// Parses the config, resolves the master (in the container's namespace
/// with `linkInContainer`) and checks the MTU against it.
fn load(args: &CmdArgs, host_nl: &mut Netlink, cont_nl: Option<&mut Netlink>) -> CniResult<Loaded> {
    let mut c: MacvlanConf = conf::parse(args)?;
    let mode = parse_mode(&c.mode)?;
    let nl = match (c.link_in_container, cont_nl) {
        (false, _) => host_nl,
        (true, Some(nl)) => nl,
        (true, None) => {
            return Err(CniError::invalid_env(
                "linkInContainer needs the container's namespace (CNI_NETNS)",
            ))
        }
    };
    if c.master.is_empty() {
        c.master = default_route_interface(nl)?;
    }
    let where_ = if c.link_in_container {
        "the container's namespace"
    } else {
        "the host namespace"
    };
    let master = match nl.link_by_name(&c.master) {
        Ok(l) => l,
        Err(e) if e.is_not_found() || matches!(e, ferry_linux::Error::InvalidArgument(_)) => {
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                format!("failed to lookup master {:?}", c.master),
                format!("no interface {:?} in {where_}: {e}", c.master),
            ))
        }
        Err(e) => return Err(kernel(format!("failed to lookup master {:?}", c.master))(e)),
    };
    let master_mtu = i64::from(master.mtu.unwrap_or(u32::MAX));
    if c.mtu < 0 || c.mtu > master_mtu {
        return Err(CniError::invalid_config(format!(
            "invalid MTU {}, must be [0, master MTU({master_mtu})]",
            c.mtu
        )));
    }
    Ok(Loaded {
        conf: c,
        mode,
        master,
    })
}

/// Removes the container link and releases IPAM when ADD fails halfway.
struct Rollback<'a> {
    args: &'a CmdArgs,
    cont_nl: Option<&'a mut Netlink>,
    link: Option<u32>,
    ipam: Option<&'a str>,
}

impl Rollback<'_> {
    fn disarm(mut self) {
        self.link = None;
        self.ipam = None;
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if let (Some(index), Some(nl)) = (self.link, self.cont_nl.as_deref_mut()) {
            let _ = nl.delete_link(index);
        }
        if let Some(t) = self.ipam {
            let _ = delegate::ipam_pass(t, "DEL", self.args);
        }
    }
}

/// Creates the macvlan in the container under a temporary name and renames
/// it to `ifname`. Returns its index.
fn create(
    host_nl: &mut Netlink,
    cont_nl: &mut Netlink,
    netns: &Netns,
    l: &Loaded,
    ifname: &str,
    mac: Option<ferry_linux::MacAddr>,
) -> CniResult<u32> {
    let mut last = None;
    for _ in 0..5 {
        let tmp = linkattr::random_name("veth").map_err(conf::driver_err)?;
        let mut spec = LinkSpec::macvlan(&tmp, l.master.index, l.mode);
        if l.conf.mtu > 0 {
            spec = spec.mtu(l.conf.mtu as u32);
        }
        if let Some(m) = mac {
            spec = spec.mac(m);
        }
        let created = if l.conf.link_in_container {
            cont_nl.create_link(&spec)
        } else {
            host_nl.create_link(&spec.netns(netns))
        };
        match created {
            Ok(()) => {}
            Err(e) if e.is_exists() => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(kernel("failed to create macvlan")(e)),
        }
        let link = cont_nl
            .link_by_name(&tmp)
            .map_err(kernel(format!("failed to look up new macvlan {tmp}")))?;
        if let Err(e) = cont_nl.rename(link.index, ifname) {
            let _ = cont_nl.delete_link(link.index);
            if e.is_exists() {
                return Err(ifname_exists(ifname, e.to_string()));
            }
            return Err(kernel(format!("failed to rename macvlan to {ifname:?}"))(e));
        }
        return Ok(link.index);
    }
    Err(kernel("failed to find a free temporary macvlan name")(
        last.unwrap_or(ferry_linux::Error::InvalidArgument(
            "no attempt made".into(),
        )),
    ))
}

/// Code 4: CNI_IFNAME already names an interface in the container.
pub(crate) fn ifname_exists(ifname: &str, details: impl Into<String>) -> CniError {
    CniError::new(
        code::INVALID_ENVIRONMENT,
        format!("interface {ifname:?} already exists in the container's namespace"),
        details,
    )
}

pub(crate) use crate::iface::mac_string;

/// Sets the ARP/ND "notify on link change" sysctls the reference sets, best effort.
pub(crate) fn notify_sysctls(netns: &Netns, ifname: &str, ndisc: bool) {
    let _ = ferry_linux::sysctl::write_if_different_in(
        netns,
        &format!("net/ipv4/conf/{ifname}/arp_notify"),
        "1",
    );
    if ndisc {
        let _ = ferry_linux::sysctl::write_if_different_in(
            netns,
            &format!("net/ipv6/conf/{ifname}/ndisc_notify"),
            "1",
        );
    }
}

pub struct Macvlan;

impl Plugin for Macvlan {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        // Config errors first (codes 6 and 7), before anything is touched.
        let _: MacvlanConf = conf::parse(args)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        let netns = conf::open_netns(&args.netns)?;
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let mut cont_nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let l = load(args, &mut host_nl, Some(&mut cont_nl))?;
        let mac = netconf::container_mac(args)?;
        if cont_nl.link_by_name(&args.ifname).is_ok() {
            return Err(ifname_exists(
                &args.ifname,
                "CNI_IFNAME names an interface that is already in the container's namespace",
            ));
        }
        let index = create(&mut host_nl, &mut cont_nl, &netns, &l, &args.ifname, mac)?;
        let mut rollback = Rollback {
            args,
            cont_nl: Some(&mut cont_nl),
            link: Some(index),
            ipam: None,
        };

        let mut result = CniResultType {
            cni_version: ferry_cni::version::CURRENT.to_string(),
            ..CniResultType::default()
        };
        if let Some(t) = ipam_type.as_deref() {
            let ipam = delegate::ipam_add_for(t, args, CONTAINER_IFACE)?;
            rollback.ipam = Some(t);
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            notify_sysctls(&netns, &args.ifname, true);
            let nl = rollback
                .cont_nl
                .as_deref_mut()
                .ok_or_else(|| CniError::internal("container netlink socket is gone"))?;
            iface::configure(
                &netns,
                nl,
                &args.ifname,
                &conf::iface_config(&result, CONTAINER_IFACE),
                iface::Options::default(),
            )
            .map_err(conf::driver_err)?;
        } else {
            let nl = rollback
                .cont_nl
                .as_deref_mut()
                .ok_or_else(|| CniError::internal("container netlink socket is gone"))?;
            nl.set_up(index)
                .map_err(kernel(format!("failed to set {:?} UP", args.ifname)))?;
        }
        // The config's dns is the result's, as the reference (IPAM's is dropped).
        result.dns = l.conf.dns.clone().unwrap_or_default();
        let nl = rollback
            .cont_nl
            .as_deref_mut()
            .ok_or_else(|| CniError::internal("container netlink socket is gone"))?;
        let link = nl.link_by_index(index).map_err(kernel(format!(
            "failed to refetch macvlan {:?}",
            args.ifname
        )))?;
        result.interfaces = vec![Interface {
            name: args.ifname.clone(),
            mac: mac_string(&link),
            sandbox: args.netns.clone(),
            ..Interface::default()
        }];
        rollback.disarm();
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let _: MacvlanConf = conf::parse(args)?;
        // The link goes first: the kernel's part of its delete overlaps IPAM's DEL.
        let link = detach::start_in_netns(detach::Deleter::Fork, &args.netns, &args.ifname)
            .map_err(conf::driver_err);
        if let Some(t) = conf::optional_ipam_type(args)? {
            delegate::ipam_pass(&t, "DEL", args)?;
        }
        link?.finish();
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let _: MacvlanConf = conf::parse(args)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        let netns = conf::open_netns(&args.netns)?;
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let mut cont_nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let l = load(args, &mut host_nl, Some(&mut cont_nl))?;
        if let Some(t) = ipam_type.as_deref() {
            delegate::ipam_pass(t, "CHECK", args)?;
        }
        let prev = conf::required_prev_result(args, "macvlan")?;
        let (idx, want) = container_interface(&prev, args)?;
        let link = cont_nl.link_by_name(&args.ifname).map_err(|e| {
            CniError::internal(format!(
                "container interface {:?} in prevResult not found: {e}",
                args.ifname
            ))
        })?;
        if link.kind.as_deref() != Some("macvlan") {
            return Err(CniError::internal(format!(
                "container interface {:?} is not of type macvlan (kind {:?})",
                args.ifname, link.kind
            )));
        }
        let mode = linkattr::macvlan_mode(&mut cont_nl, link.index).map_err(conf::driver_err)?;
        if mode != Some(l.mode) {
            return Err(CniError::internal(format!(
                "container macvlan mode {} does not match expected value: {}",
                mode.map(mode_name).unwrap_or("unknown"),
                mode_name(l.mode)
            )));
        }
        if link.parent != Some(l.master.index) {
            return Err(CniError::internal(format!(
                "container macvlan {:?} is not on master {:?}",
                args.ifname, l.master.name
            )));
        }
        check_mac(want, &link)?;
        iface::check(&mut cont_nl, &args.ifname, &conf::iface_config(&prev, idx))
            .map_err(conf::driver_err)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        match conf::optional_ipam_type(args)? {
            Some(t) => delegate::ipam_pass(&t, "STATUS", args),
            None => Ok(()),
        }
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        match conf::optional_ipam_type(args)? {
            Some(t) => delegate::ipam_pass(&t, "GC", args),
            None => Ok(()),
        }
    }
}

/// The prevResult's interface for CNI_IFNAME in CNI_NETNS, and its index.
pub(crate) fn container_interface<'a>(
    prev: &'a CniResultType,
    args: &CmdArgs,
) -> CniResult<(usize, &'a Interface)> {
    prev.interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == args.ifname && i.sandbox == args.netns)
        .ok_or_else(|| {
            CniError::internal(format!(
                "prevResult has no interface {:?} with sandbox {:?} (sandbox doesn't match configured netns)",
                args.ifname, args.netns
            ))
        })
}

/// The MAC in the prevResult, when it gives one, is the link's.
pub(crate) fn check_mac(want: &Interface, link: &Link) -> CniResult<()> {
    if want.mac.is_empty() {
        return Ok(());
    }
    let have = mac_string(link);
    if !want.mac.eq_ignore_ascii_case(&have) {
        return Err(CniError::internal(format!(
            "interface {} Mac {} doesn't match container Mac: {have}",
            want.name, want.mac
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
