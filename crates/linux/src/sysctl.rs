//! Reading and writing sysctls under `/proc/sys`.
//!
//! `/proc/sys/net` follows the network namespace of the thread that opens
//! the file, so the `*_in` variants run on a thread inside the given
//! namespace (see [`Netns::run`]).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Turns `net.ipv4.ip_forward` or `net/ipv4/ip_forward` into
/// `/proc/sys/net/ipv4/ip_forward`. A key that contains a `/` is taken as a
/// path (so interface names with dots survive, e.g.
/// `net/ipv4/conf/eth0.100/forwarding`).
pub fn sysctl_path(key: &str) -> Result<PathBuf> {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_string()
    } else {
        key.replace('.', "/")
    };
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(Error::InvalidArgument(format!(
            "sysctl key {key:?} is not of the form net.ipv4.ip_forward"
        )));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// Reads a sysctl in the calling thread's namespace, trimmed of the
/// trailing newline.
pub fn read(key: &str) -> Result<String> {
    let path = sysctl_path(key)?;
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim_end_matches('\n').to_string()),
        Err(source) => Err(Error::Sysctl { path, source }),
    }
}

/// Writes `value` to a sysctl in the calling thread's namespace unless it
/// already holds that value. Returns true when it wrote.
pub fn write_if_different(key: &str, value: &str) -> Result<bool> {
    let current = read(key)?;
    if normalize(&current) == normalize(value) {
        return Ok(false);
    }
    write(key, value)?;
    Ok(true)
}

/// Writes `value` to a sysctl in the calling thread's namespace, without
/// reading it first (for a caller that already knows it differs).
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key)?;
    std::fs::write(&path, value.as_bytes()).map_err(|source| Error::Sysctl { path, source })
}

/// Multi-value sysctls (`net.ipv4.ip_local_port_range`) read back with tabs.
fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// [`read`] inside `netns`.
pub fn read_in(netns: &Netns, key: &str) -> Result<String> {
    netns.run(|| read(key))?
}

/// [`write_if_different`] inside `netns`.
pub fn write_if_different_in(netns: &Netns, key: &str, value: &str) -> Result<bool> {
    netns.run(|| write_if_different(key, value))?
}

/// [`write_if_different`] for each `(key, value)` in order, inside `netns`,
/// on one helper thread (entering a namespace costs a thread). Stops at the
/// first error.
pub fn write_all_if_different_in(netns: &Netns, pairs: &[(String, &str)]) -> Result<()> {
    netns.run(|| {
        pairs
            .iter()
            .try_for_each(|(k, v)| write_if_different(k, v).map(|_| ()))
    })?
}

/// [`write`] for each `(key, value)` in order, inside `netns`, in one trip.
/// Stops at the first error.
pub fn write_all_in(netns: &Netns, pairs: &[(String, &str)]) -> Result<()> {
    netns.run(|| pairs.iter().try_for_each(|(k, v)| write(k, v)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert!(sysctl_path("net/../../etc").is_err());
        assert!(sysctl_path("").is_err());
    }
}
