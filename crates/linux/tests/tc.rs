//! Traffic control against the real kernel, with `tc -j` as the oracle:
//! tbf and ingress qdiscs, a u32 match-all filter redirecting to an IFB, and
//! IFB devices. Root only; everything happens in namespaces the tests create,
//! with addresses from 198.18.207.0/24.

mod common;

use common::{in_ns, ip_json, ping, require, run, Guard};
use ferry_linux::tc::{self, Mode, QdiscSpec, Tbf};
use ferry_linux::{AddrOptions, LinkSpec, Netlink, Netns};
use serde_json::Value;

/// `tc -n NS -j ARGS` parsed as JSON.
fn tc_json(ns: &str, args: &[&str]) -> Value {
    require("tc", "iproute2");
    let mut all = vec!["tc", "-n", ns, "-j"];
    all.extend_from_slice(args);
    let out = run(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("parse {all:?} output {out:?}: {e}"))
}

fn qdiscs(ns: &str, dev: &str) -> Vec<Value> {
    tc_json(ns, &["qdisc", "show", "dev", dev])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn qdisc_of_kind(ns: &str, dev: &str, kind: &str) -> Option<Value> {
    qdiscs(ns, dev).into_iter().find(|q| q["kind"] == kind)
}

/// Two namespaces joined by a veth (`a0` in the first, `b0` in the second),
/// up, with 198.18.207.HOST/30 and HOST+1.
fn pair(g: &mut Guard, host: u8) -> (String, Netns, String, Netns) {
    let (an, a) = g.netns("tca");
    let (bn, b) = g.netns("tcb");
    let mut na = a.netlink().unwrap();
    na.create_link(&LinkSpec::veth("a0", "b0").peer_netns(&b))
        .unwrap();
    let a0 = na.link_by_name("a0").unwrap().index;
    na.add_address(
        a0,
        format!("198.18.207.{}/30", host).parse().unwrap(),
        AddrOptions::default(),
    )
    .unwrap();
    na.set_up(a0).unwrap();
    let mut nb = b.netlink().unwrap();
    let b0 = nb.link_by_name("b0").unwrap().index;
    nb.add_address(
        b0,
        format!("198.18.207.{}/30", host + 1).parse().unwrap(),
        AddrOptions::default(),
    )
    .unwrap();
    nb.set_up(b0).unwrap();
    (an, a, bn, b)
}

#[test]
fn tbf_add_replace_list_delete_matches_tc() {
    let mut g = Guard::new();
    let (an, a, _bn, _b) = pair(&mut g, 1);
    let mut nl = a.netlink().unwrap();
    let a0 = nl.link_by_name("a0").unwrap().index;

    // Before: the kernel's default (noqueue for a veth), handle 0.
    let before = nl.root_qdisc(a0).unwrap();
    assert!(before.as_ref().is_none_or(|q| q.is_default()), "{before:?}");

    // 8 Mbit/s, 1 Mbit burst, 25 ms: tc shows rate 1000000 (bytes), burst
    // 125000, lat 25 ms.
    let t = Tbf::from_rate_burst(1_000_000, 125_000, 25_000).unwrap();
    nl.add_qdisc(a0, &QdiscSpec::tbf_root(t), Mode::Create)
        .unwrap();
    let q = qdisc_of_kind(&an, "a0", "tbf").expect("no tbf in tc's view");
    assert_eq!(q["handle"], "1:");
    assert_eq!(q["root"], true);
    assert_eq!(q["options"]["rate"], 1_000_000);
    assert_eq!(q["options"]["burst"], 125_000);
    assert_eq!(q["options"]["lat"], 25_000);

    // Our listing agrees, with the exact parameters sent.
    let root = nl.root_qdisc(a0).unwrap().expect("root qdisc");
    assert_eq!(root.kind, "tbf");
    assert_eq!(root.handle, tc::handle(1, 0));
    assert_eq!(root.tbf, Some(t));

    // A second add is EEXIST, with the errno.
    let err = nl
        .add_qdisc(a0, &QdiscSpec::tbf_root(t), Mode::Create)
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(err.errno(), Some(libc::EEXIST));

    // Replace changes the rate in place; a rate over 4 GB/s goes in RATE64.
    let fast = Tbf::from_rate_burst(5_000_000_000, 50_000_000, 25_000).unwrap();
    nl.add_qdisc(a0, &QdiscSpec::tbf_root(fast), Mode::Replace)
        .unwrap();
    let q = qdisc_of_kind(&an, "a0", "tbf").unwrap();
    assert_eq!(q["options"]["rate"], 5_000_000_000u64);
    assert_eq!(nl.root_qdisc(a0).unwrap().unwrap().tbf, Some(fast));
    assert_eq!(
        tc_json(&an, &["qdisc", "show", "dev", "a0"])
            .as_array()
            .unwrap()
            .len(),
        1,
        "replace must not stack qdiscs"
    );

    // Delete: back to the default; a second delete is refused with an errno.
    nl.delete_qdisc(a0, tc::HANDLE_ROOT, tc::handle(1, 0))
        .unwrap();
    assert!(qdisc_of_kind(&an, "a0", "tbf").is_none());
    let err = nl
        .delete_qdisc(a0, tc::HANDLE_ROOT, tc::handle(1, 0))
        .unwrap_err();
    assert!(err.errno().is_some(), "{err}");

    // Bad parameters: the kernel refuses a zero-byte bucket with EINVAL.
    let bad = Tbf {
        rate: 1_000_000,
        buffer: 0,
        limit: 1000,
    };
    let err = nl
        .add_qdisc(a0, &QdiscSpec::tbf_root(bad), Mode::Create)
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
    assert!(qdisc_of_kind(&an, "a0", "tbf").is_none());
}

#[test]
fn ingress_redirect_to_ifb_matches_tc_and_carries_traffic() {
    let mut g = Guard::new();
    let (an, a, _bn, _b) = pair(&mut g, 5);
    let mut nl = a.netlink().unwrap();
    let a0 = nl.link_by_name("a0").unwrap();

    let ifb = nl.create_ifb("ifbt0", a0.mtu, Some(1000)).unwrap();
    let link = ip_json(&an, &["-d", "link", "show", "dev", "ifbt0"]);
    assert_eq!(link[0]["linkinfo"]["info_kind"], "ifb");
    assert_eq!(link[0]["mtu"], 1500);
    assert_eq!(link[0]["txqlen"], 1000);
    assert!(link[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));
    assert_eq!(nl.txqlen(ifb).unwrap(), Some(1000));
    let err = nl.create_ifb("ifbt0", None, None).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
    assert!(nl.create_ifb("way-too-long-name0", None, None).is_err());

    // The shaping sits on the ifb; the veth's received traffic goes there.
    let t = Tbf::from_rate_burst(1_000_000, 125_000, 25_000).unwrap();
    nl.add_qdisc(ifb, &QdiscSpec::tbf_root(t), Mode::Create)
        .unwrap();
    nl.add_qdisc(a0.index, &QdiscSpec::ingress(), Mode::Create)
        .unwrap();
    let q = qdisc_of_kind(&an, "a0", "ingress").expect("no ingress qdisc");
    assert_eq!(q["handle"], "ffff:");
    assert_eq!(q["parent"], "ffff:fff1");
    assert!(nl
        .qdiscs(Some(a0.index))
        .unwrap()
        .iter()
        .any(|q| q.kind == "ingress" && q.parent == tc::HANDLE_INGRESS));

    nl.add_redirect_filter(a0.index, tc::INGRESS_QDISC, 1, tc::handle(1, 1), ifb)
        .unwrap();
    let filters = tc_json(&an, &["filter", "show", "dev", "a0", "ingress"]);
    let key = filters
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["options"]["fh"] == "800::800")
        .unwrap_or_else(|| panic!("no u32 key node: {filters}"))
        .clone();
    assert_eq!(key["kind"], "u32");
    assert_eq!(key["pref"], 1);
    assert_eq!(key["protocol"], "all");
    assert_eq!(key["options"]["flowid"], "1:1");
    assert_eq!(key["options"]["match"]["value"], "0");
    assert_eq!(key["options"]["match"]["mask"], "0");
    let acts = key["options"]["actions"].as_array().unwrap();
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0]["kind"], "mirred");
    assert_eq!(acts[0]["mirred_action"], "redirect");
    assert_eq!(acts[0]["direction"], "egress");
    assert_eq!(acts[0]["to_dev"], "ifbt0");
    assert_eq!(acts[0]["control_action"]["type"], "stolen");

    // Our listing: the key node carries the classid and the redirect.
    let ours = nl.filters(a0.index, tc::INGRESS_QDISC).unwrap();
    let node = ours
        .iter()
        .find(|f| f.redirects_to().is_some())
        .expect("no redirect in our listing");
    assert_eq!(node.redirects_to(), Some(ifb));
    assert_eq!(node.kind, "u32");
    assert_eq!(node.priority, 1);
    assert_eq!(node.protocol, tc::ETH_P_ALL);
    assert_eq!(node.classid, Some(tc::handle(1, 1)));
    // u32 handles are htid:hash:node (12, 8 and 12 bits): 800::800.
    assert_eq!(node.handle, 0x8000_0800);

    // Traffic still flows (the ifb hands packets back), through the tbf.
    assert!(ping(&an, "198.18.207.6"), "no traffic through the ifb");
    let stats = tc_json(&an, &["-s", "qdisc", "show", "dev", "ifbt0"]);
    let sent = stats[0]["packets"].as_u64().unwrap_or(0);
    assert!(sent > 0, "the ifb's tbf saw no packets: {stats}");

    // Delete the filters, then the ingress qdisc; tc sees neither.
    nl.delete_filters(a0.index, tc::INGRESS_QDISC, 1).unwrap();
    assert_eq!(
        tc_json(&an, &["filter", "show", "dev", "a0", "ingress"]),
        serde_json::json!([])
    );
    assert!(nl.filters(a0.index, tc::INGRESS_QDISC).unwrap().is_empty());
    nl.delete_qdisc(a0.index, tc::HANDLE_INGRESS, tc::INGRESS_QDISC)
        .unwrap();
    assert!(qdisc_of_kind(&an, "a0", "ingress").is_none());
    let err = nl
        .delete_qdisc(a0.index, tc::HANDLE_INGRESS, tc::INGRESS_QDISC)
        .unwrap_err();
    assert!(err.errno().is_some(), "{err}");
    nl.delete_link(ifb).unwrap();
    assert!(!common::succeeds(&[
        "ip", "-n", &an, "link", "show", "ifbt0"
    ]));
}

#[test]
fn listing_every_interface_and_foreign_qdiscs() {
    let mut g = Guard::new();
    let (an, a, _bn, _b) = pair(&mut g, 9);
    // A qdisc this crate cannot create (htb) shows up with its kind.
    in_ns(
        &an,
        &[
            "tc", "qdisc", "add", "dev", "a0", "root", "handle", "7:", "htb",
        ],
    );
    let mut nl: Netlink = a.netlink().unwrap();
    let a0 = nl.link_by_name("a0").unwrap().index;
    let all = nl.qdiscs(None).unwrap();
    let root = all
        .iter()
        .find(|q| q.ifindex == a0 && q.is_root())
        .expect("no root qdisc of a0 in the full listing");
    assert_eq!(root.kind, "htb");
    assert_eq!(root.handle, tc::handle(7, 0));
    assert!(!root.is_default());
    assert!(root.tbf.is_none());
    // Adding a tbf at the root over it: EEXIST, the htb stays.
    let t = Tbf::from_rate_burst(1_000_000, 125_000, 25_000).unwrap();
    let err = nl
        .add_qdisc(a0, &QdiscSpec::tbf_root(t), Mode::Create)
        .unwrap_err();
    assert!(err.errno().is_some(), "{err}");
    assert!(qdisc_of_kind(&an, "a0", "htb").is_some());
}
