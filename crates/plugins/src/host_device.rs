//! `host-device`: moves an existing host interface into the container,
//! renamed to CNI_IFNAME, and back on DEL under its original name, which is
//! kept in the interface's alias while it is in the container (as the
//! reference does). The device is chosen by `device`, `hwaddr`,
//! `kernelpath` or `pciBusID` (overridden by `runtimeConfig.deviceID`); a
//! PCI device bound to a userspace (DPDK) driver is not moved and IPAM is
//! then not applied. IPAM is optional.

use crate::conf::{self, kernel};
use crate::macvlan::{check_mac, container_interface, ifname_exists, mac_string};
use crate::{delegate, iface, linkattr};
use ferry_cni::result::{Dns, Interface, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::{Link, MacAddr, Netlink, Netns};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SYS_BUS_PCI: &str = "/sys/bus/pci/devices";
/// Drivers that take a device away from the kernel's network stack (DPDK).
const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];
const CONTAINER_IFACE: usize = 0;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    #[serde(rename = "deviceID")]
    device_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HostDeviceConf {
    device: String,
    hwaddr: String,
    kernelpath: String,
    #[serde(rename = "pciBusID")]
    pci_bus_id: String,
    #[serde(rename = "runtimeConfig")]
    runtime_config: RuntimeConfig,
    dns: Option<Dns>,
}

struct Loaded {
    conf: HostDeviceConf,
    /// The PCI device is bound to a userspace driver: nothing to move.
    dpdk: bool,
}

fn load(args: &CmdArgs) -> CniResult<Loaded> {
    let mut c: HostDeviceConf = conf::parse(args)?;
    if !c.runtime_config.device_id.is_empty() {
        c.pci_bus_id = c.runtime_config.device_id.clone();
    }
    if c.device.is_empty()
        && c.hwaddr.is_empty()
        && c.kernelpath.is_empty()
        && c.pci_bus_id.is_empty()
    {
        return Err(CniError::invalid_config(
            "specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\"",
        ));
    }
    let dpdk = if c.pci_bus_id.is_empty() {
        false
    } else {
        has_dpdk_driver(&c.pci_bus_id)?
    };
    Ok(Loaded { conf: c, dpdk })
}

/// A PCI address is a single path component (`0000:3d:00.1`).
fn pci_dir(addr: &str) -> CniResult<PathBuf> {
    if addr.is_empty() || addr.contains('/') || addr == "." || addr == ".." {
        return Err(CniError::invalid_config(format!(
            "invalid PCI address {addr:?}"
        )));
    }
    Ok(Path::new(SYS_BUS_PCI).join(addr))
}

fn has_dpdk_driver(addr: &str) -> CniResult<bool> {
    let driver = pci_dir(addr)?.join("driver");
    let target = std::fs::canonicalize(&driver).map_err(|e| {
        CniError::new(
            code::INVALID_NETWORK_CONFIG,
            format!("error with host device: PCI device {addr:?} not found or has no driver"),
            format!("{}: {e}", driver.display()),
        )
    })?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(USERSPACE_DRIVERS.contains(&name.as_str()))
}

fn not_found(what: String) -> CniError {
    CniError::new(
        code::INVALID_NETWORK_CONFIG,
        "failed to find host device",
        what,
    )
}

/// The first entry of `dir` (sorted, as Go's `os.ReadDir`) that is a host link.
fn first_link_in(nl: &mut Netlink, dir: &Path) -> Option<Link> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().find_map(|n| nl.link_by_name(n).ok())
}

/// Finds the host device the config names (the reference's `getLink`).
fn find_device(nl: &mut Netlink, c: &HostDeviceConf) -> CniResult<Link> {
    if !c.device.is_empty() {
        return match nl.link_by_name(&c.device) {
            Ok(l) => Ok(l),
            Err(e) if e.is_not_found() || matches!(e, ferry_linux::Error::InvalidArgument(_)) => {
                Err(not_found(format!(
                    "no interface {:?} on the host: {e}",
                    c.device
                )))
            }
            Err(e) => Err(kernel(format!("failed to look up {:?}", c.device))(e)),
        };
    }
    if !c.hwaddr.is_empty() {
        let mac: MacAddr = c.hwaddr.parse().map_err(|_| {
            CniError::invalid_config(format!("failed to parse MAC address {:?}", c.hwaddr))
        })?;
        return nl
            .find_link(|l| l.mac == Some(mac))
            .map_err(kernel("failed to list node links"))?
            .ok_or_else(|| not_found(format!("no host interface has MAC {mac}")));
    }
    if !c.kernelpath.is_empty() {
        let p = Path::new(&c.kernelpath);
        if !p.is_absolute()
            || !c.kernelpath.starts_with("/sys/devices/")
            || c.kernelpath.contains("/../")
        {
            return Err(CniError::invalid_config(format!(
                "kernel device path {:?} must be absolute and begin with /sys/devices/",
                c.kernelpath
            )));
        }
        let net = p.join("net");
        return first_link_in(nl, &net)
            .ok_or_else(|| not_found(format!("no network device at {}", net.display())));
    }
    let dir = pci_dir(&c.pci_bus_id)?;
    let mut net = dir.join("net");
    if !net.exists() {
        // virtio devices: /sys/bus/pci/devices/ADDR/virtioN/net
        let virtio = std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("net"))
            .filter(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|n| n.to_string_lossy().starts_with("virtio"))
            })
            .find(|p| p.exists());
        net = virtio.ok_or_else(|| {
            not_found(format!(
                "no net directory under pci device {}",
                c.pci_bus_id
            ))
        })?;
    }
    first_link_in(nl, &net).ok_or_else(|| {
        not_found(format!(
            "failed to find device name for pci address {}",
            c.pci_bus_id
        ))
    })
}

/// Moves the device out again after a failed ADD, with the alias it had.
struct Rollback<'a> {
    args: &'a CmdArgs,
    netns: &'a Netns,
    /// Set once the device is in the container: its alias before ADD and
    /// whether it was up.
    moved: Option<(String, bool)>,
    ipam: Option<&'a str>,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ipam {
            let _ = delegate::ipam_pass(t, "DEL", self.args);
        }
        if let Some((alias, was_up)) = &self.moved {
            if let Ok(Some(name)) = move_out(self.netns, &self.args.ifname, Some(alias)) {
                if *was_up {
                    if let Ok(mut nl) = Netlink::new() {
                        if let Ok(l) = nl.link_by_name(&name) {
                            let _ = nl.set_up(l.index);
                        }
                    }
                }
            }
        }
    }
}

/// Moves CNI_IFNAME back to the host namespace under the name kept in its
/// alias. The alias stays as it is (as the reference leaves it) unless
/// `restore_alias` gives the one to put back. Returns the host name, `None`
/// when there was nothing to move.
fn move_out(netns: &Netns, ifname: &str, restore_alias: Option<&str>) -> CniResult<Option<String>> {
    let mut nl = netns
        .netlink()
        .map_err(kernel("failed to open netlink in the container"))?;
    let dev = match nl.link_by_name(ifname) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(kernel(format!("failed to find {ifname:?}"))(e)),
    };
    let original = linkattr::alias(&mut nl, dev.index).map_err(conf::driver_err)?;
    // No alias: the device did not come from this plugin's ADD; it goes back
    // under its current name.
    let name = if original.is_empty() {
        ifname.to_string()
    } else {
        original
    };
    let host = Netns::current().map_err(kernel("failed to open the host namespace"))?;
    // Down first (a device is moved down anyway), so the host sees it as
    // the reference leaves it.
    if dev.up {
        nl.set_down(dev.index)
            .map_err(kernel(format!("failed to set {ifname:?} down")))?;
    }
    if let Err(e) = linkattr::move_rename(&mut nl, dev.index, &host, &name, restore_alias) {
        if dev.up {
            let _ = nl.set_up(dev.index);
        }
        return Err(CniError::new(
            code::INTERNAL,
            format!("failed to move {ifname:?} back to the host as {name:?}"),
            e.to_string(),
        ));
    }
    Ok(Some(name))
}

pub struct HostDevice;

impl Plugin for HostDevice {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let l = load(args)?;
        let ipam_type = conf::optional_ipam_type(args)?;
        let netns = conf::open_netns(&args.netns)?;
        let mut cont_nl = netns
            .netlink()
            .map_err(kernel("failed to open netlink in the container"))?;
        let mut result = CniResultType {
            cni_version: ferry_cni::version::CURRENT.to_string(),
            ..CniResultType::default()
        };
        let mut rollback = Rollback {
            args,
            netns: &netns,
            moved: None,
            ipam: None,
        };
        if !l.dpdk {
            let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
            let dev = find_device(&mut host_nl, &l.conf)?;
            if cont_nl.link_by_name(&args.ifname).is_ok() {
                return Err(ifname_exists(
                    &args.ifname,
                    "CNI_IFNAME names an interface that is already in the container's namespace",
                ));
            }
            let original_alias =
                linkattr::alias(&mut host_nl, dev.index).map_err(conf::driver_err)?;
            // One request: into the container, renamed, original name in the alias.
            linkattr::move_rename(
                &mut host_nl,
                dev.index,
                &netns,
                &args.ifname,
                Some(&dev.name),
            )
            .map_err(|e| {
                if e.is_exists() {
                    ifname_exists(&args.ifname, e.to_string())
                } else {
                    CniError::new(
                        code::INTERNAL,
                        format!("failed to move link {:?} into the container", dev.name),
                        e.to_string(),
                    )
                }
            })?;
            rollback.moved = Some((original_alias, dev.up));
            let cont = cont_nl
                .link_by_name(&args.ifname)
                .map_err(kernel(format!("failed to find {:?}", args.ifname)))?;
            cont_nl
                .set_up(cont.index)
                .map_err(kernel(format!("failed to set {:?} up", args.ifname)))?;
            result.interfaces = vec![Interface {
                name: args.ifname.clone(),
                mac: mac_string(&cont),
                sandbox: args.netns.clone(),
                ..Interface::default()
            }];
        }
        if let Some(t) = ipam_type.as_deref() {
            let ipam = delegate::ipam_add_for(t, args, CONTAINER_IFACE)?;
            rollback.ipam = Some(t);
            result.ips = ipam.ips;
            result.routes = ipam.routes;
            if !l.dpdk {
                iface::configure(
                    &netns,
                    &mut cont_nl,
                    &args.ifname,
                    &conf::iface_config(&result, CONTAINER_IFACE),
                    iface::Options::default(),
                )
                .map_err(conf::driver_err)?;
            }
            // With IPAM the reference puts the config's dns in the result.
            result.dns = l.conf.dns.clone().unwrap_or_default();
        }
        rollback.moved = None;
        rollback.ipam = None;
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let l = load(args)?;
        if let Some(t) = conf::optional_ipam_type(args)? {
            delegate::ipam_pass(&t, "DEL", args)?;
        }
        if l.dpdk {
            return Ok(());
        }
        let Some(netns) = conf::open_netns_for_del(&args.netns) else {
            return Ok(());
        };
        move_out(&netns, &args.ifname, None).map(|_| ())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let l = load(args)?;
        let netns = conf::open_netns(&args.netns)?;
        if let Some(t) = conf::optional_ipam_type(args)? {
            delegate::ipam_pass(&t, "CHECK", args)?;
        }
        let prev = conf::required_prev_result(args, "host-device")?;
        if l.dpdk {
            return Ok(());
        }
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
