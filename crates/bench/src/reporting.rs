//! Scenario 12: the plugins' cost of reporting each run to ferryd (one
//! datagram, issue 14), with ferryd's socket listening and with nobody
//! there. Measured in this process by the very function the plugins call
//! (`ferry_cni::report::measure_cost`), so the figure is the send alone,
//! without a process start around it.

use crate::ctx::{Ctx, Row};
use ferry_cni::report::{measure_cost, BUDGET_MICROS};
use std::fmt::Write as _;

pub const S12: &str = "12-report-cost";
/// Rounds of [`SENDS`] reports each; the report gives their median.
const ROUNDS: usize = 5;
const SENDS: u32 = 2000;
/// Row ops: mean µs per report.
pub const WITHOUT: &str = "no-listener";
pub const WITH: &str = "listener";

pub fn report_cost(ctx: &Ctx) -> Result<(), String> {
    let path = ctx.work.join("report-cost.sock");
    for round in 0..ROUNDS {
        let cost = measure_cost(&path, SENDS).map_err(|e| format!("{}: {e}", path.display()))?;
        if cost.received == 0 {
            return Err("the listener received no report".into());
        }
        let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        ctx.record(S12, "ferry", WITHOUT, round, 0, us(cost.without), "us");
        ctx.record(S12, "ferry", WITH, round, 0, us(cost.with), "us");
    }
    Ok(())
}

/// The worse of the two medians, µs (for the target).
pub fn worst(rows: &[Row]) -> Option<f64> {
    let a = median(rows, WITHOUT)?;
    let b = median(rows, WITH)?;
    Some(a.max(b))
}

fn median(rows: &[Row], op: &str) -> Option<f64> {
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| r.scenario == S12 && r.op == op)
        .map(|r| r.value)
        .collect();
    crate::report::percentile(&v, 50.0)
}

/// The scenario's report section.
pub fn markdown(rows: &[Row]) -> Option<String> {
    let without = median(rows, WITHOUT)?;
    let with = median(rows, WITH)?;
    let mut w = String::new();
    let _ = writeln!(w, "\n## 12. Plugin reporting cost\n");
    let _ = writeln!(
        w,
        "A plugin's one non-blocking datagram to ferryd's metrics socket per run: the mean \
         of {SENDS} sends, median of {ROUNDS} rounds, in the bench process with the plugins' \
         own send function.\n"
    );
    let _ = writeln!(
        w,
        "| ferryd | µs per report | budget | status |\n| --- | --- | --- | --- |"
    );
    let budget = BUDGET_MICROS as f64;
    for (title, v) in [("not listening", without), ("listening", with)] {
        let status = if v <= budget { "met" } else { "missed" };
        let _ = writeln!(w, "| {title} | {v:.1} | {budget:.0} µs | {status} |");
    }
    Some(w)
}
