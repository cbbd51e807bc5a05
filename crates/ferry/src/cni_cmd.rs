//! `ferry cni`: cnitool's job with Ferry's runtime, plus `list` and `version`.
//! Environment as cnitool: NETCONFPATH, CNI_PATH, CNI_ARGS, CAP_ARGS, CNI_IFNAME.

use crate::cli::{Attach, CniArgs, CniCommand};
use ferry_cni::config::{self, Found, NetworkConfigList};
use ferry_cni::runtime::{Attachment, CniConfig, RuntimeConf};
use ferry_cni::{invoke, skel, version, CniError, CniResult};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use std::path::Path;
use std::process::ExitCode;

pub fn run(args: CniArgs, json: bool) -> ExitCode {
    match execute(args, json) {
        Ok(Some(out)) => {
            print_value(&out, json);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
            } else {
                eprintln!("ferry: {}", e.msg);
                if !e.details.is_empty() {
                    eprintln!("  {}", e.details);
                }
                eprintln!("  (CNI error code {})", e.code);
            }
            ExitCode::FAILURE
        }
    }
}

fn print_value(v: &Value, json: bool) {
    match v {
        Value::String(s) if !json => println!("{s}"),
        _ => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

/// cnitool's container ID: "cnitool-" and the first 20 hex digits of sha512(netns).
pub fn default_container_id(netns: &str) -> String {
    let digest = Sha512::digest(netns.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{}", &hex[..20])
}

fn runtime_conf(a: &Attach) -> CniResult<RuntimeConf> {
    let capability_args = if a.cap_args.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(&a.cap_args) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(CniError::decoding("CAP_ARGS must be a JSON object")),
            Err(e) => {
                return Err(CniError::decoding(format!(
                    "CAP_ARGS is not valid JSON: {e}"
                )))
            }
        }
    };
    Ok(RuntimeConf {
        container_id: a
            .container_id
            .clone()
            .unwrap_or_else(|| default_container_id(&a.netns)),
        netns: a.netns.clone(),
        ifname: a.ifname.clone(),
        args: skel::parse_cni_args(&a.cni_args)?,
        capability_args,
    })
}

fn execute(args: CniArgs, json: bool) -> CniResult<Option<Value>> {
    let runtime = CniConfig::new(invoke::split_paths(&args.cni_path), &args.cache_dir);
    let dir = args.netconfpath.as_path();
    match &args.command {
        CniCommand::Add(a) => {
            let list = config::load_network(dir, &a.network)?;
            let result = runtime.add_network_list(&list, &runtime_conf(a)?)?;
            Ok(Some(if json {
                result
            } else {
                Value::String(crate::cni_table::render(&result))
            }))
        }
        CniCommand::Check(a) => {
            let current = config::load_network(dir, &a.network).ok();
            runtime.check_network_list(&a.network, current.as_ref(), &runtime_conf(a)?)?;
            Ok(None)
        }
        CniCommand::Del(a) => {
            // Today's file is only a fallback: DEL replays what ADD cached.
            let current = config::load_network(dir, &a.network);
            let rt = runtime_conf(a)?;
            let cached = runtime
                .cache
                .get(&a.network, &rt.container_id, &rt.ifname)
                .is_some();
            match (current, cached) {
                (Err(e), false) => Err(e),
                (current, _) => {
                    runtime.del_network_list(&a.network, current.ok().as_ref(), &rt)?;
                    Ok(None)
                }
            }
        }
        CniCommand::Status { network } => {
            runtime.status_network_list(&config::load_network(dir, network)?)?;
            Ok(None)
        }
        CniCommand::Gc { network, valid } => {
            let list = config::load_network(dir, network)?;
            let valid = if valid.is_empty() {
                live_attachments(&runtime, network)
            } else {
                valid
                    .iter()
                    .map(|v| parse_attachment(v))
                    .collect::<CniResult<_>>()?
            };
            runtime.gc_network_list(&list, Some(&valid))?;
            Ok(None)
        }
        CniCommand::Version { plugins } => {
            if plugins.is_empty() {
                return Ok(Some(if json {
                    json!({"cniVersion": version::CURRENT, "supportedVersions": version::SUPPORTED})
                } else {
                    Value::String(format!(
                        "ferry {} speaks CNI {}",
                        env!("CARGO_PKG_VERSION"),
                        version::SUPPORTED.join(", ")
                    ))
                }));
            }
            let mut out = Map::new();
            for p in plugins {
                out.insert(p.clone(), runtime.version_info(p, version::CURRENT)?);
            }
            Ok(Some(Value::Object(out)))
        }
        CniCommand::List => Ok(Some(list_networks(&runtime, dir, json)?)),
    }
}

fn parse_attachment(s: &str) -> CniResult<Attachment> {
    match s.split_once('/') {
        Some((id, ifname)) if !id.is_empty() && !ifname.is_empty() => Ok(Attachment {
            container_id: id.to_string(),
            ifname: ifname.to_string(),
        }),
        _ => Err(CniError::invalid_config(format!(
            "--valid {s:?}: expected CONTAINERID/IFNAME"
        ))),
    }
}

/// Cached attachments of `network` whose namespace still exists.
fn live_attachments(runtime: &CniConfig, network: &str) -> Vec<Attachment> {
    runtime
        .cache
        .list(None)
        .into_iter()
        .filter(|c| {
            c.network_name == network && !c.netns.is_empty() && Path::new(&c.netns).exists()
        })
        .map(|c| Attachment {
            container_id: c.container_id,
            ifname: c.if_name,
        })
        .collect()
}

fn list_networks(runtime: &CniConfig, dir: &Path, json: bool) -> CniResult<Value> {
    let mut rows = Vec::new();
    for found in config::load_all(dir)? {
        match found {
            Found::Network { file, list } => rows.push(describe(runtime, &file, &list)),
            Found::Invalid { file, error } => rows.push(json!({
                "file": file.display().to_string(),
                "error": error.to_string(),
            })),
        }
    }
    if json {
        return Ok(Value::Array(rows));
    }
    let mut text = String::new();
    if rows.is_empty() {
        text.push_str(&format!("no networks in {}", dir.display()));
    }
    for row in &rows {
        if let Some(err) = row.get("error") {
            text.push_str(&format!(
                "{}: invalid: {}\n",
                row["file"].as_str().unwrap_or(""),
                err.as_str().unwrap_or("")
            ));
            continue;
        }
        text.push_str(&format!(
            "{} (cniVersion {}, {})\n",
            row["name"].as_str().unwrap_or(""),
            row["cniVersion"].as_str().unwrap_or(""),
            row["file"].as_str().unwrap_or("")
        ));
        for p in row["plugins"].as_array().into_iter().flatten() {
            let status = match p.get("supportedVersions").and_then(Value::as_array) {
                Some(v) => format!(
                    "speaks {}",
                    v.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => p["error"].as_str().unwrap_or("").to_string(),
            };
            text.push_str(&format!(
                "  {}: {status}\n",
                p["type"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(Value::String(text.trim_end().to_string()))
}

fn describe(runtime: &CniConfig, file: &Path, list: &NetworkConfigList) -> Value {
    let plugins: Vec<Value> = list
        .plugins
        .iter()
        .map(|p| match runtime.version_info(&p.plugin_type, &list.cni_version) {
            Ok(info) => json!({
                "type": p.plugin_type,
                "supportedVersions": info.get("supportedVersions").cloned().unwrap_or(Value::Null),
            }),
            Err(e) => json!({"type": p.plugin_type, "error": e.msg}),
        })
        .collect();
    json!({
        "name": list.name,
        "file": file.display().to_string(),
        "cniVersion": list.cni_version,
        "disableCheck": list.disable_check,
        "disableGC": list.disable_gc,
        "plugins": plugins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_matches_cnitool_derivation() {
        // sha512("/run/netns/x") starts with these 20 hex digits (computed with sha512sum).
        assert_eq!(
            default_container_id("/run/netns/x"),
            "cnitool-55e2cecc95014b0f7fc4"
        );
    }
}
