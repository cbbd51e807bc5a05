//! Scenario 10: the multi-host overlay. Two hosts (namespaces on an
//! underlay bridge 198.18.252.0/24), one etcd member on the first, a ferryd
//! per host (`ferry_testkit::cluster`), one overlay network
//! (198.18.253.0/24). Measured:
//! - convergence: from the start of an attach on host A to the first ping
//!   answered from host B, per attachment;
//! - etcd writes per attachment, block claims aside (etcd's revision before
//!   and after, minus the blocks claimed meanwhile);
//! - throughput of one TCP stream (iperf3, 3 s) container to container
//!   across the hosts, against raw VXLAN between the two host namespaces
//!   (a VXLAN pair made by hand on the same underlay);
//! - a CNI ADD through `ferry-overlay` (the plugin asks host A's ferryd)
//!   against a CNI ADD of Ferry's bridge + host-local, alternating;
//! - programming one remote endpoint (the overlay driver's `add_peer`: one
//!   FDB and one neighbour entry) on host A's network, from the first to
//!   the 3,000th peer (3 hosts × 1,000 endpoints), first 100 against last 100.

use crate::ctx::Ctx;
use crate::scenarios::S10;
use ferry_testkit::cluster::{endpoint_addrs, pings, wait_for, Cluster, Spec};
use ferry_testkit::sh_ok;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const UNDERLAY: &str = "198.18.252";
const SUBNET: &str = "198.18.253.0/24";
/// The hand-made VXLAN pair of the raw baseline.
const RAW: [&str; 2] = ["198.18.254.1", "198.18.254.2"];

pub fn overlay(ctx: &Ctx) -> Result<(), String> {
    let Some(ferryd) = ctx.ferryd.clone() else {
        return Ok(()); // main noted why
    };
    let mut c = Cluster::start(&Spec {
        underlay: UNDERLAY,
        hosts: 2,
        members: 1,
        ferryd: &ferryd,
        pool: "base=198.18.253.0/24,size=24",
    })?;
    c.hosts[0]
        .call(
            "POST",
            "/networks",
            &json!({"name": "bov", "driver": "overlay", "subnets": [SUBNET]}),
        )
        .and_then(ok)?;
    wait_for(Duration::from_secs(10), || {
        matches!(
            c.hosts[1].call("GET", "/networks/bov", &Value::Null),
            Ok((200, _))
        )
    })
    .map_err(|t| format!("the overlay network did not reach host 1 within {t:?}"))?;
    let watcher = c.sandbox(1, "bw");
    let w = c.hosts[1]
        .call(
            "POST",
            "/connect",
            &json!({"network": "bov", "sandbox": watcher}),
        )
        .and_then(ok)?;
    let (watcher_ip, _, _) = endpoint_addrs(&w);

    let rev_before = etcd_revision(&c)?;
    let blocks_before = blocks(&c)?;
    let n = ctx.sizes.overlay_attachments;
    let mut client = None;
    for i in 0..n {
        crate::cleanup::check_stop()?;
        let sb = c.sandbox(0, "bs");
        let t = Instant::now();
        let ep = c.hosts[0]
            .call(
                "POST",
                "/connect",
                &json!({"network": "bov", "sandbox": sb}),
            )
            .and_then(ok)?;
        let (ip, _, _) = endpoint_addrs(&ep);
        let answered = wait_for(Duration::from_secs(5), || pings(&watcher, &ip, 50))
            .map(|_| t.elapsed())
            .map_err(|w| format!("attachment {i} ({ip}) not reachable from host 1 after {w:?}"))?;
        ctx.record(S10, "ferry", "convergence", i, i, ms(answered), "ms");
        client = Some(sb);
    }
    let rev_after = etcd_revision(&c)?;
    let claimed = blocks(&c)?.saturating_sub(blocks_before);
    let writes = (rev_after - rev_before) as f64 - claimed as f64;
    ctx.record(
        S10,
        "ferry",
        "etcd-writes",
        0,
        n,
        writes / n.max(1) as f64,
        "writes",
    );

    // Throughput: container to container over the overlay, then raw VXLAN.
    let Some(client) = client else {
        return Err("no attachment was made".into());
    };
    let overlay_gbit = iperf(
        &format!("ip netns exec {watcher}"),
        &watcher_ip,
        &format!("ip netns exec {client}"),
    )?;
    ctx.record(S10, "ferry", "iperf3", 0, 0, overlay_gbit, "Gbit/s");
    cni_adds(ctx, &c)?;
    peers_at_scale(ctx, &c)?;
    raw_vxlan(&c)?;
    let raw_gbit = iperf(
        &format!("ip netns exec {}", c.hosts[1].ns),
        RAW[1],
        &format!("ip netns exec {}", c.hosts[0].ns),
    )?;
    ctx.record(S10, "raw-vxlan", "iperf3", 0, 0, raw_gbit, "Gbit/s");
    Ok(())
}

fn ok(r: (u16, Value)) -> Result<Value, String> {
    match r {
        (200, v) => Ok(v),
        (s, v) => Err(format!("HTTP {s}: {v}")),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// etcd's current revision, from its JSON gateway (one range request).
fn etcd_revision(c: &Cluster) -> Result<i64, String> {
    let out = c.hosts[0].sh(&format!(
        "curl -s -m 3 -X POST http://{}:2379/v3/kv/range -d '{{\"key\":\"AA==\"}}'",
        c.hosts[0].ip
    ));
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("etcd range {out:?}: {e}"))?;
    v["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .or_else(|| v["header"]["revision"].as_i64())
        .ok_or_else(|| format!("no revision in {v}"))
}

/// Blocks of the network in the store, through host 0's API.
fn blocks(c: &Cluster) -> Result<usize, String> {
    let (_, n) = c.hosts[0].call("GET", "/networks/bov", &Value::Null)?;
    // This host's own blocks; the other host's do not change here.
    Ok(n["blocks"].as_array().map(Vec::len).unwrap_or(0))
}

/// One TCP stream for 3 s from `client` to `server_ip` (iperf3 in `server`),
/// in Gbit/s.
fn iperf(server: &str, server_ip: &str, client: &str) -> Result<f64, String> {
    if !sh_ok("command -v iperf3 >/dev/null") {
        return Err("iperf3 is missing (Debian package iperf3)".into());
    }
    let _ = sh_ok(&format!("{server} iperf3 -s -1 -B {server_ip} -D -p 5299"));
    std::thread::sleep(Duration::from_millis(300));
    let out = ferry_testkit::sh(&format!("{client} iperf3 -c {server_ip} -p 5299 -t 3 -J"));
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("iperf3 output: {e}"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("no throughput in iperf3's answer: {out}"))
}

/// A VXLAN pair between the two host namespaces, by hand, on the same
/// underlay (removed with the hosts).
fn raw_vxlan(c: &Cluster) -> Result<(), String> {
    for (i, h) in c.hosts.iter().take(2).enumerate() {
        let remote = &c.hosts[1 - i].ip;
        let made = sh_ok(&format!(
            "ip -n {ns} link add vxraw type vxlan id 4242 local {local} remote {remote} \
             dstport 4790 dev ul0 && ip -n {ns} link set vxraw mtu 1450 up && \
             ip -n {ns} addr add {addr}/30 dev vxraw",
            ns = h.ns,
            local = h.ip,
            addr = RAW[i],
        ));
        if !made {
            return Err(format!("cannot make the raw VXLAN pair on {}", h.ns));
        }
    }
    Ok(())
}

/// ADD (timed) and DEL of `ferry-overlay` and of Ferry's bridge +
/// host-local, alternating, each in a new namespace.
fn cni_adds(ctx: &Ctx, c: &Cluster) -> Result<(), String> {
    use ferry_cni::runtime::{CniConfig, RuntimeConf};
    let Some(dir) = ctx.ferry_dir.clone() else {
        ctx.note(S10, "Ferry's plugins not available: CNI ADDs not measured");
        return Ok(());
    };
    let cache = ctx.work.join("cache-10");
    let data = ctx.work.join("data-10");
    for d in [&cache, &data] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let cni = CniConfig::new(vec![dir], cache);
    let overlay = crate::scenarios::conflist(
        &ctx.name("10o"),
        vec![json!({"type": "ferry-overlay", "network": "bov",
                    "apiSocket": c.hosts[0].api()})],
    )?;
    let bridge = ctx.name("b10");
    crate::util::own_link(&ctx.janitor, &bridge);
    let plain = crate::scenarios::conflist(
        &ctx.name("10b"),
        vec![
            json!({"type": "bridge", "bridge": bridge, "isGateway": true,
                    "ipam": {"type": "host-local", "subnet": "198.18.255.0/24",
                             "dataDir": data}}),
        ],
    )?;
    for i in 0..ctx.sizes.overlay_attachments.min(50) {
        crate::cleanup::check_stop()?;
        for (part, list) in [("ferry", &overlay), ("bridge", &plain)] {
            let ns = ctx.name(&format!("n10{}", &part[..1]));
            if !sh_ok(&format!("ip netns add {ns}")) {
                return Err(format!("cannot create namespace {ns}"));
            }
            let rt = RuntimeConf {
                container_id: format!("{}-10-{i}", ctx.tag),
                netns: format!("/run/netns/{ns}"),
                ifname: "eth0".into(),
                args: Vec::new(),
                capability_args: serde_json::Map::new(),
            };
            let t = Instant::now();
            let added = cni.add_network_list(list, &rt);
            let took = t.elapsed();
            let deleted = cni.del_network_list(&list.name, Some(list), &rt);
            let _ = sh_ok(&format!("ip netns del {ns}"));
            added.map_err(|e| format!("{part} ADD: {e}"))?;
            deleted.map_err(|e| format!("{part} DEL: {e}"))?;
            ctx.record(S10, part, "cni-ADD", i, 1, ms(took), "ms");
        }
    }
    Ok(())
}

/// `add_peer` timed for 3,000 remote endpoints on host A's overlay network,
/// in host A's namespace (addresses 198.19.160.0/20: kernel entries only,
/// no traffic; they go with the host's namespace).
fn peers_at_scale(ctx: &Ctx, c: &Cluster) -> Result<(), String> {
    use ferry_drivers::link::detach::Deleter;
    use ferry_drivers::network::overlay::{OverlayDriver, Peer};
    use ferry_drivers::network::{NetworkKind, NetworkSpec, OverlayConfig};
    let (_, n) = c.hosts[0].call("GET", "/networks/bov", &Value::Null)?;
    let vni = n["driver"]["vni"]
        .as_u64()
        .ok_or_else(|| format!("no VNI in {n}"))? as u32;
    let spec = NetworkSpec {
        id: n["id"].as_str().unwrap_or("bov").to_string(),
        kind: NetworkKind::Overlay(OverlayConfig {
            vni,
            bridge: n["bridge"].as_str().unwrap_or_default().to_string(),
            vxlan: format!("fx-{vni}"),
            local: c.hosts[0]
                .ip
                .parse()
                .map_err(|e| format!("host address: {e}"))?,
            port: ferry_drivers::network::VXLAN_PORT,
        }),
        mtu: None,
        gateways: Vec::new(),
        forwarding: false,
        masquerade: false,
    };
    let vtep: std::net::IpAddr = c.hosts[1].ip.parse().map_err(|e| format!("{e}"))?;
    let state_dir = ctx.work.join("state-10");
    let ns = ferry_linux::Netns::open(format!("/run/netns/{}", c.hosts[0].ns))
        .map_err(|e| format!("host namespace: {e}"))?;
    let times = ns
        .run(|| -> Result<Vec<f64>, String> {
            let driver = OverlayDriver::new(Deleter::Thread, state_dir);
            let mut times = Vec::with_capacity(3000);
            for i in 0u32..3000 {
                let ip = std::net::Ipv4Addr::from(
                    u32::from(std::net::Ipv4Addr::new(198, 19, 160, 0)) + i,
                );
                let b = (i + 1).to_be_bytes();
                let peer = Peer {
                    ip: ip.into(),
                    mac: ferry_linux::MacAddr([0x02, 0xfe, b[0], b[1], b[2], b[3]]),
                    vtep,
                };
                let t = Instant::now();
                driver
                    .add_peer(&spec, &peer)
                    .map_err(|e| format!("add_peer {i}: {e}"))?;
                times.push(ms(t.elapsed()));
            }
            Ok(times)
        })
        .map_err(|e| format!("enter host namespace: {e}"))??;
    for (i, t) in times.iter().enumerate() {
        ctx.record(S10, "ferry", "add-peer", i, i, *t, "ms");
    }
    Ok(())
}
