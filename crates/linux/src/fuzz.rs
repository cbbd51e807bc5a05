//! Property/fuzz tests of the rtnetlink reply parsers: arbitrary datagrams,
//! well-formed messages with truncated lengths, bad attribute lengths and
//! deep nesting go through `socket::split` (what every reply goes through),
//! the error decoder and the decoders of links, routes, rules and tc
//! objects. The property: an error or a value, never a panic or a hang.
//! The generators are shared with `nft::fuzz`.

use crate::socket::{kernel_error, split, Reply};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use proptest::prelude::*;

pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        cases: ferry_testkit::fuzz_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A netlink attribute tree: a leaf value or nested attributes.
#[derive(Debug, Clone)]
pub(crate) enum Nla {
    Leaf(u16, Vec<u8>),
    Nest(u16, Vec<Nla>),
}

/// Encodes attributes; `bad_len` replaces the length of every n-th one.
pub(crate) fn encode(attrs: &[Nla], bad_len: Option<(usize, u16)>, out: &mut Vec<u8>) {
    for (i, a) in attrs.iter().enumerate() {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        let kind = match a {
            Nla::Leaf(k, v) => {
                out.extend_from_slice(v);
                *k
            }
            Nla::Nest(k, inner) => {
                encode(inner, bad_len, out);
                *k | 0x8000
            }
        };
        let mut len = (out.len() - start) as u16;
        if let Some((every, l)) = bad_len {
            if every != 0 && i % every == 0 {
                len = l;
            }
        }
        out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        out[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
        out.resize(out.len().next_multiple_of(4), 0);
    }
}

/// Attribute trees with types the decoders know (small numbers) and values
/// of the sizes they expect (1, 2, 4, 8, 16 bytes) or not.
pub(crate) fn nlas() -> impl Strategy<Value = Vec<Nla>> {
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        prop::sample::select(vec![1usize, 2, 4, 6, 8, 16])
            .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
        "[a-z0-9]{0,15}".prop_map(|s| {
            let mut v = s.into_bytes();
            v.push(0);
            v
        }),
    ];
    let leaf = (0u16..40, value).prop_map(|(k, v)| Nla::Leaf(k, v));
    prop::collection::vec(leaf, 0..6).prop_recursive(4, 64, 6, |inner| {
        prop::collection::vec(
            prop_oneof![
                (0u16..40, inner).prop_map(|(k, v)| Nla::Nest(k, v)),
                (0u16..40, prop::collection::vec(any::<u8>(), 0..8))
                    .prop_map(|(k, v)| Nla::Leaf(k, v)),
            ],
            0..6,
        )
    })
}

/// Attributes nested `depth` levels deep (a chain of single nests).
pub(crate) fn deep_nest(depth: usize, kind: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * 4 + 8);
    for level in 0..depth {
        let len = ((depth - level) * 4 + 8) as u16;
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&(kind | 0x8000).to_ne_bytes());
    }
    out.extend_from_slice(&[8, 0, 1, 0, 1, 2, 3, 4]);
    out
}

/// One netlink message: header fields, a family header and attributes.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub head: Vec<u8>,
    pub attrs: Vec<Nla>,
    pub bad_attr_len: Option<(usize, u16)>,
    /// Replaces `nlmsg_len`.
    pub bad_len: Option<u32>,
}

impl Msg {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.head);
        encode(&self.attrs, self.bad_attr_len, out);
        let len = self.bad_len.unwrap_or((out.len() - start) as u32);
        out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        out[start + 4..start + 6].copy_from_slice(&self.kind.to_ne_bytes());
        out[start + 6..start + 8].copy_from_slice(&self.flags.to_ne_bytes());
        out[start + 8..start + 12].copy_from_slice(&self.seq.to_ne_bytes());
        out.resize(out.len().next_multiple_of(4), 0);
    }
}

/// Messages of the given kinds with mostly the right sequence number.
pub(crate) fn msgs(kinds: Vec<u16>, heads: Vec<usize>) -> impl Strategy<Value = Vec<Msg>> {
    let msg = (
        prop::sample::select(kinds),
        any::<u16>(),
        prop_oneof![4 => Just(7u32), 1 => any::<u32>()],
        prop::sample::select(heads).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
        nlas(),
        prop::option::weighted(0.2, (1usize..4, any::<u16>())),
        prop::option::weighted(0.1, any::<u32>()),
    )
        .prop_map(
            |(kind, flags, seq, head, attrs, bad_attr_len, bad_len)| Msg {
                kind,
                flags,
                seq,
                head,
                attrs,
                bad_attr_len,
                bad_len,
            },
        );
    prop::collection::vec(msg, 1..4)
}

/// A datagram of `msgs`, cut at `cut` (a fraction of its length) if given.
pub(crate) fn datagram(msgs: &[Msg], cut: Option<prop::sample::Index>) -> Vec<u8> {
    let mut buf = Vec::new();
    for m in msgs {
        m.encode(&mut buf);
    }
    if let Some(c) = cut {
        buf.truncate(c.index(buf.len() + 1));
    }
    buf
}

/// Runs a datagram through what the socket does with a reply.
fn consume(buf: &[u8], seq: u32) {
    let Ok(replies) = split(buf, seq, "fuzz") else {
        return;
    };
    for r in replies {
        let Reply::Message(m) = r else { continue };
        let flags = m.header.flags;
        match m.payload {
            NetlinkPayload::Error(e) => {
                if let Some(code) = e.code {
                    let _ = kernel_error("fuzz", code.get(), flags, &e.header);
                }
            }
            NetlinkPayload::InnerMessage(inner) => match inner {
                RouteNetlinkMessage::NewLink(l) => {
                    let _ = crate::link::Link::from_message(l);
                }
                RouteNetlinkMessage::NewRoute(r) => {
                    let _ = crate::Route::from_message(r);
                }
                RouteNetlinkMessage::NewRule(r) => {
                    let _ = crate::Rule::from_message(r);
                }
                RouteNetlinkMessage::NewQueueDiscipline(q) => {
                    let _ = crate::tc::Qdisc::from_message(q);
                }
                RouteNetlinkMessage::NewTrafficFilter(f) => {
                    let _ = crate::tc::Filter::from_message(f);
                }
                _ => {}
            },
            _ => {}
        }
    }
}

/// NLMSG_ERROR, NLMSG_DONE, RTM_NEWLINK, NEWADDR, NEWROUTE, NEWNEIGH,
/// NEWRULE, NEWQDISC, NEWTFILTER.
const KINDS: [u16; 9] = [2, 3, 16, 20, 24, 28, 32, 36, 44];
/// Family header sizes: none, nlmsgerr (4 + a request header), ifaddrmsg,
/// rtmsg/fib_rule_hdr, ifinfomsg, tcmsg/ndmsg.
const HEADS: [usize; 7] = [0, 4, 20, 8, 12, 16, 20];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rtnetlink_arbitrary_datagrams(buf in prop::collection::vec(any::<u8>(), 0..1024)) {
        consume(&buf, 7);
        consume(&buf, u32::from_ne_bytes([buf.get(8).copied().unwrap_or(0), 0, 0, 0]));
    }

    #[test]
    fn rtnetlink_structured_replies(m in msgs(KINDS.to_vec(), HEADS.to_vec()),
                                    cut in prop::option::of(any::<prop::sample::Index>())) {
        consume(&datagram(&m, cut), 7);
    }

    #[test]
    fn rtnetlink_error_payloads(flags in any::<u16>(), payload in prop::collection::vec(any::<u8>(), 0..128),
                                code in any::<i32>()) {
        let _ = kernel_error("fuzz", code, flags, &payload);
    }
}

/// Deep nesting fills a datagram without a stack overflow or a hang.
#[test]
fn rtnetlink_deep_nesting() {
    for kind in KINDS {
        for attr in [1u16, 18, 2, 5, 16, 3] {
            let mut buf = Vec::new();
            Msg {
                kind,
                flags: 0,
                seq: 7,
                head: vec![0; 16],
                attrs: Vec::new(),
                bad_attr_len: None,
                bad_len: None,
            }
            .encode(&mut buf);
            // u16 attribute lengths bound one chain to 64 KiB.
            buf.extend_from_slice(&deep_nest(16_000, attr));
            let len = buf.len() as u32;
            buf[..4].copy_from_slice(&len.to_ne_bytes());
            consume(&buf, 7);
        }
    }
}
