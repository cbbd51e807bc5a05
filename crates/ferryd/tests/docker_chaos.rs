//! ferryd killed with -9 five times, at random moments, while a real dockerd
//! starts 50 containers on two Ferry networks in parallel (issue 16, part 2).
//! Afterwards Docker's view and Ferry's agree: every endpoint Docker holds is
//! Ferry's with the same address and none other; every address Ferry's IPAM
//! holds is a gateway or a running container's, none handed out twice; every
//! port of the networks' bridges is an endpoint's host veth. Each container
//! runs with working networking (it pings its gateway and a neighbour) or its
//! `docker run` failed with an error. Removing everything leaves no endpoint,
//! pool, bridge, veth, nftables element or driver bookkeeping behind; no
//! pair of Ferry's Docker door (`vethXXXXXXXX@ctrXXXXXXXX`) is left on the
//! host, after the kill rounds or after removal.
//! Addresses: 198.19.24.0/21 and fd00:1924::/48.

use ferry_testkit::docker::{Dockerd, Ferryd};
use ferry_testkit::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONTAINERS: usize = 50;
const KILLS: usize = 5;
/// ferryd's `--unclaimed-address-grace` here (120 s by default).
const GRACE: Duration = Duration::from_secs(4);
/// ferryd's `--stray-endpoint-grace` here (120 s by default): longer than
/// any container's start in this test (50 at once on a loaded CI machine
/// took up to 15 s; a 4 s grace deleted endpoints whose containers were
/// still starting), so the sweep only takes endpoints Docker abandoned.
const ENDPOINT_GRACE: Duration = Duration::from_secs(30);
/// Two networks, the containers alternating between them.
const NETWORKS: [(&str, &str); 2] = [
    ("dla", "--subnet 198.19.24.0/24"),
    (
        "dlb",
        "--ipv6 --subnet 198.19.25.0/24 --subnet fd00:1924:25::/64",
    ),
];

/// A small xorshift generator: the seed is printed, so a failing run can be
/// repeated with `FERRY_CHAOS_SEED`.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The addresses (without prefix) of Ferry's endpoints, by endpoint ID.
fn ferry_endpoints(ferryd: &Ferryd) -> BTreeMap<String, Value> {
    ferryd
        .api("/endpoints")
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["id"].as_str().unwrap_or_default().to_string(), e.clone()))
        .collect()
}

fn addr(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.is_empty())
        .map(|s| s.split('/').next().unwrap_or(s).to_string())
}

/// Ferry's Docker-door pairs on the host (`vethXXXXXXXX` whose peer
/// `ctrXXXXXXXX` is still there) that are outside any bridge, on one of
/// `bridges`, or an endpoint's (`veths`): pairs on other bridges are other
/// tests'.
fn stray_pairs(bridges: &BTreeMap<&str, String>, veths: &BTreeSet<String>) -> Vec<FerryHostPair> {
    ferry_host_pairs(None)
        .into_iter()
        .filter(|p| {
            p.master
                .as_ref()
                .is_none_or(|m| bridges.values().any(|b| b == m))
                || veths.contains(&p.host)
        })
        .collect()
}

#[test]
fn fifty_docker_runs_survive_five_kill_9_of_ferryd() {
    require_root();
    let seed = std::env::var("FERRY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("FERRY_CHAOS_SEED={seed}");
    let dir = tempfile::Builder::new()
        .prefix("ferry-dl")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let name = format!("dl{}", std::process::id());
    // Addresses lost with a killed request are released after GRACE.
    let ferryd = Ferryd::try_start_with(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &name,
        &["base=198.19.28.0/22,size=24", "base=fd00:1924::/48,size=64"],
        &[
            "--unclaimed-address-grace",
            &GRACE.as_secs().to_string(),
            "--stray-endpoint-grace",
            &ENDPOINT_GRACE.as_secs().to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let _forward = forward_rule_guard();
    let mut cleanup = Cleanup::default();
    // Ferry's node-wide tables, created on first use, go with the test.
    cleanup.push(ferry_testkit::remove_idle_ferry_tables);
    let docker = Dockerd::start(&dir.path().join("docker"));
    docker.import_busybox("ferrybox");
    let mut bridges = BTreeMap::new();
    for (net, extra) in NETWORKS {
        docker.run(&format!(
            "network create -d {name} --ipam-driver {name} {extra} {net}"
        ));
        let id = docker.run(&format!("network inspect -f '{{{{.Id}}}}' {net}"));
        let bridge = format!("fr-{}", &id[..12]);
        // The test removes it; this guard acts only when it fails halfway.
        cleanup.link(&bridge);
        bridges.insert(net, bridge);
    }

    // 50 `docker run -d` at once, and ferryd killed at random moments meanwhile.
    let docker = Arc::new(docker);
    let running = Arc::new(AtomicUsize::new(CONTAINERS));
    let runs: Vec<_> = (0..CONTAINERS)
        .map(|i| {
            let docker = docker.clone();
            let running = running.clone();
            std::thread::spawn(move || {
                let net = NETWORKS[i % NETWORKS.len()].0;
                let r = docker.try_run(&format!(
                    "run -d --name dlc{i} --net {net} ferrybox sleep 3600"
                ));
                running.fetch_sub(1, Ordering::SeqCst);
                r
            })
        })
        .collect();
    let mut ferryd = ferryd;
    let mut rng = Rng(seed);
    let mut kills = Vec::new();
    let start = Instant::now();
    for _ in 0..KILLS {
        // The first kill within a second; the runs take several seconds each.
        std::thread::sleep(Duration::from_millis(100 + rng.below(1200)));
        kills.push((start.elapsed().as_millis(), running.load(Ordering::SeqCst)));
        ferryd.kill9();
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        ferryd.spawn();
    }
    let results: Vec<(bool, String)> = runs
        .into_iter()
        .map(|t| t.join().expect("a docker run thread"))
        .collect();
    let took = start.elapsed();
    let docker = Arc::try_unwrap(docker).unwrap_or_else(|_| panic!("docker still shared"));
    let failed: Vec<(usize, &String)> = results
        .iter()
        .enumerate()
        .filter(|(_, (ok, _))| !ok)
        .map(|(i, (_, out))| (i, out))
        .collect();
    eprintln!(
        "{CONTAINERS} docker runs in {took:?}; kills at (ms, runs in flight): {kills:?}; {} failed",
        failed.len()
    );
    assert!(
        kills.iter().filter(|(_, n)| *n > 0).count() >= 3,
        "most kills should land while runs are in flight: {kills:?}"
    );
    for (i, out) in &failed {
        eprintln!("dlc{i} failed: {}", out.trim());
        assert!(
            out.contains("Error") && !out.trim().is_empty(),
            "dlc{i} failed without a clear error: {out:?}"
        );
    }

    // Docker's view: each container's state and address on its network.
    // Ferry's endpoints that a killed request left (a CreateEndpoint whose
    // answer and rollback were both lost) go with ferryd's endpoint sweep
    // (ENDPOINT_GRACE, checked every second): wait for it, as for addresses
    // below.
    let docker_ids = || -> BTreeSet<String> {
        NETWORKS
            .iter()
            .flat_map(|(net, _)| {
                let inspect = json(&docker.run(&format!("network inspect {net}")));
                inspect[0]["Containers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(_, c)| c["EndpointID"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let deadline = Instant::now() + ENDPOINT_GRACE + Duration::from_secs(5);
    let orphans = || -> Vec<String> {
        let known = docker_ids();
        ferry_endpoints(&ferryd)
            .into_keys()
            .filter(|e| !known.contains(e))
            .collect()
    };
    while !orphans().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let ferry = ferry_endpoints(&ferryd);
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut docker_eps = BTreeSet::new();
    let mut by_net: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (net, _) in NETWORKS {
        let inspect = json(&docker.run(&format!("network inspect {net}")));
        let info = &inspect[0];
        let id = info["Id"].as_str().unwrap_or_default();
        // Docker shows a remote IPAM's gateway only when it was given: ask Ferry.
        for n in ferryd.api("/networks").as_array().into_iter().flatten() {
            if n["id"] != id {
                continue;
            }
            for d in n["ipv4"]
                .as_array()
                .into_iter()
                .chain(n["ipv6"].as_array())
                .flatten()
            {
                if let Some(gw) = addr(&d["Gateway"]) {
                    used.entry(gw).or_default().push(format!("{net} gateway"));
                }
            }
        }
        for (cid, c) in info["Containers"].as_object().into_iter().flatten() {
            let ep = c["EndpointID"].as_str().unwrap_or_default().to_string();
            let cname = c["Name"].as_str().unwrap_or_default().to_string();
            let mine = ferry.get(&ep).unwrap_or_else(|| {
                panic!("Docker's endpoint {ep} of {cname} on {net} is not Ferry's")
            });
            for (dkey, fkey) in [("IPv4Address", "address"), ("IPv6Address", "address_v6")] {
                assert_eq!(
                    addr(&c[dkey]),
                    addr(&mine[fkey]),
                    "{cname} on {net}: Docker says {dkey} {}, Ferry {fkey} {}",
                    c[dkey],
                    mine[fkey]
                );
                if let Some(a) = addr(&c[dkey]) {
                    used.entry(a).or_default().push(cname.clone());
                }
            }
            docker_eps.insert(ep);
            by_net
                .entry(net)
                .or_default()
                .push((cname, addr(&c["IPv4Address"]).unwrap_or_default()));
            let _ = cid;
        }
    }
    let orphans: Vec<&String> = ferry.keys().filter(|e| !docker_eps.contains(*e)).collect();
    assert!(
        orphans.is_empty(),
        "Ferry holds endpoints Docker does not know: {orphans:?}"
    );
    let twice: Vec<_> = used.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(twice.is_empty(), "addresses handed out twice: {twice:?}");

    // Ferry's IPAM holds exactly the gateways and the containers' addresses,
    // once those a killed request left are swept (GRACE, checked every second).
    let held = || {
        let mut held = BTreeSet::new();
        for pool in ferryd.api("/pools").as_object().into_iter().flatten() {
            for a in pool.1["allocated"].as_array().into_iter().flatten() {
                held.insert(a.as_str().unwrap_or_default().to_string());
            }
        }
        held
    };
    let deadline = Instant::now() + GRACE * 3 + Duration::from_secs(2);
    while held().iter().any(|a| !used.contains_key(a)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let held = held();
    let leaked: Vec<&String> = held.iter().filter(|a| !used.contains_key(*a)).collect();
    assert!(
        leaked.is_empty(),
        "addresses Ferry holds for no container or gateway: {leaked:?}"
    );
    let unheld: Vec<&String> = used.keys().filter(|a| !held.contains(*a)).collect();
    assert!(
        unheld.is_empty(),
        "addresses in use that Ferry's IPAM does not hold: {unheld:?}"
    );

    // Every bridge port is an endpoint's host veth.
    let veths: BTreeSet<String> = ferry
        .values()
        .filter_map(|e| e["host_veth"].as_str().map(str::to_string))
        .collect();
    for bridge in bridges.values() {
        let stray: Vec<String> = bridge_ports(bridge)
            .into_iter()
            .filter(|p| !veths.contains(p))
            .collect();
        assert!(
            stray.is_empty(),
            "ports of {bridge} without an endpoint: {stray:?}"
        );
    }
    // No pair of Ferry's Docker door is left on the host: every running
    // container has its end, the failed ones' pairs went with their endpoints,
    // and none is outside a bridge (a kill between making a pair and
    // enslaving it left those; a restart sweeps them).
    let stray = stray_pairs(&bridges, &veths);
    assert!(
        stray.is_empty(),
        "Ferry's veth pairs on the host after the kill rounds: {stray:?}"
    );

    // Docker's containers: running ones are on Ferry, the others have no endpoint.
    let states = docker.run("ps -a --format '{{.Names}} {{.State}}'");
    let up: BTreeSet<&str> = states
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, s)| *s == "running")
        .map(|(n, _)| n)
        .collect();
    let attached: BTreeSet<&str> = by_net.values().flatten().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        up, attached,
        "running containers and containers on Ferry's networks differ"
    );
    for (i, (ok, out)) in results.iter().enumerate() {
        let c = format!("dlc{i}");
        assert_eq!(
            *ok,
            up.contains(c.as_str()),
            "{c}: docker run said ok={ok} ({}) but its state is {:?}",
            out.trim(),
            states.lines().find(|l| l.starts_with(&format!("{c} ")))
        );
    }

    // Working networking: each running container pings its gateway and the
    // next container on its network (a few at a time).
    let mut checks = Vec::new();
    for (net, members) in &by_net {
        let gw = if *net == "dla" {
            "198.19.24.1"
        } else {
            "198.19.25.1"
        };
        for (k, (c, _)) in members.iter().enumerate() {
            let peer = &members[(k + 1) % members.len()].1;
            checks.push((
                c.clone(),
                format!("ping -c1 -W2 {gw} && ping -c1 -W2 {peer}"),
            ));
        }
    }
    let docker = Arc::new(docker);
    for chunk in checks.chunks(10) {
        let threads: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(c, cmd)| {
                let docker = docker.clone();
                std::thread::spawn(move || (docker.try_run(&format!("exec {c} sh -c '{cmd}'")), c))
            })
            .collect();
        for t in threads {
            let ((ok, out), c) = t.join().expect("a ping thread");
            assert!(ok, "{c} has no working network: {out}");
        }
    }
    let docker = Arc::try_unwrap(docker).unwrap_or_else(|_| panic!("docker still shared"));

    // Remove everything: nothing of Ferry's is left.
    let _ = docker.try_run("rm -f $(docker ps -aq)");
    for (i, (net, _)) in NETWORKS.iter().enumerate() {
        if docker.try_run(&format!("network rm {net}")).0 {
            continue;
        }
        // A `docker run` whose rollback reached a killed ferryd leaves its
        // endpoint in dockerd's store (dockerd keeps what its driver did not
        // delete), listed under no container. The operator's fix is
        // `disconnect -f` by the endpoint's name (the container's), which
        // asks ferryd again: every name a run of this network had, a few
        // times (dockerd may still be finishing a removal). Ferry's side is
        // checked below.
        let names: Vec<String> = (0..CONTAINERS)
            .filter(|k| k % NETWORKS.len() == i)
            .map(|k| format!("dlc{k}"))
            .collect();
        let mut removed = (false, String::new());
        for _ in 0..5 {
            for name in &names {
                let (ok, out) = docker.try_run(&format!("network disconnect -f {net} {name}"));
                if ok {
                    eprintln!("disconnect -f {net} {name}: {}", out.trim());
                }
            }
            removed = docker.try_run(&format!("network rm {net}"));
            if removed.0 {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        assert!(
            removed.0,
            "`docker network rm {net}` failed: {}; dockerd lists: {}",
            removed.1,
            docker.run(&format!("network inspect {net}"))
        );
    }
    assert_eq!(
        ferryd.api("/endpoints"),
        serde_json::json!([]),
        "endpoints left"
    );
    assert_eq!(
        ferryd.api("/networks"),
        serde_json::json!([]),
        "networks left"
    );
    assert_eq!(ferryd.api("/pools"), serde_json::json!({}), "pools left");
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = || -> Vec<String> {
        let mut v: Vec<String> = bridges
            .values()
            .chain(&veths)
            .filter(|l| !host_links(l).iter().all(|x| x != *l))
            .cloned()
            .collect();
        v.sort();
        v
    };
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(left().is_empty(), "links left: {:?}", left());
    let stray = stray_pairs(&bridges, &veths);
    assert!(
        stray.is_empty(),
        "Ferry's veth pairs on the host after removal: {stray:?}"
    );
    let ruleset = sh("nft list ruleset");
    let mine: Vec<&str> = ruleset
        .lines()
        .filter(|l| {
            l.contains("198.19.24.")
                || l.contains("198.19.25.")
                || l.contains("fd00:1924:")
                || bridges.values().any(|b| l.contains(b.as_str()))
        })
        .collect();
    assert!(mine.is_empty(), "nftables entries left: {mine:?}");
    let bookkeeping = sh(&format!(
        "find {} -type f -name '*.json'",
        dir.path().join("drivers").display()
    ));
    assert!(
        bookkeeping.trim().is_empty(),
        "driver bookkeeping left: {bookkeeping}"
    );
    drop(cleanup);
}
