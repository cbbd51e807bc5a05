//! On-disk CNI state: cache entries of attachments whose namespace is gone
//! (DEL never ran), and host-local leases no cache entry accounts for.

use super::{shell_word, Finding};
use ferry_cni::cache::{Cache, CachedAttachment, DEFAULT_CACHE_DIR};
use std::net::IpAddr;
use std::path::Path;

/// Cache entries whose namespace path no longer exists: the container went
/// without a DEL, so its links, leases and rules may still be held.
pub fn stale_cache(cache_dir: &Path) -> Vec<Finding> {
    let check = "cni-cache";
    let entries = Cache::new(cache_dir).list(None);
    let out: Vec<Finding> = entries
        .iter()
        .filter(|c| !c.netns.is_empty() && !Path::new(&c.netns).exists())
        .map(|c| {
            Finding::problem(
                check,
                format!(
                    "attachment {}/{} of network {} is cached but its namespace {} is gone (DEL never ran)",
                    c.container_id, c.if_name, c.network_name, c.netns
                ),
                del_command(cache_dir, c),
            )
        })
        .collect();
    if out.is_empty() {
        vec![Finding::ok(
            check,
            format!("{} cached attachments, none stale", entries.len()),
        )]
    } else {
        out
    }
}

/// `ferry cni del` with the cached configuration (it succeeds with the
/// namespace gone and releases what ADD took).
fn del_command(cache_dir: &Path, c: &CachedAttachment) -> String {
    let dir = if cache_dir == Path::new(DEFAULT_CACHE_DIR) {
        String::new()
    } else {
        format!(" --cache-dir {}", shell_word(&cache_dir.to_string_lossy()))
    };
    format!(
        "ferry cni{dir} del {} {} --container-id {} --ifname {}",
        shell_word(&c.network_name),
        shell_word(&c.netns),
        shell_word(&c.container_id),
        shell_word(&c.if_name)
    )
}

/// host-local lease files (`<dir>/<network>/<ip>`, holding `ID\r\nIFNAME`)
/// whose attachment has no cache entry: no runtime will ever DEL them.
pub fn orphan_leases(leases_dir: &Path, cache_dir: &Path) -> Vec<Finding> {
    let check = "leases";
    let cached = Cache::new(cache_dir).list(None);
    let mut out = Vec::new();
    let mut leases = 0;
    let networks = std::fs::read_dir(leases_dir)
        .into_iter()
        .flatten()
        .flatten();
    for net in networks.filter(|e| e.path().is_dir()) {
        let network = net.file_name().to_string_lossy().into_owned();
        for lease in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = lease.file_name().to_string_lossy().into_owned();
            // Lease files are named by their address; lock, last_reserved_ip.N
            // and Ferry's index are not leases.
            if name.parse::<IpAddr>().is_err() {
                continue;
            }
            leases += 1;
            let text = std::fs::read_to_string(lease.path()).unwrap_or_default();
            let mut lines = text.lines().map(str::trim);
            let id = lines.next().unwrap_or_default();
            let ifname = lines.next().unwrap_or_default();
            let known = cached.iter().any(|c| {
                c.network_name == network
                    && c.container_id == id
                    && (ifname.is_empty() || c.if_name == ifname)
            });
            if !known {
                let path = lease.path();
                out.push(Finding::problem(
                    check,
                    format!(
                        "lease {name} of network {network} (held by {id}/{ifname}) has no cache entry: no runtime will release it"
                    ),
                    format!("rm {}", shell_word(&path.to_string_lossy())),
                ));
            }
        }
    }
    if out.is_empty() {
        vec![Finding::ok(
            check,
            format!("{leases} leases, each with a cache entry"),
        )]
    } else {
        out
    }
}
