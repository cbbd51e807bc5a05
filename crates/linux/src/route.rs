//! IPv4 and IPv6 routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::addr::Family;
use crate::error::{Error, Result};
use crate::socket::Netlink;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;
/// `RT_SCOPE_UNIVERSE`: a route through a gateway.
pub const SCOPE_UNIVERSE: u8 = 0;
/// `RT_SCOPE_LINK`: a destination directly on the link.
pub const SCOPE_LINK: u8 = 253;
/// `RT_SCOPE_HOST`: a local address.
pub const SCOPE_HOST: u8 = 254;

/// A route, both to add and as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Routing table (default: main).
    pub table: u32,
    /// Scope (`RT_SCOPE_*`); on adding, `None` picks link scope for routes
    /// without a gateway and universe scope otherwise, like `ip route`.
    pub scope: Option<u8>,
    /// Priority, also called metric.
    pub priority: Option<u32>,
    /// Path MTU (`RTAX_MTU`).
    pub mtu: Option<u32>,
    /// Advertised TCP MSS (`RTAX_ADVMSS`).
    pub advmss: Option<u32>,
    /// Preferred source address.
    pub src: Option<IpAddr>,
    /// Route protocol (`RTPROT_*`); on adding, `None` means `boot` as with
    /// `ip route`.
    pub protocol: Option<u8>,
    /// Route type (`RTN_*`, 1 = unicast, 2 = local ...); on adding, `None`
    /// means unicast.
    pub kind: Option<u8>,
}

impl Route {
    /// A unicast route to `dst` in the main table, all else unset.
    pub fn new(dst: IpNet) -> Self {
        Route {
            dst,
            gateway: None,
            oif: None,
            table: TABLE_MAIN,
            scope: None,
            priority: None,
            mtu: None,
            advmss: None,
            src: None,
            protocol: None,
            kind: None,
        }
    }

    /// A default route via `gateway`.
    pub fn default_via(gateway: IpAddr) -> Self {
        let dst = match gateway {
            IpAddr::V4(_) => IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        };
        // A /0 prefix is always valid.
        let dst = dst.unwrap_or_default();
        Route::new(dst).gateway(gateway)
    }

    /// Sets the gateway.
    pub fn gateway(mut self, gw: IpAddr) -> Self {
        self.gateway = Some(gw);
        self
    }

    /// Sets the output interface.
    pub fn oif(mut self, index: u32) -> Self {
        self.oif = Some(index);
        self
    }

    /// Sets the table.
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: u8) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Sets the priority (metric).
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = Some(p);
        self
    }

    /// Sets the path MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the advertised MSS.
    pub fn advmss(mut self, mss: u32) -> Self {
        self.advmss = Some(mss);
        self
    }

    /// Sets the preferred source address.
    pub fn src(mut self, src: IpAddr) -> Self {
        self.src = Some(src);
        self
    }

    fn to_message(&self, deleting: bool) -> Result<RouteMessage> {
        let dst = self.dst.trunc();
        let family = Family::of(&dst.addr());
        for ip in self.gateway.iter().chain(self.src.iter()) {
            if Family::of(ip) != family {
                return Err(Error::InvalidArgument(format!(
                    "route to {dst}: {ip} is not of the destination's address family"
                )));
            }
        }
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.destination_prefix_length = dst.prefix_len();
        m.header.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        m.header.protocol = RouteProtocol::from(self.protocol.unwrap_or(if deleting {
            0
        } else {
            3 // RTPROT_BOOT
        }));
        m.header.kind = RouteType::from(self.kind.unwrap_or(1));
        // The defaults of `ip route`.
        let scope = match (self.scope, self.kind.unwrap_or(1)) {
            (Some(s), _) => s,
            (None, _) if deleting => 255, // RT_SCOPE_NOWHERE: match any scope
            (None, 2) => SCOPE_HOST,      // local
            (None, 3..=5) => SCOPE_LINK,  // broadcast, anycast, multicast
            (None, 1) if self.gateway.is_none() => SCOPE_LINK,
            (None, _) => SCOPE_UNIVERSE,
        };
        m.header.scope = RouteScope::from(scope);
        if dst.prefix_len() > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(dst.addr())));
        }
        m.attributes.push(RouteAttribute::Table(self.table));
        if let Some(gw) = self.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = self.oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(p) = self.priority {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        if let Some(src) = self.src {
            m.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
        }
        let mut metrics = Vec::new();
        if let Some(mtu) = self.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(mss) = self.advmss {
            metrics.push(RouteMetric::Advmss(mss));
        }
        if !metrics.is_empty() {
            m.attributes.push(RouteAttribute::Metrics(metrics));
        }
        Ok(m)
    }

    pub(crate) fn from_message(m: RouteMessage) -> Option<Route> {
        let zero = match m.header.address_family {
            AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => return None,
        };
        let mut r = Route::new(IpNet::new(zero, 0).ok()?);
        r.table = u32::from(m.header.table);
        r.scope = Some(u8::from(m.header.scope));
        r.protocol = Some(u8::from(m.header.protocol));
        r.kind = Some(u8::from(m.header.kind));
        let mut dst = zero;
        for a in m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = route_ip(d).unwrap_or(zero),
                RouteAttribute::Gateway(g) => r.gateway = route_ip(g),
                RouteAttribute::PrefSource(s) => r.src = route_ip(s),
                RouteAttribute::Oif(o) => r.oif = Some(o),
                RouteAttribute::Table(t) => r.table = t,
                RouteAttribute::Priority(p) => r.priority = Some(p),
                RouteAttribute::Metrics(ms) => {
                    for metric in ms {
                        match metric {
                            RouteMetric::Mtu(v) => r.mtu = Some(v),
                            RouteMetric::Advmss(v) => r.advmss = Some(v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        r.dst = IpNet::new(dst, m.header.destination_prefix_length).ok()?;
        Some(r)
    }
}

fn route_ip(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

impl Netlink {
    /// Adds a route; fails with `EEXIST` when an equal one exists.
    pub fn add_route(&mut self, route: &Route) -> Result<()> {
        let m = route.to_message(false)?;
        self.ack(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add route to {}", route.dst),
        )
    }

    /// Adds a route or replaces the one with the same destination, table,
    /// and priority.
    pub fn replace_route(&mut self, route: &Route) -> Result<()> {
        let m = route.to_message(false)?;
        self.ack(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            &format!("replace route to {}", route.dst),
        )
    }

    /// Deletes the route matching the set fields; fails with `ESRCH` when
    /// there is none.
    pub fn del_route(&mut self, route: &Route) -> Result<()> {
        let m = route.to_message(true)?;
        self.ack(
            RouteNetlinkMessage::DelRoute(m),
            0,
            &format!("delete route to {}", route.dst),
        )
    }

    /// Lists routes of `family`, from one table when `table` is given
    /// (otherwise from all tables, the local table included).
    pub fn routes(&mut self, family: Family, table: Option<u32>) -> Result<Vec<Route>> {
        let mut req = RouteMessage::default();
        req.header.address_family = family.to_nl();
        let replies = self.dump(RouteNetlinkMessage::GetRoute(req), "list routes")?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m) => Route::from_message(m),
                _ => None,
            })
            .filter(|r| match table {
                Some(t) => t == r.table,
                None => true,
            })
            .collect())
    }
}
