//! Running the delegated IPAM plugin (SPEC.md section 4): same environment,
//! the whole config on stdin, results back as the current result type.

use ferry_cni::result::{self, Result as CniResultType};
use ferry_cni::skel::CmdArgs;
use ferry_cni::{invoke, CniResult};

/// IPAM ADD: the addresses, routes and DNS the IPAM plugin chose.
pub fn ipam_add(ipam_type: &str, args: &CmdArgs) -> CniResult<CniResultType> {
    let out = invoke::delegate(ipam_type, "ADD", &args.stdin)?;
    let value: serde_json::Value = serde_json::from_slice(&out)?;
    let v = result::convert_with_fallback(&value, &args.cni_version, ferry_cni::version::CURRENT)?;
    result::parse_result(&v, ferry_cni::version::CURRENT)
}

/// IPAM DEL, CHECK, STATUS or GC: passed on with the same input.
pub fn ipam_pass(ipam_type: &str, command: &str, args: &CmdArgs) -> CniResult<()> {
    invoke::delegate(ipam_type, command, &args.stdin).map(|_| ())
}
