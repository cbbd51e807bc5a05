//! The forwarding firewall (the reference `firewall` plugin's job) in one
//! Ferry-owned table:
//!
//! ```text
//! table inet ferry-firewall {
//!   set ctr4 { type ipv4_addr }  set ctr6 { type ipv6_addr }   # container addresses
//!   set isobr  { type ifname }             # bridges with ingressPolicy same-bridge/isolated
//!   set samebr { type ifname . ifname }    # BR . BR for same-bridge bridges
//!   chain admin { }                        # the operator's; Ferry never writes it
//!   chain isolation { iifname . oifname @samebr return
//!                     iifname @isobr oifname @isobr drop }
//!   chain forward { type filter hook forward priority filter - 10; policy accept;
//!     jump admin
//!     jump isolation
//!     ip daddr @ctr4 ct state established,related meta mark set meta mark | 0x00200000 accept
//!     ip daddr @ctr4 ct status dnat meta mark set ... accept     # published ports
//!     ip saddr @ctr4 meta mark set ... accept
//!     (the same for ip6) }
//! }
//! table bridge ferry-firewall {            # ingressPolicy isolated
//!   set isoports { type ifname }           # host veths of isolated containers
//!   chain forward { type filter hook forward priority filter - 10; policy accept;
//!     iifname @isoports drop }             # nothing bridged from them to a neighbour
//! }
//! ```
//!
//! An `accept` here ends only this table's chain: the kernel still runs
//! every other base chain on the hook, so a `drop` in another table (the
//! `ip filter FORWARD` chain iptables-nft keeps for Docker, or its policy
//! `DROP`) would still drop the packet. The mark bit set with every accept
//! is what [`crate::forward`]'s one rule in that chain lets through.
//!
//! Isolation elements are per bridge, not per container, and stay (like
//! the reference's isolation chains) when the last container leaves.

use std::net::IpAddr;

use ferry_linux::nft::{
    self, Batch, Chain, ChainType, CtState, Family, Field, Hook, Rule, Set, Table, Type, Value,
};

use crate::forward;
use crate::state::{self, Attachment, Store, StoredElement, Val};
use crate::{Error, Result};

/// The table's name (in families inet and bridge).
pub const TABLE: &str = "ferry-firewall";
/// The chain operators may fill; jumped to first, never written by Ferry.
pub const ADMIN_CHAIN: &str = "admin";

/// The inet table.
pub fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// The bridge-family table (ingressPolicy isolated).
pub fn bridge_table() -> Table {
    Table::new(Family::Bridge, TABLE)
}

/// The bookkeeping store under `root`.
pub fn store(root: &std::path::Path) -> Store {
    Store::new(root, "firewall")
}

/// `ingressPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IngressPolicy {
    /// No isolation (the default).
    #[default]
    Open,
    /// Containers of an isolated bridge cannot reach other isolated
    /// bridges (Docker's isolation between networks).
    SameBridge,
    /// Like same-bridge, and containers of the same bridge cannot reach
    /// each other either (Docker's `enable_icc=false`).
    Isolated,
}

impl IngressPolicy {
    /// Parses `open`, `same-bridge` or `isolated` (empty is open).
    pub fn parse(s: &str) -> Result<IngressPolicy> {
        match s {
            "" | "open" => Ok(IngressPolicy::Open),
            "same-bridge" => Ok(IngressPolicy::SameBridge),
            "isolated" => Ok(IngressPolicy::Isolated),
            _ => Err(Error::Invalid(format!(
                "unknown ingressPolicy {s:?}: use open, same-bridge or isolated"
            ))),
        }
    }
}

/// Adds the tables and rewrites their fixed rules (idempotent; the admin
/// chain is created but never flushed).
pub fn structure(b: &mut Batch, with_bridge: bool) {
    let t = table();
    b.add_table(&t);
    b.add_set(&Set::new(&t, "ctr4", &[Type::Ipv4Addr]));
    b.add_set(&Set::new(&t, "ctr6", &[Type::Ipv6Addr]));
    b.add_set(&Set::new(&t, "isobr", &[Type::Ifname]));
    b.add_set(&Set::new(&t, "samebr", &[Type::Ifname, Type::Ifname]));
    b.add_chain(&Chain::regular(&t, ADMIN_CHAIN));
    b.add_chain(&Chain::regular(&t, "isolation"));
    b.add_chain(&Chain::base(
        &t,
        "forward",
        ChainType::Filter,
        Hook::Forward,
        -10,
    ));
    b.flush_chain(&t, "isolation");
    b.flush_chain(&t, "forward");
    b.add_rule(
        &Rule::new(&t, "isolation")
            .lookup(&[Field::Iifname, Field::Oifname], "samebr")
            .ret(),
    );
    b.add_rule(
        &Rule::new(&t, "isolation")
            .lookup(&[Field::Iifname], "isobr")
            .lookup(&[Field::Oifname], "isobr")
            .drop(),
    );
    b.add_rule(&Rule::new(&t, "forward").jump(ADMIN_CHAIN));
    b.add_rule(&Rule::new(&t, "forward").jump("isolation"));
    let mark = forward::ACCEPT_MARK;
    for (s, d, set) in [
        (Field::IpSaddr, Field::IpDaddr, "ctr4"),
        (Field::Ip6Saddr, Field::Ip6Daddr, "ctr6"),
    ] {
        b.add_rule(
            &Rule::new(&t, "forward")
                .lookup(&[d], set)
                .ct_state(CtState::ESTABLISHED | CtState::RELATED)
                .set_mark_bits(mark)
                .accept(),
        );
        b.add_rule(
            &Rule::new(&t, "forward")
                .lookup(&[d], set)
                .ct_status_dnat()
                .set_mark_bits(mark)
                .accept(),
        );
        b.add_rule(
            &Rule::new(&t, "forward")
                .lookup(&[s], set)
                .set_mark_bits(mark)
                .accept(),
        );
    }
    if with_bridge {
        let bt = bridge_table();
        b.add_table(&bt);
        b.add_set(&Set::new(&bt, "isoports", &[Type::Ifname]));
        b.add_chain(&Chain::base(
            &bt,
            "forward",
            ChainType::Filter,
            Hook::Forward,
            -10,
        ));
        b.flush_chain(&bt, "forward");
        b.add_rule(
            &Rule::new(&bt, "forward")
                .lookup(&[Field::Iifname], "isoports")
                .drop(),
        );
    }
}

/// Allows forwarding to and from `addrs`, and isolates `bridge` by
/// `policy` (a bridge name is needed for any policy but open).
pub fn add(
    sock: &mut nft::Socket,
    store: &Store,
    a: &Attachment,
    addrs: &[IpAddr],
    policy: IngressPolicy,
    bridge: Option<&str>,
    host_ports: &[String],
) -> Result<()> {
    let els: Vec<StoredElement> = addrs
        .iter()
        .map(|ip| {
            StoredElement::key(
                if ip.is_ipv4() { "ctr4" } else { "ctr6" },
                vec![Val::Ip(*ip)],
            )
        })
        .collect();
    let t = table();
    let mut b = Batch::new();
    let isolated = policy == IngressPolicy::Isolated;
    structure(&mut b, isolated);
    let mut b = state::unless_held(sock, b);
    if policy != IngressPolicy::Open {
        let br = bridge.ok_or_else(|| {
            Error::Invalid(format!(
                "ingressPolicy {policy:?} needs a bridge in prevResult (use it after the bridge plugin)"
            ))
        })?;
        if br.is_empty() || br.len() > 15 {
            return Err(Error::Invalid(format!("invalid bridge name {br:?}")));
        }
        let name = || Value::Ifname(br.to_string());
        b.add_elements(&t, "isobr", &[nft::Element::new(name())]);
        if !isolated {
            b.add_elements(&t, "samebr", &[nft::Element::new([name(), name()])]);
        }
    }
    let ports: Vec<StoredElement> = if isolated {
        host_ports
            .iter()
            .map(|p| StoredElement::key("isoports", vec![Val::Ifname(p.clone())]))
            .collect()
    } else {
        Vec::new()
    };
    state::add_to(&mut b, &t, &els);
    state::add_to(&mut b, &bridge_table(), &ports);
    let what = format!("allow forwarding in {t}");
    state::commit_recorded(sock, store, a, els, ports, &b, &what)?;
    forward::ensure(sock, store)
}

/// Removes the attachment's addresses (idempotent). Without a bookkeeping
/// file, `fallback` (the DEL's prevResult addresses) are removed.
pub fn del(
    sock: &mut nft::Socket,
    store: &Store,
    a: &Attachment,
    fallback: &[IpAddr],
) -> Result<()> {
    if store.load_for_del(a)?.is_none() {
        let t = table();
        if fallback.is_empty()
            || !sock
                .table_exists(&t)
                .map_err(Error::kernel(format!("failed to look for table {t}")))?
        {
            return Ok(());
        }
        let els: Vec<StoredElement> = fallback
            .iter()
            .map(|ip| {
                StoredElement::key(
                    if ip.is_ipv4() { "ctr4" } else { "ctr6" },
                    vec![Val::Ip(*ip)],
                )
            })
            .collect();
        let mut b = Batch::new();
        state::destroy_in(&mut b, &t, &els);
        return sock.commit(&b).map_err(Error::kernel(format!(
            "failed to remove addresses from {t}"
        )));
    }
    state::release(sock, store, &table(), a)
}

/// Removes `bridge`'s isolation elements (a deleted network's: CNI has no
/// such moment, so its entries stay like the reference's chains).
pub fn forget_bridge(sock: &mut nft::Socket, bridge: &str) -> Result<()> {
    let t = table();
    if !sock
        .table_exists(&t)
        .map_err(Error::kernel(format!("failed to look for table {t}")))?
    {
        return Ok(());
    }
    let name = || Val::Ifname(bridge.to_string());
    let mut b = Batch::new();
    state::destroy_in(
        &mut b,
        &t,
        &[
            StoredElement::key("isobr", vec![name()]),
            StoredElement::key("samebr", vec![name(), name()]),
        ],
    );
    sock.commit(&b).map_err(Error::kernel(format!(
        "failed to remove bridge {bridge} from {t}"
    )))
}

/// Checks the attachment's addresses are in the kernel.
pub fn check(sock: &mut nft::Socket, store: &Store, a: &Attachment) -> Result<()> {
    state::verify(sock, store, &table(), a)
}

/// Removes the addresses of `network`'s attachments not in `valid`.
pub fn gc(
    sock: &mut nft::Socket,
    store: &Store,
    network: &str,
    valid: &std::collections::HashSet<(String, String)>,
) -> Result<()> {
    state::collect(sock, store, &table(), network, valid)
}
