//! Typed nf_tables objects and the atomic batch that carries changes to
//! them.

use std::net::IpAddr;

use ipnet::IpNet;

use super::expr::{
    encode_concat, pad4, CmpOp, CtKey, CtState, Expr, Field, MetaKey, NatKind, Type, Value,
    Verdict, NFTA_DATA_VALUE, NFTA_LIST_ELEM, REG32_00, REG32_15, REG_VERDICT,
};
use super::nla::{parse, Attr, Attrs};
use super::{is_ferry_table, Family};

// Message types (NFT_MSG_*).
pub(crate) const NFT_MSG_NEWTABLE: u8 = 0;
pub(crate) const NFT_MSG_GETTABLE: u8 = 1;
pub(crate) const NFT_MSG_DELTABLE: u8 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u8 = 3;
pub(crate) const NFT_MSG_GETCHAIN: u8 = 4;
pub(crate) const NFT_MSG_DELCHAIN: u8 = 5;
pub(crate) const NFT_MSG_NEWRULE: u8 = 6;
pub(crate) const NFT_MSG_GETRULE: u8 = 7;
pub(crate) const NFT_MSG_DELRULE: u8 = 8;
pub(crate) const NFT_MSG_NEWSET: u8 = 9;
pub(crate) const NFT_MSG_GETSET: u8 = 10;
pub(crate) const NFT_MSG_DELSET: u8 = 11;
pub(crate) const NFT_MSG_NEWSETELEM: u8 = 12;
pub(crate) const NFT_MSG_GETSETELEM: u8 = 13;
pub(crate) const NFT_MSG_DELSETELEM: u8 = 14;
pub(crate) const NFT_MSG_DESTROYSETELEM: u8 = 30;

// Netlink request flags.
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};

// Attribute numbers.
pub(crate) const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
pub(crate) const NFTA_SET_TABLE: u16 = 1;
pub(crate) const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_SET_FIELD_LEN: u16 = 1;
const NFTA_SET_USERDATA: u16 = 13;
pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_KEY_END: u16 = 10;

// Set flags.
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_MAP: u32 = 0x8;
const NFT_SET_CONCAT: u32 = 0x80;
/// `NFT_DATA_VERDICT`: the data type of a verdict map.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// `NFT_SET_ELEM_INTERVAL_END`.
pub(crate) const NFT_SET_ELEM_INTERVAL_END: u32 = 1;

// User data TLVs as nft writes them (libnftnl's NFTNL_UDATA_*).
pub(crate) const UDATA_RULE_COMMENT: u8 = 0;
/// Ferry's own rule user data TLV: a fingerprint of the rule (nft and
/// iptables skip TLV types they do not know).
pub(crate) const UDATA_RULE_FINGERPRINT: u8 = 0xf0;
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
/// nft's `BYTEORDER_HOST_ENDIAN` / `BYTEORDER_BIG_ENDIAN`.
const BYTEORDER_INVALID: u32 = 0;
const BYTEORDER_HOST: u32 = 1;
const BYTEORDER_BIG: u32 = 2;

/// Longest rule comment nft accepts.
pub const MAX_COMMENT_LEN: usize = 128;
/// Longest table, chain or set name (`NFT_NAME_MAXLEN` less the NUL).
pub const MAX_NAME_LEN: usize = 255;
/// Set elements per netlink message (keeps attributes under 64 KiB).
const ELEMENTS_PER_MESSAGE: usize = 256;

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
    table: Table,
    name: String,
    base: Option<(ChainType, Hook, i32)>,
    policy: Option<Policy>,
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
    pub fn matches(&self, k: &super::ChainInfo) -> bool {
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

/// A rule under construction: expressions appended by the helpers in the
/// order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    table: Table,
    chain: String,
    exprs: Vec<Expr>,
    comment: Option<String>,
    /// The `meta nfproto` dependency already emitted (inet tables).
    nfproto: Option<u8>,
    error: Option<String>,
}

impl Rule {
    /// An empty rule for `chain` of `table` (an empty rule only counts
    /// nothing; add matches and a verdict).
    pub fn new(table: &Table, chain: impl Into<String>) -> Self {
        Rule {
            table: table.clone(),
            chain: chain.into(),
            exprs: Vec::new(),
            comment: None,
            nfproto: None,
            error: None,
        }
    }

    /// The expressions so far.
    pub fn exprs(&self) -> &[Expr] {
        &self.exprs
    }

    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    /// Appends a raw expression.
    pub fn expr(mut self, e: Expr) -> Self {
        self.exprs.push(e);
        self
    }

    /// Emits `meta nfproto ipv4/ipv6` once, where the table family mixes
    /// both, as nft does before an IP header match.
    fn depend(&mut self, field: Field) {
        match (self.table.family, field.nfproto()) {
            (Family::Ip, Some(10)) | (Family::Ip6, Some(2)) => {
                self.fail(format!(
                    "{field:?} cannot match in a table of family {}; use an inet table",
                    self.table.family
                ));
                return;
            }
            (Family::Inet, _) => {}
            _ => return,
        }
        if let Some(p) = field.nfproto() {
            if self.nfproto != Some(p) {
                self.exprs.push(Field::Nfproto.load(REG32_00));
                self.exprs.push(Expr::Cmp {
                    sreg: REG32_00,
                    op: CmpOp::Eq,
                    data: vec![p],
                });
                self.nfproto = Some(p);
            }
        }
    }

    /// `FIELD == VALUE` (or another comparison).
    pub fn cmp(mut self, field: Field, op: CmpOp, value: impl Into<Value>) -> Self {
        let data = value.into().to_bytes();
        if data.len() != field.size() as usize {
            self.fail(format!(
                "rule value for {field:?} is {} bytes, the field is {}",
                data.len(),
                field.size()
            ));
        }
        self.depend(field);
        self.exprs.push(field.load(REG32_00));
        self.exprs.push(Expr::Cmp {
            sreg: REG32_00,
            op,
            data,
        });
        self
    }

    /// `FIELD == VALUE`.
    pub fn eq(self, field: Field, value: impl Into<Value>) -> Self {
        self.cmp(field, CmpOp::Eq, value)
    }

    /// `FIELD != VALUE`.
    pub fn neq(self, field: Field, value: impl Into<Value>) -> Self {
        self.cmp(field, CmpOp::Neq, value)
    }

    fn addr_match(self, net: IpNet, src: bool) -> Self {
        self.addr_cmp(net, src, CmpOp::Eq)
    }

    /// `ip saddr NET`, `ip6 daddr != NET` ...: the source (`src`) or
    /// destination address compared with a prefix by `op` (`Eq` or `Neq`).
    pub fn addr_cmp(mut self, net: impl Into<IpNet>, src: bool, op: CmpOp) -> Self {
        let net: IpNet = net.into();
        let field = match (net, src) {
            (IpNet::V4(_), true) => Field::IpSaddr,
            (IpNet::V4(_), false) => Field::IpDaddr,
            (IpNet::V6(_), true) => Field::Ip6Saddr,
            (IpNet::V6(_), false) => Field::Ip6Daddr,
        };
        self.depend(field);
        let net = net.trunc();
        let addr = Value::from(net.addr()).to_bytes();
        self.exprs.push(field.load(REG32_00));
        if net.prefix_len() < net.max_prefix_len() {
            let mask = Value::from(net.netmask()).to_bytes();
            let xor = vec![0; mask.len()];
            self.exprs.push(Expr::Bitwise {
                sreg: REG32_00,
                dreg: REG32_00,
                mask,
                xor,
            });
        }
        self.exprs.push(Expr::Cmp {
            sreg: REG32_00,
            op,
            data: addr,
        });
        self
    }

    /// `ip saddr NET` / `ip6 saddr NET` (a prefix or a single address).
    pub fn saddr(self, net: impl Into<IpNet>) -> Self {
        self.addr_match(net.into(), true)
    }

    /// `ip daddr NET` / `ip6 daddr NET`.
    pub fn daddr(self, net: impl Into<IpNet>) -> Self {
        self.addr_match(net.into(), false)
    }

    /// `meta l4proto PROTO` (6 tcp, 17 udp).
    pub fn l4proto(self, proto: u8) -> Self {
        self.eq(Field::L4Proto, Value::Proto(proto))
    }

    /// `tcp dport PORT` / `udp dport PORT`: the protocol then the port.
    pub fn dport(self, proto: u8, port: u16) -> Self {
        self.l4proto(proto).eq(Field::ThDport, Value::Port(port))
    }

    /// `iifname NAME`.
    pub fn iifname(self, name: &str) -> Self {
        self.eq(Field::Iifname, Value::Ifname(name.to_string()))
    }

    /// `oifname NAME`.
    pub fn oifname(self, name: &str) -> Self {
        self.eq(Field::Oifname, Value::Ifname(name.to_string()))
    }

    /// `ct state STATES` (matches when any of the bits is set).
    pub fn ct_state(mut self, states: CtState) -> Self {
        self.exprs.push(Expr::Ct {
            key: CtKey::State,
            dreg: REG32_00,
        });
        self.exprs.push(Expr::Bitwise {
            sreg: REG32_00,
            dreg: REG32_00,
            mask: states.0.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.exprs.push(Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Neq,
            data: vec![0; 4],
        });
        self
    }

    /// `ct status dnat`: the connection's destination was rewritten
    /// (`IPS_DST_NAT`).
    pub fn ct_status_dnat(mut self) -> Self {
        self.exprs.push(Expr::Ct {
            key: CtKey::Status,
            dreg: REG32_00,
        });
        self.exprs.push(Expr::Bitwise {
            sreg: REG32_00,
            dreg: REG32_00,
            mask: 0x20u32.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.exprs.push(Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Neq,
            data: vec![0; 4],
        });
        self
    }

    /// `fib daddr type local`: the destination is one of this namespace's
    /// own addresses.
    pub fn fib_daddr_local(mut self) -> Self {
        self.exprs.push(Expr::FibDaddrType { dreg: REG32_00 });
        self.exprs.push(Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Eq,
            data: 2u32.to_ne_bytes().to_vec(),
        });
        self
    }

    /// Loads `fields` into consecutive registers as a (concatenated) key
    /// and returns the first register.
    fn load_key(&mut self, fields: &[Field]) -> u32 {
        for f in fields {
            self.depend(*f);
        }
        let mut reg = REG32_00;
        for f in fields {
            if reg > REG32_15 {
                self.fail(format!(
                    "set key {fields:?} is longer than the 64-byte registers"
                ));
                break;
            }
            self.exprs.push(f.load(reg));
            reg += pad4(f.size()) / 4;
        }
        if fields.is_empty() {
            self.fail("a set lookup needs at least one field".into());
        }
        REG32_00
    }

    /// `FIELD . FIELD ... @set`: matches when the key is in the named set.
    pub fn lookup(mut self, fields: &[Field], set: &str) -> Self {
        let sreg = self.load_key(fields);
        self.exprs.push(Expr::Lookup {
            set: set.to_string(),
            sreg,
            dreg: None,
            invert: false,
        });
        self
    }

    /// `FIELD . FIELD ... != @set`.
    pub fn not_lookup(mut self, fields: &[Field], set: &str) -> Self {
        let sreg = self.load_key(fields);
        self.exprs.push(Expr::Lookup {
            set: set.to_string(),
            sreg,
            dreg: None,
            invert: true,
        });
        self
    }

    /// `FIELD . FIELD ... vmap @map`: the verdict is the map's value for
    /// the key; the rule goes on when the key is absent.
    pub fn vmap(mut self, fields: &[Field], map: &str) -> Self {
        let sreg = self.load_key(fields);
        self.exprs.push(Expr::Lookup {
            set: map.to_string(),
            sreg,
            dreg: Some(REG_VERDICT),
            invert: false,
        });
        self
    }

    /// `meta mark set meta mark | BITS`: sets bits of the packet mark,
    /// keeping the others.
    pub fn set_mark_bits(mut self, bits: u32) -> Self {
        self.exprs.push(Field::Mark.load(REG32_00));
        self.exprs.push(Expr::Bitwise {
            sreg: REG32_00,
            dreg: REG32_00,
            mask: (!bits).to_ne_bytes().to_vec(),
            xor: bits.to_ne_bytes().to_vec(),
        });
        self.exprs.push(Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: REG32_00,
        });
        self
    }

    /// `meta mark & BITS == BITS`: all of `bits` are set in the mark.
    pub fn mark_bits(mut self, bits: u32) -> Self {
        self.exprs.push(Field::Mark.load(REG32_00));
        self.exprs.push(Expr::Bitwise {
            sreg: REG32_00,
            dreg: REG32_00,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.exprs.push(Expr::Cmp {
            sreg: REG32_00,
            op: CmpOp::Eq,
            data: bits.to_ne_bytes().to_vec(),
        });
        self
    }

    /// `counter`.
    pub fn counter(mut self) -> Self {
        self.exprs.push(Expr::Counter);
        self
    }

    /// Ends the rule with a verdict.
    pub fn verdict(mut self, v: Verdict) -> Self {
        self.exprs.push(Expr::Verdict(v));
        self
    }

    /// `accept`.
    pub fn accept(self) -> Self {
        self.verdict(Verdict::Accept)
    }

    /// `drop`.
    pub fn drop(self) -> Self {
        self.verdict(Verdict::Drop)
    }

    /// `return`.
    pub fn ret(self) -> Self {
        self.verdict(Verdict::Return)
    }

    /// `jump CHAIN`.
    pub fn jump(self, chain: &str) -> Self {
        self.verdict(Verdict::Jump(chain.to_string()))
    }

    /// `goto CHAIN`.
    pub fn goto(self, chain: &str) -> Self {
        self.verdict(Verdict::Goto(chain.to_string()))
    }

    fn nat(mut self, kind: NatKind, addr: IpAddr, port: Option<u16>) -> Self {
        let ipv6 = addr.is_ipv6();
        let addr_bytes = Value::from(addr).to_bytes();
        let port_reg = REG32_00 + addr_bytes.len() as u32 / 4;
        self.exprs.push(Expr::Immediate {
            dreg: REG32_00,
            data: addr_bytes,
        });
        if let Some(p) = port {
            self.exprs.push(Expr::Immediate {
                dreg: port_reg,
                data: p.to_be_bytes().to_vec(),
            });
        }
        self.exprs.push(Expr::Nat {
            kind,
            ipv6,
            addr: Some(REG32_00),
            port: port.map(|_| port_reg),
        });
        self
    }

    /// `dnat ip to ADDR[:PORT]` (a port needs a `tcp`/`udp` match first).
    pub fn dnat(self, addr: IpAddr, port: Option<u16>) -> Self {
        self.nat(NatKind::Dnat, addr, port)
    }

    /// `snat ip to ADDR[:PORT]`.
    pub fn snat(self, addr: IpAddr, port: Option<u16>) -> Self {
        self.nat(NatKind::Snat, addr, port)
    }

    /// `dnat ip to FIELDS map @MAP`: the new destination is the value the
    /// map holds for the key, of types `to`: an address, or an address and
    /// a port (`ipv4_addr . inet_service`). Published ports then become map
    /// elements and the rule stays the same however many there are.
    pub fn dnat_map(mut self, fields: &[Field], map: &str, to: &[Type]) -> Self {
        let (ipv6, with_port) = match to {
            [Type::Ipv4Addr] => (false, false),
            [Type::Ipv6Addr] => (true, false),
            [Type::Ipv4Addr, Type::InetService] => (false, true),
            [Type::Ipv6Addr, Type::InetService] => (true, true),
            _ => {
                self.fail(format!(
                    "dnat map values must be an address, optionally with a port, not {to:?}"
                ));
                (false, false)
            }
        };
        let sreg = self.load_key(fields);
        self.exprs.push(Expr::Lookup {
            set: map.to_string(),
            sreg,
            dreg: Some(REG32_00),
            invert: false,
        });
        let port_reg = REG32_00 + if ipv6 { 4 } else { 1 };
        self.exprs.push(Expr::Nat {
            kind: NatKind::Dnat,
            ipv6,
            addr: Some(REG32_00),
            port: with_port.then_some(port_reg),
        });
        self
    }

    /// `masquerade`.
    pub fn masquerade(mut self) -> Self {
        self.exprs.push(Expr::Masquerade);
        self
    }

    /// `comment "TEXT"`, stored in the rule's user data as nft does; Ferry
    /// uses it to find its rules again.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        if text.len() > MAX_COMMENT_LEN - 1 || text.contains('\0') {
            self.fail(format!(
                "rule comment {text:?} must be shorter than {MAX_COMMENT_LEN} bytes and hold no NUL"
            ));
        }
        self.comment = Some(text);
        self
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
    table: Table,
    name: String,
    key: Vec<Type>,
    data: Option<MapData>,
    interval: bool,
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
    key: Key,
    key_end: Option<Key>,
    data: Option<ElementData>,
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
    fn encode(&self, a: &mut Attrs, with_data: bool) {
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
fn increment(bytes: &[u8]) -> Option<Vec<u8>> {
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
    use std::net::Ipv4Addr;

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
    fn increment_carries_and_overflows() {
        assert_eq!(increment(&[10, 0, 0, 255]), Some(vec![10, 0, 1, 0]));
        assert_eq!(increment(&[255, 255]), None);
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
