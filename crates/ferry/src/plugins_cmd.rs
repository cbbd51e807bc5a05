//! `ferry plugins`: put Ferry's plugins where a runtime looks for them. Every
//! plugin type is the one multi-call `ferry-plugin` executable under the
//! type's name (a symlink, or a copy with --copy).

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    command: PluginsCommand,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Fill DIR with every Ferry plugin under its type name, ready for CNI_PATH.
    Install {
        /// Target directory, e.g. /opt/cni/bin (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The ferry-plugin executable (default: next to this `ferry`).
        #[arg(long)]
        from: Option<PathBuf>,
        /// Copy the executable instead of linking to it.
        #[arg(long)]
        copy: bool,
        /// Replace files of the same names (e.g. the reference plugins).
        #[arg(long)]
        force: bool,
    },
    /// List the plugin types Ferry implements.
    List,
}

pub fn run(args: PluginsArgs) -> ExitCode {
    match args.command {
        PluginsCommand::List => {
            for e in ferry_plugins::REGISTRY {
                println!("{:<12} {}", e.name, e.about);
            }
            ExitCode::SUCCESS
        }
        PluginsCommand::Install {
            dir,
            from,
            copy,
            force,
        } => match install(&dir, from, copy, force) {
            Ok(n) => {
                println!("installed {n} plugins into {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferry: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn default_source() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    Ok(me.with_file_name("ferry-plugin"))
}

fn install(dir: &Path, from: Option<PathBuf>, copy: bool, force: bool) -> Result<usize, String> {
    let source = match from {
        Some(p) => p,
        None => default_source()?,
    };
    let source = source.canonicalize().map_err(|e| {
        format!(
            "{}: {e} (build it first: cargo build --release -p ferry-plugins)",
            source.display()
        )
    })?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut n = 0;
    for entry in ferry_plugins::REGISTRY {
        let target = dir.join(entry.name);
        if target.symlink_metadata().is_ok() {
            if !force {
                return Err(format!(
                    "{} exists; use --force to replace it",
                    target.display()
                ));
            }
            std::fs::remove_file(&target)
                .map_err(|e| format!("removing {}: {e}", target.display()))?;
        }
        let done = if copy {
            std::fs::copy(&source, &target).map(|_| ())
        } else {
            std::os::unix::fs::symlink(&source, &target)
        };
        done.map_err(|e| format!("installing {}: {e}", target.display()))?;
        n += 1;
    }
    Ok(n)
}
