//! No program is executed by Ferry's plugins during ADD, CHECK and DEL of
//! the whole chain (bridge with ipMasq and macspoofchk, portmap, firewall,
//! tuning, bandwidth, sbr): every plugin process runs under
//! `strace -f -e execve` on a node in a namespace (see nodecommon), and the
//! only execve calls are the plugins themselves and the IPAM plugin the
//! bridge delegates to, as CNI prescribes. Subnets: 198.18.225.0/24 (node
//! link), 198.18.226.0/24 and fd00:208:e2::/64 (bridge).

mod nodecommon;

use nodecommon::*;
use serde_json::json;

const TRACED: [&str; 6] = [
    "bridge",
    "portmap",
    "firewall",
    "tuning",
    "bandwidth",
    "sbr",
];

#[test]
fn the_full_chain_executes_no_program() {
    let node = Node::new(225, &[], &TRACED);
    let mut plugins = bridge_conf(
        &unique("nxb"),
        226,
        true,
        vec![
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            json!({"type": "firewall"}),
            json!({"type": "tuning", "mtu": 1400, "sysctl": {"net.core.somaxconn": "512"}}),
            json!({"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 1_000_000,
                   "egressRate": 8_000_000, "egressBurst": 1_000_000}),
            json!({"type": "sbr"}),
        ],
    );
    plugins[0]["macspoofchk"] = json!(true);
    let n = node.net("noexec", plugins);
    let c = node.container();
    let a = n.att(
        &c,
        "nx1",
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    n.add(&a);
    n.check(&a).unwrap();
    n.del(&a);

    let bin = env!("CARGO_BIN_EXE_ferry-plugin");
    let execs = node.execs();
    for t in TRACED {
        assert!(
            execs
                .iter()
                .any(|e| e.contains(&format!("execve(\"{bin}\""))
                    && e.contains(&format!(", \"{t}\"]"))),
            "{t} was not traced: {execs:#?}"
        );
    }
    // The bridge's IPAM delegation runs the host-local wrapper of this test
    // (a shell script entering the node's namespace) in one process.
    let pid = |e: &String| e.split_whitespace().next().unwrap_or("").to_string();
    let ipam: Vec<String> = execs
        .iter()
        .filter(|e| e.contains("/bin/host-local\""))
        .map(pid)
        .collect();
    assert!(
        !ipam.is_empty(),
        "the bridge delegated to host-local: {execs:#?}"
    );
    let other: Vec<&String> = execs
        .iter()
        .filter(|e| !e.contains(&format!("execve(\"{bin}\"")) && !ipam.contains(&pid(e)))
        .collect();
    assert!(
        other.is_empty(),
        "only the plugins and the bridge's IPAM may run: {other:#?}"
    );
}
