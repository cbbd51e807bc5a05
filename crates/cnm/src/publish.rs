//! Published ports and IP masquerade for Docker endpoints, on the same
//! drivers (`ferry-drivers`) the CNI portmap plugin and ipMasq use: one
//! nftables table each, per-endpoint state as elements only.

use crate::controller::{ep_key, put, Controller, Endpoint, Network};
use crate::driver::Driver;
use crate::error::{CnmError, Result};
use crate::wire::keys;
use ferry_drivers::firewall::{self, IngressPolicy};
use ferry_drivers::portmap::{self, Mapping, Target};
use ferry_drivers::state::Attachment;
use ferry_drivers::{masq, Error as DriverError};
use ferry_linux::nft;
use ipnet::IpNet;
use serde_json::Value;
use std::net::IpAddr;

fn driver_err(e: DriverError) -> CnmError {
    match e {
        DriverError::Invalid(m) => CnmError::Invalid(m),
        DriverError::Unsupported(m) => CnmError::Unsupported(m),
        other => CnmError::Store(other.to_string()),
    }
}

/// Docker's `com.docker.network.portmap`: `[{Proto, IP, Port, HostIP, HostPort, HostPortEnd}]`.
pub fn parse_portmap(v: Option<&Value>) -> Result<Vec<Mapping>> {
    let Some(Value::Array(items)) = v else {
        return Ok(Vec::new());
    };
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
        let m = Mapping::new(host_port, b["Port"].as_i64().unwrap_or(0), proto, host_ip)
            .map_err(driver_err)?;
        out.push(m);
    }
    Ok(out)
}

impl Controller {
    fn attachment(ep: &Endpoint) -> Result<Attachment> {
        Attachment::new(&ep.network_id, &ep.id, "ep").map_err(driver_err)
    }

    fn addrs(ep: &Endpoint) -> Vec<IpNet> {
        ep.address
            .iter()
            .chain(ep.address_v6.iter())
            .copied()
            .collect()
    }

    /// Publishes the endpoint's ports and masquerades its traffic leaving
    /// the network (when the network asks for it). Idempotent.
    pub(crate) fn connect_outside(
        &mut self,
        ep: &Endpoint,
        network: &Network,
        bindings: Option<&Value>,
    ) -> Result<()> {
        let mut mappings = parse_portmap(bindings)?;
        // Bindings without an address go to the network's default one.
        if let Some(default) = network.host_binding_ipv4 {
            for m in &mut mappings {
                if m.host_ip.is_none() {
                    m.host_ip = Some(default);
                }
            }
        }
        let a = Self::attachment(ep)?;
        let mut sock = nft::Socket::new().map_err(|e| CnmError::Kernel {
            context: "open the nftables socket".into(),
            source: e,
        })?;
        if network.driver == Driver::Bridge && !mappings.is_empty() {
            // Connections from the node's own loopback reach published ports.
            let key = format!("net.ipv4.conf.{}.route_localnet", network.bridge);
            let _ = ferry_linux::sysctl::write_if_different(&key, "1");
        }
        let store = portmap::store(&self.driver_root);
        portmap::add(
            &mut sock,
            &store,
            &a,
            Target::from_addrs(&Self::addrs(ep)),
            &mappings,
            portmap::Options::default(),
            None,
        )
        .map_err(driver_err)?;
        if network.enable_ip_masquerade && !network.internal {
            let m = masq::store(&self.driver_root);
            if let Err(e) = masq::add(&mut sock, &m, &a, &Self::addrs(ep)) {
                let _ = portmap::del(&mut sock, &store, &a);
                return Err(driver_err(e));
            }
        }
        let mut ep = ep.clone();
        ep.published = bindings.cloned().unwrap_or(Value::Null);
        self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
        self.endpoints.insert(ep.id.clone(), ep);
        Ok(())
    }

    /// Removes what [`Self::connect_outside`] set up (idempotent).
    pub(crate) fn disconnect_outside(&mut self, ep: &Endpoint) -> Result<()> {
        let a = Self::attachment(ep)?;
        let mut sock = nft::Socket::new().map_err(|e| CnmError::Kernel {
            context: "open the nftables socket".into(),
            source: e,
        })?;
        portmap::del(&mut sock, &portmap::store(&self.driver_root), &a).map_err(driver_err)?;
        masq::del(&mut sock, &masq::store(&self.driver_root), &a, &[]).map_err(driver_err)?;
        if !ep.published.is_null() {
            let mut ep = ep.clone();
            ep.published = Value::Null;
            self.store.apply(vec![put(ep_key(&ep.id), &ep)?])?;
            self.endpoints.insert(ep.id.clone(), ep);
        }
        Ok(())
    }
}

impl Controller {
    /// Isolation of a bridge endpoint, as Docker's bridge does: networks
    /// cannot reach each other, and with `enable_icc=false` neither can the
    /// containers of one network. Uses the CNI firewall plugin's driver.
    pub(crate) fn isolate(&self, ep: &Endpoint, network: &Network) -> Result<()> {
        if network.driver != Driver::Bridge {
            return Ok(());
        }
        let policy = if network.enable_icc {
            IngressPolicy::SameBridge
        } else {
            IngressPolicy::Isolated
        };
        let a = Self::attachment(ep)?;
        let mut sock = nft::Socket::new().map_err(|e| CnmError::Kernel {
            context: "open the nftables socket".into(),
            source: e,
        })?;
        let addrs: Vec<IpAddr> = Self::addrs(ep).iter().map(|n| n.addr()).collect();
        firewall::add(
            &mut sock,
            &firewall::store(&self.driver_root),
            &a,
            &addrs,
            policy,
            Some(&network.bridge),
            std::slice::from_ref(&ep.host_veth),
        )
        .map_err(driver_err)
    }

    /// Undoes [`Self::isolate`] (idempotent).
    pub(crate) fn unisolate(&self, ep: &Endpoint) -> Result<()> {
        let a = Self::attachment(ep)?;
        let mut sock = nft::Socket::new().map_err(|e| CnmError::Kernel {
            context: "open the nftables socket".into(),
            source: e,
        })?;
        firewall::del(&mut sock, &firewall::store(&self.driver_root), &a, &[]).map_err(driver_err)
    }
}

/// The key Docker reads published ports from in EndpointOperInfo.
pub const OPER_PORTMAP: &str = keys::PORT_MAP;
