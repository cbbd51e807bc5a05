//! A CNI result for people: one aligned row per interface, address, route
//! and DNS setting (`ferry cni add` without --json).

use serde_json::Value;

/// The result of any CNI version as a short table.
pub fn render(result: &Value) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let interfaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    for i in &interfaces {
        let place = match i["sandbox"].as_str() {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => "(host)".to_string(),
        };
        rows.push(["interface".into(), s(&i["name"]), s(&i["mac"]), place]);
    }
    // 0.3.0 and later: `ips` and `routes`; 0.1.0/0.2.0: `ip4` and `ip6`.
    let mut ips: Vec<Value> = result["ips"].as_array().cloned().unwrap_or_default();
    let mut routes: Vec<Value> = result["routes"].as_array().cloned().unwrap_or_default();
    for old in ["ip4", "ip6"] {
        let o = &result[old];
        if o.is_object() {
            ips.push(serde_json::json!({"address": o["ip"], "gateway": o["gateway"]}));
            routes.extend(o["routes"].as_array().cloned().unwrap_or_default());
        }
    }
    for ip in &ips {
        let gateway = ip["gateway"]
            .as_str()
            .map(|g| format!("gateway {g}"))
            .unwrap_or_default();
        let on = ip["interface"]
            .as_u64()
            .and_then(|n| interfaces.get(n as usize))
            .map(|i| format!("on {}", s(&i["name"])))
            .unwrap_or_default();
        rows.push(["address".into(), s(&ip["address"]), gateway, on]);
    }
    for r in &routes {
        let via = r["gw"]
            .as_str()
            .map(|g| format!("via {g}"))
            .unwrap_or_default();
        rows.push(["route".into(), s(&r["dst"]), via, String::new()]);
    }
    let dns = &result["dns"];
    for (key, label) in [
        ("nameservers", "nameserver"),
        ("search", "search"),
        ("options", "option"),
    ] {
        for v in dns[key].as_array().into_iter().flatten() {
            rows.push(["dns".into(), label.into(), s(v), String::new()]);
        }
    }
    if let Some(d) = dns["domain"].as_str() {
        rows.push(["dns".into(), "domain".into(), d.into(), String::new()]);
    }
    if rows.is_empty() {
        return "no interfaces, addresses, routes or DNS in the result".into();
    }
    let mut width = [0usize; 4];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(width)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bridge_result_reads_as_a_table() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "eth0", "mac": "bb:bb:bb:bb:bb:bb", "sandbox": "/run/netns/demo"}
            ],
            "ips": [{"address": "198.19.40.2/24", "gateway": "198.19.40.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "198.19.40.1"}],
            "dns": {"nameservers": ["198.19.40.1"], "search": ["example"]}
        });
        assert_eq!(
            render(&r),
            "interface  cni0            aa:aa:aa:aa:aa:aa    (host)\n\
             interface  eth0            bb:bb:bb:bb:bb:bb    /run/netns/demo\n\
             address    198.19.40.2/24  gateway 198.19.40.1  on eth0\n\
             route      0.0.0.0/0       via 198.19.40.1\n\
             dns        nameserver      198.19.40.1\n\
             dns        search          example"
        );
    }

    #[test]
    fn an_old_result_shows_its_ip4() {
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "198.19.40.3/24", "gateway": "198.19.40.1",
                       "routes": [{"dst": "198.19.41.0/24"}]}});
        assert_eq!(
            render(&r),
            "address  198.19.40.3/24  gateway 198.19.40.1\n\
             route    198.19.41.0/24"
        );
    }
}
