//! The entry point every Ferry plugin uses (libcni `pkg/skel`): read `CNI_*`
//! and stdin, check the version and the variables each verb needs, dispatch,
//! and print the result, or the error JSON with the spec's code and exit non-zero.
//! stdout carries only the result or the error; stderr stays empty unless
//! something fails; each invocation can be logged to a file ([`crate::oplog`])
//! and is reported to ferryd's metrics ([`crate::report`]).

use crate::error::{code, CniError, CniResult};
use crate::{oplog, report, validate, version};
use serde_json::Value;
use std::io::{Read, Write};

/// The verbs of CNI 1.1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
    /// The variables the spec requires for this verb (section 2).
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc => &["CNI_PATH"],
            Command::Status | Command::Version => &[],
        }
    }
    /// The oldest config version in which the verb exists.
    fn min_version(self) -> Option<&'static str> {
        match self {
            Command::Check => Some("0.4.0"),
            Command::Status | Command::Gc => Some("1.1.0"),
            _ => None,
        }
    }
}

/// One invocation, as a plugin sees it.
#[derive(Debug, Clone)]
pub struct CmdArgs {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS as given (`K=V;K2=V2`).
    pub args: String,
    /// CNI_PATH as given (`:`-separated).
    pub path: String,
    /// The configuration bytes from stdin, to hand on unchanged to delegated plugins.
    pub stdin: Vec<u8>,
    /// The configuration, decoded.
    pub config: Value,
    /// The config's cniVersion ("0.1.0" when absent, as libcni).
    pub cni_version: String,
}

impl CmdArgs {
    /// CNI_ARGS as key/value pairs.
    pub fn cni_args(&self) -> CniResult<Vec<(String, String)>> {
        parse_cni_args(&self.args)
    }
}

/// Parses `K=V;K2=V2` (CNI_ARGS). An entry without `=` is an error (code 4).
pub fn parse_cni_args(s: &str) -> CniResult<Vec<(String, String)>> {
    s.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(CniError::invalid_env(format!(
                "CNI_ARGS entry {kv:?} is not KEY=VALUE"
            ))),
        })
        .collect()
}

/// What a plugin implements. ADD returns the result (any version's JSON: the
/// skeleton converts it to the config's cniVersion); the other verbs return nothing.
pub trait Plugin {
    fn add(&self, args: &CmdArgs) -> CniResult<Value>;
    fn del(&self, args: &CmdArgs) -> CniResult<()>;
    fn check(&self, args: &CmdArgs) -> CniResult<()>;
    fn status(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }
    fn gc(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }
    /// Versions this plugin speaks; all of them by default.
    fn supported_versions(&self) -> &'static [&'static str] {
        version::SUPPORTED
    }
}

/// The outcome of one invocation: what to print on stdout and the exit code,
/// and the error printed, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub exit_code: i32,
    pub error: Option<CniError>,
}

/// Runs plugin `name` against this process's environment and stdin, then exits.
pub fn plugin_main(name: &str, plugin: &dyn Plugin, about: &str) -> ! {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // Run by hand: say what this is, like the reference plugins' `about` line.
        eprintln!("{about}");
        std::process::exit(1);
    }
    let env = |k: &str| std::env::var(k).ok();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(name, plugin, &env, &stdin),
        Err(e) => {
            let err = CniError::io(format!("error reading from stdin: {e}"));
            let outcome = error_outcome(err, "");
            record(name, &env, &stdin, Run::now(), &outcome);
            outcome
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&outcome.stdout);
    let _ = out.flush();
    std::process::exit(outcome.exit_code)
}

/// One invocation of plugin `name` as its process would run it: the
/// dispatch, then the report to ferryd and the log line. A plugin running
/// Ferry's own IPAM in-process calls this too (crates/plugins, delegate.rs),
/// so the IPAM run is reported and logged as its own process would be, with
/// its own warnings: the caller's pending ones are set aside meanwhile.
pub fn run(
    name: &str,
    plugin: &dyn Plugin,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Outcome {
    let callers_warnings = oplog::take_warnings();
    let started = Run::now();
    let outcome = dispatch(plugin, env, stdin);
    record(name, env, stdin, started, &outcome);
    for w in callers_warnings {
        oplog::warn(w);
    }
    outcome
}

/// When a run started.
struct Run {
    at: std::time::SystemTime,
    start: std::time::Instant,
}

impl Run {
    fn now() -> Run {
        Run {
            at: std::time::SystemTime::now(),
            start: std::time::Instant::now(),
        }
    }
}

/// The run's report to ferryd and its log line (with the warnings it noted).
fn record(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    started: Run,
    outcome: &Outcome,
) {
    let duration = started.start.elapsed();
    if let Some(socket) = report::target(env) {
        report::send(&socket, &run_report(name, env, stdin, duration, outcome));
    }
    let warnings = oplog::take_warnings();
    if let Some(path) = oplog::target(env, stdin) {
        let var = |k: &str| env(k).unwrap_or_default();
        let entry = oplog::Entry {
            at: started.at,
            plugin: name,
            command: &var("CNI_COMMAND"),
            container_id: &var("CNI_CONTAINERID"),
            ifname: &var("CNI_IFNAME"),
            duration,
            error: outcome.error.as_ref(),
            warnings: &warnings,
        };
        if let Err(e) = oplog::append(&path, &entry) {
            eprintln!("{name}: cannot append to log file {path}: {e}");
        }
    }
}

/// This run's report to ferryd: the verb, the attachment and the outcome.
fn run_report(
    name: &str,
    env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
    duration: std::time::Duration,
    outcome: &Outcome,
) -> report::Report {
    #[derive(serde::Deserialize)]
    struct Named {
        name: Option<String>,
    }
    let var = |k: &str| env(k).unwrap_or_default();
    report::Report {
        network: serde_json::from_slice::<Named>(stdin)
            .ok()
            .and_then(|n| n.name)
            .unwrap_or_default(),
        container_id: var("CNI_CONTAINERID"),
        ifname: var("CNI_IFNAME"),
        error: outcome.error.as_ref().map(|e| e.to_string()),
        ..report::Report::new(name, &var("CNI_COMMAND"), duration)
    }
}

fn error_outcome(err: CniError, cni_version: &str) -> Outcome {
    let err = if err.cni_version.is_empty() && !cni_version.is_empty() {
        err.with_version(cni_version)
    } else {
        err
    };
    let mut stdout = serde_json::to_vec_pretty(&err).unwrap_or_default();
    stdout.push(b'\n');
    Outcome {
        stdout,
        exit_code: 1,
        error: Some(err),
    }
}

fn json_outcome(value: &Value) -> Outcome {
    let mut stdout = serde_json::to_vec_pretty(value).unwrap_or_default();
    stdout.push(b'\n');
    Outcome {
        stdout,
        exit_code: 0,
        error: None,
    }
}

/// The whole skeleton as a pure function of the environment and stdin, so it can be tested.
pub fn dispatch(
    plugin: &dyn Plugin,
    env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Outcome {
    let mut cni_version = String::new();
    match dispatch_inner(plugin, &env, stdin, &mut cni_version) {
        Ok(Some(v)) => json_outcome(&v),
        Ok(None) => Outcome {
            stdout: Vec::new(),
            exit_code: 0,
            error: None,
        },
        Err(e) => error_outcome(e, &cni_version),
    }
}

fn dispatch_inner(
    plugin: &dyn Plugin,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &[u8],
    cni_version: &mut String,
) -> CniResult<Option<Value>> {
    let var = |k: &str| env(k).unwrap_or_default();
    let command_text = var("CNI_COMMAND");
    if command_text.is_empty() {
        return Err(CniError::invalid_env(
            "required env variables [CNI_COMMAND] missing",
        ));
    }
    let command = Command::parse(&command_text)
        .ok_or_else(|| CniError::invalid_env(format!("unknown CNI_COMMAND: {command_text}")))?;
    let missing: Vec<&str> = command
        .required_env()
        .iter()
        .copied()
        .filter(|k| var(k).is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(CniError::invalid_env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )));
    }

    let supported = plugin.supported_versions();
    if command == Command::Version {
        // The input may be empty; answer in the version asked for, else the current one.
        let asked = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| version::CURRENT.to_string());
        return Ok(Some(serde_json::json!({
            "cniVersion": asked,
            "supportedVersions": supported,
        })));
    }

    let config: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::decoding(format!("error unmarshalling network config: {e}")))?;
    if !config.is_object() {
        return Err(CniError::decoding("network config must be a JSON object"));
    }
    *cni_version = match config.get("cniVersion") {
        None | Some(Value::Null) => "0.1.0".to_string(),
        Some(Value::String(s)) if s.is_empty() => "0.1.0".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(CniError::decoding(format!(
                "cniVersion must be a string, got {other}"
            )))
        }
    };
    let name = config.get("name").and_then(Value::as_str).unwrap_or("");
    if command != Command::Status {
        validate::network_name(name)?;
    }
    let container_id = var("CNI_CONTAINERID");
    let ifname = var("CNI_IFNAME");
    if matches!(command, Command::Add | Command::Del | Command::Check) {
        validate::container_id(&container_id)?;
        validate::interface_name(&ifname)?;
    }

    let parsed = version::parse(cni_version)?;
    if !supported.contains(&cni_version.as_str()) {
        return Err(CniError::incompatible_version(format!(
            "config is {cni_version:?}, plugin supports {supported:?}"
        )));
    }
    if let Some(min) = command.min_version() {
        if parsed < version::parse(min)? {
            return Err(CniError::incompatible_version(format!(
                "config version {cni_version:?} does not allow {} (needs {min} or later)",
                command.as_str()
            )));
        }
    }

    let args = CmdArgs {
        command,
        container_id,
        netns: var("CNI_NETNS"),
        ifname,
        args: var("CNI_ARGS"),
        path: var("CNI_PATH"),
        stdin: stdin.to_vec(),
        config,
        cni_version: cni_version.clone(),
    };
    match command {
        Command::Add => {
            let result = plugin.add(&args)?;
            Ok(Some(crate::result::convert(&result, cni_version)?))
        }
        Command::Del => plugin.del(&args).map(|_| None),
        Command::Check => plugin.check(&args).map(|_| None),
        Command::Status => plugin.status(&args).map(|_| None),
        Command::Gc => plugin.gc(&args).map(|_| None),
        Command::Version => Ok(None),
    }
}

/// Maps any error into a plugin-specific CNI error (code 100) unless it already is one.
pub fn internal<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> CniError + '_ {
    move |e| CniError::new(code::INTERNAL, context, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Echo;
    impl Plugin for Echo {
        fn add(&self, args: &CmdArgs) -> CniResult<Value> {
            Ok(serde_json::json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": args.ifname, "sandbox": args.netns}],
                "ips": [{"address": "198.18.0.2/24", "interface": 0}],
            }))
        }
        fn del(&self, _: &CmdArgs) -> CniResult<()> {
            Ok(())
        }
        fn check(&self, _: &CmdArgs) -> CniResult<()> {
            Err(CniError::new(120, "check failed", "on purpose"))
        }
    }

    fn run(vars: &[(&str, &str)], stdin: &str) -> (Value, i32) {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let out = dispatch(&Echo, |k| env.get(k).cloned(), stdin.as_bytes());
        let v = if out.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&out.stdout).unwrap()
        };
        (v, out.exit_code)
    }

    const FULL: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];

    fn with(cmd: &str, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
        let mut v: Vec<(&'static str, String)> = FULL
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == "CNI_COMMAND" {
                        cmd.to_string()
                    } else {
                        v.to_string()
                    },
                )
            })
            .collect();
        for (k, val) in extra {
            v.retain(|(kk, _)| kk != k);
            v.push((k, val.to_string()));
        }
        v
    }

    fn run_owned(vars: Vec<(&str, String)>, stdin: &str) -> (Value, i32) {
        let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&borrowed, stdin)
    }

    #[test]
    fn add_converts_result_to_config_version() {
        let (v, rc) = run(FULL, r#"{"cniVersion":"0.3.1","name":"n","type":"echo"}"#);
        assert_eq!(rc, 0);
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["ips"][0]["version"], "4");
    }

    #[test]
    fn errors_carry_spec_codes() {
        let cfg = r#"{"cniVersion":"1.1.0","name":"n","type":"echo"}"#;
        type Case<'a> = (Vec<(&'a str, String)>, &'a str, u32);
        let cases: Vec<Case> = vec![
            (vec![], cfg, 4),
            (with("BOGUS", &[]), cfg, 4),
            (with("ADD", &[("CNI_NETNS", "")]), cfg, 4),
            (with("ADD", &[]), "{not json", 6),
            (with("ADD", &[]), r#"{"cniVersion":"7.0.0","name":"n"}"#, 1),
            (with("ADD", &[]), r#"{"cniVersion":"x.y","name":"n"}"#, 6),
            (
                with("ADD", &[]),
                r#"{"cniVersion":"1.0.0","name":"-bad"}"#,
                7,
            ),
            (with("ADD", &[("CNI_CONTAINERID", "a b")]), cfg, 4),
            (
                with("ADD", &[("CNI_IFNAME", "waytoolonginterface")]),
                cfg,
                4,
            ),
            (
                with("CHECK", &[]),
                r#"{"cniVersion":"0.3.1","name":"n"}"#,
                1,
            ),
            (with("GC", &[]), r#"{"cniVersion":"1.0.0","name":"n"}"#, 1),
            (with("CHECK", &[]), cfg, 120),
        ];
        for (vars, stdin, code) in cases {
            let (v, rc) = run_owned(vars.clone(), stdin);
            assert_eq!(rc, 1, "{vars:?} {stdin}");
            assert_eq!(v["code"], code, "{vars:?} {stdin}: {v}");
            assert!(!v["msg"].as_str().unwrap_or("").is_empty());
        }
    }

    #[test]
    fn missing_variables_are_named() {
        let (v, _) = run_owned(with("ADD", &[("CNI_IFNAME", ""), ("CNI_PATH", "")]), "{}");
        let msg = v["msg"].as_str().unwrap().to_string() + v["details"].as_str().unwrap_or("");
        assert!(
            msg.contains("CNI_IFNAME") && msg.contains("CNI_PATH"),
            "{msg}"
        );
    }

    #[test]
    fn del_needs_no_netns_and_version_needs_nothing() {
        let (_, rc) = run_owned(
            with("DEL", &[("CNI_NETNS", "")]),
            r#"{"cniVersion":"1.0.0","name":"n"}"#,
        );
        assert_eq!(rc, 0);
        let (v, rc) = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(rc, 0);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(
            v["supportedVersions"].as_array().unwrap().len(),
            version::SUPPORTED.len()
        );
        let (v, _) = run(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(v["cniVersion"], version::CURRENT);
    }

    #[test]
    fn cni_args_parse() {
        assert_eq!(
            parse_cni_args("IgnoreUnknown=1;IP=198.18.0.5").unwrap(),
            vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("IP".into(), "198.18.0.5".into())
            ]
        );
        assert_eq!(parse_cni_args("novalue").unwrap_err().code, 4);
    }
}
