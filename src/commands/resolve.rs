//! After a promoted rollout: comments on and closes the SEV-2 incident that a rollback of the same
//! service left open. Best effort: a failure is a warning, never a change to the rollout's outcome.

use std::time::Duration;

use serde::Serialize;

use crate::github::incident::{Severity, marker, workflow_run_link};
use crate::github::lifecycle::{self, open_incidents, rfc3339, with_key};
use crate::markdown;
use crate::notify::incident::{Change, IncidentNotice};
use crate::rollout::{Outcome, Report};

/// How long looking for, commenting on and closing the incident may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(60);

/// What became of the service's open incident after a promotion, as `--json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// `closed`; `none` (no open incident for the service); `left_open` (its severity is not SEV-2:
    /// a person closes it); `skipped` (see `reason`); `failed` (see `reason`).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The message for the rollout's webhooks, when it closed one.
    #[serde(skip)]
    pub notice: Option<Box<IncidentNotice>>,
}

impl Resolution {
    fn only(action: &'static str, reason: Option<String>) -> Self {
        Self {
            action,
            number: None,
            url: None,
            reason,
            notice: None,
        }
    }
}

/// The incident work after a rollout's outcome, from its one call site in `commands/rollout.rs`:
/// for a promotion, closes the service's open SEV-2 ([`close_after_promotion`]); then queues the
/// incident messages (the incident `filed`, the one closed) on the rollout's `notifier`.
/// `incidents` is `(--no-incident, the repository)`.
pub async fn after_rollout(
    incidents: (bool, Option<&str>),
    environment: Option<&str>,
    report: &Report,
    filed: Option<&crate::commands::rollout::IncidentFiling>,
    notifier: Option<&crate::notify::Notifier>,
) -> Option<Resolution> {
    let (no_incident, repo) = incidents;
    let resolved = close_after_promotion(no_incident, repo, environment, report).await;
    if let Some(notifier) = notifier {
        for notice in notices(filed, resolved.as_ref(), report, environment) {
            notifier.incident(&notice);
        }
    }
    resolved
}

/// For a promoted rollout, closes the open SEV-2 incident keyed on its service (what
/// `rollout_incident` files); `None` for any other outcome. Says once why it did not look.
pub async fn close_after_promotion(
    no_incident: bool,
    repo: Option<&str>,
    environment: Option<&str>,
    report: &Report,
) -> Option<Resolution> {
    if report.outcome != Outcome::Promoted {
        return None;
    }
    if no_incident {
        return Some(Resolution::only("skipped", Some("--no-incident".into())));
    }
    let skipped = |reason: String| {
        crate::say!("incident: no open incident was looked for: {reason}");
        Some(Resolution::only("skipped", Some(reason)))
    };
    let Some(repo) = repo else {
        return skipped(
            "no repository configured (--repo, config `repo` or GITHUB_REPOSITORY)".into(),
        );
    };
    let repo = match crate::github::Repo::parse(repo) {
        Ok(repo) => repo,
        Err(message) => return skipped(message),
    };
    let github = match crate::commands::github_from_env() {
        Ok(github) => github,
        Err(error) => return skipped(error.message),
    };
    let work = resolve(&github, &repo, environment, report);
    let failed = |reason: String| {
        crate::notify::warn(&format!("incident: {reason}"));
        Some(Resolution::only("failed", Some(reason)))
    };
    match tokio::time::timeout(RESOLVE_TIMEOUT, work).await {
        Ok(Ok(resolution)) => Some(resolution),
        Ok(Err(reason)) => failed(reason),
        Err(_) => failed(format!(
            "closing the service's incident took longer than {}s",
            RESOLVE_TIMEOUT.as_secs()
        )),
    }
}

async fn resolve(
    github: &crate::github::GitHub,
    repo: &crate::github::Repo,
    environment: Option<&str>,
    report: &Report,
) -> Result<Resolution, String> {
    let key = &report.service;
    let open = open_incidents(github, repo)
        .await
        .map_err(|e| format!("listing the open incidents failed: {e}"))?;
    let Some(issue) = with_key(&open, key) else {
        return Ok(Resolution::only("none", None));
    };
    let mut severity = issue.severity();
    if severity == Some(Severity::Sev2)
        && lifecycle::raised_to_sev1(github, repo, issue.number, key)
            .await
            .map_err(|e| format!("reading #{}'s comments failed: {e}", issue.number))?
    {
        severity = Some(Severity::Sev1);
    }
    if severity != Some(Severity::Sev2) {
        let shown = severity.map(Severity::name).unwrap_or("no severity".into());
        crate::say!(
            "incident #{} for this service stays open: it is {shown}, which a person closes",
            issue.number
        );
        return Ok(Resolution {
            number: Some(issue.number),
            url: Some(issue.url.clone()),
            ..Resolution::only("left_open", Some(format!("{shown}: a person closes it")))
        });
    }
    let at = rfc3339(github.server_now());
    let run = workflow_run_link()
        .map(|url| format!("\n\nWorkflow run: {}", markdown::link(&url)))
        .unwrap_or_default();
    let text = format!(
        "{}\n### Resolved: {} promoted at {at}\n\nA later rollout of {} sent 100% of traffic to \
         {} (image {}), which passed every step.{run}\n",
        marker(key),
        markdown::code(&report.candidate),
        markdown::code(key),
        markdown::code(&report.candidate),
        markdown::code(report.image.as_deref().unwrap_or("(existing revision)")),
    );
    // Closed first (a close may be sent again; a comment may not): a run that dies between the
    // two leaves a closed issue, never a second "resolved" comment.
    lifecycle::close(github, repo, issue.number)
        .await
        .map_err(|e| format!("closing #{} failed: {e}", issue.number))?;
    if let Err(e) = lifecycle::comment(github, repo, issue.number, &text).await {
        crate::say!(
            "warning: #{} was closed, but its comment failed: {e}",
            issue.number
        );
    }
    crate::say!(
        "incident closed: #{} {} (resolved by this promotion)",
        issue.number,
        issue.url
    );
    Ok(Resolution {
        action: "closed",
        number: Some(issue.number),
        url: Some(issue.url.clone()),
        reason: None,
        notice: Some(Box::new(IncidentNotice {
            change: Change::Closed,
            severity: severity.map(Severity::name),
            title: issue.title.clone(),
            environment: environment.map(str::to_string),
            issue_url: issue.url.clone(),
            number: issue.number,
            detail: Some(format!("resolved: {} promoted at {at}", report.candidate)),
            run_link: workflow_run_link(),
        })),
    })
}

/// The incident messages of a rollout for its webhooks: the incident it filed (opened or
/// commented on) and the one its promotion closed.
fn notices(
    filed: Option<&crate::commands::rollout::IncidentFiling>,
    resolved: Option<&Resolution>,
    report: &Report,
    environment: Option<&str>,
) -> Vec<IncidentNotice> {
    let mut notices = Vec::new();
    if let Some(crate::commands::rollout::IncidentFiling::Filed {
        action,
        number,
        url,
        severity,
    }) = filed
    {
        let service = report.service.rsplit('/').next().unwrap_or(&report.service);
        notices.push(IncidentNotice {
            change: if *action == "created" {
                Change::Opened
            } else {
                Change::Commented
            },
            severity: Some(severity.name()),
            title: format!(
                "Rollout of {} to {service} {}",
                report.candidate,
                if report.outcome == Outcome::Failed {
                    "failed"
                } else {
                    "rolled back"
                }
            ),
            environment: environment.map(str::to_string),
            issue_url: url.clone(),
            number: *number,
            detail: report.reason.clone(),
            run_link: workflow_run_link(),
        });
    }
    notices.extend(resolved.and_then(|resolution| resolution.notice.as_deref().cloned()));
    notices
}
