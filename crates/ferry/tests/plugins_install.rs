//! `ferry plugins install` fills a directory with every plugin type, and each
//! answers VERSION under its name.

use std::process::Command;

#[test]
fn install_links_every_plugin_and_each_answers_version() {
    let dir = tempfile::tempdir().unwrap();
    let from = env!("CARGO_BIN_EXE_ferry").replace("/ferry", "/ferry-plugin");
    // `cargo test --workspace` builds ferry-plugin next to ferry.
    assert!(
        std::path::Path::new(&from).exists(),
        "{from} missing: run `cargo build -p ferry-plugins` (or test the whole workspace)"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plugins", "install", "--dir"])
        .arg(dir.path())
        .args(["--from", &from])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for e in ferry_plugins::REGISTRY {
        let plugin = dir.path().join(e.name);
        let v = Command::new(&plugin)
            .env("CNI_COMMAND", "VERSION")
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{} VERSION failed (a stale ferry-plugin? rebuild the workspace): {}",
            e.name,
            String::from_utf8_lossy(&v.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert!(info["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&"1.1.0".into()));
    }
    // A second install refuses to overwrite without --force.
    let again = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plugins", "install", "--dir"])
        .arg(dir.path())
        .args(["--from", &from])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}
