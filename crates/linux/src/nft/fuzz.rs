//! Property/fuzz tests of the nf_tables reply parsers: datagram splitting,
//! `NLMSG_ERROR` decoding (extended acks with offsets), the attribute
//! parser and the table/chain/rule/set/element decoders, with arbitrary
//! bytes, truncated messages, bad attribute lengths and deep nesting.
//! The property: an error or a value, never a panic or a hang.

use super::batch::{
    describe_offset, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM,
};
use super::list;
use super::nla::parse;
use super::socket::{parse_error, split};
use crate::fuzz::{config, datagram, deep_nest, encode, msgs, nlas};
use proptest::prelude::*;

/// What the socket does with a reply: split, decode errors, decode objects.
fn consume(buf: &[u8]) {
    let Ok(replies) = split(buf, "fuzz") else {
        return;
    };
    for r in replies {
        if r.kind == netlink_packet_core::NLMSG_ERROR {
            let _ = parse_error(&r);
            continue;
        }
        if r.payload.len() < 4 {
            continue;
        }
        decode_object(r.payload[0], &r.payload[4..]);
    }
}

fn decode_object(fam: u8, attrs: &[u8]) {
    let _ = list::table(fam, attrs);
    let _ = list::chain(fam, attrs);
    let _ = list::rule(fam, attrs);
    let _ = list::set(fam, attrs);
    let _ = list::elements(attrs);
    for kind in [
        NFT_MSG_NEWRULE,
        NFT_MSG_NEWSETELEM,
        NFT_MSG_NEWCHAIN,
        NFT_MSG_NEWSET,
    ] {
        for off in [0, 4, 8, 20, attrs.len().saturating_sub(1), attrs.len() + 4] {
            let _ = describe_offset(kind, attrs, off);
        }
    }
}

/// NLMSG_ERROR, NLMSG_DONE, and NEWTABLE/NEWCHAIN/NEWRULE/NEWSET/NEWSETELEM
/// of the nftables subsystem.
const KINDS: [u16; 7] = [2, 3, 0x0a00, 0x0a03, 0x0a06, 0x0a09, 0x0a0c];
/// nfgenmsg, nlmsgerr with the request's header, none.
const HEADS: [usize; 4] = [4, 20, 0, 2];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn nft_arbitrary_datagrams(buf in prop::collection::vec(any::<u8>(), 0..1024)) {
        consume(&buf);
    }

    #[test]
    fn nft_structured_replies(m in msgs(KINDS.to_vec(), HEADS.to_vec()),
                              cut in prop::option::of(any::<prop::sample::Index>())) {
        consume(&datagram(&m, cut));
    }

    #[test]
    fn nft_attribute_trees(fam in any::<u8>(), attrs in nlas(),
                           bad in prop::option::weighted(0.3, (1usize..4, any::<u16>()))) {
        let mut buf = Vec::new();
        encode(&attrs, bad, &mut buf);
        decode_object(fam, &buf);
        let _ = parse(&buf);
    }
}

#[test]
fn nft_deep_nesting() {
    for kind in 0u16..8 {
        let buf = deep_nest(16_000, kind);
        for fam in [1u8, 2, 10] {
            decode_object(fam, &buf);
        }
    }
}
