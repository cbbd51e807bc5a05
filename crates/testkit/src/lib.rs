//! Test support for root tests: namespaces, commands as oracles (`ip`, `nft`,
//! `tc` are fine here, never in product code), unique names, cleanup guards.

pub mod browser;
pub mod cluster;
pub mod docker;
pub mod notify;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short unique name (≤ 15 bytes, for interface and namespace names).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("{prefix}{:x}{n}", std::process::id() % 0xfff);
    assert!(name.len() <= 15, "name {name} too long");
    name
}

/// A binary of the workspace beside `exe` (a test's `CARGO_BIN_EXE_*`):
/// `cargo build --workspace` puts them all in one directory.
pub fn workspace_bin(exe: &str, name: &str) -> PathBuf {
    let p = Path::new(exe).with_file_name(name);
    assert!(
        p.exists(),
        "{} missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// `ferryd` (at `bin`) with everything under `dir`: its plugin, API and
/// metrics sockets, its state (`state.redb`), its stdout and stderr (files
/// `stdout`, `stderr`); `/metrics` on a free port of 127.0.0.1.
pub fn ferryd_in(bin: &Path, dir: &Path) -> Command {
    let file = |n: &str| {
        std::fs::File::create(dir.join(n))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(n).display()))
    };
    let mut cmd = Command::new(bin);
    cmd.arg("--plugin-socket")
        .arg(dir.join("plugin.sock"))
        .arg("--api-socket")
        .arg(dir.join("api.sock"))
        .arg("--metrics-socket")
        .arg(dir.join("metrics.sock"))
        .args(["--metrics-address", "127.0.0.1:0"])
        .arg("--state")
        .arg(dir.join("state.redb"))
        .stdin(std::process::Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"));
    cmd
}

/// Runs a command line through sh and returns stdout; panics with its stderr on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command line and reports only whether it succeeded.
pub fn sh_ok(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn require_root() {
    assert!(
        nix_is_root(),
        "this test needs root: it creates network namespaces (run scripts/test.sh as root)"
    );
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails with the package's name when a reference binary is missing.
pub fn require_reference(plugin: &str) -> PathBuf {
    let p = Path::new("/usr/lib/cni").join(plugin);
    assert!(
        p.exists(),
        "{} missing: install the Debian package containernetworking-plugins",
        p.display()
    );
    p
}

/// The reference host-local plugin running `command` for `container`
/// (interface eth0), stderr captured, for [`run_with_stdin`] with its config.
/// host-local never enters the namespace, but skel requires one for ADD/CHECK.
pub fn reference_host_local(command: &str, container: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(require_reference("host-local"));
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stderr(std::process::Stdio::piped());
    cmd
}

/// A CNI_PATH directory: `ferry_bin` under each name of `ferry_types`, and
/// the reference plugin of /usr/lib/cni under every other name.
pub fn cni_path<'a>(
    ferry_bin: &str,
    ferry_types: impl IntoIterator<Item = &'a str>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for t in ferry_types {
        std::os::unix::fs::symlink(ferry_bin, dir.path().join(t)).expect("symlink");
    }
    for entry in std::fs::read_dir("/usr/lib/cni")
        .expect("/usr/lib/cni: install the Debian package containernetworking-plugins")
        .flatten()
    {
        let target = dir.path().join(entry.file_name());
        if !target.exists() {
            std::os::unix::fs::symlink(entry.path(), target).expect("symlink");
        }
    }
    dir
}

/// Runs `cmd` (a plugin, usually, its CNI_* variables set) with `stdin` on
/// its standard input and its standard output captured; panics naming the
/// program when it cannot be started.
pub fn run_with_stdin(cmd: &mut std::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin may exit without reading all of it.
        let _ = pipe.write_all(stdin);
    }
    child.wait_with_output().expect("wait for the plugin")
}

/// A child process (a daemon under test) killed (SIGKILL) and reaped on drop.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        sh(&format!("ip netns add {name}"));
        Netns { name }
    }
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} {cmd}", self.name))
    }
    pub fn exec_ok(&self, cmd: &str) -> bool {
        sh_ok(&format!("ip netns exec {} {cmd}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh_ok(&format!("ip netns del {}", self.name));
    }
}

/// Runs the closures it holds when dropped (also on panic), in reverse order.
#[derive(Default)]
pub struct Cleanup(Vec<Box<dyn FnOnce() + Send>>);

impl Cleanup {
    pub fn push(&mut self, f: impl FnOnce() + Send + 'static) {
        self.0.push(Box::new(f));
    }
    /// Deletes a host link on drop.
    pub fn link(&mut self, name: &str) {
        let name = name.to_string();
        self.push(move || {
            let _ = sh_ok(&format!("ip link del {name}"));
            // A Ferry bridge whose network a failed test never deleted keeps
            // its isolation elements in Ferry's node-wide firewall table.
            let _ = sh_ok(&format!(
                "nft delete element inet ferry-firewall isobr '{{ \"{name}\" }}' 2>/dev/null; \
                 nft delete element inet ferry-firewall samebr '{{ \"{name}\" . \"{name}\" }}' 2>/dev/null"
            ));
        });
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some(f) = self.0.pop() {
            f();
        }
    }
}

/// The links `ip -j ARGS` lists (`args` e.g. `-n NS link show`), as JSON
/// objects.
pub fn ip_links(args: &str) -> Vec<serde_json::Value> {
    let out = sh(&format!("ip -j {args}"));
    match serde_json::from_str(&out) {
        Ok(serde_json::Value::Array(links)) => links,
        _ => Vec::new(),
    }
}

/// Host links whose name starts with `prefix`.
pub fn host_links(prefix: &str) -> Vec<String> {
    ip_links("link show")
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// A veth pair named as Ferry's Docker door names it: the host end
/// `vethXXXXXXXX` and its peer `ctrXXXXXXXX` in the same namespace (before
/// Docker moves it into a container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FerryHostPair {
    pub host: String,
    pub peer: String,
    /// The bridge the host end is a port of.
    pub master: Option<String>,
}

/// `name` is `prefix` and 8 lowercase hex digits (Ferry's generated names).
fn ferry_generated(name: &str, prefix: &str) -> bool {
    let hex = name.strip_prefix(prefix).unwrap_or_default();
    hex.len() == 8 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// Ferry's Docker-door pairs in the namespace named `netns` (the host's
/// when `None`), as `ip` sees them.
pub fn ferry_host_pairs(netns: Option<&str>) -> Vec<FerryHostPair> {
    let ns = netns.map(|n| format!("-n {n} ")).unwrap_or_default();
    ip_links(&format!("{ns}link show type veth"))
        .iter()
        .filter_map(|l| {
            let host = l["ifname"].as_str()?;
            // `link` is the peer's name when it is in the same namespace.
            let peer = l["link"].as_str()?;
            (ferry_generated(host, "veth") && ferry_generated(peer, "ctr")).then(|| FerryHostPair {
                host: host.to_string(),
                peer: peer.to_string(),
                master: l["master"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// Links attached to a bridge (`master`).
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    ip_links(&format!("link show master {bridge}"))
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Ferry's node-wide nftables tables, which a daemon creates on first use
/// and keeps when its last endpoint goes.
pub const FERRY_TABLES: [&str; 4] = [
    "inet ferry-portmap",
    "inet ferry-masq",
    "inet ferry-firewall",
    "bridge ferry-firewall",
];

/// Deletes those of [`FERRY_TABLES`] that hold no element: a test that
/// started a daemon leaves no table behind, and a table another test's
/// daemon is still filling keeps its elements and stays.
pub fn remove_idle_ferry_tables() {
    for t in FERRY_TABLES {
        let listing = sh(&format!("nft -j list table {t} 2>/dev/null || true"));
        if !listing.is_empty() && !listing.contains("\"elem\"") {
            let _ = sh_ok(&format!("nft delete table {t}"));
        }
    }
}

/// The iptables-nft tables the reference plugins and netavark create.
const IPTABLES_TABLES: [&str; 4] = ["ip filter", "ip nat", "ip6 filter", "ip6 nat"];

/// Node-wide firewall tables that their makers keep after the last DEL (the
/// reference's and netavark's iptables-nft tables with their chains,
/// Ferry's [`FERRY_TABLES`]) and that did not exist when this was taken.
pub struct CreatedTables(Vec<&'static str>);

impl CreatedTables {
    /// Remembers which of those tables do not exist now.
    pub fn absent_now() -> CreatedTables {
        CreatedTables(
            IPTABLES_TABLES
                .into_iter()
                .chain(FERRY_TABLES)
                .filter(|t| !sh_ok(&format!("nft list table {t}")))
                .collect(),
        )
    }

    /// Deletes those that exist now: the iptables-nft ones, and Ferry's
    /// when no element is in them (another user's daemon may be filling
    /// them). Returns the tables it could not delete.
    pub fn remove(self) -> Vec<&'static str> {
        let listed = sh("nft list tables 2>/dev/null || true");
        self.0
            .into_iter()
            .filter(|t| listed.lines().any(|l| l.trim() == format!("table {t}")))
            .filter(|t| {
                !FERRY_TABLES.contains(t)
                    || !sh(&format!("nft -j list table {t} 2>/dev/null || true"))
                        .contains("\"elem\"")
            })
            .filter(|t| !sh_ok(&format!("nft delete table {t}")))
            .collect()
    }
}

/// Files in a directory (names only), sorted; empty when it does not exist.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A symbolic link an unprivileged user (nobody, uid 65534) planted in a
/// world-writable, sticky directory (like `/tmp`), pointing to a directory
/// of root's: state created through `link` must be refused, and `target`
/// must stay empty. Needs root (to give the link away).
pub struct PlantedLink {
    _dir: tempfile::TempDir,
    pub link: PathBuf,
    pub target: PathBuf,
}

impl PlantedLink {
    pub fn new() -> PlantedLink {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let world = dir.path().join("world");
        let target = dir.path().join("target");
        std::fs::create_dir(&world).expect("world-writable directory");
        std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        std::fs::create_dir(&target).expect("target directory");
        let link = world.join("planted");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).expect("lchown to nobody");
        PlantedLink {
            _dir: dir,
            link,
            target,
        }
    }

    /// Panics naming what was written through the link.
    pub fn assert_untouched(&self, what: &str) {
        let written = files(&self.target);
        assert!(
            written.is_empty(),
            "{what} wrote through the planted link into {}: {written:?}",
            self.target.display()
        );
    }
}

impl Default for PlantedLink {
    fn default() -> Self {
        Self::new()
    }
}

/// Ferry's firewall inserts one rule into the node's iptables `filter
/// FORWARD` (ip and ip6) when that chain exists, and the reference plugins
/// (and netavark) leave their iptables-nft tables and chains after their
/// last DEL, as Ferry leaves its node-wide tables. Tests that run firewall
/// code in the namespace they were started in hold this guard: when the
/// last guard of the test binary is dropped (tests of one binary run in
/// parallel, so one test must not take anything away under another;
/// binaries run one after another), it removes what was not there when the
/// first guard was taken: the rule, per family; the iptables-nft tables;
/// Ferry's node-wide tables that hold no element.
pub struct ForwardRuleGuard(());

#[derive(Default)]
struct Before {
    holders: usize,
    /// `iptables`/`ip6tables` that did not hold the rule.
    rule_missing: Vec<&'static str>,
    /// Tables that did not exist.
    tables: Option<CreatedTables>,
}

static FORWARD_GUARDS: std::sync::Mutex<Option<Before>> = std::sync::Mutex::new(None);

const FORWARD_RULE: &str = "FORWARD -m mark --mark 0x200000/0x200000 -m comment \
                            --comment \"ferry-firewall: accepted by Ferry\" -j ACCEPT";

pub fn forward_rule_guard() -> ForwardRuleGuard {
    let mut g = FORWARD_GUARDS.lock().unwrap_or_else(|p| p.into_inner());
    let b = g.get_or_insert_with(Before::default);
    if b.holders == 0 {
        b.rule_missing = ["iptables", "ip6tables"]
            .into_iter()
            .filter(|tool| !sh_ok(&format!("{tool} -C {FORWARD_RULE} 2>/dev/null")))
            .collect();
        b.tables = Some(CreatedTables::absent_now());
    }
    b.holders += 1;
    ForwardRuleGuard(())
}

impl Drop for ForwardRuleGuard {
    fn drop(&mut self) {
        let mut g = FORWARD_GUARDS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = g.as_mut() else {
            return;
        };
        b.holders -= 1;
        if b.holders > 0 {
            return;
        }
        for tool in std::mem::take(&mut b.rule_missing) {
            while sh_ok(&format!("{tool} -D {FORWARD_RULE} 2>/dev/null")) {}
        }
        if let Some(tables) = b.tables.take() {
            tables.remove();
        }
    }
}

/// Cases per property/fuzz test: a short CI budget by default, raised with
/// `FERRY_FUZZ_CASES` for a long run (see README, Testing).
pub fn fuzz_cases() -> u32 {
    std::env::var("FERRY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The JSON on stdout of a command that must have succeeded (`what` names
/// it in the failure, with its stdout and stderr); `null` when not JSON.
pub fn ok_json(out: &Output, what: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null)
}
