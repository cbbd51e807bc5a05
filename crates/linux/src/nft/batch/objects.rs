//! The objects a batch creates: tables, chains, sets and maps, and their
//! elements.

use std::net::IpAddr;

use ipnet::IpNet;

use super::consts::*;
use crate::nft::expr::{encode_concat, Type, Value, Verdict, NFTA_DATA_VALUE, NFTA_LIST_ELEM};
use crate::nft::nla::Attrs;
use crate::nft::Family;

/// A table: the family and name that every object lives under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// Address family.
    pub family: Family,
    /// Table name; Ferry's start with `ferry`.
    pub name: String,
}

impl Table {
    /// A table reference; nothing is created until a batch adds it.
    pub fn new(family: Family, name: impl Into<String>) -> Self {
        Table {
            family,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    /// `filter`
    Filter,
    /// `nat` (needs conntrack; prerouting/output for DNAT,
    /// postrouting/input for SNAT and masquerade)
    Nat,
    /// `route` (output only)
    Route,
}

impl ChainType {
    /// nft's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// The netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `prerouting`
    Prerouting = 0,
    /// `input`
    Input = 1,
    /// `forward`
    Forward = 2,
    /// `output`
    Output = 3,
    /// `postrouting`
    Postrouting = 4,
}

impl Hook {
    pub(crate) fn from_raw(n: u32) -> Option<Hook> {
        Some(match n {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// A base chain's default verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `policy accept` (the default)
    Accept,
    /// `policy drop`
    Drop,
}

/// A chain: a base chain hooked into the stack, or a regular chain reached
/// by `jump`/`goto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub(super) table: Table,
    pub(super) name: String,
    pub(super) base: Option<(ChainType, Hook, i32)>,
    pub(super) policy: Option<Policy>,
}

impl Chain {
    /// A regular chain.
    pub fn regular(table: &Table, name: impl Into<String>) -> Self {
        Chain {
            table: table.clone(),
            name: name.into(),
            base: None,
            policy: None,
        }
    }

    /// A base chain of `kind` on `hook` at `priority` (filter is 0, dstnat
    /// -100, srcnat 100).
    pub fn base(
        table: &Table,
        name: impl Into<String>,
        kind: ChainType,
        hook: Hook,
        priority: i32,
    ) -> Self {
        Chain {
            base: Some((kind, hook, priority)),
            ..Chain::regular(table, name)
        }
    }

    /// Sets the policy of a base chain (ignored for regular chains).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The chain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The chain's table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// True when the kernel's chain `k` is this chain as [`Batch::add_chain`]
    /// would leave it: same kind, hook and priority, and the policy when this
    /// one sets it.
    pub fn matches(&self, k: &crate::nft::ChainInfo) -> bool {
        let base = match self.base {
            None => k.hook.is_none() && k.chain_type.is_none(),
            Some((kind, hook, prio)) => {
                k.hook == Some((hook, prio)) && k.chain_type.as_deref() == Some(kind.as_str())
            }
        };
        base && k.family == self.table.family
            && k.table == self.table.name
            && k.name == self.name
            && self.policy.is_none_or(|p| k.policy == Some(p))
    }
}

/// The value side of a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapData {
    /// A verdict map (`vmap`): values are verdicts.
    Verdict,
    /// A data map: values of these (concatenated) types.
    Value(Vec<Type>),
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub(super) table: Table,
    pub(super) name: String,
    pub(super) key: Vec<Type>,
    pub(super) data: Option<MapData>,
    pub(super) interval: bool,
}

impl Set {
    /// A set keyed by `key` (one type, or several for a concatenation
    /// such as `ipv4_addr . inet_proto . inet_service`).
    pub fn new(table: &Table, name: impl Into<String>, key: &[Type]) -> Self {
        Set {
            table: table.clone(),
            name: name.into(),
            key: key.to_vec(),
            data: None,
            interval: false,
        }
    }

    /// Makes it a verdict map.
    pub fn verdict_map(mut self) -> Self {
        self.data = Some(MapData::Verdict);
        self
    }

    /// Makes it a map to values of `data`.
    pub fn map(mut self, data: &[Type]) -> Self {
        self.data = Some(MapData::Value(data.to_vec()));
        self
    }

    /// `flags interval`: elements may be prefixes and ranges.
    pub fn interval(mut self) -> Self {
        self.interval = true;
        self
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A set key: one value or a concatenation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(pub Vec<Value>);

impl From<Value> for Key {
    fn from(v: Value) -> Self {
        Key(vec![v])
    }
}

impl From<Vec<Value>> for Key {
    fn from(v: Vec<Value>) -> Self {
        Key(v)
    }
}

impl<const N: usize> From<[Value; N]> for Key {
    fn from(v: [Value; N]) -> Self {
        Key(v.to_vec())
    }
}

impl From<IpAddr> for Key {
    fn from(a: IpAddr) -> Self {
        Key(vec![a.into()])
    }
}

/// The value of a map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementData {
    /// A verdict (verdict maps).
    Verdict(Verdict),
    /// A value (data maps), concatenated like keys.
    Value(Vec<Value>),
}

/// One set or map element: a key, or an inclusive range of keys in an
/// interval set, with a value in maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub(super) key: Key,
    pub(super) key_end: Option<Key>,
    pub(super) data: Option<ElementData>,
}

impl Element {
    /// An element with one key.
    pub fn new(key: impl Into<Key>) -> Self {
        Element {
            key: key.into(),
            key_end: None,
            data: None,
        }
    }

    /// The inclusive range `start..=end` (interval sets).
    pub fn range(start: impl Into<Key>, end: impl Into<Key>) -> Self {
        Element {
            key: start.into(),
            key_end: Some(end.into()),
            data: None,
        }
    }

    /// All addresses of a prefix (interval sets).
    pub fn prefix(net: IpNet) -> Self {
        let net = net.trunc();
        Element::range(net.network(), net.broadcast())
    }

    /// Sets a verdict as the value (verdict maps).
    pub fn verdict(mut self, v: Verdict) -> Self {
        self.data = Some(ElementData::Verdict(v));
        self
    }

    /// Sets a value (data maps).
    pub fn data(mut self, value: impl Into<Key>) -> Self {
        self.data = Some(ElementData::Value(value.into().0));
        self
    }

    /// Writes this element as one or two `NFTA_LIST_ELEM`s. A range of a
    /// single-field key becomes a start element and an end element one past
    /// the range flagged `INTERVAL_END` (as nft sends them; the end is left
    /// out when the range reaches the top of the key space); a range of a
    /// concatenation carries `KEY_END`.
    pub(super) fn encode(&self, a: &mut Attrs, with_data: bool) {
        let key = encode_concat(&self.key.0);
        let put_data = |e: &mut Attrs| {
            if !with_data {
                return;
            }
            match &self.data {
                Some(ElementData::Verdict(v)) => {
                    e.nest(NFTA_SET_ELEM_DATA, |d| v.encode_data(d));
                }
                Some(ElementData::Value(v)) => {
                    e.nest(NFTA_SET_ELEM_DATA, |d| {
                        d.put(NFTA_DATA_VALUE, &encode_concat(v));
                    });
                }
                None => {}
            }
        };
        let put_key = |e: &mut Attrs, kind: u16, k: &[u8]| {
            e.nest(kind, |n| {
                n.put(NFTA_DATA_VALUE, k);
            });
        };
        match &self.key_end {
            None => {
                a.nest(NFTA_LIST_ELEM, |e| {
                    put_key(e, NFTA_SET_ELEM_KEY, &key);
                    put_data(e);
                });
            }
            Some(end) if self.key.0.len() > 1 => {
                let end = encode_concat(&end.0);
                a.nest(NFTA_LIST_ELEM, |e| {
                    put_key(e, NFTA_SET_ELEM_KEY, &key);
                    put_key(e, NFTA_SET_ELEM_KEY_END, &end);
                    put_data(e);
                });
            }
            Some(end) => {
                a.nest(NFTA_LIST_ELEM, |e| {
                    put_key(e, NFTA_SET_ELEM_KEY, &key);
                    put_data(e);
                });
                if let Some(past) = increment(&encode_concat(&end.0)) {
                    a.nest(NFTA_LIST_ELEM, |e| {
                        put_key(e, NFTA_SET_ELEM_KEY, &past);
                        e.put_be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
                    });
                }
            }
        }
    }
}

/// `bytes + 1` as a big-endian number; `None` on overflow.
pub(super) fn increment(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut v = bytes.to_vec();
    for b in v.iter_mut().rev() {
        let (n, carry) = b.overflowing_add(1);
        *b = n;
        if !carry {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_carries_and_overflows() {
        assert_eq!(increment(&[10, 0, 0, 255]), Some(vec![10, 0, 1, 0]));
        assert_eq!(increment(&[255, 255]), None);
    }
}
