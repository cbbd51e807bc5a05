//! `bandwidth`: a chained plugin that shapes a container's traffic with token
//! bucket filters, as the reference plugin (containernetworking/plugins
//! 1.1.1, `plugins/meta/bandwidth`) does:
//!
//! * the limits come from the config's `ingressRate`/`ingressBurst`/
//!   `egressRate`/`egressBurst` (bits per second, bits) when any of them is
//!   set, else from `runtimeConfig.bandwidth` (the `bandwidth` capability);
//!   a rate without a burst, or a burst without a rate, is code 7;
//! * the host interface is the host end of the container interface's veth,
//!   and must be an interface of `prevResult` outside the sandbox;
//! * ingress (traffic into the container) is a tbf at the root of the host
//!   veth (`1:`, latency 25 ms);
//! * egress (traffic from the container) arrives on the host veth: an
//!   ingress qdisc there redirects all of it (u32 match-all at pref 1,
//!   `mirred egress redirect`) to an IFB named `bwp` + the first 12 hex
//!   digits of sha512(network name + container ID), whose root is the tbf;
//!   the IFB is appended to the result's interfaces.
//!
//! Coexistence with other users of tc, where the reference fails on `file
//! exists` or stacks duplicates:
//! * a root qdisc the kernel attached (handle `0:`) is replaced by the tbf; a
//!   root tbf `1:` is bandwidth's own (an earlier ADD of this attachment, by
//!   Ferry or the reference) and is replaced; any other root qdisc (an `htb`
//!   of someone else's, say) is refused with code 100 and left alone;
//! * an existing ingress qdisc is shared; filters at pref 1 that are u32
//!   redirects to this attachment's IFB (or to a device that is gone) are
//!   replaced, anything else at pref 1 is refused; other prefs are untouched;
//! * an IFB of the attachment's name is reused; a non-IFB link of that
//!   name is refused.
//!
//! DEL removes the IFB, and (unlike the reference, which leaves them to go
//! with the veth) the tbf, the filter and an ingress qdisc left empty on the
//! host veth when it can still be found; it succeeds when all is gone. CHECK
//! verifies the tbfs' rate, burst and limit (as the reference) and the
//! redirect. GC has nothing to collect: everything dies with the veth or is
//! named after the attachment and removed by its DEL.

use crate::conf::{self, kernel};
use crate::detach;
use ferry_cni::result::{Interface, Result as CniResultType};
use ferry_cni::skel::{CmdArgs, Plugin};
use ferry_cni::{CniError, CniResult};
use ferry_linux::tc::{self, Mode, Qdisc, QdiscSpec, Tbf};
use ferry_linux::{Link, Netlink, Netns};
use serde_json::Value;

/// Prefix of the IFB devices' names.
pub const IFB_PREFIX: &str = "bwp";
/// How long a packet may wait in a tbf (the reference's `latencyInMillis`).
pub const LATENCY_USEC: u64 = 25_000;
/// Priority of the redirect filter on the host veth's ingress.
const FILTER_PRIO: u16 = 1;
/// The handle of bandwidth's root tbf.
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
struct Shaping {
    /// On the host veth's root (traffic into the container).
    ingress: Option<Tbf>,
    /// On the IFB's root (traffic from the container).
    egress: Option<Tbf>,
}

const LIMIT_KEYS: [&str; 4] = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"];

/// One limit: absent or null is 0; a negative or fractional number is code 7
/// (the reference answers those with a JSON error); another type is code 6.
fn limit_value(obj: &serde_json::Map<String, Value>, key: &str, from: &str) -> CniResult<u64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            CniError::invalid_config(format!(
                "{from}{key} must be a whole, non-negative number, got {n}"
            ))
        }),
        Some(other) => Err(CniError::decoding(format!(
            "failed to load netconf: {from}{key} must be a number, got {other}"
        ))),
    }
}

impl Limits {
    /// The limits of a request: the top-level keys when any is present (as
    /// Go allocates the embedded entry), else `runtimeConfig.bandwidth`.
    pub fn from_config(config: &Value) -> CniResult<Option<Limits>> {
        let top = config.as_object();
        let has_top = top.is_some_and(|o| {
            LIMIT_KEYS
                .iter()
                .chain(["unshapedSubnets", "shapedSubnets"].iter())
                .any(|k| o.contains_key(*k))
        });
        let (obj, from) = if has_top {
            (top, "")
        } else {
            match config.pointer("/runtimeConfig/bandwidth") {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Object(o)) => (Some(o), "runtimeConfig.bandwidth."),
                Some(other) => {
                    return Err(CniError::decoding(format!(
                        "failed to load netconf: runtimeConfig.bandwidth must be an object, got {other}"
                    )))
                }
            }
        };
        let Some(obj) = obj else { return Ok(None) };
        for key in ["unshapedSubnets", "shapedSubnets"] {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(_) => {
                    return Err(CniError::unsupported_field(format!(
                        "{from}{key}: Ferry's bandwidth shapes all traffic (tbf, as the reference 1.1.1); \
                         per-subnet shaping is not supported"
                    )))
                }
            }
        }
        Ok(Some(Limits {
            ingress_rate: limit_value(obj, "ingressRate", from)?,
            ingress_burst: limit_value(obj, "ingressBurst", from)?,
            egress_rate: limit_value(obj, "egressRate", from)?,
            egress_burst: limit_value(obj, "egressBurst", from)?,
        }))
    }

    /// True when nothing is limited.
    pub fn is_zero(&self) -> bool {
        *self == Limits::default()
    }

    /// Checks the limits (code 7) and computes the tbfs.
    fn shaping(&self) -> CniResult<Shaping> {
        Ok(Shaping {
            ingress: direction("ingress", self.ingress_rate, self.ingress_burst)?,
            egress: direction("egress", self.egress_rate, self.egress_burst)?,
        })
    }
}

/// The reference's validation (rate and burst set together, burst under
/// 4 GB), then what the kernel must be able to hold.
fn direction(dir: &str, rate: u64, burst: u64) -> CniResult<Option<Tbf>> {
    match (rate, burst) {
        (0, 0) => return Ok(None),
        (_, 0) => {
            return Err(CniError::invalid_config(format!(
                "if rate is set, burst must also be set ({dir}Rate {rate} without {dir}Burst)"
            )))
        }
        (0, _) => {
            return Err(CniError::invalid_config(format!(
                "if burst is set, rate must also be set ({dir}Burst {burst} without {dir}Rate)"
            )))
        }
        _ => {}
    }
    if burst / 8 >= u64::from(u32::MAX) {
        return Err(CniError::invalid_config(format!(
            "burst cannot be more than 4GB ({dir}Burst {burst} bits)"
        )));
    }
    Tbf::from_rate_burst(rate / 8, burst / 8, LATENCY_USEC)
        .map(Some)
        .map_err(|e| {
            CniError::invalid_config(format!(
                "{dir}Rate {rate} bits/s with {dir}Burst {burst} bits: {}",
                e.to_string().trim_start_matches("invalid argument: ")
            ))
        })
}

/// The IFB of an attachment: `bwp` and sha512(network + container ID) in hex,
/// 15 bytes in all, as the reference names it.
pub fn ifb_name(network: &str, container_id: &str) -> String {
    let digest = sha512(format!("{network}{container_id}").as_bytes());
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

fn network_name(args: &CmdArgs) -> String {
    args.config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The host end of the container interface's veth, which must be one of
/// `prevResult`'s host-side interfaces (as the reference finds it).
fn host_interface(args: &CmdArgs, prev: &CniResultType, host: &mut Netlink) -> CniResult<Link> {
    if prev.interfaces.is_empty() {
        return Err(CniError::invalid_config(
            "bandwidth: prevResult has no interfaces",
        ));
    }
    let ns = conf::open_netns(&args.netns)?;
    let mut inside = ns
        .netlink()
        .map_err(kernel("failed to open netlink in the container's netns"))?;
    let ifname = &args.ifname;
    let link = inside.link_by_name(ifname).map_err(|e| {
        CniError::invalid_config(format!(
            "container interface {ifname} has no veth peer: {e}"
        ))
    })?;
    let peer = match (link.kind.as_deref(), link.parent) {
        (Some("veth"), Some(p)) if p > 0 => p,
        _ => {
            return Err(CniError::invalid_config(format!(
                "container interface {ifname} has no veth peer (it is {})",
                link.kind.as_deref().unwrap_or("not a virtual device")
            )))
        }
    };
    let host_link = host.link_by_index(peer).map_err(|_| {
        CniError::invalid_config(format!("veth peer with index {peer} is not in host ns"))
    })?;
    if prev
        .interfaces
        .iter()
        .any(|i| i.sandbox.is_empty() && i.name == host_link.name)
    {
        Ok(host_link)
    } else {
        Err(CniError::invalid_config(format!(
            "no veth peer of container interface found in host ns ({} is not in prevResult's interfaces)",
            host_link.name
        )))
    }
}

fn describe(q: &Qdisc) -> String {
    format!("{} {}", q.kind, tc::handle_string(q.handle))
}

/// True for a root qdisc bandwidth may replace: the kernel's default, or
/// bandwidth's own tbf.
fn replaceable_root(q: &Qdisc) -> bool {
    q.is_default() || (q.kind == "tbf" && q.handle == TBF_HANDLE)
}

/// Puts `tbf` at the root of `index` unless someone else's qdisc is there.
/// Returns whether a root qdisc of bandwidth's was already there.
fn set_root_tbf(nl: &mut Netlink, index: u32, dev: &str, tbf: Tbf) -> CniResult<bool> {
    let root = nl
        .root_qdisc(index)
        .map_err(kernel(format!("failed to list qdiscs of {dev}")))?;
    let ours = match &root {
        Some(q) if !replaceable_root(q) => {
            return Err(CniError::internal(format!(
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

/// The filters at bandwidth's priority on the ingress of `index`, and
/// whether all of them are bandwidth's (u32 redirects to `ifb` or to a
/// device that no longer exists).
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

/// What ADD created, undone if it fails halfway.
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

/// Creates (or reuses) the IFB, redirects the host veth's ingress to it and
/// shapes it. Returns the IFB's result entry.
fn setup_egress(rb: &mut Rollback<'_>, host: &Link, name: &str, tbf: Tbf) -> CniResult<Interface> {
    let nl = &mut *rb.nl;
    let ifb = match nl.link_by_name(name) {
        Ok(l) if l.kind.as_deref() == Some("ifb") => {
            nl.set_up(l.index)
                .map_err(kernel(format!("failed to set {name} up")))?;
            l
        }
        Ok(l) => {
            return Err(CniError::internal(format!(
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
            return Err(CniError::internal(format!(
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
            return Err(CniError::internal(format!(
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

    Ok(Interface {
        name: name.to_string(),
        mac: ifb.mac.map(|m| m.to_string()).unwrap_or_default(),
        ..Interface::default()
    })
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
fn check_tbf(q: Option<&Qdisc>, dev: &str, want: Tbf) -> CniResult<()> {
    let Some(q) = q else {
        return Err(CniError::internal(format!("Failed to find qdisc on {dev}")));
    };
    let Some(have) = q.tbf.filter(|_| q.kind == "tbf") else {
        return Err(CniError::internal(format!(
            "{dev}: the root qdisc is {}, not bandwidth's tbf",
            describe(q)
        )));
    };
    if have.rate != want.rate {
        return Err(CniError::internal(format!(
            "Rate doesn't match on {dev}: {} bytes/s, configured {}",
            have.rate, want.rate
        )));
    }
    if have.limit != want.limit {
        return Err(CniError::internal(format!(
            "Limit doesn't match on {dev}: {} bytes, configured {}",
            have.limit, want.limit
        )));
    }
    if have.buffer != want.buffer {
        return Err(CniError::internal(format!(
            "Buffer doesn't match on {dev}: {} ticks, configured {}",
            have.buffer, want.buffer
        )));
    }
    Ok(())
}

fn open_host() -> CniResult<Netlink> {
    Netlink::new().map_err(kernel("failed to open netlink"))
}

pub struct Bandwidth;

impl Plugin for Bandwidth {
    fn add(&self, args: &CmdArgs) -> CniResult<Value> {
        let limits = Limits::from_config(&args.config)?;
        let shaping = limits.map(|l| l.shaping()).transpose()?.unwrap_or_default();
        let mut result = conf::required_prev_result(args, "bandwidth")?;
        if shaping == Shaping::default() {
            return Ok(serde_json::to_value(result)?);
        }
        let mut nl = open_host()?;
        let host = host_interface(args, &result, &mut nl)?;
        let mut rb = Rollback {
            nl: &mut nl,
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
        if let Some(tbf) = shaping.egress {
            let name = ifb_name(&network_name(args), &args.container_id);
            let iface = setup_egress(&mut rb, &host, &name, tbf)?;
            result.interfaces.push(iface);
        }
        rb.disarm();
        Ok(serde_json::to_value(result)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let mut nl = open_host()?;
        let name = ifb_name(&network_name(args), &args.container_id);
        let ifb = match nl.link_by_name(&name) {
            Ok(l) if l.kind.as_deref() == Some("ifb") => Some(l.index),
            _ => None,
        };
        // The host veth is found as at ADD, through the cached prevResult;
        // when the namespace or the veth is gone, so are its qdiscs.
        if let Ok(Some(prev)) = conf::prev_result(args) {
            if conf::open_netns_for_del(&args.netns).is_some() {
                if let Ok(host) = host_interface(args, &prev, &mut nl) {
                    teardown_host(&mut nl, &host, ifb).map_err(kernel(format!(
                        "failed to remove bandwidth's qdiscs from {}",
                        host.name
                    )))?;
                }
            }
        }
        if let Some(index) = ifb {
            let node = Netns::current().map_err(kernel("failed to open the node's namespace"))?;
            detach::start(detach::Deleter::Fork, &node, nl, index)
                .map_err(kernel(format!("failed to delete ifb {name}")))?
                .finish();
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let limits = Limits::from_config(&args.config)?;
        let shaping = limits.map(|l| l.shaping()).transpose()?.unwrap_or_default();
        let prev = conf::prev_result(args)?.ok_or_else(|| {
            CniError::invalid_config("must be called as a chained plugin (no prevResult)")
        })?;
        let mut nl = open_host()?;
        let host = host_interface(args, &prev, &mut nl)?;
        if let Some(want) = shaping.ingress {
            let root = nl
                .root_qdisc(host.index)
                .map_err(kernel(format!("failed to list qdiscs of {}", host.name)))?;
            check_tbf(root.as_ref(), &host.name, want)?;
        }
        if let Some(want) = shaping.egress {
            let name = ifb_name(&network_name(args), &args.container_id);
            let ifb = nl
                .link_by_name(&name)
                .map_err(|e| CniError::internal(format!("get ifb device: {e}")))?;
            let root = nl
                .root_qdisc(ifb.index)
                .map_err(kernel(format!("failed to list qdiscs of {name}")))?;
            check_tbf(root.as_ref(), &name, want)?;
            let redirected = nl
                .filters(host.index, tc::INGRESS_QDISC)
                .map_err(kernel(format!("failed to list filters of {}", host.name)))?
                .iter()
                .any(|f| f.priority == FILTER_PRIO && f.redirects_to() == Some(ifb.index));
            if !redirected {
                return Err(CniError::internal(format!(
                    "{}: no filter redirects its received traffic to {name}",
                    host.name
                )));
            }
        }
        Ok(())
    }

    fn gc(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }

    /// As the reference: 0.3.0 and later (older results have no interfaces
    /// to find the host veth in).
    fn supported_versions(&self) -> &'static [&'static str] {
        &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    }
}

/// SHA-512 (FIPS 180-4), for the IFB's name; small enough not to need a crate.
fn sha512(data: &[u8]) -> [u8; 64] {
    const K: [u64; 80] = [
        0x428a2f98d728ae22,
        0x7137449123ef65cd,
        0xb5c0fbcfec4d3b2f,
        0xe9b5dba58189dbbc,
        0x3956c25bf348b538,
        0x59f111f1b605d019,
        0x923f82a4af194f9b,
        0xab1c5ed5da6d8118,
        0xd807aa98a3030242,
        0x12835b0145706fbe,
        0x243185be4ee4b28c,
        0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f,
        0x80deb1fe3b1696b1,
        0x9bdc06a725c71235,
        0xc19bf174cf692694,
        0xe49b69c19ef14ad2,
        0xefbe4786384f25e3,
        0x0fc19dc68b8cd5b5,
        0x240ca1cc77ac9c65,
        0x2de92c6f592b0275,
        0x4a7484aa6ea6e483,
        0x5cb0a9dcbd41fbd4,
        0x76f988da831153b5,
        0x983e5152ee66dfab,
        0xa831c66d2db43210,
        0xb00327c898fb213f,
        0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2,
        0xd5a79147930aa725,
        0x06ca6351e003826f,
        0x142929670a0e6e70,
        0x27b70a8546d22ffc,
        0x2e1b21385c26c926,
        0x4d2c6dfc5ac42aed,
        0x53380d139d95b3df,
        0x650a73548baf63de,
        0x766a0abb3c77b2a8,
        0x81c2c92e47edaee6,
        0x92722c851482353b,
        0xa2bfe8a14cf10364,
        0xa81a664bbc423001,
        0xc24b8b70d0f89791,
        0xc76c51a30654be30,
        0xd192e819d6ef5218,
        0xd69906245565a910,
        0xf40e35855771202a,
        0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8,
        0x1e376c085141ab53,
        0x2748774cdf8eeb99,
        0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63,
        0x4ed8aa4ae3418acb,
        0x5b9cca4f7763e373,
        0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc,
        0x78a5636f43172f60,
        0x84c87814a1f0ab72,
        0x8cc702081a6439ec,
        0x90befffa23631e28,
        0xa4506cebde82bde9,
        0xbef9a3f7b2c67915,
        0xc67178f2e372532b,
        0xca273eceea26619c,
        0xd186b8c721c0c207,
        0xeada7dd6cde0eb1e,
        0xf57d4f7fee6ed178,
        0x06f067aa72176fba,
        0x0a637dc5a2c898a6,
        0x113f9804bef90dae,
        0x1b710b35131c471b,
        0x28db77f523047d84,
        0x32caab7b40c72493,
        0x3c9ebe0a15c9bebc,
        0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6,
        0x597f299cfc657e2a,
        0x5fcb6fab3ad6faec,
        0x6c44198c4a475817,
    ];
    let mut h: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 128 != 112 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u128) * 8).to_be_bytes());
    for block in msg.chunks_exact(128) {
        let mut w = [0u64; 80];
        for (i, word) in block.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(word);
            w[i] = u64::from_be_bytes(b);
        }
        for i in 16..80 {
            let s0 = w[i - 15].rotate_right(1) ^ w[i - 15].rotate_right(8) ^ (w[i - 15] >> 7);
            let s1 = w[i - 2].rotate_right(19) ^ w[i - 2].rotate_right(61) ^ (w[i - 2] >> 6);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..80 {
            let s1 = e.rotate_right(14) ^ e.rotate_right(18) ^ e.rotate_right(41);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(28) ^ a.rotate_right(34) ^ a.rotate_right(39);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(v);
        }
    }
    let mut out = [0u8; 64];
    for (i, x) in h.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha512_known_vectors() {
        assert_eq!(&hex(&sha512(b""))[..32], "cf83e1357eefb8bdf1542850d66d8007");
        assert_eq!(
            &hex(&sha512(b"abc"))[..32],
            "ddaf35a193617abacc417349ae204131"
        );
        // Two blocks (112 bytes and more of padding).
        let long = vec![b'a'; 200];
        assert_eq!(&hex(&sha512(&long))[..16], "4b11459c33f52a22");
    }

    #[test]
    fn ifb_name_is_the_references() {
        // Observed from /usr/lib/cni/bandwidth 1.1.1 for network "bwnet",
        // container "ctr1".
        assert_eq!(ifb_name("bwnet", "ctr1"), "bwpea62040b30ca");
        assert_eq!(ifb_name("n", "c").len(), 15);
    }

    #[test]
    fn limits_come_from_the_top_level_first() {
        let c = json!({"ingressRate": 8, "ingressBurst": 16,
                       "runtimeConfig": {"bandwidth": {"egressRate": 1, "egressBurst": 8}}});
        let l = Limits::from_config(&c).unwrap().unwrap();
        assert_eq!((l.ingress_rate, l.egress_rate), (8, 0));
        let c = json!({"runtimeConfig": {"bandwidth": {"egressRate": 800, "egressBurst": 80}}});
        let l = Limits::from_config(&c).unwrap().unwrap();
        assert_eq!((l.egress_rate, l.egress_burst), (800, 80));
        assert_eq!(Limits::from_config(&json!({})).unwrap(), None);
        assert!(
            Limits::from_config(&json!({"runtimeConfig": {"bandwidth": {}}}))
                .unwrap()
                .unwrap()
                .is_zero()
        );
    }

    #[test]
    fn bad_limits_are_code_7_and_bad_types_code_6() {
        let code_of = |c: Value| {
            Limits::from_config(&c)
                .and_then(|l| l.unwrap_or_default().shaping().map(|_| ()))
                .unwrap_err()
                .code
        };
        assert_eq!(code_of(json!({"ingressRate": 1000})), 7);
        assert_eq!(code_of(json!({"egressBurst": 1000})), 7);
        assert_eq!(code_of(json!({"ingressRate": -1, "ingressBurst": 1000})), 7);
        assert_eq!(
            code_of(json!({"ingressRate": 1.5, "ingressBurst": 1000})),
            7
        );
        assert_eq!(
            code_of(json!({"ingressRate": 1000, "ingressBurst": 40_000_000_000u64})),
            7
        );
        assert_eq!(
            code_of(json!({"ingressRate": "fast", "ingressBurst": 1})),
            6
        );
        assert_eq!(code_of(json!({"shapedSubnets": ["10.0.0.0/8"]})), 2);
        // A rate under one byte per second cannot be shaped.
        assert_eq!(code_of(json!({"ingressRate": 7, "ingressBurst": 800})), 7);
    }
}
