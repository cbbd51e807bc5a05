//! The participants: Ferry and the reference plugins (both run through
//! Ferry's libcni-compatible runtime, so only the plugins differ), the two
//! floors, and netavark (executed directly, as podman does).

use crate::cleanup::{Janitor, Stage, Ticket};
use crate::floor;
use crate::util::nth;
use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Who is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Ferry,
    Reference,
    Netavark,
    FloorInProc,
    FloorProcs,
}

impl Part {
    pub fn label(self) -> &'static str {
        match self {
            Part::Ferry => "ferry",
            Part::Reference => "reference",
            Part::Netavark => "netavark",
            Part::FloorInProc => "floor-1proc",
            Part::FloorProcs => "floor-procs",
        }
    }

    /// One character for names.
    pub fn code(self) -> char {
        match self {
            Part::Ferry => 'f',
            Part::Reference => 'r',
            Part::Netavark => 'n',
            Part::FloorInProc => 'i',
            Part::FloorProcs => 'p',
        }
    }
}

/// netavark's side of a network.
pub struct Netavark {
    pub bin: PathBuf,
    pub config_dir: PathBuf,
    pub net_name: String,
    /// The `network_info` entry.
    pub network: Value,
    pub port_mappings: Vec<Value>,
}

impl Netavark {
    fn stdin(&self, cid: &str, ifname: &str, ips: &[IpAddr]) -> Vec<u8> {
        let mut v = json!({
            "container_id": cid,
            "container_name": cid,
            "networks": {
                &self.net_name: {
                    "interface_name": ifname,
                    "static_ips": ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                }
            },
            "network_info": { &self.net_name: self.network },
        });
        if !self.port_mappings.is_empty() {
            v["port_mappings"] = Value::Array(self.port_mappings.clone());
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }

    fn run(&self, verb: &str, netns: &str, stdin: &[u8]) -> Result<Vec<u8>, String> {
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config_dir)
            .arg(verb)
            .arg(netns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run {}: {e}", self.bin.display()))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin)
                .map_err(|e| format!("write to netavark: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "netavark {verb} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

pub enum Engine {
    /// A conflist through Ferry's runtime with these plugin directories.
    Cni {
        cni: CniConfig,
        list: NetworkConfigList,
    },
    /// The in-process floor on this bridge.
    Floor {
        bridge: String,
        lease_dir: PathBuf,
    },
    Netavark(Netavark),
}

/// One participant in one scenario.
pub struct Peer {
    pub part: Part,
    pub engine: Engine,
    /// Subnets (IPv4 first) and their gateways (the first address).
    pub nets: Vec<IpNet>,
    /// Capability arguments for CNI ADDs (port mappings).
    pub caps: Map<String, Value>,
    /// Prefix for host veth names the bench chooses (floors).
    pub veth_prefix: String,
    /// A missing or failing optional peer is skipped with a note.
    pub optional: bool,
}

/// One attachment, prepared outside the timed window.
#[derive(Debug, Clone)]
pub struct Att {
    pub container_id: String,
    pub netns: String,
    rt: RuntimeConf,
    floor: Option<floor::Req>,
    nv_stdin: Vec<u8>,
}

impl Peer {
    /// The `slot`th static address set (floors, netavark): host `10 + slot`.
    fn static_ips(&self, slot: usize) -> Vec<(IpNet, IpAddr)> {
        self.nets
            .iter()
            .filter_map(|n| {
                let a = nth(n, 10 + slot as u128);
                let gw = nth(n, 1);
                IpNet::new(a, n.prefix_len()).ok().map(|net| (net, gw))
            })
            .collect()
    }

    /// Prepares attachment `cid` in `netns`; `slot` picks static addresses
    /// and the floor's veth name (unique among attachments up at once).
    pub fn att(&self, cid: &str, netns: &str, slot: usize) -> Att {
        let ifname = "eth0".to_string();
        let veth = format!("{}{slot}", self.veth_prefix);
        let ips = self.static_ips(slot);
        let mut rt = RuntimeConf {
            container_id: cid.to_string(),
            netns: netns.to_string(),
            ifname: ifname.clone(),
            capability_args: self.caps.clone(),
            ..RuntimeConf::default()
        };
        let mut floor = None;
        let mut nv_stdin = Vec::new();
        match (&self.engine, self.part) {
            (Engine::Cni { .. }, Part::FloorProcs) => rt.args = floor::cni_args(&ips, &veth),
            (Engine::Cni { .. }, _) => {}
            (Engine::Floor { bridge, lease_dir }, _) => {
                floor = Some(floor::Req {
                    netns: netns.to_string(),
                    bridge: bridge.clone(),
                    ifname: ifname.clone(),
                    veth,
                    ips,
                    lease_dir: lease_dir.clone(),
                    container_id: cid.to_string(),
                })
            }
            (Engine::Netavark(nv), _) => {
                let addrs: Vec<IpAddr> = ips.iter().map(|(n, _)| n.addr()).collect();
                nv_stdin = nv.stdin(cid, &ifname, &addrs);
            }
        }
        Att {
            container_id: cid.to_string(),
            netns: netns.to_string(),
            rt,
            floor,
            nv_stdin,
        }
    }

    /// ADD; the result where there is one.
    pub fn add(&self, a: &Att) -> Result<Value, String> {
        match &self.engine {
            Engine::Cni { cni, list } => cni
                .add_network_list(list, &a.rt)
                .map_err(|e| format!("{} ADD: {e}", self.part.label())),
            Engine::Floor { .. } => match &a.floor {
                Some(r) => floor::add(r).map(|_| Value::Null),
                None => Err("floor attachment without a request".into()),
            },
            Engine::Netavark(nv) => {
                let out = nv.run("setup", &a.netns, &a.nv_stdin)?;
                serde_json::from_slice(&out).map_err(|e| format!("netavark output: {e}"))
            }
        }
    }

    /// DEL (every ADD gets one).
    pub fn del(&self, a: &Att) -> Result<(), String> {
        match &self.engine {
            Engine::Cni { cni, list } => cni
                .del_network_list(&list.name, Some(list), &a.rt)
                .map_err(|e| format!("{} DEL: {e}", self.part.label())),
            Engine::Floor { .. } => match &a.floor {
                Some(r) => floor::del(r),
                None => Ok(()),
            },
            Engine::Netavark(nv) => nv.run("teardown", &a.netns, &a.nv_stdin).map(|_| ()),
        }
    }
}

/// Times an ADD; on success registers its DEL with the janitor, on failure
/// runs a DEL at once (every ADD gets a DEL).
pub fn add_tracked(
    j: &Janitor,
    peer: &Arc<Peer>,
    a: &Att,
) -> Result<(Value, Duration, Ticket), String> {
    let t = std::time::Instant::now();
    match peer.add(a) {
        Ok(v) => {
            let dt = t.elapsed();
            let (p, att) = (Arc::clone(peer), a.clone());
            let ticket = j.push(
                Stage::Attachment,
                format!("{} attachment {}", peer.part.label(), a.container_id),
                move || p.del(&att),
            );
            Ok((v, dt, ticket))
        }
        Err(e) => {
            let _ = peer.del(a);
            Err(e)
        }
    }
}

/// Times a DEL; on success the janitor forgets the attachment.
pub fn del_tracked(j: &Janitor, peer: &Peer, a: &Att, ticket: Ticket) -> Result<Duration, String> {
    let t = std::time::Instant::now();
    peer.del(a)?;
    let dt = t.elapsed();
    j.forget(ticket);
    Ok(dt)
}

/// The host end of the container's veth in a CNI ADD result: the interface
/// outside the sandbox named `veth...` (bridge and ptp, Ferry and reference).
pub fn host_veth(v: &Value) -> Option<String> {
    v["interfaces"]
        .as_array()?
        .iter()
        .filter(|i| i["sandbox"].as_str().unwrap_or("").is_empty())
        .filter_map(|i| i["name"].as_str())
        .find(|n| n.starts_with("veth"))
        .map(str::to_string)
}

/// IPv4 and IPv6 addresses in an ADD result (CNI or netavark).
pub fn result_addresses(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for ip in v["ips"].as_array().into_iter().flatten() {
        if let Some(a) = ip["address"].as_str() {
            out.push(a.split('/').next().unwrap_or(a).to_string());
        }
    }
    out
}
