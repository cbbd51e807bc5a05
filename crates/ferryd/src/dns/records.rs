//! The record table: what each network's DNS server knows, built in one
//! pass from its three sources (the controller's networks and endpoints, the
//! names of CNI attachments, and the endpoints other hosts published on
//! overlay networks) and swapped whole, so a query always sees one
//! consistent picture.

use super::cni::Registration;
use ferry_cluster::EndpointRecord;
use ferry_cnm::driver::Driver;
use ferry_cnm::sandbox::check_dns_label;
use ferry_cnm::Controller;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Every served network's zone, by network ID.
#[derive(Debug, Default, PartialEq)]
pub struct Table {
    pub zones: BTreeMap<String, Zone>,
}

/// One network's names.
#[derive(Debug, Default, PartialEq)]
pub struct Zone {
    /// The network's name (the table is keyed by ID).
    pub name: String,
    /// The network's subnets: the only clients it answers.
    pub subnets: Vec<IpNet>,
    /// Where the server listens (the network's gateway addresses).
    pub gateways: Vec<IpAddr>,
    /// Lower-case name (sandbox or alias) to the addresses of its endpoints.
    pub names: BTreeMap<String, Vec<IpAddr>>,
    /// Address to its names, the sandbox's first.
    pub reverse: BTreeMap<IpAddr, Vec<String>>,
}

impl Table {
    /// The table of every Ferry network whose gateways are on this host
    /// (bridge and overlay networks made through Ferry's API), with the
    /// names other hosts published on its overlay networks (`remote`), and
    /// of every CNI network with registered names (zone `cni:NAME`).
    pub fn build(c: &Controller, cni: &[Registration], remote: &[EndpointRecord]) -> Table {
        let mut zones: BTreeMap<String, Zone> = c
            .networks()
            .filter(|n| n.name.is_some())
            .filter(|n| matches!(n.driver, Driver::Bridge | Driver::Overlay { .. }))
            .map(|n| {
                let gws = n.gateways();
                let zone = Zone {
                    name: n.name.clone().unwrap_or_default(),
                    subnets: gws.iter().map(IpNet::trunc).collect(),
                    gateways: gws.iter().map(IpNet::addr).collect(),
                    ..Zone::default()
                };
                (n.id.clone(), zone)
            })
            .filter(|(_, z)| !z.gateways.is_empty())
            .collect();
        for ep in c.endpoints() {
            if let Some(zone) = zones.get_mut(&ep.network_id) {
                // A CNI attachment's sandbox (`cni:ID`) is no DNS label: no name.
                let addrs: Vec<IpAddr> = ep
                    .address
                    .iter()
                    .chain(&ep.address_v6)
                    .map(IpNet::addr)
                    .collect();
                zone.add(ep.sandbox.iter().chain(&ep.aliases), &addrs);
            }
        }
        // A service answers under its name wherever it is (even in no sandbox).
        for svc in c.services() {
            if let Some(zone) = zones.get_mut(&svc.network_id) {
                let addrs: Vec<IpAddr> = svc
                    .address
                    .iter()
                    .chain(&svc.address_v6)
                    .map(IpNet::addr)
                    .collect();
                zone.add([&svc.name], &addrs);
            }
        }
        // Other hosts' endpoints, into the zone of the overlay network of that name.
        let overlays: BTreeMap<&str, &str> = c
            .networks()
            .filter(|n| matches!(n.driver, Driver::Overlay { .. }))
            .filter_map(|n| Some((n.name.as_deref()?, n.id.as_str())))
            .collect();
        for e in remote {
            let zone = overlays
                .get(e.network.as_str())
                .and_then(|id| zones.get_mut(*id));
            if let Some(zone) = zone {
                zone.add(e.name.iter().chain(&e.aliases), &[e.ip]);
            }
        }
        for r in cni {
            let zone = zones.entry(format!("cni:{}", r.network)).or_default();
            for a in &r.addresses {
                zone.subnets.push(a.trunc());
            }
            zone.gateways.extend(&r.gateways);
            let addrs: Vec<IpAddr> = r.addresses.iter().map(IpNet::addr).collect();
            zone.add(&r.names, &addrs);
        }
        for zone in zones.values_mut() {
            zone.subnets.sort();
            zone.subnets.dedup();
            zone.gateways.sort();
            zone.gateways.dedup();
            for addrs in zone.names.values_mut() {
                addrs.sort();
                addrs.dedup();
            }
        }
        Table { zones }
    }
}

impl Zone {
    /// Gives `names` (those that are DNS labels, lower-cased) the addresses
    /// `addrs`, and each address those names.
    fn add<'a>(&mut self, names: impl IntoIterator<Item = &'a String>, addrs: &[IpAddr]) {
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| check_dns_label(n).is_ok())
            .map(|n| n.to_ascii_lowercase())
            .collect();
        for name in &names {
            self.names.entry(name.clone()).or_default().extend(addrs);
        }
        for a in addrs {
            self.reverse.entry(*a).or_default().extend(names.clone());
        }
    }
}
