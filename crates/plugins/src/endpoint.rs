//! The CNI side of a veth driver's endpoint (bridge, ptp): its ID, ADD's
//! and DEL's driver steps, the result's interfaces, the endpoint a DEL or
//! CHECK names, and the undo of a half-done ADD.

use crate::conf::{self, driver_err};
use crate::delegate;
use ferry_cni::result::{Interface, Result as CniResultType};
use ferry_cni::skel::CmdArgs;
use ferry_cni::CniResult;
use ferry_drivers::link::detach::Pending;
use ferry_drivers::network::{
    Endpoint, EndpointSpec, External, NetworkDriver, NetworkSpec, Placement,
};
use ferry_linux::MacAddr;
use ipnet::IpNet;

/// The endpoint ID of the request: `CONTAINERID:IFNAME` (the driver layer
/// keys the bookkeeping files by it, as the plugins always have).
pub fn id(args: &CmdArgs) -> String {
    format!("{}:{}", args.container_id, args.ifname)
}

/// ADD's driver steps once IPAM has answered (`result`): the endpoint as
/// CNI_IFNAME in CNI_NETNS, joined with the addresses and routes of result
/// interface `index` unless `join` is false, and masqueraded when the
/// network says so. The rollback learns of the endpoint.
pub fn add(
    rollback: &mut Rollback<'_>,
    net: &NetworkSpec,
    mac: Option<MacAddr>,
    result: &CniResultType,
    index: usize,
    join: bool,
) -> CniResult<Endpoint> {
    let addresses = result.ips.iter().map(|i| i.address).collect();
    let ep = create(rollback, net, mac, addresses)?;
    finish(rollback, net, ep, result, index, join)
}

/// The endpoint's link as CNI_IFNAME in CNI_NETNS, not yet configured
/// (before IPAM when the IPAM plugin needs the link: `dhcp`).
pub fn create(
    rollback: &mut Rollback<'_>,
    net: &NetworkSpec,
    mac: Option<MacAddr>,
    addresses: Vec<IpNet>,
) -> CniResult<Endpoint> {
    let (args, d) = (rollback.args, rollback.driver);
    let spec = EndpointSpec {
        id: id(args),
        mac,
        addresses,
    };
    let place = Placement::Netns {
        netns: &args.netns,
        ifname: &args.ifname,
    };
    let ep = d.create_endpoint(net, &spec, place).map_err(driver_err)?;
    rollback.endpoint = Some((net.clone(), ep.clone()));
    Ok(ep)
}

/// The rest of [`add`] for an endpoint made by [`create`]: the join with
/// `result`'s addresses and routes, and the masquerade.
pub fn finish(
    rollback: &mut Rollback<'_>,
    net: &NetworkSpec,
    mut ep: Endpoint,
    result: &CniResultType,
    index: usize,
    join: bool,
) -> CniResult<Endpoint> {
    let (args, d) = (rollback.args, rollback.driver);
    ep.addresses = result.ips.iter().map(|i| i.address).collect();
    if join {
        let cfg = conf::iface_config(result, index);
        d.join(net, &ep, &args.netns, &args.ifname, &cfg)
            .map_err(driver_err)?;
    }
    if net.masquerade {
        d.program_external_connectivity(net, &ep, &External::default())
            .map_err(driver_err)?;
    }
    Ok(ep)
}

/// A result interface named `name` with MAC `mac`, in `sandbox` ("" for the host).
pub fn interface(name: &str, mac: Option<MacAddr>, sandbox: &str) -> Interface {
    Interface {
        name: name.to_string(),
        mac: mac.map(|m| m.to_string()).unwrap_or_default(),
        sandbox: sandbox.to_string(),
        ..Interface::default()
    }
}

/// The result's host veth and container interfaces of `ep`.
pub fn veth_interfaces(args: &CmdArgs, ep: &Endpoint) -> [Interface; 2] {
    [
        interface(ep.host_ifname.as_deref().unwrap_or(""), ep.host_mac, ""),
        interface(&args.ifname, ep.mac, &args.netns),
    ]
}

/// DEL through the driver: the endpoint's link (detached), the masquerade,
/// then the IPAM lease (`ipam`: its type); answers once the link is gone.
pub fn del(
    d: &dyn NetworkDriver,
    net: &NetworkSpec,
    args: &CmdArgs,
    ipam: Option<&str>,
) -> CniResult<()> {
    let ep = of_request(args, prev_addresses(args));
    // An IPAM plugin that speaks through the link (dhcp's RELEASE) goes
    // before it.
    if let Some(t) = ipam.filter(|t| delegate::needs_link(t)) {
        delegate::ipam_pass(t, "DEL", args)?;
    }
    // The link goes first so that the kernel's part of the delete runs
    // while the rest of DEL (IPAM, nftables) does: see link::detach.
    let link = d.delete_endpoint(net, &ep).map_err(driver_err);
    if net.masquerade {
        d.revoke_external_connectivity(net, &ep)
            .map_err(driver_err)?;
    }
    if let Some(t) = ipam.filter(|t| !delegate::needs_link(t)) {
        delegate::ipam_pass(t, "DEL", args)?;
    }
    link?.finish();
    Ok(())
}

/// The endpoint a DEL or CHECK speaks of: the container end `CNI_IFNAME` in
/// `CNI_NETNS`, with `addresses` (DEL's masquerade fallback).
pub fn of_request(args: &CmdArgs, addresses: Vec<IpNet>) -> Endpoint {
    Endpoint {
        id: id(args),
        ifname: args.ifname.clone(),
        netns: (!args.netns.is_empty()).then(|| args.netns.clone()),
        addresses,
        ..Endpoint::default()
    }
}

/// The addresses of the container's interfaces in the request's
/// prevResult, if it has a readable one.
pub fn prev_addresses(args: &CmdArgs) -> Vec<IpNet> {
    crate::conf::prev_result(args)
        .ok()
        .flatten()
        .map(|p| crate::portmap::container_addrs(&p))
        .unwrap_or_default()
}

/// The first host-side interface of a result that is not `except` (the
/// bridge): the host veth.
pub fn host_iface(prev: &CniResultType, except: &str) -> Option<String> {
    prev.interfaces
        .iter()
        .find(|i| i.sandbox.is_empty() && i.name != except)
        .map(|i| i.name.clone())
}

/// Undoes a half-done ADD when dropped armed: the endpoint through its
/// driver, then the IPAM lease.
pub struct Rollback<'a> {
    pub args: &'a CmdArgs,
    pub driver: &'a dyn NetworkDriver,
    /// The IPAM type, once an address was allocated.
    pub ipam: Option<String>,
    /// The network and endpoint, once created.
    pub endpoint: Option<(NetworkSpec, Endpoint)>,
    pub armed: bool,
}

impl<'a> Rollback<'a> {
    pub fn new(args: &'a CmdArgs, driver: &'a dyn NetworkDriver) -> Rollback<'a> {
        Rollback {
            args,
            driver,
            ipam: None,
            endpoint: None,
            armed: true,
        }
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((net, ep)) = &self.endpoint {
            let _ = self.driver.delete_endpoint(net, ep).map(Pending::finish);
        }
        if let Some(t) = &self.ipam {
            let _ = delegate::ipam_pass(t, "DEL", self.args);
        }
    }
}
