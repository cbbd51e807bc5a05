//! Bounds on what requests from outside may carry: counts of options,
//! routes, subnets, ports and GC entries, and the length of IDs, option
//! keys and values. Far above any real use, so only a broken or hostile
//! client meets them; each refusal names the field and the bound.

use crate::error::{CnmError, Result};
use crate::wire::keys;
use serde_json::Value;
use std::collections::BTreeMap;

/// Entries of one options map (Docker's `Options`, its generic map, `-o k=v`).
pub const MAX_OPTIONS: usize = 64;
/// Bytes of an option key or a text option value.
pub const MAX_OPTION_LEN: usize = 4096;
/// Routes a network gives its sandboxes.
pub const MAX_ROUTES: usize = 256;
/// Subnets (address pools) of one network, per request.
pub const MAX_SUBNETS: usize = 16;
/// Published ports of one endpoint (Docker's port map).
pub const MAX_PORTS: usize = 4096;
/// Valid attachments in one CNI GC request.
pub const MAX_GC_VALID: usize = 65_536;
/// Bytes of an ID (Docker's are 64 hex digits) or a CNI container ID.
pub const MAX_ID_LEN: usize = 256;

/// Refuses more than `max` items.
pub fn count(what: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(CnmError::Invalid(format!(
            "{what}: {n} given, at most {max} accepted"
        )));
    }
    Ok(())
}

/// Refuses a text longer than `max` bytes.
pub fn text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(CnmError::Invalid(format!(
            "{what}: {} bytes given, at most {max} accepted",
            s.len()
        )));
    }
    Ok(())
}

/// An ID from outside (network, endpoint, pool, container).
pub fn id(what: &str, s: &str) -> Result<()> {
    text(what, s, MAX_ID_LEN)
}

/// A `-o key=value` map: entry count and every key and value.
pub fn string_options(what: &str, o: &BTreeMap<String, String>) -> Result<()> {
    count(what, o.len(), MAX_OPTIONS)?;
    for (k, v) in o {
        text(&format!("{what} key"), k, MAX_OPTION_LEN)?;
        text(&format!("{what} {k:?}"), v, MAX_OPTION_LEN)?;
    }
    Ok(())
}

/// Docker's `Options` map and the generic (`-o`) map inside it. Values
/// that are lists (the port map) are bounded by their own readers.
pub fn docker_options(what: &str, o: &BTreeMap<String, Value>) -> Result<()> {
    count(what, o.len(), MAX_OPTIONS)?;
    let generic = o.get(keys::GENERIC).and_then(Value::as_object);
    count(
        &format!("{what} ({})", keys::GENERIC),
        generic.map_or(0, |g| g.len()),
        MAX_OPTIONS,
    )?;
    let entries = o.iter().chain(generic.into_iter().flatten());
    for (k, v) in entries {
        text(&format!("{what} key"), k, MAX_OPTION_LEN)?;
        if let Some(s) = v.as_str() {
            text(&format!("{what} {k:?}"), s, MAX_OPTION_LEN)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::{CniGc, CniValid};
    use crate::sandbox::{NetworkCreate, RouteSpec};
    use crate::tests::Setup;
    use serde_json::json;

    /// Asserts `r` is the clear refusal of `field` (or, when `ok`, not that refusal).
    fn refused<T: std::fmt::Debug>(r: Result<T>, field: &str, ok: bool) {
        let bound =
            |e: &CnmError| e.to_string().contains("accepted") && e.to_string().contains(field);
        match (&r, ok) {
            (Err(e), true) if bound(e) => panic!("refused at the bound: {e}"),
            (Err(e), false) if !bound(e) => {
                panic!("{field}: expected the bound's refusal, got {e}")
            }
            (Ok(v), false) => panic!("{field}: accepted beyond the bound: {v:?}"),
            _ => {}
        }
    }

    fn options(n: usize, len: usize) -> BTreeMap<String, String> {
        (0..n).map(|i| (format!("k{i}"), "v".repeat(len))).collect()
    }

    #[test]
    fn ferry_api_network_create_is_bounded() {
        let s = Setup::new();
        let mut c = s.open();
        let net = |o, routes: usize, subnets: usize| NetworkCreate {
            name: "n1".into(),
            driver: Some("null".into()),
            options: o,
            routes: vec![
                RouteSpec {
                    dst: "198.18.92.0/24".parse().unwrap(),
                    gateway: None
                };
                routes
            ],
            subnets: vec!["x".into(); subnets],
            ..NetworkCreate::default()
        };
        refused(
            c.create_named_network(&net(options(MAX_OPTIONS + 1, 1), 0, 0)),
            "network options",
            false,
        );
        refused(
            c.create_named_network(&net(options(1, MAX_OPTION_LEN + 1), 0, 0)),
            "network options",
            false,
        );
        refused(
            c.create_named_network(&net(BTreeMap::new(), MAX_ROUTES + 1, 0)),
            "routes",
            false,
        );
        refused(
            c.create_named_network(&net(BTreeMap::new(), 0, MAX_SUBNETS + 1)),
            "subnets",
            false,
        );
        // At the bounds: refused for other reasons (the null driver takes no
        // subnets or options) or made, never for the bound.
        refused(
            c.create_named_network(&net(options(MAX_OPTIONS, MAX_OPTION_LEN), 0, 0)),
            "network options",
            true,
        );
        refused(
            c.create_named_network(&net(BTreeMap::new(), 0, MAX_SUBNETS)),
            "subnets",
            true,
        );
        let _ = c.remove_named_network("n1");
        let made = c
            .create_named_network(&net(BTreeMap::new(), MAX_ROUTES, 0))
            .expect("null network");
        assert_eq!(made.routes.len(), MAX_ROUTES);
    }

    #[test]
    fn docker_requests_are_bounded() {
        let s = Setup::new();
        let mut c = s.open();
        let id = "a".repeat(64);
        let create = |opts: BTreeMap<String, Value>, nid: String| crate::wire::CreateNetwork {
            network_id: nid,
            options: opts,
            ipv4_data: Vec::new(),
            ipv6_data: Vec::new(),
        };
        let many: BTreeMap<String, Value> = (0..=MAX_OPTIONS)
            .map(|i| (format!("k{i}"), json!("v")))
            .collect();
        refused(
            c.create_network(&create(many, id.clone())),
            "Options",
            false,
        );
        let generic: serde_json::Map<String, Value> = (0..=MAX_OPTIONS)
            .map(|i| (format!("k{i}"), json!("v")))
            .collect();
        let o = BTreeMap::from([(keys::GENERIC.to_string(), Value::Object(generic))]);
        refused(c.create_network(&create(o, id.clone())), "Options", false);
        let o = BTreeMap::from([("k".to_string(), json!("v".repeat(MAX_OPTION_LEN + 1)))]);
        refused(c.create_network(&create(o, id.clone())), "Options", false);
        refused(
            c.create_network(&create(BTreeMap::new(), "a".repeat(MAX_ID_LEN + 1))),
            "NetworkID",
            false,
        );
        let mut big = create(BTreeMap::new(), id.clone());
        big.ipv4_data = vec![Default::default(); MAX_SUBNETS + 1];
        refused(c.create_network(&big), "IPv4Data", false);
        let at: BTreeMap<String, Value> = (0..MAX_OPTIONS)
            .map(|i| (format!("k{i}"), json!("v")))
            .collect();
        refused(c.create_network(&create(at, id)), "Options", true);

        let pool = |o| crate::wire::RequestPool {
            address_space: "local".into(),
            pool: "198.18.92.0/24".into(),
            sub_pool: String::new(),
            options: o,
            v6: false,
        };
        refused(
            c.request_pool(&pool(options(MAX_OPTIONS + 1, 1))),
            "RequestPool Options",
            false,
        );
        refused(
            c.request_pool(&pool(options(MAX_OPTIONS, MAX_OPTION_LEN))),
            "RequestPool Options",
            true,
        );
        let addr = |o| crate::wire::RequestAddress {
            pool_id: "p".into(),
            address: String::new(),
            options: o,
        };
        refused(
            c.request_address(&addr(options(1, MAX_OPTION_LEN + 1))),
            "RequestAddress Options",
            false,
        );
        refused(
            c.request_address(&addr(options(MAX_OPTIONS, 1))),
            "RequestAddress Options",
            true,
        );
        let join = crate::wire::Join {
            network_id: "x".into(),
            endpoint_id: "y".into(),
            sandbox_key: String::new(),
            options: (0..=MAX_OPTIONS)
                .map(|i| (format!("k{i}"), json!(i)))
                .collect(),
        };
        refused(c.join(&join), "Join Options", false);

        let port = json!({"Proto": 6, "Port": 80, "HostPort": 8080});
        refused(
            crate::publish::parse_portmap(Some(&json!(vec![port.clone(); MAX_PORTS + 1]))),
            "published ports",
            false,
        );
        refused(
            crate::publish::parse_portmap(Some(&json!(vec![port; MAX_PORTS]))),
            "published ports",
            true,
        );
    }

    #[test]
    fn cni_requests_are_bounded() {
        let s = Setup::new();
        let mut c = s.open();
        let gc = |n| CniGc {
            network: "n1".into(),
            valid: vec![CniValid::default(); n],
        };
        refused(c.cni_gc(&gc(MAX_GC_VALID + 1)), "valid attachments", false);
        refused(c.cni_gc(&gc(MAX_GC_VALID)), "valid attachments", true);
        let add = crate::cni::CniRequest {
            network: "n1".into(),
            container_id: "c".repeat(MAX_ID_LEN + 1),
            ifname: "eth0".into(),
            netns: "/proc/self/ns/net".into(),
        };
        refused(c.cni_add(&add), "container ID", false);
    }
}
