//! Port mapping: publish container ports on the node, as the reference
//! `portmap` plugin does, in one Ferry-owned table whose rules never change.
//!
//! ```text
//! table inet ferry-portmap {
//!   map hostip4    { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//!   map hostports4 { type inet_proto . inet_service : ipv4_addr . inet_service }
//!   set masq4      { type ipv4_addr . ipv4_addr; flags interval }   # saddr . daddr
//!   (and hostip6, hostports6, masq6)
//!   chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump hostports }
//!   chain output      { type nat hook output priority dstnat; fib daddr type local jump hostports }
//!   chain hostports   { ip daddr . meta l4proto . th dport dnat ip to ... map @hostip4
//!                       meta nfproto ipv4 meta l4proto . th dport dnat ip to ... map @hostports4
//!                       (the same for ip6) }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!                       ct status dnat ip saddr . ip daddr @masq4 masquerade; (ip6) }
//! }
//! ```
//!
//! A container's mappings are map elements: `tcp . 8080 : 198.18.208.2 . 80`
//! (any local address) or `198.18.0.1 . tcp . 8080 : ...` (one host IP).
//! With `snat` (the default) it also gets `masq4` ranges `SUBNET . ADDR`
//! (hairpin: itself or a neighbour on its subnet reaching its published
//! port through the node) and `127.0.0.0/8 . ADDR` (the node's loopback,
//! with `route_localnet` on the host interface towards it); with `masqAll`
//! one range `0.0.0.0/0 . ADDR` instead. Only DNATed connections
//! (`ct status dnat`) are masqueraded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferry_linux::nft::{
    self, Batch, Chain, ChainType, Family, Field, Hook, Rule, Set, Table, Type, Value,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::conditions::{self, Cond, Profile};
use crate::state::{self, Attachment, Record, Store, StoredElement, Val};
use crate::{Error, Result};

/// The table's name.
pub const TABLE: &str = "ferry-portmap";

/// The table (family inet).
pub fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// The bookkeeping store under `root`.
pub fn store(root: &std::path::Path) -> Store {
    Store::new(root, "portmap")
}

/// A transport protocol a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses `tcp`, `udp` or `sctp` (any case); [`Error::Invalid`] for
    /// anything else.
    pub fn parse(s: &str) -> Result<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(Error::Invalid(format!(
                "unknown port mapping protocol {s:?}: use tcp, udp or sctp"
            ))),
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Port on the node.
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Only this node address (its family then selects the container
    /// address); `None` or an unspecified address: every local address.
    pub host_ip: Option<IpAddr>,
}

impl Mapping {
    /// Validates ports given as wide integers (as they arrive in JSON).
    pub fn new(
        host_port: i64,
        container_port: i64,
        protocol: &str,
        host_ip: Option<IpAddr>,
    ) -> Result<Mapping> {
        let port = |what: &str, p: i64| -> Result<u16> {
            u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                Error::Invalid(format!("invalid {what} port number {p}: use 1 to 65535"))
            })
        };
        Ok(Mapping {
            host_port: port("host", host_port)?,
            container_port: port("container", container_port)?,
            protocol: Protocol::parse(protocol)?,
            host_ip,
        })
    }
}

/// Where the mappings lead: the container's first address of each family,
/// with its prefix length (the prefix is its subnet, for hairpin).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target {
    /// IPv4 address.
    pub v4: Option<Ipv4Net>,
    /// IPv6 address.
    pub v6: Option<Ipv6Net>,
}

impl Target {
    /// The first address of each family of `addrs`.
    pub fn from_addrs<'a>(addrs: impl IntoIterator<Item = &'a IpNet>) -> Target {
        let mut t = Target::default();
        for a in addrs {
            match a {
                IpNet::V4(n) if t.v4.is_none() => t.v4 = Some(*n),
                IpNet::V6(n) if t.v6.is_none() => t.v6 = Some(*n),
                _ => {}
            }
        }
        t
    }
}

/// The `snat` and `masqAll` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Masquerade hairpin and loopback-sourced connections (default true).
    pub snat: bool,
    /// Masquerade every connection to a published port (needs `snat`).
    pub masq_all: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snat: true,
            masq_all: false,
        }
    }
}

const MASQ: [&str; 2] = ["masq4", "masq6"];

/// The names of the DNAT maps (`[v4, v6]`) of a profile (`None`: the
/// unconditional ones).
fn map_names(profile: Option<&str>) -> ([String; 2], [String; 2]) {
    let sfx = profile.map(|p| format!("-{p}")).unwrap_or_default();
    (
        [format!("hostip4{sfx}"), format!("hostip6{sfx}")],
        [format!("hostports4{sfx}"), format!("hostports6{sfx}")],
    )
}

/// Adds the table, its maps and chains, and (re)writes its rules: every
/// statement is idempotent and the fixed rules are flushed and re-added,
/// so running it on each ADD keeps one copy however often or concurrently
/// it runs. Each profile (see [`crate::conditions`]) adds its own maps
/// and rules, ahead of the unconditional ones.
pub fn structure(b: &mut Batch, profiles: &[Profile]) -> Result<()> {
    let t = table();
    b.add_table(&t);
    let mut groups: Vec<(Option<String>, [Vec<Cond>; 2])> = Vec::new();
    for p in profiles {
        groups.push((Some(p.id()), p.conds()?));
    }
    groups.push((None, [Vec::new(), Vec::new()]));
    let addr_types = [Type::Ipv4Addr, Type::Ipv6Addr];
    for (id, _) in &groups {
        let (hostip, hostports) = map_names(id.as_deref());
        for (i, addr) in addr_types.into_iter().enumerate() {
            b.add_set(
                &Set::new(&t, &hostip[i], &[addr, Type::InetProto, Type::InetService])
                    .map(&[addr, Type::InetService]),
            );
            b.add_set(
                &Set::new(&t, &hostports[i], &[Type::InetProto, Type::InetService])
                    .map(&[addr, Type::InetService]),
            );
        }
    }
    for (i, addr) in addr_types.into_iter().enumerate() {
        b.add_set(&Set::new(&t, MASQ[i], &[addr, addr]).interval());
    }
    b.add_chain(&Chain::base(
        &t,
        "prerouting",
        ChainType::Nat,
        Hook::Prerouting,
        -100,
    ));
    b.add_chain(&Chain::base(
        &t,
        "output",
        ChainType::Nat,
        Hook::Output,
        -100,
    ));
    b.add_chain(&Chain::regular(&t, "hostports"));
    b.add_chain(&Chain::base(
        &t,
        "postrouting",
        ChainType::Nat,
        Hook::Postrouting,
        100,
    ));
    for c in ["prerouting", "output", "hostports", "postrouting"] {
        b.flush_chain(&t, c);
    }
    for c in ["prerouting", "output"] {
        b.add_rule(&Rule::new(&t, c).fib_daddr_local().jump("hostports"));
    }
    let to = [
        [Type::Ipv4Addr, Type::InetService],
        [Type::Ipv6Addr, Type::InetService],
    ];
    let daddr = [Field::IpDaddr, Field::Ip6Daddr];
    let nfproto = [2u8, 10u8];
    for (id, conds) in &groups {
        let (hostip, hostports) = map_names(id.as_deref());
        for i in 0..2 {
            let base = || {
                let r = Rule::new(&t, "hostports");
                conditions::apply(r, &conds[i])
            };
            b.add_rule(&base().dnat_map(
                &[daddr[i], Field::L4Proto, Field::ThDport],
                &hostip[i],
                &to[i],
            ));
            // Without an address match first, say which family.
            let r = if conds[i].iter().any(|c| matches!(c, Cond::Addr { .. })) {
                base()
            } else {
                base().eq(Field::Nfproto, Value::Proto(nfproto[i]))
            };
            b.add_rule(&r.dnat_map(&[Field::L4Proto, Field::ThDport], &hostports[i], &to[i]));
        }
    }
    b.add_rule(
        &Rule::new(&t, "postrouting")
            .ct_status_dnat()
            .lookup(&[Field::IpSaddr, Field::IpDaddr], MASQ[0])
            .masquerade(),
    );
    b.add_rule(
        &Rule::new(&t, "postrouting")
            .ct_status_dnat()
            .lookup(&[Field::Ip6Saddr, Field::Ip6Daddr], MASQ[1])
            .masquerade(),
    );
    Ok(())
}

fn ip(a: impl Into<IpAddr>) -> Val {
    Val::Ip(a.into())
}

/// The elements that publish `mappings` on `target`: a pure function, so
/// what an ADD does can be tested without a kernel. Mappings of a family
/// the container has no address of are skipped, as the reference does.
pub fn elements(
    mappings: &[Mapping],
    target: Target,
    opts: Options,
    profile: Option<&Profile>,
) -> Vec<StoredElement> {
    let id = profile.map(Profile::id);
    let (hostip, hostports) = map_names(id.as_deref());
    let mut out = Vec::new();
    let mut used = [false, false];
    for m in mappings {
        let family_of_host = m.host_ip.map(|h| h.is_ipv4());
        let dests: [(usize, Option<IpAddr>); 2] = [
            (0, target.v4.map(|n| n.addr().into())),
            (1, target.v6.map(|n| n.addr().into())),
        ];
        for (i, dest) in dests {
            let Some(dest) = dest else { continue };
            if family_of_host.is_some_and(|v4| v4 != (i == 0)) {
                continue;
            }
            used[i] = true;
            let data = vec![ip(dest), Val::Port(m.container_port)];
            let proto = Val::Proto(m.protocol.number());
            let port = Val::Port(m.host_port);
            match m.host_ip.filter(|h| !h.is_unspecified()) {
                Some(h) => out.push(StoredElement::map(
                    &hostip[i],
                    vec![ip(h), proto, port],
                    data,
                )),
                None => out.push(StoredElement::map(&hostports[i], vec![proto, port], data)),
            }
        }
    }
    if !opts.snat {
        return out;
    }
    if let (true, Some(n)) = (used[0], target.v4) {
        let a = n.addr();
        let mut srcs: Vec<(Ipv4Addr, Ipv4Addr)> = Vec::new();
        if opts.masq_all {
            srcs.push((Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        } else {
            let net = n.trunc();
            srcs.push((net.network(), net.broadcast()));
            if !net.addr().is_loopback() {
                srcs.push((
                    Ipv4Addr::new(127, 0, 0, 0),
                    Ipv4Addr::new(127, 255, 255, 255),
                ));
            }
        }
        for (lo, hi) in srcs {
            out.push(StoredElement::range(
                MASQ[0],
                vec![ip(lo), ip(a)],
                vec![ip(hi), ip(a)],
            ));
        }
    }
    if let (true, Some(n)) = (used[1], target.v6) {
        let a = n.addr();
        let (lo, hi) = if opts.masq_all {
            (Ipv6Addr::UNSPECIFIED, Ipv6Addr::from(u128::MAX))
        } else {
            let net = n.trunc();
            (net.network(), net.broadcast())
        };
        out.push(StoredElement::range(
            MASQ[1],
            vec![ip(lo), ip(a)],
            vec![ip(hi), ip(a)],
        ));
    }
    out
}

/// Publishes the mappings: one batch (structure and elements) after the
/// bookkeeping file is written. Does nothing at all when there are no
/// mappings for the container's families. Returns the elements added.
///
/// A host port another container already publishes (with another
/// destination) is refused by the kernel (`EBUSY`) and nothing changes.
pub fn add(
    sock: &mut nft::Socket,
    store: &Store,
    a: &Attachment,
    target: Target,
    mappings: &[Mapping],
    opts: Options,
    profile: Option<&Profile>,
) -> Result<Vec<StoredElement>> {
    let els = elements(mappings, target, opts, profile);
    if els.is_empty() {
        return Ok(els);
    }
    // One structure writer at a time, so every profile's rules survive
    // the flush-and-rewrite of a concurrent ADD.
    let _lock = store.lock("portmap")?;
    if let Some(p) = profile {
        conditions::save(store.root(), p)?;
    }
    let profiles = conditions::all(store.root());
    // A previous ADD of the same attachment: its elements go first.
    let previous = store.load(a)?;
    let during = merged(previous.as_ref(), &els);
    store.save(a, &Record::of(a, during.clone(), Vec::new()))?;
    let t = table();
    let mut b = Batch::new();
    structure(&mut b, &profiles)?;
    let mut b = state::unless_held(sock, b);
    if let Some(p) = &previous {
        let stale: Vec<StoredElement> = p
            .elements
            .iter()
            .filter(|e| !els.contains(e))
            .cloned()
            .collect();
        state::destroy_in(&mut b, &t, &stale);
    }
    state::add_to(&mut b, &t, &els);
    match sock.commit(&b) {
        Ok(()) => {}
        Err(e) => {
            // Leave the record as it was before.
            match &previous {
                Some(p) => store.save(a, p)?,
                None => store.remove(a)?,
            }
            if e.errno() == Some(libc::EBUSY) || e.errno() == Some(libc::EEXIST) {
                return Err(Error::Invalid(format!(
                    "a host port in {mappings:?} is already published by another container: {e}"
                )));
            }
            return Err(Error::kernel(format!("failed to publish ports in {t}"))(e));
        }
    }
    // Usually (a first ADD) the record already says exactly this: no
    // second write and fsync.
    if during != els {
        store.save(a, &Record::of(a, els.clone(), Vec::new()))?;
    }
    // Flows that reached a now-published UDP port keep their un-NATed
    // conntrack entry while packets keep coming: drop them (best effort, as
    // the reference does).
    let udp: Vec<u16> = mappings
        .iter()
        .filter(|m| m.protocol == Protocol::Udp)
        .map(|m| m.host_port)
        .collect();
    let _ = crate::conntrack::delete_by_dport(17, &udp, target.v4.is_some(), target.v6.is_some());
    Ok(els)
}

/// The union of a previous record and new elements (what the file must
/// name while the batch is in flight, so a crash leaks nothing).
fn merged(previous: Option<&Record>, els: &[StoredElement]) -> Vec<StoredElement> {
    let mut all: Vec<StoredElement> = previous.map(|p| p.elements.clone()).unwrap_or_default();
    for e in els {
        if !all.contains(e) {
            all.push(e.clone());
        }
    }
    all
}

/// Unpublishes the attachment's ports (idempotent).
pub fn del(sock: &mut nft::Socket, store: &Store, a: &Attachment) -> Result<()> {
    state::release(sock, store, &table(), a)
}

/// Checks that the attachment's elements are all in the kernel.
pub fn check(sock: &mut nft::Socket, store: &Store, a: &Attachment) -> Result<()> {
    state::verify(sock, store, &table(), a)
}

/// Unpublishes the ports of `network`'s attachments not in `valid`.
pub fn gc(
    sock: &mut nft::Socket,
    store: &Store,
    network: &str,
    valid: &std::collections::HashSet<(String, String)>,
) -> Result<()> {
    state::collect(sock, store, &table(), network, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(h: u16, c: u16, p: Protocol, ip: Option<&str>) -> Mapping {
        Mapping {
            host_port: h,
            container_port: c,
            protocol: p,
            host_ip: ip.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn validation() {
        assert!(Mapping::new(0, 80, "tcp", None).is_err());
        assert!(Mapping::new(65536, 80, "tcp", None).is_err());
        assert!(Mapping::new(80, -1, "tcp", None).is_err());
        assert!(Mapping::new(80, 80, "icmp", None).is_err());
        assert_eq!(
            Mapping::new(80, 8080, "SCTP", None).unwrap().protocol,
            Protocol::Sctp
        );
    }

    #[test]
    fn elements_by_family_and_host_ip() {
        let t = Target {
            v4: Some("198.18.208.2/24".parse().unwrap()),
            v6: Some("fd00:208::2/64".parse().unwrap()),
        };
        let els = elements(
            &[
                m(8080, 80, Protocol::Tcp, None),
                m(53, 53, Protocol::Udp, Some("198.18.208.1")),
            ],
            t,
            Options::default(),
            None,
        );
        let sets: Vec<&str> = els.iter().map(|e| e.set.as_str()).collect();
        assert_eq!(
            sets,
            [
                "hostports4",
                "hostports6",
                "hostip4",
                "masq4",
                "masq4",
                "masq6"
            ]
        );
        // No snat: only the maps.
        let els = elements(
            &[m(8080, 80, Protocol::Tcp, None)],
            t,
            Options {
                snat: false,
                masq_all: false,
            },
            None,
        );
        assert_eq!(els.len(), 2);
        // masqAll: one range per family covering every source.
        let els = elements(
            &[m(8080, 80, Protocol::Tcp, Some("fd00:208::1"))],
            t,
            Options {
                snat: true,
                masq_all: true,
            },
            None,
        );
        assert_eq!(els.len(), 2);
        assert_eq!(els[1].key[0], Val::Ip("::".parse().unwrap()));
        // Nothing to publish: nothing at all.
        assert!(elements(&[], t, Options::default(), None).is_empty());
        assert!(elements(
            &[m(1, 1, Protocol::Tcp, Some("198.18.208.1"))],
            Target { v4: None, v6: t.v6 },
            Options::default(),
            None
        )
        .is_empty());
    }
}
