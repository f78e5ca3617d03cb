//! `shiftgate incident`: checks the arguments, then opens an incident issue or comments on the open
//! one with the same key, and tells the `--notify` webhooks.

use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::IncidentArgs;
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, github_from_env, repo_arg};
use crate::exit::ExitCode;
use crate::github::GitHubError;
use crate::github::incident::{Incident, Severity, file, workflow_run_link};
use crate::notify::incident::{Change, IncidentNotice};

/// `shiftgate incident --json`: the issue filed, or commented on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentResult {
    /// `created` or `commented`.
    pub outcome: &'static str,
    pub number: u64,
    pub url: String,
    pub key: String,
    /// Each `--notify` message and whether it arrived; absent without webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<crate::notify::Delivery>>,
    pub exit_code: ExitCode,
}

impl IncidentResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts::new(command, self.outcome, self.exit_code)
    }
}

pub async fn run(context: &Context, args: IncidentArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    let repo = repo_arg(&config, args.repo.as_deref())?;
    let webhooks = config.notify_targets(None, &args.notify, |name| std::env::var(name).ok())?;
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
    for unset in &webhooks.unset {
        crate::notify::warn(&format!(
            "{unset}: that webhook is not told of this incident"
        ));
    }
    let notice = IncidentNotice {
        change: match filed.action {
            "created" => Change::Opened,
            _ => Change::Commented,
        },
        severity: Some(severity.name()),
        title: incident.title.clone(),
        environment: None,
        issue_url: filed.url.clone(),
        number: filed.number,
        detail: None,
        run_link: workflow_run_link(),
    };
    let notifications = (!webhooks.urls.is_empty()).then_some(
        crate::notify::incident::send(vec![(webhooks.urls, vec![notice])], &context.interrupt)
            .await,
    );
    Ok(CommandResult::Incident(IncidentResult {
        outcome: filed.action,
        number: filed.number,
        url: filed.url,
        key,
        notifications,
        exit_code: ExitCode::Ok,
    }))
}
