//! ferryd under a `Type=notify` unit: READY=1 with a short status once every
//! socket listens, WATCHDOG=1 while the runtime and the controller's lock
//! answer, STOPPING=1 on the way out. Nothing without `NOTIFY_SOCKET`.

use crate::state::Shared;
use ferry_linux::notify::{watchdog_interval, Notifier};
use std::sync::Arc;

/// The notifier, or `None` outside systemd; a bad `NOTIFY_SOCKET` is logged
/// and ignored (systemd then stops the unit at its start timeout).
pub fn notifier() -> Option<Arc<Notifier>> {
    match Notifier::from_env() {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd");
            None
        }
    }
}

/// Sends `state`; a failure is logged, never fatal.
pub fn send(n: &Notifier, state: &str) {
    if let Err(e) = n.send(state) {
        tracing::warn!(error = %e, state, "systemd notification failed");
    }
}

/// READY=1, with the counts of what was reloaded as the unit's status.
pub fn ready(n: &Notifier, shared: &Shared) {
    let status = match shared.lock() {
        Ok(c) => format!(
            "{} networks, {} endpoints, {} sandboxes",
            c.networks().count(),
            c.endpoints().count(),
            c.sandboxes().count()
        ),
        Err(_) => "controller lock poisoned".to_string(),
    };
    send(n, &format!("READY=1\nSTATUS=serving: {status}"));
}

/// Pings systemd's watchdog every half `WATCHDOG_USEC`, when it is set for
/// this process. A ping proves the runtime schedules tasks and the blocking
/// pool can take the controller's lock: a hung lock or a poisoned one stops
/// the pings, and systemd restarts ferryd.
pub fn spawn_watchdog(n: Arc<Notifier>, shared: Shared) {
    let Some(every) = watchdog_interval(|k| std::env::var(k).ok(), std::process::id()) else {
        return;
    };
    tracing::info!(?every, "pinging systemd's watchdog");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.lock().is_ok()).await {
                Ok(true) => send(&n, "WATCHDOG=1"),
                _ => tracing::error!("controller lock poisoned: no watchdog ping"),
            }
        }
    });
}
