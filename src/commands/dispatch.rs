//! `shiftgate dispatch`: checks the arguments, dispatches the workflow and watches its run, with
//! progress on stderr and the run's conclusion as the exit code.

use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::DispatchArgs;
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, github_from_env, repo_arg};
use crate::github::client::CallStats;
use crate::github::dispatch::{DispatchError, DispatchRequest, RunResult, dispatch};

/// `shiftgate dispatch --json`: the run, and the GitHub requests watching it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DispatchResult {
    #[serde(flatten)]
    pub run: RunResult,
    pub api_calls: CallStats,
}

impl DispatchResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts {
            run: Some((self.run.run_id, &self.run.run_url)),
            ..ResultFacts::new(command, &self.run.outcome, self.run.exit_code)
        }
    }
}

pub async fn run(context: &Context, args: DispatchArgs) -> Result<CommandResult, CommandError> {
    let repo = repo_arg(&context.config()?, args.repo.as_deref())?;
    if args.workflow.trim().is_empty() {
        return Err(CommandError::bad_input(
            "--workflow must name a workflow file or ID",
        ));
    }
    let git_ref = args
        .git_ref
        .clone()
        .or_else(|| std::env::var("GITHUB_REF_NAME").ok())
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| CommandError::bad_input("--ref REF is required (or set GITHUB_REF_NAME)"))?;
    let github = github_from_env()?;
    let request = DispatchRequest {
        repo,
        workflow: args.workflow.trim().to_string(),
        git_ref,
        inputs: args.inputs.clone(),
        timeout: args.timeout,
        poll: args.poll,
        wait: !args.no_wait,
        cancel_on_timeout: args.cancel_on_timeout,
        cancel_on_interrupt: args.cancel_on_interrupt,
    };
    let log = |line: &str| crate::say!("{line}");
    let report = dispatch(&github, &request, &context.interrupt, &log)
        .await
        .map_err(|error| match error {
            DispatchError::BadInput(message) => CommandError::bad_input(message),
            DispatchError::Api(message) => CommandError::api(message),
        })?;
    Ok(CommandResult::Dispatch(DispatchResult {
        run: report.result(),
        api_calls: github.stats(),
    }))
}
