//! `ferry cni` end to end: the binary against the reference plugins, and one
//! test per kind of bad input, each answering the spec's code and a message
//! naming the problem. Subnets 198.18.8.0/24 - 198.18.9.0/24.

use ferry_testkit::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

struct Cli {
    conf: tempfile::TempDir,
    cache: tempfile::TempDir,
    cni_path: String,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// The CNI error printed with --json.
    fn error(&self) -> Value {
        assert_ne!(self.code, 0, "expected a failure, stdout: {}", self.stdout);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("error is not JSON ({e}): {} / {}", self.stdout, self.stderr)
        })
    }
}

impl Cli {
    fn new() -> Cli {
        Cli {
            conf: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
            cni_path: "/usr/lib/cni".into(),
        }
    }

    fn write(&self, file: &str, v: &str) {
        std::fs::write(self.conf.path().join(file), v).unwrap();
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("cni")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NETCONFPATH", self.conf.path())
            .env("CNI_PATH", &self.cni_path)
            .env("FERRY_CNI_CACHE_DIR", self.cache.path())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A fake plugin: a shell script in its own CNI_PATH directory.
    fn script_plugin(&mut self, name: &str, body: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        self.cni_path = format!("{}:/usr/lib/cni", dir.path().display());
        dir
    }
}

fn bridge_conf(name: &str, bridge: &str, subnet: &str, data: &Path) -> String {
    json!({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "bridge": bridge,
                     "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data}}]
    })
    .to_string()
}

#[test]
fn add_check_del_through_the_cli_survives_a_deleted_conflist() {
    require_root();
    require_reference("bridge");
    let cli = Cli::new();
    let data = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::default();
    let bridge = unique("clib");
    cleanup.link(&bridge);
    let ns = Netns::new("clin");
    let name = unique("cli-net");
    cli.write(
        "10-net.conflist",
        &bridge_conf(&name, &bridge, "198.18.8.0/24", data.path()),
    );
    let netns = ns.path();

    let listed = cli.run(&["list", "--json"], &[]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let rows: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(rows[0]["name"], name.as_str());
    assert_eq!(rows[0]["plugins"][0]["type"], "bridge");
    assert!(rows[0]["plugins"][0]["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));

    let add = cli.run(&["add", &name, &netns, "--json"], &[("CNI_IFNAME", "net1")]);
    assert_eq!(add.code, 0, "{}{}", add.stdout, add.stderr);
    let result: Value = serde_json::from_str(&add.stdout).unwrap();
    let ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(ns.exec("ip -j addr show net1").contains(&ip));
    let check = cli.run(&["check", &name, &netns], &[("CNI_IFNAME", "net1")]);
    assert_eq!(check.code, 0, "{}", check.stderr);

    std::fs::remove_file(cli.conf.path().join("10-net.conflist")).unwrap();
    let del = cli.run(&["del", &name, &netns], &[("CNI_IFNAME", "net1")]);
    assert_eq!(
        del.code, 0,
        "DEL after the conflist was deleted: {}",
        del.stderr
    );
    assert!(!ns.exec_ok("ip link show net1"));
    assert!(bridge_ports(&bridge).is_empty());
    assert!(files(&cli.cache.path().join("results")).is_empty());
    let leases: Vec<String> = files(&data.path().join(&name))
        .into_iter()
        .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
}

/// Every bad input names its problem and carries the spec's code.
fn assert_error(out: &Out, code: u64, needle: &str) {
    let e = out.error();
    assert_eq!(e["code"], code, "{e}");
    let text = format!("{} {}", e["msg"], e["details"]);
    assert!(text.contains(needle), "{needle:?} not in {text}");
}

#[test]
fn malformed_json_is_a_decoding_error() {
    let cli = Cli::new();
    cli.write("10-bad.conflist", "{\"cniVersion\": \"1.0.0\", \"name\": ");
    assert_error(
        &cli.run(&["add", "bad", "/run/netns/none", "--json"], &[]),
        6,
        "10-bad.conflist",
    );
}

#[test]
fn unknown_or_unsupported_versions_are_code_1() {
    require_reference("bridge");
    let cli = Cli::new();
    cli.write(
        "1.conflist",
        r#"{"cniVersion":"9.9.9","name":"future","plugins":[{"type":"bridge"}]}"#,
    );
    assert_error(
        &cli.run(&["add", "future", "/run/netns/none", "--json"], &[]),
        1,
        "9.9.9",
    );
    // 1.1.0 is Ferry's, but the reference bridge 1.1.1 stops at 1.0.0: the plugin says so.
    cli.write(
        "2.conflist",
        r#"{"cniVersion":"1.1.0","name":"newer","plugins":[{"type":"bridge","bridge":"x"}]}"#,
    );
    let out = cli.run(&["add", "newer", "/proc/self/ns/net", "--json"], &[]);
    assert_error(&out, 1, "1.1.0");
}

#[test]
fn missing_cni_path_is_an_environment_error_naming_it() {
    let mut cli = Cli::new();
    cli.cni_path = String::new();
    cli.write(
        "1.conflist",
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#,
    );
    let out = cli.run(
        &["add", "n", "/proc/self/ns/net", "--json", "--cni-path", ""],
        &[],
    );
    assert_error(&out, 4, "CNI_PATH");
}

#[test]
fn bad_container_id_network_name_and_ifname() {
    let cli = Cli::new();
    cli.write(
        "1.conflist",
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}"#,
    );
    let out = cli.run(
        &[
            "add",
            "n",
            "/proc/self/ns/net",
            "--json",
            "--container-id",
            "bad id",
        ],
        &[],
    );
    assert_error(&out, 4, "containerID");
    let out = cli.run(&["add", "-bad.name", "/proc/self/ns/net", "--json"], &[]);
    assert_ne!(out.code, 0);
    let out = cli.run(&["add", "bad/name", "/proc/self/ns/net", "--json"], &[]);
    assert_error(&out, 7, "network name");
    let out = cli.run(
        &[
            "add",
            "n",
            "/proc/self/ns/net",
            "--json",
            "--ifname",
            "averyveryverylongname",
        ],
        &[],
    );
    assert_error(&out, 4, "interface name");
    let out = cli.run(
        &["add", "n", "/proc/self/ns/net", "--json", "--ifname", "a/b"],
        &[],
    );
    assert_error(&out, 4, "interface name");
    // Nothing was attempted: no cache entry was written.
    assert!(files(&cli.cache.path().join("results")).is_empty());
}

#[test]
fn missing_plugin_binary_is_named() {
    let cli = Cli::new();
    cli.write(
        "1.conflist",
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"no-such-plugin"}]}"#,
    );
    let out = cli.run(&["add", "n", "/proc/self/ns/net", "--json"], &[]);
    assert_error(&out, 7, "no-such-plugin");
    assert!(out.error()["details"]
        .as_str()
        .unwrap()
        .contains("/usr/lib/cni"));
}

#[test]
fn crashing_plugin_is_an_io_failure_with_its_signal() {
    let mut cli = Cli::new();
    let _dir = cli.script_plugin("crasher", "echo 'about to die' >&2; kill -SEGV $$");
    cli.write(
        "1.conflist",
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"crasher"}]}"#,
    );
    let out = cli.run(&["add", "n", "/proc/self/ns/net", "--json"], &[]);
    assert_error(&out, 5, "signal 11");
    assert_error(&out, 5, "about to die");
    assert_error(&out, 5, "crasher");
}

#[test]
fn garbage_output_is_a_decoding_error() {
    let mut cli = Cli::new();
    let _dir = cli.script_plugin("garbage", "cat >/dev/null; echo 'this is not JSON'");
    cli.write(
        "1.conflist",
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"garbage"}]}"#,
    );
    let out = cli.run(&["add", "n", "/proc/self/ns/net", "--json"], &[]);
    assert_error(&out, 6, "this is not JSON");
    // A failing plugin whose error is garbage too.
    let _dir = cli.script_plugin("garbage", "cat >/dev/null; echo '{oops'; exit 1");
    let out = cli.run(&["add", "n", "/proc/self/ns/net", "--json"], &[]);
    assert_error(&out, 6, "{oops");
    // A plugin's own CNI error passes through with its code.
    let _dir = cli.script_plugin(
        "garbage",
        r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":117,"msg":"own error","details":"d"}'; exit 1"#,
    );
    let out = cli.run(&["add", "n", "/proc/self/ns/net", "--json"], &[]);
    assert_error(&out, 117, "own error");
}

#[test]
fn zero_byte_cache_file_does_not_break_del() {
    require_root();
    require_reference("bridge");
    let cli = Cli::new();
    let data = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::default();
    let bridge = unique("cliz");
    cleanup.link(&bridge);
    let ns = Netns::new("cliz");
    let name = unique("cli-z");
    cli.write(
        "1.conflist",
        &bridge_conf(&name, &bridge, "198.18.9.0/24", data.path()),
    );
    let add = cli.run(&["add", &name, &ns.path()], &[]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let results = cli.cache.path().join("results");
    let entries = files(&results);
    assert_eq!(entries.len(), 1);
    std::fs::write(results.join(&entries[0]), b"").unwrap();
    let del = cli.run(&["del", &name, &ns.path()], &[]);
    assert_eq!(del.code, 0, "{}", del.stderr);
    assert!(bridge_ports(&bridge).is_empty());
    assert!(files(&results).is_empty());
}

#[test]
fn human_errors_go_to_stderr_with_the_code() {
    let cli = Cli::new();
    let out = cli.run(&["add", "absent", "/proc/self/ns/net"], &[]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains("absent") && out.stderr.contains("code 7"),
        "{}",
        out.stderr
    );
}

/// Without --json, ADD prints a table of the result: the container's
/// interface in its namespace, its address and gateway, the default route.
/// (198.19.40.0/24)
#[test]
fn add_prints_a_table_for_people() {
    require_root();
    require_reference("bridge");
    let cli = Cli::new();
    let data = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::default();
    let bridge = unique("opcb");
    cleanup.link(&bridge);
    let ns = Netns::new("opct");
    let name = unique("op-tab");
    let mut conf: Value =
        serde_json::from_str(&bridge_conf(&name, &bridge, "198.19.40.0/24", data.path())).unwrap();
    conf["plugins"][0]["isDefaultGateway"] = json!(true);
    cli.write("1.conflist", &conf.to_string());
    let add = cli.run(&["add", &name, &ns.path()], &[]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    // The cached result is what --json prints; the table shows the same.
    let results = cli.cache.path().join("results");
    let cached: Value =
        serde_json::from_slice(&std::fs::read(results.join(&files(&results)[0])).unwrap()).unwrap();
    let address = cached["result"]["ips"][0]["address"].as_str().unwrap();
    let rows: Vec<Vec<&str>> = add
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let has = |row: &[&str]| rows.iter().any(|r| r == row);
    assert!(
        rows.iter().any(|r| r[0] == "interface"
            && r[1] == "eth0"
            && r.last() == Some(&ns.path().as_str())),
        "no eth0 row in:\n{}",
        add.stdout
    );
    assert!(
        has(&["address", address, "gateway", "198.19.40.1", "on", "eth0"]),
        "no address row for {address} in:\n{}",
        add.stdout
    );
    assert!(
        has(&["route", "0.0.0.0/0", "via", "198.19.40.1"]),
        "no default route row in:\n{}",
        add.stdout
    );
    let del = cli.run(&["del", &name, &ns.path()], &[]);
    assert_eq!(del.code, 0, "{}", del.stderr);
}
