//! Embeds every systemd unit under contrib/systemd, so a new unit there is
//! installed by `ferry install --systemd` without a code change.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../../contrib/systemd");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut units: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    units.retain(|p| {
        p.extension()
            .is_some_and(|e| e == "service" || e == "socket")
    });
    units.sort();
    let mut code = String::from("/// (file name, contents) of the units under contrib/systemd.\npub const UNITS: &[(&str, &str)] = &[\n");
    for p in &units {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .expect("unit names are UTF-8");
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            p.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("units.rs");
    std::fs::write(out, code).expect("write units.rs");
}
