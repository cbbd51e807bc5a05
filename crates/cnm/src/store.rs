//! Durable state in an embedded redb file: one key per object. A change
//! that creates or deletes an object or an address is committed (fsync)
//! before Docker hears back, so kill -9 and restart lose nothing; a change
//! a restart re-derives or can do without is deferred ([`Store::defer`]).

use crate::error::{CnmError, Result};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::path::Path;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

pub struct Store {
    db: Database,
}

fn err(e: impl std::fmt::Display) -> CnmError {
    CnmError::Store(e.to_string())
}

/// One change of a transaction: write a value, delete the key, or several
/// changes (IPAM's per-key writes, in the transaction of the operation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(String, Vec<u8>),
    Delete(String),
    Many(Vec<Change>),
}

fn write(t: &mut redb::Table<&str, &[u8]>, c: &Change) -> Result<()> {
    match c {
        Change::Put(k, v) => {
            t.insert(k.as_str(), v.as_slice()).map_err(err)?;
        }
        Change::Delete(k) => {
            t.remove(k.as_str()).map_err(err)?;
        }
        Change::Many(cs) => {
            for c in cs {
                write(t, c)?;
            }
        }
    }
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            // Not through a link or a directory another user planted.
            ferry_linux::fs::create_state_dir(dir, 0o755).map_err(|e| err(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(OBJECTS).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Store { db })
    }

    /// Applies all changes atomically and durably (with the deferred ones
    /// before them).
    pub fn apply(&self, changes: Vec<Change>) -> Result<()> {
        self.commit(changes, Durability::Immediate)
    }

    /// Applies all changes atomically in memory, without an fsync: they
    /// reach the file with the next [`Store::apply`] or [`Store::flush`],
    /// and a kill -9 before that loses them. Only for changes that are
    /// harmless to lose or that ferryd recovers after a restart (each
    /// caller says which).
    pub fn defer(&self, changes: Vec<Change>) -> Result<()> {
        self.commit(changes, Durability::None)
    }

    /// Makes the deferred changes durable (a shutdown's last write).
    pub fn flush(&self) -> Result<()> {
        self.apply(Vec::new())
    }

    fn commit(&self, changes: Vec<Change>, durability: Durability) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(durability).map_err(err)?;
        {
            let mut t = txn.open_table(OBJECTS).map_err(err)?;
            for c in &changes {
                write(&mut t, c)?;
            }
        }
        txn.commit().map_err(err)
    }

    /// Every key and value.
    pub fn load(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.load_prefix("")
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn load_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(OBJECTS).map_err(err)?;
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> Change {
        Change::Put(k.into(), b"v".to_vec())
    }

    fn keys(path: &Path) -> Vec<String> {
        let s = Store::open(path).unwrap();
        s.load().unwrap().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn deferred_changes_are_read_at_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = Store::open(&path).unwrap();
        s.defer(vec![put("a")]).unwrap();
        assert_eq!(
            s.load().unwrap().len(),
            1,
            "a deferred change is not visible"
        );
        s.apply(vec![put("b")]).unwrap();
        s.defer(vec![put("c")]).unwrap();
        s.flush().unwrap();
        drop(s);
        assert_eq!(keys(&path), ["a", "b", "c"]);
    }

    #[test]
    fn state_is_not_kept_through_a_planted_link() {
        ferry_testkit::require_root();
        let p = ferry_testkit::PlantedLink::new();
        for path in [p.link.join("ferryd.redb"), p.link.join("lib/ferryd.redb")] {
            let e = Store::open(&path).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{e}");
        }
        p.assert_untouched("ferryd's state store");
    }
}
