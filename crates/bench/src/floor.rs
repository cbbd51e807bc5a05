//! The floor: the namespace, link, address and route work one bridge ADD
//! (and DEL) leaves behind, done by the shortest ferry-linux sequence.
//!
//! * in one process ([`add`], [`del`]), timed inside the bench: what the
//!   kernel itself costs, plus writing the lease files;
//! * as two processes, the way a CNI chain runs it: the runtime execs
//!   `fbfloor-bridge` (this binary, through a symlink), which execs
//!   `fbfloor-ipam` for the lease files and then does the netlink half. Both
//!   speak the CNI protocol (env + JSON stdin + JSON result) so the bench
//!   times them through the same runtime as Ferry and the reference.
//!
//! Starting state (as after a bridge plugin's first ADD): the bridge exists,
//! is up and carries the gateway addresses. The addresses are chosen by the
//! bench (passed in CNI_ARGS), so the floor does no allocation search.

use ferry_linux::{AddrOptions, LinkSpec, Netlink, Netns, Route};
use ipnet::IpNet;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The program name of the per-process floor's bridge half.
pub const BRIDGE_HALF: &str = "fbfloor-bridge";
/// The program name of the per-process floor's IPAM half.
pub const IPAM_HALF: &str = "fbfloor-ipam";

/// One attachment of the in-process floor.
#[derive(Debug, Clone)]
pub struct Req {
    pub netns: String,
    pub bridge: String,
    pub ifname: String,
    /// Host-side veth name.
    pub veth: String,
    /// Container addresses and their gateways.
    pub ips: Vec<(IpNet, IpAddr)>,
    /// `<dataDir>/<network>`: where the lease files go.
    pub lease_dir: PathBuf,
    pub container_id: String,
}

/// One lease file per address holding `containerID\r\nifname`, as host-local.
pub fn write_leases(
    dir: &Path,
    ips: &[(IpNet, IpAddr)],
    cid: &str,
    ifname: &str,
) -> Result<(), String> {
    for (net, _) in ips {
        let path = dir.join(net.addr().to_string());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))?;
        f.write_all(format!("{cid}\r\n{ifname}").as_bytes())
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn remove_leases(dir: &Path, ips: &[(IpNet, IpAddr)]) -> Result<(), String> {
    for (net, _) in ips {
        let path = dir.join(net.addr().to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", path.display())),
        }
    }
    Ok(())
}

/// The link half of a bridge ADD: veth into the namespace, host end on the
/// bridge and up, addresses, link up, default routes.
pub fn link_add(
    netns: &str,
    bridge: &str,
    ifname: &str,
    veth: &str,
    ips: &[(IpNet, IpAddr)],
) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: ferry_linux::Error| format!("{what}: {err}")
    };
    let ns = Netns::open(netns).map_err(e("open namespace"))?;
    let mut host = Netlink::new().map_err(e("netlink"))?;
    let mut cont = ns.netlink().map_err(e("netlink in namespace"))?;
    let br = host.link_by_name(bridge).map_err(e("find bridge"))?;
    host.create_link(&LinkSpec::veth(ifname, veth).netns(&ns))
        .map_err(e("create veth"))?;
    let hv = host.link_by_name(veth).map_err(e("find host veth"))?;
    host.set_master(hv.index, br.index)
        .map_err(e("enslave host veth"))?;
    host.set_up(hv.index).map_err(e("host veth up"))?;
    let c = cont
        .link_by_name(ifname)
        .map_err(e("find container veth"))?;
    let opts = AddrOptions {
        nodad: true,
        ..AddrOptions::default()
    };
    for (net, _) in ips {
        cont.add_address(c.index, *net, opts)
            .map_err(e("add address"))?;
    }
    cont.set_up(c.index).map_err(e("container veth up"))?;
    for (_, gw) in ips {
        cont.add_route(&Route::default_via(*gw).oif(c.index))
            .map_err(e("add default route"))?;
    }
    Ok(())
}

/// The link half of a DEL: delete the container veth (its peer goes with it).
/// A missing namespace or link is not an error (DEL is idempotent).
pub fn link_del(netns: &str, ifname: &str) -> Result<(), String> {
    let Ok(ns) = Netns::open(netns) else {
        return Ok(());
    };
    let mut cont = ns.netlink().map_err(|e| e.to_string())?;
    match cont.link_by_name(ifname) {
        Ok(l) => match cont.delete_link(l.index) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// In-process floor ADD.
pub fn add(r: &Req) -> Result<(), String> {
    write_leases(&r.lease_dir, &r.ips, &r.container_id, &r.ifname)?;
    link_add(&r.netns, &r.bridge, &r.ifname, &r.veth, &r.ips)
}

/// In-process floor DEL.
pub fn del(r: &Req) -> Result<(), String> {
    remove_leases(&r.lease_dir, &r.ips)?;
    link_del(&r.netns, &r.ifname)
}

/// CNI_ARGS for the per-process floor: the addresses and the host veth name.
pub fn cni_args(ips: &[(IpNet, IpAddr)], veth: &str) -> Vec<(String, String)> {
    let mut args = vec![("VETH".to_string(), veth.to_string())];
    for (i, (net, gw)) in ips.iter().enumerate() {
        args.push((format!("IP{i}"), net.to_string()));
        args.push((format!("GW{i}"), gw.to_string()));
    }
    args
}

/// Runs the per-process floor half this program was invoked as, if any;
/// returns the exit code.
pub fn dispatch_argv0() -> Option<i32> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    let half = match name.as_str() {
        BRIDGE_HALF => bridge_half as fn(&str, &[u8], &Value) -> Result<Value, String>,
        IPAM_HALF => ipam_half,
        _ => return None,
    };
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = Vec::new();
    let res = std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice::<Value>(&stdin).map_err(|e| e.to_string()))
        .and_then(|conf| half(&command, &stdin, &conf));
    let mut out = std::io::stdout().lock();
    match res {
        Ok(Value::Null) => Some(0),
        Ok(v) => {
            let _ = serde_json::to_writer(&mut out, &v);
            Some(0)
        }
        Err(msg) => {
            let _ = serde_json::to_writer(
                &mut out,
                &json!({"cniVersion": "1.0.0", "code": 999, "msg": msg}),
            );
            Some(1)
        }
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

/// Addresses and gateways from CNI_ARGS (`IP0=..;GW0=..;IP1=..`).
fn ips_from_args() -> Result<(Vec<(IpNet, IpAddr)>, String), String> {
    let args = env("CNI_ARGS");
    let kv: Vec<(&str, &str)> = args.split(';').filter_map(|p| p.split_once('=')).collect();
    let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let mut ips = Vec::new();
    for i in 0.. {
        let (Some(ip), Some(gw)) = (get(&format!("IP{i}")), get(&format!("GW{i}"))) else {
            break;
        };
        let net: IpNet = ip.parse().map_err(|e| format!("IP{i}={ip}: {e}"))?;
        let gw: IpAddr = gw.parse().map_err(|e| format!("GW{i}={gw}: {e}"))?;
        ips.push((net, gw));
    }
    Ok((ips, get("VETH").unwrap_or_default().to_string()))
}

fn version_reply(command: &str) -> Option<Value> {
    (command == "VERSION")
        .then(|| json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}))
}

fn result_ips(ips: &[(IpNet, IpAddr)], interface: Option<usize>) -> Vec<Value> {
    ips.iter()
        .map(|(net, gw)| {
            let mut v = json!({"address": net.to_string(), "gateway": gw.to_string()});
            if let Some(i) = interface {
                v["interface"] = json!(i);
            }
            v
        })
        .collect()
}

fn ipam_half(command: &str, _stdin: &[u8], conf: &Value) -> Result<Value, String> {
    if let Some(v) = version_reply(command) {
        return Ok(v);
    }
    let (ips, _) = ips_from_args()?;
    let data_dir = conf
        .pointer("/ipam/dataDir")
        .and_then(Value::as_str)
        .ok_or("ipam.dataDir missing")?;
    let name = conf.get("name").and_then(Value::as_str).unwrap_or("floor");
    let dir = Path::new(data_dir).join(name);
    match command {
        "ADD" => {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            write_leases(&dir, &ips, &env("CNI_CONTAINERID"), &env("CNI_IFNAME"))?;
            Ok(json!({"cniVersion": conf["cniVersion"], "ips": result_ips(&ips, None)}))
        }
        "DEL" => remove_leases(&dir, &ips).map(|_| Value::Null),
        _ => Ok(Value::Null),
    }
}

fn bridge_half(command: &str, stdin: &[u8], conf: &Value) -> Result<Value, String> {
    if let Some(v) = version_reply(command) {
        return Ok(v);
    }
    let ipam = conf
        .pointer("/ipam/type")
        .and_then(Value::as_str)
        .ok_or("ipam.type missing")?;
    let bridge = conf
        .get("bridge")
        .and_then(Value::as_str)
        .ok_or("bridge missing")?;
    let (netns, ifname) = (env("CNI_NETNS"), env("CNI_IFNAME"));
    match command {
        "ADD" => {
            let out = ferry_cni::invoke::delegate(ipam, "ADD", stdin).map_err(|e| e.to_string())?;
            let res: Value = serde_json::from_slice(&out).map_err(|e| e.to_string())?;
            let mut ips = Vec::new();
            for ip in res["ips"].as_array().into_iter().flatten() {
                let net: IpNet = ip["address"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| format!("IPAM address: {e}"))?;
                let gw: IpAddr = ip["gateway"]
                    .as_str()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| format!("IPAM gateway: {e}"))?;
                ips.push((net, gw));
            }
            let (_, veth) = ips_from_args()?;
            if let Err(e) = link_add(&netns, bridge, &ifname, &veth, &ips) {
                let _ = ferry_cni::invoke::delegate(ipam, "DEL", stdin);
                return Err(e);
            }
            Ok(json!({
                "cniVersion": conf["cniVersion"],
                "interfaces": [
                    {"name": bridge},
                    {"name": veth},
                    {"name": ifname, "sandbox": netns},
                ],
                "ips": result_ips(&ips, Some(2)),
            }))
        }
        "DEL" => {
            ferry_cni::invoke::delegate(ipam, "DEL", stdin).map_err(|e| e.to_string())?;
            link_del(&netns, &ifname).map(|_| Value::Null)
        }
        _ => Ok(Value::Null),
    }
}
