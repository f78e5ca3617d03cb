//! Helpers for black-box tests of the `shiftgate` binary: run it off the async runtime, and read
//! its one JSON result and its progress log.

use std::process::{Command, Output};

use serde_json::Value;

/// Runs the command to completion on the blocking pool, so simulators on the runtime keep serving.
pub async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The single JSON object on stdout (panics with both streams when it is not one).
pub fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|error| {
        panic!(
            "stdout is one JSON object ({error}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
