//! Links (network interfaces): create, inspect, change, delete.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoMacVlan,
    InfoPortData, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    LinkProtoInfoBridge, MacVlanMode,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::mac::MacAddr;
use crate::netns::Netns;
use crate::socket::Netlink;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_BRPORT_LEARNING: u16 = 8;
const IFLA_BRPORT_ISOLATED: u16 = 33;

/// RFC 2863 operational state of a link (`IFLA_OPERSTATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    /// State cannot be determined (common for virtual devices that are up).
    Unknown,
    /// Some component is missing.
    NotPresent,
    /// Down.
    Down,
    /// Down because a lower layer is down (e.g. a veth whose peer is down).
    LowerLayerDown,
    /// In a test mode.
    Testing,
    /// Waiting for an external event.
    Dormant,
    /// Up and able to pass packets.
    Up,
    /// A value this crate does not know.
    Other(u8),
}

impl From<u8> for OperState {
    fn from(v: u8) -> Self {
        match v {
            0 => OperState::Unknown,
            1 => OperState::NotPresent,
            2 => OperState::Down,
            3 => OperState::LowerLayerDown,
            4 => OperState::Testing,
            5 => OperState::Dormant,
            6 => OperState::Up,
            o => OperState::Other(o),
        }
    }
}

/// Bridge port flags of a link enslaved to a bridge. On reading, `None`
/// means the kernel did not report the flag; on writing, `None` leaves the
/// flag as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgePortFlags {
    /// Hairpin mode: frames may be sent back out of the port they came in on.
    pub hairpin: Option<bool>,
    /// Isolated: the port cannot talk to other isolated ports.
    pub isolated: Option<bool>,
    /// Learning: source MACs seen on the port are learned into the FDB.
    pub learning: Option<bool>,
}

/// What the kernel reports about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link kind (`veth`, `bridge`, `macvlan`, `vxlan`, `tun`, ...), `None`
    /// for physical devices and loopback.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address, when it is a 6-byte Ethernet address.
    pub mac: Option<MacAddr>,
    /// Index of the bridge (or other master) this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: the parent of a macvlan, the peer index of a veth.
    /// Relative to `link_netnsid` when that is set.
    pub parent: Option<u32>,
    /// Namespace id (as seen from this namespace) where `parent` lives.
    pub link_netnsid: Option<i32>,
    /// Operational state.
    pub oper_state: OperState,
    /// Raw `IFF_*` flags.
    pub flags: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// In promiscuous mode (flag set or promiscuity counter above zero).
    pub promisc: bool,
    /// All-multicast mode (`IFF_ALLMULTI`).
    pub allmulti: bool,
    /// Transmit queue length (`IFLA_TXQLEN`).
    pub txqlen: Option<u32>,
    /// Bridge port flags, when the link is a bridge port.
    pub bridge_port: Option<BridgePortFlags>,
    /// The link's IPv6 settings as the kernel reports them with the link
    /// (`IFLA_INET6_CONF`); `None` when the kernel has no IPv6 for it.
    pub ipv6: Option<Ipv6Conf>,
}

/// The IPv6 sysctls of one link (`net.ipv6.conf.IFNAME.*`) that callers
/// check before writing. Read from netlink with the link, not `/proc/sys`:
/// a lookup under `/proc/sys/net/ipv6` walks one dentry per namespace that
/// ever looked there (0.2-0.4 ms each with 1,000 containers on the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Conf {
    /// `disable_ipv6`.
    pub disable_ipv6: bool,
    /// `accept_dad` (0 off, 1 on, 2 on and IPv6 off on a duplicate).
    pub accept_dad: i32,
}

impl Link {
    pub(crate) fn from_message(msg: LinkMessage) -> Link {
        let flags = msg.header.flags.bits();
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mtu: None,
            mac: None,
            master: None,
            parent: None,
            link_netnsid: None,
            oper_state: OperState::Unknown,
            flags,
            up: msg.header.flags.contains(LinkFlags::Up),
            promisc: msg.header.flags.contains(LinkFlags::Promisc),
            allmulti: msg.header.flags.contains(LinkFlags::Allmulti),
            txqlen: None,
            bridge_port: None,
            ipv6: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Mtu(m) => link.mtu = Some(m),
                LinkAttribute::TxQueueLen(q) => link.txqlen = Some(q),
                LinkAttribute::Address(a) => link.mac = MacAddr::from_slice(&a),
                LinkAttribute::Controller(m) if m != 0 => link.master = Some(m),
                LinkAttribute::Link(p) if p != 0 => link.parent = Some(p),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
                LinkAttribute::OperState(s) => link.oper_state = OperState::from(u8::from(s)),
                LinkAttribute::Promiscuity(p) if p > 0 => link.promisc = true,
                LinkAttribute::AfSpecUnspec(specs) => {
                    for spec in specs {
                        if let AfSpecUnspec::Inet6(attrs) = spec {
                            for a in attrs {
                                if let AfSpecInet6::DevConf(c) = a {
                                    link.ipv6 = Some(Ipv6Conf {
                                        disable_ipv6: c.disable_ipv6 != 0,
                                        accept_dad: c.accept_dad,
                                    });
                                }
                            }
                        }
                    }
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                            LinkInfo::PortData(InfoPortData::BridgePort(attrs)) => {
                                link.bridge_port = Some(bridge_port_flags(&attrs));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn bridge_port_flags(attrs: &[InfoBridgePort]) -> BridgePortFlags {
    let mut f = BridgePortFlags::default();
    for a in attrs {
        match a {
            InfoBridgePort::HairpinMode(v) => f.hairpin = Some(*v),
            InfoBridgePort::Isolated(v) => f.isolated = Some(*v),
            InfoBridgePort::Learning(v) => f.learning = Some(*v),
            _ => {}
        }
    }
    f
}

/// Macvlan modes (serialized as the names `ip link` and Docker use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// Macvlans on the same parent talk to each other directly.
    #[default]
    Bridge,
    /// No traffic between macvlans on the same parent.
    Private,
    /// Traffic between macvlans goes out to the switch.
    Vepa,
    /// One macvlan takes over the parent.
    Passthru,
}

impl MacvlanMode {
    fn to_nl(self) -> MacVlanMode {
        match self {
            MacvlanMode::Bridge => MacVlanMode::Bridge,
            MacvlanMode::Private => MacVlanMode::Private,
            MacvlanMode::Vepa => MacVlanMode::Vepa,
            MacvlanMode::Passthru => MacVlanMode::Passthrough,
        }
    }
}

/// VXLAN device settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VxlanSpec {
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Local source address for the tunnel.
    pub local: Option<IpAddr>,
    /// Multicast group or single unicast remote.
    pub group: Option<IpAddr>,
    /// Destination UDP port; `None` means the kernel default (8472), use
    /// 4789 for the IANA port.
    pub port: Option<u16>,
    /// Index of the underlay device.
    pub dev: Option<u32>,
    /// Learn remote MACs from received packets; `None` keeps the kernel
    /// default (on).
    pub learning: Option<bool>,
    /// Answer ARP requests and IPv6 neighbour solicitations from the
    /// device's neighbour table instead of flooding them (`proxy`); `None`
    /// keeps the kernel default (off).
    pub proxy: Option<bool>,
}

/// The type-specific part of a new link.
#[derive(Debug)]
pub enum LinkKind<'a> {
    /// A veth pair; the peer may be created directly in another namespace.
    Veth {
        /// Name of the peer end.
        peer: String,
        /// Namespace to create the peer in (default: the socket's).
        peer_netns: Option<&'a Netns>,
        /// MAC address of the peer.
        peer_mac: Option<MacAddr>,
        /// MTU of the peer (default: same as the link's `mtu` if set).
        peer_mtu: Option<u32>,
    },
    /// A bridge.
    Bridge {
        /// `Some(true)` turns on 802.1Q VLAN filtering (`EOPNOTSUPP` on
        /// kernels built without it); `None` and `Some(false)` leave it off.
        vlan_filtering: Option<bool>,
    },
    /// A macvlan on `parent` (an interface index in the socket's namespace).
    Macvlan {
        /// Parent interface index.
        parent: u32,
        /// Mode.
        mode: MacvlanMode,
    },
    /// A VXLAN device.
    Vxlan(VxlanSpec),
}

/// A link to create with [`Netlink::create_link`].
#[derive(Debug)]
pub struct LinkSpec<'a> {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address.
    pub mac: Option<MacAddr>,
    /// Create the link directly in this namespace instead of the socket's.
    pub netns: Option<&'a Netns>,
    /// Enslave the new link to this master (a bridge's index) in the same
    /// request (`IFLA_MASTER`): the link is never seen outside it, and when
    /// the kernel cannot enslave it, it creates nothing (for a veth: neither
    /// end).
    pub master: Option<u32>,
    /// Type-specific settings.
    pub kind: LinkKind<'a>,
}

impl<'a> LinkSpec<'a> {
    /// A veth pair `name` <-> `peer`, both in the socket's namespace.
    pub fn veth(name: &str, peer: &str) -> Self {
        Self::new(
            name,
            LinkKind::Veth {
                peer: peer.to_string(),
                peer_netns: None,
                peer_mac: None,
                peer_mtu: None,
            },
        )
    }

    /// A bridge.
    pub fn bridge(name: &str) -> Self {
        Self::new(
            name,
            LinkKind::Bridge {
                vlan_filtering: None,
            },
        )
    }

    /// A macvlan on `parent`.
    pub fn macvlan(name: &str, parent: u32, mode: MacvlanMode) -> Self {
        Self::new(name, LinkKind::Macvlan { parent, mode })
    }

    /// A VXLAN device.
    pub fn vxlan(name: &str, spec: VxlanSpec) -> Self {
        Self::new(name, LinkKind::Vxlan(spec))
    }

    /// A spec with no common options set.
    pub fn new(name: &str, kind: LinkKind<'a>) -> Self {
        LinkSpec {
            name: name.to_string(),
            mtu: None,
            mac: None,
            netns: None,
            master: None,
            kind,
        }
    }

    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the MAC address.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Creates the link in `netns`.
    pub fn netns(mut self, netns: &'a Netns) -> Self {
        self.netns = Some(netns);
        self
    }

    /// Enslaves the link to `master` as it is created.
    pub fn master(mut self, master: u32) -> Self {
        self.master = Some(master);
        self
    }

    /// For a veth: creates the peer in `netns`.
    pub fn peer_netns(mut self, netns: &'a Netns) -> Self {
        if let LinkKind::Veth { peer_netns, .. } = &mut self.kind {
            *peer_netns = Some(netns);
        }
        self
    }

    /// For a veth: sets the peer's MAC address.
    pub fn peer_mac(mut self, mac: MacAddr) -> Self {
        if let LinkKind::Veth { peer_mac, .. } = &mut self.kind {
            *peer_mac = Some(mac);
        }
        self
    }

    /// For a bridge: turns VLAN filtering on or off.
    pub fn vlan_filtering(mut self, on: bool) -> Self {
        if let LinkKind::Bridge { vlan_filtering } = &mut self.kind {
            *vlan_filtering = Some(on);
        }
        self
    }
}

/// Checks an interface name the way the kernel will.
pub fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_IFNAME_LEN
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(Error::InvalidArgument(format!(
            "interface name {name:?} must be 1 to {MAX_IFNAME_LEN} bytes without '/', ':' or spaces"
        )));
    }
    Ok(())
}

fn link_msg(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

impl Netlink {
    /// Creates a link. Fails with `EEXIST` if the name is taken.
    pub fn create_link(&mut self, spec: &LinkSpec<'_>) -> Result<()> {
        check_ifname(&spec.name)?;
        let mut msg = link_msg(0);
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.clone()));
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = spec.mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(ns) = spec.netns {
            msg.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        if let Some(m) = spec.master {
            msg.attributes.push(LinkAttribute::Controller(m));
        }
        let (kind, data) = match &spec.kind {
            LinkKind::Veth {
                peer,
                peer_netns,
                peer_mac,
                peer_mtu,
            } => {
                check_ifname(peer)?;
                let mut p = link_msg(0);
                p.attributes.push(LinkAttribute::IfName(peer.clone()));
                if let Some(mtu) = peer_mtu.or(spec.mtu) {
                    p.attributes.push(LinkAttribute::Mtu(mtu));
                }
                if let Some(mac) = peer_mac {
                    p.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
                }
                if let Some(ns) = peer_netns {
                    p.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
                }
                (InfoKind::Veth, Some(InfoData::Veth(InfoVeth::Peer(p))))
            }
            LinkKind::Bridge { vlan_filtering } => {
                // Off is the kernel default, and kernels without
                // CONFIG_BRIDGE_VLAN_FILTERING refuse the attribute even
                // when it says off: send it only to turn filtering on.
                let data = (*vlan_filtering == Some(true))
                    .then(|| InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)]));
                (InfoKind::Bridge, data)
            }
            LinkKind::Macvlan { parent, mode } => {
                msg.attributes.push(LinkAttribute::Link(*parent));
                (
                    InfoKind::MacVlan,
                    Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode.to_nl())])),
                )
            }
            LinkKind::Vxlan(v) => (InfoKind::Vxlan, Some(InfoData::Vxlan(vxlan_attrs(v)?))),
        };
        let mut info = vec![LinkInfo::Kind(kind)];
        if let Some(d) = data {
            info.push(LinkInfo::Data(d));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create link {}", spec.name),
        )
    }

    /// Looks a link up by name; fails with `ENODEV` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Link> {
        check_ifname(name)?;
        let mut msg = link_msg(0);
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(msg, &format!("get link {name}"))
    }

    /// Looks a link up by index; fails with `ENODEV` when there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Link> {
        self.get_link(link_msg(index), &format!("get link #{index}"))
    }

    fn get_link(&mut self, msg: LinkMessage, op: &str) -> Result<Link> {
        let replies = self.request(RouteNetlinkMessage::GetLink(msg), 0, op)?;
        for r in replies {
            if let RouteNetlinkMessage::NewLink(m) = r {
                return Ok(Link::from_message(m));
            }
        }
        Err(Error::Protocol {
            op: op.to_string(),
            message: "the kernel acknowledged without sending the link".into(),
        })
    }

    /// The first link satisfying `pred` (see [`Netlink::dump_find`]: it
    /// works on nodes too busy for a complete dump).
    pub fn find_link(&mut self, mut pred: impl FnMut(&Link) -> bool) -> Result<Option<Link>> {
        self.dump_find(
            RouteNetlinkMessage::GetLink(link_msg(0)),
            "list links",
            |r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)).filter(&mut pred),
                _ => None,
            },
        )
    }

    /// Lists every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(link_msg(0)), "list links")?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
                _ => None,
            })
            .collect())
    }

    fn set_link(&mut self, msg: LinkMessage, op: &str) -> Result<()> {
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, op)
    }

    /// Brings a link administratively up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut m = link_msg(index);
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.set_link(m, &format!("set link #{index} up"))
    }

    /// Brings a link administratively down.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        let mut m = link_msg(index);
        m.header.flags = LinkFlags::empty();
        m.header.change_mask = LinkFlags::Up;
        self.set_link(m, &format!("set link #{index} down"))
    }

    /// Turns promiscuous mode on or off (`IFF_PROMISC`).
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let mut m = link_msg(index);
        m.header.flags = if on {
            LinkFlags::Promisc
        } else {
            LinkFlags::empty()
        };
        m.header.change_mask = LinkFlags::Promisc;
        self.set_link(m, &format!("set promisc {on} on link #{index}"))
    }

    /// Turns all-multicast mode on or off (`IFF_ALLMULTI`).
    pub fn set_allmulti(&mut self, index: u32, on: bool) -> Result<()> {
        let mut m = link_msg(index);
        m.header.flags = if on {
            LinkFlags::Allmulti
        } else {
            LinkFlags::empty()
        };
        m.header.change_mask = LinkFlags::Allmulti;
        self.set_link(m, &format!("set allmulti {on} on link #{index}"))
    }

    /// Sets the transmit queue length (`IFLA_TXQLEN`).
    pub fn set_txqlen(&mut self, index: u32, qlen: u32) -> Result<()> {
        let mut m = link_msg(index);
        m.attributes.push(LinkAttribute::TxQueueLen(qlen));
        self.set_link(m, &format!("set txqlen {qlen} on link #{index}"))
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut m = link_msg(index);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(m, &format!("set mtu {mtu} on link #{index}"))
    }

    /// Sets the hardware address.
    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> Result<()> {
        let mut m = link_msg(index);
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.set_link(m, &format!("set mac {mac} on link #{index}"))
    }

    /// Enslaves a link to `master` (a bridge).
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let mut m = link_msg(index);
        m.attributes.push(LinkAttribute::Controller(master));
        self.set_link(m, &format!("set master #{master} on link #{index}"))
    }

    /// Releases a link from its master.
    pub fn set_nomaster(&mut self, index: u32) -> Result<()> {
        let mut m = link_msg(index);
        m.attributes.push(LinkAttribute::Controller(0));
        self.set_link(m, &format!("release link #{index} from its master"))
    }

    /// Moves a link into another network namespace.
    pub fn set_netns(&mut self, index: u32, netns: &Netns) -> Result<()> {
        let mut m = link_msg(index);
        m.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        self.set_link(
            m,
            &format!("move link #{index} to {}", netns.path().display()),
        )
    }

    /// Renames a link (the kernel wants most links down for this: `EBUSY`).
    pub fn rename(&mut self, index: u32, new_name: &str) -> Result<()> {
        check_ifname(new_name)?;
        let mut m = link_msg(index);
        m.attributes
            .push(LinkAttribute::IfName(new_name.to_string()));
        self.set_link(m, &format!("rename link #{index} to {new_name}"))
    }

    /// Deletes a link (for a veth, both ends go).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        self.ack(
            RouteNetlinkMessage::DelLink(link_msg(index)),
            0,
            &format!("delete link #{index}"),
        )
    }

    /// Sets bridge port flags through `IFLA_PROTINFO` (the link must be a
    /// bridge port). Flags that are `None` are left alone.
    pub fn set_bridge_port_flags(&mut self, index: u32, flags: &BridgePortFlags) -> Result<()> {
        let mut nlas = Vec::new();
        for (kind, v) in [
            (IFLA_BRPORT_MODE, flags.hairpin),
            (IFLA_BRPORT_LEARNING, flags.learning),
            (IFLA_BRPORT_ISOLATED, flags.isolated),
        ] {
            if let Some(v) = v {
                nlas.push(LinkProtoInfoBridge::Other(DefaultNla::new(
                    kind,
                    vec![u8::from(v)],
                )));
            }
        }
        if nlas.is_empty() {
            return Ok(());
        }
        let mut m = link_msg(index);
        m.header.interface_family = AddressFamily::Bridge;
        m.attributes.push(LinkAttribute::ProtoInfoBridge(nlas));
        self.set_link(m, &format!("set bridge port flags on link #{index}"))
    }

    /// Reads the bridge port flags of a link; `None` when it is no bridge
    /// port.
    pub fn bridge_port_flags(&mut self, index: u32) -> Result<Option<BridgePortFlags>> {
        Ok(self.link_by_index(index)?.bridge_port)
    }
}

fn vxlan_attrs(v: &VxlanSpec) -> Result<Vec<InfoVxlan>> {
    if v.vni >= 1 << 24 {
        return Err(Error::InvalidArgument(format!(
            "VXLAN id {} does not fit in 24 bits",
            v.vni
        )));
    }
    let mut a = vec![InfoVxlan::Id(v.vni)];
    match v.local {
        Some(IpAddr::V4(ip)) => a.push(InfoVxlan::Local(ip)),
        Some(IpAddr::V6(ip)) => a.push(InfoVxlan::Local6(ip)),
        None => {}
    }
    match v.group {
        Some(IpAddr::V4(ip)) => a.push(InfoVxlan::Group(ip)),
        Some(IpAddr::V6(ip)) => a.push(InfoVxlan::Group6(ip)),
        None => {}
    }
    if let Some(dev) = v.dev {
        a.push(InfoVxlan::Link(dev));
    }
    if let Some(p) = v.port {
        a.push(InfoVxlan::Port(p));
    }
    if let Some(l) = v.learning {
        a.push(InfoVxlan::Learning(l));
    }
    if let Some(p) = v.proxy {
        a.push(InfoVxlan::Proxy(p));
    }
    Ok(a)
}
