//! Config pieces several plugins share: MAC selection from config, CNI_ARGS,
//! `args.cni` and runtimeConfig (in the reference's precedence), and the
//! keys Ferry does not support yet, refused with code 2 rather than ignored;
//! the `ipMasq` hook of bridge and ptp.

use ferry_cni::result::Dns;
use ferry_cni::skel::CmdArgs;
use ferry_cni::{code, CniError, CniResult};
use ferry_linux::MacAddr;
use serde_json::Value;

/// The MAC a plugin should give the container interface: runtimeConfig.mac,
/// else args.cni.mac, else CNI_ARGS MAC=, else the config's `mac` (last
/// assignment wins in the reference, in the opposite order).
pub fn container_mac(args: &CmdArgs) -> CniResult<Option<MacAddr>> {
    let config = &args.config;
    let from_runtime = config.pointer("/runtimeConfig/mac").and_then(Value::as_str);
    let from_args = config.pointer("/args/cni/mac").and_then(Value::as_str);
    let env_args = args.cni_args()?;
    let from_env = env_args
        .iter()
        .find(|(k, _)| k == "MAC")
        .map(|(_, v)| v.as_str());
    let from_conf = config.get("mac").and_then(Value::as_str);
    let chosen = [from_runtime, from_args, from_env, from_conf]
        .into_iter()
        .flatten()
        .find(|m| !m.is_empty());
    match chosen {
        None => Ok(None),
        Some(text) => text
            .parse::<MacAddr>()
            .map(Some)
            .map_err(|_| CniError::invalid_config(format!("invalid MAC address {text:?}"))),
    }
}

/// The config's `dns` section, when it sets anything (it then replaces IPAM's).
pub fn dns(args: &CmdArgs) -> CniResult<Option<Dns>> {
    match args.config.get("dns") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let dns: Dns = serde_json::from_value(v.clone())
                .map_err(|e| CniError::decoding(format!("invalid \"dns\": {e}")))?;
            Ok((!dns.is_empty()).then_some(dns))
        }
    }
}

/// Refuses an option Ferry cannot honour yet (code 2, naming key and value),
/// so it never silently does nothing.
pub fn unsupported(key: &str, value: &Value, why: &str) -> CniError {
    CniError::new(
        code::UNSUPPORTED_FIELD,
        format!("unsupported field in network configuration: {key}={value}"),
        why,
    )
}

/// `ipMasq: true`: masquerade traffic leaving the container's subnet.
/// `ipMasqBackend` (`iptables`, `nftables`) is accepted; Ferry always uses
/// its own nftables table ([`ferry_drivers::masq`]).
pub fn ip_masq(args: &CmdArgs) -> CniResult<bool> {
    if let Some(b) = args.config.get("ipMasqBackend").filter(|b| !b.is_null()) {
        if !matches!(b.as_str(), Some("" | "iptables" | "nftables")) {
            return Err(CniError::invalid_config(format!(
                "unknown ipMasqBackend {b}: use iptables or nftables"
            )));
        }
    }
    Ok(args.config.get("ipMasq").and_then(Value::as_bool) == Some(true))
}

fn masq_attachment(args: &CmdArgs) -> CniResult<ferry_drivers::state::Attachment> {
    let name = args
        .config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("");
    crate::portmap::attachment(args, name)
}

/// Masquerades the container addresses `addrs` (ADD of bridge and ptp with
/// `ipMasq`); one atomic nftables batch of set elements.
pub fn masq_add(args: &CmdArgs, addrs: &[ipnet::IpNet]) -> CniResult<()> {
    let a = masq_attachment(args)?;
    let store = ferry_drivers::masq::store(&ferry_drivers::state_dir());
    let mut sock = crate::conf::nft_socket()?;
    ferry_drivers::masq::add(&mut sock, &store, &a, addrs).map_err(crate::portmap::driver_err)
}

/// Stops masquerading the attachment's addresses (DEL; idempotent). The
/// DEL's prevResult addresses are used when the bookkeeping file is gone.
pub fn masq_del(args: &CmdArgs) -> CniResult<()> {
    let a = masq_attachment(args)?;
    let store = ferry_drivers::masq::store(&ferry_drivers::state_dir());
    let fallback = crate::conf::prev_result(args)
        .ok()
        .flatten()
        .map(|p| crate::portmap::container_addrs(&p))
        .unwrap_or_default();
    if store
        .load(&a)
        .map_err(crate::portmap::driver_err)?
        .is_none()
        && fallback.is_empty()
    {
        return Ok(());
    }
    let mut sock = crate::conf::nft_socket()?;
    ferry_drivers::masq::del(&mut sock, &store, &a, &fallback).map_err(crate::portmap::driver_err)
}

/// Checks the masquerade elements of the attachment (CHECK with `ipMasq`).
pub fn masq_check(args: &CmdArgs) -> CniResult<()> {
    let a = masq_attachment(args)?;
    let store = ferry_drivers::masq::store(&ferry_drivers::state_dir());
    let mut sock = crate::conf::nft_socket()?;
    ferry_drivers::masq::check(&mut sock, &store, &a).map_err(crate::portmap::driver_err)
}

/// Lets frames from `host_veth` into the bridge only with the container's
/// MAC `mac` (bridge `macspoofchk`; one nftables batch of set elements).
pub fn macspoof_add(args: &CmdArgs, host_veth: &str, mac: [u8; 6]) -> CniResult<()> {
    let a = masq_attachment(args)?;
    let store = ferry_drivers::macspoof::store(&ferry_drivers::state_dir());
    let mut sock = crate::conf::nft_socket()?;
    ferry_drivers::macspoof::add(&mut sock, &store, &a, host_veth, mac)
        .map_err(crate::portmap::driver_err)
}

/// Removes the attachment's MAC spoof check (DEL; idempotent, and a no-op
/// without a bookkeeping file).
pub fn macspoof_del(args: &CmdArgs) -> CniResult<()> {
    let a = masq_attachment(args)?;
    let store = ferry_drivers::macspoof::store(&ferry_drivers::state_dir());
    if store
        .load(&a)
        .map_err(crate::portmap::driver_err)?
        .is_none()
    {
        return Ok(());
    }
    let mut sock = crate::conf::nft_socket()?;
    ferry_drivers::macspoof::del(&mut sock, &store, &a).map_err(crate::portmap::driver_err)
}

/// Checks the attachment's MAC spoof check elements (CHECK).
pub fn macspoof_check(args: &CmdArgs) -> CniResult<()> {
    let a = masq_attachment(args)?;
    let store = ferry_drivers::macspoof::store(&ferry_drivers::state_dir());
    let mut sock = crate::conf::nft_socket()?;
    ferry_drivers::macspoof::check(&mut sock, &store, &a).map_err(crate::portmap::driver_err)
}

/// Removes the MAC spoof checks of the network's attachments that are not
/// in the GC's valid list.
pub fn macspoof_gc(args: &CmdArgs) -> CniResult<()> {
    let name = args
        .config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let store = ferry_drivers::macspoof::store(&ferry_drivers::state_dir());
    if store
        .attachments(name)
        .map_err(crate::portmap::driver_err)?
        .is_empty()
    {
        return Ok(());
    }
    let valid = crate::portmap::valid_attachments(args)?;
    let mut sock = crate::conf::nft_socket()?;
    ferry_drivers::state::collect(
        &mut sock,
        &store,
        &ferry_drivers::macspoof::table(),
        name,
        &valid,
    )
    .map_err(crate::portmap::driver_err)
}
