//! The one error type of the kernel layer.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while talking to the kernel.
///
/// Callers that need to react to a particular kernel answer (an interface
/// that already exists, a route that is gone) use [`Error::errno`] or the
/// helpers [`Error::is_exists`] and [`Error::is_not_found`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a netlink request; `errno` is the positive errno
    /// value (for example `libc::EEXIST`), `op` names the request and
    /// `detail` carries the kernel's extended-ack text when it sent one.
    #[error("{op}: {} ({:?}){}", nix::errno::Errno::from_raw(*errno).desc(), nix::errno::Errno::from_raw(*errno), fmt_detail(detail))]
    Kernel {
        /// What was asked, e.g. `create link veth0`.
        op: String,
        /// Positive errno value returned by the kernel.
        errno: i32,
        /// Extended-ack message from the kernel, empty when none was sent.
        detail: String,
    },

    /// A system call failed (socket, setns, mount, open, ioctl ...);
    /// `op` says which one and on what, fix the named resource or privilege.
    #[error("{op}: {source}; check that the process runs as root and the named resource exists")]
    Io {
        /// What was being done.
        op: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// The kernel sent a reply that could not be decoded; this points to a
    /// kernel/library mismatch, report it with the kernel version.
    #[error("{op}: could not decode the kernel's reply: {message}; report this with `uname -r`")]
    Decode {
        /// What was being done.
        op: String,
        /// The decoder's message.
        message: String,
    },

    /// The kernel answered in an unexpected way (for example no reply to a
    /// request for a single object); retry, and report it if it persists.
    #[error("{op}: unexpected netlink reply: {message}")]
    Protocol {
        /// What was being done.
        op: String,
        /// What was unexpected.
        message: String,
    },

    /// An argument given to this crate is not valid (an interface name longer
    /// than 15 bytes, a namespace name with a slash ...); fix the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A sysctl could not be read or written; check the key exists in this
    /// kernel and namespace (`ls /proc/sys/...`).
    #[error("sysctl {}: {source}; check the key exists in this kernel and namespace", path.display())]
    Sysctl {
        /// Full path under /proc/sys.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// A helper thread that entered a namespace panicked; the panic message
    /// was printed on stderr.
    #[error("{op}: the helper thread panicked")]
    ThreadPanicked {
        /// What the thread was doing.
        op: String,
    },
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errno carried by this error: the kernel's for netlink refusals,
    /// the OS error for failed system calls, `None` otherwise.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } | Error::Sysctl { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the object to create already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True when the object does not exist: `ENOENT`, `ENODEV` or `ESRCH`
    /// (the kernel uses all three depending on the object type).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH)
        )
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn nix(op: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Error::Io {
            op: op.into(),
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }
}
