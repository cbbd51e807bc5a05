//! ADD results for every CNI version (SPEC.md section 5 "ADD Success"), with
//! conversions between them like libcni's `pkg/types/{020,040,100}` and its
//! converter registry.
//!
//! [`Result`] is the canonical in-memory form and is the 1.x wire form
//! (1.0.0 and 1.1.0 share one schema, as in libcni). Older forms live in
//! [`v040`] (0.3.0, 0.3.1, 0.4.0) and [`v020`] (0.1.0, 0.2.0). Every result is
//! read into [`Result`] with [`parse_result`] and written in any version with
//! [`Result::to_version`]; [`convert`] does both.
//!
//! What each conversion keeps (see also `Documentation/spec-upgrades.md`):
//!
//! | to \ from    | 0.1/0.2 | 0.3/0.4 | 1.x |
//! |--------------|---------|---------|-----|
//! | 0.1/0.2      | all     | see [`v020::Result020::from_current`] | same |
//! | 0.3/0.4      | all (no interfaces, no `interface`) | all | drops interface `mtu`/`socketPath`/`pciID`, route `mtu`/`advmss`/`priority`/`table`/`scope` |
//! | 1.x          | all (no interfaces, no `interface`) | all | all |
//!
//! JSON output follows Go's `encoding/json` with libcni's tags: struct field
//! order, `omitempty` fields left out when empty/zero, and `dns` always
//! present (`"dns":{}` when empty), which is what libcni 1.0/1.1 and the
//! reference plugins print.

mod serde_util;
pub mod v020;
pub mod v040;

use crate::error::{CniError, CniResult};
use crate::version;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_util::{iface_index, none_or_zero, null_default, opt_ip, zero_none};
use std::net::IpAddr;

/// The versions whose wire form is [`Result`] itself.
pub const VERSIONS_1X: &[&str] = &["1.0.0", "1.1.0"];

/// The canonical (1.x) ADD result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Result {
    /// The version this result is (or was read) in. Written by
    /// [`Result::to_version`] as the requested version.
    #[serde(
        rename = "cniVersion",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub interfaces: Vec<Interface>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ips: Vec<IpConfig>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub routes: Vec<Route>,
    #[serde(default, deserialize_with = "null_default")]
    pub dns: Dns,
}

/// An interface created by the attachment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Interface {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub mac: String,
    /// Go `int` with `omitempty`: `Some(0)` is written like `None`, and 0 reads as `None`.
    #[serde(
        default,
        deserialize_with = "zero_none",
        skip_serializing_if = "none_or_zero"
    )]
    pub mtu: Option<u32>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub sandbox: String,
    #[serde(
        rename = "socketPath",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    #[serde(
        rename = "pciID",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub pci_id: String,
}

/// An IP address assigned by the attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into `interfaces`. Absent in IPAM results. A negative index
    /// (written by some old plugins) reads as `None`.
    #[serde(
        default,
        deserialize_with = "iface_index",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface: Option<usize>,
    /// Address with prefix length, host bits kept ("192.168.1.3/24").
    pub address: IpNet,
    /// `null` and `""` read as `None`.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
}

impl IpConfig {
    pub fn new(address: IpNet, gateway: Option<IpAddr>) -> Self {
        IpConfig {
            interface: None,
            address,
            gateway,
        }
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self.address, IpNet::V4(_))
    }
}

/// A route created by the attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw: Option<IpAddr>,
    /// Go `int` with `omitempty` (0 = unset).
    #[serde(
        default,
        deserialize_with = "zero_none",
        skip_serializing_if = "none_or_zero"
    )]
    pub mtu: Option<u32>,
    /// Go `int` with `omitempty` (0 = unset).
    #[serde(
        default,
        deserialize_with = "zero_none",
        skip_serializing_if = "none_or_zero"
    )]
    pub advmss: Option<u32>,
    /// Go `int` with `omitempty` (0 = unset).
    #[serde(
        default,
        deserialize_with = "zero_none",
        skip_serializing_if = "none_or_zero"
    )]
    pub priority: Option<u32>,
    /// Go `*int`: `Some(0)` is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Go `*int`: `Some(0)` (global) is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    /// A route with only `dst` and `gw`.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings; every field is `omitempty`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nameservers: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub search: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The wire forms, by version family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    V020,
    V040,
    V1,
}

/// Which wire form `version` uses (`""` means "0.1.0"); code 1 when Ferry has
/// none (libcni: `unsupported CNI result version`).
fn form_of(version: &str) -> CniResult<Form> {
    let v = version::normalize(version);
    if v020::VERSIONS.contains(&v) {
        Ok(Form::V020)
    } else if v040::VERSIONS.contains(&v) {
        Ok(Form::V040)
    } else if VERSIONS_1X.contains(&v) {
        Ok(Form::V1)
    } else {
        Err(CniError::incompatible_version(format!(
            "unsupported CNI result version {v:?} (supported: {})",
            version::SUPPORTED.join(", ")
        )))
    }
}

/// The `cniVersion` of a result or config object like libcni's
/// `DecodeVersion`: missing, empty or non-string means "0.1.0".
pub fn version_of(json: &Value) -> String {
    match json.get("cniVersion") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => version::IMPLICIT.to_string(),
    }
}

/// Inputs accepted by [`parse_result`] and [`convert`]: JSON text or an
/// already parsed [`serde_json::Value`].
pub trait ResultJson {
    /// Returns the JSON value (code 6 on malformed text).
    fn into_value(self) -> CniResult<Value>;
}

impl ResultJson for &[u8] {
    fn into_value(self) -> CniResult<Value> {
        serde_json::from_slice(self)
            .map_err(|e| CniError::decoding(format!("failed to parse result: {e}")))
    }
}

impl<const N: usize> ResultJson for &[u8; N] {
    fn into_value(self) -> CniResult<Value> {
        self.as_slice().into_value()
    }
}

impl ResultJson for &Vec<u8> {
    fn into_value(self) -> CniResult<Value> {
        self.as_slice().into_value()
    }
}

impl ResultJson for &str {
    fn into_value(self) -> CniResult<Value> {
        self.as_bytes().into_value()
    }
}

impl ResultJson for &String {
    fn into_value(self) -> CniResult<Value> {
        self.as_bytes().into_value()
    }
}

impl ResultJson for &Value {
    fn into_value(self) -> CniResult<Value> {
        Ok(self.clone())
    }
}

impl ResultJson for Value {
    fn into_value(self) -> CniResult<Value> {
        Ok(self)
    }
}

/// Reads a result of any supported version into the canonical [`Result`].
///
/// The version is the result's own non-empty `cniVersion`; when that is
/// missing or empty, `version` (normally the request's `cniVersion`, as
/// libcni's invoke does since containernetworking/cni#895); when both are
/// empty, "0.1.0". The returned result's `cni_version` is that version.
///
/// Errors: code 6 when the text is not JSON, not an object, or does not
/// match the version's schema; code 1 when the version is not supported.
pub fn parse_result<J: ResultJson>(json: J, version: &str) -> CniResult<Result> {
    let value = json.into_value()?;
    let obj = value
        .as_object()
        .ok_or_else(|| CniError::decoding("failed to parse result: not a JSON object"))?;
    let own = match obj.get("cniVersion") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(CniError::decoding(format!(
                "failed to parse result: cniVersion must be a string, got {other}"
            )))
        }
    };
    let ver = version::normalize(if own.is_empty() { version } else { own }).to_string();
    let form = form_of(&ver)?;
    let decode_err =
        |e: serde_json::Error| CniError::decoding(format!("failed to parse {ver} result: {e}"));
    let mut result = match form {
        Form::V020 => serde_json::from_value::<v020::Result020>(value)
            .map_err(decode_err)?
            .into_current(&ver),
        Form::V040 => serde_json::from_value::<v040::Result040>(value)
            .map_err(decode_err)?
            .into_current(&ver),
        Form::V1 => serde_json::from_value::<Result>(value).map_err(decode_err)?,
    };
    result.cni_version = ver;
    Ok(result)
}

/// Converts a result of any supported version (its `cniVersion`, else "0.1.0")
/// into the wire JSON of version `to`. See [`Result::to_version`] for the rules.
///
/// A result without `cniVersion` is read as 0.1.0 (libcni `DecodeVersion`);
/// use [`convert_with_fallback`] to assume another version instead.
pub fn convert<J: ResultJson>(json: J, to: &str) -> CniResult<Value> {
    parse_result(json, "")?.to_version(to)
}

/// [`convert`], reading a result that has no `cniVersion` as version `fallback`.
///
/// libcni's runtime passes the config's version here (containernetworking/cni#895);
/// a plugin converting its own 1.x result would pass [`crate::version::CURRENT`].
pub fn convert_with_fallback<J: ResultJson>(json: J, fallback: &str, to: &str) -> CniResult<Value> {
    parse_result(json, fallback)?.to_version(to)
}

/// Go `json.MarshalIndent(v, "", "    ")` style text (what libcni's `Print` writes).
pub fn to_pretty_json(value: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into a Vec cannot fail.
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

impl Result {
    /// An empty result of `version`.
    pub fn new(version: &str) -> Self {
        Result {
            cni_version: version.to_string(),
            ..Result::default()
        }
    }

    /// The wire JSON of `version` (`""` means "0.1.0") with `cniVersion` set to it.
    ///
    /// * 1.0.0 / 1.1.0: everything (libcni treats both as one schema).
    /// * 0.3.0 / 0.3.1 / 0.4.0: `version` added per IP; interface
    ///   `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/
    ///   `table`/`scope` dropped.
    /// * 0.1.0 / 0.2.0: see [`v020::Result020::from_current`] (errors when
    ///   there is more than one address of a family, or none).
    /// * anything else: code 1.
    pub fn to_version(&self, version: &str) -> CniResult<Value> {
        let ver = version::normalize(version);
        let value = match form_of(ver)? {
            Form::V020 => serde_json::to_value(v020::Result020::from_current(self, ver)?),
            Form::V040 => serde_json::to_value(v040::Result040::from_current(self, ver)),
            Form::V1 => {
                let mut r = self.clone();
                r.cni_version = ver.to_string();
                serde_json::to_value(r)
            }
        };
        value.map_err(|e| CniError::internal(format!("failed to encode result: {e}")))
    }

    /// [`Result::to_version`] as Go-style indented text, as a plugin prints it.
    pub fn to_version_string(&self, version: &str) -> CniResult<String> {
        Ok(to_pretty_json(&self.to_version(version)?))
    }

    /// The abbreviated form delegated IPAM plugins return: no `interfaces`
    /// and no `interface` index on IPs (SPEC.md section 5, "Delegated plugins").
    pub fn to_ipam(&self) -> Result {
        let mut r = self.clone();
        r.interfaces.clear();
        for ip in &mut r.ips {
            ip.interface = None;
        }
        r
    }

    /// Checks what the spec requires of a result beyond its JSON shape:
    /// every `interface` index points into `interfaces` (code 6 otherwise).
    pub fn validate(&self) -> CniResult<()> {
        for ip in &self.ips {
            if let Some(i) = ip.interface {
                if i >= self.interfaces.len() {
                    return Err(CniError::decoding(format!(
                        "IP {} refers to interface {i}, but the result has {} interface(s)",
                        ip.address,
                        self.interfaces.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_field_order_and_omitempty() {
        let r = parse_result(
            br#"{"cniVersion":"1.1.0","dns":{},"routes":[{"dst":"0.0.0.0/0","mtu":0,"table":0}],
                 "ips":[{"address":"198.19.96.2/24","gateway":"","interface":-1}]}"#,
            "",
        )
        .unwrap();
        assert_eq!(
            r.to_version("1.1.0").unwrap().to_string(),
            r#"{"cniVersion":"1.1.0","ips":[{"address":"198.19.96.2/24"}],"routes":[{"dst":"0.0.0.0/0","table":0}],"dns":{}}"#
        );
    }
}
