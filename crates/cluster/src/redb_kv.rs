//! The embedded backend: one node, one redb file, the same key layout as
//! etcd. The "lease" is this process: no other host's entries ever exist, and
//! this host's records stay in the file until `unregister_host` (a restarted
//! ferryd finds its blocks and endpoints again). `watch` delivers the events
//! of this process's own writes through an in-process broadcast.

use crate::keys::{self, decode};
use crate::store::Kv;
use crate::{BlockRecord, EndpointRecord, Error, Event, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("cluster");

/// One change: the key and its new value, None for a delete.
type Change = (String, Option<Vec<u8>>);

pub(crate) struct RedbKv {
    db: Database,
    path: PathBuf,
    host_id: String,
    /// Watchers; the lock also serializes writes, so a watcher's Snapshot
    /// and the events after it never miss or repeat a change.
    watchers: Mutex<Vec<Sender<Event>>>,
}

impl RedbKv {
    pub(crate) fn open(path: &Path, host_id: &str) -> Result<RedbKv> {
        let err = |e: &dyn std::fmt::Display| Error::Local {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            // Not through a link or a directory another user planted.
            ferry_linux::fs::create_state_dir(dir, 0o755).map_err(|e| err(&e))?;
        }
        let db = Database::create(path).map_err(|e| err(&e))?;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        txn.open_table(KV).map_err(|e| err(&e))?;
        txn.commit().map_err(|e| err(&e))?;
        Ok(RedbKv {
            db,
            path: path.to_path_buf(),
            host_id: host_id.to_string(),
            watchers: Mutex::new(Vec::new()),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Local {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    fn watchers(&self) -> std::sync::MutexGuard<'_, Vec<Sender<Event>>> {
        // A panic while holding the lock leaves the list itself intact.
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one write transaction; `f` returns the changes it made
    /// (applied by `f` itself) and a result. The changes go to every watcher
    /// after the commit.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(Vec<Change>, T)>,
    ) -> Result<T> {
        let mut watchers = self.watchers();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let (changes, out) = {
            let mut t = txn.open_table(KV).map_err(|e| self.err(e))?;
            f(&mut t)?
        };
        txn.commit().map_err(|e| self.err(e))?;
        let events: Vec<Event> = changes
            .iter()
            .filter_map(|(k, v)| keys::event(k, v.as_deref()).ok().flatten())
            .collect();
        watchers.retain(|w| events.iter().all(|e| w.send(e.clone()).is_ok()));
        Ok(out)
    }

    fn apply(&self, t: &mut redb::Table<&str, &[u8]>, changes: &[Change]) -> Result<()> {
        for (k, v) in changes {
            match v {
                Some(v) => t.insert(k.as_str(), v.as_slice()).map(drop),
                None => t.remove(k.as_str()).map(drop),
            }
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn scan(
        &self,
        t: &impl ReadableTable<&'static str, &'static [u8]>,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

impl Kv for RedbKv {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn host_id(&self) -> &str {
        &self.host_id
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(KV).map_err(|e| self.err(e))?;
        let v = t.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(KV).map_err(|e| self.err(e))?;
        self.scan(&t, prefix)
    }

    fn create(&self, entries: Vec<(String, Vec<u8>)>, _leased: bool) -> Result<bool> {
        self.write(|t| {
            for (k, _) in &entries {
                if t.get(k.as_str()).map_err(|e| self.err(e))?.is_some() {
                    return Ok((vec![], false));
                }
            }
            let changes: Vec<Change> = entries.into_iter().map(|(k, v)| (k, Some(v))).collect();
            self.apply(t, &changes)?;
            Ok((changes, true))
        })
    }

    fn put(&self, key: String, value: Vec<u8>, _leased: bool) -> Result<()> {
        self.write(|t| {
            let changes = vec![(key, Some(value))];
            self.apply(t, &changes)?;
            Ok((changes, ()))
        })
    }

    fn delete(&self, keys: Vec<String>, prefixes: Vec<String>) -> Result<()> {
        self.write(|t| {
            let mut changes = Vec::new();
            for k in keys {
                if t.get(k.as_str()).map_err(|e| self.err(e))?.is_some() {
                    changes.push((k, None));
                }
            }
            for p in prefixes {
                changes.extend(self.scan(t, &p)?.into_iter().map(|(k, _)| (k, None)));
            }
            self.apply(t, &changes)?;
            Ok((changes, ()))
        })
    }

    fn unregister(&self) -> Result<()> {
        self.write(|t| {
            let mut changes: Vec<Change> = Vec::new();
            let host = keys::host(&self.host_id);
            if t.get(host.as_str()).map_err(|e| self.err(e))?.is_some() {
                changes.push((host, None));
            }
            for (k, v) in self.scan(t, &format!("{}blocks/", keys::ROOT))? {
                if decode::<BlockRecord>(&k, &v)?.host == self.host_id {
                    changes.push((k, None));
                }
            }
            for (k, v) in self.scan(t, &keys::endpoints(None))? {
                if decode::<EndpointRecord>(&k, &v)?.host == self.host_id {
                    changes.push((k, None));
                }
            }
            self.apply(t, &changes)?;
            Ok((changes, ()))
        })
    }

    fn watch(&self) -> Result<Receiver<Event>> {
        let mut watchers = self.watchers();
        let snapshot = keys::snapshot(&self.list(keys::ROOT)?)?;
        let (tx, rx) = channel();
        // The receiver is still here: this send cannot fail.
        let _ = tx.send(Event::Snapshot(snapshot));
        watchers.push(tx);
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_not_kept_through_a_planted_link() {
        ferry_testkit::require_root();
        let p = ferry_testkit::PlantedLink::new();
        let e = RedbKv::open(&p.link.join("cluster.redb"), "h1")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        p.assert_untouched("the cluster store");
    }
}
