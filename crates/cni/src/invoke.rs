//! Finding and executing plugin binaries (libcni `pkg/invoke`): used by the
//! runtime for every plugin of a list, and by plugins to run delegated (IPAM) plugins.

use crate::error::{code, CniError, CniResult};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Looks a plugin up in the CNI_PATH directories, first match wins.
pub fn find_in_path(plugin_type: &str, paths: &[PathBuf]) -> CniResult<PathBuf> {
    crate::validate::plugin_type(plugin_type)?;
    if paths.is_empty() {
        return Err(CniError::invalid_env(format!(
            "no plugin search paths (CNI_PATH) to find plugin {plugin_type:?} in"
        )));
    }
    for dir in paths {
        let candidate = dir.join(plugin_type);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(CniError::new(
        code::INVALID_NETWORK_CONFIG,
        format!("failed to find plugin {plugin_type:?}"),
        format!(
            "no executable {plugin_type:?} in CNI_PATH {}",
            join_paths(paths)
        ),
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Splits a CNI_PATH value (`:`-separated), dropping empty entries.
pub fn split_paths(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

pub fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The CNI_* variables of one invocation. Unset fields are passed as empty
/// strings, as libcni does, so a value inherited from the caller never leaks in.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Args {
    pub fn env(&self) -> [(&'static str, &str); 6] {
        [
            ("CNI_COMMAND", self.command.as_str()),
            ("CNI_CONTAINERID", self.container_id.as_str()),
            ("CNI_NETNS", self.netns.as_str()),
            ("CNI_IFNAME", self.ifname.as_str()),
            ("CNI_ARGS", self.args.as_str()),
            ("CNI_PATH", self.path.as_str()),
        ]
    }
}

/// Runs a plugin with `stdin`, returning its stdout on success. On failure the
/// plugin's error JSON becomes the error; a plugin that died without one gets
/// code 5 and a message saying how it died, with its stderr.
pub fn exec_plugin(plugin: &Path, stdin: &[u8], args: &Args) -> CniResult<Vec<u8>> {
    let mut cmd = Command::new(plugin);
    cmd.envs(args.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            format!("failed to execute plugin {}", plugin.display()),
            e.to_string(),
        )
    })?;
    if let Some(mut pipe) = child.stdin.take() {
        // A plugin may exit without reading its input (VERSION does); a broken pipe is not our error.
        if let Err(e) = pipe.write_all(stdin) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(CniError::io(format!(
                    "writing to {}: {e}",
                    plugin.display()
                )));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::io(format!("waiting for {}: {e}", plugin.display())))?;
    // Plugins log to stderr; pass it on to ours, as libcni does.
    if !out.stderr.is_empty() {
        let _ = std::io::stderr().write_all(&out.stderr);
    }
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(plugin_error(plugin, &out.status, &out.stdout, &out.stderr))
}

fn plugin_error(
    plugin: &Path,
    status: &std::process::ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
) -> CniError {
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit status".to_string(),
    };
    let stderr = String::from_utf8_lossy(stderr).trim().to_string();
    if stdout.iter().all(u8::is_ascii_whitespace) {
        let details = if stderr.is_empty() {
            format!("{} failed with no error message: {how}", plugin.display())
        } else {
            format!("{} failed ({how}): {stderr}", plugin.display())
        };
        return CniError::new(
            code::IO_FAILURE,
            "plugin failed without an error result",
            details,
        );
    }
    match serde_json::from_slice::<CniError>(stdout) {
        Ok(e) => e,
        Err(perr) => CniError::new(
            code::DECODING_FAILURE,
            "plugin failed and its error result could not be decoded",
            format!(
                "{} ({how}) printed {:?}: {perr}",
                plugin.display(),
                String::from_utf8_lossy(stdout)
            ),
        ),
    }
}

/// Runs a delegated plugin (e.g. IPAM) from inside a plugin: same environment,
/// the full configuration on stdin, CNI_COMMAND set to `command`.
pub fn delegate(plugin_type: &str, command: &str, stdin: &[u8]) -> CniResult<Vec<u8>> {
    let args = Args::delegated(command);
    let plugin = find_in_path(plugin_type, &split_paths(&args.path))?;
    exec_plugin(&plugin, stdin, &args)
}

impl Args {
    /// The variables a delegated plugin gets: this process's CNI_* with
    /// CNI_COMMAND set to `command`.
    pub fn delegated(command: &str) -> Args {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        Args {
            command: command.to_string(),
            container_id: env("CNI_CONTAINERID"),
            netns: env("CNI_NETNS"),
            ifname: env("CNI_IFNAME"),
            args: env("CNI_ARGS"),
            path: env("CNI_PATH"),
        }
    }
}
