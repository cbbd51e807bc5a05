//! IPv4 and IPv6 interface addresses.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::socket::Netlink;

/// Which address family to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Both IPv4 and IPv6.
    All,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    pub(crate) fn to_nl(self) -> AddressFamily {
        match self {
            Family::All => AddressFamily::Unspec,
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }

    pub(crate) fn of(ip: &IpAddr) -> AddressFamily {
        match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }
}

/// Options for [`Netlink::add_address`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrOptions {
    /// Skip IPv6 duplicate address detection (`IFA_F_NODAD`), so the
    /// address is usable at once.
    pub nodad: bool,
    /// Replace an existing equal address instead of failing with `EEXIST`.
    pub replace: bool,
}

/// An address assigned to a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Interface index.
    pub index: u32,
    /// Address and prefix length.
    pub net: IpNet,
    /// `IFA_F_*` flags (full 32-bit set).
    pub flags: u32,
    /// Scope (`RT_SCOPE_*`: 0 universe, 253 link, 254 host).
    pub scope: u8,
    /// IPv4 label.
    pub label: Option<String>,
}

impl Address {
    /// True when the kernel marked the address tentative (IPv6 DAD pending).
    pub fn is_tentative(&self) -> bool {
        self.flags & AddressFlags::Tentative.bits() != 0
    }
}

fn addr_msg(index: u32, net: &IpNet) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = Family::of(&net.addr());
    m.header.prefix_len = net.prefix_len();
    m.header.index = index;
    let ip = net.addr();
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer (the
    // same on broadcast links). The kernel wants IFA_LOCAL for IPv4.
    m.attributes.push(AddressAttribute::Local(ip));
    m.attributes.push(AddressAttribute::Address(ip));
    m
}

impl Netlink {
    /// Adds `net` (address and prefix length) to link `index`. For IPv4
    /// prefixes shorter than /31 the broadcast address is set as well.
    /// Fails with `EEXIST` if present, unless `opts.replace`.
    pub fn add_address(&mut self, index: u32, net: IpNet, opts: AddrOptions) -> Result<()> {
        let mut m = addr_msg(index, &net);
        if let IpNet::V4(v4) = net {
            if v4.prefix_len() < 31 {
                let brd = Ipv4Net::new(v4.addr(), v4.prefix_len())
                    .map(|n| n.broadcast())
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                m.attributes.push(AddressAttribute::Broadcast(brd));
            }
        }
        if opts.nodad {
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let flags = NLM_F_CREATE
            | if opts.replace {
                NLM_F_REPLACE
            } else {
                NLM_F_EXCL
            };
        self.ack(
            RouteNetlinkMessage::NewAddress(m),
            flags,
            &format!("add address {net} to link #{index}"),
        )
    }

    /// Removes `net` from link `index`; fails with `EADDRNOTAVAIL` when it
    /// is not there.
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::DelAddress(addr_msg(index, &net)),
            0,
            &format!("delete address {net} from link #{index}"),
        )
    }

    /// Lists addresses, of one link when `index` is given.
    pub fn addresses(&mut self, index: Option<u32>, family: Family) -> Result<Vec<Address>> {
        let mut req = AddressMessage::default();
        req.header.family = family.to_nl();
        // With strict checking the kernel dumps only the one link's
        // addresses, so the cost does not grow with every veth on the node;
        // without it (older kernels) the filter below does the same work.
        let strict = match index {
            Some(i) => {
                req.header.index = i;
                self.set_strict_dump(true)
            }
            None => false,
        };
        let replies = self.dump(RouteNetlinkMessage::GetAddress(req), "list addresses");
        if strict {
            self.set_strict_dump(false);
        }
        let replies = replies?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewAddress(m) = r else {
                continue;
            };
            if index.is_some_and(|i| i != m.header.index) {
                continue;
            }
            let mut local = None;
            let mut address = None;
            let mut label = None;
            let mut flags = u32::from(m.header.flags.bits());
            for a in m.attributes {
                match a {
                    AddressAttribute::Local(ip) => local = Some(ip),
                    AddressAttribute::Address(ip) => address = Some(ip),
                    AddressAttribute::Label(l) => label = Some(l),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            let Some(ip) = local.or(address) else {
                continue;
            };
            let Ok(net) = IpNet::new(ip, m.header.prefix_len) else {
                continue;
            };
            out.push(Address {
                index: m.header.index,
                net,
                flags,
                scope: u8::from(m.header.scope),
                label,
            });
        }
        Ok(out)
    }
}
