//! The GitHub Actions runtime (when `GITHUB_ACTIONS=true`): a log group per step with gate
//! annotations, `$GITHUB_OUTPUT` outputs and the step summary, from a command's typed result.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Mutex;

use crate::commands::waves::{RegionSummary, UndoOutcome};
use crate::exit::ExitCode;
use crate::live::LiveProgress;
use crate::markdown;
use crate::output::{eprint_progress, progress_line};
use crate::report_markdown::{hook_lines, plan_line, steps_and_chart};
use crate::rollout::judge::StepPhase;
use crate::rollout::timeline::{
    Event, EventKind, TrafficShare, describe_traffic, traffic_json_text,
};
use crate::rollout::verdict::Verdict;
use crate::rollout::{Policy, Report};
use crate::workflow_command::{emit, is_actions, workflow_command};

/// What a finished command tells the job: the facts its outputs and its step summary are made
/// of. Each command's result fills one in; what it leaves at `None` is not shown.
#[derive(Debug, Clone)]
pub struct ResultFacts<'a> {
    pub command: &'a str,
    /// The result's `outcome`: `promoted`, `rolled_back`, `success`, `error`, …
    pub outcome: &'a str,
    pub exit_code: ExitCode,
    /// The service the command worked on.
    pub service: Option<ServiceFacts<'a>>,
    /// A rollout's report and the policy it ran under: the plan, the step table and the chart.
    pub rollout: Option<(&'a Report, &'a Policy)>,
    /// Why the command ended the way it did.
    pub reason: Option<&'a str>,
    /// Why the command could not do its job.
    pub error: Option<&'a str>,
    /// The split read back from the service at the end.
    pub final_traffic: Option<Vec<TrafficShare>>,
    /// The workflow run a dispatch started: its id and URL.
    pub run: Option<(u64, &'a str)>,
    pub incident_url: Option<&'a str>,
    /// The environment's public URL (a rollout's `url` output, for a job's `environment.url`).
    pub url: Option<&'a str>,
    /// A rollout in waves: each region, in order.
    pub regions: Option<&'a [RegionSummary]>,
    /// Markdown the command made itself (already escaped), shown after everything else.
    pub markdown: Option<&'a str>,
}

impl<'a> ResultFacts<'a> {
    /// The facts every result has; the rest start out unknown.
    pub fn new(command: &'a str, outcome: &'a str, exit_code: ExitCode) -> Self {
        Self {
            command,
            outcome,
            exit_code,
            service: None,
            rollout: None,
            reason: None,
            error: None,
            final_traffic: None,
            run: None,
            incident_url: None,
            url: None,
            regions: None,
            markdown: None,
        }
    }
}

/// The service a command worked on, and what it did to it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceFacts<'a> {
    pub name: &'a str,
    pub change: ServiceChange<'a>,
    /// The image a new candidate revision was made from.
    pub image: Option<&'a str>,
}

/// What a command did to a service's traffic.
#[derive(Debug, Clone, Copy)]
pub enum ServiceChange<'a> {
    /// Nothing: it was only read.
    Read,
    /// A rollout from the stable revision to the candidate.
    Rollout { stable: &'a str, candidate: &'a str },
    /// All traffic to one revision.
    Restore { revision: &'a str },
}

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

/// The action's outputs from a command's result; outputs it has no value for (or an empty one)
/// are left out (the action reports them as empty strings).
pub fn outputs_for(facts: &ResultFacts) -> Vec<(&'static str, String)> {
    // A rollout's revision is its candidate; a rollback's is the revision it restored.
    let (revision, stable) = match facts.service.map(|service| service.change) {
        Some(ServiceChange::Rollout { stable, candidate }) => (Some(candidate), Some(stable)),
        Some(ServiceChange::Restore { revision }) => (Some(revision), None),
        Some(ServiceChange::Read) | None => (None, None),
    };
    let values = [
        ("outcome", Some(facts.outcome.to_string())),
        ("revision", revision.map(str::to_string)),
        ("stable-revision", stable.map(str::to_string)),
        (
            "traffic",
            facts.final_traffic.as_deref().map(traffic_json_text),
        ),
        ("run-id", facts.run.map(|(id, _)| id.to_string())),
        ("run-url", facts.run.map(|(_, url)| url.to_string())),
        ("incident-url", facts.incident_url.map(str::to_string)),
        ("url", facts.url.map(str::to_string)),
        ("exit-code", Some(facts.exit_code.to_string())),
    ];
    values
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.filter(|text| !text.is_empty())?)))
        .collect()
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
pub fn finish(facts: &ResultFacts) {
    let warn = |file: &str, error: std::io::Error| {
        emit(&workflow_command(
            "warning",
            &[],
            &format!("shiftgate: could not write ${file}: {error}"),
        ));
    };
    if let Some(path) = std::env::var_os("GITHUB_OUTPUT").filter(|p| !p.is_empty())
        && let Err(error) = write_outputs(Path::new(&path), &outputs_for(facts))
    {
        warn("GITHUB_OUTPUT", error);
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty())
        && let Err(error) = append(Path::new(&path), &step_summary(facts))
    {
        warn("GITHUB_STEP_SUMMARY", error);
    }
}

/// The Markdown step summary of a command's result: for a rollout the plan, the step table and
/// the chart; for anything else the outcome and what it did.
pub fn step_summary(facts: &ResultFacts) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### shiftgate {}: {} {}\n",
        markdown::text(facts.command),
        outcome_icon(facts.outcome),
        markdown::text(&facts.outcome.replace('_', " "))
    );
    if let Some(service) = &facts.service {
        let _ = writeln!(out, "{}\n", service_line(service));
    }
    // In waves the plan and the steps are those of the last region that ran.
    let last_region = facts.regions.and_then(|regions| {
        regions
            .iter()
            .rev()
            .find(|region| !matches!(region.outcome.as_str(), "not_started" | "error"))
            .map(|region| markdown::code(&region.region))
    });
    if let Some((_, policy)) = facts.rollout {
        let plan = plan_line(policy);
        let _ = match &last_region {
            Some(region) => writeln!(
                out,
                "{}\n",
                plan.replacen("**Plan:**", &format!("**Plan in {region}:**"), 1)
            ),
            None => writeln!(out, "{plan}\n"),
        };
    }
    for (label, text) in [("reason", facts.reason), ("error", facts.error)] {
        if let Some(text) = text {
            let _ = writeln!(out, "**{label}:** {}\n", markdown::code(text));
        }
    }
    if let Some(regions) = facts.regions {
        out.push_str(&regions_table(regions));
    }
    if let Some((report, _)) = facts.rollout.filter(|(report, _)| !report.hooks.is_empty()) {
        let _ = writeln!(out, "{}", hook_lines(report));
    }
    if let Some((report, policy)) = facts.rollout {
        if let Some(region) = &last_region {
            let _ = writeln!(out, "Steps in {region}:\n");
        }
        out.push_str(&steps_and_chart(report, policy));
    }
    if let Some(traffic) = &facts.final_traffic {
        let _ = writeln!(
            out,
            "Final traffic (read back from the service): {}\n",
            split_text(traffic)
        );
    }
    if let Some((_, url)) = facts.run {
        let _ = writeln!(out, "Run: {}\n", markdown::link(url));
    }
    if let Some(url) = facts.incident_url {
        let _ = writeln!(out, "Incident: {}\n", markdown::link(url));
    }
    if let Some(text) = facts.markdown {
        out.push_str(text);
    }
    out
}

/// One row per region of a rollout in waves: what it ran, how it ended, what it serves now.
fn regions_table(regions: &[RegionSummary]) -> String {
    let mut out = String::from(
        "| region | steps | outcome | candidate | traffic now | note |\n|---|---|---|---|---|---|\n",
    );
    for region in regions {
        let (icon, outcome) = match region.undone {
            Some(UndoOutcome::RolledBack) => ("↩️", "promoted, then rolled back".into()),
            Some(UndoOutcome::Left) => ("⚠️", "promoted, then changed by someone else".into()),
            Some(UndoOutcome::Failed) => ("❌", "promoted; ROLLBACK FAILED".into()),
            Some(UndoOutcome::Interrupted) => {
                ("⏹️", "promoted; not rolled back (interrupted)".into())
            }
            None if region.outcome == "not_started" => ("⏹️", "not started".into()),
            None => (
                outcome_icon(&region.outcome),
                region.outcome.replace('_', " "),
            ),
        };
        let steps = region
            .steps
            .iter()
            .map(|percent| format!("{percent}%"))
            .collect::<Vec<_>>()
            .join(" → ");
        let traffic = match region.final_traffic.is_empty() {
            true => "–".to_string(),
            false => split_text(&region.final_traffic),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} {} | {} | {} | {} |",
            markdown::cell_code(&region.region),
            steps,
            icon,
            markdown::text(&outcome),
            region
                .candidate
                .as_deref()
                .map(markdown::cell_code)
                .unwrap_or_else(|| "–".into()),
            traffic.replace('|', "\\|"),
            region
                .reason
                .as_deref()
                .map(markdown::cell_code)
                .unwrap_or_default(),
        );
    }
    out.push('\n');
    out
}

fn service_line(service: &ServiceFacts) -> String {
    let mut line = format!("Service {}", markdown::code(service.name));
    match service.change {
        ServiceChange::Rollout { stable, candidate } => {
            let _ = write!(
                line,
                ": {} (stable) → {}",
                markdown::code(stable),
                markdown::code(candidate)
            );
        }
        ServiceChange::Restore { revision } => {
            let _ = write!(line, ": 100% to {}", markdown::code(revision));
        }
        ServiceChange::Read => {}
    }
    if let Some(image) = service.image {
        let _ = write!(line, " from image {}", markdown::code(image));
    }
    line
}

fn split_text(traffic: &[TrafficShare]) -> String {
    if traffic.is_empty() {
        return "unknown".to_string();
    }
    traffic
        .iter()
        .map(|share| format!("{} {}%", markdown::code(&share.revision), share.percent))
        .collect::<Vec<_>>()
        .join(", ")
}

fn outcome_icon(outcome: &str) -> &'static str {
    match outcome {
        "promoted" | "success" | "healthy" | "dry_run" | "ok" => "✅",
        "rolled_back" => "↩️",
        "interrupted" | "cancelled" => "⏹️",
        _ => "❌",
    }
}

/// The progress sink for this run: in a GitHub Actions job, the progress lines with a log group per
/// step and annotations for failed and inconclusive gates; elsewhere the plain progress lines.
/// Workflow commands go to stderr with the rest of the progress: the runner reads them from both
/// streams, and stdout is kept for the `--json` result.
pub fn progress_sink(policy: &Policy) -> Box<dyn Fn(&Event) + Send + Sync> {
    if !is_actions() {
        // A person at a terminal gets the live line; a log file or a pipe gets plain lines.
        let terminal = std::io::stderr().is_terminal()
            && std::env::var("TERM").map_or(true, |term| term != "dumb");
        if terminal {
            let live = LiveProgress::new(policy);
            return Box::new(move |event: &Event| live.show(event));
        }
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

impl GroupState {
    fn close(&mut self, lines: &mut Vec<String>) {
        if self.open {
            lines.push("::endgroup::".to_string());
            self.open = false;
        }
    }

    /// Opens a step's group (closing the one before), or closes the group at an end.
    fn group(&mut self, event: &Event, lines: &mut Vec<String>) {
        match &event.kind {
            EventKind::TrafficSet {
                step: Some(step),
                traffic,
            } => {
                self.close(lines);
                lines.push(workflow_command(
                    "group",
                    &[],
                    &format!("step {step}: traffic {}", describe_traffic(traffic)),
                ));
                *self = GroupState {
                    open: true,
                    errored: false,
                    warned: false,
                };
            }
            EventKind::RollbackStarted { .. }
            | EventKind::Interrupted
            | EventKind::Promoted { .. }
            | EventKind::ApiFailed { .. }
            | EventKind::TrafficSet { step: None, .. } => self.close(lines),
            _ => {}
        }
    }

    /// The annotations an event is worth, and the end of its step's group.
    fn annotate(&mut self, event: &Event, lines: &mut Vec<String>) {
        match &event.kind {
            EventKind::ErrorsChecked {
                step,
                verdict,
                phase,
                comparison: None,
                ..
            } => {
                // Checks while a step bakes are inconclusive by design; only a judgement is
                // worth a warning.
                let judged = *phase == StepPhase::Judging;
                self.gate(&gate_title(Some(*step)), verdict, judged, lines);
            }
            EventKind::HealthChecked { step, verdict, .. } => {
                self.gate(&gate_title(*step), verdict, true, lines);
            }
            EventKind::Warned { warning } => {
                lines.push(workflow_command(
                    "warning",
                    &[("title", "shiftgate: before the rollout")],
                    warning,
                ));
            }
            EventKind::StepFailed {
                step,
                percent,
                reason,
            } => {
                if !self.errored {
                    self.errored = true;
                    lines.push(workflow_command(
                        "error",
                        &[("title", &gate_title(Some(*step)))],
                        &format!("step {step} ({percent}%) failed: {reason}"),
                    ));
                }
                self.close(lines);
            }
            EventKind::StepPassed { .. } => self.close(lines),
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
    }

    /// One error per step for a failed gate, one warning per step for an inconclusive judgement.
    fn gate(&mut self, title: &str, verdict: &Verdict, judged: bool, lines: &mut Vec<String>) {
        match verdict {
            Verdict::Fail(reason) if !self.errored => {
                self.errored = true;
                lines.push(workflow_command("error", &[("title", title)], reason));
            }
            Verdict::Inconclusive(reason) if judged && !self.warned => {
                self.warned = true;
                lines.push(workflow_command("warning", &[("title", title)], reason));
            }
            _ => {}
        }
    }
}

fn gate_title(step: Option<usize>) -> String {
    match step {
        Some(step) => format!("shiftgate: step {step} gate"),
        None => "shiftgate: health gate".to_string(),
    }
}

impl ActionsProgress {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines to print for one event, in order.
    pub fn lines(&self, event: &Event) -> Vec<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        state.group(event, &mut lines);
        if let Some(line) = progress_line(event) {
            lines.push(line);
        }
        state.annotate(event, &mut lines);
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report_markdown::tests::{event, policy, rolled_back_report, split};
    use crate::rollout::ports::RequestCounts;

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

    fn output<'a>(outputs: &'a [(&str, String)], name: &str) -> Option<&'a str> {
        outputs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The names under `outputs:` in action.yml, each with the step output it forwards.
    fn declared_outputs() -> Vec<(String, String)> {
        let action =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml")).unwrap();
        let section = action
            .split("\noutputs:\n")
            .nth(1)
            .and_then(|rest| rest.split("\nruns:\n").next())
            .expect("action.yml has outputs: before runs:");
        let mut declared: Vec<(String, String)> = Vec::new();
        for line in section.lines() {
            if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
                declared.push((name.trim_end_matches(':').to_string(), String::new()));
            } else if let Some(value) = line.trim().strip_prefix("value: ")
                && let Some((_, forwarded)) = declared.last_mut()
            {
                *forwarded = value.to_string();
            }
        }
        declared
    }

    #[test]
    fn action_yml_declares_exactly_the_outputs_the_binary_writes() {
        // Every fact set, so that every output the code knows is written.
        let everything = ResultFacts {
            service: Some(ServiceFacts {
                name: "svc",
                change: ServiceChange::Rollout {
                    stable: "app-00001",
                    candidate: "app-00002",
                },
                image: None,
            }),
            final_traffic: Some(vec![TrafficShare {
                revision: "app-00001".into(),
                percent: 100,
            }]),
            run: Some((42, "https://github.com/o/r/actions/runs/42")),
            incident_url: Some("https://github.com/o/r/issues/7"),
            url: Some("https://app.example"),
            ..ResultFacts::new("rollout", "rolled_back", ExitCode::CheckFailed)
        };
        let mut written: Vec<&str> = outputs_for(&everything)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        written.sort_unstable();
        let declared = declared_outputs();
        let mut names: Vec<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, written, "action.yml outputs vs outputs_for");
        for (name, value) in &declared {
            assert_eq!(
                value,
                &format!("${{{{ steps.shiftgate.outputs.{name} }}}}"),
                "output {name} forwards the step's output of the same name"
            );
        }
    }

    #[test]
    fn outputs_map_the_facts_of_each_command() {
        let shares = vec![TrafficShare {
            revision: "app-00001".into(),
            percent: 100,
        }];
        let rollout = ResultFacts {
            service: Some(ServiceFacts {
                name: "svc",
                change: ServiceChange::Rollout {
                    stable: "app-00001",
                    candidate: "app-00002",
                },
                image: None,
            }),
            final_traffic: Some(shares.clone()),
            incident_url: Some("https://github.com/o/r/issues/7"),
            url: Some("https://app.loopcloser.example"),
            ..ResultFacts::new("rollout", "rolled_back", ExitCode::CheckFailed)
        };
        let outputs = outputs_for(&rollout);
        assert_eq!(
            output(&outputs, "url"),
            Some("https://app.loopcloser.example")
        );
        assert_eq!(output(&outputs, "outcome"), Some("rolled_back"));
        assert_eq!(output(&outputs, "revision"), Some("app-00002"));
        assert_eq!(output(&outputs, "stable-revision"), Some("app-00001"));
        assert_eq!(
            output(&outputs, "traffic"),
            Some(r#"[{"percent":100,"revision":"app-00001"}]"#)
        );
        assert_eq!(
            output(&outputs, "incident-url"),
            Some("https://github.com/o/r/issues/7")
        );
        assert_eq!(output(&outputs, "exit-code"), Some("1"));
        assert_eq!(output(&outputs, "run-id"), None);

        let rollback = ResultFacts {
            service: Some(ServiceFacts {
                name: "svc",
                change: ServiceChange::Restore {
                    revision: "app-00001",
                },
                image: None,
            }),
            ..ResultFacts::new("rollback", "rolled_back", ExitCode::Ok)
        };
        let outputs = outputs_for(&rollback);
        assert_eq!(output(&outputs, "revision"), Some("app-00001"));
        assert_eq!(output(&outputs, "stable-revision"), None);
        let dispatch = ResultFacts {
            run: Some((42, "u")),
            ..ResultFacts::new("dispatch", "success", ExitCode::Ok)
        };
        let outputs = outputs_for(&dispatch);
        assert_eq!(output(&outputs, "run-id"), Some("42"));
        assert_eq!(output(&outputs, "run-url"), Some("u"));
        let unnamed = ResultFacts {
            run: Some((42, "")),
            ..ResultFacts::new("dispatch", "success", ExitCode::Ok)
        };
        assert_eq!(
            output(&outputs_for(&unnamed), "run-url"),
            None,
            "empty is absent"
        );
    }

    #[test]
    fn the_step_summary_has_the_plan_a_table_and_the_chart() {
        let report = rolled_back_report();
        let policy = policy();
        let facts = ResultFacts {
            service: Some(ServiceFacts {
                name: &report.service,
                change: ServiceChange::Rollout {
                    stable: &report.stable,
                    candidate: &report.candidate,
                },
                image: None,
            }),
            rollout: Some((&report, &policy)),
            reason: report.reason.as_deref(),
            final_traffic: Some(vec![TrafficShare {
                revision: "app-1".into(),
                percent: 100,
            }]),
            ..ResultFacts::new("rollout", "rolled_back", ExitCode::CheckFailed)
        };
        let summary = step_summary(&facts);
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

    fn errors(step: usize, total: u64, bad: u64, phase: StepPhase, verdict: Verdict) -> EventKind {
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
            phase,
            bake_progress: (std::time::Duration::ZERO, std::time::Duration::ZERO),
            comparison: None,
            latency: Vec::new(),
        }
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
                StepPhase::Baking,
                Verdict::Inconclusive("baking: 3 candidate requests so far, 0 5xx".into()),
            ),
            errors(
                1,
                3,
                0,
                StepPhase::Judging,
                Verdict::Inconclusive("only 3 candidate requests, 100 needed".into()),
            ),
            errors(
                1,
                4,
                0,
                StepPhase::Judging,
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
            errors(
                2,
                200,
                30,
                StepPhase::Judging,
                Verdict::Fail("5xx rate 15%, above 5%".into()),
            ),
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
    }
}
