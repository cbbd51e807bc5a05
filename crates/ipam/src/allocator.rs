//! The allocator: the reference `host-local` strategy over any [`Store`].
//!
//! Within a range set, candidates are tried round-robin: starting right after
//! the address last reserved in that set (or at the first range's start when
//! there is none, or it is no longer in the set), walking each range from
//! `rangeStart` to `rangeEnd`, moving to the next range, wrapping from the
//! last range to the first, and giving up when back at the starting point.
//! The gateway, the network address and (IPv4) the broadcast address are
//! never handed out.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{canonical_ip, ip_from_u128, ip_to_u128, Range, RangeSet};
use crate::error::{IpamError, Result};
use crate::store::{Attachment, Holder, Store, StoreTxn};

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Index of the range set it came from.
    pub range_set: usize,
    /// The address with its subnet's prefix length.
    pub address: IpNet,
    /// The gateway of its range.
    pub gateway: IpAddr,
}

/// Allocates from a network's range sets into a store.
#[derive(Debug)]
pub struct Allocator<S> {
    ranges: Vec<RangeSet>,
    store: S,
}

impl<S: Store> Allocator<S> {
    /// An allocator over validated range sets (see
    /// [`crate::IpamConfig::canonicalize`]). The index of each range set
    /// names its `last_reserved_ip.<index>` file, as in the reference.
    pub fn new(ranges: Vec<RangeSet>, store: S) -> Self {
        Allocator { ranges, store }
    }

    /// The range sets.
    pub fn ranges(&self) -> &[RangeSet] {
        &self.ranges
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Allocate one address per range set for `key`, under one lock.
    ///
    /// Each requested address is honoured in the range set containing it
    /// (error if it lies in none, is the gateway or is already reserved; at
    /// most one per range set). Fails if `key` already holds an address in
    /// a range set. On any error, the addresses reserved by this call are
    /// released again and nothing else is touched.
    pub fn allocate(&self, key: &Attachment, requested: &[IpAddr]) -> Result<Vec<Allocation>> {
        key.validate()?;
        let mut wanted: Vec<IpAddr> = Vec::new();
        for ip in requested.iter().copied().map(canonical_ip) {
            if !self.ranges.iter().any(|s| s.contains(ip)) {
                return Err(IpamError::RequestedNotInRange {
                    ip,
                    ranges: self.all_ranges_string(),
                });
            }
            if !wanted.contains(&ip) {
                wanted.push(ip);
            }
        }

        let mut txn = self.store.lock()?;
        let held = txn.get_by_id(key)?;
        // Every check and choice first, then one batch reservation: nothing
        // is written (and nothing has to be undone) when a check fails, and
        // the disk store updates its index once for all range sets.
        let mut picks = Vec::with_capacity(self.ranges.len());
        for (idx, set) in self.ranges.iter().enumerate() {
            if let Some(ip) = held.iter().find(|ip| set.contains(**ip)) {
                return Err(IpamError::DuplicateAllocation {
                    ip: *ip,
                    container_id: key.container_id.clone(),
                });
            }
            let req = wanted
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| wanted.remove(i));
            picks.push(pick_in_set(txn.as_mut(), idx, set, req)?);
        }
        if !wanted.is_empty() {
            let list: Vec<String> = wanted.iter().map(IpAddr::to_string).collect();
            return Err(IpamError::RequestedUnfulfilled(list.join(" ")));
        }
        reserve_picks(txn.as_mut(), key, &picks)
    }

    /// Release every address held by `key`; returns them. Succeeds (with an
    /// empty list) when there is nothing to release.
    pub fn release(&self, key: &Attachment) -> Result<Vec<IpAddr>> {
        self.store.lock()?.release(key)
    }

    /// The addresses held by `key`.
    pub fn get_by_id(&self, key: &Attachment) -> Result<Vec<IpAddr>> {
        self.store.lock()?.get_by_id(key)
    }

    /// Release every reservation not held by an attachment of `valid`
    /// (CNI GC with `cni.dev/valid-attachments`); returns what was released.
    pub fn gc(&self, valid: &HashSet<Attachment>) -> Result<Vec<(IpAddr, Holder)>> {
        self.store.lock()?.gc(valid)
    }

    fn all_ranges_string(&self) -> String {
        let sets: Vec<String> = self.ranges.iter().map(RangeSet::to_string).collect();
        sets.join(",")
    }
}

/// An address chosen in one range set by [`pick_in_set`], not reserved yet.
#[derive(Debug, Clone)]
pub struct Pick<'a> {
    range_set: usize,
    set: &'a RangeSet,
    range: &'a Range,
    ip: IpAddr,
    requested: bool,
}

impl Pick<'_> {
    fn allocation(&self, ip: IpAddr, range: &Range) -> Allocation {
        Allocation {
            range_set: self.range_set,
            address: range.with_prefix(ip),
            gateway: range.gateway,
        }
    }
}

/// Choose, without reserving it, the address to allocate in range set `set`
/// (index `idx`): `requested` if given (an error if it is not in the set, is
/// its gateway or is reserved), else the first free one in round-robin
/// order. Reserve the picks with [`reserve_picks`] in the same transaction.
pub fn pick_in_set<'a>(
    txn: &mut dyn StoreTxn,
    idx: usize,
    set: &'a RangeSet,
    requested: Option<IpAddr>,
) -> Result<Pick<'a>> {
    if let Some(ip) = requested {
        let ip = canonical_ip(ip);
        let Some(range) = set.range_for(ip) else {
            return Err(IpamError::RequestedNotInRange {
                ip,
                ranges: set.to_string(),
            });
        };
        if ip == range.gateway {
            return Err(IpamError::RequestedIsGateway { ip });
        }
        if txn.is_reserved(ip)? {
            return Err(IpamError::RequestedUnavailable {
                ip,
                ranges: set.to_string(),
            });
        }
        return Ok(Pick {
            range_set: idx,
            set,
            range,
            ip,
            requested: true,
        });
    }
    let last = txn.last_reserved_ip(idx)?;
    for (ip, range) in RangeIter::new(set, last) {
        if !txn.is_reserved(ip)? {
            return Ok(Pick {
                range_set: idx,
                set,
                range,
                ip,
                requested: false,
            });
        }
    }
    Err(IpamError::Exhausted {
        ranges: set.to_string(),
    })
}

/// Reserve `picks` for `key` with one [`StoreTxn::reserve_all`]. A pick
/// found taken after all (a writer that does not take the store's lock, or
/// two picks of one address) is replaced by the next free address of its
/// range set, in round-robin order; a requested one fails. On error,
/// nothing this call reserved stays reserved. The allocations are in the
/// order of `picks`.
pub fn reserve_picks(
    txn: &mut dyn StoreTxn,
    key: &Attachment,
    picks: &[Pick<'_>],
) -> Result<Vec<Allocation>> {
    let batch: Vec<(IpAddr, usize)> = picks.iter().map(|p| (p.ip, p.range_set)).collect();
    let made = txn.reserve_all(key, &batch)?;
    let mut done: Vec<Option<Allocation>> = picks
        .iter()
        .zip(made.iter().copied().chain(std::iter::repeat(false)))
        .map(|(p, m)| m.then(|| p.allocation(p.ip, p.range)))
        .collect();
    let mut failed = None;
    for (i, p) in picks.iter().enumerate() {
        if done[i].is_some() {
            continue;
        }
        match retry_pick(txn, key, p) {
            Ok(a) => done[i] = Some(a),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failed {
        for a in done.iter().flatten() {
            // Best effort: the original error is the one to report.
            let _ = txn.release_ip(key, a.address.addr());
        }
        return Err(e);
    }
    Ok(done.into_iter().flatten().collect())
}

/// The fallback of [`reserve_picks`] for a pick found taken: the next
/// address of its set that [`StoreTxn::reserve`] gets, round-robin from it.
fn retry_pick(txn: &mut dyn StoreTxn, key: &Attachment, p: &Pick<'_>) -> Result<Allocation> {
    if p.requested {
        return Err(IpamError::RequestedUnavailable {
            ip: p.ip,
            ranges: p.set.to_string(),
        });
    }
    for (ip, range) in RangeIter::new(p.set, Some(p.ip)) {
        if txn.reserve(key, ip, p.range_set)? {
            return Ok(p.allocation(ip, range));
        }
    }
    Err(IpamError::Exhausted {
        ranges: p.set.to_string(),
    })
}

/// The first address of `ranges` in round-robin order after `last` (see
/// [`RangeIter`]) that `taken` says is free: for callers that hold the
/// reservations themselves, in memory. With the cursor at the last address
/// handed out, the common case looks at one or two candidates however many
/// addresses are taken.
pub fn next_free(
    ranges: &[Range],
    last: Option<IpAddr>,
    mut taken: impl FnMut(IpAddr) -> bool,
) -> Option<(IpAddr, &Range)> {
    RangeIter::over(ranges, last).find(|(ip, _)| !taken(*ip))
}

/// Candidate addresses of a range set in the reference's order.
#[derive(Debug, Clone)]
pub struct RangeIter<'a> {
    ranges: &'a [Range],
    idx: usize,
    cur: Option<u128>,
    start: Option<u128>,
}

impl<'a> RangeIter<'a> {
    /// Start after `last_reserved` when the set contains it, else at the
    /// first range's start.
    pub fn new(set: &'a RangeSet, last_reserved: Option<IpAddr>) -> Self {
        RangeIter::over(set.ranges(), last_reserved)
    }

    /// [`RangeIter::new`] over bare ranges (one family, disjoint, each
    /// `range_start <= range_end`: what [`Range::canonicalize`] yields).
    /// Nothing is offered when `ranges` is empty.
    pub fn over(ranges: &'a [Range], last_reserved: Option<IpAddr>) -> Self {
        let pos = last_reserved.and_then(|ip| {
            let ip = canonical_ip(ip);
            ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|i| (i, ip_to_u128(ip)))
        });
        match pos {
            Some((idx, cur)) => RangeIter {
                ranges,
                idx,
                cur: Some(cur),
                start: None,
            },
            None => RangeIter {
                ranges,
                idx: 0,
                cur: None,
                start: None,
            },
        }
    }

    /// The next candidate and its range; `None` once every address has been
    /// offered.
    pub fn next_candidate(&mut self) -> Option<(IpAddr, &'a Range)> {
        if self.ranges.is_empty() {
            return None;
        }
        loop {
            let r = &self.ranges[self.idx];
            match self.cur {
                None => {
                    let s = ip_to_u128(r.range_start);
                    self.cur = Some(s);
                    self.start = Some(s);
                }
                Some(c) => {
                    let next = if c == ip_to_u128(r.range_end) {
                        self.idx = (self.idx + 1) % self.ranges.len();
                        ip_to_u128(self.ranges[self.idx].range_start)
                    } else {
                        c + 1
                    };
                    self.cur = Some(next);
                    match self.start {
                        None => self.start = Some(next),
                        Some(s) if s == next => return None,
                        Some(_) => {}
                    }
                }
            }
            let r = &self.ranges[self.idx];
            let ip = ip_from_u128(self.cur.unwrap_or_default(), r.is_ipv4());
            if ip == r.gateway || r.is_network_or_broadcast(ip) {
                continue;
            }
            return Some((ip, r));
        }
    }
}

impl<'a> Iterator for RangeIter<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_candidate()
    }
}
