//! `ptp`: a veth pair with the container's addresses routed point-to-point
//! through the host: the gateway address on the host end (/32 or /128), a
//! host route to each container address, and in the container a link route
//! to the gateway with everything else via it. As the reference plugin.

use crate::conf::{self, driver_err};
use crate::endpoint::{self, Rollback};
use crate::{delegate, netconf, veth};
use ferry_cni::result::Result as CniResultType;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::CniResult;
use ferry_drivers::link::detach::Deleter;
use ferry_drivers::network::ptp::PtpDriver;
use ferry_drivers::network::{NetworkDriver, NetworkKind, NetworkSpec};
use serde::Deserialize;
use serde_json::Value;

/// Index of the container interface in the result (host veth, container).
const CONTAINER_IFACE: usize = 1;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PtpConf {
    mtu: i64,
}

impl PtpConf {
    /// Parses and checks the config (ADD, CHECK): nothing is touched.
    fn load(args: &CmdArgs) -> CniResult<PtpConf> {
        let c: PtpConf = conf::parse(args)?;
        driver().validate(&c.network(args)?).map_err(driver_err)?;
        Ok(c)
    }

    /// The network as the driver takes it.
    fn network(&self, args: &CmdArgs) -> CniResult<NetworkSpec> {
        Ok(NetworkSpec {
            id: conf::network_name(args).to_string(),
            kind: NetworkKind::Ptp,
            mtu: conf::mtu(self.mtu)?,
            gateways: Vec::new(),
            // The host routes the container's traffic.
            forwarding: true,
            masquerade: netconf::ip_masq(args)?,
        })
    }
}

fn driver() -> PtpDriver {
    PtpDriver::new(Deleter::Fork, ferry_drivers::state_dir())
}

pub struct Ptp;

impl Plugin for Ptp {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let c = PtpConf::load(args)?;
        let ipam_type = conf::ipam_type(args)?;
        conf::open_netns(&args.netns)?;
        // Before IPAM, so a refused ADD changes nothing.
        veth::ensure_absent_at(&args.netns, &args.ifname).map_err(driver_err)?;
        let d = driver();
        let mut rollback = Rollback::new(args, &d);
        let ipam = delegate::ipam_add_for(&ipam_type, args, CONTAINER_IFACE)?;
        rollback.ipam = Some(ipam_type);
        let net = c.network(args)?;
        let mut result = CniResultType {
            cni_version: args.cni_version.clone(),
            ips: ipam.ips,
            routes: ipam.routes,
            dns: ipam.dns,
            ..CniResultType::default()
        };
        let ep = endpoint::add(&mut rollback, &net, None, &result, CONTAINER_IFACE, true)?;
        if let Some(dns) = netconf::dns(args)? {
            result.dns = dns;
        }
        result.interfaces = endpoint::veth_interfaces(args, &ep).to_vec();
        rollback.armed = false;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let _: PtpConf = conf::parse(args)?;
        // DEL makes no links: a bad MTU must not stop it.
        let net = PtpConf::default().network(args)?;
        endpoint::del(&driver(), &net, args, Some(&conf::ipam_type(args)?))
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let c = PtpConf::load(args)?;
        let ipam_type = conf::ipam_type(args)?;
        delegate::ipam_pass(&ipam_type, "CHECK", args)?;
        let prev = conf::required_prev_result(args, "ptp")?;
        let idx = conf::prev_container_iface(&prev, &args.ifname)?;
        let mut ep = endpoint::of_request(args, Vec::new());
        ep.host_ifname = endpoint::host_iface(&prev, "");
        driver()
            .check(&c.network(args)?, &ep, &conf::iface_config(&prev, idx))
            .map_err(driver_err)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        delegate::ipam_pass(&conf::ipam_type(args)?, "STATUS", args)
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        delegate::ipam_pass(&conf::ipam_type(args)?, "GC", args)
    }
}
