//! [`Drivers`] on the real kernel: one driver of each kind, and the
//! sandboxes' namespaces.

use super::bridge::BridgeDriver;
use super::host::HostDriver;
use super::host_device::HostDeviceDriver;
use super::macvlan::MacvlanDriver;
use super::null::NullDriver;
use super::overlay::OverlayDriver;
use super::ptp::PtpDriver;
use super::sandbox::LinuxSandboxes;
use super::tap::TapDriver;
use super::{Drivers, NetworkDriver, NetworkKind, Sandboxes};
use crate::link::detach::Deleter;
use crate::Result;
use std::path::PathBuf;

/// Every driver, sharing one way of deleting links and one bookkeeping root.
pub struct LinuxDrivers {
    bridge: BridgeDriver,
    ptp: PtpDriver,
    macvlan: MacvlanDriver,
    host_device: HostDeviceDriver,
    tap: TapDriver,
    overlay: OverlayDriver,
    null: NullDriver,
    host: HostDriver,
    sandboxes: LinuxSandboxes,
}

impl LinuxDrivers {
    /// `deleter`: [`Deleter::Thread`] in a daemon, [`Deleter::Fork`] in a
    /// one-shot plugin. `state_dir`: the packet-filter drivers' bookkeeping.
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> LinuxDrivers {
        LinuxDrivers {
            bridge: BridgeDriver::new(deleter, state_dir.clone()),
            ptp: PtpDriver::new(deleter, state_dir.clone()),
            macvlan: MacvlanDriver::new(deleter, state_dir.clone()),
            host_device: HostDeviceDriver::new(deleter, state_dir.clone()),
            tap: TapDriver::new(deleter, state_dir.clone()),
            overlay: OverlayDriver::new(deleter, state_dir.clone()),
            null: NullDriver::new(deleter, state_dir.clone()),
            host: HostDriver::new(deleter, state_dir),
            sandboxes: LinuxSandboxes,
        }
    }
}

impl LinuxDrivers {
    /// The overlay driver itself, for its peer operations (the agent that
    /// follows the cluster store calls them; they are no part of
    /// [`NetworkDriver`]).
    pub fn overlay(&self) -> &OverlayDriver {
        &self.overlay
    }
}

impl Drivers for LinuxDrivers {
    fn driver(&self, kind: &NetworkKind) -> &dyn NetworkDriver {
        match kind {
            NetworkKind::Bridge(_) => &self.bridge,
            NetworkKind::Ptp => &self.ptp,
            NetworkKind::Macvlan(_) => &self.macvlan,
            NetworkKind::HostDevice(_) => &self.host_device,
            NetworkKind::Tap(_) => &self.tap,
            NetworkKind::Overlay(_) => &self.overlay,
            NetworkKind::Null => &self.null,
            NetworkKind::Host => &self.host,
        }
    }

    fn sandboxes(&self) -> &dyn Sandboxes {
        &self.sandboxes
    }

    fn prune_stray_links(&self, keep: &[String]) -> Result<Vec<String>> {
        self.bridge.prune_stray_pairs(keep)
    }
}
