//! IP masquerade for container subnets (`ipMasq` of bridge and ptp):
//! traffic from a container's address to anything outside its subnet
//! (and not multicast) leaves with the node's address.
//!
//! ```text
//! table inet ferry-masq {
//!   set own4 { type ipv4_addr . ipv4_addr; flags interval }  # ADDR . SUBNET
//!   set ctr4 { type ipv4_addr }                               # ADDR
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!     ip saddr . ip daddr @own4 return
//!     ip daddr 224.0.0.0/4 return
//!     ip saddr @ctr4 masquerade
//!     (the same for ip6 with ff00::/8) }
//! }
//! ```

use std::net::IpAddr;

use ferry_linux::nft::{
    self, Batch, Chain, ChainType, Family, Field, Hook, Rule, Set, Table, Type,
};
use ipnet::IpNet;

use crate::state::{self, Attachment, Store, StoredElement, Val};
use crate::{Error, Result};

/// The table's name.
pub const TABLE: &str = "ferry-masq";

/// The table (family inet).
pub fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// The bookkeeping store under `root`.
pub fn store(root: &std::path::Path) -> Store {
    Store::new(root, "masq")
}

/// Adds the table and rewrites its fixed rules (idempotent).
pub fn structure(b: &mut Batch) {
    let t = table();
    b.add_table(&t);
    b.add_set(&Set::new(&t, "own4", &[Type::Ipv4Addr, Type::Ipv4Addr]).interval());
    b.add_set(&Set::new(&t, "own6", &[Type::Ipv6Addr, Type::Ipv6Addr]).interval());
    b.add_set(&Set::new(&t, "ctr4", &[Type::Ipv4Addr]));
    b.add_set(&Set::new(&t, "ctr6", &[Type::Ipv6Addr]));
    b.add_chain(&Chain::base(
        &t,
        "postrouting",
        ChainType::Nat,
        Hook::Postrouting,
        100,
    ));
    b.flush_chain(&t, "postrouting");
    let multicast: [(Field, Field, Field, &str, &str, IpNet); 2] = [
        (
            Field::IpSaddr,
            Field::IpDaddr,
            Field::IpSaddr,
            "own4",
            "ctr4",
            "224.0.0.0/4".parse().unwrap_or_else(|_| IpNet::default()),
        ),
        (
            Field::Ip6Saddr,
            Field::Ip6Daddr,
            Field::Ip6Saddr,
            "own6",
            "ctr6",
            "ff00::/8".parse().unwrap_or_else(|_| IpNet::default()),
        ),
    ];
    for (s, d, src, own, ctr, mc) in multicast {
        b.add_rule(&Rule::new(&t, "postrouting").lookup(&[s, d], own).ret());
        b.add_rule(&Rule::new(&t, "postrouting").daddr(mc).ret());
        b.add_rule(
            &Rule::new(&t, "postrouting")
                .lookup(&[src], ctr)
                .masquerade(),
        );
    }
}

/// The elements masquerading `addrs` (container addresses with their
/// prefix length).
pub fn elements(addrs: &[IpNet]) -> Vec<StoredElement> {
    let mut out = Vec::new();
    for n in addrs {
        let a: IpAddr = n.addr();
        let net = n.trunc();
        let (own, ctr) = if a.is_ipv4() {
            ("own4", "ctr4")
        } else {
            ("own6", "ctr6")
        };
        out.push(StoredElement::range(
            own,
            vec![Val::Ip(a), Val::Ip(net.network())],
            vec![Val::Ip(a), Val::Ip(net.broadcast())],
        ));
        out.push(StoredElement::key(ctr, vec![Val::Ip(a)]));
    }
    out
}

/// Masquerades the attachment's addresses.
pub fn add(sock: &mut nft::Socket, store: &Store, a: &Attachment, addrs: &[IpNet]) -> Result<()> {
    let els = elements(addrs);
    if els.is_empty() {
        return Ok(());
    }
    let t = table();
    let mut b = Batch::new();
    structure(&mut b);
    let mut b = state::unless_held(sock, b);
    state::add_to(&mut b, &t, &els);
    let what = format!("set up masquerade in {t}");
    state::commit_recorded(sock, store, a, els, Vec::new(), &b, &what)
}

/// Stops masquerading the attachment's addresses (idempotent). Without a
/// bookkeeping file, `fallback` (the addresses of the DEL's prevResult)
/// are removed.
pub fn del(
    sock: &mut nft::Socket,
    store: &Store,
    a: &Attachment,
    fallback: &[IpNet],
) -> Result<()> {
    if store.load_for_del(a)?.is_none() && !fallback.is_empty() {
        let t = table();
        if sock
            .table_exists(&t)
            .map_err(Error::kernel(format!("failed to look for table {t}")))?
        {
            let mut b = Batch::new();
            state::destroy_in(&mut b, &t, &elements(fallback));
            sock.commit(&b).map_err(Error::kernel(format!(
                "failed to remove masquerade from {t}"
            )))?;
        }
        return Ok(());
    }
    state::release(sock, store, &table(), a)
}

/// Checks the attachment's elements are in the kernel.
pub fn check(sock: &mut nft::Socket, store: &Store, a: &Attachment) -> Result<()> {
    state::verify(sock, store, &table(), a)
}
