//! IPAM's keys in the controller's redb store: one per pool
//! (`ipam/pool/<pool id>`, its definition) and one per allocated address
//! (`ipam/address/<pool id>/<ip>`, an empty value), so a request writes one
//! small key however full the pool is. The whole state is read once at
//! open into [`Ipam`]'s taken sets; each mutation marks the keys it touched
//! and [`Ipam::take_changes`] turns them into puts and deletes.
//!
//! Why here and not a `RedbStore` in ferry-ipam: these keys must commit in
//! the same redb transaction as the network or endpoint an operation
//! changes (the controller's `Store::apply`), and ferry-ipam, linked into
//! every CNI plugin binary, would otherwise pull in redb for one user.
//! ferry-ipam's `Store`/`StoreTxn` traits are host-local's (reservations
//! keyed by attachment, a lock per network), not this.
//!
//! Upgrade: state written before this held the whole [`Ipam`] under one key
//! (`ipam`); [`Ipam::open`] rewrites it as per-key entries and deletes it,
//! in one transaction.

use crate::error::{CnmError, Result};
use crate::ipam::Ipam;
use crate::store::{Change, Store};
use serde::Serialize;
use std::net::IpAddr;

/// The key all of IPAM's state used to live under.
pub const LEGACY_KEY: &str = "ipam";
const POOL: &str = "ipam/pool/";
const ADDRESS: &str = "ipam/address/";

fn pool_key(id: &str) -> String {
    format!("{POOL}{id}")
}

fn address_key(id: &str, ip: IpAddr) -> String {
    format!("{ADDRESS}{id}/{ip}")
}

/// A pool's stored definition: everything but its addresses.
#[derive(Serialize)]
struct PoolRecord<'a> {
    id: &'a str,
    space: &'a str,
    subnet: ipnet::IpNet,
    range: Option<ipnet::IpNet>,
}

impl Ipam {
    /// Loads IPAM's keys from `store`, migrating the old single key.
    pub fn open(store: &Store) -> Result<Ipam> {
        let mut ipam = Ipam::default();
        let mut addresses = Vec::new();
        for (k, v) in store.load_prefix(LEGACY_KEY)? {
            let bad = |e: serde_json::Error| CnmError::Store(format!("{k}: {e}"));
            if k == LEGACY_KEY {
                let old: Ipam = serde_json::from_slice(&v).map_err(bad)?;
                for (id, p) in old.pools {
                    ipam.dirty.insert((id.clone(), None));
                    for ip in &p.allocated {
                        ipam.dirty.insert((id.clone(), Some(*ip)));
                    }
                    let merged = ipam.pools.or_insert_with(id, || p.clone());
                    merged.allocated.extend(p.allocated);
                }
                ipam.legacy = true;
            } else if let Some(id) = k.strip_prefix(POOL) {
                let p = serde_json::from_slice(&v).map_err(bad)?;
                let merged = ipam.pools.or_insert_with(id.to_string(), || p);
                merged.id = id.to_string();
            } else if let Some(rest) = k.strip_prefix(ADDRESS) {
                let parsed = rest
                    .rsplit_once('/')
                    .and_then(|(id, ip)| Some((id.to_string(), ip.parse::<IpAddr>().ok()?)));
                addresses.push(parsed.ok_or_else(|| CnmError::Store(format!("bad key {k:?}")))?);
            }
        }
        for (id, ip) in addresses {
            match ipam.pools.get_mut(&id) {
                Some(p) => {
                    p.allocated.insert(ip);
                }
                // Its pool is gone: the address key goes too.
                None => {
                    ipam.dirty.insert((id, Some(ip)));
                }
            }
        }
        let ids: Vec<String> = ipam.pools.keys().cloned().collect();
        for id in ids {
            // Resume after the highest address of the range (the cursor is
            // not stored: an order, not a reservation).
            let Some(p) = ipam.pools.get_mut(&id) else {
                continue;
            };
            if let Ok(span) = p.span() {
                p.last = p
                    .allocated
                    .range(span.range_start..=span.range_end)
                    .next_back()
                    .copied();
            }
        }
        if !ipam.dirty.is_empty() || ipam.legacy {
            store.apply(vec![ipam.take_changes()?])?;
        }
        Ok(ipam)
    }

    /// The writes that make the store match memory for every key changed
    /// since the last call (one per requested or released address, the
    /// pool and its addresses for a pool), for the caller to commit with
    /// its own changes.
    pub fn take_changes(&mut self) -> Result<Change> {
        let mut out = Vec::with_capacity(self.dirty.len() + 1);
        for (id, ip) in std::mem::take(&mut self.dirty) {
            let pool = self.pools.get(&id);
            out.push(match (ip, pool) {
                (None, Some(p)) => {
                    let rec = PoolRecord {
                        id: &p.id,
                        space: &p.space,
                        subnet: p.subnet,
                        range: p.range,
                    };
                    let v = serde_json::to_vec(&rec).map_err(|e| CnmError::Store(e.to_string()))?;
                    Change::Put(pool_key(&id), v)
                }
                (None, None) => Change::Delete(pool_key(&id)),
                (Some(ip), Some(p)) if p.allocated.contains(&ip) => {
                    Change::Put(address_key(&id, ip), Vec::new())
                }
                (Some(ip), _) => Change::Delete(address_key(&id, ip)),
            });
        }
        if std::mem::take(&mut self.legacy) {
            out.push(Change::Delete(LEGACY_KEY.to_string()));
        }
        Ok(Change::Many(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{Controller, ControllerConfig};
    use crate::wire;
    use std::collections::BTreeMap;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn keys(store: &Store) -> Vec<String> {
        store
            .load_prefix("")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// (keys written or deleted, bytes of keys and values) of a change.
    fn size(c: &Change) -> (usize, usize) {
        match c {
            Change::Put(k, v) => (1, k.len() + v.len()),
            Change::Delete(k) => (1, k.len()),
            Change::Many(cs) => cs
                .iter()
                .map(size)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        }
    }

    #[test]
    fn allocations_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let id;
        {
            let store = Store::open(&path).unwrap();
            let mut ipam = Ipam::open(&store).unwrap();
            let p = ipam
                .request_pool("local", "198.18.217.0/24", "", false, &[], &[])
                .unwrap();
            id = p.id;
            ipam.request_address(&id, Some(ip("198.18.217.1")), true)
                .unwrap();
            for _ in 0..3 {
                ipam.request_address(&id, None, false).unwrap();
            }
            ipam.release_address(&id, ip("198.18.217.3")).unwrap();
            store.apply(vec![ipam.take_changes().unwrap()]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let mut ipam = Ipam::open(&store).unwrap();
        let p = &ipam.pools[&id];
        assert_eq!(p.subnet.to_string(), "198.18.217.0/24");
        let held: Vec<String> = p.allocated.iter().map(|a| a.to_string()).collect();
        assert_eq!(held, ["198.18.217.1", "198.18.217.2", "198.18.217.4"]);
        // Resumes after the highest address, not at a released one.
        let next = ipam.request_address(&id, None, false).unwrap();
        assert_eq!(next.to_string(), "198.18.217.5/24");
        store.apply(vec![ipam.take_changes().unwrap()]).unwrap();
        // Releasing the pool takes its addresses' keys along.
        ipam.release_pool(&id).unwrap();
        store.apply(vec![ipam.take_changes().unwrap()]).unwrap();
        assert!(keys(&store).is_empty(), "{:?}", keys(&store));
        assert!(Ipam::open(&store).unwrap().pools.is_empty());
    }

    /// The single `ipam` key as written before per-key storage.
    const OLD: &str = r#"{"pools":{"local/198.18.218.0/24/198.18.218.128/25":{"id":"local/198.18.218.0/24/198.18.218.128/25","space":"local","subnet":"198.18.218.0/24","range":"198.18.218.128/25","allocated":["198.18.218.1","198.18.218.128","198.18.218.129"]},"local/fd00:218::/64":{"id":"local/fd00:218::/64","space":"local","subnet":"fd00:218::/64","range":null,"allocated":["fd00:218::1"]}}}"#;

    #[test]
    fn the_old_single_key_is_migrated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .apply(vec![
                    Change::Put(LEGACY_KEY.into(), OLD.as_bytes().to_vec()),
                    Change::Put("other/kept".into(), b"{}".to_vec()),
                ])
                .unwrap();
        }
        let v4 = "local/198.18.218.0/24/198.18.218.128/25";
        let v6 = "local/fd00:218::/64";
        let fake = std::sync::Arc::new(crate::fake::Fake::default());
        let mut c = Controller::open(
            ControllerConfig {
                state_path: path.clone(),
                default_pools: Vec::new(),
            },
            fake,
        )
        .unwrap();
        let expected: Ipam = serde_json::from_str(OLD).unwrap();
        assert_eq!(c.ipam().pools.len(), 2);
        for (id, p) in &expected.pools {
            assert_eq!(c.ipam().pools[id].allocated, p.allocated, "{id}");
            assert_eq!(c.ipam().pools[id].range, p.range, "{id}");
        }
        // Another request through the controller: after .129, in the sub-pool.
        let r = c
            .request_address(&wire::RequestAddress {
                pool_id: v4.into(),
                address: String::new(),
                options: BTreeMap::new(),
            })
            .unwrap();
        assert_eq!(r.address, "198.18.218.130/24");
        drop(c);
        let store = Store::open(&path).unwrap();
        let mut want = vec![
            format!("ipam/address/{v4}/198.18.218.1"),
            format!("ipam/address/{v4}/198.18.218.128"),
            format!("ipam/address/{v4}/198.18.218.129"),
            format!("ipam/address/{v4}/198.18.218.130"),
            format!("ipam/address/{v6}/fd00:218::1"),
            format!("ipam/pool/{v4}"),
            format!("ipam/pool/{v6}"),
            "other/kept".to_string(),
        ];
        want.sort();
        assert_eq!(keys(&store), want, "the old key is gone, nothing lost");
        // Nothing left to migrate: a second open writes nothing.
        let again = Ipam::open(&store).unwrap();
        assert!(again.dirty.is_empty() && !again.legacy);
        assert_eq!(again.pools[v4].allocated.len(), 4);
    }

    #[test]
    fn a_request_writes_one_key_however_full_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let mut ipam = Ipam::open(&store).unwrap();
        let p = ipam
            .request_pool("local", "198.18.0.0/16", "", false, &[], &[])
            .unwrap();
        store.apply(vec![ipam.take_changes().unwrap()]).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..1000 {
            ipam.request_address(&p.id, None, false).unwrap();
            let c = ipam.take_changes().unwrap();
            sizes.push(size(&c));
            store.apply(vec![c]).unwrap();
        }
        let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
        assert_eq!(first.0, 1);
        assert!(
            sizes.iter().all(|s| s.0 == 1 && s.1 <= first.1 + 4),
            "{sizes:?}"
        );
        assert!(last.1 < 64, "{last:?}");
        let released = ipam.release_address(&p.id, ip("198.18.0.7"));
        released.unwrap();
        assert_eq!(size(&ipam.take_changes().unwrap()).0, 1);
        // Nothing changed, nothing written.
        ipam.release_address(&p.id, ip("198.18.0.7")).unwrap();
        assert_eq!(size(&ipam.take_changes().unwrap()).0, 0);
        assert_eq!(keys(&store).len(), 1001);
    }
}
