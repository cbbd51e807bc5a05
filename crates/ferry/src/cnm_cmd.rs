//! The CNM commands: `ferry network`, `ferry sandbox`, `ferry connect`,
//! `ferry disconnect`, `ferry swap`, `ferry service` and `ferry hosts`, all
//! calls to ferryd's API.

use crate::api;
use crate::cli::{NetworkCommand, SandboxCommand, ServiceCommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where ferryd listens and how to print.
pub struct ApiArgs {
    pub api_socket: PathBuf,
    pub json: bool,
}

/// One service as a table row: name, network, addresses, ports, sandbox.
fn service_row(s: &Value) -> String {
    let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
    let addrs: Vec<String> = ["address", "address_v6"]
        .iter()
        .map(|k| text(k))
        .filter(|a| !a.is_empty())
        .collect();
    let ports: Vec<String> = s["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}:{}/{}",
                p["host_port"],
                p["port"],
                p["proto"].as_str().unwrap_or("")
            )
        })
        .collect();
    let or_dash = |v: String| if v.is_empty() { "-".to_string() } else { v };
    format!(
        "{:<20} {:<16} {:<40} {:<24} {}",
        text("name"),
        text("network"),
        or_dash(addrs.join(",")),
        or_dash(ports.join(",")),
        or_dash(text("sandbox"))
    )
}

pub fn service(api: &ApiArgs, cmd: ServiceCommand) -> ExitCode {
    let sock = &api.api_socket;
    finish((|| {
        let svc = match cmd {
            ServiceCommand::Create {
                name,
                network,
                address,
                publish,
            } => {
                let body = json!({"name": name, "network": network, "addresses": address,
                                  "publish": publish});
                api::call(sock, "POST", "/services", Some(&body))?
            }
            ServiceCommand::Attach { name, sandbox } => api::call(
                sock,
                "POST",
                "/services/attach",
                Some(&json!({"service": name, "sandbox": sandbox})),
            )?,
            ServiceCommand::Move { name, sandbox } => api::call(
                sock,
                "POST",
                "/services/move",
                Some(&json!({"service": name, "sandbox": sandbox})),
            )?,
            ServiceCommand::Detach { name } => api::call(
                sock,
                "POST",
                "/services/detach",
                Some(&json!({ "service": name })),
            )?,
            ServiceCommand::Rm { name } => {
                api::call(sock, "DELETE", &format!("/services/{name}"), None)?;
                return Ok(());
            }
            ServiceCommand::Ls => {
                let list = api::call(sock, "GET", "/services", None)?;
                print(&list, api.json, |l| {
                    let mut out = format!(
                        "{:<20} {:<16} {:<40} {:<24} {}",
                        "NAME", "NETWORK", "ADDRESSES", "PORTS", "SANDBOX"
                    );
                    for s in l.as_array().into_iter().flatten() {
                        out.push('\n');
                        out.push_str(&service_row(s));
                    }
                    out
                });
                return Ok(());
            }
        };
        print(&svc, api.json, service_row);
        Ok(())
    })())
}

fn print(v: &Value, json_out: bool, text: impl FnOnce(&Value) -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", text(v));
    }
}

fn finish(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn subnets(n: &Value) -> String {
    n["ipv4"]
        .as_array()
        .into_iter()
        .chain(n["ipv6"].as_array())
        .flatten()
        .map(|d| d["Pool"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_route(s: &str) -> Result<Value, String> {
    let (dst, gw) = match s.split_once(',') {
        Some((d, g)) => (d, Some(g)),
        None => (s, None),
    };
    let dst: ipnet::IpNet = dst.parse().map_err(|e| format!("route {s:?}: {e}"))?;
    let gw = gw
        .map(|g| {
            g.parse::<std::net::IpAddr>()
                .map_err(|e| format!("route {s:?}: {e}"))
        })
        .transpose()?;
    Ok(json!({"dst": dst, "gateway": gw}))
}

pub fn network(api: &ApiArgs, cmd: NetworkCommand) -> ExitCode {
    let sock = &api.api_socket;
    finish((|| {
        match cmd {
            NetworkCommand::Create {
                name,
                subnet,
                ipv6,
                internal,
                mtu,
                bridge,
                route,
                driver,
                opt,
            } => {
                let routes = route
                    .iter()
                    .map(|r| parse_route(r))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut options = serde_json::Map::new();
                for o in &opt {
                    let (k, v) = o
                        .split_once('=')
                        .ok_or(format!("-o {o:?}: expected KEY=VALUE"))?;
                    options.insert(k.to_string(), v.into());
                }
                let body = json!({"name": name, "subnets": subnet, "ipv6": ipv6, "internal": internal,
                                  "mtu": mtu, "bridge": bridge, "routes": routes, "driver": driver,
                                  "options": options});
                let n = api::call(sock, "POST", "/networks", Some(&body))?;
                print(&n, api.json, |n| {
                    format!(
                        "{name} {} {}",
                        n["bridge"].as_str().unwrap_or(""),
                        subnets(n)
                    )
                });
            }
            NetworkCommand::Ls => {
                let list = api::call(sock, "GET", "/networks", None)?;
                print(&list, api.json, |l| {
                    let mut out = format!("{:<20} {:<16} {}", "NAME", "BRIDGE", "SUBNETS");
                    for n in l.as_array().into_iter().flatten() {
                        let name = n["name"].as_str().map(str::to_string).unwrap_or_else(|| {
                            format!(
                                "(docker) {}",
                                &n["id"].as_str().unwrap_or("")
                                    [..12.min(n["id"].as_str().unwrap_or("").len())]
                            )
                        });
                        out.push_str(&format!(
                            "\n{:<20} {:<16} {}",
                            name,
                            n["bridge"].as_str().unwrap_or(""),
                            subnets(n)
                        ));
                    }
                    out
                });
            }
            NetworkCommand::Inspect { name } => {
                let mut n = api::call(sock, "GET", &format!("/networks/{name}"), None)?;
                // An overlay network also shows its cluster side: VNI, hosts, blocks, endpoints.
                if n["driver"]["kind"] == "overlay" {
                    n["cluster"] =
                        api::call(sock, "GET", &format!("/networks/{name}/cluster"), None)?;
                }
                println!("{}", serde_json::to_string_pretty(&n).unwrap_or_default());
            }
            NetworkCommand::Rm { name } => {
                api::call(sock, "DELETE", &format!("/networks/{name}"), None)?;
            }
        }
        Ok(())
    })())
}

pub fn sandbox(api: &ApiArgs, cmd: SandboxCommand) -> ExitCode {
    let sock = &api.api_socket;
    finish((|| {
        match cmd {
            SandboxCommand::Create { name, path } => {
                let s = api::call(
                    sock,
                    "POST",
                    "/sandboxes",
                    Some(&json!({"name": name, "path": path})),
                )?;
                print(&s, api.json, |s| {
                    format!("{name} {}", s["path"].as_str().unwrap_or(""))
                });
            }
            SandboxCommand::Ls => {
                let list = api::call(sock, "GET", "/sandboxes", None)?;
                print(&list, api.json, |l| {
                    let mut out = format!("{:<20} {}", "NAME", "NAMESPACE");
                    for s in l.as_array().into_iter().flatten() {
                        out.push_str(&format!(
                            "\n{:<20} {}",
                            s["name"].as_str().unwrap_or(""),
                            s["path"].as_str().unwrap_or("")
                        ));
                    }
                    out
                });
            }
            SandboxCommand::Inspect { name } => {
                let s = api::call(sock, "GET", &format!("/sandboxes/{name}"), None)?;
                println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            }
            SandboxCommand::Rm { name } => {
                api::call(sock, "DELETE", &format!("/sandboxes/{name}"), None)?;
            }
        }
        Ok(())
    })())
}

pub fn connect(
    api: &ApiArgs,
    network: String,
    sandbox: String,
    ifname: Option<String>,
    priority: i32,
    aliases: Vec<String>,
) -> ExitCode {
    finish((|| {
        let body = json!({"network": network, "sandbox": sandbox, "ifname": ifname,
            "priority": priority, "aliases": aliases});
        let ep = api::call(&api.api_socket, "POST", "/connect", Some(&body))?;
        print(&ep, api.json, |e| {
            format!(
                "{} {} {}",
                e["ifname"].as_str().unwrap_or(""),
                e["address"].as_str().unwrap_or(""),
                e["address_v6"].as_str().unwrap_or("")
            )
            .trim()
            .to_string()
        });
        Ok(())
    })())
}

pub fn disconnect(api: &ApiArgs, network: String, sandbox: String) -> ExitCode {
    finish(
        api::call(
            &api.api_socket,
            "POST",
            "/disconnect",
            Some(&json!({"network": network, "sandbox": sandbox})),
        )
        .map(|_| ()),
    )
}

pub fn swap(api: &ApiArgs, sandbox: String, from: String, to: String) -> ExitCode {
    finish((|| {
        let ep = api::call(
            &api.api_socket,
            "POST",
            "/swap",
            Some(&json!({"sandbox": sandbox, "from": from, "to": to})),
        )?;
        print(&ep, api.json, |e| {
            format!(
                "{} {}",
                e["ifname"].as_str().unwrap_or(""),
                e["address"].as_str().unwrap_or("")
            )
        });
        Ok(())
    })())
}

/// `ferry hosts`: the cluster's hosts, their VTEPs and lease ages.
pub fn hosts(api: &ApiArgs) -> ExitCode {
    finish((|| {
        let list = api::call(&api.api_socket, "GET", "/hosts", None)?;
        print(&list, api.json, |l| {
            let mut out = format!("{:<20} {:<40} {}", "HOST", "VTEP", "LEASE AGE");
            for h in l.as_array().into_iter().flatten() {
                let this = if h["this_host"] == true {
                    "  (this host)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "\n{:<20} {:<40} {}s{this}",
                    h["id"].as_str().unwrap_or(""),
                    h["vtep"].as_str().unwrap_or(""),
                    h["lease_age_secs"].as_u64().unwrap_or(0)
                ));
            }
            out
        });
        Ok(())
    })())
}
