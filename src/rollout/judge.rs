//! The error-rate gate: which rule judges a step (the sequential comparison, the threshold rule,
//! Flagger's counter) and the verdict of one look. Pure: no clock, no network.

use serde::Serialize;

use crate::rollout::compare::{Comparison, Finding, compare};
use crate::rollout::ports::RequestCounts;
use crate::rollout::verdict::Verdict;

/// Which rule judges a step's error counts (`--judge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeKind {
    /// The candidate against stable, anytime-valid ([`compare`]): the default.
    #[default]
    Sequential,
    /// The step's own 5xx share against `--max-error-rate` once the bake is over (the rule before
    /// the sequential test).
    Threshold,
    /// Flagger's: each check reads the last interval; two checks above the limit (or without
    /// data) roll back.
    Counter,
}

impl JudgeKind {
    pub const NAMES: [&'static str; 3] = ["sequential", "threshold", "counter"];

    pub fn name(self) -> &'static str {
        match self {
            JudgeKind::Sequential => "sequential",
            JudgeKind::Threshold => "threshold",
            JudgeKind::Counter => "counter",
        }
    }
}

impl std::str::FromStr for JudgeKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "sequential" => Ok(JudgeKind::Sequential),
            "threshold" => Ok(JudgeKind::Threshold),
            "counter" => Ok(JudgeKind::Counter),
            other => Err(format!(
                "unknown judge {other:?}: use {}",
                JudgeKind::NAMES.join(", ")
            )),
        }
    }
}

/// The counts visible at one look (each window ends where the metrics delay allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// The candidate since this step started.
    pub step_candidate: RequestCounts,
    /// The candidate since the rollout started.
    pub rollout_candidate: RequestCounts,
    /// Stable since the rollout started, plus its baseline before it.
    pub stable: RequestCounts,
    /// The candidate over the last interval (the counter's window).
    pub last_interval_candidate: RequestCounts,
}

/// The judge's settings, from the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeSettings {
    pub kind: JudgeKind,
    pub max_error_rate: f64,
    pub min_requests: u64,
    pub relative_margin: f64,
    /// Failed checks that roll back under [`JudgeKind::Counter`].
    pub failed_checks_allowed: u32,
    /// The sequential judge may pass a step before its bake is over.
    pub early_pass: bool,
}

/// How a step's look came out, with what the judge saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    /// The sequential test's look, when that judge ran.
    pub comparison: Option<Comparison>,
    /// Inconclusive only for want of requests: what a quiet service gets.
    pub lacking_traffic: bool,
}

impl Judged {
    fn plain(verdict: Verdict) -> Self {
        Judged {
            verdict,
            comparison: None,
            lacking_traffic: false,
        }
    }
}

/// A step may pass before its bake is over once the test shows the candidate not worse, but not
/// before it has run this long: a fresh revision's first minute is when cold starts fail.
pub const EARLY_PASS_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Judges one look at a step. `failed_checks` is the counter judge's tally over the rollout.
pub fn judge_step(
    settings: &JudgeSettings,
    counts: &Counts,
    phase: StepPhase,
    since_step_start: std::time::Duration,
    last_step: bool,
    failed_checks: &mut u32,
) -> Judged {
    match settings.kind {
        JudgeKind::Threshold => {
            let verdict = judge_errors(
                counts.step_candidate,
                settings.max_error_rate,
                settings.min_requests,
                phase,
            );
            let lacking_traffic = phase == StepPhase::Judging
                && counts.step_candidate.total < settings.min_requests.max(1)
                && !verdict.is_fail();
            Judged {
                verdict,
                comparison: None,
                lacking_traffic,
            }
        }
        JudgeKind::Counter => judge_counter(settings, counts, phase, failed_checks),
        JudgeKind::Sequential => {
            judge_sequential(settings, counts, phase, since_step_start, last_step)
        }
    }
}

fn judge_sequential(
    settings: &JudgeSettings,
    counts: &Counts,
    phase: StepPhase,
    since_step_start: std::time::Duration,
    last_step: bool,
) -> Judged {
    let comparison = compare(
        counts.rollout_candidate,
        counts.stable,
        settings.max_error_rate,
        settings.relative_margin,
    );
    let explained = comparison.explain(settings.max_error_rate);
    let seen = counts.rollout_candidate.total;
    let short = last_step && seen < settings.min_requests.max(1);
    let (verdict, lacking_traffic) = match (comparison.finding, phase) {
        (Finding::Worse | Finding::AboveCap, _) => (Verdict::Fail(explained), false),
        (Finding::NotWorse, StepPhase::Baking)
            if settings.early_pass && since_step_start >= EARLY_PASS_AFTER && !short =>
        {
            (Verdict::Pass, false)
        }
        (_, StepPhase::Judging) if short => (
            Verdict::Inconclusive(format!(
                "not enough traffic to judge: {seen} candidate requests since the rollout \
                 started, {} needed (--min-requests); {explained}",
                settings.min_requests
            )),
            true,
        ),
        (_, StepPhase::Judging) => (Verdict::Pass, false),
        (_, StepPhase::Baking) => (Verdict::Inconclusive(format!("baking: {explained}")), false),
    };
    Judged {
        verdict,
        comparison: Some(comparison),
        lacking_traffic,
    }
}

fn judge_counter(
    settings: &JudgeSettings,
    counts: &Counts,
    phase: StepPhase,
    failed_checks: &mut u32,
) -> Judged {
    let window = counts.last_interval_candidate;
    let failed = match window.error_rate() {
        None => Some("no candidate requests in the last interval".to_string()),
        Some(rate) if rate > settings.max_error_rate => Some(format!(
            "candidate 5xx rate {} over the last interval is above the limit {}",
            percent(rate),
            percent(settings.max_error_rate)
        )),
        Some(_) => None,
    };
    let Some(reason) = failed else {
        return Judged::plain(match phase {
            StepPhase::Judging => Verdict::Pass,
            StepPhase::Baking => {
                Verdict::Inconclusive(format!("baking: {failed_checks} failed checks so far"))
            }
        });
    };
    *failed_checks += 1;
    let allowed = settings.failed_checks_allowed.max(1);
    // Like Flagger, a failed check holds the step; the limit of them rolls back.
    Judged {
        verdict: if *failed_checks >= allowed {
            Verdict::Fail(format!("{failed_checks} failed checks: {reason}"))
        } else {
            Verdict::Inconclusive(format!(
                "failed check {failed_checks} of {allowed}: {reason}"
            ))
        },
        comparison: None,
        lacking_traffic: window.total == 0,
    }
}

/// Where in its step a check happens, which decides what "not enough data" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPhase {
    /// The bake is still running: only a clear failure ends the step early.
    Baking,
    /// The whole bake window has arrived: enough data passes or fails, too little is inconclusive.
    Judging,
}

/// Judges the candidate's 5xx share. A step is never passed on fewer than `min_requests`
/// requests, and fails early only once it has seen `min_requests` (so two errors in three
/// requests during warm-up do not end a rollout, but 30 in 100 do).
pub fn judge_errors(
    candidate: RequestCounts,
    max_error_rate: f64,
    min_requests: u64,
    phase: StepPhase,
) -> Verdict {
    let enough = candidate.total >= min_requests.max(1);
    let rate = candidate.error_rate().unwrap_or(0.0);
    if enough && rate > max_error_rate {
        return Verdict::Fail(format!(
            "candidate 5xx rate {} ({} of {} requests) is above the limit {}",
            percent(rate),
            candidate.server_errors,
            candidate.total,
            percent(max_error_rate)
        ));
    }
    match (phase, enough) {
        (StepPhase::Judging, true) => Verdict::Pass,
        (StepPhase::Judging, false) => Verdict::Inconclusive(format!(
            "only {} candidate requests, {} needed to judge the step (--min-requests)",
            candidate.total, min_requests
        )),
        // The counts are beside the verdict wherever it is shown: said once, there.
        (StepPhase::Baking, _) => {
            Verdict::Inconclusive("baking: judged when the step's window is in".to_string())
        }
    }
}

/// A share as a percentage with up to two decimals: `0.0512` → `5.12%`.
pub fn percent(rate: f64) -> String {
    let value = rate * 100.0;
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts_strategy() -> impl Strategy<Value = (u64, u64)> {
        (0u64..5_000).prop_flat_map(|total| (Just(total), 0..=total))
    }

    proptest! {
        #[test]
        fn the_threshold_rule_is_monotone_too(
            (total, errors) in counts_strategy(),
            min_requests in 1u64..500,
        ) {
            prop_assume!(errors < total);
            for phase in [StepPhase::Baking, StepPhase::Judging] {
                let before = judge_errors(counts(total, errors), 0.05, min_requests, phase);
                let after = judge_errors(counts(total, errors + 1), 0.05, min_requests, phase);
                prop_assert!(after.is_fail() || !before.is_fail(), "a failure stays a failure");
                prop_assert!(before.is_pass() || !after.is_pass(), "no pass appears from more errors");
            }
        }
    }

    fn counts(total: u64, server_errors: u64) -> RequestCounts {
        RequestCounts {
            total,
            server_errors,
        }
    }

    #[test]
    fn enough_clean_requests_pass_once_the_window_is_complete() {
        assert_eq!(
            judge_errors(counts(120, 3), 0.05, 100, StepPhase::Judging),
            Verdict::Pass
        );
        assert!(matches!(
            judge_errors(counts(120, 3), 0.05, 100, StepPhase::Baking),
            Verdict::Inconclusive(_)
        ));
    }

    #[test]
    fn too_few_requests_is_never_a_pass() {
        assert!(matches!(
            judge_errors(counts(99, 0), 0.05, 100, StepPhase::Judging),
            Verdict::Inconclusive(_)
        ));
        assert!(matches!(
            judge_errors(counts(0, 0), 0.05, 0, StepPhase::Judging),
            Verdict::Inconclusive(_)
        ));
    }

    #[test]
    fn a_high_error_rate_fails_as_soon_as_there_is_enough_data() {
        assert!(judge_errors(counts(100, 6), 0.05, 100, StepPhase::Baking).is_fail());
        assert!(matches!(
            judge_errors(counts(3, 2), 0.05, 100, StepPhase::Baking),
            Verdict::Inconclusive(_)
        ));
        assert_eq!(
            judge_errors(counts(100, 5), 0.05, 100, StepPhase::Judging),
            Verdict::Pass,
            "exactly at the limit is not above it"
        );
    }

    #[test]
    fn percentages_read_naturally() {
        assert_eq!(percent(0.05), "5%");
        assert_eq!(percent(0.0512), "5.12%");
        assert_eq!(percent(0.0), "0%");
    }
}
