//! Quality of service: token bucket filters on a container's host veth, as
//! the reference `bandwidth` plugin (containernetworking/plugins 1.1.1)
//! sets them up.
//!
//! * Ingress (traffic into the container) is a tbf at the root of the host
//!   veth (`1:`, latency 25 ms).
//! * Egress (traffic from the container) arrives on the host veth: an
//!   ingress qdisc there redirects all of it (u32 match-all at pref 1,
//!   `mirred egress redirect`) to an IFB ([`ifb_name`]) whose root is the
//!   tbf.
//!
//! Coexistence with other users of tc, where the reference fails on `file
//! exists` or stacks duplicates:
//! * a root qdisc the kernel attached (handle `0:`) is replaced by the tbf; a
//!   root tbf `1:` is ours (an earlier apply for this attachment, by Ferry or
//!   the reference) and is replaced; any other root qdisc (an `htb` of
//!   someone else's, say) is refused and left alone;
//! * an existing ingress qdisc is shared; filters at pref 1 that are u32
//!   redirects to this attachment's IFB (or to a device that is gone) are
//!   replaced, anything else at pref 1 is refused; other prefs are untouched;
//! * an IFB of the attachment's name is reused; a non-IFB link of that name
//!   is refused.
//!
//! [`remove`] takes out the IFB, and (unlike the reference, which leaves them
//! to go with the veth) the tbf, the filter and an ingress qdisc left empty
//! on the host veth.

use crate::kernel;
use crate::link::detach::{self, Deleter};
use crate::{Error, Result};
use ferry_linux::tc::{self, Mode, Qdisc, QdiscSpec, Tbf};
use ferry_linux::{Link, Netlink, Netns};
use sha2::{Digest, Sha512};

/// Prefix of the IFB devices' names.
pub const IFB_PREFIX: &str = "bwp";
/// How long a packet may wait in a tbf (the reference's `latencyInMillis`).
pub const LATENCY_USEC: u64 = 25_000;
/// Priority of the redirect filter on the host veth's ingress.
const FILTER_PRIO: u16 = 1;
/// The handle of the root tbf.
const TBF_HANDLE: u32 = tc::handle(1, 0);

/// The limits of one attachment, in bits per second and bits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// The two shapers the limits ask for, in the kernel's units.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shaping {
    /// On the host veth's root (traffic into the container).
    pub ingress: Option<Tbf>,
    /// On the IFB's root (traffic from the container).
    pub egress: Option<Tbf>,
}

impl Shaping {
    /// True when nothing is shaped.
    pub fn is_none(&self) -> bool {
        *self == Shaping::default()
    }
}

impl Limits {
    /// True when nothing is limited.
    pub fn is_zero(&self) -> bool {
        *self == Limits::default()
    }

    /// Checks the limits ([`Error::Invalid`]) and computes the tbfs.
    pub fn shaping(&self) -> Result<Shaping> {
        Ok(Shaping {
            ingress: direction("ingress", self.ingress_rate, self.ingress_burst)?,
            egress: direction("egress", self.egress_rate, self.egress_burst)?,
        })
    }
}

/// The reference's validation (rate and burst set together, burst under
/// 4 GB), then what the kernel must be able to hold.
fn direction(dir: &str, rate: u64, burst: u64) -> Result<Option<Tbf>> {
    match (rate, burst) {
        (0, 0) => return Ok(None),
        (_, 0) => {
            return Err(Error::Invalid(format!(
                "if rate is set, burst must also be set ({dir}Rate {rate} without {dir}Burst)"
            )))
        }
        (0, _) => {
            return Err(Error::Invalid(format!(
                "if burst is set, rate must also be set ({dir}Burst {burst} without {dir}Rate)"
            )))
        }
        _ => {}
    }
    if burst / 8 >= u64::from(u32::MAX) {
        return Err(Error::Invalid(format!(
            "burst cannot be more than 4GB ({dir}Burst {burst} bits)"
        )));
    }
    Tbf::from_rate_burst(rate / 8, burst / 8, LATENCY_USEC)
        .map(Some)
        .map_err(|e| {
            Error::Invalid(format!(
                "{dir}Rate {rate} bits/s with {dir}Burst {burst} bits: {}",
                e.to_string().trim_start_matches("invalid argument: ")
            ))
        })
}

/// The IFB of an attachment: `bwp` and sha512(network + container ID) in
/// hex, 15 bytes in all, as the reference names it.
pub fn ifb_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let mut name = String::from(IFB_PREFIX);
    for b in digest {
        name.push_str(&format!("{b:02x}"));
        if name.len() >= ferry_linux::MAX_IFNAME_LEN {
            break;
        }
    }
    name.truncate(ferry_linux::MAX_IFNAME_LEN);
    name
}

fn describe(q: &Qdisc) -> String {
    format!("{} {}", q.kind, tc::handle_string(q.handle))
}

/// True for a root qdisc we may replace: the kernel's default, or our tbf.
fn replaceable_root(q: &Qdisc) -> bool {
    q.is_default() || (q.kind == "tbf" && q.handle == TBF_HANDLE)
}

/// Puts `tbf` at the root of `index` unless someone else's qdisc is there.
/// Returns whether a root tbf of ours was already there.
fn set_root_tbf(nl: &mut Netlink, index: u32, dev: &str, tbf: Tbf) -> Result<bool> {
    let root = nl
        .root_qdisc(index)
        .map_err(kernel(format!("failed to list qdiscs of {dev}")))?;
    let ours = match &root {
        Some(q) if !replaceable_root(q) => {
            return Err(Error::Failed(format!(
                "{dev} already has a root qdisc {} that bandwidth did not set up; \
                 refusing to replace it (remove it, or shape {dev} in one place only)",
                describe(q)
            )))
        }
        Some(q) => !q.is_default(),
        None => false,
    };
    let mode = if ours { Mode::Replace } else { Mode::Create };
    nl.add_qdisc(index, &QdiscSpec::tbf_root(tbf), mode)
        .map_err(kernel(format!("failed to set the tbf qdisc on {dev}")))?;
    Ok(ours)
}

/// The filters at our priority on the ingress of `index`, and whether all
/// of them are ours (u32 redirects to `ifb` or to a device that no longer
/// exists).
fn prio_filters(nl: &mut Netlink, index: u32, ifb: u32) -> ferry_linux::Result<(usize, bool)> {
    let filters = nl.filters(index, tc::INGRESS_QDISC)?;
    let at_prio: Vec<_> = filters
        .into_iter()
        .filter(|f| f.priority == FILTER_PRIO)
        .collect();
    let mut ours = true;
    for f in &at_prio {
        if f.kind != "u32" {
            ours = false;
            continue;
        }
        // u32 reports its instance (handle 0) and hash table (`800:`, node
        // 0) besides the key nodes (`800::800`) that match and act.
        if f.handle & 0xFFF == 0 {
            continue;
        }
        match f.redirects_to() {
            Some(t) if t == ifb => {}
            Some(t) if nl.link_by_index(t).is_err() => {}
            _ => ours = false,
        }
    }
    Ok((at_prio.len(), ours))
}

/// What [`apply`] created, undone if it fails halfway.
struct Rollback<'a> {
    nl: &'a mut Netlink,
    host: u32,
    root_tbf: bool,
    ingress_qdisc: bool,
    filter: bool,
    ifb: Option<u32>,
}

impl Rollback<'_> {
    fn disarm(&mut self) {
        self.root_tbf = false;
        self.ingress_qdisc = false;
        self.filter = false;
        self.ifb = None;
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.filter {
            let _ = self
                .nl
                .delete_filters(self.host, tc::INGRESS_QDISC, FILTER_PRIO);
        }
        if self.ingress_qdisc {
            let _ = self
                .nl
                .delete_qdisc(self.host, tc::HANDLE_INGRESS, tc::INGRESS_QDISC);
        }
        if self.root_tbf {
            let _ = self.nl.delete_qdisc(self.host, tc::HANDLE_ROOT, TBF_HANDLE);
        }
        if let Some(ifb) = self.ifb {
            let _ = self.nl.delete_link(ifb);
        }
    }
}

/// Shapes the host veth `host` (a link of `nl`'s namespace) as `shaping`
/// asks, egress through the IFB `ifb` (see [`ifb_name`]). Returns the IFB
/// when egress is shaped. Idempotent; a failure undoes what it made.
pub fn apply(nl: &mut Netlink, host: &Link, shaping: &Shaping, ifb: &str) -> Result<Option<Link>> {
    let mut rb = Rollback {
        nl,
        host: host.index,
        root_tbf: false,
        ingress_qdisc: false,
        filter: false,
        ifb: None,
    };
    if let Some(tbf) = shaping.ingress {
        let existed = set_root_tbf(rb.nl, host.index, &host.name, tbf)?;
        rb.root_tbf = !existed;
    }
    let ifb = match shaping.egress {
        Some(tbf) => Some(setup_egress(&mut rb, host, ifb, tbf)?),
        None => None,
    };
    rb.disarm();
    Ok(ifb)
}

/// Creates (or reuses) the IFB, redirects the host veth's ingress to it and
/// shapes it.
fn setup_egress(rb: &mut Rollback<'_>, host: &Link, name: &str, tbf: Tbf) -> Result<Link> {
    let nl = &mut *rb.nl;
    let ifb = match nl.link_by_name(name) {
        Ok(l) if l.kind.as_deref() == Some("ifb") => {
            nl.set_up(l.index)
                .map_err(kernel(format!("failed to set {name} up")))?;
            l
        }
        Ok(l) => {
            return Err(Error::Failed(format!(
                "a {} link named {name} exists; bandwidth needs that name for its ifb",
                l.kind.as_deref().unwrap_or("physical")
            )))
        }
        Err(e) if e.is_not_found() => {
            // The host link was just read: its txqlen needs no second look.
            let l = nl
                .create_ifb_link(name, host.mtu, host.txqlen)
                .map_err(kernel(format!("failed to create ifb {name}")))?;
            rb.ifb = Some(l.index);
            l
        }
        Err(e) => return Err(kernel(format!("failed to look up {name}"))(e)),
    };

    // The ingress qdisc on the host veth is a shared attach point.
    let ingress = nl
        .ingress_qdisc(host.index)
        .map_err(kernel(format!("failed to list qdiscs of {}", host.name)))?;
    match &ingress {
        Some(q) if q.kind == "ingress" => {}
        Some(q) => {
            return Err(Error::Failed(format!(
                "{} already has a {} qdisc at its ingress; bandwidth needs an ingress qdisc there",
                host.name,
                describe(q)
            )))
        }
        None => {
            nl.add_qdisc(host.index, &QdiscSpec::ingress(), Mode::Create)
                .map_err(kernel(format!(
                    "failed to add the ingress qdisc to {}",
                    host.name
                )))?;
            rb.ingress_qdisc = true;
        }
    }

    let (present, ours) = prio_filters(nl, host.index, ifb.index)
        .map_err(kernel(format!("failed to list filters of {}", host.name)))?;
    if present > 0 {
        if !ours {
            return Err(Error::Failed(format!(
                "{} already has a filter at ingress pref {FILTER_PRIO} that bandwidth did not set up; \
                 refusing to replace it",
                host.name
            )));
        }
        nl.delete_filters(host.index, tc::INGRESS_QDISC, FILTER_PRIO)
            .map_err(kernel(format!(
                "failed to replace the filter of {}",
                host.name
            )))?;
    }
    nl.add_redirect_filter(
        host.index,
        tc::INGRESS_QDISC,
        FILTER_PRIO,
        tc::handle(1, 1),
        ifb.index,
    )
    .map_err(kernel(format!(
        "failed to redirect {} to {name}",
        host.name
    )))?;
    rb.filter = true;

    // The IFB is bandwidth's alone: its root is replaced whatever it is.
    nl.add_qdisc(ifb.index, &QdiscSpec::tbf_root(tbf), Mode::Replace)
        .map_err(kernel(format!("failed to set the tbf qdisc on {name}")))?;

    Ok(ifb)
}

/// Removes what bandwidth set up on the host veth: its root tbf, its
/// redirect filter and the ingress qdisc when nothing else uses it.
fn teardown_host(nl: &mut Netlink, host: &Link, ifb: Option<u32>) -> ferry_linux::Result<()> {
    let ignore_gone = |r: ferry_linux::Result<()>| match r {
        Err(e) if !e.is_not_found() && e.errno() != Some(libc::EINVAL) => Err(e),
        _ => Ok(()),
    };
    if let Some(root) = nl.root_qdisc(host.index)? {
        if root.kind == "tbf" && root.handle == TBF_HANDLE {
            ignore_gone(nl.delete_qdisc(host.index, tc::HANDLE_ROOT, TBF_HANDLE))?;
        }
    }
    let has_ingress = nl
        .ingress_qdisc(host.index)?
        .is_some_and(|q| q.kind == "ingress");
    if !has_ingress {
        return Ok(());
    }
    let (present, ours) = prio_filters(nl, host.index, ifb.unwrap_or(0))?;
    if present > 0 && ours {
        ignore_gone(nl.delete_filters(host.index, tc::INGRESS_QDISC, FILTER_PRIO))?;
    }
    if nl.filters(host.index, tc::INGRESS_QDISC)?.is_empty() {
        ignore_gone(nl.delete_qdisc(host.index, tc::HANDLE_INGRESS, tc::INGRESS_QDISC))?;
    }
    Ok(())
}

/// A tbf as CHECK wants it, in the reference's words when it differs.
fn check_tbf(q: Option<&Qdisc>, dev: &str, want: Tbf) -> Result<()> {
    let Some(q) = q else {
        return Err(Error::Failed(format!("Failed to find qdisc on {dev}")));
    };
    let Some(have) = q.tbf.filter(|_| q.kind == "tbf") else {
        return Err(Error::Failed(format!(
            "{dev}: the root qdisc is {}, not bandwidth's tbf",
            describe(q)
        )));
    };
    if have.rate != want.rate {
        return Err(Error::Failed(format!(
            "Rate doesn't match on {dev}: {} bytes/s, configured {}",
            have.rate, want.rate
        )));
    }
    if have.limit != want.limit {
        return Err(Error::Failed(format!(
            "Limit doesn't match on {dev}: {} bytes, configured {}",
            have.limit, want.limit
        )));
    }
    if have.buffer != want.buffer {
        return Err(Error::Failed(format!(
            "Buffer doesn't match on {dev}: {} ticks, configured {}",
            have.buffer, want.buffer
        )));
    }
    Ok(())
}

/// Removes what [`apply`] set up for the IFB `ifb`: the IFB (deleted by
/// `deleter`), and when the host veth `host` is still there, its tbf, its
/// redirect filter and the ingress qdisc when nothing else uses it. What is
/// already gone is success.
pub fn remove(deleter: Deleter, nl: Netlink, host: Option<&Link>, ifb: &str) -> Result<()> {
    let mut nl = nl;
    let ifb_index = match nl.link_by_name(ifb) {
        Ok(l) if l.kind.as_deref() == Some("ifb") => Some(l.index),
        _ => {
            // A DEL killed after renaming the ifb.
            detach::delete_left_behind(&mut nl, ifb)
                .map_err(kernel(format!("failed to delete ifb {ifb}")))?;
            None
        }
    };
    // The IFB's delete starts first and the host veth is torn down while
    // it runs: both end in kernel waits (a grace period when the root tbf
    // of a running device goes, the IFB's unlisting), which now overlap.
    // A redirect to an IFB that is gone still counts as bandwidth's
    // ([`prio_filters`]).
    let pending = match ifb_index {
        Some(index) => {
            let node = Netns::current().map_err(kernel("failed to open the node's namespace"))?;
            // The pending delete keeps its socket; the teardown gets another.
            let rest = Netlink::new().map_err(kernel("failed to open netlink"))?;
            let for_ifb = std::mem::replace(&mut nl, rest);
            detach::start(deleter, &node, for_ifb, index, ifb)
                .map_err(kernel(format!("failed to delete ifb {ifb}")))?
        }
        None => detach::Pending::none(),
    };
    let torn = match host {
        Some(host) => teardown_host(&mut nl, host, ifb_index).map_err(kernel(format!(
            "failed to remove bandwidth's qdiscs from {}",
            host.name
        ))),
        None => Ok(()),
    };
    pending.finish();
    torn
}

/// Verifies the tbfs' rate, burst and limit (as the reference) and the
/// redirect to the IFB `ifb`.
pub fn check(nl: &mut Netlink, host: &Link, shaping: &Shaping, ifb: &str) -> Result<()> {
    if let Some(want) = shaping.ingress {
        let root = nl
            .root_qdisc(host.index)
            .map_err(kernel(format!("failed to list qdiscs of {}", host.name)))?;
        check_tbf(root.as_ref(), &host.name, want)?;
    }
    if let Some(want) = shaping.egress {
        let link = nl
            .link_by_name(ifb)
            .map_err(|e| Error::Failed(format!("get ifb device: {e}")))?;
        let root = nl
            .root_qdisc(link.index)
            .map_err(kernel(format!("failed to list qdiscs of {ifb}")))?;
        check_tbf(root.as_ref(), ifb, want)?;
        let redirected = nl
            .filters(host.index, tc::INGRESS_QDISC)
            .map_err(kernel(format!("failed to list filters of {}", host.name)))?
            .iter()
            .any(|f| f.priority == FILTER_PRIO && f.redirects_to() == Some(link.index));
        if !redirected {
            return Err(Error::Failed(format!(
                "{}: no filter redirects its received traffic to {ifb}",
                host.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifb_name_is_the_references() {
        // Observed from /usr/lib/cni/bandwidth 1.1.1 for network "bwnet",
        // container "ctr1".
        assert_eq!(ifb_name("bwnet", "ctr1"), "bwpea62040b30ca");
        assert_eq!(ifb_name("n", "c").len(), 15);
    }

    #[test]
    fn limits_need_rate_and_burst_together() {
        let l = |ir, ib| Limits {
            ingress_rate: ir,
            ingress_burst: ib,
            ..Limits::default()
        };
        assert!(matches!(l(1000, 0).shaping(), Err(Error::Invalid(_))));
        assert!(matches!(l(0, 1000).shaping(), Err(Error::Invalid(_))));
        assert!(l(0, 0).shaping().unwrap().is_none());
        assert!(l(8_000_000, 80_000).shaping().unwrap().ingress.is_some());
    }
}
