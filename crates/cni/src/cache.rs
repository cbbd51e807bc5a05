//! The per-attachment result cache, in libcni's format (`cniCacheV1`), so a Go
//! runtime and Ferry read each other's cache:
//! `<cacheDir>/results/<network>-<containerID>-<ifname>`.
//!
//! Ferry writes the entry (config, no result) before running ADD, and adds the
//! result once ADD succeeds: a DEL after a failed or interrupted ADD still runs
//! with the config ADD used, even if the file on disk has since changed.

use crate::error::{CniError, CniResult};
use base64::Engine;
use ferry_linux::fs::{write_atomic, Durability};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub const CACHE_KIND: &str = "cniCacheV1";
/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// One cached attachment. Field names and encodings are libcni's (`config` is
/// base64, as Go encodes `[]byte`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAttachment {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    #[serde(with = "b64")]
    pub config: Vec<u8>,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<[String; 2]>,
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// The cache directory of one runtime.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results_dir()
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Reads one entry. A missing, empty or corrupt file is `None`: a broken
    /// cache must never make DEL fail (the caller falls back to the config it has).
    pub fn get(&self, network: &str, container_id: &str, ifname: &str) -> Option<CachedAttachment> {
        let path = self.path(network, container_id, ifname);
        let bytes = std::fs::read(&path).ok()?;
        match decode(&bytes) {
            Some(entry)
                if entry.network_name == network
                    && entry.container_id == container_id
                    && entry.if_name == ifname =>
            {
                Some(entry)
            }
            _ => {
                eprintln!("ferry: ignoring unreadable cache file {}", path.display());
                None
            }
        }
    }

    /// Writes an entry atomically (temporary file, then rename), mode 0600.
    pub fn put(&self, entry: &CachedAttachment) -> CniResult<()> {
        let dir = self.results_dir();
        create_private_dir(&dir)?;
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let bytes = serde_json::to_vec(entry)?;
        write_atomic(&path, &bytes, 0o600, Durability::Synced)
            .map_err(|e| CniError::io(format!("writing cache file {}: {e}", path.display())))
    }

    /// Removes an entry; a missing one is fine.
    pub fn delete(&self, network: &str, container_id: &str, ifname: &str) -> CniResult<()> {
        let path = self.path(network, container_id, ifname);
        ferry_linux::fs::remove_stale_temps(&path);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io(format!("removing {}: {e}", path.display()))),
        }
    }

    /// Removes the temporary files of writers killed before their rename
    /// (GC; safe while others write).
    pub fn remove_dead_writers_temps(&self) {
        ferry_linux::fs::remove_dead_writers_temps(&self.results_dir());
    }

    /// Every readable entry, optionally only one container's (libcni `GetCachedAttachments`).
    pub fn list(&self, container_id: Option<&str>) -> Vec<CachedAttachment> {
        let Ok(entries) = std::fs::read_dir(self.results_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<CachedAttachment> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| decode(&std::fs::read(e.path()).ok()?))
            .filter(|a| container_id.is_none_or(|id| a.container_id == id))
            .collect();
        out.sort_by(|a, b| {
            (&a.network_name, &a.container_id, &a.if_name).cmp(&(
                &b.network_name,
                &b.container_id,
                &b.if_name,
            ))
        });
        out
    }
}

fn decode(bytes: &[u8]) -> Option<CachedAttachment> {
    let entry: CachedAttachment = serde_json::from_slice(bytes).ok()?;
    (entry.kind == CACHE_KIND).then_some(entry)
}

/// The results directory: private, and not a link or a directory another
/// user planted.
fn create_private_dir(dir: &Path) -> CniResult<()> {
    ferry_linux::fs::create_state_dir(dir, 0o700)
        .map_err(|e| CniError::io(format!("creating {}: {e}", dir.display())))
}

/// Encodes config bytes the way the cache file stores them (for tests and tools).
pub fn encode_config(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The results directory planted as a link (say by a user who can write
    /// to the cache directory): `put` refuses and writes nothing behind it.
    #[test]
    fn results_directory_planted_as_a_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let cache_dir = root.path().join("cni");
        std::fs::create_dir(&cache_dir).unwrap();
        std::os::unix::fs::symlink(&target, cache_dir.join("results")).unwrap();
        let e = Cache::new(&cache_dir).put(&entry()).unwrap_err();
        assert!(e.details.contains("symbolic link"), "{}", e.details);
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            0,
            "written behind the link"
        );
    }

    fn entry() -> CachedAttachment {
        CachedAttachment {
            kind: CACHE_KIND.into(),
            container_id: "c1".into(),
            config: br#"{"name":"n"}"#.to_vec(),
            if_name: "eth0".into(),
            network_name: "n".into(),
            netns: "/run/netns/x".into(),
            cni_args: vec![["K".into(), "V".into()]],
            capability_args: Map::new(),
            result: Some(serde_json::json!({"cniVersion":"1.0.0"})),
        }
    }

    #[test]
    fn round_trip_in_libcni_format() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache.put(&entry()).unwrap();
        let path = dir.path().join("results/n-c1-eth0");
        let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["kind"], "cniCacheV1");
        assert_eq!(raw["containerId"], "c1");
        assert_eq!(raw["ifName"], "eth0");
        assert_eq!(raw["networkName"], "n");
        assert_eq!(raw["config"], encode_config(br#"{"name":"n"}"#));
        assert_eq!(raw["cniArgs"], serde_json::json!([["K", "V"]]));
        assert_eq!(cache.get("n", "c1", "eth0"), Some(entry()));
        assert_eq!(cache.list(Some("c1")).len(), 1);
        assert_eq!(cache.list(Some("other")).len(), 0);
        cache.delete("n", "c1", "eth0").unwrap();
        cache.delete("n", "c1", "eth0").unwrap();
        assert!(cache.get("n", "c1", "eth0").is_none());
    }

    #[test]
    fn empty_or_corrupt_files_read_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(dir.path().join("results/n-c1-eth0"), b"").unwrap();
        std::fs::write(dir.path().join("results/n-c2-eth0"), b"{\"kind\":").unwrap();
        assert!(cache.get("n", "c1", "eth0").is_none());
        assert!(cache.get("n", "c2", "eth0").is_none());
        assert!(cache.list(None).is_empty());
    }
}
