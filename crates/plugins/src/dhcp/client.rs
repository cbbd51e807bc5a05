//! The DHCPv4 client of the daemon: one exchange at a time on a UDP socket
//! opened in the container's namespace and bound to its interface (port
//! 68, SO_BINDTODEVICE, SO_BROADCAST), the wire format from `dhcproto`.
//!
//! Before the container has an address the server's replies can only reach
//! a UDP socket as broadcasts, so DISCOVER and REQUEST always set the
//! broadcast flag (the reference uses a raw socket instead and sets it only
//! with `broadcast`). Renewals go unicast to the server from the leased
//! address, rebinding broadcasts, RELEASE is unicast and unanswered.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dhcproto::v4::{
    DhcpOption, Flags, Message, MessageType, Opcode, OptionCode, CLIENT_PORT, SERVER_PORT,
};
use dhcproto::{Decodable, Decoder, Encodable};
use ipnet::Ipv4Net;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};

use super::options::{CLASSLESS_ROUTES, STATIC_ROUTES};
use super::proto::{Grant, Lease};

/// A socket on the attachment's interface and that interface's MAC.
pub struct Conn {
    sock: UdpSocket,
    mac: [u8; 6],
}

/// What an acquisition needs to know about the attachment.
pub struct Params<'a> {
    pub netns: &'a str,
    pub ifname: &'a str,
    pub request: &'a [u8],
    pub provide: &'a [(u8, Vec<u8>)],
    pub timeout: Duration,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Opens the client socket in `netns` on `ifname`, bringing the interface
/// up first (an interface plugin hands it over down, before IPAM).
pub fn open(netns: &str, ifname: &str) -> Result<Conn, String> {
    let ns = ferry_linux::Netns::open(netns)
        .map_err(|e| format!("opening network namespace {netns}: {e}"))?;
    ns.run(|| -> Result<Conn, String> {
        let mut nl = ferry_linux::Netlink::new().map_err(|e| e.to_string())?;
        let link = nl
            .link_by_name(ifname)
            .map_err(|e| format!("interface {ifname} in {netns}: {e}"))?;
        nl.set_up(link.index)
            .map_err(|e| format!("setting {ifname} up: {e}"))?;
        let mac = link
            .mac
            .ok_or_else(|| format!("interface {ifname} has no Ethernet address"))?
            .octets();
        let fd = socket::socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("DHCP socket: {e}"))?;
        let opt =
            |r: nix::Result<()>, what: &str| r.map_err(|e| format!("DHCP socket {what}: {e}"));
        opt(
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true),
            "SO_REUSEADDR",
        )?;
        opt(
            socket::setsockopt(&fd, sockopt::Broadcast, &true),
            "SO_BROADCAST",
        )?;
        opt(
            socket::setsockopt(&fd, sockopt::BindToDevice, &ifname.into()),
            "SO_BINDTODEVICE",
        )?;
        let any = SockaddrIn::new(0, 0, 0, 0, CLIENT_PORT);
        opt(socket::bind(fd.as_raw_fd(), &any), "bind to port 68")?;
        Ok(Conn {
            sock: UdpSocket::from(fd),
            mac,
        })
    })
    .map_err(|e| e.to_string())?
}

impl Conn {
    fn message(&self, xid: u32, kind: MessageType, ciaddr: Ipv4Addr) -> Message {
        let mut m = Message::new_with_id(
            xid,
            ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &self.mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    fn send(&self, m: &Message, to: Ipv4Addr) -> Result<(), String> {
        let bytes = m
            .to_vec()
            .map_err(|e| format!("encoding DHCP message: {e}"))?;
        self.sock
            .send_to(&bytes, SocketAddrV4::new(to, SERVER_PORT))
            .map(|_| ())
            .map_err(|e| format!("sending DHCP message to {to}: {e}"))
    }

    /// Sends `m` to `to` until a reply to it of a kind in `want` comes, with
    /// exponential backoff from one second, until `deadline`.
    fn exchange(
        &self,
        m: &Message,
        to: Ipv4Addr,
        want: &[MessageType],
        deadline: Instant,
    ) -> Result<Message, String> {
        let mut backoff = Duration::from_secs(1);
        let mut buf = vec![0u8; 1500];
        loop {
            self.send(m, to)?;
            let resend = (Instant::now() + backoff).min(deadline);
            loop {
                let now = Instant::now();
                if now >= resend {
                    break;
                }
                self.sock
                    .set_read_timeout(Some(resend - now))
                    .map_err(|e| e.to_string())?;
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(format!("receiving DHCP reply: {e}")),
                };
                let Ok(r) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                    continue;
                };
                let ours = r.xid() == m.xid()
                    && r.opcode() == Opcode::BootReply
                    && r.chaddr().get(..6) == Some(&self.mac[..]);
                if ours && r.opts().msg_type().is_some_and(|t| want.contains(&t)) {
                    return Ok(r);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no answer from a DHCP server (sent {:?} for {:?})",
                    m.opts().msg_type(),
                    backoff
                ));
            }
            backoff = (backoff * 2).min(Duration::from_secs(16));
        }
    }

    /// The options of every request: what is asked for and what is sent.
    fn with_options(&self, m: &mut Message, request: &[u8], provide: &[(u8, Vec<u8>)]) {
        let codes = request.iter().map(|c| OptionCode::from(*c)).collect();
        m.opts_mut().insert(DhcpOption::ParameterRequestList(codes));
        for (code, value) in provide {
            // Decoded from the wire form so that known options get their typed variant.
            let mut wire = vec![*code, value.len() as u8];
            wire.extend_from_slice(value);
            if let Ok(opt) = DhcpOption::decode(&mut Decoder::new(&wire)) {
                m.opts_mut().insert(opt);
            }
        }
    }
}

/// DISCOVER, OFFER, REQUEST, ACK: a new lease, within `p.timeout`.
pub fn acquire(p: &Params) -> Result<Ack, String> {
    let deadline = Instant::now() + p.timeout;
    let conn = open(p.netns, p.ifname)?;
    let xid = rand_xid();
    let mut discover = conn.message(xid, MessageType::Discover, Ipv4Addr::UNSPECIFIED);
    discover.set_flags(Flags::default().set_broadcast());
    conn.with_options(&mut discover, p.request, p.provide);
    let offer = conn.exchange(
        &discover,
        Ipv4Addr::BROADCAST,
        &[MessageType::Offer],
        deadline,
    )?;
    let server = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => return Err("the DHCP offer has no server identifier".into()),
    };
    let mut request = conn.message(xid, MessageType::Request, Ipv4Addr::UNSPECIFIED);
    request.set_flags(Flags::default().set_broadcast());
    conn.with_options(&mut request, p.request, p.provide);
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(server));
    let ack = conn.exchange(
        &request,
        Ipv4Addr::BROADCAST,
        &[MessageType::Ack, MessageType::Nak],
        deadline,
    )?;
    Ack::parse(&ack, server)
}

/// A server's answer to a renewal.
pub enum Renewed {
    /// The lease extended, maybe changed.
    Ack(Ack),
    /// Refused (the address is no longer ours): acquire a new lease.
    Nak(String),
}

/// RENEWING (unicast to the server) or REBINDING (broadcast).
pub fn renew(l: &Lease, rebind: bool, timeout: Duration) -> Result<Renewed, String> {
    let conn = open(&l.netns, &l.ifname)?;
    let mut m = conn.message(rand_xid(), MessageType::Request, l.grant.address.addr());
    conn.with_options(&mut m, &l.request, &l.provide);
    let to = if rebind {
        Ipv4Addr::BROADCAST
    } else {
        l.grant.server
    };
    let ack = conn.exchange(
        &m,
        to,
        &[MessageType::Ack, MessageType::Nak],
        Instant::now() + timeout,
    )?;
    match Ack::parse(&ack, l.grant.server) {
        Err(e) if ack.opts().has_msg_type(MessageType::Nak) => Ok(Renewed::Nak(e)),
        r => r.map(Renewed::Ack),
    }
}

/// RELEASE: the server may give the address to someone else.
pub fn release(l: &Lease) -> Result<(), String> {
    let conn = open(&l.netns, &l.ifname)?;
    let mut m = conn.message(rand_xid(), MessageType::Release, l.grant.address.addr());
    conn.with_options(&mut m, &[], &l.provide);
    m.opts_mut().remove(OptionCode::ParameterRequestList);
    m.opts_mut()
        .insert(DhcpOption::ServerIdentifier(l.grant.server));
    conn.send(&m, l.grant.server)
}

fn rand_xid() -> u32 {
    // Distinct per exchange; not a secret.
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// An ACK: what it grants, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub grant: Grant,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
}

impl Ack {
    fn parse(m: &Message, server: Ipv4Addr) -> Result<Ack, String> {
        if m.opts().has_msg_type(MessageType::Nak) {
            let why = match m.opts().get(OptionCode::Message) {
                Some(DhcpOption::Message(s)) => s.clone(),
                _ => String::new(),
            };
            return Err(format!("the DHCP server {server} refused (NAK) {why}"));
        }
        let yiaddr = m.yiaddr();
        let opts = m.opts();
        let mask = match opts.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(mask)) => *mask,
            _ => classful_mask(yiaddr),
        };
        let prefix = u32::from(mask).leading_ones() as u8;
        let address = Ipv4Net::new(yiaddr, prefix).map_err(|e| e.to_string())?;
        let router = match opts.get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.first().copied(),
            _ => None,
        };
        let dns = match opts.get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(d)) => d.clone(),
            _ => Vec::new(),
        };
        let (routes, classless) = match (
            opts.get(OptionCode::from(CLASSLESS_ROUTES)),
            opts.get(OptionCode::from(STATIC_ROUTES)),
        ) {
            (Some(DhcpOption::ClasslessStaticRoute(r)), _) if !r.is_empty() => (r.clone(), true),
            (_, Some(DhcpOption::StaticRoutingTable(r))) => {
                let classful = r
                    .iter()
                    .filter_map(|(dst, gw)| {
                        let p = u32::from(classful_mask(*dst)).leading_ones() as u8;
                        Ipv4Net::new(*dst, p).ok().map(|n| (n, *gw))
                    })
                    .collect();
                (classful, false)
            }
            _ => (Vec::new(), false),
        };
        let server = match opts.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => *s,
            _ => server,
        };
        let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) => *t,
            _ => u32::MAX,
        };
        let t1_secs = match opts.get(OptionCode::Renewal) {
            Some(DhcpOption::Renewal(t)) => *t,
            _ => lease_secs / 2,
        };
        let t2_secs = match opts.get(OptionCode::Rebinding) {
            Some(DhcpOption::Rebinding(t)) => *t,
            _ => (lease_secs as u64 * 7 / 8) as u32,
        };
        Ok(Ack {
            grant: Grant {
                address,
                router,
                dns,
                routes,
                classless,
                server,
            },
            lease_secs,
            t1_secs,
            t2_secs,
        })
    }

    /// The lease record for an attachment, times counted from now.
    pub fn apply(&self, l: &mut Lease) {
        let now = unix_now();
        l.grant = self.grant.clone();
        l.acquired = now;
        l.t1 = now + u64::from(self.t1_secs);
        l.t2 = now + u64::from(self.t2_secs);
        l.expires = now + u64::from(self.lease_secs);
    }
}

/// The mask of the address's class (option 33's destinations, a missing
/// subnet mask option).
fn classful_mask(ip: Ipv4Addr) -> Ipv4Addr {
    match ip.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_parses_mask_router_dns_and_routes() {
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(198, 18, 160, 20),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[2, 0, 0, 0, 0, 1],
        );
        m.set_opcode(Opcode::BootReply);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Ack));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(198, 18, 160, 1)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            198, 18, 160, 53,
        )]));
        o.insert(DhcpOption::AddressLeaseTime(120));
        o.insert(DhcpOption::StaticRoutingTable(vec![(
            Ipv4Addr::new(198, 19, 0, 0),
            Ipv4Addr::new(198, 18, 160, 2),
        )]));
        let bytes = m.to_vec().unwrap();
        let back = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        let a = Ack::parse(&back, Ipv4Addr::new(198, 18, 160, 2)).unwrap();
        assert_eq!(a.grant.address, "198.18.160.20/24".parse().unwrap());
        assert_eq!(a.grant.router, Some(Ipv4Addr::new(198, 18, 160, 1)));
        assert_eq!(a.grant.dns, vec![Ipv4Addr::new(198, 18, 160, 53)]);
        assert_eq!(
            a.grant.routes,
            vec![(
                "198.19.0.0/24".parse().unwrap(),
                Ipv4Addr::new(198, 18, 160, 2)
            )]
        );
        // Option 33's destinations are classful: 198.x is class C.
        assert!(!a.grant.classless);
        assert_eq!((a.lease_secs, a.t1_secs, a.t2_secs), (120, 60, 105));

        m.opts_mut().insert(DhcpOption::ClasslessStaticRoute(vec![(
            "198.19.8.0/21".parse().unwrap(),
            Ipv4Addr::new(198, 18, 160, 3),
        )]));
        let a = Ack::parse(&m, Ipv4Addr::new(198, 18, 160, 2)).unwrap();
        assert!(a.grant.classless);
        assert_eq!(a.grant.routes[0].0, "198.19.8.0/21".parse().unwrap());

        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Nak));
        assert!(Ack::parse(&m, Ipv4Addr::new(198, 18, 160, 2)).is_err());
    }
}
