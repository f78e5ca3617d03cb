//! Runs one parsed command: loads config, builds the adapters from the endpoint variables, wires
//! signals to the engine's interrupt, and turns the result into output and an exit code.

#[cfg(feature = "demo")]
mod demo;
mod dispatch;
mod github_deployment;
mod health;
mod health_incident;
mod incident;
pub(crate) mod promote;
mod public_url;
mod reference;
pub(crate) mod report;
mod resolve;
pub(crate) mod result;
pub(crate) mod rollback;
mod rollout;
mod rollout_evidence;
mod simulate;
pub(crate) mod status;
pub(crate) mod waves;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::cloudrun::CloudRunService;
use crate::commands::result::ErrorResult;
use crate::config::{Config, ConfigError, ServiceAddress};
use crate::exit::ExitCode;
use crate::gcp::{Credentials, GoogleRest};
use crate::output::print_json;
use crate::rollout::engine::{Interrupt, InterruptTrigger};
use crate::workflow_command::{emit, is_actions, workflow_command};

/// What every command shares.
#[derive(Debug, Clone)]
pub struct Context {
    pub json: bool,
    pub config_path: Option<PathBuf>,
    pub interrupt: Interrupt,
}

impl Context {
    pub fn config(&self) -> Result<Config, CommandError> {
        Config::load(self.config_path.as_deref()).map_err(CommandError::from)
    }
}

/// A command that could not do its job, with the exit code that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub exit_code: ExitCode,
    pub message: String,
}

impl CommandError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self {
            exit_code: ExitCode::BadInput,
            message: message.into(),
        }
    }

    pub fn api(message: impl Into<String>) -> Self {
        Self {
            exit_code: ExitCode::ApiFailed,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for CommandError {
    fn from(error: ConfigError) -> Self {
        CommandError::bad_input(error.0)
    }
}

/// API base URLs, overridable for tests and GitHub Enterprise Server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub cloud_run: String,
    pub monitoring: String,
    /// Cloud Storage JSON API (the `--backup` copy).
    pub storage: String,
    /// Cloud Logging API (the error logs an incident carries).
    pub logging: String,
}

impl Endpoints {
    pub fn from_env() -> Self {
        let pick = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Self {
            cloud_run: pick("SHIFTGATE_CLOUD_RUN_URL", "https://run.googleapis.com"),
            monitoring: pick(
                "SHIFTGATE_MONITORING_URL",
                "https://monitoring.googleapis.com",
            ),
            storage: pick("SHIFTGATE_STORAGE_URL", "https://storage.googleapis.com"),
            logging: pick("SHIFTGATE_LOGGING_URL", crate::logging::DEFAULT_LOGGING_URL),
        }
    }

    /// Google credentials from the environment for calls to `bases` (the API roots the command
    /// will use, no others: a plain-HTTP simulator needs none); none to be found anywhere is bad
    /// configuration (exit 2), said before any request.
    pub async fn credentials(bases: &[&str]) -> Result<Credentials, CommandError> {
        Credentials::from_env_for(bases)
            .await
            .map_err(CommandError::bad_input)
    }

    /// The Cloud Run client for one service, with credentials from the environment.
    pub async fn cloud_run(
        &self,
        address: &ServiceAddress,
    ) -> Result<CloudRunService, CommandError> {
        let credentials = Self::credentials(&[&self.cloud_run]).await?;
        Ok(self.cloud_run_with(address, credentials))
    }

    pub fn cloud_run_with(
        &self,
        address: &ServiceAddress,
        credentials: Credentials,
    ) -> CloudRunService {
        CloudRunService::new(
            GoogleRest::new(&self.cloud_run, credentials),
            &address.project,
            &address.region,
            &address.service,
        )
    }
}

/// The GitHub client from `GITHUB_API_URL` and `GITHUB_TOKEN`/`GH_TOKEN` (exit 2 without a token).
pub fn github_from_env() -> Result<crate::github::GitHub, CommandError> {
    let token = crate::github::client::token_from_env().ok_or_else(|| {
        CommandError::bad_input(
            "no GitHub token: set GITHUB_TOKEN (in a workflow: `env: GITHUB_TOKEN: ${{ github.token }}`) or GH_TOKEN",
        )
    })?;
    crate::github::GitHub::new(
        &crate::github::client::api_url_from_env(),
        &token,
        crate::clock::Clock::new(),
    )
    .map_err(CommandError::bad_input)
}

/// The repository to work on, checked for shape: `--repo` (or `SHIFTGATE_REPO`), else the
/// config's `repo`, else `$GITHUB_REPOSITORY` (the order `rollout` files its incidents by).
pub fn repo_arg(config: &Config, repo: Option<&str>) -> Result<crate::github::Repo, CommandError> {
    let text = config.incident_repo(repo).ok_or_else(|| {
        CommandError::bad_input(
            "--repo OWNER/NAME is required (or `repo` in shiftgate.toml, or GITHUB_REPOSITORY)",
        )
    })?;
    crate::github::Repo::parse(&text).map_err(CommandError::bad_input)
}

/// Raises the interrupt on SIGINT or SIGTERM (a cancelled Actions job sends both) and on SIGHUP
/// (a closed terminal or ssh session), so each of them restores stable traffic before exiting.
pub fn watch_signals(trigger: InterruptTrigger) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                tracing::warn!("could not install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {},
                    _ = terminate.recv() => {},
                    _ = hangup.recv() => {},
                }
                trigger.trigger();
            }
        }
        #[cfg(not(unix))]
        {
            while tokio::signal::ctrl_c().await.is_ok() {
                trigger.trigger();
            }
        }
    });
}

/// Runs the command and prints its result; returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let (trigger, interrupt) = Interrupt::channel();
    watch_signals(trigger);
    let in_actions = is_actions();
    if in_actions {
        crate::mask::mask_tokens_from_env();
    }
    let context = Context {
        json: cli.json,
        config_path: cli.config.clone(),
        interrupt: interrupt.clone(),
    };
    let name = command_name(&cli.command);
    let work = async {
        match cli.command {
            Command::Rollout(args) => rollout::run(&context, *args).await,
            Command::Rollback(args) => rollback::run(&context, args).await,
            Command::Abort(args) => rollback::abort(&context, args).await,
            Command::Promote(args) => promote::run(&context, args).await,
            Command::Status(args) => status::run(&context, args).await,
            Command::Health(args) => health::run(&context, args).await,
            #[cfg(feature = "demo")]
            Command::Demo(args) => demo::run(&context, args).await,
            #[cfg(not(feature = "demo"))]
            Command::Demo(_) => Err(CommandError::bad_input(
                "this shiftgate was built without the `demo` feature; build it with default features \
                 (cargo build --release) to run the simulated rollout",
            )),
            Command::Dispatch(args) => dispatch::run(&context, args).await,
            Command::Incident(args) => incident::run(&context, args).await,
            Command::Report(args) => report::run(&context, args).await,
            Command::Simulate(args) => simulate::run(&context, args).await,
            Command::Completions(args) => reference::completions(&context, args).await,
            Command::Man(args) => reference::man(&context, args).await,
        }
    };
    // Rollout and rollback handle the interrupt themselves (they must leave traffic known);
    // read-only commands just stop.
    let finished = if matches!(name, "rollout" | "rollback" | "abort" | "demo" | "dispatch") {
        work.await
    } else {
        tokio::select! {
            finished = work => finished,
            _ = interrupt.fired() => Err(CommandError {
                exit_code: ExitCode::Interrupted,
                message: "interrupted".into(),
            }),
        }
    };
    match finished {
        Ok(result) => {
            if context.json {
                print_json(&result);
            }
            if in_actions {
                crate::actions::finish(&result.facts());
            }
            result.exit_code()
        }
        Err(error) => report_error(name, error, context.json, in_actions),
    }
}

/// Says why the command could not do its job: on stderr, as the `--json` result, and in the job.
fn report_error(name: &'static str, error: CommandError, json: bool, in_actions: bool) -> ExitCode {
    crate::say!("shiftgate {name}: {}", error.message);
    let result = ErrorResult::new(Some(name), error.message, error.exit_code);
    if json {
        print_json(&result);
    }
    if in_actions {
        emit(&workflow_command(
            "error",
            &[("title", &format!("shiftgate {name}"))],
            &result.error,
        ));
        crate::actions::finish(&result.facts());
    }
    result.exit_code
}

/// A command line that did not parse: `--help` and `--version` go to stdout (exit 0); anything
/// else is said like any other bad input (exit 2): on stderr, as the `--json` result, and, under
/// GitHub Actions, as an annotation and the step's outputs.
pub fn refuse_arguments(error: clap::Error) -> ExitCode {
    if !error.use_stderr() {
        let _ = error.print();
        return ExitCode::Ok;
    }
    let argv: Vec<String> = std::env::args_os()
        .map(|word| word.to_string_lossy().into_owned())
        .collect();
    let message = crate::cli::describe_parse_error(&error, &argv, |name| {
        std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
    });
    // The message quotes the refused value, which may hold a line break and a workflow command
    // (from a SHIFTGATE_* variable, say): printed neutralised.
    crate::output::say_line(message.trim_end());
    let first_line = message.lines().next().unwrap_or_default();
    let result = ErrorResult::new(
        crate::cli::command_named_in(&argv),
        first_line.trim_start_matches("error: "),
        ExitCode::BadInput,
    );
    if json_requested(&argv) {
        print_json(&result);
    }
    if is_actions() {
        crate::mask::mask_tokens_from_env();
        let title = match result.command {
            Some(name) => format!("shiftgate {name}"),
            None => "shiftgate".to_string(),
        };
        emit(&workflow_command(
            "error",
            &[("title", &title)],
            &result.error,
        ));
        crate::actions::finish(&result.facts());
    }
    result.exit_code
}

/// `--json` anywhere on the command line, or `SHIFTGATE_JSON` set to a true value: even a
/// command line that does not parse then answers with one JSON object.
fn json_requested(argv: &[String]) -> bool {
    argv.iter().any(|arg| arg == "--json")
        || std::env::var("SHIFTGATE_JSON").is_ok_and(|value| {
            !matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "false" | "no" | "off"
            )
        })
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Rollout(_) => "rollout",
        Command::Rollback(_) => "rollback",
        Command::Abort(_) => "abort",
        Command::Promote(_) => "promote",
        Command::Status(_) => "status",
        Command::Health(_) => "health",
        Command::Demo(_) => "demo",
        Command::Dispatch(_) => "dispatch",
        Command::Incident(_) => "incident",
        Command::Report(_) => "report",
        Command::Simulate(_) => "simulate",
        Command::Completions(_) => "completions",
        Command::Man(_) => "man",
    }
}

#[cfg(test)]
mod pinned;
