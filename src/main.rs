//! The `shiftgate` binary: parse the command line, set up logging, run the command on a tokio
//! runtime, exit with its code.

use clap::Parser;
use shiftgate::{ErrorResult, ExitCode};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = match shiftgate::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` "fail" to parse too, onto stdout.
            if !error.use_stderr() {
                let _ = error.print();
                return ExitCode::Ok.into();
            }
            // The message quotes the refused value, which may hold a line break and a
            // workflow command (from a SHIFTGATE_* variable, say): print it neutralised.
            shiftgate::say_line(error.render().to_string().trim_end());
            if json_requested() {
                let message = error.render().to_string();
                let first_line = message.lines().next().unwrap_or_default();
                let error = first_line.trim_start_matches("error: ");
                shiftgate::print_json(&ErrorResult::new(None, error, ExitCode::BadInput));
            }
            return ExitCode::BadInput.into();
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SHIFTGATE_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(shiftgate::log_writer)
        .init();
    // Before anything can open a connection; the library also does this where it builds
    // clients, for callers that never come through here.
    shiftgate::ensure_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let code = runtime.block_on(shiftgate::run(cli));
    // Leave in-flight background tasks behind rather than wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code.into()
}

/// `--json` anywhere on the command line, or `SHIFTGATE_JSON` set to a true value: even a
/// command line that does not parse then answers with one JSON object.
fn json_requested() -> bool {
    std::env::args().any(|arg| arg == "--json")
        || std::env::var("SHIFTGATE_JSON").is_ok_and(|value| {
            !matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "false" | "no" | "off"
            )
        })
}
