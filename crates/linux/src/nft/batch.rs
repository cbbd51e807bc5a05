//! Typed nf_tables objects and the atomic batch that carries changes to
//! them: the encoder here, the numbers in [`consts`], tables, chains, sets
//! and elements in [`objects`], the rule builder in [`rule`].

mod consts;
mod objects;
mod rule;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};

use super::expr::{Type, NFTA_LIST_ELEM};
use super::is_ferry_table;
use super::nla::{parse, Attr, Attrs};
pub(crate) use consts::*;
pub use consts::{MAX_COMMENT_LEN, MAX_NAME_LEN};
pub use objects::{Chain, ChainType, Element, ElementData, Hook, Key, MapData, Policy, Set, Table};
pub use rule::Rule;

/// One message of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) kind: u8,
    pub(crate) family: u8,
    pub(crate) flags: u16,
    pub(crate) attrs: Attrs,
    /// What it does, for error messages (`add rule inet ferry fwd`).
    pub(crate) what: String,
}

/// An atomic set of changes: the kernel applies all of its messages or
/// none. Build one per Ferry operation and commit it with
/// [`crate::nft::Socket::commit`].
///
/// Only tables whose names start with `ferry` can be changed; a batch that
/// names another table fails at commit without sending anything. The one
/// exception is [`Batch::insert_foreign_rule`] / [`Batch::delete_foreign_rule`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) msgs: Vec<Msg>,
    pub(crate) error: Option<String>,
    /// Set only while a foreign rule is pushed.
    foreign: bool,
    /// What the kernel holds after this batch, for [`crate::nft::Socket::holds`].
    pub(crate) shape: Shape,
}

/// The objects a batch adds, and the exact rules (by fingerprint) of the
/// chains it flushes and refills.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shape {
    pub(crate) tables: Vec<Table>,
    /// Table, name, key type and key length.
    pub(crate) sets: Vec<(Table, String, u32, u32)>,
    pub(crate) chains: Vec<Chain>,
    pub(crate) owned: Vec<(Table, String, Vec<u64>)>,
    /// A change whose result the shape does not describe (a delete, a
    /// table flush, a foreign rule).
    pub(crate) opaque: bool,
}

impl Shape {
    /// The fingerprints of chain `chain` when this batch flushes it.
    fn owned_rules(&mut self, table: &Table, chain: &str) -> Option<&mut Vec<u64>> {
        self.owned
            .iter_mut()
            .find(|(t, c, _)| t == table && c == chain)
            .map(|(_, _, fps)| fps)
    }
}

/// FNV-1a, 64 bits: a fingerprint that stays the same across builds.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate the parts, so ("ab", "c") differs from ("a", "bc").
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Whether the batch deletes anything (a flush is a delete too): the
    /// kernel then frees objects after a grace period ([`super::Socket::deleted`]).
    pub(crate) fn deletes(&self) -> bool {
        self.msgs.iter().any(|m| {
            matches!(
                m.kind,
                NFT_MSG_DELTABLE
                    | NFT_MSG_DELCHAIN
                    | NFT_MSG_DELRULE
                    | NFT_MSG_DELSET
                    | NFT_MSG_DELSETELEM
                    | NFT_MSG_DESTROYSETELEM
            )
        })
    }

    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    fn check_name(&mut self, what: &str, name: &str) {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
            self.fail(format!(
                "{what} name {name:?} must be 1 to {MAX_NAME_LEN} bytes without NUL"
            ));
        }
    }

    fn push(&mut self, table: &Table, kind: u8, flags: u16, attrs: Attrs, what: String) {
        if !self.foreign && !is_ferry_table(&table.name) {
            self.fail(format!(
                "table {table} is not Ferry's: Ferry only changes tables whose names start \
                 with \"{}\"",
                super::FERRY_PREFIX
            ));
        }
        self.check_name("table", &table.name);
        if attrs.overflowed() {
            self.fail(format!(
                "{what}: an attribute exceeds the 64 KiB netlink limit; use fewer expressions"
            ));
        }
        if self.foreign || matches!(kind, NFT_MSG_DELTABLE | NFT_MSG_DELCHAIN | NFT_MSG_DELSET) {
            self.shape.opaque = true;
        }
        self.msgs.push(Msg {
            kind,
            family: table.family.raw(),
            flags,
            attrs,
            what,
        });
    }

    fn table_attrs(table: &Table) -> Attrs {
        let mut a = Attrs::new();
        a.put_str(NFTA_TABLE_NAME, &table.name);
        a
    }

    /// Adds the table (no error when it exists).
    pub fn add_table(&mut self, table: &Table) -> &mut Self {
        if !self.shape.tables.contains(table) {
            self.shape.tables.push(table.clone());
        }
        let a = Self::table_attrs(table);
        self.push(
            table,
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            a,
            format!("add table {table}"),
        );
        self
    }

    /// Deletes the table with everything in it; the batch fails with
    /// `ENOENT` when it does not exist.
    pub fn delete_table(&mut self, table: &Table) -> &mut Self {
        let a = Self::table_attrs(table);
        self.push(
            table,
            NFT_MSG_DELTABLE,
            0,
            a,
            format!("delete table {table}"),
        );
        self
    }

    /// Deletes the table if it exists: adds it (a no-op when present) and
    /// deletes it, atomically, so this also works inside a larger batch,
    /// e.g. to replace a whole table in one step.
    pub fn delete_table_if_exists(&mut self, table: &Table) -> &mut Self {
        self.add_table(table).delete_table(table)
    }

    /// Deletes every rule of the table (chains and sets stay).
    pub fn flush_table(&mut self, table: &Table) -> &mut Self {
        let mut a = Attrs::new();
        a.put_str(NFTA_RULE_TABLE, &table.name);
        self.shape.opaque = true;
        self.push(table, NFT_MSG_DELRULE, 0, a, format!("flush table {table}"));
        self
    }

    /// Adds the chain (an existing chain is kept; a base chain's policy is
    /// updated).
    pub fn add_chain(&mut self, chain: &Chain) -> &mut Self {
        self.check_name("chain", &chain.name);
        let mut a = Attrs::new();
        a.put_str(NFTA_CHAIN_TABLE, &chain.table.name)
            .put_str(NFTA_CHAIN_NAME, &chain.name);
        if let Some((kind, hook, prio)) = chain.base {
            a.nest(NFTA_CHAIN_HOOK, |h| {
                h.put_be32(NFTA_HOOK_HOOKNUM, hook as u32)
                    .put_be32(NFTA_HOOK_PRIORITY, prio as u32);
            });
            a.put_str(NFTA_CHAIN_TYPE, kind.as_str());
            if let Some(p) = chain.policy {
                a.put_be32(NFTA_CHAIN_POLICY, if p == Policy::Accept { 1 } else { 0 });
            }
        }
        self.shape.chains.push(chain.clone());
        let what = format!("add chain {} {}", chain.table, chain.name);
        self.push(&chain.table, NFT_MSG_NEWCHAIN, NLM_F_CREATE, a, what);
        self
    }

    fn chain_attrs(table: &Table, chain: &str) -> Attrs {
        let mut a = Attrs::new();
        a.put_str(NFTA_CHAIN_TABLE, &table.name)
            .put_str(NFTA_CHAIN_NAME, chain);
        a
    }

    /// Deletes a chain (it must hold no rules and be referenced by none).
    pub fn delete_chain(&mut self, table: &Table, chain: &str) -> &mut Self {
        let a = Self::chain_attrs(table, chain);
        let what = format!("delete chain {table} {chain}");
        self.push(table, NFT_MSG_DELCHAIN, 0, a, what);
        self
    }

    /// Deletes every rule of a chain.
    pub fn flush_chain(&mut self, table: &Table, chain: &str) -> &mut Self {
        let mut a = Attrs::new();
        a.put_str(NFTA_RULE_TABLE, &table.name)
            .put_str(NFTA_RULE_CHAIN, chain);
        self.shape
            .owned
            .retain(|(t, c, _)| !(t == table && c == chain));
        self.shape
            .owned
            .push((table.clone(), chain.to_string(), Vec::new()));
        let what = format!("flush chain {table} {chain}");
        self.push(table, NFT_MSG_DELRULE, 0, a, what);
        self
    }

    /// Appends a rule to the end of its chain.
    pub fn add_rule(&mut self, rule: &Rule) -> &mut Self {
        if let Some(e) = &rule.error {
            self.fail(e.clone());
        }
        let mut a = Attrs::new();
        a.put_str(NFTA_RULE_TABLE, &rule.table.name)
            .put_str(NFTA_RULE_CHAIN, &rule.chain);
        a.nest(NFTA_RULE_EXPRESSIONS, |l| {
            for e in &rule.exprs {
                e.encode(l);
            }
        });
        let mut udata = Vec::new();
        if let Some(c) = &rule.comment {
            // One TLV: type, length (with the NUL), text, NUL.
            udata.extend_from_slice(&[UDATA_RULE_COMMENT, (c.len() + 1) as u8]);
            udata.extend_from_slice(c.as_bytes());
            udata.push(0);
        }
        // Ferry's own rules carry a fingerprint of what they are, so a later
        // batch can tell an intact chain from one to rebuild.
        if !self.foreign {
            let comment = rule.comment.as_deref().unwrap_or("");
            let fp = fnv1a(&[a.bytes(), comment.as_bytes()]);
            udata.extend_from_slice(&[UDATA_RULE_FINGERPRINT, 8]);
            udata.extend_from_slice(&fp.to_be_bytes());
            if let Some(fps) = self.shape.owned_rules(&rule.table, &rule.chain) {
                fps.push(fp);
            }
        }
        if !udata.is_empty() {
            a.put(NFTA_RULE_USERDATA, &udata);
        }
        let mut what = format!("add rule {} {}", rule.table, rule.chain);
        if let Some(c) = &rule.comment {
            what.push_str(&format!(" comment {c:?}"));
        }
        self.push(
            &rule.table,
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            a,
            what,
        );
        self
    }

    /// Inserts a rule at the top of its chain.
    pub fn insert_rule(&mut self, rule: &Rule) -> &mut Self {
        self.add_rule(rule);
        if let Some(fps) = self.shape.owned_rules(&rule.table, &rule.chain) {
            fps.rotate_right(1);
        }
        if let Some(m) = self.msgs.last_mut() {
            if m.kind == NFT_MSG_NEWRULE {
                m.flags = NLM_F_CREATE;
                m.what = m.what.replacen("add rule", "insert rule", 1);
            }
        }
        self
    }

    /// Inserts `rule` at the top of a chain of a table that is not Ferry's
    /// (an iptables-nft `filter` table). Only single rules in the shapes
    /// iptables-nft itself writes belong there, so `iptables -S` still
    /// reads the table; Ferry never adds, flushes or deletes other tables,
    /// chains or sets.
    pub fn insert_foreign_rule(&mut self, rule: &Rule) -> &mut Self {
        self.foreign = true;
        self.insert_rule(rule);
        self.foreign = false;
        self
    }

    /// Deletes a rule Ferry inserted with [`Batch::insert_foreign_rule`].
    pub fn delete_foreign_rule(&mut self, table: &Table, chain: &str, handle: u64) -> &mut Self {
        self.foreign = true;
        self.delete_rule(table, chain, handle);
        self.foreign = false;
        self
    }

    /// Deletes the rule with `handle` (see [`crate::nft::Socket::rules`]).
    pub fn delete_rule(&mut self, table: &Table, chain: &str, handle: u64) -> &mut Self {
        let mut a = Attrs::new();
        a.put_str(NFTA_RULE_TABLE, &table.name)
            .put_str(NFTA_RULE_CHAIN, chain)
            .put_be64(NFTA_RULE_HANDLE, handle);
        self.shape.opaque = true;
        let what = format!("delete rule {table} {chain} handle {handle}");
        self.push(table, NFT_MSG_DELRULE, 0, a, what);
        self
    }

    /// Adds a set or map (an identical existing one is kept).
    pub fn add_set(&mut self, set: &Set) -> &mut Self {
        self.check_name("set", &set.name);
        if set.key.is_empty() {
            self.fail(format!("set {} needs a key type", set.name));
        }
        let (key_type, key_len) = Type::concat(&set.key);
        self.shape
            .sets
            .push((set.table.clone(), set.name.clone(), key_type, key_len));
        let concat = set.key.len() > 1;
        let mut flags = 0;
        // Like nft: a concatenation with intervals (the pipapo backend)
        // carries the concat flag and its field lengths, a plain
        // concatenation (a hash) neither; the kernel refuses the flag
        // without the field description and vice versa.
        let describe_fields = concat && set.interval;
        if set.interval {
            flags |= NFT_SET_INTERVAL;
        }
        if describe_fields {
            flags |= NFT_SET_CONCAT;
        }
        if set.data.is_some() {
            flags |= NFT_SET_MAP;
        }
        let mut a = Attrs::new();
        a.put_str(NFTA_SET_TABLE, &set.table.name)
            .put_str(NFTA_SET_NAME, &set.name)
            .put_be32(NFTA_SET_FLAGS, flags)
            .put_be32(NFTA_SET_KEY_TYPE, key_type)
            .put_be32(NFTA_SET_KEY_LEN, key_len)
            // The kernel requires an id naming the set within the batch.
            .put_be32(NFTA_SET_ID, self.msgs.len() as u32 + 1);
        let mut udata = Vec::new();
        // nft records the key's byte order to print elements back;
        // concatenations have none of their own.
        let byteorder = |types: &[Type]| match types {
            [one] if one.big_endian() => BYTEORDER_BIG,
            [_] => BYTEORDER_HOST,
            _ => BYTEORDER_INVALID,
        };
        udata.extend_from_slice(&[UDATA_SET_KEYBYTEORDER, 4]);
        udata.extend_from_slice(&byteorder(&set.key).to_ne_bytes());
        match &set.data {
            Some(MapData::Verdict) => {
                a.put_be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
            }
            Some(MapData::Value(types)) => {
                let (t, l) = Type::concat(types);
                a.put_be32(NFTA_SET_DATA_TYPE, t)
                    .put_be32(NFTA_SET_DATA_LEN, l);
                udata.extend_from_slice(&[UDATA_SET_DATABYTEORDER, 4]);
                udata.extend_from_slice(&byteorder(types).to_ne_bytes());
            }
            None => {}
        }
        if describe_fields {
            a.nest(NFTA_SET_DESC, |d| {
                d.nest(NFTA_SET_DESC_CONCAT, |c| {
                    for t in &set.key {
                        c.nest(NFTA_LIST_ELEM, |f| {
                            f.put_be32(NFTA_SET_FIELD_LEN, t.size());
                        });
                    }
                });
            });
        }
        a.put(NFTA_SET_USERDATA, &udata);
        let what = format!("add set {} {}", set.table, set.name);
        self.push(&set.table, NFT_MSG_NEWSET, NLM_F_CREATE, a, what);
        self
    }

    /// Deletes a set or map (no rule may use it).
    pub fn delete_set(&mut self, table: &Table, set: &str) -> &mut Self {
        let mut a = Attrs::new();
        a.put_str(NFTA_SET_TABLE, &table.name)
            .put_str(NFTA_SET_NAME, set);
        let what = format!("delete set {table} {set}");
        self.push(table, NFT_MSG_DELSET, 0, a, what);
        self
    }

    /// Deletes every element of a set or map.
    pub fn flush_set(&mut self, table: &Table, set: &str) -> &mut Self {
        let mut a = Attrs::new();
        a.put_str(NFTA_SET_ELEM_LIST_TABLE, &table.name)
            .put_str(NFTA_SET_ELEM_LIST_SET, set);
        let what = format!("flush set {table} {set}");
        self.push(table, NFT_MSG_DELSETELEM, 0, a, what);
        self
    }

    fn elements(
        &mut self,
        kind: u8,
        flags: u16,
        verb: &str,
        table: &Table,
        set: &str,
        elements: &[Element],
    ) -> &mut Self {
        for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
            let mut a = Attrs::new();
            a.put_str(NFTA_SET_ELEM_LIST_TABLE, &table.name)
                .put_str(NFTA_SET_ELEM_LIST_SET, set);
            a.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
                for e in chunk {
                    e.encode(l, kind == NFT_MSG_NEWSETELEM);
                }
            });
            let what = format!("{verb} {} element(s) of set {table} {set}", chunk.len());
            self.push(table, kind, flags, a, what);
        }
        self
    }

    /// Adds elements to a set or map (existing identical ones are kept).
    pub fn add_elements(&mut self, table: &Table, set: &str, elements: &[Element]) -> &mut Self {
        self.elements(
            NFT_MSG_NEWSETELEM,
            NLM_F_CREATE,
            "add",
            table,
            set,
            elements,
        )
    }

    /// Deletes elements; the batch fails with `ENOENT` if one is missing.
    pub fn delete_elements(&mut self, table: &Table, set: &str, elements: &[Element]) -> &mut Self {
        self.elements(NFT_MSG_DELSETELEM, 0, "delete", table, set, elements)
    }

    /// Deletes elements, ignoring missing ones (`NFT_MSG_DESTROYSETELEM`,
    /// kernel 6.3 or newer): what a repeated CNI DEL wants.
    pub fn destroy_elements(
        &mut self,
        table: &Table,
        set: &str,
        elements: &[Element],
    ) -> &mut Self {
        self.elements(NFT_MSG_DESTROYSETELEM, 0, "destroy", table, set, elements)
    }
}

/// The attribute of `attrs` (and its index) that contains byte `off`,
/// offsets counted from the start of `base`.
fn containing<'a>(base: &[u8], attrs: Vec<Attr<'a>>, off: usize) -> Option<(usize, Attr<'a>)> {
    attrs.into_iter().enumerate().find(|(_, a)| {
        let start = (a.value.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize + 4);
        off >= start && off < start + 4 + a.value.len()
    })
}

/// Names the attribute at byte `off` of a message's attributes, the place
/// the kernel's extended ack points at: `expression 2 (lookup)`,
/// `element 5`, `chain hook` ...
pub(crate) fn describe_offset(kind: u8, attrs: &[u8], off: usize) -> Option<String> {
    let (_, a) = containing(attrs, parse(attrs).ok()?, off)?;
    let rule = matches!(kind, NFT_MSG_NEWRULE | NFT_MSG_DELRULE);
    let elem = matches!(
        kind,
        NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM | NFT_MSG_DESTROYSETELEM
    );
    let chain = matches!(kind, NFT_MSG_NEWCHAIN | NFT_MSG_DELCHAIN);
    let set = matches!(kind, NFT_MSG_NEWSET | NFT_MSG_DELSET);
    let name = match a.kind {
        NFTA_RULE_EXPRESSIONS if rule => {
            let Some((i, e)) = containing(attrs, a.nested().ok()?, off) else {
                return Some("the expression list".into());
            };
            let expr = e
                .nested()
                .ok()?
                .into_iter()
                .find(|x| x.kind == 1)
                .map(|x| x.str())
                .unwrap_or_default();
            return Some(format!("expression {} ({expr})", i + 1));
        }
        NFTA_SET_ELEM_LIST_ELEMENTS if elem => {
            return Some(match containing(attrs, a.nested().ok()?, off) {
                Some((i, _)) => format!("element {} of the message", i + 1),
                None => "the element list".into(),
            });
        }
        1 => "the table name",
        NFTA_RULE_CHAIN if rule => "the chain name",
        NFTA_RULE_HANDLE if rule => "the rule handle",
        NFTA_RULE_USERDATA if rule => "the comment",
        NFTA_CHAIN_NAME if chain => "the chain name",
        NFTA_CHAIN_HOOK if chain => "the hook and priority",
        NFTA_CHAIN_POLICY if chain => "the policy",
        NFTA_CHAIN_TYPE if chain => "the chain type",
        NFTA_SET_NAME if set => "the set name",
        NFTA_SET_FLAGS if set => "the set flags",
        NFTA_SET_KEY_TYPE | NFTA_SET_KEY_LEN if set => "the key type",
        NFTA_SET_DATA_TYPE | NFTA_SET_DATA_LEN if set => "the map's data type",
        NFTA_SET_DESC if set => "the concatenation's field lengths",
        NFTA_SET_ELEM_LIST_SET if elem => "the set name",
        other => return Some(format!("attribute {other}")),
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::{Expr, Family, Field};
    use ipnet::IpNet;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn foreign_tables_are_refused() {
        let mut b = Batch::new();
        b.add_table(&Table::new(Family::Inet, "filter"));
        assert!(b.error.as_deref().unwrap_or("").contains("not Ferry's"));
        let mut b = Batch::new();
        b.add_table(&Table::new(Family::Inet, "ferry-x"));
        assert!(b.error.is_none());
    }

    #[test]
    fn offsets_name_the_expression() {
        let t = Table::new(Family::Inet, "ferry");
        let mut b = Batch::new();
        b.add_rule(&Rule::new(&t, "c").counter().jump("x"));
        let a = b.msgs[0].attrs.bytes();
        // table (4 + 8), chain (4 + 4), list header (4): expression 1 at 24.
        assert_eq!(
            describe_offset(NFT_MSG_NEWRULE, a, 24).as_deref(),
            Some("expression 1 (counter)")
        );
        let second = 24 + u16::from_ne_bytes([a[24], a[25]]) as usize;
        assert_eq!(
            describe_offset(NFT_MSG_NEWRULE, a, second).as_deref(),
            Some("expression 2 (immediate)")
        );
        assert_eq!(
            describe_offset(NFT_MSG_NEWRULE, a, 0).as_deref(),
            Some("the table name")
        );
        assert_eq!(describe_offset(NFT_MSG_NEWRULE, a, 10_000), None);
    }

    #[test]
    fn ipv6_fields_are_refused_in_ip_tables() {
        let t = Table::new(Family::Ip, "ferry");
        let mut b = Batch::new();
        b.add_rule(&Rule::new(&t, "c").daddr("fd00:160::/64".parse::<IpNet>().unwrap()));
        assert!(b.error.as_deref().unwrap_or("").contains("inet table"));
    }

    #[test]
    fn concat_types_pack_six_bits_each() {
        let (id, len) = Type::concat(&[Type::Ipv4Addr, Type::InetProto, Type::InetService]);
        assert_eq!(id, (7 << 12) | (12 << 6) | 13);
        assert_eq!(len, 12);
        assert_eq!(Type::concat(&[Type::InetService]), (13, 2));
    }

    #[test]
    fn concat_lookup_uses_consecutive_registers() {
        let t = Table::new(Family::Ip, "ferry");
        let r = Rule::new(&t, "c").lookup(&[Field::IpDaddr, Field::L4Proto, Field::ThDport], "s");
        let regs: Vec<u32> = r
            .exprs()
            .iter()
            .filter_map(|e| match e {
                Expr::Payload { dreg, .. } | Expr::Meta { dreg, .. } => Some(*dreg),
                _ => None,
            })
            .collect();
        assert_eq!(regs, vec![8, 9, 10]);
    }

    #[test]
    fn inet_ip_match_adds_nfproto_once() {
        let t = Table::new(Family::Inet, "ferry");
        let r = Rule::new(&t, "c")
            .saddr("198.18.160.0/24".parse::<IpNet>().unwrap())
            .daddr(IpNet::from(IpAddr::V4(Ipv4Addr::new(198, 18, 160, 1))));
        let metas = r
            .exprs()
            .iter()
            .filter(|e| matches!(e, Expr::Meta { .. }))
            .count();
        assert_eq!(metas, 1);
    }
}
