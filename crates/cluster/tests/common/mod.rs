//! A private etcd per test (free ports, its own data dir, killed and removed
//! at the end even on panic), a raw client to look behind the store, and
//! event helpers.
#![allow(dead_code)]

use ferry_cluster::Event;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
}

impl Etcd {
    pub fn start() -> Etcd {
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn();
        etcd
    }

    /// "127.0.0.1:PORT"
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint())
    }

    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .arg(format!("--initial-cluster=t={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match child {
            Ok(c) => self.child = Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("etcd not found: install the Debian package etcd-server")
            }
            Err(e) => panic!("cannot start etcd: {e}"),
        }
        let start = Instant::now();
        while self.revision_now().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not answer within 20 s; see its log"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs `f` with a raw client.
    pub fn raw<T>(
        &self,
        f: impl AsyncFnOnce(&mut etcd_client::Client) -> Result<T, etcd_client::Error>,
    ) -> Result<T, etcd_client::Error> {
        let endpoint = self.endpoint();
        runtime().block_on(async move {
            let opts =
                etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
            let mut c = tokio::time::timeout(
                Duration::from_secs(2),
                etcd_client::Client::connect([endpoint], Some(opts)),
            )
            .await
            .map_err(|_| etcd_client::Error::InvalidArgs("connect timed out".into()))??;
            tokio::time::timeout(Duration::from_secs(2), f(&mut c))
                .await
                .map_err(|_| etcd_client::Error::InvalidArgs("timed out".into()))?
        })
    }

    fn revision_now(&self) -> Option<i64> {
        self.raw(async |c| c.get("/", None).await)
            .ok()?
            .header()
            .map(|h| h.revision())
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        self.revision_now().expect("etcd revision")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for an event `pick` accepts, skipping others; panics naming `what`
/// after `limit`.
pub fn wait_for<T>(
    rx: &Receiver<Event>,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) => {
                if let Some(t) = pick(&ev) {
                    return t;
                }
            }
            Err(e) => panic!("no {what} within {limit:?}: {e}"),
        }
    }
}

/// Polls `cond` until it holds; returns how long it took, panics after `limit`.
pub fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}
