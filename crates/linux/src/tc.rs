//! Traffic control over rtnetlink: qdiscs (tbf, ingress), u32 filters with a
//! mirred redirect, and IFB devices. What the bandwidth plugin needs, and
//! nothing that would need a `tc` process.
//!
//! ```no_run
//! use ferry_linux::tc::{self, Tbf};
//! use ferry_linux::Netlink;
//! # fn main() -> ferry_linux::Result<()> {
//! let mut nl = Netlink::new()?;
//! let veth = nl.link_by_name("veth0")?.index;
//! // 8 Mbit/s with a burst of 1 Mbit, queueing at most 25 ms: as `tc qdisc
//! // add dev veth0 root handle 1: tbf rate 8mbit burst 125000 latency 25ms`.
//! let tbf = Tbf::from_rate_burst(1_000_000, 125_000, 25_000)?;
//! nl.add_qdisc(veth, &tc::QdiscSpec::tbf_root(tbf), tc::Mode::Create)?;
//! # Ok(()) }
//! ```
//!
//! Handles are `u32` as the kernel sees them (`major << 16 | minor`); see
//! [`handle`]. Rates are in bytes per second, as in the kernel's structures.

use std::sync::OnceLock;

use netlink_packet_core::{
    DefaultNla, Nla, NlasIterator, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::link::check_ifname;
use crate::socket::Netlink;

/// `TC_H_ROOT`: the parent of a device's root qdisc.
pub const HANDLE_ROOT: u32 = 0xFFFF_FFFF;
/// `TC_H_INGRESS`: the parent of the ingress (and clsact) qdisc.
pub const HANDLE_INGRESS: u32 = 0xFFFF_FFF1;
/// The handle the ingress qdisc always has (`ffff:`).
pub const INGRESS_QDISC: u32 = 0xFFFF_0000;
/// `ETH_P_ALL`: a filter protocol matching every packet.
pub const ETH_P_ALL: u16 = 0x0003;
/// `TC_ACT_OK` (`pass`): the packet goes on.
pub const TC_ACT_OK: i32 = 0;
/// `TC_ACT_STOLEN`: the action consumed the packet (a redirect).
pub const TC_ACT_STOLEN: i32 = 4;
/// `TIME_UNITS_PER_SEC`: tc's time unit is the microsecond.
pub const USEC_PER_SEC: f64 = 1_000_000.0;

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
/// `struct tc_ratespec`: cell_log, linklayer, overhead, cell_align, mpu, rate.
const RATESPEC_LEN: usize = 12;
/// `struct tc_tbf_qopt`: rate, peakrate, limit, buffer, mtu.
const TBF_QOPT_LEN: usize = 2 * RATESPEC_LEN + 12;
/// `TCA_OPTIONS` of a qdisc message.
const TCA_OPTIONS: u16 = 2;

/// Builds a tc handle from its major and minor numbers (`1:0` is `handle(1, 0)`).
pub const fn handle(major: u16, minor: u16) -> u32 {
    ((major as u32) << 16) | minor as u32
}

/// Formats a handle as tc prints it (`1:`, `ffff:fff1`, `root`).
pub fn handle_string(h: u32) -> String {
    match h {
        HANDLE_ROOT => "root".into(),
        _ if h & 0xFFFF == 0 => format!("{:x}:", h >> 16),
        _ => format!("{:x}:{:x}", h >> 16, h & 0xFFFF),
    }
}

/// How many psched ticks make a microsecond, from `/proc/net/psched` as
/// `tc` (and the Go netlink library the reference plugins use) read it;
/// 15.625 on every kernel since 2.6.31 (one tick is 64 ns).
pub fn ticks_per_usec() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::fs::read_to_string("/proc/net/psched")
            .ok()
            .and_then(|s| parse_psched(&s))
            .unwrap_or(15.625)
    })
}

fn parse_psched(s: &str) -> Option<f64> {
    let v: Vec<u64> = s
        .split_whitespace()
        .take(3)
        .map(|w| u64::from_str_radix(w, 16).ok())
        .collect::<Option<_>>()?;
    let (mut t2us, us2t, clock_res) = (*v.first()?, *v.get(1)?, *v.get(2)?);
    if us2t == 0 {
        return None;
    }
    if clock_res == 1_000_000_000 {
        t2us = us2t;
    }
    let clock_factor = clock_res as f64 / USEC_PER_SEC;
    Some(t2us as f64 / us2t as f64 * clock_factor)
}

/// Parameters of a token bucket filter, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Rate in bytes per second.
    pub rate: u64,
    /// Bucket size as the time to send it at `rate`, in psched ticks.
    pub buffer: u32,
    /// Bytes that may wait in the queue.
    pub limit: u32,
}

impl Tbf {
    /// The parameters the reference bandwidth plugin (and `tc ... tbf rate R
    /// burst B latency L`) computes: `buffer` is the time `burst` bytes take
    /// at `rate` (whole microseconds, then ticks), `limit` is `rate ×
    /// latency + burst`. Refuses (`InvalidArgument`) a rate or burst of zero
    /// bytes and values the kernel's 32-bit fields cannot hold (a burst of
    /// more than about 274 s of traffic, a limit over 4 GiB).
    pub fn from_rate_burst(rate: u64, burst: u64, latency_usec: u64) -> Result<Tbf> {
        if rate == 0 {
            return Err(Error::InvalidArgument(
                "tbf rate must be at least 1 byte per second".into(),
            ));
        }
        if burst == 0 {
            return Err(Error::InvalidArgument(
                "tbf burst must be at least 1 byte".into(),
            ));
        }
        let burst32 = u32::try_from(burst).map_err(|_| {
            Error::InvalidArgument(format!("tbf burst {burst} bytes is more than 4 GiB"))
        })?;
        // As the reference: microseconds truncated to an integer, then ticks.
        let usec = (burst as f64 * USEC_PER_SEC / rate as f64).trunc();
        let ticks = (usec * ticks_per_usec()).trunc();
        if usec > u32::MAX as f64 || ticks > u32::MAX as f64 {
            return Err(Error::InvalidArgument(format!(
                "tbf burst {burst} bytes takes {:.0} s at {rate} bytes/s; the kernel holds at most {:.0} s",
                usec / USEC_PER_SEC,
                u32::MAX as f64 / ticks_per_usec() / USEC_PER_SEC
            )));
        }
        if ticks < 1.0 {
            return Err(Error::InvalidArgument(format!(
                "tbf burst {burst} bytes lasts less than a microsecond at {rate} bytes/s"
            )));
        }
        let queued = (rate as f64 * latency_usec as f64 / USEC_PER_SEC).trunc();
        let limit = (queued <= u32::MAX as f64)
            .then_some(queued as u32)
            .and_then(|q| q.checked_add(burst32))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "tbf limit ({rate} bytes/s × {latency_usec} µs + {burst} bytes) is more than 4 GiB"
                ))
            })?;
        Ok(Tbf {
            rate,
            buffer: ticks as u32,
            limit,
        })
    }

    /// The burst in bytes the kernel derives from `buffer` and `rate`.
    pub fn burst(&self) -> u64 {
        (self.rate as f64 * self.buffer as f64 / ticks_per_usec() / USEC_PER_SEC).round() as u64
    }

    fn encode(&self) -> Vec<TcOption> {
        let mut q = vec![0u8; TBF_QOPT_LEN];
        // rate: cell_log, linklayer, overhead, cell_align, mpu stay 0 (as
        // the reference sends them); the 32-bit rate saturates and the
        // exact value goes in TCA_TBF_RATE64 when it does not fit.
        let rate32 = u32::try_from(self.rate).unwrap_or(u32::MAX);
        q[8..12].copy_from_slice(&rate32.to_ne_bytes());
        let off = 2 * RATESPEC_LEN;
        q[off..off + 4].copy_from_slice(&self.limit.to_ne_bytes());
        q[off + 4..off + 8].copy_from_slice(&self.buffer.to_ne_bytes());
        let mut opts = vec![TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, q))];
        if self.rate > u64::from(u32::MAX) {
            opts.push(TcOption::Other(DefaultNla::new(
                TCA_TBF_RATE64,
                self.rate.to_ne_bytes().to_vec(),
            )));
        }
        opts
    }

    /// Decodes the nested `TCA_OPTIONS` payload of a tbf qdisc.
    fn decode(payload: &[u8]) -> Option<Tbf> {
        let mut tbf = None;
        let mut rate64 = None;
        for nla in NlasIterator::new(payload).flatten() {
            let v = nla.value();
            match nla.kind() {
                TCA_TBF_PARMS if v.len() >= TBF_QOPT_LEN => {
                    let word = |i: usize| u32::from_ne_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
                    let off = 2 * RATESPEC_LEN;
                    tbf = Some(Tbf {
                        rate: u64::from(word(8)),
                        limit: word(off),
                        buffer: word(off + 4),
                    });
                }
                TCA_TBF_RATE64 if v.len() >= 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v[..8]);
                    rate64 = Some(u64::from_ne_bytes(b));
                }
                _ => {}
            }
        }
        let mut tbf = tbf?;
        if let Some(r) = rate64 {
            tbf.rate = r;
        }
        Some(tbf)
    }
}

/// A qdisc to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdiscSpec {
    /// Handle of the new qdisc (`1:` is `handle(1, 0)`).
    pub handle: u32,
    /// Where it attaches: [`HANDLE_ROOT`], [`HANDLE_INGRESS`] or a class.
    pub parent: u32,
    /// What it is.
    pub kind: QdiscKind,
}

/// The qdisc types this module can create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QdiscKind {
    /// A token bucket filter.
    Tbf(Tbf),
    /// The ingress qdisc, an attach point for filters on received packets.
    Ingress,
}

impl QdiscSpec {
    /// A tbf as the device's root qdisc with handle `1:` (what the bandwidth
    /// plugin installs).
    pub fn tbf_root(tbf: Tbf) -> QdiscSpec {
        QdiscSpec {
            handle: handle(1, 0),
            parent: HANDLE_ROOT,
            kind: QdiscKind::Tbf(tbf),
        }
    }

    /// The ingress qdisc (`ffff:`).
    pub fn ingress() -> QdiscSpec {
        QdiscSpec {
            handle: INGRESS_QDISC,
            parent: HANDLE_INGRESS,
            kind: QdiscKind::Ingress,
        }
    }
}

/// How a qdisc or filter is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `tc ... add`: fails with `EEXIST` when one is there.
    Create,
    /// `tc ... replace`: creates, or replaces what is at that place.
    Replace,
}

impl Mode {
    fn flags(self) -> u16 {
        match self {
            Mode::Create => NLM_F_CREATE | NLM_F_EXCL,
            Mode::Replace => NLM_F_CREATE | NLM_F_REPLACE,
        }
    }
}

/// A qdisc as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    /// Interface index.
    pub ifindex: u32,
    /// Its handle (`0` for the kernel's default qdiscs, which tc shows as `0:`).
    pub handle: u32,
    /// Its parent ([`HANDLE_ROOT`] for the root qdisc).
    pub parent: u32,
    /// Kind (`tbf`, `ingress`, `noqueue`, `htb`, `mq`, ...).
    pub kind: String,
    /// The tbf parameters when `kind` is `tbf`.
    pub tbf: Option<Tbf>,
}

impl Qdisc {
    /// True for the root qdisc of a device.
    pub fn is_root(&self) -> bool {
        self.parent == HANDLE_ROOT
    }

    /// True for a qdisc the kernel attached by itself (handle `0:`:
    /// noqueue, pfifo_fast, mq and their children), which any `add` replaces.
    pub fn is_default(&self) -> bool {
        self.handle & 0xFFFF_0000 == 0
    }

    pub(crate) fn from_message(m: TcMessage) -> Qdisc {
        let mut q = Qdisc {
            ifindex: u32::try_from(m.header.index).unwrap_or(0),
            handle: m.header.handle.into(),
            parent: m.header.parent.into(),
            kind: String::new(),
            tbf: None,
        };
        let mut options = Vec::new();
        for attr in m.attributes {
            match attr {
                TcAttribute::Kind(k) => q.kind = k,
                TcAttribute::Options(o) => options = o,
                _ => {}
            }
        }
        if q.kind == "tbf" {
            // The library keeps options of kinds it does not know as one
            // opaque TCA_OPTIONS attribute.
            q.tbf = options.iter().find_map(|o| match o {
                TcOption::Other(nla) if nla.kind() & 0x3FFF == TCA_OPTIONS => {
                    let mut buf = vec![0u8; nla.value_len()];
                    nla.emit_value(&mut buf);
                    Tbf::decode(&buf)
                }
                _ => None,
            });
        }
        q
    }
}

/// What a filter's action does, for the actions this module knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterAction {
    /// `mirred`: mirror or redirect the packet to another device.
    Mirred {
        /// `1` egress redirect, `2` egress mirror, `3` ingress redirect,
        /// `4` ingress mirror.
        eaction: i32,
        /// The target device.
        ifindex: u32,
        /// The control action after it (`TC_ACT_STOLEN` for a redirect).
        control: i32,
    },
    /// Another action, by kind.
    Other(String),
}

/// A filter as the kernel reports it. A u32 filter shows up as several
/// objects: the classifier instance, its hash table and each key node; only
/// key nodes have a `classid` or actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Interface index.
    pub ifindex: u32,
    /// The qdisc or class it is attached to.
    pub parent: u32,
    /// Its handle (`800::800`, `0x8000_0800`, for the first u32 key node).
    pub handle: u32,
    /// Priority (`pref`).
    pub priority: u16,
    /// Protocol in host order (`ETH_P_ALL` is 3).
    pub protocol: u16,
    /// Classifier kind (`u32`, `bpf`, ...).
    pub kind: String,
    /// The class it sends matches to (`flowid`).
    pub classid: Option<u32>,
    /// Its actions, in order.
    pub actions: Vec<FilterAction>,
}

impl Filter {
    pub(crate) fn from_message(m: TcMessage) -> Filter {
        let info = m.header.info;
        let mut f = Filter {
            ifindex: u32::try_from(m.header.index).unwrap_or(0),
            parent: m.header.parent.into(),
            handle: m.header.handle.into(),
            priority: (info >> 16) as u16,
            protocol: u16::from_be((info & 0xFFFF) as u16),
            kind: String::new(),
            classid: None,
            actions: Vec::new(),
        };
        for attr in m.attributes {
            match attr {
                TcAttribute::Kind(k) => f.kind = k,
                TcAttribute::Options(opts) => {
                    for o in opts {
                        if let TcOption::U32(u) = o {
                            match u {
                                TcFilterU32Option::ClassId(c) => f.classid = Some(c.into()),
                                TcFilterU32Option::Action(acts) => {
                                    f.actions = acts.iter().map(action_of).collect();
                                }
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        f
    }

    /// The device this filter redirects to with an egress redirect, if it does.
    pub fn redirects_to(&self) -> Option<u32> {
        self.actions.iter().find_map(|a| match a {
            FilterAction::Mirred {
                eaction, ifindex, ..
            } if *eaction == 1 => Some(*ifindex),
            _ => None,
        })
    }
}

fn action_of(a: &TcAction) -> FilterAction {
    let mut kind = String::new();
    for attr in &a.attributes {
        match attr {
            TcActionAttribute::Kind(k) => kind = k.clone(),
            TcActionAttribute::Options(opts) => {
                for o in opts {
                    if let TcActionOption::Mirror(TcActionMirrorOption::Parms(p)) = o {
                        return FilterAction::Mirred {
                            eaction: p.eaction.into(),
                            ifindex: p.ifindex,
                            control: i32::from(p.generic.action),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    FilterAction::Other(kind)
}

fn tc_msg(ifindex: u32, handle: u32, parent: u32, info: u32) -> Result<TcMessage> {
    let index = i32::try_from(ifindex)
        .map_err(|_| Error::InvalidArgument(format!("interface index {ifindex} out of range")))?;
    let mut m = TcMessage::with_index(index);
    m.header.handle = TcHandle::from(handle);
    m.header.parent = TcHandle::from(parent);
    m.header.info = info;
    Ok(m)
}

/// `tcm_info` of a filter: priority in the high half, protocol in network
/// order in the low half.
fn filter_info(priority: u16, protocol: u16) -> u32 {
    (u32::from(priority) << 16) | u32::from(protocol.to_be())
}

impl Netlink {
    /// Adds or replaces a qdisc on interface `ifindex`.
    pub fn add_qdisc(&mut self, ifindex: u32, spec: &QdiscSpec, mode: Mode) -> Result<()> {
        let mut m = tc_msg(ifindex, spec.handle, spec.parent, 0)?;
        let name = match &spec.kind {
            QdiscKind::Tbf(t) => {
                m.attributes.push(TcAttribute::Kind("tbf".into()));
                m.attributes.push(TcAttribute::Options(t.encode()));
                "tbf"
            }
            QdiscKind::Ingress => {
                m.attributes.push(TcAttribute::Kind("ingress".into()));
                "ingress"
            }
        };
        let verb = match mode {
            Mode::Create => "add",
            Mode::Replace => "replace",
        };
        self.ack(
            RouteNetlinkMessage::NewQueueDiscipline(m),
            mode.flags(),
            &format!(
                "{verb} qdisc {name} {} parent {} on link #{ifindex}",
                handle_string(spec.handle),
                handle_string(spec.parent)
            ),
        )
    }

    /// Deletes the qdisc attached at `parent` of interface `ifindex`
    /// (`ENOENT` when there is none; deleting the kernel's default root
    /// qdisc fails with `ENOENT` too, there is nothing to delete).
    pub fn delete_qdisc(&mut self, ifindex: u32, parent: u32, handle: u32) -> Result<()> {
        let m = tc_msg(ifindex, handle, parent, 0)?;
        self.ack(
            RouteNetlinkMessage::DelQueueDiscipline(m),
            0,
            &format!(
                "delete qdisc {} parent {} on link #{ifindex}",
                handle_string(handle),
                handle_string(parent)
            ),
        )
    }

    /// The qdiscs of interface `ifindex`, or of every interface for `None`.
    pub fn qdiscs(&mut self, ifindex: Option<u32>) -> Result<Vec<Qdisc>> {
        let m = tc_msg(ifindex.unwrap_or(0), 0, 0, 0)?;
        let replies = self.dump(RouteNetlinkMessage::GetQueueDiscipline(m), "list qdiscs")?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewQueueDiscipline(m) => Some(Qdisc::from_message(m)),
                _ => None,
            })
            .filter(|q| ifindex.is_none() || ifindex == Some(q.ifindex))
            .collect())
    }

    /// The root qdisc of interface `ifindex` (`None` when the device has none,
    /// as a device that is down may not).
    pub fn root_qdisc(&mut self, ifindex: u32) -> Result<Option<Qdisc>> {
        Ok(self.qdisc_at(ifindex, HANDLE_ROOT)?.filter(Qdisc::is_root))
    }

    /// The qdisc at the ingress attach point of `ifindex` (`ingress` or
    /// `clsact`), if any.
    pub fn ingress_qdisc(&mut self, ifindex: u32) -> Result<Option<Qdisc>> {
        Ok(self
            .qdisc_at(ifindex, HANDLE_INGRESS)?
            .filter(|q| q.parent == HANDLE_INGRESS))
    }

    /// The qdisc attached at `parent` (root or ingress) of one device, by a
    /// get: a dump walks every device of the namespace under RTNL, whatever
    /// `tcm_ifindex` says (seconds on a node with 16,000 veths). The
    /// kernel's built-in `noop` (what dumps leave out) counts as none.
    fn qdisc_at(&mut self, ifindex: u32, parent: u32) -> Result<Option<Qdisc>> {
        let m = tc_msg(ifindex, 0, parent, 0)?;
        let op = format!(
            "get qdisc parent {} on link #{ifindex}",
            handle_string(parent)
        );
        // The kernel answers a qdisc get as a notification: only with
        // NLM_F_ECHO does it reach the asker (and RTNLGRP_TC listeners see
        // it as an unchanged qdisc's NEWQDISC).
        let get = RouteNetlinkMessage::GetQueueDiscipline(m);
        let replies = match self.request(get, NLM_F_ECHO, &op) {
            Ok(r) => r,
            // No ingress queue, or nothing there.
            Err(e) if e.is_not_found() || e.errno() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(replies
            .into_iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewQueueDiscipline(m) => Some(Qdisc::from_message(m)),
                _ => None,
            })
            .filter(|q| q.kind != "noop"))
    }

    /// Adds a u32 filter that matches every packet (`match u32 0 0`) of
    /// protocol `all` at `priority` under `parent`, sets `classid` (`flowid`)
    /// and redirects the packet to the egress of `target` (`action mirred
    /// egress redirect dev TARGET`), as the reference bandwidth plugin does
    /// to send a veth's received traffic through an IFB.
    pub fn add_redirect_filter(
        &mut self,
        ifindex: u32,
        parent: u32,
        priority: u16,
        classid: u32,
        target: u32,
    ) -> Result<()> {
        let mut m = tc_msg(ifindex, 0, parent, filter_info(priority, ETH_P_ALL))?;
        let mut key = TcU32Key::default();
        key.mask = 0;
        key.val = 0;
        let mut sel = TcU32Selector::default();
        sel.flags = TcU32SelectorFlags::Terminal;
        sel.nkeys = 1;
        sel.keys = vec![key];
        let mut generic = TcActionGeneric::default();
        generic.action = TcActionType::Stolen;
        let mut mirror = TcMirror::default();
        mirror.generic = generic;
        mirror.eaction = TcMirrorActionType::EgressRedir;
        mirror.ifindex = target;
        let mut action = TcAction::default();
        action.tab = 1;
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirror,
            ))]),
        ];
        m.attributes.push(TcAttribute::Kind("u32".into()));
        m.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Selector(sel)),
            TcOption::U32(TcFilterU32Option::ClassId(TcHandle::from(classid))),
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
        ]));
        self.ack(
            RouteNetlinkMessage::NewTrafficFilter(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!(
                "add u32 filter pref {priority} parent {} on link #{ifindex} redirecting to link #{target}",
                handle_string(parent)
            ),
        )
    }

    /// The filters attached to `parent` of interface `ifindex`.
    pub fn filters(&mut self, ifindex: u32, parent: u32) -> Result<Vec<Filter>> {
        let m = tc_msg(ifindex, 0, parent, 0)?;
        let replies = self.dump(
            RouteNetlinkMessage::GetTrafficFilter(m),
            &format!(
                "list filters parent {} on link #{ifindex}",
                handle_string(parent)
            ),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewTrafficFilter(m) => Some(Filter::from_message(m)),
                _ => None,
            })
            .collect())
    }

    /// Deletes every filter of `priority` (all protocols, all handles) under
    /// `parent` of interface `ifindex`.
    pub fn delete_filters(&mut self, ifindex: u32, parent: u32, priority: u16) -> Result<()> {
        let m = tc_msg(ifindex, 0, parent, u32::from(priority) << 16)?;
        self.ack(
            RouteNetlinkMessage::DelTrafficFilter(m),
            0,
            &format!(
                "delete filters pref {priority} parent {} on link #{ifindex}",
                handle_string(parent)
            ),
        )
    }

    /// Creates an IFB device (`ip link add NAME mtu MTU txqlen Q up type
    /// ifb`); `EEXIST` when the name is taken. Returns its index.
    pub fn create_ifb(&mut self, name: &str, mtu: Option<u32>, txqlen: Option<u32>) -> Result<u32> {
        Ok(self.create_ifb_link(name, mtu, txqlen)?.index)
    }

    /// [`Netlink::create_ifb`], returning the new link as the kernel lists it.
    pub fn create_ifb_link(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        txqlen: Option<u32>,
    ) -> Result<crate::Link> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(q) = txqlen {
            m.attributes.push(LinkAttribute::TxQueueLen(q));
        }
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Ifb)]));
        self.ack(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("create ifb {name}"),
        )?;
        self.link_by_name(name)
    }

    /// The transmit queue length of a link (`IFLA_TXQLEN`).
    pub fn txqlen(&mut self, ifindex: u32) -> Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.header.index = ifindex;
        let op = format!("get txqlen of link #{ifindex}");
        for r in self.request(RouteNetlinkMessage::GetLink(m), 0, &op)? {
            if let RouteNetlinkMessage::NewLink(l) = r {
                return Ok(l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::TxQueueLen(q) => Some(q),
                    _ => None,
                }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psched_of_modern_kernels_is_15_625_ticks_per_usec() {
        assert_eq!(
            parse_psched("000003e8 00000040 000f4240 3b9aca00\n"),
            Some(15.625)
        );
        assert_eq!(parse_psched("garbage"), None);
    }

    #[test]
    fn tbf_parameters_match_the_reference_arithmetic() {
        // 8 Mbit/s, burst 1 Mbit, 25 ms: 125000 B take 125000 µs.
        let t = Tbf::from_rate_burst(1_000_000, 125_000, 25_000).unwrap();
        let tpu = ticks_per_usec();
        assert_eq!(t.buffer, (125_000.0 * tpu) as u32);
        assert_eq!(t.limit, 25_000 + 125_000);
        assert_eq!(t.burst(), 125_000);
        // Microseconds are truncated before becoming ticks.
        let t = Tbf::from_rate_burst(3, 1, 0).unwrap();
        assert_eq!(t.buffer, (333_333.0 * tpu) as u32);
        assert_eq!(t.limit, 1);
    }

    #[test]
    fn tbf_refuses_what_the_kernel_cannot_hold() {
        assert!(Tbf::from_rate_burst(0, 1, 25_000).is_err());
        assert!(Tbf::from_rate_burst(1, 0, 25_000).is_err());
        // 1000 s of burst does not fit 32-bit ticks.
        assert!(Tbf::from_rate_burst(125, 125_000, 25_000).is_err());
        assert!(Tbf::from_rate_burst(1, 1 << 33, 25_000).is_err());
        assert!(Tbf::from_rate_burst(u64::MAX / 2, 1 << 31, 25_000_000).is_err());
        // 100 bytes at 1 GB/s: under a microsecond.
        assert!(Tbf::from_rate_burst(1_000_000_000, 100, 25_000).is_err());
    }

    #[test]
    fn tbf_options_round_trip() {
        for rate in [1_000_000u64, 10_000_000_000] {
            let t = Tbf::from_rate_burst(rate, 1_000_000, 25_000).unwrap();
            let opts = t.encode();
            let mut buf = Vec::new();
            for o in &opts {
                let mut b = vec![0u8; netlink_packet_core::Emitable::buffer_len(o)];
                netlink_packet_core::Emitable::emit(o, &mut b);
                buf.extend(b);
            }
            assert_eq!(Tbf::decode(&buf), Some(t));
        }
    }

    #[test]
    fn handles_format_like_tc() {
        assert_eq!(handle_string(handle(1, 0)), "1:");
        assert_eq!(handle_string(HANDLE_INGRESS), "ffff:fff1");
        assert_eq!(handle_string(handle(0x800, 0x800)), "800:800");
        assert_eq!(handle_string(HANDLE_ROOT), "root");
        assert_eq!(filter_info(1, ETH_P_ALL) >> 16, 1);
    }
}
