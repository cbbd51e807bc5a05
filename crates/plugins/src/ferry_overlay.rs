//! `ferry-overlay`: attaches the container to a network of the local ferryd
//! (an overlay network of the cluster, or any named network), through
//! ferryd's API socket (`apiSocket`, default `/run/ferry/ferry.sock`):
//!
//! ```json
//! {"cniVersion":"1.0.0","name":"pods","type":"ferry-overlay","network":"ov1"}
//! ```
//!
//! ferryd makes the interface, addresses and routes (an overlay endpoint is
//! published to the cluster store as any other); the plugin only shapes
//! ferryd's answer into an ordinary CNI result (host veth, container
//! interface, addresses with the host's gateway, routes), so portmap,
//! firewall, bandwidth and tuning chain after it. Errors carry the CNI code
//! ferryd chose (11 when the cluster store is unavailable).
//!
//! DEL is idempotent: an attachment ferryd does not know, or no ferryd
//! socket at all (ferryd and its state are gone from the node), is success.
//! STATUS answers 50 while ferryd's socket cannot be reached.

use crate::conf;
use crate::ferryd_client::{self, PluginApi};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OverlayConf {
    #[serde(default)]
    network: String,
    #[serde(default)]
    api_socket: Option<PathBuf>,
}

impl OverlayConf {
    fn load(args: &CmdArgs) -> CniResult<OverlayConf> {
        let c: OverlayConf = conf::parse(args)?;
        if c.network.is_empty() {
            return Err(CniError::invalid_config(
                "missing \"network\": the name of a ferryd network (ferry network create NAME -d overlay)",
            ));
        }
        Ok(c)
    }

    fn api(&self) -> PluginApi<'_> {
        PluginApi {
            socket: ferryd_client::api_socket(&self.api_socket),
            base: "/cni",
            what: "",
            network: &self.network,
        }
    }

    fn attachment(&self, args: &CmdArgs) -> Value {
        json!({
            "network": self.network,
            "container_id": args.container_id,
            "ifname": args.ifname,
            "netns": args.netns,
        })
    }
}

/// ferryd's answer to ADD as a CNI 1.x result: the host veth (when there is
/// one) and the container interface, addresses on the latter.
fn result(args: &CmdArgs, a: &Value) -> Value {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut interfaces = Vec::new();
    let host = text(&a["host_veth"]);
    if !host.is_empty() {
        interfaces.push(json!({"name": host, "mac": text(&a["host_mac"])}));
    }
    let container = interfaces.len();
    interfaces.push(json!({
        "name": text(&a["ifname"]),
        "mac": text(&a["mac"]),
        "sandbox": args.netns,
    }));
    let empty = Vec::new();
    let list = |k: &str| a[k].as_array().unwrap_or(&empty).clone();
    let ips: Vec<Value> = list("addresses")
        .iter()
        .map(|ip| {
            let mut v = json!({"address": ip["address"], "interface": container});
            if !ip["gateway"].is_null() {
                v["gateway"] = ip["gateway"].clone();
            }
            v
        })
        .collect();
    let routes: Vec<Value> = list("routes")
        .iter()
        .map(|r| {
            let mut v = json!({"dst": r["dst"]});
            if !r["gateway"].is_null() {
                v["gw"] = r["gateway"].clone();
            }
            v
        })
        .collect();
    json!({
        "cniVersion": "1.1.0",
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": {},
    })
}

pub struct FerryOverlay;

impl Plugin for FerryOverlay {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let c = OverlayConf::load(args)?;
        // Code 3 for a namespace that is not there, before ferryd is asked.
        conf::open_netns(&args.netns)?;
        let api = c.api();
        let a = api
            .call("add", &c.attachment(args))
            .map_err(|f| f.cni(api.socket))?;
        Ok(result(args, &a))
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c = OverlayConf::load(args)?;
        let api = c.api();
        match api.call("del", &c.attachment(args)) {
            Ok(_) => Ok(()),
            // No socket: ferryd and its attachments are gone from the node.
            Err(f) if f.is_gone() => Ok(()),
            Err(f) => Err(f.cni(api.socket)),
        }
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let c = OverlayConf::load(args)?;
        conf::required_prev_result(args, "ferry-overlay")?;
        c.api().run("check", &c.attachment(args))
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        let c: OverlayConf = conf::parse(args)?;
        ferryd_client::status(ferryd_client::api_socket(&c.api_socket))
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let c = OverlayConf::load(args)?;
        c.api().gc(&args.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CmdArgs {
        CmdArgs {
            command: ferry_cni::skel::Command::Add,
            container_id: "c1".into(),
            netns: "/run/netns/c1".into(),
            ifname: "eth0".into(),
            args: String::new(),
            path: String::new(),
            stdin: Vec::new(),
            config: Value::Null,
            cni_version: "1.0.0".into(),
        }
    }

    #[test]
    fn ferryds_answer_becomes_a_cni_result() {
        let answer = json!({
            "host_veth": "veth1", "host_mac": "02:00:00:00:00:01",
            "ifname": "eth0", "mac": "02:00:00:00:00:02", "netns": "/run/netns/c1",
            "addresses": [
                {"address": "198.18.97.2/24", "gateway": "198.18.97.1"},
                {"address": "fd00:97::2/64", "gateway": null},
            ],
            "routes": [{"dst": "0.0.0.0/0", "gateway": "198.18.97.1"}],
        });
        let r = ferry_cni::result::parse_result(result(&args(), &answer), "1.1.0")
            .expect("a valid CNI result");
        assert_eq!(r.interfaces.len(), 2);
        assert_eq!(r.interfaces[0].name, "veth1");
        assert!(r.interfaces[0].sandbox.is_empty());
        assert_eq!(r.interfaces[1].sandbox, "/run/netns/c1");
        assert_eq!(r.ips.len(), 2);
        assert!(r.ips.iter().all(|ip| ip.interface == Some(1)));
        assert_eq!(r.ips[0].gateway, "198.18.97.1".parse().ok());
        assert_eq!(r.ips[1].gateway, None);
        assert_eq!(r.routes[0].gw, "198.18.97.1".parse().ok());

        // No host end (a macvlan network): the container interface is 0.
        let mut bare = answer.clone();
        bare["host_veth"] = json!("");
        let r = ferry_cni::result::parse_result(result(&args(), &bare), "1.1.0").expect("valid");
        assert_eq!(r.interfaces.len(), 1);
        assert!(r.ips.iter().all(|ip| ip.interface == Some(0)));
    }
}
