//! Deleting stale conntrack entries over `NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`, hand-encoded: a delete with a tuple filter
//! (`CTA_FILTER`, the kernel flushes the matches itself), or on kernels
//! without it a dump and a delete per match.
//!
//! Publishing a UDP port must drop the entries of flows that reached the
//! node's port before the mapping existed: UDP has no handshake, so such a
//! flow keeps its old (un-NATed) entry as long as packets keep coming. The
//! reference portmap does the same on ADD.

use netlink_sys::{protocols::NETLINK_NETFILTER, SocketAddr};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
const CTA_FILTER_F_CTA_PROTO_NUM: u32 = 1 << 3;
const CTA_FILTER_F_CTA_PROTO_DST_PORT: u32 = 1 << 5;
const NLA_F_NESTED: u16 = 0x8000;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Attributes of `b` as (type, whole attribute bytes, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[..len], &b[4..len]));
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    out
}

fn message(kind: u16, flags: u16, seq: u32, family: u8, body: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(body);
    m
}

/// One attribute, padded to 4 bytes.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut a = Vec::with_capacity((len + 3) & !3);
    a.extend_from_slice(&(len as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize((len + 3) & !3, 0);
    a
}

/// The body of a delete that makes the kernel flush every entry (any zone)
/// whose original tuple has protocol `proto` and destination port `port`.
fn filtered_delete(proto: u8, port: u16) -> Vec<u8> {
    let mut p = attr(CTA_PROTO_NUM, &[proto]);
    p.extend(attr(CTA_PROTO_DST_PORT, &port.to_be_bytes()));
    let mut body = attr(
        CTA_TUPLE_ORIG | NLA_F_NESTED,
        &attr(CTA_TUPLE_PROTO | NLA_F_NESTED, &p),
    );
    let flags = CTA_FILTER_F_CTA_PROTO_NUM | CTA_FILTER_F_CTA_PROTO_DST_PORT;
    let mut f = attr(CTA_FILTER_ORIG_FLAGS, &flags.to_ne_bytes());
    f.extend(attr(CTA_FILTER_REPLY_FLAGS, &0u32.to_ne_bytes()));
    body.extend(attr(CTA_FILTER | NLA_F_NESTED, &f));
    body
}

/// Reads replies to `seq` until DONE (dumps) or the ack; calls `each` with
/// every data message's attributes. Returns the first error code.
fn read_replies(
    sock: &mut netlink_sys::Socket,
    seq: u32,
    dump: bool,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv(&mut &mut buf[..], 0)?;
        let mut b = &buf[..n];
        while b.len() >= 16 {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let kind = u16::from_ne_bytes([b[4], b[5]]);
            let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            if len < 16 || len > b.len() {
                return Ok(());
            }
            let payload = &b[16..len];
            b = b.get((len + 3) & !3..).unwrap_or(&[]);
            if mseq != seq {
                continue;
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(0);
                    if code == 0 && !dump {
                        return Ok(());
                    }
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
                _ => {
                    if let Some(a) = payload.get(4..) {
                        each(a);
                    }
                }
            }
        }
    }
}

/// Sends one delete; the outer error is the socket's, the inner the
/// kernel's answer.
fn delete(
    sock: &mut netlink_sys::Socket,
    seq: u32,
    family: u8,
    body: &[u8],
) -> std::io::Result<std::io::Result<()>> {
    let m = message(
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family,
        body,
    );
    sock.send(&m, 0)?;
    Ok(read_replies(sock, seq, false, |_| {}))
}

/// Deletes the conntrack entries of protocol `proto` whose original
/// destination port is one of `ports`, for IPv4 (`v4`) and/or IPv6, in the
/// calling thread's namespace.
///
/// The kernel-side filtered flush (Linux 6.2+) skips the node's empty
/// conntrack buckets without locking them; a dump locks every bucket of the
/// node-wide hash (262,144 by default), about 10 ms per family even with
/// nothing in it. Older kernels refuse the filter and get the dump.
pub fn delete_by_dport(proto: u8, ports: &[u16], v4: bool, v6: bool) -> std::io::Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut sock = netlink_sys::Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut seq = 1u32;
    for (on, family) in [(v4, libc::AF_INET as u8), (v6, libc::AF_INET6 as u8)] {
        if !on {
            continue;
        }
        let mut filtered = true;
        for port in ports {
            seq += 1;
            if delete(&mut sock, seq, family, &filtered_delete(proto, *port))?.is_err() {
                filtered = false;
                break;
            }
        }
        if !filtered {
            seq = dump_and_delete(&mut sock, seq, family, proto, ports)?;
        }
    }
    Ok(())
}

/// The fallback of [`delete_by_dport`] for one family: a dump, then a
/// delete per match. Returns the last sequence number used.
fn dump_and_delete(
    sock: &mut netlink_sys::Socket,
    mut seq: u32,
    family: u8,
    proto: u8,
    ports: &[u16],
) -> std::io::Result<u32> {
    // Dump, keeping the tuple (and zone) of every match.
    seq += 1;
    sock.send(
        &message(
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            &[],
        ),
        0,
    )?;
    let mut victims: Vec<Vec<u8>> = Vec::new();
    read_replies(sock, seq, true, |a| {
        let top = attrs(a);
        let Some((_, whole, orig)) = top.iter().find(|(k, _, _)| *k == CTA_TUPLE_ORIG) else {
            return;
        };
        let Some((_, _, p)) = attrs(orig)
            .into_iter()
            .find(|(k, _, _)| *k == CTA_TUPLE_PROTO)
        else {
            return;
        };
        let pa = attrs(p);
        let num = pa
            .iter()
            .find(|(k, _, _)| *k == CTA_PROTO_NUM)
            .and_then(|(_, _, v)| v.first().copied());
        let dport = pa
            .iter()
            .find(|(k, _, _)| *k == CTA_PROTO_DST_PORT)
            .and_then(|(_, _, v)| v.get(..2).map(|v| u16::from_be_bytes([v[0], v[1]])));
        if num == Some(proto) && dport.is_some_and(|d| ports.contains(&d)) {
            let mut body = whole.to_vec();
            body.resize((body.len() + 3) & !3, 0);
            if let Some((_, z, _)) = top.iter().find(|(k, _, _)| *k == CTA_ZONE) {
                body.extend_from_slice(z);
                body.resize((body.len() + 3) & !3, 0);
            }
            victims.push(body);
        }
    })?;
    for body in victims {
        seq += 1;
        match delete(sock, seq, family, &body)? {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_and_stop_on_garbage() {
        let mut b = Vec::new();
        b.extend_from_slice(&5u16.to_ne_bytes());
        b.extend_from_slice(&(1u16 | 0x8000).to_ne_bytes());
        b.extend_from_slice(&[17, 0, 0, 0]);
        b.extend_from_slice(&[0xff, 0xff, 1, 0]);
        let a = attrs(&b);
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].0, a[0].2), (1, &[17u8][..]));
    }

    #[test]
    fn filtered_delete_nests_tuple_and_filter() {
        let b = filtered_delete(17, 53);
        let top = attrs(&b);
        let kinds: Vec<u16> = top.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(kinds, [CTA_TUPLE_ORIG, CTA_FILTER]);
        let proto = attrs(top[0].2);
        let p = attrs(proto[0].2);
        assert_eq!(p[0].2, &[17u8][..]);
        assert_eq!(p[1].2, &53u16.to_be_bytes()[..]);
        let f = attrs(top[1].2);
        assert_eq!(f[0].2, &((1u32 << 3) | (1 << 5)).to_ne_bytes()[..]);
    }
}
