//! The controller behind one lock, and a snapshot of what read-only requests
//! answer, published after every write before the lock is released. Reads
//! (`GET /networks`, `EndpointOperInfo`, ...) load the snapshot and never
//! wait behind a write that is busy with the kernel.

use arc_swap::ArcSwap;
use ferry_cnm::{CnmError, Controller};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

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
        let view = ArcSwap::from_pointee(View::of(&c));
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
        if self.wrote {
            self.view.store(Arc::new(View::of(&self.c)));
        }
    }
}

/// The read API's answers, built once per write.
pub struct View {
    pub networks: Value,
    pub endpoints: Value,
    pub pools: Value,
    pub sandboxes: Value,
    pub services: Value,
    /// `GET /services/NAME`.
    service: HashMap<String, Value>,
    /// `GET /networks/NAME`, by name and by ID.
    network: HashMap<String, Value>,
    /// `GET /sandboxes/NAME`.
    sandbox: HashMap<String, Value>,
    /// Docker's `EndpointOperInfo`, by endpoint ID.
    oper_info: HashMap<String, Value>,
}

impl View {
    fn of(c: &Controller) -> View {
        let mut network = HashMap::new();
        for n in c.networks() {
            let v = json!(n);
            if let Some(name) = &n.name {
                network.insert(name.clone(), v.clone());
            }
            network.insert(n.id.clone(), v);
        }
        let sandbox = c
            .sandboxes()
            .map(|s| {
                let v = json!({"sandbox": s, "endpoints": c.sandbox_endpoints(&s.name)});
                (s.name.clone(), v)
            })
            .collect();
        let oper_info = c
            .endpoints()
            .filter_map(|e| {
                let r = ferry_cnm::wire::EndpointRef {
                    network_id: e.network_id.clone(),
                    endpoint_id: e.id.clone(),
                };
                c.endpoint_oper_info(&r).ok().map(|v| (e.id.clone(), v))
            })
            .collect();
        View {
            networks: json!(c.networks().collect::<Vec<_>>()),
            endpoints: json!(c.endpoints().collect::<Vec<_>>()),
            pools: json!(c.ipam().pools),
            sandboxes: json!(c.sandboxes().collect::<Vec<_>>()),
            services: json!(c.services().collect::<Vec<_>>()),
            service: c.services().map(|s| (s.name.clone(), json!(s))).collect(),
            network,
            sandbox,
            oper_info,
        }
    }

    pub fn network(&self, name: &str) -> Result<Value, CnmError> {
        self.network
            .get(name)
            .cloned()
            .ok_or_else(|| CnmError::not_found("network", name))
    }

    pub fn sandbox(&self, name: &str) -> Result<Value, CnmError> {
        self.sandbox
            .get(name)
            .cloned()
            .ok_or_else(|| CnmError::not_found("sandbox", name))
    }

    pub fn service(&self, name: &str) -> Result<Value, CnmError> {
        self.service
            .get(name)
            .cloned()
            .ok_or_else(|| CnmError::not_found("service", name))
    }

    pub fn oper_info(&self, endpoint_id: &str) -> Result<Value, CnmError> {
        self.oper_info
            .get(endpoint_id)
            .cloned()
            .ok_or_else(|| CnmError::not_found("endpoint", endpoint_id))
    }
}
