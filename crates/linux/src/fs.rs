//! Replacing a file atomically: a reader (or a crash) sees the old content
//! or the new one, never a part.
//!
//! It lives here because every crate that saves state (ferry-cni's result
//! cache, ferry-ipam's index and stamp, ferry-drivers' records, the tuning
//! plugin's backup) can depend on ferry-linux without a cycle. It is built
//! on `tempfile`: the temporary file gets a unique `O_EXCL` name in the
//! target's directory (two writers of one target never share it, as fixed
//! `NAME.tmp` names did), and it is removed on every error path by `Drop`.
//! Its name is `.tmp-`, the target's name (at most 100 bytes of it), the
//! writer's pid and random characters, `-` between them, so directory
//! walks that take `*.json` files or IP-named leases skip a leftover one;
//! the code that removes the target also removes the temporary files a
//! writer killed between create and rename left for it
//! ([`remove_stale_temps`]), and GC removes those of dead writers
//! ([`remove_dead_writers_temps`]).

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
    let prefix = format!("{}{}-", temp_prefix(path), std::process::id());
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if durability == Durability::Synced {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path)?;
    Ok(())
}

/// `.tmp-NAME-` for target `path` (NAME cut to 100 bytes, NAME_MAX is 255).
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".tmp-{}-", &name[..end])
}

/// The writer's pid in a temporary file's name, `.tmp-NAME-PID-RANDOM`.
fn temp_writer(file_name: &str) -> Option<i32> {
    let rest = file_name.strip_prefix(".tmp-")?;
    let (rest, _random) = rest.rsplit_once('-')?;
    let (_, pid) = rest.rsplit_once('-')?;
    pid.parse().ok()
}

/// Removes the temporary files in `dir` whose writer is dead (killed
/// between create and rename); a live writer's are left alone, so this is
/// safe while others write (GC). Best effort.
pub fn remove_dead_writers_temps(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = temp_writer(&name.to_string_lossy()) else {
            continue;
        };
        let dead = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if dead && pid > 0 {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the temporary files [`write_atomic`] left for `path` when it
/// was killed before the rename (best effort). Call it only where no other
/// writer of `path` can run: when the owner of `path` removes it (DEL).
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = temp_prefix(path);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Creates the state directory `path` (and missing parents) with `mode`,
/// less the umask, and checks that it is safe to keep state in: a real
/// directory, not a symbolic link; owned by this process's user; not
/// writable by others. An unprivileged user who can write to a parent
/// (a world-writable `dataDir`, say) could otherwise plant a link to a
/// directory of their choice, or a directory of their own, and have root
/// write files there. The same holds for every directory on the way: a
/// symbolic link or a directory owned by another user (neither root nor
/// this process's user) is refused, since its owner could point it
/// elsewhere; root's own links (`/var/run`) are fine. The check runs before
/// anything is created, so nothing is made through a planted link, and
/// again after whenever something was missing (someone may have planted it
/// in between, and our `mkdir -p` would then have gone through it). When
/// the directory and all its ancestors already existed, nothing is created
/// and the first walk is the whole check (every operation of a host-local
/// IPAM plugin opens its network's directory this way). A refusal is
/// `PermissionDenied` naming the path and why.
pub fn create_state_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let refuse = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("refusing to keep state in {}: {why}", path.display()),
        )
    };
    let all_there = check_ancestors(path).map_err(refuse)?;
    let existing = match std::fs::symlink_metadata(path) {
        // Anything but a real directory takes the creating path, which
        // reports it as before.
        Ok(m) if all_there && m.is_dir() => Some(m),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let m = match existing {
        Some(m) => m,
        None => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path)?;
            check_ancestors(path).map_err(refuse)?;
            std::fs::symlink_metadata(path)?
        }
    };
    if m.file_type().is_symlink() {
        return Err(refuse(
            "it is a symbolic link (planted by someone who can write to its parent?)".into(),
        ));
    }
    if !m.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        return Err(refuse(format!(
            "it is owned by uid {}, not by this process's uid {me}",
            m.uid()
        )));
    }
    if m.mode() & 0o002 != 0 {
        return Err(refuse(format!(
            "any user can write to it (mode {:o})",
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The directories above `path` that exist: none may be a link or a
/// directory another user owns (the reason otherwise). `Ok(true)` when
/// every one of them exists.
fn check_ancestors(path: &Path) -> Result<bool, String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let abs = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir()
            .map_err(|e| format!("no current directory: {e}"))?
            .join(path),
    };
    let mut all_there = true;
    for dir in abs.ancestors().skip(1) {
        let Ok(m) = std::fs::symlink_metadata(dir) else {
            all_there = false;
            continue; // not there yet: created below, by us
        };
        if m.uid() == 0 || m.uid() == me {
            continue;
        }
        let what = if m.file_type().is_symlink() {
            "a symbolic link"
        } else {
            "a directory"
        };
        return Err(format!(
            "{} on its path is {what} owned by uid {}, who could redirect it",
            dir.display(),
            m.uid()
        ));
    }
    Ok(all_there)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn state_dirs_planted_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fine = dir.path().join("a/b");
        create_state_dir(&fine, 0o700).unwrap();
        create_state_dir(&fine, 0o700).unwrap(); // again: it exists
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let e = create_state_dir(&link, 0o700).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, Permissions::from_mode(0o777)).unwrap();
        let e = create_state_dir(&open, 0o700).unwrap_err();
        assert!(e.to_string().contains("any user can write"), "{e}");
        if nix::unistd::geteuid().is_root() {
            let theirs = dir.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = create_state_dir(&theirs, 0o700).unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
        if nix::unistd::geteuid().is_root() {
            // A link another user planted above the directory: refused
            // before anything is created through it.
            let open = dir.path().join("open");
            let target = dir.path().join("target");
            std::fs::create_dir(&target).unwrap();
            let planted = open.join("planted");
            std::os::unix::fs::symlink(&target, &planted).unwrap();
            std::os::unix::fs::lchown(&planted, Some(65534), None).unwrap();
            let e = create_state_dir(&planted.join("net"), 0o700).unwrap_err();
            assert!(
                e.to_string().contains("symbolic link owned by uid 65534"),
                "{e}"
            );
            assert!(
                std::fs::read_dir(&target).unwrap().next().is_none(),
                "something was created through the link"
            );
        }
        // A file planted under the name.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(create_state_dir(&file, 0o700).is_err());
    }

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
    fn stale_temporary_files_of_a_target_are_removed_and_no_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net-c1-eth0");
        // What a writer killed before its rename leaves.
        let stale = dir.path().join(format!("{}AbC123", temp_prefix(&path)));
        let other = dir.path().join(".tmp-net-c2-eth0-XyZ789");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&other, "half").unwrap();
        write_atomic(&path, b"new", 0o600, Durability::Cached).unwrap();
        remove_stale_temps(&path);
        assert!(!stale.exists(), "the killed writer's file is left");
        assert!(
            other.exists(),
            "another target's temporary file was removed"
        );
        assert!(path.exists(), "the target itself is not a temporary file");
    }

    #[test]
    fn gc_removes_dead_writers_temporary_files_only() {
        let dir = tempfile::tempdir().unwrap();
        // A pid no process has (above the kernel's pid_max limit).
        let dead = dir.path().join(".tmp-a.json-4194400-AbC123");
        let alive = dir
            .path()
            .join(format!(".tmp-b.json-{}-XyZ789", std::process::id()));
        let other = dir.path().join("c.json");
        for f in [&dead, &alive, &other] {
            std::fs::write(f, "x").unwrap();
        }
        remove_dead_writers_temps(dir.path());
        assert!(!dead.exists(), "a dead writer's file is left");
        assert!(alive.exists(), "a live writer's file was removed");
        assert!(other.exists(), "a file that is not temporary was removed");
        assert_eq!(temp_writer(".tmp-net-c1-eth0-77-Ab1234"), Some(77));
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
