//! Incident issues over a period, for `report`: the open ones and those updated since a time, read
//! page by page through the GitHub client, and what they add up to (opened, closed, time open).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::github::client::encode;
use crate::github::{GitHub, GitHubError, Repo};

/// Pages read per listing at most (1,000 issues), as wherever incidents are listed: past that the
/// summary says it is incomplete.
pub const MAX_PAGES: u32 = crate::github::lifecycle::MAX_INCIDENT_PAGES;

/// One issue labelled `incident`, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentIssue {
    pub number: u64,
    pub title: String,
    pub url: String,
    pub open: bool,
    /// `SEV-N` from its `sev-N` label, when it has one.
    pub severity: Option<String>,
    /// RFC 3339, as GitHub gave it.
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    /// Closed: how long it was open, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_s: Option<u64>,
    /// Filed under one of the keys the report is about (its body opens with that marker).
    #[serde(skip)]
    pub ours: bool,
}

impl IncidentIssue {
    /// Reads one item of an issue listing; `None` for a pull request or an item that is not an
    /// issue.
    fn from_json(item: &Value, belongs: &Belongs) -> Option<Self> {
        if item.get("pull_request").is_some() {
            return None;
        }
        let created_at = item["created_at"].as_str()?.to_string();
        let closed_at = item["closed_at"].as_str().map(str::to_string);
        let severity = item["labels"].as_array().and_then(|labels| {
            labels.iter().find_map(|label| {
                let name = label["name"].as_str().or_else(|| label.as_str())?;
                let n = name.strip_prefix("sev-")?;
                (n.len() == 1 && n.as_bytes()[0].is_ascii_digit()).then(|| format!("SEV-{n}"))
            })
        });
        let open_s = closed_at.as_deref().and_then(|closed| {
            let opened = parse_time(&created_at)?;
            parse_time(closed)?
                .duration_since(opened)
                .ok()
                .map(|d| d.as_secs())
        });
        Some(Self {
            number: item["number"].as_u64()?,
            title: item["title"].as_str().unwrap_or_default().to_string(),
            url: item["html_url"].as_str().unwrap_or_default().to_string(),
            open: item["state"].as_str() == Some("open"),
            severity,
            created_at,
            closed_at,
            open_s,
            ours: belongs(item["body"].as_str().unwrap_or_default()),
        })
    }
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim().trim_end_matches('Z')).ok()
}

/// The incidents the report counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentSummary {
    /// Open now, whenever opened; oldest first.
    pub open: Vec<IncidentIssue>,
    /// Opened in the period (open or closed since).
    pub opened_in_period: usize,
    /// Closed in the period, oldest first, each with how long it was open.
    pub closed_in_period: Vec<IncidentIssue>,
    /// A listing had more than [`MAX_PAGES`] pages: the counts are a lower bound.
    pub incomplete: bool,
    /// Open incidents of the repository filed under no key of this report (another service's,
    /// or filed by hand).
    pub other_open: usize,
}

/// Whether an issue's body says it is one of the report's incidents.
pub type Belongs = dyn Fn(&str) -> bool + Send + Sync;

/// Sums up `issues` (any order, duplicates allowed) for the period from `since`.
pub fn summarize(
    issues: Vec<IncidentIssue>,
    since: SystemTime,
    incomplete: bool,
) -> IncidentSummary {
    let all: BTreeMap<u64, IncidentIssue> = issues
        .into_iter()
        .map(|issue| (issue.number, issue))
        .collect();
    let other_open = all.values().filter(|i| i.open && !i.ours).count();
    let unique: BTreeMap<u64, IncidentIssue> = all.into_iter().filter(|(_, i)| i.ours).collect();
    let after = |text: Option<&str>| text.and_then(parse_time).is_some_and(|at| at >= since);
    let open = unique.values().filter(|i| i.open).cloned().collect();
    let opened_in_period = unique
        .values()
        .filter(|i| after(Some(&i.created_at)))
        .count();
    let mut closed_in_period: Vec<IncidentIssue> = unique
        .values()
        .filter(|i| !i.open && after(i.closed_at.as_deref()))
        .cloned()
        .collect();
    closed_in_period.sort_by(|a, b| a.closed_at.cmp(&b.closed_at));
    IncidentSummary {
        open,
        opened_in_period,
        closed_in_period,
        incomplete,
        other_open,
    }
}

/// Every issue labelled `incident` that is open now or was updated at or after `since` (which
/// covers every one opened or closed since): two listings, each read page by page.
pub async fn list(
    github: &GitHub,
    repo: &Repo,
    since: SystemTime,
    belongs: &Belongs,
) -> Result<IncidentSummary, GitHubError> {
    let since_text = humantime::format_rfc3339_seconds(since).to_string();
    let mut issues = Vec::new();
    let mut incomplete = false;
    for query in [
        "labels=incident&state=open&sort=created&direction=asc".to_string(),
        format!(
            "labels=incident&state=all&since={}&sort=created&direction=asc",
            encode(&since_text)
        ),
    ] {
        let (found, more) = pages(github, repo, &query, belongs).await?;
        issues.extend(found);
        incomplete |= more;
    }
    Ok(summarize(issues, since, incomplete))
}

/// Reads `query`'s pages until one is short of a full page; `true` when [`MAX_PAGES`] were read
/// and a full last page says there may be more.
async fn pages(
    github: &GitHub,
    repo: &Repo,
    query: &str,
    belongs: &Belongs,
) -> Result<(Vec<IncidentIssue>, bool), GitHubError> {
    let path = format!("{}/issues?{query}", repo.path());
    let (items, more) = github.get_pages(&path, MAX_PAGES).await?;
    let issues = items
        .iter()
        .filter_map(|item| IncidentIssue::from_json(item, belongs))
        .collect();
    Ok((issues, more))
}

/// How long, said briefly: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub fn short_duration(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60).replace(" 0s", ""),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60).replace(" 0m", ""),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600).replace(" 0h", ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> SystemTime {
        parse_time(text).unwrap()
    }

    fn issue(number: u64, created: &str, closed: Option<&str>) -> Value {
        json!({
            "number": number, "title": format!("incident {number}"),
            "html_url": format!("https://github.com/o/r/issues/{number}"),
            "state": if closed.is_some() { "closed" } else { "open" },
            "labels": [{"name": "incident"}, {"name": "sev-2"}],
            "created_at": created, "closed_at": closed,
        })
    }

    #[test]
    fn an_issue_reads_its_severity_and_time_open_and_a_pull_request_is_left_out() {
        let read = IncidentIssue::from_json(
            &issue(3, "2026-11-20T10:00:00Z", Some("2026-11-20T12:30:00Z")),
            &|_| true,
        )
        .unwrap();
        assert_eq!(read.severity.as_deref(), Some("SEV-2"));
        assert_eq!(read.open_s, Some(9000));
        assert!(!read.open);
        let mut pull = issue(4, "2026-11-20T10:00:00Z", None);
        pull["pull_request"] = json!({"url": "x"});
        assert_eq!(IncidentIssue::from_json(&pull, &|_| true), None);
    }

    #[test]
    fn the_period_counts_opened_and_closed_ones_and_every_open_one() {
        let since = at("2026-11-24T00:00:00Z");
        let read = |v: Value| IncidentIssue::from_json(&v, &|_| true).unwrap();
        let issues = vec![
            // Open since before the period: open, not opened in it.
            read(issue(1, "2026-11-01T00:00:00Z", None)),
            // Opened before, closed in the period.
            read(issue(
                2,
                "2026-11-20T00:00:00Z",
                Some("2026-11-25T00:00:00Z"),
            )),
            // Opened and closed in the period, listed twice (by both listings).
            read(issue(
                3,
                "2026-11-26T00:00:00Z",
                Some("2026-11-26T01:00:00Z"),
            )),
            read(issue(
                3,
                "2026-11-26T00:00:00Z",
                Some("2026-11-26T01:00:00Z"),
            )),
            // Opened in the period, open.
            read(issue(4, "2026-11-27T00:00:00Z", None)),
            // Closed before the period.
            read(issue(
                5,
                "2026-11-01T00:00:00Z",
                Some("2026-11-02T00:00:00Z"),
            )),
        ];
        let summary = summarize(issues, since, false);
        let numbers = |list: &[IncidentIssue]| list.iter().map(|i| i.number).collect::<Vec<_>>();
        assert_eq!(numbers(&summary.open), [1, 4]);
        assert_eq!(summary.opened_in_period, 2);
        assert_eq!(numbers(&summary.closed_in_period), [2, 3]);
        assert_eq!(summary.closed_in_period[1].open_s, Some(3600));
    }

    #[test]
    fn durations_read_briefly() {
        let s = Duration::from_secs;
        assert_eq!(short_duration(s(45)), "45s");
        assert_eq!(short_duration(s(120)), "2m");
        assert_eq!(short_duration(s(125)), "2m 5s");
        assert_eq!(short_duration(s(3 * 3600 + 300)), "3h 5m");
        assert_eq!(short_duration(s(2 * 86400 + 4 * 3600)), "2d 4h");
    }
}
