//! `ferry-dns`: a chained plugin that gives a CNI attachment DNS names on
//! its network, served by the local ferryd on the network's gateway
//! addresses (`apiSocket`, default `/run/ferry/ferry.sock`):
//!
//! ```json
//! {"type": "ferry-dns", "capabilities": {"aliases": true}}
//! ```
//!
//! The names are the `aliases` capability of the CNI conventions
//! (`runtimeConfig.aliases`, a map from network name to names; only this
//! network's entry is used) and `K8S_POD_NAME` from CNI_ARGS; the addresses
//! and gateways come from prevResult (the container's addresses, and the
//! gateways of those, which the bridge plugin sets with `isGateway`). The
//! network is the conflist's `name`. ADD registers them with ferryd and
//! puts the gateways first in the result's `dns.nameservers`; the rest of
//! prevResult passes through unchanged.
//!
//! ADD without ferryd is code 11 (try again later): the container would
//! come up without the names it was given. DEL is idempotent and succeeds
//! when ferryd is not running (a stale registration goes at the next GC).

use crate::conf;
use crate::ferryd_client::{self, Failed, PluginApi};
use ferry_cni::result::Result as CniResultType;
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DnsConf {
    name: String,
    api_socket: Option<PathBuf>,
    runtime_config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeConfig {
    /// Network name to the names of this attachment on it.
    aliases: BTreeMap<String, Vec<String>>,
}

impl DnsConf {
    fn load(args: &CmdArgs) -> CniResult<DnsConf> {
        let c: DnsConf = conf::parse(args)?;
        if c.name.is_empty() {
            return Err(CniError::invalid_config(
                "missing \"name\": ferry-dns keys the names by the network's name",
            ));
        }
        Ok(c)
    }

    fn api(&self) -> PluginApi<'_> {
        PluginApi {
            socket: ferryd_client::api_socket(&self.api_socket),
            base: "/dns/cni",
            what: "DNS ",
            network: &self.name,
        }
    }

    fn attachment(&self, args: &CmdArgs) -> Value {
        json!({"network": self.name, "container_id": args.container_id, "ifname": args.ifname})
    }

    /// The attachment's names: this network's aliases, then the pod's name.
    fn names(&self, args: &CmdArgs) -> CniResult<Vec<String>> {
        let mut names = self
            .runtime_config
            .aliases
            .get(&self.name)
            .cloned()
            .unwrap_or_default();
        let pod = args
            .cni_args()?
            .into_iter()
            .find(|(k, _)| k == "K8S_POD_NAME")
            .map(|(_, v)| v);
        names.extend(pod.filter(|p| !p.is_empty()));
        Ok(names)
    }
}

/// The container's addresses (those on an interface inside a sandbox, or on
/// no interface) and their gateways.
fn addresses(prev: &CniResultType) -> (Vec<String>, Vec<IpAddr>) {
    let in_container = |i: Option<usize>| {
        i.is_none_or(|i| {
            prev.interfaces
                .get(i)
                .is_some_and(|f| !f.sandbox.is_empty())
        })
    };
    let ips: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| in_container(ip.interface))
        .collect();
    let mut gateways: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.gateway).collect();
    gateways.dedup();
    (
        ips.iter().map(|ip| ip.address.to_string()).collect(),
        gateways,
    )
}

pub struct FerryDns;

impl Plugin for FerryDns {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let c = DnsConf::load(args)?;
        let mut prev = conf::required_prev_result(args, "ferry-dns")?;
        prev.cni_version = args.cni_version.clone();
        let (addrs, gateways) = addresses(&prev);
        if gateways.is_empty() {
            return Err(CniError::invalid_config(
                "prevResult has no gateway: ferry-dns serves names on the network's gateway \
                 (bridge with \"isGateway\": true)",
            ));
        }
        let mut body = c.attachment(args);
        body["names"] = json!(c.names(args)?);
        body["addresses"] = json!(addrs);
        body["gateways"] = json!(gateways);
        c.api().run("add", &body)?;
        // The gateways first: the container's resolver asks them before any other.
        let mut servers: Vec<String> = gateways.iter().map(IpAddr::to_string).collect();
        servers.extend(
            prev.dns
                .nameservers
                .drain(..)
                .filter(|s| !gateways.iter().any(|g| g.to_string() == *s)),
        );
        prev.dns.nameservers = servers;
        Ok(serde_json::to_value(prev)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c = DnsConf::load(args)?;
        let api = c.api();
        match api.call("del", &c.attachment(args)) {
            // ferryd not running: nothing is served now; GC drops the rest.
            Ok(_) | Err(Failed::Unreachable(_)) => Ok(()),
            Err(f) => Err(f.cni(api.socket)),
        }
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let c = DnsConf::load(args)?;
        conf::required_prev_result(args, "ferry-dns")?;
        c.api().run("check", &c.attachment(args))
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        let c: DnsConf = conf::parse(args)?;
        ferryd_client::status(ferryd_client::api_socket(&c.api_socket))
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let c = DnsConf::load(args)?;
        c.api().gc(&args.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_addresses_and_their_gateways() {
        let prev = ferry_cni::result::parse_result(
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "br0"}, {"name": "veth1"},
                    {"name": "eth0", "sandbox": "/run/netns/x"},
                ],
                "ips": [
                    {"address": "198.19.48.5/24", "gateway": "198.19.48.1", "interface": 2},
                    {"address": "fd00:1948::5/64", "gateway": "fd00:1948::1", "interface": 2},
                    {"address": "198.19.49.1/24", "interface": 0},
                ],
            }),
            "1.0.0",
        )
        .expect("a valid result");
        let (addrs, gws) = addresses(&prev);
        assert_eq!(addrs, ["198.19.48.5/24", "fd00:1948::5/64"]);
        assert_eq!(
            gws,
            [
                "198.19.48.1".parse::<IpAddr>().expect("ip"),
                "fd00:1948::1".parse().expect("ip")
            ]
        );
    }
}
