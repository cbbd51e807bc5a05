//! Shell completion and man pages, generated from the CLI definition itself
//! (clap_complete, clap_mangen), so they never drift from the commands.

use clap::Command;
use std::path::Path;
use std::process::ExitCode;

/// Prints the completion script for `shell` on stdout.
pub fn completion(mut cmd: Command, shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut cmd, "ferry", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Writes `ferry.1` and one page per subcommand (`ferry-cni-add.1`, ...) into `dir`.
pub fn man(cmd: Command, dir: &Path) -> ExitCode {
    let written = std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir));
    match written {
        Ok(()) => {
            println!("wrote man pages into {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry man: writing into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
