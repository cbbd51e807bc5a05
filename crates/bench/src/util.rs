//! Setup and inspection helpers: namespaces, bridges, leftover checks. None
//! of this runs inside a timed window; `ip` and `nft` are used only to look
//! for leftovers and to count the ruleset.

use crate::cleanup::{Janitor, Stage, Ticket};
use ferry_linux::{AddrOptions, Netlink, Netns};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Creates the named namespace `/run/netns/NAME`, registered for removal.
pub fn create_netns(j: &Janitor, name: &str) -> Result<(String, Ticket), String> {
    let ns = Netns::create(name).map_err(|e| format!("create namespace {name}: {e}"))?;
    let path = ns.path().display().to_string();
    drop(ns);
    Ok((path, own_netns(j, name)))
}

/// Registers namespace `/run/netns/NAME` (made by someone else) for removal.
pub fn own_netns(j: &Janitor, name: &str) -> Ticket {
    let n = name.to_string();
    j.push(
        Stage::Netns,
        format!("namespace {name}"),
        move || match Netns::delete(&n) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// Deletes host link `name` if it exists.
pub fn delete_link(name: &str) -> Result<(), String> {
    let mut nl = Netlink::new().map_err(|e| e.to_string())?;
    match nl.link_by_name(name) {
        Ok(l) => match nl.delete_link(l.index) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// True when host link `name` exists.
pub fn link_exists(name: &str) -> bool {
    Netlink::new()
        .map(|mut nl| nl.link_by_name(name).is_ok())
        .unwrap_or(false)
}

/// Waits until none of the host links `names` exists (polling every 0.2 ms,
/// at most 10 s); returns false on timeout.
pub fn wait_links_gone(names: &[String]) -> bool {
    let Ok(mut nl) = Netlink::new() else {
        return false;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left: Vec<&String> = names.iter().collect();
    while !left.is_empty() {
        left.retain(|n| !matches!(nl.link_by_name(n), Err(e) if e.is_not_found()));
        if left.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Registers host link `name` (created by a plugin or by us) for removal.
pub fn own_link(j: &Janitor, name: &str) -> Ticket {
    let n = name.to_string();
    j.push(Stage::Link, format!("link {name}"), move || delete_link(&n))
}

/// Registers a directory for removal.
pub fn own_dir(j: &Janitor, dir: &Path) -> Ticket {
    let d = dir.to_path_buf();
    j.push(
        Stage::Files,
        format!("directory {}", dir.display()),
        move || match std::fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// The node-wide firewall tables the reference plugins, netavark and
/// Ferry's plugins create and keep after their last DEL (the reference's
/// `CNI-*` chains, netavark's, Ferry's tables): those that did not exist
/// when the run began go at its end, after Ferry's FORWARD rule (registered
/// before it, so it runs after it); Ferry's only when no element is in them.
pub fn own_new_firewall_tables(j: &Janitor) {
    let created = ferry_testkit::CreatedTables::absent_now();
    j.push(
        Stage::Files,
        "firewall tables the run created",
        move || match created.remove() {
            left if left.is_empty() => Ok(()),
            left => Err(format!("could not delete {left:?}")),
        },
    );
}

/// Ferry's firewall inserts one rule into an iptables `filter FORWARD`
/// chain when one exists (the reference firewall and netavark make it in
/// scenario 2), and keeps it like the reference keeps `CNI-FORWARD`: when
/// this run put it there, it goes at the end.
pub fn own_forward_rule(j: &Janitor) {
    use ferry_drivers::{firewall, forward, state_dir};
    // Per family: a rule that was there before the run is not ours to remove.
    let had = match ferry_linux::nft::Socket::new()
        .ok()
        .and_then(|mut s| forward::holders(&mut s).ok())
    {
        Some(h) => h,
        None => return,
    };
    j.push(Stage::Files, "Ferry's iptables FORWARD rule", move || {
        let mut s = ferry_linux::nft::Socket::new().map_err(|e| e.to_string())?;
        forward::remove_except(&mut s, &firewall::store(&state_dir()), &had)
            .map_err(|e| e.to_string())
    });
}

/// Creates a bridge carrying `gateways` (no DAD), up: the state the bridge
/// plugin leaves after its first ADD, for the floor to start from.
pub fn create_bridge(j: &Janitor, name: &str, gateways: &[IpNet]) -> Result<(), String> {
    let mut nl = Netlink::new().map_err(|e| e.to_string())?;
    nl.create_link(&ferry_linux::LinkSpec::bridge(name))
        .map_err(|e| format!("create bridge {name}: {e}"))?;
    own_link(j, name);
    let br = nl.link_by_name(name).map_err(|e| e.to_string())?;
    for gw in gateways {
        let opts = AddrOptions {
            nodad: true,
            ..AddrOptions::default()
        };
        nl.add_address(br.index, *gw, opts)
            .map_err(|e| format!("add {gw} to {name}: {e}"))?;
    }
    nl.set_up(br.index).map_err(|e| e.to_string())
}

/// The `n`th host address of `net`, counting from the network address.
pub fn nth(net: &IpNet, n: u128) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(n as u32)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(n)).into()),
    }
}

/// Output of a command, or an empty string when it cannot run (oracles only).
pub fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft list ruleset`, when nft is there.
pub fn nft_ruleset() -> Option<String> {
    output("nft", &["list", "ruleset"])
}

/// A rule line without its counters, to compare rules across time.
pub fn normalize_rule(line: &str) -> String {
    let mut out = Vec::new();
    let mut skip = false;
    for tok in line.split_whitespace() {
        if skip {
            skip = false;
            continue;
        }
        if tok == "packets" || tok == "bytes" {
            skip = true;
            continue;
        }
        out.push(tok);
    }
    out.join(" ")
}

/// The normalized lines of the ruleset now (empty without nft).
pub fn ruleset_lines() -> HashSet<String> {
    nft_ruleset()
        .map(|rs| rs.lines().map(normalize_rule).collect())
        .unwrap_or_default()
}

/// Lines of `ruleset` that mention an address or prefix inside one of `nets`.
pub fn rules_mentioning(ruleset: &str, nets: &[IpNet]) -> Vec<String> {
    ruleset
        .lines()
        .filter(|line| {
            line.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':' || c == '/'))
                .filter(|t| t.contains('.') || t.contains(':'))
                .any(|tok| {
                    let addr = tok
                        .parse::<IpNet>()
                        .map(|n| n.addr())
                        .or_else(|_| tok.parse::<IpAddr>());
                    addr.is_ok_and(|a| nets.iter().any(|n| n.contains(&a)))
                })
        })
        .map(|l| l.trim().to_string())
        .collect()
}

/// Leftovers after DEL: links still enslaved to `bridge` (if given), links
/// other than `lo` in the namespaces, lease files in `lease_dir`, rules
/// mentioning `nets` that were not there when the scenario started
/// (`baseline`: another engineer's dockerd may own rules in 198.19.0.0/16).
#[derive(Debug, Default, Clone)]
pub struct Leftovers {
    pub links: usize,
    pub leases: usize,
    pub rules: usize,
    pub detail: Vec<String>,
}

pub fn leftovers(
    bridge: Option<&str>,
    namespaces: &[String],
    lease_dir: Option<&Path>,
    nets: &[IpNet],
    baseline: &HashSet<String>,
) -> Leftovers {
    let mut l = Leftovers::default();
    if let Some(br) = bridge {
        if let Ok(mut nl) = Netlink::new() {
            if let Ok(b) = nl.link_by_name(br) {
                for link in nl.links().unwrap_or_default() {
                    if link.master == Some(b.index) {
                        l.links += 1;
                        l.detail.push(format!("port {} on {br}", link.name));
                    }
                }
            }
        }
    }
    for ns in namespaces {
        let Ok(handle) = Netns::open(ns) else {
            continue;
        };
        let Ok(mut nl) = handle.netlink() else {
            continue;
        };
        for link in nl.links().unwrap_or_default() {
            if link.name != "lo" {
                l.links += 1;
                l.detail.push(format!("{} in {ns}", link.name));
            }
        }
    }
    if let Some(dir) = lease_dir {
        for f in lease_files(dir) {
            l.leases += 1;
            l.detail.push(format!("lease {}", dir.join(f).display()));
        }
    }
    if let Some(rs) = nft_ruleset() {
        for r in rules_mentioning(&rs, nets)
            .into_iter()
            .filter(|r| !baseline.contains(&normalize_rule(r)))
        {
            l.rules += 1;
            l.detail.push(format!("rule: {r}"));
        }
    }
    l
}

/// Lease files of a host-local data directory (not the lock, the
/// last-reserved markers or Ferry's release index).
pub fn lease_files(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip") && f != "ferry-index")
        .collect()
}

/// Short unique tag for this run's names (base-36 of pid and clock).
pub fn make_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
        .unwrap_or(0);
    let mut v = (u64::from(std::process::id()) * 7919 + nanos) % (36u64.pow(4));
    let mut s = String::new();
    for _ in 0..4 {
        let d = (v % 36) as u32;
        s.push(char::from_digit(d, 36).unwrap_or('0'));
        v /= 36;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_mentioning_matches_addresses_and_prefixes_inside() {
        let nets: Vec<IpNet> = vec![
            "198.18.236.0/24".parse().unwrap(),
            "fd00:bec:4::/64".parse().unwrap(),
        ];
        let rs = "ip saddr 198.18.236.5 accept\n\
                  ip daddr 198.18.23.5 drop\n\
                  ip6 saddr fd00:bec:4::/64 masquerade\n\
                  ip saddr 198.18.236.0/24 counter\n\
                  tcp dport 8080 accept\n";
        let hits = rules_mentioning(rs, &nets);
        assert_eq!(hits.len(), 3, "{hits:?}");
    }

    #[test]
    fn nth_counts_from_the_network() {
        let n: IpNet = "198.19.0.0/16".parse().unwrap();
        assert_eq!(nth(&n, 300).to_string(), "198.19.1.44");
    }
}
