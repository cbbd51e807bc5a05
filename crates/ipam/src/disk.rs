//! [`DiskStore`]: the reference `host-local` on-disk format, plus a small
//! Ferry index that makes release O(1).
//!
//! Layout of `<dataDir>/<network>/` (the reference's, unchanged):
//! - `<ip>`: one file per reserved address, named by the address as Go prints
//!   it (dotted quad; RFC 5952 text for IPv6), holding `containerID\r\nifname`.
//!   Files holding only `containerID` were written by old versions and match
//!   that container whatever the interface name.
//! - `last_reserved_ip.<n>`: the address last reserved in range set `n`.
//! - `lock`: `flock`-ed exclusively around every operation, by both plugins.
//!
//! Ferry adds `ferry-index/<attachment>`: the addresses an attachment holds,
//! so a release reads a handful of files instead of every file of the network.
//!
//! Why the reference plugin is not confused by the index:
//! - it picks candidate addresses by `O_CREAT|O_EXCL` on `<dir>/<ip>`; the
//!   names `ferry-index`, `lock` and `last_reserved_ip.*` never parse as an
//!   IP address, so no candidate ever collides with them;
//! - its release/check walk the directory recursively (`filepath.Walk`) and
//!   delete or count every file whose trimmed content equals `id\r\nifname`
//!   or `id`; an index file always starts with the line
//!   `ferry-ipam-index v1` followed by more lines, so its content never equals
//!   either (container IDs cannot hold newlines: [`Attachment::validate`]);
//! - its `GetByID` only reports files whose *name* parses as an IP, and index
//!   file names always contain `+` (or start with `~`), so never do.
//!
//! Why the index cannot make Ferry lose or steal a lease:
//! - it is only a hint: every address it lists is checked against the
//!   reservation file's content before anything is deleted, so a stale entry
//!   (the reference released the lease and the address went to someone else)
//!   is harmless;
//! - an address is added to the index *before* its reservation file is
//!   created, so after a crash the index is a superset of the leases;
//! - when the index has no entry for the attachment, or none of its entries is
//!   still held by it (the lease may have been made by the reference plugin,
//!   which does not know the index), release falls back to the reference's
//!   full walk.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{IpamError, Result};
use crate::store::{Attachment, Holder, Store, StoreTxn};

/// Name of the lock file, shared with the reference plugin.
pub const LOCK_FILE: &str = "lock";
/// Prefix of the per-range-set last reserved address files.
pub const LAST_IP_PREFIX: &str = "last_reserved_ip.";
/// Ferry's index subdirectory.
pub const INDEX_DIR: &str = "ferry-index";
const INDEX_MAGIC: &str = "ferry-ipam-index v1";
const TMP_PREFIX: &str = ".tmp-";

/// The host-local store of one network: `<dataDir>/<network>/`.
#[derive(Debug, Clone)]
pub struct DiskStore {
    dir: PathBuf,
}

impl DiskStore {
    /// Open (creating it when missing, mode 0755) the directory of
    /// `network` under `data_dir`, e.g. [`crate::DEFAULT_DATA_DIR`].
    pub fn open(network: &str, data_dir: &Path) -> Result<Self> {
        if network.is_empty()
            || network == "."
            || network == ".."
            || network.contains('/')
            || network.contains('\0')
        {
            return Err(IpamError::InvalidNetworkName(network.to_string()));
        }
        let dir = data_dir.join(network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| IpamError::io("create directory", &dir, e))?;
        Ok(DiskStore { dir })
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_txn(&self) -> Result<DiskTxn<'_>> {
        let path = self.dir.join(LOCK_FILE);
        // A fresh open file description per lock: flock locks belong to the
        // description, so threads of one process sharing a descriptor would
        // not exclude each other.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| IpamError::io("open lock file", &path, e))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => {
                    return Ok(DiskTxn {
                        dir: &self.dir,
                        _lock: lock,
                    })
                }
                Err((f, Errno::EINTR)) => file = f,
                Err((_, source)) => return Err(IpamError::Lock { path, source }),
            }
        }
    }
}

impl Store for DiskStore {
    fn lock(&self) -> Result<Box<dyn StoreTxn + '_>> {
        Ok(Box::new(self.lock_txn()?))
    }
}

/// A locked [`DiskStore`]; the lock is dropped with it.
struct DiskTxn<'a> {
    dir: &'a Path,
    _lock: Flock<File>,
}

/// Reservation file content for `key`, byte for byte as the reference writes it.
fn reservation_content(key: &Attachment) -> String {
    format!("{}\r\n{}", key.container_id.trim(), key.ifname)
}

/// Parse a reservation file's content the way the reference matches it
/// (after trimming surrounding whitespace).
pub fn parse_holder(content: &[u8]) -> Holder {
    let text = String::from_utf8_lossy(content);
    let text = text.trim();
    match text.split_once("\r\n") {
        Some((id, ifname)) => Holder::Attachment(Attachment {
            container_id: id.to_string(),
            ifname: ifname.to_string(),
        }),
        None => Holder::ContainerOnly(text.to_string()),
    }
}

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
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Index file name of an attachment: `<id>+<ifname>` encoded, or a hash of
/// that when too long for a file name. A hash collision only costs a fall
/// back to the full walk, since the file content names the attachment.
fn index_name(key: &Attachment) -> String {
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

fn not_found_ok<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl DiskTxn<'_> {
    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    fn index_dir(&self) -> PathBuf {
        self.dir.join(INDEX_DIR)
    }

    fn index_path(&self, key: &Attachment) -> PathBuf {
        self.index_dir().join(index_name(key))
    }

    /// Holder of the reservation file at `path`, `None` when there is none.
    fn holder_at(&self, path: &Path) -> Result<Option<Holder>> {
        let data = not_found_ok(fs::read(path)).map_err(|e| IpamError::io("read", path, e))?;
        Ok(data.map(|d| parse_holder(&d)))
    }

    fn remove(&self, path: &Path) -> Result<bool> {
        not_found_ok(fs::remove_file(path))
            .map(|r| r.is_some())
            .map_err(|e| IpamError::io("remove", path, e))
    }

    /// Every reservation file: top-level regular files named by an IP.
    fn walk(&self) -> Result<Vec<(IpAddr, PathBuf, Holder)>> {
        let rd = fs::read_dir(self.dir).map_err(|e| IpamError::io("list", self.dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| IpamError::io("list", self.dir, e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_file() => {}
                _ => continue,
            }
            // Tolerate files vanishing under us, as the reference does.
            if let Some(holder) = self.holder_at(&path)? {
                out.push((ip, path, holder));
            }
        }
        Ok(out)
    }

    /// The addresses the index lists for `key`; `None` when it has no entry
    /// (missing, unreadable, or written for another attachment).
    fn read_index(&self, key: &Attachment) -> Option<Vec<IpAddr>> {
        let text = fs::read_to_string(self.index_path(key)).ok()?;
        let mut lines = text.lines();
        if lines.next() != Some(INDEX_MAGIC)
            || lines.next() != Some(encode(key.container_id.trim()).as_str())
            || lines.next() != Some(encode(&key.ifname).as_str())
        {
            return None;
        }
        Some(lines.filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Replace the index entry of `key` (atomically: write then rename);
    /// an empty list removes it.
    fn write_index(&self, key: &Attachment, ips: &[IpAddr]) -> Result<()> {
        let path = self.index_path(key);
        if ips.is_empty() {
            self.remove(&path)?;
            // Drop the directory once empty; fails harmlessly otherwise.
            let _ = fs::remove_dir(self.index_dir());
            return Ok(());
        }
        let dir = self.index_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| IpamError::io("create directory", &dir, e))?;
        let mut text = format!(
            "{INDEX_MAGIC}\n{}\n{}\n",
            encode(key.container_id.trim()),
            encode(&key.ifname)
        );
        for ip in ips {
            text.push_str(&ip.to_string());
            text.push('\n');
        }
        let tmp = dir.join(format!("{TMP_PREFIX}{}", index_name(key)));
        fs::write(&tmp, text).map_err(|e| IpamError::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| IpamError::io("rename", &path, e))
    }

    fn index_remove_ip(&self, key: &Attachment, ip: IpAddr) -> Result<()> {
        if let Some(mut ips) = self.read_index(key) {
            ips.retain(|i| *i != ip);
            self.write_index(key, &ips)?;
        }
        Ok(())
    }

    fn create_reservation(&self, key: &Attachment, ip: IpAddr) -> Result<bool> {
        let path = self.ip_path(ip);
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(IpamError::io("create", &path, e)),
        };
        if let Err(e) = f.write_all(reservation_content(key).as_bytes()) {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(IpamError::io("write", &path, e));
        }
        Ok(true)
    }
}

impl StoreTxn for DiskTxn<'_> {
    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool> {
        let path = self.ip_path(ip);
        not_found_ok(fs::symlink_metadata(&path))
            .map(|m| m.is_some())
            .map_err(|e| IpamError::io("stat", &path, e))
    }

    fn reserve(&mut self, key: &Attachment, ip: IpAddr, range_set: usize) -> Result<bool> {
        let key = &key.normalized();
        if self.is_reserved(ip)? {
            return Ok(false);
        }
        // Index first: after a crash it lists a superset of the leases.
        let mut ips = self.read_index(key).unwrap_or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
        self.write_index(key, &ips)?;
        match self.create_reservation(key, ip) {
            Ok(true) => {}
            other => {
                self.index_remove_ip(key, ip)?;
                return other;
            }
        }
        let last = self.dir.join(format!("{LAST_IP_PREFIX}{range_set}"));
        fs::write(&last, ip.to_string()).map_err(|e| IpamError::io("write", &last, e))?;
        Ok(true)
    }

    fn last_reserved_ip(&mut self, range_set: usize) -> Result<Option<IpAddr>> {
        let path = self.dir.join(format!("{LAST_IP_PREFIX}{range_set}"));
        let data =
            not_found_ok(fs::read_to_string(&path)).map_err(|e| IpamError::io("read", &path, e))?;
        // Unparseable content only costs the round-robin position, as in the
        // reference.
        Ok(data.and_then(|d| d.trim().parse().ok()))
    }

    fn get_by_id(&mut self, key: &Attachment) -> Result<Vec<IpAddr>> {
        let key = &key.normalized();
        if let Some(ips) = self.read_index(key) {
            let want = Holder::Attachment(key.clone());
            let mut held = Vec::new();
            for ip in ips {
                if self.holder_at(&self.ip_path(ip))?.as_ref() == Some(&want) {
                    held.push(ip);
                }
            }
            if !held.is_empty() {
                return Ok(held);
            }
        }
        Ok(self
            .walk()?
            .into_iter()
            .filter(|(_, _, h)| h.matches(key))
            .map(|(ip, _, _)| ip)
            .collect())
    }

    fn release_ip(&mut self, key: &Attachment, ip: IpAddr) -> Result<bool> {
        let key = &key.normalized();
        let path = self.ip_path(ip);
        let removed = match self.holder_at(&path)? {
            Some(h) if h.matches(key) => self.remove(&path)?,
            _ => false,
        };
        self.index_remove_ip(key, ip)?;
        Ok(removed)
    }

    fn release(&mut self, key: &Attachment) -> Result<Vec<IpAddr>> {
        let key = &key.normalized();
        let want = Holder::Attachment(key.clone());
        let mut released = Vec::new();
        if let Some(ips) = self.read_index(key) {
            for ip in ips {
                let path = self.ip_path(ip);
                // Verify before deleting: the entry may be stale.
                if self.holder_at(&path)?.as_ref() == Some(&want) && self.remove(&path)? {
                    released.push(ip);
                }
            }
            self.write_index(key, &[])?;
            if !released.is_empty() {
                return Ok(released);
            }
        }
        // Fall back to the reference's walk: current format first, then,
        // only if nothing matched, files of old versions holding just the ID.
        let all = self.walk()?;
        for (ip, path, holder) in &all {
            if *holder == want && self.remove(path)? {
                released.push(*ip);
            }
        }
        if released.is_empty() {
            for (ip, path, holder) in &all {
                if *holder == Holder::ContainerOnly(key.container_id.clone())
                    && self.remove(path)?
                {
                    released.push(*ip);
                }
            }
        }
        Ok(released)
    }

    fn reservations(&mut self) -> Result<Vec<(IpAddr, Holder)>> {
        Ok(self.walk()?.into_iter().map(|(ip, _, h)| (ip, h)).collect())
    }

    fn gc(&mut self, valid: &HashSet<Attachment>) -> Result<Vec<(IpAddr, Holder)>> {
        let valid: HashSet<Attachment> = valid.iter().map(Attachment::normalized).collect();
        let valid = &valid;
        let mut removed = Vec::new();
        for (ip, path, holder) in self.walk()? {
            if !holder.is_live(valid) && self.remove(&path)? {
                removed.push((ip, holder));
            }
        }
        // Ferry's own index entries of gone attachments (and leftover
        // temporary files) go too; they are hints, never reservations.
        let live: HashSet<String> = valid.iter().map(index_name).collect();
        let dir = self.index_dir();
        if let Some(rd) =
            not_found_ok(fs::read_dir(&dir)).map_err(|e| IpamError::io("list", &dir, e))?
        {
            for entry in rd.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(TMP_PREFIX) || !live.contains(name.as_ref()) {
                    self.remove(&entry.path())?;
                }
            }
            let _ = fs::remove_dir(&dir);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_parsing_matches_the_reference_trimming() {
        assert_eq!(
            parse_holder(b"abc\r\neth0"),
            Holder::Attachment(Attachment::new("abc", "eth0"))
        );
        assert_eq!(
            parse_holder(b"  abc\r\neth0\n"),
            Holder::Attachment(Attachment::new("abc", "eth0"))
        );
        assert_eq!(parse_holder(b"abc\n"), Holder::ContainerOnly("abc".into()));
        assert_eq!(parse_holder(b""), Holder::ContainerOnly(String::new()));
    }

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
