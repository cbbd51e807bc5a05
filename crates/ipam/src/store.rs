//! The storage contract behind the allocator.
//!
//! A [`Store`] hands out a [`StoreTxn`]: exclusive access to one network's
//! reservations for as long as the transaction lives. Every operation of the
//! allocator happens inside one transaction, so concurrent plugins (Ferry's or
//! the reference `host-local`, which takes the same lock) never interleave.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use crate::error::{IpamError, Result};

/// One attachment: a container's interface. Reservations are keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    /// The container ID (`CNI_CONTAINERID`).
    pub container_id: String,
    /// The interface name inside the container (`CNI_IFNAME`).
    pub ifname: String,
}

impl Attachment {
    /// An attachment key. The container ID is trimmed of surrounding
    /// whitespace, as the reference does before writing it.
    pub fn new(container_id: impl AsRef<str>, ifname: impl Into<String>) -> Self {
        Attachment {
            container_id: container_id.as_ref().trim().to_string(),
            ifname: ifname.into(),
        }
    }

    /// The same key with the container ID trimmed, which is how it is
    /// stored and compared (the fields are public, so a key built by hand
    /// may carry whitespace).
    pub fn normalized(&self) -> Attachment {
        Attachment::new(&self.container_id, self.ifname.clone())
    }

    /// Check that the key can be written into a host-local reservation file
    /// (`containerID\r\nifname`) and read back unambiguously.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason| {
            Err(IpamError::InvalidAttachment {
                container_id: self.container_id.clone(),
                ifname: self.ifname.clone(),
                reason,
            })
        };
        if self.container_id.trim().is_empty() {
            return bad("the container ID is empty");
        }
        if self.ifname.is_empty() {
            return bad("the interface name is empty");
        }
        if self
            .container_id
            .chars()
            .chain(self.ifname.chars())
            .any(char::is_control)
        {
            return bad("control characters are not allowed in the container ID or interface name");
        }
        if self.ifname.trim() != self.ifname {
            return bad("the interface name has surrounding whitespace");
        }
        Ok(())
    }
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// Who holds a reservation, as read back from the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A current-format reservation: container ID and interface name.
    Attachment(Attachment),
    /// An old-format reservation holding only a container ID; it matches
    /// that container with any interface name.
    ContainerOnly(String),
}

impl Holder {
    /// Whether this reservation belongs to `key` (old-format reservations
    /// match on the container ID alone, as in the reference).
    pub fn matches(&self, key: &Attachment) -> bool {
        match self {
            Holder::Attachment(a) => a == key,
            Holder::ContainerOnly(id) => *id == key.container_id,
        }
    }

    /// Whether some attachment of `valid` owns this reservation.
    pub fn is_live(&self, valid: &HashSet<Attachment>) -> bool {
        match self {
            Holder::Attachment(a) => valid.contains(a),
            Holder::ContainerOnly(id) => valid.iter().any(|a| a.container_id == *id),
        }
    }
}

/// A store of reservations for one network.
pub trait Store {
    /// Take the store's exclusive lock; it is released when the transaction
    /// is dropped.
    fn lock(&self) -> Result<Box<dyn StoreTxn + '_>>;
}

impl<S: Store + ?Sized> Store for &S {
    fn lock(&self) -> Result<Box<dyn StoreTxn + '_>> {
        (**self).lock()
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn lock(&self) -> Result<Box<dyn StoreTxn + '_>> {
        (**self).lock()
    }
}

/// Exclusive access to one network's reservations.
pub trait StoreTxn {
    /// Whether `ip` is reserved by anyone.
    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool>;

    /// Reserve `ip` for `key`, remembering it as the last address reserved
    /// in range set `range_set`. `Ok(false)` when it is already reserved.
    fn reserve(&mut self, key: &Attachment, ip: IpAddr, range_set: usize) -> Result<bool>;

    /// Reserve several addresses for `key` in one go, each `(ip, range_set)`
    /// as in [`StoreTxn::reserve`]; returns, in order, whether each was
    /// reserved (`false`: already reserved). The addresses are meant to have
    /// been checked free with [`StoreTxn::is_reserved`] in this transaction:
    /// a store may skip that check and only find a taken one when creating
    /// it. A store with per-attachment bookkeeping (the disk store's index)
    /// updates it once for the whole batch. On error, nothing of the batch
    /// stays reserved.
    fn reserve_all(&mut self, key: &Attachment, picks: &[(IpAddr, usize)]) -> Result<Vec<bool>> {
        let mut made = Vec::with_capacity(picks.len());
        for &(ip, range_set) in picks {
            match self.reserve(key, ip, range_set) {
                Ok(m) => made.push(m),
                Err(e) => {
                    for (&(ip, _), m) in picks.iter().zip(&made) {
                        if *m {
                            // Best effort: the original error is the one to report.
                            let _ = self.release_ip(key, ip);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    /// The address last reserved in range set `range_set`, if known.
    fn last_reserved_ip(&mut self, range_set: usize) -> Result<Option<IpAddr>>;

    /// The addresses reserved for `key` (old-format reservations of its
    /// container included).
    fn get_by_id(&mut self, key: &Attachment) -> Result<Vec<IpAddr>>;

    /// Release one address if, and only if, it is reserved for `key`.
    fn release_ip(&mut self, key: &Attachment, ip: IpAddr) -> Result<bool>;

    /// Release every address reserved for `key`; returns them. Releasing an
    /// attachment that holds nothing is not an error.
    fn release(&mut self, key: &Attachment) -> Result<Vec<IpAddr>>;

    /// Every reservation with its holder.
    fn reservations(&mut self) -> Result<Vec<(IpAddr, Holder)>>;

    /// Release every reservation whose holder is not in `valid`; returns
    /// what was released. Nothing but reservations is removed.
    fn gc(&mut self, valid: &HashSet<Attachment>) -> Result<Vec<(IpAddr, Holder)>>;
}
