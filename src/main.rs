//! The `shiftgate` binary: parse the command line, set up logging, run the command on a tokio
//! runtime, exit with its code.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = match shiftgate::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return shiftgate::refuse_arguments(error).into(),
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
