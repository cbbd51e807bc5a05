//! The run's shared state: where things are, the sizes, the janitor, and
//! the measurements collected so far.

use crate::cleanup::Janitor;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// One measurement (one CSV row).
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    pub part: String,
    pub op: String,
    /// Cycle, round, or container index.
    pub cycle: usize,
    /// Containers of this participant on the node before the operation.
    pub containers: usize,
    pub value: f64,
    pub unit: &'static str,
}

/// Sizes of the run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub cycles: usize,
    pub namespaces: usize,
    pub parallel: usize,
    pub rounds: usize,
    pub scale: usize,
    /// `bridge` or `ptp`.
    pub scale_plugin: String,
    /// `docker run --rm` cycles per network (scenario 7).
    pub cnm_cycles: usize,
    /// RequestAddress (then ReleaseAddress) calls on one pool (scenario 9).
    pub ipam_requests: usize,
    /// Attachments timed in the overlay scenario (10).
    pub overlay_attachments: usize,
    /// Seconds of each dnsperf run in the DNS scenario (11).
    pub dns_seconds: u64,
    /// Concurrent requests of the socket burst (scenario 23).
    pub socket_requests: usize,
}

pub struct Ctx {
    /// Unique 4-character tag in every name this run creates.
    pub tag: String,
    /// Work directory (on tmpfs): plugin dirs, lease dirs, caches.
    pub work: PathBuf,
    /// CNI_PATH giving Ferry's plugins (and the reference for the rest).
    pub ferry_dir: Option<PathBuf>,
    /// The reference plugins.
    pub reference: Option<PathBuf>,
    /// CNI_PATH with the per-process floor's two halves.
    pub floor_dir: PathBuf,
    pub netavark: Option<PathBuf>,
    /// ferryd (scenario 7), when wanted and available.
    pub ferryd: Option<PathBuf>,
    pub sizes: Sizes,
    pub janitor: Janitor,
    rows: Mutex<Vec<Row>>,
    notes: Mutex<Vec<(String, String)>>,
    rule_baseline: Mutex<HashSet<String>>,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tag: String,
        work: PathBuf,
        ferry_dir: Option<PathBuf>,
        reference: Option<PathBuf>,
        floor_dir: PathBuf,
        netavark: Option<PathBuf>,
        ferryd: Option<PathBuf>,
        sizes: Sizes,
        janitor: Janitor,
    ) -> Ctx {
        Ctx {
            tag,
            work,
            ferry_dir,
            reference,
            floor_dir,
            netavark,
            ferryd,
            sizes,
            janitor,
            rows: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            rule_baseline: Mutex::new(HashSet::new()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        scenario: &'static str,
        part: &str,
        op: &str,
        cycle: usize,
        containers: usize,
        value: f64,
        unit: &'static str,
    ) {
        self.rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Row {
                scenario,
                part: part.to_string(),
                op: op.to_string(),
                cycle,
                containers,
                value,
                unit,
            });
    }

    /// A line for the report, under `scenario`.
    pub fn note(&self, scenario: &str, msg: impl Into<String>) {
        let msg = msg.into();
        eprintln!("ferry-bench: [{scenario}] {msg}");
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((scenario.to_string(), msg));
    }

    /// Remembers the ruleset as it is now: leftover checks ignore these lines.
    pub fn set_rule_baseline(&self) {
        *self.rule_baseline.lock().unwrap_or_else(|p| p.into_inner()) =
            crate::util::ruleset_lines();
    }

    pub fn rule_baseline(&self) -> HashSet<String> {
        self.rule_baseline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn rows(&self) -> Vec<Row> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn notes(&self) -> Vec<(String, String)> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A name unique to this run: `fb` + tag + `rest` (at most 15 bytes).
    pub fn name(&self, rest: &str) -> String {
        let n = format!("fb{}{rest}", self.tag);
        debug_assert!(n.len() <= 15, "{n} is longer than IFNAMSIZ");
        n
    }
}
