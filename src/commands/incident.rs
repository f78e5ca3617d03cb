//! `shiftgate incident`: checks the arguments, then opens an incident issue or comments on the open
//! one with the same key.

use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::IncidentArgs;
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, github_from_env, repo_arg};
use crate::exit::ExitCode;
use crate::github::GitHubError;
use crate::github::incident::{Incident, Severity, file};

/// `shiftgate incident --json`: the issue filed, or commented on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentResult {
    /// `created` or `commented`.
    pub outcome: &'static str,
    pub number: u64,
    pub url: String,
    pub key: String,
    pub exit_code: ExitCode,
}

impl IncidentResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts::new(command, self.outcome, self.exit_code)
    }
}

pub async fn run(context: &Context, args: IncidentArgs) -> Result<CommandResult, CommandError> {
    let repo = repo_arg(&context.config()?, args.repo.as_deref())?;
    let severity = Severity::parse(&args.severity).map_err(CommandError::bad_input)?;
    if args.title.trim().is_empty() {
        return Err(CommandError::bad_input("--title must not be empty"));
    }
    let summary = match (&args.body, &args.body_file) {
        (Some(_), Some(_)) => {
            return Err(CommandError::bad_input(
                "give --body or --body-file, not both",
            ));
        }
        (Some(body), None) => body.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| CommandError::bad_input(format!("--body-file {}: {e}", path.display())))?,
        (None, None) => args.title.clone(),
    };
    let github = github_from_env()?;
    let key = args
        .key
        .clone()
        .unwrap_or_else(|| args.title.trim().to_string());
    let incident = Incident {
        repo,
        title: args.title.trim().to_string(),
        severity,
        key: key.clone(),
        labels: args.labels.clone(),
        summary,
        timeline: None,
        links: Vec::new(),
    };
    let filed = file(&github, &incident)
        .await
        .map_err(|error| match error {
            GitHubError::Status {
                status: 401 | 403 | 404,
                ..
            } => CommandError::bad_input(format!(
                "{error}: the token needs `issues: write` on {}",
                incident.repo
            )),
            error => CommandError::api(format!("filing the incident failed: {error}")),
        })?;
    crate::say!("incident {}: #{} {}", filed.action, filed.number, filed.url);
    Ok(CommandResult::Incident(IncidentResult {
        outcome: filed.action,
        number: filed.number,
        url: filed.url,
        key,
        exit_code: ExitCode::Ok,
    }))
}
