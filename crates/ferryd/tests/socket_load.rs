//! Hundreds of concurrent mixed requests on ferryd's two sockets: Docker's
//! plugin protocol (pools, addresses, endpoints on a bridge network, oper
//! info) and Ferry's read API. Every request succeeds, as it would alone,
//! and nothing is left. Not timed (see `ferry-bench --only 23` for figures).
//! Addresses: 198.19.30.0/24.

use ferry_testkit::docker::{http, Ferryd};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

const WRITERS: usize = 100;
const READERS: usize = 200;

fn ok(ferryd: &Ferryd, method: &str, body: Value) -> Value {
    ferryd.call_ok(method, &body)
}

fn id(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:0>60}")
}

#[test]
fn hundreds_of_concurrent_mixed_requests_all_succeed() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("ferry-dlload")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let ferryd = Arc::new(Ferryd::start(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &format!("dll{}", std::process::id()),
        &["base=198.19.31.0/24,size=26"],
    ));
    // The bridge is named after the first 12 characters: the pid in them.
    let net = format!("d1{:010x}{}", std::process::id(), "0".repeat(52));
    let (pool_id, gateway) = ferryd.request_pool_and_gateway("198.19.30.0/24");
    let mut cleanup = Cleanup::default();
    // Ferry's node-wide tables the network's endpoints made, when idle.
    cleanup.push(remove_idle_ferry_tables);
    cleanup.link(&format!("fr-{}", &net[..12]));
    ok(
        &ferryd,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": net, "IPv4Data": [{"AddressSpace": "local", "Pool": "198.19.30.0/24", "Gateway": gateway}]}),
    );
    let fixed = id("e0", 0);
    ok(
        &ferryd,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": net, "EndpointID": fixed, "Interface": {}}),
    );

    // Writers: a whole endpoint life each; readers: reads of both sockets.
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let (f, net, pool_id) = (ferryd.clone(), net.clone(), pool_id.clone());
        threads.push(std::thread::spawn(move || {
            let ep = id("e1", w);
            let a = ok(&f, "IpamDriver.RequestAddress", json!({"PoolID": pool_id}));
            let address = a["Address"].as_str().expect("an address").to_string();
            let r = json!({"NetworkID": net, "EndpointID": ep});
            ok(
                &f,
                "NetworkDriver.CreateEndpoint",
                json!({"NetworkID": net, "EndpointID": ep, "Interface": {"Address": address}}),
            );
            ok(&f, "NetworkDriver.EndpointOperInfo", r.clone());
            ok(&f, "NetworkDriver.DeleteEndpoint", r);
            ok(
                &f,
                "IpamDriver.ReleaseAddress",
                json!({"PoolID": pool_id, "Address": address}),
            );
        }));
    }
    for r in 0..READERS {
        let (f, net, fixed) = (ferryd.clone(), net.clone(), fixed.clone());
        threads.push(std::thread::spawn(move || {
            let path = ["/networks", "/endpoints", "/pools"][r % 3];
            let (status, v) = http(&f.api_socket, "GET", path, "");
            assert_eq!(status, 200, "GET {path} failed under load: {v}");
            ok(
                &f,
                "NetworkDriver.EndpointOperInfo",
                json!({"NetworkID": net, "EndpointID": fixed}),
            );
        }));
    }
    let failed = threads
        .into_iter()
        .map(|t| t.join())
        .filter(Result::is_err)
        .count();
    assert_eq!(failed, 0, "{failed} request sequences failed (see above)");

    // Only the fixed endpoint is left; then nothing.
    let eps = ferryd.api("/endpoints");
    assert_eq!(
        eps.as_array().map(Vec::len),
        Some(1),
        "endpoints left: {eps}"
    );
    let r = json!({"NetworkID": net, "EndpointID": fixed});
    ok(&ferryd, "NetworkDriver.DeleteEndpoint", r);
    ferryd.remove_docker_network(&net, &pool_id, &gateway);
    assert_eq!(ferryd.api("/pools"), json!({}), "pools left");
    assert!(
        host_links(&format!("fr-{}", &net[..12])).is_empty(),
        "bridge left"
    );
}
