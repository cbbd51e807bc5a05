//! The rule builder: matches, statements and a verdict, appended in the
//! order they run.

use std::net::IpAddr;

use ipnet::IpNet;

use super::consts::*;
use super::objects::Table;
use crate::nft::expr::{
    pad4, CmpOp, CtKey, CtState, Expr, Field, MetaKey, NatKind, Type, Value, Verdict, REG32_00,
    REG32_15, REG_VERDICT,
};
use crate::nft::Family;

/// A rule under construction: expressions appended by the helpers in the
/// order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(super) table: Table,
    pub(super) chain: String,
    pub(super) exprs: Vec<Expr>,
    pub(super) comment: Option<String>,
    /// The `meta nfproto` dependency already emitted (inet tables).
    pub(super) nfproto: Option<u8>,
    pub(super) error: Option<String>,
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
    pub fn ct_state(self, states: CtState) -> Self {
        self.ct_any_bit(CtKey::State, states.0)
    }

    /// `ct status dnat`: the connection's destination was rewritten
    /// (`IPS_DST_NAT`).
    pub fn ct_status_dnat(self) -> Self {
        self.ct_any_bit(CtKey::Status, 0x20)
    }

    /// `ct KEY & BITS != 0`, the shape `nft` writes for a bit match.
    fn ct_any_bit(mut self, key: CtKey, bits: u32) -> Self {
        self.exprs.push(Expr::Ct {
            key,
            dreg: REG32_00,
        });
        self.and_xor(bits, 0);
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
    pub fn lookup(self, fields: &[Field], set: &str) -> Self {
        self.lookup_expr(fields, set, None, false)
    }

    /// `FIELD . FIELD ... != @set`.
    pub fn not_lookup(self, fields: &[Field], set: &str) -> Self {
        self.lookup_expr(fields, set, None, true)
    }

    /// `FIELD . FIELD ... vmap @map`: the verdict is the map's value for
    /// the key; the rule goes on when the key is absent.
    pub fn vmap(self, fields: &[Field], map: &str) -> Self {
        self.lookup_expr(fields, map, Some(REG_VERDICT), false)
    }

    /// `REG32_00 = REG32_00 & mask ^ xor`: the kernel's one bitwise shape.
    fn and_xor(&mut self, mask: u32, xor: u32) {
        self.exprs.push(Expr::Bitwise {
            sreg: REG32_00,
            dreg: REG32_00,
            mask: mask.to_ne_bytes().to_vec(),
            xor: xor.to_ne_bytes().to_vec(),
        });
    }

    /// The key loaded, then a lookup of it in `set` (into `dreg` for a map).
    fn lookup_expr(mut self, fields: &[Field], set: &str, dreg: Option<u32>, invert: bool) -> Self {
        let sreg = self.load_key(fields);
        self.exprs.push(Expr::Lookup {
            set: set.to_string(),
            sreg,
            dreg,
            invert,
        });
        self
    }

    /// `meta mark set meta mark | BITS`: sets bits of the packet mark,
    /// keeping the others.
    pub fn set_mark_bits(mut self, bits: u32) -> Self {
        self.exprs.push(Field::Mark.load(REG32_00));
        self.and_xor(!bits, bits);
        self.exprs.push(Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: REG32_00,
        });
        self
    }

    /// `meta mark & BITS == BITS`: all of `bits` are set in the mark.
    pub fn mark_bits(mut self, bits: u32) -> Self {
        self.exprs.push(Field::Mark.load(REG32_00));
        self.and_xor(bits, 0);
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
