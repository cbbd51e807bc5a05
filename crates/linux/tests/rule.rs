//! FIB rules and the all-multicast / txqueuelen link setters against the
//! real kernel, with `ip -j rule` and `ip -j link` as oracles. Root only;
//! everything happens in namespaces of the test's own, with addresses from
//! 198.18.176.0/20 and fd00:176::/48.

mod common;

use common::{ip_json, link_json, Guard};
use ferry_linux::{Family, LinkSpec, Rule, RULE_ACTION_TO_TABLE};
use ipnet::IpNet;
use serde_json::Value;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// `ip -j rule` entries of one family that have a source, as
/// `(priority, src/len, table)`.
fn oracle_rules(ns: &str, family: &str) -> Vec<(u64, String, String)> {
    let v = ip_json(ns, &[family, "rule", "show"]);
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("src").is_some() && r["src"] != "all")
        .map(|r| {
            let len = r.get("srclen").and_then(Value::as_u64);
            let src = match len {
                Some(l) => format!("{}/{l}", r["src"].as_str().unwrap()),
                None => r["src"].as_str().unwrap().to_string(),
            };
            (
                r["priority"].as_u64().unwrap(),
                src,
                r["table"].as_str().map(str::to_string).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn rules_add_list_delete_both_families() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("ru");
    let mut nl = ns.netlink().unwrap();

    // The default rules of a fresh namespace: local, main, default (v4) and
    // local, main (v6).
    let before = nl.rules(Family::All).unwrap();
    let tables: Vec<(bool, u32)> = before.iter().map(|r| (r.ipv6, r.table)).collect();
    assert_eq!(
        tables,
        vec![
            (false, 255),
            (false, 254),
            (false, 253),
            (true, 255),
            (true, 254)
        ]
    );
    assert!(before.iter().all(|r| r.src.is_none()));

    let r4 = Rule::from_src(net("198.18.176.5/32"), 100);
    let r6 = Rule::from_src(net("fd00:176::5/128"), 1000);
    nl.add_rule(&r4).unwrap();
    nl.add_rule(&r6).unwrap();
    // The kernel picks one below the first non-zero priority, as `ip rule add`.
    assert_eq!(
        oracle_rules(&name, "-4"),
        vec![(32765, "198.18.176.5".into(), "100".into())]
    );
    assert_eq!(
        oracle_rules(&name, "-6"),
        vec![(32765, "fd00:176::5".into(), "1000".into())]
    );
    let listed: Vec<Rule> = nl
        .rules(Family::All)
        .unwrap()
        .into_iter()
        .filter(|r| r.src.is_some())
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].src, Some(net("198.18.176.5/32")));
    assert_eq!(listed[0].table, 100);
    assert_eq!(listed[0].priority, Some(32765));
    assert_eq!(listed[0].action, RULE_ACTION_TO_TABLE);
    assert!(!listed[0].ipv6);
    assert_eq!(listed[1].src, Some(net("fd00:176::5/128")));
    assert_eq!(
        listed[1].table, 1000,
        "tables above 255 come from FRA_TABLE"
    );
    assert!(listed[1].ipv6);
    assert_eq!(nl.rules(Family::V6).unwrap().len(), 3);

    // An equal rule is refused.
    let dup = nl
        .add_rule(&r4.clone().priority(32765))
        .expect_err("duplicate rule");
    assert!(dup.is_exists(), "{dup}");

    // A second rule with an explicit priority and a subnet source.
    let wide = Rule::from_src(net("198.18.177.0/24"), 101).priority(200);
    nl.add_rule(&wide).unwrap();
    assert!(oracle_rules(&name, "-4").contains(&(200, "198.18.177.0/24".into(), "101".into())));

    // Deleting listed rules removes exactly them; a second delete is ENOENT.
    for r in &listed {
        nl.del_rule(r).unwrap();
    }
    let again = nl.del_rule(&listed[0]).expect_err("already deleted");
    assert!(again.is_not_found(), "{again}");
    assert_eq!(
        oracle_rules(&name, "-4"),
        vec![(200, "198.18.177.0/24".into(), "101".into())]
    );
    assert!(oracle_rules(&name, "-6").is_empty());
    nl.del_rule(&wide).unwrap();
    assert_eq!(nl.rules(Family::All).unwrap(), before);

    // A prefix of the wrong family is refused before reaching the kernel.
    let mut bad = Rule::from_src(net("198.18.176.5/32"), 100);
    bad.ipv6 = true;
    assert!(nl.add_rule(&bad).is_err());
}

#[test]
fn allmulti_and_txqlen_setters_read_back() {
    let mut g = Guard::new();
    let (name, ns) = g.netns("rl");
    let mut nl = ns.netlink().unwrap();
    nl.create_link(&LinkSpec::veth("rla", "rlb")).unwrap();
    let link = nl.link_by_name("rla").unwrap();
    assert!(!link.allmulti);
    assert_eq!(link.txqlen, Some(1000), "veth default txqueuelen");

    nl.set_allmulti(link.index, true).unwrap();
    nl.set_txqlen(link.index, 2500).unwrap();
    let l = nl.link_by_index(link.index).unwrap();
    assert!(l.allmulti);
    assert_eq!(l.txqlen, Some(2500));
    let j = link_json(&name, "rla");
    assert!(
        j["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "ALLMULTI"),
        "{j}"
    );
    assert_eq!(j["txqlen"], 2500);

    nl.set_allmulti(link.index, false).unwrap();
    nl.set_txqlen(link.index, 1000).unwrap();
    let l = nl.link_by_index(link.index).unwrap();
    assert!(!l.allmulti);
    assert_eq!(l.txqlen, Some(1000));
    let j = link_json(&name, "rla");
    assert!(!j["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "ALLMULTI"));
    // Promiscuous mode is a separate flag and stays off.
    assert!(!l.promisc);
}
