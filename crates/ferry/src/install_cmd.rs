//! `ferry install --systemd`: writes Ferry's systemd units (those under
//! contrib/systemd, embedded at build time) into ROOT/etc/systemd/system
//! and says which `systemctl` commands start them; it runs none itself.

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

include!(concat!(env!("OUT_DIR"), "/units.rs"));

/// Where the units expect the binaries, unless --bin-dir says otherwise.
const DEFAULT_BIN_DIR: &str = "/usr/local/bin";
/// Where the DHCP daemon's unit expects the CNI plugins (`dhcp`).
const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";

#[derive(Args)]
pub struct InstallArgs {
    /// Install the systemd units (ferryd, and the DHCP daemon's when shipped).
    #[arg(long)]
    systemd: bool,
    /// Root of the file system to install into.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Where ferryd and ferry-plugin are installed (the units' ExecStart).
    #[arg(long, default_value = DEFAULT_BIN_DIR)]
    bin_dir: PathBuf,
    /// Where the CNI plugins are installed (the DHCP daemon's ExecStart).
    #[arg(long, default_value = DEFAULT_CNI_BIN_DIR)]
    cni_bin_dir: PathBuf,
}

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
