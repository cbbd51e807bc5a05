//! What the veth drivers (bridge, ptp) share: the MTU check, forwarding,
//! the pair placed as asked, the undo of a half-made endpoint, join's rename and configuration, the
//! detached delete, and external connectivity (published ports, masquerade).

use super::{attachment, Endpoint, EndpointSpec, External, NetworkSpec, Placement};
use crate::link::detach::{self, Deleter, Pending};
use crate::link::iface::{self, InterfaceConfig};
use crate::link::veth::{self, ContainerEnd, HostEnd, VethPair};
use crate::portmap::{self, Target};
use crate::{masq, Error, Result};
use ferry_linux::{nft, Netlink, Netns};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The host's namespace (that of the calling thread).
pub(super) fn host_netns() -> Result<Netns> {
    Netns::current().map_err(Error::kernel("failed to open the host's network namespace"))
}

/// A netlink socket in the host's namespace.
pub(super) fn host_netlink() -> Result<Netlink> {
    Netlink::new().map_err(Error::kernel("failed to open netlink"))
}

/// Checks a veth driver's MTU: 0 < mtu <= 65535.
pub(super) fn validate_mtu(net: &NetworkSpec) -> Result<()> {
    match net.mtu {
        Some(m) if m == 0 || m > 65535 => Err(Error::Invalid(format!("invalid MTU {m}"))),
        _ => Ok(()),
    }
}

/// Turns on forwarding for the families asked in the namespace `host_nl`
/// speaks for (the calling thread's). The switches are read over netlink:
/// a `/proc/sys/net` lookup grows with the namespaces on the node (see
/// `ferry_linux::Netlink::forwarding`), and they are nearly always on.
pub(super) fn enable_forwarding(host_nl: &mut Netlink, v4: bool, v6: bool) -> Result<()> {
    for (asked, family_v6, key, what) in [
        (v4, false, "net.ipv4.ip_forward", "IPv4"),
        (v6, true, "net.ipv6.conf.all.forwarding", "IPv6"),
    ] {
        if !asked {
            continue;
        }
        let written = match host_nl.forwarding(family_v6) {
            Ok(true) => Ok(()),
            Ok(false) => ferry_linux::sysctl::write(key, "1"),
            // A kernel without RTM_GETNETCONF for the family: /proc decides.
            Err(_) => ferry_linux::sysctl::write_if_different(key, "1").map(drop),
        };
        written.map_err(Error::kernel(format!("failed to enable {what} forwarding")))?;
    }
    Ok(())
}

/// The pair, its container end placed as `place` says, and the endpoint
/// describing it.
pub(super) fn create_pair(
    host_nl: &mut Netlink,
    net: &NetworkSpec,
    ep: &EndpointSpec,
    place: Placement<'_>,
    host_end: HostEnd<'_>,
) -> Result<(VethPair, Endpoint)> {
    let (pair, netns) = match place {
        Placement::Netns { netns, ifname } => {
            let ns = veth::open_netns(netns)?;
            let mut nl = ns
                .netlink()
                .map_err(Error::kernel("failed to open netlink in the container"))?;
            let end = ContainerEnd::Netns {
                nl: &mut nl,
                netns: &ns,
                ifname,
            };
            let pair = veth::create(host_nl, end, net.mtu, ep.mac, host_end)?;
            (pair, Some(netns.to_string()))
        }
        Placement::Host => (
            veth::create(host_nl, ContainerEnd::Host, net.mtu, ep.mac, host_end)?,
            None,
        ),
    };
    let endpoint = Endpoint {
        id: ep.id.clone(),
        host_ifname: Some(pair.host.name.clone()),
        host_mac: pair.host.mac,
        ifname: pair.container.name.clone(),
        netns,
        mac: pair.container.mac,
        addresses: ep.addresses.clone(),
        master: None,
        master_mac: None,
    };
    Ok((pair, endpoint))
}

/// Undoes a half-made endpoint when dropped armed: its extra steps in
/// reverse order, then the host veth (its peer goes with it).
pub(super) struct Undo<'a> {
    deleter: Deleter,
    host_ifname: String,
    steps: Vec<Box<dyn FnOnce() + 'a>>,
    armed: bool,
}

impl<'a> Undo<'a> {
    pub(super) fn new(deleter: Deleter, host_ifname: &str) -> Undo<'a> {
        Undo {
            deleter,
            host_ifname: host_ifname.to_string(),
            steps: Vec::new(),
            armed: true,
        }
    }

    /// Runs `step` too when undoing.
    pub(super) fn also(&mut self, step: impl FnOnce() + 'a) {
        self.steps.push(Box::new(step));
    }

    /// The endpoint is complete: nothing to undo.
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        while let Some(step) = self.steps.pop() {
            step();
        }
        if let Ok(ns) = host_netns() {
            let _ =
                detach::start_by_name(self.deleter, &ns, &self.host_ifname).map(Pending::finish);
        }
    }
}

/// Join's part on the interface: renamed from `ep.ifname` to `ifname` when
/// they differ (the link is still down), then configured. Returns the
/// namespace, a socket in it, and the endpoint as it now is.
pub(super) fn join(
    ep: &Endpoint,
    netns: &str,
    ifname: &str,
    cfg: &InterfaceConfig,
    opts: iface::Options,
) -> Result<(Netns, Netlink, Endpoint)> {
    let ns = veth::open_netns(netns)?;
    let mut nl = ns
        .netlink()
        .map_err(Error::kernel("failed to open netlink in the container"))?;
    if ep.ifname != ifname {
        let link = nl
            .link_by_name(&ep.ifname)
            .map_err(Error::kernel(format!("failed to look up {}", ep.ifname)))?;
        nl.rename(link.index, ifname).map_err(|e| {
            if e.is_exists() {
                Error::Exists(format!("{ifname} already exists in {netns}"))
            } else {
                Error::kernel(format!("failed to rename {} to {ifname}", ep.ifname))(e)
            }
        })?;
    }
    iface::configure(&ns, &mut nl, ifname, cfg, opts)?;
    let joined = Endpoint {
        ifname: ifname.to_string(),
        netns: Some(netns.to_string()),
        ..ep.clone()
    };
    Ok((ns, nl, joined))
}

/// The switch of a service from `old` to `new` (see
/// [`super::NetworkDriver::take_over`]). Everything slow happens while `old`
/// still serves: `new`'s addresses (without DAD: the address is the
/// service's, and its holder goes down first) and the announcing socket.
/// The gap is then two netlink requests and the announcements.
pub(super) fn take_over(
    old: Option<&Endpoint>,
    new: &Endpoint,
    cfg: &InterfaceConfig,
) -> Result<Endpoint> {
    let netns = new
        .netns
        .as_deref()
        .ok_or_else(|| Error::Invalid(format!("endpoint {} is in no namespace", new.id)))?;
    let ns = veth::open_netns(netns)?;
    let mut nl = ns
        .netlink()
        .map_err(Error::kernel("failed to open netlink in the container"))?;
    let link = nl
        .link_by_name(&new.ifname)
        .map_err(Error::kernel(format!("failed to look up {}", new.ifname)))?;
    let opts = iface::Options {
        nodad: true,
        accept_dad_off: true,
    };
    iface::assign(&ns, &mut nl, &link, &new.ifname, cfg, opts)?;
    let mac = new
        .mac
        .or(link.mac)
        .ok_or_else(|| Error::Failed(format!("{} has no MAC address", new.ifname)))?;
    let announcer = ferry_linux::Announcer::open(&ns, link.index, mac).map_err(Error::kernel(
        format!("failed to open a packet socket on {}", new.ifname),
    ))?;
    let mut host_nl = host_netlink()?;
    let old_host = match old.and_then(|o| o.host_ifname.as_deref()) {
        Some(name) => Some(
            host_nl
                .link_by_name(name)
                .map_err(Error::kernel(format!("failed to look up {name}")))?,
        ),
        None => None,
    };
    // The switch: old's host end down (its bridge port stops and forgets
    // the MAC), new up, then the announcements teach the bridge new's port.
    if let Some(h) = &old_host {
        host_nl
            .set_down(h.index)
            .map_err(Error::kernel(format!("failed to set {} down", h.name)))?;
    }
    let addrs: Vec<std::net::IpAddr> = cfg.addresses.iter().map(|a| a.net.addr()).collect();
    let switched = nl
        .set_up(link.index)
        .map_err(Error::kernel(format!("failed to set {} up", new.ifname)))
        .and_then(|()| {
            wait_running(
                &mut nl,
                link.index,
                &mut host_nl,
                new.host_ifname.as_deref(),
            );
            // Twice, a little apart, as arping -U does: a frame can still
            // meet a bridge port that is only just forwarding.
            for pause in [Duration::ZERO, Duration::from_millis(5)] {
                std::thread::sleep(pause);
                announcer.announce(&addrs).map_err(Error::kernel(format!(
                    "failed to announce {addrs:?} on {}",
                    new.ifname
                )))?;
            }
            Ok(())
        });
    if let Err(e) = switched {
        // Back to old: it never lost its addresses.
        let _ = nl.set_down(link.index);
        if let Some(h) = &old_host {
            let _ = host_nl.set_up(h.index);
        }
        return Err(e);
    }
    Ok(Endpoint {
        netns: Some(netns.to_string()),
        mac: Some(mac),
        ..new.clone()
    })
}

/// Waits (at most 100 ms) until the container end and its host end are
/// operationally up: a link set up sends nothing until the kernel's link
/// watch has given it a queue (frames before that are dropped) and the
/// bridge has seen its port's carrier.
fn wait_running(nl: &mut Netlink, index: u32, host_nl: &mut Netlink, host: Option<&str>) {
    use ferry_linux::OperState;
    let host_index = host
        .and_then(|h| host_nl.link_by_name(h).ok())
        .map(|l| l.index);
    let up = |nl: &mut Netlink, i: u32| {
        nl.link_by_index(i)
            .is_ok_and(|l| l.oper_state == OperState::Up)
    };
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    while start.elapsed() < Duration::from_millis(100) {
        if up(nl, index) && host_index.is_none_or(|h| up(host_nl, h)) {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

/// A socket in the namespace of a joined endpoint (CHECK).
pub(super) fn container_netlink(ep: &Endpoint) -> Result<Netlink> {
    let netns = ep
        .netns
        .as_deref()
        .ok_or_else(|| Error::Invalid(format!("endpoint {} is in no namespace", ep.id)))?;
    veth::open_netns(netns)?
        .netlink()
        .map_err(Error::kernel("failed to open netlink in the container"))
}

/// Starts the endpoint's detached delete: the host veth (its peer goes with
/// it), or without one the container end. Gone already is success.
pub(super) fn delete(deleter: Deleter, ep: &Endpoint) -> Result<Pending> {
    match (&ep.host_ifname, &ep.netns) {
        (Some(host), _) => detach::start_by_name(deleter, &host_netns()?, host),
        (None, Some(netns)) => detach::start_in_netns(deleter, netns, &ep.ifname),
        (None, None) if !ep.ifname.is_empty() => {
            detach::start_by_name(deleter, &host_netns()?, &ep.ifname)
        }
        (None, None) => Ok(Pending::none()),
    }
}

/// An nftables socket, opened on first use (most calls have nothing to do).
struct LazySocket(Option<NftSocket>);

impl LazySocket {
    fn get(&mut self) -> Result<&mut NftSocket> {
        if self.0.is_none() {
            self.0 = Some(nft_socket()?);
        }
        self.0
            .as_mut()
            .ok_or_else(|| Error::Failed("no nftables socket".into()))
    }
}

/// Publishes `ext`'s ports to the endpoint and masquerades its traffic when
/// the network asks for it. With ports, `localnet` (the host interface
/// facing the container) gets `route_localnet`, so connections from the
/// node's loopback reach them.
pub(super) fn program_outside(
    state_dir: &Path,
    net: &NetworkSpec,
    ep: &Endpoint,
    ext: &External,
    localnet: Option<&str>,
) -> Result<()> {
    let a = attachment(net, &ep.id)?;
    let mut sock = LazySocket(None);
    let ports = portmap::store(state_dir);
    if !ext.mappings.is_empty() {
        if let Some(dev) = localnet {
            // Best effort, as the portmap plugin: the key may be missing.
            let key = format!("net.ipv4.conf.{dev}.route_localnet");
            let _ = ferry_linux::sysctl::write_if_different(&key, "1");
        }
        portmap::add(
            sock.get()?,
            &ports,
            &a,
            Target::from_addrs(&ep.addresses),
            &ext.mappings,
            portmap::Options::default(),
            None,
        )?;
    }
    if net.masquerade {
        if let Err(e) = masq::add(sock.get()?, &masq::store(state_dir), &a, &ep.addresses) {
            if !ext.mappings.is_empty() {
                let _ = portmap::del(sock.get()?, &ports, &a);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Undoes [`program_outside`] (idempotent). Without a masquerade record, a
/// masquerading network removes the endpoint's addresses all the same.
pub(super) fn revoke_outside(state_dir: &Path, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
    let a = attachment(net, &ep.id)?;
    let mut sock = LazySocket(None);
    let ports = portmap::store(state_dir);
    if ports.load_for_del(&a)?.is_some() {
        portmap::del(sock.get()?, &ports, &a)?;
    }
    let m = masq::store(state_dir);
    let fallback: &[ipnet::IpNet] = if net.masquerade { &ep.addresses } else { &[] };
    if m.load_for_del(&a)?.is_some() || !fallback.is_empty() {
        masq::del(sock.get()?, &m, &a, fallback)?;
    }
    Ok(())
}

/// CHECK of the masquerade elements, when the network masquerades.
pub(super) fn check_outside(state_dir: &Path, net: &NetworkSpec, ep: &Endpoint) -> Result<()> {
    if !net.masquerade {
        return Ok(());
    }
    let a = attachment(net, &ep.id)?;
    let mut sock = LazySocket(None);
    masq::check(sock.get()?, &masq::store(state_dir), &a)
}

/// Runs `f` on an nftables socket when `store` holds a record for `a`
/// (a delete with nothing recorded opens nothing).
pub(super) fn if_recorded(
    store: &crate::state::Store,
    a: &crate::state::Attachment,
    f: impl FnOnce(&mut nft::Socket) -> Result<()>,
) -> Result<()> {
    if store.load_for_del(a)?.is_none() {
        return Ok(());
    }
    f(&mut *nft_socket()?)
}

/// Whether this process keeps one nftables socket open across calls.
static KEEP_OPEN: AtomicBool = AtomicBool::new(false);
/// The socket kept between calls (taken while in use).
static KEPT: Mutex<Option<nft::Socket>> = Mutex::new(None);

/// Keeps the nftables socket of the drivers open for the life of the
/// process. Closing a socket that deleted set elements waits for a kernel
/// grace period: 10-12 ms per close in ferryd's DeleteEndpoint and
/// RevokeExternalConnectivity (`strace -T`). A one-shot plugin pays that
/// never ([`crate::link::detach::close_nft`]), nor does a daemon (which
/// calls this at start): its socket is never closed. The
/// socket speaks for the namespace it was opened in: the node's.
pub fn keep_nft_socket_open() {
    KEEP_OPEN.store(true, Ordering::Relaxed);
}

/// An nftables socket, returned to the kept slot when dropped (see
/// [`keep_nft_socket_open`]); stale replies on a reused socket are skipped
/// by sequence number.
pub struct NftSocket(Option<nft::Socket>);

impl std::ops::Deref for NftSocket {
    type Target = nft::Socket;
    fn deref(&self) -> &nft::Socket {
        self.0
            .as_ref()
            .expect("an NftSocket holds its socket until dropped")
    }
}

impl std::ops::DerefMut for NftSocket {
    fn deref_mut(&mut self) -> &mut nft::Socket {
        self.0
            .as_mut()
            .expect("an NftSocket holds its socket until dropped")
    }
}

impl Drop for NftSocket {
    fn drop(&mut self) {
        let Some(sock) = self.0.take() else {
            return;
        };
        if !KEEP_OPEN.load(Ordering::Relaxed) {
            // A one-shot process: the close must not wait either.
            crate::link::detach::close_nft(sock);
            return;
        }
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        if kept.is_none() {
            *kept = Some(sock);
        }
    }
}

/// An nftables socket now: the kept one when there is one, else a new one.
pub fn nft_socket() -> Result<NftSocket> {
    if KEEP_OPEN.load(Ordering::Relaxed) {
        let kept = KEPT.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = kept {
            return Ok(NftSocket(Some(s)));
        }
    }
    nft::Socket::new()
        .map(|s| NftSocket(Some(s)))
        .map_err(Error::kernel("failed to open an nftables socket"))
}
