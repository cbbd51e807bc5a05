//! Forwarding past someone else's iptables `FORWARD` chain.
//!
//! nftables runs every base chain of a hook, and a `drop` in any of them is
//! final: an `accept` in Ferry's table cannot pass a packet through the
//! iptables-nft `filter FORWARD` chain when its policy is `DROP` (Docker
//! sets that policy when it enables forwarding). The reference firewall
//! plugin inserts per-container ACCEPT rules into that chain. Ferry inserts
//! one rule, once per family, at the top of `ip filter FORWARD` and
//! `ip6 filter FORWARD` when those chains exist:
//!
//! ```text
//! meta mark & 0x00200000 == 0x00200000 counter accept comment "ferry-firewall: accepted by Ferry"
//! iptables -S:  -A FORWARD -m mark --mark 0x200000/0x200000 -m comment --comment "..." -j ACCEPT
//! ```
//!
//! and Ferry's own forward chain sets that mark bit ([`ACCEPT_MARK`]) on
//! exactly the packets it accepts. Ferry's tables keep deciding; the other
//! chain merely stops overruling them. Why this shape:
//! - it is what iptables-nft itself writes for that command (native meta,
//!   bitwise, cmp, counter and immediate expressions, the comment in the
//!   rule's user data), so `iptables` and `dockerd` still read and manage
//!   the table; no set, map or other nft-only expression goes there;
//! - it is per node, not per container: an ADD writes nothing there once
//!   the rule exists, and the rule stays when the last container leaves
//!   (as the reference's `CNI-FORWARD` chain does);
//! - it is found again by its comment, under a lock, so parallel ADDs
//!   never insert it twice.
//!
//! A `filter` table created after the ADD (dockerd started later) gets the
//! rule at the next ADD. iptables-legacy (x_tables) rulesets are out of
//! reach of nftables and not handled.

use ferry_linux::nft::{self, Batch, Family, Rule, Table};

use crate::state::Store;
use crate::{Error, Result};

/// The packet mark bit Ferry's forward chain sets on what it accepts.
pub const ACCEPT_MARK: u32 = 0x0020_0000;
/// The comment that identifies Ferry's rule in the other chain.
pub const COMMENT: &str = "ferry-firewall: accepted by Ferry";
/// The iptables table and chain.
const TABLE: &str = "filter";
const CHAIN: &str = "FORWARD";

/// Ferry's rule for the `FORWARD` chain of `table`.
pub fn rule(table: &Table) -> Rule {
    Rule::new(table, CHAIN)
        .mark_bits(ACCEPT_MARK)
        .counter()
        .accept()
        .comment(COMMENT)
}

/// Where Ferry's rule could go: per family, the `filter` table when it has
/// a base chain `FORWARD`, with the handles of Ferry's rules in it.
fn places(sock: &mut nft::Socket) -> Result<Vec<(Table, Vec<u64>)>> {
    let mut out = Vec::new();
    for family in [Family::Ip, Family::Ip6] {
        let t = Table::new(family, TABLE);
        let kernel = |what: &str| Error::kernel(format!("failed to {what} {t}"));
        if !sock.table_exists(&t).map_err(kernel("look for table"))? {
            continue;
        }
        let chains = sock.chains(&t).map_err(kernel("list the chains of"))?;
        if !chains.iter().any(|c| c.name == CHAIN && c.hook.is_some()) {
            continue;
        }
        let rules = sock.rules(&t).map_err(kernel("list the rules of"))?;
        let ours = rules
            .iter()
            .filter(|r| r.chain == CHAIN && r.comment.as_deref() == Some(COMMENT))
            .map(|r| r.handle)
            .collect();
        out.push((t, ours));
    }
    Ok(out)
}

/// Inserts Ferry's rule into every iptables `filter FORWARD` chain that
/// exists and lacks it (a no-op on nodes without iptables rules).
pub fn ensure(sock: &mut nft::Socket, store: &Store) -> Result<()> {
    let _lock = store.lock("iptables-forward")?;
    let mut b = Batch::new();
    for (t, ours) in places(sock)? {
        if ours.is_empty() {
            b.insert_foreign_rule(&rule(&t));
        }
    }
    if b.is_empty() {
        return Ok(());
    }
    sock.commit(&b).map_err(Error::kernel(format!(
        "failed to let Ferry-accepted packets through iptables {CHAIN}"
    )))
}

/// True when Ferry's rule is in some iptables `filter FORWARD` chain.
pub fn present(sock: &mut nft::Socket) -> Result<bool> {
    Ok(!holders(sock)?.is_empty())
}

/// The families (`ip`, `ip6`) whose `filter FORWARD` holds Ferry's rule.
pub fn holders(sock: &mut nft::Socket) -> Result<Vec<Family>> {
    Ok(places(sock)?
        .into_iter()
        .filter(|(_, ours)| !ours.is_empty())
        .map(|(t, _)| t.family)
        .collect())
}

/// Removes Ferry's rule from every iptables `filter FORWARD` chain (for
/// uninstalling, and for tools that must leave the node as they found it).
pub fn remove(sock: &mut nft::Socket, store: &Store) -> Result<()> {
    remove_except(sock, store, &[])
}

/// [`remove`], leaving the rule in the families of `keep` (a tool that found
/// it there takes out only what it added).
pub fn remove_except(sock: &mut nft::Socket, store: &Store, keep: &[Family]) -> Result<()> {
    let _lock = store.lock("iptables-forward")?;
    let mut b = Batch::new();
    for (t, ours) in places(sock)?
        .into_iter()
        .filter(|(t, _)| !keep.contains(&t.family))
    {
        for handle in ours {
            b.delete_foreign_rule(&t, CHAIN, handle);
        }
    }
    if b.is_empty() {
        return Ok(());
    }
    sock.commit(&b).map_err(Error::kernel(format!(
        "failed to remove Ferry's rule from iptables {CHAIN}"
    )))
}
