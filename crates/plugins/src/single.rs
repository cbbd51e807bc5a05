//! The CNI side the plugins with one container link made by a driver share
//! (macvlan, tap, host-device): ADD's order (link, IPAM, join) with its
//! rollback, DEL, CHECK against `prevResult`, and IPAM being optional.

use crate::conf;
use crate::delegate;
use ferry_cni::result::{Dns, Interface, Result as CniResultType};
use ferry_cni::skel::CmdArgs;
use ferry_cni::{CniError, CniResult};
use ferry_drivers::link::detach::Pending;
use ferry_drivers::{Endpoint, EndpointSpec, NetworkDriver, NetworkSpec, Placement};
use ferry_linux::MacAddr;

/// Index of the container interface in the result.
pub const CONTAINER_IFACE: usize = 0;

/// The endpoint's ID: `CONTAINERID:IFNAME`.
pub fn endpoint_id(args: &CmdArgs) -> String {
    format!("{}:{}", args.container_id, args.ifname)
}

/// The endpoint CNI_IFNAME in CNI_NETNS, as DEL and CHECK name it.
pub fn endpoint(args: &CmdArgs, mac: Option<MacAddr>) -> Endpoint {
    Endpoint {
        id: endpoint_id(args),
        ifname: args.ifname.clone(),
        netns: Some(args.netns.clone()),
        mac,
        ..Endpoint::default()
    }
}

/// Undoes a failed ADD: `undo` takes the link back, and IPAM is released.
pub struct Rollback<'a> {
    args: &'a CmdArgs,
    undo: Option<Box<dyn FnOnce() + 'a>>,
    ipam: Option<&'a str>,
}

impl<'a> Rollback<'a> {
    /// Armed with `undo` for the link just made.
    pub fn new(args: &'a CmdArgs, undo: impl FnOnce() + 'a) -> Self {
        Rollback {
            args,
            undo: Some(Box::new(undo)),
            ipam: None,
        }
    }

    /// Runs IPAM `ipam_type` (if any) into a fresh result, released again
    /// when ADD fails later.
    pub fn ipam(&mut self, ipam_type: Option<&'a str>) -> CniResult<CniResultType> {
        let mut result = CniResultType {
            cni_version: ferry_cni::version::CURRENT.to_string(),
            ..CniResultType::default()
        };
        if let Some(t) = ipam_type {
            let ipam = delegate::ipam_add_for(t, self.args, CONTAINER_IFACE)?;
            self.ipam = Some(t);
            result.ips = ipam.ips;
            result.routes = ipam.routes;
        }
        Ok(result)
    }

    /// ADD succeeded: keep everything.
    pub fn disarm(mut self) {
        self.undo = None;
        self.ipam = None;
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ipam {
            let _ = delegate::ipam_pass(t, "DEL", self.args);
        }
        if let Some(undo) = self.undo.take() {
            undo();
        }
    }
}

/// The result's container interface for a joined endpoint.
pub fn interface(args: &CmdArgs, ep: &Endpoint) -> Interface {
    Interface {
        name: ep.ifname.clone(),
        mac: ep.mac.map(|m| m.to_string()).unwrap_or_default(),
        sandbox: args.netns.clone(),
        ..Interface::default()
    }
}

/// ADD: the link in the container, IPAM (optional), then addresses, up and
/// routes; the config's `dns` is the result's (IPAM's is dropped, as the
/// reference). A failure takes back what was made.
pub fn add(
    args: &CmdArgs,
    drv: &dyn NetworkDriver,
    net: &NetworkSpec,
    mac: Option<MacAddr>,
    ipam_type: Option<&str>,
    dns: Option<Dns>,
) -> CniResult<CniResultType> {
    let spec = EndpointSpec {
        id: endpoint_id(args),
        mac,
        addresses: Vec::new(),
    };
    let place = Placement::Netns {
        netns: &args.netns,
        ifname: &args.ifname,
    };
    let ep = drv
        .create_endpoint(net, &spec, place)
        .map_err(conf::driver_err)?;
    let made = ep.clone();
    let mut rollback = Rollback::new(args, move || {
        if let Ok(p) = drv.delete_endpoint(net, &made) {
            p.finish();
        }
    });
    let mut result = rollback.ipam(ipam_type)?;
    let cfg = conf::iface_config(&result, CONTAINER_IFACE);
    let ep = drv
        .join(net, &ep, &args.netns, &args.ifname, &cfg)
        .map_err(conf::driver_err)?;
    result.dns = dns.unwrap_or_default();
    result.interfaces = vec![interface(args, &ep)];
    rollback.disarm();
    Ok(result)
}

/// DEL: the link's delete starts first, so the kernel's part of it overlaps
/// IPAM's DEL.
pub fn del(
    args: &CmdArgs,
    drv: &dyn NetworkDriver,
    net: &NetworkSpec,
    ipam_type: Option<&str>,
) -> CniResult<()> {
    // An IPAM plugin that speaks through the link (dhcp's RELEASE) goes
    // before it.
    let ipam_first = ipam_type.filter(|t| delegate::needs_link(t));
    if let Some(t) = ipam_first {
        delegate::ipam_pass(t, "DEL", args)?;
    }
    let link: CniResult<Pending> = drv
        .delete_endpoint(net, &endpoint(args, None))
        .map_err(conf::driver_err);
    if let Some(t) = ipam_type.filter(|_| ipam_first.is_none()) {
        delegate::ipam_pass(t, "DEL", args)?;
    }
    link?.finish();
    Ok(())
}

/// CHECK: IPAM's CHECK, then the driver's against the prevResult's
/// interface CNI_IFNAME in CNI_NETNS (its MAC, addresses and routes).
pub fn check(
    args: &CmdArgs,
    drv: &dyn NetworkDriver,
    net: &NetworkSpec,
    ipam_type: Option<&str>,
    plugin: &str,
) -> CniResult<()> {
    if let Some(t) = ipam_type {
        delegate::ipam_pass(t, "CHECK", args)?;
    }
    let prev = conf::required_prev_result(args, plugin)?;
    let (idx, want) = container_interface(&prev, args)?;
    let mac = if want.mac.is_empty() {
        None
    } else {
        Some(want.mac.parse::<MacAddr>().map_err(|_| {
            CniError::internal(format!(
                "interface {} Mac {} in prevResult is not a MAC address",
                want.name, want.mac
            ))
        })?)
    };
    drv.check(net, &endpoint(args, mac), &conf::iface_config(&prev, idx))
        .map_err(conf::driver_err)
}

/// The prevResult's interface for CNI_IFNAME in CNI_NETNS, and its index.
fn container_interface<'a>(
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

/// STATUS and GC: IPAM's, when there is one.
pub fn ipam_only(args: &CmdArgs, command: &str) -> CniResult<()> {
    match conf::optional_ipam_type(args)? {
        Some(t) => delegate::ipam_pass(&t, command, args),
        None => Ok(()),
    }
}
