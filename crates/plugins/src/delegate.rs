//! Running the delegated IPAM plugin (SPEC.md section 4): same environment,
//! the whole config on stdin, results back as the current result type.
//!
//! When the IPAM plugin CNI_PATH resolves to is this very executable (same
//! device and inode as `/proc/self/exe`) and is `host-local` or `static`, it
//! runs in-process: a process start (~0.75 ms) saved per delegation. It gets
//! what the exec would: the same stdin bytes (prevResult included), the
//! CNI_* variables passed to the dispatch as a lookup (the process
//! environment is left untouched) over the rest of the environment, and its
//! own report and log line ([`skel::run`]). Any other IPAM, another build or
//! copy of Ferry included, is executed.

use ferry_cni::result::{self, Result as CniResultType};
use ferry_cni::skel::{self, CmdArgs};
use ferry_cni::{invoke, CniError, CniResult};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The IPAM types that may run in-process: they touch only their own files.
const IN_PROCESS: [&str; 2] = ["host-local", "static"];

/// Runs IPAM `ipam_type` with CNI_COMMAND `command`: its stdout on success.
pub fn run(ipam_type: &str, command: &str, stdin: &[u8]) -> CniResult<Vec<u8>> {
    let args = invoke::Args::delegated(command);
    let path = invoke::find_in_path(ipam_type, &invoke::split_paths(&args.path))?;
    let entry = IN_PROCESS
        .contains(&ipam_type)
        .then(|| crate::find(ipam_type))
        .flatten()
        .filter(|_| is_this_executable(&path));
    let Some(entry) = entry else {
        return invoke::exec_plugin(&path, stdin, &args);
    };
    let vars = args.env();
    let env = |k: &str| match vars.iter().find(|(name, _)| *name == k) {
        Some((_, v)) => Some(v.to_string()),
        None => std::env::var(k).ok(),
    };
    let out = skel::run(entry.name, entry.plugin, &env, stdin);
    if out.exit_code == 0 {
        return Ok(out.stdout);
    }
    // As the exec path reads it: the error JSON the plugin printed.
    Err(serde_json::from_slice::<CniError>(&out.stdout)
        .ok()
        .or(out.error)
        .unwrap_or_else(|| CniError::internal("IPAM plugin failed without an error result")))
}

/// Whether `path` (symlinks followed) is the running executable.
fn is_this_executable(path: &Path) -> bool {
    match (std::fs::metadata(path), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// IPAM ADD: the addresses, routes and DNS the IPAM plugin chose.
pub fn ipam_add(ipam_type: &str, args: &CmdArgs) -> CniResult<CniResultType> {
    let out = run(ipam_type, "ADD", &args.stdin)?;
    let value: serde_json::Value = serde_json::from_slice(&out)?;
    let v = result::convert_with_fallback(&value, &args.cni_version, ferry_cni::version::CURRENT)?;
    result::parse_result(&v, ferry_cni::version::CURRENT)
}

/// IPAM ADD for an interface plugin: every address goes on interface
/// `iface_index` of the result. No address at all is an error, after the
/// lease (if any) is released.
pub fn ipam_add_for(
    ipam_type: &str,
    args: &CmdArgs,
    iface_index: usize,
) -> CniResult<CniResultType> {
    let mut r = ipam_add(ipam_type, args)?;
    if r.ips.is_empty() {
        let _ = ipam_pass(ipam_type, "DEL", args);
        return Err(ferry_cni::CniError::internal(
            "IPAM plugin returned missing IP config",
        ));
    }
    for ip in &mut r.ips {
        ip.interface = Some(iface_index);
    }
    Ok(r)
}

/// IPAM DEL, CHECK, STATUS or GC: passed on with the same input.
pub fn ipam_pass(ipam_type: &str, command: &str, args: &CmdArgs) -> CniResult<()> {
    run(ipam_type, command, &args.stdin).map(|_| ())
}

/// Whether IPAM `ipam_type` talks through the container's link, so that it
/// must run after the link exists (ADD) and before it goes (DEL): `dhcp`.
pub fn needs_link(ipam_type: &str) -> bool {
    ipam_type == "dhcp"
}
