//! The backup file: the original values, saved before anything changes in
//! the reference's file (`<dataDir>/<containerID>_<ifname>.json`) and JSON,
//! so either implementation's DEL restores the other's ADD.

use std::path::{Path, PathBuf};

use super::config::Wanted;
use ferry_cni::{CniError, CniResult};
use ferry_linux::fs::{write_atomic, Durability};
use ferry_linux::Link;
use serde::{Deserialize, Serialize};

/// A sysctl tuning changed: its path, old and new value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct SavedSysctl {
    pub(super) path: String,
    pub(super) old: String,
    pub(super) new: String,
}

/// The reference's `configToRestore` (same keys, same omissions), plus the
/// sysctls Ferry restores.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Backup {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) mtu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) allmulti: Option<bool>,
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    pub(super) txqlen: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) sysctl: Vec<SavedSysctl>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Backup {
    pub(super) fn is_empty(&self) -> bool {
        *self == Backup::default()
    }

    /// True when a link attribute is saved (what [`restore`] needs netlink for).
    pub(super) fn has_link_settings(&self) -> bool {
        !self.mac.is_empty()
            || self.promisc.is_some()
            || self.mtu > 0
            || self.allmulti.is_some()
            || self.txqlen.is_some()
    }

    /// Go's `json.MarshalIndent(v, "", " ")`.
    pub(super) fn to_json(&self) -> CniResult<Vec<u8>> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser)
            .map_err(|e| CniError::internal(format!("failed to marshal backup: {e}")))?;
        Ok(out)
    }
}

pub(super) fn backup_path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}_{ifname}.json"))
}

pub(super) fn write_backup(path: &Path, b: &Backup) -> CniResult<()> {
    if let Some(dir) = path.parent() {
        // Not through a link or a directory another user planted.
        ferry_linux::fs::create_state_dir(dir, 0o700).map_err(|e| {
            CniError::io(format!(
                "failed to create backup directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let data = b.to_json()?;
    // Not synced: the backup holds values of the container's namespace,
    // which no machine crash outlives (and DEL ignores a torn file).
    write_atomic(path, &data, 0o600, Durability::Cached)
        .map_err(|e| CniError::io(format!("failed to save file {}: {e}", path.display())))
}

/// The link attributes the reference saves: only those the request changes.
pub(super) fn link_backup(link: &Link, w: &Wanted) -> Backup {
    Backup {
        mac: if w.mac.is_some() {
            link.mac.map(|m| m.to_string()).unwrap_or_default()
        } else {
            String::new()
        },
        promisc: w
            .promisc
            .then_some(link.flags & libc::IFF_PROMISC as u32 != 0),
        mtu: if w.mtu.is_some() {
            i64::from(link.mtu.unwrap_or(0))
        } else {
            0
        },
        allmulti: w.allmulti.map(|_| link.allmulti),
        txqlen: w.txqlen.map(|_| i64::from(link.txqlen.unwrap_or(0))),
        sysctl: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link planted where the backup directory goes (a directory an
    /// unprivileged user could write to): refused, nothing written behind it.
    #[test]
    fn backup_directory_planted_as_a_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let dir = root.path().join("tuning");
        std::os::unix::fs::symlink(&target, &dir).unwrap();
        let path = backup_path(&dir, "c1", "eth0");
        let e = write_backup(
            &path,
            &Backup {
                mtu: 1500,
                ..Backup::default()
            },
        )
        .unwrap_err();
        assert!(e.details.contains("symbolic link"), "{}", e.details);
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            0,
            "written behind the link"
        );
        // A real directory of ours is fine.
        let ok = root.path().join("ours/tuning");
        write_backup(&backup_path(&ok, "c1", "eth0"), &Backup::default()).unwrap();
    }

    #[test]
    fn backup_json_is_the_references() {
        let b = Backup {
            mac: "ea:94:3c:46:64:03".into(),
            promisc: Some(false),
            mtu: 1500,
            allmulti: Some(false),
            ..Backup::default()
        };
        let text = String::from_utf8(b.to_json().unwrap()).unwrap();
        assert_eq!(
            text,
            "{\n \"mac\": \"ea:94:3c:46:64:03\",\n \"promisc\": false,\n \"mtu\": 1500,\n \"allmulti\": false\n}"
        );
        let back: Backup = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
        assert!(Backup::default().is_empty());
    }
}
