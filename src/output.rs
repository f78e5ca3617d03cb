//! What people and programs see: one-line progress for each timeline event (stderr), the closing
//! summary, and the single JSON result object (stdout) that `--json` asks for.

use std::fmt::Write as _;

use serde_json::Value;

use crate::health::Verdict;
use crate::rollout::judge::percent;
use crate::rollout::timeline::{Event, EventKind, Report, describe_traffic};

/// The progress line for an event, or `None` for events too frequent to print (passing checks
/// while baking are summarised by the errors line).
pub fn progress_line(event: &Event) -> Option<String> {
    let text = match &event.kind {
        EventKind::Planned {
            stable,
            candidate,
            steps,
            creates_revision,
        } => format!(
            "plan: {stable} (stable) → {candidate}{} in steps {}",
            if *creates_revision {
                " (new revision)"
            } else {
                ""
            },
            steps
                .iter()
                .map(|s| format!("{s}%"))
                .collect::<Vec<_>>()
                .join(" → ")
        ),
        EventKind::CandidateCreated { revision, image } => {
            format!("created candidate {revision} from {image}, with no traffic")
        }
        EventKind::TrafficSet { step, traffic } => match step {
            Some(step) => format!("step {step}: traffic {}", describe_traffic(traffic)),
            None => format!("traffic {}", describe_traffic(traffic)),
        },
        EventKind::HealthChecked { step, url, verdict } => match (step, verdict) {
            (Some(_), Verdict::Pass) => return None,
            (None, Verdict::Pass) => format!("health ok: {url}"),
            (_, verdict) => format!(
                "health {}: {url}: {}",
                verdict.label(),
                verdict.reason().unwrap_or_default()
            ),
        },
        EventKind::ErrorsChecked {
            step,
            candidate,
            stable,
            error_rate,
            verdict,
        } => format!(
            "step {step}: candidate {} requests, {} 5xx ({}); stable {} requests, {} 5xx — {}",
            candidate.total,
            candidate.server_errors,
            error_rate.map(percent).unwrap_or_else(|| "n/a".into()),
            stable.total,
            stable.server_errors,
            match verdict {
                Verdict::Pass => "pass".to_string(),
                Verdict::Fail(reason) => format!("FAIL: {reason}"),
                Verdict::Inconclusive(reason) => reason.clone(),
            }
        ),
        EventKind::StepPassed { step, percent } => format!("step {step} ({percent}%) passed"),
        EventKind::StepFailed {
            step,
            percent,
            reason,
        } => format!("step {step} ({percent}%) FAILED: {reason}"),
        EventKind::Retrying { what, reason } => format!("retrying {what}: {reason}"),
        EventKind::RollbackStarted { reason } => {
            format!("rolling back to stable: {reason}")
        }
        EventKind::RolledBack { traffic } => {
            format!("rolled back: traffic {}", describe_traffic(traffic))
        }
        EventKind::RollbackFailed { reason } => {
            format!("ROLLBACK FAILED, the service needs a person: {reason}")
        }
        EventKind::Promoted { revision } => format!("promoted {revision} to 100%"),
        EventKind::Interrupted => "interrupted: restoring stable traffic".to_string(),
        EventKind::ApiFailed { reason } => format!("API failure: {reason}"),
        EventKind::Aborted { reason } => {
            format!(
                "aborted: the service is no longer this rollout's ({reason}); nothing more was written"
            )
        }
    };
    Some(format!("[{:>7.1}s] {text}", event.elapsed_s))
}

/// The closing summary of a rollout: outcome, step table, final traffic.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{}: {} → {} on {}",
        report.outcome.as_str().to_uppercase(),
        report.stable,
        report.candidate,
        report.service
    );
    if let Some(reason) = &report.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    if !report.steps.is_empty() {
        let _ = writeln!(
            out,
            "{:>4}  {:>7}  {:>9}  {:>6}  {:>8}  {:>6}  verdict",
            "step", "traffic", "requests", "5xx", "5xx rate", "health"
        );
        for step in &report.steps {
            let _ = writeln!(
                out,
                "{:>4}  {:>6}%  {:>9}  {:>6}  {:>8}  {:>6}  {}",
                step.step,
                step.percent,
                step.candidate_requests,
                step.candidate_5xx,
                step.error_rate.map(percent).unwrap_or_else(|| "n/a".into()),
                step.health,
                step.verdict
            );
        }
    }
    let _ = writeln!(
        out,
        "final traffic: {}{}",
        describe_traffic(&report.final_traffic),
        if report.final_traffic_confirmed {
            ""
        } else {
            " (the last split read; the end state could not be confirmed)"
        }
    );
    out
}

/// Prints the JSON result on stdout.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string(value).expect("a serde_json::Value always serializes")
    );
}

pub fn eprint_progress(event: &Event) {
    if let Some(line) = progress_line(event) {
        eprintln!("{line}");
    }
}

/// The progress sink for this run: in a GitHub Actions job, the progress lines with a log group per
/// step and annotations for failed and inconclusive gates; elsewhere the plain progress lines.
/// Workflow commands go to stderr with the rest of the progress: the runner reads them from both
/// streams, and stdout is kept for the `--json` result.
pub fn progress_sink() -> Box<dyn Fn(&Event) + Send + Sync> {
    if crate::actions::is_actions() {
        let progress = crate::actions::ActionsProgress::new();
        Box::new(move |event: &Event| {
            for line in progress.lines(event) {
                eprintln!("{line}");
            }
        })
    } else {
        Box::new(eprint_progress)
    }
}
