//! Shared helpers for the integration tests. Addresses: 198.19.64.0/20 and
//! fd00:1a::/48 only.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use ferry_ipam::{Allocator, Config, DiskStore, IpamConfig};

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn config(json: &str) -> Config {
    let raw: IpamConfig = serde_json::from_str(json).expect("test config parses");
    raw.canonicalize().expect("test config is valid")
}

/// An allocator over `ranges_json` (the value of `ranges`) on network
/// `testnet` under `data_dir`.
pub fn allocator(data_dir: &Path, ranges_json: &str) -> Allocator<DiskStore> {
    let cfg = config(&format!(
        r#"{{"type":"host-local","ranges":{ranges_json}}}"#
    ));
    let store = DiskStore::open("testnet", data_dir).expect("open store");
    Allocator::new(cfg.ranges, store)
}

/// Names of the entries of `dir` (files and directories).
pub fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}
