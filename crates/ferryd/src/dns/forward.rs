//! Forwarding: names outside Ferry go to the host's upstream servers (its
//! resolv.conf, read in ferryd's namespace, so a loopback resolver works).
//! Each server gets [`PER_SERVER`], well under a client's own timeout, so
//! that a dead first server still leaves time for the next; UDP first, TCP
//! when the answer comes back truncated.

use arc_swap::ArcSwap;
use hickory_proto::op::Message;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// The largest UDP answer read from an upstream server.
const UDP_ANSWER_MAX: usize = 4096;

/// How long one upstream server has to answer.
pub const PER_SERVER: Duration = Duration::from_millis(500);

/// The upstream servers, re-read from resolv.conf on every refresh.
pub struct Upstream {
    path: PathBuf,
    servers: ArcSwap<Vec<SocketAddr>>,
}

impl Upstream {
    pub fn new(path: PathBuf) -> Upstream {
        let u = Upstream {
            path,
            servers: ArcSwap::from_pointee(Vec::new()),
        };
        u.reload();
        u
    }

    /// Reads resolv.conf again; a file that cannot be read keeps the last servers.
    pub fn reload(&self) {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let servers = nameservers(&text);
                if **self.servers.load() != servers {
                    tracing::info!(path = %self.path.display(), ?servers, "DNS upstream servers");
                    self.servers.store(Arc::new(servers));
                }
            }
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "resolv.conf unreadable")
            }
        }
    }

    /// The first answer of the servers in order, or None when none answered.
    /// `query` carries its own random ID (`Message::query`), not the client's.
    pub async fn forward(&self, query: &Message) -> Option<Message> {
        let bytes = query.to_vec().ok()?;
        for server in self.servers.load().iter() {
            let udp = timeout(PER_SERVER, exchange_udp(*server, &bytes, query.metadata.id)).await;
            let answer = match udp {
                Ok(Ok(m)) if m.metadata.truncation => {
                    match timeout(PER_SERVER, exchange_tcp(*server, &bytes, query.metadata.id))
                        .await
                    {
                        Ok(Ok(m)) => m,
                        _ => m,
                    }
                }
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::debug!(%server, error = %e, "upstream failed");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(%server, "upstream timed out");
                    continue;
                }
            };
            return Some(answer);
        }
        None
    }
}

/// The `nameserver` lines of a resolv.conf (scoped IPv6 addresses are skipped).
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// One answer of `id` (a reply with another ID is ignored).
fn decode(buf: &[u8], id: u16) -> std::io::Result<Option<Message>> {
    let m = Message::from_vec(buf).map_err(|e| invalid(&e.to_string()))?;
    Ok((m.metadata.id == id).then_some(m))
}

async fn exchange_udp(server: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    // The query advertises 1232 bytes (EDNS): a larger answer comes back
    // truncated and goes over TCP. A 64 KiB buffer zeroed per query was a
    // fifth of ferryd's CPU in the DNS benchmark (page faults and memset).
    let mut buf = [0u8; UDP_ANSWER_MAX];
    loop {
        let n = sock.recv(&mut buf).await?;
        if let Some(m) = decode(&buf[..n], id)? {
            return Ok(m);
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Message> {
    let mut s = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| invalid("query too long"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(query).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    decode(&buf, id)?.ok_or_else(|| invalid("answer to another query"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn nameservers_in_order() {
        let text = "# generated\nsearch example\nnameserver 198.18.0.1\n\
                    nameserver fd00::53\nnameserver fe80::1%eth0\noptions ndots:2\n";
        let got: Vec<String> = super::nameservers(text)
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, ["198.18.0.1:53", "[fd00::53]:53"]);
    }
}
