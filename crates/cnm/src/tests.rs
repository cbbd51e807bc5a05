//! The controller's unit tests: no root, no namespaces, the driver layer
//! replaced by the recording fake of [`crate::fake`].

use crate::fake::Fake;
use crate::ipam::DefaultPool;
use crate::sandbox::{Connect, NetworkCreate};
use crate::{wire, CnmError, Controller, ControllerConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) struct Setup {
    dir: tempfile::TempDir,
    pub fake: Fake,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("temp dir"),
            fake: Fake::default(),
        }
    }

    pub fn open(&self) -> Controller {
        let config = ControllerConfig {
            state_path: self.dir.path().join("ferryd.redb"),
            default_pools: vec![
                DefaultPool::parse("base=198.18.64.0/20,size=24").expect("pool"),
                DefaultPool::parse("base=fd00:64::/48,size=64").expect("pool"),
            ],
        };
        Controller::open(config, Arc::new(self.fake.clone())).expect("open")
    }

    /// A controller of host h1 in a cluster on the embedded store.
    pub fn open_clustered(&self) -> (Controller, Arc<dyn ferry_cluster::ClusterStore>) {
        let store = ferry_cluster::open(
            None,
            &self.dir.path().join("cluster.redb"),
            "h1",
            ferry_cluster::DEFAULT_TTL,
        )
        .expect("embedded cluster store");
        let mut c = self.open();
        c.set_cluster(crate::overlay::Cluster {
            store: store.clone(),
            host: "h1".into(),
            vtep: "198.18.100.1".parse().expect("ip"),
        });
        (c, store)
    }
}

fn net(c: &mut Controller, name: &str, subnet: &str) -> crate::Network {
    c.create_named_network(&NetworkCreate {
        name: name.into(),
        subnets: vec![subnet.into()],
        ..NetworkCreate::default()
    })
    .expect("create network")
}

fn connect(c: &mut Controller, network: &str, sandbox: &str, priority: i32) -> crate::Endpoint {
    c.connect(&Connect {
        network: network.into(),
        sandbox: sandbox.into(),
        ifname: None,
        priority,
        aliases: Vec::new(),
    })
    .expect("connect")
}

fn allocated(c: &Controller) -> usize {
    c.ipam().pools.values().map(|p| p.allocated.len()).sum()
}

#[test]
fn create_and_connect_go_through_the_driver() {
    let s = Setup::new();
    let mut c = s.open();
    let n = net(&mut c, "web", "198.18.70.0/24");
    assert!(s.fake.world().networks.contains(&n.id));
    assert_eq!(n.gateways().len(), 1, "a gateway from the pool");
    c.create_sandbox("app", None).expect("sandbox");
    assert!(s.fake.world().namespaces.contains("/run/netns/app"));
    let ep = connect(&mut c, "web", "app", 0);
    assert_eq!(ep.ifname.as_deref(), Some("eth0"));
    let addr = ep.address.expect("an IPv4 address");
    assert!(addr.to_string().starts_with("198.18.70."), "{addr}");
    let w = s.fake.world();
    // Created under a temporary name in the sandbox, joined as eth0 with its address.
    let key = ("/run/netns/app".to_string(), "eth0".to_string());
    assert_eq!(w.links.get(&key), Some(&ep.id));
    assert_eq!(w.addresses.get(&key), Some(&vec![addr]));
    let routes = &w.routes["/run/netns/app"];
    let default = routes.values().next().expect("a default route");
    assert_eq!(default.ifname, "eth0");
    assert_eq!(default.gateway, Some(n.gateways()[0].addr()));
    // Not Docker's: never a candidate of the endpoint sweep.
    assert!(c.docker_container_ends().is_empty());
}

#[test]
fn disconnect_and_removal_undo_everything() {
    let s = Setup::new();
    let mut c = s.open();
    net(&mut c, "web", "198.18.71.0/24");
    c.create_sandbox("app", None).expect("sandbox");
    connect(&mut c, "web", "app", 0);
    assert_eq!(allocated(&c), 2, "gateway + endpoint");
    c.disconnect("web", "app").expect("disconnect");
    assert_eq!(allocated(&c), 1, "the endpoint's address is released");
    assert!(s.fake.world().links.is_empty());
    c.remove_sandbox("app").expect("remove sandbox");
    c.remove_named_network("web").expect("remove network");
    let w = s.fake.world();
    assert!(w.namespaces.is_empty() && w.networks.is_empty());
    drop(w);
    assert!(c.ipam().pools.is_empty(), "the pool is released");
}

#[test]
fn swap_replaces_the_interface_under_its_name() {
    let s = Setup::new();
    let mut c = s.open();
    net(&mut c, "a", "198.18.72.0/24");
    net(&mut c, "b", "198.18.73.0/24");
    c.create_sandbox("app", None).expect("sandbox");
    let old = connect(&mut c, "a", "app", 0);
    s.fake.world().log.clear();
    let new = c.swap("app", "a", "b").expect("swap");
    assert_eq!(new.ifname.as_deref(), Some("eth0"));
    assert!(new
        .address
        .expect("v4")
        .to_string()
        .starts_with("198.18.73."));
    // The new interface exists before the old one goes, and takes its name after.
    let ops = s.fake.ops();
    let pos = |op: &str| ops.iter().position(|o| o == op).expect(op);
    assert!(pos("create_endpoint") < pos("delete_endpoint"), "{ops:?}");
    assert!(pos("delete_endpoint") < pos("join"), "{ops:?}");
    let w = s.fake.world();
    let key = ("/run/netns/app".to_string(), "eth0".to_string());
    assert_eq!(w.links.get(&key), Some(&new.id));
    assert!(!w.links.values().any(|id| *id == old.id));
}

#[test]
fn a_failed_swap_leaves_the_sandbox_where_it_was() {
    let s = Setup::new();
    let mut c = s.open();
    net(&mut c, "a", "198.18.74.0/24");
    net(&mut c, "b", "198.18.75.0/24");
    c.create_sandbox("app", None).expect("sandbox");
    let old = connect(&mut c, "a", "app", 0);
    let before = allocated(&c);
    s.fake.fail("create_endpoint");
    assert!(c.swap("app", "a", "b").is_err());
    s.fake.heal();
    assert_eq!(allocated(&c), before, "b's address is given back");
    let eps = c.sandbox_endpoints("app");
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].id, old.id, "still on a");
}

#[test]
fn a_driver_failing_halfway_is_rolled_back() {
    let s = Setup::new();
    let mut c = s.open();
    net(&mut c, "web", "198.18.76.0/24");
    c.create_sandbox("app", None).expect("sandbox");
    let before = allocated(&c);
    // The interface is made, then joining it fails: it must go again.
    s.fake.fail("join");
    let err = c
        .connect(&Connect {
            network: "web".into(),
            sandbox: "app".into(),
            ..Connect::default()
        })
        .expect_err("join fails");
    assert!(err.to_string().contains("fake: join fails"), "{err}");
    s.fake.heal();
    assert_eq!(allocated(&c), before, "the address is released");
    assert!(c.sandbox_endpoints("app").is_empty());
    let ops = s.fake.ops();
    assert!(ops.contains(&"delete_endpoint".to_string()), "{ops:?}");
    assert!(s.fake.world().links.is_empty(), "no interface left");
    // A network the driver cannot make is not recorded.
    s.fake.fail("create_network");
    assert!(c
        .create_named_network(&NetworkCreate {
            name: "broken".into(),
            subnets: vec!["198.18.77.0/24".into()],
            ..NetworkCreate::default()
        })
        .is_err());
    s.fake.heal();
    assert!(c.network_by_name("broken").is_err());
    assert!(
        !c.ipam()
            .pools
            .values()
            .any(|p| p.subnet.to_string() == "198.18.77.0/24"),
        "its pool is released"
    );
}

#[test]
fn arbitration_installs_the_winner_and_records_the_contest() {
    let s = Setup::new();
    let mut c = s.open();
    let a = net(&mut c, "a", "198.18.78.0/24");
    let b = net(&mut c, "b", "198.18.79.0/24");
    c.create_sandbox("app", None).expect("sandbox");
    connect(&mut c, "a", "app", 0);
    connect(&mut c, "b", "app", 10);
    let default = "0.0.0.0/0".parse().expect("prefix");
    let route = s.fake.world().routes["/run/netns/app"][&default].clone();
    assert_eq!(route.ifname, "eth1", "b has the higher priority");
    assert_eq!(route.gateway, Some(b.gateways()[0].addr()));
    let sb = c.sandbox("app").expect("sandbox").clone();
    assert_eq!(sb.conflicts.len(), 1, "{:?}", sb.conflicts);
    assert!(sb.conflicts[0].starts_with("0.0.0.0/0: b (priority 10"));
    // Once b leaves, a's route wins back.
    c.disconnect("b", "app").expect("disconnect");
    let route = s.fake.world().routes["/run/netns/app"][&default].clone();
    assert_eq!(route.ifname, "eth0");
    assert_eq!(route.gateway, Some(a.gateways()[0].addr()));
    assert!(c.sandbox("app").expect("sandbox").conflicts.is_empty());
}

#[test]
fn everything_is_back_after_a_restart() {
    let s = Setup::new();
    let ep = {
        let mut c = s.open();
        net(&mut c, "web", "198.18.80.0/24");
        c.create_sandbox("app", None).expect("sandbox");
        connect(&mut c, "web", "app", 5)
    };
    // A new controller on the same state file: what ferryd does after kill -9.
    let mut c = s.open();
    let sb = c.sandbox("app").expect("the sandbox is reloaded").clone();
    assert!(sb.created);
    let eps = c.sandbox_endpoints("app");
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].id, ep.id);
    assert_eq!(eps[0].priority, 5);
    // And it can be worked with: connect more, disconnect, remove.
    net(&mut c, "db", "198.18.81.0/24");
    let second = connect(&mut c, "db", "app", 0);
    assert_eq!(second.ifname.as_deref(), Some("eth1"));
    c.swap("app", "db", "web").expect_err("already on web");
    c.remove_sandbox("app").expect("remove");
    assert!(s.fake.world().links.is_empty());
    assert!(s.fake.world().namespaces.is_empty());
}

#[test]
fn docker_endpoints_stay_on_the_host_for_docker_to_move() {
    let s = Setup::new();
    let mut c = s.open();
    let id = "a".repeat(64);
    c.create_network(&wire::CreateNetwork {
        network_id: id.clone(),
        options: BTreeMap::new(),
        ipv4_data: vec![wire::IpamData {
            pool: "198.18.82.0/24".into(),
            gateway: "198.18.82.1/24".into(),
            ..wire::IpamData::default()
        }],
        ipv6_data: Vec::new(),
    })
    .expect("create");
    let ep_id = "b".repeat(64);
    let created = c
        .create_endpoint(&wire::CreateEndpoint {
            network_id: id.clone(),
            endpoint_id: ep_id.clone(),
            interface: Some(wire::EndpointInterface {
                address: "198.18.82.2/24".into(),
                ..Default::default()
            }),
            options: BTreeMap::new(),
        })
        .expect("endpoint");
    let mac = created.interface.expect("the driver's MAC").mac_address;
    assert!(!mac.is_empty());
    let join = c
        .join(&wire::Join {
            network_id: id.clone(),
            endpoint_id: ep_id.clone(),
            sandbox_key: "/var/run/docker/netns/x".into(),
            options: BTreeMap::new(),
        })
        .expect("join");
    let src = join.interface_name.expect("an interface").src_name;
    assert!(s
        .fake
        .world()
        .links
        .contains_key(&("host".to_string(), src.clone())));
    assert_eq!(join.gateway, "198.18.82.1");
    // The endpoint sweep's candidates: Docker's endpoint, by the name its
    // container end has outside the container.
    assert_eq!(
        c.docker_container_ends(),
        vec![(id.clone(), ep_id.clone(), src.clone())]
    );
    let r = wire::EndpointRef {
        network_id: id.clone(),
        endpoint_id: ep_id.clone(),
    };
    c.leave(&r).expect("leave");
    c.delete_endpoint(&r).expect("delete");
    assert!(c.docker_container_ends().is_empty());
    c.delete_endpoint(&r).expect("a replay is fine");
    c.delete_network(&id).expect("delete network");
    assert!(s.fake.world().links.is_empty());
    assert!(s.fake.world().networks.is_empty());
}

#[test]
fn the_host_driver_refuses_a_sandbox_of_its_own() {
    let s = Setup::new();
    let mut c = s.open();
    c.create_named_network(&NetworkCreate {
        name: "h".into(),
        driver: Some("host".into()),
        ..NetworkCreate::default()
    })
    .expect("host network");
    c.create_sandbox("own", None).expect("sandbox");
    let err = c
        .connect(&Connect {
            network: "h".into(),
            sandbox: "own".into(),
            ..Connect::default()
        })
        .expect_err("refused");
    assert!(matches!(err, CnmError::Invalid(_)), "{err}");
}

#[test]
fn overlay_networks_live_in_the_cluster_store() {
    let s = Setup::new();
    let (mut c, store) = s.open_clustered();
    let n = c
        .create_named_network(&NetworkCreate {
            name: "ov".into(),
            driver: Some("overlay".into()),
            subnets: vec!["198.18.96.0/24".into()],
            ..NetworkCreate::default()
        })
        .expect("overlay network");
    let rec = store.networks().expect("networks");
    assert_eq!(rec.len(), 1);
    assert!(rec[0].vni > 0, "a VNI from the store");
    // This host claimed a /26 and holds the gateway in it.
    assert_eq!(n.blocks, vec!["198.18.96.0/26".parse().expect("net")]);
    assert_eq!(n.gateways(), vec!["198.18.96.1/24".parse().expect("net")]);
    c.create_sandbox("app", None).expect("sandbox");
    let ep = connect(&mut c, "ov", "app", 0);
    let addr = ep.address.expect("an address");
    assert_eq!(addr.to_string(), "198.18.96.2/24", "from this host's block");
    let published = store.endpoints(Some("ov")).expect("endpoints");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].ip, addr.addr());
    assert_eq!(published[0].host, "h1");
    assert_eq!(published[0].mac, ep.mac);
    // 61 more fill the block; the next one claims a second block.
    for i in 0..62 {
        let name = format!("s{i}");
        c.create_sandbox(&name, None).expect("sandbox");
        connect(&mut c, "ov", &name, 0);
    }
    let n = c.network_by_name("ov").expect("ov").clone();
    assert_eq!(n.blocks.len(), 2, "{:?}", n.blocks);
    assert_eq!(store.blocks("ov").expect("blocks").len(), 2);
    c.disconnect("ov", "app").expect("disconnect");
    assert!(!store
        .endpoints(Some("ov"))
        .expect("endpoints")
        .iter()
        .any(|e| e.ip == addr.addr()));
}

/// A Docker request as dockerd sends it.
fn docker<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a request")
}

#[test]
fn docker_networks_join_overlay_networks() {
    use serde_json::json;
    let s = Setup::new();
    let (mut c, store) = s.open_clustered();
    c.create_named_network(&NetworkCreate {
        name: "ov".into(),
        driver: Some("overlay".into()),
        subnets: vec!["198.18.96.0/24".into()],
        ..NetworkCreate::default()
    })
    .expect("overlay network");
    c.create_sandbox("app", None).expect("sandbox");
    assert_eq!(
        connect(&mut c, "ov", "app", 0).address,
        Some("198.18.96.2/24".parse().expect("net"))
    );
    // Docker's IPAM: the pool of the overlay's subnet hands out this host's
    // gateway and addresses of its block that Ferry has not.
    let pool = c
        .request_pool(&docker(
            json!({"AddressSpace": "local", "Pool": "198.18.96.0/24"}),
        ))
        .expect("pool");
    let address = |c: &mut Controller, gateway: bool| {
        let options = if gateway {
            json!({"RequestAddressType": "com.docker.network.gateway"})
        } else {
            json!({})
        };
        c.request_address(&docker(json!({"PoolID": pool.pool_id, "Options": options})))
            .expect("address")
            .address
    };
    assert_eq!(address(&mut c, true), "198.18.96.1/24");
    let id = "d".repeat(64);
    let generic = |name: Option<&str>| {
        let mut g = json!({"ferry.driver": "overlay"});
        if let Some(n) = name {
            g["ferry.network"] = json!(n);
        }
        json!({ "com.docker.network.generic": g })
    };
    let create = |network: &str, pool: &str, name: Option<&str>| -> wire::CreateNetwork {
        docker(json!({
            "NetworkID": network,
            "Options": generic(name),
            "IPv4Data": [{"AddressSpace": "local", "Pool": pool, "Gateway": "198.18.96.1/24"}],
        }))
    };
    c.create_network(&create(&id, "198.18.96.0/24", Some("ov")))
        .expect("Docker's network joins ov");
    c.create_network(&create(&id, "198.18.96.0/24", Some("ov")))
        .expect("a replay");
    // Without ferry.network, the subnet names the network.
    let other = "e".repeat(64);
    c.create_network(&create(&other, "198.18.96.0/24", None))
        .expect("found by subnet");
    c.delete_network(&other).expect("Docker's second ID goes");
    // A subnet that disagrees with the cluster's is refused clearly.
    let err = c
        .create_network(&create(&"f".repeat(64), "198.18.97.0/24", Some("ov")))
        .expect_err("refused");
    assert!(err.to_string().contains("disagrees"), "{err}");
    let err = c
        .create_network(&create(&"f".repeat(64), "198.18.97.0/24", None))
        .expect_err("refused");
    assert!(err.to_string().contains("ferry.network"), "{err}");

    let addr = address(&mut c, false);
    assert_eq!(addr, "198.18.96.3/24", "next in this host's block");
    let ep_id = "b".repeat(64);
    c.create_endpoint(&docker(json!({
        "NetworkID": id, "EndpointID": ep_id, "Interface": {"Address": addr},
    })))
    .expect("endpoint");
    let join = c
        .join(&docker(json!({
            "NetworkID": id, "EndpointID": ep_id, "SandboxKey": "/var/run/docker/netns/x",
        })))
        .expect("join");
    assert_eq!(join.gateway, "198.18.96.1");
    let published = store.endpoints(Some("ov")).expect("endpoints");
    assert!(
        published.iter().any(|e| e.ip.to_string() == "198.18.96.3"
            && e.name.as_deref() == Some("/var/run/docker/netns/x")),
        "{published:?}"
    );
    // A Ferry sandbox next gets an address no Docker container holds.
    c.create_sandbox("app2", None).expect("sandbox");
    assert_eq!(
        connect(&mut c, "ov", "app2", 0).address,
        Some("198.18.96.4/24".parse().expect("net"))
    );
    let r: wire::EndpointRef = docker(json!({"NetworkID": id, "EndpointID": ep_id}));
    c.leave(&r).expect("leave");
    c.delete_endpoint(&r).expect("delete");
    assert!(!store
        .endpoints(Some("ov"))
        .expect("endpoints")
        .iter()
        .any(|e| e.ip.to_string() == "198.18.96.3"));
    c.release_address(&docker(json!({"PoolID": pool.pool_id, "Address": addr})))
        .expect("release");
    c.delete_network(&id).expect("Docker's network goes");
    assert!(
        c.network_by_name("ov").is_ok(),
        "the cluster's network stays"
    );
}

#[test]
fn a_restart_claims_its_blocks_and_publishes_its_endpoints_again() {
    let s = Setup::new();
    let (mut c, store) = s.open_clustered();
    c.create_named_network(&NetworkCreate {
        name: "ovr".into(),
        driver: Some("overlay".into()),
        subnets: vec!["198.18.97.0/24".into()],
        ..NetworkCreate::default()
    })
    .expect("overlay network");
    c.create_sandbox("app", None).expect("sandbox");
    let ep = connect(&mut c, "ovr", "app", 0);
    // What an expired lease takes: this host's block and endpoint records.
    let block = store.blocks("ovr").expect("blocks")[0].block;
    store.release_block("ovr", block).expect("release");
    let ip = ep.address.expect("address").addr();
    store.withdraw_endpoint("ovr", ip).expect("withdraw");
    assert_eq!(c.republish_overlay().expect("republish"), 1);
    let blocks = store.blocks("ovr").expect("blocks");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].block, block, "the same block, not another one");
    assert_eq!(blocks[0].host, "h1");
    let eps = store.endpoints(Some("ovr")).expect("endpoints");
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].ip, ip);
}

#[test]
fn aliases_are_dns_labels_kept_on_the_endpoint() {
    let s = Setup::new();
    let mut c = s.open();
    net(&mut c, "web", "198.18.71.0/24");
    c.create_sandbox("app", None).expect("sandbox");
    let with = |aliases: &[&str]| Connect {
        network: "web".into(),
        sandbox: "app".into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..Connect::default()
    };
    for bad in ["", "-db", "db-", "a.b", "db_1", &"x".repeat(64)] {
        let e = c.connect(&with(&[bad])).expect_err(bad);
        assert!(matches!(e, CnmError::Invalid(_)), "{bad:?}: {e}");
    }
    assert!(
        c.sandbox_endpoints("app").is_empty(),
        "a refused alias attaches nothing"
    );
    let ep = c.connect(&with(&["db", "Primary-1"])).expect("connect");
    assert_eq!(ep.aliases, ["db", "Primary-1"]);
    drop(c);
    let c = s.open();
    let kept = c.endpoints().find(|e| e.id == ep.id).expect("endpoint");
    assert_eq!(
        kept.aliases,
        ["db", "Primary-1"],
        "aliases survive a restart"
    );
}

fn service(
    c: &mut Controller,
    name: &str,
    addresses: &[&str],
    publish: &[&str],
) -> crate::Result<crate::service::Service> {
    c.create_service(&crate::service::ServiceCreate {
        name: name.into(),
        network: "web".into(),
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        publish: publish.iter().map(|p| p.to_string()).collect(),
    })
}

#[test]
fn a_service_keeps_address_mac_and_ports_across_attach_move_detach_and_restart() {
    let s = Setup::new();
    let mut c = s.open();
    c.create_named_network(&NetworkCreate {
        name: "web".into(),
        subnets: vec!["198.18.72.0/24".into(), "fd00:72::/64".into()],
        ..NetworkCreate::default()
    })
    .expect("dual-stack network");
    for sb in ["old", "new"] {
        c.create_sandbox(sb, None).expect("sandbox");
    }
    let before = allocated(&c);
    let svc = service(
        &mut c,
        "api",
        &["198.18.72.50"],
        &["8080:80", "5353:53/udp"],
    )
    .expect("create");
    assert_eq!(
        svc.address.map(|a| a.to_string()).as_deref(),
        Some("198.18.72.50/24")
    );
    assert!(
        svc.address_v6.is_some(),
        "the network's IPv6 subnet gives one too"
    );
    assert_eq!(
        allocated(&c),
        before + 2,
        "both addresses reserved at create"
    );
    assert_eq!(svc.sandbox, None);
    assert_eq!(svc.ports.len(), 2);
    assert!(
        s.fake
            .world()
            .log
            .iter()
            .any(|l| l.starts_with("program_external") && l.ends_with(" 2")),
        "ports published at create: {:?}",
        s.fake.world().log
    );

    let a = c.attach_service("api", "old").expect("attach");
    assert_eq!(a.sandbox.as_deref(), Some("old"));
    let old_link = a.link.clone().expect("link");
    assert_eq!(
        old_link.mac.map(|m| m.to_string()),
        Some(svc.mac.clone()),
        "the service's MAC"
    );
    let addrs = s
        .fake
        .world()
        .addresses
        .get(&("/run/netns/old".to_string(), "eth0".to_string()))
        .cloned();
    assert_eq!(
        addrs,
        Some(vec![svc.address.expect("v4"), svc.address_v6.expect("v6")])
    );

    let m = c.move_service("api", "new").expect("move");
    assert_eq!(
        (m.address, m.address_v6, m.mac.clone()),
        (svc.address, svc.address_v6, svc.mac.clone())
    );
    assert_eq!(
        m.link.as_ref().and_then(|l| l.mac).map(|m| m.to_string()),
        Some(svc.mac.clone())
    );
    {
        let w = s.fake.world();
        assert!(
            !w.links.values().any(|id| *id == old_link.id),
            "the old interface is deleted: {:?}",
            w.links
        );
        assert!(w
            .addresses
            .contains_key(&("/run/netns/new".to_string(), "eth0".to_string())));
        // The new interface is made and switched to before the old one goes.
        let ops: Vec<&str> = w
            .log
            .iter()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        let tail: Vec<&str> = ops.iter().rev().take(3).rev().copied().collect();
        assert_eq!(tail, ["create_endpoint", "take_over", "delete_endpoint"]);
    }
    drop(c);
    let mut c = s.open();
    let kept = c.service("api").expect("kept").clone();
    assert_eq!(kept, m, "a restart keeps the service as it was");

    let d = c.detach_service("api").expect("detach");
    assert_eq!((d.sandbox.clone(), d.address), (None, svc.address));
    c.attach_service("api", "old").expect("attach again");
    // Removing the sandbox takes the service out; removing the service frees all.
    c.remove_sandbox("old").expect("rm sandbox");
    assert_eq!(c.service("api").expect("svc").sandbox, None);
    let e = c
        .remove_named_network("web")
        .expect_err("a network with a service stays");
    assert!(e.to_string().contains("service"), "{e}");
    c.remove_service("api").expect("rm");
    assert_eq!(allocated(&c), before, "addresses released");
    assert!(s.fake.ops().contains(&"revoke_external".to_string()));
    assert!(matches!(c.service("api"), Err(CnmError::NotFound { .. })));
}

#[test]
fn service_errors_are_clear_and_change_nothing() {
    let s = Setup::new();
    let mut c = s.open();
    net(&mut c, "web", "198.18.73.0/24");
    c.create_sandbox("a", None).expect("sandbox");
    c.create_sandbox("b", None).expect("sandbox");
    let before = allocated(&c);
    let invalid = |r: crate::Result<crate::service::Service>, what: &str| {
        let e = r.expect_err(what);
        assert!(matches!(e, CnmError::Invalid(_)), "{what}: {e}");
        e.to_string()
    };
    for bad in ["80", "x:80", "8080:80/icmp", "0:80", "8080:70000"] {
        invalid(service(&mut c, "api", &[], &[bad]), bad);
    }
    let e = invalid(
        service(&mut c, "api", &["fd00:73::5"], &[]),
        "no IPv6 subnet",
    );
    assert!(e.contains("no IPv6 subnet"), "{e}");
    let e = invalid(service(&mut c, "api", &["198.18.74.5"], &[]), "outside");
    assert!(e.contains("outside the subnets"), "{e}");
    invalid(service(&mut c, "bad_name", &[], &[]), "not a DNS label");
    // Docker's networks are Docker's.
    let docker = "d".repeat(64);
    c.create_network(&wire::CreateNetwork {
        network_id: docker.clone(),
        options: BTreeMap::new(),
        ipv4_data: vec![wire::IpamData {
            pool: "198.18.75.0/24".into(),
            gateway: "198.18.75.1/24".into(),
            ..wire::IpamData::default()
        }],
        ipv6_data: Vec::new(),
    })
    .expect("docker network");
    let e = invalid(
        c.create_service(&crate::service::ServiceCreate {
            name: "api".into(),
            network: docker,
            ..Default::default()
        }),
        "a Docker network",
    );
    assert!(e.contains("Docker's"), "{e}");
    assert_eq!(allocated(&c), before, "refused creates reserve nothing");
    assert!(c.services().next().is_none());

    service(&mut c, "api", &["198.18.73.9"], &[]).expect("create");
    let e = service(&mut c, "api2", &["198.18.73.9"], &[]).expect_err("address in use");
    assert!(matches!(e, CnmError::AddressUnavailable { .. }), "{e}");
    invalid(service(&mut c, "api", &[], &[]), "exists");

    assert!(matches!(
        c.attach_service("nope", "a"),
        Err(CnmError::NotFound {
            kind: "service",
            ..
        })
    ));
    assert!(matches!(
        c.move_service("nope", "a"),
        Err(CnmError::NotFound {
            kind: "service",
            ..
        })
    ));
    assert!(matches!(
        c.detach_service("nope"),
        Err(CnmError::NotFound {
            kind: "service",
            ..
        })
    ));
    assert!(matches!(
        c.remove_service("nope"),
        Err(CnmError::NotFound {
            kind: "service",
            ..
        })
    ));
    assert!(matches!(
        c.attach_service("api", "ghost"),
        Err(CnmError::NotFound {
            kind: "sandbox",
            ..
        })
    ));
    invalid(c.move_service("api", "b"), "move before attach");
    invalid(c.detach_service("api"), "detach before attach");
    c.attach_service("api", "a").expect("attach");
    let e = invalid(c.attach_service("api", "b"), "already attached");
    assert!(e.contains("use move"), "{e}");
    invalid(c.move_service("api", "a"), "already there");
    assert!(matches!(
        c.move_service("api", "ghost"),
        Err(CnmError::NotFound {
            kind: "sandbox",
            ..
        })
    ));

    // A failed switch leaves the service where it was, and no new interface.
    s.fake.fail("take_over");
    let links = s.fake.world().links.len();
    assert!(c.move_service("api", "b").is_err());
    s.fake.heal();
    assert_eq!(c.service("api").expect("svc").sandbox.as_deref(), Some("a"));
    assert_eq!(
        s.fake.world().links.len(),
        links,
        "the new interface was deleted"
    );
}

#[test]
fn a_snapshot_keeps_its_state_and_shares_what_no_write_changed() {
    let s = Setup::new();
    let mut c = s.open();
    net(&mut c, "web", "198.18.64.0/24");
    c.create_sandbox("app", None).expect("sandbox");
    let before = c.snapshot();
    assert!(before.ptr_eq(&c.snapshot()), "nothing changed: all shared");
    let taken = allocated(&c); // the gateway

    let ep = connect(&mut c, "web", "app", 0);
    let after = c.snapshot();
    // The older snapshot still answers as before the write; the newer one
    // sees it, in every part that shows it.
    assert!(before.endpoint_oper_info(&ep.id).is_err());
    assert!(before.sandbox_endpoints("app").is_empty());
    assert!(after.endpoint_oper_info(&ep.id).is_ok());
    assert_eq!(after.sandbox_endpoints("app").len(), 1);
    assert_eq!(allocated(&c), taken + 1, "connect took one address");
    assert_eq!(
        before
            .pools
            .values()
            .map(|p| p.allocated.len())
            .sum::<usize>(),
        taken,
        "the old snapshot's pools changed under it"
    );
    assert!(!before.endpoints.ptr_eq(&after.endpoints));
    assert!(!before.pools.ptr_eq(&after.pools));
    assert!(
        before.networks.ptr_eq(&after.networks),
        "a connect must leave the networks shared"
    );
}
