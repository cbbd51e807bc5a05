//! Ferry's CNI plugins. Each module is one plugin type, a thin adapter from
//! CNI config to the Linux layer and IPAM; drop-in replacements for the
//! reference Go plugins (same type names, config keys and defaults).

pub mod bandwidth;
pub mod bridge;
pub mod conf;
pub mod delegate;
pub mod dhcp;
pub mod endpoint;
pub mod ferry_dns;
pub mod ferry_overlay;
pub mod ferryd_client;
pub mod firewall;
pub mod host_device;
pub mod host_local;
pub mod loopback;
pub mod macvlan;
pub mod netconf;
pub mod portmap;
pub mod ptp;
pub mod sbr;
pub mod single;
pub mod static_ipam;
pub mod tap;
pub mod tuning;

// The kernel work lives in the driver layer, shared with ferryd.
pub use ferry_drivers::link::{detach, iface, veth};

use ferry_cni::skel::Plugin;

/// A plugin type: the name it is installed under and its `about` line.
pub struct Entry {
    pub name: &'static str,
    pub about: &'static str,
    pub plugin: &'static (dyn Plugin + Sync),
}

/// Every plugin type `ferry-plugin` can run.
pub static REGISTRY: &[Entry] = &[
    Entry {
        name: "loopback",
        about: "Ferry loopback plugin: brings lo up in the container",
        plugin: &loopback::Loopback,
    },
    Entry {
        name: "bridge",
        about: "Ferry bridge plugin: a veth from the container to a Linux bridge",
        plugin: &bridge::Bridge,
    },
    Entry {
        name: "ptp",
        about: "Ferry ptp plugin: a point-to-point veth routed through the host",
        plugin: &ptp::Ptp,
    },
    Entry {
        name: "host-local",
        about: "Ferry host-local IPAM plugin: addresses from local range sets, state in files",
        plugin: &host_local::HostLocal,
    },
    Entry {
        name: "static",
        about: "Ferry static IPAM plugin: returns the configured addresses",
        plugin: &static_ipam::Static,
    },
    Entry {
        name: "dhcp",
        about: "Ferry dhcp IPAM plugin: leases from a DHCP server through the dhcp daemon (`dhcp daemon`)",
        plugin: &dhcp::Dhcp,
    },
    Entry {
        name: "macvlan",
        about: "Ferry macvlan plugin: a macvlan of a host interface in the container",
        plugin: &macvlan::Macvlan,
    },
    Entry {
        name: "host-device",
        about: "Ferry host-device plugin: moves a host interface into the container",
        plugin: &host_device::HostDevice,
    },
    Entry {
        name: "tap",
        about: "Ferry tap plugin: a TAP device in the container",
        plugin: &tap::Tap,
    },
    Entry {
        name: "tuning",
        about: "Ferry tuning plugin: sysctls and interface attributes of the container, restored on DEL",
        plugin: &tuning::Tuning,
    },
    Entry {
        name: "sbr",
        about: "Ferry sbr plugin: source-based routing, a routing table and a rule per container address",
        plugin: &sbr::Sbr,
    },
    Entry {
        name: "bandwidth",
        about: "Ferry bandwidth plugin: tbf shaping of a container's veth, egress through an ifb",
        plugin: &bandwidth::Bandwidth,
    },
    Entry {
        name: "portmap",
        about: "Ferry portmap plugin: publishes container ports on the node through nftables",
        plugin: &portmap::PortMap,
    },
    Entry {
        name: "firewall",
        about: "Ferry firewall plugin: allows forwarding to the container and isolates bridges (nftables)",
        plugin: &firewall::Firewall,
    },
    Entry {
        name: "ferry-overlay",
        about: "Ferry overlay plugin: attaches the container to a network of the local ferryd (an overlay of the cluster)",
        plugin: &ferry_overlay::FerryOverlay,
    },
    Entry {
        name: "ferry-dns",
        about: "Ferry DNS plugin: registers the attachment's names (runtimeConfig.aliases, K8S_POD_NAME) with the local ferryd, which serves them on the network's gateway",
        plugin: &ferry_dns::FerryDns,
    },
];

/// The plugin installed under `name`.
pub fn find(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}
