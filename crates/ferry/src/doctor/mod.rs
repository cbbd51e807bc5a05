//! `ferry doctor`: why a node misbehaves. Each check reads the node (files
//! under /proc and /sys, netlink, nftables, the CNI directories, ferryd's
//! socket) and changes nothing; each finding is one line with the command
//! that fixes it. Kernel state is read in the caller's network namespace, so
//! `ip netns exec NS ferry doctor` examines NS.

mod ferryd;
mod kernel;
mod state;

use crate::cli::DoctorArgs;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

/// One result line: a check that passed, or a problem and its fix.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// The check: `modules`, `sysctl`, `iptables-legacy`, `forward-policy`,
    /// `dying-links`, `cni-cache`, `leases`, `ferryd`.
    pub check: &'static str,
    /// True when the check found nothing wrong.
    pub ok: bool,
    /// What was found.
    pub message: String,
    /// The command that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: true,
            message: message.into(),
            fix: None,
        }
    }

    fn problem(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: false,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

pub fn run(args: DoctorArgs, api_socket: &Path, json: bool) -> ExitCode {
    let probe = !args.no_probe;
    let mut findings = Vec::new();
    findings.extend(kernel::modules(&args.proc_modules, &args.sys_module, probe));
    findings.extend(kernel::forwarding());
    findings.extend(kernel::iptables_legacy());
    findings.extend(kernel::forward_policy());
    findings.extend(kernel::dying_links());
    findings.extend(state::stale_cache(&args.cache_dir));
    findings.extend(state::orphan_leases(&args.leases_dir, &args.cache_dir));
    findings.push(ferryd::reachable(api_socket));
    let problems = findings.iter().filter(|f| !f.ok).count();
    if json {
        let out = serde_json::json!({"problems": problems, "findings": findings});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for f in &findings {
            match &f.fix {
                Some(fix) if !f.ok => println!("PROBLEM {}: {} -- fix: {fix}", f.check, f.message),
                _ => println!("ok      {}: {}", f.check, f.message),
            }
        }
        match problems {
            0 => println!("no problems found"),
            1 => println!("1 problem found"),
            n => println!("{n} problems found"),
        }
    }
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Root reads everything; other users' findings may only mean "not allowed".
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Quotes a path or word for a shell command line when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=,@+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
