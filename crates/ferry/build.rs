//! Embeds every systemd unit under contrib/systemd, so a new unit there is
//! installed by `ferry install --systemd` without a code change; and writes
//! the completion scripts and man pages from the CLI definition (src/cli.rs)
//! into `ferry-docs/` next to the binaries, e.g.
//! target/x86_64-unknown-linux-gnu/release/ferry-docs.

use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// The CLI definition the binary parses with.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

fn main() {
    embed_units();
    docs();
}

/// `ferry-docs/` beside the binaries of this build: OUT_DIR is
/// <target>[/<tuple>]/<profile>/build/ferry-<hash>/out.
fn docs_dir(out_dir: &Path) -> PathBuf {
    match out_dir.ancestors().nth(3) {
        Some(profile) => profile.join("ferry-docs"),
        None => out_dir.join("ferry-docs"),
    }
}

/// completions/{ferry.bash,_ferry,ferry.fish} and man/man1/*.1.
fn docs() {
    println!("cargo:rerun-if-changed=src/cli.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let dir = docs_dir(&out);
    // Pages of subcommands since removed must not linger.
    let _ = std::fs::remove_dir_all(&dir);
    let completions = dir.join("completions");
    let man = dir.join("man/man1");
    for d in [&completions, &man] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    }
    let mut cmd = cli::Cli::command();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "ferry", &completions)
            .unwrap_or_else(|e| panic!("write {shell} completion: {e}"));
    }
    clap_mangen::generate_to(cli::Cli::command(), &man)
        .unwrap_or_else(|e| panic!("write man pages into {}: {e}", man.display()));
}

fn embed_units() {
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
