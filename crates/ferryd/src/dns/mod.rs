//! ferryd's DNS server for Ferry networks. It listens on each network's
//! gateway addresses (port 53, UDP and TCP, IPv4 and IPv6) and answers A,
//! AAAA and PTR for the network's endpoints, by sandbox name and by alias,
//! only to clients inside the network's subnets; other names go upstream
//! ([`forward`]).
//!
//! CNI attachments get names through the `ferry-dns` plugin ([`cni`]): their
//! networks are zones of their own, served on the gateways the plugin
//! reports. Overlay networks also answer the names other hosts published
//! (the overlay agent's view, [`Remote`]).
//!
//! The record table is rebuilt from the controller after every successful
//! write on Ferry's API ([`after_writes`]) and every [`TICK`], and swapped
//! whole; listening sockets stay open across rebuilds (a query in flight
//! is never dropped). A network's sockets open when it appears and close
//! when it goes.

pub mod cni;
pub mod forward;
pub mod records;

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use forward::Upstream;
use hickory_proto::op::{Edns, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{
    Request as DnsRequest, RequestHandler, ResponseHandler, ResponseInfo,
};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use records::{Table, Zone};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::state::Shared;

/// How often the table is rebuilt without a write (changes made elsewhere,
/// e.g. resolv.conf or the overlay agent).
const TICK: Duration = Duration::from_secs(2);
/// An idle TCP client is dropped after this.
const TCP_IDLE: Duration = Duration::from_secs(5);

pub struct Config {
    /// TTL of the records of Ferry's names.
    pub ttl: u32,
    /// The upstream servers' resolv.conf.
    pub resolv_conf: PathBuf,
    /// Where each query is counted (`ferry_dns_queries_total`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where the names of CNI attachments are kept.
    pub cni_names: PathBuf,
    /// Other hosts' endpoints on overlay networks, kept by the overlay agent.
    pub remote: Remote,
}

/// The endpoints other hosts published on overlay networks, as the overlay
/// agent last saw them.
pub type Remote = Arc<std::sync::Mutex<Vec<ferry_cluster::EndpointRecord>>>;

/// What every network's handler reads: swapped, never locked.
struct Names {
    table: ArcSwap<Table>,
    upstream: Upstream,
    ttl: u32,
    metrics: Arc<crate::metrics::Metrics>,
}

/// The DNS server: the table and one [`Server`] per served network.
#[derive(Clone)]
pub struct Dns {
    ctl: Shared,
    cni: Arc<cni::Registry>,
    remote: Remote,
    names: Arc<Names>,
    listeners: Arc<tokio::sync::Mutex<BTreeMap<String, Listener>>>,
}

/// A network's server and the addresses its sockets are bound to.
struct Listener {
    bound: Vec<IpAddr>,
    server: Server<Handler>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Dropping the server aborts its tasks, which closes the sockets.
        self.server.shutdown_token().cancel();
    }
}

impl Dns {
    /// Builds the table, opens the listeners and keeps them current. Must
    /// run inside the tokio runtime.
    pub async fn start(ctl: Shared, config: Config) -> Dns {
        let dns = Dns {
            ctl,
            cni: Arc::new(cni::Registry::open(config.cni_names)),
            remote: config.remote,
            names: Arc::new(Names {
                table: ArcSwap::from_pointee(Table::default()),
                upstream: Upstream::new(config.resolv_conf),
                ttl: config.ttl,
                metrics: config.metrics,
            }),
            listeners: Arc::default(),
        };
        dns.refresh().await;
        let d = dns.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                d.refresh().await;
            }
        });
        dns
    }

    /// Rebuilds the table from its sources, swaps it in when it changed,
    /// and binds the sockets of new networks (closing those of removed ones).
    pub async fn refresh(&self) {
        let ctl = self.ctl.clone();
        let cni = self.cni.all();
        let remote = self.remote.lock().map(|r| r.clone()).unwrap_or_default();
        let built = tokio::task::spawn_blocking(move || {
            ctl.lock().map(|c| Table::build(&c, &cni, &remote)).ok()
        })
        .await;
        let Ok(Some(table)) = built else {
            tracing::error!("DNS: cannot read the controller");
            return;
        };
        self.names.upstream.reload();
        // One refresh at a time: listeners follow the table they were built from.
        let mut listeners = self.listeners.lock().await;
        let table = Arc::new(table);
        if **self.names.table.load() != *table {
            self.names.table.store(table.clone());
        }
        listeners.retain(|id, l| {
            table
                .zones
                .get(id)
                .is_some_and(|z| l.bound.iter().all(|a| z.gateways.contains(a)))
        });
        for (id, zone) in &table.zones {
            let l = listeners.entry(id.clone()).or_insert_with(|| Listener {
                bound: Vec::new(),
                server: Server::new(Handler {
                    network: id.clone(),
                    names: self.names.clone(),
                    rotation: AtomicUsize::new(0),
                }),
            });
            for gw in &zone.gateways {
                if l.bound.contains(gw) {
                    continue;
                }
                match bind(SocketAddr::new(*gw, 53)) {
                    Ok((udp, tcp)) => {
                        l.server.register_socket(udp);
                        l.server.register_listener(tcp, TCP_IDLE, 16);
                        l.bound.push(*gw);
                        tracing::info!(network = %id, address = %gw, "DNS listening");
                    }
                    // Retried on the next refresh.
                    Err(e) => {
                        tracing::warn!(network = %id, address = %gw, error = %e, "DNS cannot listen")
                    }
                }
            }
        }
    }
}

/// The middleware on Ferry's API: after a successful write, the table is
/// rebuilt before the answer goes out, so a name works once `connect` returns.
pub async fn after_writes(State(dns): State<Dns>, req: Request, next: Next) -> Response {
    let write = req.method() != axum::http::Method::GET;
    let resp = next.run(req).await;
    if write && resp.status().is_success() {
        dns.refresh().await;
    }
    resp
}

/// UDP and TCP sockets on `addr`. Freebind: an IPv6 gateway may still be
/// tentative (duplicate address detection) when its network appears.
fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let open = |ty: Type, proto: Protocol| -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
            s.set_freebind_v6(true)?;
        } else {
            s.set_freebind_v4(true)?;
        }
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        Ok(s)
    };
    let udp = open(Type::DGRAM, Protocol::UDP)?;
    let tcp = open(Type::STREAM, Protocol::TCP)?;
    tcp.listen(128)?;
    Ok((
        tokio::net::UdpSocket::from_std(udp.into())?,
        tokio::net::TcpListener::from_std(tcp.into())?,
    ))
}

/// One network's request handler.
struct Handler {
    network: String,
    names: Arc<Names>,
    /// Turns the answers of a name shared by several endpoints.
    rotation: AtomicUsize,
}

/// A response's code and sections.
#[derive(Default)]
struct Reply {
    code: ResponseCode,
    /// How it was answered, for the metrics: `local` (Ferry's names),
    /// `forwarded`, `upstream_failed`, `refused` or `invalid`.
    outcome: &'static str,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn code(code: ResponseCode) -> Reply {
        Reply {
            code,
            ..Reply::default()
        }
    }
}

impl Handler {
    async fn reply(&self, request: &DnsRequest) -> Reply {
        let table = self.names.table.load();
        let Some(zone) = table.zones.get(&self.network) else {
            return Reply::code(ResponseCode::Refused).outcome("refused");
        };
        // Only the network's own clients: nobody learns its names from outside.
        let client = request.src().ip();
        if !zone.subnets.iter().any(|s| s.contains(&client)) {
            return Reply::code(ResponseCode::Refused).outcome("refused");
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::code(ResponseCode::NotImp).outcome("invalid");
        }
        let [query] = request.queries.queries() else {
            return Reply::code(ResponseCode::FormErr).outcome("invalid");
        };
        if let Some(r) = self.local(zone, query.name(), query.query_type()) {
            return r.outcome("local");
        }
        let mut upstream = Message::query();
        upstream.add_query(query.original().clone());
        upstream.metadata.recursion_desired = true;
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        upstream.set_edns(edns);
        match self.names.upstream.forward(&upstream).await {
            Some(m) => Reply {
                code: m.metadata.response_code,
                outcome: "forwarded",
                authoritative: false,
                answers: m.answers,
                authorities: m.authorities,
                additionals: m.additionals,
            },
            None => Reply::code(ResponseCode::ServFail).outcome("upstream_failed"),
        }
    }

    /// The answer from the zone, or None when the name is not Ferry's.
    fn local(&self, zone: &Zone, name: &LowerName, ty: RecordType) -> Option<Reply> {
        let ttl = self.names.ttl;
        let owner = Name::from(name.clone());
        let answers: Vec<Record> = if let Some(ip) = reverse_of(&owner) {
            // The network's own reverse space is answered here, known or not.
            let names = zone.reverse.get(&ip);
            if names.is_none() && !zone.subnets.iter().any(|s| s.contains(&ip)) {
                return None;
            }
            if ty != RecordType::PTR {
                return Some(Reply::default().authoritative(names.is_some()));
            }
            names
                .into_iter()
                .flatten()
                .filter_map(|n| Name::from_ascii(format!("{n}.")).ok())
                .map(|n| Record::from_rdata(owner.clone(), ttl, RData::PTR(PTR(n))))
                .collect()
        } else {
            let label = name.to_string();
            let label = label.trim_end_matches('.');
            let addrs = zone.names.get(&label.to_ascii_lowercase())?;
            let mut records: Vec<Record> = addrs
                .iter()
                .filter_map(|ip| match (ip, ty) {
                    (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                    (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                    _ => None,
                })
                .map(|rd| Record::from_rdata(owner.clone(), ttl, rd))
                .collect();
            if !records.is_empty() {
                let turn = self.rotation.fetch_add(1, Ordering::Relaxed) % records.len();
                records.rotate_left(turn);
            }
            records
        };
        if answers.is_empty() && ty == RecordType::PTR {
            return Some(Reply::code(ResponseCode::NXDomain).authoritative(true));
        }
        Some(Reply {
            answers,
            ..Reply::default().authoritative(true)
        })
    }
}

impl Reply {
    fn authoritative(mut self, yes: bool) -> Reply {
        self.authoritative = yes;
        self
    }

    fn outcome(mut self, outcome: &'static str) -> Reply {
        self.outcome = outcome;
        self
    }
}

/// A response code as dig prints it, for the metrics' `rcode` label.
fn rcode_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

/// The address a reverse name (`*.in-addr.arpa.`, `*.ip6.arpa.`) stands for.
fn reverse_of(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &DnsRequest,
        mut response: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        let table = self.names.table.load();
        let network = table.zones.get(&self.network).map_or("", |z| &z.name);
        let rcode = rcode_name(reply.code);
        self.names.metrics.dns_query(network, reply.outcome, rcode);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = true;
        let edns = request.edns.as_ref().map(|e| {
            let mut r = Edns::new();
            r.set_max_payload(e.max_payload().max(512));
            r.set_version(0);
            r
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let message = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "DNS answer not sent");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata,
                    counts: Default::default(),
                })
            }
        }
    }
}
