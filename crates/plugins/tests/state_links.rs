//! State directories are not created through a symbolic link an
//! unprivileged user planted: the DHCP daemon's `-statedir`. (host-local's
//! dataDir, the CNI cache and the tuning backup have unit tests next to
//! their code; the drivers' records and ferryd's stores too.)

use ferry_testkit::{require_root, PlantedLink};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn dhcp_daemon_refuses_a_planted_state_dir() {
    require_root();
    let p = PlantedLink::new();
    let sock_dir = tempfile::tempdir().expect("temporary directory");
    let socket = sock_dir.path().join("dhcp.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-plugin"))
        .args(["dhcp", "daemon", "-socketpath"])
        .arg(&socket)
        .arg("-statedir")
        .arg(p.link.join("dhcp"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the dhcp daemon");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the daemon") {
            break s;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the dhcp daemon started with a state directory through a planted link");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(!status.success(), "daemon exited 0; stderr: {err}");
    assert!(err.contains("symbolic link"), "unclear refusal: {err}");
    assert!(!socket.exists(), "the refused daemon left its socket");
    p.assert_untouched("the dhcp daemon");
}
