//! Deleting a container's link without making DEL wait for the kernel.
//!
//! Unregistering a network device ends in an RCU barrier: whoever sends the
//! delete sits 15-40 ms in the kernel while using almost no CPU, and moving the
//! device to another namespace ends in the same wait. DEL does not need to sit
//! there. It takes the link out of the container's way at once (down, then
//! renamed `dying` + 8 hex digits, so the same CNI_IFNAME can be added again
//! right away) and starts one child ([`child`]: it shares the plugin's
//! memory, so nothing is copied): the child, detached from the runtime's
//! pipes and process group, sends the delete and exits. Nothing is executed
//! (the child runs a few raw system calls), and when the child
//! cannot be started the delete is done in place. DEL still answers only once the link
//! (and a veth's peer) has left every namespace, which the kernel does
//! within a millisecond or so, before its long wait; when that has not
//! happened within a second, the parent deletes the link itself.
//!
//! The 8 hex digits are a hash of the link's name ([`dying_name`]; random
//! only when that name is taken), so a DEL repeated after the first was
//! killed between the rename and the delete finds the link and deletes it.
//!
//! The child is meant for a plugin process, which exits right after DEL: the
//! child is not waited for, so the init process (or the runtime, when it is
//! a subreaper) reaps it. A long-lived process (ferryd) would collect
//! zombies that way, so it asks for [`Deleter::Thread`]: the same delete,
//! sent from a detached thread over a socket of the link's namespace.
//!
//! Closing an nftables socket has the same kind of wait. The kernel frees
//! what a batch deleted (rules, set elements: masquerade, port mappings,
//! firewall) from a work item after an RCU grace period, and the last close
//! of any nf_tables socket while that work is pending waits for it: 4-26 ms
//! in `close()` (`strace -T`), paid by every DEL with `ipMasq`, portmap or
//! firewall. The deletions themselves are committed (and visible) when the
//! batch is acknowledged, so [`close_nft`] lets such a child hold the last
//! reference: the child keeps the socket and a pipe, the parent closes its
//! copy (not the last, so nothing waits) and then the pipe, and the child,
//! seeing the pipe's end, exits; its exit is the last close and takes the
//! wait. A daemon keeps its socket open instead
//! (`network::keep_nft_socket_open`).

mod child;

use crate::{Error, Result};
use ferry_linux::{nft, Netlink, Netns};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Who sends a link's delete while the caller goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deleter {
    /// A detached child process (a plugin process, which exits right after).
    #[default]
    Fork,
    /// A detached thread (a daemon, which must not leave zombies).
    Thread,
}

/// A link whose delete has been handed to a detached child: the socket of
/// its namespace (subscribed to link notifications when `watching`) and
/// its index.
#[must_use = "finish() waits until the link has left its namespace"]
pub struct Pending(Option<Watch>);

struct Watch {
    nl: Netlink,
    index: u32,
    watching: bool,
}

impl Pending {
    /// Nothing to wait for.
    pub fn none() -> Pending {
        Pending(None)
    }

    /// Waits (at most a second) until the link has left its namespace. The
    /// kernel unlists a deleted link, and a veth's peer with it, a
    /// millisecond or so after the delete was sent, before its long wait;
    /// waiting for that much keeps DEL's promise that the interfaces are
    /// gone when it answers. Work done between [`start`] and this overlaps
    /// with the kernel's.
    pub fn finish(self) {
        let Some(Watch {
            mut nl,
            index,
            watching,
        }) = self.0
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        // The kernel's RTM_DELLINK wakes this at once, without a look per
        // step (each a netlink round trip and a wake-up on a busy node).
        // Subscribed before the child was started, so the child's delete
        // cannot be missed; a look every 25 ms covers a lost notification
        // (queue overrun) and a link someone else deleted first.
        while watching && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if nl.wait_link_deleted(index, left.min(Duration::from_millis(25)))
                || nl.link_by_index(index).is_err()
            {
                return;
            }
        }
        let mut pause = Duration::from_micros(50);
        while Instant::now() < deadline {
            if nl.link_by_index(index).is_err() {
                return;
            }
            std::thread::sleep(pause);
            // Short steps: the link usually goes 1-2 ms after the child starts, and
            // a 2 ms step overshot that by up to its length. A look is one
            // netlink round trip (~20 µs).
            pause = (pause * 2).min(Duration::from_micros(250));
        }
        // The child did not get there (it could not enter the namespace, or
        // the node is that busy): delete in place, so DEL keeps its promise.
        let _ = nl.delete_link(index);
    }
}

/// The name link `ifname` takes while it is deleted: `dying` and the
/// 32-bit FNV-1a hash of `ifname` in hex (stable across builds, so any
/// later DEL finds it).
pub fn dying_name(ifname: &str) -> String {
    let h = ifname.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("dying{h:08x}")
}

/// Deletes (in place) the link a killed DEL left renamed from `ifname` and
/// not deleted, if there is one; the rare path, so the kernel's wait is
/// taken here.
pub fn delete_left_behind(nl: &mut Netlink, ifname: &str) -> ferry_linux::Result<()> {
    let found = match nl.link_by_name(&dying_name(ifname)) {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    match nl.delete_link(found.index) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Takes link `index` (named `name`) out of the namespace `nl` speaks for
/// (`netns`): down and renamed at once, deleted by a detached child.
/// Errors are those of the in-place fallback; a link that is already gone
/// is not an error.
pub fn start(
    deleter: Deleter,
    netns: &Netns,
    mut nl: Netlink,
    index: u32,
    name: &str,
) -> ferry_linux::Result<Pending> {
    if let Err(e) = step_aside(&mut nl, index, name) {
        if e.is_not_found() {
            return Ok(Pending::none());
        }
        nl.delete_link(index)?;
        return Ok(Pending::none());
    }
    let watching = nl.watch_links().is_ok();
    let started = match deleter {
        Deleter::Fork => spawn_deleter(netns, index),
        Deleter::Thread => thread_deleter(netns, index),
    };
    if !started {
        nl.delete_link(index)?;
        return Ok(Pending::none());
    }
    Ok(Pending(Some(Watch {
        nl,
        index,
        watching,
    })))
}

/// Starts deleting the link `ifname` in `netns` (for a veth, the peer goes
/// with it). A link or namespace that is already gone is success. The name
/// is free when this returns; `finish()` the result once the rest of DEL is
/// done.
pub fn start_by_name(deleter: Deleter, netns: &Netns, ifname: &str) -> Result<Pending> {
    // A namespace that cannot be entered any more has no links to delete.
    let Ok(mut nl) = netns.netlink() else {
        return Ok(Pending::none());
    };
    match nl.link_by_name(ifname) {
        Ok(link) => start(deleter, netns, nl, link.index, ifname)
            .map_err(Error::kernel(format!("failed to delete {ifname}"))),
        Err(e) if e.is_not_found() => delete_left_behind(&mut nl, ifname)
            .map(|()| Pending::none())
            .map_err(Error::kernel(format!(
                "failed to delete {}",
                dying_name(ifname)
            ))),
        Err(e) => Err(Error::kernel(format!("failed to look up {ifname}"))(e)),
    }
}

/// [`start_by_name`] in the namespace at `path` (CNI_NETNS); a path that is
/// empty or no longer a namespace is success.
pub fn start_in_netns(deleter: Deleter, path: &str, ifname: &str) -> Result<Pending> {
    if path.is_empty() {
        return Ok(Pending::none());
    }
    match Netns::open(path) {
        Ok(netns) => start_by_name(deleter, &netns, ifname),
        Err(_) => Ok(Pending::none()),
    }
}

/// Frees the link's name: the kernel renames only a link that is down.
fn step_aside(nl: &mut Netlink, index: u32, name: &str) -> ferry_linux::Result<()> {
    nl.set_down(index)?;
    let mut last = None;
    for attempt in 0..4 {
        let new = match attempt {
            0 => dying_name(name),
            _ => match super::attr::random_name("dying") {
                Ok(n) => n,
                Err(_) => break,
            },
        };
        match nl.rename(index, &new) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_exists() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        ferry_linux::Error::InvalidArgument("no random name for a dying link".into())
    }))
}

/// Starts a detached thread that deletes link `index` over a netlink socket
/// opened in `netns` (a socket stays in the namespace it was made in, so the
/// thread needs no `setns`); returns whether the thread was started.
fn thread_deleter(netns: &Netns, index: u32) -> bool {
    let Ok(mut nl) = netns.netlink() else {
        return false;
    };
    std::thread::Builder::new()
        .name("ferry-link-delete".into())
        .spawn(move || {
            let _ = nl.delete_link(index);
        })
        .is_ok()
}

/// Starts a child (see [`child`]) that enters `netns` and deletes link
/// `index`; returns whether the child was started.
fn spawn_deleter(netns: &Netns, index: u32) -> bool {
    child::spawn(child::Task::DeleteLink {
        netns: netns.as_raw_fd(),
        msg: ferry_linux::raw::dellink_request(index),
    })
}

/// How long [`close_nft`]'s child keeps the socket: the deferred free
/// takes one RCU grace period, 4-26 ms in `close()` on this machine.
const NFT_LINGER_NS: libc::c_long = 100_000_000;

/// Closes nftables socket `sock` without waiting for the kernel's grace
/// period (module doc): when it deleted something, a child process holds the
/// last reference and closes it when it exits. Otherwise, or when the child
/// cannot be started, the socket is closed here.
pub fn close_nft(sock: nft::Socket) {
    let keep = sock.as_raw_fd();
    let mut pipe: [RawFd; 2] = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if !sock.deleted() || keep < 3 || unsafe { libc::pipe2(pipe.as_mut_ptr(), 0) } != 0 {
        return;
    }
    let [gate, gate_writer] = pipe;
    // Linger until the kernel's deferred free has run. Releasing a socket
    // while it is pending waits for it holding the namespace's nf_tables
    // commit mutex, so an early exit stalled the next plugin's batch
    // instead (a chained DEL's portmap sat 10 ms until firewall's child had
    // exited, in `strace -f` of the bench). Nothing waits for this child.
    child::spawn(child::Task::Hold {
        keep,
        gate,
        linger_ns: NFT_LINGER_NS,
    });
    drop(sock);
    // SAFETY: both ends are this function's own descriptors, closed once.
    unsafe {
        libc::close(gate_writer);
        libc::close(gate);
    }
}
