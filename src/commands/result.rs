//! The typed result of every command: the one JSON object `--json` prints (keys and values as
//! DESIGN.md gives them), its exit code, and the facts the GitHub Actions job is told.

use serde::Serialize;

use crate::actions::ResultFacts;
#[cfg(feature = "demo")]
use crate::commands::demo::DemoResult;
use crate::commands::dispatch::DispatchResult;
use crate::commands::health::HealthResult;
use crate::commands::incident::IncidentResult;
use crate::commands::promote::PromoteResult;
use crate::commands::reference::ReferenceResult;
use crate::commands::rollback::RollbackResult;
use crate::commands::rollout::RolloutResult;
use crate::commands::simulate::SimulateResult;
use crate::commands::status::StatusResult;
use crate::exit::ExitCode;

/// What a command that did its job produced; `command` in the JSON names the variant.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
// One result is built per process and printed once: its size costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum CommandResult {
    Rollout(RolloutResult),
    Rollback(RollbackResult),
    Abort(RollbackResult),
    Promote(PromoteResult),
    Status(StatusResult),
    Health(HealthResult),
    #[cfg(feature = "demo")]
    Demo(DemoResult),
    Dispatch(DispatchResult),
    Incident(IncidentResult),
    Simulate(SimulateResult),
    Completions(ReferenceResult),
    Man(ReferenceResult),
}

impl CommandResult {
    /// The command's name, as in its JSON `command`.
    pub fn command(&self) -> &'static str {
        match self {
            CommandResult::Rollout(_) => "rollout",
            CommandResult::Rollback(_) => "rollback",
            CommandResult::Abort(_) => "abort",
            CommandResult::Promote(_) => "promote",
            CommandResult::Status(_) => "status",
            CommandResult::Health(_) => "health",
            #[cfg(feature = "demo")]
            CommandResult::Demo(_) => "demo",
            CommandResult::Dispatch(_) => "dispatch",
            CommandResult::Incident(_) => "incident",
            CommandResult::Simulate(_) => "simulate",
            CommandResult::Completions(_) => "completions",
            CommandResult::Man(_) => "man",
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            CommandResult::Rollout(result) => result.run.exit_code,
            CommandResult::Rollback(result) | CommandResult::Abort(result) => result.exit_code,
            CommandResult::Promote(result) => result.exit_code,
            CommandResult::Status(result) => result.exit_code,
            CommandResult::Health(result) => result.exit_code,
            #[cfg(feature = "demo")]
            CommandResult::Demo(result) => result.run.exit_code,
            CommandResult::Dispatch(result) => result.run.exit_code,
            CommandResult::Incident(result) => result.exit_code,
            CommandResult::Simulate(result) => result.exit_code,
            CommandResult::Completions(result) | CommandResult::Man(result) => result.exit_code,
        }
    }

    /// What the GitHub Actions job is told: outputs and the step summary.
    pub fn facts(&self) -> ResultFacts<'_> {
        let command = self.command();
        match self {
            CommandResult::Rollout(result) => result.facts(command),
            CommandResult::Rollback(result) | CommandResult::Abort(result) => result.facts(command),
            CommandResult::Promote(result) => result.facts(command),
            CommandResult::Status(result) => result.facts(command),
            CommandResult::Health(result) => result.facts(command),
            #[cfg(feature = "demo")]
            CommandResult::Demo(result) => result.facts(command),
            CommandResult::Dispatch(result) => result.facts(command),
            CommandResult::Incident(result) => result.facts(command),
            CommandResult::Simulate(result) => result.facts(command),
            CommandResult::Completions(result) | CommandResult::Man(result) => {
                result.facts(command)
            }
        }
    }
}

/// What a command that could not do its job prints: `outcome` is `error`, and `command` is left
/// out only when the command line itself did not parse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'static str>,
    pub outcome: &'static str,
    pub error: String,
    pub exit_code: ExitCode,
}

impl ErrorResult {
    pub fn new(
        command: Option<&'static str>,
        error: impl Into<String>,
        exit_code: ExitCode,
    ) -> Self {
        Self {
            command,
            outcome: "error",
            error: error.into(),
            exit_code,
        }
    }

    pub fn facts(&self) -> ResultFacts<'_> {
        let command = self.command.unwrap_or("shiftgate");
        ResultFacts {
            error: Some(&self.error),
            ..ResultFacts::new(command, self.outcome, self.exit_code)
        }
    }
}
