//! Services that move: an endpoint with its own name, addresses, MAC and
//! published ports, which no sandbox holds when it is made and which can be
//! put into a sandbox (attach), taken from one into another (move), taken
//! out (detach) and removed. It keeps everything across moves: the
//! addresses and MAC are reserved at create, the published ports are
//! programmed once against its addresses (so the DNAT follows it), and the
//! network's DNS server answers its name with its addresses.
//!
//! A move makes the new interface in the new sandbox first, with the same
//! MAC, while the old one still serves, then asks the driver to switch
//! ([`ferry_drivers::NetworkDriver::take_over`]): old down, new up,
//! gratuitous ARP and unsolicited NA. Only then is the old one deleted.
//! Its interface gets the service's addresses and no routes: the sandbox's
//! own connections route everything else.

use crate::controller::{put, Controller};
use crate::driver::Driver;
use crate::error::{CnmError, Result};
use crate::sandbox::{check_dns_label, random_hex};
use crate::store::Change;
use ferry_drivers::link::iface::{Address, InterfaceConfig};
use ferry_drivers::network::{Endpoint as Link, EndpointSpec, External, Placement};
use ferry_drivers::portmap::Mapping;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A published port: `HOSTPORT:PORT[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub host_port: u16,
    pub port: u16,
    pub proto: String,
}

impl Port {
    /// Parses `HOSTPORT:PORT[/tcp|udp|sctp]` (tcp by default).
    pub fn parse(s: &str) -> Result<Port> {
        let bad = |why: &str| {
            CnmError::Invalid(format!(
                "publish {s:?}: {why} (expected HOSTPORT:PORT[/tcp|udp|sctp])"
            ))
        };
        let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let (host, port) = ports.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let num = |p: &str| p.parse::<i64>().map_err(|_| bad("a port is not a number"));
        let m = Mapping::new(num(host)?, num(port)?, proto, None)?;
        Ok(Port {
            host_port: m.host_port,
            port: m.container_port,
            proto: proto.to_ascii_lowercase(),
        })
    }

    fn mapping(&self, host_ip: Option<IpAddr>) -> Result<Mapping> {
        Ok(Mapping::new(
            self.host_port.into(),
            self.port.into(),
            &self.proto,
            host_ip,
        )?)
    }
}

/// A service (`ferry service create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Stable ID: names the bookkeeping of its published ports.
    pub id: String,
    pub network: String,
    pub network_id: String,
    pub address: Option<IpNet>,
    pub address_v6: Option<IpNet>,
    pub mac: String,
    pub ports: Vec<Port>,
    /// The sandbox holding it, if any.
    pub sandbox: Option<String>,
    /// Its interface in that sandbox.
    pub ifname: Option<String>,
    /// The driver's endpoint in that sandbox.
    #[serde(default)]
    pub link: Option<Link>,
}

impl Service {
    fn addresses(&self) -> Vec<IpNet> {
        self.address
            .iter()
            .chain(&self.address_v6)
            .copied()
            .collect()
    }

    /// The service as the driver layer sees it for its published ports.
    fn ports_link(&self) -> Link {
        Link {
            id: self.id.clone(),
            addresses: self.addresses(),
            ..Link::default()
        }
    }
}

/// `POST /services`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceCreate {
    pub name: String,
    pub network: String,
    /// At most one per family; the network's other families get one from its pools.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `HOSTPORT:PORT[/PROTO]`.
    #[serde(default)]
    pub publish: Vec<String>,
}

pub(crate) fn svc_key(name: &str) -> String {
    format!("service/{name}")
}

impl Controller {
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    pub fn service(&self, name: &str) -> Result<&Service> {
        self.services
            .get(name)
            .ok_or_else(|| CnmError::not_found("service", name))
    }

    /// Reserves the service's addresses and MAC, publishes its ports and
    /// commits it; no sandbox holds it yet.
    pub fn create_service(&mut self, req: &ServiceCreate) -> Result<Service> {
        check_dns_label(&req.name)?;
        crate::limits::count("publish", req.publish.len(), crate::limits::MAX_PORTS)?;
        if self.services.contains_key(&req.name) {
            return Err(CnmError::Invalid(format!(
                "service {:?} already exists",
                req.name
            )));
        }
        let network = self.network_by_name(&req.network)?.clone();
        if network.name.is_none() {
            return Err(CnmError::Invalid(format!(
                "network {} is Docker's: services live on Ferry's networks",
                network.id
            )));
        }
        if network.driver != Driver::Bridge {
            return Err(CnmError::Unsupported(format!(
                "services live on bridge networks; {:?} is a {} network",
                req.network,
                network.driver.name()
            )));
        }
        let ports = req
            .publish
            .iter()
            .map(|p| Port::parse(p))
            .collect::<Result<Vec<_>>>()?;
        let mut wanted: Vec<IpAddr> = Vec::new();
        for a in &req.addresses {
            let ip: IpAddr = a
                .parse()
                .map_err(|e| CnmError::Invalid(format!("address {a:?}: {e}")))?;
            if wanted.iter().any(|w| w.is_ipv4() == ip.is_ipv4()) {
                return Err(CnmError::Invalid(format!(
                    "address {a}: a service has one address per family"
                )));
            }
            wanted.push(ip);
        }
        let subnets: Vec<(String, IpNet)> = network
            .pools
            .iter()
            .filter_map(|p| self.ipam.pools.get(p).map(|pool| (p.clone(), pool.subnet)))
            .collect();
        for ip in &wanted {
            if !subnets.iter().any(|(_, s)| s.contains(ip)) {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                let why = if subnets
                    .iter()
                    .any(|(_, s)| s.addr().is_ipv4() == ip.is_ipv4())
                {
                    format!("outside the subnets of network {:?}", req.network)
                } else {
                    format!("network {:?} has no {family} subnet", req.network)
                };
                return Err(CnmError::Invalid(format!("address {ip}: {why}")));
            }
        }
        // One address per family the network has, the asked one where given.
        let mut addrs: Vec<(String, IpNet)> = Vec::new();
        for (pool, subnet) in &subnets {
            if addrs
                .iter()
                .any(|(_, a)| a.addr().is_ipv4() == subnet.addr().is_ipv4())
            {
                continue;
            }
            let want = wanted.iter().copied().find(|ip| subnet.contains(ip));
            if want.is_none()
                && wanted
                    .iter()
                    .any(|w| w.is_ipv4() == subnet.addr().is_ipv4())
            {
                continue; // the asked address is in another subnet of this family
            }
            match self.ipam.request_address(pool, want, false) {
                Ok(a) => addrs.push((pool.clone(), a)),
                Err(e) => {
                    self.release_pool_addresses(&addrs);
                    return Err(e);
                }
            }
        }
        let svc = match self.new_service(req, &network, &addrs, ports) {
            Ok(s) => s,
            Err(e) => {
                self.release_pool_addresses(&addrs);
                return Err(e);
            }
        };
        self.services.insert(svc.name.clone(), svc.clone());
        Ok(svc)
    }

    /// The service with its ports published, committed.
    fn new_service(
        &mut self,
        req: &ServiceCreate,
        network: &crate::Network,
        addrs: &[(String, IpNet)],
        ports: Vec<Port>,
    ) -> Result<Service> {
        let mac = random_hex(10)?;
        let svc = Service {
            name: req.name.clone(),
            id: random_hex(64)?,
            network: req.network.clone(),
            network_id: network.id.clone(),
            address: addrs.iter().map(|(_, a)| *a).find(|a| a.addr().is_ipv4()),
            address_v6: addrs.iter().map(|(_, a)| *a).find(|a| a.addr().is_ipv6()),
            // Locally administered, unicast.
            mac: format!(
                "02:{}:{}:{}:{}:{}",
                &mac[0..2],
                &mac[2..4],
                &mac[4..6],
                &mac[6..8],
                &mac[8..10]
            ),
            ports,
            sandbox: None,
            ifname: None,
            link: None,
        };
        let spec = network.spec();
        let mappings = svc
            .ports
            .iter()
            .map(|p| p.mapping(network.host_binding_ipv4))
            .collect::<Result<Vec<_>>>()?;
        let driver = self.driver(&spec);
        driver.program_external_connectivity(&spec, &svc.ports_link(), &External { mappings })?;
        let committed = put(crate::service::svc_key(&svc.name), &svc)
            .and_then(|c| self.store.apply(vec![c, self.ipam.take_changes()?]));
        if let Err(e) = committed {
            let _ = self
                .driver(&spec)
                .revoke_external_connectivity(&spec, &svc.ports_link());
            return Err(e);
        }
        Ok(svc)
    }

    /// Releases addresses taken from the given pools (a failed create).
    fn release_pool_addresses(&mut self, addrs: &[(String, IpNet)]) {
        for (p, a) in addrs {
            let _ = self.ipam.release_address(p, a.addr());
        }
        let _ = self.ipam.take_changes();
    }

    /// Puts a service that no sandbox holds into `sandbox`.
    pub fn attach_service(&mut self, name: &str, sandbox: &str) -> Result<Service> {
        let svc = self.service(name)?.clone();
        if let Some(s) = &svc.sandbox {
            return Err(CnmError::Invalid(format!(
                "service {name:?} is already in sandbox {s:?}: use move"
            )));
        }
        self.place(svc, sandbox)
    }

    /// Takes a service from the sandbox holding it into `sandbox`.
    pub fn move_service(&mut self, name: &str, sandbox: &str) -> Result<Service> {
        let svc = self.service(name)?.clone();
        match &svc.sandbox {
            None => Err(CnmError::Invalid(format!(
                "service {name:?} is in no sandbox: use attach"
            ))),
            Some(s) if s == sandbox => Err(CnmError::Invalid(format!(
                "service {name:?} is already in sandbox {sandbox:?}"
            ))),
            Some(_) => self.place(svc, sandbox),
        }
    }

    /// Makes the service's interface in `sandbox` and switches to it from
    /// the one that held it (if any), which is then deleted.
    fn place(&mut self, mut svc: Service, sandbox: &str) -> Result<Service> {
        let sb = self.sandbox(sandbox)?.clone();
        let network = self
            .networks
            .get(&svc.network_id)
            .cloned()
            .ok_or_else(|| CnmError::not_found("network", &svc.network))?;
        let spec = network.spec();
        let ifname = self.next_ifname(&sb.name);
        let ep_spec = EndpointSpec {
            id: random_hex(64)?,
            mac: Some(svc.mac.parse().map_err(|e| {
                CnmError::Store(format!("service {:?}: MAC {:?}: {e}", svc.name, svc.mac))
            })?),
            // The addresses are the service's, not this interface's: its
            // bookkeeping must not take them away when it is deleted after a move.
            addresses: Vec::new(),
        };
        let place = Placement::Netns {
            netns: &sb.path,
            ifname: &ifname,
        };
        let new = self.driver(&spec).create_endpoint(&spec, &ep_spec, place)?;
        let cfg = InterfaceConfig {
            addresses: svc
                .addresses()
                .into_iter()
                .map(|net| Address { net, gateway: None })
                .collect(),
            routes: Vec::new(),
        };
        let old = svc.link.take();
        let joined = match self
            .driver(&spec)
            .take_over(&spec, old.as_ref(), &new, &cfg)
        {
            Ok(j) => j,
            Err(e) => {
                if let Ok(p) = self.driver(&spec).delete_endpoint(&spec, &new) {
                    p.finish();
                }
                return Err(e.into());
            }
        };
        svc.sandbox = Some(sb.name.clone());
        svc.ifname = Some(ifname);
        svc.link = Some(joined);
        self.commit_service(&svc)?;
        if let Some(old) = old {
            self.driver(&spec).delete_endpoint(&spec, &old)?.finish();
        }
        Ok(svc)
    }

    fn commit_service(&mut self, svc: &Service) -> Result<()> {
        self.store.apply(vec![put(svc_key(&svc.name), svc)?])?;
        self.services.insert(svc.name.clone(), svc.clone());
        Ok(())
    }

    /// Takes the service out of the sandbox holding it (its interface is
    /// deleted); it keeps its addresses, MAC and ports.
    pub fn detach_service(&mut self, name: &str) -> Result<Service> {
        let mut svc = self.service(name)?.clone();
        if svc.sandbox.is_none() {
            return Err(CnmError::Invalid(format!(
                "service {name:?} is in no sandbox"
            )));
        }
        let pending = match (svc.link.take(), self.networks.get(&svc.network_id)) {
            (Some(link), Some(n)) => {
                let spec = n.spec();
                Some(self.driver(&spec).delete_endpoint(&spec, &link)?)
            }
            _ => None,
        };
        svc.sandbox = None;
        svc.ifname = None;
        self.commit_service(&svc)?;
        if let Some(p) = pending {
            p.finish();
        }
        Ok(svc)
    }

    /// Detaches the service if a sandbox holds it, unpublishes its ports,
    /// releases its addresses and forgets it.
    pub fn remove_service(&mut self, name: &str) -> Result<()> {
        let svc = self.service(name)?.clone();
        if svc.sandbox.is_some() {
            self.detach_service(name)?;
        }
        if let Some(n) = self.networks.get(&svc.network_id).cloned() {
            let spec = n.spec();
            self.driver(&spec)
                .revoke_external_connectivity(&spec, &svc.ports_link())?;
            self.release_addresses(&n, &svc.addresses())?;
        }
        self.store.apply(vec![
            Change::Delete(svc_key(name)),
            self.ipam.take_changes()?,
        ])?;
        self.services.remove(name);
        Ok(())
    }

    /// Services held by a sandbox, by name.
    pub fn sandbox_services(&self, sandbox: &str) -> Vec<&Service> {
        self.services
            .values()
            .filter(|s| s.sandbox.as_deref() == Some(sandbox))
            .collect()
    }
}
