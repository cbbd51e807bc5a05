//! The store's logic, written once over a small key-value contract (`Kv`)
//! that each backend (redb, etcd) implements with the same key layout.

use crate::keys::{self, decode, encode};
use crate::{
    blocks, BlockRecord, ClusterStore, EndpointRecord, Error, Event, HostRecord, NetworkRecord,
    Result,
};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// VXLAN VNIs are 24 bits; 0 means "allocate one".
pub const MAX_VNI: u32 = 0xFF_FFFF;
/// Lost CAS races before a create gives up (another writer keeps winning).
const CAS_ATTEMPTS: usize = 16;

/// What a backend provides. "Leased" writes live as long as this process's
/// host lease (etcd) or until `unregister` (redb).
pub(crate) trait Kv: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    fn host_id(&self) -> &str;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// Creates all entries if none of their keys exists, in one atomic step;
    /// false (and nothing written) when one exists.
    fn create(&self, entries: Vec<(String, Vec<u8>)>, leased: bool) -> Result<bool>;
    /// One write.
    fn put(&self, key: String, value: Vec<u8>, leased: bool) -> Result<()>;
    /// Deletes the keys and everything under the prefixes, in one atomic step.
    fn delete(&self, keys: Vec<String>, prefixes: Vec<String>) -> Result<()>;
    /// Drops the host record and everything leased by this process.
    fn unregister(&self) -> Result<()>;
    fn watch(&self) -> Result<Receiver<Event>>;
}

pub(crate) struct Store<K>(pub K);

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn show(nets: &[IpNet]) -> String {
    let v: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
    format!("[{}]", v.join(", "))
}

impl<K: Kv> Store<K> {
    fn network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        let key = keys::network(name);
        self.0.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Ok(existing) for the same subnets, Conflict naming both otherwise.
    fn same_network(existing: NetworkRecord, rec: &NetworkRecord) -> Result<NetworkRecord> {
        let set = |s: &[IpNet]| s.iter().map(IpNet::trunc).collect::<BTreeSet<_>>();
        if set(&existing.subnets) == set(&rec.subnets) {
            return Ok(existing);
        }
        Err(Error::Conflict(format!(
            "network {} exists with subnets {}; requested {}",
            rec.name,
            show(&existing.subnets),
            show(&rec.subnets)
        )))
    }

    fn free_vni(&self) -> Result<u32> {
        let used: BTreeSet<u32> = self
            .0
            .list(&keys::vnis())?
            .iter()
            .filter_map(|(k, _)| k.rsplit('/').next()?.parse().ok())
            .collect();
        (1..=MAX_VNI)
            .find(|v| !used.contains(v))
            .ok_or_else(|| Error::Conflict("every VNI is in use".into()))
    }

    /// After a lost create race with a given VNI: the network appeared
    /// (None: look again) or another network holds the VNI (its name).
    fn vni_owner(&self, rec: &NetworkRecord) -> Result<Option<String>> {
        if self.network(&rec.name)?.is_some() {
            return Ok(None);
        }
        let key = keys::vni(rec.vni);
        self.0.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }
}

impl<K: Kv> ClusterStore for Store<K> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }

    fn register_host(&self, host: &HostRecord) -> Result<()> {
        keys::check_name("host", &host.id)?;
        if host.id != self.0.host_id() {
            return Err(Error::Invalid(format!(
                "this store is host {}, not {}",
                self.0.host_id(),
                host.id
            )));
        }
        let mut host = host.clone();
        if host.registered_unix == 0 {
            host.registered_unix = now_unix();
        }
        self.0.put(keys::host(&host.id), encode(&host), true)
    }

    fn unregister_host(&self) -> Result<()> {
        self.0.unregister()
    }

    fn hosts(&self) -> Result<Vec<(HostRecord, Duration)>> {
        let now = now_unix();
        let hosts: Vec<HostRecord> = keys::records(&self.0.list(&keys::hosts())?)?;
        Ok(hosts
            .into_iter()
            .map(|h| {
                let age = Duration::from_secs(now.saturating_sub(h.registered_unix));
                (h, age)
            })
            .collect())
    }

    fn create_network(&self, rec: &NetworkRecord) -> Result<NetworkRecord> {
        keys::check_name("network", &rec.name)?;
        if rec.vni > MAX_VNI {
            return Err(Error::Invalid(format!(
                "network {}: VNI {} is above {MAX_VNI}",
                rec.name, rec.vni
            )));
        }
        blocks::block_prefix(rec, false)?;
        blocks::block_prefix(rec, true)?;
        for _ in 0..CAS_ATTEMPTS {
            if let Some(existing) = self.network(&rec.name)? {
                return Self::same_network(existing, rec);
            }
            let mut new = rec.clone();
            if new.vni == 0 {
                new.vni = self.free_vni()?;
            }
            let entries = vec![
                (keys::network(&new.name), encode(&new)),
                (keys::vni(new.vni), encode(&new.name)),
            ];
            if self.0.create(entries, false)? {
                return Ok(new);
            }
            // Lost a race: the name (checked again above) or the VNI is taken.
            if rec.vni != 0 {
                if let Some(owner) = self.vni_owner(rec)? {
                    return Err(Error::Conflict(format!(
                        "network {}: VNI {} is used by network {owner}",
                        rec.name, rec.vni
                    )));
                }
            }
        }
        Err(Error::Conflict(format!(
            "network {}: lost {CAS_ATTEMPTS} races for a VNI, try again",
            rec.name
        )))
    }

    fn delete_network(&self, name: &str) -> Result<()> {
        let Some(net) = self.network(name)? else {
            return Ok(());
        };
        self.0.delete(
            vec![keys::network(name), keys::vni(net.vni)],
            vec![keys::blocks(name), keys::endpoints(Some(name))],
        )
    }

    fn networks(&self) -> Result<Vec<NetworkRecord>> {
        keys::records(&self.0.list(&keys::networks())?)
    }

    fn claim_block(&self, network: &str, v6: bool) -> Result<Option<IpNet>> {
        let net = self
            .network(network)?
            .ok_or_else(|| Error::NotFound(format!("network {network}")))?;
        let taken: BTreeSet<IpNet> = self.blocks(network)?.into_iter().map(|b| b.block).collect();
        for block in blocks::candidates(&net, v6)?.filter(|b| !taken.contains(b)) {
            let rec = BlockRecord {
                network: network.to_string(),
                block,
                host: self.0.host_id().to_string(),
            };
            // Create-if-absent: a host that loses the race moves on.
            if self
                .0
                .create(vec![(keys::block(network, block), encode(&rec))], true)?
            {
                return Ok(Some(block));
            }
        }
        Ok(None)
    }

    fn reclaim_block(&self, network: &str, block: IpNet) -> Result<bool> {
        let key = keys::block(network, block);
        let rec = BlockRecord {
            network: network.to_string(),
            block,
            host: self.0.host_id().to_string(),
        };
        // Twice at most: the block may come free between the read and the create.
        for _ in 0..2 {
            match self.0.get(&key)? {
                Some(value) => {
                    let held: BlockRecord = decode(&key, &value)?;
                    if held.host != self.0.host_id() {
                        return Ok(false);
                    }
                    // Ours: written again under this process's lease.
                    self.0.put(key, encode(&rec), true)?;
                    return Ok(true);
                }
                None => {
                    if self.0.create(vec![(key.clone(), encode(&rec))], true)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    fn release_block(&self, network: &str, block: IpNet) -> Result<()> {
        let key = keys::block(network, block);
        let Some(value) = self.0.get(&key)? else {
            return Ok(());
        };
        let rec: BlockRecord = decode(&key, &value)?;
        if rec.host != self.0.host_id() {
            return Err(Error::Conflict(format!(
                "block {block} of network {network} is held by host {}, not {}",
                rec.host,
                self.0.host_id()
            )));
        }
        self.0.delete(vec![key], vec![])
    }

    fn blocks(&self, network: &str) -> Result<Vec<BlockRecord>> {
        keys::records(&self.0.list(&keys::blocks(network))?)
    }

    fn publish_endpoint(&self, rec: &EndpointRecord) -> Result<()> {
        keys::check_name("network", &rec.network)?;
        if rec.host != self.0.host_id() {
            return Err(Error::Invalid(format!(
                "endpoint {} names host {:?}; this store publishes for {}",
                rec.ip,
                rec.host,
                self.0.host_id()
            )));
        }
        self.0
            .put(keys::endpoint(&rec.network, rec.ip), encode(rec), true)
    }

    fn withdraw_endpoint(&self, network: &str, ip: IpAddr) -> Result<()> {
        self.0.delete(vec![keys::endpoint(network, ip)], vec![])
    }

    fn endpoints(&self, network: Option<&str>) -> Result<Vec<EndpointRecord>> {
        keys::records(&self.0.list(&keys::endpoints(network))?)
    }

    fn watch(&self) -> Result<Receiver<Event>> {
        self.0.watch()
    }
}
