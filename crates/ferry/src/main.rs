//! `ferry`: the command line for Ferry container networking.

mod cni_cmd;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Top::Cni(args) => cni_cmd::run(args),
    }
}
