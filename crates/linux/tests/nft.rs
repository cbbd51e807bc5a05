//! nftables over netlink against the real kernel, with `nft` as the oracle.
//! Root only. Every test builds its rulesets in namespaces of its own (made
//! and removed by a guard, also on panic), so the host's ruleset is never
//! touched and tests run in parallel. Addresses: 198.18.160.0/20 and
//! fd00:160::/48.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{in_ns, require, unique, Guard};
use ferry_linux::nft::{
    self, Batch, Chain, ChainType, CtState, Element, ElementData, Family, Field, Hook, Policy,
    Rule, Set, Table, Type, Value, Verdict, TCP, UDP,
};
use ferry_linux::{AddrOptions, LinkSpec, Netns};
use ipnet::IpNet;
use serde_json::Value as Json;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A namespace of its own with an nft socket inside it.
fn setup(prefix: &str) -> (Guard, String, Netns, nft::Socket) {
    require("nft", "nftables");
    let mut g = Guard::new();
    let (name, ns) = g.netns(prefix);
    let sock = nft::Socket::in_netns(&ns).expect("open nft socket in netns");
    (g, name, ns, sock)
}

/// `nft list ARGS` inside the namespace.
fn nft_list(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["nft", "list"];
    all.extend_from_slice(args);
    in_ns(ns, &all)
}

/// `nft -j list ruleset` inside the namespace, as the array of objects.
fn ruleset_json(ns: &str) -> Vec<Json> {
    let out = in_ns(ns, &["nft", "-j", "list", "ruleset"]);
    let v: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("parse {out:?}: {e}"));
    v["nftables"].as_array().cloned().unwrap_or_default()
}

/// Objects of one kind (`table`, `chain`, `rule`, `set`, `map`) in the
/// ruleset.
fn objects(ns: &str, kind: &str) -> Vec<Json> {
    ruleset_json(ns)
        .into_iter()
        .filter_map(|o| o.get(kind).cloned())
        .collect()
}

/// The table every test uses: a small version of what Ferry builds.
fn representative(t: &Table) -> Batch {
    let mut b = Batch::new();
    b.add_table(t)
        .add_chain(
            &Chain::base(t, "forward", ChainType::Filter, Hook::Forward, 0).policy(Policy::Accept),
        )
        .add_chain(&Chain::regular(t, "ctr-1"))
        .add_chain(&Chain::base(
            t,
            "prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            -100,
        ))
        .add_chain(&Chain::base(
            t,
            "postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            100,
        ))
        .add_set(&Set::new(
            t,
            "published",
            &[Type::Ipv4Addr, Type::InetProto, Type::InetService],
        ))
        .add_set(&Set::new(t, "containers", &[Type::Ipv4Addr]).verdict_map())
        .add_set(&Set::new(t, "subnets", &[Type::Ipv4Addr]).interval())
        .add_rule(
            &Rule::new(t, "forward")
                .ct_state(CtState::ESTABLISHED | CtState::RELATED)
                .accept()
                .comment("ferry: established"),
        )
        .add_rule(
            &Rule::new(t, "forward")
                .vmap(&[Field::IpSaddr], "containers")
                .comment("ferry: per-container"),
        )
        .add_rule(
            &Rule::new(t, "forward")
                .lookup(
                    &[Field::IpDaddr, Field::L4Proto, Field::ThDport],
                    "published",
                )
                .counter()
                .accept(),
        )
        .add_rule(
            &Rule::new(t, "forward")
                .iifname("fbr0")
                .saddr(net("198.18.160.0/24"))
                .not_lookup(&[Field::IpDaddr], "subnets")
                .jump("ctr-1"),
        )
        .add_rule(&Rule::new(t, "forward").daddr(net("fd00:160::/64")).drop())
        .add_rule(&Rule::new(t, "ctr-1").dport(UDP, 53).accept())
        .add_rule(&Rule::new(t, "ctr-1").ret())
        .add_rule(
            &Rule::new(t, "prerouting")
                .daddr(net("198.18.160.1/32"))
                .dport(TCP, 8080)
                .dnat(IpAddr::V4(v4("198.18.160.2")), Some(80))
                .comment("ferry: port 8080"),
        )
        .add_rule(
            &Rule::new(t, "postrouting")
                .saddr(net("198.18.160.0/24"))
                .oifname("eth0")
                .masquerade(),
        )
        .add_elements(
            t,
            "containers",
            &[
                Element::new(Value::Ipv4(v4("198.18.160.2")))
                    .verdict(Verdict::Jump("ctr-1".into())),
            ],
        )
        .add_elements(
            t,
            "published",
            &[Element::new([
                Value::Ipv4(v4("198.18.160.2")),
                Value::Proto(TCP),
                Value::Port(80),
            ])],
        )
        .add_elements(t, "subnets", &[Element::prefix(net("198.18.160.0/24"))]);
    b
}

#[test]
fn table_chains_rules_render_like_the_golden_file() {
    let (_g, ns, _h, mut sock) = setup("nf");
    let t = Table::new(Family::Inet, "ferry");
    sock.commit(&representative(&t)).expect("commit");
    let got = nft_list(&ns, &["table", "inet", "ferry"]);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/nft_inet_ferry.nft"
    );
    if std::env::var_os("FERRY_BLESS").is_some() {
        std::fs::write(path, &got).unwrap();
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        got, want,
        "nft list differs from {path} (FERRY_BLESS=1 rewrites it)"
    );
}

/// A structure of flushed-and-refilled chains, as the drivers write it.
fn owned_structure(t: &Table, mark: u32) -> Batch {
    let mut b = Batch::new();
    b.add_table(t)
        .add_set(&Set::new(t, "ctr4", &[Type::Ipv4Addr]))
        .add_chain(&Chain::regular(t, "admin"))
        .add_chain(&Chain::base(
            t,
            "forward",
            ChainType::Filter,
            Hook::Forward,
            -10,
        ))
        .flush_chain(t, "forward")
        .add_rule(&Rule::new(t, "forward").jump("admin"))
        .add_rule(
            &Rule::new(t, "forward")
                .lookup(&[Field::IpDaddr], "ctr4")
                .set_mark_bits(mark)
                .accept(),
        );
    b
}

/// `nft CMD` inside the namespace (words split on spaces).
fn nft_do(ns: &str, cmd: &str) {
    let mut all = vec!["nft"];
    all.extend(cmd.split(' '));
    in_ns(ns, &all);
}

/// `holds` says yes only to the exact structure: a missing, extra or
/// changed rule, a missing set or chain, or another hook means rebuild;
/// rules in chains the batch does not flush (the admin chain) do not count.
#[test]
fn holds_only_the_exact_structure() {
    let (_g, ns, _h, mut sock) = setup("nh");
    let t = Table::new(Family::Inet, "ferry-holds");
    let s = owned_structure(&t, 0x200000);
    assert!(!sock.holds(&s).unwrap(), "nothing built yet");
    sock.commit(&s).unwrap();
    assert!(sock.holds(&s).unwrap());
    // Another version of a rule (another constant): rebuild.
    assert!(!sock.holds(&owned_structure(&t, 0x400000)).unwrap());
    // An operator's rule in the admin chain is theirs.
    nft_do(&ns, "add rule inet ferry-holds admin accept");
    assert!(sock.holds(&s).unwrap());
    // An extra rule in an owned chain, then a missing one.
    nft_do(&ns, "add rule inet ferry-holds forward accept");
    assert!(!sock.holds(&s).unwrap());
    sock.commit(&s).unwrap();
    assert!(sock.holds(&s).unwrap(), "the rebuild leaves one copy");
    let h = sock
        .rules(&t)
        .unwrap()
        .into_iter()
        .find(|r| r.chain == "forward")
        .unwrap()
        .handle;
    nft_do(
        &ns,
        &format!("delete rule inet ferry-holds forward handle {h}"),
    );
    assert!(!sock.holds(&s).unwrap());
    sock.commit(&s).unwrap();
    // A missing set (with the rules using it), a missing table.
    nft_do(&ns, "flush chain inet ferry-holds forward");
    nft_do(&ns, "delete set inet ferry-holds ctr4");
    assert!(!sock.holds(&s).unwrap());
    sock.commit(&s).unwrap();
    assert!(sock.holds(&s).unwrap());
    // The same chain on another hook priority.
    let mut other = Batch::new();
    other.add_table(&t).add_chain(&Chain::base(
        &t,
        "forward",
        ChainType::Filter,
        Hook::Forward,
        0,
    ));
    assert!(!sock.holds(&other).unwrap());
    sock.delete_table_if_exists(&t).unwrap();
    assert!(!sock.holds(&s).unwrap());
    // A batch that deletes is never "held".
    let mut del = Batch::new();
    del.delete_table_if_exists(&t);
    assert!(!sock.holds(&del).unwrap());
}

/// Number of rules in the namespace's ruleset, by `nft -j`.
fn rule_count(ns: &str) -> usize {
    objects(ns, "rule").len()
}

/// Elements of a set or map, by `nft -j`.
fn elem_count(ns: &str, name: &str) -> usize {
    ruleset_json(ns)
        .into_iter()
        .filter_map(|o| o.get("set").or_else(|| o.get("map")).cloned())
        .find(|s| s["name"] == name)
        .map(|s| s["elem"].as_array().map_or(0, |a| a.len()))
        .unwrap_or_else(|| panic!("set {name} not in ruleset"))
}

#[test]
fn set_and_verdict_map_elements_grow_while_rules_stay() {
    let (_g, ns, _h, mut sock) = setup("ns");
    let t = Table::new(Family::Ip, "ferry");
    let key = [Type::Ipv4Addr, Type::InetProto, Type::InetService];
    sock.commit(
        Batch::new()
            .add_table(&t)
            .add_chain(&Chain::base(
                &t,
                "forward",
                ChainType::Filter,
                Hook::Forward,
                0,
            ))
            .add_chain(&Chain::regular(&t, "c-a"))
            .add_set(&Set::new(&t, "published", &key))
            .add_set(&Set::new(&t, "containers", &[Type::Ipv4Addr]).verdict_map())
            .add_rule(&Rule::new(&t, "forward").vmap(&[Field::IpSaddr], "containers"))
            .add_rule(
                &Rule::new(&t, "forward")
                    .lookup(
                        &[Field::IpDaddr, Field::L4Proto, Field::ThDport],
                        "published",
                    )
                    .accept(),
            ),
    )
    .unwrap();
    assert_eq!(rule_count(&ns), 2);

    let addr = |i: u8| Value::Ipv4(Ipv4Addr::new(198, 18, 160, 10 + i));
    for i in 0..20u8 {
        // One batch per "container", as a plugin's ADD would do.
        sock.commit(
            Batch::new()
                .add_elements(
                    &t,
                    "containers",
                    &[Element::new(addr(i)).verdict(Verdict::Jump("c-a".into()))],
                )
                .add_elements(
                    &t,
                    "published",
                    &[Element::new([
                        addr(i),
                        Value::Proto(TCP),
                        Value::Port(8000 + i as u16),
                    ])],
                ),
        )
        .unwrap();
        assert_eq!(rule_count(&ns), 2, "rules must not grow with elements");
    }
    assert_eq!(elem_count(&ns, "containers"), 20);
    assert_eq!(elem_count(&ns, "published"), 20);

    // Our own dump agrees, values included.
    let els = sock.elements(&t, "containers").unwrap();
    assert_eq!(els.len(), 20);
    assert!(els.iter().any(|e| e.key == vec![198, 18, 160, 10]
        && e.data == Some(ElementData::Verdict(Verdict::Jump("c-a".into())))));
    let pub_els = sock.elements(&t, "published").unwrap();
    assert!(pub_els
        .iter()
        .any(|e| e.key == vec![198, 18, 160, 11, 6, 0, 0, 0, 0x1f, 0x41, 0, 0]));
    let listed = nft_list(&ns, &["set", "ip", "ferry", "published"]);
    assert!(listed.contains("198.18.160.29 . tcp . 8019"), "{listed}");

    // Delete five; deleting a missing one fails, destroying it does not.
    let gone: Vec<Element> = (0..5).map(|i| Element::new(addr(i))).collect();
    sock.commit(Batch::new().delete_elements(&t, "containers", &gone))
        .unwrap();
    assert_eq!(elem_count(&ns, "containers"), 15);
    let err = sock
        .commit(Batch::new().delete_elements(&t, "containers", &gone[..1]))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    sock.commit(Batch::new().destroy_elements(&t, "containers", &gone))
        .unwrap();
    assert_eq!(elem_count(&ns, "containers"), 15);
    sock.commit(Batch::new().flush_set(&t, "published"))
        .unwrap();
    assert_eq!(elem_count(&ns, "published"), 0);
    assert_eq!(rule_count(&ns), 2);
}

#[test]
fn interval_sets_hold_prefixes_and_ranges() {
    let (_g, ns, _h, mut sock) = setup("ni");
    let t = Table::new(Family::Inet, "ferry");
    sock.commit(
        Batch::new()
            .add_table(&t)
            .add_set(&Set::new(&t, "nets4", &[Type::Ipv4Addr]).interval())
            .add_set(&Set::new(&t, "nets6", &[Type::Ipv6Addr]).interval())
            .add_set(&Set::new(&t, "pairs", &[Type::Ipv4Addr, Type::InetService]).interval())
            .add_elements(
                &t,
                "nets4",
                &[
                    Element::prefix(net("198.18.161.0/24")),
                    Element::prefix(net("198.18.162.0/23")),
                ],
            )
            .add_elements(&t, "nets6", &[Element::prefix(net("fd00:160:1::/64"))])
            .add_elements(
                &t,
                "pairs",
                &[Element::range(
                    [Value::Ipv4(v4("198.18.160.0")), Value::Port(1000)],
                    [Value::Ipv4(v4("198.18.160.255")), Value::Port(2000)],
                )],
            ),
    )
    .unwrap();
    let out = nft_list(&ns, &["table", "inet", "ferry"]);
    for want in [
        "198.18.161.0/24, 198.18.162.0/23",
        "fd00:160:1::/64",
        "198.18.160.0/24 . 1000-2000",
    ] {
        assert!(out.contains(want), "missing {want} in\n{out}");
    }
    sock.commit(Batch::new().delete_elements(
        &t,
        "nets4",
        &[Element::prefix(net("198.18.161.0/24"))],
    ))
    .unwrap();
    let out = nft_list(&ns, &["set", "inet", "ferry", "nets4"]);
    assert!(out.contains("elements = { 198.18.162.0/23 }"), "{out}");
}

/// Two namespaces joined by a veth: `srv` (198.18.163.1) and `cli`
/// (198.18.163.2).
fn two_hosts(g: &mut Guard) -> (String, Netns, Netns) {
    let (srv_name, srv) = g.netns("nd");
    let (_, cli) = g.netns("nc");
    let mut s = srv.netlink().unwrap();
    let (vs, vc) = (unique("vs"), unique("vc"));
    s.create_link(&LinkSpec::veth(&vs, &vc).peer_netns(&cli))
        .unwrap();
    let l = s.link_by_name(&vs).unwrap();
    s.add_address(l.index, net("198.18.163.1/24"), AddrOptions::default())
        .unwrap();
    s.set_up(l.index).unwrap();
    let mut c = cli.netlink().unwrap();
    let l = c.link_by_name(&vc).unwrap();
    c.add_address(l.index, net("198.18.163.2/24"), AddrOptions::default())
        .unwrap();
    c.set_up(l.index).unwrap();
    (srv_name, srv, cli)
}

/// Connects from `cli` to `to`, sends "ping" and returns the answer.
fn exchange(cli: &Netns, to: SocketAddr) -> std::io::Result<String> {
    let mut stream = cli
        .run(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))
        .unwrap()?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"ping")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn dnat_port_forward_reaches_the_listener() {
    require("nft", "nftables");
    let mut g = Guard::new();
    let (srv_name, srv, cli) = two_hosts(&mut g);
    let listener = srv
        .run(|| TcpListener::bind("198.18.163.1:9000"))
        .unwrap()
        .expect("listen in the server namespace");
    let server = std::thread::spawn(move || {
        // Serves one connection that arrives through the DNAT rule.
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"ping" {
                let _ = s.write_all(b"pong");
            }
        }
    });
    let published: SocketAddr = "198.18.163.1:8080".parse().unwrap();
    assert!(
        exchange(&cli, published).is_err(),
        "port 8080 must be closed before the rule"
    );

    let mut sock = nft::Socket::in_netns(&srv).unwrap();
    let t = Table::new(Family::Ip, "ferry");
    sock.commit(
        Batch::new()
            .add_table(&t)
            .add_chain(&Chain::base(
                &t,
                "prerouting",
                ChainType::Nat,
                Hook::Prerouting,
                -100,
            ))
            .add_rule(
                &Rule::new(&t, "prerouting")
                    .daddr(net("198.18.163.1/32"))
                    .dport(TCP, 8080)
                    .counter()
                    .dnat(IpAddr::V4(v4("198.18.163.1")), Some(9000)),
            ),
    )
    .unwrap();
    assert_eq!(exchange(&cli, published).unwrap(), "pong");
    server.join().unwrap();
    let out = nft_list(&srv_name, &["table", "ip", "ferry"]);
    assert!(out.contains("tcp dport 8080 counter packets 1"), "{out}");
}

#[test]
fn masquerade_and_snat_render_in_nft_list() {
    let (_g, ns, _h, mut sock) = setup("nm");
    let t = Table::new(Family::Ip, "ferry");
    sock.commit(
        Batch::new()
            .add_table(&t)
            .add_chain(&Chain::base(
                &t,
                "postrouting",
                ChainType::Nat,
                Hook::Postrouting,
                100,
            ))
            .add_rule(
                &Rule::new(&t, "postrouting")
                    .saddr(net("198.18.164.0/24"))
                    .neq(Field::IpDaddr, Value::Ipv4(v4("198.18.164.1")))
                    .masquerade(),
            )
            .add_rule(
                &Rule::new(&t, "postrouting")
                    .saddr(net("198.18.165.0/24"))
                    .snat(IpAddr::V4(v4("198.18.164.1")), None),
            ),
    )
    .unwrap();
    let t6 = Table::new(Family::Inet, "ferry6");
    sock.commit(
        Batch::new()
            .add_table(&t6)
            .add_chain(&Chain::base(
                &t6,
                "post",
                ChainType::Nat,
                Hook::Postrouting,
                100,
            ))
            .add_rule(
                &Rule::new(&t6, "post")
                    .saddr(net("fd00:160:5::/64"))
                    .snat("fd00:160::1".parse().unwrap(), None),
            )
            // Inserted rules go first.
            .insert_rule(&Rule::new(&t6, "post").oifname("lo").ret()),
    )
    .unwrap();
    let out = nft_list(&ns, &["chain", "inet", "ferry6", "post"]);
    let first = out.find("oifname \"lo\" return").expect("inserted rule");
    let second = out
        .find("ip6 saddr fd00:160:5::/64 snat ip6 to fd00:160::1")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(first < second, "{out}");

    let out = nft_list(&ns, &["chain", "ip", "ferry", "postrouting"]);
    assert!(
        out.contains("ip saddr 198.18.164.0/24 ip daddr != 198.18.164.1 masquerade"),
        "{out}"
    );
    assert!(
        out.contains("ip saddr 198.18.165.0/24 snat to 198.18.164.1"),
        "{out}"
    );
}

#[test]
fn failing_batch_applies_nothing_and_names_the_message() {
    let (_g, ns, _h, mut sock) = setup("nb");
    let t = Table::new(Family::Inet, "ferry-a");
    let err = sock
        .commit(
            Batch::new()
                .add_table(&t)
                .add_chain(&Chain::regular(&t, "c"))
                .add_rule(&Rule::new(&t, "c").jump("missing")),
        )
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    let text = err.to_string();
    assert!(text.contains("message 3 of 3"), "{text}");
    assert!(text.contains("add rule inet ferry-a c"), "{text}");
    assert!(text.contains("nothing was applied"), "{text}");
    assert!(
        text.contains("the kernel points at expression 1 (immediate)"),
        "{text}"
    );
    assert!(objects(&ns, "table").is_empty(), "the table must not exist");

    // Another's table is refused before anything is sent.
    let err = sock
        .commit(Batch::new().add_table(&Table::new(Family::Inet, "filter")))
        .unwrap_err();
    assert!(err.to_string().contains("not Ferry's"), "{err}");
    assert!(objects(&ns, "table").is_empty());

    // An invalid rule (a value of the wrong size) is caught before sending.
    let err = sock
        .commit(
            Batch::new()
                .add_table(&t)
                .add_rule(&Rule::new(&t, "c").eq(Field::ThDport, Value::Ipv4(v4("198.18.160.1")))),
        )
        .unwrap_err();
    assert!(
        matches!(err, ferry_linux::Error::InvalidArgument(_)),
        "{err}"
    );
}

#[test]
fn deleting_a_missing_table_is_not_an_error() {
    let (_g, ns, _h, mut sock) = setup("nx");
    let t = Table::new(Family::Inet, "ferry-gone");
    sock.delete_table_if_exists(&t).unwrap();
    let err = sock.commit(Batch::new().delete_table(&t)).unwrap_err();
    assert!(err.is_not_found(), "{err}");

    sock.commit(&representative(&t)).unwrap();
    assert!(sock.table_exists(&t).unwrap());
    // Replace the whole table atomically: drop it if there, build anew.
    let mut b = Batch::new();
    b.delete_table_if_exists(&t)
        .add_table(&t)
        .add_chain(&Chain::regular(&t, "only"));
    sock.commit(&b).unwrap();
    let chains: Vec<String> = sock
        .chains(&t)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(chains, vec!["only".to_string()]);
    sock.delete_table_if_exists(&t).unwrap();
    assert!(!sock.table_exists(&t).unwrap());
    assert!(objects(&ns, "table").is_empty());
}

#[test]
fn listing_finds_handles_and_comments() {
    let (_g, ns, _h, mut sock) = setup("nl");
    let t = Table::new(Family::Inet, "ferry");
    let t6 = Table::new(Family::Ip6, "ferry6");
    sock.commit(&representative(&t)).unwrap();
    sock.commit(
        Batch::new()
            .add_table(&t6)
            .add_chain(
                &Chain::base(&t6, "input", ChainType::Filter, Hook::Input, 10).policy(Policy::Drop),
            )
            .add_rule(&Rule::new(&t6, "input").daddr(net("fd00:160::/64")).accept()),
    )
    .unwrap();

    let tables = sock.tables().unwrap();
    assert!(tables
        .iter()
        .any(|x| x.family == Family::Inet && x.name == "ferry"));
    assert!(tables
        .iter()
        .any(|x| x.family == Family::Ip6 && x.name == "ferry6"));

    let chains = sock.chains(&t6).unwrap();
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].hook, Some((Hook::Input, 10)));
    assert_eq!(chains[0].policy, Some(Policy::Drop));
    assert_eq!(chains[0].chain_type.as_deref(), Some("filter"));
    let out = nft_list(&ns, &["table", "ip6", "ferry6"]);
    assert!(out.contains("ip6 daddr fd00:160::/64 accept"), "{out}");

    let sets = sock.sets(&t).unwrap();
    let mut names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["containers", "published", "subnets"]);

    let rules = sock.rules(&t).unwrap();
    assert_eq!(rules.len(), 9);
    let dnat = rules
        .iter()
        .find(|r| r.comment.as_deref() == Some("ferry: port 8080"))
        .expect("the commented DNAT rule");
    assert_eq!(dnat.chain, "prerouting");
    assert!(dnat.exprs.iter().any(|e| e == "nat"), "{:?}", dnat.exprs);
    sock.commit(Batch::new().delete_rule(&t, "prerouting", dnat.handle))
        .unwrap();
    let out = nft_list(&ns, &["table", "inet", "ferry"]);
    assert!(!out.contains("port 8080"), "{out}");
    assert_eq!(sock.rules(&t).unwrap().len(), 8);

    // Flush a chain, then the table; then drop a chain (once no map
    // element jumps to it: the kernel says EBUSY before) and a set.
    sock.commit(Batch::new().flush_chain(&t, "ctr-1")).unwrap();
    assert_eq!(sock.rules(&t).unwrap().len(), 6);
    sock.commit(
        Batch::new()
            .flush_table(&t)
            .flush_set(&t, "containers")
            .delete_chain(&t, "ctr-1")
            .delete_set(&t, "subnets"),
    )
    .unwrap();
    assert!(sock.rules(&t).unwrap().is_empty());
    assert_eq!(sock.chains(&t).unwrap().len(), 3);
    assert_eq!(sock.sets(&t).unwrap().len(), 2);
}

/// Accepts one connection on `listener`, answers "ping" with `reply`.
fn serve_once(listener: TcpListener, reply: &'static [u8]) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"ping" {
                let _ = s.write_all(reply);
            }
        }
    })
}

#[test]
fn dnat_map_forwards_each_published_port() {
    require("nft", "nftables");
    let mut g = Guard::new();
    let (srv_name, srv, cli) = two_hosts(&mut g);
    let listen = |port: u16| {
        srv.run(move || TcpListener::bind(("198.18.163.1", port)))
            .unwrap()
            .expect("listen in the server namespace")
    };
    let (l1, l2) = (listen(9001), listen(9002));
    let s1 = serve_once(l1, b"one");
    let s2 = serve_once(l2, b"two");

    let mut sock = nft::Socket::in_netns(&srv).unwrap();
    let t = Table::new(Family::Inet, "ferry");
    let key = [Field::IpDaddr, Field::L4Proto, Field::ThDport];
    let host = Value::Ipv4(v4("198.18.163.1"));
    let entry = |published: u16, target: u16| {
        Element::new([host.clone(), Value::Proto(TCP), Value::Port(published)])
            .data([host.clone(), Value::Port(target)])
    };
    sock.commit(
        Batch::new()
            .add_table(&t)
            .add_chain(&Chain::base(
                &t,
                "prerouting",
                ChainType::Nat,
                Hook::Prerouting,
                -100,
            ))
            .add_set(
                &Set::new(
                    &t,
                    "ports",
                    &[Type::Ipv4Addr, Type::InetProto, Type::InetService],
                )
                .map(&[Type::Ipv4Addr, Type::InetService]),
            )
            .add_rule(&Rule::new(&t, "prerouting").dnat_map(
                &key,
                "ports",
                &[Type::Ipv4Addr, Type::InetService],
            )),
    )
    .unwrap();
    // Each published port is one element; the rule stays the same.
    for (p, to) in [(8081, 9001), (8082, 9002)] {
        sock.commit(Batch::new().add_elements(&t, "ports", &[entry(p, to)]))
            .unwrap();
    }
    assert_eq!(rule_count(&srv_name), 1);
    let out = nft_list(&srv_name, &["table", "inet", "ferry"]);
    assert!(
        out.contains("dnat ip to ip daddr . meta l4proto . th dport map @ports"),
        "{out}"
    );
    assert!(
        out.contains("198.18.163.1 . tcp . 8081 : 198.18.163.1 . 9001"),
        "{out}"
    );

    let at = |port: u16| SocketAddr::from((v4("198.18.163.1"), port));
    assert_eq!(exchange(&cli, at(8081)).unwrap(), "one");
    assert_eq!(exchange(&cli, at(8082)).unwrap(), "two");
    s1.join().unwrap();
    s2.join().unwrap();

    // Unpublished again: the port is closed.
    sock.commit(Batch::new().delete_elements(&t, "ports", &[entry(8081, 9001)]))
        .unwrap();
    assert!(exchange(&cli, at(8081)).is_err());
}

#[test]
fn large_batches_and_dumps() {
    let (_g, ns, _h, mut sock) = setup("nz");
    let t = Table::new(Family::Ip, "ferry");
    let mut b = Batch::new();
    b.add_table(&t)
        .add_chain(&Chain::regular(&t, "many"))
        .add_set(&Set::new(&t, "big", &[Type::Ipv4Addr, Type::InetService]));
    for i in 0..300u16 {
        b.add_rule(
            &Rule::new(&t, "many")
                .dport(TCP, 10000 + i)
                .accept()
                .comment(format!("ferry: rule {i}")),
        );
    }
    let elements: Vec<Element> = (0..3000u32)
        .map(|i| {
            let a = Ipv4Addr::from(u32::from(v4("198.18.168.0")) + i);
            Element::new([Value::Ipv4(a), Value::Port(80)])
        })
        .collect();
    b.add_elements(&t, "big", &elements);
    // 3 + 300 rules + 3000 elements in 256-element messages.
    assert_eq!(b.len(), 3 + 300 + 12);
    sock.commit(&b).unwrap();
    assert_eq!(rule_count(&ns), 300);
    let rules = sock.rules(&t).unwrap();
    assert_eq!(rules.len(), 300);
    assert_eq!(rules[299].comment.as_deref(), Some("ferry: rule 299"));
    assert_eq!(sock.elements(&t, "big").unwrap().len(), 3000);
    assert_eq!(elem_count(&ns, "big"), 3000);
}
