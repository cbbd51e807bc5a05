//! What every plugin reads from its request: its own config struct, the
//! common keys, `prevResult`, and namespaces; and how kernel errors become CNI errors.

use ferry_cni::result::{self, Result as CniResultType};
use ferry_cni::skel::CmdArgs;
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::Netns;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes the plugin's config struct. Malformed JSON or a key of the wrong
/// type is code 6; semantic checks after this are code 7.
pub fn parse<T: DeserializeOwned>(args: &CmdArgs) -> CniResult<T> {
    serde_json::from_slice(&args.stdin)
        .map_err(|e| CniError::decoding(format!("failed to load netconf: {e}")))
}

/// The `prevResult` of the request, as the current result type.
pub fn prev_result(args: &CmdArgs) -> CniResult<Option<CniResultType>> {
    match args.config.get("prevResult") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => result::parse_result(v, &args.cni_version).map(Some),
    }
}

/// The `prevResult` a chained plugin cannot work without.
pub fn required_prev_result(args: &CmdArgs, plugin: &str) -> CniResult<CniResultType> {
    prev_result(args)?.ok_or_else(|| {
        CniError::invalid_config(format!(
            "{plugin} is a chained plugin: the request has no prevResult"
        ))
    })
}

/// The delegated IPAM plugin's type (`ipam.type`), required by interface plugins.
pub fn ipam_type(args: &CmdArgs) -> CniResult<String> {
    match args.config.get("ipam").and_then(|i| i.get("type")) {
        Some(Value::String(t)) if !t.is_empty() => Ok(t.clone()),
        _ => Err(CniError::invalid_config("missing \"ipam\" with a \"type\"")),
    }
}

/// The IPAM type of a plugin for which IPAM is optional (macvlan, host-device,
/// tap): `None` when there is no `ipam` section or it has no type (L2 only).
pub fn optional_ipam_type(args: &CmdArgs) -> CniResult<Option<String>> {
    match args.config.get("ipam").and_then(|i| i.get("type")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) if t.is_empty() => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.clone())),
        Some(other) => Err(CniError::decoding(format!(
            "\"ipam.type\" must be a string, got {other}"
        ))),
    }
}

/// Opens the container's namespace (CNI_NETNS); code 3 when it does not exist.
pub fn open_netns(path: &str) -> CniResult<Netns> {
    if path.is_empty() {
        return Err(CniError::invalid_env("CNI_NETNS is empty"));
    }
    Netns::open(path).map_err(|e| {
        if e.is_not_found() {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("network namespace {path:?} does not exist"),
                e.to_string(),
            )
        } else {
            CniError::new(
                code::INTERNAL,
                format!("failed to open netns {path:?}"),
                e.to_string(),
            )
        }
    })
}

/// Opens the namespace for DEL: a missing namespace is `None`, not an error
/// (DEL is best-effort and the runtime may have removed it already).
pub fn open_netns_for_del(path: &str) -> Option<Netns> {
    if path.is_empty() {
        return None;
    }
    Netns::open(path).ok()
}

/// Wraps a kernel error with what was being done (code 100 + context).
pub fn kernel(context: impl Into<String>) -> impl FnOnce(ferry_linux::Error) -> CniError {
    let context = context.into();
    move |e| CniError::new(code::INTERNAL, context, e.to_string())
}

/// An nftables socket in the plugin's (the node's) namespace; closing it
/// never waits for the kernel's grace period (`ferry_drivers::link::detach`).
pub fn nft_socket() -> CniResult<ferry_drivers::network::NftSocket> {
    ferry_drivers::network::nft_socket().map_err(driver_err)
}

/// A driver error as a CNI error (see [`crate::portmap::driver_err`]).
pub use crate::portmap::driver_err;

/// The part of a result interface `index` gets, as the driver layer takes it.
pub fn iface_config(
    result: &CniResultType,
    index: usize,
) -> ferry_drivers::link::iface::InterfaceConfig {
    use ferry_drivers::link::iface::{Address, InterfaceConfig, RouteConfig};
    InterfaceConfig {
        addresses: result
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(index))
            .map(|ip| Address {
                net: ip.address,
                gateway: ip.gateway,
            })
            .collect(),
        routes: result
            .routes
            .iter()
            .map(|r| RouteConfig {
                dst: r.dst,
                gw: r.gw,
                mtu: r.mtu,
                advmss: r.advmss,
                priority: r.priority,
                table: r.table,
                scope: r.scope.map(|s| s as u8),
            })
            .collect(),
    }
}

/// The prevResult's container interface `ifname` (CHECK): its index.
pub fn prev_container_iface(prev: &CniResultType, ifname: &str) -> CniResult<usize> {
    prev.interfaces
        .iter()
        .position(|i| i.name == ifname && !i.sandbox.is_empty())
        .ok_or_else(|| {
            CniError::internal(format!("prevResult has no container interface {ifname}"))
        })
}

/// The network's name (`name`), which keys the drivers' bookkeeping.
pub fn network_name(args: &CmdArgs) -> &str {
    args.config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// An `mtu` key: 0 is the kernel's default, a negative value is code 7 (the
/// driver's `validate` checks the upper bound).
pub fn mtu(mtu: i64) -> CniResult<Option<u32>> {
    match mtu {
        0 => Ok(None),
        m => u32::try_from(m)
            .map(Some)
            .map_err(|_| CniError::invalid_config(format!("invalid MTU {m}"))),
    }
}
