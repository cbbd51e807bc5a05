//! `ferry install --systemd` writes the units into a root of the test's, and
//! `systemd-analyze verify` accepts them (their Documentation= resolving to
//! the man pages `ferry man` generates); `ferry completion` and `ferry man`
//! are generated from the CLI definition and cover its subcommands and options;
//! the build writes the same into `ferry-docs/` beside the binaries.

use ferry_testkit::*;
use std::path::Path;
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_systemd_writes_verified_units_and_says_what_to_run() {
    let root = tempfile::tempdir().unwrap();
    let bin_dir = workspace_bin(env!("CARGO_BIN_EXE_ferry"), "ferryd");
    let bin_dir = bin_dir.parent().unwrap();
    // The DHCP daemon's unit runs the multi-call plugin under the name dhcp.
    let cni_bin = root.path().join("cni-bin");
    std::fs::create_dir(&cni_bin).unwrap();
    std::os::unix::fs::symlink(bin_dir.join("ferry-plugin"), cni_bin.join("dhcp")).unwrap();
    let out = ferry(&[
        "install",
        "--systemd",
        "--root",
        root.path().to_str().unwrap(),
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--cni-bin-dir",
        cni_bin.to_str().unwrap(),
    ]);
    let said = text(&out);
    let unit_path = root.path().join("etc/systemd/system/ferryd.service");
    assert!(
        said.contains(&format!("wrote {}", unit_path.display())),
        "{said}"
    );
    assert!(said.contains("systemctl daemon-reload"), "{said}");
    assert!(
        said.lines()
            .any(|l| l.trim().starts_with("systemctl enable --now ")
                && l.split_whitespace().any(|u| u == "ferryd.service")),
        "{said}"
    );

    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "Restart=on-failure",
        "Before=docker.service",
        // READY=1 once the sockets listen, pings for the watchdog.
        "Type=notify",
        "WatchdogSec=30s",
        "StateDirectory=ferry",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN CAP_NET_BIND_SERVICE",
        &format!("ExecStart={}/ferryd", bin_dir.display()),
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line:?} missing from the unit:\n{unit}"
        );
    }
    // Options that give the service its own mount namespace would hide the
    // namespaces ferryd bind-mounts under /run/netns from the host.
    for option in [
        "ProtectSystem=",
        "PrivateTmp=",
        "ProtectKernelTunables=",
        "PrivateMounts=",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(option)),
            "{option} would break netns work"
        );
    }
    // Every unit shipped under contrib/systemd is installed.
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd");
    for shipped in files(&contrib) {
        assert!(
            root.path()
                .join("etc/systemd/system")
                .join(&shipped)
                .exists(),
            "{shipped} not installed"
        );
    }

    if !sh_ok("command -v systemd-analyze") {
        eprintln!("systemd-analyze absent: units not verified");
        return;
    }
    let man = root.path().join("man");
    ferry(&["man", man.join("man1").to_str().unwrap()]);
    for shipped in files(&root.path().join("etc/systemd/system")) {
        let path = root.path().join("etc/systemd/system").join(&shipped);
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .env("MANPATH", &man)
            .output()
            .unwrap();
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "systemd-analyze verify {shipped}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}

#[test]
fn completion_scripts_know_the_subcommands() {
    let bash = text(&ferry(&["completion", "bash"]));
    assert!(
        bash.contains("complete -F _ferry"),
        "not a bash completion script"
    );
    for sub in [
        "cni",
        "doctor",
        "install",
        "completion",
        "man",
        "network",
        "events",
    ] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    // Options too: doctor's own.
    assert!(
        bash.contains("--leases-dir"),
        "bash completion lacks doctor's --leases-dir"
    );
    for shell in ["zsh", "fish"] {
        let script = text(&ferry(&["completion", shell]));
        assert!(script.contains("doctor"), "{shell} completion lacks doctor");
    }
}

#[test]
fn man_pages_cover_ferry_and_each_subcommand_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    ferry(&["man", dir.path().to_str().unwrap()]);
    let page = |name: &str| {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; pages: {:?}", files(dir.path())))
    };
    let top = page("ferry.1");
    assert!(top.contains(".TH ferry 1"), "not ferry's man page:\n{top}");
    // SEE ALSO names the subcommands' pages.
    assert!(top.contains("ferry\\-doctor(1)"), "{top}");
    let doctor = page("ferry-doctor.1");
    assert!(doctor.contains(".TH ferry-doctor 1"), "{doctor}");
    for option in [
        "\\-\\-cache\\-dir",
        "\\-\\-leases\\-dir",
        "\\-\\-no\\-probe",
        "\\-\\-json",
    ] {
        assert!(
            doctor.contains(option),
            "{option} missing from ferry-doctor.1"
        );
    }
    let add = page("ferry-cni-add.1");
    assert!(
        add.contains("\\-\\-ifname"),
        "--ifname missing from ferry-cni-add.1"
    );
}

/// build.rs writes ferry-docs/ beside the binaries from the same CLI
/// definition: the files exist, name the subcommands, and equal what
/// `ferry completion` and `ferry man` print.
#[test]
fn the_build_writes_completions_and_man_pages_beside_the_binaries() {
    let exe = Path::new(env!("CARGO_BIN_EXE_ferry"));
    let docs = exe.parent().unwrap().join("ferry-docs");
    let read = |rel: &str| {
        std::fs::read_to_string(docs.join(rel)).unwrap_or_else(|e| {
            panic!(
                "{rel} not generated by the build in {}: {e}",
                docs.display()
            )
        })
    };
    for (file, shell) in [
        ("completions/ferry.bash", "bash"),
        ("completions/_ferry", "zsh"),
        ("completions/ferry.fish", "fish"),
    ] {
        let built = read(file);
        for sub in ["cni", "doctor", "network", "events", "completion"] {
            assert!(built.contains(sub), "{file} lacks {sub}");
        }
        assert_eq!(
            built,
            text(&ferry(&["completion", shell])),
            "{file} differs from `ferry completion {shell}`"
        );
    }
    let printed = tempfile::tempdir().unwrap();
    ferry(&["man", printed.path().to_str().unwrap()]);
    let pages = files(printed.path());
    assert_eq!(
        files(&docs.join("man/man1")),
        pages,
        "the build's man pages are not those of `ferry man`"
    );
    for page in &pages {
        assert_eq!(
            read(&format!("man/man1/{page}")),
            std::fs::read_to_string(printed.path().join(page)).unwrap(),
            "{page} differs from `ferry man`'s"
        );
    }
    let top = read("man/man1/ferry.1");
    for sub in ["ferry\\-cni(1)", "ferry\\-doctor(1)", "ferry\\-network(1)"] {
        assert!(top.contains(sub), "ferry.1 does not name {sub}:\n{top}");
    }
}
