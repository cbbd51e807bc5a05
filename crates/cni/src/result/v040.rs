//! The 0.3.0 / 0.3.1 / 0.4.0 result wire form (libcni `pkg/types/040`).
//!
//! Differences from 1.x: every IP carries `version` ("4" or "6"); interfaces
//! only have `name`, `mac` and `sandbox`; routes only have `dst` and `gw`.

use super::serde_util::{iface_index, null_default, opt_ip, zero_none};
use super::{Dns, Interface, IpConfig, Route};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The versions that use this wire form.
pub const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0"];

/// A 0.3.x/0.4.0 result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Result040 {
    #[serde(
        rename = "cniVersion",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub interfaces: Vec<Interface040>,
    /// The 0.3.0 text called this key `ip` (spec-upgrades.md); libcni writes `ips`
    /// for every version and so do we, but `ip` is accepted on input.
    #[serde(
        alias = "ip",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ips: Vec<IpConfig040>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub routes: Vec<Route040>,
    #[serde(default, deserialize_with = "null_default")]
    pub dns: Dns,
}

/// A 0.3.x/0.4.0 interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Interface040 {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub mac: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub sandbox: String,
}

/// A 0.3.x/0.4.0 IP configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig040 {
    /// "4" or "6". Ignored on input (the family is taken from `address`, as
    /// libcni does when up-converting).
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    #[serde(
        default,
        deserialize_with = "iface_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface: Option<usize>,
    pub address: IpNet,
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
}

/// A 0.3.x/0.4.0 route.
///
/// Only `dst` and `gw` are written. libcni shares one route type between all
/// versions, so its 0.4.0 output may carry the 1.1 route fields; those are
/// read (and kept on up-conversion) but never written in this form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route040 {
    pub dst: IpNet,
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw: Option<IpAddr>,
    #[serde(default, deserialize_with = "zero_none", skip_serializing)]
    pub mtu: Option<u32>,
    #[serde(default, deserialize_with = "zero_none", skip_serializing)]
    pub advmss: Option<u32>,
    #[serde(default, deserialize_with = "zero_none", skip_serializing)]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing)]
    pub table: Option<u32>,
    #[serde(default, skip_serializing)]
    pub scope: Option<u32>,
}

pub(crate) fn family(addr: &IpNet) -> &'static str {
    match addr {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

impl Result040 {
    /// Up-converts into the canonical result (libcni `convertFrom04x`): the
    /// per-IP `version` is dropped, everything else is kept.
    pub fn into_current(self, version: &str) -> super::Result {
        super::Result {
            cni_version: version.to_string(),
            interfaces: self
                .interfaces
                .into_iter()
                .map(|i| Interface {
                    name: i.name,
                    mac: i.mac,
                    sandbox: i.sandbox,
                    ..Interface::default()
                })
                .collect(),
            ips: self
                .ips
                .into_iter()
                .map(|ip| IpConfig {
                    interface: ip.interface,
                    address: ip.address,
                    gateway: ip.gateway,
                })
                .collect(),
            routes: self
                .routes
                .into_iter()
                .map(|r| Route {
                    dst: r.dst,
                    gw: r.gw,
                    mtu: r.mtu,
                    advmss: r.advmss,
                    priority: r.priority,
                    table: r.table,
                    scope: r.scope,
                })
                .collect(),
            dns: self.dns,
        }
    }

    /// Down-converts from the canonical result (libcni `convertTo04x`): adds
    /// `version` per IP; drops interface `mtu`/`socketPath`/`pciID` and the
    /// route fields 0.4.0 does not define.
    pub fn from_current(r: &super::Result, version: &str) -> Self {
        Result040 {
            cni_version: version.to_string(),
            interfaces: r
                .interfaces
                .iter()
                .map(|i| Interface040 {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    sandbox: i.sandbox.clone(),
                })
                .collect(),
            ips: r
                .ips
                .iter()
                .map(|ip| IpConfig040 {
                    version: family(&ip.address).to_string(),
                    interface: ip.interface,
                    address: ip.address,
                    gateway: ip.gateway,
                })
                .collect(),
            routes: r
                .routes
                .iter()
                .map(|rt| Route040 {
                    dst: rt.dst,
                    gw: rt.gw,
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                })
                .collect(),
            dns: r.dns.clone(),
        }
    }
}
