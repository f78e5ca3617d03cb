//! A rollout report in GitHub Markdown: the plan line, the step table, and a Mermaid chart of the
//! candidate's traffic and 5xx rate against the limit. The step summary and incidents share it.

use std::fmt::Write as _;

use crate::markdown;
use crate::rollout::hooks::HookKind;
use crate::rollout::latency::{LatencyCheck, milliseconds_text};
use crate::rollout::timeline::{EventKind, StepReport};
use crate::rollout::{Policy, Report};

/// At most this many points on the chart; longer rollouts keep every traffic change and thin out
/// the checks in between.
const MAX_CHART_POINTS: usize = 48;

/// The policy in one sentence, starting `**Plan:**`.
pub fn plan_line(policy: &Policy) -> String {
    let steps = policy
        .steps
        .percents()
        .iter()
        .map(|s| format!("{s}%"))
        .collect::<Vec<_>>()
        .join(" → ");
    let latency = if policy.latency.is_empty() {
        String::new()
    } else {
        format!("; latency at most {}", policy.latency_text())
    };
    format!(
        "**Plan:** steps {steps}; bake {} per step, checks every {}; a step fails above {} 5xx{latency} \
         and needs {} candidate requests; metrics delay {}; health {}.",
        duration_text(policy.bake.as_secs_f64()),
        duration_text(policy.interval.as_secs_f64()),
        percent_text(policy.max_error_rate),
        policy.min_requests,
        duration_text(policy.metrics_delay.as_secs_f64()),
        markdown::code(&policy.health.path),
    )
}

/// The step table and the chart (with a caption naming its lines), each left out when the report
/// has nothing for it.
pub fn steps_and_chart(report: &Report, policy: &Policy) -> String {
    let mut out = String::new();
    if !report.steps.is_empty() {
        out.push_str(&step_table(&report.steps));
        out.push('\n');
    }
    out.push_str(&checks_details(report));
    if report.steps.is_empty() {
        // Nothing to draw: the candidate never carried traffic, and the reason says why.
        if let Some(reason) = &report.reason {
            let _ = writeln!(
                out,
                "No traffic moved to the candidate: {}\n",
                markdown::code(reason)
            );
        }
    } else if !report.timeline.is_empty() {
        let _ = writeln!(out, "```mermaid\n{}```\n", mermaid_chart(report, policy));
        out.push_str(
            "Lines, in order: candidate traffic share (%), candidate 5xx rate (%), the 5xx limit (%).\n\n",
        );
    }
    out
}

fn step_table(steps: &[StepReport]) -> String {
    let with_latency = steps.iter().any(|step| !step.latency.is_empty());
    let mut out = String::new();
    out.push_str(if with_latency {
        "| step | traffic | candidate requests | 5xx | 5xx rate | latency | health | verdict | time |\n\
         |---:|---:|---:|---:|---:|---|---|---|---:|\n"
    } else {
        "| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |\n\
         |---:|---:|---:|---:|---:|---|---|---:|\n"
    });
    for step in steps {
        let verdict = match &step.reason {
            Some(reason) => format!(
                "{} {}: {}",
                verdict_icon(step.verdict),
                markdown::text(step.verdict),
                markdown::cell_code(reason)
            ),
            None => format!(
                "{} {}",
                verdict_icon(step.verdict),
                markdown::text(step.verdict)
            ),
        };
        let latency = if with_latency {
            format!(" {} |", latency_cell(&step.latency))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {}% | {} | {} | {} |{latency} {} | {} | {} |",
            step.step,
            step.percent,
            step.candidate_requests,
            step.candidate_5xx,
            step.error_rate
                .map(percent_text)
                .unwrap_or_else(|| "n/a".into()),
            markdown::text(step.health),
            verdict,
            duration_text(step.duration_s),
        );
    }
    out
}

/// `p95 120ms (stable ≤ 100ms)` per quantile, from the step's last latency look.
fn latency_cell(checks: &[LatencyCheck]) -> String {
    if checks.is_empty() {
        return "n/a".to_string();
    }
    checks
        .iter()
        .map(|check| {
            let candidate = check
                .candidate_ms
                .map_or("n/a".to_string(), milliseconds_text);
            match check.stable_ms {
                Some(stable) => format!(
                    "{} {candidate} (stable ≤ {})",
                    check.quantile.name(),
                    milliseconds_text(stable)
                ),
                None => format!("{} {candidate}", check.quantile.name()),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// At most this many checks are listed; a long rollout keeps its last ones, which decided it.
const MAX_LISTED_CHECKS: usize = 60;

/// Every check of the error and latency gates, folded: when, what each revision served, the
/// statistic against what it needs, and the verdict in words.
fn checks_details(report: &Report) -> String {
    let checks: Vec<(f64, &EventKind)> = report
        .timeline
        .iter()
        .filter(|event| matches!(event.kind, EventKind::ErrorsChecked { .. }))
        .map(|event| (event.elapsed_s, &event.kind))
        .collect();
    if checks.is_empty() {
        return String::new();
    }
    let skipped = checks.len().saturating_sub(MAX_LISTED_CHECKS);
    let mut out = format!(
        "<details><summary>Every check ({})</summary>\n\n",
        checks.len()
    );
    if skipped > 0 {
        let _ = writeln!(out, "The first {skipped} checks are left out.\n");
    }
    out.push_str(
        "| time | step | candidate 5xx | stable 5xx | evidence (needed 100) | verdict |\n\
         |---:|---:|---:|---:|---:|---|\n",
    );
    for (elapsed, kind) in checks.into_iter().skip(skipped) {
        let EventKind::ErrorsChecked {
            step,
            candidate,
            stable,
            verdict,
            comparison,
            latency,
            ..
        } = kind
        else {
            continue;
        };
        let evidence = comparison.as_ref().map_or("n/a".to_string(), |c| {
            format!(
                "worse {}, not worse {}",
                evidence_number(c.evidence_worse.max(c.evidence_above_cap)),
                evidence_number(c.evidence_not_worse)
            )
        });
        let mut words = match verdict.reason() {
            Some(reason) => format!("{}: {reason}", verdict.label()),
            None => verdict.label().to_string(),
        };
        for check in latency {
            words.push_str("; ");
            words.push_str(&check.explain());
        }
        let _ = writeln!(
            out,
            "| {} | {step} | {} of {} | {} of {} | {evidence} | {} |",
            duration_text(elapsed),
            candidate.server_errors,
            candidate.total,
            stable.server_errors,
            stable.total,
            markdown::cell_code(&words),
        );
    }
    out.push_str("\n</details>\n\n");
    out
}

fn evidence_number(value: f64) -> String {
    if value >= 1e6 {
        "> 10⁶".to_string()
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn verdict_icon(verdict: &str) -> &'static str {
    match verdict {
        "pass" | "passed" => "✅",
        "fail" | "failed" => "❌",
        _ => "⚠️",
    }
}

/// One point of the chart: seconds since the start, candidate traffic %, candidate 5xx %, and
/// whether the traffic changed there (such points are never thinned out).
#[derive(Debug, Clone, Copy)]
struct Point {
    elapsed: f64,
    traffic: f64,
    rate: f64,
    change: bool,
}

/// The chart's points from the timeline: a point per traffic change and per error check.
fn chart_points(report: &Report) -> Vec<Point> {
    let mut points = Vec::new();
    let (mut traffic, mut rate) = (0.0_f64, 0.0_f64);
    for event in &report.timeline {
        let change = match &event.kind {
            EventKind::TrafficSet { traffic: split, .. }
            | EventKind::RolledBack { traffic: split } => {
                traffic = split
                    .iter()
                    .filter(|t| t.revision == report.candidate)
                    .map(|t| f64::from(t.percent))
                    .sum();
                true
            }
            EventKind::Promoted { .. } => {
                traffic = 100.0;
                true
            }
            EventKind::ErrorsChecked { error_rate, .. } => {
                if let Some(r) = error_rate {
                    rate = r * 100.0;
                }
                false
            }
            _ => continue,
        };
        points.push(Point {
            elapsed: event.elapsed_s,
            traffic,
            rate,
            change,
        });
    }
    points
}

/// One list item per hook the rollout ran: what, on what, done or failed, and its copy, execution
/// or error. Empty without hooks.
pub fn hook_lines(report: &Report) -> String {
    let mut out = String::new();
    for hook in &report.hooks {
        let label = match hook.hook {
            HookKind::Backup => "Backup before the rollout",
            HookKind::PreJob => "Job before the rollout",
            HookKind::PostJob => "Job after promotion",
            HookKind::OnRollbackJob => "Job after the rollback",
        };
        out.push_str(&format!(
            "- {label}: {} {} ({})\n",
            markdown::code(&hook.target),
            if hook.ok { "done" } else { "**failed**" },
            markdown::code(&hook.detail)
        ));
    }
    out
}

/// A Mermaid `xychart-beta` chart of the candidate's traffic share, its 5xx rate and the policy's
/// 5xx limit over the rollout. GitHub renders it as a picture in step summaries and issues.
pub fn mermaid_chart(report: &Report, policy: &Policy) -> String {
    let mut points = chart_points(report);
    if points.is_empty() {
        points.push(Point {
            elapsed: 0.0,
            traffic: 0.0,
            rate: 0.0,
            change: true,
        });
    }
    // Category labels must be unique: of points in the same tenth of a second, the last one wins.
    let mut points = thin(points, MAX_CHART_POINTS);
    points.dedup_by(|later, earlier| {
        let same = duration_text(later.elapsed) == duration_text(earlier.elapsed);
        if same {
            *earlier = *later;
        }
        same
    });
    let labels = points
        .iter()
        .map(|p| format!("\"{}\"", duration_text(p.elapsed)))
        .collect::<Vec<_>>()
        .join(", ");
    let series = |value: &dyn Fn(&Point) -> f64| {
        points
            .iter()
            .map(|p| number(value(p)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let limit = policy.max_error_rate * 100.0;
    let mut chart = String::new();
    let _ = writeln!(chart, "xychart-beta");
    let _ = writeln!(
        chart,
        "    title \"{}: candidate traffic and 5xx rate\"",
        mermaid_text(&report.candidate)
    );
    let _ = writeln!(chart, "    x-axis \"time since start\" [{labels}]");
    let _ = writeln!(chart, "    y-axis \"percent\" 0 --> 100");
    let _ = writeln!(chart, "    line [{}]", series(&|p| p.traffic));
    let _ = writeln!(chart, "    line [{}]", series(&|p| p.rate));
    let _ = writeln!(chart, "    line [{}]", series(&|_| limit));
    chart
}

fn thin(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max {
        return points;
    }
    let changes = points.iter().filter(|p| p.change).count();
    let room = max.saturating_sub(changes).max(1);
    let others = points.len() - changes;
    let stride = others.div_ceil(room);
    let mut kept = Vec::new();
    let mut seen = 0;
    let last = points.len() - 1;
    for (index, point) in points.into_iter().enumerate() {
        if point.change || index == last {
            kept.push(point);
        } else {
            if seen % stride == 0 {
                kept.push(point);
            }
            seen += 1;
        }
    }
    kept
}

fn number(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

/// Text inside a quoted Mermaid label, which sits inside a Markdown code fence: only characters
/// that can close neither.
fn mermaid_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A share as a percentage with at most two decimals: `0.155` → `15.5%`.
pub fn percent_text(rate: f64) -> String {
    format!("{}%", number(rate * 100.0))
}

/// `75.5` → `1m15s`, `3600` → `1h0m`, `8.25` → `8.2s`.
pub fn duration_text(seconds: f64) -> String {
    if seconds < 60.0 {
        let tenths = (seconds * 10.0).round() / 10.0;
        return if tenths.fract() == 0.0 {
            format!("{}s", tenths as i64)
        } else {
            format!("{tenths:.1}s")
        };
    }
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{}m{}s", whole / 60, whole % 60)
    } else {
        format!("{}h{}m", whole / 3600, (whole % 3600) / 60)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::rollout::Outcome;
    use crate::rollout::judge::StepPhase;
    use crate::rollout::plan::Steps;
    use crate::rollout::ports::{RequestCounts, TrafficTarget};
    use crate::rollout::timeline::Event;
    use crate::rollout::verdict::Verdict;

    pub(crate) fn event(elapsed_s: f64, kind: EventKind) -> Event {
        Event {
            at: SystemTime::UNIX_EPOCH,
            elapsed_s,
            kind,
        }
    }

    pub(crate) fn split(stable: u8, candidate: u8) -> Vec<TrafficTarget> {
        vec![
            TrafficTarget::new("app-1", stable),
            TrafficTarget::new("app-2", candidate),
        ]
    }

    fn errors(step: usize, total: u64, bad: u64, verdict: Verdict) -> EventKind {
        let candidate = RequestCounts {
            total,
            server_errors: bad,
        };
        EventKind::ErrorsChecked {
            step,
            candidate,
            stable: RequestCounts::default(),
            error_rate: candidate.error_rate(),
            verdict,
            phase: StepPhase::Judging,
            bake_progress: (Duration::ZERO, Duration::ZERO),
            comparison: None,
            latency: Vec::new(),
        }
    }

    fn step_report(step: usize, percent: u8, requests: u64, bad: u64) -> StepReport {
        StepReport {
            step,
            percent,
            verdict: "passed",
            candidate_requests: requests,
            candidate_5xx: bad,
            error_rate: Some(bad as f64 / requests as f64),
            stable_requests: 0,
            stable_5xx: 0,
            health: "pass",
            checks: 2,
            duration_s: 60.0,
            reason: None,
            latency: Vec::new(),
        }
    }

    pub(crate) fn policy() -> Policy {
        Policy {
            steps: Steps::new(vec![50, 100]).unwrap(),
            bake: Duration::from_secs(60),
            interval: Duration::from_secs(30),
            metrics_delay: Duration::ZERO,
            ..Policy::default()
        }
    }

    /// Rolled back at its second step, on a 15% 5xx rate.
    pub(crate) fn rolled_back_report() -> Report {
        let failed = StepReport {
            verdict: "failed",
            duration_s: 30.5,
            reason: Some("candidate 5xx rate 15%".into()),
            ..step_report(2, 50, 200, 30)
        };
        Report {
            outcome: Outcome::RolledBack,
            service: "svc".into(),
            stable: "app-1".into(),
            candidate: "app-2".into(),
            image: None,
            rollout_id: "0123456789abcdef".into(),
            planned_steps: vec![50, 100],
            steps: vec![step_report(1, 10, 100, 1), failed],
            final_traffic: vec![TrafficTarget::new("app-1", 100)],
            final_traffic_confirmed: true,
            reason: Some("step 2 failed | badly".into()),
            rollback_failed: false,
            api_failed: false,
            stable_health: None,
            service_problem: false,
            pause_expired: false,
            hooks: Vec::new(),
            duration_s: 91.0,
            timeline: vec![
                event(
                    0.0,
                    EventKind::TrafficSet {
                        step: Some(1),
                        traffic: split(90, 10),
                    },
                ),
                event(30.0, errors(1, 100, 1, Verdict::Pass)),
                event(
                    60.0,
                    EventKind::TrafficSet {
                        step: Some(2),
                        traffic: split(50, 50),
                    },
                ),
                event(
                    90.0,
                    errors(2, 200, 30, Verdict::Fail("candidate 5xx rate 15%".into())),
                ),
                event(
                    91.0,
                    EventKind::RolledBack {
                        traffic: vec![TrafficTarget::new("app-1", 100)],
                    },
                ),
            ],
        }
    }

    #[test]
    fn a_candidate_that_never_carried_traffic_gets_its_reason_not_a_one_point_chart() {
        let report = Report {
            steps: Vec::new(),
            reason: Some("candidate is unhealthy before any traffic: answered HTTP 503".into()),
            ..rolled_back_report()
        };
        let shown = steps_and_chart(&report, &policy());
        assert!(!shown.contains("mermaid"), "{shown}");
        assert!(
            shown.contains("No traffic moved to the candidate: `candidate is unhealthy"),
            "{shown}"
        );
    }

    #[test]
    fn the_chart_plots_traffic_share_error_rate_and_the_limit_over_time() {
        let chart = mermaid_chart(&rolled_back_report(), &policy());
        assert!(chart.starts_with("xychart-beta\n"), "{chart}");
        assert!(
            chart.contains(r#"x-axis "time since start" ["0s", "30s", "1m0s", "1m30s", "1m31s"]"#),
            "{chart}"
        );
        assert!(chart.contains("y-axis \"percent\" 0 --> 100"), "{chart}");
        assert!(chart.contains("    line [10, 10, 50, 50, 0]\n"), "{chart}");
        assert!(chart.contains("    line [0, 1, 1, 15, 15]\n"), "{chart}");
        assert!(chart.contains("    line [5, 5, 5, 5, 5]\n"), "{chart}");

        let mut report = rolled_back_report();
        report.timeline.push(event(
            91.0,
            EventKind::Promoted {
                revision: "app-2".into(),
            },
        ));
        let chart = mermaid_chart(&report, &policy());
        assert!(
            chart.contains(r#""1m30s", "1m31s"]"#),
            "labels stay unique: {chart}"
        );
        assert!(
            chart.contains("    line [10, 10, 50, 50, 100]\n"),
            "{chart}"
        );
    }

    #[test]
    fn the_caption_names_three_lines_and_the_chart_draws_three_including_the_limit() {
        let policy = Policy {
            max_error_rate: 0.025,
            ..policy()
        };
        let markdown = steps_and_chart(&rolled_back_report(), &policy);
        assert!(markdown.contains("the 5xx limit (%)"), "{markdown}");
        let lines: Vec<&str> = markdown
            .lines()
            .filter(|line| line.starts_with("    line ["))
            .collect();
        assert_eq!(lines.len(), 3, "{markdown}");
        assert_eq!(lines[2], "    line [2.5, 2.5, 2.5, 2.5, 2.5]");
    }

    #[test]
    fn long_rollouts_are_thinned_but_keep_every_traffic_change() {
        let mut report = rolled_back_report();
        report.timeline.clear();
        for step in 1..=4usize {
            let at = (step - 1) as f64 * 1000.0;
            report.timeline.push(event(
                at,
                EventKind::TrafficSet {
                    step: Some(step),
                    traffic: split(100 - 20 * step as u8, 20 * step as u8),
                },
            ));
            for check in 1..=40 {
                report.timeline.push(event(
                    at + check as f64 * 20.0,
                    errors(step, 10 * check, 0, Verdict::Pass),
                ));
            }
        }
        let chart = mermaid_chart(&report, &policy());
        let traffic_line = chart.lines().find(|l| l.contains("line [")).unwrap();
        let values: Vec<&str> = traffic_line
            .trim_start_matches("    line [")
            .trim_end_matches(']')
            .split(", ")
            .collect();
        assert!(values.len() <= MAX_CHART_POINTS, "{}", values.len());
        for percent in ["20", "40", "60", "80"] {
            assert!(values.contains(&percent), "{traffic_line}");
        }
    }

    #[test]
    fn the_plan_line_reads_the_policy() {
        assert_eq!(
            plan_line(&policy()),
            "**Plan:** steps 50% → 100%; bake 1m0s per step, checks every 30s; a step fails above \
             5% 5xx and needs 100 candidate requests; metrics delay 0s; health `/health`."
        );
    }
}
