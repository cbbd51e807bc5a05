//! The host-device driver: moves an existing host interface into the
//! sandbox and back, as the reference `host-device` plugin does. While the
//! device is in the sandbox its original name is kept in its alias, and it
//! goes back under that name. The device is chosen by name, MAC, sysfs path
//! or PCI address; a PCI device bound to a userspace (DPDK) driver is not
//! moved at all (its endpoint has no interface).

use super::single::{self, JoinOptions};
use super::{
    Endpoint, EndpointSpec, HostDeviceConfig, NetworkDriver, NetworkKind, NetworkSpec, Placement,
};
use crate::kernel;
use crate::link::attr;
use crate::link::detach::{Deleter, Pending};
use crate::link::iface::InterfaceConfig;
use crate::{Error, Result};
use ferry_linux::{Link, Netlink, Netns};
use std::path::{Path, PathBuf};

const SYS_BUS_PCI: &str = "/sys/bus/pci/devices";
/// Drivers that take a device away from the kernel's network stack (DPDK).
const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

/// The host-device driver.
pub struct HostDeviceDriver {
    pub deleter: Deleter,
    pub state_dir: PathBuf,
}

/// What a device was before [`HostDeviceDriver::take`] moved it, for
/// [`HostDeviceDriver::give_back`] to restore when the attachment fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub alias: String,
    pub up: bool,
}

fn config(net: &NetworkSpec) -> Result<&HostDeviceConfig> {
    match &net.kind {
        NetworkKind::HostDevice(c) => Ok(c),
        _ => Err(net.wrong_kind("host-device")),
    }
}

/// A PCI address is a single path component (`0000:3d:00.1`).
fn pci_dir(addr: &str) -> Result<PathBuf> {
    if addr.is_empty() || addr.contains('/') || addr == "." || addr == ".." {
        return Err(Error::Invalid(format!("invalid PCI address {addr:?}")));
    }
    Ok(Path::new(SYS_BUS_PCI).join(addr))
}

/// Whether the configured PCI device is bound to a userspace driver: then
/// there is nothing to move.
pub fn userspace_bound(cfg: &HostDeviceConfig) -> Result<bool> {
    let Some(addr) = &cfg.pci_bus_id else {
        return Ok(false);
    };
    let driver = pci_dir(addr)?.join("driver");
    let target = std::fs::canonicalize(&driver).map_err(|e| {
        Error::Invalid(format!(
            "error with host device: PCI device {addr:?} not found or has no driver: {}: {e}",
            driver.display()
        ))
    })?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(USERSPACE_DRIVERS.contains(&name.as_str()))
}

fn not_found(what: String) -> Error {
    Error::Invalid(format!("failed to find host device: {what}"))
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
pub fn find_device(nl: &mut Netlink, c: &HostDeviceConfig) -> Result<Link> {
    if let Some(dev) = &c.device {
        return match nl.link_by_name(dev) {
            Ok(l) => Ok(l),
            Err(e) if e.is_not_found() || matches!(e, ferry_linux::Error::InvalidArgument(_)) => {
                Err(not_found(format!("no interface {dev:?} on the host: {e}")))
            }
            Err(e) => Err(kernel(format!("failed to look up {dev:?}"))(e)),
        };
    }
    if let Some(mac) = c.hwaddr {
        return nl
            .find_link(|l| l.mac == Some(mac))
            .map_err(kernel("failed to list node links"))?
            .ok_or_else(|| not_found(format!("no host interface has MAC {mac}")));
    }
    if let Some(kp) = &c.kernel_path {
        let p = Path::new(kp);
        if !p.is_absolute() || !kp.starts_with("/sys/devices/") || kp.contains("/../") {
            return Err(Error::Invalid(format!(
                "kernel device path {kp:?} must be absolute and begin with /sys/devices/"
            )));
        }
        let net = p.join("net");
        return first_link_in(nl, &net)
            .ok_or_else(|| not_found(format!("no network device at {}", net.display())));
    }
    let Some(addr) = &c.pci_bus_id else {
        return Err(Error::Invalid(
            "specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\"".into(),
        ));
    };
    let dir = pci_dir(addr)?;
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
        net =
            virtio.ok_or_else(|| not_found(format!("no net directory under pci device {addr}")))?;
    }
    first_link_in(nl, &net)
        .ok_or_else(|| not_found(format!("failed to find device name for pci address {addr}")))
}

/// Moves `ifname` from `netns` to the host namespace under the name kept
/// in its alias (its current name when it has none). The alias stays as it
/// is (as the reference leaves it) unless `restore` gives the original
/// state. Returns the host name, `None` when there was nothing to move.
fn move_out(netns: &Netns, ifname: &str, restore: Option<&Original>) -> Result<Option<String>> {
    let mut nl = single::netlink_in(netns)?;
    let dev = match nl.link_by_name(ifname) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(kernel(format!("failed to find {ifname:?}"))(e)),
    };
    let original = attr::alias(&mut nl, dev.index)?;
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
    let alias = restore.map(|o| o.alias.as_str());
    if let Err(e) = attr::move_rename(&mut nl, dev.index, &host, &name, alias) {
        if dev.up {
            let _ = nl.set_up(dev.index);
        }
        return Err(kernel(format!(
            "failed to move {ifname:?} back to the host as {name:?}"
        ))(e));
    }
    if restore.is_some_and(|o| o.up) {
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let l = host_nl
            .link_by_name(&name)
            .map_err(kernel(format!("failed to find {name:?}")))?;
        host_nl
            .set_up(l.index)
            .map_err(kernel(format!("failed to set {name:?} up")))?;
    }
    Ok(Some(name))
}

/// The namespace an endpoint's device is in; `None` when it is gone.
fn where_is(ep: &Endpoint) -> Result<Option<Netns>> {
    match &ep.netns {
        Some(path) => Ok(Netns::open(path).ok()),
        None => Netns::current()
            .map(Some)
            .map_err(kernel("failed to open the host namespace")),
    }
}

impl HostDeviceDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        HostDeviceDriver { deleter, state_dir }
    }

    /// [`NetworkDriver::create_endpoint`], also returning what the device
    /// was (`None` when nothing was moved) for [`Self::give_back`].
    pub fn take(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<(Endpoint, Option<Original>)> {
        let cfg = config(net)?;
        let netns = match place {
            Placement::Netns { netns, .. } => Some(netns.to_string()),
            Placement::Host => None,
        };
        let mut endpoint = Endpoint {
            id: ep.id.clone(),
            netns,
            addresses: ep.addresses.clone(),
            ..Endpoint::default()
        };
        if userspace_bound(cfg)? {
            return Ok((endpoint, None));
        }
        let mut host_nl = Netlink::new().map_err(kernel("failed to open netlink"))?;
        let dev = find_device(&mut host_nl, cfg)?;
        let (ns, ifname) = match place {
            Placement::Netns { netns, ifname } => {
                let ns = single::open_netns(netns)?;
                single::ensure_free(&mut single::netlink_in(&ns)?, ifname)?;
                (ns, ifname.to_string())
            }
            Placement::Host => {
                let ns = Netns::current().map_err(kernel("failed to open the host namespace"))?;
                (ns, attr::random_name("hd")?)
            }
        };
        let original = Original {
            alias: attr::alias(&mut host_nl, dev.index)?,
            up: dev.up,
        };
        // The kernel renames only a link that is down.
        if dev.up && place == Placement::Host {
            host_nl
                .set_down(dev.index)
                .map_err(kernel(format!("failed to set {:?} down", dev.name)))?;
        }
        // One request: moved, renamed, original name in the alias.
        attr::move_rename(&mut host_nl, dev.index, &ns, &ifname, Some(&dev.name)).map_err(|e| {
            if dev.up && place == Placement::Host {
                let _ = host_nl.set_up(dev.index);
            }
            if e.is_exists() {
                Error::Exists(format!(
                    "interface {ifname:?} already exists in the container's namespace"
                ))
            } else {
                kernel(format!(
                    "failed to move link {:?} into the container",
                    dev.name
                ))(e)
            }
        })?;
        endpoint.ifname = ifname.clone();
        let mut nl = single::netlink_in(&ns)?;
        let moved = nl
            .link_by_name(&ifname)
            .map_err(kernel(format!("failed to find {ifname:?}")));
        let moved = match moved {
            Ok(l) => l,
            Err(e) => {
                let _ = self.give_back(&endpoint, &original);
                return Err(e);
            }
        };
        if let Placement::Netns { .. } = place {
            if let Err(e) = nl.set_up(moved.index) {
                let _ = self.give_back(&endpoint, &original);
                return Err(kernel(format!("failed to set {ifname:?} up"))(e));
            }
        }
        endpoint.mac = moved.mac;
        Ok((endpoint, Some(original)))
    }

    /// Moves the device of `ep` back as it was before [`Self::take`]: its
    /// name, alias and state.
    pub fn give_back(&self, ep: &Endpoint, original: &Original) -> Result<()> {
        if let Some(ns) = where_is(ep)? {
            move_out(&ns, &ep.ifname, Some(original))?;
        }
        Ok(())
    }
}

impl NetworkDriver for HostDeviceDriver {
    fn name(&self) -> &'static str {
        "host-device"
    }

    /// One way to find the device, and a PCI device that exists.
    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        let cfg = config(net)?;
        if cfg.device.is_none()
            && cfg.hwaddr.is_none()
            && cfg.kernel_path.is_none()
            && cfg.pci_bus_id.is_none()
        {
            return Err(Error::Invalid(
                "specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\"".into(),
            ));
        }
        userspace_bound(cfg).map(|_| ())
    }

    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        self.take(net, ep, place).map(|(ep, _)| ep)
    }

    /// Moves the device back to the host under its original name (a
    /// namespace already gone gave it back itself). Nothing is deleted, so
    /// nothing is left pending.
    fn delete_endpoint(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<Pending> {
        if ep.ifname.is_empty() || userspace_bound(config(net)?)? {
            return Ok(Pending::none());
        }
        if let Some(ns) = where_is(ep)? {
            move_out(&ns, &ep.ifname, None)?;
        }
        Ok(Pending::none())
    }

    fn join(
        &self,
        _net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        ifname: &str,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        if ep.ifname.is_empty() {
            // A userspace-bound device: nothing in the sandbox to configure.
            return Ok(ep.clone());
        }
        single::join(ep, netns, ifname, cfg, JoinOptions::default())
    }

    fn check(&self, net: &NetworkSpec, ep: &Endpoint, cfg: &InterfaceConfig) -> Result<()> {
        if userspace_bound(config(net)?)? {
            return Ok(());
        }
        single::check(ep, None, cfg).map(|_| ())
    }
}
