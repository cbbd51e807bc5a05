//! Announcing an address on a link: a gratuitous ARP (IPv4) and an
//! unsolicited neighbour advertisement with the override flag (IPv6, RFC
//! 4861 7.2.6), sent as whole Ethernet frames on a packet socket. A bridge
//! learns the sender's port from the frame and the peers update their
//! neighbour entries at once, instead of waiting for a timeout.

use crate::{Error, MacAddr, Netns, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A packet socket that sends frames on one link, bound to the namespace
/// it was opened in (it can then be used from any thread).
#[derive(Debug)]
pub struct Announcer {
    fd: OwnedFd,
    ifindex: u32,
    mac: MacAddr,
}

fn io(op: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        op: op.to_string(),
        source,
    }
}

impl Announcer {
    /// Opens the socket inside `netns` for link `ifindex` whose MAC is `mac`.
    /// Open it before the link comes up, so announcing costs only the sends.
    pub fn open(netns: &Netns, ifindex: u32, mac: MacAddr) -> Result<Announcer> {
        let fd = netns.run(|| {
            // Protocol 0: the socket only sends, it receives nothing.
            // SAFETY: socket(2) with constant arguments; the result is checked.
            let fd =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io("open a packet socket")(std::io::Error::last_os_error()));
            }
            // SAFETY: fd is a new descriptor this code owns alone.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })??;
        Ok(Announcer { fd, ifindex, mac })
    }

    /// Announces each address: one gratuitous ARP request per IPv4 address,
    /// one unsolicited neighbour advertisement per IPv6 address.
    pub fn announce(&self, addrs: &[IpAddr]) -> Result<()> {
        for a in addrs {
            match a {
                IpAddr::V4(ip) => self.send(&garp(self.mac, *ip), BROADCAST)?,
                IpAddr::V6(ip) => self.send(&unsolicited_na(self.mac, *ip), ALL_NODES_MAC)?,
            }
        }
        Ok(())
    }

    fn send(&self, frame: &[u8], dst: [u8; 6]) -> Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = self.ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&dst);
        // SAFETY: frame and sa are valid for the lengths given for the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io("send an address announcement")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

const BROADCAST: [u8; 6] = [0xff; 6];
/// The Ethernet address of ff02::1.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

fn ethernet(dst: [u8; 6], src: MacAddr, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(86);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// A gratuitous ARP request: sender and target are both `ip`.
pub fn garp(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet(BROADCAST, mac, 0x0806);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac.octets());
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement of `ip` to ff02::1, with the
/// override flag and the target link-layer address option.
pub fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0]; // type, code, checksum, flags (O)
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac.octets());
    let sum = icmpv6_checksum(ip, all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = ethernet(ALL_NODES_MAC, mac, 0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]); // ICMPv6, hop limit 255 (required by ND)
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + body.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(body);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_wire_layout() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let g = garp(mac, Ipv4Addr::new(198, 19, 56, 10));
        assert_eq!(g.len(), 42);
        assert_eq!(&g[12..14], &[0x08, 0x06]);
        assert_eq!(&g[28..32], &g[38..42], "sender and target are the address");
        let na = unsolicited_na(mac, "fd00:1956::a".parse().unwrap_or(Ipv6Addr::LOCALHOST));
        assert_eq!(na.len(), 14 + 40 + 32);
        assert_eq!(na[14 + 40], 136);
        // The checksum over the pseudo-header and body, checksum included, folds to 0.
        let body = &na[54..];
        let src: [u8; 16] = na[22..38].try_into().unwrap_or([0; 16]);
        let dst: [u8; 16] = na[38..54].try_into().unwrap_or([0; 16]);
        let mut zeroed = body.to_vec();
        let sum = u16::from_be_bytes([body[2], body[3]]);
        zeroed[2] = 0;
        zeroed[3] = 0;
        assert_eq!(icmpv6_checksum(src.into(), dst.into(), &zeroed), sum);
    }
}
