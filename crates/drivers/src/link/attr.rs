//! Link details ferry-linux's `Link` does not carry yet, read and written
//! with raw rtnetlink messages: the macvlan mode, the interface alias
//! (`IFLA_IFALIAS`, where host-device keeps a device's original name), and a
//! move into another namespace that renames and sets the alias in the same
//! message. Also the random temporary names of macvlan and tap.

use crate::{Error, Result};
use ferry_linux::raw::route::link::{InfoData, InfoMacVlan, LinkAttribute, LinkInfo, LinkMessage};
use ferry_linux::raw::route::RouteNetlinkMessage;
use ferry_linux::{MacvlanMode, Netlink, Netns};
use std::os::fd::AsRawFd;

/// A fresh name `<prefix>` + 8 random hex digits (the reference's
/// `RandomVethName` shape when `prefix` is `veth`).
pub fn random_name(prefix: &str) -> Result<String> {
    let mut buf = [0u8; 4];
    // SAFETY: buf is a valid, writable 4-byte buffer for the duration of the call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        return Err(Error::System {
            context: "getrandom for an interface name".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(format!("{prefix}{:08x}", u32::from_be_bytes(buf)))
}

/// The kernel's full description of link `index`.
fn link_message(nl: &mut Netlink, index: u32) -> ferry_linux::Result<LinkMessage> {
    let mut req = LinkMessage::default();
    req.header.index = index;
    let op = format!("get link #{index}");
    for reply in nl.request(RouteNetlinkMessage::GetLink(req), 0, &op)? {
        if let RouteNetlinkMessage::NewLink(m) = reply {
            return Ok(m);
        }
    }
    Err(ferry_linux::Error::Protocol {
        op,
        message: "the kernel acknowledged without sending the link".into(),
    })
}

/// The macvlan mode of link `index`; `None` when it is no macvlan or the
/// mode is one Ferry does not create (source).
pub fn macvlan_mode(nl: &mut Netlink, index: u32) -> Result<Option<MacvlanMode>> {
    use ferry_linux::raw::route::link::MacVlanMode as M;
    let msg =
        link_message(nl, index).map_err(Error::kernel(format!("failed to read link #{index}")))?;
    for attr in msg.attributes {
        let LinkAttribute::LinkInfo(infos) = attr else {
            continue;
        };
        for info in infos {
            let LinkInfo::Data(InfoData::MacVlan(data)) = info else {
                continue;
            };
            for d in data {
                if let InfoMacVlan::Mode(m) = d {
                    return Ok(match m {
                        M::Bridge => Some(MacvlanMode::Bridge),
                        M::Private => Some(MacvlanMode::Private),
                        M::Vepa => Some(MacvlanMode::Vepa),
                        M::Passthrough => Some(MacvlanMode::Passthru),
                        _ => None,
                    });
                }
            }
        }
    }
    Ok(None)
}

/// The alias (`ip link set NAME alias TEXT`) of link `index`, empty when unset.
pub fn alias(nl: &mut Netlink, index: u32) -> Result<String> {
    let msg =
        link_message(nl, index).map_err(Error::kernel(format!("failed to read link #{index}")))?;
    Ok(msg
        .attributes
        .into_iter()
        .find_map(|a| match a {
            LinkAttribute::IfAlias(s) => Some(s),
            _ => None,
        })
        .unwrap_or_default())
}

/// Moves link `index` into `netns`, renaming it to `new_name` and setting
/// its alias to `alias` in the same request. The kernel applies the name as
/// part of the move, so a device of the same name in the target namespace
/// does not get in the way, and a refused move changes nothing.
pub fn move_rename(
    nl: &mut Netlink,
    index: u32,
    netns: &Netns,
    new_name: &str,
    alias: Option<&str>,
) -> ferry_linux::Result<()> {
    ferry_linux::check_ifname(new_name)?;
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
    m.attributes
        .push(LinkAttribute::IfName(new_name.to_string()));
    if let Some(a) = alias {
        m.attributes.push(LinkAttribute::IfAlias(a.to_string()));
    }
    nl.ack(
        RouteNetlinkMessage::SetLink(m),
        0,
        &format!(
            "move link #{index} to {} as {new_name}",
            netns.path().display()
        ),
    )
}
