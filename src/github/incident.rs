//! Incident issues: the body built from the runbook's incident report (what happened, severity,
//! timeline, links, next steps) with a hidden key, and filing that de-duplicates on that key.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::github::client::{GitHub, GitHubError, Repo};
use crate::markdown;
use crate::report_markdown::steps_and_chart;
use crate::rollout::timeline::describe_traffic;
use crate::rollout::{Policy, Report};

/// The runbook's severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub fn parse(text: &str) -> Result<Severity, String> {
        let normal = text.trim().to_ascii_uppercase().replace(['_', ' '], "-");
        match normal.as_str() {
            "SEV-1" | "SEV1" => Ok(Severity::Sev1),
            "SEV-2" | "SEV2" => Ok(Severity::Sev2),
            "SEV-3" | "SEV3" => Ok(Severity::Sev3),
            "SEV-4" | "SEV4" => Ok(Severity::Sev4),
            _ => Err(format!(
                "--severity must be SEV-1, SEV-2, SEV-3 or SEV-4, got {text:?}"
            )),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Severity::Sev1 => 1,
            Severity::Sev2 => 2,
            Severity::Sev3 => 3,
            Severity::Sev4 => 4,
        }
    }

    pub fn name(self) -> String {
        format!("SEV-{}", self.number())
    }

    pub fn label(self) -> String {
        format!("sev-{}", self.number())
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Severity::Sev1 => "critical: the service is down or unusable for everyone",
            Severity::Sev2 => "major: a deploy failed or the service is degraded for many users",
            Severity::Sev3 => "minor: limited impact, a workaround exists",
            Severity::Sev4 => "cosmetic: no user impact",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Severity::Sev1 => "b60205",
            Severity::Sev2 => "d93f0b",
            Severity::Sev3 => "fbca04",
            Severity::Sev4 => "c5def5",
        }
    }
}

/// One incident to file.
#[derive(Debug, Clone)]
pub struct Incident {
    pub repo: Repo,
    pub title: String,
    pub severity: Severity,
    /// De-duplication key (defaults to the title).
    pub key: String,
    /// Extra labels besides `incident` and `sev-N`.
    pub labels: Vec<String>,
    /// What happened (Markdown).
    pub summary: String,
    /// Timeline section (Markdown), if the caller has one.
    pub timeline: Option<String>,
    /// Extra `(text, url)` links.
    pub links: Vec<(String, String)>,
}

impl Incident {
    /// The incident with the evidence (error logs, revisions, undo and retry commands) after what
    /// happened; in the issue body and in the comment when the incident happens again.
    pub fn with_evidence(mut self, evidence: &crate::evidence::Evidence) -> Self {
        self.summary.push('\n');
        self.summary.push_str(&evidence.markdown());
        self
    }
}

/// The link to the workflow run that is filing, from the Actions environment.
pub fn workflow_run_link() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    Some(format!(
        "{}/{}/actions/runs/{}",
        var("GITHUB_SERVER_URL")?.trim_end_matches('/'),
        var("GITHUB_REPOSITORY")?,
        var("GITHUB_RUN_ID")?
    ))
}

/// The hidden marker that identifies an incident's issue. The key is percent-encoded where it could
/// end or confuse the HTML comment (`-->`, `--!>`, `<`, `>`, line breaks), one-to-one, so two keys
/// never share a marker; ordinary keys (titles, service names) read unchanged.
pub fn marker(key: &str) -> String {
    let mut safe = String::with_capacity(key.len());
    let mut previous = None;
    for c in key.trim().chars() {
        match c {
            '%' | '<' | '>' | '&' => safe.push_str(&format!("%{:02X}", c as u32)),
            // A second hyphen in a row is encoded, so the text never holds `--`.
            '-' if previous == Some('-') => safe.push_str("%2D"),
            c if c.is_control() => {
                let mut bytes = [0; 4];
                for byte in c.encode_utf8(&mut bytes).bytes() {
                    safe.push_str(&format!("%{byte:02X}"));
                }
            }
            c => safe.push(c),
        }
        previous = Some(c);
    }
    // A key ending in `-` would otherwise meet the closing `-->` as `--->`.
    format!("<!-- shiftgate-incident: {safe} -->")
}

fn now_text(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The issue body, following the runbook's incident report.
pub fn render_body(incident: &Incident, run_link: Option<&str>, at: SystemTime) -> String {
    let severity = incident.severity;
    let mut body = format!(
        "{}\n## Incident: {}\n\n| | |\n|---|---|\n| **Severity** | {} — {} |\n| **Status** | open, investigating |\n| **Detected** | {} by shiftgate |\n\n### What happened\n\n{}\n\n### Timeline\n\n",
        marker(&incident.key),
        markdown::text(&incident.title),
        severity.name(),
        severity.meaning(),
        now_text(at),
        incident.summary.trim()
    );
    match &incident.timeline {
        Some(timeline) => body.push_str(timeline.trim()),
        None => body.push_str(&format!("- {}: incident filed", now_text(at))),
    }
    body.push_str("\n\n### Links\n\n");
    let mut links = Vec::new();
    if let Some(url) = run_link {
        links.push(format!("- Workflow run: {}", markdown::link(url)));
    }
    for (text, url) in &incident.links {
        links.push(format!(
            "- {}: {}",
            markdown::text(text),
            markdown::link(url)
        ));
    }
    if links.is_empty() {
        links.push("- (no workflow run: filed outside GitHub Actions)".into());
    }
    body.push_str(&links.join("\n"));
    body.push_str("\n\n### Next steps\n\n");
    let steps: &[&str] = match severity {
        Severity::Sev1 => &[
            "Page the on-call engineer now",
            "Restore service: `shiftgate rollback --to REVISION` to the last good revision",
            "Confirm with `shiftgate health` and `shiftgate status`",
            "Post a status update every 30 minutes until resolved",
        ],
        Severity::Sev2 => &[
            "Confirm stable traffic is healthy: `shiftgate status`, `shiftgate health`",
            "Find why the candidate failed (logs of the failed revision)",
        ],
        _ => &["Triage in the next working day"],
    };
    for step in steps {
        body.push_str(&format!("- [ ] {step}\n"));
    }
    body.push_str("- [ ] Write the root cause and the follow-ups here, then close this issue\n");
    body
}

/// The comment added when the same incident happens again.
pub fn render_comment(incident: &Incident, run_link: Option<&str>, at: SystemTime) -> String {
    let mut text = format!(
        "{}\n### Happened again at {}: {} ({})\n\n{}\n",
        marker(&incident.key),
        now_text(at),
        markdown::text(&incident.title),
        incident.severity.name(),
        incident.summary.trim()
    );
    if let Some(timeline) = &incident.timeline {
        text.push_str(&format!("\n#### Timeline\n\n{}\n", timeline.trim()));
    }
    if let Some(url) = run_link {
        text.push_str(&format!("\nWorkflow run: {}\n", markdown::link(url)));
    }
    text
}

/// The incident a rollout files when it rolls back: SEV-2 with the step table, the chart against
/// the policy's limit and the timeline, SEV-1 when the rollback itself failed or stable is
/// unhealthy after it. The key is the service, so a flapping service gets one issue with a comment
/// per rollback.
pub fn rollout_incident(repo: Repo, report: &Report, policy: &Policy) -> Incident {
    let stable_unhealthy = report.stable_health.as_ref().and_then(|verdict| {
        verdict
            .is_fail()
            .then(|| verdict.reason().unwrap_or_default())
    });
    let severity = if report.rollback_failed || stable_unhealthy.is_some() {
        Severity::Sev1
    } else {
        Severity::Sev2
    };
    let service = report.service.rsplit('/').next().unwrap_or(&report.service);
    let title = match (report.rollback_failed, stable_unhealthy) {
        (true, _) => format!("Rollback of {service} FAILED: the service needs a person"),
        (false, Some(_)) if report.service_problem => format!(
            "{service} is unhealthy on stable {} as well as on candidate {}: a service problem, \
             not the rollout",
            report.stable, report.candidate
        ),
        (false, Some(_)) => format!(
            "{service} is unhealthy after rolling back to {}: the service needs a person",
            report.stable
        ),
        (false, None) => format!("Rollout of {} to {service} rolled back", report.candidate),
    };
    let mut summary = rollout_facts(report, stable_unhealthy);
    summary.push('\n');
    summary.push_str(&steps_and_chart(report, policy));
    Incident {
        repo,
        title,
        severity,
        key: report.service.clone(),
        labels: Vec::new(),
        summary,
        timeline: Some(timeline_lines(report)),
        links: Vec::new(),
    }
}

/// What happened, as a list. Everything from the report is quoted: names and reasons come from
/// APIs and health bodies.
fn rollout_facts(report: &Report, stable_unhealthy: Option<&str>) -> String {
    let mut facts = format!(
        "shiftgate {} the rollout of candidate revision {} (image {}) to {}.\n\n- Stable revision: {}\n- Candidate revision: {}\n- Reason: {}\n- Final traffic: {}\n",
        if report.rollback_failed {
            "could not roll back"
        } else {
            "rolled back"
        },
        markdown::code(&report.candidate),
        markdown::code(report.image.as_deref().unwrap_or("(existing revision)")),
        markdown::code(&report.service),
        markdown::code(&report.stable),
        markdown::code(&report.candidate),
        markdown::code(report.reason.as_deref().unwrap_or("(none recorded)")),
        markdown::code(&describe_traffic(&report.final_traffic)),
    );
    if let Some(reason) = stable_unhealthy {
        facts.push_str(&format!(
            "- **Stable is unhealthy too** after the rollback: {}\n",
            markdown::code(reason)
        ));
    }
    facts.push_str(&crate::report_markdown::hook_lines(report));
    facts
}

/// The progress log as a list, each line with its time.
fn timeline_lines(report: &Report) -> String {
    let lines: Vec<String> = report
        .timeline
        .iter()
        .filter_map(|event| {
            let line = crate::output::progress_line(event)?;
            Some(format!(
                "- {} {}",
                now_text(event.at),
                markdown::code(&line)
            ))
        })
        .collect();
    lines.join("\n")
}

/// The SEV-1 incident `shiftgate rollback` files when it cannot put traffic back: same key as the
/// rollout's incidents (the service), so it lands on the issue already open for that service.
pub fn failed_rollback_incident(
    repo: Repo,
    by: &str,
    service: &str,
    target: &str,
    reason: &str,
    final_traffic: &str,
) -> Incident {
    let short = service.rsplit('/').next().unwrap_or(service);
    Incident {
        repo,
        title: format!("Rollback of {short} FAILED: the service needs a person"),
        severity: Severity::Sev1,
        key: service.to_string(),
        labels: Vec::new(),
        summary: format!(
            "{by} could not send 100% of traffic to {} on {}.\n\n\
             - Reason: {}\n- Traffic as last read: {}\n",
            markdown::code(target),
            markdown::code(service),
            markdown::code(reason),
            markdown::code(final_traffic)
        ),
        timeline: None,
        links: Vec::new(),
    }
}

/// What filing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    /// `created` or `commented`.
    pub action: &'static str,
    pub number: u64,
    pub url: String,
}

/// Open issues labelled `incident` that carry this key's marker, oldest first.
async fn open_with_key(
    github: &GitHub,
    repo: &Repo,
    key: &str,
) -> Result<Vec<(u64, String)>, GitHubError> {
    Ok(crate::github::lifecycle::open_incidents(github, repo)
        .await?
        .into_iter()
        .filter(|issue| issue.has_key(key))
        .map(|issue| (issue.number, issue.url))
        .collect())
}

/// Whether `text` (an issue's body, a comment) opens with `key`'s marker, as shiftgate writes
/// them; a marker quoted further down (in a health answer, a log line) does not count.
pub fn carries_marker(text: &str, key: &str) -> bool {
    text.trim_start().starts_with(&marker(key))
}

async fn ensure_label(
    github: &GitHub,
    repo: &Repo,
    name: &str,
    color: &str,
) -> Result<(), GitHubError> {
    let path = format!(
        "{}/labels/{}",
        repo.path(),
        crate::github::client::encode(name)
    );
    match github.get(&path).await {
        Ok(_) => Ok(()),
        Err(error) if error.status() == Some(404) => {
            match github
                .post(
                    &format!("{}/labels", repo.path()),
                    &json!({"name": name, "color": color}),
                )
                .await
            {
                // 422 already_exists: someone else made it meanwhile.
                Ok(_) => Ok(()),
                Err(error) if error.status() == Some(422) => Ok(()),
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    }
}

async fn comment(
    github: &GitHub,
    repo: &Repo,
    number: u64,
    text: &str,
) -> Result<Value, GitHubError> {
    github
        .post(
            &format!("{}/issues/{number}/comments", repo.path()),
            &json!({"body": text}),
        )
        .await
        .map(|a| a.body)
}

/// Files the incident: comments on the open issue with the same key, else creates one. The create
/// POST is sent once; after an ambiguous failure it looks before anything else. When two callers
/// race and both create, the later issue is closed as a duplicate and becomes a comment on the
/// earlier one.
pub async fn file(github: &GitHub, incident: &Incident) -> Result<Filed, GitHubError> {
    let repo = &incident.repo;
    let run_link = workflow_run_link();
    let at = github.clock().now();
    if let Some((number, url)) = open_with_key(github, repo, &incident.key)
        .await?
        .first()
        .cloned()
    {
        comment(
            github,
            repo,
            number,
            &render_comment(incident, run_link.as_deref(), at),
        )
        .await?;
        return Ok(Filed {
            action: "commented",
            number,
            url,
        });
    }
    let mut labels = vec!["incident".to_string(), incident.severity.label()];
    for label in &incident.labels {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    ensure_label(github, repo, "incident", "b60205").await?;
    ensure_label(
        github,
        repo,
        &incident.severity.label(),
        incident.severity.color(),
    )
    .await?;
    for label in &incident.labels {
        ensure_label(github, repo, label, "ededed").await?;
    }
    let body = json!({
        "title": incident.title,
        "body": render_body(incident, run_link.as_deref(), at),
        "labels": labels,
    });
    let (number, url) = match github.post(&format!("{}/issues", repo.path()), &body).await {
        Ok(answer) => (
            answer.body["number"].as_u64().unwrap_or_default(),
            answer.body["html_url"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        Err(GitHubError::Ambiguous(reason)) => {
            // It may have been created: look, never send it again blindly.
            match open_with_key(github, repo, &incident.key)
                .await?
                .first()
                .cloned()
            {
                Some(found) => found,
                None => {
                    return Err(GitHubError::Ambiguous(format!(
                        "{reason}; no issue with key {:?} was found afterwards, so it was not created (not sent again)",
                        incident.key
                    )));
                }
            }
        }
        Err(error) => return Err(error),
    };
    let open = open_with_key(github, repo, &incident.key).await?;
    if let Some((first, first_url)) = open.first().cloned()
        && first < number
    {
        // Another job filed the same incident at the same moment: keep the earlier issue.
        github
            .patch(
                &format!("{}/issues/{number}", repo.path()),
                &json!({"state": "closed", "state_reason": "duplicate"}),
            )
            .await?;
        comment(github, repo, number, &format!("Duplicate of #{first}.")).await?;
        comment(
            github,
            repo,
            first,
            &render_comment(incident, run_link.as_deref(), at),
        )
        .await?;
        return Ok(Filed {
            action: "commented",
            number: first,
            url: first_url,
        });
    }
    Ok(Filed {
        action: "created",
        number,
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            repo: Repo::parse("loopcloser/app").unwrap(),
            title: "Deploy of v1.4.0 to prod failed".into(),
            severity: Severity::Sev2,
            key: "Deploy of v1.4.0 to prod failed".into(),
            labels: vec![],
            summary: "The candidate answered 5xx.".into(),
            timeline: None,
            links: vec![],
        }
    }

    #[test]
    fn severities_parse_only_sev_1_to_4() {
        assert_eq!(Severity::parse("SEV-2"), Ok(Severity::Sev2));
        assert_eq!(Severity::parse("sev1"), Ok(Severity::Sev1));
        assert!(Severity::parse("SEV-5").unwrap_err().contains("--severity"));
    }

    #[test]
    fn the_body_follows_the_runbook_report_and_carries_the_key() {
        let body = render_body(
            &incident(),
            Some("https://github.com/loopcloser/app/actions/runs/9"),
            SystemTime::UNIX_EPOCH,
        );
        assert!(body.starts_with("<!-- shiftgate-incident: Deploy of v1.4.0 to prod failed -->"));
        for section in [
            "### What happened",
            "### Timeline",
            "### Links",
            "### Next steps",
        ] {
            assert!(body.contains(section), "{section}");
        }
        assert!(body.contains("SEV-2 — major"));
        assert!(body.contains("Workflow run: <https://github.com/loopcloser/app/actions/runs/9>"));
    }

    fn rolled_back_report() -> crate::rollout::Report {
        crate::rollout::Report {
            outcome: crate::rollout::Outcome::RolledBack,
            service: "projects/p/locations/r/services/app".into(),
            stable: "app-1".into(),
            candidate: "app-2".into(),
            image: None,
            rollout_id: "0123456789abcdef".into(),
            planned_steps: vec![10, 100],
            steps: Vec::new(),
            final_traffic: vec![crate::rollout::ports::TrafficTarget::new("app-1", 100)],
            final_traffic_confirmed: true,
            reason: Some("candidate 5xx rate 30%".into()),
            rollback_failed: false,
            api_failed: false,
            stable_health: Some(crate::rollout::verdict::Verdict::Pass),
            service_problem: false,
            pause_expired: false,
            hooks: Vec::new(),
            duration_s: 1.0,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn the_incident_names_the_backup_copy_and_each_job_with_its_outcome() {
        let repo = Repo::parse("loopcloser/app").unwrap();
        let mut report = rolled_back_report();
        report.hooks = vec![
            crate::rollout::hooks::HookReport {
                hook: crate::rollout::hooks::HookKind::Backup,
                target: "gs://loopcloser-db/loopcloser.db".into(),
                ok: true,
                detail: "gs://loopcloser-db/loopcloser.db.shiftgate-20261130T230000Z".into(),
                duration_s: 2.0,
            },
            crate::rollout::hooks::HookReport {
                hook: crate::rollout::hooks::HookKind::OnRollbackJob,
                target: "page-team".into(),
                ok: false,
                detail: "execution page-team-1: 1 of 1 tasks failed".into(),
                duration_s: 9.0,
            },
        ];
        let body = rollout_incident(repo, &report, &Policy::default()).summary;
        assert!(
            body.contains(
                "Backup before the rollout: `gs://loopcloser-db/loopcloser.db` done \
                 (`gs://loopcloser-db/loopcloser.db.shiftgate-20261130T230000Z`)"
            ),
            "{body}"
        );
        assert!(
            body.contains("Job after the rollback: `page-team` **failed**"),
            "{body}"
        );
    }

    #[test]
    fn a_rollback_to_a_healthy_stable_is_sev2_and_an_unhealthy_stable_is_sev1() {
        let repo = Repo::parse("loopcloser/app").unwrap();
        let healthy = rollout_incident(repo.clone(), &rolled_back_report(), &Policy::default());
        assert_eq!(healthy.severity, Severity::Sev2);
        assert_eq!(healthy.key, "projects/p/locations/r/services/app");

        let mut report = rolled_back_report();
        report.stable_health = Some(crate::rollout::verdict::Verdict::Fail(
            "answered HTTP 503".into(),
        ));
        let unhealthy = rollout_incident(repo.clone(), &report, &Policy::default());
        assert_eq!(unhealthy.severity, Severity::Sev1);
        assert!(
            unhealthy
                .title
                .contains("unhealthy after rolling back to app-1")
        );
        assert!(unhealthy.summary.contains("answered HTTP 503"));

        let mut report = rolled_back_report();
        report.rollback_failed = true;
        assert_eq!(
            rollout_incident(repo, &report, &Policy::default()).severity,
            Severity::Sev1
        );
    }

    /// A line with its CommonMark code spans removed: a run of n backticks opens a span that the
    /// next run of exactly n closes.
    fn outside_code_spans(line: &str) -> String {
        let chars: Vec<char> = line.chars().collect();
        let run_at = |from: usize| chars[from..].iter().take_while(|c| **c == '`').count();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '`' {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let n = run_at(i);
            let mut j = i + n;
            let mut close = None;
            while j < chars.len() {
                if chars[j] == '`' {
                    let m = run_at(j);
                    if m == n {
                        close = Some(j + m);
                        break;
                    }
                    j += m;
                } else {
                    j += 1;
                }
            }
            match close {
                Some(end) => i = end,
                None => {
                    out.extend(&chars[i..i + n]);
                    i += n;
                }
            }
        }
        out
    }

    #[test]
    fn a_key_cannot_close_the_hidden_comment_early() {
        assert_eq!(marker("a-->b"), "<!-- shiftgate-incident: a-%2D%3Eb -->");
        assert_eq!(
            marker("projects/p/locations/r/services/app"),
            "<!-- shiftgate-incident: projects/p/locations/r/services/app -->"
        );
        for key in ["-->", "a--!>b", "x-", "a\n-->", "<!-- x -->", "---", "a>b"] {
            let marker = marker(key);
            let inner = &marker["<!--".len()..marker.len() - "-->".len()];
            assert!(!inner.contains("--"), "{key:?}: {marker}");
            assert!(
                !inner.contains('>') && !inner.contains('<'),
                "{key:?}: {marker}"
            );
            assert!(!inner.contains('\n'), "{key:?}: {marker}");
        }
        assert_ne!(marker("a>b"), marker("ab"), "one key, one marker");
    }

    #[test]
    fn given_hostile_text_in_a_rollout_report_then_the_issue_body_mentions_no_one_and_renders_nothing()
     {
        let mut report = rolled_back_report();
        report.reason =
            Some("answered HTTP 503: ::add-mask::x\n\n@team <img src=x> [c](http://e) ```".into());
        report.candidate = "app-2`@team".into();
        report.stable_health = Some(crate::rollout::verdict::Verdict::Fail(
            "@oncall\n# big".into(),
        ));
        let incident = rollout_incident(
            Repo::parse("loopcloser/app").unwrap(),
            &report,
            &Policy::default(),
        );
        let body = render_body(
            &incident,
            Some("https://x/runs/1 @team"),
            SystemTime::UNIX_EPOCH,
        );
        for line in body.lines() {
            // Outside code spans, no mention and no HTML survive.
            let outside = outside_code_spans(line);
            assert!(!outside.contains("@team"), "{line}");
            assert!(!outside.contains("@oncall"), "{line}");
            assert!(!outside.contains("<img"), "{line}");
        }
        assert!(!body.contains("@team"), "{body}");
        assert!(body.contains("``app-2`@\u{2060}team``"), "{body}");
        assert!(
            body.contains(
                "```` answered HTTP 503: ::add-mask::x  @\u{2060}team <img src=x> [c](http://e) ``` ````"
            ),
            "{body}"
        );
        assert!(
            body.contains("Workflow run: `https://x/runs/1 @\u{2060}team`"),
            "{body}"
        );
    }
}
