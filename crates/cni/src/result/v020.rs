//! The 0.1.0 / 0.2.0 result wire form (libcni `pkg/types/020`): at most one
//! IPv4 (`ip4`) and one IPv6 (`ip6`) configuration, each with its own routes.

use super::serde_util::{null_default, opt_ip};
use super::{Dns, IpConfig, Route};
use crate::error::{CniError, CniResult};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The versions that use this wire form.
pub const VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// A 0.1.0/0.2.0 result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Result020 {
    #[serde(
        rename = "cniVersion",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip4: Option<IpConfig020>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<IpConfig020>,
    #[serde(default, deserialize_with = "null_default")]
    pub dns: Dns,
}

/// The `ip4` / `ip6` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig020 {
    pub ip: IpNet,
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub routes: Vec<Route020>,
}

/// A 0.1.0/0.2.0 route: only `dst` and `gw`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route020 {
    pub dst: IpNet,
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw: Option<IpAddr>,
}

impl Result020 {
    /// Up-converts into the canonical result (libcni `convertFrom02x`): `ip4`
    /// then `ip6` become `ips` without an interface index; their routes are
    /// concatenated in that order (only `dst` and `gw`).
    pub fn into_current(self, version: &str) -> super::Result {
        let mut ips = Vec::new();
        let mut routes = Vec::new();
        for cfg in [self.ip4, self.ip6].into_iter().flatten() {
            ips.push(IpConfig {
                interface: None,
                address: cfg.ip,
                gateway: cfg.gateway,
            });
            routes.extend(cfg.routes.into_iter().map(|r| Route::new(r.dst, r.gw)));
        }
        super::Result {
            cni_version: version.to_string(),
            interfaces: Vec::new(),
            ips,
            routes,
            dns: self.dns,
        }
    }

    /// Down-converts from the canonical result (libcni `convertTo02x`).
    ///
    /// Interfaces and interface indices are dropped; routes go to `ip4` or
    /// `ip6` by the family of `dst` and keep only `dst`/`gw`; a route whose
    /// family has no address is dropped (as libcni does).
    ///
    /// Errors (code 1): more than one address of a family (libcni silently
    /// keeps the first; Ferry refuses to lose addresses), or no address at
    /// all (libcni: "cannot convert: no valid IP addresses").
    pub fn from_current(r: &super::Result, version: &str) -> CniResult<Self> {
        let v4: Vec<&IpConfig> = r.ips.iter().filter(|ip| ip.is_ipv4()).collect();
        let v6: Vec<&IpConfig> = r.ips.iter().filter(|ip| !ip.is_ipv4()).collect();
        for (fam, list) in [("IPv4", &v4), ("IPv6", &v6)] {
            if list.len() > 1 {
                let addrs: Vec<String> = list.iter().map(|ip| ip.address.to_string()).collect();
                return Err(CniError::incompatible_version(format!(
                    "cannot convert result to version {version}: it has {} {fam} addresses ({}), \
                     but 0.1.0/0.2.0 results hold at most one IPv4 and one IPv6 address",
                    list.len(),
                    addrs.join(", ")
                ))
                .with_version(version));
            }
        }
        if v4.is_empty() && v6.is_empty() {
            return Err(CniError::incompatible_version(format!(
                "cannot convert result to version {version}: no valid IP addresses \
                 (0.1.0/0.2.0 results need an ip4 or ip6 address)"
            ))
            .with_version(version));
        }
        let mk = |ip: Option<&&IpConfig>, want_v4: bool| {
            ip.map(|ip| IpConfig020 {
                ip: ip.address,
                gateway: ip.gateway,
                routes: r
                    .routes
                    .iter()
                    .filter(|rt| matches!(rt.dst, IpNet::V4(_)) == want_v4)
                    .map(|rt| Route020 {
                        dst: rt.dst,
                        gw: rt.gw,
                    })
                    .collect(),
            })
        };
        Ok(Result020 {
            cni_version: version.to_string(),
            ip4: mk(v4.first(), true),
            ip6: mk(v6.first(), false),
            dns: r.dns.clone(),
        })
    }
}
