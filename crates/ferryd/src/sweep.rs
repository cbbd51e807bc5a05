//! Releases addresses of Docker's pools that stay unclaimed for a grace
//! period ([`ferry_cnm::Controller::unclaimed_addresses`]): a RequestAddress answered
//! after its commit reached disk but not Docker, or a ReleaseAddress lost to
//! a kill of ferryd, would otherwise hold an address forever. Docker asks
//! for an address milliseconds before CreateEndpoint, so a grace far longer
//! than its plugin retries (30 s) never takes one in use.

use ferry_cnm::wire;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub fn spawn(ctl: crate::state::Shared, grace: Duration) -> std::io::Result<()> {
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(15));
    std::thread::Builder::new()
        .name("address-sweep".into())
        .spawn(move || {
            let mut since: BTreeMap<(String, IpAddr), Instant> = BTreeMap::new();
            loop {
                std::thread::sleep(every);
                let Ok(mut c) = ctl.lock() else { return };
                let now = Instant::now();
                let unclaimed = c.unclaimed_addresses();
                since.retain(|k, _| unclaimed.contains(k));
                for key in unclaimed {
                    let first = *since.entry(key.clone()).or_insert(now);
                    if now.duration_since(first) < grace {
                        continue;
                    }
                    let (pool_id, ip) = key;
                    let req = wire::ReleaseAddress {
                        pool_id: pool_id.clone(),
                        address: ip.to_string(),
                    };
                    match c.release_address(&req) {
                        Ok(()) => {
                            since.remove(&(pool_id.clone(), ip));
                            tracing::warn!(pool = pool_id, %ip, "released an address no endpoint claimed")
                        }
                        Err(e) => tracing::warn!(pool = pool_id, %ip, error = %e, "cannot release an unclaimed address"),
                    }
                }
            }
        })
        .map(|_| ())
}
