//! Ferry's kernel layer: a small synchronous rtnetlink socket with typed
//! link, address, route, neighbour and FDB operations; network namespace
//! handles; sysctl; TAP devices. No program is ever executed.
//!
//! ```no_run
//! use ferry_linux::{Netns, Netlink, LinkSpec};
//! # fn main() -> ferry_linux::Result<()> {
//! let ns = Netns::create("demo")?;
//! let mut host = Netlink::new()?;
//! host.create_link(&LinkSpec::veth("veth-demo", "eth0").peer_netns(&ns))?;
//! let mut inside = ns.netlink()?;
//! let eth0 = inside.link_by_name("eth0")?;
//! inside.set_up(eth0.index)?;
//! # Ok(()) }
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod addr;
mod announce;
mod error;
pub mod fs;
#[cfg(test)]
mod fuzz;
mod link;
mod mac;
mod neigh;
mod netconf;
mod netns;
pub mod nft;
pub mod notify;
mod route;
mod rule;
mod socket;
pub mod stats;
pub mod sysctl;
mod tap;
pub mod tc;

pub use addr::{AddrOptions, Address, Family};
pub use announce::Announcer;
pub use error::{Error, Result};
pub use link::{
    check_ifname, BridgePortFlags, Ipv6Conf, Link, LinkKind, LinkSpec, MacvlanMode, OperState,
    VxlanSpec, MAX_IFNAME_LEN,
};
pub use mac::MacAddr;
pub use neigh::{FdbEntry, Neighbour, NUD_NOARP, NUD_PERMANENT, NUD_REACHABLE};
pub use netns::{in_scratch, Netns, NETNS_RUN_DIR};
pub use route::{Route, SCOPE_HOST, SCOPE_LINK, SCOPE_UNIVERSE, TABLE_MAIN};
pub use rule::{Rule, RULE_ACTION_TO_TABLE};
pub use socket::Netlink;
pub use tap::{create_tap, TapSpec};

/// The netlink crates this layer is built on, for callers that need a
/// message this crate does not wrap (use [`Netlink::request`]).
pub mod raw {
    pub use crate::socket::dellink_request;
    pub use netlink_packet_core as core;
    pub use netlink_packet_route as route;
}

// Sockets and namespace handles move between threads (a daemon opens one
// socket per namespace up front and hands it to a worker).
const _: () = {
    const fn assert_send<T: Send>() {}
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<Netlink>();
    assert_send_sync::<Netns>();
    assert_send_sync::<Error>();
};
