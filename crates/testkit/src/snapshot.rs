//! What a plugin leaves behind, read with `ip -j`/`bridge -j`/sysctl as
//! oracles and flattened to sorted `key = value` lines, so two runs (Ferry and
//! the reference) can be diffed. Random host veth names become `veth*`.

use crate::sh;
use serde_json::Value;
use std::collections::BTreeMap;

/// Flattened state; keys name what is described.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot(pub BTreeMap<String, String>);

fn norm(name: &str) -> String {
    let is_random_veth = name.len() == 12
        && name.starts_with("veth")
        && name[4..].chars().all(|c| c.is_ascii_hexdigit());
    if is_random_veth {
        "veth*".to_string()
    } else {
        name.to_string()
    }
}

fn json(cmd: &str) -> Value {
    serde_json::from_str(&sh(cmd)).unwrap_or(Value::Null)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Snapshot {
    pub fn insert(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.insert(k.into(), v.into());
    }

    /// Links, addresses and routes (all tables) of a namespace (`None`: the host),
    /// limited to `only` links when given.
    pub fn namespace(
        &mut self,
        scope: &str,
        netns: Option<&str>,
        only: Option<&[String]>,
        macs: bool,
    ) {
        let pre = match netns {
            Some(ns) => format!("ip -n {ns}"),
            None => "ip".to_string(),
        };
        let wanted = |name: &str| only.is_none_or(|o| o.iter().any(|n| n == name));
        let mut index_names = BTreeMap::new();
        for l in json(&format!("{pre} -j -d link show"))
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = s(&l["ifname"]);
            index_names.insert(s(&l["ifindex"]), name.clone());
            if !wanted(&name) {
                continue;
            }
            let k = format!("{scope}/link/{}", norm(&name));
            self.insert(format!("{k}/kind"), s(&l["linkinfo"]["info_kind"]));
            self.insert(format!("{k}/mtu"), s(&l["mtu"]));
            let flags: Vec<String> = l["flags"].as_array().into_iter().flatten().map(s).collect();
            self.insert(
                format!("{k}/up"),
                flags.contains(&"UP".to_string()).to_string(),
            );
            self.insert(
                format!("{k}/promisc"),
                (l["promiscuity"].as_u64().unwrap_or(0) > 0).to_string(),
            );
            if !l["master"].is_null() {
                self.insert(format!("{k}/master"), norm(&s(&l["master"])));
            }
            if let Some(mode) = l["linkinfo"]["info_data"]["mode"].as_str() {
                self.insert(format!("{k}/mode"), mode);
            }
            if macs {
                self.insert(format!("{k}/mac"), s(&l["address"]));
            }
        }
        for l in json(&format!("{pre} -j addr show"))
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = s(&l["ifname"]);
            if !wanted(&name) {
                continue;
            }
            for a in l["addr_info"].as_array().into_iter().flatten() {
                let local = s(&a["local"]);
                if local.starts_with("fe80") {
                    continue; // link-local: derived from the random MAC
                }
                let mut flags: Vec<&str> = ["nodad", "tentative", "dadfailed"]
                    .into_iter()
                    .filter(|f| a[*f].as_bool() == Some(true))
                    .collect();
                flags.sort();
                self.insert(
                    format!(
                        "{scope}/addr/{}/{local}/{}",
                        norm(&name),
                        s(&a["prefixlen"])
                    ),
                    format!("scope={} {}", s(&a["scope"]), flags.join(",")),
                );
            }
        }
        for family in ["-4", "-6"] {
            for r in json(&format!("{pre} {family} -j route show table all"))
                .as_array()
                .into_iter()
                .flatten()
            {
                let dev = s(&r["dev"]);
                if !wanted(&dev)
                    || s(&r["dst"]).starts_with("fe80")
                    || s(&r["dst"]).starts_with("ff00")
                {
                    continue;
                }
                if s(&r["table"]) == "local" && s(&r["type"]) != "local" {
                    continue; // broadcast/multicast bookkeeping
                }
                self.insert(
                    format!(
                        "{scope}/route/{}/{}/{}/{}",
                        s(&r["table"]),
                        s(&r["type"]),
                        s(&r["dst"]),
                        norm(&dev)
                    ),
                    format!(
                        "via={} scope={} proto={} src={} metric={} mtu={}",
                        s(&r["gateway"]),
                        s(&r["scope"]),
                        s(&r["protocol"]),
                        s(&r["prefsrc"]),
                        s(&r["metric"]),
                        s(&r["metrics"][0]["mtu"])
                    ),
                );
            }
        }
        let _ = index_names;
    }

    /// Ports of a bridge and their flags.
    pub fn bridge_ports(&mut self, bridge: &str) {
        for p in json("bridge -j -d link show")
            .as_array()
            .into_iter()
            .flatten()
        {
            if s(&p["master"]) != bridge {
                continue;
            }
            let k = format!("host/port/{}", norm(&s(&p["ifname"])));
            for f in ["hairpin", "isolated", "learning", "state"] {
                self.insert(format!("{k}/{f}"), s(&p[f]));
            }
        }
    }

    /// sysctls, in a namespace or on the host.
    pub fn sysctls(&mut self, scope: &str, netns: Option<&str>, keys: &[&str]) {
        for key in keys {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let cmd = match netns {
                Some(ns) => format!("ip netns exec {ns} cat {path} 2>/dev/null || true"),
                None => format!("cat {path} 2>/dev/null || true"),
            };
            self.insert(format!("{scope}/sysctl/{key}"), sh(&cmd).trim().to_string());
        }
    }

    /// Keys whose values differ, or that only one side has: `key: a | b`.
    pub fn diff(&self, other: &Snapshot) -> Vec<String> {
        let mut keys: Vec<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| {
                let (a, b) = (self.0.get(k), other.0.get(k));
                (a != b).then(|| {
                    format!(
                        "{k}: {} | {}",
                        a.map(String::as_str).unwrap_or("<none>"),
                        b.map(String::as_str).unwrap_or("<none>")
                    )
                })
            })
            .collect()
    }
}

/// Fails listing every difference between two runs' snapshots that is not
/// in `known` (a key substring and the reason it is accepted).
pub fn assert_same(case: &str, reference: &Snapshot, ferry: &Snapshot, known: &[(&str, &str)]) {
    let diffs: Vec<String> = reference
        .diff(ferry)
        .into_iter()
        .filter(|d| !known.iter().any(|(k, _)| d.contains(k)))
        .collect();
    assert!(
        diffs.is_empty(),
        "{case}: Ferry differs from the reference (reference | ferry):\n{}\n\nreference:\n{:#?}\nferry:\n{:#?}",
        diffs.join("\n"),
        reference.0,
        ferry.0
    );
}
