//! Allocation order, wrap-around, requested IPs, exhaustion, release, GC,
//! old-format files and the index fallback, all on a real `DiskStore` in a
//! temporary directory.

mod common;

use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;

use common::{allocator, entries, ip, set};
use ferry_ipam::{Attachment, Holder, IpamError, Store, INDEX_DIR};

fn key(id: &str) -> Attachment {
    Attachment::new(id, "eth0")
}

fn one(a: &ferry_ipam::Allocator<ferry_ipam::DiskStore>, k: &Attachment) -> IpAddr {
    let got = a.allocate(k, &[]).expect("allocate");
    assert_eq!(got.len(), 1);
    got[0].address.addr()
}

#[test]
fn sequential_order_skips_gateway_and_writes_reference_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/29"}]]"#);
    let got = a.allocate(&key("c1"), &[]).unwrap();
    assert_eq!(got[0].address.to_string(), "198.19.64.2/29");
    assert_eq!(got[0].gateway, ip("198.19.64.1"));
    assert_eq!(got[0].range_set, 0);

    let dir = a.store().dir().to_path_buf();
    assert_eq!(fs::read(dir.join("198.19.64.2")).unwrap(), b"c1\r\neth0");
    assert_eq!(
        fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(),
        "198.19.64.2"
    );
    assert!(dir.join("lock").exists());

    let rest: Vec<IpAddr> = (2..=5).map(|i| one(&a, &key(&format!("c{i}")))).collect();
    assert_eq!(
        rest,
        ["198.19.64.3", "198.19.64.4", "198.19.64.5", "198.19.64.6"].map(ip)
    );
    // .7 is the broadcast address: the /29 is now full.
    let e = a.allocate(&key("c6"), &[]).unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
    assert!(e.to_string().contains("198.19.64.1-198.19.64.6"), "{e}");
    assert_eq!(e.cni_code(), 100);
}

#[test]
fn round_robin_and_wrap_around() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/29"}]]"#);
    assert_eq!(one(&a, &key("a")), ip("198.19.64.2"));
    assert_eq!(one(&a, &key("b")), ip("198.19.64.3"));
    a.release(&key("a")).unwrap();
    // .2 is free again but the cursor is past it.
    assert_eq!(one(&a, &key("c")), ip("198.19.64.4"));
    assert_eq!(one(&a, &key("d")), ip("198.19.64.5"));
    assert_eq!(one(&a, &key("e")), ip("198.19.64.6"));
    // Wraps to the start of the range, skipping the gateway .1.
    assert_eq!(one(&a, &key("f")), ip("198.19.64.2"));
    // Full again.
    assert!(matches!(
        a.allocate(&key("g"), &[]).unwrap_err(),
        IpamError::Exhausted { .. }
    ));
    a.release(&key("d")).unwrap();
    assert_eq!(one(&a, &key("g")), ip("198.19.64.5"));
}

#[test]
fn range_start_end_and_gateway_in_the_middle() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(
        tmp.path(),
        r#"[[{"subnet":"198.19.64.0/24","rangeStart":"198.19.64.10","rangeEnd":"198.19.64.13","gateway":"198.19.64.11"}]]"#,
    );
    let got: Vec<IpAddr> = ["a", "b", "c"].iter().map(|k| one(&a, &key(k))).collect();
    assert_eq!(
        got,
        ["198.19.64.10", "198.19.64.12", "198.19.64.13"].map(ip)
    );
    assert!(a.allocate(&key("d"), &[]).is_err());
}

#[test]
fn network_and_broadcast_never_handed_out() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(
        tmp.path(),
        r#"[[{"subnet":"198.19.64.0/30","rangeStart":"198.19.64.0","rangeEnd":"198.19.64.3","gateway":"198.19.64.2"}]]"#,
    );
    assert_eq!(one(&a, &key("a")), ip("198.19.64.1"));
    assert!(matches!(
        a.allocate(&key("b"), &[]).unwrap_err(),
        IpamError::Exhausted { .. }
    ));
}

#[test]
fn several_ranges_in_a_set_are_walked_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(
        tmp.path(),
        r#"[[{"subnet":"198.19.64.0/30"},{"subnet":"198.19.65.0/30"}]]"#,
    );
    assert_eq!(one(&a, &key("a")), ip("198.19.64.2"));
    let b = a.allocate(&key("b"), &[]).unwrap();
    assert_eq!(b[0].address.to_string(), "198.19.65.2/30");
    assert_eq!(b[0].gateway, ip("198.19.65.1"));
    assert!(a.allocate(&key("c"), &[]).is_err());
    // Wrap from the last range back to the first.
    a.release(&key("a")).unwrap();
    assert_eq!(one(&a, &key("c")), ip("198.19.64.2"));
}

#[test]
fn last_reserved_outside_the_set_restarts_at_the_beginning() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let dir = a.store().dir().to_path_buf();
    fs::write(dir.join("last_reserved_ip.0"), "198.19.79.9").unwrap();
    assert_eq!(one(&a, &key("a")), ip("198.19.64.2"));
    fs::write(dir.join("last_reserved_ip.0"), "not an ip").unwrap();
    assert_eq!(one(&a, &key("b")), ip("198.19.64.3"));
    fs::write(dir.join("last_reserved_ip.0"), "198.19.64.100\n").unwrap();
    assert_eq!(one(&a, &key("c")), ip("198.19.64.101"));
}

#[test]
fn dual_stack_one_address_per_range_set_go_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(
        tmp.path(),
        r#"[[{"subnet":"198.19.64.0/24"}],[{"subnet":"fd00:1a::/64","rangeStart":"fd00:1a::00a0"}]]"#,
    );
    let got = a.allocate(&key("ds"), &[]).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].address.to_string(), "198.19.64.2/24");
    assert_eq!(got[1].address.to_string(), "fd00:1a::a0/64");
    assert_eq!(got[1].gateway, ip("fd00:1a::1"));
    assert_eq!(got[1].range_set, 1);
    let dir = a.store().dir().to_path_buf();
    assert_eq!(fs::read(dir.join("fd00:1a::a0")).unwrap(), b"ds\r\neth0");
    assert_eq!(
        fs::read_to_string(dir.join("last_reserved_ip.1")).unwrap(),
        "fd00:1a::a0"
    );

    // A second interface of the same container is a different attachment.
    let eth1 = Attachment::new("ds", "eth1");
    let got1 = a.allocate(&eth1, &[]).unwrap();
    assert_eq!(got1[1].address.addr(), ip("fd00:1a::a1"));

    // The same attachment again is refused, and nothing leaks.
    let e = a.allocate(&key("ds"), &[]).unwrap_err();
    assert!(matches!(e, IpamError::DuplicateAllocation { .. }), "{e}");
    assert_eq!(a.get_by_id(&key("ds")).unwrap().len(), 2);

    let mut released = a.release(&key("ds")).unwrap();
    released.sort();
    assert_eq!(released, vec![ip("198.19.64.2"), ip("fd00:1a::a0")]);
    assert_eq!(a.get_by_id(&eth1).unwrap().len(), 2);
    assert!(a.get_by_id(&key("ds")).unwrap().is_empty());
    // Releasing twice is fine.
    assert!(a.release(&key("ds")).unwrap().is_empty());
}

#[test]
fn requested_ips() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(
        tmp.path(),
        r#"[[{"subnet":"198.19.64.0/24","rangeEnd":"198.19.64.100"}],[{"subnet":"fd00:1a::/64"}]]"#,
    );
    let got = a
        .allocate(&key("r1"), &[ip("fd00:1a::77"), ip("198.19.64.50")])
        .unwrap();
    assert_eq!(got[0].address.addr(), ip("198.19.64.50"));
    assert_eq!(got[1].address.addr(), ip("fd00:1a::77"));
    // Requested reservations move the cursor too, as in the reference.
    assert_eq!(one_v4(&a, "r2"), ip("198.19.64.51"));

    // Already taken.
    let e = a.allocate(&key("r3"), &[ip("198.19.64.50")]).unwrap_err();
    assert!(matches!(e, IpamError::RequestedUnavailable { .. }), "{e}");
    assert!(e.to_string().contains("198.19.64.50"), "{e}");
    // Outside every range (after rangeEnd, and another subnet).
    for bad in ["198.19.64.101", "198.19.70.1"] {
        let e = a.allocate(&key("r3"), &[ip(bad)]).unwrap_err();
        assert!(matches!(e, IpamError::RequestedNotInRange { .. }), "{e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    // The gateway.
    let e = a.allocate(&key("r3"), &[ip("198.19.64.1")]).unwrap_err();
    assert!(matches!(e, IpamError::RequestedIsGateway { .. }), "{e}");
    // Two in one range set: error, and the rollback leaves nothing behind.
    let e = a
        .allocate(&key("r3"), &[ip("198.19.64.60"), ip("198.19.64.61")])
        .unwrap_err();
    assert!(matches!(e, IpamError::RequestedUnfulfilled(_)), "{e}");
    assert!(a.get_by_id(&key("r3")).unwrap().is_empty());
    assert!(!a.store().dir().join("198.19.64.60").exists());
    // Failure in the second range set rolls back the first.
    let e = a.allocate(&key("r3"), &[ip("fd00:1a::77")]).unwrap_err();
    assert!(matches!(e, IpamError::RequestedUnavailable { .. }), "{e}");
    assert!(a.get_by_id(&key("r3")).unwrap().is_empty());
    // r1 and r2 untouched by all this.
    assert_eq!(a.get_by_id(&key("r1")).unwrap().len(), 2);
    assert_eq!(a.get_by_id(&key("r2")).unwrap().len(), 2);
}

fn one_v4(a: &ferry_ipam::Allocator<ferry_ipam::DiskStore>, id: &str) -> IpAddr {
    a.allocate(&key(id), &[]).unwrap()[0].address.addr()
}

#[test]
fn invalid_attachments_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    for k in [
        Attachment::new("", "eth0"),
        Attachment::new("c", ""),
        Attachment::new("c\r\nx", "eth0"),
        Attachment::new("c", "eth0\n"),
    ] {
        let e = a.allocate(&k, &[]).unwrap_err();
        assert!(matches!(e, IpamError::InvalidAttachment { .. }), "{e}");
        assert_eq!(e.cni_code(), 7);
    }
}

#[test]
fn exhaustion_of_a_larger_range() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/26"}]]"#);
    let mut seen = HashSet::new();
    for i in 0..61 {
        assert!(seen.insert(one(&a, &key(&format!("x{i}")))));
    }
    assert!(matches!(
        a.allocate(&key("over"), &[]).unwrap_err(),
        IpamError::Exhausted { .. }
    ));
}

#[test]
fn old_format_files_match_any_ifname() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let dir = a.store().dir().to_path_buf();
    fs::write(dir.join("198.19.64.40"), "oldctr\n").unwrap();
    fs::write(dir.join("198.19.64.41"), "otherold").unwrap();

    let k = Attachment::new("oldctr", "eth0");
    assert_eq!(a.get_by_id(&k).unwrap(), vec![ip("198.19.64.40")]);
    // The old lease counts as this attachment's: no second address.
    assert!(matches!(
        a.allocate(&k, &[]).unwrap_err(),
        IpamError::DuplicateAllocation { .. }
    ));
    let txn_holders = a.store().lock().unwrap().reservations().unwrap();
    assert!(txn_holders.contains(&(ip("198.19.64.41"), Holder::ContainerOnly("otherold".into()))));

    assert_eq!(
        a.release(&Attachment::new("oldctr", "net9")).unwrap(),
        vec![ip("198.19.64.40")]
    );
    assert!(!dir.join("198.19.64.40").exists());
    assert!(dir.join("198.19.64.41").exists());
}

#[test]
fn release_prefers_current_format_over_old() {
    // As the reference: old-format files are only released when no
    // current-format reservation matched.
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let dir = a.store().dir().to_path_buf();
    fs::write(dir.join("198.19.64.40"), "ctr").unwrap();
    fs::write(dir.join("198.19.64.41"), "ctr\r\neth0").unwrap();
    assert_eq!(a.release(&key("ctr")).unwrap(), vec![ip("198.19.64.41")]);
    assert_eq!(a.release(&key("ctr")).unwrap(), vec![ip("198.19.64.40")]);
}

#[test]
fn release_without_index_falls_back_to_the_walk() {
    // A lease written by the reference plugin: no index entry.
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let dir = a.store().dir().to_path_buf();
    fs::write(dir.join("198.19.64.9"), "refctr\r\neth0").unwrap();
    fs::write(dir.join("198.19.64.10"), "refctr\r\neth1").unwrap();
    assert_eq!(
        a.get_by_id(&key("refctr")).unwrap(),
        vec![ip("198.19.64.9")]
    );
    assert_eq!(a.release(&key("refctr")).unwrap(), vec![ip("198.19.64.9")]);
    assert!(dir.join("198.19.64.10").exists());
}

#[test]
fn release_uses_the_index_and_verifies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let dir = a.store().dir().to_path_buf();
    let k = key("ferryctr");
    let mine = one(&a, &k);
    let index = dir.join(INDEX_DIR).join("ferryctr+eth0");
    let text = fs::read_to_string(&index).unwrap();
    // The reference matches trimmed content against `id\r\nifname` or `id`:
    // the index must never look like either.
    assert_ne!(text.trim(), "ferryctr\r\neth0");
    assert_ne!(text.trim(), "ferryctr");
    assert!(text.contains(&mine.to_string()));

    // The reference plugin (simulated) released our lease behind our back
    // and handed the address to someone else: the stale index entry must
    // not make us delete their lease.
    fs::remove_file(dir.join(mine.to_string())).unwrap();
    fs::write(dir.join(mine.to_string()), "someoneelse\r\neth0").unwrap();
    assert!(a.get_by_id(&k).unwrap().is_empty());
    assert!(a.release(&k).unwrap().is_empty());
    assert_eq!(
        fs::read(dir.join(mine.to_string())).unwrap(),
        b"someoneelse\r\neth0"
    );
    // The stale entry is gone; the lookup that saw the directory changed
    // rebuilt the index, which now lists the other holder's lease.
    assert_eq!(
        entries(&dir.join(INDEX_DIR)),
        set(&["someoneelse+eth0", "stamp"])
    );
    // Once that lease goes too, so do the index and its stamp.
    assert_eq!(a.release(&key("someoneelse")).unwrap(), vec![mine]);
    assert!(!dir.join(INDEX_DIR).exists());
}

#[test]
fn release_finds_leases_the_index_never_saw() {
    // A lease of the same attachment written behind Ferry's back (as the
    // reference plugin would) changes the directory, so the stamp no longer
    // matches: the index is rebuilt and release frees both, leaking nothing.
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let dir = a.store().dir().to_path_buf();
    let k = key("idx");
    let mine = one(&a, &k);
    fs::write(dir.join("198.19.64.200"), "idx\r\neth0").unwrap();
    let mut released = a.release(&k).unwrap();
    released.sort();
    assert_eq!(released, vec![mine, ip("198.19.64.200")]);
    assert!(!dir.join("198.19.64.200").exists());
    assert!(!dir.join(INDEX_DIR).exists());
}

#[test]
fn index_is_what_lookups_read_while_the_stamp_holds() {
    // With a valid stamp, lookups read the index, not the directory: a lease
    // file rewritten *in place* (which changes no directory entry, and which
    // neither plugin ever does) to name another holder is not seen through
    // that holder, while the same file's own holder still verifies it. This
    // is how we know the O(1) path answered.
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let dir = a.store().dir().to_path_buf();
    let (k1, k2) = (key("one"), key("two"));
    let ip1 = one(&a, &k1);
    let ip2 = one(&a, &k2);
    assert!(dir.join(INDEX_DIR).join("stamp").exists());
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join(ip2.to_string()))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"one\r\neth0"))
        .unwrap();
    assert_eq!(a.get_by_id(&k1).unwrap(), vec![ip1]);
    assert!(a.get_by_id(&k2).unwrap().is_empty());
    // A new entry in the directory invalidates the stamp: the rebuild reads
    // every file and finds the rewritten one.
    fs::write(dir.join("198.19.64.200"), "three\r\neth0").unwrap();
    let mut held = a.get_by_id(&k1).unwrap();
    held.sort();
    assert_eq!(held, vec![ip1, ip2]);
}

#[test]
fn gc_removes_exactly_the_stale_reservations() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(
        tmp.path(),
        r#"[[{"subnet":"198.19.64.0/24"}],[{"subnet":"fd00:1a::/64"}]]"#,
    );
    let dir = a.store().dir().to_path_buf();
    let live = [key("live1"), Attachment::new("live1", "eth1"), key("live2")];
    let stale = [key("stale1"), Attachment::new("live2", "eth9")];
    for k in live.iter().chain(stale.iter()) {
        a.allocate(k, &[]).unwrap();
    }
    // Reference-made and old-format leases, live and stale.
    fs::write(dir.join("198.19.64.100"), "live2\r\neth3").unwrap();
    fs::write(dir.join("198.19.64.101"), "live1").unwrap(); // old format, container live
    fs::write(dir.join("198.19.64.102"), "gone").unwrap(); // old format, container gone
    fs::write(dir.join("198.19.64.103"), "gone\r\neth0").unwrap();
    // Files that are not reservations must survive.
    fs::write(dir.join("README"), "gone\r\neth0").unwrap();

    let mut valid: HashSet<Attachment> = live.iter().cloned().collect();
    valid.insert(Attachment::new("live2", "eth3"));
    let before = entries(&dir);
    let mut removed: Vec<IpAddr> = a
        .gc(&valid)
        .unwrap()
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    removed.sort();

    for k in &stale {
        assert!(a.get_by_id(k).unwrap().is_empty(), "{k}");
    }
    let after = entries(&dir);
    let gone: Vec<&String> = before.difference(&after).collect();
    let mut gone_ips: Vec<IpAddr> = gone.iter().filter_map(|n| n.parse().ok()).collect();
    gone_ips.sort();
    assert_eq!(removed, gone_ips);
    // 2 stale Ferry attachments x 2 range sets + 2 stale hand-made leases.
    assert_eq!(removed.len(), 6);
    assert!(removed.contains(&ip("198.19.64.102")));
    assert!(removed.contains(&ip("198.19.64.103")));
    // Each live attachment holds its two Ferry leases; live1's interfaces
    // also hold the surviving old-format lease of their container.
    for k in &live {
        let old_format = usize::from(k.container_id == "live1");
        assert_eq!(a.get_by_id(k).unwrap().len(), 2 + old_format, "{k}");
    }
    assert_eq!(
        a.get_by_id(&Attachment::new("live2", "eth3")).unwrap(),
        vec![ip("198.19.64.100")]
    );
    assert!(dir.join("198.19.64.101").exists());
    for f in [
        "lock",
        "last_reserved_ip.0",
        "last_reserved_ip.1",
        "README",
        INDEX_DIR,
    ] {
        assert!(dir.join(f).exists(), "{f} must survive GC");
    }
    // Only entries that parse as IPs went away.
    assert!(gone.iter().all(|n| n.parse::<IpAddr>().is_ok()));
    // Index entries of stale attachments are dropped, live ones kept, and
    // the surviving hand-made (reference) leases got entries when the next
    // lookup rebuilt the index: live2/eth3's and, for the old-format lease,
    // its container's (`live1+`).
    let idx = entries(&dir.join(INDEX_DIR));
    assert_eq!(
        idx,
        set(&[
            "live1+eth0",
            "live1+eth1",
            "live2+eth0",
            "live2+eth3",
            "live1+",
            "stamp"
        ])
    );
}

#[test]
fn long_container_ids_get_a_hashed_index_name() {
    let tmp = tempfile::tempdir().unwrap();
    let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/24"}]]"#);
    let long = "x".repeat(300);
    let k = key(&long);
    let mine = one(&a, &k);
    let mut idx = entries(&a.store().dir().join(INDEX_DIR));
    assert!(idx.remove("stamp"));
    assert_eq!(idx.len(), 1);
    assert!(idx.iter().next().unwrap().starts_with('~'));
    assert_eq!(a.release(&k).unwrap(), vec![mine]);
}

#[test]
fn invalid_network_names_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    for n in ["", ".", "..", "a/b"] {
        let e = ferry_ipam::DiskStore::open(n, tmp.path()).unwrap_err();
        assert!(matches!(e, IpamError::InvalidNetworkName(_)), "{n}: {e}");
    }
}

#[test]
fn next_free_walks_round_robin_past_taken_addresses() {
    use ferry_ipam::{next_free, Range, RangeConfig};
    let r = Range::canonicalize(0, &RangeConfig::new("198.19.64.0/29".parse().unwrap())).unwrap();
    let ranges = [r];
    let taken: HashSet<IpAddr> = [ip("198.19.64.3"), ip("198.19.64.4")].into();
    let free = |last: Option<IpAddr>| next_free(&ranges, last, |a| taken.contains(&a)).map(|f| f.0);
    // The gateway (.1) is skipped, as in the allocator.
    assert_eq!(free(None), Some(ip("198.19.64.2")));
    assert_eq!(free(Some(ip("198.19.64.2"))), Some(ip("198.19.64.5")));
    // Wraps from the end (.6; .7 is the broadcast) to the start.
    assert_eq!(free(Some(ip("198.19.64.6"))), Some(ip("198.19.64.2")));
    // Everything taken: none, and the walk ends.
    let all = |_: IpAddr| true;
    assert_eq!(next_free(&ranges, Some(ip("198.19.64.5")), all), None);
    assert_eq!(next_free(&[], None, |_| false), None);
}
