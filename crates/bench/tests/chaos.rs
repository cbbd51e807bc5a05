//! `ferry-bench --chaos 20` (Ferry only): SIGKILL of the runtime and its
//! plugins at random moments of ADD and of DEL, for bridge+host-local and
//! for the full chain, then DEL or GC; nothing may be left, and kills must
//! have landed during both verbs of both chains. The failure message lists
//! exactly what was left (and in which phase the kill had landed).

use ferry_testkit::{files, require_root};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn killed_adds_and_dels_leave_nothing_behind() {
    require_root();
    let tag = format!("k{:03x}", std::process::id() % 0xfff);
    let out = tempfile::tempdir().expect("temporary directory");
    let started = std::time::Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_ferry-bench"))
        .args([
            "--chaos",
            "20",
            "--chaos-skip-reference",
            "--tag",
            &tag,
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("run ferry-bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "ferry-bench --chaos failed ({}):\n{stderr}",
        run.status
    );
    eprintln!("chaos run took {:.1} s", started.elapsed().as_secs_f64());
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("chaos.json")).expect("chaos.json"))
            .expect("chaos.json parses");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4, "two chains × two verbs: {report}");
    let mut left = Vec::new();
    for r in runs {
        let what = format!("{} {}", r["chain"], r["verb"]);
        assert_eq!(r["iterations"], 20, "{what}");
        assert!(
            r["landed"].as_u64().unwrap_or(0) > 0,
            "no kill landed during {what}: {r}"
        );
        // A plugin (not only the runtime) was hit.
        let phases = r["phases"].as_object().expect("phases");
        assert!(
            phases
                .keys()
                .any(|p| !p.ends_with(" done") && !p.ends_with(" runtime")),
            "no kill landed while a plugin of {what} ran: {phases:?}"
        );
        for key in ["leftovers", "cleanup_failures"] {
            for l in r[key].as_array().into_iter().flatten() {
                left.push(format!("{what}: {}", l.as_str().unwrap_or("?")));
            }
        }
    }
    assert!(
        left.is_empty(),
        "left after a killed verb and DEL/GC (iteration (verb phase, cleanup): item):\n{}",
        left.join("\n")
    );
    // The run's own namespaces and work directory are gone.
    let prefix = format!("ch{tag}");
    let namespaces: Vec<String> = files(Path::new("/run/netns"))
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    assert!(
        !Path::new("/run/ferry-bench").join(&tag).exists(),
        "work directory left"
    );
}
