//! Kernel checks, in the caller's network namespace: modules, forwarding
//! sysctls, iptables-legacy tables, a dropping FORWARD policy and `dying*`
//! links left by an interrupted delete.

use super::{shell_word, Finding};
use ferry_linux::nft::{self, Hook, Policy, Table};
use ferry_linux::{sysctl, Netlink};
use ferry_linux::{LinkSpec, VxlanSpec};
use std::path::Path;

/// The modules Ferry relies on, and what for.
const MODULES: &[(&str, &str)] = &[
    ("bridge", "bridge networks"),
    ("veth", "bridge and ptp attachments"),
    ("vxlan", "overlay networks"),
    ("nf_tables", "port mapping, firewall and masquerade"),
    (
        "br_netfilter",
        "nftables rules on traffic between containers of one bridge",
    ),
    ("ifb", "the bandwidth plugin's egress shaping"),
];

/// Modules present: loaded (`/proc/modules`), built in or loaded
/// (`/sys/module`), or, with `probe`, usable: the feature works in a scratch
/// namespace (built-in modules without parameters have no `/sys/module`
/// entry, and a module the kernel loads on demand is as good as loaded).
pub fn modules(proc_modules: &Path, sys_module: &Path, probe: bool) -> Vec<Finding> {
    let loaded = std::fs::read_to_string(proc_modules).unwrap_or_default();
    let loaded: Vec<&str> = loaded
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // Without the probe (not asked, or not allowed: it needs root), only
    // the files speak, and a missing module says so.
    let (probed, unprobed) = match probe {
        false => (Vec::new(), " (not probed: --no-probe)".to_string()),
        true => match ferry_linux::in_scratch(probe_features) {
            Ok(p) => (p, String::new()),
            Err(e) => (Vec::new(), format!(" (not probed: {e})")),
        },
    };
    let mut out = Vec::new();
    for (name, why) in MODULES {
        let present =
            loaded.contains(name) || sys_module.join(name).exists() || probed.contains(name);
        if !present {
            out.push(Finding::problem(
                "modules",
                format!(
                    "kernel module {name} is {} (needed for {why}){unprobed}",
                    if unprobed.is_empty() {
                        "missing"
                    } else {
                        "not listed as loaded"
                    }
                ),
                if super::is_root() {
                    format!("modprobe {name}")
                } else {
                    format!("run ferry doctor as root (or modprobe {name})")
                },
            ));
        }
    }
    if out.is_empty() {
        let names: Vec<&str> = MODULES.iter().map(|(n, _)| *n).collect();
        out.push(Finding::ok(
            "modules",
            format!("{} present", names.join(", ")),
        ));
    }
    out
}

/// The features that work, tried in a scratch namespace (run by
/// [`ferry_linux::in_scratch`]: what it creates goes with the namespace).
fn probe_features() -> Vec<&'static str> {
    let mut ok = Vec::new();
    if let Ok(mut nl) = Netlink::new() {
        let links = [
            ("bridge", LinkSpec::bridge("probe0")),
            ("veth", LinkSpec::veth("probe1", "probe2")),
            (
                "vxlan",
                LinkSpec::vxlan(
                    "probe3",
                    VxlanSpec {
                        vni: 1,
                        ..VxlanSpec::default()
                    },
                ),
            ),
        ];
        for (name, spec) in links {
            if nl.create_link(&spec).is_ok() {
                ok.push(name);
            }
        }
        if nl.create_ifb("probe4", None, None).is_ok() {
            ok.push("ifb");
        }
    }
    if nft::Socket::new().and_then(|mut s| s.tables()).is_ok() {
        ok.push("nf_tables");
    }
    if Path::new("/proc/sys/net/bridge").exists() {
        ok.push("br_netfilter");
    }
    ok
}

/// Forwarding: IPv4 always; IPv6 when this namespace has a global IPv6
/// address (a node without IPv6 does not need it).
pub fn forwarding() -> Vec<Finding> {
    let mut out = Vec::new();
    let v4 = "net.ipv4.ip_forward";
    match sysctl::read(v4) {
        Ok(v) if v.trim() == "0" => out.push(Finding::problem(
            "sysctl",
            format!("{v4} is 0: containers' traffic is not routed past this host"),
            format!("sysctl -w {v4}=1"),
        )),
        Ok(_) => out.push(Finding::ok("sysctl", format!("{v4} is 1"))),
        Err(e) => out.push(Finding::problem(
            "sysctl",
            format!("cannot read {v4}: {e}"),
            format!("sysctl -w {v4}=1"),
        )),
    }
    let v6 = "net.ipv6.conf.all.forwarding";
    match sysctl::read(v6) {
        // No /proc/sys/net/ipv6: IPv6 is off in this kernel.
        Err(_) => out.push(Finding::ok("sysctl", "IPv6 is off, no forwarding needed")),
        Ok(v) if v.trim() != "0" => out.push(Finding::ok("sysctl", format!("{v6} is 1"))),
        Ok(_) if has_global_ipv6() => out.push(Finding::problem(
            "sysctl",
            format!("{v6} is 0 on a node with IPv6 addresses: containers' IPv6 traffic is not routed past this host"),
            format!("sysctl -w {v6}=1"),
        )),
        Ok(_) => out.push(Finding::ok(
            "sysctl",
            format!("{v6} is 0 (no global IPv6 address here)"),
        )),
    }
    out
}

fn has_global_ipv6() -> bool {
    Netlink::new()
        .and_then(|mut nl| nl.addresses(None, ferry_linux::Family::V6))
        .map(|addrs| addrs.iter().any(|a| a.scope == 0))
        .unwrap_or(false)
}

/// iptables-legacy (x_tables) tables: their rules apply to the same
/// packets, but nftables (and so Ferry) cannot see them.
pub fn iptables_legacy() -> Vec<Finding> {
    let mut out = Vec::new();
    for (file, tool) in [
        ("/proc/net/ip_tables_names", "iptables-legacy"),
        ("/proc/net/ip6_tables_names", "ip6tables-legacy"),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for table in text.split_whitespace() {
            out.push(Finding::problem(
                "iptables-legacy",
                format!("{tool} table {table} is in use: its rules act on containers' traffic, out of nftables' (and Ferry's) sight"),
                format!(
                    "{tool}-save -t {table} (review; move what is needed to nftables), then {tool} -t {table} -F && {tool} -t {table} -X"
                ),
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::ok("iptables-legacy", "no iptables-legacy tables"));
    }
    out
}

/// A `filter` base chain on the forward hook with policy drop, in a table
/// that is not Ferry's, drops Ferry's forwarded traffic (nftables runs
/// every base chain; a drop anywhere is final) unless it holds Ferry's
/// accept rule ([`ferry_drivers::forward`]).
pub fn forward_policy() -> Vec<Finding> {
    let check = "forward-policy";
    let found = (|| -> ferry_linux::Result<Vec<Finding>> {
        let mut sock = nft::Socket::new()?;
        let mut out = Vec::new();
        for t in sock.tables()? {
            if nft::is_ferry_table(&t.name) {
                continue;
            }
            let table = Table::new(t.family, t.name.clone());
            let dropping: Vec<_> = sock
                .chains(&table)?
                .into_iter()
                .filter(|c| {
                    matches!(c.hook, Some((Hook::Forward, _)))
                        && c.chain_type.as_deref() == Some("filter")
                        && c.policy == Some(Policy::Drop)
                })
                .collect();
            if dropping.is_empty() {
                continue;
            }
            let rules = sock.rules(&table)?;
            for c in dropping {
                let accepted = rules.iter().any(|r| {
                    r.chain == c.name
                        && r.comment.as_deref() == Some(ferry_drivers::forward::COMMENT)
                });
                let place = format!(
                    "{} {} {}",
                    t.family,
                    shell_word(&t.name),
                    shell_word(&c.name)
                );
                if accepted {
                    out.push(Finding::ok(
                        check,
                        format!("chain {place} drops by default but lets Ferry's traffic through (Ferry's rule)"),
                    ));
                    continue;
                }
                let ip = if t.family == nft::Family::Ip6 {
                    "ip6"
                } else {
                    "ip"
                };
                out.push(Finding::problem(
                    check,
                    format!("chain {place} (forward hook, not Ferry's) has policy drop: it drops containers' forwarded traffic"),
                    format!(
                        "nft insert rule {place} {ip} saddr SUBNET accept; nft insert rule {place} {ip} daddr SUBNET accept (for each container subnet; the firewall plugin does this for its containers)"
                    ),
                ));
            }
        }
        Ok(out)
    })();
    match found {
        Ok(out) if out.is_empty() => vec![Finding::ok(check, "no forward chain drops by default")],
        Ok(out) => out,
        Err(e) => vec![Finding::problem(
            check,
            format!("cannot list nftables: {e}"),
            if super::is_root() {
                "modprobe nf_tables"
            } else {
                "run ferry doctor as root"
            },
        )],
    }
}

/// Links renamed `dying*` by a detached delete whose child never finished.
pub fn dying_links() -> Vec<Finding> {
    let check = "dying-links";
    match Netlink::new().and_then(|mut nl| nl.links()) {
        Ok(links) => {
            let out: Vec<Finding> = links
                .iter()
                .filter(|l| l.name.starts_with("dying"))
                .map(|l| {
                    Finding::problem(
                        check,
                        format!("link {} is left over from an interrupted delete", l.name),
                        format!("ip link del {}", l.name),
                    )
                })
                .collect();
            if out.is_empty() {
                vec![Finding::ok(check, "no leftover dying* links")]
            } else {
                out
            }
        }
        Err(e) => vec![Finding::problem(
            check,
            format!("cannot list links: {e}"),
            "run ferry doctor as root",
        )],
    }
}
