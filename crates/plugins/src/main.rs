//! One executable for every Ferry CNI plugin, busybox style: the plugin is the
//! name it was run as (`/opt/cni/bin/bridge -> ferry-plugin`), or the first
//! argument when run as `ferry-plugin TYPE`. `dhcp daemon ...` runs the DHCP
//! daemon instead of a CNI invocation, as the reference `dhcp` does.

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let invoked = std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = if invoked == "ferry-plugin" {
        args.next()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        invoked
    };
    let rest: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    if name == "dhcp" && rest.first().is_some_and(|a| a == "daemon") {
        ferry_plugins::dhcp::daemon_main(&rest[1..]);
    }
    match ferry_plugins::find(&name) {
        Some(entry) => ferry_cni::skel::plugin_main(entry.name, entry.plugin, entry.about),
        None => {
            let known: Vec<&str> = ferry_plugins::REGISTRY.iter().map(|e| e.name).collect();
            eprintln!(
                "ferry-plugin: unknown plugin {name:?}; run as one of: {}",
                known.join(", ")
            );
            std::process::exit(1);
        }
    }
}
