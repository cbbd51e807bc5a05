//! Everything the benchmark creates is registered here the moment it exists
//! (an attachment right after its ADD, a namespace right after it is
//! created) and removed when the benchmark is done with it, or at the end of
//! the run (normal exit, failure or Ctrl-C) in a fixed order: DEL for every
//! attachment still up, then daemons, links, namespaces, files.
//!
//! The release profile aborts on panic, so nothing here relies on `Drop`
//! during unwinding: `main` calls [`Janitor::run_all`] on every path out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// When a registered item is undone, earlier stages first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// A CNI DEL or netavark teardown for an attachment still up.
    Attachment,
    /// Daemons (dockerd, then ferryd), after the attachments and before
    /// the links their networks may leave.
    Daemon,
    /// Host links (bridges, helper veths).
    Link,
    /// Named network namespaces.
    Netns,
    /// Directories and files (leases, caches, plugin dirs).
    Files,
}

type Undo = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// A handle on one registered item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// The registry of things to undo.
#[derive(Default)]
pub struct Janitor {
    next: AtomicU64,
    items: Mutex<BTreeMap<u64, (Stage, String, Undo)>>,
}

impl Janitor {
    fn items(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (Stage, String, Undo)>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `undo` for `what`.
    pub fn push(
        &self,
        stage: Stage,
        what: impl Into<String>,
        undo: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Ticket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.items()
            .insert(id, (stage, what.into(), Box::new(undo)));
        Ticket(id)
    }

    /// The item was undone by other means: forget it.
    pub fn forget(&self, t: Ticket) {
        self.items().remove(&t.0);
    }

    /// Undoes one item now.
    pub fn run(&self, t: Ticket) -> Result<(), String> {
        let item = self.items().remove(&t.0);
        match item {
            Some((_, what, undo)) => undo().map_err(|e| format!("{what}: {e}")),
            None => Ok(()),
        }
    }

    /// Undoes everything still registered, stage by stage, newest first
    /// within a stage; returns what could not be undone.
    pub fn run_all(&self) -> Vec<String> {
        let mut all: Vec<(u64, (Stage, String, Undo))> =
            std::mem::take(&mut *self.items()).into_iter().collect();
        all.sort_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(&a.0)));
        let mut problems = Vec::new();
        for (_, (_, what, undo)) in all {
            if let Err(e) = undo() {
                problems.push(format!("{what}: {e}"));
            }
        }
        problems
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM request a stop: the current operation finishes
/// (or fails, when the terminal's SIGINT reached the plugin too), then the
/// run unwinds through its normal cleanup.
pub fn install_stop_handler() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to a static atomic, which is
        // async-signal-safe; no other handler for these signals is relied on.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            eprintln!(
                "ferry-bench: cannot install the {sig} handler ({e}); Ctrl-C will skip cleanup"
            );
        }
    }
}

/// True once a stop was requested.
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fails with "interrupted" once a stop was requested.
pub fn check_stop() -> Result<(), String> {
    if stopped() {
        Err("interrupted (SIGINT/SIGTERM)".into())
    } else {
        Ok(())
    }
}
