//! What Ferry's `dhcp` plugin and daemon say to each other over the unix
//! socket: one JSON request line, one JSON reply line, then the connection
//! closes. (The reference speaks Go net/rpc here; only the CNI config is
//! drop-in, not this protocol, so run Ferry's plugin with Ferry's daemon.)

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// One attachment's request to the daemon.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    /// `add`, `del`, `check`, `gc` or `status`.
    pub op: String,
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub ifname: String,
    /// The network name (the config's `name`).
    #[serde(default)]
    pub network: String,
    /// DHCP options asked for (codes, in the Parameter Request List).
    #[serde(default)]
    pub request: Vec<u8>,
    /// DHCP options sent (code, bytes), the client identifier among them.
    #[serde(default)]
    pub provide: Vec<(u8, Vec<u8>)>,
    /// How long acquisition may take, in milliseconds (0: the daemon's).
    #[serde(default)]
    pub timeout_ms: u64,
    #[serde(default)]
    pub broadcast: bool,
    /// GC: the `CONTAINERID:IFNAME` attachments of `network` still valid.
    #[serde(default)]
    pub valid: Vec<String>,
}

/// The daemon's answer: a lease for `add` and `check`, nothing else for
/// the other operations, or an error with its CNI code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub code: u32,
}

/// A lease the daemon holds, as it is persisted in its state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub container_id: String,
    pub network: String,
    pub netns: String,
    pub ifname: String,
    pub client_id: Vec<u8>,
    pub request: Vec<u8>,
    pub provide: Vec<(u8, Vec<u8>)>,
    pub broadcast: bool,
    pub timeout_ms: u64,
    /// What the last ACK granted (flat in the persisted JSON).
    #[serde(flatten)]
    pub grant: Grant,
    /// Unix seconds: when the lease was (re)acquired, and the T1, T2 and
    /// expiry times that follow.
    pub acquired: u64,
    pub t1: u64,
    pub t2: u64,
    pub expires: u64,
}

/// What a DHCP ACK grants: the part of a lease each renewal replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// The address with the subnet mask's prefix.
    pub address: Ipv4Net,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Option 121 (classless static routes), else option 33.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Whether `routes` came from option 121 (RFC 3442: then the router
    /// option is not a default route).
    pub classless: bool,
    pub server: Ipv4Addr,
}

/// Sends `req` to the daemon at `socket` and reads its reply. Err is the
/// transport failing (no daemon, a broken reply), as text.
pub fn call(socket: &Path, req: &Request, wait: Duration) -> Result<Reply, String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the DHCP daemon at {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("writing to the DHCP daemon: {e}"))?;
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .map_err(|e| format!("reading the DHCP daemon's reply: {e}"))?;
    serde_json::from_str(&reply).map_err(|e| format!("the DHCP daemon's reply {reply:?}: {e}"))
}
