//! nftables over netlink: `NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_NFTABLES`, encoded by hand (no libnftnl, no `nft`).
//!
//! Every change is one atomic [`Batch`]: the kernel applies all of its
//! messages or none, and [`Socket::commit`] reports the first message the
//! kernel refused with its errno and what the message did. Ferry only
//! changes tables whose names start with [`FERRY_PREFIX`]; reading works on
//! any table.
//!
//! Why hand-encoded: `rustables` (the pure-Rust fork of nftnl-rs) is
//! GPL-3.0, which an Apache-2.0 project cannot ship, and generates its
//! bindings with bindgen at build time; `netlink-packet-netfilter` covers
//! nflog (and conntrack in forks) but not nf_tables, and targets an older
//! netlink-packet-core. The subset Ferry needs is a few hundred lines of
//! attributes, checked against `nft list` in the tests.
//!
//! ```no_run
//! use ferry_linux::nft::{self, Batch, Chain, ChainType, Element, Family, Field, Hook,
//!     Rule, Set, Table, Type, Value, Verdict};
//! # fn main() -> ferry_linux::Result<()> {
//! let t = Table::new(Family::Inet, "ferry");
//! let mut sock = nft::Socket::new()?;
//! sock.commit(
//!     Batch::new()
//!         .add_table(&t)
//!         .add_chain(&Chain::base(&t, "forward", ChainType::Filter, Hook::Forward, 0))
//!         .add_chain(&Chain::regular(&t, "c1"))
//!         .add_set(&Set::new(&t, "peers", &[Type::Ipv4Addr]).verdict_map())
//!         .add_rule(&Rule::new(&t, "forward").vmap(&[Field::IpSaddr], "peers"))
//!         .add_elements(&t, "peers", &[Element::new(Value::Ipv4([198, 18, 160, 2].into()))
//!             .verdict(Verdict::Jump("c1".into()))]),
//! )?;
//! # Ok(()) }
//! ```

mod batch;
mod expr;
#[cfg(test)]
mod fuzz;
mod list;
mod nla;
mod socket;

pub use batch::{
    Batch, Chain, ChainType, Element, ElementData, Hook, Key, MapData, Policy, Rule, Set, Table,
    MAX_COMMENT_LEN, MAX_NAME_LEN,
};
pub use expr::{
    CmpOp, CtKey, CtState, Expr, Field, MetaKey, NatKind, PayloadBase, Type, Value, Verdict,
    REG32_00, REG32_15, REG_VERDICT, TCP, UDP,
};
pub use list::{ChainInfo, ElementInfo, RuleInfo, SetInfo, TableInfo};
pub use socket::Socket;

/// Names of Ferry's tables start with this; no other table is changed.
pub const FERRY_PREFIX: &str = "ferry";

/// True when `name` is one of Ferry's tables.
pub fn is_ferry_table(name: &str) -> bool {
    name.starts_with(FERRY_PREFIX)
}

/// An nftables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip`: IPv4.
    Ip,
    /// `ip6`: IPv6.
    Ip6,
    /// `inet`: IPv4 and IPv6 in one table.
    Inet,
    /// `arp`.
    Arp,
    /// `bridge`: frames crossing a bridge.
    Bridge,
    /// `netdev`: ingress/egress of one device.
    Netdev,
}

impl Family {
    /// The `NFPROTO_*` number.
    pub fn raw(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Arp => 3,
            Family::Netdev => 5,
            Family::Bridge => 7,
            Family::Ip6 => 10,
        }
    }

    /// The family of an `NFPROTO_*` number.
    pub fn from_raw(n: u8) -> Option<Family> {
        Some(match n {
            1 => Family::Inet,
            2 => Family::Ip,
            3 => Family::Arp,
            5 => Family::Netdev,
            7 => Family::Bridge,
            10 => Family::Ip6,
            _ => return None,
        })
    }

    /// nft's name of the family.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// A daemon opens one socket per namespace and hands it to a worker.
const _: () = {
    const fn assert_send<T: Send>() {}
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<Socket>();
    assert_send_sync::<Batch>();
};
