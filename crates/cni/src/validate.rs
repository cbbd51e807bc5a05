//! The spec's rules for names the runtime passes around: network names,
//! container IDs, interface names and plugin types (libcni's `pkg/utils`).

use crate::error::{code, CniError, CniResult};

/// Linux IFNAMSIZ is 16 including the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A network name starts with an alphanumeric character, followed by alphanumerics, `_`, `.` or `-`.
pub fn network_name(name: &str) -> CniResult<()> {
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "missing network name",
            "",
        ));
    }
    if !valid_identifier(name) {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(())
}

/// A container ID follows the same rule as a network name and must not be empty.
pub fn container_id(id: &str) -> CniResult<()> {
    if id.is_empty() {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            "missing containerID",
            "",
        ));
    }
    if !valid_identifier(id) {
        return Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            "invalid characters in containerID",
            id,
        ));
    }
    Ok(())
}

/// An interface name is 1-15 bytes, not `.` or `..`, without `/`, `:` or white space.
pub fn interface_name(ifname: &str) -> CniResult<()> {
    let bad = |msg: &str| Err(CniError::new(code::INVALID_ENVIRONMENT, msg, ifname));
    if ifname.is_empty() {
        return bad("interface name is empty");
    }
    if ifname.len() > MAX_IFNAME_LEN {
        return bad("interface name is too long");
    }
    if ifname == "." || ifname == ".." {
        return bad("interface name is . or ..");
    }
    if ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("interface name contains / or : or whitespace characters");
    }
    Ok(())
}

/// A plugin type names a binary in CNI_PATH: it must not be empty or contain a path separator.
pub fn plugin_type(plugin_type: &str) -> CniResult<()> {
    if plugin_type.is_empty() {
        return Err(CniError::invalid_config(
            "plugin config is missing \"type\"",
        ));
    }
    if plugin_type.contains('/') || plugin_type.contains('\\') || plugin_type == ".." {
        return Err(CniError::invalid_config(format!(
            "plugin type {plugin_type:?} must not contain a path separator"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(network_name("net-1.a_b").is_ok());
        assert_eq!(network_name("-net").unwrap_err().code, 7);
        assert_eq!(network_name("a/b").unwrap_err().code, 7);
        assert_eq!(network_name("").unwrap_err().code, 7);
        assert!(container_id("abc_1.2-3").is_ok());
        assert_eq!(container_id("").unwrap_err().code, 3);
        assert_eq!(container_id("a b").unwrap_err().code, 4);
        assert_eq!(container_id("_a").unwrap_err().code, 4);
    }

    #[test]
    fn interface_names() {
        assert!(interface_name("eth0").is_ok());
        assert!(interface_name("a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert_eq!(interface_name(bad).unwrap_err().code, 4, "{bad:?}");
        }
    }

    #[test]
    fn plugin_types() {
        assert!(plugin_type("host-local").is_ok());
        assert!(plugin_type("").is_err());
        assert!(plugin_type("../bin/sh").is_err());
    }
}
