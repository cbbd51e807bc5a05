//! The operation log every plugin gets from the entry point: one line
//! appended per invocation to `FERRY_LOG_FILE` or the config's
//! `ferryLogFile` (which wins), and nothing on stderr when all went well.
//! Runs Ferry's `host-local` (state in a temporary directory, no kernel
//! state, no root needed) on 198.18.126.0/24.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    stdout: Value,
    stderr: String,
}

/// `ferry-plugin host-local` with `command`, the config on stdin and
/// FERRY_LOG_FILE set to `env_log` (or unset).
fn host_local(command: &str, conf: &Value, env_log: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry-plugin"));
    cmd.arg("host-local")
        .env_remove("FERRY_LOG_FILE")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "ferry-log-c1")
        .env("CNI_NETNS", "/var/run/netns/ferry-log-unused")
        .env("CNI_IFNAME", "eth7")
        .env("CNI_PATH", "/nonexistent")
        .stderr(Stdio::piped());
    if let Some(p) = env_log {
        cmd.env("FERRY_LOG_FILE", p);
    }
    let out = ferry_testkit::run_with_stdin(&mut cmd, conf.to_string().as_bytes());
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn each_invocation_appends_one_line_and_success_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let env_log = dir.path().join("env.log");
    let conf_log = dir.path().join("conf.log");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "ferry-log",
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "dataDir": dir.path().join("data"),
            "ranges": [[{"subnet": "198.18.126.0/24"}]],
        },
    });

    // ADD, logged to FERRY_LOG_FILE.
    let add = host_local("ADD", &conf, Some(&env_log));
    assert_eq!(add.code, 0, "{}", add.stdout);
    assert_eq!(add.stdout["ips"][0]["address"], "198.18.126.2/24");
    assert_eq!(add.stderr, "", "stderr on success");
    let l = lines(&env_log);
    assert_eq!(l.len(), 1, "{l:?}");
    for want in [
        r#"plugin="host-local""#,
        r#"command="ADD""#,
        r#"container="ferry-log-c1""#,
        r#"ifname="eth7""#,
        " duration=",
        " outcome=ok",
    ] {
        assert!(l[0].contains(want), "{want} not in {}", l[0]);
    }
    // Starts with an RFC 3339 UTC timestamp.
    let ts = l[0].split(' ').next().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );

    // A failing ADD is appended too, with the error the runtime got.
    let mut bad = conf.clone();
    bad["ipam"]["ranges"] = json!([[{"subnet": "198.18.126.0/33"}]]);
    let failed = host_local("ADD", &bad, Some(&env_log));
    assert_ne!(failed.code, 0);
    let msg = failed.stdout["msg"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!msg.is_empty(), "{}", failed.stdout);
    let l = lines(&env_log);
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l[0].ends_with(" outcome=ok"), "first line rewritten: {l:?}");
    assert!(
        l[1].contains(" outcome=error ") && l[1].contains(&msg),
        "{} lacks {msg}",
        l[1]
    );

    // DEL with ferryLogFile in the config: the config wins over the variable.
    let mut keyed = conf.clone();
    keyed["ferryLogFile"] = json!(conf_log);
    let del = host_local("DEL", &keyed, Some(&env_log));
    assert_eq!((del.code, del.stderr.as_str()), (0, ""));
    assert_eq!(lines(&env_log).len(), 2);
    let l = lines(&conf_log);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].contains(r#"command="DEL""#) && l[0].ends_with(" outcome=ok"));

    // No log asked for: no new file, no line, and still nothing on stderr.
    let add = host_local("ADD", &conf, None);
    assert_eq!((add.code, add.stderr.as_str()), (0, ""));
    assert_eq!(
        ferry_testkit::files(dir.path())
            .iter()
            .filter(|f| !f.starts_with("data"))
            .collect::<Vec<_>>(),
        ["conf.log", "env.log"]
    );
    assert_eq!(lines(&env_log).len(), 2);
    assert_eq!(lines(&conf_log).len(), 1);
}
