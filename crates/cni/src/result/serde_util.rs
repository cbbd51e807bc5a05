//! Serde helpers reproducing Go `encoding/json` leniency and `omitempty`.

use serde::de::{Deserialize, Deserializer, Error as _};
use std::net::IpAddr;

/// `null` (as Go accepts for slices, maps and structs) becomes the default value.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A Go `net.IP`: `null` and `""` mean "no address".
pub(crate) fn opt_ip<'de, D>(d: D) -> Result<Option<IpAddr>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse::<IpAddr>()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("invalid IP address: {s:?}"))),
    }
}

/// A Go `int` with `omitempty`: 0 and `null` mean "unset".
pub(crate) fn zero_none<'de, D>(d: D) -> Result<Option<u32>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<u32>::deserialize(d)?.filter(|v| *v != 0))
}

/// An `interface` index (Go `*int`). Some plugins write -1 for "no interface"
/// (spec-upgrades.md); a negative index is read as absent.
pub(crate) fn iface_index<'de, D>(d: D) -> Result<Option<usize>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<i64>::deserialize(d)? {
        None => Ok(None),
        Some(i) if i < 0 => Ok(None),
        Some(i) => usize::try_from(i)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("interface index {i} out of range"))),
    }
}

/// `omitempty` for a Go `int` modelled as `Option<u32>`.
pub(crate) fn none_or_zero(v: &Option<u32>) -> bool {
    matches!(v, None | Some(0))
}
