//! Address spaces, pools, sub-pools and addresses, as Docker's IPAM contract
//! sees them (ipam.md), with automatic provisioning from default pools: a
//! network can be created without naming a subnet.

use crate::error::{CnmError, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
                Ok(DefaultPool {
                    base: base.trunc(),
                    size,
                })
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

/// One registered pool and the addresses taken from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: String,
    pub space: String,
    pub subnet: IpNet,
    /// The sub-pool addresses are handed out from (`--ip-range`).
    pub range: Option<IpNet>,
    pub allocated: BTreeSet<IpAddr>,
}

impl Pool {
    fn usable(&self, ip: IpAddr) -> bool {
        let net = &self.subnet;
        if !net.contains(&ip) || ip == net.network() {
            return false;
        }
        if ip.is_ipv4() && ip == net.broadcast() && net.prefix_len() < 31 {
            return false;
        }
        self.range.is_none_or(|r| r.contains(&ip))
    }

    fn first_free(&self) -> Option<IpAddr> {
        let start = self.range.unwrap_or(self.subnet);
        // Walk from the start of the range; allocated addresses are few next
        // to the space, so this stays short even for a /64.
        let mut ip = start.network();
        for _ in 0..(self.allocated.len() + 3) {
            if self.usable(ip) && !self.allocated.contains(&ip) {
                return Some(ip);
            }
            ip = next(ip)?;
        }
        // Dense pool: scan the rest (bounded by the pool's size).
        let mut ip = start.network();
        loop {
            if self.usable(ip) && !self.allocated.contains(&ip) {
                return Some(ip);
            }
            ip = next(ip)?;
            if !start.contains(&ip) {
                return None;
            }
        }
    }
}

fn next(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// The IPAM state: every pool by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    pub pools: BTreeMap<String, Pool>,
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Ipam {
    /// Registers a pool: the one asked for, refused when it overlaps another
    /// in the same space, or the first free subnet of the default pools that
    /// neither overlaps a pool nor anything `in_use` says the host routes.
    pub fn request_pool(
        &mut self,
        space: &str,
        pool: &str,
        sub_pool: &str,
        v6: bool,
        defaults: &[DefaultPool],
        in_use: &dyn Fn(&IpNet) -> bool,
    ) -> Result<Pool> {
        let space = if space.is_empty() { LOCAL_SPACE } else { space };
        if pool.is_empty() && !sub_pool.is_empty() {
            return Err(CnmError::Invalid("a SubPool needs a Pool".into()));
        }
        let subnet = if pool.is_empty() {
            self.pick_default(v6, defaults, in_use)?
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
            if let Some(existing) = self
                .pools
                .values()
                .find(|p| p.space == space && overlaps(&p.subnet, &net))
            {
                return Err(CnmError::PoolOverlap {
                    requested: net.to_string(),
                    existing: existing.subnet.to_string(),
                    space: space.to_string(),
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
            allocated: BTreeSet::new(),
        };
        self.pools.insert(id, p.clone());
        Ok(p)
    }

    fn pick_default(
        &self,
        v6: bool,
        defaults: &[DefaultPool],
        in_use: &dyn Fn(&IpNet) -> bool,
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
                let taken = self.pools.values().any(|p| overlaps(&p.subnet, &c));
                if !taken && !in_use(&c) {
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
        self.pools.remove(id);
        Ok(())
    }

    /// Reserves `wanted`, or the gateway (first usable address) when `gateway`
    /// and nothing is wanted, or the first free address.
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
        let ip = match wanted {
            Some(ip) => {
                // The gateway may sit outside the sub-pool, never outside the pool.
                let ok = if gateway {
                    pool.subnet.contains(&ip) && ip != pool.subnet.network()
                } else {
                    pool.usable(ip)
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
            None => pool
                .first_free()
                .ok_or_else(|| CnmError::Exhausted(pool.subnet.to_string()))?,
        };
        pool.allocated.insert(ip);
        IpNet::new(ip, pool.subnet.prefix_len())
            .map_err(|e| CnmError::Invalid(format!("{ip}: {e}")))
    }

    pub fn release_address(&mut self, id: &str, ip: IpAddr) -> Result<()> {
        if let Some(pool) = self.pools.get_mut(id) {
            pool.allocated.remove(&ip);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &IpNet) -> bool {
        false
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
        let route = |n: &IpNet| *n == "198.18.201.0/24".parse::<IpNet>().unwrap();
        let a = ipam.request_pool("", "", "", false, &d, &route).unwrap();
        let b = ipam.request_pool("", "", "", false, &d, &route).unwrap();
        assert_eq!(a.subnet.to_string(), "198.18.200.0/24");
        assert_eq!(
            b.subnet.to_string(),
            "198.18.202.0/24",
            "skips the routed /24"
        );
        let v6 = ipam.request_pool("", "", "", true, &d, &none).unwrap();
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
        ipam.request_pool("local", "198.18.210.0/24", "", false, &[], &none)
            .unwrap();
        for p in ["198.18.210.0/24", "198.18.210.128/25", "198.18.0.0/16"] {
            let err = ipam
                .request_pool("local", p, "", false, &[], &none)
                .unwrap_err();
            assert!(matches!(err, CnmError::PoolOverlap { .. }), "{p}: {err}");
        }
        // Another address space is another world.
        ipam.request_pool("global", "198.18.210.0/24", "", false, &[], &none)
            .unwrap();
        let err = ipam
            .request_pool("local", "198.18.211.1/24", "", false, &[], &none)
            .unwrap_err();
        assert!(matches!(err, CnmError::Invalid(_)), "{err}");
        let err = ipam
            .request_pool("local", "", "198.18.212.0/25", false, &[], &none)
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
                &none,
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
}
