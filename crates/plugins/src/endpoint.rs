//! The CNI side of a driver endpoint (bridge, ptp): its ID, the endpoint a
//! DEL or CHECK names, and the undo of a half-done ADD.

use crate::delegate;
use ferry_cni::result::Result as CniResultType;
use ferry_cni::skel::CmdArgs;
use ferry_drivers::link::detach::Pending;
use ferry_drivers::network::{Endpoint, NetworkDriver, NetworkSpec};
use ipnet::IpNet;

/// The endpoint ID of the request: `CONTAINERID:IFNAME` (the driver layer
/// keys the bookkeeping files by it, as the plugins always have).
pub fn id(args: &CmdArgs) -> String {
    format!("{}:{}", args.container_id, args.ifname)
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
