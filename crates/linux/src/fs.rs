//! Replacing a file atomically: a reader (or a crash) sees the old content
//! or the new one, never a part.
//!
//! It lives here because every crate that saves state (ferry-cni's result
//! cache, ferry-ipam's index and stamp, ferry-drivers' records, the tuning
//! plugin's backup) can depend on ferry-linux without a cycle. It is built
//! on `tempfile`: the temporary file gets a unique `O_EXCL` name in the
//! target's directory (two writers of one target never share it, as fixed
//! `NAME.tmp` names did), and it is removed on every error path by `Drop`.
//! Its name starts with `.tmp-` and has no extension, so directory walks
//! that take `*.json` files or IP-named leases skip a leftover one.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Whether [`write_atomic`] flushes the new content to disk before the
/// rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` the file first: after a crash the target holds the old or
    /// the new content.
    Synced,
    /// Rename only (state that is rebuilt or re-checked when lost).
    Cached,
}

/// Replaces `path` with `data`: a temporary file in the same directory
/// (created with `mode`, less the umask), written, synced as `durability`
/// says, then renamed over `path`.
pub fn write_atomic(
    path: &Path,
    data: &[u8],
    mode: u32,
    durability: Durability,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if durability == Durability::Synced {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", 0o600, Durability::Synced).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        write_atomic(&path, b"newer", 0o644, Durability::Cached).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file is left");
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: rename(2) of a file over it fails.
        let path = dir.path().join("busy");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), "").unwrap();
        assert!(write_atomic(&path, b"data", 0o600, Durability::Cached).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["busy"]);
    }
}
