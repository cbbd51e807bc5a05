//! The overlay driver: one network and subnet across hosts over VXLAN.
//!
//! On each host the network is a bridge (the bridge driver's, with the
//! host's gateway address in the overlay subnet) with one more port: a
//! VXLAN device bound to the underlay device that holds this host's VTEP
//! address. Endpoints are the bridge driver's veth endpoints on that bridge.
//!
//! Nothing is learned or flooded across the underlay: the VXLAN device has
//! learning off and answers ARP and neighbour solicitations itself (`proxy`)
//! from static entries. Per remote endpoint (a [`Peer`]) the agent that
//! follows the cluster store writes one FDB entry (MAC to remote VTEP) and
//! one permanent neighbour entry (IP to MAC) on the VXLAN device, with
//! [`OverlayDriver::add_peer`], [`OverlayDriver::remove_peer`] and, after a
//! restart or a missed event, [`OverlayDriver::reconcile`].

use super::bridge::BridgeDriver;
use super::veth_endpoint as ve;
use super::{
    BridgeConfig, Endpoint, EndpointSpec, External, NetworkDriver, NetworkKind, NetworkSpec,
    OverlayConfig, Placement,
};
use crate::link::detach::{self, Deleter, Pending};
use crate::link::iface::InterfaceConfig;
use crate::{Error, Result};
use ferry_linux::{Family, FdbEntry, Link, LinkSpec, MacAddr, Netlink, VxlanSpec, NUD_PERMANENT};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The overlay driver.
pub struct OverlayDriver {
    /// Endpoints, gateways and the bridge itself are the bridge driver's.
    bridge: BridgeDriver,
}

/// A remote endpoint: `ip` has `mac` behind the VTEP `vtep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub ip: IpAddr,
    pub mac: MacAddr,
    pub vtep: IpAddr,
}

/// What [`OverlayDriver::reconcile`] changed: kernel entries (FDB and
/// neighbour) written because they were missing or pointed elsewhere, and
/// entries deleted because no peer wants them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub added: usize,
    pub removed: usize,
}

fn config(net: &NetworkSpec) -> Result<&OverlayConfig> {
    match &net.kind {
        NetworkKind::Overlay(c) => Ok(c),
        _ => Err(net.wrong_kind("an overlay")),
    }
}

/// The checks that need no kernel.
fn checked(net: &NetworkSpec) -> Result<&OverlayConfig> {
    let c = config(net)?;
    if !(1..=MAX_VNI).contains(&c.vni) {
        return Err(Error::Invalid(format!(
            "VNI {} is outside 1..={MAX_VNI}",
            c.vni
        )));
    }
    for (what, name) in [("bridge", &c.bridge), ("VXLAN device", &c.vxlan)] {
        ferry_linux::check_ifname(name)
            .map_err(|e| Error::Invalid(format!("{what} name {name:?}: {e}")))?;
    }
    if c.bridge == c.vxlan {
        return Err(Error::Invalid(format!(
            "the bridge and the VXLAN device are both named {:?}",
            c.bridge
        )));
    }
    if c.port == 0 {
        return Err(Error::Invalid("VXLAN port 0".into()));
    }
    if c.local.is_unspecified() || c.local.is_multicast() {
        return Err(Error::Invalid(format!(
            "{} cannot be a VTEP address",
            c.local
        )));
    }
    ve::validate_mtu(net)?;
    Ok(c)
}

/// The network as the bridge driver sees it: the same ID, gateways and
/// masquerade, on the overlay's bridge.
fn as_bridge(net: &NetworkSpec, c: &OverlayConfig, mtu: Option<u32>) -> NetworkSpec {
    NetworkSpec {
        kind: NetworkKind::Bridge(BridgeConfig {
            bridge: c.bridge.clone(),
            // Networks stay apart as Docker's do: an overlay network is
            // reachable from no other network of the host.
            isolate: true,
            icc: true,
            ..BridgeConfig::default()
        }),
        mtu,
        ..net.clone()
    }
}

/// The underlay device: the one holding the VTEP address.
fn underlay(nl: &mut Netlink, local: IpAddr) -> Result<Link> {
    let family = if local.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let addrs = nl
        .addresses(None, family)
        .map_err(Error::kernel("failed to list the host's addresses"))?;
    let index = addrs
        .iter()
        .find(|a| a.net.addr() == local)
        .map(|a| a.index)
        .ok_or_else(|| Error::Invalid(format!("no device of this host has the address {local}")))?;
    nl.link_by_index(index).map_err(Error::kernel(format!(
        "failed to look up the device holding {local}"
    )))
}

/// The MTU inside the tunnel: the underlay's less the VXLAN headers
/// (outer IP, UDP, VXLAN, inner Ethernet: 50 bytes over IPv4, 70 over IPv6).
/// A network MTU, when given, may only be smaller.
fn overlay_mtu(net: &NetworkSpec, c: &OverlayConfig, under: &Link) -> Result<u32> {
    let overhead = if c.local.is_ipv4() { 50 } else { 70 };
    let max = under
        .mtu
        .and_then(|m| m.checked_sub(overhead))
        .filter(|m| *m >= 68)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "underlay device {} has MTU {:?}, too small for VXLAN",
                under.name, under.mtu
            ))
        })?;
    match net.mtu {
        Some(m) if m > max => Err(Error::Invalid(format!(
            "MTU {m} does not fit through {} (at most {max})",
            under.name
        ))),
        Some(m) => Ok(m),
        None => Ok(max),
    }
}

/// Looks up a link by name; `None` when there is none.
fn find(nl: &mut Netlink, name: &str) -> Result<Option<Link>> {
    match nl.link_by_name(name) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(Error::kernel(format!("failed to look up {name}"))(e)),
    }
}

/// Finds or creates the VXLAN device, then makes it a port of `bridge`
/// with `mtu`, up. A device this call created goes again on failure.
fn ensure_vxlan(
    nl: &mut Netlink,
    c: &OverlayConfig,
    under: &Link,
    mtu: u32,
    bridge: u32,
) -> Result<()> {
    let name = &c.vxlan;
    let (vx, created) = match find(nl, name)? {
        Some(l) if l.kind.as_deref() == Some("vxlan") => (l, false),
        Some(_) => {
            return Err(Error::Invalid(format!(
                "{name:?} already exists but is not a VXLAN device"
            )))
        }
        None => {
            let spec = VxlanSpec {
                vni: c.vni,
                local: Some(c.local),
                group: None,
                port: Some(c.port),
                dev: Some(under.index),
                learning: Some(false),
                proxy: Some(true),
            };
            match nl.create_link(&LinkSpec::vxlan(name, spec).mtu(mtu)) {
                Ok(()) => {}
                // Another call may have created it a moment ago.
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(Error::kernel(format!("failed to create {name}"))(e)),
            }
            // IPv6 stays on: the IPv6 peers' neighbour entries live on this
            // device. No link-local of its own, though (nothing to solicit
            // into the tunnel). Best effort: IPv6 may be off.
            let _ = ferry_linux::sysctl::write_if_different(
                &format!("net.ipv6.conf.{name}.addr_gen_mode"),
                "1",
            );
            let l = nl
                .link_by_name(name)
                .map_err(Error::kernel(format!("failed to look up {name}")))?;
            (l, true)
        }
    };
    let rest = (|| {
        if vx.mtu != Some(mtu) {
            nl.set_mtu(vx.index, mtu)
                .map_err(Error::kernel(format!("failed to set the MTU of {name}")))?;
        }
        if vx.master != Some(bridge) {
            nl.set_master(vx.index, bridge)
                .map_err(Error::kernel(format!(
                    "failed to connect {name} to bridge {}",
                    c.bridge
                )))?;
        }
        if !vx.up {
            nl.set_up(vx.index)
                .map_err(Error::kernel(format!("failed to set {name} up")))?;
        }
        Ok(())
    })();
    if rest.is_err() && created {
        let _ = nl.delete_link(vx.index);
    }
    rest
}

impl OverlayDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        OverlayDriver {
            bridge: BridgeDriver::new(deleter, state_dir),
        }
    }

    /// Writes `p`'s FDB entry (MAC to VTEP, in the VXLAN device's own FDB,
    /// permanent, as `bridge fdb append MAC dev VX dst VTEP self permanent`)
    /// and neighbour entry (IP to MAC, permanent). Both replace what is
    /// there, so a peer that moved to another host has one remote. Costs
    /// the same whatever the number of peers: nothing is listed.
    pub fn add_peer(&self, net: &NetworkSpec, p: &Peer) -> Result<()> {
        let c = config(net)?;
        check_peer(c, p)?;
        let mut nl = ve::host_netlink()?;
        let vx = vxlan_index(&mut nl, c)?;
        set_fdb(&mut nl, vx, p.mac, p.vtep)?;
        set_neighbour(&mut nl, vx, p.ip, p.mac)
    }

    /// Removes `p`'s entries (idempotent: entries already gone are
    /// success). The FDB entry goes only while it still points at `p.vtep`.
    pub fn remove_peer(&self, net: &NetworkSpec, p: &Peer) -> Result<()> {
        let c = config(net)?;
        let mut nl = ve::host_netlink()?;
        let Some(vx) = find(&mut nl, &c.vxlan)? else {
            return Ok(());
        };
        del_neighbour(&mut nl, vx.index, p.ip)?;
        del_fdb(&mut nl, vx.index, p.mac, p.vtep)
    }

    /// Makes the VXLAN device's peer entries exactly `peers`: one dump of
    /// the FDB and one of the neighbours, then the differences. Only the
    /// FDB entries with a remote (the per-peer ones) and the permanent
    /// neighbours are Ferry's; the kernel's own entries stay.
    pub fn reconcile(&self, net: &NetworkSpec, peers: &[Peer]) -> Result<Reconciled> {
        let c = config(net)?;
        let mut want_fdb: HashMap<MacAddr, IpAddr> = HashMap::with_capacity(peers.len());
        let mut want_neigh: HashMap<IpAddr, MacAddr> = HashMap::with_capacity(peers.len());
        for p in peers {
            check_peer(c, p)?;
            if want_fdb.insert(p.mac, p.vtep).is_some_and(|v| v != p.vtep) {
                return Err(Error::Invalid(format!(
                    "peer MAC {} is behind two VTEPs",
                    p.mac
                )));
            }
            if want_neigh.insert(p.ip, p.mac).is_some_and(|m| m != p.mac) {
                return Err(Error::Invalid(format!("peer {} has two MACs", p.ip)));
            }
        }
        let mut nl = ve::host_netlink()?;
        let vx = vxlan_index(&mut nl, c)?;
        let mut done = Reconciled::default();

        let fdb = nl.fdb(Some(vx)).map_err(Error::kernel(format!(
            "failed to list the FDB of {}",
            c.vxlan
        )))?;
        let mut have_fdb = HashSet::new();
        for e in fdb.iter().filter(|e| !e.in_master) {
            let Some(dst) = e.dst else { continue };
            if want_fdb.get(&e.mac) == Some(&dst) {
                have_fdb.insert(e.mac);
            } else {
                del_fdb(&mut nl, vx, e.mac, dst)?;
                done.removed += 1;
            }
        }
        for (mac, vtep) in &want_fdb {
            if !have_fdb.contains(mac) {
                set_fdb(&mut nl, vx, *mac, *vtep)?;
                done.added += 1;
            }
        }

        let neighbours = nl
            .neighbours(Some(vx), Family::All)
            .map_err(Error::kernel(format!(
                "failed to list the neighbours of {}",
                c.vxlan
            )))?;
        let mut have_neigh = HashSet::new();
        for n in neighbours.iter().filter(|n| n.state & NUD_PERMANENT != 0) {
            match want_neigh.get(&n.ip) {
                Some(mac) if n.mac == Some(*mac) => {
                    have_neigh.insert(n.ip);
                }
                // Rewritten below.
                Some(_) => {}
                None => {
                    del_neighbour(&mut nl, vx, n.ip)?;
                    done.removed += 1;
                }
            }
        }
        for (ip, mac) in &want_neigh {
            if !have_neigh.contains(ip) {
                set_neighbour(&mut nl, vx, *ip, *mac)?;
                done.added += 1;
            }
        }
        Ok(done)
    }
}

/// A peer's VTEP must be of the tunnel's family (its inner address may
/// be of either), and its MAC a unicast one.
fn check_peer(c: &OverlayConfig, p: &Peer) -> Result<()> {
    if p.vtep.is_ipv4() != c.local.is_ipv4() {
        return Err(Error::Invalid(format!(
            "peer VTEP {} is not of the family of the local VTEP {}",
            p.vtep, c.local
        )));
    }
    if p.mac == MacAddr::ZERO || p.mac.octets()[0] & 1 != 0 {
        return Err(Error::Invalid(format!(
            "peer MAC {} is not a unicast address",
            p.mac
        )));
    }
    Ok(())
}

fn vxlan_index(nl: &mut Netlink, c: &OverlayConfig) -> Result<u32> {
    nl.link_by_name(&c.vxlan)
        .map(|l| l.index)
        .map_err(Error::kernel(format!(
            "VXLAN device {} of the overlay is missing",
            c.vxlan
        )))
}

fn fdb_entry(vx: u32, mac: MacAddr, vtep: IpAddr) -> FdbEntry {
    let mut e = FdbEntry::new(vx, mac);
    e.dst = Some(vtep);
    e
}

fn set_fdb(nl: &mut Netlink, vx: u32, mac: MacAddr, vtep: IpAddr) -> Result<()> {
    nl.replace_fdb(&fdb_entry(vx, mac, vtep))
        .map_err(Error::kernel(format!("failed to set fdb {mac} dst {vtep}")))
}

fn del_fdb(nl: &mut Netlink, vx: u32, mac: MacAddr, vtep: IpAddr) -> Result<()> {
    match nl.del_fdb(&fdb_entry(vx, mac, vtep)) {
        Err(e) if !e.is_not_found() => Err(Error::kernel(format!(
            "failed to delete fdb {mac} dst {vtep}"
        ))(e)),
        _ => Ok(()),
    }
}

fn set_neighbour(nl: &mut Netlink, vx: u32, ip: IpAddr, mac: MacAddr) -> Result<()> {
    nl.set_neighbour(vx, ip, mac).map_err(Error::kernel(format!(
        "failed to set neighbour {ip} lladdr {mac}"
    )))
}

fn del_neighbour(nl: &mut Netlink, vx: u32, ip: IpAddr) -> Result<()> {
    match nl.del_neighbour(vx, ip) {
        Err(e) if !e.is_not_found() => {
            Err(Error::kernel(format!("failed to delete neighbour {ip}"))(e))
        }
        _ => Ok(()),
    }
}

impl NetworkDriver for OverlayDriver {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        let c = checked(net)?;
        let mut nl = ve::host_netlink()?;
        let under = underlay(&mut nl, c.local)?;
        overlay_mtu(net, c, &under).map(|_| ())
    }

    fn create_network(&self, net: &NetworkSpec) -> Result<()> {
        let c = checked(net)?;
        let mut nl = ve::host_netlink()?;
        let under = underlay(&mut nl, c.local)?;
        let mtu = overlay_mtu(net, c, &under)?;
        let existed = find(&mut nl, &c.bridge)?.is_some();
        // The bridge, its gateway addresses and forwarding.
        self.bridge.create_network(&as_bridge(net, c, Some(mtu)))?;
        let rest = (|| {
            let br = nl
                .link_by_name(&c.bridge)
                .map_err(Error::kernel(format!("failed to look up {}", c.bridge)))?;
            // A bridge made before the underlay's MTU changed.
            if br.mtu != Some(mtu) {
                nl.set_mtu(br.index, mtu).map_err(Error::kernel(format!(
                    "failed to set the MTU of {}",
                    c.bridge
                )))?;
            }
            ensure_vxlan(&mut nl, c, &under, mtu, br.index)
        })();
        if rest.is_err() && !existed {
            let _ = self.bridge.delete_network(&as_bridge(net, c, None));
        }
        rest
    }

    fn delete_network(&self, net: &NetworkSpec) -> Result<()> {
        let c = config(net)?;
        detach::start_by_name(self.bridge.deleter, &ve::host_netns()?, &c.vxlan)?.finish();
        self.bridge.delete_network(&as_bridge(net, c, None))
    }

    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        let c = config(net)?;
        // The bridge's MTU is the tunnel's (create_network set it).
        let br = ve::host_netlink()?
            .link_by_name(&c.bridge)
            .map_err(Error::kernel(format!(
                "failed to look up bridge {}",
                c.bridge
            )))?;
        self.bridge
            .create_endpoint(&as_bridge(net, c, br.mtu), ep, place)
    }

    fn delete_endpoint(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<Pending> {
        let c = config(net)?;
        self.bridge.delete_endpoint(&as_bridge(net, c, None), ep)
    }

    fn join(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        ifname: &str,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        let c = config(net)?;
        self.bridge
            .join(&as_bridge(net, c, None), ep, netns, ifname, cfg)
    }

    fn check(&self, net: &NetworkSpec, ep: &Endpoint, cfg: &InterfaceConfig) -> Result<()> {
        let c = config(net)?;
        self.bridge.check(&as_bridge(net, c, None), ep, cfg)
    }

    fn program_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        ext: &External,
    ) -> Result<()> {
        let c = config(net)?;
        self.bridge
            .program_external_connectivity(&as_bridge(net, c, None), ep, ext)
    }

    fn revoke_external_connectivity(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
        let c = config(net)?;
        self.bridge
            .revoke_external_connectivity(&as_bridge(net, c, None), ep)
    }

    fn gc(&self, net: &NetworkSpec, valid: &[String]) -> Result<()> {
        let c = config(net)?;
        self.bridge.gc(&as_bridge(net, c, None), valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(vni: u32, bridge: &str, vxlan: &str) -> NetworkSpec {
        NetworkSpec {
            id: "o".into(),
            kind: NetworkKind::Overlay(OverlayConfig {
                vni,
                bridge: bridge.into(),
                vxlan: vxlan.into(),
                local: "198.18.101.1".parse().unwrap(),
                port: 4789,
            }),
            mtu: None,
            gateways: vec![],
            forwarding: false,
            masquerade: false,
        }
    }

    #[test]
    fn static_checks() {
        assert!(checked(&net(1, "br", "vx")).is_ok());
        assert!(checked(&net(MAX_VNI, "br", "vx")).is_ok());
        for bad in [
            net(0, "br", "vx"),
            net(MAX_VNI + 1, "br", "vx"),
            net(1, "a-name-far-too-long", "vx"),
            net(1, "br", ""),
            net(1, "same", "same"),
        ] {
            assert!(matches!(checked(&bad), Err(Error::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_config_reads_with_the_default_port() {
        let k: NetworkKind = serde_json::from_str(
            r#"{"kind":"overlay","vni":7,"bridge":"b","vxlan":"v","local":"198.18.101.1"}"#,
        )
        .unwrap();
        assert_eq!(k.name(), "overlay");
        assert!(k.has_interface());
        let NetworkKind::Overlay(c) = k else {
            panic!("not an overlay: {k:?}")
        };
        assert_eq!(c.port, 4789);
    }

    #[test]
    fn peers_need_a_unicast_mac_and_the_tunnel_family() {
        let n = net(1, "br", "vx");
        let c = config(&n).unwrap();
        let ok = Peer {
            ip: "fd00:102::3".parse().unwrap(),
            mac: "02:00:00:00:00:01".parse().unwrap(),
            vtep: "198.18.101.2".parse().unwrap(),
        };
        assert!(check_peer(c, &ok).is_ok());
        let v6 = Peer {
            vtep: "fd00::1".parse().unwrap(),
            ..ok
        };
        assert!(matches!(check_peer(c, &v6), Err(Error::Invalid(_))));
        let mc = Peer {
            mac: "01:00:5e:00:00:01".parse().unwrap(),
            ..ok
        };
        assert!(matches!(check_peer(c, &mc), Err(Error::Invalid(_))));
    }
}
