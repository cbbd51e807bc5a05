//! Bookkeeping: which set and map elements each attachment added.
//!
//! One JSON file per attachment, `DIR/KIND/NETWORK/CONTAINERID:IFNAME.json`,
//! written before the elements are committed and removed after they are
//! deleted. DEL reads one file (O(1)), GC lists one network's directory.
//! The kernel's ruleset stays the authority: CHECK compares the file with
//! the elements the kernel holds.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ferry_linux::fs::{write_atomic, Durability};
use ferry_linux::nft::{self, Batch, Element, Family, Table, Value};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One attachment: the network, the container and its interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// Container ID.
    pub container_id: String,
    /// Interface name in the container.
    pub ifname: String,
}

impl Attachment {
    /// An attachment; the names must be usable as file names (no `/`, no
    /// NUL, not `.` or `..`), or [`Error::Invalid`].
    pub fn new(network: &str, container_id: &str, ifname: &str) -> Result<Attachment> {
        for (what, v) in [
            ("network name", network),
            ("container ID", container_id),
            ("interface name", ifname),
        ] {
            if v.is_empty() || v == "." || v == ".." || v.contains(['/', '\0']) {
                return Err(Error::Invalid(format!("invalid {what} {v:?}")));
            }
        }
        Ok(Attachment {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
        })
    }
}

/// A typed component of a stored key or value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Val {
    /// An address.
    Ip(IpAddr),
    /// A layer 4 protocol number.
    Proto(u8),
    /// A port.
    Port(u16),
    /// An interface name.
    Ifname(String),
    /// A MAC address.
    Ether([u8; 6]),
}

impl Val {
    fn value(&self) -> Value {
        match self {
            Val::Ip(a) => Value::from(*a),
            Val::Proto(p) => Value::Proto(*p),
            Val::Port(p) => Value::Port(*p),
            Val::Ifname(n) => Value::Ifname(n.clone()),
            Val::Ether(m) => Value::Ether(*m),
        }
    }
}

fn values(v: &[Val]) -> Vec<Value> {
    v.iter().map(Val::value).collect()
}

/// The bytes of a key as the kernel lists it: one component as is, a
/// concatenation with each component padded to 4 bytes.
fn key_bytes(v: &[Val]) -> Vec<u8> {
    if let [one] = v {
        return one.value().to_bytes();
    }
    let mut out = Vec::new();
    for c in v {
        out.extend_from_slice(&c.value().to_bytes());
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    out
}

/// One element of a named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredElement {
    /// Set or map name.
    pub set: String,
    /// Key (a concatenation when several).
    pub key: Vec<Val>,
    /// End of a range (concatenated interval sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_end: Option<Vec<Val>>,
    /// Value of a map element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<Val>>,
}

impl StoredElement {
    /// A set element.
    pub fn key(set: &str, key: Vec<Val>) -> StoredElement {
        StoredElement {
            set: set.into(),
            key,
            key_end: None,
            data: None,
        }
    }

    /// A range of a concatenated interval set.
    pub fn range(set: &str, start: Vec<Val>, end: Vec<Val>) -> StoredElement {
        StoredElement {
            key_end: Some(end),
            ..StoredElement::key(set, start)
        }
    }

    /// A map element.
    pub fn map(set: &str, key: Vec<Val>, data: Vec<Val>) -> StoredElement {
        StoredElement {
            data: Some(data),
            ..StoredElement::key(set, key)
        }
    }

    /// The element to send to the kernel.
    pub fn element(&self) -> Element {
        let mut e = match &self.key_end {
            Some(end) => Element::range(values(&self.key), values(end)),
            None => Element::new(values(&self.key)),
        };
        if let Some(d) = &self.data {
            e = e.data(values(d));
        }
        e
    }
}

/// What one attachment added to a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Container ID (repeated here for GC).
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
    /// The elements, in the order they were added.
    pub elements: Vec<StoredElement>,
    /// Elements in the driver's bridge-family table of the same name
    /// (the firewall's isolated ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bridge_elements: Vec<StoredElement>,
}

impl Record {
    /// The record of what `a` added.
    pub fn of(
        a: &Attachment,
        elements: Vec<StoredElement>,
        bridge_elements: Vec<StoredElement>,
    ) -> Record {
        Record {
            container_id: a.container_id.clone(),
            ifname: a.ifname.clone(),
            elements,
            bridge_elements,
        }
    }
}

/// The bookkeeping files of one driver.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    dir: PathBuf,
}

impl Store {
    /// Files under `root/kind`.
    pub fn new(root: &Path, kind: &str) -> Store {
        Store {
            root: root.to_path_buf(),
            dir: root.join(kind),
        }
    }

    /// The state root the store lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes an exclusive `flock` on `ROOT/NAME.lock` until the guard is
    /// dropped.
    pub fn lock(&self, name: &str) -> Result<Lock> {
        let path = self.root.join(format!("{name}.lock"));
        let io = |context, source| Error::Io {
            context,
            path: path.clone(),
            source,
        };
        // Not through a link or a directory another user planted.
        ferry_linux::fs::create_state_dir(&self.root, 0o755)
            .map_err(|e| io("failed to create the directory of", e))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("failed to open", e))?;
        let f = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io("failed to lock", errno.into()))?;
        Ok(Lock(f))
    }

    fn net_dir(&self, network: &str) -> PathBuf {
        self.dir.join(network)
    }

    fn path(&self, a: &Attachment) -> PathBuf {
        self.net_dir(&a.network)
            .join(format!("{}:{}.json", a.container_id, a.ifname))
    }

    /// Writes the record (a temporary file renamed into place). Not
    /// synced: a record describes kernel state (set and map elements),
    /// which a machine crash loses too, while a killed process leaves the
    /// page cache, and so the record, intact. After a crash a torn record
    /// reads as absent ([`load`](Self::load)). The fsync cost 1-12 ms of
    /// every portmap, firewall and `ipMasq` ADD on this machine's disk.
    pub fn save(&self, a: &Attachment, r: &Record) -> Result<()> {
        let path = self.path(a);
        let io = |context, source| Error::Io {
            context,
            path: path.clone(),
            source,
        };
        ferry_linux::fs::create_state_dir(&self.net_dir(&a.network), 0o755)
            .map_err(|e| io("failed to create the directory of", e))?;
        let bytes = serde_json::to_vec(r).map_err(|e| io("failed to encode", e.into()))?;
        write_atomic(&path, &bytes, 0o666, Durability::Cached).map_err(|e| io("failed to write", e))
    }

    /// The attachment's record; `None` when there is none. A file that
    /// cannot be decoded is treated as absent (and replaced on the next
    /// ADD).
    pub fn load(&self, a: &Attachment) -> Result<Option<Record>> {
        let path = self.path(a);
        match std::fs::read(&path) {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                context: "failed to read",
                path,
                source,
            }),
        }
    }

    /// [`load`](Self::load) for DEL: when there is no record, the
    /// temporary file of a writer killed before its rename goes too.
    pub fn load_for_del(&self, a: &Attachment) -> Result<Option<Record>> {
        let r = self.load(a)?;
        if r.is_none() {
            ferry_linux::fs::remove_stale_temps(&self.path(a));
        }
        Ok(r)
    }

    /// Removes the attachment's record (no error when absent).
    pub fn remove(&self, a: &Attachment) -> Result<()> {
        let path = self.path(a);
        ferry_linux::fs::remove_stale_temps(&path);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                // The network's directory goes with its last attachment
                // (fails harmlessly while others remain).
                let _ = std::fs::remove_dir(self.net_dir(&a.network));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                context: "failed to remove",
                path,
                source,
            }),
        }
    }

    /// Every attachment of `network` that has a record.
    pub fn attachments(&self, network: &str) -> Result<Vec<Attachment>> {
        let dir = self.net_dir(network);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    context: "failed to list",
                    path: dir,
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if let Some((cid, ifname)) = stem.split_once(':') {
                if let Ok(a) = Attachment::new(network, cid, ifname) {
                    out.push(a);
                }
            }
        }
        out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok(out)
    }
}

/// An exclusive lock, released on drop.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] Flock<std::fs::File>);

/// Adds `elements` to `table` in the batch, grouped by set.
pub fn add_to(batch: &mut Batch, table: &Table, elements: &[StoredElement]) {
    for (set, group) in by_set(elements) {
        batch.add_elements(table, &set, &group);
    }
}

/// Removes `elements` (those already gone are ignored).
pub fn destroy_in(batch: &mut Batch, table: &Table, elements: &[StoredElement]) {
    for (set, group) in by_set(elements) {
        batch.destroy_elements(table, &set, &group);
    }
}

fn by_set(elements: &[StoredElement]) -> Vec<(String, Vec<Element>)> {
    let mut out: Vec<(String, Vec<Element>)> = Vec::new();
    for e in elements {
        match out.iter_mut().find(|(s, _)| *s == e.set) {
            Some((_, v)) => v.push(e.element()),
            None => out.push((e.set.clone(), vec![e.element()])),
        }
    }
    out
}

/// `structure` (a batch that only builds a table) when the kernel lacks
/// any of it, else an empty batch to add elements to. Rewriting an intact
/// structure replaces its rules, which makes the kernel wait an RCU grace
/// period (its deferred rule destruction) when the socket closes: 10-40 ms
/// of a chained ADD. See [`nft::Socket::holds`].
pub fn unless_held(sock: &mut nft::Socket, structure: Batch) -> Batch {
    match sock.holds(&structure) {
        Ok(true) => Batch::new(),
        // A failed look is no proof: rebuild.
        _ => structure,
    }
}

/// Records what `a` adds (`elements` to `table`, `bridge_elements` to the
/// bridge-family table of the same name), then commits `batch`, which adds
/// them; when the kernel refuses, the record goes again, so neither side
/// is left half-done. `what` names the change in the error.
pub fn commit_recorded(
    sock: &mut nft::Socket,
    store: &Store,
    a: &Attachment,
    elements: Vec<StoredElement>,
    bridge_elements: Vec<StoredElement>,
    batch: &Batch,
    what: &str,
) -> Result<()> {
    store.save(a, &Record::of(a, elements, bridge_elements))?;
    if let Err(e) = sock.commit(batch) {
        store.remove(a)?;
        return Err(Error::kernel(format!("failed to {what}"))(e));
    }
    Ok(())
}

/// Removes an attachment's elements and its record: one batch, one file.
/// Nothing to do when there is no record or no table.
pub fn release(sock: &mut nft::Socket, store: &Store, table: &Table, a: &Attachment) -> Result<()> {
    let Some(rec) = store.load_for_del(a)? else {
        return Ok(());
    };
    let bridge_table = Table::new(Family::Bridge, table.name.clone());
    let mut b = Batch::new();
    for (t, els) in [
        (table, &rec.elements),
        (&bridge_table, &rec.bridge_elements),
    ] {
        if !els.is_empty()
            && sock
                .table_exists(t)
                .map_err(Error::kernel(format!("failed to look for table {t}")))?
        {
            destroy_in(&mut b, t, els);
        }
    }
    if !b.is_empty() {
        sock.commit(&b).map_err(Error::kernel(format!(
            "failed to remove elements from {table}"
        )))?;
    }
    store.remove(a)
}

/// Checks that every element of the attachment's record is in the kernel;
/// [`Error::Missing`] names the first that is not.
pub fn verify(sock: &mut nft::Socket, store: &Store, table: &Table, a: &Attachment) -> Result<()> {
    let rec = store.load(a)?.ok_or_else(|| {
        Error::Missing(format!(
            "no {table} state for container {} interface {}",
            a.container_id, a.ifname
        ))
    })?;
    let mut listed: Vec<(String, Vec<nft::ElementInfo>)> = Vec::new();
    for e in &rec.elements {
        if !listed.iter().any(|(s, _)| *s == e.set) {
            let els = sock.elements(table, &e.set).map_err(|err| {
                Error::Missing(format!("{table} set {} is missing: {err}", e.set))
            })?;
            listed.push((e.set.clone(), els));
        }
        let (_, els) = listed
            .iter()
            .find(|(s, _)| *s == e.set)
            .ok_or_else(|| Error::Missing(e.set.clone()))?;
        let key = key_bytes(&e.key);
        let found = els.iter().any(|k| {
            k.key == key
                && match (&e.key_end, &k.key_end) {
                    (Some(want), Some(have)) => *have == key_bytes(want),
                    (None, _) => true,
                    _ => false,
                }
                && match (&e.data, &k.data) {
                    (Some(want), Some(nft::ElementData::Value(have))) => {
                        key_bytes(want)
                            == have.iter().flat_map(|v| v.to_bytes()).collect::<Vec<_>>()
                    }
                    (None, _) => true,
                    _ => false,
                }
        });
        if !found {
            return Err(Error::Missing(format!(
                "element {:?} of {table} set {} is missing",
                e.key, e.set
            )));
        }
    }
    Ok(())
}

/// Releases every attachment of `network` not in `valid` (container ID,
/// interface name).
pub fn collect(
    sock: &mut nft::Socket,
    store: &Store,
    table: &Table,
    network: &str,
    valid: &HashSet<(String, String)>,
) -> Result<()> {
    for a in store.attachments(network)? {
        if !valid.contains(&(a.container_id.clone(), a.ifname.clone())) {
            release(sock, store, table, &a)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_not_kept_through_a_planted_link() {
        ferry_testkit::require_root();
        let p = ferry_testkit::PlantedLink::new();
        // The link as the state root, and as a directory under it.
        for root in [p.link.clone(), p.link.join("ferry")] {
            let s = Store::new(&root, "portmap");
            let a = Attachment::new("net", "c1", "eth0").unwrap();
            let r = Record {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                elements: Vec::new(),
                bridge_elements: Vec::new(),
            };
            let e = s.save(&a, &r).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{e}");
            let e = s.lock("portmap").map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{e}");
        }
        p.assert_untouched("the drivers' records");
    }

    #[test]
    fn records_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path(), "portmap");
        let a = Attachment::new("net", "c1", "eth0").unwrap();
        assert!(s.load(&a).unwrap().is_none());
        let r = Record {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            bridge_elements: Vec::new(),
            elements: vec![StoredElement::map(
                "hostports4",
                vec![Val::Proto(6), Val::Port(8080)],
                vec![Val::Ip("198.18.208.2".parse().unwrap()), Val::Port(80)],
            )],
        };
        s.save(&a, &r).unwrap();
        assert_eq!(s.load(&a).unwrap(), Some(r));
        assert_eq!(s.attachments("net").unwrap(), vec![a.clone()]);
        s.remove(&a).unwrap();
        s.remove(&a).unwrap();
        assert!(s.attachments("net").unwrap().is_empty());
        assert!(Attachment::new("net", "../x", "eth0").is_err());
    }

    #[test]
    fn key_bytes_pad_concatenations() {
        assert_eq!(key_bytes(&[Val::Port(80)]), vec![0, 80]);
        assert_eq!(
            key_bytes(&[Val::Proto(6), Val::Port(80)]),
            vec![6, 0, 0, 0, 0, 80, 0, 0]
        );
    }
}
