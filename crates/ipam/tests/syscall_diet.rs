//! What one ADD and one DEL do to the files, seen through inotify (no
//! strace): the index entry of a dual-stack ADD is written once, in place;
//! the stamp is rewritten in place; `last_reserved_ip.*` keeps the
//! reference's exact content.

mod common;

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use common::{allocator, ip};
use ferry_ipam::{Attachment, INDEX_DIR};
use nix::libc;

/// An inotify watch on one directory; [`Watch::events`] drains what
/// happened since, as `(mask, name)`.
struct Watch(OwnedFd);

impl Watch {
    fn new(dir: &Path) -> Watch {
        // SAFETY: plain syscalls; the descriptor is owned right away.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_DELETE;
        // SAFETY: `path` is a valid C string for the whole call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
        assert!(wd >= 0, "inotify_add_watch {}", dir.display());
        Watch(fd)
    }

    fn events(&self) -> Vec<(u32, String)> {
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let n = usize::try_from(n).unwrap_or(0); // EAGAIN: nothing happened
        let mut out = Vec::new();
        let head = std::mem::size_of::<libc::inotify_event>();
        let mut off = 0;
        while off + head <= n {
            // SAFETY: the kernel wrote a whole event at `off`.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let name = &buf[off + head..off + head + ev.len as usize];
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_string();
            out.push((ev.mask, name));
            off += head + ev.len as usize;
        }
        out
    }
}

const DUAL: &str = r#"[[{"subnet":"198.19.64.0/24"}],[{"subnet":"fd00:1a::/64"}]]"#;

/// A dual-stack ADD creates its index entry directly (one create, no
/// temporary file, no rename), once for both addresses.
#[test]
fn a_dual_stack_add_creates_its_index_entry_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), DUAL);
    // Steady state: another attachment holds addresses, so the index
    // directory and its stamp exist.
    a.allocate(&Attachment::new("resident", "eth0"), &[])
        .unwrap();
    let idx = a.store().dir().join(INDEX_DIR);
    let w = Watch::new(&idx);
    let k = Attachment::new("diet", "eth0");
    assert_eq!(a.allocate(&k, &[]).unwrap().len(), 2);
    // Nothing but the entry is created, renamed or removed in the index:
    // the stamp is rewritten in place.
    assert_eq!(
        w.events(),
        vec![(libc::IN_CREATE, "diet+eth0".to_string())],
        "the index entry was not written once in place"
    );
    let text = fs::read_to_string(idx.join("diet+eth0")).unwrap();
    assert!(text.contains("198.19.64.3\n") && text.contains("fd00:1a::3\n"));
    // And DEL removes it with no temporary file either.
    assert_eq!(a.release(&k).unwrap().len(), 2);
    assert_eq!(w.events(), vec![(libc::IN_DELETE, "diet+eth0".to_string())]);
    // The stamp still holds: the next lookup reads the index, no rebuild.
    let stamp = fs::read_to_string(idx.join("stamp")).unwrap();
    assert!(stamp.starts_with("ferry-ipam-stamp v2\n") && stamp.len() == 512);
}

/// `last_reserved_ip.<n>` is rewritten in place, not truncated first: its
/// content must still be exactly the address, as the reference writes it,
/// when a shorter address follows a longer one (round-robin wrap and a
/// requested address).
#[test]
fn last_reserved_ip_is_exact_after_a_shorter_address() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(
        tmp.path(),
        r#"[[{"subnet":"198.19.64.0/24","rangeStart":"198.19.64.5","rangeEnd":"198.19.64.200"}],[{"subnet":"fd00:1a::/64"}]]"#,
    );
    let dir = a.store().dir().to_path_buf();
    let last0 = dir.join("last_reserved_ip.0");
    let last1 = dir.join("last_reserved_ip.1");
    fs::write(&last0, "198.19.64.200").unwrap();
    fs::write(&last1, "fd00:1a::ffff:ffff:ffff:ffff").unwrap();
    let got = a.allocate(&Attachment::new("wrap", "eth0"), &[]).unwrap();
    assert_eq!(got[0].address.addr(), ip("198.19.64.5"));
    assert_eq!(got[1].address.addr(), ip("fd00:1a::2"));
    assert_eq!(fs::read(&last0).unwrap(), b"198.19.64.5");
    assert_eq!(fs::read(&last1).unwrap(), b"fd00:1a::2");
    // Requested (the file is not read first): shorter again, then longer.
    fs::write(&last0, "198.19.64.150").unwrap();
    a.allocate(&Attachment::new("req", "eth0"), &[ip("198.19.64.9")])
        .unwrap();
    assert_eq!(fs::read(&last0).unwrap(), b"198.19.64.9");
    a.allocate(&Attachment::new("req2", "eth0"), &[ip("198.19.64.199")])
        .unwrap();
    assert_eq!(fs::read(&last0).unwrap(), b"198.19.64.199");
}
