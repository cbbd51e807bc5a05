//! Property/fuzz tests of every request the controller takes from outside:
//! Docker's plugin protocol (`wire`), Ferry's API (`NetworkCreate`,
//! `Connect`, services) and the CNI door (`CniRequest`, `CniGc`). Arbitrary JSON of
//! each request's shape is decoded as ferryd decodes it and, when it
//! decodes, run against one controller (on the recording fake driver) that
//! keeps its state across cases. The property: an answer (value or
//! error), never a panic; and the controller still answers afterwards.

use crate::cni::{CniGc, CniRequest};
use crate::sandbox::{Connect, NetworkCreate};
use crate::service::ServiceCreate;
use crate::tests::Setup;
use crate::{wire, Controller};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: ferry_testkit::fuzz_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values that sometimes name things that exist, sometimes are valid
/// addresses, and otherwise anything.
fn value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "n1",
            "n2",
            "sb1",
            "sb2",
            "e1",
            "e2",
            "c1",
            "eth0",
            "eth1",
            "",
            "a b",
            "../x",
            "198.18.92.0/24",
            "198.18.93.7",
            "198.18.92.0/33",
            "fd00:92::/64",
            "fd00:92::5",
            "bridge",
            "macvlan",
            "null",
            "host",
            "overlay",
            "local",
            "ipvlan",
        ])
        .prop_map(|s| Value::String(s.into())),
        ".{0,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "NetworkID",
            "EndpointID",
            "PoolID",
            "Pool",
            "SubPool",
            "AddressSpace",
            "Address",
            "Options",
            "IPv4Data",
            "IPv6Data",
            "Gateway",
            "AuxAddresses",
            "Interface",
            "AddressIPv6",
            "MacAddress",
            "SandboxKey",
            "V6",
            "name",
            "subnets",
            "ipv6",
            "internal",
            "mtu",
            "bridge",
            "routes",
            "driver",
            "options",
            "network",
            "sandbox",
            "ifname",
            "priority",
            "container_id",
            "netns",
            "valid",
            "dst",
            "gateway",
            "com.docker.network.generic",
            "com.docker.network.bridge.name",
            "com.docker.network.driver.mtu",
            "com.docker.network.portmap",
            "com.docker.network.endpoint.exposedports",
            "RequestAddressType",
            "parent",
            "addresses",
            "publish",
        ])
        .prop_map(String::from),
        "[a-zA-Z._]{1,10}",
    ]
}

/// An object with some of the request keys, or a request of the right
/// shape with small mutations (so requests get past validation and reach
/// the controller's state: networks, sandboxes, endpoints, pools).
fn request() -> impl Strategy<Value = Value> {
    let any_obj = prop::collection::btree_map(key(), value(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    let name = prop::sample::select(vec!["n1", "n2", "n3"]);
    let sandbox = prop::sample::select(vec!["sb1", "sb2"]);
    let ferry = (
        name.clone(),
        prop::sample::select(vec!["null", "host", "bridge", "macvlan", "overlay"]),
        prop::sample::select(vec![
            "198.18.92.0/24",
            "198.18.93.0/24",
            "fd00:92::/64",
            "x",
        ]),
        sandbox.clone(),
        0i32..3,
        value(),
        (
            prop::sample::select(vec!["198.18.92.7", "fd00:92::7", "198.18.99.1", "x"]),
            prop::sample::select(vec!["8080:80", "8080:80/udp", "8080", "0:1/icmp"]),
        ),
    )
        .prop_map(|(n, d, sub, sb, prio, extra, (addr, publish))| {
            json!({"name": n, "driver": d, "subnets": [sub], "network": n, "sandbox": sb,
                   "priority": prio, "container_id": sb, "ifname": "eth1",
                   "netns": "/proc/self/ns/net", "valid": [], "routes": [{"dst": sub}],
                   "options": {"parent": extra}, "addresses": [addr], "publish": [publish]})
        });
    let docker = (
        prop::sample::select(vec!["a1", "a2"]),
        prop::sample::select(vec!["e1", "e2"]),
        prop::sample::select(vec!["198.18.94.0/24", "198.18.95.0/24", ""]),
        prop::sample::select(vec!["null", "bridge", "host"]),
        value(),
    )
        .prop_map(|(nid, eid, pool, driver, port)| {
            let id = |s: &str| format!("{s}{}", "0".repeat(62));
            json!({"NetworkID": id(nid), "EndpointID": id(eid), "Pool": pool,
                   "AddressSpace": "local", "PoolID": pool, "Address": "",
                   "SandboxKey": "/proc/self/ns/net",
                   "Options": {"com.docker.network.generic": {"ferry.driver": driver},
                               "com.docker.network.portmap": port},
                   "IPv4Data": [{"Pool": pool, "Gateway": "198.18.94.1/24"}]})
        });
    prop_oneof![any_obj, ferry, docker]
}

/// Decodes `v` as a `T` and runs `f` on it: whether it decoded and `f` succeeded.
fn run<T: DeserializeOwned>(v: &Value, f: impl FnOnce(T) -> bool) -> bool {
    serde_json::from_value::<T>(v.clone()).is_ok_and(f)
}

/// Feeds one request to every entry point that decodes it; how many succeeded.
fn feed(c: &mut Controller, v: &Value) -> usize {
    let ok = [
        run(v, |r: NetworkCreate| c.create_named_network(&r).is_ok()),
        run(v, |r: ServiceCreate| c.create_service(&r).is_ok()),
        run(v, |r: Connect| {
            c.attach_service(&r.network, &r.sandbox).is_ok()
        }),
        run(v, |r: Connect| {
            c.move_service(&r.network, &r.sandbox).is_ok()
        }),
        run(v, |r: Connect| c.detach_service(&r.network).is_ok()),
        run(v, |r: ServiceCreate| c.remove_service(&r.name).is_ok()),
        run(v, |r: Connect| c.create_sandbox(&r.sandbox, None).is_ok()),
        run(v, |r: Connect| c.connect(&r).is_ok()),
        run(v, |r: Connect| c.disconnect(&r.network, &r.sandbox).is_ok()),
        run(v, |r: CniRequest| c.cni_add(&r).is_ok()),
        run(v, |r: CniRequest| c.cni_check(&r).is_ok()),
        run(v, |r: CniRequest| c.cni_del(&r).is_ok()),
        run(v, |r: CniGc| c.cni_gc(&r).is_ok()),
        run(v, |r: wire::RequestPool| c.request_pool(&r).is_ok()),
        run(v, |r: wire::RequestAddress| c.request_address(&r).is_ok()),
        run(v, |r: wire::ReleaseAddress| c.release_address(&r).is_ok()),
        run(v, |r: wire::PoolRef| c.release_pool(&r.pool_id).is_ok()),
        run(v, |r: wire::CreateNetwork| c.create_network(&r).is_ok()),
        run(v, |r: wire::CreateEndpoint| c.create_endpoint(&r).is_ok()),
        run(v, |r: wire::EndpointRef| c.endpoint_oper_info(&r).is_ok()),
        run(v, |r: wire::Join| c.join(&r).is_ok()),
        run(v, |r: wire::ExternalConnectivity| {
            c.program_external_connectivity(&r).is_ok()
        }),
        run(v, |r: wire::EndpointRef| {
            c.revoke_external_connectivity(&r).is_ok()
        }),
        run(v, |r: wire::EndpointRef| c.leave(&r).is_ok()),
        run(v, |r: wire::EndpointRef| c.delete_endpoint(&r).is_ok()),
        run(v, |r: wire::NetworkRef| {
            c.delete_network(&r.network_id).is_ok()
        }),
    ];
    ok.iter().filter(|b| **b).count()
}

#[test]
fn requests_of_every_door() {
    let setup = Setup::new();
    let c = std::cell::RefCell::new(setup.open());
    let succeeded = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(config());
    runner
        .run(&prop::collection::vec(request(), 1..4), |reqs| {
            for v in &reqs {
                succeeded.set(succeeded.get() + feed(&mut c.borrow_mut(), v));
            }
            Ok(())
        })
        .unwrap();
    // The generator reaches past decoding: some requests are carried out.
    assert!(succeeded.get() > 0, "no request got past validation");
    eprintln!("{} requests succeeded", succeeded.get());
    // Still answering, and its state still loads.
    assert!(c.borrow().networks().count() < 10_000);
    drop(c);
    let _ = setup.open();
}

#[test]
fn request_bytes() {
    let mut runner = TestRunner::new(config());
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..256), |b| {
            let _ = serde_json::from_slice::<wire::CreateNetwork>(&b);
            let _ = serde_json::from_slice::<wire::CreateEndpoint>(&b);
            let _ = serde_json::from_slice::<wire::Join>(&b);
            let _ = serde_json::from_slice::<NetworkCreate>(&b);
            let _ = serde_json::from_slice::<ServiceCreate>(&b);
            let _ = serde_json::from_slice::<CniGc>(&b);
            Ok(())
        })
        .unwrap();
}
