//! Many allocators racing on one network directory, as concurrent plugin
//! invocations would: threads (each with its own store handle, hence its own
//! lock file description) and separate processes.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use common::{allocator, entries, set};
use ferry_ipam::Attachment;

const RANGES: &str = r#"[[{"subnet":"198.19.64.0/20"}]]"#;

#[test]
fn hundred_threads_get_distinct_ips_and_release_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let dir = dir.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let a = allocator(&dir, RANGES);
                let key = Attachment::new(format!("ctr{i:03}"), "eth0");
                barrier.wait();
                let got = a.allocate(&key, &[]).expect("allocate");
                (key, got[0].address.addr())
            })
        })
        .collect();
    let results: Vec<(Attachment, IpAddr)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let distinct: HashSet<IpAddr> = results.iter().map(|(_, ip)| *ip).collect();
    assert_eq!(distinct.len(), 100, "every thread got its own address");
    // Round-robin from the start: exactly .64.2 ..= .64.101 are taken.
    let expected: HashSet<IpAddr> = (2..=101u32)
        .map(|i| {
            IpAddr::from(std::net::Ipv4Addr::from(
                u32::from_be_bytes([198, 19, 64, 0]) + i,
            ))
        })
        .collect();
    assert_eq!(distinct, expected);

    let net = dir.join("testnet");
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = results
        .into_iter()
        .map(|(key, ip)| {
            let dir = dir.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let a = allocator(&dir, RANGES);
                barrier.wait();
                assert_eq!(a.release(&key).expect("release"), vec![ip]);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // What remains after releasing everything: the lock file and the
    // round-robin cursor of range set 0; the index directory is removed
    // once empty.
    assert_eq!(entries(&net), set(&["last_reserved_ip.0", "lock"]));
}

/// Body of the child processes of the next test, which runs it with
/// `--ignored --exact`; run by hand without its environment it fails.
#[test]
#[ignore = "a helper: twenty_processes_get_distinct_ips runs it"]
fn child_worker() {
    let need = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: child_worker only runs under twenty_processes_get_distinct_ips"
            )
        })
    };
    let (dir, id) = (need("FERRY_IPAM_CHILD_DIR"), need("FERRY_IPAM_CHILD_ID"));
    let a = allocator(Path::new(&dir), RANGES);
    for j in 0..5 {
        let key = Attachment::new(format!("proc{id}-{j}"), "eth0");
        let got = a.allocate(&key, &[]).expect("allocate");
        println!("LEASE {}", got[0].address.addr());
    }
}

#[test]
fn twenty_processes_get_distinct_ips() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "child_worker",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("FERRY_IPAM_CHILD_DIR", tmp.path())
                .env("FERRY_IPAM_CHILD_ID", i.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        all.extend(
            text.lines()
                // The harness may print "test child_worker ... " on the same line.
                .filter_map(|l| l.find("LEASE ").map(|i| &l[i + 6..]))
                .map(|s| s.parse::<IpAddr>().unwrap()),
        );
    }
    assert_eq!(all.len(), 100);
    let distinct: HashSet<IpAddr> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 100);
    let a = allocator(tmp.path(), RANGES);
    let held = a.store().dir().read_dir().unwrap().count();
    // 100 reservations + lock + last_reserved_ip.0 + ferry-index.
    assert_eq!(held, 103);
}
