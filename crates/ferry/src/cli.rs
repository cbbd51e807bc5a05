//! The whole command-line definition of `ferry` (clap), and nothing else:
//! the binary parses with it, and build.rs `include!`s this file to write
//! the completion scripts and man pages at build time. So it may name only
//! clap, clap_complete and std (build.rs has no other dependencies).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// libcni's cache directory; equal to `ferry_cni::cache::DEFAULT_CACHE_DIR`
/// (a unit test holds them together: build.rs cannot depend on ferry-cni).
pub const CNI_CACHE_DIR: &str = "/var/lib/cni";
/// Where the units expect the binaries, unless --bin-dir says otherwise.
pub const DEFAULT_BIN_DIR: &str = "/usr/local/bin";
/// Where the DHCP daemon's unit expects the CNI plugins (`dhcp`).
pub const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry container networking (CNI and CNM)"
)]
pub struct Cli {
    /// Print machine-readable JSON (results and errors) on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// ferryd's API socket.
    #[arg(
        long,
        env = "FERRY_API_SOCKET",
        default_value = "/run/ferry/ferry.sock",
        global = true
    )]
    pub api_socket: PathBuf,
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Subcommand)]
pub enum Top {
    /// Run CNI network configurations against a network namespace, like cnitool.
    Cni(CniArgs),
    /// Install Ferry's CNI plugins into a plugin directory.
    Plugins(PluginsArgs),
    /// Networks of ferryd (CNM).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Sandboxes: network namespaces ferryd connects to networks.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Services that move between sandboxes, keeping address, MAC, name and published ports.
    #[command(subcommand)]
    Service(ServiceCommand),
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
    Doctor(DoctorArgs),
    /// Install Ferry's systemd units (prints the systemctl commands to run).
    Install(InstallArgs),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages for ferry and each subcommand into DIR.
    Man { dir: PathBuf },
}

const DEFAULT_CNI_PATH: &str = "/opt/cni/bin:/usr/lib/cni";

#[derive(Args)]
pub struct CniArgs {
    /// Directory of network configurations.
    #[arg(
        long,
        env = "NETCONFPATH",
        default_value = "/etc/cni/net.d",
        global = true
    )]
    pub netconfpath: PathBuf,
    /// Plugin directories, `:`-separated.
    #[arg(long, env = "CNI_PATH", default_value = DEFAULT_CNI_PATH, global = true)]
    pub cni_path: String,
    /// Result cache directory (libcni's default).
    #[arg(long, env = "FERRY_CNI_CACHE_DIR", default_value = CNI_CACHE_DIR, global = true)]
    pub cache_dir: PathBuf,
    #[command(subcommand)]
    pub command: CniCommand,
}

#[derive(Args)]
pub struct Attach {
    /// Network name (the `name` in a configuration file).
    pub network: String,
    /// Network namespace path, e.g. /run/netns/NAME.
    pub netns: String,
    /// Interface name inside the namespace.
    #[arg(long, short = 'i', env = "CNI_IFNAME", default_value = "eth0")]
    pub ifname: String,
    /// Container ID; defaults to the one cnitool derives from the namespace path.
    #[arg(long)]
    pub container_id: Option<String>,
    /// Extra CNI_ARGS, `K=V;K2=V2`.
    #[arg(long, env = "CNI_ARGS", default_value = "")]
    pub cni_args: String,
    /// Capability arguments as a JSON object.
    #[arg(long, env = "CAP_ARGS", default_value = "")]
    pub cap_args: String,
}

#[derive(Subcommand)]
pub enum CniCommand {
    /// Add the namespace to the network and print the result.
    Add(Attach),
    /// Check the attachment against the result cached at ADD; reports config drift.
    Check(Attach),
    /// Delete the attachment, with the configuration cached at ADD.
    Del(Attach),
    /// Ask every plugin of the network whether it is ready.
    Status { network: String },
    /// Clean up stale attachments of a network.
    ///
    /// Valid attachments are those given with --valid; without it, the cached
    /// attachments whose namespace still exists.
    Gc {
        network: String,
        /// A valid attachment as CONTAINERID/IFNAME (repeatable).
        #[arg(long = "valid")]
        valid: Vec<String>,
    },
    /// Show the CNI versions Ferry supports, or those of the named plugins.
    Version { plugins: Vec<String> },
    /// List the networks in NETCONFPATH with their plugins and versions.
    List,
}

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network (bridge by default); without --subnet one comes from the default pools.
    Create {
        name: String,
        /// A subnet (repeatable; IPv4 and/or IPv6).
        #[arg(long)]
        subnet: Vec<String>,
        /// Also give the network an IPv6 subnet (from the default pools if none is named).
        #[arg(long)]
        ipv6: bool,
        /// No gateway and no way out.
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        mtu: Option<u32>,
        /// Bridge name (default: fr-<id>).
        #[arg(long)]
        bridge: Option<String>,
        /// A route every sandbox on the network gets: DST or DST,GATEWAY (repeatable).
        #[arg(long)]
        route: Vec<String>,
        /// bridge (default), macvlan, null, host or overlay (all hosts of the cluster).
        #[arg(long, short = 'd')]
        driver: Option<String>,
        /// A driver option KEY=VALUE, e.g. parent=eth0, macvlan_mode=bridge (repeatable).
        #[arg(long = "opt", short = 'o')]
        opt: Vec<String>,
    },
    /// List networks.
    Ls,
    /// Show one network.
    Inspect { name: String },
    /// Remove a network (refused while sandboxes are connected).
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox: a new network namespace, or an existing one with --path.
    Create {
        name: String,
        #[arg(long)]
        path: Option<String>,
    },
    /// List sandboxes.
    Ls,
    /// Show a sandbox, its endpoints and route arbitration.
    Inspect { name: String },
    /// Disconnect everything and remove the sandbox.
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Create a service on a network: addresses and MAC reserved, ports published; no sandbox holds it yet.
    Create {
        name: String,
        #[arg(long)]
        network: String,
        /// Its address (repeatable: one IPv4, one IPv6; other families the network has get one).
        #[arg(long)]
        address: Vec<String>,
        /// Publish HOSTPORT:PORT[/tcp|udp|sctp] (repeatable).
        #[arg(long)]
        publish: Vec<String>,
    },
    /// Put a service no sandbox holds into a sandbox.
    Attach { name: String, sandbox: String },
    /// Take a service from the sandbox holding it into another.
    Move { name: String, sandbox: String },
    /// Take a service out of its sandbox (it keeps its addresses and ports).
    Detach { name: String },
    /// Remove a service.
    Rm { name: String },
    /// List services and where they are.
    Ls,
}

#[derive(Args)]
pub struct PluginsArgs {
    #[command(subcommand)]
    pub command: PluginsCommand,
}

#[derive(Subcommand)]
pub enum PluginsCommand {
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

#[derive(Args)]
pub struct InstallArgs {
    /// Install the systemd units (ferryd, and the DHCP daemon's when shipped).
    #[arg(long)]
    pub systemd: bool,
    /// Root of the file system to install into.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Where ferryd and ferry-plugin are installed (the units' ExecStart).
    #[arg(long, default_value = DEFAULT_BIN_DIR)]
    pub bin_dir: PathBuf,
    /// Where the CNI plugins are installed (the DHCP daemon's ExecStart).
    #[arg(long, default_value = DEFAULT_CNI_BIN_DIR)]
    pub cni_bin_dir: PathBuf,
}

#[derive(Args)]
pub struct DoctorArgs {
    /// libcni's cache directory (its `results/` holds one entry per attachment).
    #[arg(long, env = "FERRY_CNI_CACHE_DIR", default_value = CNI_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// host-local's lease directory (its `dataDir`), one directory per network.
    #[arg(
        long,
        env = "FERRY_LEASES_DIR",
        default_value = "/var/lib/cni/networks"
    )]
    pub leases_dir: PathBuf,
    /// The list of loaded modules.
    #[arg(long, default_value = "/proc/modules")]
    pub proc_modules: PathBuf,
    /// The kernel's module directory in sysfs (loaded and built-in modules).
    #[arg(long, default_value = "/sys/module")]
    pub sys_module: PathBuf,
    /// Judge kernel modules by --proc-modules and --sys-module alone, without
    /// trying the features in a scratch network namespace.
    #[arg(long)]
    pub no_probe: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_dir_default_is_libcnis() {
        assert_eq!(super::CNI_CACHE_DIR, ferry_cni::cache::DEFAULT_CACHE_DIR);
    }
}
