//! The security of ferryd's two doors: the API socket is root's alone (an
//! unprivileged user is refused by the kernel), the Docker plugin socket
//! has the mode dockerd (root) needs and no more, and a request body above
//! the limit is refused with 413 on both. No kernel objects are made
//! beyond one null-driver network, removed at the end.

use ferry_testkit::docker::{http, Ferryd};
use ferry_testkit::*;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Ferry's limit (`plugin_api::MAX_BODY`), repeated: the binary's is private.
const MAX_BODY: usize = 1 << 20;
const NOBODY: u32 = 65534;

/// curl as user and group `nobody` (no supplementary groups): its exit
/// code and verbose log.
fn curl_as_nobody(socket: &Path, method: &str) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "-m", "2", "-X", "POST", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://ferry/{method}"))
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends a request with a body of `len` bytes (JSON `{"name":NAME,...}`
/// padded with spaces) from a writer thread, so a server that answers
/// before reading it all does not block us; returns the status.
fn post_sized(socket: &Path, path: &str, json: &str, len: usize) -> u16 {
    assert!(json.len() <= len);
    let body = format!("{json}{}", " ".repeat(len - json.len()));
    let mut s = UnixStream::connect(socket).expect("connect");
    let mut w = s.try_clone().expect("clone");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(body.as_bytes());
    });
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let _ = writer.join();
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sockets_are_root_only_and_bodies_bounded() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("ferry-doors")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    // Let `nobody` reach the sockets' directory: only the sockets' own
    // modes may stop it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = format!("ferry-d{}", std::process::id());
    let ferryd = Ferryd::start(
        Path::new(env!("CARGO_BIN_EXE_ferryd")),
        dir.path(),
        &name,
        &["base=198.18.92.0/22,size=24"],
    );

    // (b) Both sockets: owned by root, read-write for root only. dockerd
    // runs as root and needs exactly that.
    for s in [&ferryd.api_socket, &ferryd.plugin_socket] {
        let m = std::fs::metadata(s).unwrap_or_else(|e| panic!("{}: {e}", s.display()));
        assert_eq!(
            (m.uid(), m.mode() & 0o7777),
            (0, 0o600),
            "{}: owner {} mode {:o}, want root and 0600",
            s.display(),
            m.uid(),
            m.mode() & 0o7777
        );
    }
    // No temporary socket of the bind is left beside them.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "bind left {leftovers:?}");
    // Root is served on both.
    let (status, v) = http(&ferryd.plugin_socket, "POST", "/Plugin.Activate", "{}");
    assert_eq!(status, 200, "Plugin.Activate as root: {v}");
    let (status, v) = http(&ferryd.api_socket, "GET", "/networks", "");
    assert_eq!(status, 200, "GET /networks as root: {v}");

    // Control: curl as nobody does connect to a socket open to all, so a
    // refusal below comes from ferryd's socket modes.
    let open = dir.path().join("open.sock");
    let _listener = UnixListener::bind(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, log) = curl_as_nobody(&open, "x");
    assert!(
        code != 7 && !log.contains("Permission denied"),
        "control: curl as nobody could not connect to a 0666 socket (exit {code}): {log}"
    );

    // (a) nobody is refused by the kernel on both sockets.
    for (s, method) in [
        (&ferryd.api_socket, "networks"),
        (&ferryd.plugin_socket, "Plugin.Activate"),
    ] {
        let (code, log) = curl_as_nobody(s, method);
        assert!(
            code == 7 && log.contains("Permission denied"),
            "{}: nobody was not refused with EACCES (curl exit {code}): {log}",
            s.display()
        );
    }

    // (c) Bodies: at the limit served, one byte over refused with 413.
    let net = unique("fdoor");
    let create = format!(r#"{{"name":"{net}","driver":"null"}}"#);
    assert_eq!(
        post_sized(&ferryd.api_socket, "/networks", &create, MAX_BODY + 1),
        413,
        "API: a body over {MAX_BODY} bytes was not refused with 413"
    );
    assert_eq!(
        post_sized(&ferryd.api_socket, "/networks", &create, MAX_BODY),
        200,
        "API: a body of exactly {MAX_BODY} bytes was refused"
    );
    let (status, v) = http(
        &ferryd.api_socket,
        "DELETE",
        &format!("/networks/{net}"),
        "",
    );
    assert_eq!(status, 200, "remove {net}: {v}");
    assert_eq!(
        post_sized(
            &ferryd.plugin_socket,
            "/NetworkDriver.GetCapabilities",
            "{}",
            MAX_BODY + 1
        ),
        413,
        "plugin: a body over {MAX_BODY} bytes was not refused with 413"
    );
    assert_eq!(
        post_sized(
            &ferryd.plugin_socket,
            "/NetworkDriver.GetCapabilities",
            "{}",
            MAX_BODY
        ),
        200,
        "plugin: a body of exactly {MAX_BODY} bytes was refused"
    );
}
