//! `health --incident`: per environment, opens one SEV-1 issue for an outage, follows it up at most
//! once an hour while it lasts, and closes it with the downtime once health is back.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cli::HealthArgs;
use crate::clock::Clock;
use crate::commands::health::{Target, Watched};
use crate::commands::{CommandError, Context, github_from_env, repo_arg};
use crate::config::Config;
use crate::github::incident::{Incident, Severity, file, marker, workflow_run_link};
use crate::github::lifecycle::{
    self, OpenIncident, describe_duration, open_incidents, rfc3339, since_note, with_key,
};
use crate::github::{GitHub, GitHubError, Repo};
use crate::markdown;
use crate::notify::incident::{Change, IncidentNotice};
use crate::notify::{Delivery, NotifyUrl};

/// While an environment stays down, at most one comment in this long.
pub const COMMENT_EVERY: Duration = Duration::from_secs(3600);
/// How long the GitHub work for one environment may take.
const WORK_TIMEOUT: Duration = Duration::from_secs(120);

/// What `--incident` did for one environment, as `--json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthIncident {
    pub environment: Option<String>,
    /// The de-duplication key: `health:ENV`, or `health:URL` without an environment.
    pub key: String,
    /// `opened`, `commented`, `comment_skipped` (commented less than an hour ago), `closed`,
    /// `unsettled` (an open issue left as it is: the checks passed, but not `--failures` of them
    /// in a row), `none` (healthy, nothing open) or `failed` (see `error`).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When it went down (GitHub's time), while down or when closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_since: Option<String>,
    /// How long it was down, when closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The incident key of an environment and the URL it is probed at (or of the URL alone): the URL
/// keeps two apps' `prod` that file into one repository apart. Credentials, query and fragment
/// never reach a key, a title or a message.
pub fn key(environment: Option<&str>, url: &str) -> String {
    let url = shown_url(url);
    match environment {
        Some(name) => format!("health:{name} {url}"),
        None => format!("health:{url}"),
    }
}

/// `url` without its user, password, query and fragment.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_string(),
    }
}

/// Where incidents go and whom they are told to, checked before any probe.
pub struct Filing {
    github: GitHub,
    repo: Repo,
    /// Each target's webhooks, in the order of the targets.
    webhooks: Vec<Vec<NotifyUrl>>,
}

impl Filing {
    pub fn prepare(
        config: &Config,
        args: &HealthArgs,
        targets: &[Target],
    ) -> Result<Filing, CommandError> {
        let flag =
            |error: CommandError| CommandError::bad_input(format!("--incident: {}", error.message));
        let repo = repo_arg(config, args.repo.as_deref()).map_err(flag)?;
        let github = github_from_env().map_err(flag)?;
        let mut webhooks = Vec::new();
        for target in targets {
            let found =
                config.notify_targets(target.environment.as_deref(), &args.notify, |name| {
                    std::env::var(name).ok()
                })?;
            for unset in &found.unset {
                crate::notify::warn(&format!("{unset}: that webhook is not told of incidents"));
            }
            webhooks.push(found.urls);
        }
        Ok(Filing {
            github,
            repo,
            webhooks,
        })
    }

    /// Acts on every environment's outcome; what was done, and the messages sent (absent without
    /// webhooks).
    pub async fn act(
        self,
        targets: &[Target],
        watched: &[Watched],
        clock: Clock,
        context: &Context,
    ) -> (Vec<HealthIncident>, Option<Vec<Delivery>>) {
        let open = match tokio::time::timeout(
            WORK_TIMEOUT,
            open_incidents(&self.github, &self.repo),
        )
        .await
        {
            Ok(listed) => listed.map_err(|error| error.to_string()),
            Err(_) => Err(format!("no answer within {}s", WORK_TIMEOUT.as_secs())),
        };
        let mut done = Vec::new();
        let mut announcer = crate::notify::incident::Announcer::default();
        for ((target, watched), webhooks) in targets.iter().zip(watched).zip(&self.webhooks) {
            let environment = target.environment.clone();
            let key = key(environment.as_deref(), &watched.result.url);
            let outcome = match &open {
                Ok(open) => {
                    match tokio::time::timeout(
                        WORK_TIMEOUT,
                        self.one(open, &key, environment.as_deref(), watched, clock),
                    )
                    .await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => Err(format!(
                            "the GitHub work took longer than {}s",
                            WORK_TIMEOUT.as_secs()
                        )),
                    }
                }
                Err(error) => Err(format!("listing the open incidents failed: {error}")),
            };
            let (record, notice) = match outcome {
                Ok((mut record, notice)) => {
                    record.environment = environment.clone();
                    record.key = key.clone();
                    (record, notice)
                }
                Err(error) => {
                    crate::say!("incident for {key}: failed: {error}");
                    (
                        HealthIncident {
                            environment: environment.clone(),
                            key: key.clone(),
                            action: "failed",
                            number: None,
                            url: None,
                            down_since: None,
                            downtime_s: None,
                            error: Some(error),
                        },
                        None,
                    )
                }
            };
            // Told at once: the next environment's GitHub work may outlast the job.
            if let Some(notice) = notice {
                announcer.announce(webhooks, &[notice]);
            }
            done.push(record);
        }
        let any_webhook = self.webhooks.iter().any(|urls| !urls.is_empty());
        let deliveries = announcer.finish(&context.interrupt).await;
        (done, any_webhook.then_some(deliveries))
    }

    /// One environment: open, comment, skip, close or nothing.
    async fn one(
        &self,
        open: &[OpenIncident],
        key: &str,
        environment: Option<&str>,
        watched: &Watched,
        clock: Clock,
    ) -> Result<(HealthIncident, Option<IncidentNotice>), String> {
        let label = environment
            .map(str::to_string)
            .unwrap_or_else(|| shown_url(&watched.result.url));
        let existing = with_key(open, key);
        let now = self.github.server_now();
        let record = |action, issue: Option<(u64, &str)>| HealthIncident {
            environment: None,
            key: String::new(),
            action,
            number: issue.map(|(number, _)| number),
            url: issue.map(|(_, url)| url.to_string()),
            down_since: None,
            downtime_s: None,
            error: None,
        };
        let notice =
            |change, number, url: &str, severity: Option<Severity>, title: &str, detail| {
                IncidentNotice {
                    change,
                    severity: severity.map(Severity::name),
                    title: title.to_string(),
                    environment: environment.map(str::to_string),
                    issue_url: url.to_string(),
                    number,
                    detail: Some(detail),
                    run_link: workflow_run_link(),
                }
            };
        let Some(down_at) = watched.down_since else {
            // Not down.
            let Some(issue) = existing else {
                return Ok((record("none", None), None));
            };
            if !watched.recovered {
                // Answers came and went: not the recovery that closes an outage's issue.
                crate::say!(
                    "incident #{} left open: {label} passed its last check, but not as many in a \
                     row as --failures",
                    issue.number
                );
                return Ok((record("unsettled", Some((issue.number, &issue.url))), None));
            }
            let since = issue.since().unwrap_or(now);
            let downtime = now.duration_since(since).unwrap_or_default();
            let text = format!(
                "{}\n### Resolved at {}: {} is healthy again\n\nDown for {} (since {}). The check \
                 of {} passed{}.\n{}",
                marker(key),
                rfc3339(now),
                markdown::code(&label),
                describe_duration(downtime),
                rfc3339(since),
                markdown::code(&shown_url(&watched.result.url)),
                watched
                    .result
                    .status
                    .map(|status| format!(" (HTTP {status})"))
                    .unwrap_or_default(),
                run_line()
            );
            // Closed first (a close may be sent again; a comment may not): a run that dies
            // between the two leaves a closed issue, never a second "resolved" comment.
            lifecycle::close(&self.github, &self.repo, issue.number)
                .await
                .map_err(|e| format!("closing #{} failed: {e}", issue.number))?;
            if let Err(e) = lifecycle::comment(&self.github, &self.repo, issue.number, &text).await
            {
                crate::say!(
                    "warning: #{} was closed, but its comment failed: {e}",
                    issue.number
                );
            }
            crate::say!(
                "incident closed: #{} {} (down for {})",
                issue.number,
                issue.url,
                describe_duration(downtime)
            );
            let mut done = record("closed", Some((issue.number, &issue.url)));
            done.down_since = Some(rfc3339(since));
            done.downtime_s = Some(downtime.as_secs());
            let told = notice(
                Change::Closed,
                issue.number,
                &issue.url,
                issue.severity(),
                &issue.title,
                format!(
                    "{label} is healthy again after {} down",
                    describe_duration(downtime)
                ),
            );
            return Ok((done, Some(told)));
        };
        let reason = watched.result.reason.clone().unwrap_or_default();
        match existing {
            Some(issue) => {
                let since = issue.since().unwrap_or(now);
                let recent =
                    |at: SystemTime| now.duration_since(at).unwrap_or_default() < COMMENT_EVERY;
                // An issue opened within the hour needs no look at its comments.
                let last = match issue.created_at.filter(|at| recent(*at)) {
                    Some(opened) => Some(opened),
                    None => {
                        let window = now
                            .checked_sub(COMMENT_EVERY)
                            .unwrap_or(SystemTime::UNIX_EPOCH);
                        lifecycle::last_marked_comment(
                            &self.github,
                            &self.repo,
                            issue.number,
                            key,
                            window,
                        )
                        .await
                        .map_err(|e| {
                            format!("reading the comments of #{} failed: {e}", issue.number)
                        })?
                    }
                };
                let mut done = record("comment_skipped", Some((issue.number, &issue.url)));
                done.down_since = Some(rfc3339(since));
                if last.is_some_and(recent) {
                    crate::say!(
                        "incident #{} is open; last written on less than {} ago: no comment",
                        issue.number,
                        describe_duration(COMMENT_EVERY)
                    );
                    return Ok((done, None));
                }
                let downtime = describe_duration(now.duration_since(since).unwrap_or_default());
                let text = format!(
                    "{}\n### Still down at {}: {}\n\nDown for {} (since {}); {} checks in a row failed. \
                     Last answer: {}\n{}",
                    marker(key),
                    rfc3339(now),
                    markdown::code(&label),
                    downtime,
                    rfc3339(since),
                    watched.failures,
                    markdown::code(&reason),
                    run_line()
                );
                lifecycle::comment(&self.github, &self.repo, issue.number, &text)
                    .await
                    .map_err(|e| format!("commenting on #{} failed: {e}", issue.number))?;
                crate::say!("incident commented: #{} {}", issue.number, issue.url);
                done.action = "commented";
                let told = notice(
                    Change::Commented,
                    issue.number,
                    &issue.url,
                    issue.severity(),
                    &issue.title,
                    format!("{label} is still down after {downtime}: {reason}"),
                );
                Ok((done, Some(told)))
            }
            None => {
                // The first failed check, in GitHub's time.
                let ago = clock.now().duration_since(down_at).unwrap_or_default();
                let since = now.checked_sub(ago).unwrap_or(now);
                let incident = outage(&self.repo, key, &label, watched, &reason, since);
                let filed = file(&self.github, &incident)
                    .await
                    .map_err(|e: GitHubError| format!("filing the incident failed: {e}"))?;
                let opened = filed.action == "created";
                crate::say!(
                    "incident SEV-1 {}: #{} {}",
                    filed.action,
                    filed.number,
                    filed.url
                );
                let mut done = record(
                    if opened { "opened" } else { "commented" },
                    Some((filed.number, &filed.url)),
                );
                done.down_since = Some(rfc3339(since));
                let told = notice(
                    if opened {
                        Change::Opened
                    } else {
                        Change::Commented
                    },
                    filed.number,
                    &filed.url,
                    Some(Severity::Sev1),
                    &incident.title,
                    format!("{label} is down: {reason}"),
                );
                Ok((done, Some(told)))
            }
        }
    }
}

fn run_line() -> String {
    workflow_run_link()
        .map(|url| format!("\nWorkflow run: {}\n", markdown::link(&url)))
        .unwrap_or_default()
}

/// The SEV-1 of an environment found down.
fn outage(
    repo: &Repo,
    key: &str,
    label: &str,
    watched: &Watched,
    reason: &str,
    since: SystemTime,
) -> Incident {
    Incident {
        repo: repo.clone(),
        title: format!("{label} is down: its health check failed"),
        severity: Severity::Sev1,
        key: key.to_string(),
        labels: Vec::new(),
        summary: format!(
            "{}\nshiftgate's scheduled health check found {} down: {} checks in a row failed.\n\n\
             - Health endpoint: {}\n- Last answer: {}\n- Down since: {} (the first failed check)\n\n\
             The next scheduled check comments here at most once an hour while it stays down, and \
             closes this issue with the downtime when it is healthy again.\n",
            since_note(since),
            markdown::code(label),
            watched.failures,
            markdown::code(&shown_url(&watched.result.url)),
            markdown::code(reason),
            rfc3339(since),
        ),
        timeline: None,
        links: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_is_keyed_by_its_name_and_a_bare_url_by_itself() {
        assert_eq!(
            key(Some("prod"), "https://app/health"),
            "health:prod https://app/health"
        );
        assert_eq!(key(None, "https://app/health"), "health:https://app/health");
        // Two apps' prod in one repository are two keys; a secret in the URL is in neither.
        assert_ne!(
            key(Some("prod"), "https://a.example/health"),
            key(Some("prod"), "https://b.example/health")
        );
        assert_eq!(
            key(None, "https://user:hunter2@app/health?token=s3cret#x"),
            "health:https://app/health"
        );
    }
}
