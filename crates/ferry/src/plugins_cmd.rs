//! `ferry plugins`: put Ferry's plugins where a runtime looks for them. Every
//! plugin type is the one multi-call `ferry-plugin` executable under the
//! type's name (a symlink, or a copy with --copy).

use crate::cli::{PluginsArgs, PluginsCommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
