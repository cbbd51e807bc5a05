//! The contract both front doors call: a [`NetworkDriver`] per kind of
//! network, and [`Sandboxes`] for the namespaces endpoints join.
//!
//! A CNI plugin parses its config into a [`NetworkSpec`] and an
//! [`EndpointSpec`], calls the driver, and shapes a CNI result from the
//! [`Endpoint`] it gets back. The CNM controller keeps networks and
//! endpoints in its registry and calls the same driver. Neither door holds
//! netlink, nftables or namespace code of its own.
//!
//! The life of an endpoint:
//! 1. [`NetworkDriver::create_network`] (idempotent: a CNI ADD calls it
//!    every time, the CNM controller once).
//! 2. [`NetworkDriver::create_endpoint`]: the interface, either straight in
//!    the container's namespace ([`Placement::Netns`], CNI and Ferry's own
//!    door) or left on the host for its owner to move ([`Placement::Host`],
//!    Docker).
//! 3. [`NetworkDriver::join`]: addresses, routes and link up inside the
//!    namespace, under the final name.
//! 4. [`NetworkDriver::program_external_connectivity`]: published ports and
//!    masquerade.
//! 5. The way back: revoke, [`NetworkDriver::leave`],
//!    [`NetworkDriver::delete_endpoint`] (idempotent; the link's delete is
//!    detached, see [`crate::link::detach`]), and
//!    [`NetworkDriver::delete_network`].
//!
//! Namespaces are named by path, so the types here are plain data that a
//! door can store and a fake driver can record.

pub mod bridge;
pub mod host;
pub mod host_device;
pub mod macvlan;
pub mod null;
pub mod overlay;
pub mod ptp;
pub mod registry;
pub mod sandbox;
mod single;
pub mod tap;
mod veth_endpoint;

pub use veth_endpoint::{keep_nft_socket_open, nft_socket, NftSocket};

use crate::link::detach::Pending;
use crate::link::iface::InterfaceConfig;
use crate::portmap::Mapping;
use crate::state::Attachment;
use crate::Result;
use ferry_linux::{MacAddr, MacvlanMode};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// The settings of a bridge network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    /// The Linux bridge (created when missing).
    pub bridge: String,
    /// Put the bridge in promiscuous mode.
    #[serde(default)]
    pub promisc: bool,
    /// Hairpin mode on every port.
    #[serde(default)]
    pub hairpin: bool,
    /// Isolated ports (they reach only non-isolated ports).
    #[serde(default)]
    pub port_isolation: bool,
    /// Replace a different gateway address on the bridge instead of failing.
    #[serde(default)]
    pub force_address: bool,
    /// Let frames in from a port only with its container's MAC.
    #[serde(default)]
    pub macspoofchk: bool,
    /// Isolate the network as Docker's bridge does (the firewall driver):
    /// other networks cannot reach it; with `icc: false` neither can its
    /// own containers each other. The CNI bridge leaves this to the
    /// `firewall` plugin.
    #[serde(default)]
    pub isolate: bool,
    /// Containers of the network may reach each other (Docker's `enable_icc`).
    #[serde(default = "yes")]
    pub icc: bool,
    /// Run IPv6 duplicate address detection on the container's addresses
    /// (the CNI bridge's `enabledad`). Without it, join turns DAD off on
    /// the interface (`accept_dad=0`), as the reference does: hairpin and
    /// promiscuous bridges echo neighbour solicitations, which fails DAD.
    #[serde(default)]
    pub enabledad: bool,
}

fn yes() -> bool {
    true
}

/// The settings of a macvlan network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacvlanConfig {
    /// The master (parent) interface.
    pub master: String,
    pub mode: MacvlanMode,
    /// The master lives in the container's namespace, not the host's.
    #[serde(default)]
    pub link_in_container: bool,
}

/// The settings of a host-device network: which host device to move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDeviceConfig {
    /// By name.
    #[serde(default)]
    pub device: Option<String>,
    /// By MAC address.
    #[serde(default)]
    pub hwaddr: Option<MacAddr>,
    /// By sysfs path (`/sys/devices/...`).
    #[serde(default)]
    pub kernel_path: Option<String>,
    /// By PCI address.
    #[serde(default)]
    pub pci_bus_id: Option<String>,
}

/// The settings of a tap network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapConfig {
    #[serde(default)]
    pub multi_queue: bool,
    #[serde(default)]
    pub owner: Option<u32>,
    #[serde(default)]
    pub group: Option<u32>,
    /// A bridge in the container's namespace to enslave the tap to.
    #[serde(default)]
    pub bridge: Option<String>,
}

/// The settings of an overlay network: one VXLAN segment (one subnet)
/// spanning hosts, seen on each host as a bridge with a VXLAN port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayConfig {
    /// VXLAN network identifier, 1..=16777215.
    pub vni: u32,
    /// The per-network bridge the endpoints are ports of.
    pub bridge: String,
    /// The VXLAN device (a port of `bridge`).
    pub vxlan: String,
    /// This host's VTEP address on the underlay: an address of one of its
    /// devices, which carries the tunnel.
    pub local: IpAddr,
    /// The VXLAN UDP port.
    #[serde(default = "vxlan_port")]
    pub port: u16,
}

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

fn vxlan_port() -> u16 {
    VXLAN_PORT
}

/// What kind of network, with its kind's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NetworkKind {
    Bridge(BridgeConfig),
    Ptp,
    Macvlan(MacvlanConfig),
    HostDevice(HostDeviceConfig),
    Tap(TapConfig),
    /// A multi-host VXLAN network (see [`overlay`]).
    Overlay(OverlayConfig),
    /// Endpoints without an interface.
    Null,
    /// The host's own stack (a sandbox that is the host namespace).
    Host,
}

impl NetworkKind {
    /// The driver's name, as users choose it.
    pub fn name(&self) -> &'static str {
        match self {
            NetworkKind::Bridge(_) => "bridge",
            NetworkKind::Ptp => "ptp",
            NetworkKind::Macvlan(_) => "macvlan",
            NetworkKind::HostDevice(_) => "host-device",
            NetworkKind::Tap(_) => "tap",
            NetworkKind::Overlay(_) => "overlay",
            NetworkKind::Null => "null",
            NetworkKind::Host => "host",
        }
    }

    /// Endpoints of this kind have an interface in the sandbox.
    pub fn has_interface(&self) -> bool {
        !matches!(self, NetworkKind::Null | NetworkKind::Host)
    }
}

/// A network, as drivers need it. The door owns it and passes it to every
/// call; drivers keep nothing between calls beyond the kernel's state and
/// their bookkeeping files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Stable ID: the CNI network name, or the CNM network ID. Names the
    /// bookkeeping of the packet-filter drivers.
    pub id: String,
    pub kind: NetworkKind,
    /// MTU of the links the driver makes (`None`: the kernel's default).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Addresses the host side owns (a bridge's gateway addresses); empty
    /// for an internal network.
    #[serde(default)]
    pub gateways: Vec<IpNet>,
    /// Turn on IP forwarding for the families of `gateways`.
    #[serde(default)]
    pub forwarding: bool,
    /// Masquerade traffic that leaves the network's subnets.
    #[serde(default)]
    pub masquerade: bool,
}

impl NetworkSpec {
    /// The error of a driver handed a network of another kind; `expected`
    /// names its own kind as the message reads ("a bridge", "tap").
    pub(crate) fn wrong_kind(&self, expected: &str) -> crate::Error {
        crate::Error::Invalid(format!(
            "network {} is a {} network, not {expected}",
            self.id,
            self.kind.name()
        ))
    }
}

/// An endpoint to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Stable ID: `containerID:ifname` for CNI, the endpoint ID for CNM.
    /// Names the endpoint's bookkeeping.
    pub id: String,
    /// The container interface's MAC (`None`: the kernel picks one).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The endpoint's addresses (for masquerade, isolation, ptp's host
    /// routes); join gets them again with their gateways.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
}

/// Where [`NetworkDriver::create_endpoint`] puts the container end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// Left in the host namespace under a generated name; its owner
    /// (Docker) moves it into the sandbox and names it.
    Host,
    /// Created straight in the namespace at `netns` as `ifname` (CNI ADD,
    /// `ferry connect`): never visible on the host.
    Netns { netns: &'a str, ifname: &'a str },
}

/// The bookkeeping attachment of endpoint `ep_id` of `net` (the packet
/// filter drivers' file names): a CNI ID `CONTAINERID:IFNAME` splits at the
/// last ':' (no interface name has one), a CNM endpoint ID gets ifname `ep`.
pub fn attachment(net: &NetworkSpec, ep_id: &str) -> Result<Attachment> {
    let (id, ifname) = split_endpoint_id(ep_id);
    Attachment::new(&net.id, id, ifname)
}

/// `(container ID, ifname)` of an endpoint ID, as [`attachment`] splits it.
pub fn split_endpoint_id(ep_id: &str) -> (&str, &str) {
    ep_id.rsplit_once(':').unwrap_or((ep_id, "ep"))
}

/// A created endpoint: what the door keeps and passes back to later calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The [`EndpointSpec::id`] it was created with.
    pub id: String,
    /// The host end (a veth on the bridge or routed by ptp), if any.
    #[serde(default)]
    pub host_ifname: Option<String>,
    /// The host end's MAC.
    #[serde(default)]
    pub host_mac: Option<MacAddr>,
    /// The container end's current name: where [`Placement`] put it.
    #[serde(default)]
    pub ifname: String,
    /// The namespace the container end is in (`None`: the host's).
    #[serde(default)]
    pub netns: Option<String>,
    /// The container end's MAC.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The addresses the endpoint was created with.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// The device the host end is a port of (a bridge's name), if any.
    #[serde(default)]
    pub master: Option<String>,
    /// The master's MAC, read once the port was added (a bridge without a
    /// fixed MAC takes its lowest port's).
    #[serde(default)]
    pub master_mac: Option<MacAddr>,
}

/// Port publishing for [`NetworkDriver::program_external_connectivity`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct External {
    pub mappings: Vec<Mapping>,
}

/// A route the sandbox should have, for [`Sandboxes::set_routes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRoute {
    pub dst: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// The interface in the sandbox.
    pub ifname: String,
}

/// One kind of network. Every method is idempotent where the doors need
/// it (create/delete network, delete endpoint, leave, revoke), and a method
/// that fails leaves nothing behind.
pub trait NetworkDriver: Send + Sync {
    /// The kind this driver implements (`bridge`, `macvlan`, ...).
    fn name(&self) -> &'static str;

    /// Checks the network's settings without changing anything.
    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        let _ = net;
        Ok(())
    }

    /// Makes (or finds) what the network needs on the host: a bridge, its
    /// gateway addresses, forwarding. Drivers whose networks are nothing on
    /// the host only check the settings.
    fn create_network(&self, net: &NetworkSpec) -> Result<()> {
        self.validate(net)
    }

    /// Removes what [`Self::create_network`] made (idempotent).
    fn delete_network(&self, net: &NetworkSpec) -> Result<()> {
        let _ = net;
        Ok(())
    }

    /// Makes the endpoint's interface, placed as asked.
    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint>;

    /// Removes the endpoint's interface (idempotent: a link or namespace
    /// already gone is success). The link's delete is detached; `finish()`
    /// the result once the rest of the teardown is done.
    fn delete_endpoint(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<Pending>;

    /// Configures the endpoint inside the namespace at `netns`: renamed to
    /// `ifname` when it has another name there, addresses, link up, routes.
    /// Returns the endpoint as it now is.
    fn join(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        ifname: &str,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint>;

    /// Puts `new` into service in place of `old` (a service that moves
    /// between sandboxes; `old` is `None` on its first attach). `new` was
    /// made by [`Self::create_endpoint`] in its namespace under its final
    /// name with `old`'s MAC, and is still down. Its addresses (`cfg`, no
    /// routes) are added while it is down and `old` still serves; then `old`
    /// goes down, `new` comes up and announces its addresses (gratuitous
    /// ARP, unsolicited neighbour advertisement), so the bridge and the
    /// peers learn its port at once. `old` stays, down, for
    /// [`Self::delete_endpoint`]; if `new` cannot come up, `old` is brought
    /// back up. Returns `new` as joined.
    fn take_over(
        &self,
        net: &NetworkSpec,
        old: Option<&Endpoint>,
        new: &Endpoint,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        let _ = (old, new, cfg);
        Err(crate::Error::Unsupported(format!(
            "the {} driver does not move services (use a bridge network)",
            net.kind.name()
        )))
    }

    /// Undoes [`Self::join`]'s side effects outside the interface itself
    /// (idempotent). The interface goes with [`Self::delete_endpoint`].
    fn leave(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
        let _ = (net, ep);
        Ok(())
    }

    /// Verifies the endpoint is as created and joined.
    fn check(&self, net: &NetworkSpec, ep: &Endpoint, cfg: &InterfaceConfig) -> Result<()>;

    /// Publishes ports and masquerades the endpoint's traffic (idempotent).
    fn program_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        ext: &External,
    ) -> Result<()> {
        let _ = (net, ep, ext);
        Ok(())
    }

    /// Undoes [`Self::program_external_connectivity`] (idempotent).
    fn revoke_external_connectivity(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
        let _ = (net, ep);
        Ok(())
    }

    /// Removes what the driver keeps for endpoints of `net` whose IDs are
    /// not in `valid`.
    fn gc(&self, net: &NetworkSpec, valid: &[String]) -> Result<()> {
        let _ = (net, valid);
        Ok(())
    }

    /// Deletes the host links of `net` that are none of `keep` (host
    /// interface names): what a daemon killed between making an endpoint
    /// and committing it left. Returns their names.
    fn prune_links(&self, net: &NetworkSpec, keep: &[String]) -> Result<Vec<String>> {
        let _ = (net, keep);
        Ok(Vec::new())
    }
}

/// The namespaces sandboxes live in.
pub trait Sandboxes: Send + Sync {
    /// Creates the named namespace (`/run/netns/NAME`) with `lo` up, and
    /// returns its path.
    fn create(&self, name: &str) -> Result<PathBuf>;

    /// Deletes a namespace [`Self::create`] made (idempotent).
    fn delete(&self, name: &str) -> Result<()>;

    /// Fails unless `path` is a network namespace.
    fn open(&self, path: &str) -> Result<()>;

    /// Whether `path` is the namespace of the calling process (the host's).
    fn is_host(&self, path: &str) -> Result<bool>;

    /// Whether `ifname` exists in the namespace at `path`.
    fn has_link(&self, path: &str, ifname: &str) -> Result<bool>;

    /// Installs each route, replacing one to the same destination.
    fn set_routes(&self, path: &str, routes: &[SandboxRoute]) -> Result<()>;

    /// The prefixes the host routes (main table, both families, without
    /// defaults and link-local): automatically chosen pools avoid them.
    fn host_routes(&self) -> Vec<IpNet>;
}

/// Every driver, by name.
pub trait Drivers: Send + Sync {
    /// The driver of `kind`.
    fn driver(&self, kind: &NetworkKind) -> &dyn NetworkDriver;
    /// The namespace work.
    fn sandboxes(&self) -> &dyn Sandboxes;

    /// Deletes the host links that belong to no network any more and that
    /// no endpoint claims (`keep`: the claimed host interface names): what
    /// an older daemon killed between making a pair and attaching it left
    /// (see [`crate::link::veth::stray_host_pairs`]). Returns their names.
    fn prune_stray_links(&self, keep: &[String]) -> Result<Vec<String>> {
        let _ = keep;
        Ok(Vec::new())
    }
}
