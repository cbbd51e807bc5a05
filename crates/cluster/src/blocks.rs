//! Which blocks a network's subnets divide into. A host claims one block at a
//! time and allocates addresses in it locally.

use crate::{Error, NetworkRecord, Result};
use ipnet::IpNet;

/// IPv4 blocks are /26 unless the network says otherwise.
pub const DEFAULT_V4_PREFIX: u8 = 26;
/// Option keys that set a network's block prefix lengths.
pub const OPTION_V4: &str = "ferry.block.v4";
pub const OPTION_V6: &str = "ferry.block.v6";

/// The block prefix length of one family: the option if set, else /26 for
/// IPv4 and, for IPv6, a block with as many host bits as the IPv4 one (/122).
pub fn block_prefix(net: &NetworkRecord, v6: bool) -> Result<u8> {
    let v4 = option(net, OPTION_V4, 32)?.unwrap_or(DEFAULT_V4_PREFIX);
    if !v6 {
        return Ok(v4);
    }
    Ok(option(net, OPTION_V6, 128)?.unwrap_or(128 - (32 - v4)))
}

fn option(net: &NetworkRecord, key: &str, max: u8) -> Result<Option<u8>> {
    let Some(value) = net.options.get(key) else {
        return Ok(None);
    };
    match value.trim_start_matches('/').parse::<u8>() {
        Ok(len) if len <= max => Ok(Some(len)),
        _ => Err(Error::Invalid(format!(
            "network {}: option {key}={value:?} is not a prefix length 0-{max}",
            net.name
        ))),
    }
}

/// The candidate blocks of one family, in order: every subnet of that family
/// cut into blocks (a subnet smaller than a block is one block). Lazy, so an
/// IPv6 /64 costs only as much as the blocks looked at.
pub fn candidates(net: &NetworkRecord, v6: bool) -> Result<impl Iterator<Item = IpNet> + '_> {
    let prefix = block_prefix(net, v6)?;
    Ok(net
        .subnets
        .iter()
        .filter(move |s| matches!(s, IpNet::V6(_)) == v6)
        .flat_map(move |s| {
            let s = s.trunc();
            s.subnets(prefix.max(s.prefix_len())).into_iter().flatten()
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(subnets: &[&str], opts: &[(&str, &str)]) -> NetworkRecord {
        NetworkRecord {
            name: "n".into(),
            vni: 1,
            subnets: subnets.iter().map(|s| s.parse().expect("subnet")).collect(),
            options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn default_blocks_are_26_and_122() {
        let n = net(&["198.18.0.0/24", "fd00:1::/120"], &[]);
        let v4: Vec<_> = candidates(&n, false)
            .expect("v4")
            .map(|b| b.to_string())
            .collect();
        assert_eq!(
            v4,
            [
                "198.18.0.0/26",
                "198.18.0.64/26",
                "198.18.0.128/26",
                "198.18.0.192/26"
            ]
        );
        let v6: Vec<_> = candidates(&n, true).expect("v6").collect();
        assert_eq!(v6.len(), 4);
        assert_eq!(v6[1].to_string(), "fd00:1::40/122");
    }

    #[test]
    fn options_set_the_prefix_and_small_subnets_are_one_block() {
        let n = net(
            &["198.18.0.0/24", "198.18.1.0/28"],
            &[("ferry.block.v4", "25"), ("ferry.block.v6", "/112")],
        );
        let v4: Vec<_> = candidates(&n, false)
            .expect("v4")
            .map(|b| b.to_string())
            .collect();
        assert_eq!(v4, ["198.18.0.0/25", "198.18.0.128/25", "198.18.1.0/28"]);
        assert_eq!(block_prefix(&n, true).expect("v6"), 112);
        let bad = net(&[], &[("ferry.block.v4", "40")]);
        assert!(matches!(block_prefix(&bad, false), Err(Error::Invalid(_))));
    }
}
