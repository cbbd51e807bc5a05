//! `portmap`: publishes container ports on the node (runtimeConfig
//! `portMappings`), a thin adapter to [`ferry_drivers::portmap`]. Chained
//! after an interface plugin; passes its prevResult on unchanged.
//!
//! Config keys as the reference: `snat` (default true), `masqAll`,
//! `backend` (`iptables` or `nftables`: both accepted, Ferry always uses its
//! own nftables table), `markMasqBit` and `externalSetMarkChain`
//! (validated, unused: the reference marks hairpin and loopback connections
//! for an iptables masquerade rule, its own or kube-proxy's `KUBE-MARK-MASQ`;
//! Ferry masquerades them by its own nftables set, with no mark) and
//! `conditionsV4`/`V6` (the subset in [`ferry_drivers::conditions`]; the
//! rest is code 7).

use std::collections::HashSet;
use std::net::IpAddr;

use crate::conf;
use ferry_cni::result::Result as CniResultType;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{code, CniError, CniResult};
use ferry_drivers::conditions::Profile;
use ferry_drivers::portmap::{self, Mapping, Options, Target};
use ferry_drivers::state::Attachment;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PortMapConf {
    name: String,
    snat: Option<bool>,
    masq_all: Option<bool>,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
    #[serde(rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    backend: Option<String>,
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RuntimeConfig {
    port_mappings: Vec<WireMapping>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WireMapping {
    host_port: i64,
    container_port: i64,
    protocol: String,
    #[serde(rename = "hostIP")]
    host_ip: String,
}

struct Loaded {
    conf: PortMapConf,
    mappings: Vec<Mapping>,
    opts: Options,
    profile: Option<Profile>,
}

/// Converts a driver error into the CNI code it stands for.
pub fn driver_err(e: ferry_drivers::Error) -> CniError {
    use ferry_drivers::Error as E;
    match e {
        E::Invalid(m) => CniError::invalid_config(m),
        E::Unsupported(m) => CniError::new(code::UNSUPPORTED_FIELD, m, ""),
        E::Exists(m) => CniError::new(
            code::INVALID_ENVIRONMENT,
            m,
            "CNI_IFNAME names an interface that is already in the container's namespace",
        ),
        E::NoNamespace { path, source } => CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("network namespace {path:?} does not exist"),
            source.to_string(),
        ),
        E::Kernel { context, source } => CniError::new(code::INTERNAL, context, source.to_string()),
        e @ (E::Io { .. } | E::System { .. }) => CniError::io(e.to_string()),
        e @ (E::Missing(_) | E::Failed(_)) => CniError::internal(e.to_string()),
    }
}

fn load(args: &CmdArgs) -> CniResult<Loaded> {
    let c: PortMapConf = conf::parse(args)?;
    if let Some(b) = &c.backend {
        if !matches!(b.as_str(), "" | "iptables" | "nftables") {
            return Err(CniError::invalid_config(format!(
                "unknown backend {b:?}: use iptables or nftables (Ferry always uses its own nftables table)"
            )));
        }
    }
    if let Some(bit) = c.mark_masq_bit {
        if !(0..=31).contains(&bit) {
            return Err(CniError::invalid_config(format!(
                "invalid markMasqBit {bit}: use 0 to 31"
            )));
        }
        if c.external_set_mark_chain.is_some() {
            return Err(CniError::invalid_config(
                "cannot specify externalSetMarkChain and markMasqBit",
            ));
        }
    }
    let profile = Profile::new(
        c.conditions_v4.clone().unwrap_or_default(),
        c.conditions_v6.clone().unwrap_or_default(),
    )
    .map_err(driver_err)?;
    let mut mappings = Vec::new();
    for m in &c.runtime_config.port_mappings {
        let host_ip = match m.host_ip.as_str() {
            "" => None,
            s => Some(s.parse::<IpAddr>().map_err(|_| {
                CniError::invalid_config(format!("invalid hostIP {s:?} in port mapping"))
            })?),
        };
        let proto = if m.protocol.is_empty() {
            "tcp"
        } else {
            &m.protocol
        };
        mappings
            .push(Mapping::new(m.host_port, m.container_port, proto, host_ip).map_err(driver_err)?);
    }
    let opts = Options {
        snat: c.snat.unwrap_or(true),
        masq_all: c.masq_all.unwrap_or(false),
    };
    Ok(Loaded {
        conf: c,
        mappings,
        opts,
        profile,
    })
}

/// The attachment named by the request.
pub fn attachment(args: &CmdArgs, network: &str) -> CniResult<Attachment> {
    Attachment::new(network, &args.container_id, &args.ifname).map_err(driver_err)
}

/// The addresses of the container's interfaces in a result (IPs whose
/// interface is in a sandbox, or that name no interface).
pub fn container_addrs(r: &CniResultType) -> Vec<IpNet> {
    r.ips
        .iter()
        .filter(|ip| match ip.interface {
            Some(i) => r.interfaces.get(i).is_none_or(|f| !f.sandbox.is_empty()),
            None => true,
        })
        .map(|ip| ip.address)
        .collect()
}

/// `cni.dev/valid-attachments` of a GC request.
pub fn valid_attachments(args: &CmdArgs) -> CniResult<HashSet<(String, String)>> {
    let mut out = HashSet::new();
    if let Some(list) = args.config.get("cni.dev/valid-attachments") {
        let list = list.as_array().ok_or_else(|| {
            CniError::decoding("cni.dev/valid-attachments must be a list".to_string())
        })?;
        for v in list {
            let cid = v.get("containerID").and_then(Value::as_str).unwrap_or("");
            let ifname = v.get("ifname").and_then(Value::as_str).unwrap_or("");
            out.insert((cid.to_string(), ifname.to_string()));
        }
    }
    Ok(out)
}

/// Sets `route_localnet` on the host interfaces of the result (the bridge,
/// or a ptp host veth), so 127.0.0.1-sourced connections DNATed to the
/// container may be routed to it.
fn enable_localnet(prev: &CniResultType) -> CniResult<()> {
    for i in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
        if i.name.is_empty() || i.name.contains(['.', '/']) {
            continue;
        }
        let key = format!("net.ipv4.conf.{}.route_localnet", i.name);
        // An interface of the result may be gone or elsewhere: best effort
        // only for names that do not exist here.
        if ferry_linux::sysctl::read(&key).is_err() {
            continue;
        }
        ferry_linux::sysctl::write_if_different(&key, "1")
            .map_err(conf::kernel(format!("failed to set {key}")))?;
        break;
    }
    Ok(())
}

pub struct PortMap;

impl Plugin for PortMap {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let l = load(args)?;
        let mut prev = conf::required_prev_result(args, "portmap")?;
        prev.cni_version = args.cni_version.clone();
        if l.mappings.is_empty() {
            return Ok(serde_json::to_value(prev)?);
        }
        let target = Target::from_addrs(&container_addrs(&prev));
        let a = attachment(args, &l.conf.name)?;
        let mut sock = conf::nft_socket()?;
        let store = portmap::store(&ferry_drivers::state_dir());
        let added = portmap::add(
            &mut sock,
            &store,
            &a,
            target,
            &l.mappings,
            l.opts,
            l.profile.as_ref(),
        )
        .map_err(driver_err)?;
        if l.opts.snat && target.v4.is_some() && !added.is_empty() {
            enable_localnet(&prev)?;
        }
        Ok(serde_json::to_value(prev)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c: PortMapConf = conf::parse(args)?;
        let a = attachment(args, &c.name)?;
        let store = portmap::store(&ferry_drivers::state_dir());
        if store.load_for_del(&a).map_err(driver_err)?.is_none() {
            return Ok(());
        }
        let mut sock = conf::nft_socket()?;
        portmap::del(&mut sock, &store, &a).map_err(driver_err)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let l = load(args)?;
        conf::required_prev_result(args, "portmap")?;
        if l.mappings.is_empty() {
            return Ok(());
        }
        let a = attachment(args, &l.conf.name)?;
        let store = portmap::store(&ferry_drivers::state_dir());
        let mut sock = conf::nft_socket()?;
        portmap::check(&mut sock, &store, &a).map_err(driver_err)
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let c: PortMapConf = conf::parse(args)?;
        let valid = valid_attachments(args)?;
        let store = portmap::store(&ferry_drivers::state_dir());
        if store.attachments(&c.name).map_err(driver_err)?.is_empty() {
            return Ok(());
        }
        let mut sock = conf::nft_socket()?;
        portmap::gc(&mut sock, &store, &c.name, &valid).map_err(driver_err)
    }
}
