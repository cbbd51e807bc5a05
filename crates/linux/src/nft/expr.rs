//! Rule expressions, registers, verdicts and the typed values that go into
//! comparisons, set keys and map data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::nla::Attrs;

// Attribute numbers from <linux/netfilter/nf_tables.h>.
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
pub(crate) const NFTA_DATA_VERDICT: u16 = 2;
pub(crate) const NFTA_VERDICT_CODE: u16 = 1;
pub(crate) const NFTA_VERDICT_CHAIN: u16 = 2;

/// The verdict register.
pub const REG_VERDICT: u32 = 0;
/// The first 32-bit data register (`NFT_REG32_00`); a value longer than
/// 4 bytes spans the following ones.
pub const REG32_00: u32 = 8;
/// The last 32-bit data register (`NFT_REG32_15`).
pub const REG32_15: u32 = 23;

/// A rule's decision: the terminal statement of a rule or the data of a
/// verdict map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the packet pass this hook.
    Accept,
    /// Drop the packet.
    Drop,
    /// Go on with the next rule (`NFT_CONTINUE`).
    Continue,
    /// Return to the calling chain.
    Return,
    /// Evaluate the named chain, then come back.
    Jump(String),
    /// Evaluate the named chain and do not come back.
    Goto(String),
}

impl Verdict {
    pub(crate) fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
        }
    }

    /// Decodes a verdict code and chain from the kernel; `None` for codes
    /// this crate does not model (queue, stolen, break).
    pub(crate) fn from_code(code: i32, chain: Option<String>) -> Option<Verdict> {
        Some(match code {
            0 => Verdict::Drop,
            1 => Verdict::Accept,
            -1 => Verdict::Continue,
            -3 => Verdict::Jump(chain?),
            -4 => Verdict::Goto(chain?),
            -5 => Verdict::Return,
            _ => return None,
        })
    }

    /// Writes `NFTA_DATA_VERDICT { code, chain }` into `a`.
    pub(crate) fn encode_data(&self, a: &mut Attrs) {
        a.nest(NFTA_DATA_VERDICT, |v| {
            v.put_be32(NFTA_VERDICT_CODE, self.code() as u32);
            if let Verdict::Jump(c) | Verdict::Goto(c) = self {
                v.put_str(NFTA_VERDICT_CHAIN, c);
            }
        });
    }
}

/// A data type of a set key or map value (nft's datatype numbers, which
/// `nft list` uses to print elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `ipv4_addr`, 4 bytes.
    Ipv4Addr,
    /// `ipv6_addr`, 16 bytes.
    Ipv6Addr,
    /// `inet_proto`, 1 byte (6 = tcp, 17 = udp).
    InetProto,
    /// `inet_service`, a port, 2 bytes big-endian.
    InetService,
    /// `mark`, 4 bytes host order.
    Mark,
    /// `ifname`, 16 bytes NUL-padded.
    Ifname,
    /// `ether_addr`, a MAC address, 6 bytes.
    EtherAddr,
}

impl Type {
    /// nft's datatype number.
    pub(crate) fn id(self) -> u32 {
        match self {
            Type::Ipv4Addr => 7,
            Type::Ipv6Addr => 8,
            Type::InetProto => 12,
            Type::InetService => 13,
            Type::Mark => 19,
            Type::Ifname => 41,
            Type::EtherAddr => 9,
        }
    }

    /// Length of a value in bytes.
    pub fn size(self) -> u32 {
        match self {
            Type::Ipv4Addr | Type::Mark => 4,
            Type::Ipv6Addr | Type::Ifname => 16,
            Type::InetProto => 1,
            Type::InetService => 2,
            Type::EtherAddr => 6,
        }
    }

    /// Values of this type are big-endian (network order).
    pub(crate) fn big_endian(self) -> bool {
        !matches!(self, Type::Mark | Type::Ifname)
    }

    /// The type number and total length of a (possibly concatenated) key:
    /// nft packs concatenations 6 bits per component, each component
    /// padded to 4 bytes.
    pub(crate) fn concat(types: &[Type]) -> (u32, u32) {
        if let [one] = types {
            return (one.id(), one.size());
        }
        let id = types.iter().fold(0u32, |acc, t| (acc << 6) | t.id());
        let len = types.iter().map(|t| pad4(t.size())).sum();
        (id, len)
    }
}

/// A typed value: what a comparison matches or a set key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An IPv4 address (`ipv4_addr`).
    Ipv4(Ipv4Addr),
    /// An IPv6 address (`ipv6_addr`).
    Ipv6(Ipv6Addr),
    /// A layer 4 protocol number (`inet_proto`): 6 tcp, 17 udp.
    Proto(u8),
    /// A port (`inet_service`).
    Port(u16),
    /// A packet mark.
    Mark(u32),
    /// An interface name, matched exactly.
    Ifname(String),
    /// A MAC address (`ether_addr`).
    Ether([u8; 6]),
    /// Raw bytes, as the kernel compares them.
    Bytes(Vec<u8>),
}

/// `IPPROTO_TCP`.
pub const TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const UDP: u8 = 17;

impl Value {
    /// The bytes the kernel sees.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Value::Ipv4(a) => a.octets().to_vec(),
            Value::Ipv6(a) => a.octets().to_vec(),
            Value::Proto(p) => vec![*p],
            Value::Port(p) => p.to_be_bytes().to_vec(),
            Value::Mark(m) => m.to_ne_bytes().to_vec(),
            Value::Ifname(n) => {
                let mut v = n.as_bytes().to_vec();
                v.resize(16, 0);
                v
            }
            Value::Ether(m) => m.to_vec(),
            Value::Bytes(b) => b.clone(),
        }
    }
}

impl From<Ipv4Addr> for Value {
    fn from(a: Ipv4Addr) -> Self {
        Value::Ipv4(a)
    }
}

impl From<Ipv6Addr> for Value {
    fn from(a: Ipv6Addr) -> Self {
        Value::Ipv6(a)
    }
}

impl From<IpAddr> for Value {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Value::Ipv4(a),
            IpAddr::V6(a) => Value::Ipv6(a),
        }
    }
}

pub(crate) const fn pad4(n: u32) -> u32 {
    (n + 3) & !3
}

/// Encodes a set key or map value: one component as is, a concatenation
/// with every component padded to 4 bytes.
pub(crate) fn encode_concat(values: &[Value]) -> Vec<u8> {
    if let [one] = values {
        return one.to_bytes();
    }
    let mut out = Vec::new();
    for v in values {
        let b = v.to_bytes();
        out.extend_from_slice(&b);
        out.resize(pad4(out.len() as u32) as usize, 0);
    }
    out
}

/// Where a payload expression reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The link layer header.
    LinkLayer = 0,
    /// The network header (IPv4/IPv6).
    Network = 1,
    /// The transport header (TCP/UDP ...).
    Transport = 2,
}

/// Packet metadata a `meta` expression loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Packet length.
    Len = 0,
    /// Ethertype.
    Protocol = 1,
    /// Packet mark.
    Mark = 3,
    /// Input interface index.
    Iif = 4,
    /// Output interface index.
    Oif = 5,
    /// Input interface name.
    Iifname = 6,
    /// Output interface name.
    Oifname = 7,
    /// Netfilter protocol family (2 ipv4, 10 ipv6).
    Nfproto = 15,
    /// Layer 4 protocol number.
    L4proto = 16,
    /// The bridge a frame entered on (bridge family).
    BriIifname = 17,
    /// The bridge a frame leaves by (bridge family).
    BriOifname = 18,
}

/// Conntrack data a `ct` expression loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// The connection state bits (see [`CtState`]).
    State = 0,
    /// The connection status bits (`IPS_*`: `ct status dnat` is 0x20).
    Status = 2,
    /// The conntrack mark.
    Mark = 3,
}

/// Conntrack state bits as `ct state` sees them; combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtState(pub u32);

impl CtState {
    /// `invalid`.
    pub const INVALID: CtState = CtState(1);
    /// `established`.
    pub const ESTABLISHED: CtState = CtState(2);
    /// `related`.
    pub const RELATED: CtState = CtState(4);
    /// `new`.
    pub const NEW: CtState = CtState(8);
    /// `untracked`.
    pub const UNTRACKED: CtState = CtState(64);
}

impl std::ops::BitOr for CtState {
    type Output = CtState;
    fn bitor(self, rhs: CtState) -> CtState {
        CtState(self.0 | rhs.0)
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq = 0,
    /// `!=`
    Neq = 1,
    /// `<`
    Lt = 2,
    /// `<=`
    Lte = 3,
    /// `>`
    Gt = 4,
    /// `>=`
    Gte = 5,
}

/// Source or destination NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Rewrite the source (postrouting/input).
    Snat = 0,
    /// Rewrite the destination (prerouting/output).
    Dnat = 1,
}

/// One expression of a rule, as the kernel runs it. Most callers use the
/// [`crate::nft::Rule`] helpers, which emit these in the shapes `nft`
/// itself uses (so `nft list` prints them back as ordinary statements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load `len` bytes at `offset` of a header into `dreg`.
    Payload {
        /// The header.
        base: PayloadBase,
        /// Byte offset in the header.
        offset: u32,
        /// Number of bytes.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// Set packet metadata from `sreg` (`meta mark set ...`).
    MetaSet {
        /// What to set.
        key: MetaKey,
        /// Source register.
        sreg: u32,
    },
    /// Load packet metadata into `dreg`.
    Meta {
        /// What to load.
        key: MetaKey,
        /// Destination register.
        dreg: u32,
    },
    /// Compare a register with `data`; the rule stops here when false.
    Cmp {
        /// Register to compare.
        sreg: u32,
        /// Operator.
        op: CmpOp,
        /// Value to compare with (its length is the comparison's).
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// Mask (its length is the operation's).
        mask: Vec<u8>,
        /// Xor value, as long as the mask.
        xor: Vec<u8>,
    },
    /// Load a constant into `dreg`.
    Immediate {
        /// Destination register.
        dreg: u32,
        /// The constant.
        data: Vec<u8>,
    },
    /// Set the verdict.
    Verdict(Verdict),
    /// Count packets and bytes.
    Counter,
    /// Load conntrack data into `dreg`.
    Ct {
        /// What to load.
        key: CtKey,
        /// Destination register.
        dreg: u32,
    },
    /// Look the key in `sreg` up in a named set (a match), or in a map
    /// (then the value lands in `dreg`; [`REG_VERDICT`] for a verdict map).
    Lookup {
        /// Set or map name, in the rule's table.
        set: String,
        /// First register of the key.
        sreg: u32,
        /// Register for the map's value.
        dreg: Option<u32>,
        /// Match when the key is absent.
        invert: bool,
    },
    /// Source or destination NAT to the address (and port) in registers.
    Nat {
        /// SNAT or DNAT.
        kind: NatKind,
        /// IPv6 rather than IPv4 addresses.
        ipv6: bool,
        /// Register holding the address.
        addr: Option<u32>,
        /// Register holding the port (2 bytes, big-endian).
        port: Option<u32>,
    },
    /// Source NAT to the outgoing interface's address.
    Masquerade,
    /// `fib daddr type`: the route type of the destination address
    /// (`RTN_LOCAL` is 2), a 4-byte host-order value in `dreg`.
    FibDaddrType {
        /// Destination register.
        dreg: u32,
    },
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Counter => "counter",
            Expr::Ct { .. } => "ct",
            Expr::Lookup { .. } => "lookup",
            Expr::Nat { .. } => "nat",
            Expr::Masquerade => "masq",
            Expr::FibDaddrType { .. } => "fib",
        }
    }

    /// Writes this expression as one `NFTA_LIST_ELEM` of a rule's
    /// expression list.
    pub(crate) fn encode(&self, a: &mut Attrs) {
        a.nest(NFTA_LIST_ELEM, |e| {
            e.put_str(NFTA_EXPR_NAME, self.name());
            e.nest(NFTA_EXPR_DATA, |d| self.encode_data(d));
        });
    }

    fn encode_data(&self, d: &mut Attrs) {
        let value = |d: &mut Attrs, kind: u16, data: &[u8]| {
            d.nest(kind, |n| {
                n.put(NFTA_DATA_VALUE, data);
            });
        };
        match self {
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                // NFTA_PAYLOAD_DREG, BASE, OFFSET, LEN
                d.put_be32(1, *dreg)
                    .put_be32(2, *base as u32)
                    .put_be32(3, *offset)
                    .put_be32(4, *len);
            }
            Expr::Meta { key, dreg } => {
                // NFTA_META_DREG, KEY
                d.put_be32(1, *dreg).put_be32(2, *key as u32);
            }
            Expr::MetaSet { key, sreg } => {
                // NFTA_META_KEY, SREG
                d.put_be32(2, *key as u32).put_be32(3, *sreg);
            }
            Expr::Cmp { sreg, op, data } => {
                // NFTA_CMP_SREG, OP, DATA
                d.put_be32(1, *sreg).put_be32(2, *op as u32);
                value(d, 3, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                // NFTA_BITWISE_SREG, DREG, LEN, MASK, XOR
                d.put_be32(1, *sreg)
                    .put_be32(2, *dreg)
                    .put_be32(3, mask.len() as u32);
                value(d, 4, mask);
                value(d, 5, xor);
            }
            Expr::Immediate { dreg, data } => {
                // NFTA_IMMEDIATE_DREG, DATA
                d.put_be32(1, *dreg);
                value(d, 2, data);
            }
            Expr::Verdict(v) => {
                d.put_be32(1, REG_VERDICT);
                d.nest(2, |n| v.encode_data(n));
            }
            Expr::Counter => {
                // NFTA_COUNTER_BYTES, PACKETS
                d.put_be64(1, 0).put_be64(2, 0);
            }
            Expr::Ct { key, dreg } => {
                // NFTA_CT_DREG, KEY
                d.put_be32(1, *dreg).put_be32(2, *key as u32);
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                // NFTA_LOOKUP_SET, SREG, DREG, FLAGS (NFT_LOOKUP_F_INV)
                d.put_str(1, set).put_be32(2, *sreg);
                if let Some(r) = dreg {
                    d.put_be32(3, *r);
                }
                if *invert {
                    d.put_be32(5, 1);
                }
            }
            Expr::Nat {
                kind,
                ipv6,
                addr,
                port,
            } => {
                // NFTA_NAT_TYPE, FAMILY, REG_ADDR_MIN, REG_PROTO_MIN;
                // the kernel sets the MAP_IPS / PROTO_SPECIFIED flags
                // itself and uses min as max.
                d.put_be32(1, *kind as u32)
                    .put_be32(2, if *ipv6 { 10 } else { 2 });
                if let Some(r) = addr {
                    d.put_be32(3, *r);
                }
                if let Some(r) = port {
                    d.put_be32(5, *r);
                }
            }
            Expr::Masquerade => {}
            Expr::FibDaddrType { dreg } => {
                // NFTA_FIB_DREG, RESULT (NFT_FIB_RESULT_ADDRTYPE), FLAGS
                // (NFTA_FIB_F_DADDR)
                d.put_be32(1, *dreg).put_be32(2, 3).put_be32(3, 2);
            }
        }
    }
}

/// A packet field a rule can match or use as a set key, each loaded the
/// way `nft` loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `ip saddr`
    IpSaddr,
    /// `ip daddr`
    IpDaddr,
    /// `ip6 saddr`
    Ip6Saddr,
    /// `ip6 daddr`
    Ip6Daddr,
    /// `meta l4proto`
    L4Proto,
    /// `th sport` (TCP/UDP source port)
    ThSport,
    /// `th dport` (TCP/UDP destination port)
    ThDport,
    /// `iifname`
    Iifname,
    /// `oifname`
    Oifname,
    /// `meta mark`
    Mark,
    /// `meta nfproto`
    Nfproto,
    /// `meta ibrname` (bridge family)
    Ibrname,
    /// `meta obrname` (bridge family)
    Obrname,
    /// `ether saddr` (bridge family: the frame's source MAC)
    EtherSaddr,
}

impl Field {
    /// Length of the field in bytes.
    pub fn size(self) -> u32 {
        match self {
            Field::IpSaddr | Field::IpDaddr | Field::Mark => 4,
            Field::Ip6Saddr
            | Field::Ip6Daddr
            | Field::Iifname
            | Field::Oifname
            | Field::Ibrname
            | Field::Obrname => 16,
            Field::L4Proto | Field::Nfproto => 1,
            Field::ThSport | Field::ThDport => 2,
            Field::EtherSaddr => 6,
        }
    }

    /// The expression loading this field into `dreg`.
    pub fn load(self, dreg: u32) -> Expr {
        let payload = |base, offset| Expr::Payload {
            base,
            offset,
            len: self.size(),
            dreg,
        };
        let meta = |key| Expr::Meta { key, dreg };
        match self {
            Field::IpSaddr => payload(PayloadBase::Network, 12),
            Field::IpDaddr => payload(PayloadBase::Network, 16),
            Field::Ip6Saddr => payload(PayloadBase::Network, 8),
            Field::Ip6Daddr => payload(PayloadBase::Network, 24),
            Field::ThSport => payload(PayloadBase::Transport, 0),
            Field::ThDport => payload(PayloadBase::Transport, 2),
            Field::L4Proto => meta(MetaKey::L4proto),
            Field::Iifname => meta(MetaKey::Iifname),
            Field::Oifname => meta(MetaKey::Oifname),
            Field::Mark => meta(MetaKey::Mark),
            Field::Nfproto => meta(MetaKey::Nfproto),
            Field::Ibrname => meta(MetaKey::BriIifname),
            Field::Obrname => meta(MetaKey::BriOifname),
            Field::EtherSaddr => payload(PayloadBase::LinkLayer, 6),
        }
    }

    /// The `meta nfproto` value this field needs first in a family that
    /// carries both IPv4 and IPv6 (inet).
    pub(crate) fn nfproto(self) -> Option<u8> {
        match self {
            Field::IpSaddr | Field::IpDaddr => Some(2),
            Field::Ip6Saddr | Field::Ip6Daddr => Some(10),
            _ => None,
        }
    }
}
