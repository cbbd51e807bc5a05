//! ferryd: does its API socket answer, and with this CLI's version?

use super::{shell_word, Finding};
use ferry_plugins::ferryd_client::{request, CallError};
use std::path::Path;

pub fn reachable(api_socket: &Path) -> Finding {
    let check = "ferryd";
    let mine = env!("CARGO_PKG_VERSION");
    let sock = api_socket.display();
    let restart = "systemctl restart ferryd (after installing ferry and ferryd of one version)";
    match request(api_socket, "GET", "/version", None) {
        Ok((200, v)) => match v["version"].as_str() {
            Some(theirs) if theirs == mine => {
                Finding::ok(check, format!("ferryd {theirs} answers on {sock}"))
            }
            Some(theirs) => Finding::problem(
                check,
                format!("ferryd on {sock} is version {theirs}, this ferry is {mine}"),
                restart,
            ),
            None => Finding::problem(
                check,
                format!("ferryd on {sock} did not say its version: {v}"),
                restart,
            ),
        },
        // An older ferryd has no /version.
        Ok((404, _)) => Finding::problem(
            check,
            format!("ferryd on {sock} answers but is older than this ferry {mine}"),
            restart,
        ),
        Ok((status, v)) => Finding::problem(
            check,
            format!(
                "ferryd on {sock} answered /version with {}",
                ferry_plugins::ferryd_client::error_text(status, &v)
            ),
            restart,
        ),
        Err(e) => {
            let why = match e {
                CallError::Unreachable(e) => e.to_string(),
                CallError::Broken(m) => m,
            };
            Finding::problem(
                check,
                format!("ferryd is not reachable at {sock}: {why}"),
                if api_socket == Path::new("/run/ferry/ferry.sock") {
                    "systemctl start ferryd (ferry install --systemd installs its unit)".to_string()
                } else {
                    format!(
                        "start ferryd with --api-socket {}",
                        shell_word(&api_socket.to_string_lossy())
                    )
                },
            )
        }
    }
}
