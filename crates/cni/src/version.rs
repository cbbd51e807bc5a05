//! CNI specification versions (SPEC.md "Version", section 1 "Version
//! considerations" and section 5 "VERSION Success").
//!
//! Behaviour follows libcni's `pkg/version`:
//! * an empty `cniVersion` means "0.1.0";
//! * version text has one to three dot-separated decimal parts ("1" and "1.0"
//!   both mean 1.0.0), more parts or non-numeric parts are a decoding error (code 6);
//! * a plugin accepts a config version only when it is listed verbatim in its
//!   supported versions (`Reconciler.CheckRaw`), otherwise it fails with code 1
//!   and the details `config is "X", plugin supports ["a" "b"]`.

use crate::error::{CniError, CniResult};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The newest specification version Ferry implements.
pub const CURRENT: &str = "1.1.0";

/// Every specification version Ferry can read, write and convert between, oldest first.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The versions of plugins that predate the VERSION command's `supportedVersions`.
pub const LEGACY: &[&str] = &["0.1.0", "0.2.0"];

/// The version a missing or empty `cniVersion` stands for.
pub const IMPLICIT: &str = "0.1.0";

/// A parsed specification version. Ordering is numeric (0.3.1 < 0.4.0 < 1.0.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = CniError;

    fn from_str(s: &str) -> CniResult<Self> {
        parse(s)
    }
}

impl TryFrom<&str> for Version {
    type Error = CniError;

    fn try_from(s: &str) -> CniResult<Self> {
        parse(s)
    }
}

/// Parses a version string like libcni's `version.ParseVersion`.
///
/// `""` is 0.1.0; `"1"` and `"1.0"` are 1.0.0; anything else malformed is a
/// decoding error (code 6) naming the offending text.
pub fn parse(s: &str) -> CniResult<Version> {
    if s.is_empty() {
        return Ok(Version::new(0, 1, 0));
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 3 {
        return Err(CniError::decoding(format!(
            "invalid version {s:?}: too many parts"
        )));
    }
    let names = ["major", "minor", "patch"];
    let mut nums = [0u64; 3];
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CniError::decoding(format!(
                "invalid version {s:?}: {} part {part:?} is not a number",
                names[i]
            )));
        }
        nums[i] = part.parse::<u64>().map_err(|e| {
            CniError::decoding(format!(
                "invalid version {s:?}: {} part {part:?}: {e}",
                names[i]
            ))
        })?;
    }
    Ok(Version::new(nums[0], nums[1], nums[2]))
}

/// The version an empty `cniVersion` stands for: `""` becomes "0.1.0", anything else is kept.
pub fn normalize(s: &str) -> &str {
    if s.is_empty() {
        IMPLICIT
    } else {
        s
    }
}

/// Whether Ferry supports this exact version string (an empty string counts as "0.1.0").
pub fn is_supported(s: &str) -> bool {
    SUPPORTED.contains(&normalize(s))
}

/// `a >= b` numerically (libcni `GreaterThanOrEqualTo`); errors (code 6) if either is malformed.
pub fn greater_than_or_equal_to(a: &str, b: &str) -> CniResult<bool> {
    Ok(parse(a)? >= parse(b)?)
}

/// `a > b` numerically (libcni `GreaterThan`); errors (code 6) if either is malformed.
pub fn greater_than(a: &str, b: &str) -> CniResult<bool> {
    Ok(parse(a)? > parse(b)?)
}

/// Picks the highest of `candidates` (e.g. a config's `cniVersion` plus its
/// `cniVersions`) that is also in `supported`, comparing numerically.
///
/// A candidate matches a supported entry when both parse to the same version
/// ("1.0" matches "1.0.0"); the returned string is the supported entry's
/// spelling. Malformed and empty candidates are skipped. `None` when nothing matches.
pub fn pick_highest(candidates: &[String], supported: &[&str]) -> Option<String> {
    let supported: Vec<(Version, &str)> = supported
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| parse(s).ok().map(|v| (v, *s)))
        .collect();
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .filter_map(|c| parse(c).ok())
        .filter_map(|v| supported.iter().find(|(sv, _)| *sv == v).copied())
        .max_by_key(|(v, _)| *v)
        .map(|(_, s)| s.to_string())
}

/// Version selection for a network configuration exactly like libcni's
/// `ConfListFromBytes`: the highest of `cniVersion` and `cniVersions` that is
/// not greater than [`CURRENT`]. Entries are not checked against
/// [`SUPPORTED`] (plugins reject what they cannot do); a malformed entry is an
/// error (code 6). Without `cniVersions` the `cniVersion` is returned as is.
pub fn select_config_version(
    cni_version: &str,
    cni_versions: Option<&[String]>,
) -> CniResult<String> {
    let Some(list) = cni_versions else {
        return Ok(cni_version.to_string());
    };
    let current = parse(CURRENT)?;
    let mut best: Option<(Version, String)> = None;
    let extra = (!cni_version.is_empty()).then_some(cni_version);
    for (i, v) in list.iter().map(String::as_str).chain(extra).enumerate() {
        let parsed = parse(v).map_err(|e| {
            let what = if i < list.len() {
                format!("invalid cniVersions entry {v:?} at index {i}")
            } else {
                format!("invalid cniVersion {v:?}")
            };
            CniError::decoding(format!("{what}: {}", e.details))
        })?;
        if parsed > current {
            continue;
        }
        let better = match &best {
            Some((b, _)) => parsed > *b,
            None => true,
        };
        if better {
            best = Some((parsed, v.to_string()));
        }
    }
    Ok(best
        .map(|(_, s)| s)
        .unwrap_or_else(|| cni_version.to_string()))
}

/// The VERSION command's output: `{"cniVersion": .., "supportedVersions": [..]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(
        rename = "supportedVersions",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub supported_versions: Vec<String>,
}

impl PluginInfo {
    /// A plugin supporting `versions`, reporting [`CURRENT`] as its `cniVersion`
    /// (libcni `PluginSupports`).
    pub fn supports<S: AsRef<str>>(versions: &[S]) -> Self {
        PluginInfo {
            cni_version: CURRENT.to_string(),
            supported_versions: versions.iter().map(|v| v.as_ref().to_string()).collect(),
        }
    }

    /// Every version in [`SUPPORTED`] (libcni `version.All`).
    pub fn all() -> Self {
        Self::supports(SUPPORTED)
    }

    /// Only 0.1.0 and 0.2.0 (libcni `version.Legacy`).
    pub fn legacy() -> Self {
        Self::supports(LEGACY)
    }

    /// The supported versions from `min` upwards, inclusive (libcni `VersionsStartingFrom`).
    /// Errors (code 6) if `min` is malformed.
    pub fn starting_from(min: &str) -> CniResult<Self> {
        let min = parse(min)?;
        let list: Vec<&str> = SUPPORTED
            .iter()
            .copied()
            .filter(|v| parse(v).map(|v| v >= min).unwrap_or(false))
            .collect();
        Ok(Self::supports(&list))
    }

    /// Decodes a plugin's VERSION output like libcni's `PluginDecoder`: a
    /// missing `cniVersion` is an error; a missing `supportedVersions` is only
    /// accepted from a "0.2.0" plugin and then means 0.1.0 and 0.2.0.
    pub fn decode(bytes: &[u8]) -> CniResult<Self> {
        let info: PluginInfo = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("decoding version info: {e}")))?;
        if info.cni_version.is_empty() {
            return Err(CniError::decoding(
                "decoding version info: missing field cniVersion",
            ));
        }
        if info.supported_versions.is_empty() {
            if info.cni_version == "0.2.0" {
                return Ok(Self::legacy());
            }
            return Err(CniError::decoding(
                "decoding version info: missing field supportedVersions",
            ));
        }
        Ok(info)
    }

    /// Whether `config_version` is listed (an empty version counts as "0.1.0").
    pub fn is_supported(&self, config_version: &str) -> bool {
        let v = normalize(config_version);
        self.supported_versions.iter().any(|s| s == v)
    }

    /// `Ok` when `config_version` is listed, else the code-1 error libcni's
    /// `Reconciler` gives, naming both the config version and the list.
    pub fn check(&self, config_version: &str) -> CniResult<()> {
        check_supported(config_version, &self.supported_versions)
    }

    /// This info with `cniVersion` set (VERSION replies echo the request's version).
    pub fn with_cni_version(mut self, version: &str) -> Self {
        self.cni_version = version.to_string();
        self
    }
}

/// `Ok` when `config_version` (empty = "0.1.0") is in `supported` verbatim,
/// else code 1 "incompatible CNI versions" with details
/// `config is "1.1.0", plugin supports ["0.1.0" "0.2.0"]` (libcni's wording).
pub fn check_supported<S: AsRef<str>>(config_version: &str, supported: &[S]) -> CniResult<()> {
    let v = normalize(config_version);
    if supported.iter().any(|s| s.as_ref() == v) {
        return Ok(());
    }
    let list: Vec<String> = supported
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect();
    Err(CniError::incompatible_version(format!(
        "config is {v:?}, plugin supports [{}]",
        list.join(" ")
    ))
    .with_version(config_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(parse("").unwrap(), Version::new(0, 1, 0));
        assert_eq!(parse("1").unwrap(), Version::new(1, 0, 0));
        assert_eq!(parse("1.1").unwrap(), Version::new(1, 1, 0));
        assert_eq!(parse("0.3.1").unwrap(), Version::new(0, 3, 1));
        for bad in [
            "1.0.0.0",
            "a.b.c",
            "1..0",
            "1.0.",
            "-1.0.0",
            "1.0.0-rc1",
            " 1.0.0",
        ] {
            assert_eq!(parse(bad).unwrap_err().code, 6, "{bad}");
        }
        assert_eq!("1.0.0".parse::<Version>().unwrap().to_string(), "1.0.0");
        assert!(parse("0.10.0").unwrap() > parse("0.4.0").unwrap());
    }

    #[test]
    fn check_message() {
        let e = check_supported("1.1.0", &["0.1.0", "0.2.0"]).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(
            e.details,
            r#"config is "1.1.0", plugin supports ["0.1.0" "0.2.0"]"#
        );
        assert!(check_supported("", &["0.1.0"]).is_ok());
    }
}
