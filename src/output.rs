//! What people and programs see: one-line progress for each timeline event (stderr), the closing
//! summary, and the single JSON result object (stdout) that `--json` asks for.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::rollout::judge::percent;
use crate::rollout::latency::{LatencyCheck, milliseconds_text};
use crate::rollout::ports::RequestCounts;
use crate::rollout::timeline::{Event, EventKind, Outcome, Report, describe_traffic};
use crate::rollout::verdict::Verdict;

/// The progress line for an event, or `None` for events too frequent to print (passing checks
/// while baking are summarised by the errors line).
pub fn progress_line(event: &Event) -> Option<String> {
    let text = match &event.kind {
        EventKind::Planned {
            stable,
            candidate,
            steps,
            creates_revision,
        } => plan_text(stable, candidate, steps, *creates_revision),
        EventKind::TrafficForecast {
            requests_per_second,
            expected_candidate_requests,
            min_requests,
            advice,
        } => match advice {
            None => format!(
                "forecast: at stable's {requests_per_second:.2} requests/s the candidate should \
                 see about {expected_candidate_requests} requests ({min_requests} needed)"
            ),
            Some(advice) => format!(
                "WARNING: at stable's {requests_per_second:.2} requests/s the candidate should see \
                 only about {expected_candidate_requests} requests, fewer than the \
                 {min_requests} needed (--min-requests): the rollout will end 'not enough \
                 traffic to judge'. {advice}"
            ),
        },
        EventKind::Warned { warning } => format!("WARNING: {warning}"),
        EventKind::Paused {
            step,
            percent,
            timeout_s,
            on_timeout,
        } => format!(
            "PAUSED at step {step} ({percent}%): the gates keep running; go on with `shiftgate \
             promote`, roll back with `shiftgate abort` (same --env or --project/--region/--service); \
             after {} this rollout will {}",
            humantime::format_duration(std::time::Duration::from_secs_f64(timeout_s.round())),
            match on_timeout {
                crate::rollout::pause::PauseTimeoutAction::Rollback => "roll back",
                crate::rollout::pause::PauseTimeoutAction::Promote => "go on by itself",
            }
        ),
        EventKind::Resumed { step, percent, by } => {
            format!("resumed after step {step} ({percent}%): {by}")
        }
        EventKind::GateIgnored { step, reason } => match step {
            Some(step) => format!(
                "REPORT-ONLY: step {step} would have rolled back here, and goes on: {reason}"
            ),
            None => {
                format!("REPORT-ONLY: the rollout would have stopped here, and goes on: {reason}")
            }
        },
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
            latency,
            bake_progress,
            ..
        } => {
            let mut text = errors_text(
                *step,
                *bake_progress,
                candidate,
                stable,
                *error_rate,
                verdict,
            );
            // A latency check that failed the step is its reason already.
            let reason = verdict.reason().unwrap_or_default();
            for check in latency.iter().filter(|check| check.explain() != reason) {
                text.push_str("; ");
                text.push_str(&latency_text(check));
            }
            text
        }
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
    // Reasons and names in events come from APIs and health bodies: one event stays one line.
    Some(format!("[{:>7.1}s] {}", event.elapsed_s, one_line(&text)))
}

fn plan_text(stable: &str, candidate: &str, steps: &[u8], creates_revision: bool) -> String {
    format!(
        "plan: {stable} (stable) → {candidate}{} in steps {}",
        if creates_revision {
            " (new revision)"
        } else {
            ""
        },
        steps
            .iter()
            .map(|s| format!("{s}%"))
            .collect::<Vec<_>>()
            .join(" → ")
    )
}

fn errors_text(
    step: usize,
    (since, bake): (Duration, Duration),
    candidate: &RequestCounts,
    stable: &RequestCounts,
    error_rate: Option<f64>,
    verdict: &Verdict,
) -> String {
    let progress = if bake.is_zero() {
        String::new()
    } else {
        format!(
            " bake {}/{}",
            bake_duration_text(since.min(bake)),
            bake_duration_text(bake)
        )
    };
    format!(
        "step {step}{progress}: candidate {} requests, {} 5xx ({}); stable {} requests, {} 5xx — {}",
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
    )
}

/// `2m10s`: a bake's progress to the second, as people read it.
pub fn bake_duration_text(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs()))
        .to_string()
        .replace(' ', "")
}

/// `p95 120ms (stable ≤ 100ms, limit 800ms)`: one quantile's look, short.
fn latency_text(check: &LatencyCheck) -> String {
    let candidate = check
        .candidate_ms
        .map_or("n/a".to_string(), milliseconds_text);
    let stable = check.stable_ms.map_or(String::new(), |ms| {
        format!("stable ≤ {}, ", milliseconds_text(ms))
    });
    format!(
        "{} {candidate} ({stable}limit {})",
        check.quantile.name(),
        milliseconds_text(check.limit_ms)
    )
}

/// Characters that end a line for some reader of the log, or reorder or hide what follows.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Text from outside (API errors, health bodies, names) made safe inside one log line: line breaks
/// and other control characters are shown escaped (`\n`), so the text can never start a line of
/// its own, where a CI runner would read it as a command (`::add-mask::`, `##[…]`).
pub fn one_line(text: &str) -> String {
    if !text.chars().any(is_unsafe_char) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            c if is_unsafe_char(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A line that would be read as a CI runner command: GitHub's `::name::` (the runner trims leading
/// whitespace first), its legacy `##[name]`, and Azure's `##vso[`.
fn reads_as_command(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("::") || line.starts_with("##")
}

/// A message for people, made safe for a CI log: every line of it is kept, but a line that would
/// read as a runner command is shown behind `> `, and control characters are escaped. shiftgate's
/// own workflow commands never go through here (see `workflow_command`).
pub fn neutralise(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            let line = one_line(line.strip_suffix('\r').unwrap_or(line));
            if reads_as_command(&line) {
                format!("> {line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes a message for people to stderr through [`neutralise`]. Write errors are ignored: a closed
/// stderr must never end a rollout half-way (`eprintln!` panics on one).
pub fn say_line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", neutralise(text));
}

/// `eprintln!` for progress and messages that carry text from outside: see [`say_line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_line(&format!($($arg)*))
    };
}

/// The `tracing` log writer: stderr, one line per event whatever the event's fields hold (a field
/// may carry an API answer), write errors ignored.
pub fn log_writer() -> LogWriter {
    LogWriter
}

#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

/// One formatted `tracing` event as it is written: its text on one line, behind `> ` if it would
/// read as a runner command, and the event's closing newline kept.
fn log_line(buf: &[u8]) -> String {
    // tracing-subscriber formats each event into one buffer ending in a newline and writes it
    // whole; everything before that newline is the event's own text.
    let text = String::from_utf8_lossy(buf);
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text.as_ref(), ""),
    };
    let safe = body
        .replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "\\r");
    if reads_as_command(&safe) {
        format!("> {safe}{end}")
    } else {
        format!("{safe}{end}")
    }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(log_line(buf).as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// The closing summary of a rollout: outcome, step table, final traffic.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{}", one_line(&outcome_in_words(report)));
    if let Some(reason) = &report.reason {
        let _ = writeln!(out, "reason: {}", one_line(reason));
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
        one_line(&describe_traffic(&report.final_traffic)),
        if report.final_traffic_confirmed {
            ""
        } else {
            " (the last split read; the end state could not be confirmed)"
        }
    );
    out
}

/// What happened, in words: which revision serves the service now, and why.
fn outcome_in_words(report: &Report) -> String {
    let service = report.service.rsplit('/').next().unwrap_or(&report.service);
    let (stable, candidate) = (&report.stable, &report.candidate);
    let failed_step = report
        .steps
        .iter()
        .find(|step| matches!(step.verdict, "fail" | "failed"))
        .map(|step| format!(" at step {} ({}%)", step.step, step.percent))
        .unwrap_or_default();
    match report.outcome {
        Outcome::Promoted => {
            format!("promoted: {service} serves 100% on {candidate} (stable was {stable})")
        }
        Outcome::RolledBack if report.final_traffic_confirmed => format!(
            "rolled back: {service} serves 100% on {stable} again; candidate {candidate} \
             failed{failed_step}"
        ),
        Outcome::RolledBack => format!(
            "rolled back{failed_step}, but stable {stable} serving everything again was not \
             confirmed"
        ),
        Outcome::Interrupted => format!(
            "interrupted: the rollout of {candidate} stopped{}",
            if report.final_traffic_confirmed {
                format!(" and {service} is back on {stable}")
            } else {
                " before stable was confirmed back".to_string()
            }
        ),
        Outcome::Aborted => format!(
            "aborted: someone else changed {service} during the rollout of {candidate}; their \
             change stands"
        ),
        Outcome::Failed => format!("failed: {candidate} was not promoted on {service}"),
        Outcome::DryRun => format!(
            "dry run: nothing changed; {candidate} would be rolled out over {stable} on {service}"
        ),
    }
}

/// Prints the JSON result on stdout, its keys sorted as they have always been printed. A closed
/// stdout (`shiftgate … | head`) is ignored, never a panic. JSON escapes every control character,
/// so the result is one line whatever it holds.
pub fn print_json(result: &impl Serialize) {
    let mut value = serde_json::to_value(result).expect("results serialize to JSON");
    value.sort_all_objects();
    print_text(&format!("{value}\n"));
}

/// Text that is the command's own output (a table a person asked for) on stdout; a closed pipe
/// (`shiftgate … | head`) ends the output, never the process.
pub fn print_text(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

pub fn eprint_progress(event: &Event) {
    if let Some(line) = progress_line(event) {
        say_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::verdict::Verdict;
    use std::time::SystemTime;

    const HOSTILE: &str = "answered HTTP 503: ok\n::add-mask::x\r::stop-commands::tok\r\n  ::warning::x\n##[error]y\u{1b}[31m @team";

    fn health_event(reason: &str) -> Event {
        Event {
            at: SystemTime::UNIX_EPOCH,
            elapsed_s: 1.0,
            kind: EventKind::HealthChecked {
                step: Some(1),
                url: "https://app-2---svc.a.run.app/health".into(),
                verdict: Verdict::Fail(reason.into()),
            },
        }
    }

    #[test]
    fn given_a_health_body_with_workflow_commands_then_the_progress_line_stays_one_line() {
        let line = progress_line(&health_event(HOSTILE)).unwrap();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.starts_with("[    1.0s] health fail"), "{line}");
        assert!(
            line.contains("ok\\n::add-mask::x\\r::stop-commands::tok"),
            "{line}"
        );
        assert!(!line.contains('\u{1b}'), "{line}");
    }

    #[test]
    fn given_text_with_line_breaks_then_no_line_of_the_message_reads_as_a_command() {
        let said = neutralise(&format!("shiftgate status: {HOSTILE}"));
        for line in said.lines() {
            let trimmed = line.trim_start();
            assert!(
                !trimmed.starts_with("::") && !trimmed.starts_with("##"),
                "{said}"
            );
        }
        assert!(said.contains("> ::add-mask::x"), "{said}");
        assert!(said.contains("> ##[error]y"), "{said}");
        assert_eq!(neutralise("plain\nlines"), "plain\nlines");
    }

    #[test]
    fn given_a_log_event_with_line_breaks_then_it_is_written_as_one_line() {
        assert_eq!(
            log_line(b"2026 WARN x: body: a\n::add-mask::x\r\n"),
            "2026 WARN x: body: a\\n::add-mask::x\\r\n"
        );
        assert_eq!(log_line(b"::warning::x\n"), "> ::warning::x\n");
        assert_eq!(one_line("a\u{2028}b"), "a\\u{2028}b");
    }

    #[test]
    fn the_closing_summary_says_in_words_which_revision_serves_now() {
        let mut report = crate::report_markdown::tests::rolled_back_report();
        let said = summary(&report);
        assert!(
            said.contains(
                "rolled back: svc serves 100% on app-1 again; candidate app-2 failed at step 2 (50%)"
            ),
            "{said}"
        );
        report.outcome = Outcome::Promoted;
        assert!(summary(&report).contains("promoted: svc serves 100% on app-2 (stable was app-1)"));
    }
}
