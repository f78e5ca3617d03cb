//! The `shiftgate` binary: parse the command line, set up logging, run the command on a tokio
//! runtime, exit with its code.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = match shiftgate::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            std::process::exit(if error.use_stderr() { 2 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SHIFTGATE_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let code = runtime.block_on(shiftgate::commands::run(cli));
    // Leave in-flight background tasks behind rather than wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
