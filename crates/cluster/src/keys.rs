//! The key layout both backends share, under `/ferry/v1/`, with JSON values:
//!
//! | key | value |
//! | --- | --- |
//! | `networks/<name>` | `NetworkRecord` |
//! | `vnis/<vni>` | the network's name (JSON string), for CAS allocation |
//! | `hosts/<id>` | `HostRecord` (under the host's lease) |
//! | `blocks/<network>/<cidr with / as _>` | `BlockRecord` (under the lease) |
//! | `endpoints/<network>/<ip>` | `EndpointRecord` (under the lease) |
//!
//! and the decoding of keys and values back into records and events.

use crate::{Error, Event, Result, Snapshot};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use std::net::IpAddr;

pub(crate) const ROOT: &str = "/ferry/v1/";

pub(crate) fn networks() -> String {
    format!("{ROOT}networks/")
}
pub(crate) fn network(name: &str) -> String {
    format!("{ROOT}networks/{name}")
}
pub(crate) fn vnis() -> String {
    format!("{ROOT}vnis/")
}
pub(crate) fn vni(vni: u32) -> String {
    format!("{ROOT}vnis/{vni}")
}
pub(crate) fn hosts() -> String {
    format!("{ROOT}hosts/")
}
pub(crate) fn host(id: &str) -> String {
    format!("{ROOT}hosts/{id}")
}
pub(crate) fn blocks(network: &str) -> String {
    format!("{ROOT}blocks/{network}/")
}
pub(crate) fn block(network: &str, block: IpNet) -> String {
    format!(
        "{ROOT}blocks/{network}/{}",
        block.to_string().replace('/', "_")
    )
}
/// Every endpoint, or those of one network.
pub(crate) fn endpoints(network: Option<&str>) -> String {
    match network {
        Some(n) => format!("{ROOT}endpoints/{n}/"),
        None => format!("{ROOT}endpoints/"),
    }
}
pub(crate) fn endpoint(network: &str, ip: IpAddr) -> String {
    format!("{ROOT}endpoints/{network}/{ip}")
}

/// Names become key segments: no `/`, nothing empty, nothing odd.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} name {name:?} must be 1-253 characters of letters, digits, '-', '_', '.', ':'"
        )))
    }
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain records cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

/// The event for one change: `value` is the new value, or None for a delete.
/// Keys outside the records (`vnis/`, strangers) give None.
pub(crate) fn event(key: &str, value: Option<&[u8]>) -> Result<Option<Event>> {
    let Some(rest) = key.strip_prefix(ROOT) else {
        return Ok(None);
    };
    let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let ev = match (kind, value) {
        ("networks", Some(v)) => Event::NetworkUp(decode(key, v)?),
        ("networks", None) => Event::NetworkDown(rest.to_string()),
        ("hosts", Some(v)) => Event::HostUp(decode(key, v)?),
        ("hosts", None) => Event::HostDown(rest.to_string()),
        ("blocks", Some(v)) => Event::BlockUp(decode(key, v)?),
        ("blocks", None) => {
            let (network, cidr) = split(key, rest)?;
            let block = cidr
                .replace('_', "/")
                .parse()
                .map_err(|_| corrupt_key(key))?;
            Event::BlockDown { network, block }
        }
        ("endpoints", Some(v)) => Event::EndpointUp(decode(key, v)?),
        ("endpoints", None) => {
            let (network, ip) = split(key, rest)?;
            let ip = ip.parse().map_err(|_| corrupt_key(key))?;
            Event::EndpointDown { network, ip }
        }
        _ => return Ok(None),
    };
    Ok(Some(ev))
}

fn split<'a>(key: &str, rest: &'a str) -> Result<(String, &'a str)> {
    let (network, item) = rest.split_once('/').ok_or_else(|| corrupt_key(key))?;
    Ok((network.to_string(), item))
}

fn corrupt_key(key: &str) -> Error {
    Error::Corrupt {
        key: key.to_string(),
        reason: "the key does not follow the layout".into(),
    }
}

/// The snapshot of a listing of everything under `ROOT`.
pub(crate) fn snapshot(kvs: &[(String, Vec<u8>)]) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    for (key, value) in kvs {
        match event(key, Some(value))? {
            Some(Event::HostUp(h)) => snap.hosts.push(h),
            Some(Event::NetworkUp(n)) => snap.networks.push(n),
            Some(Event::EndpointUp(e)) => snap.endpoints.push(e),
            Some(Event::BlockUp(b)) => snap.blocks.push(b),
            _ => {}
        }
    }
    Ok(snap)
}

/// Records of one kind from a listing.
pub(crate) fn records<T: DeserializeOwned>(kvs: &[(String, Vec<u8>)]) -> Result<Vec<T>> {
    kvs.iter().map(|(k, v)| decode(k, v)).collect()
}
