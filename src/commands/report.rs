//! `shiftgate report`: the rollouts, rollbacks and incidents of one service over a period, from
//! its rollout history annotation and the repository's `incident` issues; changes nothing.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::actions::{ResultFacts, ServiceChange, ServiceFacts};
use crate::cli::{ReportArgs, SINCE_BOUNDS, Since};
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, Endpoints, github_from_env};
use crate::exit::ExitCode;
use crate::github::incident::carries_marker;
use crate::github::incident_list::{self, IncidentIssue, IncidentSummary, short_duration};
use crate::markdown;
use crate::rollout::history::{History, HistoryEntry, median_and_max, time_text};
use crate::rollout::ports::PortError;

/// `shiftgate report --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportResult {
    /// `ok`; `incomplete` when the incidents could not be read because GitHub failed (exit 3).
    pub outcome: &'static str,
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The period, RFC 3339.
    pub since: String,
    pub until: String,
    pub totals: Totals,
    /// Over the rollouts of the period a gate rolled back.
    pub time_to_detect: Option<Spread>,
    pub time_to_restore: Option<Spread>,
    /// The rollouts that ended in the period, oldest first.
    pub rollouts: Vec<RolloutRow>,
    /// Why (part of) the service's history annotation was left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_unreadable: Option<String>,
    /// Set when the history is at its bounds and its oldest entry ended after the period began:
    /// rollouts of the period that ended before this time were dropped (the counts are low).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_truncated_before: Option<String>,
    /// How many items the history keeps (for the note on dropped ones).
    #[serde(skip)]
    pub history_items: usize,
    pub incidents: Incidents,
    pub exit_code: ExitCode,
    /// The Markdown shown on stdout and in the step summary (not in the JSON).
    #[serde(skip)]
    pub markdown: String,
}

/// How many rollouts ended in the period, by outcome. `manual` counts those a person ended
/// (`rollback`, `abort`), which are in the other counts too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    pub rollouts: usize,
    pub promoted: usize,
    pub rolled_back: usize,
    pub failed: usize,
    pub aborted: usize,
    pub interrupted: usize,
    pub manual: usize,
}

/// The median and the largest of some durations, in seconds, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median_s: u64,
    pub max_s: u64,
    pub count: usize,
}

/// One rollout of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutRow {
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// Time to detect, seconds: the failing verdict after the candidate's first traffic.
    pub ttd_s: Option<u64>,
    /// Time to restore, seconds: the restoring write after the failing verdict.
    pub ttr_s: Option<u64>,
}

/// The repository's incidents, or why they were not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incidents {
    pub read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Why they were not read (no repository, no token, GitHub failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_read: Option<String>,
    pub open_count: Option<usize>,
    pub opened_in_period: Option<usize>,
    pub closed_in_period: Option<usize>,
    pub open: Vec<IncidentIssue>,
    pub closed: Vec<IncidentIssue>,
    /// More than 1,000 issues in a listing: the counts are a lower bound.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
    /// Open incidents of the repository that are not this service's (another service's key, or
    /// filed by hand without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_open: Option<usize>,
    /// GitHub failed (the report exits 3); `not_read` says how.
    #[serde(skip)]
    pub api_failed: bool,
}

impl Incidents {
    fn not_read(repo: Option<String>, why: String) -> Self {
        Self {
            read: false,
            repo,
            not_read: Some(why),
            open_count: None,
            opened_in_period: None,
            closed_in_period: None,
            other_open: None,
            open: Vec::new(),
            closed: Vec::new(),
            incomplete: false,
            api_failed: false,
        }
    }

    fn from_summary(repo: String, summary: IncidentSummary) -> Self {
        Self {
            read: true,
            repo: Some(repo),
            not_read: None,
            open_count: Some(summary.open.len()),
            other_open: Some(summary.other_open),
            opened_in_period: Some(summary.opened_in_period),
            closed_in_period: Some(summary.closed_in_period.len()),
            open: summary.open,
            closed: summary.closed_in_period,
            incomplete: summary.incomplete,
            api_failed: false,
        }
    }
}

impl ReportResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts {
            service: Some(ServiceFacts {
                name: &self.service,
                change: ServiceChange::Read,
                image: None,
            }),
            markdown: Some(&self.markdown),
            ..ResultFacts::new(command, self.outcome, self.exit_code)
        }
    }
}

/// The start of the period `since` gives at `now`; a time in the future or more than 400 days
/// back is bad input naming the flag.
pub fn period_start(since: Since, now: SystemTime) -> Result<SystemTime, CommandError> {
    let (_, longest) = SINCE_BOUNDS;
    match since {
        Since::Ago(ago) => Ok(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)),
        Since::At(at) if at > now => Err(CommandError::bad_input(format!(
            "--since {} is in the future; give a past time or a duration such as 7d",
            time_text(at)
        ))),
        Since::At(at) if now.duration_since(at).unwrap_or_default() > longest => {
            Err(CommandError::bad_input(format!(
                "--since {} is more than 400 days back; a report covers 1h to 400d",
                time_text(at)
            )))
        }
        Since::At(at) => Ok(at),
    }
}

pub async fn run(context: &Context, args: ReportArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let now = SystemTime::now();
    let since = period_start(args.since, now)?;
    let repo = config
        .incident_repo(args.repo.as_deref())
        .map(|text| crate::github::Repo::parse(&text).map_err(CommandError::bad_input))
        .transpose()?;
    let endpoints = Endpoints::from_env();
    let platform = endpoints.cloud_run(&address).await?;
    platform
        .rest()
        .set_deadline(Some(tokio::time::Instant::now() + args.timeout));
    let read = tokio::time::timeout(args.timeout, platform.read_history())
        .await
        .map_err(|_| {
            CommandError::api(format!(
                "could not read the service within --timeout {}",
                humantime::format_duration(args.timeout)
            ))
        })?;
    let (service, history) = read.map_err(|error| match error {
        PortError::NotFound(what) => CommandError::bad_input(format!(
            "the service was not found ({what}); check --env, or --project, --region and --service"
        )),
        other => CommandError::api(format!("could not read the service: {other}")),
    })?;
    let incidents = match repo {
        None => Incidents::not_read(
            None,
            "no repository: give --repo OWNER/NAME (or `repo` in shiftgate.toml, or \
             GITHUB_REPOSITORY)"
                .into(),
        ),
        Some(repo) => {
            let belongs = belongs_to(&service.name, address.environment.as_deref());
            read_incidents(&repo, since, args.timeout, &belongs).await
        }
    };
    let result = build(
        &service.name,
        address.environment.clone(),
        history,
        incidents,
        since,
        now,
    );
    if !context.json {
        crate::output::print_text(&result.markdown);
    }
    Ok(CommandResult::Report(result))
}

/// Which incident issues are this service's: filed under its resource name (a rollback's, a
/// failed deploy's in the example workflow) or under its environment's health key.
fn belongs_to(
    service: &str,
    environment: Option<&str>,
) -> impl Fn(&str) -> bool + Send + Sync + use<> {
    let service = service.to_string();
    let health = environment.map(|name| format!("<!-- shiftgate-incident: health:{name} "));
    move |body: &str| {
        carries_marker(body, &service)
            || health
                .as_deref()
                .is_some_and(|prefix| body.trim_start().starts_with(prefix))
    }
}

/// The incidents, or why not: no token is a note; GitHub failing is an API failure (exit 3).
async fn read_incidents(
    repo: &crate::github::Repo,
    since: SystemTime,
    timeout: Duration,
    belongs: &incident_list::Belongs,
) -> Incidents {
    let name = repo.to_string();
    if crate::github::client::token_from_env().is_none() {
        return Incidents::not_read(
            Some(name),
            "no GitHub token: set GITHUB_TOKEN (or GH_TOKEN) to count incidents".into(),
        );
    }
    let github = match github_from_env() {
        Ok(github) => github,
        Err(error) => return Incidents::not_read(Some(name), error.message),
    };
    match tokio::time::timeout(timeout, incident_list::list(&github, repo, since, belongs)).await {
        Ok(Ok(summary)) => Incidents::from_summary(name, summary),
        Ok(Err(error)) => Incidents {
            api_failed: true,
            ..Incidents::not_read(Some(name), format!("GitHub failed: {error}"))
        },
        Err(_) => Incidents {
            api_failed: true,
            ..Incidents::not_read(
                Some(name),
                format!(
                    "GitHub did not answer within --timeout {}",
                    humantime::format_duration(timeout)
                ),
            )
        },
    }
}

/// The entries with one per rollout: entries with the same id (a region undone in waves after its
/// promotion, a person's rollback of a rollout in progress) are one rollout. The later entry wins
/// (outcome, reason, end, restore) and keeps the earlier's detection and failed step where it has
/// none; the start and first traffic are the earliest of the two. It takes the later one's place.
/// Entries without an id stay apart.
fn one_per_rollout(entries: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    let mut out: Vec<Option<HistoryEntry>> = Vec::with_capacity(entries.len());
    let mut at_id: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for mut entry in entries {
        if !entry.id.is_empty()
            && let Some(earlier_at) = at_id.get(&entry.id).copied()
            && let Some(earlier) = out[earlier_at].take()
        {
            // One rollout started once and first gave traffic once: the earliest of each (a
            // region's undo in waves writes its own time as its start).
            entry.started =
                earliest(Some(entry.started), Some(earlier.started)).unwrap_or_default();
            entry.traffic_at = earliest(entry.traffic_at, earlier.traffic_at);
            entry.detected_at = entry.detected_at.or(earlier.detected_at);
            entry.failed_percent = entry.failed_percent.or(earlier.failed_percent);
        }
        if !entry.id.is_empty() {
            at_id.insert(entry.id.clone(), out.len());
        }
        out.push(Some(entry));
    }
    out.into_iter().flatten().collect()
}

/// The earlier of two times as the history writes them; one that does not parse (or is empty)
/// only when the other is missing.
fn earliest(a: Option<String>, b: Option<String>) -> Option<String> {
    let time = |text: &Option<String>| {
        text.as_deref()
            .and_then(|text| humantime::parse_rfc3339_weak(text.trim().trim_end_matches('Z')).ok())
    };
    match (time(&a), time(&b)) {
        (Some(x), Some(y)) => {
            if y < x {
                b
            } else {
                a
            }
        }
        (Some(_), None) => a,
        (None, Some(_)) => b,
        (None, None) => a.filter(|text| !text.trim().is_empty()).or(b),
    }
}

/// The report of `history` and `incidents` over `since`..`now`.
pub fn build(
    service: &str,
    environment: Option<String>,
    history: History,
    incidents: Incidents,
    since: SystemTime,
    now: SystemTime,
) -> ReportResult {
    // At its bounds the history drops its oldest entries: if the oldest kept one ended inside the
    // period, rollouts of the period may be missing.
    let truncated_before = history
        .entries
        .iter()
        .filter_map(HistoryEntry::ended_at)
        .min()
        .filter(|oldest| history.near_bound() && *oldest > since)
        .map(time_text);
    let history_items = history.items;
    let rows: Vec<RolloutRow> = one_per_rollout(history.entries)
        .into_iter()
        .filter(|entry| entry.ended_at().is_some_and(|ended| ended >= since))
        .map(|entry| RolloutRow {
            ttd_s: entry.time_to_detect().map(|d| d.as_secs()),
            ttr_s: entry.time_to_restore().map(|d| d.as_secs()),
            entry,
        })
        .collect();
    let mut totals = Totals {
        rollouts: rows.len(),
        ..Totals::default()
    };
    for row in &rows {
        match row.entry.outcome.as_str() {
            "promoted" => totals.promoted += 1,
            "rolled_back" => totals.rolled_back += 1,
            "failed" => totals.failed += 1,
            "aborted" => totals.aborted += 1,
            "interrupted" => totals.interrupted += 1,
            _ => {}
        }
        totals.manual += usize::from(row.entry.manual);
    }
    let spread = |values: Vec<u64>| {
        let durations: Vec<Duration> = values.into_iter().map(Duration::from_secs).collect();
        median_and_max(&durations).map(|(median, max)| Spread {
            median_s: median.as_secs(),
            max_s: max.as_secs(),
            count: durations.len(),
        })
    };
    let api_failed = incidents.api_failed;
    let mut result = ReportResult {
        outcome: if api_failed { "incomplete" } else { "ok" },
        service: service.to_string(),
        environment,
        since: time_text(since),
        until: time_text(now),
        totals,
        time_to_detect: spread(rows.iter().filter_map(|r| r.ttd_s).collect()),
        time_to_restore: spread(rows.iter().filter_map(|r| r.ttr_s).collect()),
        rollouts: rows,
        history_unreadable: history.unreadable,
        history_truncated_before: truncated_before,
        history_items,
        incidents,
        exit_code: if api_failed {
            ExitCode::ApiFailed
        } else {
            ExitCode::Ok
        },
        markdown: String::new(),
    };
    result.markdown = render(&result);
    result
}

fn seconds(value: Option<u64>) -> String {
    value
        .map(|s| short_duration(Duration::from_secs(s)))
        .unwrap_or_else(|| "–".to_string())
}

fn spread_text(name: &str, spread: Option<Spread>) -> String {
    match spread {
        Some(s) => format!(
            "{name}: median {}, max {} (over {} rollback{})",
            short_duration(Duration::from_secs(s.median_s)),
            short_duration(Duration::from_secs(s.max_s)),
            s.count,
            if s.count == 1 { "" } else { "s" }
        ),
        None => format!("{name}: – (no rollback a gate detected)"),
    }
}

/// A person's name for where a rollout ran: a link to the run, else quoted.
fn who_cell(who: &str) -> String {
    if who.is_empty() {
        return "–".into();
    }
    if who.starts_with("https://") {
        markdown::link(who).replace('|', "\\|")
    } else {
        markdown::cell_code(who)
    }
}

/// The report as Markdown; everything from outside quoted or escaped.
pub fn render(result: &ReportResult) -> String {
    let mut out = String::new();
    let short = result.service.rsplit('/').next().unwrap_or_default();
    let _ = writeln!(
        out,
        "## Rollout report: {}{}\n",
        markdown::code(short),
        result
            .environment
            .as_deref()
            .map(|env| format!(" ({})", markdown::code(env)))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "From {} to {}.\n", result.since, result.until);
    let t = result.totals;
    let _ = writeln!(
        out,
        "| rollouts | promoted | rolled back | failed | aborted | interrupted |\n\
         |---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {} | {} |\n",
        t.rollouts, t.promoted, t.rolled_back, t.failed, t.aborted, t.interrupted
    );
    if t.manual > 0 {
        let _ = writeln!(
            out,
            "{} of them ended by a person (`shiftgate rollback` or `abort`).\n",
            t.manual
        );
    }
    let _ = writeln!(
        out,
        "{}  \n{}\n",
        spread_text("Time to detect", result.time_to_detect),
        spread_text("Time to restore", result.time_to_restore)
    );
    if let Some(why) = &result.history_unreadable {
        let _ = writeln!(out, "**Note:** {}\n", markdown::code(why));
    }
    if let Some(before) = &result.history_truncated_before {
        let _ = writeln!(
            out,
            "**Note:** the service keeps its last {} rollouts; older ones in this period (ended \
             before {}) were dropped, so the counts above may be low.\n",
            result.history_items,
            markdown::code(before)
        );
    }
    if result.rollouts.is_empty() {
        let _ = writeln!(out, "No rollout ended in this period.\n");
    } else {
        let _ = writeln!(
            out,
            "| ended | candidate | stable | outcome | reason | TTD | TTR | who |\n\
             |---|---|---|---|---|---:|---:|---|"
        );
        for row in &result.rollouts {
            let e = &row.entry;
            let outcome = format!(
                "{}{}",
                e.outcome.replace('_', " "),
                if e.manual { " (manual)" } else { "" }
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                markdown::cell_code(&e.ended),
                markdown::cell_code(&e.candidate),
                markdown::cell_code(&e.stable),
                markdown::text(&outcome),
                e.reason
                    .as_deref()
                    .map(markdown::cell_code)
                    .unwrap_or_else(|| "–".into()),
                seconds(row.ttd_s),
                seconds(row.ttr_s),
                who_cell(&e.who)
            );
        }
        out.push('\n');
    }
    render_incidents(&mut out, &result.incidents);
    out
}

fn render_incidents(out: &mut String, incidents: &Incidents) {
    let repo = incidents
        .repo
        .as_deref()
        .map(|repo| format!(" in {}", markdown::code(repo)))
        .unwrap_or_default();
    let _ = writeln!(out, "### Incidents{repo}\n");
    if let Some(why) = &incidents.not_read {
        let _ = writeln!(out, "Not read: {}\n", markdown::code(why));
        return;
    }
    let _ = writeln!(
        out,
        "This service's (filed under its name or its environment's health check): open now: {} · \
         opened in the period: {} · closed in the period: {}{}\n",
        incidents.open_count.unwrap_or_default(),
        incidents.opened_in_period.unwrap_or_default(),
        incidents.closed_in_period.unwrap_or_default(),
        if incidents.incomplete {
            " (more than 1,000 issues: counts are incomplete)"
        } else {
            ""
        }
    );
    if let Some(others) = incidents.other_open.filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "Other open incidents in the repository (other services, or filed by hand): {others}\n"
        );
    }
    let line = |issue: &IncidentIssue, tail: String| {
        format!(
            "- #{} {}{} {}{tail}",
            issue.number,
            issue
                .severity
                .as_deref()
                .map(|sev| format!("{} ", markdown::text(sev)))
                .unwrap_or_default(),
            markdown::text(&issue.title),
            markdown::link(&issue.url),
        )
    };
    if !incidents.open.is_empty() {
        let _ = writeln!(out, "Open:\n");
        for issue in &incidents.open {
            let _ = writeln!(
                out,
                "{}",
                line(
                    issue,
                    format!(", opened {}", markdown::code(&issue.created_at))
                )
            );
        }
        out.push('\n');
    }
    if !incidents.closed.is_empty() {
        let _ = writeln!(out, "Closed in the period:\n");
        for issue in &incidents.closed {
            let _ = writeln!(
                out,
                "{}",
                line(issue, format!(", open for {}", seconds(issue.open_s)))
            );
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::history::time_text;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + seconds)
    }

    fn entry(id: &str, outcome: &str, ended: u64) -> HistoryEntry {
        HistoryEntry {
            id: id.into(),
            candidate: format!("web-{id}"),
            stable: "web-1".into(),
            outcome: outcome.into(),
            started: time_text(at(ended - 100)),
            ended: time_text(at(ended)),
            who: "https://github.com/o/r/actions/runs/9/attempts/1".into(),
            ..HistoryEntry::default()
        }
    }

    fn rolled_back(id: &str, ended: u64, ttd: u64, ttr: u64) -> HistoryEntry {
        HistoryEntry {
            reason: Some("5xx 40% | @team <b>".into()),
            failed_percent: Some(50),
            traffic_at: Some(time_text(at(ended - ttr - ttd))),
            detected_at: Some(time_text(at(ended - ttr))),
            restored_at: Some(time_text(at(ended))),
            ..entry(id, "rolled_back", ended)
        }
    }

    fn incidents() -> Incidents {
        Incidents::not_read(None, "no repository".into())
    }

    #[test]
    fn given_a_history_then_the_period_counts_outcomes_and_spreads_ttd_and_ttr() {
        let history = History {
            entries: vec![
                entry("old", "promoted", 500),
                entry("a", "promoted", 2_000),
                rolled_back("b", 3_000, 90, 4),
                rolled_back("c", 4_000, 30, 2),
                rolled_back("d", 5_000, 60, 6),
                HistoryEntry {
                    manual: true,
                    restored_at: Some(time_text(at(6_000))),
                    ..entry("e", "aborted", 6_000)
                },
            ],
            ..History::default()
        };
        let report = build("web", None, history, incidents(), at(1_000), at(7_000));
        assert_eq!(
            report.totals,
            Totals {
                rollouts: 5,
                promoted: 1,
                rolled_back: 3,
                failed: 0,
                aborted: 1,
                interrupted: 0,
                manual: 1,
            }
        );
        assert_eq!(
            report.time_to_detect,
            Some(Spread {
                median_s: 60,
                max_s: 90,
                count: 3
            })
        );
        assert_eq!(
            report.time_to_restore,
            Some(Spread {
                median_s: 4,
                max_s: 6,
                count: 3
            })
        );
        let ids: Vec<&str> = report
            .rollouts
            .iter()
            .map(|r| r.entry.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c", "d", "e"]);
        assert_eq!(report.outcome, "ok");
        assert_eq!(report.exit_code, ExitCode::Ok);
    }

    #[test]
    fn given_entries_with_the_same_id_then_they_are_one_rollout_the_later_winning() {
        // Given region us-central1's promotion, then the same rollout's entry when waves undid it
        // (same id: no start, no first traffic of its own), a person's rollback with its own id,
        // and a rollout a gate rolled back.
        let promoted = HistoryEntry {
            traffic_at: Some(time_text(at(1_910))),
            ..entry("r1", "promoted", 2_000)
        };
        // (waves writes the undo's own time as its start)
        let undone = HistoryEntry {
            started: time_text(at(2_504)),
            reason: Some("region europe-west1: 5xx 40%".into()),
            detected_at: Some(time_text(at(2_500))),
            restored_at: Some(time_text(at(2_504))),
            ..entry("r1", "rolled_back", 2_504)
        };
        let manual = HistoryEntry {
            manual: true,
            restored_at: Some(time_text(at(3_000))),
            ..entry("m1", "rolled_back", 3_000)
        };
        let history = History {
            entries: vec![promoted, undone, manual, rolled_back("r2", 4_000, 30, 2)],
            ..History::default()
        };
        let report = build("web", None, history, incidents(), at(1_000), at(7_000));

        // Then there are three rollouts, the first one rolled back with the later entry's facts
        // and the earlier's start and first traffic,
        let ids: Vec<&str> = report
            .rollouts
            .iter()
            .map(|r| r.entry.id.as_str())
            .collect();
        assert_eq!(ids, ["r1", "m1", "r2"]);
        assert_eq!(
            (
                report.totals.rollouts,
                report.totals.promoted,
                report.totals.rolled_back
            ),
            (3, 0, 3)
        );
        let first = &report.rollouts[0];
        assert_eq!(first.entry.outcome, "rolled_back");
        assert_eq!(first.entry.started, time_text(at(1_900)));
        assert_eq!(first.entry.ended, time_text(at(2_504)));
        assert_eq!(first.entry.traffic_at, Some(time_text(at(1_910))));
        assert_eq!(
            first.entry.reason.as_deref(),
            Some("region europe-west1: 5xx 40%")
        );
        assert_eq!((first.ttd_s, first.ttr_s), (Some(590), Some(4)));
        assert_eq!(report.totals.manual, 1);
        // A later entry with no start of its own keeps the earlier's.
        let merged = one_per_rollout(vec![
            entry("r1", "promoted", 2_000),
            HistoryEntry {
                started: String::new(),
                ..entry("r1", "rolled_back", 2_504)
            },
        ]);
        assert_eq!(merged.len(), 1);
        assert_eq!(
            (merged[0].started.as_str(), merged[0].outcome.as_str()),
            (time_text(at(1_900)).as_str(), "rolled_back")
        );
    }

    #[test]
    fn given_a_full_history_whose_oldest_entry_is_inside_the_period_then_the_report_says_rollouts_were_dropped()
     {
        let full = |first_ended: u64| {
            let entries: Vec<HistoryEntry> = (0..crate::rollout::history::MAX_ENTRIES as u64)
                .map(|n| entry(&format!("r{n}"), "promoted", first_ended + n * 200))
                .collect();
            let text = serde_json::to_string(&entries).unwrap();
            crate::rollout::history::parse(Some(&text))
        };
        // Given the history's 50 entries, the oldest ended after the period began,
        let report = build("web", None, full(2_000), incidents(), at(1_000), at(20_000));
        // then the JSON and the Markdown say that older rollouts of the period were dropped,
        assert_eq!(
            report.history_truncated_before.as_deref(),
            Some(time_text(at(2_000)).as_str())
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["history_truncated_before"], time_text(at(2_000)));
        assert!(
            report.markdown.contains(&format!(
                "**Note:** the service keeps its last 50 rollouts; older ones in this period \
                 (ended before `{}`) were dropped, so the counts above may be low.\n",
                time_text(at(2_000))
            )),
            "{}",
            report.markdown
        );
        // but not when the period began after the oldest kept entry ended,
        let report = build("web", None, full(2_000), incidents(), at(2_100), at(20_000));
        assert_eq!(report.history_truncated_before, None);
        assert!(!report.markdown.contains("were dropped"));
        assert_eq!(
            serde_json::to_value(&report)
                .unwrap()
                .get("history_truncated_before"),
            None
        );
        // nor when the history is far from its bounds.
        let few = crate::rollout::history::parse(Some(
            &serde_json::to_string(&[entry("a", "promoted", 2_000)]).unwrap(),
        ));
        let report = build("web", None, few, incidents(), at(1_000), at(20_000));
        assert_eq!(report.history_truncated_before, None);
    }

    #[test]
    fn given_a_history_near_its_byte_bound_then_the_report_says_rollouts_may_have_been_dropped() {
        let long = |n: u64| HistoryEntry {
            reason: Some("r".repeat(150)),
            who: "w".repeat(200),
            ..entry(&format!("r{n}"), "rolled_back", 2_000 + n * 100)
        };
        let mut value: Option<String> = None;
        for n in 0..40 {
            value = Some(crate::rollout::history::append(value.as_deref(), long(n)).value);
        }
        let history = crate::rollout::history::parse(value.as_deref());
        assert!(
            history.items < crate::rollout::history::MAX_ENTRIES,
            "{}",
            history.items
        );
        let oldest = history.entries[0].ended.clone();
        let report = build("web", None, history, incidents(), at(1_000), at(20_000));
        assert_eq!(report.history_truncated_before, Some(oldest));
    }

    #[test]
    fn given_hostile_text_then_the_markdown_quotes_it_and_mentions_no_one() {
        let history = History {
            entries: vec![rolled_back("b", 3_000, 90, 4)],
            ..History::default()
        };
        let report = build("web", None, history, incidents(), at(1_000), at(7_000));
        let row = report
            .markdown
            .lines()
            .find(|line| line.contains("web-b"))
            .unwrap();
        assert!(row.contains("`5xx 40% \\| @\u{2060}team <b>`"), "{row}");
        assert_eq!(row.matches(" | ").count() + 2, 9, "{row}");
        assert!(row.contains("| 1m 30s | 4s |"), "{row}");
        assert!(report.markdown.contains("Not read: `no repository`"));
    }

    #[test]
    fn a_since_time_in_the_future_or_too_far_back_is_refused_naming_the_flag() {
        let now = at(100_000_000);
        assert_eq!(
            period_start(Since::Ago(Duration::from_secs(3600)), now).unwrap(),
            at(100_000_000 - 3600)
        );
        for bad in [
            Since::At(at(100_000_001)),
            Since::At(at(100_000_000 - 401 * 86_400)),
        ] {
            let error = period_start(bad, now).unwrap_err();
            assert_eq!(error.exit_code, ExitCode::BadInput);
            assert!(error.message.contains("--since"), "{}", error.message);
        }
    }
}
