//! A locked [`DiskStore`](super::DiskStore): the [`StoreTxn`] operations on
//! the lease files, the index kept up to date alongside, the stamp recorded
//! when the lock is dropped.

use std::cell::{Cell, OnceCell};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use super::index::{index_key, index_name, IndexEntry};
use super::stamp::{boot_id, DirState, Stamp, STAMP_FILE};
use super::{not_found_ok, parse_holder, reservation_content, LAST_IP_PREFIX};
use crate::error::{IpamError, Result};
use crate::store::{Attachment, Holder, StoreTxn};

#[cfg(test)]
thread_local! {
    /// Called (with the network's directory) right before a lease file is
    /// created: the crash tests panic there.
    pub(super) static BEFORE_LEASE: Cell<Option<fn(&Path)>> = const { Cell::new(None) };
}

/// A locked [`DiskStore`]; the lock is dropped with it (after the stamp is
/// recorded, see `DESIGN.md`).
pub(super) struct DiskTxn<'a> {
    pub(super) dir: &'a Path,
    /// Whether the index lists every lease: `None` until first needed.
    pub(super) complete: Option<bool>,
    /// The stamp found on disk, valid or not (its multigrain verdict is
    /// reused for the same boot and device).
    pub(super) prior: Option<Stamp>,
    /// The directory state the stamp was validated against, if it was.
    pub(super) validated: Option<DirState>,
    /// The stamp file was removed during this transaction.
    pub(super) stamp_removed: Cell<bool>,
    /// This boot's ID, read once.
    pub(super) boot: OnceCell<Option<String>>,
    /// Length of the stamp file as read in this transaction.
    pub(super) stamp_len: Option<usize>,
    /// Length of each `last_reserved_ip.<n>` as read in this transaction.
    pub(super) last_len: HashMap<usize, usize>,
    pub(super) _lock: Flock<File>,
}

impl DiskTxn<'_> {
    pub(super) fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    pub(super) fn boot_id(&self) -> Option<String> {
        self.boot.get_or_init(boot_id).clone()
    }

    /// Holder of the reservation file at `path`, `None` when there is none.
    /// An empty one is a writer's killed between create and write (every
    /// writer, Ferry's or the reference's, holds the lock this transaction
    /// holds, so that writer is gone): nobody's, and removed.
    fn holder_at(&self, path: &Path) -> Result<Option<Holder>> {
        let data = not_found_ok(fs::read(path)).map_err(|e| IpamError::io("read", path, e))?;
        match data {
            Some(d) if d.is_empty() => {
                self.remove(path)?;
                Ok(None)
            }
            d => Ok(d.map(|d| parse_holder(&d))),
        }
    }

    pub(super) fn remove(&self, path: &Path) -> Result<bool> {
        not_found_ok(fs::remove_file(path))
            .map(|r| r.is_some())
            .map_err(|e| IpamError::io("remove", path, e))
    }

    pub(super) fn exists(&self, path: &Path) -> Result<bool> {
        not_found_ok(fs::symlink_metadata(path))
            .map(|m| m.is_some())
            .map_err(|e| IpamError::io("stat", path, e))
    }

    /// Every reservation file: top-level regular files named by an IP.
    pub(super) fn walk(&self) -> Result<Vec<(IpAddr, PathBuf, Holder)>> {
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

    fn create_reservation(&self, key: &Attachment, ip: IpAddr) -> Result<bool> {
        let path = self.ip_path(ip);
        #[cfg(test)]
        if let Some(hook) = BEFORE_LEASE.get() {
            hook(self.dir);
        }
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

impl DiskTxn<'_> {
    /// Undo a failed [`StoreTxn::reserve_all`] (best effort, the original
    /// error is the one to report): the leases it created, then its index
    /// additions.
    fn undo_batch(
        &mut self,
        key: &Attachment,
        picks: &[(IpAddr, usize)],
        made: &[bool],
        before: &[IpAddr],
    ) {
        for ((ip, _), m) in picks.iter().zip(made) {
            if *m {
                let _ = self.remove(&self.ip_path(*ip));
            }
        }
        let _ = self.write_index(key, before);
    }

    /// Record `ip` in `last_reserved_ip.<range_set>`, byte for byte as the
    /// reference writes it (the address alone). Overwritten in place rather
    /// than truncated to zero first: on ext4 a truncation to zero frees the
    /// blocks and arms a flush of the file at close (`auto_da_alloc`), on
    /// every ADD. It is shortened only when the old content was longer (or
    /// its length is unknown). A writer killed between the write and the
    /// shortening leaves the new address followed by the old tail, which
    /// may read as another address: that only moves the round-robin
    /// position, as unparseable content does.
    fn write_last_reserved(&mut self, range_set: usize, ip: IpAddr) -> Result<()> {
        let path = self.dir.join(format!("{LAST_IP_PREFIX}{range_set}"));
        let text = ip.to_string();
        let io = |e| IpamError::io("write", &path, e);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        if self
            .last_len
            .get(&range_set)
            .is_none_or(|old| *old > text.len())
        {
            f.set_len(text.len() as u64).map_err(io)?;
        }
        self.last_len.insert(range_set, text.len());
        Ok(())
    }
}

impl Drop for DiskTxn<'_> {
    fn drop(&mut self) {
        // Runs before the lock field is dropped, so still under the lock.
        let _ = self.record_stamp();
    }
}

impl StoreTxn for DiskTxn<'_> {
    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool> {
        self.exists(&self.ip_path(ip))
    }

    fn reserve(&mut self, key: &Attachment, ip: IpAddr, range_set: usize) -> Result<bool> {
        if self.is_reserved(ip)? {
            return Ok(false);
        }
        Ok(self.reserve_all(key, &[(ip, range_set)])? == [true])
    }

    /// The index entry of `key` is written once for the whole batch, before
    /// any of its lease files is created (`DESIGN.md`). The addresses are not
    /// `stat`-ed again: the caller checked them free under this lock, and
    /// `O_EXCL` still catches one that is not (then unlisted again).
    fn reserve_all(&mut self, key: &Attachment, picks: &[(IpAddr, usize)]) -> Result<Vec<bool>> {
        let key = &key.normalized();
        if picks.is_empty() {
            return Ok(Vec::new());
        }
        let entry = self.read_index(key);
        let fresh = matches!(entry, IndexEntry::Missing);
        if matches!(entry, IndexEntry::Foreign) && self.complete == Some(true) {
            // Overwriting another attachment's entry (a name collision)
            // may unlist its leases: the index is no longer complete.
            self.complete = Some(false);
        }
        let before = entry.ips();
        let mut listed = before.clone();
        for (ip, _) in picks {
            if !listed.contains(ip) {
                listed.push(*ip);
            }
        }
        // Index first: after a crash it lists a superset of the leases.
        if fresh {
            self.create_index(key, &listed)?;
        } else if listed != before {
            self.write_index(key, &listed)?;
        }
        let mut made = Vec::with_capacity(picks.len());
        for (ip, _) in picks {
            match self.create_reservation(key, *ip) {
                Ok(m) => made.push(m),
                Err(e) => {
                    self.undo_batch(key, &picks[..made.len()], &made, &before);
                    return Err(e);
                }
            }
        }
        if made.contains(&false) {
            // Taken after all: unlisted again, as a failed single reserve.
            let taken: Vec<IpAddr> = picks
                .iter()
                .zip(&made)
                .filter(|(_, m)| !**m)
                .map(|((ip, _), _)| *ip)
                .collect();
            listed.retain(|ip| !taken.contains(ip));
            if let Err(e) = self.write_index(key, &listed) {
                self.undo_batch(key, picks, &made, &before);
                return Err(e);
            }
        }
        for ((ip, range_set), m) in picks.iter().zip(&made) {
            if !*m {
                continue;
            }
            if let Err(e) = self.write_last_reserved(*range_set, *ip) {
                self.undo_batch(key, picks, &made, &before);
                return Err(e);
            }
        }
        Ok(made)
    }

    fn last_reserved_ip(&mut self, range_set: usize) -> Result<Option<IpAddr>> {
        let path = self.dir.join(format!("{LAST_IP_PREFIX}{range_set}"));
        let data =
            not_found_ok(fs::read_to_string(&path)).map_err(|e| IpamError::io("read", &path, e))?;
        // Remembered so that the rewrite knows whether it must shorten it.
        self.last_len
            .insert(range_set, data.as_ref().map_or(0, String::len));
        // Unparseable content only costs the round-robin position, as in the
        // reference.
        Ok(data.and_then(|d| d.trim().parse().ok()))
    }

    fn get_by_id(&mut self, key: &Attachment) -> Result<Vec<IpAddr>> {
        let key = &key.normalized();
        if !self.ensure_complete()? {
            return Ok(self
                .walk()?
                .into_iter()
                .filter(|(_, _, h)| h.matches(key))
                .map(|(ip, _, _)| ip)
                .collect());
        }
        // Complete: the leases of `key` are listed under it, or (old format)
        // under its container; each is verified against its file.
        let container = index_key(&Holder::ContainerOnly(key.container_id.clone()));
        let mut held = Vec::new();
        for ip in self
            .read_index(key)
            .ips()
            .into_iter()
            .chain(self.read_index(&container).ips())
        {
            if !held.contains(&ip)
                && self
                    .holder_at(&self.ip_path(ip))?
                    .is_some_and(|h| h.matches(key))
            {
                held.push(ip);
            }
        }
        Ok(held)
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
        let old = Holder::ContainerOnly(key.container_id.clone());
        let mut released = Vec::new();
        if self.ensure_complete()? {
            // Current format first, then, only if nothing matched, files of
            // old versions holding just the ID: the reference's order.
            for (entry, holder) in [(key.clone(), &want), (index_key(&old), &old)] {
                let listed = self.read_index(&entry).ips();
                let mut gone = Vec::new();
                for ip in &listed {
                    let path = self.ip_path(*ip);
                    // Verify before deleting: the entry may be stale.
                    match self.holder_at(&path)? {
                        Some(h) if h == *holder => {
                            if self.remove(&path)? {
                                released.push(*ip);
                            }
                            gone.push(*ip);
                        }
                        Some(_) => {}
                        None => gone.push(*ip),
                    }
                }
                self.prune_index(&entry, &listed, &gone)?;
                if !released.is_empty() {
                    break;
                }
            }
            return Ok(released);
        }
        // The index cannot be trusted: the reference's walk.
        let all = self.walk()?;
        for (ip, path, holder) in &all {
            if *holder == want && self.remove(path)? {
                released.push(*ip);
            }
        }
        if released.is_empty() {
            for (ip, path, holder) in &all {
                if *holder == old && self.remove(path)? {
                    released.push(*ip);
                }
            }
        }
        let listed = self.read_index(key).ips();
        self.prune_index(key, &listed, &released)?;
        Ok(released)
    }

    fn reservations(&mut self) -> Result<Vec<(IpAddr, Holder)>> {
        Ok(self.walk()?.into_iter().map(|(ip, _, h)| (ip, h)).collect())
    }

    fn gc(&mut self, valid: &HashSet<Attachment>) -> Result<Vec<(IpAddr, Holder)>> {
        let valid: HashSet<Attachment> = valid.iter().map(Attachment::normalized).collect();
        let valid = &valid;
        let mut removed = Vec::new();
        // Entries still needed: those of the holders of surviving leases.
        let mut keep: HashSet<String> = HashSet::new();
        for (ip, path, holder) in self.walk()? {
            if !holder.is_live(valid) && self.remove(&path)? {
                removed.push((ip, holder));
            } else {
                keep.insert(index_name(&index_key(&holder)));
            }
        }
        // Ferry's own index entries of attachments left without a lease (and
        // leftover temporary files) go too; they are hints, never
        // reservations. A complete index stays complete.
        let dir = self.index_dir();
        if let Some(rd) =
            not_found_ok(fs::read_dir(&dir)).map_err(|e| IpamError::io("list", &dir, e))?
        {
            for entry in rd.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name != STAMP_FILE && !keep.contains(name.as_ref()) {
                    self.remove(&entry.path())?;
                }
            }
            if keep.is_empty() {
                self.drop_index_dir_if_empty();
            }
        }
        Ok(removed)
    }
}
