//! `tap`: a persistent TAP device created inside the container's namespace
//! (for a VMM running there), optionally multi-queue, owned by a user and
//! group, with a MAC and MTU, and attached to a bridge that already exists
//! in the container's namespace. Created under a temporary name and renamed
//! to CNI_IFNAME, as the reference (the kernel work is
//! [`ferry_drivers::network::tap`]). IPAM is optional.

use crate::conf;
use crate::{netconf, single};
use ferry_cni::result::Dns;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_drivers::link::detach::Deleter;
use ferry_drivers::network::tap::TapDriver;
use ferry_drivers::network::TapConfig;
use ferry_drivers::{NetworkDriver, NetworkKind, NetworkSpec};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TapConf {
    name: String,
    #[serde(rename = "multiQueue")]
    multi_queue: bool,
    mtu: i64,
    owner: Option<u32>,
    group: Option<u32>,
    bridge: String,
    dns: Option<Dns>,
}

/// The config (codes 6 and 7) as the driver's network, checked.
fn load(args: &CmdArgs, drv: &TapDriver) -> CniResult<(TapConf, NetworkSpec)> {
    let c: TapConf = conf::parse(args)?;
    let mtu = u32::try_from(c.mtu)
        .map_err(|_| CniError::invalid_config(format!("invalid MTU {}", c.mtu)))?;
    let net = NetworkSpec {
        id: c.name.clone(),
        kind: NetworkKind::Tap(TapConfig {
            multi_queue: c.multi_queue,
            owner: c.owner,
            group: c.group,
            bridge: (!c.bridge.is_empty()).then(|| c.bridge.clone()),
        }),
        mtu: (mtu > 0).then_some(mtu),
        gateways: Vec::new(),
        forwarding: false,
        masquerade: false,
    };
    drv.validate(&net).map_err(conf::driver_err)?;
    Ok((c, net))
}

fn driver() -> TapDriver {
    TapDriver::new(Deleter::Fork, ferry_drivers::state_dir())
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
        let drv = driver();
        let (c, net) = load(args, &drv)?;
        refuse_selinux(args)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        let mac = netconf::container_mac(args)?;
        conf::open_netns(&args.netns)?;
        let result = single::add(args, &drv, &net, mac, ipam_type.as_deref(), c.dns)?;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        // DEL does not judge the config beyond its JSON: the link goes anyway.
        let c: TapConf = conf::parse(args)?;
        let net = NetworkSpec {
            id: c.name,
            kind: NetworkKind::Tap(TapConfig::default()),
            mtu: None,
            gateways: Vec::new(),
            forwarding: false,
            masquerade: false,
        };
        let ipam_type = conf::optional_ipam_type(args)?;
        single::del(args, &driver(), &net, ipam_type.as_deref())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let drv = driver();
        let (_, net) = load(args, &drv)?;
        conf::open_netns(&args.netns)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        single::check(args, &drv, &net, ipam_type.as_deref(), "tap")
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        single::ipam_only(args, "STATUS")
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        single::ipam_only(args, "GC")
    }
}
