//! The `request` and `provide` options of the config, as the reference
//! reads them: an option is a name from dhcp-options(5) the reference knows
//! or a number 0-255; `provide` sends `value`, or the CNI_ARGS value named
//! by `fromArg`; `request` adds to the default Parameter Request List unless
//! an entry has `skipDefault`. The client identifier is
//! `CONTAINERID/NETWORK/IFNAME` (at most 254 bytes) unless provided.

use ferry_cni::{CniError, CniResult};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProvideOption {
    #[serde(default)]
    pub option: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, rename = "fromArg")]
    pub from_arg: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestOption {
    #[serde(default, rename = "skipDefault")]
    pub skip_default: bool,
    #[serde(default)]
    pub option: String,
}

pub const SUBNET_MASK: u8 = 1;
pub const ROUTER: u8 = 3;
pub const DNS: u8 = 6;
pub const STATIC_ROUTES: u8 = 33;
pub const CLIENT_ID: u8 = 61;
pub const CLASSLESS_ROUTES: u8 = 121;

/// Asked for unless `skipDefault`: what the result is made of.
const DEFAULT_REQUEST: &[u8] = &[SUBNET_MASK, ROUTER, DNS, STATIC_ROUTES, CLASSLESS_ROUTES];

/// The option names the reference accepts.
const NAMES: &[(&str, u8)] = &[
    ("dhcp-client-identifier", CLIENT_ID),
    ("subnet-mask", SUBNET_MASK),
    ("routers", ROUTER),
    ("host-name", 12),
    ("user-class", 77),
    ("vendor-class-identifier", 60),
];

/// An option name or number; anything else is invalid config (7).
pub fn parse_name(option: &str) -> CniResult<u8> {
    if let Some((_, code)) = NAMES.iter().find(|(n, _)| *n == option) {
        return Ok(*code);
    }
    option.parse::<u8>().map_err(|_| {
        let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
        CniError::invalid_config(format!(
            "dhcp: unknown DHCP option {option:?}: use a number 0-255 or one of {}",
            names.join(", ")
        ))
    })
}

/// The client identifier of an attachment, as the reference derives it.
pub fn client_id(container_id: &str, network: &str, ifname: &str) -> Vec<u8> {
    let mut id = format!("{container_id}/{network}/{ifname}").into_bytes();
    id.truncate(254);
    id
}

/// An option sent: its code and its bytes.
pub type Sent = (u8, Vec<u8>);

/// The options asked for and the options sent (client identifier
/// included) for a request with CNI_ARGS `cni_args`.
pub fn prepare(
    cni_args: &[(String, String)],
    provide: &[ProvideOption],
    request: &[RequestOption],
    client_id: Vec<u8>,
) -> CniResult<(Vec<u8>, Vec<Sent>)> {
    let mut sent: Vec<Sent> = vec![(CLIENT_ID, client_id)];
    for p in provide {
        let code = parse_name(&p.option)?;
        let mut value = (!p.value.is_empty()).then(|| p.value.clone());
        if !p.from_arg.is_empty() {
            if let Some((_, v)) = cni_args.iter().rev().find(|(k, _)| *k == p.from_arg) {
                value = Some(v.clone());
            }
        }
        let Some(value) = value else { continue };
        if value.len() > 255 {
            return Err(CniError::invalid_config(format!(
                "dhcp: the value of option {:?} is longer than 255 bytes",
                p.option
            )));
        }
        sent.retain(|(c, _)| *c != code);
        sent.push((code, value.into_bytes()));
    }
    let mut asked = Vec::new();
    let mut skip_default = false;
    for r in request {
        skip_default |= r.skip_default;
        if r.option.is_empty() {
            continue;
        }
        let code = parse_name(&r.option)?;
        if !asked.contains(&code) {
            asked.push(code);
        }
    }
    if !skip_default {
        for code in DEFAULT_REQUEST {
            if !asked.contains(code) {
                asked.push(*code);
            }
        }
    }
    Ok((asked, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_errors() {
        assert_eq!(parse_name("routers").unwrap(), 3);
        assert_eq!(parse_name("119").unwrap(), 119);
        assert_eq!(parse_name("router").unwrap_err().code, 7);
        assert_eq!(parse_name("256").unwrap_err().code, 7);
    }

    #[test]
    fn prepare_defaults_provide_and_args() {
        let args = vec![("HOST".to_string(), "box1".to_string())];
        let provide = vec![
            ProvideOption {
                option: "host-name".into(),
                value: "fallback".into(),
                from_arg: "HOST".into(),
            },
            ProvideOption {
                option: "60".into(),
                value: "ferry".into(),
                from_arg: String::new(),
            },
        ];
        let (asked, sent) = prepare(&args, &provide, &[], client_id("c", "n", "eth0")).unwrap();
        assert_eq!(asked, DEFAULT_REQUEST);
        assert_eq!(
            sent,
            vec![
                (CLIENT_ID, b"c/n/eth0".to_vec()),
                (12, b"box1".to_vec()),
                (60, b"ferry".to_vec())
            ]
        );
        let request = vec![RequestOption {
            skip_default: true,
            option: "subnet-mask".into(),
        }];
        let (asked, _) = prepare(&[], &[], &request, vec![]).unwrap();
        assert_eq!(asked, vec![SUBNET_MASK]);
        assert_eq!(client_id(&"x".repeat(300), "n", "e").len(), 254);
    }
}
