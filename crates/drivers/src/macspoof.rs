//! MAC spoof checking (the bridge plugin's `macspoofchk`) in one
//! Ferry-owned table:
//!
//! ```text
//! table bridge ferry-macspoof {
//!   set guarded { type ifname }                  # host veths of checked containers
//!   set allowed { type ifname . ether_addr }     # HOST-VETH . container MAC
//!   chain prerouting { type filter hook prerouting priority -300; policy accept;
//!     iifname @guarded iifname . ether saddr != @allowed drop }
//! }
//! ```
//!
//! Frames a checked container sends into the bridge with any source MAC
//! but its interface's are dropped before the bridge learns or forwards
//! them, as the reference's per-interface chains do. One fixed rule;
//! a container adds two elements and its DEL removes them, so the cost
//! does not grow with the containers on the node.

use ferry_linux::nft::{
    self, Batch, Chain, ChainType, Family, Field, Hook, Rule, Set, Table, Type,
};

use crate::state::{self, Attachment, Store, StoredElement, Val};
use crate::{Error, Result};

/// The table's name (family bridge).
pub const TABLE: &str = "ferry-macspoof";

/// The bridge-family table.
pub fn table() -> Table {
    Table::new(Family::Bridge, TABLE)
}

/// The bookkeeping store under `root`.
pub fn store(root: &std::path::Path) -> Store {
    Store::new(root, "macspoof")
}

/// Adds the table, its sets and its one rule (idempotent).
pub fn structure(b: &mut Batch) {
    let t = table();
    b.add_table(&t);
    b.add_set(&Set::new(&t, "guarded", &[Type::Ifname]));
    b.add_set(&Set::new(&t, "allowed", &[Type::Ifname, Type::EtherAddr]));
    b.add_chain(&Chain::base(
        &t,
        "prerouting",
        ChainType::Filter,
        Hook::Prerouting,
        -300,
    ));
    b.flush_chain(&t, "prerouting");
    b.add_rule(
        &Rule::new(&t, "prerouting")
            .lookup(&[Field::Iifname], "guarded")
            .not_lookup(&[Field::Iifname, Field::EtherSaddr], "allowed")
            .drop(),
    );
}

/// Lets frames from `host_veth` into the bridge only with source `mac`.
pub fn add(
    sock: &mut nft::Socket,
    store: &Store,
    a: &Attachment,
    host_veth: &str,
    mac: [u8; 6],
) -> Result<()> {
    if host_veth.is_empty() || host_veth.len() > 15 {
        return Err(Error::Invalid(format!(
            "invalid host interface name {host_veth:?}"
        )));
    }
    let port = || Val::Ifname(host_veth.to_string());
    let els = vec![
        StoredElement::key("allowed", vec![port(), Val::Ether(mac)]),
        StoredElement::key("guarded", vec![port()]),
    ];
    let t = table();
    let mut b = Batch::new();
    structure(&mut b);
    let mut b = state::unless_held(sock, b);
    state::add_to(&mut b, &t, &els);
    let what = format!("guard {host_veth} in {t}");
    state::commit_recorded(sock, store, a, els, Vec::new(), &b, &what)
}

/// Removes the attachment's elements (idempotent).
pub fn del(sock: &mut nft::Socket, store: &Store, a: &Attachment) -> Result<()> {
    state::release(sock, store, &table(), a)
}

/// Checks the attachment's elements are in the kernel.
pub fn check(sock: &mut nft::Socket, store: &Store, a: &Attachment) -> Result<()> {
    state::verify(sock, store, &table(), a)
}
