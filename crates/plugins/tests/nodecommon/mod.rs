//! A node in a namespace, for the chained-plugin tests (portmap, firewall,
//! ipMasq). The plugins act on the namespace they run in, so each test
//! builds a "host" namespace acting as the node and runs every plugin
//! inside it: the runtime executes a wrapper that enters the host
//! namespace (`nsenter --net`) and then execs the plugin. Bridges, host
//! veths and Ferry's nftables tables live in that namespace; containers
//! are namespaces wired to it; an "outside" namespace reaches the node
//! over a veth (198.18.K.0/24 and fd00:208:K::/64 per test).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
pub use ferry_testkit::*;
use serde_json::{json, Value};

pub struct Node {
    /// The node.
    pub host: Netns,
    /// A machine outside the node, at `.2` of the link subnet.
    pub outside: Netns,
    pub dir: tempfile::TempDir,
    /// 198.18.K.1 / fd00:208:K::1 on the node, .2 / ::2 outside.
    pub k: u8,
    /// The link's first three IPv4 octets and IPv6 /64 prefix ("198.18.K",
    /// "fd00:208:K"), and the prefix of the node's names.
    v4net: String,
    v6net: String,
    prefix: &'static str,
}

impl Node {
    /// A node whose plugins are Ferry's except `reference` (run from
    /// /usr/lib/cni); `strace` names types run under `strace -f -e execve`.
    pub fn new(k: u8, reference: &[&str], strace: &[&str]) -> Node {
        let mut n = Node::in_ranges(
            "pm",
            &format!("198.18.{k}"),
            &format!("fd00:208:{k:x}"),
            reference,
            strace,
        );
        n.k = k;
        n
    }

    /// A node whose names start with `prefix` and whose link to the
    /// outside is `v4net`.0/24 and `v6net`::/64 (a test's own ranges).
    pub fn in_ranges(
        prefix: &'static str,
        v4net: &str,
        v6net: &str,
        reference: &[&str],
        strace: &[&str],
    ) -> Node {
        require_root();
        require_reference("host-local");
        let host = Netns::new(&format!("{prefix}h"));
        let outside = Netns::new(&format!("{prefix}o"));
        let dir = tempfile::tempdir().unwrap();
        let bin = env!("CARGO_BIN_EXE_ferry-plugin");
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("strace")).unwrap();
        let mut types: Vec<String> = ferry_plugins::REGISTRY
            .iter()
            .map(|e| e.name.to_string())
            .collect();
        for e in std::fs::read_dir("/usr/lib/cni").unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !types.contains(&n) {
                types.push(n);
            }
        }
        for t in &types {
            let ferry = ferry_plugins::find(t).is_some() && !reference.contains(&t.as_str());
            let prog = if ferry {
                format!("{bin} {t}")
            } else {
                format!("/usr/lib/cni/{t}")
            };
            let trace = if strace.contains(&t.as_str()) {
                format!(
                    "strace -f -qq -e trace=execve -o {}/{t}.$$ ",
                    dir.path().join("strace").display()
                )
            } else {
                String::new()
            };
            let script = format!(
                "#!/bin/sh\nexport FERRY_STATE_DIR={}\nexec nsenter --net={} {trace}{prog}\n",
                dir.path().join("state").display(),
                host.path()
            );
            let p = dir.path().join("bin").join(t);
            std::fs::write(&p, script).unwrap();
            sh(&format!("chmod +x {}", p.display()));
        }
        for ns in [&host, &outside] {
            ns.exec("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
        }
        let hv = unique(&format!("{prefix}v"));
        sh(&format!(
            "ip link add {hv} netns {h} type veth peer name eth0 netns {o}",
            h = host.name,
            o = outside.name
        ));
        host.exec("ip link set lo up");
        outside.exec("ip link set lo up");
        host.exec(&format!("ip addr add {v4net}.1/24 dev {hv}"));
        host.exec(&format!("ip addr add {v6net}::1/64 dev {hv} nodad"));
        host.exec(&format!("ip link set {hv} up"));
        outside.exec(&format!("ip addr add {v4net}.2/24 dev eth0"));
        outside.exec(&format!("ip addr add {v6net}::2/64 dev eth0 nodad"));
        outside.exec("ip link set eth0 up");
        outside.exec(&format!("ip route add default via {v4net}.1"));
        outside.exec(&format!("ip -6 route add default via {v6net}::1"));
        host.exec("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
        Node {
            host,
            outside,
            dir,
            k: 0,
            v4net: v4net.to_string(),
            v6net: v6net.to_string(),
            prefix,
        }
    }

    pub fn v4(&self) -> IpAddr {
        format!("{}.1", self.v4net).parse().unwrap()
    }
    pub fn v6(&self) -> IpAddr {
        format!("{}::1", self.v6net).parse().unwrap()
    }
    pub fn outside_v4(&self) -> IpAddr {
        format!("{}.2", self.v4net).parse().unwrap()
    }

    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    /// `nft list ...` in the node (empty when the object does not exist).
    pub fn nft(&self, what: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.host.name, "sh", "-c"])
            .arg(format!("nft list {what}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Programs started under strace, one line per execve, all traced
    /// runs together.
    pub fn execs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in files(&self.dir.path().join("strace")) {
            let text = std::fs::read_to_string(self.dir.path().join("strace").join(&f)).unwrap();
            out.extend(
                text.lines()
                    .filter(|l| l.contains("execve("))
                    .map(str::to_string),
            );
        }
        out
    }

    /// A container namespace.
    pub fn container(&self) -> Netns {
        let c = Netns::new(&format!("{}c", self.prefix));
        c.exec("ip link set lo up");
        c.exec("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
        c
    }

    /// The CNI runtime of this node for a conflist of `plugins`.
    pub fn net(&self, name: &str, plugins: Value) -> Net {
        Net::new(self, name, plugins)
    }

    /// Runs one plugin directly (env and stdin), returning (exit ok, stdout).
    pub fn run_plugin(
        &self,
        t: &str,
        cmd: &str,
        id: &str,
        netns: &str,
        conf: &Value,
    ) -> (bool, Value) {
        let out = run_with_stdin(
            std::process::Command::new(self.dir.path().join("bin").join(t))
                .env("CNI_COMMAND", cmd)
                .env("CNI_CONTAINERID", id)
                .env("CNI_NETNS", netns)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", self.dir.path().join("bin")),
            &serde_json::to_vec(conf).unwrap(),
        );
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), v)
    }
}

/// A network under test; DELs registered run on drop.
pub struct Net {
    dels: std::sync::Mutex<Cleanup>,
    pub rt: CniConfig,
    pub list: NetworkConfigList,
    _cache: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Net {
    fn new(node: &Node, name: &str, mut plugins: Value) -> Net {
        let data = tempfile::tempdir().unwrap();
        for p in plugins.as_array_mut().unwrap() {
            if p.get("ipam").is_some() {
                p["ipam"]["dataDir"] = json!(data.path());
            }
        }
        let conf = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        let list = NetworkConfigList::from_bytes(&serde_json::to_vec(&conf).unwrap()).unwrap();
        let cache = tempfile::tempdir().unwrap();
        Net {
            dels: Default::default(),
            rt: CniConfig::new(vec![node.dir.path().join("bin")], cache.path()),
            list,
            _cache: cache,
            _data: data,
        }
    }

    pub fn att(&self, ns: &Netns, id: &str, ports: Value) -> RuntimeConf {
        let mut caps = serde_json::Map::new();
        if !ports.is_null() {
            caps.insert("portMappings".into(), ports);
        }
        RuntimeConf {
            container_id: id.into(),
            netns: ns.path(),
            ifname: "eth0".into(),
            capability_args: caps,
            ..RuntimeConf::default()
        }
    }

    pub fn add(&self, att: &RuntimeConf) -> Value {
        let (rt, list, a) = (self.rt.clone(), self.list.clone(), att.clone());
        self.dels.lock().unwrap().push(move || {
            let _ = rt.del_network_list(&list.name.clone(), Some(&list), &a);
        });
        self.rt
            .add_network_list(&self.list, att)
            .unwrap_or_else(|e| panic!("ADD failed: {e}"))
    }

    pub fn del(&self, att: &RuntimeConf) {
        self.rt
            .del_network_list(&self.list.name, Some(&self.list), att)
            .unwrap_or_else(|e| panic!("DEL failed: {e}"));
    }

    pub fn check(&self, att: &RuntimeConf) -> Result<(), String> {
        self.rt
            .check_network_list(&self.list.name, Some(&self.list), att)
            .map_err(|e| e.to_string())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut c = std::mem::take(&mut *self.dels.lock().unwrap());
        drop(std::mem::take(&mut c));
    }
}

/// The container's first address of the family in a result.
pub fn addr_of(result: &Value, v6: bool) -> IpAddr {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .parse::<IpAddr>()
                .unwrap()
        })
        .find(|a| a.is_ipv6() == v6)
        .unwrap()
}

/// Serves on `port` (IPv4 and IPv6) in `ns`, answering each connection
/// with the address it came from.
pub fn serve(ns: &Netns, port: u16) {
    let n = ferry_linux::Netns::open(ns.path()).unwrap();
    for addr in ["0.0.0.0", "::"] {
        let l = n
            .run(move || {
                let a: SocketAddr = (addr.parse::<IpAddr>().unwrap(), port).into();
                socket_v6only(a)
            })
            .unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let peer = s
                    .peer_addr()
                    .map(|p| p.ip().to_string())
                    .unwrap_or_default();
                let _ = s.write_all(peer.as_bytes());
            }
        });
    }
}

fn socket_v6only(a: SocketAddr) -> TcpListener {
    use std::os::fd::FromRawFd;
    // std's bind on [::] is dual-stack; make it v6-only so 0.0.0.0 can bind too.
    let fam = if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket calls on a fresh descriptor we own.
    unsafe {
        let fd = libc::socket(fam, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const _,
            sz,
        );
        if a.is_ipv6() {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                &one as *const _ as *const _,
                sz,
            );
        }
        let l = std::net::TcpListener::from_raw_fd(fd);
        let sock = socket2_bind(fd, a);
        assert!(sock == 0, "bind {a}: {}", std::io::Error::last_os_error());
        assert!(libc::listen(fd, 64) == 0);
        l
    }
}

unsafe fn socket2_bind(fd: i32, a: SocketAddr) -> i32 {
    match a {
        SocketAddr::V4(v) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            libc::bind(
                fd,
                &sin as *const _ as *const _,
                std::mem::size_of_val(&sin) as u32,
            )
        }
        SocketAddr::V6(v) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            libc::bind(
                fd,
                &sin6 as *const _ as *const _,
                std::mem::size_of_val(&sin6) as u32,
            )
        }
    }
}

/// Connects from `ns` to `to:port`; the address the server saw, or None.
pub fn whoami(ns: &Netns, to: IpAddr, port: u16) -> Option<String> {
    let n = ferry_linux::Netns::open(ns.path()).unwrap();
    n.run(move || -> Option<String> {
        let mut s =
            TcpStream::connect_timeout(&(to, port).into(), Duration::from_millis(1500)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(1500))).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        (!out.is_empty()).then_some(out)
    })
    .unwrap()
}

/// Waits until no IPv6 address of `ns` is tentative (DAD done).
pub fn settle(ns: &Netns) {
    for _ in 0..60 {
        if ns.exec("ip -6 addr show tentative").trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn ping(from: &Netns, to: IpAddr) -> bool {
    let six = if to.is_ipv6() { "-6" } else { "" };
    from.exec_ok(&format!("ping {six} -c1 -W1 {to}"))
}

/// A bridge network with `extra` chained after it.
pub fn bridge_conf(br: &str, k: u8, ip_masq: bool, extra: Vec<Value>) -> Value {
    let mut plugins = vec![json!({
        "type": "bridge", "bridge": br, "isGateway": true, "ipMasq": ip_masq, "hairpinMode": true,
        "ipam": {"type": "host-local", "ranges": [
            [{"subnet": format!("198.18.{k}.0/24")}],
            [{"subnet": format!("fd00:208:{k:x}::/64")}]
        ], "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    })];
    plugins.extend(extra);
    Value::Array(plugins)
}
