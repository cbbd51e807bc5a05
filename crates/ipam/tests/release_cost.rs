//! How release cost grows with the number of leases: through Ferry's index
//! versus the reference's full walk. Ignored by default (timing only);
//! run with `cargo test -p ferry-ipam --release --test release_cost -- --ignored --nocapture`.

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
        println!("{n} leases: release via index {indexed:?}, via full walk {walked:?}");
    }
}
