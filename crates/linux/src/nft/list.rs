//! What dumps return: tables, chains, rules, sets and set elements, decoded
//! from the kernel's attributes.

use super::batch::{ElementData, Hook, Policy, UDATA_RULE_COMMENT, UDATA_RULE_FINGERPRINT};
use super::expr::{
    Verdict, NFTA_DATA_VALUE, NFTA_DATA_VERDICT, NFTA_VERDICT_CHAIN, NFTA_VERDICT_CODE,
};
use super::nla::{parse, Attr};
use super::Family;

type Decode<T> = Result<T, String>;

/// A table as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Family.
    pub family: Family,
    /// Name.
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
    /// `NFT_TABLE_F_*` flags.
    pub flags: u32,
}

/// A chain as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// Family of its table.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
    /// Hook and priority of a base chain.
    pub hook: Option<(Hook, i32)>,
    /// Type of a base chain (`filter`, `nat`, `route`).
    pub chain_type: Option<String>,
    /// Policy of a base chain.
    pub policy: Option<Policy>,
}

/// A rule as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Family of its table.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub chain: String,
    /// Kernel handle (for [`crate::nft::Batch::delete_rule`]).
    pub handle: u64,
    /// The comment from the rule's user data.
    pub comment: Option<String>,
    /// Names of its expressions in order (`meta`, `cmp`, `lookup` ...).
    pub exprs: Vec<String>,
    /// The fingerprint Ferry wrote into the user data of its own rules.
    pub fingerprint: Option<u64>,
}

/// A set or map as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// Family of its table.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Set name.
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
    /// `NFT_SET_*` flags.
    pub flags: u32,
    /// nft datatype number of the key (concatenations packed 6 bits each).
    pub key_type: u32,
    /// Key length in bytes.
    pub key_len: u32,
    /// Data type of a map.
    pub data_type: Option<u32>,
}

/// A set element as the kernel lists it (raw bytes; interval sets list
/// start and end elements separately, ends flagged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementInfo {
    /// Key bytes.
    pub key: Vec<u8>,
    /// End key of a concatenated range.
    pub key_end: Option<Vec<u8>>,
    /// The value of a map element.
    pub data: Option<ElementData>,
    /// True for the end marker of a single-field interval.
    pub interval_end: bool,
}

fn family(raw: u8) -> Decode<Family> {
    Family::from_raw(raw).ok_or_else(|| format!("unknown nftables family {raw}"))
}

pub(crate) fn table(fam: u8, attrs: &[u8]) -> Decode<TableInfo> {
    let mut t = TableInfo {
        family: family(fam)?,
        name: String::new(),
        handle: 0,
        flags: 0,
    };
    for a in parse(attrs)? {
        match a.kind {
            1 => t.name = a.str(),
            2 => t.flags = a.be32()?,
            4 => t.handle = a.be64()?,
            _ => {}
        }
    }
    Ok(t)
}

pub(crate) fn chain(fam: u8, attrs: &[u8]) -> Decode<ChainInfo> {
    let mut c = ChainInfo {
        family: family(fam)?,
        table: String::new(),
        name: String::new(),
        handle: 0,
        hook: None,
        chain_type: None,
        policy: None,
    };
    for a in parse(attrs)? {
        match a.kind {
            1 => c.table = a.str(),
            2 => c.handle = a.be64()?,
            3 => c.name = a.str(),
            4 => {
                let mut num = None;
                let mut prio = 0i32;
                for h in a.nested()? {
                    match h.kind {
                        1 => num = Hook::from_raw(h.be32()?),
                        2 => prio = h.be32()? as i32,
                        _ => {}
                    }
                }
                c.hook = num.map(|n| (n, prio));
            }
            5 => {
                c.policy = Some(if a.be32()? == 1 {
                    Policy::Accept
                } else {
                    Policy::Drop
                })
            }
            7 => c.chain_type = Some(a.str()),
            _ => {}
        }
    }
    Ok(c)
}

pub(crate) fn rule(fam: u8, attrs: &[u8]) -> Decode<RuleInfo> {
    let mut r = RuleInfo {
        family: family(fam)?,
        table: String::new(),
        chain: String::new(),
        handle: 0,
        comment: None,
        exprs: Vec::new(),
        fingerprint: None,
    };
    for a in parse(attrs)? {
        match a.kind {
            1 => r.table = a.str(),
            2 => r.chain = a.str(),
            3 => r.handle = a.be64()?,
            4 => {
                for e in a.nested()? {
                    for f in e.nested()? {
                        if f.kind == 1 {
                            r.exprs.push(f.str());
                        }
                    }
                }
            }
            7 => {
                r.comment = udata_comment(a.value);
                r.fingerprint = udata_tlv(a.value, UDATA_RULE_FINGERPRINT)
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map(u64::from_be_bytes);
            }
            _ => {}
        }
    }
    Ok(r)
}

/// The value of the first TLV of type `kind` in rule user data.
fn udata_tlv(mut udata: &[u8], kind: u8) -> Option<&[u8]> {
    while udata.len() >= 2 {
        let (k, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if k == kind {
            return Some(value);
        }
        udata = &udata[2 + len..];
    }
    None
}

/// The comment TLV of rule user data (`type, len, value`).
fn udata_comment(udata: &[u8]) -> Option<String> {
    let value = udata_tlv(udata, UDATA_RULE_COMMENT)?;
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    Some(String::from_utf8_lossy(&value[..end]).into_owned())
}

pub(crate) fn set(fam: u8, attrs: &[u8]) -> Decode<SetInfo> {
    let mut s = SetInfo {
        family: family(fam)?,
        table: String::new(),
        name: String::new(),
        handle: 0,
        flags: 0,
        key_type: 0,
        key_len: 0,
        data_type: None,
    };
    for a in parse(attrs)? {
        match a.kind {
            1 => s.table = a.str(),
            2 => s.name = a.str(),
            3 => s.flags = a.be32()?,
            4 => s.key_type = a.be32()?,
            5 => s.key_len = a.be32()?,
            6 => s.data_type = Some(a.be32()?),
            16 => s.handle = a.be64()?,
            _ => {}
        }
    }
    Ok(s)
}

fn data_value(a: &Attr<'_>) -> Decode<Vec<u8>> {
    for d in a.nested()? {
        if d.kind == NFTA_DATA_VALUE {
            return Ok(d.value.to_vec());
        }
    }
    Err(format!("attribute {} holds no value", a.kind))
}

fn element_data(a: &Attr<'_>) -> Decode<ElementData> {
    for d in a.nested()? {
        match d.kind {
            NFTA_DATA_VALUE => {
                return Ok(ElementData::Value(vec![super::Value::Bytes(
                    d.value.to_vec(),
                )]))
            }
            NFTA_DATA_VERDICT => {
                let mut code = None;
                let mut chain = None;
                for v in d.nested()? {
                    match v.kind {
                        NFTA_VERDICT_CODE => code = Some(v.be32()? as i32),
                        NFTA_VERDICT_CHAIN => chain = Some(v.str()),
                        _ => {}
                    }
                }
                let code = code.ok_or("verdict without code")?;
                return Verdict::from_code(code, chain)
                    .map(ElementData::Verdict)
                    .ok_or_else(|| format!("unsupported verdict code {code}"));
            }
            _ => {}
        }
    }
    Err("element data holds neither value nor verdict".into())
}

/// The elements of one `NEWSETELEM` dump message.
pub(crate) fn elements(attrs: &[u8]) -> Decode<Vec<ElementInfo>> {
    let mut out = Vec::new();
    for a in parse(attrs)? {
        if a.kind != 3 {
            continue;
        }
        for e in a.nested()? {
            let mut el = ElementInfo {
                key: Vec::new(),
                key_end: None,
                data: None,
                interval_end: false,
            };
            for f in e.nested()? {
                match f.kind {
                    1 => el.key = data_value(&f)?,
                    2 => el.data = Some(element_data(&f)?),
                    3 => el.interval_end = f.be32()? & 1 != 0,
                    10 => el.key_end = Some(data_value(&f)?),
                    _ => {}
                }
            }
            out.push(el);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_tlv() {
        let mut u = vec![0u8, 4];
        u.extend_from_slice(b"abc\0");
        assert_eq!(udata_comment(&u).as_deref(), Some("abc"));
        assert_eq!(udata_comment(&[0, 9, 1]), None);
        assert_eq!(udata_comment(&[]), None);
    }
}
