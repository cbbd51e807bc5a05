//! `dhcp`: the reference DHCP IPAM plugin, drop-in by its config. The
//! plugin asks Ferry's DHCP daemon (`dhcp daemon`, [`daemon`]) over a unix
//! socket; the daemon runs the DHCP client in the container's namespace on
//! CNI_IFNAME and keeps the lease renewed until DEL.
//!
//! Config (`ipam`), as the reference: `daemonSocketPath` (default
//! `/run/cni/dhcp.sock`), `request` (`option`, `skipDefault`), `provide`
//! (`option`, `value`, `fromArg`), `timeout` (acquisition: seconds, or a Go
//! duration like `"10s"`; default the daemon's `-timeout`), `broadcast`.
//! An unknown option name is invalid config (7).
//!
//! The result: the leased address with the subnet mask and the router as
//! gateway; routes from option 121, else option 33 plus a default route via
//! the router (as the reference); and, unlike the reference, the DNS servers
//! of option 6. DEL releases and succeeds when the daemon holds no lease;
//! CHECK fails unless the daemon holds the lease (of prevResult's address,
//! when there is one); GC releases the network's leases of attachments no
//! longer valid; STATUS is 50 when the daemon does not answer. The daemon
//! being unreachable is 11 (try again later) for ADD, DEL, CHECK and GC.
//!
//! The plugin and the daemon speak Ferry's own JSON ([`proto`]), not the
//! reference's Go RPC: pair Ferry's plugin with Ferry's daemon.

pub mod client;
pub mod daemon;
pub mod options;
pub mod proto;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_cni::error::code;
use ferry_cni::result::{Dns, IpConfig, Result as CniResultType, Route};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{version, CniError, CniResult};
use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;
use serde_json::Value;

use crate::host_local::{decode, ipam_section};
use options::{ProvideOption, RequestOption};
use proto::{Lease, Request};

pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";

/// The `dhcp` plugin.
pub struct Dhcp;

#[derive(Debug, Default, Deserialize)]
struct IpamConf {
    #[serde(default, rename = "daemonSocketPath")]
    daemon_socket_path: String,
    #[serde(default)]
    request: Vec<RequestOption>,
    #[serde(default)]
    provide: Vec<ProvideOption>,
    #[serde(default)]
    timeout: Value,
    #[serde(default)]
    broadcast: bool,
}

/// `"10s"`, `"1.5s"`, `"500ms"`, `"2m"` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The daemon's socket and the request for this invocation.
fn load(args: &CmdArgs, op: &str) -> CniResult<(PathBuf, Request, Duration)> {
    let c: IpamConf = decode("ipam", ipam_section(args)?)?;
    let timeout = match &c.timeout {
        Value::Null => None,
        Value::Number(n) => Some(Duration::from_secs_f64(n.as_f64().unwrap_or(0.0).max(0.0))),
        Value::String(s) => Some(
            parse_duration(s)
                .map_err(|e| CniError::invalid_config(format!("dhcp: timeout: {e}")))?,
        ),
        other => {
            return Err(CniError::decoding(format!(
                "dhcp: timeout must be a duration, got {other}"
            )))
        }
    };
    let network = crate::conf::network_name(args).to_string();
    let client_id = options::client_id(&args.container_id, &network, &args.ifname);
    let (request, provide) =
        options::prepare(&args.cni_args()?, &c.provide, &c.request, client_id)?;
    let socket = match c.daemon_socket_path.as_str() {
        "" => PathBuf::from(DEFAULT_SOCKET),
        p => PathBuf::from(p),
    };
    // The daemon may run in another directory: the netns path made absolute.
    let netns = match args.netns.as_str() {
        "" => String::new(),
        p => std::path::absolute(p)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| p.to_string()),
    };
    let req = Request {
        op: op.to_string(),
        container_id: args.container_id.clone(),
        netns,
        ifname: args.ifname.clone(),
        network,
        request,
        provide,
        timeout_ms: timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
        broadcast: c.broadcast,
        valid: Vec::new(),
    };
    // Wait for the daemon a bit longer than its acquisition may take.
    let wait = timeout.unwrap_or(Duration::from_secs(10)) + Duration::from_secs(5);
    Ok((socket, req, wait))
}

/// One call to the daemon; its error with its code, or 11 when the daemon
/// cannot be reached.
fn ask(socket: &std::path::Path, req: &Request, wait: Duration) -> CniResult<Option<Lease>> {
    let reply = proto::call(socket, req, wait).map_err(|e| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            "dhcp: the DHCP daemon did not answer",
            e,
        )
    })?;
    match reply.error {
        Some(e) => Err(CniError::new(
            if reply.code == 0 {
                code::INTERNAL
            } else {
                reply.code
            },
            e,
            "",
        )),
        None => Ok(reply.lease),
    }
}

/// The CNI result of a lease.
pub fn result_of(l: &Lease) -> CniResultType {
    let v4 = |a: std::net::Ipv4Addr| IpAddr::V4(a);
    let mut routes: Vec<Route> = l
        .grant
        .routes
        .iter()
        .map(|(dst, gw)| Route::new(IpNet::V4(*dst), Some(v4(*gw))))
        .collect();
    if !l.grant.classless {
        if let Some(r) = l.grant.router {
            routes.push(Route::new(IpNet::V4(Ipv4Net::default()), Some(v4(r))));
        }
    }
    CniResultType {
        cni_version: version::CURRENT.to_string(),
        ips: vec![IpConfig::new(
            IpNet::V4(l.grant.address),
            l.grant.router.map(v4),
        )],
        routes,
        dns: Dns {
            nameservers: l.grant.dns.iter().map(|d| d.to_string()).collect(),
            ..Dns::default()
        },
        ..CniResultType::default()
    }
}

impl Plugin for Dhcp {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let (socket, req, wait) = load(args, "add")?;
        let lease = ask(&socket, &req, wait)?
            .ok_or_else(|| CniError::internal("dhcp: the daemon answered ADD without a lease"))?;
        Ok(serde_json::to_value(result_of(&lease))?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let (socket, req, wait) = load(args, "del")?;
        ask(&socket, &req, wait).map(|_| ())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let (socket, req, wait) = load(args, "check")?;
        let lease = ask(&socket, &req, wait)?
            .ok_or_else(|| CniError::internal("dhcp: the daemon answered CHECK without a lease"))?;
        if let Some(prev) = crate::conf::prev_result(args)? {
            let have = IpAddr::V4(lease.grant.address.addr());
            if !prev.ips.is_empty() && !prev.ips.iter().any(|ip| ip.address.addr() == have) {
                return Err(CniError::internal(format!(
                    "dhcp: the daemon's lease is {}, not an address of prevResult",
                    lease.grant.address
                )));
            }
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let (socket, mut req, wait) = load(args, "gc")?;
        req.valid = crate::portmap::valid_attachments(args)?
            .into_iter()
            .map(|(cid, ifname)| format!("{cid}:{ifname}"))
            .collect();
        ask(&socket, &req, wait).map(|_| ())
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        let (socket, req, _) = load(args, "status")?;
        proto::call(&socket, &req, Duration::from_secs(5))
            .map(|_| ())
            .map_err(|e| {
                CniError::new(
                    code::PLUGIN_NOT_AVAILABLE,
                    "dhcp: the DHCP daemon is not available",
                    e,
                )
            })
    }
}

/// `dhcp daemon ...`: runs the daemon, then exits.
pub fn daemon_main(args: &[String]) -> ! {
    let settings = match daemon::Settings::parse(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dhcp daemon: {e}");
            std::process::exit(2);
        }
    };
    // Daemon mode only: one-shot plugin runs never install a subscriber.
    daemon::init_logging();
    match daemon::run(settings) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(error = %e, "dhcp daemon stopped");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::proto::Grant;
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    fn lease() -> Lease {
        Lease {
            container_id: "c".into(),
            network: "n".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            client_id: b"c/n/eth0".to_vec(),
            request: vec![],
            provide: vec![],
            broadcast: false,
            timeout_ms: 0,
            grant: Grant {
                address: "198.18.160.20/24".parse().unwrap(),
                router: Some("198.18.160.1".parse().unwrap()),
                dns: vec!["198.18.160.53".parse().unwrap()],
                routes: vec![(
                    "198.19.0.0/16".parse().unwrap(),
                    "198.18.160.2".parse().unwrap(),
                )],
                classless: false,
                server: "198.18.160.2".parse().unwrap(),
            },
            acquired: 0,
            t1: 0,
            t2: 0,
            expires: 0,
        }
    }

    #[test]
    fn result_shape() {
        let mut l = lease();
        let v = serde_json::to_value(result_of(&l)).unwrap();
        assert_eq!(
            v["ips"],
            serde_json::json!([{"address": "198.18.160.20/24", "gateway": "198.18.160.1"}])
        );
        assert_eq!(
            v["routes"],
            serde_json::json!([
                {"dst": "198.19.0.0/16", "gw": "198.18.160.2"},
                {"dst": "0.0.0.0/0", "gw": "198.18.160.1"}
            ])
        );
        assert_eq!(v["dns"]["nameservers"][0], "198.18.160.53");
        // Option 121 replaces the router's default route (RFC 3442).
        l.grant.classless = true;
        let v = serde_json::to_value(result_of(&l)).unwrap();
        assert_eq!(v["routes"].as_array().unwrap().len(), 1);
    }

    /// The grant is flat in a persisted lease: the same keys, in the same
    /// order, as before it had its own struct (state files stay readable).
    #[test]
    fn persisted_lease_keeps_its_flat_keys() {
        let l = lease();
        let v = serde_json::to_value(&l).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let want = [
            "container_id",
            "network",
            "netns",
            "ifname",
            "client_id",
            "request",
            "provide",
            "broadcast",
            "timeout_ms",
            "address",
            "router",
            "dns",
            "routes",
            "classless",
            "server",
            "acquired",
            "t1",
            "t2",
            "expires",
        ];
        assert_eq!(keys, want);
        assert_eq!(v["address"], "198.18.160.20/24");
        assert_eq!(v["classless"], false);
        assert_eq!(serde_json::from_value::<Lease>(v).unwrap(), l);
    }
}
