//! ferryd's API from the command line: the shared client
//! ([`ferry_plugins::ferryd_client`]), a non-2xx answer as its `error` text.

use ferry_plugins::ferryd_client::{error_text, request, CallError};
use serde_json::Value;
use std::path::Path;

/// Sends a request; a non-2xx answer becomes its `error` text.
pub fn call(socket: &Path, verb: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    match request(socket, verb, path, body) {
        Ok((status, value)) if (200..300).contains(&status) => Ok(value),
        Ok((status, value)) => Err(error_text(status, &value)),
        Err(CallError::Unreachable(e)) => Err(format!(
            "cannot reach ferryd at {}: {e} (is ferryd running? see --api-socket)",
            socket.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}
