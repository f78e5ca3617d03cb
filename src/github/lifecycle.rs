//! An incident issue after it is filed: finding the open one of a key, when shiftgate last wrote
//! on it, commenting, and closing it as resolved — all in GitHub's time, not the runner's.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::github::client::{GitHub, GitHubError, Repo, encode};
use crate::github::incident::{Severity, carries_marker, marker};

/// An open issue labelled `incident`, as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIncident {
    pub number: u64,
    pub url: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    /// GitHub's `created_at`.
    pub created_at: Option<SystemTime>,
}

impl OpenIncident {
    /// The severity its `sev-N` label gives.
    pub fn severity(&self) -> Option<Severity> {
        self.labels
            .iter()
            .find_map(|label| Severity::parse(label).ok())
    }

    /// Whether the body opens with the hidden marker of `key` (where shiftgate puts it: text
    /// quoted further down, a health answer say, cannot make an issue another key's).
    pub fn has_key(&self, key: &str) -> bool {
        carries_marker(&self.body, key)
    }

    /// When the trouble began: the hidden `down since` note of the body, else when the issue was
    /// opened.
    pub fn since(&self) -> Option<SystemTime> {
        self.body
            .split(SINCE_OPEN)
            .nth(1)
            .and_then(|rest| rest.split(" -->").next())
            .and_then(|text| humantime::parse_rfc3339(text.trim()).ok())
            .or(self.created_at)
    }
}

/// How many pages of open incidents are read at most: 1,000 issues.
pub const MAX_INCIDENT_PAGES: u32 = 10;

const SINCE_OPEN: &str = "<!-- shiftgate-since: ";

/// The hidden note of when the trouble began, for a new issue's body.
pub fn since_note(at: SystemTime) -> String {
    format!("{SINCE_OPEN}{} -->", rfc3339(at))
}

pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn parse_time(value: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339(value.as_str()?).ok()
}

/// Every open issue labelled `incident`, oldest first, pull requests left out: page after page
/// of 100, up to [`MAX_INCIDENT_PAGES`] (a backlog of old incidents must not hide today's).
pub async fn open_incidents(
    github: &GitHub,
    repo: &Repo,
) -> Result<Vec<OpenIncident>, GitHubError> {
    let path = format!(
        "{}/issues?labels=incident&state=open&sort=created&direction=asc",
        repo.path()
    );
    let (listed, _) = github.get_pages(&path, MAX_INCIDENT_PAGES).await?;
    let mut found: Vec<OpenIncident> = listed
        .iter()
        .filter(|issue| issue.get("pull_request").is_none())
        .filter_map(|issue| {
            Some(OpenIncident {
                number: issue["number"].as_u64()?,
                url: issue["html_url"].as_str().unwrap_or_default().to_string(),
                title: issue["title"].as_str().unwrap_or_default().to_string(),
                body: issue["body"].as_str().unwrap_or_default().to_string(),
                labels: issue["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|label| label["name"].as_str().map(str::to_string))
                    .collect(),
                created_at: parse_time(&issue["created_at"]),
            })
        })
        .collect();
    found.sort_by_key(|issue| issue.number);
    Ok(found)
}

/// The oldest open incident carrying `key`'s marker (the one `incident::file` comments on).
pub fn with_key<'a>(incidents: &'a [OpenIncident], key: &str) -> Option<&'a OpenIncident> {
    incidents.iter().find(|issue| issue.has_key(key))
}

/// The newest comment on issue `number` that carries `key`'s marker and was written at or after
/// `since` (GitHub's time): when shiftgate last wrote there, within that window.
pub async fn last_marked_comment(
    github: &GitHub,
    repo: &Repo,
    number: u64,
    key: &str,
    since: SystemTime,
) -> Result<Option<SystemTime>, GitHubError> {
    let comments = github
        .get(&format!(
            "{}/issues/{number}/comments?since={}&per_page=100",
            repo.path(),
            encode(&rfc3339(since))
        ))
        .await?;
    let marker = marker(key);
    Ok(comments
        .as_array()
        .into_iter()
        .flatten()
        .filter(|comment| {
            comment["body"]
                .as_str()
                .is_some_and(|body| body.trim_start().starts_with(&marker))
        })
        .filter_map(|comment| parse_time(&comment["created_at"]))
        .max())
}

/// Whether shiftgate raised issue `number` to SEV-1 in a comment (a later failed rollback, or an
/// unhealthy stable, commented on the open SEV-2 of the same key): the issue's label still says
/// SEV-2, but a person closes it.
pub async fn raised_to_sev1(
    github: &GitHub,
    repo: &Repo,
    number: u64,
    key: &str,
) -> Result<bool, GitHubError> {
    let raised = format!("({})", Severity::Sev1.name());
    let path = format!("{}/issues/{number}/comments", repo.path());
    let (comments, _) = github.get_pages(&path, MAX_INCIDENT_PAGES).await?;
    Ok(comments.iter().any(|comment| {
        let body = comment["body"].as_str().unwrap_or_default();
        carries_marker(body, key)
            && body
                .lines()
                .nth(1)
                .is_some_and(|heading| heading.trim_end().ends_with(&raised))
    }))
}

/// Adds a comment (sent once: an unclear answer is an error, never a second comment); its URL.
pub async fn comment(
    github: &GitHub,
    repo: &Repo,
    number: u64,
    text: &str,
) -> Result<String, GitHubError> {
    let answer = github
        .post(
            &format!("{}/issues/{number}/comments", repo.path()),
            &json!({"body": text}),
        )
        .await?;
    Ok(answer.body["html_url"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Closes issue `number` as completed. Closing twice changes nothing, so an unclear answer is
/// followed by one more try.
pub async fn close(github: &GitHub, repo: &Repo, number: u64) -> Result<(), GitHubError> {
    let path = format!("{}/issues/{number}", repo.path());
    let body = json!({"state": "closed", "state_reason": "completed"});
    match github.patch(&path, &body).await {
        Err(GitHubError::Ambiguous(_)) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            github.patch(&path, &body).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// `1h 5m`, `3m 20s`, `45s`: a downtime for a comment or a message.
pub fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m {seconds}s"),
        _ => format!("{hours}h {minutes}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(body: &str) -> OpenIncident {
        OpenIncident {
            number: 7,
            url: "https://github.com/o/r/issues/7".into(),
            title: "prod is down".into(),
            body: body.into(),
            labels: vec!["incident".into(), "sev-1".into()],
            created_at: humantime::parse_rfc3339("2026-12-01T02:10:00Z").ok(),
        }
    }

    #[test]
    fn given_another_keys_marker_quoted_in_an_issue_then_the_issue_is_not_that_keys() {
        // A staging outage whose health answer carried prod's marker in its text.
        let staging = issue(&format!(
            "{}\n## Incident: staging is down\n\nLast answer: `{{\"status\":\"{}\"}}`",
            marker("health:staging"),
            marker("health:prod")
        ));
        assert!(staging.has_key("health:staging"));
        assert!(!staging.has_key("health:prod"));
    }

    #[test]
    fn given_a_since_note_then_the_trouble_began_then_else_when_the_issue_was_opened() {
        let began = humantime::parse_rfc3339("2026-12-01T02:00:00Z").unwrap();
        let noted = issue(&format!(
            "{}\n## Incident\n{}",
            marker("health:prod"),
            since_note(began)
        ));
        assert_eq!(noted.since(), Some(began));
        assert!(noted.has_key("health:prod"));
        assert!(!noted.has_key("health:dev"));
        assert_eq!(noted.severity(), Some(Severity::Sev1));
        let plain = issue("no note");
        assert_eq!(plain.since(), plain.created_at);
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(describe_duration(Duration::from_secs(45)), "45s");
        assert_eq!(describe_duration(Duration::from_secs(200)), "3m 20s");
        assert_eq!(describe_duration(Duration::from_secs(3900)), "1h 5m");
    }
}
