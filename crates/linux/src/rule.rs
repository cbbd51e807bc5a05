//! FIB rules (policy routing, `ip rule`): which routing table a packet is
//! looked up in, chosen by source, destination, mark or interface.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::addr::Family;
use crate::error::{Error, Result};
use crate::socket::Netlink;

/// `FR_ACT_TO_TBL`: look the packet up in the rule's table.
pub const RULE_ACTION_TO_TABLE: u8 = 1;

/// A FIB rule, both to add and as listed.
///
/// On adding, `None` fields are not sent: the kernel picks the priority
/// (one below the lowest non-zero one in use, as `ip rule add` does), and
/// a rule without `src` or `dst` matches every address of its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `true` for IPv6, `false` for IPv4.
    pub ipv6: bool,
    /// Priority (preference); lower runs first.
    pub priority: Option<u32>,
    /// Source prefix to match (`from`).
    pub src: Option<IpNet>,
    /// Destination prefix to match (`to`).
    pub dst: Option<IpNet>,
    /// Table to look up (for the to-table action).
    pub table: u32,
    /// Action (`FR_ACT_*`); [`RULE_ACTION_TO_TABLE`] by default.
    pub action: u8,
    /// Firewall mark to match.
    pub fwmark: Option<u32>,
    /// Mask for `fwmark`.
    pub fwmask: Option<u32>,
    /// Incoming interface name to match (`iif`).
    pub iif: Option<String>,
    /// Outgoing interface name to match (`oif`).
    pub oif: Option<String>,
    /// Who installed the rule (`RTPROT_*`), when the kernel reports it.
    pub protocol: Option<u8>,
}

impl Rule {
    /// `from <src> lookup <table>`; the family is the source's.
    pub fn from_src(src: IpNet, table: u32) -> Rule {
        Rule {
            ipv6: matches!(src, IpNet::V6(_)),
            priority: None,
            src: Some(src),
            dst: None,
            table,
            action: RULE_ACTION_TO_TABLE,
            fwmark: None,
            fwmask: None,
            iif: None,
            oif: None,
            protocol: None,
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = Some(p);
        self
    }

    fn to_message(&self) -> Result<RuleMessage> {
        let family = if self.ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let mut m = RuleMessage::default();
        m.header.family = family;
        m.header.action = RuleAction::from(self.action);
        // Tables above 255 only fit in FRA_TABLE; the header says "unspec" then.
        m.header.table = u8::try_from(self.table).unwrap_or(0);
        for (net, is_src) in [(self.src, true), (self.dst, false)] {
            let Some(net) = net else { continue };
            let net = net.trunc();
            if matches!(net, IpNet::V6(_)) != self.ipv6 {
                return Err(Error::InvalidArgument(format!(
                    "rule prefix {net} is not of the rule's address family"
                )));
            }
            if is_src {
                m.header.src_len = net.prefix_len();
                if net.prefix_len() > 0 {
                    m.attributes.push(RuleAttribute::Source(net.addr()));
                }
            } else {
                m.header.dst_len = net.prefix_len();
                if net.prefix_len() > 0 {
                    m.attributes.push(RuleAttribute::Destination(net.addr()));
                }
            }
        }
        if self.table > 0 {
            m.attributes.push(RuleAttribute::Table(self.table));
        }
        if let Some(p) = self.priority {
            m.attributes.push(RuleAttribute::Priority(p));
        }
        if let Some(mark) = self.fwmark {
            m.attributes.push(RuleAttribute::FwMark(mark));
        }
        if let Some(mask) = self.fwmask {
            m.attributes.push(RuleAttribute::FwMask(mask));
        }
        if let Some(i) = &self.iif {
            m.attributes.push(RuleAttribute::Iifname(i.clone()));
        }
        if let Some(o) = &self.oif {
            m.attributes.push(RuleAttribute::Oifname(o.clone()));
        }
        Ok(m)
    }

    pub(crate) fn from_message(m: RuleMessage) -> Option<Rule> {
        let ipv6 = match m.header.family {
            AddressFamily::Inet => false,
            AddressFamily::Inet6 => true,
            _ => return None,
        };
        let mut r = Rule {
            ipv6,
            priority: None,
            src: None,
            dst: None,
            table: u32::from(m.header.table),
            action: u8::from(m.header.action),
            fwmark: None,
            fwmask: None,
            iif: None,
            oif: None,
            protocol: None,
        };
        let (src_len, dst_len) = (m.header.src_len, m.header.dst_len);
        for a in m.attributes {
            match a {
                RuleAttribute::Source(ip) => r.src = net_of(ip, src_len),
                RuleAttribute::Destination(ip) => r.dst = net_of(ip, dst_len),
                RuleAttribute::Table(t) => r.table = t,
                RuleAttribute::Priority(p) => r.priority = Some(p),
                RuleAttribute::FwMark(v) => r.fwmark = Some(v),
                RuleAttribute::FwMask(v) => r.fwmask = Some(v),
                RuleAttribute::Iifname(v) => r.iif = Some(v),
                RuleAttribute::Oifname(v) => r.oif = Some(v),
                RuleAttribute::Protocol(p) => r.protocol = Some(u8::from(p)),
                _ => {}
            }
        }
        Some(r)
    }
}

fn net_of(ip: IpAddr, len: u8) -> Option<IpNet> {
    IpNet::new(ip, len).ok()
}

impl Netlink {
    /// Adds a rule; fails with `EEXIST` when an equal one exists.
    pub fn add_rule(&mut self, rule: &Rule) -> Result<()> {
        let m = rule.to_message()?;
        self.ack(
            RouteNetlinkMessage::NewRule(m),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add rule {}", describe(rule)),
        )
    }

    /// Deletes the first rule matching the set fields (a listed rule
    /// matches itself); fails with `ENOENT` when there is none.
    pub fn del_rule(&mut self, rule: &Rule) -> Result<()> {
        let m = rule.to_message()?;
        self.ack(
            RouteNetlinkMessage::DelRule(m),
            0,
            &format!("delete rule {}", describe(rule)),
        )
    }

    /// Lists the rules of `family` (both families for [`Family::All`]).
    pub fn rules(&mut self, family: Family) -> Result<Vec<Rule>> {
        let mut out = Vec::new();
        let families: &[Family] = match family {
            // An AF_UNSPEC dump is answered per family by the kernel, but
            // asking each family keeps the order stable: IPv4, then IPv6.
            Family::All => &[Family::V4, Family::V6],
            Family::V4 => &[Family::V4],
            Family::V6 => &[Family::V6],
        };
        for f in families {
            let mut req = RuleMessage::default();
            req.header.family = f.to_nl();
            let replies = self.dump(RouteNetlinkMessage::GetRule(req), "list rules")?;
            out.extend(replies.into_iter().filter_map(|r| match r {
                RouteNetlinkMessage::NewRule(m) => Rule::from_message(m),
                _ => None,
            }));
        }
        Ok(out)
    }
}

fn describe(r: &Rule) -> String {
    let from = r
        .src
        .map(|s| s.to_string())
        .unwrap_or_else(|| "all".to_string());
    format!("from {from} lookup {}", r.table)
}
