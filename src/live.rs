//! Live progress on a terminal: the running step is one line that updates in place (a bar of its
//! bake, time left, checks, candidate and stable counts, the current verdict); other events print above it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use console::style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::output::{bake_duration_text, one_line, progress_line};
use crate::rollout::judge::percent;
use crate::rollout::plan::Policy;
use crate::rollout::ports::RequestCounts;
use crate::rollout::timeline::{Event, EventKind};
use crate::rollout::verdict::Verdict;

/// Width of the bake bar, in cells.
const BAR_CELLS: usize = 20;
/// How often the line is redrawn between checks, so the bar and the time left move.
const REDRAW: Duration = Duration::from_millis(250);

/// What the running step's line says, from the events so far. Pure: the tests read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepLine {
    pub step: usize,
    pub percent: u8,
    pub checks: u32,
    pub candidate: RequestCounts,
    pub stable: RequestCounts,
    /// `baking`, `pass`, or the failure in words.
    pub verdict: String,
    pub failed: bool,
}

impl StepLine {
    /// Counts, checks and verdict: the part of the line the bar does not show.
    pub fn message(&self) -> String {
        let rate = self
            .candidate
            .error_rate()
            .map_or_else(|| "n/a".to_string(), percent);
        let verdict = if self.failed {
            style(format!("FAIL: {}", self.verdict))
                .for_stderr()
                .red()
                .to_string()
        } else if self.verdict == "pass" {
            style("pass").for_stderr().green().to_string()
        } else {
            style(self.verdict.as_str())
                .for_stderr()
                .yellow()
                .to_string()
        };
        format!(
            "{} check{} · candidate {} req, {} 5xx ({rate}) · stable {} req, {} 5xx · {verdict}",
            self.checks,
            if self.checks == 1 { "" } else { "s" },
            self.candidate.total,
            self.candidate.server_errors,
            self.stable.total,
            self.stable.server_errors,
        )
    }
}

/// The terminal's live view of one rollout.
pub struct LiveProgress {
    bake: Duration,
    steps: Vec<u8>,
    target: fn() -> ProgressDrawTarget,
    state: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    bar: Option<ProgressBar>,
    line: StepLine,
}

impl LiveProgress {
    /// Draws on stderr.
    pub fn new(policy: &Policy) -> Self {
        Self::with_target(policy, ProgressDrawTarget::stderr)
    }

    /// Draws wherever `target` says (a test's in-memory terminal).
    pub fn with_target(policy: &Policy, target: fn() -> ProgressDrawTarget) -> Self {
        Self {
            bake: policy.bake,
            steps: policy.steps.percents().to_vec(),
            target,
            state: Mutex::new(Live::default()),
        }
    }

    pub fn show(&self, event: &Event) {
        let mut live = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &event.kind {
            EventKind::TrafficSet {
                step: Some(step), ..
            } => {
                self.print_above(&live, event);
                if let Some(bar) = live.bar.take() {
                    close(&bar, None);
                }
                live.line = StepLine {
                    step: *step,
                    percent: self.steps.get(step.wrapping_sub(1)).copied().unwrap_or(0),
                    verdict: "baking".to_string(),
                    ..StepLine::default()
                };
                let bar = self.step_bar(&live.line);
                live.bar = Some(bar);
            }
            EventKind::ErrorsChecked {
                candidate,
                stable,
                verdict,
                ..
            } => {
                live.line.checks += 1;
                live.line.candidate = *candidate;
                live.line.stable = *stable;
                let (text, failed) = match verdict {
                    Verdict::Pass => ("pass".to_string(), false),
                    Verdict::Fail(reason) => (one_line(reason), true),
                    Verdict::Inconclusive(_) => ("baking".to_string(), false),
                };
                live.line.verdict = text;
                live.line.failed = failed;
                if let Some(bar) = &live.bar {
                    bar.set_message(live.line.message());
                }
            }
            EventKind::StepPassed { .. } => {
                live.line.verdict = "pass".to_string();
                if let Some(bar) = live.bar.take() {
                    close(&bar, Some(live.line.message()));
                }
                self.print_above(&live, event);
            }
            EventKind::StepFailed { .. } => {
                if let Some(bar) = live.bar.take() {
                    close(&bar, Some(live.line.message()));
                }
                self.print_above(&live, event);
            }
            // A passing health probe in a step is the bar's business; the rest is said above it.
            _ => self.print_above(&live, event),
        }
    }

    /// An event's plain line, above the running step's line (or alone between steps).
    fn print_above(&self, live: &Live, event: &Event) {
        let Some(line) = progress_line(event) else {
            return;
        };
        let line = match &event.kind {
            EventKind::RolledBack { .. } | EventKind::StepFailed { .. } => {
                style(line).for_stderr().red().to_string()
            }
            EventKind::Promoted { .. } | EventKind::StepPassed { .. } => {
                style(line).for_stderr().green().to_string()
            }
            _ => line,
        };
        match &live.bar {
            Some(bar) => bar.println(line),
            // Between steps nothing is drawn in place: the line goes straight to stderr.
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }

    fn step_bar(&self, line: &StepLine) -> ProgressBar {
        let bake = self.bake;
        let look = ProgressStyle::with_template("{prefix} {bake} {wide_msg}")
            .expect("the template is valid")
            .with_key(
                "bake",
                move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = out.write_str(&bake_cell(state.elapsed(), bake));
                },
            );
        let bar = ProgressBar::with_draw_target(None, (self.target)());
        bar.set_style(look);
        bar.set_prefix(
            style(format!("step {} ({}%)", line.step, line.percent))
                .for_stderr()
                .bold()
                .to_string(),
        );
        bar.set_message(line.message());
        bar.enable_steady_tick(REDRAW);
        bar
    }
}

/// Leaves a step's line as it ended and moves below it: the bar keeps the cursor at the end of
/// its line, and the next event must not print onto it.
fn close(bar: &ProgressBar, last: Option<String>) {
    if let Some(message) = last {
        bar.set_message(message);
    }
    bar.abandon();
    if !bar.is_hidden() {
        let _ = writeln!(std::io::stderr().lock());
    }
}

/// `[██████░░░░] bake 2m10s/5m, 2m50s left` from the time the step has run.
pub fn bake_cell(elapsed: Duration, bake: Duration) -> String {
    let done = if bake.is_zero() {
        1.0
    } else {
        (elapsed.as_secs_f64() / bake.as_secs_f64()).clamp(0.0, 1.0)
    };
    let filled = (done * BAR_CELLS as f64).round() as usize;
    let mut cell = String::from("[");
    cell.push_str(&"█".repeat(filled));
    cell.push_str(&"░".repeat(BAR_CELLS - filled));
    let _ = write!(
        cell,
        "] bake {}/{}",
        bake_duration_text(elapsed.min(bake)),
        bake_duration_text(bake)
    );
    if elapsed < bake {
        let _ = write!(cell, ", {} left", bake_duration_text(bake - elapsed));
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::Steps;
    use crate::rollout::ports::TrafficTarget;
    use indicatif::InMemoryTerm;
    use std::sync::OnceLock;
    use std::time::SystemTime;

    fn term() -> &'static InMemoryTerm {
        static TERM: OnceLock<InMemoryTerm> = OnceLock::new();
        TERM.get_or_init(|| InMemoryTerm::new(20, 160))
    }

    fn event(elapsed_s: f64, kind: EventKind) -> Event {
        Event {
            at: SystemTime::UNIX_EPOCH,
            elapsed_s,
            kind,
        }
    }

    fn counts(total: u64, server_errors: u64) -> RequestCounts {
        RequestCounts {
            total,
            server_errors,
        }
    }

    #[test]
    fn the_bake_cell_fills_with_time_and_says_what_is_left() {
        let bake = Duration::from_secs(300);
        assert_eq!(
            bake_cell(Duration::from_secs(130), bake),
            "[█████████░░░░░░░░░░░] bake 2m10s/5m, 2m50s left"
        );
        assert!(bake_cell(Duration::from_secs(400), bake).ends_with("] bake 5m/5m"));
    }

    #[test]
    fn the_step_line_says_counts_once_and_the_verdict_in_colour_only_on_a_terminal() {
        console::set_colors_enabled_stderr(false);
        let line = StepLine {
            step: 1,
            percent: 10,
            checks: 4,
            candidate: counts(120, 1),
            stable: counts(1000, 2),
            verdict: "baking".into(),
            failed: false,
        };
        assert_eq!(
            line.message(),
            "4 checks · candidate 120 req, 1 5xx (0.83%) · stable 1000 req, 2 5xx · baking"
        );
    }

    #[test]
    fn a_rollout_on_a_terminal_leaves_each_step_as_one_line() {
        console::set_colors_enabled_stderr(false);
        let policy = Policy {
            steps: Steps::new(vec![50, 100]).unwrap(),
            bake: Duration::from_secs(60),
            ..Policy::default()
        };
        let live = LiveProgress::with_target(&policy, || {
            ProgressDrawTarget::term_like(Box::new(term().clone()))
        });
        let split = |c: u8| {
            vec![
                TrafficTarget::new("app-1", 100 - c),
                TrafficTarget::tagged("app-2", c, "candidate"),
            ]
        };
        for kind in [
            EventKind::TrafficSet {
                step: Some(1),
                traffic: split(50),
            },
            EventKind::ErrorsChecked {
                step: 1,
                candidate: counts(40, 0),
                stable: counts(40, 0),
                error_rate: Some(0.0),
                verdict: Verdict::Inconclusive("baking".into()),
                phase: crate::rollout::judge::StepPhase::Baking,
                bake_progress: (Duration::from_secs(30), Duration::from_secs(60)),
                comparison: None,
                latency: Vec::new(),
            },
            EventKind::ErrorsChecked {
                step: 1,
                candidate: counts(80, 0),
                stable: counts(80, 0),
                error_rate: Some(0.0),
                verdict: Verdict::Pass,
                phase: crate::rollout::judge::StepPhase::Judging,
                bake_progress: (Duration::from_secs(60), Duration::from_secs(60)),
                comparison: None,
                latency: Vec::new(),
            },
            EventKind::StepPassed {
                step: 1,
                percent: 50,
            },
            EventKind::TrafficSet {
                step: Some(2),
                traffic: split(100),
            },
            EventKind::ErrorsChecked {
                step: 2,
                candidate: counts(100, 30),
                stable: counts(0, 0),
                error_rate: Some(0.3),
                verdict: Verdict::Fail("candidate 5xx 30% (30 of 100)".into()),
                phase: crate::rollout::judge::StepPhase::Baking,
                bake_progress: (Duration::from_secs(20), Duration::from_secs(60)),
                comparison: None,
                latency: Vec::new(),
            },
            EventKind::StepFailed {
                step: 2,
                percent: 100,
                reason: "candidate 5xx 30% (30 of 100)".into(),
            },
        ] {
            live.show(&event(1.0, kind));
        }
        let frame = term().contents();
        assert!(frame.contains("step 1 (50%) ["), "{frame}");
        assert!(
            frame.contains("2 checks · candidate 80 req, 0 5xx (0%) · stable 80 req, 0 5xx · pass"),
            "{frame}"
        );
        assert!(
            frame.contains("step 2 (100%) [") && frame.contains("FAIL: candidate 5xx 30%"),
            "{frame}"
        );
        assert_eq!(frame.lines().count(), 2, "one line per step: {frame}");
        assert!(
            !frame.contains('\u{1b}'),
            "no colour when colours are off: {frame}"
        );
    }
}
