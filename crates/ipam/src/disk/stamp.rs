//! The directory stamp, `ferry-index/stamp`: the state of the network
//! directory when Ferry last knew the index to be complete, and the proof
//! (same boot, clock not stepped back, settled or multigrain) that nothing
//! else changed it since. Why this holds: `DESIGN.md`.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::libc;

use super::index::fnv1a;
use super::txn::DiskTxn;
use crate::error::Result;
use ferry_linux::fs::{write_atomic, Durability};

/// The stamp's file name inside [`INDEX_DIR`]: no `+`, no leading `~`, so
/// never an index entry's name.
pub(super) const STAMP_FILE: &str = "stamp";

const STAMP_MAGIC: &str = "ferry-ipam-stamp v2";

/// Every stamp is exactly this long (padded), so it can be overwritten in
/// place with one `pwrite` at offset 0, within one page, never truncated.
pub(super) const STAMP_LEN: usize = 512;

/// The record ends with `sum <16 hex digits>\n`: FNV-1a of everything
/// before it. A record mixing two writes does not validate.
const SUM_LEN: usize = 21;

/// How far past the directory's times the coarse clock must be for a stamp
/// to be settled on any filesystem (FAT has 2 s granularity).
const SETTLED_NS: i128 = 3_000_000_000;

/// What of a directory changes whenever an entry is created or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DirState {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) mtime: (i64, i64),
    pub(super) ctime: (i64, i64),
}

impl DirState {
    /// `statx` of `dir` with mtime and ctime requested (Rust's metadata asks
    /// for all basic fields), which on a multigrain filesystem marks the
    /// ctime as queried.
    fn of(dir: &Path) -> std::io::Result<DirState> {
        let m = fs::symlink_metadata(dir)?;
        Ok(DirState {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// The later of mtime and ctime, in nanoseconds.
    fn latest_ns(&self) -> i128 {
        let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
        ns(self.mtime).max(ns(self.ctime))
    }
}

/// The content of `ferry-index/stamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) boot: String,
    pub(super) dir: DirState,
    /// `CLOCK_REALTIME` and `CLOCK_BOOTTIME` when recorded, in nanoseconds.
    pub(super) realtime: i128,
    pub(super) boottime: i128,
    /// The coarse clock was [`SETTLED_NS`] past the directory's times.
    pub(super) settled: bool,
    /// The filesystem gives a queried ctime a distinct next value.
    pub(super) multigrain: bool,
}

impl Stamp {
    /// The record: [`STAMP_LEN`] bytes, lines of fields, padding, checksum.
    pub(super) fn render(&self) -> String {
        let d = &self.dir;
        let mut text = format!(
            "{STAMP_MAGIC}\nboot {}\ndir {} {} {} {} {} {}\nclock {} {}\nsettled {}\nmultigrain {}\n",
            self.boot,
            d.dev,
            d.ino,
            d.mtime.0,
            d.mtime.1,
            d.ctime.0,
            d.ctime.1,
            self.realtime,
            self.boottime,
            u8::from(self.settled),
            u8::from(self.multigrain),
        );
        // The fields take under 300 bytes (a boot ID is 36); a longer one
        // (a boot ID that is not a UUID) makes a record that never parses.
        let pad = (STAMP_LEN - SUM_LEN).saturating_sub(text.len());
        if pad > 0 {
            text.push_str(&" ".repeat(pad - 1));
            text.push('\n');
        }
        let sum = fnv1a(&text);
        text.push_str(&format!("sum {sum:016x}\n"));
        text
    }

    /// A stamp only from a whole record whose checksum holds.
    pub(super) fn parse(text: &str) -> Option<Stamp> {
        if text.len() != STAMP_LEN {
            return None;
        }
        let (body, sum) = text.split_at_checked(STAMP_LEN - SUM_LEN)?;
        let sum = sum.strip_prefix("sum ")?.strip_suffix('\n')?;
        if u64::from_str_radix(sum, 16).ok()? != fnv1a(body) {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != STAMP_MAGIC {
            return None;
        }
        let mut field = |name: &str| -> Option<Vec<String>> {
            let line = lines.next()?;
            let mut words = line.split(' ');
            if words.next()? != name {
                return None;
            }
            Some(words.map(str::to_string).collect())
        };
        let boot = field("boot")?;
        let dir = field("dir")?;
        let clock = field("clock")?;
        let settled = field("settled")?;
        let multigrain = field("multigrain")?;
        let num = |v: &Vec<String>, i: usize| -> Option<i64> { v.get(i)?.parse().ok() };
        let wide = |v: &Vec<String>, i: usize| -> Option<i128> { v.get(i)?.parse().ok() };
        let flag = |v: &Vec<String>| -> Option<bool> {
            match v.first()?.as_str() {
                "0" => Some(false),
                "1" => Some(true),
                _ => None,
            }
        };
        Some(Stamp {
            boot: boot.first()?.clone(),
            dir: DirState {
                dev: dir.first()?.parse().ok()?,
                ino: dir.get(1)?.parse().ok()?,
                mtime: (num(&dir, 2)?, num(&dir, 3)?),
                ctime: (num(&dir, 4)?, num(&dir, 5)?),
            },
            realtime: wide(&clock, 0)?,
            boottime: wide(&clock, 1)?,
            settled: flag(&settled)?,
            multigrain: flag(&multigrain)?,
        })
    }
}

/// A clock's current time in nanoseconds; `None` if it cannot be read.
fn clock_ns(clock: libc::clockid_t) -> Option<i128> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the whole call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
}

pub(super) fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

/// Where [`multigrain`] keeps its verdicts for the boot (`/run` is a tmpfs
/// emptied at boot; the boot ID is checked anyway): reading mountinfo costs
/// O(mounts), and every `ip netns` namespace is a mount.
const VERDICT_DIR: &str = "/run/ferry/ipam-multigrain";

/// [`detect_multigrain`], remembered per boot and device.
fn multigrain(dev: u64, boot: &str) -> bool {
    let path = Path::new(VERDICT_DIR).join(format!(
        "{}-{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    ));
    if let Ok(text) = fs::read_to_string(&path) {
        match text.split_once(' ') {
            Some((b, v)) if b == boot && v.trim() == "1" => return true,
            Some((b, v)) if b == boot && v.trim() == "0" => return false,
            _ => {}
        }
    }
    let verdict = detect_multigrain(dev);
    // Best effort: without the cache the next stampless operation detects
    // again.
    let text = format!("{boot} {}\n", u8::from(verdict));
    let _ = ferry_linux::fs::create_state_dir(Path::new(VERDICT_DIR), 0o755)
        .and_then(|()| write_atomic(&path, text.as_bytes(), 0o666, Durability::Cached));
    verdict
}

/// Whether device `dev` holds a multigrain filesystem on this kernel, with a
/// clocksource whose fine-grained reads advance between ticks (see the
/// `DESIGN.md`). Any doubt answers `false`.
fn detect_multigrain(dev: u64) -> bool {
    let Ok(release) = fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let (Some(Ok(major)), Some(Ok(minor))) = (
        parts.next().map(str::parse::<u32>),
        parts.next().map(str::parse::<u32>),
    ) else {
        return false;
    };
    if (major, minor) < (6, 13) {
        return false;
    }
    match fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource") {
        Ok(cs) if !cs.trim().is_empty() && !cs.contains("jiffies") => {}
        _ => return false,
    }
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = format!(
        "{}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let mut found = false;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(2) != Some(&want.as_str()) {
            continue;
        }
        let fstype = fields
            .iter()
            .position(|f| *f == "-")
            .and_then(|i| fields.get(i + 1));
        match fstype {
            Some(&("ext4" | "xfs" | "btrfs" | "tmpfs")) => found = true,
            _ => return false,
        }
    }
    found
}

impl DiskTxn<'_> {
    pub(super) fn stamp_path(&self) -> PathBuf {
        self.index_dir().join(STAMP_FILE)
    }

    /// The stamp on disk, if it proves that nothing but Ferry changed the
    /// directory since the index was last complete (`DESIGN.md`,
    /// conditions 1 to 4). Keeps the stamp read in `self.prior`.
    fn valid_stamp(&mut self) -> Option<DirState> {
        let text = fs::read_to_string(self.stamp_path()).ok()?;
        self.stamp_len = Some(text.len());
        let stamp = Stamp::parse(&text)?;
        self.prior = Some(stamp.clone());
        if !(stamp.settled || stamp.multigrain) || self.boot_id()? != stamp.boot {
            return None;
        }
        let now = DirState::of(self.dir).ok()?;
        if now != stamp.dir {
            return None;
        }
        let real = clock_ns(libc::CLOCK_REALTIME)? - stamp.realtime;
        let boot = clock_ns(libc::CLOCK_BOOTTIME)? - stamp.boottime;
        if boot < 0 || real < boot - boot / 1000 - 1_000_000 {
            return None;
        }
        Some(now)
    }

    /// Make sure the index lists every lease: trust the stamp, or rebuild.
    /// `false` when the index cannot be complete (a name collision) or its
    /// completeness could not be proved next time anyway (not multigrain):
    /// callers then walk the directory.
    pub(super) fn ensure_complete(&mut self) -> Result<bool> {
        if let Some(c) = self.complete {
            return Ok(c);
        }
        let complete = match self.valid_stamp() {
            Some(state) => {
                self.validated = Some(state);
                true
            }
            // Known not multigrain (this boot, this device): no stamp of an
            // operation that changes the directory can be trusted, so a
            // rebuild would be wasted; walk, as the reference does.
            None if self.prior.as_ref().is_some_and(|p| {
                !p.multigrain
                    && self.boot_id().is_some_and(|b| b == p.boot)
                    && DirState::of(self.dir).is_ok_and(|d| d.dev == p.dir.dev)
            }) =>
            {
                false
            }
            None => self.rebuild_index()?,
        };
        self.complete = Some(complete);
        Ok(complete)
    }

    /// Record the stamp, at the end of a transaction that knows the index to
    /// be complete, after its last change to the directory and still under
    /// the lock. Best effort: a stamp that is not rewritten no longer matches
    /// the directory once anything changed in it (the same argument as for
    /// the reference's changes), so the next operation rebuilds.
    pub(super) fn record_stamp(&self) -> Option<()> {
        if self.complete != Some(true) {
            return None;
        }
        // A whole record read in this transaction and not removed since:
        // the index directory exists and the record is rewritten in place.
        let in_place = self.stamp_len == Some(STAMP_LEN) && !self.stamp_removed.get();
        if !in_place && !self.index_dir().is_dir() {
            return None;
        }
        let now = DirState::of(self.dir).ok()?;
        if self.validated.as_ref() == Some(&now) && !self.stamp_removed.get() {
            return Some(()); // read-only: the stamp on disk still says it all
        }
        let boot = self.boot_id()?;
        let (real, boottime, coarse) = (
            clock_ns(libc::CLOCK_REALTIME)?,
            clock_ns(libc::CLOCK_BOOTTIME)?,
            clock_ns(libc::CLOCK_REALTIME_COARSE)?,
        );
        let multigrain = now.ctime.1 != 0
            && match &self.prior {
                Some(p) if p.boot == boot && p.dir.dev == now.dev && p.multigrain => true,
                _ => multigrain(now.dev, &boot),
            };
        let stamp = Stamp {
            boot,
            settled: coarse - now.latest_ns() >= SETTLED_NS,
            dir: now,
            realtime: real,
            boottime,
            multigrain,
        };
        let text = stamp.render();
        let path = self.stamp_path();
        // In place: one `pwrite` of the whole record at offset 0 (see
        // `DESIGN.md` for why no torn record can validate). Otherwise (no
        // stamp yet, an old or damaged one) replaced atomically.
        if in_place
            && OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.write_all_at(text.as_bytes(), 0))
                .is_ok()
        {
            return Some(());
        }
        write_atomic(&path, text.as_bytes(), 0o666, Durability::Cached).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn sample() -> Stamp {
        Stamp {
            boot: "1070b7cc-5095-477c-8dba-491fb7ca51da".into(),
            dir: DirState {
                dev: 65024,
                ino: 10084681,
                mtime: (1795918710, 381645377),
                ctime: (1795918710, 381645378),
            },
            realtime: 1_795_918_710_382_085_694,
            boottime: 28_563_878_641_039,
            settled: false,
            multigrain: true,
        }
    }

    #[test]
    fn stamps_round_trip_and_never_look_like_leases() {
        let stamp = sample();
        let text = stamp.render();
        assert_eq!(text.len(), STAMP_LEN);
        assert_eq!(Stamp::parse(&text), Some(stamp));
        assert!(!text.contains('\r'));
        assert!(STAMP_FILE.parse::<IpAddr>().is_err());
        assert!(!STAMP_FILE.contains('+') && !STAMP_FILE.starts_with('~'));
        assert_eq!(Stamp::parse("ferry-ipam-stamp v2\nboot x\n"), None);
        assert_eq!(Stamp::parse(""), None);
    }

    /// What an in-place rewrite interrupted anywhere (a kill, a short write)
    /// could leave: the new record's first bytes over the old one's. Each
    /// such mix parses as the old stamp, the new one, or nothing: never as
    /// a stamp that took the new directory state and the old verdicts.
    #[test]
    fn a_torn_stamp_is_never_a_third_stamp() {
        let old = Stamp {
            settled: true,
            ..sample()
        };
        let mut new = old.clone();
        new.dir.mtime = (1795918712, 5);
        new.dir.ctime = (1795918712, 5);
        new.realtime += 2_000_000_000;
        new.boottime += 2_000_000_000;
        new.settled = false;
        new.multigrain = false;
        let (a, b) = (old.render(), new.render());
        for k in 0..=STAMP_LEN {
            let torn = format!("{}{}", &b[..k], &a[k..]);
            match Stamp::parse(&torn) {
                None => {}
                Some(s) => assert!(s == old || s == new, "torn at {k}: {s:?}"),
            }
        }
        // Field by field too: only the checksum tells these apart.
        let mut spliced = b[..STAMP_LEN - SUM_LEN].replace("settled 0", "settled 1");
        spliced.push_str(&a[STAMP_LEN - SUM_LEN..]);
        assert_eq!(Stamp::parse(&spliced), None);
        assert_eq!(Stamp::parse(&b[..STAMP_LEN - 1]), None);
        assert_eq!(Stamp::parse(&format!("{b} ")), None);
    }
}
