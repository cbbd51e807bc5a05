//! A small synchronous rtnetlink socket: send one request, read its ACK or
//! error, or read a whole dump.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Size of the receive buffer; the kernel never puts more than this into one
/// datagram for rtnetlink dumps (it uses at most 32 KiB).
const RECV_BUF: usize = 64 * 1024;

/// How often a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 8;

/// `NLMSGERR_ATTR_MSG`: the extended ack's human readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// From linux/rtnetlink.h.
const RTNLGRP_LINK: u32 = 1;
const RTM_DELLINK: u16 = 17;

/// A synchronous `NETLINK_ROUTE` socket bound to the network namespace it was
/// created in (see [`crate::Netns::netlink`] to get one for another
/// namespace without changing the caller's).
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    skipped: usize,
}

/// One message of a reply.
pub(crate) enum Reply {
    Message(NetlinkMessage<RouteNetlinkMessage>),
    Undecodable { flags: u16, error: String },
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("seq", &self.seq).finish()
    }
}

impl Netlink {
    /// Opens a route netlink socket in the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        let mut sock =
            Socket::new(NETLINK_ROUTE).map_err(|e| Error::io("open netlink route socket", e))?;
        sock.bind_auto()
            .map_err(|e| Error::io("bind netlink socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::io("connect netlink socket", e))?;
        // Extended acks give the kernel's reason in words; capped acks keep
        // error replies small. Both are best-effort (old kernels lack them).
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        Ok(Netlink {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
            skipped: 0,
        })
    }

    /// Turns the kernel's strict checking of dump requests on or off
    /// (`NETLINK_GET_STRICT_CHK`), which also makes it honour their filters.
    /// Returns whether the kernel accepted the change.
    pub(crate) fn set_strict_dump(&mut self, on: bool) -> bool {
        self.sock.set_netlink_get_strict_chk(on).is_ok()
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.send_bytes(&out, op)?;
        Ok(self.seq)
    }

    fn send_bytes(&mut self, out: &[u8], op: &str) -> Result<()> {
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

    /// Reads one datagram and splits it into the messages carrying `seq`
    /// (stale replies to earlier requests are dropped).
    fn recv(&mut self, seq: u32, op: &str) -> Result<Vec<Reply>> {
        let n = self.fill(op)?;
        split(&self.buf[..n], seq, op)
    }

    /// Reads one datagram into the buffer; returns its length.
    fn fill(&mut self, op: &str) -> Result<usize> {
        self.buf.clear();
        self.buf.reserve(RECV_BUF);
        let n = loop {
            match self.sock.recv(&mut self.buf, 0) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("{op}: receive netlink reply"), e)),
            }
        };
        if n > self.buf.len() {
            return Err(Error::Protocol {
                op: op.to_string(),
                message: format!("reply of {n} bytes truncated to {}", self.buf.len()),
            });
        }
        Ok(n)
    }

    /// Sends a request this library has no message type for (`kind` and
    /// its already serialized `body`), without asking for an ACK, and
    /// returns the body of the kernel's one answer of type `answer`; a
    /// netlink error becomes [`Error::Kernel`].
    pub(crate) fn raw_get(
        &mut self,
        kind: u16,
        body: &[u8],
        answer: u16,
        op: &str,
    ) -> Result<Vec<u8>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut out = request_header(NLMSG_HDRLEN + body.len(), kind, seq).to_vec();
        out.extend_from_slice(body);
        self.send_bytes(&out, op)?;
        loop {
            let n = self.fill(op)?;
            // Stale answers to earlier requests are skipped; the first
            // message for this request decides.
            if let Some((h, data)) = messages(&self.buf[..n], Some(seq), op)?.into_iter().next() {
                let payload = &data[NLMSG_HDRLEN..];
                if h.kind == answer {
                    return Ok(payload.to_vec());
                }
                if h.kind == NLMSG_ERROR && payload.len() >= 4 {
                    let code = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    if code < 0 {
                        return Err(kernel_error(op, code, h.flags, &payload[4..]));
                    }
                }
                return Err(Error::Protocol {
                    op: op.to_string(),
                    message: format!("unexpected netlink message type {}", h.kind),
                });
            }
        }
    }

    /// Subscribes this socket to the link notifications of its namespace
    /// (`RTNLGRP_LINK`), for [`Netlink::wait_link_deleted`]. Requests on
    /// the socket still work: their answers are told apart by sequence.
    pub fn watch_links(&mut self) -> Result<()> {
        self.sock
            .add_membership(RTNLGRP_LINK)
            .map_err(|e| Error::io("join the link notification group", e))
    }

    /// Waits at most `timeout` for the kernel's `RTM_DELLINK` of link
    /// `index`, on a socket that [`Netlink::watch_links`]; true when it
    /// came. The kernel sends it once the link has left the namespace. A
    /// lost notification (the socket's queue overran) or an error ends the
    /// wait with false: the caller then looks for itself.
    pub fn wait_link_deleted(&mut self, index: u32, timeout: Duration) -> bool {
        let op = "wait for a link's removal";
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // Rounded up: poll's timeout is a minimum.
            let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            match unsafe { libc::poll(&mut pfd, 1, ms) } {
                0 => continue,
                r if r < 0 => {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return false;
                }
                _ => {}
            }
            let Ok(n) = self.fill(op) else {
                return false;
            };
            let Ok(msgs) = messages(&self.buf[..n], None, op) else {
                return false;
            };
            // struct ifinfomsg: family, pad, type (u16), index (i32), ...
            let deleted = msgs.iter().any(|(h, data)| {
                h.kind == RTM_DELLINK
                    && data.len() >= NLMSG_HDRLEN + 8
                    && i32::from_ne_bytes([data[20], data[21], data[22], data[23]]) as u32 == index
            });
            if deleted {
                return true;
            }
        }
    }

    /// How many objects in dumps were skipped so far because they could
    /// not be decoded (exotic attributes this library does not know).
    pub fn skipped_objects(&self) -> usize {
        self.skipped
    }

    /// Sends `msg` with `NLM_F_REQUEST | NLM_F_ACK | flags` and waits for the
    /// kernel's acknowledgement. Replies sent before the ACK (for example with
    /// `NLM_F_ECHO`) are returned.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let kind = msg.message_type();
        self.request_once(msg, flags, op).inspect_err(|e| {
            // A lookup answering "no such object" is an answer, not a failure.
            if !crate::stats::is_rtm_get(kind) {
                crate::stats::netlink_error(kind, e)
            }
        })
    }

    fn request_once(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags, op)?;
        let mut replies = Vec::new();
        let mut undecodable = None;
        loop {
            for reply in self.recv(seq, op)? {
                let m = match reply {
                    Reply::Message(m) => m,
                    Reply::Undecodable { error, .. } => {
                        undecodable = Some(error);
                        continue;
                    }
                };
                let flags = m.header.flags;
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match (e.code, undecodable) {
                            (Some(code), _) => Err(kernel_error(op, code.get(), flags, &e.header)),
                            (None, Some(message)) => Err(Error::Decode {
                                op: op.to_string(),
                                message,
                            }),
                            (None, None) => Ok(replies),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// Sends `msg` and expects only an acknowledgement.
    pub fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16, op: &str) -> Result<()> {
        self.request(msg, flags, op).map(|_| ())
    }

    /// Sends `msg` as a dump request and returns every object of the dump.
    /// A dump interrupted by a concurrent change is restarted.
    pub fn dump(&mut self, msg: RouteNetlinkMessage, op: &str) -> Result<Vec<RouteNetlinkMessage>> {
        for attempt in 0..DUMP_RETRIES {
            let (items, interrupted) = self.dump_once(msg.clone(), op)?;
            if !interrupted {
                return Ok(items);
            }
            dump_backoff(attempt);
        }
        Err(dump_interrupted(op))
    }

    /// Dumps until `pick` accepts an object, and returns what it made of
    /// it. An object
    /// of an interrupted dump is still a consistent snapshot of itself, so
    /// a match ends the search at once; only "no match" needs a complete
    /// dump, which is restarted like [`Netlink::dump`]'s. On a busy node
    /// (links created and deleted all the time) a complete dump of
    /// thousands of links may never succeed, but a lookup still does.
    pub fn dump_find<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &str,
        mut pick: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Option<T>> {
        for attempt in 0..DUMP_RETRIES {
            let (items, interrupted) = self.dump_once(msg.clone(), op)?;
            if let Some(found) = items.into_iter().find_map(&mut pick) {
                return Ok(Some(found));
            }
            if !interrupted {
                return Ok(None);
            }
            dump_backoff(attempt);
        }
        Err(dump_interrupted(op))
    }

    fn dump_once(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &str,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        let kind = msg.message_type();
        self.dump_pass(msg, op)
            .inspect_err(|e| crate::stats::netlink_error(kind, e))
    }

    fn dump_pass(
        &mut self,
        msg: RouteNetlinkMessage,
        op: &str,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP, op)?;
        let mut items = Vec::new();
        let mut interrupted = false;
        loop {
            for reply in self.recv(seq, op)? {
                let m = match reply {
                    Reply::Message(m) => m,
                    Reply::Undecodable { flags, .. } => {
                        self.skipped += 1;
                        if flags & NLM_F_DUMP_INTR != 0 {
                            interrupted = true;
                        }
                        continue;
                    }
                };
                let flags = m.header.flags;
                if flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.payload {
                    NetlinkPayload::Done(d) => {
                        if d.code < 0 {
                            return Err(kernel_error(op, d.code, 0, &[]));
                        }
                        return Ok((items, interrupted));
                    }
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok((items, interrupted)),
                            Some(code) => Err(kernel_error(op, code.get(), flags, &e.header)),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        items.push(inner);
                        if flags & NLM_F_MULTIPART == 0 {
                            // A non-multipart answer is complete by itself.
                            return Ok((items, interrupted));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The `struct nlmsghdr` of a request (`NLM_F_REQUEST`, no ACK) of `len`
/// bytes in all.
fn request_header(len: usize, kind: u16, seq: u32) -> [u8; NLMSG_HDRLEN] {
    let mut h = [0u8; NLMSG_HDRLEN];
    h[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    h[4..6].copy_from_slice(&kind.to_ne_bytes());
    h[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    h[8..12].copy_from_slice(&seq.to_ne_bytes());
    h
}

/// An `RTM_DELLINK` request for link `index`, without ACK: for a process
/// that sends it with a raw system call and has nobody to report to
/// (`send` returns once the kernel is done).
pub fn dellink_request(index: u32) -> [u8; 32] {
    // nlmsghdr, then struct ifinfomsg: family, pad, type, index, flags, change.
    let mut msg = [0u8; 32];
    let header = request_header(msg.len(), RTM_DELLINK, 1);
    msg[..NLMSG_HDRLEN].copy_from_slice(&header);
    msg[16] = libc::AF_UNSPEC as u8;
    msg[20..24].copy_from_slice(&(index as i32).to_ne_bytes());
    msg
}

/// The fields of a `struct nlmsghdr` this socket looks at.
struct Header {
    len: usize,
    kind: u16,
    flags: u16,
    seq: u32,
}

impl Header {
    /// The header at the start of `data` (at least [`NLMSG_HDRLEN`] bytes),
    /// whose message must fit in `data`.
    fn read(data: &[u8], op: &str) -> Result<Header> {
        let word = |i: usize| [data[i], data[i + 1], data[i + 2], data[i + 3]];
        let len = u32::from_ne_bytes(word(0)) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(Error::Decode {
                op: op.to_string(),
                message: format!("bad netlink message length {len}"),
            });
        }
        Ok(Header {
            len,
            kind: u16::from_ne_bytes([data[4], data[5]]),
            flags: u16::from_ne_bytes([data[6], data[7]]),
            seq: u32::from_ne_bytes(word(8)),
        })
    }
}

/// The messages of one datagram that carry `seq` (all of them for `None`),
/// each with its header (the slice is the whole message, header included).
fn messages<'b>(buf: &'b [u8], seq: Option<u32>, op: &str) -> Result<Vec<(Header, &'b [u8])>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + NLMSG_HDRLEN <= buf.len() {
        let data = &buf[off..];
        let h = Header::read(data, op)?;
        off += (h.len + 3) & !3;
        if seq.is_none_or(|seq| h.seq == seq) {
            let len = h.len;
            out.push((h, &data[..len]));
        }
    }
    Ok(out)
}

/// Splits one datagram into the messages carrying `seq`.
pub(crate) fn split(buf: &[u8], seq: u32, op: &str) -> Result<Vec<Reply>> {
    let mut out = Vec::new();
    for (h, data) in messages(buf, Some(seq), op)? {
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(data) {
            Ok(msg) => out.push(Reply::Message(msg)),
            // Control messages must decode; an object this library
            // cannot parse is reported to the caller to decide.
            Err(e) if h.kind == NLMSG_ERROR || h.kind == NLMSG_DONE => {
                return Err(Error::Decode {
                    op: op.to_string(),
                    message: e.to_string(),
                })
            }
            Err(e) => out.push(Reply::Undecodable {
                flags: h.flags,
                error: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// Waits a little longer after each interrupted dump (1, 2, 4 ... 32 ms),
/// so a burst of changes can pass.
fn dump_backoff(attempt: usize) {
    std::thread::sleep(std::time::Duration::from_millis(1 << attempt.min(5)));
}

fn dump_interrupted(op: &str) -> Error {
    Error::Protocol {
        op: op.to_string(),
        message: format!(
            "dump interrupted by concurrent changes {DUMP_RETRIES} times in a row; retry later"
        ),
    }
}

/// Builds an [`Error::Kernel`] from a negative netlink error code, decoding
/// the extended ack message when present.
pub(crate) fn kernel_error(op: &str, code: i32, flags: u16, payload: &[u8]) -> Error {
    let mut detail = String::new();
    if flags & NLM_F_ACK_TLVS != 0 && payload.len() >= NLMSG_HDRLEN {
        // With capped acks the payload is the original header followed by
        // TLVs; without capping it also includes the original request body.
        let orig_len =
            u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        let skip = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            (orig_len + 3) & !3
        };
        if skip <= payload.len() {
            for nla in NlasIterator::new(&payload[skip..]).flatten() {
                if nla.kind() == NLMSGERR_ATTR_MSG {
                    let v = nla.value();
                    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
                    detail = String::from_utf8_lossy(&v[..end]).into_owned();
                }
            }
        }
    }
    Error::Kernel {
        op: op.to_string(),
        errno: code.saturating_abs(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::LinkMessage;

    /// The hand-made delete is what the netlink crates would serialize.
    #[test]
    fn dellink_request_matches_the_library_encoding() {
        let mut link = LinkMessage::default();
        link.header.index = 4242;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        header.sequence_number = 1;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)),
        );
        packet.finalize();
        let mut want = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut want);
        assert_eq!(dellink_request(4242).as_slice(), want.as_slice());
    }
}
