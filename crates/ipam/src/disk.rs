#![doc = include_str!("disk/DESIGN.md")]

use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{IpamError, Result};
use crate::store::{Attachment, Holder, Store, StoreTxn};

mod index;
mod stamp;
mod txn;

use txn::DiskTxn;

/// Name of the lock file, shared with the reference plugin.
pub const LOCK_FILE: &str = "lock";
/// Prefix of the per-range-set last reserved address files.
pub const LAST_IP_PREFIX: &str = "last_reserved_ip.";
/// Ferry's index subdirectory.
pub const INDEX_DIR: &str = "ferry-index";

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
        // Not through a link or a directory another user planted in a
        // world-writable dataDir.
        ferry_linux::fs::create_state_dir(&dir, 0o755)
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
                        complete: None,
                        prior: None,
                        validated: None,
                        stamp_removed: Cell::new(false),
                        boot: OnceCell::new(),
                        stamp_len: None,
                        last_len: HashMap::new(),
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

fn not_found_ok<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamp::{Stamp, STAMP_FILE};
    use std::fs;
    use std::net::IpAddr;

    /// In a world-writable dataDir another user may plant the network's
    /// directory as a link, or as a directory of their own: both refused,
    /// nothing created behind them.
    #[test]
    fn network_directory_planted_in_data_dir_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let target = data.path().join("target");
        fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, data.path().join("net1")).unwrap();
        let e = DiskStore::open("net1", data.path()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(
            fs::read_dir(&target).unwrap().count(),
            0,
            "written behind the link"
        );
        if nix::unistd::geteuid().is_root() {
            let theirs = data.path().join("net2");
            fs::create_dir(&theirs).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = DiskStore::open("net2", data.path()).unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
        DiskStore::open("net3", data.path()).unwrap();
    }

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

    /// A stamp that proves nothing (neither settled nor multigrain) is never
    /// trusted: lookups read the directory. Shown with a lease rewritten in
    /// place, which only a walk can see.
    #[test]
    fn a_reservation_killed_before_its_content_is_released() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DiskStore::open("n", tmp.path()).unwrap();
        let a = Attachment::new("a", "eth0");
        let ip: IpAddr = "198.18.64.2".parse().unwrap();
        {
            let mut txn = store.lock().unwrap();
            assert!(txn.reserve(&a, ip, 0).unwrap());
        }
        // What a writer killed between create and write leaves.
        fs::write(store.dir().join(ip.to_string()), "").unwrap();
        let mut txn = store.lock().unwrap();
        txn.release(&a).unwrap();
        assert!(
            !store.dir().join(ip.to_string()).exists(),
            "the empty reservation is left"
        );
        assert!(txn.get_by_id(&a).unwrap().is_empty());
    }

    /// A dual-stack ADD killed right before it creates its first lease file
    /// has already listed both addresses in the index, in one entry write:
    /// the index is a superset of the leases whatever the point of the kill,
    /// and the next operations see nothing held and allocate normally.
    #[test]
    fn a_kill_before_the_first_lease_leaves_every_address_indexed() {
        use crate::allocator::Allocator;
        use crate::config::IpamConfig;
        use std::cell::RefCell;
        thread_local! {
            static SEEN: RefCell<Option<String>> = const { RefCell::new(None) };
        }
        fn kill(dir: &std::path::Path) {
            let entry = dir.join(INDEX_DIR).join("k+eth0");
            SEEN.set(fs::read_to_string(entry).ok());
            panic!("killed before the first lease file");
        }
        let tmp = tempfile::tempdir().unwrap();
        let cfg: IpamConfig = serde_json::from_str(
            r#"{"type":"host-local","ranges":[[{"subnet":"198.18.64.0/24"}],[{"subnet":"fd00:1a::/64"}]]}"#,
        )
        .unwrap();
        let store = DiskStore::open("n", tmp.path()).unwrap();
        let alloc = Allocator::new(cfg.canonicalize().unwrap().ranges, store.clone());
        let k = Attachment::new("k", "eth0");
        txn::BEFORE_LEASE.set(Some(kill));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| alloc.allocate(&k, &[])));
        txn::BEFORE_LEASE.set(None);
        assert!(r.is_err(), "the hook did not run");
        let (v4, v6): (IpAddr, IpAddr) = (
            "198.18.64.2".parse().unwrap(),
            "fd00:1a::2".parse().unwrap(),
        );
        let seen = SEEN.take().expect("no index entry before the first lease");
        for ip in [v4, v6] {
            assert!(
                seen.lines().any(|l| l == ip.to_string()),
                "{ip} not listed: {seen:?}"
            );
            assert!(!store.dir().join(ip.to_string()).exists());
        }
        assert!(alloc.get_by_id(&k).unwrap().is_empty());
        let got: Vec<IpAddr> = alloc
            .allocate(&k, &[])
            .unwrap()
            .iter()
            .map(|a| a.address.addr())
            .collect();
        assert_eq!(got, vec![v4, v6]);
        let mut released = alloc.release(&k).unwrap();
        released.sort();
        assert_eq!(released, vec![v4, v6]);
        assert!(!store.dir().join(INDEX_DIR).exists());
    }

    #[test]
    fn an_unprovable_stamp_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DiskStore::open("n", tmp.path()).unwrap();
        let (a, b) = (Attachment::new("a", "eth0"), Attachment::new("b", "eth0"));
        let ip: IpAddr = "198.18.64.2".parse().unwrap();
        {
            let mut txn = store.lock().unwrap();
            assert!(txn.get_by_id(&a).unwrap().is_empty());
            assert!(txn.reserve(&a, ip, 0).unwrap());
        }
        let path = store.dir().join(INDEX_DIR).join(STAMP_FILE);
        let text = fs::read_to_string(&path).unwrap();
        let mut stamp = Stamp::parse(&text).unwrap();
        fs::write(store.dir().join(ip.to_string()), "b\r\neth0").unwrap();
        if stamp.multigrain {
            // Trusted as recorded: the index answers, and misses the rewrite.
            assert!(store.lock().unwrap().get_by_id(&b).unwrap().is_empty());
        }
        stamp.multigrain = false;
        stamp.settled = false;
        fs::write(&path, stamp.render()).unwrap();
        assert_eq!(store.lock().unwrap().get_by_id(&b).unwrap(), vec![ip]);
    }
}
