//! The records the cluster store holds, and the events a watch delivers.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A network of global scope: its VXLAN VNI and its subnets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub vni: u32,
    pub subnets: Vec<IpNet>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A host of the cluster, present while its lease lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: String,
    /// The underlay address VXLAN packets for this host go to.
    pub vtep: IpAddr,
    /// The host's VTEP-side MAC, or "".
    #[serde(default)]
    pub mac: String,
    /// When the host registered (seconds since the epoch); 0 = now.
    #[serde(default)]
    pub registered_unix: u64,
}

/// A block of a network's subnet claimed by one host, which allocates
/// addresses from it locally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub network: String,
    pub block: IpNet,
    pub host: String,
}

/// A container's address on a network, and the host it lives on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub network: String,
    pub ip: IpAddr,
    pub mac: String,
    pub host: String,
    /// The sandbox's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The endpoint's aliases (DNS names besides the sandbox's); absent in
    /// records written before names crossed hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// The whole cluster state at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub hosts: Vec<HostRecord>,
    pub networks: Vec<NetworkRecord>,
    pub endpoints: Vec<EndpointRecord>,
    pub blocks: Vec<BlockRecord>,
}

/// What a watch delivers: a `Snapshot` first (and again after every re-list,
/// which replaces everything the watcher knew), then changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Snapshot(Snapshot),
    HostUp(HostRecord),
    HostDown(String),
    NetworkUp(NetworkRecord),
    NetworkDown(String),
    EndpointUp(EndpointRecord),
    EndpointDown { network: String, ip: IpAddr },
    BlockUp(BlockRecord),
    BlockDown { network: String, block: IpNet },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_records_without_aliases_still_read() {
        let old = r#"{"network":"ov","ip":"198.19.48.2","mac":"02:00:00:00:00:01","host":"h1","name":"app"}"#;
        let rec: EndpointRecord = serde_json::from_str(old).expect("an old record reads");
        assert!(rec.aliases.is_empty());
        assert_eq!(rec.name.as_deref(), Some("app"));
        // And a record without aliases is written as before.
        let back = serde_json::to_value(&rec).expect("serialize");
        assert!(back.get("aliases").is_none(), "{back}");
    }
}
