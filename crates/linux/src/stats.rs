//! The kernel's refusals, counted per process by socket (`netlink` for
//! rtnetlink, `nftables`), operation (the request's message type) and
//! errno, so a daemon can export them (ferryd's `ferry_netlink_errors_total`
//! and `ferry_nftables_errors_total`). Only failures touch the counters.

use crate::Error;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// `(socket, operation, errno)`: e.g. `("netlink", "RTM_NEWLINK", "EEXIST")`.
pub type ErrorKey = (&'static str, &'static str, String);

static ERRORS: Mutex<BTreeMap<ErrorKey, u64>> = Mutex::new(BTreeMap::new());

/// Every refusal counted so far in this process.
pub fn errors() -> Vec<(ErrorKey, u64)> {
    let map = ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    map.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

fn record(socket: &'static str, operation: &'static str, e: &Error) {
    // The errno's name (`EEXIST`); failures without one are named by kind.
    let errno = match e {
        Error::Kernel { errno, .. } => format!("{:?}", nix::errno::Errno::from_raw(*errno)),
        Error::Io { .. } => "io".into(),
        Error::Decode { .. } | Error::Protocol { .. } => "protocol".into(),
        _ => "other".into(),
    };
    let mut map = ERRORS.lock().unwrap_or_else(|p| p.into_inner());
    *map.entry((socket, operation, errno)).or_insert(0) += 1;
}

/// Counts an rtnetlink request of `message_type` that failed with `e`.
pub(crate) fn netlink_error(message_type: u16, e: &Error) {
    record("netlink", rtm_name(message_type), e);
}

/// Counts an nftables batch refused at a message of `kind` (`None`: the
/// batch as a whole), or a dump that failed.
pub(crate) fn nftables_error(kind: Option<u8>, e: &Error) {
    record("nftables", kind.map_or("batch", nft_name), e);
}

/// `RTM_GET*`: the message types from RTM_NEWLINK (16) come in fours,
/// NEW, DEL, GET, SET.
pub(crate) fn is_rtm_get(t: u16) -> bool {
    t >= 16 && (t - 16) % 4 == 2
}

fn rtm_name(t: u16) -> &'static str {
    match t {
        16 => "RTM_NEWLINK",
        17 => "RTM_DELLINK",
        18 => "RTM_GETLINK",
        19 => "RTM_SETLINK",
        20 => "RTM_NEWADDR",
        21 => "RTM_DELADDR",
        22 => "RTM_GETADDR",
        24 => "RTM_NEWROUTE",
        25 => "RTM_DELROUTE",
        26 => "RTM_GETROUTE",
        28 => "RTM_NEWNEIGH",
        29 => "RTM_DELNEIGH",
        30 => "RTM_GETNEIGH",
        32 => "RTM_NEWRULE",
        33 => "RTM_DELRULE",
        34 => "RTM_GETRULE",
        36 => "RTM_NEWQDISC",
        37 => "RTM_DELQDISC",
        38 => "RTM_GETQDISC",
        40 => "RTM_NEWTCLASS",
        41 => "RTM_DELTCLASS",
        42 => "RTM_GETTCLASS",
        44 => "RTM_NEWTFILTER",
        45 => "RTM_DELTFILTER",
        46 => "RTM_GETTFILTER",
        88 => "RTM_NEWNSID",
        90 => "RTM_GETNSID",
        _ => "RTM_OTHER",
    }
}

fn nft_name(kind: u8) -> &'static str {
    match kind {
        0 => "NFT_MSG_NEWTABLE",
        1 => "NFT_MSG_GETTABLE",
        2 => "NFT_MSG_DELTABLE",
        3 => "NFT_MSG_NEWCHAIN",
        4 => "NFT_MSG_GETCHAIN",
        5 => "NFT_MSG_DELCHAIN",
        6 => "NFT_MSG_NEWRULE",
        7 => "NFT_MSG_GETRULE",
        8 => "NFT_MSG_DELRULE",
        9 => "NFT_MSG_NEWSET",
        10 => "NFT_MSG_GETSET",
        11 => "NFT_MSG_DELSET",
        12 => "NFT_MSG_NEWSETELEM",
        13 => "NFT_MSG_GETSETELEM",
        14 => "NFT_MSG_DELSETELEM",
        30 => "NFT_MSG_DESTROYSETELEM",
        _ => "NFT_MSG_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_socket_operation_and_errno() {
        let refused = Error::Kernel {
            op: "create link".into(),
            errno: libc::EEXIST,
            detail: String::new(),
        };
        let before = |k: &ErrorKey| errors().into_iter().find(|e| &e.0 == k).map_or(0, |e| e.1);
        let key = ("netlink", "RTM_NEWLINK", "EEXIST".to_string());
        let was = before(&key);
        netlink_error(16, &refused);
        netlink_error(16, &refused);
        assert_eq!(before(&key), was + 2);
        let nft = ("nftables", "NFT_MSG_NEWRULE", "EEXIST".to_string());
        let was = before(&nft);
        nftables_error(Some(6), &refused);
        assert_eq!(before(&nft), was + 1);
        assert!(is_rtm_get(18) && is_rtm_get(26) && !is_rtm_get(16) && !is_rtm_get(25));
    }
}
