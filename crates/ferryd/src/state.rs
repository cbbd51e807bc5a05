//! The controller behind one lock, and a snapshot of what read-only requests
//! answer, published after every write before the lock is released. Reads
//! (`GET /networks`, `EndpointOperInfo`, ...) load the snapshot and never
//! wait behind a write that is busy with the kernel.
//!
//! Publishing is O(1): the controller's maps are persistent (`im`), so the
//! snapshot shares them. Each JSON answer is built by the first read after
//! a write that changed its part and kept for the reads after it; a write
//! costs nothing per allocation or endpoint (issue 11's regression).

use arc_swap::ArcSwap;
use ferry_cnm::{CnmError, Controller, Snapshot};
use serde_json::{json, Value};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub type Shared = Arc<State>;

pub struct State {
    ctl: Mutex<Controller>,
    view: ArcSwap<View>,
}

/// The lock was poisoned by a panic while held.
#[derive(Debug)]
pub struct Poisoned;

impl State {
    pub fn new(c: Controller) -> Shared {
        let view = ArcSwap::from_pointee(View::new(c.snapshot(), None));
        Arc::new(State {
            ctl: Mutex::new(c),
            view,
        })
    }

    /// The controller, for a write (or a read that needs it whole); a
    /// change through the guard publishes a new snapshot when it is dropped.
    pub fn lock(&self) -> Result<Guard<'_>, Poisoned> {
        let c = self.ctl.lock().map_err(|_| Poisoned)?;
        Ok(Guard {
            c,
            view: &self.view,
            wrote: false,
        })
    }

    /// The snapshot of the last committed write.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }
}

pub struct Guard<'a> {
    c: MutexGuard<'a, Controller>,
    view: &'a ArcSwap<View>,
    wrote: bool,
}

impl Deref for Guard<'_> {
    type Target = Controller;
    fn deref(&self) -> &Controller {
        &self.c
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Controller {
        self.wrote = true;
        &mut self.c
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.wrote {
            return;
        }
        let old = self.view.load();
        let new = self.c.snapshot();
        // A mutable borrow that changed nothing publishes nothing.
        if !old.data.ptr_eq(&new) {
            self.view.store(Arc::new(View::new(new, Some(&old))));
        }
    }
}

/// One JSON answer, built on first use.
type Lazy = OnceLock<Arc<Value>>;

/// The read API's answers for one committed state.
pub struct View {
    data: Snapshot,
    networks: Lazy,
    endpoints: Lazy,
    pools: Lazy,
    sandboxes: Lazy,
    services: Lazy,
}

/// A list answer, built on its first read and shared after.
fn answer(cell: &Lazy, build: impl FnOnce() -> Value) -> Arc<Value> {
    cell.get_or_init(|| Arc::new(build())).clone()
}

/// `part`'s answer carried over from the previous view when its data is
/// the same (shared, so unchanged), else empty.
fn carry(old: Option<&View>, same: bool, part: fn(&View) -> &Lazy) -> Lazy {
    let cell = Lazy::new();
    if let Some(v) = old.filter(|_| same).and_then(|o| part(o).get()) {
        let _ = cell.set(v.clone());
    }
    cell
}

impl View {
    fn new(data: Snapshot, old: Option<&View>) -> View {
        let same = |f: fn(&Snapshot, &Snapshot) -> bool| old.is_some_and(|o| f(&o.data, &data));
        View {
            networks: carry(old, same(|a, b| a.networks.ptr_eq(&b.networks)), |v| {
                &v.networks
            }),
            endpoints: carry(old, same(|a, b| a.endpoints.ptr_eq(&b.endpoints)), |v| {
                &v.endpoints
            }),
            pools: carry(old, same(|a, b| a.pools.ptr_eq(&b.pools)), |v| &v.pools),
            sandboxes: carry(old, same(|a, b| a.sandboxes.ptr_eq(&b.sandboxes)), |v| {
                &v.sandboxes
            }),
            services: carry(old, same(|a, b| a.services.ptr_eq(&b.services)), |v| {
                &v.services
            }),
            data,
        }
    }

    /// `GET /networks`.
    pub fn networks(&self) -> Arc<Value> {
        answer(&self.networks, || {
            json!(self.data.networks.values().collect::<Vec<_>>())
        })
    }

    /// `GET /endpoints`.
    pub fn endpoints(&self) -> Arc<Value> {
        answer(&self.endpoints, || {
            json!(self.data.endpoints.values().collect::<Vec<_>>())
        })
    }

    /// `GET /pools`: every allocated address, so built only when asked.
    pub fn pools(&self) -> Arc<Value> {
        answer(&self.pools, || json!(self.data.pools))
    }

    /// `GET /sandboxes`.
    pub fn sandboxes(&self) -> Arc<Value> {
        answer(&self.sandboxes, || {
            json!(self.data.sandboxes.values().collect::<Vec<_>>())
        })
    }

    /// `GET /services`.
    pub fn services(&self) -> Arc<Value> {
        answer(&self.services, || {
            json!(self.data.services.values().collect::<Vec<_>>())
        })
    }

    /// `GET /services/NAME`.
    pub fn service(&self, name: &str) -> Result<Value, CnmError> {
        self.data
            .services
            .get(name)
            .map(|s| json!(s))
            .ok_or_else(|| CnmError::not_found("service", name))
    }

    /// `GET /networks/NAME`, by name or by ID.
    pub fn network(&self, name: &str) -> Result<Value, CnmError> {
        let d = &self.data;
        d.networks
            .get(name)
            .or_else(|| {
                d.networks
                    .values()
                    .find(|n| n.name.as_deref() == Some(name))
            })
            .map(|n| json!(n))
            .ok_or_else(|| CnmError::not_found("network", name))
    }

    /// `GET /sandboxes/NAME`.
    pub fn sandbox(&self, name: &str) -> Result<Value, CnmError> {
        let d = &self.data;
        let s = d
            .sandboxes
            .get(name)
            .ok_or_else(|| CnmError::not_found("sandbox", name))?;
        Ok(json!({"sandbox": s, "endpoints": d.sandbox_endpoints(name)}))
    }

    /// Docker's `EndpointOperInfo`.
    pub fn oper_info(&self, endpoint_id: &str) -> Result<Value, CnmError> {
        self.data.endpoint_oper_info(endpoint_id)
    }
}
