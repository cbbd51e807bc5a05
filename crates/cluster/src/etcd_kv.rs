//! The etcd v3 backend. `etcd-client` is async; this facade owns a small
//! tokio runtime (one worker) and runs every call on it under a deadline
//! (`DEADLINE`), so no call hangs: past it, `Error::Unavailable`. The caller
//! blocks on a std channel, so it may be any thread (even a tokio one,
//! though ferryd calls from `spawn_blocking`).
//!
//! The lease: granted at the first leased write, kept alive every TTL/3 by a
//! background task. This process keeps a copy of everything it wrote under
//! the lease (host record, blocks, endpoints). When the lease is lost (it
//! expired while etcd was out of reach, or was revoked), a new lease is
//! granted and that copy is written again under it: blocks with
//! create-if-absent (a block another host claimed meanwhile is dropped from
//! the copy, with a warning), the rest with plain puts.

use crate::keys;
use crate::store::Kv;
use crate::{Error, Event, Result};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, WatchOptions,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{sleep, timeout};

/// How long any one etcd call may take before it is `Unavailable`.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// Pause before a broken watch lists again.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// The lease and what this process published under it.
#[derive(Default)]
struct Lease {
    id: Option<i64>,
    published: BTreeMap<String, Vec<u8>>,
}

/// What the tasks share: cheap to clone.
#[derive(Clone)]
struct Ctx {
    client: Client,
    host_id: String,
    ttl: Duration,
    lease: Arc<Mutex<Lease>>,
}

pub(crate) struct EtcdKv {
    ctx: Ctx,
    handle: Handle,
    /// Shut down (without waiting) on drop: the keepalive stops and the
    /// lease expires on its own, as when the process dies.
    runtime: Option<Runtime>,
}

fn unavailable(e: etcd_client::Error) -> Error {
    // gRPC's UNAVAILABLE: the request never reached a member (one of the
    // endpoints is down and the client's balancer picked it). Safe to send
    // again: `call` retries these on the next member until the deadline.
    if let etcd_client::Error::GRpcStatus(s) = &e {
        // 14: gRPC's UNAVAILABLE status code.
        if i32::from(s.code()) == 14 {
            return Error::Unreachable(format!("etcd: {e}"));
        }
    }
    Error::Unavailable(format!("etcd: {e}"))
}

fn lease_gone(e: &etcd_client::Error) -> bool {
    // A put answers a gRPC status, the keepalive stream its own error.
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().contains("lease not found"),
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
        _ => false,
    }
}

fn is_block(key: &str) -> bool {
    key.starts_with(&format!("{}blocks/", keys::ROOT))
}

/// One transaction that creates `entries` if none of their keys exists.
fn create_txn(entries: &[(String, Vec<u8>)], lease: Option<i64>) -> Txn {
    let when: Vec<Compare> = entries
        .iter()
        .map(|(k, _)| Compare::create_revision(k.as_str(), CompareOp::Equal, 0))
        .collect();
    let ops: Vec<TxnOp> = entries
        .iter()
        .map(|(k, v)| {
            TxnOp::put(
                k.as_str(),
                v.clone(),
                lease.map(|id| PutOptions::new().with_lease(id)),
            )
        })
        .collect();
    Txn::new().when(when).and_then(ops)
}

impl EtcdKv {
    /// `endpoints`: "h:p,h:p". Connecting is lazy: an unreachable etcd shows
    /// in the first call, not here.
    pub(crate) fn open(endpoints: &str, host_id: &str, ttl: Duration) -> Result<EtcdKv> {
        let urls: Vec<String> = endpoints
            .split(',')
            .filter(|e| !e.is_empty())
            .map(|e| format!("http://{e}"))
            .collect();
        if urls.is_empty() {
            return Err(Error::Invalid(format!("etcd://{endpoints}: no endpoints")));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferry-cluster")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Unavailable(format!("cannot start the etcd client runtime: {e}"))
            })?;
        let options = ConnectOptions::new()
            .with_connect_timeout(DEADLINE)
            .with_keep_alive(Duration::from_secs(2), DEADLINE);
        let client = runtime
            .block_on(async { timeout(DEADLINE, Client::connect(urls, Some(options))).await })
            .map_err(|_| {
                Error::Unavailable(format!(
                    "etcd://{endpoints}: no connection within {DEADLINE:?}"
                ))
            })?
            .map_err(unavailable)?;
        let ctx = Ctx {
            client,
            host_id: host_id.to_string(),
            ttl: ttl.max(Duration::from_secs(1)),
            lease: Arc::default(),
        };
        runtime.spawn(ctx.clone().keepalive());
        Ok(EtcdKv {
            ctx,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `f` on the runtime with the deadline and waits for its answer.
    /// A request that reached no member (`Error::Unreachable`) is sent
    /// again, to the next member, until the deadline.
    fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let ctx = self.ctx.clone();
        let what = what.to_string();
        self.handle.spawn(async move {
            let attempts = async {
                loop {
                    match f(ctx.clone()).await {
                        Err(Error::Unreachable(_)) => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        other => return other,
                    }
                }
            };
            let out = timeout(DEADLINE, attempts).await.unwrap_or_else(|_| {
                Err(Error::Unavailable(format!(
                    "etcd: {what}: no answer within {DEADLINE:?}"
                )))
            });
            let out = out.map_err(|e| match e {
                Error::Unreachable(m) => Error::Unavailable(m),
                other => other,
            });
            let _ = tx.send(out);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(Error::Unavailable("etcd client runtime stopped".into())))
    }
}

impl EtcdKv {
    /// A watch that starts from `rev` with no Snapshot of its own, as a watch
    /// that fell behind would (for the compaction test).
    pub(crate) fn watch_from(&self, rev: i64) -> Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        self.handle.spawn(self.ctx.clone().watch_loop(rev, tx));
        rx
    }
}

impl Drop for EtcdKv {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Ctx {
    async fn list(&self, prefix: &str) -> Result<(i64, Vec<(String, Vec<u8>)>)> {
        let mut resp = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unavailable)?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let kvs = resp
            .take_kvs()
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        Ok((rev, kvs))
    }

    /// The lease, granted (and everything published re-written under it)
    /// if there is none.
    async fn ensure_lease(&self, lease: &mut Lease) -> Result<i64> {
        if let Some(id) = lease.id {
            return Ok(id);
        }
        let ttl = self.ttl.as_secs().max(1) as i64;
        let id = self
            .client
            .clone()
            .lease_grant(ttl, None)
            .await
            .map_err(unavailable)?
            .id();
        let mut kept = BTreeMap::new();
        for (key, value) in std::mem::take(&mut lease.published) {
            let mut client = self.client.clone();
            let opts = Some(PutOptions::new().with_lease(id));
            let written = if is_block(&key) {
                let entry = [(key.clone(), value.clone())];
                client
                    .txn(create_txn(&entry, Some(id)))
                    .await
                    .map(|r| r.succeeded())
            } else {
                client
                    .put(key.as_str(), value.clone(), opts)
                    .await
                    .map(|_| true)
            };
            match written {
                Ok(true) => {
                    kept.insert(key, value);
                }
                Ok(false) => {
                    tracing::warn!(%key, "block claimed by another host while our lease was lost; dropped")
                }
                Err(e) => {
                    // Keep the rest for the next attempt under a fresh lease.
                    kept.insert(key, value);
                    kept.extend(std::mem::take(&mut lease.published));
                    lease.published = kept;
                    let _ = self.client.clone().lease_revoke(id).await;
                    return Err(unavailable(e));
                }
            }
        }
        if !kept.is_empty() {
            tracing::info!(host = %self.host_id, lease = id, entries = kept.len(), "lease granted; published entries written again");
        }
        lease.published = kept;
        lease.id = Some(id);
        Ok(id)
    }

    /// Runs a leased write; a lost lease is granted again (re-publishing)
    /// and the write retried once. Returns the lock so the caller records
    /// what it wrote.
    async fn leased<T, F, Fut>(&self, op: F) -> Result<(T, MutexGuard<'_, Lease>)>
    where
        F: Fn(Client, i64) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut lease = self.lease.lock().await;
        let mut retried = false;
        loop {
            let id = self.ensure_lease(&mut lease).await?;
            match op(self.client.clone(), id).await {
                Ok(t) => return Ok((t, lease)),
                Err(e) if lease_gone(&e) && !retried => {
                    tracing::warn!(host = %self.host_id, lease = id, "lease lost; granting a new one");
                    lease.id = None;
                    retried = true;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// A new lease for the keepalive task, bounded by the deadline; a
    /// failure is retried at the next tick.
    async fn regrant(&self, lease: &mut Lease) {
        match timeout(DEADLINE, self.ensure_lease(lease)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot grant a new lease yet"),
            Err(_) => tracing::warn!("cannot grant a new lease yet: no answer"),
        }
    }

    /// Keeps the lease alive every TTL/3; grants a new one (re-publishing)
    /// when etcd says it is gone.
    async fn keepalive(self) {
        let mut keeper = None;
        loop {
            sleep(self.ttl / 3).await;
            let (id, pending) = {
                let lease = self.lease.lock().await;
                (lease.id, !lease.published.is_empty())
            };
            let Some(id) = id else {
                keeper = None;
                if pending {
                    let mut lease = self.lease.lock().await;
                    self.regrant(&mut lease).await;
                }
                continue;
            };
            match timeout(DEADLINE, self.keep_alive_once(id, &mut keeper)).await {
                Ok(Ok(true)) => {}
                Ok(Err(e)) if !lease_gone(&e) => {
                    tracing::debug!(error = %e, "lease keepalive failed; retrying");
                    keeper = None;
                }
                // etcd answers TTL 0 or "lease not found": the lease is gone.
                Ok(Ok(false)) | Ok(Err(_)) => {
                    tracing::warn!(host = %self.host_id, lease = id, "lease expired; granting a new one");
                    keeper = None;
                    let mut lease = self.lease.lock().await;
                    if lease.id == Some(id) {
                        lease.id = None;
                        self.regrant(&mut lease).await;
                    }
                }
                Err(_) => keeper = None,
            }
        }
    }

    /// One keepalive round trip: Ok(false) when the lease no longer exists.
    async fn keep_alive_once(
        &self,
        id: i64,
        keeper: &mut Option<(
            i64,
            etcd_client::LeaseKeeper,
            etcd_client::LeaseKeepAliveStream,
        )>,
    ) -> Result<bool, etcd_client::Error> {
        if keeper.as_ref().map(|k| k.0) != Some(id) {
            let (k, s) = self.client.clone().lease_keep_alive(id).await?;
            *keeper = Some((id, k, s));
        }
        let Some((_, k, s)) = keeper.as_mut() else {
            return Ok(true);
        };
        k.keep_alive().await?;
        match s.message().await? {
            Some(resp) => Ok(resp.ttl() > 0),
            None => Err(etcd_client::Error::LeaseKeepAliveError(
                "stream closed".into(),
            )),
        }
    }

    /// Feeds `tx` from `rev` on; lists again (a new Snapshot) whenever the
    /// watch breaks or falls behind compaction. Ends when `tx` is dropped.
    async fn watch_loop(self, mut rev: i64, tx: mpsc::Sender<Event>) {
        loop {
            match self.watch_from(rev, &tx).await {
                Ok(()) => return,
                Err(e) => tracing::info!(error = %e, "cluster watch broken; listing again"),
            }
            loop {
                sleep(WATCH_RETRY).await;
                match timeout(DEADLINE, self.list(keys::ROOT)).await {
                    Ok(Ok((r, kvs))) => match keys::snapshot(&kvs) {
                        Ok(snap) => {
                            if tx.send(Event::Snapshot(snap)).is_err() {
                                return;
                            }
                            rev = r;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "cluster state unreadable"),
                    },
                    Ok(Err(e)) => tracing::debug!(error = %e, "cluster list failed"),
                    Err(_) => tracing::debug!("cluster list timed out"),
                }
            }
        }
    }

    /// Ok(()) when the receiver is gone; Err when the watch must re-list.
    async fn watch_from(&self, rev: i64, tx: &mpsc::Sender<Event>) -> Result<(), String> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        let mut stream = timeout(DEADLINE, self.client.clone().watch(keys::ROOT, Some(opts)))
            .await
            .map_err(|_| "watch: no answer".to_string())?
            .map_err(|e| e.to_string())?;
        loop {
            let resp = stream
                .message()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("watch stream ended")?;
            if resp.compact_revision() > 0 {
                return Err(format!("compacted at revision {}", resp.compact_revision()));
            }
            if resp.canceled() {
                return Err(format!("watch canceled: {}", resp.cancel_reason()));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                match keys::event(&key, value) {
                    Ok(Some(event)) => {
                        if tx.send(event).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "skipping unreadable change"),
                }
            }
        }
    }
}

impl Kv for EtcdKv {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    fn host_id(&self) -> &str {
        &self.ctx.host_id
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_string();
        self.call("get", move |ctx| {
            let key = key.clone();
            async move {
                let resp = ctx
                    .client
                    .clone()
                    .get(key, None)
                    .await
                    .map_err(unavailable)?;
                Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let prefix = prefix.to_string();
        self.call("list", move |ctx| {
            let prefix = prefix.clone();
            async move { Ok(ctx.list(&prefix).await?.1) }
        })
    }

    fn create(&self, entries: Vec<(String, Vec<u8>)>, leased: bool) -> Result<bool> {
        self.call("create", move |ctx| {
            let entries = entries.clone();
            async move {
                if !leased {
                    let resp = ctx.client.clone().txn(create_txn(&entries, None)).await;
                    return resp.map(|r| r.succeeded()).map_err(unavailable);
                }
                let op = |mut c: Client, id| {
                    let txn = create_txn(&entries, Some(id));
                    async move { c.txn(txn).await.map(|r| r.succeeded()) }
                };
                let (created, mut lease) = ctx.leased(op).await?;
                if created {
                    lease.published.extend(entries.iter().cloned());
                }
                Ok(created)
            }
        })
    }

    fn put(&self, key: String, value: Vec<u8>, leased: bool) -> Result<()> {
        self.call("put", move |ctx| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                if !leased {
                    ctx.client
                        .clone()
                        .put(key, value, None)
                        .await
                        .map_err(unavailable)?;
                    return Ok(());
                }
                let op = |mut c: Client, id| {
                    let (k, v) = (key.clone(), value.clone());
                    async move { c.put(k, v, Some(PutOptions::new().with_lease(id))).await }
                };
                let (_, mut lease) = ctx.leased(op).await?;
                lease.published.insert(key, value);
                Ok(())
            }
        })
    }

    fn delete(&self, keys: Vec<String>, prefixes: Vec<String>) -> Result<()> {
        self.call("delete", move |ctx| {
            let (keys, prefixes) = (keys.clone(), prefixes.clone());
            async move {
                // Under the lease lock, so a re-publish cannot bring them back.
                let mut lease = ctx.lease.lock().await;
                let mut ops: Vec<TxnOp> = keys
                    .iter()
                    .map(|k| TxnOp::delete(k.as_str(), None))
                    .collect();
                ops.extend(
                    prefixes.iter().map(|p| {
                        TxnOp::delete(p.as_str(), Some(DeleteOptions::new().with_prefix()))
                    }),
                );
                ctx.client
                    .clone()
                    .txn(Txn::new().and_then(ops))
                    .await
                    .map_err(unavailable)?;
                lease
                    .published
                    .retain(|k, _| !keys.contains(k) && !prefixes.iter().any(|p| k.starts_with(p)));
                Ok(())
            }
        })
    }

    fn unregister(&self) -> Result<()> {
        self.call("unregister", |ctx| async move {
            let mut lease = ctx.lease.lock().await;
            if let Some(id) = lease.id {
                match ctx.client.clone().lease_revoke(id).await {
                    Ok(_) => {}
                    Err(e) if lease_gone(&e) => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            *lease = Lease::default();
            Ok(())
        })
    }

    fn watch(&self) -> Result<Receiver<Event>> {
        let (rev, kvs) = self.call("watch", |ctx| async move { ctx.list(keys::ROOT).await })?;
        let (tx, rx) = mpsc::channel();
        // The receiver is still here: this send cannot fail.
        let _ = tx.send(Event::Snapshot(keys::snapshot(&kvs)?));
        self.handle.spawn(self.ctx.clone().watch_loop(rev, tx));
        Ok(rx)
    }
}
