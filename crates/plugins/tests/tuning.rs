//! Ferry's `tuning` against the reference (/usr/lib/cni/tuning, Debian
//! containernetworking-plugins 1.1.1): the same conflist (Ferry's ptp and
//! host-local, then tuning) through the ferry-cni runtime in fresh
//! namespaces, comparing links, addresses, routes, sysctls, link flags and
//! the backup file; ADD and DEL on a bare veth comparing what each sets and
//! restores; DEL twice and with the namespace gone; refused configs change
//! nothing. Subnets: 198.18.176.0/24, 198.18.179.0/24, fd00:176:1::/64
//! (ptp routes container addresses in the host namespace: one per test).
//!
//! Differences from the reference, each asserted below:
//! - CHECK: the reference does not substitute IFNAME in sysctl keys on CHECK
//!   and fails (`open /proc/sys/net/ipv4/conf/IFNAME/...`); Ferry checks the
//!   interface's sysctl.
//! - DEL restores the sysctls tuning changed (when they still hold the value
//!   it wrote); the reference leaves them. The backup file carries them under
//!   an extra `sysctl` key the reference ignores.
//! - `txQLen` (newer reference plugins) is applied and restored; 1.1.1
//!   ignores the key.
//! - Refused configs (non-`net.*` sysctl, malformed MAC, negative MTU) fail
//!   with code 7 before any change; the reference fails with 999 after
//!   writing the sysctls.

mod ferrypath;

use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ferry_testkit::snapshot::Snapshot;
use ferry_testkit::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry-plugin");

/// One run of a conflist. Field order is drop order: the DELs in `dels`
/// run while the plugin, cache and data dirs still exist.
struct Run {
    dels: Cleanup,
    rt: CniConfig,
    list: NetworkConfigList,
    _plugins: tempfile::TempDir,
    _cache: tempfile::TempDir,
    _ipam: tempfile::TempDir,
    tuning_dir: tempfile::TempDir,
}

impl Run {
    fn new(reference: bool, name: &str, mut plugins: Value) -> Run {
        require_root();
        require_reference("tuning");
        let ipam = tempfile::tempdir().unwrap();
        let tuning_dir = tempfile::tempdir().unwrap();
        for p in plugins.as_array_mut().unwrap() {
            if p.get("ipam").is_some() {
                p["ipam"]["dataDir"] = json!(ipam.path());
            }
            if p["type"] == "tuning" {
                p["dataDir"] = json!(tuning_dir.path());
            }
        }
        let conf = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        let list = NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).unwrap()).unwrap();
        let plugins = ferrypath::plugin_dir(reference.then_some("tuning"));
        let cache = tempfile::tempdir().unwrap();
        Run {
            dels: Cleanup::default(),
            rt: CniConfig::new(vec![plugins.path().to_path_buf()], cache.path()),
            list,
            _plugins: plugins,
            _cache: cache,
            _ipam: ipam,
            tuning_dir,
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

/// `ip -j -d link show eth0` attributes tuning changes.
fn link_attrs(ns: &Netns, dev: &str) -> Value {
    let v: Value = serde_json::from_str(&ns.exec(&format!("ip -j -d link show {dev}"))).unwrap();
    let l = &v[0];
    let flags: Vec<String> = l["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    json!({
        "mac": l["address"],
        "mtu": l["mtu"],
        "txqlen": l["txqlen"],
        "promisc": flags.contains(&"PROMISC".to_string()),
        "allmulti": flags.contains(&"ALLMULTI".to_string()),
    })
}

fn sysctl(ns: &Netns, key: &str) -> String {
    ns.exec(&format!("cat /proc/sys/{}", key.replace('.', "/")))
        .trim()
        .to_string()
}

const SYSCTLS: &[&str] = &["net.ipv4.conf.eth0.arp_filter", "net.core.somaxconn"];

fn tuning_conf() -> Value {
    json!({"type": "tuning",
           "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1", "net.core.somaxconn": "512"},
           "mac": "c2:b0:57:49:47:f1", "mtu": 1400, "promisc": true, "allmulti": true})
}

struct Observed {
    snapshot: Snapshot,
    result: Value,
    backup: Value,
    check: Result<(), String>,
}

fn observe(reference: bool) -> Observed {
    let mut run = Run::new(
        reference,
        &unique("tu-diff"),
        json!([
            {"type": "ptp", "ipam": {"type": "host-local",
                "ranges": [[{"subnet": "198.18.176.0/24"}], [{"subnet": "fd00:176:1::/64"}]]}},
            tuning_conf()
        ]),
    );
    let ns = Netns::new("tud");
    let att = Run::att(&ns, "tu-diff-ctr");
    let mut result = run.add(&att);

    let mut snap = Snapshot::default();
    snap.namespace("ctr", Some(&ns.name), None, true);
    snap.sysctls("ctr", Some(&ns.name), SYSCTLS);
    snap.insert("ctr/eth0/attrs", link_attrs(&ns, "eth0").to_string());
    let file = run.tuning_dir.path().join("tu-diff-ctr_eth0.json");
    let mut backup: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    backup["mac"] = json!("MAC");
    backup.as_object_mut().unwrap().remove("sysctl");

    let check = run
        .rt
        .check_network_list(&run.list.name, Some(&run.list), &att)
        .map_err(|e| e.to_string());

    run.del(&att);
    run.del(&att);
    assert!(!ns.exec_ok("ip link show eth0"), "eth0 left after DEL");
    assert!(!file.exists(), "backup file left after DEL");
    // Host veths are random: normalise them in the result.
    for i in result["interfaces"].as_array_mut().unwrap() {
        if i["sandbox"].as_str().unwrap_or("").is_empty() {
            i["name"] = json!("veth*");
            i["mac"] = json!("MAC");
        } else {
            i["sandbox"] = json!("NS");
        }
    }
    Observed {
        snapshot: snap,
        result,
        backup,
        check,
    }
}

#[test]
fn differential_against_the_reference_chained_after_ptp() {
    let reference = observe(true);
    let ferry = observe(false);
    let diff = reference.snapshot.diff(&ferry.snapshot);
    assert!(diff.is_empty(), "reference | ferry:\n{}", diff.join("\n"));
    assert_eq!(reference.result, ferry.result);
    assert_eq!(
        reference.result["interfaces"][1]["mac"],
        "c2:b0:57:49:47:f1"
    );
    assert_eq!(reference.backup, ferry.backup, "backup files differ");
    assert_eq!(
        ferry.backup,
        json!({"mac": "MAC", "promisc": false, "mtu": 1500, "allmulti": false})
    );
    // Known difference: the reference's CHECK reads .../conf/IFNAME/...
    assert!(
        reference
            .check
            .as_ref()
            .is_err_and(|e| e.contains("IFNAME")),
        "the reference's CHECK: {:?}",
        reference.check
    );
    ferry.check.unwrap();
}

/// Runs one plugin binary directly, as a runtime would.
fn exec(
    plugin: &[&str],
    command: &str,
    ns: &str,
    cid: &str,
    conf: &Value,
    env: &[(&str, &str)],
) -> (bool, Value) {
    let mut cmd = Command::new(plugin[0]);
    cmd.args(&plugin[1..])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", ns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(conf).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v)
}

/// A namespace with a bare veth `eth0` (peer `peer0`) and its prevResult.
fn bare(prefix: &str) -> (Netns, Value) {
    let ns = Netns::new(prefix);
    ns.exec("ip link add eth0 type veth peer name peer0");
    ns.exec("ip link set eth0 up");
    ns.exec("ip addr add 198.18.176.200/24 dev eth0");
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": ns.path()}],
        "ips": [{"interface": 0, "address": "198.18.176.200/24"}]});
    (ns, prev)
}

fn with(mut conf: Value, dir: &Path, prev: &Value) -> Value {
    conf["cniVersion"] = json!("1.0.0");
    conf["name"] = json!("tu-bare");
    conf["dataDir"] = json!(dir);
    conf["prevResult"] = prev.clone();
    conf
}

#[test]
fn add_sets_and_del_restores_like_the_reference() {
    require_root();
    let reference = require_reference("tuning");
    let reference = reference.to_str().unwrap();
    let mut seen = Vec::new();
    for plugin in [vec![reference], vec![FERRY, "tuning"]] {
        let (ns, prev) = bare("tub");
        let dir = tempfile::tempdir().unwrap();
        let conf = with(tuning_conf(), dir.path(), &prev);
        let before = link_attrs(&ns, "eth0");
        let before_sysctls: Vec<String> = SYSCTLS.iter().map(|k| sysctl(&ns, k)).collect();
        let (ok, result) = exec(&plugin, "ADD", &ns.path(), "tu-bare", &conf, &[]);
        assert!(ok, "{plugin:?} ADD: {result}");
        let after = link_attrs(&ns, "eth0");
        assert_eq!(
            after,
            json!({"mac": "c2:b0:57:49:47:f1", "mtu": 1400, "txqlen": 1000,
                   "promisc": true, "allmulti": true}),
            "{plugin:?}"
        );
        assert_eq!(sysctl(&ns, SYSCTLS[0]), "1");
        assert_eq!(sysctl(&ns, SYSCTLS[1]), "512");
        assert_eq!(result["interfaces"][0]["mac"], "c2:b0:57:49:47:f1");
        let (ok, out) = exec(&plugin, "DEL", &ns.path(), "tu-bare", &conf, &[]);
        assert!(ok, "{plugin:?} DEL: {out}");
        assert_eq!(
            link_attrs(&ns, "eth0"),
            before,
            "{plugin:?}: link not restored"
        );
        let sysctls: Vec<String> = SYSCTLS.iter().map(|k| sysctl(&ns, k)).collect();
        seen.push((before_sysctls, sysctls));
        assert!(files(dir.path()).is_empty(), "{plugin:?} left its backup");
        // DEL again: nothing to restore, still success.
        let (ok, out) = exec(&plugin, "DEL", &ns.path(), "tu-bare", &conf, &[]);
        assert!(ok, "{plugin:?} second DEL: {out}");
    }
    // Known difference: the reference leaves sysctls as ADD set them,
    // Ferry puts them back.
    let (ref_before, ref_after) = &seen[0];
    assert_ne!(ref_before, ref_after);
    assert_eq!(ref_after, &["1", "512"]);
    let (ferry_before, ferry_after) = &seen[1];
    assert_eq!(ferry_before, ferry_after, "Ferry restores sysctls on DEL");
}

#[test]
fn precedence_txqlen_and_reference_backup_interop() {
    require_root();
    let reference = require_reference("tuning");
    let (ns, prev) = bare("tup");
    let dir = tempfile::tempdir().unwrap();
    // args.cni > runtimeConfig > CNI_ARGS > config, as the reference.
    let conf = with(
        json!({"type": "tuning", "mac": "c2:00:00:00:00:01", "mtu": 1400, "txQLen": 500,
               "runtimeConfig": {"mac": "c2:00:00:00:00:03"},
               "args": {"cni": {"mtu": 1300, "promisc": true}}}),
        dir.path(),
        &prev,
    );
    let env = [("CNI_ARGS", "IgnoreUnknown=1;MAC=c2:00:00:00:00:02")];
    let before = link_attrs(&ns, "eth0");
    let (ok, r) = exec(&[FERRY, "tuning"], "ADD", &ns.path(), "tu-p", &conf, &env);
    assert!(ok, "{r}");
    assert_eq!(
        link_attrs(&ns, "eth0"),
        json!({"mac": "c2:00:00:00:00:03", "mtu": 1300, "txqlen": 500,
               "promisc": true, "allmulti": false})
    );
    let (ok, r) = exec(&[FERRY, "tuning"], "CHECK", &ns.path(), "tu-p", &conf, &env);
    assert!(ok, "CHECK: {r}");
    // The backup has the reference's keys (plus txQLen, as newer references),
    // so the reference's DEL restores Ferry's ADD.
    let (ok, r) = exec(
        &[reference.to_str().unwrap()],
        "DEL",
        &ns.path(),
        "tu-p",
        &conf,
        &env,
    );
    assert!(ok, "{r}");
    let mut restored = link_attrs(&ns, "eth0");
    assert_eq!(restored["txqlen"], 500, "1.1.1 does not know txQLen");
    restored["txqlen"] = before["txqlen"].clone();
    assert_eq!(restored, before);

    // A changed value fails Ferry's CHECK.
    let (ok, _) = exec(&[FERRY, "tuning"], "ADD", &ns.path(), "tu-p2", &conf, &env);
    assert!(ok);
    ns.exec("ip link set eth0 mtu 1280");
    let (ok, r) = exec(
        &[FERRY, "tuning"],
        "CHECK",
        &ns.path(),
        "tu-p2",
        &conf,
        &env,
    );
    assert!(!ok && r["details"].as_str().unwrap().contains("MTU"), "{r}");
    let (ok, _) = exec(&[FERRY, "tuning"], "DEL", &ns.path(), "tu-p2", &conf, &env);
    assert!(ok);
    assert_eq!(
        link_attrs(&ns, "eth0")["txqlen"],
        500,
        "restored to the value before tu-p2"
    );
}

#[test]
fn del_with_the_namespace_gone_succeeds_and_forgets_the_backup() {
    require_root();
    let mut run = Run::new(
        false,
        &unique("tu-gone"),
        json!([
            {"type": "ptp", "ipam": {"type": "host-local", "subnet": "198.18.179.0/24"}},
            tuning_conf()
        ]),
    );
    let ns = Netns::new("tug");
    let att = Run::att(&ns, "tu-gone-ctr");
    run.add(&att);
    let file = run.tuning_dir.path().join("tu-gone-ctr_eth0.json");
    assert!(file.exists());
    drop(ns);
    run.del(&att);
    run.del(&att);
    assert!(!file.exists(), "backup left after DEL without namespace");
}

/// A refused config: extra keys, the code, a word of the error, environment.
type Case<'a> = (Value, u64, &'a str, Vec<(&'a str, &'a str)>);

#[test]
fn refused_configs_answer_the_right_code_and_change_nothing() {
    require_root();
    let (ns, prev) = bare("tux");
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allowlist.conf");
    std::fs::write(
        &allow,
        "^net\\.core\\.somaxconn$\n^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let state = |ns: &Netns| {
        (
            ns.exec("ip -j -d link show"),
            SYSCTLS.iter().map(|k| sysctl(ns, k)).collect::<Vec<_>>(),
        )
    };
    let before = state(&ns);
    let cases: Vec<Case> = vec![
        (
            json!({"sysctl": {"net.core.somaxconn": "600", "kernel.pid_max": "1000"}}),
            7,
            "sysctl",
            vec![],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "600", "net.ipv4.ip_forward": "1"}}),
            7,
            "not allowed",
            vec![("FERRY_TUNING_ALLOWLIST", allow.to_str().unwrap())],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "600"}, "mac": "c2:b0:57:49:47"}),
            7,
            "MAC",
            vec![],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "600"}, "args": {"cni": {"mac": "zz:00:00:00:00:01"}}}),
            7,
            "MAC",
            vec![],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "600"}, "mtu": -5}),
            7,
            "MTU",
            vec![],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "600"}, "txQLen": -1}),
            7,
            "txQLen",
            vec![],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "600"}, "mtu": "big"}),
            6,
            "netconf",
            vec![],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": 600}}),
            6,
            "netconf",
            vec![],
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "600", "net.ipv4.no_such_key": "1"}}),
            7,
            "no_such_key",
            vec![],
        ),
        // The kernel refuses the MTU: what was already changed is put back.
        (
            json!({"sysctl": {"net.core.somaxconn": "600"}, "promisc": true, "mtu": 70000}),
            7,
            "MTU",
            vec![],
        ),
    ];
    for (extra, code, needle, env) in cases {
        let mut conf = json!({"type": "tuning"});
        for (k, v) in extra.as_object().unwrap() {
            conf[k] = v.clone();
        }
        let conf = with(conf, &data, &prev);
        let (ok, err) = exec(&[FERRY, "tuning"], "ADD", &ns.path(), "tu-bad", &conf, &env);
        assert!(!ok, "{conf} was accepted");
        assert_eq!(err["code"], code, "{conf}: {err}");
        let text = format!("{} {}", err["msg"], err["details"]);
        assert!(text.contains(needle), "{needle:?} not in {err}");
        assert_eq!(state(&ns), before, "{conf} changed the namespace");
        assert!(files(&data).is_empty(), "{conf} left a backup");
    }
    // The allowlist admits what it lists (IFNAME keys as written).
    let conf = with(
        json!({"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}}),
        &data,
        &prev,
    );
    let env = [("FERRY_TUNING_ALLOWLIST", allow.to_str().unwrap())];
    let (ok, r) = exec(&[FERRY, "tuning"], "ADD", &ns.path(), "tu-ok", &conf, &env);
    assert!(ok, "{r}");
    let (ok, r) = exec(&[FERRY, "tuning"], "DEL", &ns.path(), "tu-ok", &conf, &env);
    assert!(ok, "{r}");
    assert_eq!(state(&ns), before);
    // Without prevResult tuning refuses (a chained plugin).
    let mut conf = conf;
    conf.as_object_mut().unwrap().remove("prevResult");
    let (ok, r) = exec(&[FERRY, "tuning"], "ADD", &ns.path(), "tu-np", &conf, &[]);
    assert!(!ok && r["code"] == 7, "{r}");
    let _: PathBuf = data;
}
