//! `ferry`: the command line for Ferry container networking.

mod api;
mod cli;
mod cni_cmd;
mod cni_table;
mod cnm_cmd;
mod docs_cmd;
mod doctor;
mod events_cmd;
mod install_cmd;
mod plugins_cmd;

use clap::{CommandFactory, Parser};
use cli::{Cli, Top};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let api = cnm_cmd::ApiArgs {
        api_socket: cli.api_socket,
        json: cli.json,
    };
    match cli.command {
        Top::Cni(args) => cni_cmd::run(args, cli.json),
        Top::Plugins(args) => plugins_cmd::run(args),
        Top::Network(c) => cnm_cmd::network(&api, c),
        Top::Sandbox(c) => cnm_cmd::sandbox(&api, c),
        Top::Service(c) => cnm_cmd::service(&api, c),
        Top::Connect {
            network,
            sandbox,
            ifname,
            priority,
            aliases,
        } => cnm_cmd::connect(&api, network, sandbox, ifname, priority, aliases),
        Top::Disconnect { network, sandbox } => cnm_cmd::disconnect(&api, network, sandbox),
        Top::Swap { sandbox, from, to } => cnm_cmd::swap(&api, sandbox, from, to),
        Top::Hosts => cnm_cmd::hosts(&api),
        Top::Events { since } => events_cmd::run(&api.api_socket, since, api.json),
        Top::Doctor(args) => doctor::run(args, &api.api_socket, api.json),
        Top::Install(args) => install_cmd::run(args),
        Top::Completion { shell } => docs_cmd::completion(Cli::command(), shell),
        Top::Man { dir } => docs_cmd::man(Cli::command(), &dir),
    }
}
