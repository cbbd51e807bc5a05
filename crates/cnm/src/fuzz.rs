//! Property/fuzz tests of every request the controller takes from outside:
//! Docker's plugin protocol (`wire`), Ferry's API (`NetworkCreate`,
//! `Connect`) and the CNI door (`CniRequest`, `CniGc`). Arbitrary JSON of
//! each request's shape is decoded as ferryd decodes it and, when it
//! decodes, run against one controller (on the recording fake driver) that
//! keeps its state across cases. The property: an answer (value or
//! error), never a panic; and the controller still answers afterwards.

use crate::cni::{CniGc, CniRequest};
use crate::sandbox::{Connect, NetworkCreate};
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
        ])
        .prop_map(String::from),
        "[a-zA-Z._]{1,10}",
    ]
}

/// An object with some of the request keys.
fn request() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), value(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn run<T: DeserializeOwned>(v: &Value, f: impl FnOnce(T)) {
    if let Ok(req) = serde_json::from_value::<T>(v.clone()) {
        f(req);
    }
}

/// Feeds one request to every entry point that decodes it.
fn feed(c: &mut Controller, v: &Value) {
    run(v, |r: NetworkCreate| drop(c.create_named_network(&r)));
    run(v, |r: Connect| drop(c.connect(&r)));
    run(v, |r: Connect| drop(c.create_sandbox(&r.sandbox, None)));
    run(v, |r: Connect| drop(c.disconnect(&r.network, &r.sandbox)));
    run(v, |r: CniRequest| drop(c.cni_add(&r)));
    run(v, |r: CniRequest| drop(c.cni_check(&r)));
    run(v, |r: CniRequest| drop(c.cni_del(&r)));
    run(v, |r: CniGc| drop(c.cni_gc(&r)));
    run(v, |r: wire::RequestPool| drop(c.request_pool(&r)));
    run(v, |r: wire::RequestAddress| drop(c.request_address(&r)));
    run(v, |r: wire::ReleaseAddress| drop(c.release_address(&r)));
    run(v, |r: wire::PoolRef| drop(c.release_pool(&r.pool_id)));
    run(v, |r: wire::CreateNetwork| drop(c.create_network(&r)));
    run(v, |r: wire::CreateEndpoint| drop(c.create_endpoint(&r)));
    run(v, |r: wire::EndpointRef| drop(c.endpoint_oper_info(&r)));
    run(v, |r: wire::Join| drop(c.join(&r)));
    run(v, |r: wire::ExternalConnectivity| {
        drop(c.program_external_connectivity(&r))
    });
    run(v, |r: wire::EndpointRef| {
        drop(c.revoke_external_connectivity(&r))
    });
    run(v, |r: wire::EndpointRef| drop(c.leave(&r)));
    run(v, |r: wire::EndpointRef| drop(c.delete_endpoint(&r)));
    run(v, |r: wire::NetworkRef| {
        drop(c.delete_network(&r.network_id))
    });
}

#[test]
fn requests_of_every_door() {
    let setup = Setup::new();
    let c = std::cell::RefCell::new(setup.open());
    let mut runner = TestRunner::new(config());
    runner
        .run(&prop::collection::vec(request(), 1..4), |reqs| {
            for v in &reqs {
                feed(&mut c.borrow_mut(), v);
            }
            Ok(())
        })
        .unwrap();
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
            let _ = serde_json::from_slice::<CniGc>(&b);
            Ok(())
        })
        .unwrap();
}
