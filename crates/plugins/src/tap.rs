//! `tap`: a persistent TAP device created inside the container's namespace
//! (for a VMM running there), optionally multi-queue, owned by a user and
//! group, with a MAC and MTU, and attached to a bridge that already exists
//! in the container's namespace. Created under a temporary name and renamed
//! to CNI_IFNAME, as the reference. IPAM is optional.

use crate::conf::{self, kernel};
use crate::macvlan::{check_mac, container_interface, ifname_exists, mac_string, notify_sysctls};
use crate::{delegate, detach, iface, linkattr, netconf};
use ferry_cni::result::{Dns, Interface, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::{Netlink, TapSpec};
use serde::Deserialize;
use serde_json::Value;

const CONTAINER_IFACE: usize = 0;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TapConf {
    #[serde(rename = "multiQueue")]
    multi_queue: bool,
    mtu: i64,
    owner: Option<u32>,
    group: Option<u32>,
    bridge: String,
    dns: Option<Dns>,
}

fn load(args: &CmdArgs) -> CniResult<TapConf> {
    let c: TapConf = conf::parse(args)?;
    if c.mtu < 0 || c.mtu > 65535 {
        return Err(CniError::invalid_config(format!("invalid MTU {}", c.mtu)));
    }
    if !c.bridge.is_empty() {
        ferry_linux::check_ifname(&c.bridge)
            .map_err(|e| CniError::invalid_config(format!("bridge name {:?}: {e}", c.bridge)))?;
    }
    Ok(c)
}

/// `selinuxContext` (any case, as Go's JSON decoding matches keys): creating
/// the device under an SELinux label needs the exec-label machinery of the
/// reference, which Ferry does not have; refuse it rather than ignore it.
fn refuse_selinux(args: &CmdArgs) -> CniResult<()> {
    let Some(obj) = args.config.as_object() else {
        return Ok(());
    };
    for (k, v) in obj {
        if k.eq_ignore_ascii_case("selinuxContext") && v.as_str().is_some_and(|s| !s.is_empty()) {
            return Err(netconf::unsupported(
                k,
                v,
                "creating the tap under an SELinux context is not supported by Ferry's tap plugin",
            ));
        }
    }
    Ok(())
}

pub struct Tap;

impl Plugin for Tap {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let c = load(args)?;
        refuse_selinux(args)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        let mac = netconf::container_mac(args)?;
        let netns = conf::open_netns(&args.netns)?;
        let mut nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        if nl.link_by_name(&args.ifname).is_ok() {
            return Err(ifname_exists(
                &args.ifname,
                "CNI_IFNAME names an interface that is already in the container's namespace",
            ));
        }
        let bridge = if c.bridge.is_empty() {
            None
        } else {
            match nl.link_by_name(&c.bridge) {
                Ok(b) if b.kind.as_deref() == Some("bridge") => Some(b),
                Ok(b) => {
                    return Err(CniError::invalid_config(format!(
                        "{:?} in the container is not a bridge (kind {:?})",
                        c.bridge, b.kind
                    )))
                }
                Err(e) if e.is_not_found() => {
                    return Err(CniError::new(
                        code::INVALID_NETWORK_CONFIG,
                        format!("failed to get bridge {}", c.bridge),
                        format!("no bridge {:?} in the container's namespace: {e}", c.bridge),
                    ))
                }
                Err(e) => return Err(kernel(format!("failed to get bridge {}", c.bridge))(e)),
            }
        };

        // A TUNSETIFF on the name of an existing tap would attach to it
        // rather than fail: use a fresh name nobody has.
        let mut tmp = linkattr::random_name("veth").map_err(conf::driver_err)?;
        for _ in 0..5 {
            if nl.link_by_name(&tmp).is_err() {
                break;
            }
            tmp = linkattr::random_name("veth").map_err(conf::driver_err)?;
        }
        let spec = TapSpec {
            name: tmp.clone(),
            multi_queue: c.multi_queue,
            owner: c.owner,
            group: c.group,
        };
        ferry_linux::create_tap(&spec, Some(&netns)).map_err(kernel("failed to create tap"))?;
        let link = nl
            .link_by_name(&tmp)
            .map_err(kernel(format!("failed to look up new tap {tmp}")))?;
        let index = link.index;
        let mut guard = Guard {
            args,
            nl: &mut nl,
            index: Some(index),
            ipam: None,
        };
        let g = &mut guard;
        if c.mtu > 0 {
            g.nl.set_mtu(index, c.mtu as u32)
                .map_err(kernel(format!("failed to set MTU {} on the tap", c.mtu)))?;
        }
        if let Some(m) = mac {
            g.nl.set_mac(index, m)
                .map_err(kernel(format!("failed to set MAC {m} on the tap")))?;
        }
        if let Err(e) = g.nl.rename(index, &args.ifname) {
            if e.is_exists() {
                return Err(ifname_exists(&args.ifname, e.to_string()));
            }
            return Err(kernel(format!("failed to rename tap to {:?}", args.ifname))(e));
        }
        if let Some(b) = &bridge {
            g.nl.set_master(index, b.index).map_err(kernel(format!(
                "failed to set tap {} as a port of bridge {}",
                args.ifname, c.bridge
            )))?;
        }
        g.nl.set_up(index)
            .map_err(kernel("failed to set tap interface up"))?;

        let mut result = CniResultType {
            cni_version: ferry_cni::version::CURRENT.to_string(),
            ..CniResultType::default()
        };
        if let Some(t) = ipam_type.as_deref() {
            let ipam = delegate::ipam_add_for(t, args, CONTAINER_IFACE)?;
            g.ipam = Some(t);
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            notify_sysctls(&netns, &args.ifname, false);
            // A tap has no carrier until a VMM opens it, so IPv6 DAD would
            // never finish: the addresses go on without it.
            iface::configure(
                &netns,
                g.nl,
                &args.ifname,
                &conf::iface_config(&result, CONTAINER_IFACE),
                iface::Options {
                    nodad: true,
                    ..iface::Options::default()
                },
            )
            .map_err(conf::driver_err)?;
        }
        result.dns = c.dns.clone().unwrap_or_default();
        let link =
            g.nl.link_by_index(index)
                .map_err(kernel(format!("failed to refetch tap {:?}", args.ifname)))?;
        result.interfaces = vec![Interface {
            name: args.ifname.clone(),
            mac: mac_string(&link),
            sandbox: args.netns.clone(),
            ..Interface::default()
        }];
        g.index = None;
        g.ipam = None;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let _: TapConf = conf::parse(args)?;
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
        let _ = load(args)?;
        let netns = conf::open_netns(&args.netns)?;
        if let Some(t) = conf::optional_ipam_type(args)? {
            delegate::ipam_pass(&t, "CHECK", args)?;
        }
        let prev = conf::required_prev_result(args, "tap")?;
        let (idx, want) = container_interface(&prev, args)?;
        let mut nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let link = nl.link_by_name(&args.ifname).map_err(|e| {
            CniError::internal(format!(
                "container interface {:?} in prevResult not found: {e}",
                args.ifname
            ))
        })?;
        if link.kind.as_deref() != Some("tun") {
            return Err(CniError::internal(format!(
                "container interface {:?} is not a tap (kind {:?})",
                args.ifname, link.kind
            )));
        }
        check_mac(want, &link)?;
        iface::check(&mut nl, &args.ifname, &conf::iface_config(&prev, idx))
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

/// Deletes the tap and releases IPAM when ADD fails halfway.
struct Guard<'a> {
    args: &'a CmdArgs,
    nl: &'a mut Netlink,
    index: Option<u32>,
    ipam: Option<&'a str>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.index {
            let _ = self.nl.delete_link(i);
        }
        if let Some(t) = self.ipam {
            let _ = delegate::ipam_pass(t, "DEL", self.args);
        }
    }
}
