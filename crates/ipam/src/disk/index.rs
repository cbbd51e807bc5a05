//! The index, `ferry-index/<attachment>`: the addresses each attachment
//! holds, so lookups and releases read one file instead of every lease.
//! Entries are hints checked against the lease files (`DESIGN.md`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use super::stamp::STAMP_FILE;
use super::txn::DiskTxn;
use super::{not_found_ok, INDEX_DIR};
use crate::error::{IpamError, Result};
use crate::store::{Attachment, Holder};
use ferry_linux::fs::{write_atomic, Durability};

const INDEX_MAGIC: &str = "ferry-ipam-index v1";

/// Percent-encode everything but `[A-Za-z0-9_.-]`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
pub(super) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Index file name of an attachment: `<id>+<ifname>` encoded, or a hash of
/// that when too long for a file name. A hash collision only costs a fall
/// back to the full walk, since the file content names the attachment.
pub(super) fn index_name(key: &Attachment) -> String {
    let name = format!(
        "{}+{}",
        encode(key.container_id.trim()),
        encode(&key.ifname)
    );
    if name.len() > 200 {
        format!("~{:016x}", fnv1a(&name))
    } else {
        name
    }
}

/// The index entry listing the leases of `holder`: its attachment, or for an
/// old-format lease its container with an empty interface name.
pub(super) fn index_key(holder: &Holder) -> Attachment {
    match holder {
        Holder::Attachment(a) => a.clone(),
        Holder::ContainerOnly(id) => Attachment {
            container_id: id.clone(),
            ifname: String::new(),
        },
    }
}

/// Whether two keys write the same index entry header (and so may share a
/// file); different keys under one name are a hash collision.
fn same_entry(a: &Attachment, b: &Attachment) -> bool {
    encode(a.container_id.trim()) == encode(b.container_id.trim()) && a.ifname == b.ifname
}

/// An index entry as read back.
pub(super) enum IndexEntry {
    Missing,
    /// Unreadable, corrupt, or written for another attachment.
    Foreign,
    Ips(Vec<IpAddr>),
}

impl IndexEntry {
    pub(super) fn ips(self) -> Vec<IpAddr> {
        match self {
            IndexEntry::Ips(v) => v,
            IndexEntry::Missing | IndexEntry::Foreign => Vec::new(),
        }
    }
}

/// An index entry's content: the magic line, the attachment, its addresses.
fn entry_text(key: &Attachment, ips: &[IpAddr]) -> String {
    let mut text = format!(
        "{INDEX_MAGIC}\n{}\n{}\n",
        encode(key.container_id.trim()),
        encode(&key.ifname)
    );
    for ip in ips {
        text.push_str(&ip.to_string());
        text.push('\n');
    }
    text
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v.dedup();
    v
}

impl DiskTxn<'_> {
    pub(super) fn index_dir(&self) -> PathBuf {
        self.dir.join(INDEX_DIR)
    }

    fn index_path(&self, key: &Attachment) -> PathBuf {
        self.index_dir().join(index_name(key))
    }

    /// The index entry of `key`.
    pub(super) fn read_index(&self, key: &Attachment) -> IndexEntry {
        let text = match fs::read_to_string(self.index_path(key)) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return IndexEntry::Missing,
            Err(_) => return IndexEntry::Foreign,
        };
        if text.is_empty() {
            // A writer of a new entry killed between create and write
            // ([`DiskTxn::create_index`]): it listed nothing yet.
            return IndexEntry::Missing;
        }
        let mut lines = text.lines();
        if lines.next() != Some(INDEX_MAGIC)
            || lines.next() != Some(encode(key.container_id.trim()).as_str())
            || lines.next() != Some(encode(&key.ifname).as_str())
        {
            return IndexEntry::Foreign;
        }
        IndexEntry::Ips(lines.filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Replace the index entry of `key` (atomically: write then rename);
    /// an empty list removes it, and the index directory once it holds no
    /// entry (with the stamp: no lease is left to vouch for).
    pub(super) fn write_index(&self, key: &Attachment, ips: &[IpAddr]) -> Result<()> {
        let path = self.index_path(key);
        if ips.is_empty() {
            // Temporary files a writer killed before its rename left are
            // not looked for here (that lists the whole index, on every
            // DEL): the next rebuild or GC removes them.
            self.remove(&path)?;
            self.drop_index_dir_if_empty();
            return Ok(());
        }
        let text = entry_text(key, ips);
        // Not synced: after a crash (a new boot) the stamp is not trusted
        // and the index is rebuilt.
        let write = || write_atomic(&path, text.as_bytes(), 0o666, Durability::Cached);
        match write() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.create_index_dir()?;
                write()
            }
            r => r,
        }
        .map_err(|e| IpamError::io("write", &path, e))
    }

    /// Write the entry of `key`, which does not exist (read as missing in
    /// this transaction), in place: created with `O_EXCL` and written with
    /// one `write`, no temporary file and no rename. Nobody reads the index
    /// without the lock, and a writer killed between create and write
    /// leaves an empty entry, which reads as missing: right, since the
    /// leases an entry lists are only created once its write returned.
    /// Falls back to [`DiskTxn::write_index`] if the file exists after all.
    pub(super) fn create_index(&self, key: &Attachment, ips: &[IpAddr]) -> Result<()> {
        let path = self.index_path(key);
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path)
        };
        let opened = match open() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.create_index_dir()?;
                open()
            }
            r => r,
        };
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return self.write_index(key, ips),
            Err(e) => return Err(IpamError::io("create", &path, e)),
        };
        if let Err(e) = f.write_all(entry_text(key, ips).as_bytes()) {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(IpamError::io("write", &path, e));
        }
        Ok(())
    }

    fn create_index_dir(&self) -> Result<()> {
        let dir = self.index_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| IpamError::io("create directory", &dir, e))
    }

    /// Remove the stamp and the index directory if it holds nothing else.
    /// While other entries remain the stamp stays, to be rewritten in place
    /// at the end (removing and creating it again costs an inode each time).
    pub(super) fn drop_index_dir_if_empty(&self) {
        if self.index_holds_more_than_the_stamp() {
            return;
        }
        let _ = fs::remove_file(self.stamp_path());
        self.stamp_removed.set(true);
        // Fails harmlessly while entries remain.
        let _ = fs::remove_dir(self.index_dir());
    }

    /// Whether the index directory holds anything but the stamp: stops at
    /// the first such entry, so one `getdents` however large the index. An
    /// unreadable directory counts as holding more (the old behaviour then:
    /// the stamp removed, the `rmdir` failing, the stamp recorded again).
    fn index_holds_more_than_the_stamp(&self) -> bool {
        match fs::read_dir(self.index_dir()) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.file_name() != STAMP_FILE))
                .any(|other| other.unwrap_or(true)),
            Err(e) => e.kind() != ErrorKind::NotFound,
        }
    }

    pub(super) fn index_remove_ip(&self, key: &Attachment, ip: IpAddr) -> Result<()> {
        if let IndexEntry::Ips(mut ips) = self.read_index(key) {
            ips.retain(|i| *i != ip);
            self.write_index(key, &ips)?;
        }
        Ok(())
    }

    /// Rewrite the entry of `key` (which listed `listed`) without the
    /// addresses whose reservation file is gone: those of `gone`, known
    /// gone in this transaction, and those found missing.
    pub(super) fn prune_index(
        &self,
        key: &Attachment,
        listed: &[IpAddr],
        gone: &[IpAddr],
    ) -> Result<()> {
        let mut keep = Vec::new();
        for ip in listed {
            if !gone.contains(ip) && self.exists(&self.ip_path(*ip))? && !keep.contains(ip) {
                keep.push(*ip);
            }
        }
        if keep.len() != listed.len() {
            self.write_index(key, &keep)?;
        }
        Ok(())
    }

    /// Rebuild the index from one walk: every lease listed under its holder,
    /// entries of attachments holding nothing (and leftover temporary files)
    /// removed. `false` if two holders share an entry's file name.
    pub(super) fn rebuild_index(&self) -> Result<bool> {
        let mut groups: HashMap<String, (Attachment, Vec<IpAddr>)> = HashMap::new();
        let mut collision = false;
        for (ip, _, holder) in self.walk()? {
            let key = index_key(&holder);
            match groups.entry(index_name(&key)) {
                Entry::Occupied(mut e) => {
                    collision |= !same_entry(&e.get().0, &key);
                    e.get_mut().1.push(ip);
                }
                Entry::Vacant(e) => {
                    e.insert((key, vec![ip]));
                }
            }
        }
        let dir = self.index_dir();
        if let Some(rd) =
            not_found_ok(fs::read_dir(&dir)).map_err(|e| IpamError::io("list", &dir, e))?
        {
            for entry in rd {
                let entry = entry.map_err(|e| IpamError::io("list", &dir, e))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name != STAMP_FILE && !groups.contains_key(name.as_ref()) {
                    self.remove(&entry.path())?;
                }
            }
        }
        for (key, ips) in groups.values() {
            let want = sorted(ips.clone());
            if sorted(self.read_index(key).ips()) != want {
                self.write_index(key, &want)?;
            }
        }
        if groups.is_empty() {
            self.drop_index_dir_if_empty();
        }
        Ok(!collision)
    }
}

#[cfg(test)]
mod tests {
    use super::super::reservation_content;
    use super::*;

    #[test]
    fn index_names_are_safe_and_never_ips() {
        let n = index_name(&Attachment::new("a/b:c", "eth0"));
        assert_eq!(n, "a%2Fb%3Ac+eth0");
        assert!(n.parse::<IpAddr>().is_err());
        let n = index_name(&Attachment::new("fd00::1", "x"));
        assert!(!n.contains(':') && n.parse::<IpAddr>().is_err());
        assert_eq!(
            reservation_content(&Attachment::new(" id ", "eth0")),
            "id\r\neth0"
        );
    }
}
