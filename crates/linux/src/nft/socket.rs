//! A synchronous `NETLINK_NETFILTER` socket speaking nf_tables: atomic
//! batches and dumps.

use netlink_packet_core::{
    NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use super::batch::{
    describe_offset, Batch, NFTA_RULE_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_TABLE,
    NFTA_SET_TABLE, NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET, NFT_MSG_GETSETELEM,
    NFT_MSG_GETTABLE,
};
use super::list::{self, ChainInfo, ElementInfo, RuleInfo, SetInfo, TableInfo};
use super::nla::{align4, parse, Attrs};
use super::Table;
use crate::error::{Error, Result};
use crate::Netns;

/// `NFNL_SUBSYS_NFTABLES`.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` / `NFNL_MSG_BATCH_END`.
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// Size of `struct nlmsghdr` and `struct nfgenmsg`.
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// `NLMSGERR_ATTR_MSG`: the extended ack's text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLMSGERR_ATTR_OFFS`: offset of the offending attribute in the request.
const NLMSGERR_ATTR_OFFS: u16 = 2;
/// Receive buffer per read; nfnetlink dump datagrams stay well below.
const RECV_BUF: usize = 64 * 1024;
/// How often a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 5;
/// Socket buffer room reserved per acknowledged message (an ack's skb).
const ACK_ROOM: usize = 1024;

/// A synchronous nf_tables netlink socket bound to the network namespace
/// it was opened in. Open one per namespace ([`Socket::in_netns`]) and use
/// it from any thread.
pub struct Socket {
    sock: netlink_sys::Socket,
    seq: u32,
    buf: Vec<u8>,
    sndbuf: usize,
    rcvbuf: usize,
    /// Whether a committed batch deleted something (see [`Socket::deleted`]).
    deleted: bool,
}

impl std::os::fd::AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("nft::Socket")
            .field("seq", &self.seq)
            .finish()
    }
}

/// One netlink message of a reply.
pub(super) struct Reply {
    pub(super) kind: u16,
    pub(super) flags: u16,
    pub(super) seq: u32,
    pub(super) payload: Vec<u8>,
}

impl Socket {
    /// Opens an nf_tables socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let mut sock = netlink_sys::Socket::new(NETLINK_NETFILTER)
            .map_err(|e| Error::io("open netlink netfilter socket", e))?;
        sock.bind_auto()
            .map_err(|e| Error::io("bind netlink netfilter socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io("connect netlink netfilter socket", e))?;
        // Best effort: the kernel's reason in words, and short error replies.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        // Seed sequence numbers from the clock like libmnl users do, so
        // replies can never be mistaken for those of another socket's.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(Socket {
            sock,
            seq: seed,
            buf: Vec::with_capacity(RECV_BUF),
            sndbuf: 0,
            rcvbuf: 0,
            deleted: false,
        })
    }

    /// Whether a batch committed on this socket deleted a table, chain, rule,
    /// set or element. The kernel frees deleted objects after an RCU grace
    /// period, from a work item; closing any nf_tables socket while that work
    /// is pending waits for it (`nft_rcv_nl_event` flushes it), 4-26 ms here.
    pub fn deleted(&self) -> bool {
        self.deleted
    }

    /// Opens an nf_tables socket inside `ns` without changing the caller's
    /// namespace.
    pub fn in_netns(ns: &Netns) -> Result<Self> {
        ns.run(Socket::new)?
    }

    /// Grows a socket buffer with `SO_*BUFFORCE` (root), falling back to the
    /// capped `SO_*BUF`.
    fn grow_buffer(&mut self, send: bool, size: usize) -> Result<()> {
        let have = if send { self.sndbuf } else { self.rcvbuf };
        if size <= have.max(128 * 1024) {
            return Ok(());
        }
        // The kernel takes a c_int (nix casts): clamp rather than wrap.
        let value = size.min(libc::c_int::MAX as usize);
        let fd = &self.sock;
        let set = if send {
            setsockopt(fd, sockopt::SndBufForce, &value)
                .or_else(|_| setsockopt(fd, sockopt::SndBuf, &value))
        } else {
            setsockopt(fd, sockopt::RcvBufForce, &value)
                .or_else(|_| setsockopt(fd, sockopt::RcvBuf, &value))
        };
        if let Err(errno) = set {
            return Err(Error::io(
                format!("grow netlink socket buffer to {size} bytes"),
                errno.into(),
            ));
        }
        if send {
            self.sndbuf = size;
        } else {
            self.rcvbuf = size;
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, out: &[u8], op: &str) -> Result<()> {
        let sent = self
            .sock
            .send(out, 0)
            .map_err(|e| Error::io(format!("{op}: send netlink request"), e))?;
        if sent != out.len() {
            return Err(Error::Protocol {
                op: op.to_string(),
                message: format!("short send: {sent} of {} bytes", out.len()),
            });
        }
        Ok(())
    }

    /// Reads one datagram and splits it into messages. `Ok(None)` when
    /// nothing is queued and `nonblocking` is set.
    fn recv(&mut self, nonblocking: bool, op: &str) -> Result<Option<Vec<Reply>>> {
        self.buf.clear();
        self.buf.reserve(RECV_BUF);
        let flags = libc::MSG_TRUNC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        let n = loop {
            match self.sock.recv(&mut self.buf, flags) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if nonblocking && e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(None)
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(Error::io(
                        format!(
                            "{op}: replies overflowed the socket's receive buffer; \
                             split the batch into smaller ones"
                        ),
                        e,
                    ))
                }
                Err(e) => return Err(Error::io(format!("{op}: receive netlink reply"), e)),
            }
        };
        if n > self.buf.len() {
            return Err(Error::Protocol {
                op: op.to_string(),
                message: format!("reply of {n} bytes truncated to {}", self.buf.len()),
            });
        }
        split(&self.buf[..n], op).map(Some)
    }

    /// Sends `batch` as one `BATCH_BEGIN … BATCH_END` transaction and
    /// collects the kernel's answer to every message. On failure nothing
    /// of the batch is applied and the error names the first refused
    /// message (its position, what it did) with the kernel's errno and
    /// extended-ack text. An empty batch does nothing.
    pub fn commit(&mut self, batch: &Batch) -> Result<()> {
        if let Some(e) = &batch.error {
            return Err(Error::InvalidArgument(format!(
                "nftables batch not sent: {e}"
            )));
        }
        let mut refused = None;
        self.commit_once(batch, &mut refused)
            .inspect_err(|e| crate::stats::nftables_error(refused, e))
    }

    /// [`Socket::commit`]; `refused` is set to the kind of the first
    /// message the kernel refused.
    fn commit_once(&mut self, batch: &Batch, refused: &mut Option<u8>) -> Result<()> {
        let n = batch.msgs.len();
        if n == 0 {
            return Ok(());
        }
        let begin = self.next_seq();
        let mut out = Vec::new();
        put_msg(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        for m in &batch.msgs {
            let seq = self.next_seq();
            put_msg(
                &mut out,
                (NFNL_SUBSYS_NFTABLES << 8) | m.kind as u16,
                NLM_F_REQUEST | NLM_F_ACK | m.flags,
                seq,
                m.family,
                0,
                m.attrs.bytes(),
            );
        }
        let end = self.next_seq();
        put_msg(
            &mut out,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        let op = format!("nftables batch of {n} message(s)");
        self.grow_buffer(true, out.len() + 64 * 1024)?;
        self.grow_buffer(false, (n + 16) * ACK_ROOM)?;
        self.send(&out, &op)?;

        // The kernel runs the whole batch inside the send call, so every
        // answer is queued by now: read until the queue is empty.
        let mut acked = 0usize;
        let mut errors: Vec<(usize, i32, String)> = Vec::new();
        while let Some(replies) = self.recv(true, &op)? {
            for r in replies {
                let idx = r.seq.wrapping_sub(begin) as usize;
                if idx > n + 1 || r.kind != NLMSG_ERROR {
                    continue; // a stale reply to an earlier request
                }
                let (code, mut detail, offset) =
                    parse_error(&r).map_err(|message| Error::Decode {
                        op: op.clone(),
                        message,
                    })?;
                if code == 0 {
                    acked += 1;
                    continue;
                }
                // Name the attribute the kernel points at, if it did.
                let place = match (idx.checked_sub(1).and_then(|i| batch.msgs.get(i)), offset) {
                    (Some(m), Some(off)) => off
                        .checked_sub(NLMSG_HDRLEN + NFGENMSG_LEN)
                        .and_then(|o| describe_offset(m.kind, m.attrs.bytes(), o)),
                    _ => None,
                };
                if let Some(place) = place {
                    if !detail.is_empty() {
                        detail.push_str("; ");
                    }
                    detail.push_str(&format!("the kernel points at {place}"));
                }
                errors.push((idx, code.saturating_abs(), detail));
            }
        }
        if let Some((idx, errno, detail)) = errors.iter().min_by_key(|e| e.0).cloned() {
            *refused = idx
                .checked_sub(1)
                .and_then(|i| batch.msgs.get(i))
                .map(|m| m.kind);
            let what = match idx {
                0 => "the batch as a whole (begin/commit)".to_string(),
                i if i == n + 1 => "the end of the batch".to_string(),
                i => format!("message {i} of {n}: {}", batch.msgs[i - 1].what),
            };
            let mut detail = detail;
            if errors.len() > 1 {
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                detail.push_str(&format!("{} more message(s) refused", errors.len() - 1));
            }
            return Err(Error::Kernel {
                op: format!("nftables batch refused at {what}; nothing was applied"),
                errno,
                detail,
            });
        }
        self.deleted |= batch.deletes();
        if acked < n {
            return Err(Error::Protocol {
                op,
                message: format!(
                    "the kernel acknowledged {acked} of {n} messages without an error; \
                     the batch state is unknown, list the ruleset to check"
                ),
            });
        }
        Ok(())
    }

    /// Runs a dump of `kind` and returns `(family, attributes)` of every
    /// object. A dump interrupted by a concurrent change is restarted.
    fn dump(
        &mut self,
        kind: u8,
        family: u8,
        attrs: &Attrs,
        op: &str,
    ) -> Result<Vec<(u8, Vec<u8>)>> {
        'retry: for _ in 0..DUMP_RETRIES {
            let seq = self.next_seq();
            let mut out = Vec::new();
            put_msg(
                &mut out,
                (NFNL_SUBSYS_NFTABLES << 8) | kind as u16,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                family,
                0,
                attrs.bytes(),
            );
            self.send(&out, op)?;
            let mut items = Vec::new();
            let mut interrupted = false;
            loop {
                let Some(replies) = self.recv(false, op)? else {
                    continue;
                };
                for r in replies {
                    if r.seq != seq {
                        continue;
                    }
                    if r.flags & NLM_F_DUMP_INTR != 0 {
                        interrupted = true;
                    }
                    match r.kind {
                        NLMSG_DONE => {
                            if interrupted {
                                continue 'retry;
                            }
                            return Ok(items);
                        }
                        NLMSG_ERROR => {
                            let (code, detail, _) =
                                parse_error(&r).map_err(|message| Error::Decode {
                                    op: op.to_string(),
                                    message,
                                })?;
                            if code == 0 {
                                return Ok(items);
                            }
                            return Err(Error::Kernel {
                                op: op.to_string(),
                                errno: code.saturating_abs(),
                                detail,
                            });
                        }
                        _ if r.payload.len() >= NFGENMSG_LEN => {
                            items.push((r.payload[0], r.payload[NFGENMSG_LEN..].to_vec()));
                        }
                        _ => {}
                    }
                }
            }
        }
        Err(Error::Protocol {
            op: op.to_string(),
            message: format!(
                "dump interrupted by concurrent changes {DUMP_RETRIES} times in a row; retry later"
            ),
        })
    }

    fn decode<T>(
        op: &str,
        items: Vec<(u8, Vec<u8>)>,
        f: impl Fn(u8, &[u8]) -> Result<T, String>,
    ) -> Result<Vec<T>> {
        items
            .iter()
            .map(|(fam, a)| {
                f(*fam, a).map_err(|message| Error::Decode {
                    op: op.to_string(),
                    message,
                })
            })
            .collect()
    }

    /// Lists every table of every family.
    pub fn tables(&mut self) -> Result<Vec<TableInfo>> {
        let op = "list nftables tables";
        let items = self.dump(NFT_MSG_GETTABLE, 0, &Attrs::new(), op)?;
        // Families this crate does not name are skipped, not errors.
        let items = items
            .into_iter()
            .filter(|(f, _)| super::Family::from_raw(*f).is_some())
            .collect();
        Self::decode(op, items, list::table)
    }

    /// True when the table exists.
    pub fn table_exists(&mut self, table: &Table) -> Result<bool> {
        Ok(self
            .tables()?
            .iter()
            .any(|t| t.family == table.family && t.name == table.name))
    }

    /// Lists the chains of a table.
    pub fn chains(&mut self, table: &Table) -> Result<Vec<ChainInfo>> {
        let op = format!("list chains of table {table}");
        let items = self.dump(NFT_MSG_GETCHAIN, table.family.raw(), &Attrs::new(), &op)?;
        let all = Self::decode(&op, items, list::chain)?;
        Ok(all.into_iter().filter(|c| c.table == table.name).collect())
    }

    /// Lists the rules of a table, chain by chain in order.
    pub fn rules(&mut self, table: &Table) -> Result<Vec<RuleInfo>> {
        let op = format!("list rules of table {table}");
        let mut a = Attrs::new();
        a.put_str(NFTA_RULE_TABLE, &table.name);
        let items = self.dump(NFT_MSG_GETRULE, table.family.raw(), &a, &op)?;
        let all = Self::decode(&op, items, list::rule)?;
        Ok(all.into_iter().filter(|r| r.table == table.name).collect())
    }

    /// Lists the sets and maps of a table.
    pub fn sets(&mut self, table: &Table) -> Result<Vec<SetInfo>> {
        let op = format!("list sets of table {table}");
        let mut a = Attrs::new();
        a.put_str(NFTA_SET_TABLE, &table.name);
        let items = self.dump(NFT_MSG_GETSET, table.family.raw(), &a, &op)?;
        let all = Self::decode(&op, items, list::set)?;
        Ok(all.into_iter().filter(|s| s.table == table.name).collect())
    }

    /// Lists the elements of a set or map.
    pub fn elements(&mut self, table: &Table, set: &str) -> Result<Vec<ElementInfo>> {
        let op = format!("list elements of set {table} {set}");
        let mut a = Attrs::new();
        a.put_str(NFTA_SET_ELEM_LIST_TABLE, &table.name)
            .put_str(NFTA_SET_ELEM_LIST_SET, set);
        let items = self.dump(NFT_MSG_GETSETELEM, table.family.raw(), &a, &op)?;
        let per_msg = Self::decode(&op, items, |_, a| list::elements(a))?;
        Ok(per_msg.into_iter().flatten().collect())
    }

    /// True when the kernel already holds what `batch` would build: its
    /// tables, sets (name and key) and chains (hook, priority, type and
    /// policy of base chains), and in every chain it flushes exactly the
    /// rules it would add, in order (matched by the fingerprint each rule
    /// carries in its user data, so a changed, missing or extra rule, or
    /// another version's rule, means no). Lets a caller leave out an
    /// unchanged structure: replacing rules costs the kernel an RCU grace
    /// period at the next close of any nf_tables socket. False for batches
    /// that delete anything.
    pub fn holds(&mut self, batch: &Batch) -> Result<bool> {
        let shape = &batch.shape;
        if shape.opaque || batch.error.is_some() {
            return Ok(false);
        }
        let present = self.tables()?;
        for t in &shape.tables {
            // Listing a missing table's sets is ENOENT: look first.
            if !present
                .iter()
                .any(|p| p.family == t.family && p.name == t.name)
            {
                return Ok(false);
            }
            let chains = self.chains(t)?;
            let sets = self.sets(t)?;
            for (st, name, key_type, key_len) in &shape.sets {
                if st == t
                    && !sets.iter().any(|s| {
                        s.name == *name && s.key_type == *key_type && s.key_len == *key_len
                    })
                {
                    return Ok(false);
                }
            }
            for c in shape.chains.iter().filter(|c| c.table() == t) {
                let Some(k) = chains.iter().find(|k| k.name == c.name()) else {
                    return Ok(false);
                };
                if !c.matches(k) {
                    return Ok(false);
                }
            }
            if shape.owned.iter().any(|(ot, _, _)| ot == t) {
                let rules = self.rules(t)?;
                for (_, chain, fps) in shape.owned.iter().filter(|(ot, _, _)| ot == t) {
                    let got: Vec<Option<u64>> = rules
                        .iter()
                        .filter(|r| r.chain == *chain)
                        .map(|r| r.fingerprint)
                        .collect();
                    let want: Vec<Option<u64>> = fps.iter().copied().map(Some).collect();
                    if got != want {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Deletes the table if it exists (one atomic batch); a missing table
    /// is not an error.
    pub fn delete_table_if_exists(&mut self, table: &Table) -> Result<()> {
        self.commit(Batch::new().delete_table_if_exists(table))
    }
}

/// Appends one netlink message with an `nfgenmsg` header.
fn put_msg(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
    out.resize(align4(out.len()), 0);
}

/// Splits one datagram into its netlink messages.
pub(super) fn split(buf: &[u8], op: &str) -> Result<Vec<Reply>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + NLMSG_HDRLEN <= buf.len() {
        let d = &buf[off..];
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if len < NLMSG_HDRLEN || len > d.len() {
            return Err(Error::Decode {
                op: op.to_string(),
                message: format!("bad netlink message length {len}"),
            });
        }
        out.push(Reply {
            kind: u16::from_ne_bytes([d[4], d[5]]),
            flags: u16::from_ne_bytes([d[6], d[7]]),
            seq: u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
            payload: d[NLMSG_HDRLEN..len].to_vec(),
        });
        off += align4(len);
    }
    Ok(out)
}

/// Decodes an `NLMSG_ERROR` reply: the (negative) code, 0 for an ack, and
/// the extended-ack text if any.
pub(super) fn parse_error(r: &Reply) -> Result<(i32, String, Option<usize>), String> {
    let p = &r.payload;
    if p.len() < 4 {
        return Err(format!("error message of {} bytes", p.len()));
    }
    let code = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
    let mut detail = String::new();
    let mut offset = None;
    let orig = &p[4..];
    if r.flags & NLM_F_ACK_TLVS != 0 && orig.len() >= NLMSG_HDRLEN {
        // Capped: the original header only; otherwise the whole request.
        let skip = if r.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align4(u32::from_ne_bytes([orig[0], orig[1], orig[2], orig[3]]) as usize)
        };
        if let Some(tlvs) = orig.get(skip..) {
            for a in parse(tlvs).unwrap_or_default() {
                if a.kind == NLMSGERR_ATTR_MSG {
                    detail = a.str();
                } else if a.kind == NLMSGERR_ATTR_OFFS {
                    offset = a
                        .value
                        .try_into()
                        .ok()
                        .map(|b| u32::from_ne_bytes(b) as usize);
                }
            }
        }
    }
    Ok((code, detail, offset))
}
