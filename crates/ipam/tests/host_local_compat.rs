//! Interoperability with the reference plugin binary from the Debian package
//! `containernetworking-plugins` (`/usr/lib/cni/host-local`): leases made by
//! either side are seen, honoured and released by the other.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::Output;

use common::{config, entries, ip, set};
use ferry_ipam::{Allocator, Attachment, DiskStore, INDEX_DIR};

const NETWORK: &str = "compatnet";

fn net_conf(data_dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{NETWORK}","ipam":{{"type":"host-local",
            "ranges":[[{{"subnet":"198.19.66.0/24"}}],[{{"subnet":"fd00:1a:1::/64"}}]],
            "dataDir":"{}"}}}}"#,
        data_dir.display()
    )
}

fn reference(command: &str, container: &str, conf: &str) -> Output {
    ferry_testkit::run_with_stdin(
        &mut ferry_testkit::reference_host_local(command, container),
        conf.as_bytes(),
    )
}

fn reference_ok(command: &str, container: &str, conf: &str) -> String {
    let out = reference(command, container, conf);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "host-local {command} {container} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The addresses (without prefix) of a CNI result.
fn result_ips(stdout: &str) -> Vec<IpAddr> {
    let v: serde_json::Value = serde_json::from_str(stdout).expect("CNI result JSON");
    v["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|i| {
            let a = i["address"].as_str().expect("address");
            a.split('/').next().unwrap_or(a).parse().expect("ip")
        })
        .collect()
}

/// The network's config for the reference, and Ferry's allocator on it.
fn ferry_on(data_dir: &Path) -> (String, Allocator<DiskStore>) {
    let conf = net_conf(data_dir);
    let ipam: serde_json::Value = serde_json::from_str(&conf).unwrap();
    let cfg = config(&ipam["ipam"].to_string());
    let store = DiskStore::open(NETWORK, data_dir).unwrap();
    (conf, Allocator::new(cfg.ranges, store))
}

#[test]
fn leases_cross_between_reference_and_ferry() {
    let tmp = tempfile::tempdir().unwrap();
    let (conf, ferry) = ferry_on(tmp.path());
    let dir = ferry.store().dir().to_path_buf();

    // 1. A lease made by the reference is found by Ferry.
    let ref1 = Attachment::new("ref1", "eth0");
    let got = result_ips(&reference_ok("ADD", "ref1", &conf));
    assert_eq!(got, vec![ip("198.19.66.2"), ip("fd00:1a:1::2")]);
    let mut seen = ferry.get_by_id(&ref1).unwrap();
    seen.sort();
    assert_eq!(seen, got);

    // 2. Ferry continues the reference's round-robin and writes its format.
    let fer1 = Attachment::new("fer1", "eth0");
    let mine: Vec<IpAddr> = ferry
        .allocate(&fer1, &[])
        .unwrap()
        .iter()
        .map(|a| a.address.addr())
        .collect();
    assert_eq!(mine, vec![ip("198.19.66.3"), ip("fd00:1a:1::3")]);

    // 3. The reference honours Ferry's leases: with its cursor rewound so
    //    that Ferry's addresses are its next candidates, it skips them...
    std::fs::write(dir.join("last_reserved_ip.0"), "198.19.66.2").unwrap();
    std::fs::write(dir.join("last_reserved_ip.1"), "fd00:1a:1::2").unwrap();
    let got2 = result_ips(&reference_ok("ADD", "ref2", &conf));
    assert_eq!(got2, vec![ip("198.19.66.4"), ip("fd00:1a:1::4")]);
    // ...sees them as fer1's (CHECK finds them, a second ADD is a duplicate)...
    reference_ok("CHECK", "fer1", &conf);
    let dup = reference("ADD", "fer1", &conf);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stdout).contains("duplicate allocation"));
    // ...and its DEL of another attachment, which walks the whole directory
    // (Ferry's index included), leaves Ferry's lease and index alone.
    reference_ok("DEL", "ref2", &conf);
    assert_eq!(ferry.get_by_id(&fer1).unwrap(), mine);
    assert!(dir.join(INDEX_DIR).join("fer1+eth0").exists());

    // 4. A lease made by Ferry is released by the reference.
    reference_ok("DEL", "fer1", &conf);
    for ip in &mine {
        assert!(!dir.join(ip.to_string()).exists(), "{ip} released");
    }
    // Ferry's now-stale index entry (and its stamp) do not look like a
    // lease to the reference either.
    assert!(dir.join(INDEX_DIR).join("fer1+eth0").exists());
    assert!(dir.join(INDEX_DIR).join("stamp").exists());
    let check = reference("CHECK", "fer1", &conf);
    assert!(
        !check.status.success(),
        "stale index must not count as a lease"
    );
    // Ferry sees the directory changed since its stamp, rebuilds its index
    // (dropping the stale entry, listing ref1's leases) and finds nothing.
    assert!(ferry.get_by_id(&fer1).unwrap().is_empty());
    assert!(!dir.join(INDEX_DIR).join("fer1+eth0").exists());
    assert!(dir.join(INDEX_DIR).join("ref1+eth0").exists());
    // Ferry's own release afterwards is a clean no-op.
    assert!(ferry.release(&fer1).unwrap().is_empty());

    // 5. A lease made by the reference is released by Ferry.
    let mut released = ferry.release(&ref1).unwrap();
    released.sort();
    assert_eq!(released, got);
    let check = reference("CHECK", "ref1", &conf);
    assert!(!check.status.success());

    // 6. Ferry's GC removes reference-made stale leases, and the reference
    //    keeps working on the directory afterwards.
    reference_ok("ADD", "ref3", &conf);
    reference_ok("ADD", "ref4", &conf);
    let valid = [Attachment::new("ref4", "eth0")].into_iter().collect();
    assert_eq!(ferry.gc(&valid).unwrap().len(), 2);
    reference_ok("CHECK", "ref4", &conf);
    reference_ok("DEL", "ref4", &conf);

    assert_eq!(
        entries(&dir),
        set(&["last_reserved_ip.0", "last_reserved_ip.1", "lock"])
    );
}

/// The ADD duplicate check, CHECK and DEL read only Ferry's index while its
/// stamp holds. Leases the real reference plugin writes right after a Ferry
/// operation (often within the same clock tick), after Ferry has indexed and
/// stamped the directory, must still be found.
#[test]
fn reference_leases_written_after_ferry_stamped_are_never_missed() {
    let tmp = tempfile::tempdir().unwrap();
    let (conf, ferry) = ferry_on(tmp.path());
    let dir = ferry.store().dir().to_path_buf();
    let stamp = dir.join(INDEX_DIR).join("stamp");

    for i in 0..12 {
        // Ferry allocates (and stamps the directory)...
        let mine = Attachment::new(format!("fer{i}"), "eth0");
        ferry.allocate(&mine, &[]).unwrap();
        assert!(stamp.exists(), "round {i}: Ferry stamped the directory");
        // ...then the reference, at once, leases for an attachment...
        let id = format!("ref{i}");
        let got = result_ips(&reference_ok("ADD", &id, &conf));
        let theirs = Attachment::new(&id, "eth0");
        // ...which Ferry's duplicate check on ADD must see,
        match ferry.allocate(&theirs, &[]) {
            Err(ferry_ipam::IpamError::DuplicateAllocation { ip, .. }) => {
                assert!(got.contains(&ip), "round {i}: {ip} not in {got:?}")
            }
            other => panic!("round {i}: duplicate ADD not refused: {other:?}"),
        }
        // ...and CHECK (lookup) too, now from the index alone.
        let mut seen = ferry.get_by_id(&theirs).unwrap();
        seen.sort();
        assert_eq!(seen, got, "round {i}");
    }

    // A lease file deleted and recreated under the same name for another
    // attachment (ext4 may even hand back the same inode number): Ferry has
    // indexed ref0's address; the reference releases it and, its cursor
    // rewound in place (no directory change), gives that address to `again`.
    let ref0 = Attachment::new("ref0", "eth0");
    let mut addr = ferry.get_by_id(&ref0).unwrap();
    addr.sort();
    let (v4, v6) = (addr[0], addr[1]);
    let before = std::fs::metadata(dir.join(v4.to_string())).unwrap();
    reference_ok("DEL", "ref0", &conf);
    let prev = |ip: IpAddr| match ip {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) - 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) - 1).into()),
    };
    std::fs::write(dir.join("last_reserved_ip.0"), prev(v4).to_string()).unwrap();
    std::fs::write(dir.join("last_reserved_ip.1"), prev(v6).to_string()).unwrap();
    let got = result_ips(&reference_ok("ADD", "again", &conf));
    assert_eq!(got, vec![v4, v6]);
    let after = std::fs::metadata(dir.join(v4.to_string())).unwrap();
    use std::os::unix::fs::MetadataExt;
    eprintln!("recreated {v4}: inode {} -> {}", before.ino(), after.ino());
    let again = Attachment::new("again", "eth0");
    assert!(matches!(
        ferry.allocate(&again, &[]),
        Err(ferry_ipam::IpamError::DuplicateAllocation { .. })
    ));
    assert!(ferry.get_by_id(&ref0).unwrap().is_empty());
    let mut seen = ferry.get_by_id(&again).unwrap();
    seen.sort();
    assert_eq!(seen, got);

    // DEL through Ferry frees what the reference leased, and everything
    // else: nothing leaks, and the index goes with the last lease.
    let mut released = ferry.release(&again).unwrap();
    released.sort();
    assert_eq!(released, got);
    for i in 0..12 {
        for id in [format!("fer{i}"), format!("ref{i}")] {
            ferry.release(&Attachment::new(&id, "eth0")).unwrap();
        }
    }
    assert_eq!(
        entries(&dir),
        set(&["last_reserved_ip.0", "last_reserved_ip.1", "lock"])
    );
}
