//! The config checkpointed at ADD: DEL replays it after the conflist is edited
//! or deleted, CHECK reports the drift, and an empty or corrupt cache file never
//! makes DEL fail. Real reference plugins, real namespaces. Subnets 198.18.4-6.0/24.

use ferry_cni::config::NetworkConfigList;
use ferry_cni::runtime::{CniConfig, RuntimeConf};
use ferry_testkit::*;
use serde_json::{json, Value};
use std::path::Path;

struct Fixture {
    rt: CniConfig,
    cache: tempfile::TempDir,
    data: tempfile::TempDir,
    bridge: String,
    name: String,
}

impl Fixture {
    fn new(prefix: &str) -> Fixture {
        require_root();
        require_reference("bridge");
        require_reference("host-local");
        let cache = tempfile::tempdir().unwrap();
        Fixture {
            rt: CniConfig::new(vec!["/usr/lib/cni".into()], cache.path()),
            cache,
            data: tempfile::tempdir().unwrap(),
            bridge: unique(prefix),
            name: unique(prefix),
        }
    }

    fn conf(&self, bridge: &str, subnet: &str, data: &Path) -> NetworkConfigList {
        let v: Value = json!({
            "cniVersion": "1.0.0", "name": self.name,
            "plugins": [{
                "type": "bridge", "bridge": bridge,
                "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data}
            }]
        });
        NetworkConfigList::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    fn leases(&self, data: &Path) -> Vec<String> {
        files(&data.join(&self.name))
            .into_iter()
            .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
            .collect()
    }

    fn cache_file(&self, id: &str) -> std::path::PathBuf {
        self.cache
            .path()
            .join(format!("results/{}-{id}-eth0", self.name))
    }
}

fn attach(ns: &Netns, id: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.into(),
        netns: ns.path(),
        ifname: "eth0".into(),
        ..RuntimeConf::default()
    }
}

#[test]
fn edited_conflist_check_reports_drift_and_del_uses_the_cached_config() {
    let f = Fixture::new("rce");
    let mut cleanup = Cleanup::default();
    cleanup.link(&f.bridge);
    let other_bridge = unique("rce");
    cleanup.link(&other_bridge);
    let other_data = tempfile::tempdir().unwrap();
    let ns = Netns::new("rce");
    let original = f.conf(&f.bridge, "198.18.4.0/24", f.data.path());
    let edited = f.conf(&other_bridge, "198.18.5.0/24", other_data.path());
    let att = attach(&ns, "edit-1");
    {
        let (rt, conf, att) = (f.rt.clone(), original.clone(), att.clone());
        cleanup.push(move || {
            let _ = rt.del_network_list(&conf.name.clone(), None, &att);
        });
    }

    f.rt.add_network_list(&original, &att).unwrap();
    assert_eq!(f.leases(f.data.path()).len(), 1);
    f.rt.check_network_list(&f.name, Some(&original), &att)
        .unwrap();

    let err =
        f.rt.check_network_list(&f.name, Some(&edited), &att)
            .unwrap_err();
    assert_eq!(err.code, 7, "{err}");
    let text = err.to_string();
    assert!(text.contains("changed since ADD"), "{err}");
    assert!(text.contains("plugins[0].bridge"), "{err}");
    assert!(text.contains("plugins[0].ipam.subnet"), "{err}");

    f.rt.del_network_list(&f.name, Some(&edited), &att).unwrap();
    assert!(
        f.leases(f.data.path()).is_empty(),
        "the original lease was not released"
    );
    assert!(
        bridge_ports(&f.bridge).is_empty(),
        "the veth on the original bridge survived"
    );
    assert!(
        host_links(&other_bridge).is_empty(),
        "DEL ran the edited config"
    );
    assert!(!ns.exec_ok("ip link show eth0"));
    assert!(!f.cache_file("edit-1").exists());
}

#[test]
fn deleted_conflist_del_succeeds_from_the_cache() {
    let f = Fixture::new("rcd");
    let mut cleanup = Cleanup::default();
    cleanup.link(&f.bridge);
    let ns = Netns::new("rcd");
    let conf = f.conf(&f.bridge, "198.18.6.0/24", f.data.path());
    let att = attach(&ns, "gone-1");
    f.rt.add_network_list(&conf, &att).unwrap();
    assert_eq!(bridge_ports(&f.bridge).len(), 1);

    // No config at all: the cache alone drives DEL.
    f.rt.del_network_list(&f.name, None, &att).unwrap();
    assert!(f.leases(f.data.path()).is_empty());
    assert!(bridge_ports(&f.bridge).is_empty());
    assert!(!f.cache_file("gone-1").exists());
    // Nothing cached and nothing given: a clear error, not a panic.
    let err = f.rt.del_network_list(&f.name, None, &att).unwrap_err();
    assert_eq!(err.code, 7);
    assert!(err.details.contains("no cached configuration"), "{err}");
}

#[test]
fn empty_or_corrupt_cache_file_never_fails_del() {
    let f = Fixture::new("rcz");
    let mut cleanup = Cleanup::default();
    cleanup.link(&f.bridge);
    let conf = f.conf(&f.bridge, "198.18.7.0/24", f.data.path());
    for (i, garbage) in [
        &b""[..],
        &b"{\"kind\":\"cniCacheV1\",\"config\":\"%%%\""[..],
    ]
    .iter()
    .enumerate()
    {
        let ns = Netns::new("rcz");
        let id = format!("zero-{i}");
        let att = attach(&ns, &id);
        f.rt.add_network_list(&conf, &att).unwrap();
        std::fs::write(f.cache_file(&id), garbage).unwrap();
        f.rt.del_network_list(&f.name, Some(&conf), &att).unwrap();
        assert!(f.leases(f.data.path()).is_empty());
        assert!(bridge_ports(&f.bridge).is_empty());
        assert!(
            !f.cache_file(&id).exists(),
            "the broken cache file was not removed"
        );
        // CHECK without a usable cache says so with code 3 (unknown container).
        f.rt.add_network_list(&conf, &att).unwrap();
        std::fs::write(f.cache_file(&id), garbage).unwrap();
        let err =
            f.rt.check_network_list(&f.name, Some(&conf), &att)
                .unwrap_err();
        assert_eq!(err.code, 3, "{err}");
        f.rt.del_network_list(&f.name, Some(&conf), &att).unwrap();
        assert!(f.leases(f.data.path()).is_empty());
    }
}
