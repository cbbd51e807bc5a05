//! Address spaces, pools, sub-pools and addresses, as Docker's IPAM contract
//! sees them (ipam.md), with automatic provisioning from default pools: a
//! network can be created without naming a subnet.
//!
//! The address arithmetic is ferry-ipam's, the CNI allocator's: a pool is a
//! [`Range`] (its sub-pool, or the whole pool, less the network and IPv4
//! broadcast addresses) and the next address is [`next_free`]'s round-robin
//! walk from the last one handed out over the in-memory taken set, so a
//! request looks at a candidate or two however full the pool is (Docker asks
//! libnetwork's IPAM for serial allocation too: a released address is not
//! handed out again at once). Persistence, one key per pool and per address,
//! is in [`crate::ipam_store`].

use crate::error::{CnmError, Result};
use ferry_ipam::{nets_overlap, next_free, Range, RangeConfig};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

pub const LOCAL_SPACE: &str = "local";
pub const GLOBAL_SPACE: &str = "global";

/// A base network carved into subnets of `size` bits for networks created
/// without a subnet (dockerd's `--default-address-pool base=...,size=...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultPool {
    pub base: IpNet,
    pub size: u8,
}

impl DefaultPool {
    /// Parses `base=CIDR,size=N`.
    pub fn parse(s: &str) -> Result<DefaultPool> {
        let mut base = None;
        let mut size = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => {
                    base =
                        Some(v.parse::<IpNet>().map_err(|e| {
                            CnmError::Invalid(format!("default pool base {v:?}: {e}"))
                        })?)
                }
                Some(("size", v)) => {
                    size =
                        Some(v.parse::<u8>().map_err(|e| {
                            CnmError::Invalid(format!("default pool size {v:?}: {e}"))
                        })?)
                }
                _ => {
                    return Err(CnmError::Invalid(format!(
                        "default pool {s:?}: expected base=CIDR,size=N"
                    )))
                }
            }
        }
        match (base, size) {
            (Some(base), Some(size))
                if size >= base.prefix_len() && size <= base.max_prefix_len() =>
            {
                let pool = DefaultPool {
                    base: base.trunc(),
                    size,
                };
                // The pools carved from it must be pools Ferry accepts.
                check_size(&IpNet::new(pool.base.network(), size).unwrap_or(pool.base))?;
                Ok(pool)
            }
            _ => Err(CnmError::Invalid(format!(
                "default pool {s:?}: needs base=CIDR and a size between the base's prefix and {}",
                if s.contains(':') { 128 } else { 32 }
            ))),
        }
    }
}

/// Ferry's defaults: private ranges Docker does not use by default.
pub fn default_pools() -> Vec<DefaultPool> {
    vec![
        DefaultPool {
            base: "10.89.0.0/16"
                .parse()
                .unwrap_or_else(|_| IpNet::from(IpAddr::from([10, 89, 0, 0]))),
            size: 24,
        },
        DefaultPool {
            base: "fd00:89::/48"
                .parse()
                .unwrap_or_else(|_| IpNet::from(IpAddr::from([0xfd00, 0x89, 0, 0, 0, 0, 0, 0]))),
            size: 64,
        },
    ]
}

/// Pool sizes Ferry accepts. A pool is a network on a bridge: IPv4 pools
/// from /8 (the largest private network, 10.0.0.0/8) to /30 (a gateway and
/// one container), IPv6 pools from /16 to /126. Shorter prefixes (a /0
/// would hand out 0.0.0.1/0, a default route in disguise) cover the
/// Internet's addresses rather than a network's; longer ones leave nothing
/// to hand out once the network and broadcast addresses are taken out.
pub const PREFIX_V4: (u8, u8) = (8, 30);
pub const PREFIX_V6: (u8, u8) = (16, 126);

fn check_size(net: &IpNet) -> Result<()> {
    let (min, max) = if net.addr().is_ipv4() {
        PREFIX_V4
    } else {
        PREFIX_V6
    };
    let len = net.prefix_len();
    if len < min {
        return Err(CnmError::Invalid(format!(
            "pool {net} is too large to be a network: use a /{min} or longer"
        )));
    }
    if len > max {
        return Err(CnmError::Invalid(format!(
            "pool {net} is too small to hand out addresses: use a /{max} or shorter"
        )));
    }
    Ok(())
}

/// One registered pool and the addresses taken from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: String,
    pub space: String,
    pub subnet: IpNet,
    /// The sub-pool addresses are handed out from (`--ip-range`).
    pub range: Option<IpNet>,
    #[serde(default)]
    pub allocated: im::OrdSet<IpAddr>,
    /// The address last handed out without being asked for: the next
    /// search starts after it (kept in memory; see `ipam_store`).
    #[serde(skip)]
    pub(crate) last: Option<IpAddr>,
}

impl Pool {
    /// The addresses handed out without being asked for, as ferry-ipam
    /// sees a range. No gateway is held back (Docker reserves it with a
    /// gateway-type RequestAddress): the network address, never handed out
    /// anyway, stands in for it.
    pub(crate) fn span(&self) -> Result<Range> {
        let (net, sub) = (self.subnet, self.range.unwrap_or(self.subnet));
        let v4 = net.addr().is_ipv4();
        let rc = RangeConfig {
            subnet: net,
            range_start: Some(sub.network()).filter(|a| *a != net.network()),
            range_end: Some(sub.broadcast()).filter(|a| !v4 || *a != net.broadcast()),
            gateway: Some(net.network()),
        };
        Range::canonicalize(0, &rc).map_err(|e| {
            CnmError::Invalid(format!(
                "pool {net}{}: {e}",
                self.range
                    .map(|r| format!(" sub-pool {r}"))
                    .unwrap_or_default()
            ))
        })
    }
}

/// The IPAM state: every pool by ID, and which of its keys changed since
/// they were last handed to the store ([`Ipam::take_changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    pub pools: crate::pmap::PMap<Pool>,
    /// Pools (`None`) and addresses changed since the last `take_changes`.
    #[serde(skip)]
    pub(crate) dirty: BTreeSet<(String, Option<IpAddr>)>,
    /// The state came from the old single key: delete it with the next write.
    #[serde(skip)]
    pub(crate) legacy: bool,
}

impl Ipam {
    /// Registers a pool: the one asked for, refused when its size is out of
    /// bounds ([`PREFIX_V4`], [`PREFIX_V6`]), when it overlaps another pool
    /// in the same space, or when it covers one of `host_routes` (what the
    /// host already reaches: the main table, default routes excluded); or
    /// the first free subnet of the default pools that overlaps neither a
    /// pool nor a route.
    pub fn request_pool(
        &mut self,
        space: &str,
        pool: &str,
        sub_pool: &str,
        v6: bool,
        defaults: &[DefaultPool],
        host_routes: &[IpNet],
    ) -> Result<Pool> {
        let space = if space.is_empty() { LOCAL_SPACE } else { space };
        if pool.is_empty() && !sub_pool.is_empty() {
            return Err(CnmError::Invalid("a SubPool needs a Pool".into()));
        }
        let subnet = if pool.is_empty() {
            self.pick_default(v6, defaults, host_routes)?
        } else {
            let net: IpNet = pool
                .parse()
                .map_err(|e| CnmError::Invalid(format!("pool {pool:?}: {e}")))?;
            if net.trunc() != net {
                return Err(CnmError::Invalid(format!(
                    "pool {pool}: host bits are set (did you mean {}?)",
                    net.trunc()
                )));
            }
            check_size(&net)?;
            if let Some(existing) = self
                .pools
                .values()
                .find(|p| p.space == space && nets_overlap(&p.subnet, &net))
            {
                return Err(CnmError::PoolOverlap {
                    requested: net.to_string(),
                    existing: existing.subnet.to_string(),
                    space: space.to_string(),
                });
            }
            // A pool wider than a route would take the routed network's
            // addresses too. A pool equal to or inside a route is the
            // macvlan/ipvlan case (the parent's own network) and allowed.
            let covered = |r: &&IpNet| r.prefix_len() > net.prefix_len() && net.contains(*r);
            if let Some(route) = host_routes.iter().find(covered) {
                return Err(CnmError::RouteOverlap {
                    requested: net.to_string(),
                    route: route.to_string(),
                });
            }
            net
        };
        let range = if sub_pool.is_empty() {
            None
        } else {
            let r: IpNet = sub_pool
                .parse()
                .map_err(|e| CnmError::Invalid(format!("sub-pool {sub_pool:?}: {e}")))?;
            if !subnet.contains(&r.network()) || r.prefix_len() < subnet.prefix_len() {
                return Err(CnmError::Invalid(format!(
                    "sub-pool {r} is not inside pool {subnet}"
                )));
            }
            Some(r)
        };
        let id = match range {
            Some(r) => format!("{space}/{subnet}/{r}"),
            None => format!("{space}/{subnet}"),
        };
        let p = Pool {
            id: id.clone(),
            space: space.to_string(),
            subnet,
            range,
            allocated: im::OrdSet::new(),
            last: None,
        };
        p.span()?;
        self.pools.insert(id.clone(), p.clone());
        self.dirty.insert((id, None));
        Ok(p)
    }

    fn pick_default(
        &self,
        v6: bool,
        defaults: &[DefaultPool],
        host_routes: &[IpNet],
    ) -> Result<IpNet> {
        let family: Vec<&DefaultPool> = defaults
            .iter()
            .filter(|d| d.base.addr().is_ipv6() == v6)
            .collect();
        for d in &family {
            let Ok(candidates) = d.base.subnets(d.size) else {
                continue;
            };
            // Bounded: at most 65536 candidates per default pool.
            for c in candidates.take(1 << 16) {
                let taken = self.pools.values().any(|p| nets_overlap(&p.subnet, &c));
                if !taken && !host_routes.iter().any(|r| nets_overlap(r, &c)) {
                    return Ok(c);
                }
            }
        }
        Err(CnmError::NoDefaultPool {
            family: if v6 { "IPv6" } else { "IPv4" },
            pools: family
                .iter()
                .map(|d| format!("{}/{}", d.base, d.size))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub fn release_pool(&mut self, id: &str) -> Result<()> {
        // Idempotent: Docker may retry a release.
        if let Some(p) = self.pools.remove(id) {
            self.dirty.insert((p.id.clone(), None));
            for ip in p.allocated {
                self.dirty.insert((p.id.clone(), Some(ip)));
            }
        }
        Ok(())
    }

    /// Reserves `wanted`, or the gateway (first free address) when `gateway`
    /// and nothing is wanted, or the next free address after the last one
    /// handed out.
    pub fn request_address(
        &mut self,
        id: &str,
        wanted: Option<IpAddr>,
        gateway: bool,
    ) -> Result<IpNet> {
        let pool = self
            .pools
            .get_mut(id)
            .ok_or_else(|| CnmError::not_found("pool", id))?;
        let span = pool.span()?;
        let ip = match wanted {
            Some(ip) => {
                // The gateway may sit outside the sub-pool, never outside the pool.
                let ok = if gateway {
                    pool.subnet.contains(&ip) && ip != pool.subnet.network()
                } else {
                    span.contains(ip)
                };
                if !ok {
                    return Err(CnmError::AddressUnavailable {
                        address: ip.to_string(),
                        pool: pool.subnet.to_string(),
                        why: "outside the pool",
                    });
                }
                if pool.allocated.contains(&ip) {
                    return Err(CnmError::AddressUnavailable {
                        address: ip.to_string(),
                        pool: pool.subnet.to_string(),
                        why: "already allocated",
                    });
                }
                ip
            }
            None => {
                // The gateway is the first free address; others come round robin.
                let from = if gateway { None } else { pool.last };
                let taken = &pool.allocated;
                let (ip, _) = next_free(std::slice::from_ref(&span), from, |a| taken.contains(&a))
                    .ok_or_else(|| CnmError::Exhausted(pool.subnet.to_string()))?;
                if !gateway {
                    pool.last = Some(ip);
                }
                ip
            }
        };
        pool.allocated.insert(ip);
        self.dirty.insert((pool.id.clone(), Some(ip)));
        Ok(span.with_prefix(ip))
    }

    pub fn release_address(&mut self, id: &str, ip: IpAddr) -> Result<()> {
        if let Some(pool) = self.pools.get_mut(id) {
            if pool.allocated.remove(&ip).is_some() {
                self.dirty.insert((pool.id.clone(), Some(ip)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn defaults() -> Vec<DefaultPool> {
        vec![
            DefaultPool::parse("base=198.18.200.0/22,size=24").unwrap(),
            DefaultPool::parse("base=fd00:200::/48,size=64").unwrap(),
        ]
    }

    #[test]
    fn default_pools_are_carved_without_overlap() {
        let mut ipam = Ipam::default();
        let d = defaults();
        let route = [net("198.18.201.0/24")];
        let a = ipam.request_pool("", "", "", false, &d, &route).unwrap();
        let b = ipam.request_pool("", "", "", false, &d, &route).unwrap();
        assert_eq!(a.subnet.to_string(), "198.18.200.0/24");
        assert_eq!(
            b.subnet.to_string(),
            "198.18.202.0/24",
            "skips the routed /24"
        );
        let v6 = ipam.request_pool("", "", "", true, &d, &[]).unwrap();
        assert_eq!(v6.subnet.to_string(), "fd00:200::/64");
        ipam.request_pool("", "", "", false, &d, &route).unwrap();
        let err = ipam
            .request_pool("", "", "", false, &d, &route)
            .unwrap_err();
        assert!(matches!(err, CnmError::NoDefaultPool { .. }), "{err}");
    }

    #[test]
    fn overlapping_pools_are_refused() {
        let mut ipam = Ipam::default();
        ipam.request_pool("local", "198.18.210.0/24", "", false, &[], &[])
            .unwrap();
        for p in ["198.18.210.0/24", "198.18.210.128/25", "198.18.0.0/16"] {
            let err = ipam
                .request_pool("local", p, "", false, &[], &[])
                .unwrap_err();
            assert!(matches!(err, CnmError::PoolOverlap { .. }), "{p}: {err}");
        }
        // Another address space is another world.
        ipam.request_pool("global", "198.18.210.0/24", "", false, &[], &[])
            .unwrap();
        let err = ipam
            .request_pool("local", "198.18.211.1/24", "", false, &[], &[])
            .unwrap_err();
        assert!(matches!(err, CnmError::Invalid(_)), "{err}");
        let err = ipam
            .request_pool("local", "", "198.18.212.0/25", false, &[], &[])
            .unwrap_err();
        assert!(matches!(err, CnmError::Invalid(_)));
    }

    #[test]
    fn addresses_gateway_sub_pools_and_exhaustion() {
        let mut ipam = Ipam::default();
        let p = ipam
            .request_pool(
                "local",
                "198.18.220.0/29",
                "198.18.220.4/30",
                false,
                &[],
                &[],
            )
            .unwrap();
        let gw = ipam
            .request_address(&p.id, Some("198.18.220.1".parse().unwrap()), true)
            .unwrap();
        assert_eq!(gw.to_string(), "198.18.220.1/29");
        let a = ipam.request_address(&p.id, None, false).unwrap();
        assert_eq!(a.to_string(), "198.18.220.4/29", "from the sub-pool");
        let b = ipam.request_address(&p.id, None, false).unwrap();
        assert_eq!(b.to_string(), "198.18.220.5/29");
        // .6 is free, .7 is the broadcast address.
        ipam.request_address(&p.id, None, false).unwrap();
        assert!(matches!(
            ipam.request_address(&p.id, None, false),
            Err(CnmError::Exhausted(_))
        ));
        let taken = ipam.request_address(&p.id, Some("198.18.220.5".parse().unwrap()), false);
        assert!(matches!(taken, Err(CnmError::AddressUnavailable { .. })));
        ipam.release_address(&p.id, "198.18.220.5".parse().unwrap())
            .unwrap();
        assert_eq!(
            ipam.request_address(&p.id, None, false)
                .unwrap()
                .to_string(),
            "198.18.220.5/29"
        );
        assert!(matches!(
            ipam.request_address("nope", None, false),
            Err(CnmError::NotFound { .. })
        ));
        ipam.release_pool(&p.id).unwrap();
        ipam.release_pool(&p.id).unwrap();
    }

    #[test]
    fn pools_too_large_or_too_small_are_refused() {
        let mut ipam = Ipam::default();
        // The /0s were accepted, then handed out 0.0.0.1/0.
        let large = ["0.0.0.0/0", "::/0", "0.0.0.0/1", "10.0.0.0/7", "fd00::/8"];
        let small = ["198.18.213.0/31", "198.18.213.0/32", "fd00:213::/127"];
        let cases = large.map(|p| (p, "too large")).into_iter();
        for (p, why) in cases.chain(small.map(|p| (p, "too small"))) {
            let err = ipam
                .request_pool("local", p, "", p.contains(':'), &[], &[])
                .unwrap_err();
            assert!(
                matches!(&err, CnmError::Invalid(m) if m.contains(why)),
                "{p}: {err}"
            );
        }
        assert!(ipam.pools.is_empty());
        // The bounds themselves are pools.
        for (space, p) in [
            ("local", "10.0.0.0/8"),
            ("local", "198.18.213.0/30"),
            ("local", "fd00::/16"),
            ("global", "fd00:213::/126"),
        ] {
            ipam.request_pool(space, p, "", p.contains(':'), &[], &[])
                .unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        let err = DefaultPool::parse("base=0.0.0.0/0,size=0").unwrap_err();
        assert!(matches!(err, CnmError::Invalid(_)), "{err}");
    }

    #[test]
    fn pools_covering_host_routes_are_refused() {
        let mut ipam = Ipam::default();
        let routes = [net("198.18.214.0/24"), net("fd00:214::/64")];
        for p in ["198.18.0.0/16", "198.18.214.0/23", "fd00:214::/48"] {
            let err = ipam
                .request_pool("local", p, "", p.contains(':'), &[], &routes)
                .unwrap_err();
            assert!(
                matches!(&err, CnmError::RouteOverlap { route, .. }
                    if routes.iter().any(|r| r.to_string() == *route)),
                "{p}: {err}"
            );
            assert!(err
                .to_string()
                .contains("overlaps with existing host route"));
        }
        // The routed network itself or a part of it (a macvlan on its
        // parent's network), and a pool beside the route: accepted.
        for (space, p) in [
            ("local", "198.18.214.0/24"),
            ("global", "198.18.214.128/25"),
            ("local", "198.18.215.0/24"),
        ] {
            ipam.request_pool(space, p, "", false, &[], &routes)
                .unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn round_robin_after_the_last_address() {
        let mut ipam = Ipam::default();
        let p = ipam
            .request_pool("local", "198.18.216.0/28", "", false, &[], &[])
            .unwrap();
        let next = |ipam: &mut Ipam| {
            ipam.request_address(&p.id, None, false)
                .unwrap()
                .to_string()
        };
        assert_eq!(next(&mut ipam), "198.18.216.1/28");
        assert_eq!(next(&mut ipam), "198.18.216.2/28");
        ipam.release_address(&p.id, "198.18.216.1".parse().unwrap())
            .unwrap();
        // Not handed out again at once, as Docker's serial allocation.
        assert_eq!(next(&mut ipam), "198.18.216.3/28");
        // A gateway without an address: the first free one, cursor unmoved.
        let gw = ipam.request_address(&p.id, None, true).unwrap();
        assert_eq!(gw.to_string(), "198.18.216.1/28");
        assert_eq!(next(&mut ipam), "198.18.216.4/28");
    }
}
