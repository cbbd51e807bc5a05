//! Network namespace handles.
//!
//! Nothing here changes the network namespace of the calling thread: work
//! that must happen inside another namespace runs on a short-lived helper
//! thread that enters it with `setns(2)` and exits afterwards. Netlink
//! sockets stay bound to the namespace they were created in, so
//! [`Netns::netlink`] gives a socket for another namespace that can then be
//! used from any thread.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

use crate::error::{Error, Result};
use crate::socket::Netlink;

/// Where named namespaces live, as with `ip netns`.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Runs `f` on a helper thread inside a new, unnamed network namespace that
/// disappears when `f` returns (nothing is mounted, nothing outlives it):
/// a place to try what the kernel supports without changing the host.
pub fn in_scratch<F, T>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let op = "unshare a scratch network namespace";
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::nix(op, e))?;
            Ok(f())
        })
        .join()
        .map_err(|_| Error::ThreadPanicked { op: op.into() })?
    })
}

/// An open network namespace (a file descriptor on an nsfs inode).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace at `path`, e.g. `/run/netns/NAME` or
    /// `/proc/PID/ns/net`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(format!("open network namespace {}", path.display()), e))?;
        // A plain file (say a leftover of an interrupted `ip netns add`)
        // would only fail later, in setns(2); refuse it here.
        let fs = fstatfs(&file).map_err(|e| Error::nix(format!("statfs {}", path.display()), e))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(Error::InvalidArgument(format!(
                "{} is not a namespace file (not on nsfs); remove it or give the path of a \
                 bound namespace such as /run/netns/NAME or /proc/PID/ns/net",
                path.display()
            )));
        }
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens the named namespace `/run/netns/NAME`.
    pub fn named(name: &str) -> Result<Self> {
        check_ns_name(name)?;
        Self::open(Path::new(NETNS_RUN_DIR).join(name))
    }

    /// Opens the network namespace of process `pid`.
    pub fn of_pid(pid: u32) -> Result<Self> {
        Self::open(format!("/proc/{pid}/ns/net"))
    }

    /// Opens the network namespace of the calling thread.
    pub fn current() -> Result<Self> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's inode number (two handles on the same namespace have
    /// the same one).
    pub fn inode(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let meta = self
            .file
            .metadata()
            .map_err(|e| Error::io(format!("stat network namespace {}", self.path.display()), e))?;
        Ok(meta.ino())
    }

    /// Runs `f` inside this namespace and returns its result: the calling
    /// thread enters it, runs `f` and goes back to its own namespace, which
    /// is all the caller ever sees. Use it for work that follows the
    /// thread's namespace, like opening files under `/proc/sys/net` or
    /// `/dev/net/tun`, or a socket (a socket stays in the namespace it was
    /// made in). Entering on the calling thread takes four system calls; a
    /// helper thread took about twenty (stack, signal masks, clone, join),
    /// three or four times per plugin run.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let home = File::open("/proc/thread-self/ns/net").map_err(|e| {
            Error::io(
                format!(
                    "open the calling thread's network namespace to enter {}",
                    self.path.display()
                ),
                e,
            )
        })?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
            Error::nix(
                format!("enter network namespace {}", self.path.display()),
                e,
            )
        })?;
        let _back = GoBack(home);
        Ok(f())
    }

    /// Opens a netlink route socket inside this namespace, without changing
    /// the caller's namespace.
    pub fn netlink(&self) -> Result<Netlink> {
        self.run(Netlink::new)?
    }

    /// Creates the named namespace `/run/netns/NAME` like `ip netns add`:
    /// makes `/run/netns` a shared mount point if needed, creates a new
    /// namespace on a helper thread and bind-mounts it onto
    /// `/run/netns/NAME`. Fails with `EEXIST` if the name is taken.
    pub fn create(name: &str) -> Result<Self> {
        check_ns_name(name)?;
        let dir = Path::new(NETNS_RUN_DIR);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        {
            // Two threads racing here would both bind-mount the directory
            // onto itself; serialise the check-and-mount within the process.
            static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _held = SETUP.lock().unwrap_or_else(|p| p.into_inner());
            make_shared_mount_point(dir)?;
        }

        let target = dir.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&target)
            .map_err(|e| Error::io(format!("create {}", target.display()), e))?;

        let bind = || -> Result<()> {
            let t = target.clone();
            let res = std::thread::scope(|s| {
                s.spawn(move || -> Result<()> {
                    unshare(CloneFlags::CLONE_NEWNET)
                        .map_err(|e| Error::nix("unshare a new network namespace", e))?;
                    mount(
                        Some("/proc/thread-self/ns/net"),
                        &t,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| Error::nix(format!("bind-mount namespace on {}", t.display()), e))
                })
                .join()
            });
            res.map_err(|_| Error::ThreadPanicked {
                op: format!("create network namespace {name}"),
            })?
        };
        if let Err(e) = bind() {
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
        Self::open(&target)
    }

    /// Deletes the named namespace like `ip netns del`: unmounts and removes
    /// `/run/netns/NAME`. The namespace itself goes away once no process,
    /// socket or handle keeps it alive. Fails with `ENOENT` if it is absent.
    pub fn delete(name: &str) -> Result<()> {
        check_ns_name(name)?;
        let target = Path::new(NETNS_RUN_DIR).join(name);
        if let Err(e) = umount2(&target, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (a half-created entry); still remove it.
            if e != nix::errno::Errno::EINVAL {
                return Err(Error::nix(format!("unmount {}", target.display()), e));
            }
        }
        std::fs::remove_file(&target)
            .map_err(|e| Error::io(format!("remove {}", target.display()), e))
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Netns {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

fn check_ns_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "network namespace name {name:?} must be a non-empty file name without '/'"
        )));
    }
    Ok(())
}

/// Makes `dir` a shared mount point the way iproute2 does, so that namespace
/// bind mounts propagate to other mount namespaces: try to make it shared;
/// if it is not a mount point yet (EINVAL), bind-mount it onto itself first.
fn make_shared_mount_point(dir: &Path) -> Result<()> {
    let flags = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(Some("none"), dir, None::<&str>, flags, None::<&str>) {
        Ok(()) => return Ok(()),
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => {
            return Err(Error::nix(
                format!("make {} a shared mount", dir.display()),
                e,
            ))
        }
    }
    mount(
        Some(dir),
        dir,
        Some("none"),
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::nix(format!("bind-mount {} onto itself", dir.display()), e))?;
    mount(Some("none"), dir, None::<&str>, flags, None::<&str>)
        .map_err(|e| Error::nix(format!("make {} a shared mount", dir.display()), e))
}

/// Returns the calling thread to its namespace when dropped (also when `f`
/// of [`Netns::run`] panics).
struct GoBack(File);

impl Drop for GoBack {
    fn drop(&mut self) {
        if setns(self.0.as_fd(), CloneFlags::CLONE_NEWNET).is_err() {
            // Going on would do the caller's next work (the node's links,
            // rules) in the container: stop rather than change the wrong
            // namespace. setns into a namespace the thread was just in only
            // fails without memory.
            eprintln!("cannot return to the calling thread's network namespace");
            std::process::abort();
        }
    }
}
