//! `ferry doctor`: one test per check, each planting the problem (kernel
//! state inside a test namespace, files in temp directories) and asserting
//! doctor names it with its fix; and a clean node reported clean. Doctor
//! reads kernel state in its own namespace, so it runs under `ip netns
//! exec`. 198.19.40.0/21, fd00:1940::/48, names `op*`.

use ferry_cni::cache::{Cache, CachedAttachment, CACHE_KIND};
use ferry_linux::nft;
use ferry_testkit::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Temp CNI cache and lease directories, and an API socket path.
struct Node {
    dir: tempfile::TempDir,
}

struct Report {
    code: i32,
    json: Value,
    text: String,
}

impl Report {
    /// The problems of one check.
    fn problems(&self, check: &str) -> Vec<&Value> {
        self.json["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("no findings in {}", self.json))
            .iter()
            .filter(|f| f["check"] == check && f["ok"] == false)
            .collect()
    }

    /// The one problem of `check` whose message holds `needle`; its fix.
    fn fix_for(&self, check: &str, needle: &str) -> String {
        let found: Vec<_> = self
            .problems(check)
            .into_iter()
            .filter(|f| f["message"].as_str().unwrap_or("").contains(needle))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {check} problem naming {needle:?}; report:\n{}",
            self.text
        );
        assert_ne!(self.code, 0, "problems found but exit code 0");
        found[0]["fix"].as_str().unwrap_or("").to_string()
    }
}

impl Node {
    fn new() -> Node {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        std::fs::create_dir_all(dir.path().join("leases")).unwrap();
        Node { dir }
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    fn leases(&self) -> PathBuf {
        self.dir.path().join("leases")
    }
    fn api(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    /// `ferry doctor` inside `ns` (the root namespace when None), as JSON and as text.
    fn doctor(&self, ns: Option<&Netns>, extra: &[&str]) -> Report {
        let run = |json: bool| {
            let mut cmd = match ns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_ferry")]);
                    c
                }
                None => Command::new(env!("CARGO_BIN_EXE_ferry")),
            };
            cmd.arg("doctor")
                .arg("--cache-dir")
                .arg(self.cache())
                .arg("--leases-dir")
                .arg(self.leases())
                .arg("--api-socket")
                .arg(self.api())
                .args(extra);
            if json {
                cmd.arg("--json");
            }
            cmd.output().unwrap()
        };
        let (j, t) = (run(true), run(false));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&t.stdout),
            String::from_utf8_lossy(&t.stderr)
        );
        let json = serde_json::from_slice(&j.stdout).unwrap_or_else(|e| {
            panic!(
                "--json output is not JSON ({e}): {}",
                String::from_utf8_lossy(&j.stdout)
            )
        });
        assert_eq!(j.status.code(), t.status.code(), "--json and text disagree");
        Report {
            code: t.status.code().unwrap_or(-1),
            json,
            text,
        }
    }

    /// A cache entry of `network` for `id`/eth0 with namespace `netns`.
    fn cache_entry(&self, network: &str, id: &str, netns: &str) {
        Cache::new(self.cache())
            .put(&CachedAttachment {
                kind: CACHE_KIND.into(),
                container_id: id.into(),
                config: b"{}".to_vec(),
                if_name: "eth0".into(),
                network_name: network.into(),
                netns: netns.into(),
                cni_args: Vec::new(),
                capability_args: Default::default(),
                result: None,
            })
            .unwrap();
    }
}

/// ferryd in `ns`, its sockets and state in `dir`; killed on drop.
struct Ferryd(Child);

impl Ferryd {
    fn start(ns: &Netns, dir: &Path, api: &Path) -> Ferryd {
        let ferryd = workspace_bin(env!("CARGO_BIN_EXE_ferry"), "ferryd");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(ferryd)
            .arg("--plugin-socket")
            .arg(dir.join("plugin.sock"))
            .arg("--api-socket")
            .arg(api)
            .arg("--state")
            .arg(dir.join("ferryd.redb"))
            .arg("--metrics-socket")
            .arg(dir.join("metrics.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Ferryd(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(api).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ferryd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_clean_node_is_reported_clean() {
    let node = Node::new();
    let ns = Netns::new("opdc");
    let _ferryd = Ferryd::start(&ns, node.dir.path(), &node.api());
    let r = node.doctor(Some(&ns), &[]);
    assert_eq!(
        r.code, 0,
        "a fresh namespace reported problems:\n{}",
        r.text
    );
    assert_eq!(r.json["problems"], 0, "{}", r.json);
    assert!(r.text.contains("no problems found"), "{}", r.text);
    // Every check ran and said so.
    for check in [
        "modules",
        "sysctl",
        "iptables-legacy",
        "forward-policy",
        "dying-links",
        "cni-cache",
        "leases",
        "ferryd",
    ] {
        assert!(
            r.text.contains(&format!("ok      {check}: ")),
            "no line for {check}:\n{}",
            r.text
        );
    }
    assert!(
        r.text
            .contains(&format!("ferryd {} answers", env!("CARGO_PKG_VERSION"))),
        "{}",
        r.text
    );
}

#[test]
fn a_missing_module_is_named_with_modprobe() {
    let node = Node::new();
    let fake = node.dir.path().join("modules");
    // Loaded: everything but ifb; bridge only through /sys/module.
    std::fs::write(
        &fake,
        "veth 40960 0 - Live 0x0\nvxlan 1 0 - Live 0x0\nnf_tables 1 0 - Live 0x0\nbr_netfilter 1 0 - Live 0x0\n",
    )
    .unwrap();
    let sys = node.dir.path().join("sysmodule");
    std::fs::create_dir_all(sys.join("bridge")).unwrap();
    let r = node.doctor(
        None,
        &[
            "--no-probe",
            "--proc-modules",
            fake.to_str().unwrap(),
            "--sys-module",
            sys.to_str().unwrap(),
        ],
    );
    assert_eq!(r.fix_for("modules", "ifb"), "modprobe ifb");
    assert_eq!(r.problems("modules").len(), 1, "{}", r.text);
    assert!(r
        .text
        .contains("PROBLEM modules: kernel module ifb is not listed as loaded"));
}

#[test]
fn forwarding_off_is_found() {
    let node = Node::new();
    let ns = Netns::new("opds");
    ns.exec("sysctl -qw net.ipv4.ip_forward=0");
    ns.exec("sysctl -qw net.ipv6.conf.all.forwarding=0");
    // IPv6 forwarding matters once the node has IPv6 addresses.
    ns.exec("ip link set lo up");
    ns.exec("ip addr add fd00:1940::1/64 dev lo");
    let r = node.doctor(Some(&ns), &[]);
    assert_eq!(
        r.fix_for("sysctl", "net.ipv4.ip_forward is 0"),
        "sysctl -w net.ipv4.ip_forward=1"
    );
    assert_eq!(
        r.fix_for("sysctl", "net.ipv6.conf.all.forwarding is 0"),
        "sysctl -w net.ipv6.conf.all.forwarding=1"
    );
}

#[test]
fn an_iptables_legacy_table_is_found() {
    assert!(
        sh_ok("command -v iptables-legacy"),
        "iptables-legacy missing: install the Debian package iptables"
    );
    let node = Node::new();
    let ns = Netns::new("opdl");
    ns.exec("iptables-legacy -t filter -P FORWARD DROP");
    let r = node.doctor(Some(&ns), &[]);
    let fix = r.fix_for("iptables-legacy", "iptables-legacy table filter");
    assert!(fix.contains("iptables-legacy -t filter -F"), "{fix}");
}

#[test]
fn a_dropping_forward_chain_is_found_unless_ferry_passes_it() {
    let node = Node::new();
    let ns = Netns::new("opdf");
    ns.exec(
        "nft add table inet opdrop \\; add chain inet opdrop opfwd \
         '{ type filter hook forward priority 0; policy drop; }'",
    );
    // Docker's shape (iptables-nft), with Ferry's accept rule at its top
    // (what the firewall plugin inserts): fine.
    ns.exec("iptables-nft -P FORWARD DROP");
    let mut sock = nft::Socket::in_netns(&ferry_linux::Netns::open(ns.path()).unwrap()).unwrap();
    let mut b = nft::Batch::new();
    b.insert_foreign_rule(&ferry_drivers::forward::rule(&nft::Table::new(
        nft::Family::Ip,
        "filter",
    )));
    sock.commit(&b).unwrap();
    let r = node.doctor(Some(&ns), &[]);
    let fix = r.fix_for("forward-policy", "chain inet opdrop opfwd");
    assert!(
        fix.starts_with("nft insert rule inet opdrop opfwd ip saddr"),
        "{fix}"
    );
    assert_eq!(r.problems("forward-policy").len(), 1, "{}", r.text);
    assert!(
        r.text
            .contains("chain ip filter FORWARD drops by default but lets Ferry's traffic through"),
        "{}",
        r.text
    );
}

#[test]
fn a_dying_link_is_found() {
    let node = Node::new();
    let ns = Netns::new("opdd");
    ns.exec("ip link add dying0a1b2c3d type veth peer name opdpeer");
    let r = node.doctor(Some(&ns), &[]);
    assert_eq!(
        r.fix_for("dying-links", "dying0a1b2c3d"),
        "ip link del dying0a1b2c3d"
    );
    // The peer is an ordinary link.
    assert_eq!(r.problems("dying-links").len(), 1, "{}", r.text);
}

#[test]
fn a_lease_without_a_cache_entry_is_found() {
    let node = Node::new();
    let net = node.leases().join("opnet");
    std::fs::create_dir_all(&net).unwrap();
    // host-local's own files are not leases.
    std::fs::write(net.join("lock"), "").unwrap();
    std::fs::write(net.join("last_reserved_ip.0"), "198.19.41.6").unwrap();
    std::fs::write(net.join("198.19.41.5"), "opgone\r\neth0").unwrap();
    std::fs::write(net.join("198.19.41.6"), "oplive\r\neth0").unwrap();
    node.cache_entry("opnet", "oplive", "/proc/self/ns/net");
    let r = node.doctor(None, &[]);
    let fix = r.fix_for("leases", "198.19.41.5");
    assert_eq!(r.problems("leases").len(), 1, "{}", r.text);
    assert_eq!(fix, format!("rm {}", net.join("198.19.41.5").display()));
    // The fix works: the next run is clean on this check.
    sh(&fix);
    assert!(node.doctor(None, &[]).problems("leases").is_empty());
}

#[test]
fn ferryd_not_running_is_found() {
    let node = Node::new();
    let r = node.doctor(None, &[]);
    let fix = r.fix_for("ferryd", "not reachable");
    assert!(fix.contains("--api-socket"), "{fix}");
}

/// A real attachment whose namespace is deleted without DEL: doctor names
/// the cache entry, its fix (`ferry cni del` on the cached config) releases
/// everything, and the node is clean again.
#[test]
fn a_cache_entry_whose_namespace_is_gone_is_found_and_its_fix_works() {
    require_reference("bridge");
    let node = Node::new();
    let conf = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::default();
    let bridge = unique("opdb");
    cleanup.link(&bridge);
    let network = unique("opdnet");
    std::fs::write(
        conf.path().join("10.conflist"),
        serde_json::json!({
            "cniVersion": "1.0.0", "name": network,
            "plugins": [{"type": "bridge", "bridge": bridge,
                         "ipam": {"type": "host-local", "subnet": "198.19.42.0/24",
                                  "dataDir": node.leases()}}]
        })
        .to_string(),
    )
    .unwrap();
    let cni = |args: &str| {
        sh(&format!(
            "NETCONFPATH={} CNI_PATH=/usr/lib/cni {} cni --cache-dir {} {args}",
            conf.path().display(),
            env!("CARGO_BIN_EXE_ferry"),
            node.cache().display()
        ))
    };
    let ns = Netns::new("opdg");
    cni(&format!("add {network} {}", ns.path()));
    let netns = ns.path();
    drop(ns);
    let r = node.doctor(None, &[]);
    let fix = r.fix_for("cni-cache", &netns);
    assert!(fix.starts_with("ferry cni --cache-dir"), "{fix}");
    assert!(r.problems("leases").is_empty(), "{}", r.text);
    sh(&format!(
        "NETCONFPATH={} CNI_PATH=/usr/lib/cni {}",
        conf.path().display(),
        fix.replacen("ferry", env!("CARGO_BIN_EXE_ferry"), 1)
    ));
    let after = node.doctor(None, &[]);
    assert!(after.problems("cni-cache").is_empty(), "{}", after.text);
    assert!(after.problems("leases").is_empty(), "{}", after.text);
    let leases: Vec<String> = files(&node.leases().join(&network))
        .into_iter()
        .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(leases.is_empty(), "the fix left leases: {leases:?}");
    // The host veth goes with the container's end, when the kernel's
    // deferred namespace cleanup (a workqueue, after the namespace's last
    // reference) gets to it: a loaded CI machine saw it still there.
    let ports = ferry_testkit::cluster::wait_for(Duration::from_secs(10), || {
        bridge_ports(&bridge).is_empty()
    });
    assert!(
        ports.is_ok(),
        "the fix left bridge ports: {:?}",
        bridge_ports(&bridge)
    );
}
