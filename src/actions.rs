//! The GitHub Actions runtime (when `GITHUB_ACTIONS=true`): a log group per step with gate
//! annotations, `$GITHUB_OUTPUT` outputs and the step summary.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;

use crate::markdown;
use crate::output::{eprint_progress, progress_line};
use crate::rollout::timeline::{Event, EventKind, describe_traffic};
use crate::rollout::verdict::Verdict;
use crate::workflow_command::{emit, is_actions, workflow_command};

/// A heredoc delimiter for `$GITHUB_OUTPUT` that no one can guess: `ghadelimiter_<32 hex>`.
pub fn output_delimiter() -> String {
    let mut hex = String::new();
    for salt in 0..2u64 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        hasher.write_u32(std::process::id());
        let _ = write!(hex, "{:016x}", hasher.finish());
    }
    format!("ghadelimiter_{hex}")
}

/// One `$GITHUB_OUTPUT` entry in the multi-line form, safe for any value: `name<<D\nvalue\nD\n`.
/// The delimiter must not occur in the value (`write_outputs` picks a fresh one if it would).
pub fn format_output(name: &str, value: &str, delimiter: &str) -> String {
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// The action's outputs from a command's JSON result; outputs the result has no value for are left
/// out (the action reports them as empty strings).
pub fn outputs_for(result: &Value) -> Vec<(&'static str, String)> {
    let mut outputs = Vec::new();
    let mut put = |name: &'static str, value: &Value| {
        if let Some(text) = output_text(value) {
            outputs.push((name, text));
        }
    };
    put("outcome", &result["outcome"]);
    // A rollout's revision is its candidate; a rollback's is the revision it restored.
    if result["candidate"].is_null() {
        put("revision", &result["revision"]);
    } else {
        put("revision", &result["candidate"]);
    }
    put("stable-revision", &result["stable"]);
    put("traffic", &result["final_traffic"]);
    put("run-id", &result["run_id"]);
    put("run-url", &result["run_url"]);
    put("incident-url", &result["incident"]["url"]);
    put("exit-code", &result["exit_code"]);
    outputs
}

fn output_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Appends the outputs to the `$GITHUB_OUTPUT` file.
pub fn write_outputs(path: &Path, outputs: &[(&str, String)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (name, value) in outputs {
        let mut delimiter = output_delimiter();
        while value.contains(&delimiter) {
            delimiter = output_delimiter();
        }
        text.push_str(&format_output(name, value, &delimiter));
    }
    append(path, &text)
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Called once a command has finished: outputs to `$GITHUB_OUTPUT`, the step summary to
/// `$GITHUB_STEP_SUMMARY`. A file that cannot be written is a warning, never a failed deploy.
pub fn finish(result: &Value) {
    let warn = |file: &str, error: std::io::Error| {
        emit(&workflow_command(
            "warning",
            &[],
            &format!("shiftgate: could not write ${file}: {error}"),
        ));
    };
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty())
        && let Err(error) = write_outputs(Path::new(&path), &outputs_for(result))
    {
        warn("GITHUB_OUTPUT", error);
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty())
        && let Err(error) = append(Path::new(&path), &step_summary(result))
    {
        warn("GITHUB_STEP_SUMMARY", error);
    }
}

/// The Markdown step summary for a command's result: for a rollout the plan, the step table and the
/// chart; for anything else the outcome and final traffic.
pub fn step_summary(result: &Value) -> String {
    let mut out = String::new();
    let command = result["command"].as_str().unwrap_or("shiftgate");
    let outcome = result["outcome"].as_str().unwrap_or("unknown");
    let _ = writeln!(
        out,
        "### shiftgate {}: {} {}\n",
        markdown::text(command),
        outcome_icon(outcome),
        markdown::text(&outcome.replace('_', " "))
    );
    if let Some(service) = result["service"].as_str() {
        let _ = write!(out, "Service {}", code(service));
        if let (Some(stable), Some(candidate)) =
            (result["stable"].as_str(), result["candidate"].as_str())
        {
            let _ = write!(out, ": {} (stable) → {}", code(stable), code(candidate));
        } else if let Some(revision) = result["revision"].as_str() {
            let _ = write!(out, ": 100% to {}", code(revision));
        }
        if let Some(image) = result["image"].as_str() {
            let _ = write!(out, " from image {}", code(image));
        }
        out.push_str("\n\n");
    }
    if let Some(plan) = plan_line(result) {
        let _ = writeln!(out, "{plan}\n");
    }
    for key in ["reason", "error"] {
        if let Some(reason) = result[key].as_str() {
            let _ = writeln!(out, "**{key}:** {}\n", code(reason));
        }
    }
    out.push_str(&steps_markdown(result));
    if let Some(traffic) = result["final_traffic"].as_array() {
        let split = traffic
            .iter()
            .map(|t| {
                format!(
                    "{} {}%",
                    code(t["revision"].as_str().unwrap_or("?")),
                    t["percent"]
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "Final traffic (read back from the service): {}\n",
            if split.is_empty() {
                "unknown".to_string()
            } else {
                split
            }
        );
    }
    if let Some(url) = result["run_url"].as_str() {
        let _ = writeln!(out, "Run: {}\n", markdown::link(url));
    }
    if let Some(url) = result["incident"]["url"].as_str() {
        let _ = writeln!(out, "Incident: {}\n", markdown::link(url));
    }
    out
}

/// The step table and the traffic/error-rate chart of a rollout result, in Markdown: shared by the
/// step summary and the incident issue, so both show the same picture.
pub fn steps_markdown(result: &Value) -> String {
    let mut out = String::new();
    if let Some(steps) = result["steps"].as_array().filter(|s| !s.is_empty()) {
        out.push_str(
            "| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---|---|---:|\n");
        for step in steps {
            let verdict = step["verdict"].as_str().unwrap_or("");
            let verdict = match step["reason"].as_str() {
                Some(reason) => format!(
                    "{} {}: {}",
                    verdict_icon(verdict),
                    cell(verdict),
                    markdown::cell_code(reason)
                ),
                None => format!("{} {}", verdict_icon(verdict), cell(verdict)),
            };
            let _ = writeln!(
                out,
                "| {} | {}% | {} | {} | {} | {} | {} | {} |",
                step["step"],
                step["percent"],
                step["candidate_requests"],
                step["candidate_5xx"],
                step["error_rate"]
                    .as_f64()
                    .map(percent_text)
                    .unwrap_or_else(|| "n/a".into()),
                cell(step["health"].as_str().unwrap_or("")),
                verdict,
                step["duration_s"]
                    .as_f64()
                    .map(duration_text)
                    .unwrap_or_default(),
            );
        }
        out.push('\n');
    }
    if result["timeline"].as_array().is_some_and(|t| !t.is_empty()) {
        let _ = writeln!(out, "```mermaid\n{}```\n", mermaid_chart(result));
        out.push_str(
            "Lines, in order: candidate traffic share (%), candidate 5xx rate (%), the 5xx limit (%).\n\n",
        );
    }
    out
}

fn plan_line(result: &Value) -> Option<String> {
    let policy = result.get("policy")?;
    let steps = policy["steps"]
        .as_array()?
        .iter()
        .map(|s| format!("{s}%"))
        .collect::<Vec<_>>()
        .join(" → ");
    let duration = |key: &str| {
        policy[key]
            .as_f64()
            .map(duration_text)
            .unwrap_or_else(|| "?".into())
    };
    Some(format!(
        "**Plan:** steps {steps}; bake {} per step, checks every {}; a step fails above {} 5xx and \
         needs {} candidate requests; metrics delay {}; health {}.",
        duration("bake_s"),
        duration("interval_s"),
        policy["max_error_rate"]
            .as_f64()
            .map(percent_text)
            .unwrap_or_else(|| "?".into()),
        policy["min_requests"],
        duration("metrics_delay_s"),
        code(policy["health_path"].as_str().unwrap_or("/health")),
    ))
}

/// At most this many points on the chart; longer rollouts keep every traffic change and thin out
/// the checks in between.
const MAX_CHART_POINTS: usize = 48;

/// A Mermaid `xychart-beta` chart of the candidate's traffic share and 5xx rate over the rollout,
/// from a rollout's JSON result (its `timeline`, `candidate` and `policy`). GitHub renders it as a
/// picture in step summaries and issues.
pub fn mermaid_chart(report_json: &Value) -> String {
    let candidate = report_json["candidate"].as_str().unwrap_or_default();
    let mut points: Vec<Point> = Vec::new();
    let (mut traffic, mut rate) = (0.0_f64, 0.0_f64);
    for event in report_json["timeline"].as_array().into_iter().flatten() {
        let elapsed = event["elapsed_s"].as_f64().unwrap_or(0.0);
        match event["kind"].as_str() {
            Some("traffic_set" | "rolled_back") => {
                traffic = event["traffic"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["revision"].as_str() == Some(candidate))
                    .filter_map(|t| t["percent"].as_f64())
                    .sum();
                points.push(Point::new(elapsed, traffic, rate, true));
            }
            Some("promoted") => {
                traffic = 100.0;
                points.push(Point::new(elapsed, traffic, rate, true));
            }
            Some("errors_checked") => {
                if let Some(r) = event["error_rate"].as_f64() {
                    rate = r * 100.0;
                }
                points.push(Point::new(elapsed, traffic, rate, false));
            }
            _ => {}
        }
    }
    if points.is_empty() {
        points.push(Point::new(0.0, 0.0, 0.0, true));
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
    let limit = report_json["policy"]["max_error_rate"]
        .as_f64()
        .map(|r| r * 100.0);
    let labels = points
        .iter()
        .map(|p| format!("\"{}\"", duration_text(p.elapsed)))
        .collect::<Vec<_>>()
        .join(", ");
    let series = |pick: fn(&Point, f64) -> f64| {
        points
            .iter()
            .map(|p| number(pick(p, limit.unwrap_or_default())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chart = String::new();
    let _ = writeln!(chart, "xychart-beta");
    let _ = writeln!(
        chart,
        "    title \"{}: candidate traffic and 5xx rate\"",
        mermaid_text(candidate)
    );
    let _ = writeln!(chart, "    x-axis \"time since start\" [{labels}]");
    let _ = writeln!(chart, "    y-axis \"percent\" 0 --> 100");
    let _ = writeln!(chart, "    line [{}]", series(|p, _| p.traffic));
    let _ = writeln!(chart, "    line [{}]", series(|p, _| p.rate));
    if limit.is_some() {
        let _ = writeln!(chart, "    line [{}]", series(|_, limit| limit));
    }
    chart
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

impl Point {
    fn new(elapsed: f64, traffic: f64, rate: f64, change: bool) -> Self {
        Self {
            elapsed,
            traffic,
            rate,
            change,
        }
    }
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

fn percent_text(rate: f64) -> String {
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

fn outcome_icon(outcome: &str) -> &'static str {
    match outcome {
        "promoted" | "success" | "healthy" | "dry_run" => "✅",
        "rolled_back" => "↩️",
        "interrupted" | "cancelled" => "⏹️",
        _ => "❌",
    }
}

fn verdict_icon(verdict: &str) -> &'static str {
    match verdict {
        "pass" | "passed" => "✅",
        "fail" | "failed" => "❌",
        _ => "⚠️",
    }
}

/// Our own short words (verdicts, health labels) in a table cell; anything that might come from
/// outside goes through `markdown::cell_code` instead.
fn cell(text: &str) -> String {
    markdown::text(text)
}

/// External text (names, reasons) in running text: a code span, where GitHub renders nothing.
fn code(text: &str) -> String {
    markdown::code(text)
}

/// The progress sink for this run: in a GitHub Actions job, the progress lines with a log group per
/// step and annotations for failed and inconclusive gates; elsewhere the plain progress lines.
/// Workflow commands go to stderr with the rest of the progress: the runner reads them from both
/// streams, and stdout is kept for the `--json` result.
pub fn progress_sink() -> Box<dyn Fn(&Event) + Send + Sync> {
    if !is_actions() {
        return Box::new(eprint_progress);
    }
    let progress = ActionsProgress::new();
    Box::new(move |event: &Event| {
        // Lines from `lines` are either shiftgate's own escaped workflow commands or progress
        // lines that `progress_line` already made single-line; nothing external starts one.
        let mut stderr = std::io::stderr().lock();
        for line in progress.lines(event) {
            let _ = writeln!(stderr, "{line}");
        }
    })
}

/// Turns timeline events into log lines with workflow commands: a `::group::` per step, and
/// `::error::`/`::warning::` annotations for failed and inconclusive gates (one of each per step).
#[derive(Debug, Default)]
pub struct ActionsProgress {
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    open: bool,
    errored: bool,
    warned: bool,
}

impl ActionsProgress {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines to print for one event, in order.
    pub fn lines(&self, event: &Event) -> Vec<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        let close = |state: &mut GroupState, lines: &mut Vec<String>| {
            if state.open {
                lines.push("::endgroup::".to_string());
                state.open = false;
            }
        };
        match &event.kind {
            EventKind::TrafficSet {
                step: Some(step),
                traffic,
            } => {
                close(&mut state, &mut lines);
                lines.push(workflow_command(
                    "group",
                    &[],
                    &format!("step {step}: traffic {}", describe_traffic(traffic)),
                ));
                *state = GroupState {
                    open: true,
                    errored: false,
                    warned: false,
                };
            }
            EventKind::RollbackStarted { .. }
            | EventKind::Interrupted
            | EventKind::Promoted { .. }
            | EventKind::ApiFailed { .. }
            | EventKind::TrafficSet { step: None, .. } => close(&mut state, &mut lines),
            _ => {}
        }
        if let Some(line) = progress_line(event) {
            lines.push(line);
        }
        let title = |step: Option<usize>| match step {
            Some(step) => format!("shiftgate: step {step} gate"),
            None => "shiftgate: health gate".to_string(),
        };
        match &event.kind {
            EventKind::ErrorsChecked { step, verdict, .. } => {
                annotate(&mut state, &mut lines, &title(Some(*step)), verdict)
            }
            EventKind::HealthChecked { step, verdict, .. } => {
                annotate(&mut state, &mut lines, &title(*step), verdict)
            }
            EventKind::StepFailed {
                step,
                percent,
                reason,
            } => {
                if !state.errored {
                    state.errored = true;
                    lines.push(workflow_command(
                        "error",
                        &[("title", &title(Some(*step)))],
                        &format!("step {step} ({percent}%) failed: {reason}"),
                    ));
                }
                close(&mut state, &mut lines);
            }
            EventKind::StepPassed { .. } => close(&mut state, &mut lines),
            EventKind::RollbackFailed { reason } => lines.push(workflow_command(
                "error",
                &[("title", "shiftgate: rollback failed")],
                &format!("the rollback failed and the service needs a person: {reason}"),
            )),
            EventKind::ApiFailed { reason } => lines.push(workflow_command(
                "error",
                &[("title", "shiftgate: API failure")],
                reason,
            )),
            _ => {}
        }
        lines
    }

    /// Closes a step group left open (e.g. by an early end).
    pub fn close(&self) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.open).then(|| "::endgroup::".to_string())
    }
}

fn annotate(state: &mut GroupState, lines: &mut Vec<String>, title: &str, verdict: &Verdict) {
    match verdict {
        Verdict::Fail(reason) if !state.errored => {
            state.errored = true;
            lines.push(workflow_command("error", &[("title", title)], reason));
        }
        // Checks while a step bakes are inconclusive by design; only a judgement is worth a warning.
        Verdict::Inconclusive(reason) if !state.warned && !reason.starts_with("baking:") => {
            state.warned = true;
            lines.push(workflow_command("warning", &[("title", title)], reason));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::ports::{RequestCounts, TrafficTarget};
    use serde_json::json;
    use std::time::SystemTime;

    #[test]
    fn outputs_use_a_random_heredoc_delimiter_and_survive_newlines() {
        let a = output_delimiter();
        let b = output_delimiter();
        assert!(a.starts_with("ghadelimiter_") && a.len() == "ghadelimiter_".len() + 32);
        assert_ne!(a, b);
        assert_eq!(
            format_output("traffic", "line 1\nline 2", "ghadelimiter_x"),
            "traffic<<ghadelimiter_x\nline 1\nline 2\nghadelimiter_x\n"
        );
        let dir = std::env::temp_dir().join(format!("shiftgate-actions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("output");
        let _ = std::fs::remove_file(&path);
        write_outputs(
            &path,
            &[("outcome", "promoted".into()), ("x", "a\nb".into())],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("outcome<<ghadelimiter_"));
        assert_eq!(lines[1], "promoted");
        assert_eq!(lines[2], &lines[0]["outcome<<".len()..]);
        assert_eq!(&lines[4..6], ["a", "b"]);
    }

    #[test]
    fn outputs_map_the_json_result_of_each_command() {
        let rollout = json!({
            "command": "rollout", "outcome": "rolled_back", "candidate": "app-00002",
            "stable": "app-00001", "final_traffic": [{"revision": "app-00001", "percent": 100}],
            "incident": {"filed": true, "url": "https://github.com/o/r/issues/7"}, "exit_code": 1,
        });
        let outputs = outputs_for(&rollout);
        let get = |name: &str| {
            outputs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("outcome").as_deref(), Some("rolled_back"));
        assert_eq!(get("revision").as_deref(), Some("app-00002"));
        assert_eq!(get("stable-revision").as_deref(), Some("app-00001"));
        assert_eq!(
            get("traffic").as_deref(),
            Some(r#"[{"percent":100,"revision":"app-00001"}]"#)
        );
        assert_eq!(
            get("incident-url").as_deref(),
            Some("https://github.com/o/r/issues/7")
        );
        assert_eq!(get("run-id"), None);

        let rollback = outputs_for(&json!({"outcome": "rolled_back", "revision": "app-00001"}));
        assert!(rollback.contains(&("revision", "app-00001".into())));
        let dispatch = outputs_for(&json!({"outcome": "success", "run_id": 42, "run_url": "u"}));
        assert!(dispatch.contains(&("run-id", "42".into())));
        assert!(dispatch.contains(&("run-url", "u".into())));
    }

    fn event(elapsed_s: f64, kind: EventKind) -> Event {
        Event {
            at: SystemTime::UNIX_EPOCH,
            elapsed_s,
            kind,
        }
    }

    fn split(stable: u8, candidate: u8) -> Vec<TrafficTarget> {
        vec![
            TrafficTarget::new("app-1", stable),
            TrafficTarget::new("app-2", candidate),
        ]
    }

    fn errors(step: usize, total: u64, bad: u64, verdict: Verdict) -> EventKind {
        EventKind::ErrorsChecked {
            step,
            candidate: RequestCounts {
                total,
                server_errors: bad,
            },
            stable: RequestCounts::default(),
            error_rate: RequestCounts {
                total,
                server_errors: bad,
            }
            .error_rate(),
            verdict,
        }
    }

    fn rolled_back_report() -> Value {
        let timeline = vec![
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
        ];
        json!({
            "command": "rollout", "outcome": "rolled_back", "service": "svc",
            "stable": "app-1", "candidate": "app-2", "reason": "step 2 failed | badly",
            "policy": {"steps": [50, 100], "bake_s": 60.0, "interval_s": 30.0,
                       "max_error_rate": 0.05, "min_requests": 100, "metrics_delay_s": 0.0,
                       "health_path": "/health"},
            "steps": [
                {"step": 1, "percent": 10, "verdict": "passed", "candidate_requests": 100,
                 "candidate_5xx": 1, "error_rate": 0.01, "health": "pass", "duration_s": 60.0},
                {"step": 2, "percent": 50, "verdict": "failed", "candidate_requests": 200,
                 "candidate_5xx": 30, "error_rate": 0.15, "health": "pass", "duration_s": 30.5,
                 "reason": "candidate 5xx rate 15%"},
            ],
            "final_traffic": [{"revision": "app-1", "percent": 100}],
            "timeline": serde_json::to_value(&timeline).unwrap(),
        })
    }

    #[test]
    fn the_chart_plots_traffic_share_error_rate_and_the_limit_over_time() {
        let chart = mermaid_chart(&rolled_back_report());
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
        let promoted = event(
            91.0,
            EventKind::Promoted {
                revision: "app-2".into(),
            },
        );
        report["timeline"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::to_value(promoted).unwrap());
        let chart = mermaid_chart(&report);
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
    fn long_rollouts_are_thinned_but_keep_every_traffic_change() {
        let mut timeline = Vec::new();
        for step in 1..=4usize {
            let at = (step - 1) as f64 * 1000.0;
            timeline.push(event(
                at,
                EventKind::TrafficSet {
                    step: Some(step),
                    traffic: split(100 - 20 * step as u8, 20 * step as u8),
                },
            ));
            for check in 1..=40 {
                timeline.push(event(
                    at + check as f64 * 20.0,
                    errors(step, 10 * check, 0, Verdict::Pass),
                ));
            }
        }
        let report =
            json!({"candidate": "app-2", "timeline": serde_json::to_value(&timeline).unwrap()});
        let chart = mermaid_chart(&report);
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
    fn the_step_summary_has_the_plan_a_table_and_the_chart() {
        let summary = step_summary(&rolled_back_report());
        assert!(summary.starts_with("### shiftgate rollout: ↩️ rolled back"));
        assert!(summary.contains("`app-1` (stable) → `app-2`"), "{summary}");
        assert!(
            summary.contains("**Plan:** steps 50% → 100%; bake 1m0s"),
            "{summary}"
        );
        assert!(
            summary.contains("**reason:** `step 2 failed | badly`"),
            "{summary}"
        );
        assert!(summary.contains(
            "| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |"
        ));
        assert!(
            summary.contains("| 1 | 10% | 100 | 1 | 1% | pass | ✅ passed | 1m0s |"),
            "{summary}"
        );
        assert!(
            summary.contains(
                "| 2 | 50% | 200 | 30 | 15% | pass | ❌ failed: `candidate 5xx rate 15%` | 30.5s |"
            ),
            "{summary}"
        );
        assert!(summary.contains("```mermaid\nxychart-beta\n"), "{summary}");
        assert!(summary.contains("Final traffic (read back from the service): `app-1` 100%"));
    }

    #[test]
    fn steps_are_grouped_and_failed_or_inconclusive_gates_annotated_once() {
        let progress = ActionsProgress::new();
        let mut all = Vec::new();
        for kind in [
            EventKind::TrafficSet {
                step: Some(1),
                traffic: split(90, 10),
            },
            errors(
                1,
                3,
                0,
                Verdict::Inconclusive("baking: 3 candidate requests so far, 0 5xx".into()),
            ),
            errors(
                1,
                3,
                0,
                Verdict::Inconclusive("only 3 candidate requests, 100 needed".into()),
            ),
            errors(
                1,
                4,
                0,
                Verdict::Inconclusive("only 4 candidate requests, 100 needed".into()),
            ),
            EventKind::StepPassed {
                step: 1,
                percent: 10,
            },
            EventKind::TrafficSet {
                step: Some(2),
                traffic: split(50, 50),
            },
            errors(2, 200, 30, Verdict::Fail("5xx rate 15%, above 5%".into())),
            EventKind::StepFailed {
                step: 2,
                percent: 50,
                reason: "5xx rate 15%, above 5%".into(),
            },
            EventKind::RollbackStarted {
                reason: "step 2 failed".into(),
            },
        ] {
            all.extend(progress.lines(&event(1.0, kind)));
        }
        let commands: Vec<&String> = all.iter().filter(|l| l.starts_with("::")).collect();
        assert_eq!(
            commands,
            [
                "::group::step 1: traffic app-1=90%25 app-2=10%25",
                "::warning title=shiftgate%3A step 1 gate::only 3 candidate requests, 100 needed",
                "::endgroup::",
                "::group::step 2: traffic app-1=50%25 app-2=50%25",
                "::error title=shiftgate%3A step 2 gate::5xx rate 15%25, above 5%25",
                "::endgroup::",
            ]
        );
        assert!(all.iter().any(|l| l.contains("rolling back to stable")));
        assert_eq!(progress.close(), None);
    }
}
