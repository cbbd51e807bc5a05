//! The plugins' operation log: when asked for, one line per invocation
//! appended to a file, because a plugin's stdout belongs to the runtime and
//! its stderr is for errors. The file is the network config's top-level
//! `ferryLogFile` (the spec lets configs carry extra keys) or else the
//! `FERRY_LOG_FILE` variable: the network's own setting is the more specific.
//!
//! A line: `2026-12-02T05:39:21.884Z plugin="bridge" command="ADD"
//! container="c1" ifname="eth0" duration=1.2ms outcome=ok`, or
//! `outcome=error error="<msg>: <details> (code N)"`, followed by
//! `warning="..."` when the plugin noted something that did not fail the
//! operation ([`warn`]: stderr is for errors only). Strings are quoted and
//! escaped so that a line stays one line.

use crate::error::CniError;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// The network config's key naming the log file.
pub const CONFIG_KEY: &str = "ferryLogFile";
/// The variable naming the log file when the config does not.
pub const ENV: &str = "FERRY_LOG_FILE";

/// The log file for this invocation, if any: `ferryLogFile` from the config
/// on stdin (when it is a non-empty string), else `FERRY_LOG_FILE`.
pub fn target(env: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Conf {
        #[serde(rename = "ferryLogFile")]
        file: Option<String>,
    }
    // Most configs have no such key: skip the second parse of stdin then
    // (every plugin run comes through here).
    let named = stdin
        .windows(CONFIG_KEY.len())
        .any(|w| w == CONFIG_KEY.as_bytes());
    named
        .then(|| serde_json::from_slice::<Conf>(stdin).ok())
        .flatten()
        .and_then(|c| c.file)
        .or_else(|| env(ENV))
        .filter(|f| !f.is_empty())
}

/// Warnings of this invocation, for its log line.
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Notes something worth an operator's look that does not fail the
/// operation (a DEL that could not restore everything, say). It goes to the
/// log line, never to stderr, which a successful plugin leaves empty.
pub fn warn(message: impl Into<String>) {
    let mut w = WARNINGS.lock().unwrap_or_else(|p| p.into_inner());
    w.push(message.into());
}

/// The warnings noted so far, taken.
pub fn take_warnings() -> Vec<String> {
    let mut w = WARNINGS.lock().unwrap_or_else(|p| p.into_inner());
    std::mem::take(&mut *w)
}

/// One invocation, as logged.
#[derive(Debug)]
pub struct Entry<'a> {
    pub at: SystemTime,
    pub plugin: &'a str,
    pub command: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub duration: Duration,
    pub error: Option<&'a CniError>,
    pub warnings: &'a [String],
}

impl Entry<'_> {
    /// The line, newline included.
    pub fn line(&self) -> String {
        let outcome = match self.error {
            None => "outcome=ok".to_string(),
            Some(e) => format!("outcome=error error={:?}", e.to_string()),
        };
        let warning = if self.warnings.is_empty() {
            String::new()
        } else {
            format!(" warning={:?}", self.warnings.join("; "))
        };
        format!(
            "{} plugin={:?} command={:?} container={:?} ifname={:?} duration={:?} {outcome}{warning}\n",
            rfc3339_millis(self.at),
            self.plugin,
            self.command,
            self.container_id,
            self.ifname,
            self.duration,
        )
    }
}

/// Appends the entry's line to `path` (created 0600: it names containers)
/// in one write, so that lines of concurrent plugins do not mix.
pub fn append(path: &str, entry: &Entry) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?
        .write_all(entry.line().as_bytes())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let at = |s: u64, ms: u64| {
            rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(s * 1000 + ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_796_212_800, 0), "2026-12-02T12:00:00.000Z");
    }

    #[test]
    fn config_key_wins_over_the_variable() {
        let env = |k: &str| (k == ENV).then(|| "/env.log".to_string());
        let none = |_: &str| None;
        assert_eq!(
            target(env, br#"{"ferryLogFile":"/conf.log","name":"n"}"#).as_deref(),
            Some("/conf.log")
        );
        assert_eq!(target(env, br#"{"name":"n"}"#).as_deref(), Some("/env.log"));
        assert_eq!(target(env, b"").as_deref(), Some("/env.log"));
        assert_eq!(target(none, br#"{"name":"n"}"#), None);
        assert_eq!(target(none, br#"{"ferryLogFile":""}"#), None);
    }

    #[test]
    fn one_line_per_entry_even_with_newlines() {
        let err = CniError::new(7, "bad config", "line1\nline2");
        let e = Entry {
            at: SystemTime::UNIX_EPOCH,
            plugin: "bridge",
            command: "ADD",
            container_id: "c\n1",
            ifname: "eth0",
            duration: Duration::from_micros(1500),
            error: Some(&err),
            warnings: &[],
        };
        assert_eq!(
            e.line(),
            "1970-01-01T00:00:00.000Z plugin=\"bridge\" command=\"ADD\" container=\"c\\n1\" \
             ifname=\"eth0\" duration=1.5ms outcome=error \
             error=\"bad config: line1\\nline2 (code 7)\"\n"
        );
    }

    #[test]
    fn warnings_join_the_line_and_are_taken_once() {
        warn("tuning: could not restore mtu");
        warn("second\nline");
        let warnings = take_warnings();
        assert!(take_warnings().is_empty(), "taken");
        let e = Entry {
            at: SystemTime::UNIX_EPOCH,
            plugin: "tuning",
            command: "DEL",
            container_id: "c1",
            ifname: "eth0",
            duration: Duration::from_millis(2),
            error: None,
            warnings: &warnings,
        };
        assert!(
            e.line()
                .ends_with("outcome=ok warning=\"tuning: could not restore mtu; second\\nline\"\n"),
            "{}",
            e.line()
        );
    }
}
