//! The bridge driver: a Linux bridge on the host with the network's gateway
//! addresses, and per endpoint a veth whose host end is a port of it. The
//! CNI `bridge` plugin and ferryd's bridge networks both use it.
//!
//! Per endpoint, on request: hairpin and isolated port flags, the MAC spoof
//! check ([`crate::macspoof`]), Docker's network isolation
//! ([`crate::firewall`]); published ports and masquerade through
//! [`NetworkDriver::program_external_connectivity`].

use super::veth_endpoint::{self as ve, Undo};
use super::{
    attachment, split_endpoint_id, BridgeConfig, Endpoint, EndpointSpec, External, NetworkDriver,
    NetworkKind, NetworkSpec, Placement,
};
use crate::firewall::{self, IngressPolicy};
use crate::link::detach::{self, Deleter, Pending};
use crate::link::iface::{self, InterfaceConfig};
use crate::link::veth::{self, HostEnd};
use crate::{macspoof, state, Error, Result};
use ferry_linux::{AddrOptions, BridgePortFlags, Family, Link, LinkSpec, Netlink};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

/// The bridge driver.
pub struct BridgeDriver {
    /// Who sends link deletes (a plugin forks, a daemon uses a thread).
    pub deleter: Deleter,
    /// Root of the packet-filter drivers' bookkeeping.
    pub state_dir: PathBuf,
}

impl BridgeDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        BridgeDriver { deleter, state_dir }
    }

    /// Deletes the unattached pairs an older ferryd left on the host (see
    /// [`veth::stray_host_pairs`] for the rule); `keep`: the host ends
    /// endpoints claim. Returns the host ends' names.
    pub fn prune_stray_pairs(&self, keep: &[String]) -> Result<Vec<String>> {
        let mut nl = ve::host_netlink()?;
        let stray: Vec<String> = veth::stray_host_pairs(&mut nl, keep)?
            .into_iter()
            .map(|l| l.name)
            .collect();
        let host = ve::host_netns()?;
        for name in &stray {
            detach::start_by_name(self.deleter, &host, name)?.finish();
        }
        Ok(stray)
    }
}

fn config(net: &NetworkSpec) -> Result<&BridgeConfig> {
    match &net.kind {
        NetworkKind::Bridge(c) => Ok(c),
        _ => Err(net.wrong_kind("a bridge")),
    }
}

/// Finds or creates the bridge, sets promiscuous mode if asked, and brings
/// it up. Also says whether this call created it.
fn ensure_bridge(nl: &mut Netlink, c: &BridgeConfig, mtu: Option<u32>) -> Result<(Link, bool)> {
    let name = &c.bridge;
    let found = match nl.link_by_name(name) {
        Ok(l) => Some(l),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(Error::kernel(format!("failed to look up bridge {name}"))(e)),
    };
    let mut created = false;
    let br = match found {
        Some(l) => l,
        None => {
            let mut spec = LinkSpec::bridge(name);
            if let Some(m) = mtu {
                spec = spec.mtu(m);
            }
            match nl.create_link(&spec) {
                Ok(()) => created = true,
                // Another ADD may have created it a moment ago.
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(Error::kernel(format!("failed to create bridge {name}"))(e)),
            }
            // The bridge owns its routes: no router advertisements (as the reference).
            let _ = ferry_linux::sysctl::write_if_different(
                &format!("net.ipv6.conf.{name}.accept_ra"),
                "0",
            );
            nl.link_by_name(name)
                .map_err(Error::kernel(format!("failed to look up bridge {name}")))?
        }
    };
    if br.kind.as_deref() != Some("bridge") {
        return Err(Error::Invalid(format!(
            "{name:?} already exists but is not a bridge"
        )));
    }
    if c.promisc && !br.promisc {
        nl.set_promisc(br.index, true)
            .map_err(Error::kernel("failed to set bridge promiscuous"))?;
    }
    if !br.up {
        nl.set_up(br.index)
            .map_err(Error::kernel(format!("failed to set bridge {name} up")))?;
    }
    Ok((br, created))
}

/// Puts the gateway address on the bridge (the reference's `ensureAddr`):
/// a different address in the way is an error, or replaced with `force`.
fn ensure_gateway_addr(nl: &mut Netlink, br: &Link, gw: IpNet, force: bool) -> Result<()> {
    let family = if gw.addr().is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let addrs = nl
        .addresses(Some(br.index), family)
        .map_err(Error::kernel("could not get list of IP addresses"))?;
    for a in &addrs {
        if a.net == gw {
            return Ok(());
        }
        // IPv4: one address per bridge. IPv6: several, unless the subnets overlap.
        let conflicts =
            gw.addr().is_ipv4() || a.net.contains(&gw.addr()) || gw.contains(&a.net.addr());
        if conflicts {
            if !force {
                return Err(Error::Failed(format!(
                    "{:?} already has an IP address different from {gw}",
                    br.name
                )));
            }
            nl.del_address(br.index, a.net)
                .map_err(Error::kernel(format!(
                    "could not remove {} from the bridge",
                    a.net
                )))?;
        }
    }
    let opts = AddrOptions {
        nodad: true,
        ..AddrOptions::default()
    };
    match nl.add_address(br.index, gw, opts) {
        Ok(()) => {}
        Err(e) if e.is_exists() => {}
        Err(e) => {
            return Err(Error::kernel(format!(
                "could not add IP address to {:?}",
                br.name
            ))(e))
        }
    }
    // Pin the bridge's MAC: otherwise it follows the lowest port MAC as ports churn.
    if let Some(mac) = br.mac {
        nl.set_mac(br.index, mac)
            .map_err(Error::kernel("could not set bridge's mac"))?;
    }
    Ok(())
}

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        let c = config(net)?;
        ferry_linux::check_ifname(&c.bridge)
            .map_err(|e| Error::Invalid(format!("bridge name {:?}: {e}", c.bridge)))?;
        ve::validate_mtu(net)?;
        if c.hairpin && c.promisc {
            return Err(Error::Invalid(
                "cannot set hairpin mode and promiscuous mode at the same time".into(),
            ));
        }
        Ok(())
    }

    fn create_network(&self, net: &NetworkSpec) -> Result<()> {
        let c = config(net)?;
        let mut nl = ve::host_netlink()?;
        let (br, created) = ensure_bridge(&mut nl, c, net.mtu)?;
        let rest = (|| {
            for gw in &net.gateways {
                ensure_gateway_addr(&mut nl, &br, *gw, c.force_address)?;
            }
            if net.forwarding {
                ve::enable_forwarding(
                    &mut nl,
                    net.gateways.iter().any(|g| g.addr().is_ipv4()),
                    net.gateways.iter().any(|g| g.addr().is_ipv6()),
                )?;
            }
            Ok(())
        })();
        if rest.is_err() && created {
            // Only a bridge this call made: another's may have ports by now.
            let _ = nl.delete_link(br.index);
        }
        rest
    }

    fn delete_network(&self, net: &NetworkSpec) -> Result<()> {
        let c = config(net)?;
        detach::start_by_name(self.deleter, &ve::host_netns()?, &c.bridge)?.finish();
        firewall::forget_bridge(&mut *ve::nft_socket()?, &c.bridge)
    }

    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        let c = config(net)?;
        let mut nl = ve::host_netlink()?;
        let br = nl.link_by_name(&c.bridge).map_err(Error::kernel(format!(
            "failed to look up bridge {}",
            c.bridge
        )))?;
        // A bridge port forwards IPv6 frames without IPv6 of its own. The
        // host end is a port from its creation, its flags set before it is
        // up (see veth::create).
        let flags = BridgePortFlags {
            hairpin: c.hairpin.then_some(true),
            isolated: c.port_isolation.then_some(true),
            learning: None,
        };
        let host_end = HostEnd {
            ipv6: false,
            bridge: Some((&br, flags)),
        };
        let (pair, mut endpoint) = ve::create_pair(&mut nl, net, ep, place, host_end)?;
        let host = &pair.host;
        let mut undo = Undo::new(self.deleter, &host.name);
        if c.macspoofchk || c.isolate {
            let a = attachment(net, &ep.id)?;
            let root = self.state_dir.as_path();
            if c.macspoofchk {
                let mac = pair.container.mac.ok_or_else(|| {
                    Error::Failed(format!("{} has no MAC address", pair.container.name))
                })?;
                let store = macspoof::store(root);
                macspoof::add(
                    &mut *ve::nft_socket()?,
                    &store,
                    &a,
                    &host.name,
                    mac.octets(),
                )?;
                let a = a.clone();
                undo.also(move || {
                    let _ = ve::nft_socket().map(|mut s| macspoof::del(&mut s, &store, &a));
                });
            }
            if c.isolate {
                let policy = if c.icc {
                    IngressPolicy::SameBridge
                } else {
                    IngressPolicy::Isolated
                };
                let addrs: Vec<IpAddr> = ep.addresses.iter().map(|n| n.addr()).collect();
                let store = firewall::store(root);
                firewall::add(
                    &mut *ve::nft_socket()?,
                    &store,
                    &a,
                    &addrs,
                    policy,
                    Some(&c.bridge),
                    std::slice::from_ref(&host.name),
                )?;
                undo.also(move || {
                    let _ = ve::nft_socket().map(|mut s| firewall::del(&mut s, &store, &a, &[]));
                });
            }
        }
        // Read after the port is added: a bridge without a fixed MAC takes its lowest port's.
        let br = nl
            .link_by_index(br.index)
            .map_err(Error::kernel("failed to re-read bridge"))?;
        endpoint.master = Some(br.name);
        endpoint.master_mac = br.mac;
        undo.disarm();
        Ok(endpoint)
    }

    fn delete_endpoint(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<Pending> {
        let c = config(net)?;
        // The link goes first so that the kernel's part of the delete runs
        // while the rest does: see crate::link::detach.
        let pending = ve::delete(self.deleter, ep)?;
        let a = attachment(net, &ep.id)?;
        if c.macspoofchk {
            let store = macspoof::store(&self.state_dir);
            ve::if_recorded(&store, &a, |s| macspoof::del(s, &store, &a))?;
        }
        if c.isolate {
            let store = firewall::store(&self.state_dir);
            ve::if_recorded(&store, &a, |s| firewall::del(s, &store, &a, &[]))?;
        }
        Ok(pending)
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
        let opts = iface::Options {
            // Without addresses the interface only comes up.
            accept_dad_off: !c.enabledad && !cfg.addresses.is_empty(),
            ..iface::Options::default()
        };
        Ok(ve::join(ep, netns, ifname, cfg, opts)?.2)
    }

    fn take_over(
        &self,
        net: &NetworkSpec,
        old: Option<&Endpoint>,
        new: &Endpoint,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        config(net)?;
        ve::take_over(old, new, cfg)
    }

    fn check(&self, net: &NetworkSpec, ep: &Endpoint, cfg: &InterfaceConfig) -> Result<()> {
        let c = config(net)?;
        ve::check_outside(&self.state_dir, net, ep)?;
        if c.macspoofchk {
            let a = attachment(net, &ep.id)?;
            macspoof::check(
                &mut *ve::nft_socket()?,
                &macspoof::store(&self.state_dir),
                &a,
            )?;
        }
        let mut cont_nl = ve::container_netlink(ep)?;
        let cont = veth::container_end(&mut cont_nl, &ep.ifname)?;
        if let Some(want) = ep.mac {
            if cont.mac != Some(want) {
                return Err(Error::Failed(format!(
                    "{} has MAC {}, prevResult says {want}",
                    ep.ifname,
                    iface::mac_string(&cont)
                )));
            }
        }
        let mut nl = ve::host_netlink()?;
        let br = nl
            .link_by_name(&c.bridge)
            .map_err(Error::kernel(format!("bridge {} is missing", c.bridge)))?;
        if br.kind.as_deref() != Some("bridge") {
            return Err(Error::Failed(format!("{} is not a bridge", c.bridge)));
        }
        // The host veth is the container end's peer (by index).
        let host = match &ep.host_ifname {
            Some(name) => nl.link_by_name(name).ok(),
            None => cont.parent.and_then(|i| nl.link_by_index(i).ok()),
        }
        .filter(|l| l.kind.as_deref() == Some("veth") && Some(l.index) == cont.parent)
        .ok_or_else(|| {
            Error::Failed(format!(
                "CNI veth created for bridge {} was not found",
                c.bridge
            ))
        })?;
        if host.master != Some(br.index) {
            return Err(Error::Failed(format!(
                "host veth {} is not a port of bridge {}",
                host.name, c.bridge
            )));
        }
        iface::check(&mut cont_nl, &ep.ifname, cfg)
    }

    fn program_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &Endpoint,
        ext: &External,
    ) -> Result<()> {
        let c = config(net)?;
        ve::program_outside(&self.state_dir, net, ep, ext, Some(&c.bridge))
    }

    fn revoke_external_connectivity(&self, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
        ve::revoke_outside(&self.state_dir, net, ep)
    }

    fn gc(&self, net: &NetworkSpec, valid: &[String]) -> Result<()> {
        let c = config(net)?;
        let valid: HashSet<(String, String)> = valid
            .iter()
            .map(|id| {
                let (cid, ifname) = split_endpoint_id(id);
                (cid.to_string(), ifname.to_string())
            })
            .collect();
        // A network's macspoofchk may have been turned off since its ADDs.
        let mut stores = vec![(macspoof::store(&self.state_dir), macspoof::table())];
        if c.isolate {
            stores.push((firewall::store(&self.state_dir), firewall::table()));
        }
        for (store, table) in stores {
            if store.attachments(&net.id)?.is_empty() {
                continue;
            }
            state::collect(&mut *ve::nft_socket()?, &store, &table, &net.id, &valid)?;
        }
        Ok(())
    }

    fn prune_links(&self, net: &NetworkSpec, keep: &[String]) -> Result<Vec<String>> {
        let c = config(net)?;
        let mut nl = ve::host_netlink()?;
        let br = match nl.link_by_name(&c.bridge) {
            Ok(br) => br,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(Error::kernel(format!("failed to look up {}", c.bridge))(e)),
        };
        let stray: Vec<String> = nl
            .links()
            .map_err(Error::kernel("failed to list links"))?
            .into_iter()
            .filter(|l| l.master == Some(br.index) && l.kind.as_deref() == Some("veth"))
            .map(|l| l.name)
            .filter(|n| !keep.contains(n))
            .collect();
        let host = ve::host_netns()?;
        for name in &stray {
            detach::start_by_name(self.deleter, &host, name)?.finish();
        }
        Ok(stray)
    }
}
