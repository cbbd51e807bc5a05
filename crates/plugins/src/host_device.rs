//! `host-device`: moves an existing host interface into the container,
//! renamed to CNI_IFNAME, and back on DEL under its original name, which is
//! kept in the interface's alias while it is in the container (as the
//! reference does; the kernel work is [`ferry_drivers::network::host_device`]).
//! The device is chosen by `device`, `hwaddr`, `kernelpath` or `pciBusID`
//! (overridden by `runtimeConfig.deviceID`); a PCI device bound to a
//! userspace (DPDK) driver is not moved and IPAM is then not applied. IPAM
//! is optional.

use crate::conf;
use crate::single::{self, Rollback, CONTAINER_IFACE};
use ferry_cni::result::Dns;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_drivers::link::detach::Deleter;
use ferry_drivers::network::host_device::{userspace_bound, HostDeviceDriver};
use ferry_drivers::network::HostDeviceConfig;
use ferry_drivers::{EndpointSpec, NetworkDriver, NetworkKind, NetworkSpec, Placement};
use ferry_linux::MacAddr;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    #[serde(rename = "deviceID")]
    device_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HostDeviceConf {
    name: String,
    device: String,
    hwaddr: String,
    kernelpath: String,
    #[serde(rename = "pciBusID")]
    pci_bus_id: String,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
    dns: Option<Dns>,
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The config (codes 6 and 7) as the driver's network, checked.
fn load(args: &CmdArgs, drv: &HostDeviceDriver) -> CniResult<(HostDeviceConf, NetworkSpec)> {
    let mut c: HostDeviceConf = conf::parse(args)?;
    if !c.runtime_config.device_id.is_empty() {
        c.pci_bus_id = c.runtime_config.device_id.clone();
    }
    // Only the selector that is used must be well-formed, as the reference.
    let hwaddr = if c.device.is_empty() && !c.hwaddr.is_empty() {
        Some(c.hwaddr.parse::<MacAddr>().map_err(|_| {
            CniError::invalid_config(format!("failed to parse MAC address {:?}", c.hwaddr))
        })?)
    } else {
        None
    };
    let net = NetworkSpec {
        id: c.name.clone(),
        kind: NetworkKind::HostDevice(HostDeviceConfig {
            device: some(&c.device),
            hwaddr,
            kernel_path: some(&c.kernelpath),
            pci_bus_id: some(&c.pci_bus_id),
        }),
        mtu: None,
        gateways: Vec::new(),
        forwarding: false,
        masquerade: false,
    };
    drv.validate(&net).map_err(conf::driver_err)?;
    Ok((c, net))
}

fn driver() -> HostDeviceDriver {
    HostDeviceDriver::new(Deleter::Fork, ferry_drivers::state_dir())
}

pub struct HostDevice;

impl Plugin for HostDevice {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let drv = driver();
        let (c, net) = load(args, &drv)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        conf::open_netns(&args.netns)?;
        let spec = EndpointSpec {
            id: single::endpoint_id(args),
            ..EndpointSpec::default()
        };
        let place = Placement::Netns {
            netns: &args.netns,
            ifname: &args.ifname,
        };
        let (ep, original) = drv.take(&net, &spec, place).map_err(conf::driver_err)?;
        let moved = ep.clone();
        let drv_ref = &drv;
        let mut rollback = Rollback::new(args, move || {
            if let Some(o) = original {
                let _ = drv_ref.give_back(&moved, &o);
            }
        });
        let mut result = rollback.ipam(ipam_type.as_deref())?;
        let cfg = conf::iface_config(&result, CONTAINER_IFACE);
        let ep = drv
            .join(&net, &ep, &args.netns, &args.ifname, &cfg)
            .map_err(conf::driver_err)?;
        // A userspace-bound device has no interface in the result.
        if !ep.ifname.is_empty() {
            result.interfaces = vec![single::interface(args, &ep)];
        }
        if ipam_type.is_some() {
            // With IPAM the reference puts the config's dns in the result.
            result.dns = c.dns.unwrap_or_default();
        }
        rollback.disarm();
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let drv = driver();
        let (_, net) = load(args, &drv)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        single::del(args, &drv, &net, ipam_type.as_deref())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let drv = driver();
        let (_, net) = load(args, &drv)?;
        conf::open_netns(&args.netns)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        let NetworkKind::HostDevice(hd) = &net.kind else {
            return Err(CniError::internal("host-device network of another kind"));
        };
        if userspace_bound(hd).map_err(conf::driver_err)? {
            // Nothing was moved: the prevResult has no interface to check.
            if let Some(t) = ipam_type.as_deref() {
                crate::delegate::ipam_pass(t, "CHECK", args)?;
            }
            return conf::required_prev_result(args, "host-device").map(|_| ());
        }
        single::check(args, &drv, &net, ipam_type.as_deref(), "host-device")
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        single::ipam_only(args, "STATUS")
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        single::ipam_only(args, "GC")
    }
}
