//! `ferry install --systemd`: writes Ferry's systemd units (those under
//! contrib/systemd, embedded at build time) into ROOT/etc/systemd/system
//! and says which `systemctl` commands start them; it runs none itself.

use crate::cli::{InstallArgs, DEFAULT_BIN_DIR, DEFAULT_CNI_BIN_DIR};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

include!(concat!(env!("OUT_DIR"), "/units.rs"));

pub fn run(args: InstallArgs) -> ExitCode {
    if !args.systemd {
        eprintln!("ferry install: nothing to install; use --systemd");
        return ExitCode::FAILURE;
    }
    match install_units(&args.root, &args.bin_dir, &args.cni_bin_dir) {
        Ok(written) => {
            for p in &written {
                println!("wrote {}", p.display());
            }
            let names: Vec<&str> = UNITS.iter().map(|(n, _)| *n).collect();
            println!("now run:");
            println!("  systemctl daemon-reload");
            println!("  systemctl enable --now {}", names.join(" "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry install: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes every unit, its ExecStart pointed at `bin_dir` (ferryd) or
/// `cni_bin_dir` (the DHCP daemon); returns the paths.
pub fn install_units(
    root: &Path,
    bin_dir: &Path,
    cni_bin_dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    let dir = root.join("etc/systemd/system");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let bin = bin_dir.to_string_lossy();
    let cni_bin = cni_bin_dir.to_string_lossy();
    let mut written = Vec::new();
    for (name, text) in UNITS {
        let path = dir.join(name);
        let text = text
            .replace(
                &format!("{DEFAULT_BIN_DIR}/"),
                &format!("{}/", bin.trim_end_matches('/')),
            )
            .replace(
                &format!("{DEFAULT_CNI_BIN_DIR}/"),
                &format!("{}/", cni_bin.trim_end_matches('/')),
            );
        ferry_linux::fs::write_atomic(
            &path,
            text.as_bytes(),
            0o644,
            ferry_linux::fs::Durability::Synced,
        )
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
