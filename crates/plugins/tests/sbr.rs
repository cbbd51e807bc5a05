//! Ferry's `sbr` against the reference (/usr/lib/cni/sbr, Debian
//! containernetworking-plugins 1.1.1): the same conflist (Ferry's ptp and
//! host-local, dual stack, then sbr) through the ferry-cni runtime in fresh
//! namespaces, comparing rules (`ip -j rule`) and routes of all tables;
//! ADD/DEL on a bare veth; the `table` option; DEL twice and with the
//! namespace gone; refused configs change nothing. Subnets:
//! 198.18.177.0/24, 198.18.178.0/24, 198.18.180.0/24, fd00:176:2::/64,
//! fd00:176:3::/64.
//!
//! Differences from the reference, each asserted below:
//! - DEL also empties sbr's tables of the interface's routes; the
//!   reference leaves them until the interface is deleted (in a chain the
//!   previous plugin's DEL removes the interface, so the end state is equal).
//! - DEL with the namespace or the interface gone succeeds (the interface's
//!   rules found from prevResult); the reference 1.1.1 fails, and with the
//!   namespace gone its lock (O_CREAT on the path) leaves a regular file at
//!   the namespace's path.
//! - `table` (newer reference plugins) only adds the rules; 1.1.1 ignores the
//!   key and moves the routes.
//! - CHECK checks that every address has its rule; the reference's CHECK
//!   does nothing.
//! - A table is free when no rule and no route (in any table) uses it; the
//!   reference looks only at rules and main-table routes.

mod ferrypath;

use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ferry_testkit::snapshot::Snapshot;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry-plugin");

/// One run of a conflist. Field order is drop order: the DELs in `dels`
/// run while the plugin, cache and IPAM dirs still exist.
struct Run {
    dels: Cleanup,
    rt: CniConfig,
    list: NetworkConfigList,
    _plugins: tempfile::TempDir,
    _cache: tempfile::TempDir,
    _ipam: tempfile::TempDir,
}

impl Run {
    fn new(reference: bool, mut plugins: Value) -> Run {
        require_root();
        require_reference("sbr");
        let ipam = tempfile::tempdir().unwrap();
        for p in plugins.as_array_mut().unwrap() {
            if p.get("ipam").is_some() {
                p["ipam"]["dataDir"] = json!(ipam.path());
            }
        }
        let conf = json!({"cniVersion": "1.0.0", "name": unique("sbr"), "plugins": plugins});
        let list = NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).unwrap()).unwrap();
        let plugins = ferrypath::plugin_dir(reference.then_some("sbr"));
        let cache = tempfile::tempdir().unwrap();
        Run {
            dels: Cleanup::default(),
            rt: CniConfig::new(vec![plugins.path().to_path_buf()], cache.path()),
            list,
            _plugins: plugins,
            _cache: cache,
            _ipam: ipam,
        }
    }

    fn att(ns: &Netns, id: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: id.into(),
            netns: ns.path(),
            ifname: "eth0".into(),
            ..RuntimeConf::default()
        }
    }

    fn add(&mut self, att: &RuntimeConf) -> Value {
        let (rt, list, a) = (self.rt.clone(), self.list.clone(), att.clone());
        self.dels.push(move || {
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
}

/// The rules of a namespace, both families, flattened: `priority from src
/// lookup table`.
fn rules(ns: &Netns) -> Vec<String> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let v: Value =
            serde_json::from_str(&ns.exec(&format!("ip -j {family} rule show"))).unwrap();
        for r in v.as_array().unwrap() {
            let src = match r.get("srclen") {
                Some(l) => format!("{}/{l}", r["src"].as_str().unwrap()),
                None => r["src"].as_str().unwrap_or("all").to_string(),
            };
            out.push(format!(
                "{family} {} from {src} lookup {}",
                r["priority"],
                r["table"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// Routes of all tables (`ip -j route show table all`), local table excluded.
fn routes(ns: &Netns) -> Vec<String> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let v: Value =
            serde_json::from_str(&ns.exec(&format!("ip -j {family} route show table all")))
                .unwrap();
        for r in v.as_array().unwrap() {
            if r["table"] == "local" {
                continue;
            }
            out.push(format!(
                "{} {} via {} dev {} table {} proto {} metric {}",
                r["type"].as_str().unwrap_or("unicast"),
                r["dst"].as_str().unwrap_or(""),
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap_or("-"),
                r["table"].as_str().unwrap_or("main"),
                r["protocol"].as_str().unwrap_or("-"),
                r["metric"]
            ));
        }
    }
    out.sort();
    out
}

/// ptp (host-local, dual stack, `v4`/`v6` subnets; each test its own, as
/// ptp routes the container's addresses in the host namespace) and sbr.
fn chain(table: Option<u32>, v4: &str, v6: &str) -> Value {
    let mut sbr = json!({"type": "sbr"});
    if let Some(t) = table {
        sbr["table"] = json!(t);
    }
    json!([
        {"type": "ptp", "ipam": {"type": "host-local",
            "ranges": [[{"subnet": v4}], [{"subnet": v6}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "198.18.178.0/24"}]}},
        sbr
    ])
}

struct Observed {
    snapshot: Snapshot,
    result: Value,
}

/// Runs the chain; `preexisting` is a rule added before ADD.
fn observe(reference: bool, preexisting: Option<&str>) -> Observed {
    // The namespace outlives the run: the cleanup DELs must not meet a
    // missing namespace, where the reference creates a regular file at its
    // path (its lock opens the path with O_CREAT).
    let ns = Netns::new("sbd");
    let mut run = Run::new(reference, chain(None, "198.18.177.0/24", "fd00:176:2::/64"));
    if let Some(r) = preexisting {
        ns.exec(&format!("ip rule add {r}"));
    }
    let before_rules = rules(&ns);
    let att = Run::att(&ns, "sbr-diff-ctr");
    let mut result = run.add(&att);
    let mut snap = Snapshot::default();
    snap.namespace("ctr", Some(&ns.name), None, false);
    for (i, r) in rules(&ns).into_iter().enumerate() {
        snap.insert(format!("ctr/rule/{i}"), r);
    }
    run.rt
        .check_network_list(&run.list.name, Some(&run.list), &att)
        .unwrap_or_else(|e| panic!("CHECK failed (reference: {reference}): {e}"));
    run.del(&att);
    let again = run
        .rt
        .del_network_list(&run.list.name, Some(&run.list), &att);
    if reference {
        // Known difference: the reference's DEL fails once the interface is gone.
        let e = again.expect_err("the reference's second DEL");
        assert!(e.to_string().contains("Failed to get link"), "{e}");
    } else {
        again.unwrap();
    }
    assert_eq!(rules(&ns), before_rules, "rules left after DEL");
    assert!(!ns.exec_ok("ip link show eth0"));
    for i in result["interfaces"].as_array_mut().unwrap() {
        if i["sandbox"].as_str().unwrap_or("").is_empty() {
            i["name"] = json!("veth*");
        } else {
            i["sandbox"] = json!("NS");
        }
        i["mac"] = json!("MAC");
    }
    Observed {
        snapshot: snap,
        result,
    }
}

#[test]
fn differential_against_the_reference_chained_after_ptp() {
    for pre in [None, Some("from 198.18.177.250 lookup 100")] {
        let reference = observe(true, pre);
        let ferry = observe(false, pre);
        let diff = reference.snapshot.diff(&ferry.snapshot);
        assert!(
            diff.is_empty(),
            "{pre:?}: reference | ferry:\n{}",
            diff.join("\n")
        );
        assert_eq!(reference.result, ferry.result);
        // The tables handed out: one per address, the first free from 100.
        let rules: Vec<&String> = ferry
            .snapshot
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("ctr/rule/"))
            .map(|(_, v)| v)
            .collect();
        let (t4, t6) = if pre.is_some() {
            (101, 102)
        } else {
            (100, 101)
        };
        assert!(
            rules.iter().any(|r| r.starts_with("-4 ")
                && r.contains(" from 198.18.177.")
                && r.ends_with(&format!("lookup {t4}"))),
            "{rules:?}"
        );
        assert!(
            rules.iter().any(|r| r.starts_with("-6 ")
                && r.contains(" from fd00:176:2::")
                && r.ends_with(&format!("lookup {t6}"))),
            "{rules:?}"
        );
        let main_eth0 = ferry
            .snapshot
            .0
            .keys()
            .filter(|k| k.starts_with("ctr/route/main/") && k.ends_with("/eth0"))
            .count();
        assert_eq!(main_eth0, 0, "eth0's main-table routes were moved");
    }
}

/// Runs one plugin binary directly, as a runtime would.
fn exec(plugin: &[&str], command: &str, netns: &str, conf: &Value) -> (bool, Value) {
    let out = run_with_stdin(
        Command::new(plugin[0])
            .args(&plugin[1..])
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "sbr-bare")
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stderr(Stdio::piped()),
        &serde_json::to_vec(conf).unwrap(),
    );
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

/// A namespace with a bare veth `eth0`, addresses and routes, and the
/// matching sbr config (prevResult included).
fn bare(prefix: &str, extra: Value) -> (Netns, Value) {
    let ns = Netns::new(prefix);
    for c in [
        "ip link add eth0 type veth peer name peer0",
        "ip link set eth0 up",
        "ip link set peer0 up",
        "ip addr add 198.18.177.5/24 dev eth0",
        "ip addr add fd00:176:2::5/64 dev eth0 nodad",
        "ip route add default via 198.18.177.1 dev eth0",
        "ip route add 198.18.178.0/24 via 198.18.177.1 dev eth0",
    ] {
        ns.exec(c);
    }
    let mut conf = json!({"cniVersion": "1.0.0", "name": "sbr-bare", "type": "sbr",
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": ns.path()}],
            "ips": [{"interface": 0, "address": "198.18.177.5/24", "gateway": "198.18.177.1"},
                    {"interface": 0, "address": "fd00:176:2::5/64", "gateway": "fd00:176:2::1"}]}});
    for (k, v) in extra.as_object().unwrap() {
        conf[k] = v.clone();
    }
    (ns, conf)
}

#[test]
fn bare_interface_add_and_del_against_the_reference() {
    require_root();
    let reference = require_reference("sbr");
    let mut seen = Vec::new();
    for plugin in [vec![reference.to_str().unwrap()], vec![FERRY, "sbr"]] {
        let (ns, conf) = bare("sbb", json!({}));
        let (before_rules, before_routes) = (rules(&ns), routes(&ns));
        let (ok, r) = exec(&plugin, "ADD", &ns.path(), &conf);
        assert!(ok, "{plugin:?} ADD: {r}");
        assert_eq!(
            r["ips"], conf["prevResult"]["ips"],
            "prevResult passed through"
        );
        let added = (rules(&ns), routes(&ns));
        let (ok, r) = exec(&plugin, "DEL", &ns.path(), &conf);
        assert!(ok, "{plugin:?} DEL: {r}");
        assert_eq!(rules(&ns), before_rules, "{plugin:?}: rules left after DEL");
        let after_routes = routes(&ns);
        let (ok, r) = exec(&plugin, "DEL", &ns.path(), &conf);
        assert!(ok, "{plugin:?} second DEL: {r}");
        seen.push((added, after_routes, before_routes));
    }
    let (ref_added, ref_after, _) = &seen[0];
    let (ferry_added, ferry_after, before) = &seen[1];
    assert_eq!(ref_added, ferry_added, "ADD differs: reference | ferry");
    // Known difference: Ferry empties its tables on DEL, the reference
    // leaves them to the interface's deletion.
    assert!(
        ref_after.iter().any(|r| r.contains("table 100")),
        "{ref_after:?}"
    );
    assert!(
        !ferry_after.iter().any(|r| r.contains("table 10")),
        "Ferry left routes in its tables: {ferry_after:?}"
    );
    assert!(
        !ferry_after
            .iter()
            .any(|r| r.contains("table main") && r.contains("dev eth0")),
        "main-table routes stay moved, as the reference: {ferry_after:?} (before: {before:?})"
    );
}

#[test]
fn table_option_adds_only_rules() {
    require_root();
    let (ns, conf) = bare("sbt", json!({"table": 500}));
    let (before_rules, before_routes) = (rules(&ns), routes(&ns));
    let (ok, r) = exec(&[FERRY, "sbr"], "ADD", &ns.path(), &conf);
    assert!(ok, "{r}");
    assert_eq!(routes(&ns), before_routes, "routes must stay with `table`");
    let now = rules(&ns);
    assert!(
        now.contains(&"-4 32765 from 198.18.177.5 lookup 500".to_string()),
        "{now:?}"
    );
    assert!(
        now.contains(&"-6 32765 from fd00:176:2::5 lookup 500".to_string()),
        "{now:?}"
    );
    let (ok, r) = exec(&[FERRY, "sbr"], "CHECK", &ns.path(), &conf);
    assert!(ok, "{r}");
    // A rule of another table from the same address survives DEL.
    ns.exec("ip rule add from 198.18.177.5 lookup 600 pref 32765");
    let (ok, r) = exec(&[FERRY, "sbr"], "DEL", &ns.path(), &conf);
    assert!(ok, "{r}");
    let mut want = before_rules.clone();
    want.insert(1, "-4 32765 from 198.18.177.5 lookup 600".to_string());
    assert_eq!(rules(&ns), want);
    assert_eq!(routes(&ns), before_routes);
    // CHECK now fails: the rules are gone.
    let (ok, r) = exec(&[FERRY, "sbr"], "CHECK", &ns.path(), &conf);
    assert!(!ok, "{r}");
}

#[test]
fn del_with_the_interface_or_namespace_gone_succeeds() {
    require_root();
    // Interface gone: its rules are found from prevResult.
    let (ns, conf) = bare("sbg", json!({}));
    let before = rules(&ns);
    let (ok, r) = exec(&[FERRY, "sbr"], "ADD", &ns.path(), &conf);
    assert!(ok, "{r}");
    ns.exec("ip link del eth0");
    let (ok, r) = exec(&[FERRY, "sbr"], "DEL", &ns.path(), &conf);
    assert!(ok, "{r}");
    assert_eq!(rules(&ns), before);
    // Namespace gone, through the runtime.
    let mut run = Run::new(false, chain(None, "198.18.180.0/24", "fd00:176:3::/64"));
    let ns = Netns::new("sbn");
    let att = Run::att(&ns, "sbr-gone");
    run.add(&att);
    drop(ns);
    run.del(&att);
    run.del(&att);
}

#[test]
fn refused_configs_answer_the_right_code_and_change_nothing() {
    require_root();
    let (ns, conf) = bare("sbx", json!({}));
    let state = |ns: &Netns| (rules(ns), routes(ns));
    let before = state(&ns);
    let mut no_ips = conf.clone();
    no_ips["prevResult"]["ips"] = json!([]);
    let mut no_prev = conf.clone();
    no_prev.as_object_mut().unwrap().remove("prevResult");
    let mut bad_table = conf.clone();
    bad_table["table"] = json!(-1);
    let mut zero_table = conf.clone();
    zero_table["table"] = json!(0);
    let mut text_table = conf.clone();
    text_table["table"] = json!("100");
    for (c, code, needle) in [
        (no_ips, 7, "No IP addresses"),
        (no_prev, 7, "prevResult"),
        (bad_table, 7, "table"),
        (zero_table, 7, "table"),
        (text_table, 6, "netconf"),
    ] {
        let (ok, err) = exec(&[FERRY, "sbr"], "ADD", &ns.path(), &c);
        assert!(!ok, "{c} was accepted");
        assert_eq!(err["code"], code, "{c}: {err}");
        let text = format!("{} {}", err["msg"], err["details"]);
        assert!(text.contains(needle), "{needle:?} not in {err}");
        assert_eq!(state(&ns), before, "{c} changed the namespace");
    }
    // A gateway the kernel cannot reach fails ADD at the second address,
    // after the first one's rule and routes: everything is put back.
    let mut unreachable = conf.clone();
    unreachable["prevResult"]["ips"][1]["gateway"] = json!("fd00:176:9::1");
    let (ok, err) = exec(&[FERRY, "sbr"], "ADD", &ns.path(), &unreachable);
    assert!(!ok, "{err}");
    assert!(
        err["msg"].as_str().unwrap().contains("default route"),
        "{err}"
    );
    assert_eq!(state(&ns), before, "a failed ADD left changes");
}
