//! `ferry`: the command line for Ferry container networking.

mod api;
mod cni_cmd;
mod cni_table;
mod cnm_cmd;
mod docs_cmd;
mod doctor;
mod events_cmd;
mod install_cmd;
mod plugins_cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry container networking (CNI and CNM)"
)]
struct Cli {
    /// Print machine-readable JSON (results and errors) on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// ferryd's API socket.
    #[arg(
        long,
        env = "FERRY_API_SOCKET",
        default_value = "/run/ferry/ferry.sock",
        global = true
    )]
    api_socket: std::path::PathBuf,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Run CNI network configurations against a network namespace, like cnitool.
    Cni(cni_cmd::CniArgs),
    /// Install Ferry's CNI plugins into a plugin directory.
    Plugins(plugins_cmd::PluginsArgs),
    /// Networks of ferryd (CNM).
    #[command(subcommand)]
    Network(cnm_cmd::NetworkCommand),
    /// Sandboxes: network namespaces ferryd connects to networks.
    #[command(subcommand)]
    Sandbox(cnm_cmd::SandboxCommand),
    /// Services that move between sandboxes, keeping address, MAC, name and published ports.
    #[command(subcommand)]
    Service(cnm_cmd::ServiceCommand),
    /// Connect a sandbox to a network.
    Connect {
        network: String,
        sandbox: String,
        /// Interface name in the sandbox (default: the next free ethN).
        #[arg(long)]
        ifname: Option<String>,
        /// Route arbitration priority: the highest wins a contested prefix.
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Another name for the sandbox in the network's DNS (repeatable).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
    },
    /// Disconnect a sandbox from a network.
    Disconnect { network: String, sandbox: String },
    /// The cluster's hosts (overlay networks): VTEP and lease age.
    Hosts,
    /// Move a live sandbox from one network to another, keeping its interface name.
    Swap {
        sandbox: String,
        from: String,
        to: String,
    },
    /// Stream ferryd's events (networks, endpoints, sandboxes, CNI attachments) as they happen.
    Events {
        /// Also show the events of this long ago (e.g. 10m; ferryd keeps the last 1024).
        #[arg(long)]
        since: Option<String>,
    },
    /// Check this node for what breaks Ferry; each problem with the command that fixes it.
    ///
    /// Kernel state is read in the current network namespace. Exits non-zero
    /// when a problem is found.
    Doctor(doctor::DoctorArgs),
    /// Install Ferry's systemd units (prints the systemctl commands to run).
    Install(install_cmd::InstallArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages for ferry and each subcommand into DIR.
    Man { dir: std::path::PathBuf },
}

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
