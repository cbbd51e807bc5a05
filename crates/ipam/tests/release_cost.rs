//! How ADD and release costs grow with the number of leases: through Ferry's
//! index versus the reference's full walk. Leases written behind Ferry's back
//! (the `bulk` ones below) are indexed by the first operation after them,
//! which rebuilds the index; from then on they are released through it too.
//! Ignored by default (timing only); run with `cargo test -p ferry-ipam --release --test release_cost -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::allocator;
use ferry_ipam::Attachment;

#[test]
#[ignore = "timing report, not a check"]
fn release_cost_index_vs_walk() {
    for n in [1_000u32, 4_000] {
        let tmp = tempfile::tempdir().unwrap();
        let a = allocator(tmp.path(), r#"[[{"subnet":"198.19.64.0/20"}]]"#);
        let dir = a.store().dir().to_path_buf();
        // Fill the network with reference-made leases (no index entries).
        for i in 0..n {
            let ip = std::net::Ipv4Addr::from(u32::from_be_bytes([198, 19, 64, 0]) + 2 + i);
            std::fs::write(dir.join(ip.to_string()), format!("bulk{i}\r\neth0")).unwrap();
        }
        let ferry: Vec<Attachment> = (0..50)
            .map(|i| Attachment::new(format!("f{i}"), "eth0"))
            .collect();
        for k in &ferry {
            a.allocate(k, &[]).unwrap();
        }
        let t = Instant::now();
        for k in &ferry {
            assert_eq!(a.release(k).unwrap().len(), 1);
        }
        let indexed = t.elapsed() / 50;
        let t = Instant::now();
        for i in 0..50 {
            assert_eq!(
                a.release(&Attachment::new(format!("bulk{i}"), "eth0"))
                    .unwrap()
                    .len(),
                1
            );
        }
        let walked = t.elapsed() / 50;
        println!(
            "{n} leases: release of Ferry-made leases {indexed:?}, of reference-made ones \
             {walked:?} (indexed by one rebuild)"
        );
    }
}

/// What one ADD (allocate: duplicate check + reserve) and one DEL cost with
/// 0, 1,000 and 10,000 leases held, with the index stamped (the steady state
/// of a node where only Ferry allocates); and, for comparison, what merely
/// listing the directory (`getdents`, no per-file open) and reading every
/// lease file (the walk every ADD used to do, and the rebuild does) cost.
/// Largest first: filling a fresh directory warms the filesystem up, which
/// otherwise inflates whichever size runs first.
/// Run with `cargo test -p ferry-ipam --release --test release_cost -- --ignored --nocapture`.
#[test]
#[ignore = "timing report, not a check"]
fn add_cost_against_leases_held() {
    for n in [10_000u32, 1_000, 0] {
        let tmp = tempfile::tempdir().unwrap();
        // Files only (no address is configured anywhere); a /18 for 10,200.
        let a = allocator(tmp.path(), r#"[[{"subnet":"198.18.64.0/18"}]]"#);
        let dir = a.store().dir().to_path_buf();
        for i in 0..n {
            a.allocate(&Attachment::new(format!("held{i}"), "eth0"), &[])
                .unwrap();
        }
        let rounds = 200u32;
        let t = Instant::now();
        for i in 0..rounds {
            a.allocate(&Attachment::new(format!("new{i}"), "eth0"), &[])
                .unwrap();
        }
        let add = t.elapsed() / rounds;
        let t = Instant::now();
        for i in 0..rounds {
            assert_eq!(
                a.release(&Attachment::new(format!("new{i}"), "eth0"))
                    .unwrap()
                    .len(),
                1
            );
        }
        let del = t.elapsed() / rounds;
        let t = Instant::now();
        let listed = std::fs::read_dir(&dir).unwrap().count();
        let list = t.elapsed();
        let t = Instant::now();
        for e in std::fs::read_dir(&dir).unwrap() {
            let _ = std::fs::read(e.unwrap().path());
        }
        let walk = t.elapsed();
        println!(
            "{n} leases: ADD {add:?}, DEL {del:?}; listing {listed} entries {list:?}, \
             reading every file {walk:?}"
        );
    }
}
