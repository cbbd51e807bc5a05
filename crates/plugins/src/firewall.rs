//! `firewall`: allows forwarding to and from the container's addresses and
//! isolates bridges by `ingressPolicy`, a thin adapter to
//! [`ferry_drivers::firewall`]. `backend` (`iptables`, `firewalld`) and
//! `iptablesAdminChainName` are accepted; Ferry always uses its own
//! nftables table, whose `admin` chain operators fill.

use std::net::IpAddr;

use crate::conf;
use crate::portmap::{attachment, container_addrs, driver_err, valid_attachments};
use ferry_cni::result::Result as CniResultType;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_drivers::firewall::{self, IngressPolicy};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct FirewallConf {
    name: String,
    backend: Option<String>,
    ingress_policy: Option<String>,
    iptables_admin_chain_name: Option<String>,
    firewalld_zone: Option<String>,
}

fn load(args: &CmdArgs) -> CniResult<(FirewallConf, IngressPolicy)> {
    let c: FirewallConf = conf::parse(args)?;
    if let Some(b) = &c.backend {
        if !matches!(b.as_str(), "" | "iptables" | "firewalld") {
            return Err(CniError::invalid_config(format!(
                "unknown firewall backend {b:?}: use iptables or firewalld (Ferry always uses its own nftables table)"
            )));
        }
    }
    let _ = (&c.iptables_admin_chain_name, &c.firewalld_zone);
    let policy =
        IngressPolicy::parse(c.ingress_policy.as_deref().unwrap_or("")).map_err(driver_err)?;
    Ok((c, policy))
}

fn addrs(prev: &CniResultType) -> Vec<IpAddr> {
    container_addrs(prev).iter().map(|n| n.addr()).collect()
}

/// The bridge of the result: the first host-side interface that is a
/// bridge here.
fn bridge_of(prev: &CniResultType) -> CniResult<Option<String>> {
    let mut nl = ferry_linux::Netlink::new().map_err(conf::kernel("failed to open netlink"))?;
    for i in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
        if let Ok(l) = nl.link_by_name(&i.name) {
            if l.kind.as_deref() == Some("bridge") {
                return Ok(Some(i.name.clone()));
            }
        }
    }
    Ok(None)
}

pub struct Firewall;

impl Plugin for Firewall {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let (c, policy) = load(args)?;
        let mut prev = conf::required_prev_result(args, "firewall")?;
        prev.cni_version = args.cni_version.clone();
        let bridge = if policy == IngressPolicy::Open {
            None
        } else {
            bridge_of(&prev)?
        };
        let a = attachment(args, &c.name)?;
        let store = firewall::store(&ferry_drivers::state_dir());
        let mut sock = conf::nft_socket()?;
        // The host veths: host-side interfaces other than the bridge.
        let ports: Vec<String> = prev
            .interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty() && Some(&i.name) != bridge.as_ref())
            .map(|i| i.name.clone())
            .collect();
        firewall::add(
            &mut sock,
            &store,
            &a,
            &addrs(&prev),
            policy,
            bridge.as_deref(),
            &ports,
        )
        .map_err(driver_err)?;
        Ok(serde_json::to_value(prev)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c: FirewallConf = conf::parse(args)?;
        let a = attachment(args, &c.name)?;
        let fallback = conf::prev_result(args)
            .ok()
            .flatten()
            .map(|p| addrs(&p))
            .unwrap_or_default();
        let store = firewall::store(&ferry_drivers::state_dir());
        if store.load_for_del(&a).map_err(driver_err)?.is_none() && fallback.is_empty() {
            return Ok(());
        }
        let mut sock = conf::nft_socket()?;
        firewall::del(&mut sock, &store, &a, &fallback).map_err(driver_err)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let (c, _) = load(args)?;
        conf::required_prev_result(args, "firewall")?;
        let a = attachment(args, &c.name)?;
        let store = firewall::store(&ferry_drivers::state_dir());
        let mut sock = conf::nft_socket()?;
        firewall::check(&mut sock, &store, &a).map_err(driver_err)
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let c: FirewallConf = conf::parse(args)?;
        let valid = valid_attachments(args)?;
        let store = firewall::store(&ferry_drivers::state_dir());
        if store.attachments(&c.name).map_err(driver_err)?.is_empty() {
            return Ok(());
        }
        let mut sock = conf::nft_socket()?;
        firewall::gc(&mut sock, &store, &c.name, &valid).map_err(driver_err)
    }
}
