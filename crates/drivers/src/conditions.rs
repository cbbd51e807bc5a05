//! `conditionsV4`/`conditionsV6` of the portmap plugin: extra matches a
//! packet must pass before its destination is rewritten.
//!
//! Accepted (tokens as in the reference's JSON arrays, either style):
//! - nft style: `ip saddr [==|!=] ADDR[/LEN]`, `ip daddr ...` (`ip6` in
//!   `conditionsV6`), `iifname [==|!=] NAME`;
//! - iptables style: `[!] -s|--source ADDR[/LEN]`, `[!] -d|--destination
//!   ...`, `[!] -i|--in-interface NAME`.
//!
//! Several matches all apply. Anything else is refused (code 7) naming the
//! token. Each distinct pair of lists is a *profile*: its own DNAT maps and
//! rules (`hostports4-ID` ...), so the containers sharing it still cost one
//! element each; profiles are remembered in the state directory and kept.

use std::path::{Path, PathBuf};

use ferry_linux::fs::{write_atomic, Durability};
use ferry_linux::nft::{CmpOp, Field, Rule, Value};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// Source (`src`) or destination address in `net`, or not.
    Addr {
        /// Source rather than destination.
        src: bool,
        /// Prefix (a single address is /32 or /128).
        net: IpNet,
        /// `!=`.
        negate: bool,
    },
    /// The input interface is (not) `name`.
    Iif {
        /// Interface name.
        name: String,
        /// `!=`.
        negate: bool,
    },
}

fn bad(tokens: &[String], why: String) -> Error {
    Error::Invalid(format!(
        "unsupported portmap condition {:?}: {why} (accepted: ip/ip6 saddr|daddr [!=] PREFIX, \
         iifname [!=] NAME, or [!] -s|-d PREFIX, [!] -i NAME)",
        tokens.join(" ")
    ))
}

/// Parses one family's list (`v6` for conditionsV6).
pub fn parse(tokens: &[String], v6: bool) -> Result<Vec<Cond>> {
    let mut out = Vec::new();
    let mut i = 0;
    let next = |i: &mut usize| -> Option<&str> {
        let t = tokens.get(*i).map(String::as_str);
        *i += 1;
        t
    };
    let addr = |s: Option<&str>| -> Result<IpNet> {
        let s = s.ok_or_else(|| bad(tokens, "missing address".into()))?;
        let net = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| bad(tokens, format!("{s:?} is not an address or prefix")))?;
        if net.addr().is_ipv6() != v6 {
            return Err(bad(
                tokens,
                format!("{s} is not an IPv{} address", if v6 { 6 } else { 4 }),
            ));
        }
        Ok(net)
    };
    while i < tokens.len() {
        let t = next(&mut i).unwrap_or("");
        match t {
            "ip" | "ip6" => {
                if (t == "ip6") != v6 {
                    return Err(bad(
                        tokens,
                        format!("{t} in conditionsV{}", if v6 { 6 } else { 4 }),
                    ));
                }
                let src = match next(&mut i) {
                    Some("saddr") => true,
                    Some("daddr") => false,
                    other => return Err(bad(tokens, format!("{other:?} after {t}"))),
                };
                let mut negate = false;
                let mut v = next(&mut i);
                if matches!(v, Some("!=") | Some("==")) {
                    negate = v == Some("!=");
                    v = next(&mut i);
                }
                out.push(Cond::Addr {
                    src,
                    net: addr(v)?,
                    negate,
                });
            }
            "iifname" => {
                let mut negate = false;
                let mut v = next(&mut i);
                if matches!(v, Some("!=") | Some("==")) {
                    negate = v == Some("!=");
                    v = next(&mut i);
                }
                out.push(Cond::Iif {
                    name: iface(tokens, v)?,
                    negate,
                });
            }
            _ => {
                let (negate, flag) = if t == "!" {
                    (true, next(&mut i).unwrap_or(""))
                } else {
                    (false, t)
                };
                match flag {
                    "-s" | "--source" | "-d" | "--destination" => out.push(Cond::Addr {
                        src: flag == "-s" || flag == "--source",
                        net: addr(next(&mut i))?,
                        negate,
                    }),
                    "-i" | "--in-interface" => out.push(Cond::Iif {
                        name: iface(tokens, next(&mut i))?,
                        negate,
                    }),
                    other => return Err(bad(tokens, format!("{other:?} is not accepted"))),
                }
            }
        }
    }
    Ok(out)
}

fn iface(tokens: &[String], v: Option<&str>) -> Result<String> {
    let v = v.ok_or_else(|| bad(tokens, "missing interface name".into()))?;
    let v = v.trim_matches('"');
    if v.is_empty() || v.len() > 15 || v.contains(['/', ' ', '\0']) {
        return Err(bad(tokens, format!("{v:?} is not an interface name")));
    }
    Ok(v.to_string())
}

/// Appends the matches to a rule (after its `meta nfproto` check).
pub fn apply(mut rule: Rule, conds: &[Cond]) -> Rule {
    for c in conds {
        match c {
            Cond::Addr { src, net, negate } => {
                let op = if *negate { CmpOp::Neq } else { CmpOp::Eq };
                rule = rule.addr_cmp(*net, *src, op);
            }
            Cond::Iif { name, negate } => {
                let op = if *negate { CmpOp::Neq } else { CmpOp::Eq };
                rule = rule.cmp(Field::Iifname, op, Value::Ifname(name.clone()));
            }
        }
    }
    rule
}

/// A set of conditions as configured: both lists, kept as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// conditionsV4.
    pub v4: Vec<String>,
    /// conditionsV6.
    pub v6: Vec<String>,
}

impl Profile {
    /// Validates both lists; `None` when both are empty (no profile).
    pub fn new(v4: Vec<String>, v6: Vec<String>) -> Result<Option<Profile>> {
        if v4.is_empty() && v6.is_empty() {
            return Ok(None);
        }
        parse(&v4, false)?;
        parse(&v6, true)?;
        Ok(Some(Profile { v4, v6 }))
    }

    /// A short stable name: FNV-1a of the lists, 8 hex digits.
    pub fn id(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let text = format!("{:?}|{:?}", self.v4, self.v6);
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
    }

    /// The parsed matches of each family.
    pub fn conds(&self) -> Result<[Vec<Cond>; 2]> {
        Ok([parse(&self.v4, false)?, parse(&self.v6, true)?])
    }
}

/// Where profiles are remembered: `ROOT/portmap-profiles/ID.json`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("portmap-profiles")
}

/// Remembers a profile (no-op when known).
pub fn save(root: &Path, p: &Profile) -> Result<()> {
    let d = dir(root);
    let path = d.join(format!("{}.json", p.id()));
    if path.exists() {
        return Ok(());
    }
    let io = |context, source| Error::Io {
        context,
        path: path.clone(),
        source,
    };
    ferry_linux::fs::create_state_dir(&d, 0o755)
        .map_err(|e| io("failed to create the directory of", e))?;
    let bytes = serde_json::to_vec(p).map_err(|e| io("failed to encode", e.into()))?;
    write_atomic(&path, &bytes, 0o666, Durability::Synced).map_err(|e| io("failed to write", e))
}

/// Every remembered profile, sorted by id (unreadable files are skipped).
pub fn all(root: &Path) -> Vec<Profile> {
    let mut out: Vec<Profile> = std::fs::read_dir(dir(root))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice::<Profile>(&b).ok())
                .filter(|p| p.conds().is_ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(Profile::id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn profiles_are_not_kept_through_a_planted_link() {
        ferry_testkit::require_root();
        let p = ferry_testkit::PlantedLink::new();
        let profile = Profile::new(s(&["!", "-d", "192.0.2.0/24"]), vec![])
            .unwrap()
            .unwrap();
        let e = save(&p.link, &profile).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        p.assert_untouched("the portmap conditions profile");
    }

    #[test]
    fn both_styles_parse() {
        assert_eq!(
            parse(&s(&["ip", "daddr", "!=", "192.0.2.0/24"]), false).unwrap(),
            vec![Cond::Addr {
                src: false,
                net: "192.0.2.0/24".parse().unwrap(),
                negate: true
            }]
        );
        assert_eq!(
            parse(&s(&["!", "-d", "192.0.2.0/24", "-i", "eth0"]), false)
                .unwrap()
                .len(),
            2
        );
        assert!(parse(&s(&["ip6", "saddr", "fc00::/7"]), true).is_ok());
        assert!(parse(&s(&["ip", "daddr", "fc00::/7"]), false).is_err());
        assert!(parse(&s(&["ip6", "daddr", "fc00::/7"]), false).is_err());
        assert!(parse(&s(&["-m", "comment"]), false).is_err());
        assert!(parse(&s(&["meta", "mark", "1"]), false).is_err());
        assert!(parse(&s(&["ip", "daddr"]), false).is_err());
        assert!(Profile::new(vec![], vec![]).unwrap().is_none());
        let p = Profile::new(s(&["! -d 192.0.2.0/24"]), vec![]);
        assert!(p.is_err(), "one token per array element, as the reference");
        let p = Profile::new(s(&["!", "-d", "192.0.2.0/24"]), vec![])
            .unwrap()
            .unwrap();
        assert_eq!(p.id().len(), 8);
    }
}
