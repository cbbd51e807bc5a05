//! The detached deletes' child process.
//!
//! A plugin hands the kernel's long waits (a link's unregistering, an
//! nftables socket's last close) to a child that outlives it. `fork(2)`
//! made that child by copying the plugin's page tables and then charged the
//! plugin a copy-on-write fault for every page it wrote afterwards, while it
//! finished DEL. Here the child shares the caller's memory instead
//! (`clone(2)` with `CLONE_VM`, not `CLONE_VFORK`, not `CLONE_THREAD`): a
//! process of its own (its own descriptor table, namespaces and session)
//! that copies nothing. It runs on a stack of its own, reads only its task
//! (leaked, so never freed under it) and makes only raw system calls: the
//! libc wrappers write `errno`, which lives in the caller's thread-local
//! storage the child shares. Architectures without a raw system call here
//! fork as before.

use std::os::fd::RawFd;

/// What a child does, then it exits.
pub(super) enum Task {
    /// Enters network namespace `netns` and sends `msg` (an RTM_DELLINK)
    /// on a new route netlink socket.
    DeleteLink { netns: RawFd, msg: [u8; 32] },
    /// Keeps descriptor `keep` open until `gate` reads end-of-file, then
    /// `linger_ns` nanoseconds more.
    Hold {
        keep: RawFd,
        gate: RawFd,
        linger_ns: libc::c_long,
    },
}

/// Starts a detached child running `task`; false when none could be
/// started (the caller then does the work itself).
pub(super) fn spawn(task: Task) -> bool {
    imp::spawn(task)
}

/// The child: detach from the caller, do the task. Returns the exit status.
///
/// # Safety
/// Only in a child started by [`spawn`], with `task` valid for its whole
/// life: raw system calls only, no allocation, no lock.
unsafe fn run(task: &Task) -> libc::c_int {
    leave_caller();
    match *task {
        Task::DeleteLink { netns, ref msg } => {
            if sys(
                libc::SYS_setns,
                [netns as usize, libc::CLONE_NEWNET as usize, 0, 0, 0, 0],
            ) != 0
            {
                return 1;
            }
            close_all_but(&[]);
            let sock = sys(
                libc::SYS_socket,
                [
                    libc::AF_NETLINK as usize,
                    (libc::SOCK_RAW | libc::SOCK_CLOEXEC) as usize,
                    libc::NETLINK_ROUTE as usize,
                    0,
                    0,
                    0,
                ],
            );
            if sock < 0 {
                return 1;
            }
            // No ACK asked: nobody to report to, and sendto returns once
            // the kernel is done.
            let sent = sys(
                libc::SYS_sendto,
                [sock as usize, msg.as_ptr() as usize, msg.len(), 0, 0, 0],
            );
            i32::from(sent != msg.len() as isize)
        }
        Task::Hold {
            keep,
            gate,
            linger_ns,
        } => {
            close_all_but(&[keep.min(gate), keep.max(gate)]);
            // Returns 0 once the caller has closed the pipe's other end.
            let mut byte = 0u8;
            while sys(
                libc::SYS_read,
                [gate as usize, (&raw mut byte) as usize, 1, 0, 0, 0],
            ) == -(libc::EINTR as isize)
            {}
            let linger = libc::timespec {
                tv_sec: 0,
                tv_nsec: linger_ns,
            };
            sys(
                libc::SYS_nanosleep,
                [(&raw const linger) as usize, 0, 0, 0, 0, 0],
            );
            0
        }
    }
}

/// Its own session, stdin/stdout/stderr on /dev/null (the runtime waits for
/// EOF on the plugin's pipes).
///
/// # Safety
/// As [`run`].
unsafe fn leave_caller() {
    sys(libc::SYS_setsid, [0; 6]);
    let null = sys(
        libc::SYS_openat,
        [
            libc::AT_FDCWD as usize,
            c"/dev/null".as_ptr() as usize,
            libc::O_RDWR as usize,
            0,
            0,
            0,
        ],
    );
    if null >= 0 {
        for fd in 0..3usize {
            if fd != null as usize {
                sys(libc::SYS_dup3, [null as usize, fd, 0, 0, 0, 0]);
            }
        }
    }
}

/// Closes every descriptor from 3 up but those in `keep` (ascending): the
/// runtime's pipes must see EOF when the plugin exits, and no lock may
/// outlive it.
///
/// # Safety
/// As [`run`].
unsafe fn close_all_but(keep: &[RawFd]) {
    let mut from = 3u32;
    for &k in keep {
        let k = k as u32;
        if k > from {
            close_range(from, k - 1);
        }
        from = from.max(k + 1);
    }
    close_range(from, u32::MAX);
}

/// Closes descriptors `first..=last`.
///
/// # Safety
/// As [`run`].
unsafe fn close_range(first: u32, last: u32) {
    if sys(
        libc::SYS_close_range,
        [first as usize, last as usize, 0, 0, 0, 0],
    ) != 0
    {
        // Kernels before 5.9 have no close_range.
        for fd in first..=last.min(4095) {
            sys(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]);
        }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod imp {
    use super::{run, Task};

    /// The child's stack: the task needs a few hundred bytes.
    const STACK: usize = 64 * 1024;

    pub(super) fn spawn(task: Task) -> bool {
        // SAFETY: a fresh private anonymous mapping; checked below.
        let stack = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if stack == libc::MAP_FAILED {
            return false;
        }
        // Neither the task nor the stack is ever freed: the child may still
        // use them after the caller has moved on (or exited).
        let task: &'static Task = Box::leak(Box::new(task));
        // SAFETY: the child runs `entry` on its own stack (top of the
        // mapping, 16-byte aligned) with a task that lives forever, and
        // makes only raw system calls (see `run`). No CLONE_FILES: the
        // child's descriptor changes stay its own.
        let pid = unsafe {
            libc::clone(
                entry,
                stack.cast::<u8>().add(STACK).cast(),
                libc::CLONE_VM | libc::SIGCHLD,
                std::ptr::from_ref(task).cast_mut().cast(),
            )
        };
        if pid < 0 {
            // SAFETY: the mapping made above, unused (no child).
            unsafe { libc::munmap(stack, STACK) };
            return false;
        }
        true
    }

    extern "C" fn entry(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the leaked task `spawn` passed, valid forever;
        // this is the child `run` is written for.
        unsafe { run(&*arg.cast::<Task>()) }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    use super::{run, Task};

    pub(super) fn spawn(task: Task) -> bool {
        // SAFETY: the child makes only system calls on memory prepared
        // before the fork, then `_exit`s.
        match unsafe { libc::fork() } {
            -1 => false,
            0 => unsafe { libc::_exit(run(&task)) },
            _ => true,
        }
    }
}

/// A raw system call: returns the result, or `-errno`, without touching
/// `errno`.
///
/// # Safety
/// The call's arguments must be valid for it.
#[cfg(target_arch = "x86_64")]
unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    std::arch::asm!(
        "syscall",
        inlateout("rax") n as isize => ret,
        in("rdi") a[0],
        in("rsi") a[1],
        in("rdx") a[2],
        in("r10") a[3],
        in("r8") a[4],
        in("r9") a[5],
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack, preserves_flags),
    );
    ret
}

/// A raw system call: returns the result, or `-errno`, without touching
/// `errno`.
///
/// # Safety
/// The call's arguments must be valid for it.
#[cfg(target_arch = "aarch64")]
unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    std::arch::asm!(
        "svc 0",
        in("x8") n,
        inlateout("x0") a[0] as isize => ret,
        in("x1") a[1],
        in("x2") a[2],
        in("x3") a[3],
        in("x4") a[4],
        in("x5") a[5],
        options(nostack),
    );
    ret
}

/// Elsewhere the child is forked (its own memory), so libc's wrapper is
/// fine; the result is mapped to `-errno` like the raw ones.
///
/// # Safety
/// The call's arguments must be valid for it.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn sys(n: libc::c_long, a: [usize; 6]) -> isize {
    let r = libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]) as isize;
    if r < 0 {
        -(*libc::__errno_location() as isize)
    } else {
        r
    }
}
