//! The record table: what each Ferry network's DNS server knows, built from
//! the controller in one pass and swapped whole, so a query always sees one
//! consistent picture.

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
    /// (bridge and overlay networks made through Ferry's API).
    pub fn build(c: &Controller) -> Table {
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
            let Some(zone) = zones.get_mut(&ep.network_id) else {
                continue;
            };
            // A CNI attachment's sandbox (`cni:ID`) is no DNS label: no name.
            let names: Vec<String> = ep
                .sandbox
                .iter()
                .chain(&ep.aliases)
                .filter(|n| check_dns_label(n).is_ok())
                .map(|n| n.to_ascii_lowercase())
                .collect();
            let addrs: Vec<IpAddr> = ep
                .address
                .iter()
                .chain(&ep.address_v6)
                .map(IpNet::addr)
                .collect();
            for name in &names {
                zone.names.entry(name.clone()).or_default().extend(&addrs);
            }
            for a in &addrs {
                zone.reverse.entry(*a).or_default().extend(names.clone());
            }
        }
        // A service answers under its name wherever it is (even in no sandbox).
        for svc in c.services() {
            if let Some(zone) = zones.get_mut(&svc.network_id) {
                let name = svc.name.to_ascii_lowercase();
                for a in svc.address.iter().chain(&svc.address_v6).map(IpNet::addr) {
                    zone.names.entry(name.clone()).or_default().push(a);
                    zone.reverse.entry(a).or_default().push(name.clone());
                }
            }
        }
        for zone in zones.values_mut() {
            for addrs in zone.names.values_mut() {
                addrs.sort();
                addrs.dedup();
            }
        }
        Table { zones }
    }
}
