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
    invoke::delegate(ipam_type, command, &args.stdin).map(|_| ())
}

/// Whether IPAM `ipam_type` talks through the container's link, so that it
/// must run after the link exists (ADD) and before it goes (DEL): `dhcp`.
pub fn needs_link(ipam_type: &str) -> bool {
    ipam_type == "dhcp"
}
