//! Persistent TAP devices through `/dev/net/tun` ioctls.
//!
//! A tun/tap device is created in the network namespace of the thread that
//! opens `/dev/net/tun`, so creating one in another namespace goes through
//! [`Netns::run`].

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::error::{Error, Result};
use crate::link::check_ifname;
use crate::netns::Netns;

/// A TAP device to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapSpec {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Allow several queues (`IFF_MULTI_QUEUE`).
    pub multi_queue: bool,
    /// Owning user id (`TUNSETOWNER`), so an unprivileged VMM can attach.
    pub owner: Option<u32>,
    /// Owning group id (`TUNSETGROUP`).
    pub group: Option<u32>,
}

impl TapSpec {
    /// A single-queue TAP device with no owner.
    pub fn new(name: &str) -> Self {
        TapSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }
}

/// Creates a persistent TAP device in `netns` (or in the calling thread's
/// namespace when `None`). The device stays after this returns and is
/// removed with [`crate::Netlink::delete_link`]. Fails with `EBUSY` when a
/// device of that name exists with other flags.
pub fn create_tap(spec: &TapSpec, netns: Option<&Netns>) -> Result<()> {
    check_ifname(&spec.name)?;
    match netns {
        Some(ns) => ns.run(|| create_tap_here(spec))?,
        None => create_tap_here(spec),
    }
}

fn create_tap_here(spec: &TapSpec) -> Result<()> {
    let op = |what: &str| format!("create tap {}: {what}", spec.name);
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| Error::io(op("open /dev/net/tun (is the tun module loaded?)"), e))?;
    let fd = tun.as_raw_fd();

    // SAFETY: ifreq is a plain C struct (name array and a union of plain
    // integers); all-zero bytes are a valid value for it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(spec.name.bytes()) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if spec.multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    // IFF_* tun flags all fit in the 16-bit ifr_flags field.
    req.ifr_ifru.ifru_flags = flags as libc::c_short;

    // SAFETY: `fd` is an open /dev/net/tun descriptor owned by `tun` for the
    // whole call, and `req` is a valid, initialised ifreq that TUNSETIFF reads
    // and writes (it fills in the final name).
    let rc = unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(Error::io(op("TUNSETIFF"), std::io::Error::last_os_error()));
    }
    if let Some(uid) = spec.owner {
        // SAFETY: TUNSETOWNER takes the uid by value; `fd` is open.
        let rc = unsafe { libc::ioctl(fd, libc::TUNSETOWNER, libc::c_ulong::from(uid)) };
        if rc < 0 {
            return Err(Error::io(
                op("TUNSETOWNER"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    if let Some(gid) = spec.group {
        // SAFETY: TUNSETGROUP takes the gid by value; `fd` is open.
        let rc = unsafe { libc::ioctl(fd, libc::TUNSETGROUP, libc::c_ulong::from(gid)) };
        if rc < 0 {
            return Err(Error::io(
                op("TUNSETGROUP"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    // SAFETY: TUNSETPERSIST takes an integer by value; `fd` is open.
    let rc = unsafe { libc::ioctl(fd, libc::TUNSETPERSIST, 1 as libc::c_ulong) };
    if rc < 0 {
        return Err(Error::io(
            op("TUNSETPERSIST"),
            std::io::Error::last_os_error(),
        ));
    }
    // Closing `tun` detaches the queue; the persistent device stays.
    Ok(())
}
