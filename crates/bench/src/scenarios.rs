//! The scenarios. Addresses: 198.18.224.0/19 and fd00:bec::/32, one /24
//! (and /64) per scenario and participant (scenario 7, CNM: 198.18.248.0/22);
//! the scale scenario takes 198.19.0.0/16 (a /17 per implementation).
//! Scenario 9, CNM IPAM, uses 198.18.128.0/18 as a pool only (no link,
//! address or route); it must not overlap a route the bench itself still
//! holds (the scale scenario's bridges stay until the final cleanup), as
//! ferryd refuses a pool wider than a host route.

use crate::cleanup::{check_stop, Ticket};
use crate::ctx::Ctx;
use crate::peer::{
    add_tracked, del_tracked, host_veth, result_addresses, Att, Engine, Netavark, Part, Peer,
};
use crate::util::{self, ms};
use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::CniConfig;
use ferry_testkit::docker::{Dockerd, Ferryd, DOCKERD};
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const S1: &str = "1-bridge";
/// Scenario 1 again with `ipMasq` (netavark: its NAT network).
pub const S1M: &str = "1m-bridge-masq";
pub const S2: &str = "2-chain";
pub const S3: &str = "3-ptp";
pub const S4: &str = "4-parallel";
pub const S5: &str = "5-scale";
/// Scenario 5's node row naming the network it scaled (value: containers
/// asked per implementation).
pub const SCALE_ON_BRIDGE: &str = "scaled-bridge";
pub const SCALE_ON_PTP: &str = "scaled-ptp";
pub const S6: &str = "6-rss";
pub const S7: &str = "7-cnm";
pub const S8: &str = "8-floor";
pub const S9: &str = "9-ipam";
pub const S10: &str = "10-overlay";

fn part_index(p: Part) -> u8 {
    match p {
        Part::Ferry => 0,
        Part::Reference => 1,
        Part::Netavark => 2,
        Part::FloorInProc => 3,
        Part::FloorProcs => 4,
    }
}

/// Subnets of scenario `s` (1-4) for `part`: 198.18.(224+5(s-1)+i).0/24 and
/// fd00:bec:s:i::/64.
fn nets(s: u8, part: Part, v6: bool) -> Vec<IpNet> {
    let i = part_index(part);
    let mut v = Vec::new();
    if let Ok(n) = format!("198.18.{}.0/24", 224 + 5 * (s - 1) + i).parse() {
        v.push(n);
    }
    if v6 {
        if let Ok(n) = format!("fd00:bec:{s}:{i}::/64").parse() {
            v.push(n);
        }
    }
    v
}

/// Subnets of scenario 1 with `ipMasq`: /24s of the bench's range that
/// scenarios 2 and 3 leave unused (they have no floors), 198.18.232, 233
/// and 236, and fd00:bec:1:8-a::/64.
fn masq_nets(part: Part) -> Vec<IpNet> {
    let (third, i) = match part {
        Part::Ferry => (232, 8),
        Part::Reference => (233, 9),
        _ => (236, 10),
    };
    [
        format!("198.18.{third}.0/24"),
        format!("fd00:bec:1:{i:x}::/64"),
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

fn ranges(nets: &[IpNet]) -> Value {
    Value::Array(
        nets.iter()
            .map(|n| json!([{"subnet": n.to_string()}]))
            .collect(),
    )
}

fn default_routes(nets: &[IpNet]) -> Value {
    Value::Array(
        nets.iter()
            .map(|n| json!({"dst": if n.addr().is_ipv4() { "0.0.0.0/0" } else { "::/0" }}))
            .collect(),
    )
}

pub(crate) fn host_local(nets: &[IpNet], data_dir: &Path) -> Value {
    json!({
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": ranges(nets),
        "routes": default_routes(nets),
    })
}

pub(crate) fn bridge_plugin(bridge: &str, ipam: Value) -> Value {
    json!({"type": "bridge", "bridge": bridge, "isGateway": true, "ipam": ipam})
}

fn ptp_plugin(ipam: Value) -> Value {
    json!({"type": "ptp", "ipam": ipam})
}

/// Reference chained plugins of the full chain (Ferry has none yet).
pub(crate) fn chained_plugins() -> Vec<Value> {
    vec![
        json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
        json!({"type": "firewall", "backend": "iptables"}),
        json!({"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}),
        json!({"type": "bandwidth",
               "ingressRate": 100_000_000u64, "ingressBurst": 1_000_000u64,
               "egressRate": 100_000_000u64, "egressBurst": 1_000_000u64}),
    ]
}

pub(crate) fn conflist(name: &str, plugins: Vec<Value>) -> Result<NetworkConfigList, String> {
    let v = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
    let bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
    NetworkConfigList::from_bytes(&bytes).map_err(|e| format!("conflist {name}: {e}"))
}

/// Per-participant directories under the work dir (removed at the end with it).
fn dirs(ctx: &Ctx, key: &str) -> Result<(PathBuf, PathBuf), String> {
    let data = ctx.work.join(format!("data-{key}"));
    let cache = ctx.work.join(format!("cache-{key}"));
    for d in [&data, &cache] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    Ok((data, cache))
}

/// The CNI_PATH for `part`, if that participant is available.
fn plugin_dir(ctx: &Ctx, part: Part) -> Option<PathBuf> {
    match part {
        Part::Ferry => ctx.ferry_dir.clone(),
        Part::Reference => ctx.reference.clone(),
        Part::FloorProcs => Some(ctx.floor_dir.clone()),
        _ => None,
    }
}

/// A CNI participant whose plugins are `make(bridge, data_dir)`.
fn cni_peer(
    ctx: &Ctx,
    s: &str,
    part: Part,
    nets: Vec<IpNet>,
    caps: Map<String, Value>,
    make: impl Fn(&str, &Path) -> Vec<Value>,
) -> Result<Option<(Arc<Peer>, String)>, String> {
    let Some(dir) = plugin_dir(ctx, part) else {
        return Ok(None);
    };
    let key = format!("{s}{}", part.code());
    let (data, cache) = dirs(ctx, &key)?;
    let bridge = ctx.name(&format!("b{key}"));
    util::own_link(&ctx.janitor, &bridge);
    let name = ctx.name(&key);
    let list = conflist(&name, make(&bridge, &data))?;
    let cni = CniConfig::new(vec![dir], cache);
    let peer = Peer {
        part,
        engine: Engine::Cni { cni, list },
        nets,
        caps,
        veth_prefix: ctx.name(&format!("v{key}")),
        optional: false,
    };
    Ok(Some((Arc::new(peer), bridge)))
}

/// A participant and the bridge its attachments use.
type PeerOnBridge = (Arc<Peer>, String);

/// The in-process floor on a bridge the bench prepares.
fn floor_peer(ctx: &Ctx, s: &str, nets: Vec<IpNet>) -> Result<(Arc<Peer>, String), String> {
    let key = format!("{s}{}", Part::FloorInProc.code());
    let (data, _) = dirs(ctx, &key)?;
    let bridge = ctx.name(&format!("b{key}"));
    let gws: Vec<IpNet> = nets
        .iter()
        .filter_map(|n| IpNet::new(util::nth(n, 1), n.prefix_len()).ok())
        .collect();
    util::create_bridge(&ctx.janitor, &bridge, &gws)?;
    let lease_dir = data.join(ctx.name(&key));
    std::fs::create_dir_all(&lease_dir).map_err(|e| e.to_string())?;
    let peer = Peer {
        part: Part::FloorInProc,
        engine: Engine::Floor {
            bridge: bridge.clone(),
            lease_dir,
        },
        nets,
        caps: Map::new(),
        veth_prefix: ctx.name(&format!("v{key}")),
        optional: false,
    };
    Ok((Arc::new(peer), bridge))
}

/// The per-process floor: `fbfloor-bridge` + `fbfloor-ipam` through the runtime.
fn floor_procs_peer(ctx: &Ctx, s: &str, nets: Vec<IpNet>) -> Result<(Arc<Peer>, String), String> {
    let key = format!("{s}{}", Part::FloorProcs.code());
    let bridge = ctx.name(&format!("b{key}"));
    let gws: Vec<IpNet> = nets
        .iter()
        .filter_map(|n| IpNet::new(util::nth(n, 1), n.prefix_len()).ok())
        .collect();
    util::create_bridge(&ctx.janitor, &bridge, &gws)?;
    let made = cni_peer(ctx, s, Part::FloorProcs, nets, Map::new(), |br, data| {
        vec![json!({
            "type": crate::floor::BRIDGE_HALF,
            "bridge": br,
            "ipam": {"type": crate::floor::IPAM_HALF, "dataDir": data},
        })]
    })?;
    made.ok_or_else(|| "floor plugin directory missing".to_string())
}

/// netavark on a bridge network; a resident container (not measured) keeps
/// the bridge up between cycles, as on a node with other containers.
fn netavark_peer(
    ctx: &Ctx,
    s: &str,
    nets: Vec<IpNet>,
    internal: bool,
    ports: Vec<Value>,
) -> Result<Option<(PeerOnBridge, Ticket)>, String> {
    let Some(bin) = ctx.netavark.clone() else {
        return Ok(None);
    };
    let key = format!("{s}{}", Part::Netavark.code());
    let bridge = ctx.name(&format!("b{key}"));
    util::own_link(&ctx.janitor, &bridge);
    let config_dir = ctx.work.join(format!("netavark-{key}"));
    std::fs::create_dir_all(&config_dir).map_err(|e| e.to_string())?;
    let net_name = ctx.name(&key);
    // netavark wants a 64-hex-digit id: the name in hex, zero-padded.
    let hex: String = net_name.bytes().map(|b| format!("{b:02x}")).collect();
    let id = format!("{hex:0<64}");
    let subnets: Vec<Value> = nets
        .iter()
        .map(|n| json!({"subnet": n.to_string(), "gateway": util::nth(n, 1).to_string()}))
        .collect();
    let network = json!({
        "name": net_name,
        "id": id,
        "driver": "bridge",
        "network_interface": bridge,
        "subnets": subnets,
        "ipv6_enabled": nets.iter().any(|n| n.addr().is_ipv6()),
        "internal": internal,
        "dns_enabled": false,
        "ipam_options": {"driver": "host-local"},
    });
    let peer = Arc::new(Peer {
        part: Part::Netavark,
        engine: Engine::Netavark(Netavark {
            bin,
            config_dir,
            net_name,
            network,
            port_mappings: ports,
        }),
        nets,
        caps: Map::new(),
        veth_prefix: String::new(),
        optional: true,
    });
    // The resident container.
    let (ns, _) = util::create_netns(&ctx.janitor, &ctx.name(&format!("{key}r")))?;
    let att = peer.att(&format!("{}-{key}-resident", ctx.tag), &ns, 200);
    match add_tracked(&ctx.janitor, &peer, &att) {
        Ok((_, _, resident)) => Ok(Some(((peer, bridge), resident))),
        Err(e) => {
            ctx.note(
                s,
                format!("netavark skipped: setup of the resident container failed: {e}"),
            );
            Ok(None)
        }
    }
}

/// One ADD/DEL cycle: ADD, DEL, and from the DEL's start until the host end
/// of the veth is gone (None when the result names no host veth).
struct Timings {
    add: Duration,
    del: Duration,
    gone: Option<Duration>,
}

/// ADD then DEL of one attachment, timed separately.
fn cycle(ctx: &Ctx, peer: &Arc<Peer>, att: &Att) -> Result<Timings, String> {
    let (v, add, ticket) = add_tracked(&ctx.janitor, peer, att)?;
    let host = host_veth(&v);
    let t = Instant::now();
    let del = del_tracked(&ctx.janitor, peer, att, ticket)?;
    let gone = match host {
        Some(h) if util::wait_links_gone(std::slice::from_ref(&h)) => Some(t.elapsed()),
        Some(h) => return Err(format!("host veth {h} still there 10 s after DEL")),
        None => None,
    };
    Ok(Timings { add, del, gone })
}

/// Sequential ADD/DEL cycles, participants interleaved (each cycle starts
/// with the next one), after one untimed warm-up cycle each.
fn sequential(
    ctx: &Ctx,
    s: &'static str,
    mut peers: Vec<(Arc<Peer>, String)>,
) -> Result<(), String> {
    let short = &s[..1];
    let mut i = 0;
    while i < peers.len() {
        let (p, ns) = &peers[i];
        let att = p.att(&format!("{}-{short}{}-warm", ctx.tag, p.part.code()), ns, 0);
        match cycle(ctx, p, &att) {
            Ok(_) => i += 1,
            Err(e) if p.optional => {
                ctx.note(s, format!("{} skipped: {e}", p.part.label()));
                peers.remove(i);
            }
            Err(e) => return Err(e),
        }
    }
    for c in 0..ctx.sizes.cycles {
        check_stop()?;
        let n = peers.len();
        let mut dropped = Vec::new();
        for k in 0..n {
            let idx = (c + k) % n;
            let (p, ns) = &peers[idx];
            let att = p.att(&format!("{}-{short}{}-{c}", ctx.tag, p.part.code()), ns, 0);
            match cycle(ctx, p, &att) {
                Ok(t) => {
                    ctx.record(s, p.part.label(), "ADD", c, 1, ms(t.add), "ms");
                    ctx.record(s, p.part.label(), "DEL", c, 1, ms(t.del), "ms");
                    if let Some(g) = t.gone {
                        ctx.record(s, p.part.label(), "DEL-gone", c, 1, ms(g), "ms");
                    }
                }
                Err(e) if p.optional => {
                    ctx.note(s, format!("{} dropped at cycle {c}: {e}", p.part.label()));
                    dropped.push(idx);
                }
                Err(e) => return Err(e),
            }
        }
        dropped.sort_unstable_by(|a, b| b.cmp(a));
        for d in dropped {
            peers.remove(d);
        }
    }
    Ok(())
}

/// Leftovers of one participant after its DELs, recorded as rows.
#[allow(clippy::too_many_arguments)]
fn record_leftovers(
    ctx: &Ctx,
    s: &'static str,
    part: Part,
    round: usize,
    bridge: Option<&str>,
    namespaces: &[String],
    lease_dir: Option<&Path>,
    nets: &[IpNet],
) {
    let l = util::leftovers(bridge, namespaces, lease_dir, nets, &ctx.rule_baseline());
    ctx.record(
        s,
        part.label(),
        "leftover-links",
        round,
        0,
        l.links as f64,
        "count",
    );
    ctx.record(
        s,
        part.label(),
        "leftover-leases",
        round,
        0,
        l.leases as f64,
        "count",
    );
    ctx.record(
        s,
        part.label(),
        "leftover-rules",
        round,
        0,
        l.rules as f64,
        "count",
    );
    for d in l.detail.iter().take(5) {
        ctx.note(s, format!("{} leftover: {d}", part.label()));
    }
}

fn lease_dir_of(peer: &Peer) -> Option<PathBuf> {
    match &peer.engine {
        Engine::Cni { list, .. } => list.plugins.first().and_then(|p| {
            p.raw
                .get("ipam")
                .and_then(|i| i.get("dataDir"))
                .and_then(Value::as_str)
                .map(|d| Path::new(d).join(&list.name))
        }),
        Engine::Floor { lease_dir, .. } => Some(lease_dir.clone()),
        Engine::Netavark(_) => None,
    }
}

fn one_ns(ctx: &Ctx, s: &str, part: Part) -> Result<String, String> {
    util::create_netns(&ctx.janitor, &ctx.name(&format!("{s}{}", part.code()))).map(|(p, _)| p)
}

/// Scenario 1 (and 8, the floors): bridge + host-local, dual-stack; then
/// the same with `ipMasq` (S1M: Ferry, reference and netavark's NAT network).
pub fn bridge(ctx: &Ctx) -> Result<(), String> {
    bridge_pass(ctx, S1, false)?;
    bridge_pass(ctx, S1M, true)
}

fn bridge_pass(ctx: &Ctx, s: &'static str, masq: bool) -> Result<(), String> {
    let key = if masq { "1m" } else { "1" };
    let subnets = |part| {
        if masq {
            masq_nets(part)
        } else {
            nets(1, part, true)
        }
    };
    let mut peers = Vec::new();
    let mut residents = Vec::new();
    for part in [Part::Ferry, Part::Reference] {
        let made = cni_peer(ctx, key, part, subnets(part), Map::new(), |br, data| {
            let mut plugin = bridge_plugin(br, host_local(&subnets(part), data));
            plugin["ipMasq"] = json!(masq);
            vec![plugin]
        })?;
        match made {
            Some(p) => peers.push(p),
            None => ctx.note(s, format!("{} not available: skipped", part.label())),
        }
    }
    if !masq {
        peers.push(floor_peer(ctx, key, nets(1, Part::FloorInProc, true))?);
        peers.push(floor_procs_peer(ctx, key, nets(1, Part::FloorProcs, true))?);
    }
    match netavark_peer(ctx, key, subnets(Part::Netavark), !masq, Vec::new())? {
        Some((p, t)) => {
            peers.push(p);
            residents.push(t);
        }
        None if ctx.netavark.is_none() => ctx.note(s, "netavark not installed: skipped"),
        None => {}
    }
    let mut with_ns = Vec::new();
    let mut all_ns = Vec::new();
    for (p, br) in peers {
        let ns = one_ns(ctx, key, p.part)?;
        all_ns.push((Arc::clone(&p), br, ns.clone()));
        with_ns.push((p, ns));
    }
    sequential(ctx, s, with_ns)?;
    for t in residents {
        ctx.janitor.run(t)?;
    }
    for (p, br, ns) in &all_ns {
        let ld = lease_dir_of(p);
        record_leftovers(
            ctx,
            s,
            p.part,
            0,
            Some(br),
            std::slice::from_ref(ns),
            ld.as_deref(),
            &p.nets,
        );
    }
    Ok(())
}

pub(crate) fn port_caps(base: u16) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "portMappings".into(),
        json!([
            {"hostPort": base + 1, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": base + 2, "containerPort": 443, "protocol": "tcp"},
        ]),
    );
    m
}

/// Which implementation runs each type of Ferry's chain: a type is Ferry's
/// once it is in `ferry_plugins::REGISTRY`, the reference's until then.
pub fn chain_composition() -> String {
    let ferry: Vec<&str> = ferry_plugins::REGISTRY.iter().map(|e| e.name).collect();
    let (mine, theirs): (Vec<&str>, Vec<&str>) = ["portmap", "firewall", "tuning", "bandwidth"]
        .into_iter()
        .partition(|t| ferry.contains(t));
    let mut s = String::from("Ferry chain = Ferry bridge/host-local");
    for t in &mine {
        s.push('/');
        s.push_str(t);
    }
    if theirs.len() == 4 {
        s.push_str(" + reference chained plugins");
    } else if !theirs.is_empty() {
        s.push_str(&format!(" + reference {}", theirs.join(", ")));
    }
    s
}

/// Scenario 2: bridge, host-local, portmap (2 ports), firewall, tuning, bandwidth.
pub fn chain(ctx: &Ctx) -> Result<(), String> {
    ctx.note(S2, chain_composition());
    let mut peers = Vec::new();
    let mut residents = Vec::new();
    for part in [Part::Ferry, Part::Reference] {
        let n = nets(2, part, true);
        let caps = port_caps(39000 + 10 * u16::from(part_index(part)));
        let made = cni_peer(ctx, "2", part, n.clone(), caps, |br, data| {
            let mut v = vec![bridge_plugin(br, host_local(&n, data))];
            v.extend(chained_plugins());
            v
        })?;
        match made {
            Some(p) => peers.push(p),
            None => ctx.note(S2, format!("{} not available: skipped", part.label())),
        }
    }
    let nv_ports = vec![
        json!({"host_ip": "", "container_port": 80, "host_port": 39021, "range": 1, "protocol": "tcp"}),
        json!({"host_ip": "", "container_port": 443, "host_port": 39022, "range": 1, "protocol": "tcp"}),
    ];
    match netavark_peer(ctx, "2", nets(2, Part::Netavark, true), false, nv_ports)? {
        Some((p, t)) => {
            peers.push(p);
            residents.push(t);
        }
        None if ctx.netavark.is_none() => ctx.note(S2, "netavark not installed: skipped"),
        None => {}
    }
    let mut with_ns = Vec::new();
    let mut all = Vec::new();
    for (p, br) in peers {
        let ns = one_ns(ctx, "2", p.part)?;
        all.push((Arc::clone(&p), br, ns.clone()));
        with_ns.push((p, ns));
    }
    sequential(ctx, S2, with_ns)?;
    for t in residents {
        ctx.janitor.run(t)?;
    }
    for (p, br, ns) in &all {
        let ld = lease_dir_of(p);
        record_leftovers(
            ctx,
            S2,
            p.part,
            0,
            Some(br),
            std::slice::from_ref(ns),
            ld.as_deref(),
            &p.nets,
        );
    }
    Ok(())
}

/// Scenario 3: ptp + host-local, IPv4 (the reference ptp waits for IPv6
/// DAD, a ~1.3 s kernel timer, which would swamp the comparison).
pub fn ptp(ctx: &Ctx) -> Result<(), String> {
    let mut peers = Vec::new();
    for part in [Part::Ferry, Part::Reference] {
        let n = nets(3, part, false);
        match cni_peer(ctx, "3", part, n.clone(), Map::new(), |_, data| {
            vec![ptp_plugin(host_local(&n, data))]
        })? {
            Some(p) => peers.push(p),
            None => ctx.note(S3, format!("{} not available: skipped", part.label())),
        }
    }
    let mut with_ns = Vec::new();
    let mut all = Vec::new();
    for (p, _) in peers {
        let ns = one_ns(ctx, "3", p.part)?;
        all.push((Arc::clone(&p), ns.clone()));
        with_ns.push((p, ns));
    }
    sequential(ctx, S3, with_ns)?;
    for (p, ns) in &all {
        let ld = lease_dir_of(p);
        record_leftovers(
            ctx,
            S3,
            p.part,
            0,
            None,
            std::slice::from_ref(ns),
            ld.as_deref(),
            &p.nets,
        );
    }
    Ok(())
}

/// Runs `f(0..n)` on `par` threads; wall time and the results in index order.
fn parallel<T: Send>(
    n: usize,
    par: usize,
    f: impl Fn(usize) -> Result<T, String> + Sync,
) -> (Duration, Vec<Result<T, String>>) {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<T, String>>>> = Mutex::new((0..n).map(|_| None).collect());
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..par.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let r = f(i);
                out.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    let wall = t.elapsed();
    let results = out
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".into())))
        .collect();
    (wall, results)
}

/// Scenario 4: N namespaces, ADD all with P in parallel, then DEL all.
pub fn parallel_phases(ctx: &Ctx) -> Result<(), String> {
    let count = ctx.sizes.namespaces;
    if count > 250 {
        return Err(format!(
            "--namespaces {count}: at most 250 fit the scenario's /24"
        ));
    }
    let mut peers = Vec::new();
    for part in [Part::Ferry, Part::Reference] {
        let n = nets(4, part, true);
        match cni_peer(ctx, "4", part, n.clone(), Map::new(), |br, data| {
            vec![bridge_plugin(br, host_local(&n, data))]
        })? {
            Some((p, br)) => {
                let mut nss = Vec::new();
                for i in 0..count {
                    let name = ctx.name(&format!("4{}{i}", part.code()));
                    nss.push(util::create_netns(&ctx.janitor, &name)?.0);
                }
                peers.push((p, br, nss));
            }
            None => ctx.note(S4, format!("{} not available: skipped", part.label())),
        }
    }
    let mut failure = None;
    for round in 0..ctx.sizes.rounds {
        for k in 0..peers.len() {
            check_stop()?;
            let (p, br, nss) = &peers[(round + k) % peers.len()];
            let label = p.part.label();
            let atts: Vec<Att> = nss
                .iter()
                .enumerate()
                .map(|(i, ns)| {
                    p.att(
                        &format!("{}-4{}-{round}-{i}", ctx.tag, p.part.code()),
                        ns,
                        i,
                    )
                })
                .collect();
            let (wall, adds) = parallel(count, ctx.sizes.parallel, |i| {
                add_tracked(&ctx.janitor, p, &atts[i])
            });
            ctx.record(S4, label, "ADD-phase", round, 0, ms(wall), "ms");
            let mut ips = BTreeSet::new();
            let mut tickets: Vec<Option<Ticket>> = Vec::new();
            let mut hosts = Vec::new();
            for r in adds {
                match r {
                    Ok((v, dt, t)) => {
                        ctx.record(S4, label, "ADD", round, 0, ms(dt), "ms");
                        hosts.extend(host_veth(&v));
                        ips.extend(result_addresses(&v).into_iter().filter(|a| a.contains('.')));
                        tickets.push(Some(t));
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                        tickets.push(None);
                    }
                }
            }
            ctx.record(
                S4,
                label,
                "distinct-ips",
                round,
                count,
                ips.len() as f64,
                "count",
            );
            let start = Instant::now();
            let (wall, dels) = parallel(count, ctx.sizes.parallel, |i| match tickets[i] {
                Some(t) => del_tracked(&ctx.janitor, p, &atts[i], t),
                None => Ok(Duration::ZERO),
            });
            ctx.record(S4, label, "DEL-phase", round, count, ms(wall), "ms");
            if util::wait_links_gone(&hosts) {
                let gone = start.elapsed();
                ctx.record(S4, label, "DEL-phase-gone", round, count, ms(gone), "ms");
            } else {
                failure.get_or_insert(format!("{label}: host veths still there 10 s after DEL"));
            }
            for r in dels {
                match r {
                    Ok(dt) if !dt.is_zero() => ctx.record(S4, label, "DEL", round, 0, ms(dt), "ms"),
                    Ok(_) => {}
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            let ld = lease_dir_of(p);
            record_leftovers(
                ctx,
                S4,
                p.part,
                round,
                Some(br),
                nss,
                ld.as_deref(),
                &p.nets,
            );
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Scenario 5: N containers per implementation on one network, ADDs
/// interleaved, then DEL all.
pub fn scale(ctx: &Ctx) -> Result<(), String> {
    let n = ctx.sizes.scale;
    let use_ptp = ctx.sizes.scale_plugin == "ptp";
    let cap: usize = if use_ptp { 30_000 } else { 1_000 };
    if n > cap {
        return Err(format!(
            "--scale {n} with {}: at most {cap} ({})",
            ctx.sizes.scale_plugin,
            if use_ptp {
                "one /17 per implementation"
            } else {
                "a Linux bridge holds at most 1023 ports; use --scale-plugin ptp"
            }
        ));
    }
    let nets_of = |part: Part| -> Vec<IpNet> {
        let (v4, v6) = match part {
            Part::Ferry => ("198.19.0.0/17", "fd00:bec:5:0::/64"),
            _ => ("198.19.128.0/17", "fd00:bec:5:1::/64"),
        };
        let mut v: Vec<IpNet> = v4.parse().into_iter().collect();
        if !use_ptp {
            v.extend(v6.parse::<IpNet>());
        }
        v
    };
    let mut peers = Vec::new();
    for part in [Part::Ferry, Part::Reference] {
        let nn = nets_of(part);
        match cni_peer(ctx, "5", part, nn.clone(), Map::new(), |br, data| {
            let ipam = host_local(&nn, data);
            vec![if use_ptp {
                ptp_plugin(ipam)
            } else {
                bridge_plugin(br, ipam)
            }]
        })? {
            Some(p) => peers.push(p),
            None => ctx.note(S5, format!("{} not available: skipped", part.label())),
        }
    }
    if peers.is_empty() {
        return Ok(());
    }
    // Which network the run scaled: the report holds it to that target.
    ctx.record(
        S5,
        "node",
        if use_ptp {
            SCALE_ON_PTP
        } else {
            SCALE_ON_BRIDGE
        },
        0,
        n,
        n as f64,
        "containers",
    );
    if let Some(rs) = util::nft_ruleset() {
        ctx.record(
            S5,
            "node",
            "ruleset-lines",
            0,
            0,
            rs.lines().count() as f64,
            "lines",
        );
    }
    // Per participant: (att, attachment ticket, namespace ticket).
    let mut live: Vec<Vec<(Att, Ticket, Ticket)>> = peers.iter().map(|_| Vec::new()).collect();
    let mut failure = None;
    'add: for i in 0..n {
        if let Err(e) = check_stop() {
            failure = Some(e);
            break;
        }
        for k in 0..peers.len() {
            let idx = (i + k) % peers.len();
            let p = &peers[idx].0;
            let name = ctx.name(&format!("5{}{i}", p.part.code()));
            let (ns, ns_ticket) = util::create_netns(&ctx.janitor, &name)?;
            let att = p.att(&format!("{}-5{}-{i}", ctx.tag, p.part.code()), &ns, i);
            match add_tracked(&ctx.janitor, p, &att) {
                Ok((_, dt, t)) => {
                    ctx.record(S5, p.part.label(), "ADD", i, i, ms(dt), "ms");
                    live[idx].push((att, t, ns_ticket));
                }
                Err(e) => {
                    failure = Some(format!("ADD #{i}: {e}"));
                    let _ = ctx.janitor.run(ns_ticket);
                    break 'add;
                }
            }
        }
    }
    if let Some(rs) = util::nft_ruleset() {
        let held = live.iter().map(Vec::len).max().unwrap_or(0);
        ctx.record(
            S5,
            "node",
            "ruleset-lines",
            1,
            held,
            rs.lines().count() as f64,
            "lines",
        );
    }
    // DEL all, in ADD order, interleaved.
    let held: Vec<usize> = live.iter().map(Vec::len).collect();
    let mut queues: Vec<std::collections::VecDeque<_>> = live.into_iter().map(Into::into).collect();
    let mut i = 0;
    while queues.iter().any(|q| !q.is_empty()) {
        for k in 0..queues.len() {
            let idx = (i + k) % queues.len();
            let remaining = queues[idx].len();
            let Some((att, t, nst)) = queues[idx].pop_front() else {
                continue;
            };
            let p = &peers[idx].0;
            match del_tracked(&ctx.janitor, p, &att, t) {
                Ok(dt) => ctx.record(S5, p.part.label(), "DEL", i, remaining, ms(dt), "ms"),
                Err(e) => {
                    failure.get_or_insert(format!("DEL: {e}"));
                }
            }
            if let Err(e) = ctx.janitor.run(nst) {
                failure.get_or_insert(e);
            }
        }
        i += 1;
    }
    for (idx, (p, br)) in peers.iter().enumerate() {
        let ld = lease_dir_of(p);
        let bridge = (!use_ptp).then_some(br.as_str());
        record_leftovers(ctx, S5, p.part, 0, bridge, &[], ld.as_deref(), &p.nets);
        ctx.record(
            S5,
            p.part.label(),
            "containers",
            0,
            held[idx],
            held[idx] as f64,
            "count",
        );
    }
    if let Some(rs) = util::nft_ruleset() {
        ctx.record(
            S5,
            "node",
            "ruleset-lines",
            2,
            0,
            rs.lines().count() as f64,
            "lines",
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Scenario 7's addresses (198.18.248.0/21 is used by no test and no other
/// scenario): Ferry's network, Docker's bridge network, and the default
/// pools of ferryd and dockerd (unused: both networks name their subnet;
/// they keep the daemons off addresses outside the test ranges).
const S7_FERRY_NET: &str = "198.18.248.0/24";
const S7_DOCKER_NET: &str = "198.18.249.0/24";
const S7_FERRYD_POOL: &str = "base=198.18.250.0/24,size=24";
const S7_DOCKERD_POOL: &str = "base=198.18.251.0/24,size=24";

/// Ferry's node-wide tables, created by ferryd on first use and left when
/// its last endpoint goes (with the isolation elements of removed networks'
/// bridges, which the bench removes; tables it saw created, it deletes
/// when no other elements are in them: a ferryd of the test suite may be
/// using them).
const FERRY_TABLES: [(&str, &str); 4] = [
    ("inet", "ferry-portmap"),
    ("inet", "ferry-masq"),
    ("inet", "ferry-firewall"),
    ("bridge", "ferry-firewall"),
];

fn nft_table(family: &str, name: &str) -> Option<Value> {
    util::output("nft", &["-j", "list", "table", family, name])
        .and_then(|out| serde_json::from_str(&out).ok())
}

/// An element key in nft's syntax, and whether it names one of `bridges`.
fn nft_key(v: &Value, bridges: &[String]) -> (String, bool) {
    match v {
        Value::String(s) => (format!("\"{s}\""), bridges.contains(s)),
        Value::Object(o) if o.contains_key("concat") => {
            let parts: Vec<(String, bool)> = o["concat"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| nft_key(p, bridges))
                .collect();
            let text: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
            (text.join(" . "), parts.iter().any(|p| p.1))
        }
        other => (other.to_string(), false),
    }
}

/// Removes the elements of Ferry's sets and maps that name one of
/// `bridges`, then deletes the tables of `new` left without elements.
/// Returns the elements removed.
pub(crate) fn scrub_ferry_tables(
    bridges: &[String],
    new: &[(&str, &str)],
) -> Result<usize, String> {
    let mut removed = 0;
    for (family, table) in FERRY_TABLES {
        let Some(listing) = nft_table(family, table) else {
            continue;
        };
        let mut others = 0;
        for obj in listing["nftables"].as_array().into_iter().flatten() {
            let Some(set) = obj.get("set").or_else(|| obj.get("map")) else {
                continue;
            };
            let name = set["name"].as_str().unwrap_or_default();
            for elem in set["elem"].as_array().into_iter().flatten() {
                // A map element is [key, value]; a set element is the key.
                let key = match elem {
                    Value::Array(kv) => kv.first().unwrap_or(&Value::Null),
                    Value::Object(o) if o.contains_key("elem") => &o["elem"]["val"],
                    k => k,
                };
                let (text, ours) = nft_key(key, bridges);
                if !ours {
                    others += 1;
                    continue;
                }
                let arg = format!("{{ {text} }}");
                util::output("nft", &["delete", "element", family, table, name, &arg])
                    .ok_or_else(|| format!("nft delete element {family} {table} {name} {arg}"))?;
                removed += 1;
            }
        }
        if others == 0 && new.contains(&(family, table)) {
            util::output("nft", &["delete", "table", family, table])
                .ok_or_else(|| format!("nft delete table {family} {table}"))?;
        }
    }
    Ok(removed)
}

/// Ferry's tables that do not exist now.
fn missing_ferry_tables() -> Vec<(&'static str, &'static str)> {
    FERRY_TABLES
        .into_iter()
        .filter(|(f, t)| nft_table(f, t).is_none())
        .collect()
}

/// A daemon owned by the janitor (its drop stops it), shared with the scenario.
fn own_daemon<T: Send + Sync + 'static>(ctx: &Ctx, what: &str, d: T) -> (Arc<T>, Ticket) {
    let d = Arc::new(d);
    let held = Arc::clone(&d);
    let t = ctx
        .janitor
        .push(crate::cleanup::Stage::Daemon, what, move || {
            drop(held);
            Ok(())
        });
    (d, t)
}

/// One timed `docker run --rm --network NET IMAGE true`.
fn docker_run(d: &Dockerd, net: &str, image: &str) -> Result<Duration, String> {
    let mut cmd = d.command();
    cmd.args(["run", "--rm", "--network", net, image, "true"])
        .stdin(std::process::Stdio::null());
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("run docker: {e}"))?;
    let dt = t.elapsed();
    if out.status.success() {
        Ok(dt)
    } else {
        Err(format!(
            "docker run --rm on {net} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn docker_ok(d: &Dockerd, args: &str) -> Result<String, String> {
    match d.try_run(args) {
        (true, out) => Ok(out),
        (false, out) => Err(format!("docker {args}: {}", out.trim())),
    }
}

/// Scenario 7: CNM through Docker. The bench starts ferryd (under a driver
/// name of its own) and a private dockerd (its own data root, exec root,
/// pid file and socket; no default bridge, no iptables rules), makes a Ferry
/// network and a Docker bridge network, and times `docker run --rm` on each,
/// alternating every cycle after one untimed run each.
pub fn cnm(ctx: &Ctx) -> Result<(), String> {
    if !Path::new(DOCKERD).exists() {
        ctx.note(
            S7,
            format!("skipped: {DOCKERD} missing (apt-get install docker.io)"),
        );
        return Ok(());
    }
    if util::output("docker", &["--version"]).is_none() {
        ctx.note(
            S7,
            "skipped: no docker client in PATH (apt-get install docker.io)",
        );
        return Ok(());
    }
    let Some(ferryd_bin) = ctx.ferryd.clone() else {
        return Ok(()); // main noted why
    };
    // Docker's layers want a real filesystem: /var/tmp, as the tests do.
    let dir = PathBuf::from(format!("/var/tmp/ferry-bench-{}", ctx.tag));
    util::own_dir(&ctx.janitor, &dir);
    let driver = ctx.name("d");
    let bridges = vec![ctx.name("b7f"), ctx.name("b7d")];
    let new_tables = missing_ferry_tables();
    let scrub = {
        let (b, n) = (bridges.clone(), new_tables.clone());
        ctx.janitor.push(
            crate::cleanup::Stage::Link,
            "Ferry's nftables elements and tables",
            move || scrub_ferry_tables(&b, &n).map(|_| ()),
        )
    };
    let (ferryd, ferryd_t) = own_daemon(
        ctx,
        "ferryd",
        Ferryd::try_start(&ferryd_bin, &dir.join("ferryd"), &driver, &[S7_FERRYD_POOL])?,
    );
    let started = Dockerd::try_start(
        &dir.join("docker"),
        &["--default-address-pool", S7_DOCKERD_POOL],
    );
    let (docker, docker_t) = match started {
        Ok(d) => own_daemon(ctx, "dockerd", d),
        Err(e) => {
            drop(ferryd);
            ctx.janitor.run(ferryd_t)?;
            return Err(e);
        }
    };
    let measured = cnm_measure(ctx, &docker, &driver, &bridges);
    // Stop dockerd (it removes what is left while ferryd still answers),
    // then ferryd, then clear what ferryd left in its tables.
    drop(docker);
    drop(ferryd);
    let stopped = ctx
        .janitor
        .run(docker_t)
        .and_then(|_| ctx.janitor.run(ferryd_t));
    let scrubbed = scrub_ferry_tables(&bridges, &new_tables);
    ctx.janitor.forget(scrub);
    if let Ok(n @ 1..) = scrubbed {
        ctx.note(
            S7,
            format!(
                "ferryd left {n} element(s) naming its removed network's bridge in its nftables \
                 sets (isolation); the bench removed them"
            ),
        );
    }
    measured.and(stopped).and(scrubbed.map(|_| ()))
}

fn cnm_measure(
    ctx: &Ctx,
    docker: &Dockerd,
    driver: &str,
    bridges: &[String],
) -> Result<(), String> {
    let image = ctx.name("img");
    docker.try_import_busybox(&image)?;
    // (participant, network, bridge, subnet, `docker network create` arguments)
    let nets: Vec<(&str, String, String, &str, String)> = vec![
        (
            "ferry",
            ctx.name("7f"),
            bridges[0].clone(),
            S7_FERRY_NET,
            format!("-d {driver} --ipam-driver {driver}"),
        ),
        (
            "docker",
            ctx.name("7d"),
            bridges[1].clone(),
            S7_DOCKER_NET,
            "-d bridge".to_string(),
        ),
    ];
    for (_, net, bridge, subnet, how) in &nets {
        util::own_link(&ctx.janitor, bridge);
        docker_ok(
            docker,
            &format!(
                "network create {how} --subnet {subnet} -o com.docker.network.bridge.name={bridge} {net}"
            ),
        )?;
    }
    for (_, net, ..) in &nets {
        docker_run(docker, net, &image)?;
    }
    for c in 0..ctx.sizes.cnm_cycles {
        check_stop()?;
        for k in 0..nets.len() {
            let (part, net, ..) = &nets[(c + k) % nets.len()];
            let dt = docker_run(docker, net, &image)?;
            ctx.record(S7, part, "run", c, 0, ms(dt), "ms");
        }
    }
    for (part, net, bridge, subnet, _) in &nets {
        let containers = docker_ok(docker, &format!("ps -aq --filter network={net}"))?
            .lines()
            .count();
        docker_ok(docker, &format!("network rm {net}"))?;
        let nets: Vec<IpNet> = subnet.parse().into_iter().collect();
        let l = util::leftovers(None, &[], None, &nets, &ctx.rule_baseline());
        let links = usize::from(util::link_exists(bridge));
        for (op, n) in [
            ("leftover-links", links),
            ("leftover-rules", l.rules),
            ("leftover-containers", containers),
        ] {
            ctx.record(S7, part, op, 0, 0, n as f64, "count");
        }
        for d in l.detail.iter().take(5) {
            ctx.note(S7, format!("{part} leftover: {d}"));
        }
        if links > 0 {
            ctx.note(S7, format!("{part} leftover: bridge {bridge}"));
        }
    }
    Ok(())
}

/// Scenario 9's pool: a /18 (16,382 addresses, room for the default 10,000
/// requests) outside every range the bench routes, since ferryd refuses a
/// pool wider than a host route; only IPAM state is made here. ferryd's
/// default pool is the same addresses, unused (the request names its pool).
const S9_POOL: &str = "198.18.128.0/18";
const S9_FERRYD_POOL: &str = "base=198.18.128.0/18,size=24";

/// Scenario 9: CNM IPAM at scale. The bench starts ferryd (its own plugin
/// socket, API socket and state file, on disk under /var/tmp as a real
/// state file is), asks for one /18 pool, then sends `IpamDriver.RequestAddress`
/// `ipam_requests` times and `IpamDriver.ReleaseAddress` for each address,
/// one HTTP request per connection over the plugin socket, as Docker does.
/// The cost of a request must not grow with the addresses already taken.
pub fn ipam(ctx: &Ctx) -> Result<(), String> {
    let Some(bin) = ctx.ferryd.clone() else {
        return Ok(()); // main noted why
    };
    with_ferryd(ctx, &bin, "i9", S9_FERRYD_POOL, |f| ipam_measure(ctx, f))
}

/// Runs `f` against a private ferryd: driver `ctx.name(driver)`, its state
/// and API socket on disk under /var/tmp as a real state file is, `pool`
/// its default address pool. Stopped and its directory removed afterwards,
/// with Ferry's node-wide tables it created, unless another user of them
/// has elements in them (see [`scrub_ferry_tables`]).
pub(crate) fn with_ferryd(
    ctx: &Ctx,
    bin: &Path,
    driver: &str,
    pool: &str,
    f: impl FnOnce(&Arc<Ferryd>) -> Result<(), String>,
) -> Result<(), String> {
    let dir = PathBuf::from(format!("/var/tmp/ferry-bench-{}-{driver}", ctx.tag));
    let dir_t = util::own_dir(&ctx.janitor, &dir);
    let new_tables = missing_ferry_tables();
    let tables_t = ctx.janitor.push(
        crate::cleanup::Stage::Link,
        "Ferry's nftables tables",
        move || scrub_ferry_tables(&[], &new_tables).map(|_| ()),
    );
    let (ferryd, ferryd_t) = own_daemon(
        ctx,
        &format!("ferryd ({driver})"),
        Ferryd::try_start(bin, &dir, &ctx.name(driver), &[pool])?,
    );
    let measured = f(&ferryd);
    drop(ferryd);
    let stopped = ctx
        .janitor
        .run(ferryd_t)
        .and_then(|_| ctx.janitor.run(dir_t))
        .and_then(|_| ctx.janitor.run(tables_t));
    measured.and(stopped)
}

/// One IPAM call; an `Error` in the answer is an error.
fn ipam_call(f: &Ferryd, method: &str, body: Value) -> Result<Value, String> {
    let (status, v) = f.try_call(method, &body.to_string())?;
    match v["Error"].as_str() {
        Some(e) if !e.is_empty() => Err(format!("{method}: {e}")),
        _ if status != 200 => Err(format!("{method}: HTTP {status}: {v}")),
        _ => Ok(v),
    }
}

fn ipam_measure(ctx: &Ctx, f: &Ferryd) -> Result<(), String> {
    let n = ctx.sizes.ipam_requests;
    let pool = ipam_call(
        f,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "local", "Pool": S9_POOL}),
    )?;
    let id = pool["PoolID"]
        .as_str()
        .ok_or_else(|| format!("RequestPool: no PoolID in {pool}"))?
        .to_string();
    let mut addrs = Vec::with_capacity(n);
    for i in 0..n {
        if i % 256 == 0 {
            check_stop()?;
        }
        let t = Instant::now();
        let v = ipam_call(f, "IpamDriver.RequestAddress", json!({"PoolID": id}))?;
        ctx.record(S9, "ferry", "RequestAddress", i, i, ms(t.elapsed()), "ms");
        let a = v["Address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .ok_or_else(|| format!("RequestAddress: no Address in {v}"))?;
        addrs.push(a.to_string());
    }
    let distinct: BTreeSet<&String> = addrs.iter().collect();
    if distinct.len() != addrs.len() {
        return Err(format!(
            "RequestAddress handed out {} address(es) twice",
            addrs.len() - distinct.len()
        ));
    }
    for (i, a) in addrs.iter().enumerate() {
        if i % 256 == 0 {
            check_stop()?;
        }
        let t = Instant::now();
        ipam_call(
            f,
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": id, "Address": a}),
        )?;
        ctx.record(
            S9,
            "ferry",
            "ReleaseAddress",
            i,
            n - i,
            ms(t.elapsed()),
            "ms",
        );
    }
    ipam_call(f, "IpamDriver.ReleasePool", json!({"PoolID": id}))?;
    let (_, pools) = ferry_testkit::docker::try_http(&f.api_socket, "GET", "/pools", "")?;
    let left = pools.as_object().map(|o| o.len()).unwrap_or(0);
    ctx.record(S9, "ferry", "leftover-pools", 0, 0, left as f64, "count");
    Ok(())
}
