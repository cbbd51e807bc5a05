//! `ferry`: the command line for Ferry container networking.

mod cni_cmd;
mod plugins_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry container networking (CNI and CNM)"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Run CNI network configurations against a network namespace, like cnitool.
    Cni(cni_cmd::CniArgs),
    /// Install Ferry's CNI plugins into a plugin directory.
    Plugins(plugins_cmd::PluginsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Top::Cni(args) => cni_cmd::run(args),
        Top::Plugins(args) => plugins_cmd::run(args),
    }
}
