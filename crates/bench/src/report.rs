//! The outputs: a markdown report (medians, p95, ratios, targets), the raw
//! CSV (one row per measurement) and a hand-written SVG of ADD latency
//! against the number of containers for the scale scenario.

use crate::ctx::Row;
use crate::scenarios::{S1, S10, S1M, S2, S3, S4, S5, S6, S7, S9, SCALE_ON_BRIDGE, SCALE_ON_PTP};
use std::fmt::Write as _;

/// Nearest-rank percentile of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

fn values(rows: &[Row], scenario: &str, part: &str, op: &str) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.scenario == scenario && r.part == part && r.op == op)
        .map(|r| r.value)
        .collect()
}

fn p50(rows: &[Row], s: &str, part: &str, op: &str) -> Option<f64> {
    percentile(&values(rows, s, part, op), 50.0)
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// "p50 (p95)" in ms, or "—".
fn cell(rows: &[Row], s: &str, part: &str, op: &str) -> String {
    let v = values(rows, s, part, op);
    match (percentile(&v, 50.0), percentile(&v, 95.0)) {
        (Some(a), Some(b)) => format!("{} ({})", fmt_ms(a), fmt_ms(b)),
        _ => "—".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into())
}

/// p50 of the ADDs of the first or the last `k` containers of the scale run.
fn scale_window(rows: &[Row], part: &str, op: &str, first: bool, k: usize) -> Option<f64> {
    window(rows, S5, part, op, first, k)
}

/// p50 of the first or the last `k` rows of scenario `s` by containers held.
fn window(rows: &[Row], s: &str, part: &str, op: &str, first: bool, k: usize) -> Option<f64> {
    let mut v: Vec<&Row> = rows
        .iter()
        .filter(|r| r.scenario == s && r.part == part && r.op == op)
        .collect();
    v.sort_by_key(|r| r.containers);
    let k = k.min(v.len());
    let w: Vec<f64> = if first {
        v[..k].iter().map(|r| r.value).collect()
    } else {
        v[v.len() - k..].iter().map(|r| r.value).collect()
    };
    percentile(&w, 50.0)
}

/// What the report needs besides the rows.
pub struct Meta {
    pub command: String,
    pub date: String,
    pub machine: Vec<(String, String)>,
    pub peers: Vec<(String, String)>,
    pub sizes: String,
    pub notes: Vec<(String, String)>,
    pub failures: Vec<(String, String)>,
    pub cleanup: Vec<String>,
}

/// A target from the issue and how the run did against it.
pub struct Target {
    pub what: &'static str,
    pub limit: f64,
    /// How `measured` is shown: `×` for a ratio, or ` ms`, ` µs`.
    pub unit: &'static str,
    pub measured: Option<f64>,
    pub how: String,
}

impl Target {
    pub fn status(&self) -> &'static str {
        match self.measured {
            Some(m) if m <= self.limit => "met",
            Some(_) => "missed",
            None => "not measured",
        }
    }
}

pub fn targets(rows: &[Row]) -> Vec<Target> {
    let f = "ferry";
    let r = "reference";
    let add1 = ratio(p50(rows, S1, f, "ADD"), p50(rows, S1, r, "ADD"));
    let floor = ratio(p50(rows, S1, f, "ADD"), p50(rows, S1, "floor-procs", "ADD"));
    let del1 = ratio(p50(rows, S1, f, "DEL"), p50(rows, S1, r, "DEL"));
    let del1m = ratio(p50(rows, S1M, f, "DEL"), p50(rows, S1M, r, "DEL"));
    let chain = ratio(p50(rows, S2, f, "ADD"), p50(rows, S2, r, "ADD"));
    let chain_del = ratio(p50(rows, S2, f, "DEL"), p50(rows, S2, r, "DEL"));
    let padd = ratio(p50(rows, S4, f, "ADD-phase"), p50(rows, S4, r, "ADD-phase"));
    let pdel = ratio(p50(rows, S4, f, "DEL-phase"), p50(rows, S4, r, "DEL-phase"));
    let phases = match (padd, pdel) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    let k = 100;
    let growth = ratio(
        scale_window(rows, f, "ADD", false, k),
        scale_window(rows, f, "ADD", true, k),
    );
    // Each scale target holds for its own network and size: a ptp run is
    // not the bridge's 1,000 ports, nor 2,000 ptp containers the 10,000.
    let held = values(rows, S5, f, "containers")
        .first()
        .copied()
        .unwrap_or(0.0);
    let ran = |on: &str| {
        rows.iter()
            .any(|r| r.scenario == S5 && r.part == "node" && r.op == on)
    };
    let scaled = |on: &str, at_least: f64| growth.filter(|_| ran(on) && held >= at_least);
    let ran_on = if ran(SCALE_ON_PTP) { "ptp" } else { "a bridge" };
    let scale_how = |net: &str| {
        format!("Ferry ADD p50, last {k} / first {k}; this run held {held:.0} containers on {net}")
    };
    let rss: Vec<f64> = rss_pairs(rows)
        .into_iter()
        .filter_map(|(_, a, b)| ratio(a, b))
        .collect();
    let worst_rss = rss.iter().copied().reduce(f64::max);
    let (ipam_first, ipam_last) = ipam_windows(rows);
    // The current targets: issue 15 (performance, round two) for the CNI
    // door, issue 11 for scenario 7, the earlier issues' for the rest.
    vec![
        Target {
            what: "bridge+host-local ADD p50 ≤ 0.30× reference",
            limit: 0.30,
            unit: "×",
            measured: add1,
            how: "Ferry / reference, ADD p50".into(),
        },
        Target {
            what: "bridge+host-local ADD p50 ≤ 1.1× per-process floor",
            limit: 1.1,
            unit: "×",
            measured: floor,
            how: "Ferry / floor-procs, ADD p50".into(),
        },
        Target {
            what: "bridge+host-local DEL p50 ≤ 0.15× reference",
            limit: 0.15,
            unit: "×",
            measured: del1,
            how: "Ferry / reference, DEL p50".into(),
        },
        Target {
            what: "bridge+host-local DEL p50 with ipMasq ≤ 0.15× reference",
            limit: 0.15,
            unit: "×",
            measured: del1m,
            how: "Ferry / reference, DEL p50, both with ipMasq".into(),
        },
        Target {
            what: "full chain ADD p50 ≤ 0.08× reference",
            limit: 0.08,
            unit: "×",
            measured: chain,
            how: "Ferry chain / reference chain, ADD p50".into(),
        },
        Target {
            what: "full chain DEL p50 ≤ 0.05× reference",
            limit: 0.05,
            unit: "×",
            measured: chain_del,
            how: "Ferry chain / reference chain, DEL p50".into(),
        },
        Target {
            what: "parallel ADD-all and DEL-all phases ≤ 0.25× reference",
            limit: 0.25,
            unit: "×",
            measured: phases,
            how: format!(
                "worse of ADD phase {} and DEL phase {}",
                fmt_ratio(padd),
                fmt_ratio(pdel)
            ),
        },
        Target {
            what: "ADD of the last 100 of 1,000 on one bridge ≤ 1.5× the first 100",
            limit: 1.5,
            unit: "×",
            measured: scaled(SCALE_ON_BRIDGE, 1000.0),
            how: scale_how(ran_on),
        },
        Target {
            what: "ADD of the last 100 of 10,000 ptp containers ≤ 1.3× the first 100",
            limit: 1.3,
            unit: "×",
            measured: scaled(SCALE_ON_PTP, 10000.0),
            how: scale_how(ran_on),
        },
        Target {
            what: "CNM `docker run --rm` on a Ferry network ≤ 0.9× Docker's bridge",
            limit: 0.9,
            unit: "×",
            measured: ratio(p50(rows, S7, f, "run"), p50(rows, S7, "docker", "run")),
            how: "Ferry network / Docker bridge network, p50".into(),
        },
        Target {
            what: "CNM RequestAddress, last 1000 ≤ 1.2× first 1000",
            limit: 1.2,
            unit: "×",
            measured: ratio(ipam_last, ipam_first),
            how: format!("ferryd RequestAddress p50, last {IPAM_K} / first {IPAM_K}"),
        },
        Target {
            what: "overlay convergence p50 ≤ 50 ms",
            limit: 50.0,
            unit: " ms",
            measured: p50(rows, S10, "ferry", "convergence"),
            how: "attach on host A to first ping answered from host B, p50, ms".into(),
        },
        Target {
            what: "overlay convergence p99 ≤ 250 ms",
            limit: 250.0,
            unit: " ms",
            measured: percentile(&values(rows, S10, "ferry", "convergence"), 99.0),
            how: "the same, p99, ms".into(),
        },
        Target {
            what: "overlay stream ≥ 0.9× raw VXLAN",
            limit: 1.0 / 0.9,
            unit: "×",
            measured: ratio(
                p50(rows, S10, "raw-vxlan", "iperf3"),
                p50(rows, S10, "ferry", "iperf3"),
            ),
            how: "raw VXLAN / overlay Gbit/s (≤ 1.11 means overlay ≥ 0.9× raw)".into(),
        },
        Target {
            what: "CNI ferry-overlay ADD p50 ≤ 1.3× Ferry's bridge ADD",
            limit: 1.3,
            unit: "×",
            measured: ratio(
                p50(rows, S10, "ferry", "cni-ADD"),
                p50(rows, S10, "bridge", "cni-ADD"),
            ),
            how: "ferry-overlay / bridge+host-local, CNI ADD p50".into(),
        },
        Target {
            what: "one remote endpoint at 3 hosts × 1,000 endpoints ≤ 1.2× the first",
            limit: 1.2,
            unit: "×",
            measured: ratio(
                window(rows, S10, "ferry", "add-peer", false, 100),
                window(rows, S10, "ferry", "add-peer", true, 100),
            ),
            how: "add_peer p50, peers 2,901-3,000 / 1-100".into(),
        },
        Target {
            what: "etcd writes per attachment ≤ 1 (block claims aside)",
            limit: 1.0,
            unit: " writes",
            measured: p50(rows, S10, "ferry", "etcd-writes"),
            how: "etcd revisions per attachment".into(),
        },
        Target {
            what: "peak RSS of one ADD ≤ 0.5× reference",
            limit: 0.5,
            unit: "×",
            measured: worst_rss,
            how: "worst Ferry / reference over the plugins both have".into(),
        },
        Target {
            what: "plugin's report to ferryd ≤ 50 µs",
            limit: ferry_cni::report::BUDGET_MICROS as f64,
            unit: " µs",
            measured: crate::reporting::worst(rows),
            how: "µs per report, worse of ferryd listening and not".into(),
        },
    ]
}

/// Requests per window of scenario 9 (fewer when the run made fewer).
const IPAM_K: usize = 1000;

/// p50 of scenario 9's first and last [`IPAM_K`] RequestAddress calls.
fn ipam_windows(rows: &[Row]) -> (Option<f64>, Option<f64>) {
    let n = values(rows, S9, "ferry", "RequestAddress").len();
    // Two disjoint windows even in a short run.
    let k = IPAM_K.min(n / 2).max(1);
    (
        window(rows, S9, "ferry", "RequestAddress", true, k),
        window(rows, S9, "ferry", "RequestAddress", false, k),
    )
}

/// (plugin, Ferry KiB, reference KiB) for every plugin measured.
fn rss_pairs(rows: &[Row]) -> Vec<(String, Option<f64>, Option<f64>)> {
    let mut names: Vec<String> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.scenario == S6 && !r.op.contains('@'))
    {
        if !names.contains(&r.op) {
            names.push(r.op.clone());
        }
    }
    names
        .into_iter()
        .map(|n| {
            let f = p50(rows, S6, "ferry", &n);
            let r = p50(rows, S6, "reference", &n);
            (n, f, r)
        })
        .collect()
}

fn has(rows: &[Row], s: &str) -> bool {
    rows.iter().any(|r| r.scenario == s)
}

fn notes_for(out: &mut String, meta: &Meta, s: &str) {
    for (_, n) in meta.notes.iter().filter(|(sc, _)| sc == s) {
        let _ = writeln!(out, "- {n}");
    }
    for (_, f) in meta.failures.iter().filter(|(sc, _)| sc == s) {
        let _ = writeln!(out, "- **FAILED**: {f}");
    }
}

fn leftover_cell(rows: &[Row], s: &str, part: &str) -> String {
    let sum = |op: &str| -> Option<f64> {
        let v = values(rows, s, part, op);
        (!v.is_empty()).then(|| v.iter().copied().fold(0.0, f64::max))
    };
    match (
        sum("leftover-links"),
        sum("leftover-leases"),
        sum("leftover-rules"),
    ) {
        (Some(l), Some(le), Some(r)) => format!("{l:.0} links, {le:.0} leases, {r:.0} rules"),
        _ => "—".into(),
    }
}

pub fn markdown(rows: &[Row], meta: &Meta) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "# Ferry side-by-side benchmark\n");
    let _ = writeln!(w, "Command: `{}`  ", meta.command);
    let _ = writeln!(w, "Date: {}  ", meta.date);
    let _ = writeln!(w, "Sizes: {}\n", meta.sizes);
    let _ = writeln!(w, "| machine | |\n| --- | --- |");
    for (k, v) in &meta.machine {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(w, "\n| peer | version |\n| --- | --- |");
    for (k, v) in &meta.peers {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(
        w,
        "\nTimes in ms, p50 with p95 in parentheses; ratios are of p50s. Ferry and the \
         reference run through the same runtime (Ferry's libcni-compatible `CniConfig`, \
         result cache on tmpfs), alternating per cycle, after one untimed warm-up cycle each. \
         DEL is the plugin chain's run; DEL-gone runs from the DEL's start until the host end \
         of the veth has left the node (Ferry's DEL leaves the kernel's part of the delete to \
         a detached child).\n"
    );

    let _ = writeln!(w, "## Summary\n");
    let _ = writeln!(
        w,
        "| scenario | op | Ferry | reference | Ferry / ref | netavark | floor, 1 process | floor, process per plugin | Ferry / floor (per-process) | Ferry / floor (1 process) |"
    );
    let _ = writeln!(
        w,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (s, title) in [
        (S1, "1 bridge+host-local"),
        (S1M, "1 bridge+host-local, ipMasq"),
        (S2, "2 full chain"),
        (S3, "3 ptp+host-local"),
    ] {
        if !has(rows, s) {
            continue;
        }
        for op in ["ADD", "DEL", "DEL-gone"] {
            if op == "DEL-gone" && !rows.iter().any(|r| r.scenario == s && r.op == op) {
                continue;
            }
            let f = p50(rows, s, "ferry", op);
            let _ = writeln!(
                w,
                "| {title} | {op} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(rows, s, "ferry", op),
                cell(rows, s, "reference", op),
                fmt_ratio(ratio(f, p50(rows, s, "reference", op))),
                cell(rows, s, "netavark", op),
                cell(rows, s, "floor-1proc", op),
                cell(rows, s, "floor-procs", op),
                fmt_ratio(ratio(f, p50(rows, s, "floor-procs", op))),
                fmt_ratio(ratio(f, p50(rows, s, "floor-1proc", op))),
            );
        }
    }
    if has(rows, S4) {
        for op in ["ADD-phase", "DEL-phase", "DEL-phase-gone"] {
            let f = p50(rows, S4, "ferry", op);
            let r = p50(rows, S4, "reference", op);
            let _ = writeln!(
                w,
                "| 4 parallel (wall) | {op} | {} | {} | {} | — | — | — | — | — |",
                f.map(fmt_ms).unwrap_or("—".into()),
                r.map(fmt_ms).unwrap_or("—".into()),
                fmt_ratio(ratio(f, r)),
            );
        }
    }
    if has(rows, S5) {
        let k = 100;
        for (op, first) in [("ADD", true), ("ADD", false)] {
            let f = scale_window(rows, "ferry", op, first, k);
            let r = scale_window(rows, "reference", op, first, k);
            let _ = writeln!(
                w,
                "| 5 scale, {} {k} | {op} | {} | {} | {} | — | — | — | — | — |",
                if first { "first" } else { "last" },
                f.map(fmt_ms).unwrap_or("—".into()),
                r.map(fmt_ms).unwrap_or("—".into()),
                fmt_ratio(ratio(f, r)),
            );
        }
    }
    for (name, f, r) in rss_pairs(rows) {
        let kib = |v: Option<f64>| v.map(|v| format!("{v:.0} KiB")).unwrap_or("—".into());
        let _ = writeln!(
            w,
            "| 6 peak RSS | {name} ADD | {} | {} | {} | — | — | — | — | — |",
            kib(f),
            kib(r),
            fmt_ratio(ratio(f, r))
        );
    }

    if has(rows, S7) {
        let f = p50(rows, S7, "ferry", "run");
        let d = p50(rows, S7, "docker", "run");
        let _ = writeln!(
            w,
            "| 7 CNM `docker run --rm` (reference: Docker's bridge network) | run | {} | {} | {} | — | — | — | — | — |",
            cell(rows, S7, "ferry", "run"),
            cell(rows, S7, "docker", "run"),
            fmt_ratio(ratio(f, d)),
        );
    }

    if has(rows, S9) {
        let (first, last) = ipam_windows(rows);
        let _ = writeln!(
            w,
            "| 9 CNM IPAM, RequestAddress last / first (one /18) | RequestAddress | {} | {} | {} | — | — | — | — | — |",
            last.map(fmt_ms).unwrap_or("—".into()),
            first.map(fmt_ms).unwrap_or("—".into()),
            fmt_ratio(ratio(last, first)),
        );
    }

    if has(rows, S10) {
        let _ = writeln!(
            w,
            "| 10 overlay: attach on host A to first ping from host B | converge | {} | — | — | — | — | — | — | — |",
            cell(rows, S10, "ferry", "convergence"),
        );
        let _ = writeln!(
            w,
            "| 10 overlay: CNI `ferry-overlay` ADD (reference: Ferry's bridge ADD) | ADD | {} | {} | {} | — | — | — | — | — |",
            cell(rows, S10, "ferry", "cni-ADD"),
            cell(rows, S10, "bridge", "cni-ADD"),
            fmt_ratio(ratio(
                p50(rows, S10, "ferry", "cni-ADD"),
                p50(rows, S10, "bridge", "cni-ADD")
            )),
        );
    }

    if let Some(section) = crate::dns::markdown(rows) {
        w.push_str(&section);
    }
    if let Some(section) = crate::reporting::markdown(rows) {
        w.push_str(&section);
    }

    let _ = writeln!(w, "\n## Targets\n");
    let _ = writeln!(w, "| target | measured | status |\n| --- | --- | --- |");
    for t in targets(rows) {
        let _ = writeln!(
            w,
            "| {} | {} ({}) | {} |",
            t.what,
            t.measured
                .map(|m| format!("{m:.2}{}", t.unit))
                .unwrap_or_else(|| "—".into()),
            t.how,
            t.status()
        );
    }

    let _ = writeln!(w, "\n## 1. bridge + host-local, sequential\n");
    let _ = writeln!(
        w,
        "Dual-stack (198.18.224-228.0/24, fd00:bec:1::/48), `isGateway`, default routes. \
         netavark: the same bridge network with static IPs, `internal: true` (no NAT), a resident \
         container keeping the bridge up. Leftovers after the last DEL: Ferry {}; reference {}.",
        leftover_cell(rows, S1, "ferry"),
        leftover_cell(rows, S1, "reference")
    );
    notes_for(w, meta, S1);
    if has(rows, S1M) {
        let _ = writeln!(
            w,
            "\nThe same with `ipMasq: true` (198.18.232-233.0/24 and 236.0/24, \
             fd00:bec:1:8-a::/64): Ferry's masquerade is nftables (`inet ferry-masq`), the \
             reference's iptables; netavark's network is its NAT bridge (`internal: false`). No \
             floors (they do not masquerade). Leftovers: Ferry {}; reference {}.",
            leftover_cell(rows, S1M, "ferry"),
            leftover_cell(rows, S1M, "reference")
        );
        notes_for(w, meta, S1M);
    }
    let _ = writeln!(w, "\n## 2. Full chain\n");
    let _ = writeln!(
        w,
        "bridge, host-local, portmap (2 TCP ports), firewall (`backend: iptables`), tuning (a \
         sysctl), bandwidth (ingress and egress). Ferry's chain runs Ferry's plugin for every \
         type Ferry has and the reference's for the rest (the first line below says which), so \
         the ratio is bounded by the reference plugins both chains share. netavark: bridge \
         network with NAT and the same 2 port mappings (no tuning/bandwidth equivalent). \
         Leftovers: Ferry {}; reference {}.",
        leftover_cell(rows, S2, "ferry"),
        leftover_cell(rows, S2, "reference")
    );
    notes_for(w, meta, S2);
    let _ = writeln!(w, "\n## 3. ptp + host-local\n");
    let _ = writeln!(
        w,
        "IPv4 only: the reference ptp waits for IPv6 DAD on the container side (about 1.3 s \
         here), which would measure a kernel timer. Leftovers: Ferry {}; reference {}.",
        leftover_cell(rows, S3, "ferry"),
        leftover_cell(rows, S3, "reference")
    );
    notes_for(w, meta, S3);

    let _ = writeln!(w, "\n## 4. Parallel ADD all, then DEL all\n");
    if has(rows, S4) {
        let _ = writeln!(
            w,
            "| participant | ADD phase (median of rounds) | DEL phase | distinct IPv4 | leftovers after DEL |\n| --- | --- | --- | --- | --- |"
        );
        for part in ["ferry", "reference"] {
            let ips = values(rows, S4, part, "distinct-ips");
            let n = rows
                .iter()
                .find(|r| r.scenario == S4 && r.part == part && r.op == "distinct-ips")
                .map(|r| r.containers)
                .unwrap_or(0);
            let _ = writeln!(
                w,
                "| {part} | {} ms | {} ms | {} | {} |",
                p50(rows, S4, part, "ADD-phase")
                    .map(fmt_ms)
                    .unwrap_or("—".into()),
                p50(rows, S4, part, "DEL-phase")
                    .map(fmt_ms)
                    .unwrap_or("—".into()),
                ips.iter()
                    .copied()
                    .reduce(f64::min)
                    .map(|m| format!("{m:.0}/{n}"))
                    .unwrap_or("—".into()),
                leftover_cell(rows, S4, part),
            );
        }
    }
    notes_for(w, meta, S4);

    let _ = writeln!(w, "\n## 5. Scale\n");
    if has(rows, S5) {
        let held = |part: &str| {
            values(rows, S5, part, "containers")
                .first()
                .copied()
                .unwrap_or(0.0)
        };
        let rl = |cycle: usize| {
            rows.iter()
                .find(|r| r.scenario == S5 && r.op == "ruleset-lines" && r.cycle == cycle)
                .map(|r| format!("{:.0}", r.value))
                .unwrap_or("—".into())
        };
        let _ = writeln!(
            w,
            "Ferry on 198.19.0.0/17, the reference on 198.19.128.0/17 (one /16 node range), ADDs \
             interleaved so both see the same node; containers held: Ferry {:.0}, reference {:.0}. \
             `nft list ruleset`: {} lines before, {} with all containers up, {} after DEL. Plot: \
             `scale.svg`.\n",
            held("ferry"),
            held("reference"),
            rl(0),
            rl(1),
            rl(2)
        );
        let _ = writeln!(
            w,
            "| participant | ADD first 100 | ADD last 100 | last / first | DEL first 100 (node full) | DEL last 100 | leftovers |\n| --- | --- | --- | --- | --- | --- | --- |"
        );
        for part in ["ferry", "reference"] {
            let a0 = scale_window(rows, part, "ADD", true, 100);
            let a1 = scale_window(rows, part, "ADD", false, 100);
            // DEL rows carry the containers remaining; "first" = most remaining.
            let d_full = scale_window(rows, part, "DEL", false, 100);
            let d_empty = scale_window(rows, part, "DEL", true, 100);
            let _ = writeln!(
                w,
                "| {part} | {} | {} | {} | {} | {} | {} |",
                a0.map(fmt_ms).unwrap_or("—".into()),
                a1.map(fmt_ms).unwrap_or("—".into()),
                fmt_ratio(ratio(a1, a0)),
                d_full.map(fmt_ms).unwrap_or("—".into()),
                d_empty.map(fmt_ms).unwrap_or("—".into()),
                leftover_cell(rows, S5, part),
            );
        }
    }
    notes_for(w, meta, S5);

    let _ = writeln!(w, "\n## 6. Peak RSS of one ADD\n");
    let _ = writeln!(
        w,
        "The plugin binary run directly with the CNI environment and its config on stdin, \
         traced to its exit: the figure is `VmHWM` of the plugin process read at its \
         PTRACE_EVENT_EXIT stop. Not wait4's `ru_maxrss`: the kernel folds the RSS of the \
         address space exec replaced into it, so every plugin forked from the bench reported \
         the bench's own RSS. The IPAM plugin that bridge, ptp and macvlan start is a separate \
         process, not included in theirs: it is measured on its own (host-local)."
    );
    if has(rows, S6) {
        let _ = writeln!(
            w,
            "\n| plugin | Ferry peak | Ferry anon / file at exit | reference peak | reference anon / file at exit |\n| --- | --- | --- | --- | --- |"
        );
        let kib = |part: &str, op: &str| {
            p50(rows, S6, part, op)
                .map(|v| format!("{v:.0}"))
                .unwrap_or("—".into())
        };
        for (name, _, _) in rss_pairs(rows) {
            let _ = writeln!(
                w,
                "| {name} | {} KiB | {} / {} | {} KiB | {} / {} |",
                kib("ferry", &name),
                kib("ferry", &format!("{name} anon@exit")),
                kib("ferry", &format!("{name} file@exit")),
                kib("reference", &name),
                kib("reference", &format!("{name} anon@exit")),
                kib("reference", &format!("{name} file@exit")),
            );
        }
    }
    notes_for(w, meta, S6);

    let _ = writeln!(w, "\n## 7. CNM (docker run --rm)\n");
    let _ = writeln!(
        w,
        "The bench starts ferryd (driver and IPAM driver under a name of its own) and a private \
         dockerd (its own data root, exec root, pid file and socket; `--bridge=none`, \
         `--iptables=false`), imports a busybox image, makes a Ferry network (198.18.248.0/24) \
         and a Docker bridge network (198.18.249.0/24), and times `docker run --rm --network \
         NET IMAGE true` on each, alternating every cycle, after one untimed run each: the whole \
         container life (create, network allocate and join, start, exit, leave, release, \
         remove), seen from the docker client. With `--iptables=false` Docker's bridge network \
         adds no firewall rules, while Ferry's network masquerades and isolates in its nftables \
         tables."
    );
    if has(rows, S7) {
        let _ = writeln!(
            w,
            "\n| network | `docker run --rm` p50 (p95), ms | runs | leftovers after `network rm` |\n| --- | --- | --- | --- |"
        );
        for (part, title) in [("ferry", "Ferry (ferryd)"), ("docker", "Docker bridge")] {
            let max = |op: &str| {
                values(rows, S7, part, op)
                    .into_iter()
                    .reduce(f64::max)
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or("—".into())
            };
            let _ = writeln!(
                w,
                "| {title} | {} | {} | {} links, {} rules, {} containers |",
                cell(rows, S7, part, "run"),
                values(rows, S7, part, "run").len(),
                max("leftover-links"),
                max("leftover-rules"),
                max("leftover-containers"),
            );
        }
        let _ = writeln!(
            w,
            "\nFerry / Docker (p50): {}\n",
            fmt_ratio(ratio(
                p50(rows, S7, "ferry", "run"),
                p50(rows, S7, "docker", "run")
            ))
        );
    }
    notes_for(w, meta, S7);

    let _ = writeln!(w, "\n## 8. The floor\n");
    let _ = writeln!(
        w,
        "The namespace/link/address/route work of one bridge ADD (veth created into the \
         namespace, host end enslaved and up, two addresses without DAD, link up, two default \
         routes; DEL: delete the veth) plus the two lease files, by the shortest ferry-linux \
         sequence: in one process inside the bench (`floor, 1 process`: the kernel's cost), and \
         as the two processes a bridge+host-local chain execs (`fbfloor-bridge` execs \
         `fbfloor-ipam`, both this binary, speaking CNI through the same runtime as Ferry: \
         `floor, process per plugin`). The bridge and its gateway addresses exist beforehand, \
         as after a plugin's first ADD. See the scenario 1 rows of the summary."
    );
    notes_for(w, meta, crate::scenarios::S8);

    let _ = writeln!(w, "\n## 9. CNM IPAM at scale\n");
    let _ = writeln!(
        w,
        "The bench starts ferryd (its own sockets and state file, under /var/tmp), asks for \
         one pool (198.18.128.0/18, 16,382 addresses) with `IpamDriver.RequestPool`, then calls \
         `IpamDriver.RequestAddress` on it N times and `IpamDriver.ReleaseAddress` for each \
         address, one HTTP request per connection on the plugin socket, as Docker does. Each \
         call is the whole round trip: connect, request, the state commit, the answer."
    );
    if has(rows, S9) {
        let (first, last) = ipam_windows(rows);
        let n = values(rows, S9, "ferry", "RequestAddress").len();
        let k = IPAM_K.min(n / 2).max(1);
        let _ = writeln!(
            w,
            "\n| RequestAddress p50, first {k}, ms | last {k}, ms | last / first | all {n}: p50 (p95), ms | ReleaseAddress p50 (p95), ms | pools left |\n| --- | --- | --- | --- | --- | --- |\n| {} | {} | {} | {} | {} | {} |",
            first.map(fmt_ms).unwrap_or("—".into()),
            last.map(fmt_ms).unwrap_or("—".into()),
            fmt_ratio(ratio(last, first)),
            cell(rows, S9, "ferry", "RequestAddress"),
            cell(rows, S9, "ferry", "ReleaseAddress"),
            values(rows, S9, "ferry", "leftover-pools")
                .first()
                .map(|v| format!("{v:.0}"))
                .unwrap_or("—".into()),
        );
    }
    notes_for(w, meta, S9);

    let _ = writeln!(w, "\n## 10. The overlay across hosts\n");
    let _ = writeln!(
        w,
        "Two hosts as namespaces on an underlay bridge (198.18.252.0/24), one etcd member on \
         the first, a ferryd per host (`--cluster-store etcd://...`), one overlay network \
         (198.18.253.0/24). Convergence: from the start of `POST /connect` on host A to the \
         first ping answered from a sandbox on host B (polled every 50 ms: one `ping` per \
         try, so the figure includes up to one poll and a process start). etcd writes: the \
         store's revision before and after the attachments, minus the blocks claimed \
         meanwhile, per attachment. Throughput: one iperf3 TCP stream for 3 s, container to \
         container across the hosts, and between the host namespaces over a VXLAN pair made \
         by hand on the same underlay."
    );
    if has(rows, S10) {
        let n = values(rows, S10, "ferry", "convergence").len();
        let gbit = |part: &str| {
            p50(rows, S10, part, "iperf3")
                .map(|v| format!("{v:.2}"))
                .unwrap_or("—".into())
        };
        let _ = writeln!(
            w,
            "\n| convergence, {n} attachments: p50 (p95), ms | p99, ms | etcd writes per attachment | overlay Gbit/s | raw VXLAN Gbit/s | overlay / raw |\n| --- | --- | --- | --- | --- | --- |\n| {} | {} | {} | {} | {} | {} |",
            cell(rows, S10, "ferry", "convergence"),
            percentile(&values(rows, S10, "ferry", "convergence"), 99.0)
                .map(fmt_ms)
                .unwrap_or("—".into()),
            p50(rows, S10, "ferry", "etcd-writes")
                .map(|v| format!("{v:.2}"))
                .unwrap_or("—".into()),
            gbit("ferry"),
            gbit("raw-vxlan"),
            fmt_ratio(ratio(
                p50(rows, S10, "ferry", "iperf3"),
                p50(rows, S10, "raw-vxlan", "iperf3")
            )),
        );
    }
    notes_for(w, meta, S10);

    let _ = writeln!(w, "\n## Notes\n");
    notes_for(w, meta, "run");
    if meta.cleanup.is_empty() {
        let _ = writeln!(w, "- Cleanup: everything the run created was removed.");
    } else {
        for c in &meta.cleanup {
            let _ = writeln!(w, "- Cleanup problem: {c}");
        }
    }
    o
}

pub fn csv(rows: &[Row]) -> String {
    let mut o = String::from("scenario,participant,op,cycle,containers,value,unit\n");
    for r in rows {
        let _ = writeln!(
            o,
            "{},{},{},{},{},{:.4},{}",
            r.scenario, r.part, r.op, r.cycle, r.containers, r.value, r.unit
        );
    }
    o
}

/// A plot series: participant, colour, (containers, ms) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// ADD latency against containers already attached, scenario 5.
pub fn svg(rows: &[Row]) -> String {
    let series: Vec<Series> = [("ferry", "#1f77b4"), ("reference", "#d62728")]
        .into_iter()
        .map(|(part, color)| {
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.scenario == S5 && r.part == part && r.op == "ADD")
                .map(|r| (r.containers as f64, r.value))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (part, color, pts)
        })
        .collect();
    let (w, h) = (900.0, 500.0);
    let (l, r, t, b) = (70.0, 20.0, 40.0, 60.0);
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .collect();
    let xmax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    // Clip the y axis at the 99th percentile so a few outliers do not flatten the plot.
    let ymax = percentile(&all, 99.0).unwrap_or(1.0).max(0.001) * 1.15;
    let x = |v: f64| l + (v / xmax) * (w - l - r);
    let y = |v: f64| h - b - (v.min(ymax) / ymax) * (h - t - b);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">ADD latency against containers already on the network (scenario 5)</text>"#,
        w / 2.0
    );
    // Axes, ticks, grid.
    let _ = writeln!(
        o,
        r#"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>"#,
        h - b,
        w - r,
        h - b,
        h - b
    );
    for i in 0..=5 {
        let xv = xmax * i as f64 / 5.0;
        let yv = ymax * i as f64 / 5.0;
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text>"#,
            x(xv),
            h - b + 18.0,
            xv
        );
        let _ = writeln!(
            o,
            r##"<line x1="{l}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            y(yv),
            w - r,
            y(yv),
            l - 6.0,
            y(yv) + 4.0,
            fmt_ms(yv)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">containers already attached by the same implementation</text>"#,
        (l + w - r) / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">ADD latency (ms)</text>"#,
        (t + h - b) / 2.0
    );
    for (i, (part, color, pts)) in series.iter().enumerate() {
        for (px, py) in pts {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{color}" fill-opacity="0.35"/>"#,
                x(*px),
                y(*py)
            );
        }
        // Rolling median over a window of 5% of the points.
        let win = (pts.len() / 20).max(1);
        let mut path = String::new();
        for j in 0..pts.len() {
            let lo = j.saturating_sub(win / 2);
            let hi = (j + win / 2 + 1).min(pts.len());
            let vals: Vec<f64> = pts[lo..hi].iter().map(|p| p.1).collect();
            if let Some(m) = percentile(&vals, 50.0) {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if path.is_empty() { "M" } else { "L" },
                    x(pts[j].0),
                    y(m)
                );
            }
        }
        if !path.is_empty() {
            let _ = writeln!(
                o,
                r#"<path d="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.trim_end()
            );
        }
        let ly = t + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{part} (points: each ADD; line: rolling median)</text>"#,
            w - r - 330.0,
            ly - 4.0,
            w - r - 310.0,
            ly + 1.0
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(part: &str, op: &str, n: usize, v: f64) -> Row {
        Row {
            scenario: S5,
            part: part.into(),
            op: op.into(),
            cycle: n,
            containers: n,
            value: v,
            unit: "ms",
        }
    }

    /// A scale run of `n` Ferry containers on `on`, ADDs taking 1 ms for
    /// the first half and 2 ms after.
    fn scale_run(on: &'static str, n: usize) -> Vec<Row> {
        let mut rows: Vec<Row> = (0..n)
            .map(|i| row("ferry", "ADD", i, if i < n / 2 { 1.0 } else { 2.0 }))
            .collect();
        rows.push(row("ferry", "containers", n, n as f64));
        rows.push(row("node", on, n, n as f64));
        rows
    }

    fn measured(rows: &[Row], what: &str) -> Option<f64> {
        targets(rows)
            .into_iter()
            .find(|t| t.what.contains(what))
            .and_then(|t| t.measured)
    }

    #[test]
    fn a_scale_run_is_held_to_its_own_networks_target() {
        let bridge = scale_run(SCALE_ON_BRIDGE, 1000);
        assert_eq!(measured(&bridge, "on one bridge"), Some(2.0));
        assert_eq!(measured(&bridge, "ptp containers"), None);
        let ptp = scale_run(SCALE_ON_PTP, 10_000);
        assert_eq!(measured(&ptp, "ptp containers"), Some(2.0));
        assert_eq!(measured(&ptp, "on one bridge"), None);
        // Fewer containers than the target names: not that target's run.
        assert_eq!(
            measured(&scale_run(SCALE_ON_PTP, 2000), "ptp containers"),
            None
        );
        assert_eq!(
            measured(&scale_run(SCALE_ON_BRIDGE, 20), "on one bridge"),
            None
        );
    }

    #[test]
    fn ipam_windows_are_the_first_and_last_requests() {
        let rows: Vec<Row> = (0..3000)
            .map(|i| Row {
                scenario: S9,
                ..row(
                    "ferry",
                    "RequestAddress",
                    i,
                    if i < 1000 { 1.0 } else { 1.5 },
                )
            })
            .collect();
        assert_eq!(ipam_windows(&rows), (Some(1.0), Some(1.5)));
        let t = targets(&rows);
        let t = t
            .iter()
            .find(|t| t.what.contains("RequestAddress"))
            .unwrap();
        assert_eq!(t.measured, Some(1.5));
        // A short run: two halves.
        assert_eq!(ipam_windows(&rows[..1500]), (Some(1.0), Some(1.5)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&[3.0], 95.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn scale_windows_and_svg() {
        let rows: Vec<Row> = (0..300)
            .flat_map(|i| {
                [
                    row("ferry", "ADD", i, 1.0 + i as f64 / 1000.0),
                    row("reference", "ADD", i, 10.0),
                ]
            })
            .collect();
        let first = scale_window(&rows, "ferry", "ADD", true, 100).unwrap();
        let last = scale_window(&rows, "ferry", "ADD", false, 100).unwrap();
        assert!(first < last);
        let s = svg(&rows);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<circle").count(), 600);
    }

    #[test]
    fn target_status() {
        let t = Target {
            what: "x",
            limit: 0.2,
            unit: "×",
            measured: Some(0.1),
            how: String::new(),
        };
        assert_eq!(t.status(), "met");
    }
}
