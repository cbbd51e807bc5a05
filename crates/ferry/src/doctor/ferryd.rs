//! ferryd: does its API socket answer, and with this CLI's version?

use super::{shell_word, Finding};
use std::path::Path;

pub fn reachable(api_socket: &Path) -> Finding {
    let check = "ferryd";
    let mine = env!("CARGO_PKG_VERSION");
    let sock = api_socket.display();
    match crate::api::call(api_socket, "GET", "/version", None) {
        Ok(v) => match v["version"].as_str() {
            Some(theirs) if theirs == mine => {
                Finding::ok(check, format!("ferryd {theirs} answers on {sock}"))
            }
            Some(theirs) => Finding::problem(
                check,
                format!("ferryd on {sock} is version {theirs}, this ferry is {mine}"),
                "systemctl restart ferryd (after installing the same version of both)",
            ),
            None => Finding::problem(
                check,
                format!("ferryd on {sock} did not say its version"),
                "systemctl restart ferryd",
            ),
        },
        Err(e) => Finding::problem(
            check,
            format!("ferryd is not reachable: {e}"),
            if api_socket == Path::new("/run/ferry/ferry.sock") {
                "systemctl start ferryd (ferry install --systemd installs its unit)".to_string()
            } else {
                format!(
                    "start ferryd with --api-socket {}",
                    shell_word(&api_socket.to_string_lossy())
                )
            },
        ),
    }
}
