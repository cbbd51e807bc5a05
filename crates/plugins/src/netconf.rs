//! Config pieces several plugins share: MAC selection from config, CNI_ARGS,
//! `args.cni` and runtimeConfig (in the reference's precedence), and the
//! keys Ferry does not support yet, refused with code 2 rather than ignored;
//! the `ipMasq` key of bridge and ptp.

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
