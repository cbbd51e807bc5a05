//! Ferry's bandwidth plugin chained after Ferry's bridge and host-local,
//! through the ferry-cni runtime: differential against the reference
//! (/usr/lib/cni/bandwidth, Debian containernetworking-plugins 1.1.1) on
//! qdiscs, filters and results; rates measured with iperf3 in both
//! directions; 100 ADD/DEL cycles leaving nothing; bad config refused with
//! code 7 and nothing changed; coexistence with foreign qdiscs and filters.
//! Root only. Subnets: 198.18.192-196.0/24 (of 198.18.192.0/20).

mod ferrypath;

use ferry_cni::config::NetworkConfigList;
use ferry_cni::invoke::{exec_plugin, Args};
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ferry_cni::CniError;
use ferry_plugins::bandwidth::ifb_name;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};

/// Which bandwidth plugin a CNI_PATH directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Ferry,
    Reference,
}

/// CNI_PATH with Ferry for every type it implements (except `bandwidth`
/// when `bw` is the reference), the reference for the rest.
fn plugin_dir(bw: Impl) -> tempfile::TempDir {
    require_reference("bandwidth");
    ferrypath::plugin_dir((bw == Impl::Reference).then_some("bandwidth"))
}

/// A network under test. Field order is drop order: the DELs registered in
/// `dels` run first, while the plugin, cache and data dirs still exist.
struct Net {
    dels: std::sync::Mutex<Cleanup>,
    rt: CniConfig,
    list: NetworkConfigList,
    plugins: tempfile::TempDir,
    cache: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Net {
    fn new(name: &str, version: &str, mut plugins: Value, bw: Impl) -> Net {
        require_root();
        require_reference("host-local");
        let data = tempfile::tempdir().unwrap();
        for p in plugins.as_array_mut().unwrap() {
            if p.get("ipam").is_some() {
                p["ipam"]["dataDir"] = json!(data.path());
            }
        }
        let conf = json!({"cniVersion": version, "name": name, "plugins": plugins});
        let list = NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).unwrap()).unwrap();
        let dir = plugin_dir(bw);
        let cache = tempfile::tempdir().unwrap();
        Net {
            dels: Default::default(),
            rt: CniConfig::new(vec![dir.path().to_path_buf()], cache.path()),
            list,
            plugins: dir,
            cache,
            _data: data,
        }
    }

    fn att(&self, ns: &Netns, id: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: id.into(),
            netns: ns.path(),
            ifname: "eth0".into(),
            ..RuntimeConf::default()
        }
    }

    fn add(&self, att: &RuntimeConf) -> Value {
        let (rt, list, a) = (self.rt.clone(), self.list.clone(), att.clone());
        self.dels.lock().unwrap().push(move || {
            let _ = rt.del_network_list(&list.name.clone(), Some(&list), &a);
        });
        self.rt
            .add_network_list(&self.list, att)
            .unwrap_or_else(|e| panic!("ADD failed: {e}"))
    }

    fn del(&self, att: &RuntimeConf) {
        self.rt
            .del_network_list(&self.list.name, Some(&self.list), att)
            .unwrap_or_else(|e| panic!("DEL failed: {e}"));
    }

    /// CHECK with the cached ADD, through `bw`'s bandwidth plugin.
    fn check_with(&self, att: &RuntimeConf, bw: Impl) -> Result<(), CniError> {
        let dir = plugin_dir(bw);
        let rt = CniConfig::new(vec![dir.path().to_path_buf()], self.cache.path());
        rt.check_network_list(&self.list.name, Some(&self.list), att)
    }

    /// Runs this network's `bandwidth` binary directly.
    fn exec_bandwidth(
        &self,
        command: &str,
        conf: &Value,
        att: &RuntimeConf,
    ) -> Result<Value, CniError> {
        let out = exec_plugin(
            &self.plugins.path().join("bandwidth"),
            &serde_json::to_vec(conf).unwrap(),
            &Args {
                command: command.into(),
                container_id: att.container_id.clone(),
                netns: att.netns.clone(),
                ifname: att.ifname.clone(),
                args: String::new(),
                path: self.plugins.path().display().to_string(),
            },
        )?;
        Ok(serde_json::from_slice(&out).unwrap_or(Value::Null))
    }
}

fn bridge(br: &str, subnet: &str) -> Value {
    json!({"type": "bridge", "bridge": br,
           "ipam": {"type": "host-local", "subnet": subnet}})
}

fn tc_json(args: &str) -> Value {
    let out = sh(&format!("tc -j {args}"));
    if out.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tc -j {args}: {e}: {out}"))
}

/// `tc -j qdisc show dev DEV` without the reference counts.
fn qdiscs(dev: &str) -> Vec<Value> {
    tc_json(&format!("qdisc show dev {dev}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut q| {
            if let Some(o) = q.as_object_mut() {
                o.remove("refcnt");
            }
            q
        })
        .collect()
}

/// `tc -j filter show dev DEV ingress`, the target device renamed `IFB`
/// and the action counters (index, ref, bind) dropped.
fn ingress_filters(dev: &str, ifb: &str) -> Vec<Value> {
    let mut v = tc_json(&format!("filter show dev {dev} ingress"))
        .as_array()
        .cloned()
        .unwrap_or_default();
    for f in &mut v {
        if let Some(acts) = f
            .pointer_mut("/options/actions")
            .and_then(Value::as_array_mut)
        {
            for a in acts.iter_mut() {
                let o = a.as_object_mut().unwrap();
                for k in ["index", "ref", "bind"] {
                    o.remove(k);
                }
                if o.get("to_dev").and_then(Value::as_str) == Some(ifb) {
                    o.insert("to_dev".into(), json!("IFB"));
                }
            }
        }
    }
    v
}

/// The host end of the veth in a bridge result: the one interface without
/// a sandbox that is neither the bridge nor an IFB.
fn host_veth(r: &Value, br: &str) -> String {
    r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("sandbox").is_none_or(|s| s == ""))
        .filter_map(|i| i["name"].as_str())
        .find(|n| *n != br && !n.starts_with("bwp"))
        .unwrap_or_else(|| panic!("no host veth in {r}"))
        .to_string()
}

fn ifbs_of(r: &Value) -> Vec<String> {
    r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .filter(|n| n.starts_with("bwp"))
        .map(str::to_string)
        .collect()
}

/// The result with the host veth renamed, MACs and sandbox paths blanked.
fn normalized_result(r: &Value, host: &str) -> Value {
    let mut r = r.clone();
    for i in r["interfaces"].as_array_mut().unwrap() {
        if i["name"] == host {
            i["name"] = json!("HOST");
        }
        if i.get("mac").is_some() {
            i["mac"] = json!("MAC");
        }
        if i.get("sandbox").is_some() {
            i["sandbox"] = json!("NETNS");
        }
    }
    r
}

fn link_exists(name: &str) -> bool {
    sh_ok(&format!("ip link show dev {name}"))
}

#[derive(Debug, PartialEq)]
struct Observed {
    host_qdiscs: Vec<Value>,
    ifb_qdiscs: Vec<Value>,
    filters: Vec<Value>,
    result: Value,
    ifb: Vec<String>,
}

#[test]
fn ferry_matches_the_reference_qdiscs_filters_results_and_checks() {
    let mut cleanup = Cleanup::default();
    let br = unique("bwd");
    cleanup.link(&br);
    let cases = [
        (
            "1.0.0",
            json!({"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 1_000_000,
                   "egressRate": 16_000_000, "egressBurst": 2_000_000}),
            serde_json::Map::new(),
        ),
        (
            "0.4.0",
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
            json!({"bandwidth": {"ingressRate": 3_000_000, "ingressBurst": 300_000}})
                .as_object()
                .unwrap()
                .clone(),
        ),
        (
            "0.3.1",
            json!({"type": "bandwidth", "egressRate": 1_000_000_000u64, "egressBurst": 80_000_000}),
            serde_json::Map::new(),
        ),
    ];
    for (version, bw, caps) in cases {
        let name = unique("bw-diff");
        let id = "bw-diff-1";
        let mut seen = Vec::new();
        for imp in [Impl::Ferry, Impl::Reference] {
            let net = Net::new(
                &name,
                version,
                json!([bridge(&br, "198.18.192.0/24"), bw.clone()]),
                imp,
            );
            let ns = Netns::new("bwd");
            let mut att = net.att(&ns, id);
            att.capability_args = caps.clone();
            let r = net.add(&att);
            let host = host_veth(&r, &br);
            let ifb = ifbs_of(&r);
            let ifb_seen = ifb.first().cloned().unwrap_or_default();
            let obs = Observed {
                host_qdiscs: qdiscs(&host),
                ifb_qdiscs: ifb.first().map(|i| qdiscs(i)).unwrap_or_default(),
                filters: ingress_filters(&host, &ifb_seen),
                result: normalized_result(&r, &host),
                ifb: ifb.clone(),
            };
            // Both plugins' CHECK accept the state either one made (CHECK
            // exists from 0.4.0 on).
            let checkers = if version == "0.3.1" {
                vec![]
            } else {
                vec![Impl::Ferry, Impl::Reference]
            };
            for checker in checkers {
                net.check_with(&att, checker).unwrap_or_else(|e| {
                    panic!("{version}: {checker:?} CHECK of {imp:?}'s ADD failed: {e}")
                });
            }
            net.del(&att);
            assert!(!link_exists(&host), "{imp:?}: {host} left");
            for i in &ifb {
                assert!(!link_exists(i), "{imp:?}: ifb {i} left");
            }
            seen.push(obs);
        }
        let (mut ferry, reference) = (seen.remove(0), seen.remove(0));
        if let Some(i) = ferry.ifb.first() {
            assert_eq!(*i, ifb_name(&name, id));
        }
        // The reference's netlink library adds its redirect twice (a
        // second, unreachable `mirred ... pass` after the `stolen` one);
        // Ferry sends one. Everything else is identical.
        for (f, r) in ferry.filters.iter_mut().zip(&reference.filters) {
            if let (Some(fa), Some(ra)) = (
                f.pointer("/options/actions").and_then(Value::as_array),
                r.pointer("/options/actions").and_then(Value::as_array),
            ) {
                assert_eq!(fa.len(), 1, "{version}: Ferry's redirect: {f}");
                assert_eq!(ra.len(), 2, "{version}: the reference's redirect: {r}");
                assert_eq!(fa[0], ra[0], "{version}: first action differs");
                f["options"]["actions"] = json!(ra.clone());
            }
        }
        assert_eq!(
            ferry, reference,
            "{version}: Ferry and the reference differ"
        );
    }
}

/// An iperf3 server for one test, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Goodput from `client_ns` to the server (or back with `reverse`), in bits
/// per second at the receiver.
fn iperf(server_ns: &Netns, client_ns: &Netns, server_ip: &str, port: u16, reverse: bool) -> f64 {
    let _server = Server(
        Command::new("ip")
            .args(["netns", "exec", &server_ns.name, "iperf3", "-s", "-1"])
            .args(["-B", server_ip, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iperf3 -s"),
    );
    let r = if reverse { "-R" } else { "" };
    for _ in 0..50 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip netns exec {} iperf3 -c {server_ip} -p {port} -t 4 -O 1 -J {r}",
                client_ns.name
            ))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(bps) = v
            .pointer("/end/sum_received/bits_per_second")
            .and_then(Value::as_f64)
        {
            return bps;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("iperf3 did not run from {} to {server_ip}", client_ns.name);
}

#[test]
fn rates_are_enforced_in_both_directions() {
    assert!(
        sh_ok("command -v iperf3"),
        "this test needs iperf3: apt-get install iperf3"
    );
    let mut cleanup = Cleanup::default();
    let br = unique("bwr");
    cleanup.link(&br);
    let ipam = |start: &str, end: &str| {
        json!({"type": "host-local", "ranges": [[{"subnet": "198.18.193.0/24",
               "rangeStart": start, "rangeEnd": end}]]})
    };
    // The server is not shaped; the container is: 20 Mbit/s into it, 10 out.
    let plain = Net::new(
        &unique("bw-srv"),
        "1.0.0",
        json!([{"type": "bridge", "bridge": br, "ipam": ipam("198.18.193.100", "198.18.193.150")}]),
        Impl::Ferry,
    );
    let (in_rate, out_rate) = (20_000_000.0, 10_000_000.0);
    let shaped = Net::new(
        &unique("bw-rate"),
        "1.0.0",
        json!([
            {"type": "bridge", "bridge": br, "ipam": ipam("198.18.193.10", "198.18.193.50")},
            {"type": "bandwidth", "ingressRate": in_rate as u64, "ingressBurst": 500_000,
             "egressRate": out_rate as u64, "egressBurst": 500_000}
        ]),
        Impl::Ferry,
    );
    let (srv, ctr) = (Netns::new("bws"), Netns::new("bwc"));
    let rs = plain.add(&plain.att(&srv, "bw-srv-1"));
    let _rc = shaped.add(&shaped.att(&ctr, "bw-rate-1"));
    let srv_ip = rs["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let port = 5201 + (std::process::id() % 1000) as u16;

    // Container -> server: egress, through the ifb.
    let up = iperf(&srv, &ctr, &srv_ip, port, false);
    // Server -> container: ingress, the tbf on the host veth.
    let down = iperf(&srv, &ctr, &srv_ip, port + 1, true);
    eprintln!(
        "measured: egress {up:.0} bit/s (limit {out_rate}), ingress {down:.0} bit/s (limit {in_rate})"
    );
    for (what, got, want) in [("egress", up, out_rate), ("ingress", down, in_rate)] {
        assert!(
            (got - want).abs() <= want * 0.2,
            "{what}: {got:.0} bit/s is not within 20% of {want}"
        );
    }
}

/// A qdisc of the kinds bandwidth makes (tbf `1:`, ingress `ffff:`).
fn bandwidth_like(q: &Value) -> bool {
    (q["kind"] == "tbf" && q["handle"] == "1:")
        || (q["kind"] == "ingress" && q["handle"] == "ffff:")
}

/// `tc -j qdisc show` entries of the kinds bandwidth makes, counted by device.
fn bandwidth_like_qdiscs() -> std::collections::BTreeMap<String, usize> {
    let mut by_dev = std::collections::BTreeMap::new();
    for q in tc_json("qdisc show")
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if bandwidth_like(&q) {
            *by_dev
                .entry(q["dev"].as_str().unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
    }
    by_dev
}

fn ifb_links() -> Vec<String> {
    let v: Value = serde_json::from_str(&sh("ip -j link show type ifb")).unwrap();
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn hundred_add_del_cycles_leave_qdiscs_and_links_as_they_were() {
    let mut cleanup = Cleanup::default();
    let br = unique("bwh");
    cleanup.link(&br);
    let name = unique("bw-100");
    let net = Net::new(
        &name,
        "1.0.0",
        json!([bridge(&br, "198.18.194.0/24"),
               {"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 1_000_000,
                "egressRate": 8_000_000, "egressBurst": 1_000_000}]),
        Impl::Ferry,
    );
    let ns = Netns::new("bwh");
    let qdiscs_before = bandwidth_like_qdiscs();
    let ifbs_before = ifb_links();
    let mut hosts = Vec::new();
    let mut ifbs = Vec::new();
    for i in 0..100 {
        let att = net.att(&ns, &format!("bw-cycle-{i}"));
        let r = net.add(&att);
        let host = host_veth(&r, &br);
        assert_eq!(
            ifbs_of(&r),
            vec![ifb_name(&name, &att.container_id)],
            "cycle {i}"
        );
        // Per device: a whole-node dump can be cut short by other tests'
        // churn (tc then prints a partial list).
        let like = qdiscs(&host).iter().filter(|q| bandwidth_like(q)).count();
        assert_eq!(like, 2, "cycle {i}");
        net.del(&att);
        if i % 10 == 0 {
            net.del(&att); // DEL is idempotent
        }
        hosts.push(host);
        ifbs.push(ifb_name(&name, &att.container_id));
    }
    for l in hosts.iter().chain(&ifbs) {
        assert!(!link_exists(l), "{l} left after DEL");
    }
    // Other tests may come and go meanwhile: compare what this one can own.
    let qdiscs_after = bandwidth_like_qdiscs();
    for (dev, n) in &qdiscs_after {
        assert!(
            !hosts.contains(dev) && !ifbs.contains(dev),
            "{dev} has {n} bandwidth-like qdiscs after the cycles"
        );
        if let Some(b) = qdiscs_before.get(dev) {
            assert!(n <= b, "{dev}: {b} bandwidth-like qdiscs before, {n} after");
        }
    }
    let left: Vec<_> = ifb_links()
        .into_iter()
        .filter(|l| !ifbs_before.contains(l) && ifbs.contains(l))
        .collect();
    assert!(left.is_empty(), "ifbs left: {left:?}");
    assert_eq!(
        qdiscs(&br),
        vec![json!({"kind": "noqueue", "handle": "0:", "root": true, "options": {}})],
        "the bridge's qdiscs changed"
    );
}

/// What bandwidth could change around one host veth (qdiscs without their
/// counters, filters) and whether the attachment's ifb exists.
fn state(host: &str, ifb: &str) -> (Vec<Value>, Vec<Value>, bool) {
    let q = qdiscs(host)
        .into_iter()
        .map(|q| json!([q["kind"], q["handle"], q["parent"], q["root"]]))
        .collect();
    (q, ingress_filters(host, ifb), link_exists(ifb))
}

#[test]
fn bad_config_is_code_7_and_changes_nothing() {
    let mut cleanup = Cleanup::default();
    let br = unique("bwb");
    cleanup.link(&br);
    let name = unique("bw-bad");
    let net = Net::new(
        &name,
        "1.0.0",
        json!([bridge(&br, "198.18.195.0/24")]),
        Impl::Ferry,
    );
    let reference = Net::new(
        &name,
        "1.0.0",
        json!([{"type": "bandwidth"}]),
        Impl::Reference,
    );
    let ns = Netns::new("bwb");
    let att = net.att(&ns, "bw-bad-1");
    let prev = net.add(&att);
    let host = host_veth(&prev, &br);
    let ifb = ifb_name(&name, "bw-bad-1");
    cleanup.link(&ifb);
    let before = state(&host, &ifb);
    let cases = [
        json!({"ingressRate": 1_000_000}),
        json!({"ingressBurst": 1_000_000}),
        json!({"egressRate": 1_000_000, "ingressRate": 8000, "ingressBurst": 8000}),
        json!({"egressBurst": 1_000_000}),
        json!({"ingressRate": -1, "ingressBurst": 1_000_000}),
        json!({"egressRate": 1_000_000, "egressBurst": -8}),
        json!({"ingressRate": 8_000_000, "ingressBurst": 40_000_000_000u64}),
        json!({"runtimeConfig": {"bandwidth": {"egressRate": 1_000_000}}}),
    ];
    for bad in cases {
        let mut conf = json!({"cniVersion": "1.0.0", "name": name, "type": "bandwidth",
                              "prevResult": prev});
        for (k, v) in bad.as_object().unwrap() {
            conf[k] = v.clone();
        }
        let err = net
            .exec_bandwidth("ADD", &conf, &att)
            .expect_err("Ferry accepted a bad config");
        assert_eq!(err.code, 7, "{bad}: {err}");
        assert_eq!(state(&host, &ifb), before, "{bad}: Ferry changed something");
        // The reference refuses these too (with its own codes).
        let err = reference
            .exec_bandwidth("ADD", &conf, &att)
            .expect_err("the reference accepted a bad config");
        eprintln!("reference on {bad}: code {}: {}", err.code, err.msg);
        let _ = reference.exec_bandwidth("DEL", &conf, &att);
        assert_eq!(
            state(&host, &ifb),
            before,
            "{bad}: the reference changed something"
        );
    }
    // Without prevResult, shaping is refused as a chained plugin's should.
    let conf = json!({"cniVersion": "1.0.0", "name": name, "type": "bandwidth",
                      "ingressRate": 8000, "ingressBurst": 8000});
    let err = net.exec_bandwidth("ADD", &conf, &att).unwrap_err();
    assert_eq!(err.code, 7, "{err}");
    assert_eq!(state(&host, &ifb), before);
    net.del(&att);
}

#[test]
fn coexists_with_foreign_qdiscs_replaces_its_own_and_cleans_up_on_del() {
    let mut cleanup = Cleanup::default();
    let br = unique("bwx");
    cleanup.link(&br);
    let name = unique("bw-co");
    let net = Net::new(
        &name,
        "1.0.0",
        json!([bridge(&br, "198.18.196.0/24")]),
        Impl::Ferry,
    );
    let ns = Netns::new("bwx");
    let att = net.att(&ns, "bw-co-1");
    let prev = net.add(&att);
    let host = host_veth(&prev, &br);
    let ifb = ifb_name(&name, "bw-co-1");
    // bandwidth runs outside the network's list here: its ifb goes on panic too.
    cleanup.link(&ifb);
    let conf = |rate: u64| {
        json!({"cniVersion": "1.0.0", "name": name, "type": "bandwidth",
               "ingressRate": rate, "ingressBurst": 1_000_000,
               "egressRate": rate, "egressBurst": 1_000_000, "prevResult": prev})
    };

    // Someone else's root qdisc: refused, left alone, nothing created.
    sh(&format!("tc qdisc add dev {host} root handle 7: htb"));
    let before = state(&host, &ifb);
    let err = net
        .exec_bandwidth("ADD", &conf(8_000_000), &att)
        .unwrap_err();
    assert_eq!(err.code, 100, "{err}");
    assert!(err.to_string().contains("htb 7:"), "{err}");
    assert_eq!(state(&host, &ifb), before);
    sh(&format!("tc qdisc del dev {host} root"));

    // Someone else's filter at pref 1: refused after the ingress tbf was
    // set; the tbf and the ifb are rolled back, the foreign filter stays.
    sh(&format!("tc qdisc add dev {host} ingress"));
    sh(&format!(
        "tc filter add dev {host} parent ffff: pref 1 protocol ip u32 match u32 0 0 classid 1:2"
    ));
    let before = state(&host, &ifb);
    let err = net
        .exec_bandwidth("ADD", &conf(8_000_000), &att)
        .unwrap_err();
    assert_eq!(err.code, 100, "{err}");
    assert_eq!(state(&host, &ifb), before);
    assert!(!link_exists(&ifb));
    sh(&format!("tc filter del dev {host} parent ffff: pref 1"));

    // A foreign filter at another pref coexists: it survives ADD and DEL,
    // and keeps the shared ingress qdisc alive.
    sh(&format!(
        "tc filter add dev {host} parent ffff: pref 5 protocol ip u32 match u32 0 0 classid 1:2"
    ));
    let r = net.exec_bandwidth("ADD", &conf(8_000_000), &att).unwrap();
    assert_eq!(ifbs_of(&r), vec![ifb.clone()]);
    // A second ADD replaces its own tbf and filter instead of failing or stacking.
    let r = net.exec_bandwidth("ADD", &conf(16_000_000), &att).unwrap();
    assert_eq!(ifbs_of(&r), vec![ifb.clone()]);
    let q = qdiscs(&host);
    assert_eq!(q.iter().filter(|q| q["kind"] == "tbf").count(), 1, "{q:?}");
    assert_eq!(q[0]["options"]["rate"], 2_000_000, "{q:?}");
    let keys: Vec<_> = ingress_filters(&host, &ifb)
        .into_iter()
        .filter(|f| f.pointer("/options/flowid").is_some())
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "one redirect and the foreign filter: {keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|f| f.pointer("/options/actions/0/to_dev") == Some(&json!("IFB")))
            .count(),
        1,
        "{keys:?}"
    );
    assert_eq!(qdiscs(&ifb)[0]["options"]["rate"], 2_000_000);

    // CHECK: the configured rates pass, others do not, nor a missing tbf.
    let mut with_result = conf(16_000_000);
    with_result["prevResult"] = r.clone();
    net.exec_bandwidth("CHECK", &with_result, &att).unwrap();
    let mut wrong = conf(8_000_000);
    wrong["prevResult"] = r.clone();
    let err = net.exec_bandwidth("CHECK", &wrong, &att).unwrap_err();
    assert!(err.to_string().contains("Rate"), "{err}");
    sh(&format!("tc qdisc del dev {ifb} root"));
    let err = net.exec_bandwidth("CHECK", &with_result, &att).unwrap_err();
    assert!(err.to_string().contains(&ifb), "{err}");

    // DEL removes the ifb and bandwidth's qdiscs; the foreign filter and
    // with it the ingress qdisc stay. A second DEL succeeds.
    net.exec_bandwidth("DEL", &with_result, &att).unwrap();
    assert!(!link_exists(&ifb));
    let q = qdiscs(&host);
    assert!(q.iter().all(|q| q["kind"] != "tbf"), "{q:?}");
    let left = ingress_filters(&host, &ifb);
    assert!(
        !left.is_empty() && left.iter().all(|f| f["pref"] == 5),
        "{left:?}"
    );
    net.exec_bandwidth("DEL", &with_result, &att).unwrap();
    // With the foreign filter gone, DEL also drops the ingress qdisc.
    sh(&format!("tc filter del dev {host} parent ffff: pref 5"));
    net.exec_bandwidth("ADD", &conf(8_000_000), &att).unwrap();
    net.exec_bandwidth("DEL", &with_result, &att).unwrap();
    assert_eq!(
        qdiscs(&host),
        vec![json!({"kind": "noqueue", "handle": "0:", "root": true, "options": {}})]
    );
    // GC and STATUS have nothing to do and succeed.
    let mut v11 = conf(8_000_000);
    v11["cniVersion"] = json!("1.1.0");
    v11.as_object_mut().unwrap().remove("prevResult");
    net.exec_bandwidth("GC", &v11, &att).unwrap();
    net.exec_bandwidth("STATUS", &v11, &att).unwrap();
    net.del(&att);
}
