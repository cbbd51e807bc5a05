//! The `ipam` section of a host-local network configuration, and its
//! canonical, validated form.
//!
//! [`IpamConfig`] is the wire shape (serde, the reference's camelCase keys);
//! [`IpamConfig::canonicalize`] turns it into a [`Config`] whose ranges have
//! every default filled in and have been checked the way the reference
//! `host-local` checks them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{IpamError, Result};

/// Where the reference plugin keeps its state when `dataDir` is unset.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The `ipam` section as written in a network configuration.
///
/// The deprecated single-range form (`subnet`, `rangeStart`, `rangeEnd`,
/// `gateway` at top level) is accepted and becomes the first range set, as
/// in the reference. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// The IPAM plugin type, `host-local` for the reference.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Deprecated single range: its subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<IpNet>,
    /// Deprecated single range: first address to hand out.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub range_start: Option<IpAddr>,
    /// Deprecated single range: last address to hand out.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub range_end: Option<IpAddr>,
    /// Deprecated single range: its gateway.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
    /// Range sets: one address is allocated from each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Vec<RangeConfig>>,
    /// Routes to return with the addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// State directory; `/var/lib/cni/networks` when unset or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// A `resolv.conf` whose DNS settings the plugin returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
}

/// One range as written: a subnet with optional bounds and gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConfig {
    /// The subnet to allocate from.
    pub subnet: IpNet,
    /// First address to hand out (inclusive); network+1 when unset.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub range_start: Option<IpAddr>,
    /// Last address to hand out (inclusive); the last usable address when unset.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub range_end: Option<IpAddr>,
    /// The gateway, never handed out; network+1 when unset.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
}

impl RangeConfig {
    /// A range over the whole subnet with every default.
    pub fn new(subnet: IpNet) -> Self {
        RangeConfig {
            subnet,
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }
}

/// A route returned with the addresses: `gw` unset means "via the gateway".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    #[serde(
        default,
        deserialize_with = "opt_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw: Option<IpAddr>,
}

/// Go's `net.IP` reads `""` as "unset"; accept that too.
fn opt_ip<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<IpAddr>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<IpAddr>()
            .map(|ip| Some(canonical_ip(ip)))
            .map_err(|_| serde::de::Error::custom(format!("invalid IP address {s:?}"))),
    }
}

/// A validated network configuration with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The range sets, the deprecated top-level range first.
    pub ranges: Vec<RangeSet>,
    /// Routes, as configured.
    pub routes: Vec<Route>,
    /// State directory (the network's directory is `data_dir/<network>`).
    pub data_dir: PathBuf,
    /// `resolv.conf` to read DNS settings from, if any.
    pub resolv_conf: Option<PathBuf>,
}

/// A validated range: `range_start..=range_end` inside `subnet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet (host bits clear).
    pub subnet: IpNet,
    /// First address handed out (inclusive).
    pub range_start: IpAddr,
    /// Last address handed out (inclusive).
    pub range_end: IpAddr,
    /// The gateway, never handed out.
    pub gateway: IpAddr,
}

/// A validated, non-empty list of non-overlapping ranges of one family.
/// One address is allocated per range set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(Vec<Range>);

impl IpamConfig {
    /// Validate and fill in defaults as the reference `host-local` does:
    /// the deprecated top-level range becomes the first range set; each
    /// range gets `rangeStart` = network+1, `rangeEnd` = last usable
    /// address (broadcast-1 for IPv4, the last address for IPv6) and
    /// `gateway` = network+1 when unset; subnets smaller than /30 (IPv4) or
    /// /126 (IPv6) are rejected; bounds and gateway must lie in the subnet;
    /// the ranges of one set must be one family and disjoint, and range sets
    /// must be disjoint.
    pub fn canonicalize(&self) -> Result<Config> {
        let mut sets: Vec<&[RangeConfig]> = Vec::new();
        let legacy;
        if let Some(subnet) = self.subnet {
            legacy = [RangeConfig {
                subnet,
                range_start: self.range_start,
                range_end: self.range_end,
                gateway: self.gateway,
            }];
            sets.push(&legacy);
        }
        sets.extend(self.ranges.iter().map(Vec::as_slice));
        if sets.is_empty() {
            return Err(IpamError::NoRanges);
        }
        let ranges = sets
            .iter()
            .enumerate()
            .map(|(i, set)| RangeSet::canonicalize(i, set))
            .collect::<Result<Vec<_>>>()?;
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(IpamError::RangeSetsOverlap { a: i, b: j });
                }
            }
        }
        let data_dir = match &self.data_dir {
            Some(d) if !d.as_os_str().is_empty() => d.clone(),
            _ => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let resolv_conf = self
            .resolv_conf
            .clone()
            .filter(|p| !p.as_os_str().is_empty());
        Ok(Config {
            ranges,
            routes: self.routes.clone(),
            data_dir,
            resolv_conf,
        })
    }
}

impl Range {
    /// Validate one range; `set` is only used in error messages.
    pub fn canonicalize(set: usize, rc: &RangeConfig) -> Result<Range> {
        let subnet = rc.subnet;
        if subnet.network() != subnet.addr() {
            return Err(IpamError::HostBitsSet {
                set,
                subnet,
                network: subnet.trunc(),
            });
        }
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(IpamError::SubnetTooSmall { set, subnet });
        }
        let v4 = subnet.addr().is_ipv4();
        let first = ip_from_u128(ip_to_u128(subnet.network()) + 1, v4);
        let last_raw = ip_to_u128(subnet.broadcast());
        let last = ip_from_u128(if v4 { last_raw - 1 } else { last_raw }, v4);

        let in_subnet = |field: &'static str, ip: IpAddr| -> Result<IpAddr> {
            let ip = canonical_ip(ip);
            if subnet.contains(&ip) {
                Ok(ip)
            } else {
                Err(IpamError::NotInSubnet {
                    set,
                    field,
                    ip,
                    subnet,
                })
            }
        };
        let gateway = match rc.gateway {
            Some(gw) => in_subnet("gateway", gw)?,
            None => first,
        };
        let range_start = match rc.range_start {
            Some(ip) => in_subnet("rangeStart", ip)?,
            None => first,
        };
        let range_end = match rc.range_end {
            Some(ip) => in_subnet("rangeEnd", ip)?,
            None => last,
        };
        if ip_to_u128(range_end) < ip_to_u128(range_start) {
            return Err(IpamError::EndBeforeStart {
                set,
                start: range_start,
                end: range_end,
                subnet,
            });
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// Whether `ip` is an address this range may hand out or honour:
    /// same family, inside the subnet, between start and end inclusive.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        ip.is_ipv4() == self.subnet.addr().is_ipv4()
            && self.subnet.contains(&ip)
            && ip_to_u128(ip) >= ip_to_u128(self.range_start)
            && ip_to_u128(ip) <= ip_to_u128(self.range_end)
    }

    /// Whether the two ranges share any address.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && ip_to_u128(self.range_start) <= ip_to_u128(other.range_end)
            && ip_to_u128(other.range_start) <= ip_to_u128(self.range_end)
    }

    /// Whether this is an IPv4 range.
    pub fn is_ipv4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    /// The address with this range's prefix length, as returned to CNI.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        // The prefix length comes from a valid IpNet of the same family, so
        // this cannot fail; fall back to a host route rather than panic.
        IpNet::new(ip, self.subnet.prefix_len()).unwrap_or_else(|_| IpNet::from(ip))
    }

    /// Whether `ip` is the network address or (IPv4) the broadcast address:
    /// the allocator never hands those out even when the range covers them.
    pub(crate) fn is_network_or_broadcast(&self, ip: IpAddr) -> bool {
        ip == self.subnet.network() || (self.is_ipv4() && ip == self.subnet.broadcast())
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

impl RangeSet {
    /// Validate one range set; `set` is its index, used in error messages.
    pub fn canonicalize(set: usize, ranges: &[RangeConfig]) -> Result<RangeSet> {
        if ranges.is_empty() {
            return Err(IpamError::EmptyRangeSet { set });
        }
        let ranges = ranges
            .iter()
            .map(|r| Range::canonicalize(set, r))
            .collect::<Result<Vec<_>>>()?;
        if ranges.iter().any(|r| r.is_ipv4() != ranges[0].is_ipv4()) {
            return Err(IpamError::MixedFamilies { set });
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(IpamError::RangesOverlap {
                        set,
                        a: a.to_string(),
                        b: b.to_string(),
                    });
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    /// The ranges, in configuration order (which is iteration order).
    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// The range containing `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    /// Whether any range of this set contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// Whether any range of this set overlaps any range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// Whether this is an IPv4 range set.
    pub fn is_ipv4(&self) -> bool {
        self.0[0].is_ipv4()
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Whether two networks share an address (one contains the other's
/// network address; networks of different families never overlap).
pub fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) become IPv4, as Go's
/// `To4()` canonicalisation does; everything else is unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

pub(crate) fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub(crate) fn ip_from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}
