//! Docker's published ports (`com.docker.network.portmap`) read into the
//! driver layer's mappings; the bridge driver publishes them with the same
//! port-mapping driver the CNI portmap plugin uses.

use crate::error::{CnmError, Result};
use crate::wire::keys;
use ferry_drivers::portmap::Mapping;
use serde_json::Value;
use std::net::IpAddr;

/// Docker's `com.docker.network.portmap`: `[{Proto, IP, Port, HostIP, HostPort, HostPortEnd}]`.
pub fn parse_portmap(v: Option<&Value>) -> Result<Vec<Mapping>> {
    let Some(Value::Array(items)) = v else {
        return Ok(Vec::new());
    };
    crate::limits::count("published ports", items.len(), crate::limits::MAX_PORTS)?;
    let mut out = Vec::new();
    for b in items {
        let proto = match b["Proto"].as_u64() {
            Some(6) => "tcp",
            Some(17) => "udp",
            Some(132) => "sctp",
            other => {
                return Err(CnmError::Invalid(format!(
                    "port binding {b}: unknown protocol {other:?}"
                )))
            }
        };
        let host_port = b["HostPort"].as_i64().unwrap_or(0);
        let end = b["HostPortEnd"].as_i64().unwrap_or(0);
        if host_port == 0 || (end != 0 && end != host_port) {
            return Err(CnmError::Unsupported(format!(
                "port binding {b}: Ferry publishes exactly the host port given (-p HOSTPORT:PORT), \
                 not a port it chooses or a range"
            )));
        }
        let host_ip = match b["HostIP"].as_str().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                s.parse::<IpAddr>()
                    .map_err(|e| CnmError::Invalid(format!("HostIP {s:?}: {e}")))?,
            ),
        }
        .filter(|ip| !ip.is_unspecified());
        let m = Mapping::new(host_port, b["Port"].as_i64().unwrap_or(0), proto, host_ip)?;
        out.push(m);
    }
    Ok(out)
}

/// The key Docker reads published ports from in EndpointOperInfo.
pub const OPER_PORTMAP: &str = keys::PORT_MAP;
