//! Neighbour (ARP/NDP) entries and bridge forwarding database (FDB) entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::addr::Family;
use crate::error::Result;
use crate::mac::MacAddr;
use crate::socket::Netlink;

/// `NUD_PERMANENT`.
pub const NUD_PERMANENT: u16 = 0x80;
/// `NUD_NOARP`.
pub const NUD_NOARP: u16 = 0x40;
/// `NUD_REACHABLE`.
pub const NUD_REACHABLE: u16 = 0x02;

/// A neighbour entry (IP to MAC on a link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface index.
    pub index: u32,
    /// Neighbour IP address.
    pub ip: IpAddr,
    /// Link-layer address, when resolved.
    pub mac: Option<MacAddr>,
    /// `NUD_*` state bits.
    pub state: u16,
    /// `NTF_*` flags.
    pub flags: u8,
}

/// A bridge (or VXLAN) forwarding database entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    /// Interface index of the port (bridge port or VXLAN device).
    pub index: u32,
    /// MAC address.
    pub mac: MacAddr,
    /// Remote VTEP address (VXLAN).
    pub dst: Option<IpAddr>,
    /// VLAN id.
    pub vlan: Option<u16>,
    /// VXLAN id.
    pub vni: Option<u32>,
    /// Remote UDP port (VXLAN).
    pub port: Option<u16>,
    /// Index of the master (bridge) holding the entry, as listed.
    pub master: Option<u32>,
    /// Entry lives in the master's FDB (`NTF_MASTER`, like `bridge fdb add
    /// ... master`); otherwise in the device's own FDB (`NTF_SELF`, as used
    /// for VXLAN devices).
    pub in_master: bool,
    /// For bridge (`in_master`) entries: static (`NUD_NOARP`) rather than
    /// local (`NUD_PERMANENT`). Device entries (VXLAN) are always sent as
    /// `NUD_PERMANENT`, the only state they accept besides reachable.
    pub is_static: bool,
    /// `NUD_*` state, as listed.
    pub state: u16,
    /// `NTF_*` flags, as listed.
    pub flags: u8,
}

impl FdbEntry {
    /// A static entry for `mac` on port `index` in the device's own FDB
    /// (the usual VXLAN entry, add `dst` for the remote VTEP).
    pub fn new(index: u32, mac: MacAddr) -> Self {
        FdbEntry {
            index,
            mac,
            dst: None,
            vlan: None,
            vni: None,
            port: None,
            master: None,
            in_master: false,
            is_static: true,
            state: 0,
            flags: 0,
        }
    }

    fn to_message(&self) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = self.index;
        // Bridges take NUD_NOARP as "static" and NUD_PERMANENT as "local";
        // VXLAN devices accept only NUD_PERMANENT or NUD_REACHABLE.
        m.header.state = NeighbourState::from(if self.in_master && self.is_static {
            NUD_NOARP
        } else {
            NUD_PERMANENT
        });
        m.header.flags = if self.in_master {
            NeighbourFlags::Controller
        } else {
            NeighbourFlags::Own
        };
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(self.mac.0.to_vec()));
        if let Some(dst) = self.dst {
            m.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
        }
        if let Some(v) = self.vlan {
            m.attributes.push(NeighbourAttribute::Vlan(v));
        }
        if let Some(v) = self.vni {
            m.attributes.push(NeighbourAttribute::Vni(v));
        }
        if let Some(p) = self.port {
            m.attributes.push(NeighbourAttribute::Port(p));
        }
        m
    }
}

fn addr_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        NeighbourAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        NeighbourAddress::Other(b) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice())
                .ok()
                .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            16 => <[u8; 16]>::try_from(b.as_slice())
                .ok()
                .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            _ => None,
        },
        _ => None,
    }
}

impl Netlink {
    /// Adds or replaces a permanent neighbour entry (`ip neigh replace ...
    /// nud permanent`).
    pub fn set_neighbour(&mut self, index: u32, ip: IpAddr, mac: MacAddr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = Family::of(&ip);
        m.header.ifindex = index;
        m.header.state = NeighbourState::from(NUD_PERMANENT);
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        self.ack(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            &format!("set neighbour {ip} lladdr {mac} on link #{index}"),
        )
    }

    /// Deletes a neighbour entry; fails with `ENOENT` when absent.
    pub fn del_neighbour(&mut self, index: u32, ip: IpAddr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = Family::of(&ip);
        m.header.ifindex = index;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
        self.ack(
            RouteNetlinkMessage::DelNeighbour(m),
            0,
            &format!("delete neighbour {ip} on link #{index}"),
        )
    }

    /// Lists neighbour entries, of one link when `index` is given.
    pub fn neighbours(&mut self, index: Option<u32>, family: Family) -> Result<Vec<Neighbour>> {
        let mut req = NeighbourMessage::default();
        req.header.family = family.to_nl();
        let replies = self.dump(RouteNetlinkMessage::GetNeighbour(req), "list neighbours")?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewNeighbour(m) = r else {
                continue;
            };
            if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
                continue;
            }
            if index.is_some_and(|i| i != m.header.ifindex) {
                continue;
            }
            let mut ip = None;
            let mut mac = None;
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::Destination(d) => ip = addr_ip(d),
                    NeighbourAttribute::LinkLayerAddress(l) => mac = MacAddr::from_slice(l),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                out.push(Neighbour {
                    index: m.header.ifindex,
                    ip,
                    mac,
                    state: u16::from(m.header.state),
                    flags: m.header.flags.bits(),
                });
            }
        }
        Ok(out)
    }

    /// Adds an FDB entry; fails with `EEXIST` when the same MAC is there.
    pub fn add_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewNeighbour(entry.to_message()),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add fdb {} on link #{}", entry.mac, entry.index),
        )
    }

    /// Appends an FDB entry (`bridge fdb append`): VXLAN devices keep
    /// several remotes for one MAC, e.g. the all-zero MAC for flooding.
    pub fn append_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewNeighbour(entry.to_message()),
            NLM_F_CREATE | NLM_F_APPEND,
            &format!("append fdb {} on link #{}", entry.mac, entry.index),
        )
    }

    /// Adds or replaces an FDB entry.
    pub fn replace_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::NewNeighbour(entry.to_message()),
            NLM_F_CREATE | NLM_F_REPLACE,
            &format!("replace fdb {} on link #{}", entry.mac, entry.index),
        )
    }

    /// Deletes an FDB entry (for VXLAN, `dst` selects one remote).
    pub fn del_fdb(&mut self, entry: &FdbEntry) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::DelNeighbour(entry.to_message()),
            0,
            &format!("delete fdb {} on link #{}", entry.mac, entry.index),
        )
    }

    /// Lists FDB entries, of one port when `index` is given.
    pub fn fdb(&mut self, index: Option<u32>) -> Result<Vec<FdbEntry>> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let replies = self.dump(RouteNetlinkMessage::GetNeighbour(req), "list fdb")?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewNeighbour(m) = r else {
                continue;
            };
            if m.header.family != AddressFamily::Bridge
                || index.is_some_and(|i| i != m.header.ifindex)
            {
                continue;
            }
            let state = u16::from(m.header.state);
            let flags = m.header.flags;
            let mut e = FdbEntry::new(m.header.ifindex, MacAddr::ZERO);
            e.state = state;
            e.flags = flags.bits();
            e.in_master = flags.contains(NeighbourFlags::Controller);
            e.is_static = state & NUD_NOARP != 0;
            let mut has_mac = false;
            for a in &m.attributes {
                match a {
                    NeighbourAttribute::LinkLayerAddress(l) => {
                        if let Some(mac) = MacAddr::from_slice(l) {
                            e.mac = mac;
                            has_mac = true;
                        }
                    }
                    NeighbourAttribute::Destination(d) => e.dst = addr_ip(d),
                    NeighbourAttribute::Vlan(v) => e.vlan = Some(*v),
                    NeighbourAttribute::Vni(v) => e.vni = Some(*v),
                    NeighbourAttribute::Port(p) => e.port = Some(*p),
                    NeighbourAttribute::Controller(c) => e.master = Some(*c),
                    _ => {}
                }
            }
            if has_mac {
                out.push(e);
            }
        }
        Ok(out)
    }
}
