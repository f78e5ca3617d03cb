//! The error-rate gate: the candidate's 5xx counts against stable's, tested sequentially (or
//! against a fixed cap), into Pass, Fail or Inconclusive. Pure: no clock, no network.

use serde::Serialize;

use crate::rollout::ports::RequestCounts;
use crate::rollout::sequential::{Bounds, bounds, ln_evidence_above, ln_evidence_below};
use crate::rollout::verdict::Verdict;

/// Each of the sequential test's claims (stable's bounds, "worse", "above the cap", "not worse")
/// is wrong with probability at most this, however often it is looked at.
pub const ALPHA: f64 = 0.01;
/// The tolerance never goes below stable's rate plus this (a quarter of a percentage point), so
/// a healthy service with almost no errors does not fail on one or two.
pub const ABSOLUTE_MARGIN: f64 = 0.0025;

/// The highest candidate rate tolerated against a stable rate: `max(p·(1 + margin), p + 0.25
/// points)`.
pub fn tolerated(stable_rate: f64, relative_margin: f64) -> f64 {
    (stable_rate * (1.0 + relative_margin)).max(stable_rate + ABSOLUTE_MARGIN)
}

/// What the sequential test has shown so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// The candidate's rate is above stable's beyond the margin.
    Worse,
    /// The candidate's rate is above the absolute cap (`--max-error-rate`).
    AboveCap,
    /// The candidate's rate is below stable's plus the margin, and not shown above the cap.
    NotWorse,
    /// Nothing shown yet either way.
    Undecided,
}

/// One look of the sequential test: the counts it saw, what it computed, what it found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The candidate's counts since the rollout started.
    pub candidate: RequestCounts,
    /// Stable's counts since the rollout started, plus its baseline before it.
    pub stable: RequestCounts,
    pub stable_bounds: Bounds,
    /// The candidate rate the test checks against: the margin over stable's upper bound.
    pub tolerated: f64,
    /// Evidence (an e-value) that the candidate is worse than tolerated, above the cap, and not
    /// worse than tolerated against stable's lower bound; each decides at [`Comparison::NEEDED`].
    pub evidence_worse: f64,
    pub evidence_above_cap: f64,
    pub evidence_not_worse: f64,
    pub finding: Finding,
}

impl Comparison {
    /// The evidence that decides: 1/α.
    pub const NEEDED: f64 = 1.0 / ALPHA;

    /// The look in words, with the numbers a person would check.
    pub fn explain(&self, max_error_rate: f64) -> String {
        let confidence = percent(1.0 - ALPHA);
        let counts = format!(
            "candidate 5xx {} ({} of {}) vs stable {} ({} of {})",
            rate_text(self.candidate),
            self.candidate.server_errors,
            self.candidate.total,
            rate_text(self.stable),
            self.stable.server_errors,
            self.stable.total
        );
        match self.finding {
            Finding::Worse => format!(
                "{counts}: worse than stable beyond the margin (above {}) with {confidence} \
                 confidence (evidence {} ≥ {})",
                percent(self.tolerated),
                evidence_text(self.evidence_worse),
                Self::NEEDED
            ),
            Finding::AboveCap => format!(
                "{counts}: above the limit {} with {confidence} confidence (evidence {} ≥ {})",
                percent(max_error_rate),
                evidence_text(self.evidence_above_cap),
                Self::NEEDED
            ),
            Finding::NotWorse => format!(
                "{counts}: not worse than stable beyond the margin with {confidence} confidence \
                 (evidence {} ≥ {})",
                evidence_text(self.evidence_not_worse),
                Self::NEEDED
            ),
            // The progress line already gives the counts of an undecided look.
            Finding::Undecided => format!(
                "not shown worse (evidence {} of {} needed) nor better (evidence {})",
                evidence_text(self.evidence_worse.max(self.evidence_above_cap)),
                Self::NEEDED,
                evidence_text(self.evidence_not_worse)
            ),
        }
    }
}

/// Tests the candidate's counts since the rollout started against stable's (baseline included):
/// worse beyond the margin, above the cap, or not worse. Every claim holds at level [`ALPHA`].
pub fn compare(
    candidate: RequestCounts,
    stable: RequestCounts,
    max_error_rate: f64,
    relative_margin: f64,
) -> Comparison {
    let needed = Comparison::NEEDED.ln();
    let stable_bounds = bounds(stable, ALPHA);
    let tolerated_rate = tolerated(stable_bounds.upper, relative_margin);
    let ln_worse = ln_evidence_above(candidate, tolerated_rate);
    let ln_above_cap = ln_evidence_above(candidate, max_error_rate);
    let ln_not_worse = ln_evidence_below(
        candidate,
        tolerated(stable_bounds.lower, relative_margin).min(max_error_rate),
    );
    let finding = if ln_above_cap >= needed {
        Finding::AboveCap
    } else if ln_worse >= needed {
        Finding::Worse
    } else if ln_not_worse >= needed {
        Finding::NotWorse
    } else {
        Finding::Undecided
    };
    Comparison {
        candidate,
        stable,
        stable_bounds,
        tolerated: tolerated_rate,
        evidence_worse: evidence(ln_worse),
        evidence_above_cap: evidence(ln_above_cap),
        evidence_not_worse: evidence(ln_not_worse),
        finding,
    }
}

/// An e-value for people and JSON: finite, capped far beyond any level anyone uses.
fn evidence(ln: f64) -> f64 {
    ln.min(40.0).exp()
}

fn evidence_text(value: f64) -> String {
    if value >= 1e6 {
        format!("{value:.1e}")
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn rate_text(counts: RequestCounts) -> String {
    counts
        .error_rate()
        .map(percent)
        .unwrap_or_else(|| "n/a".to_string())
}

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
        (StepPhase::Baking, _) => Verdict::Inconclusive(format!(
            "baking: {} candidate requests so far, {} 5xx",
            candidate.total, candidate.server_errors
        )),
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

    /// Worse or above the cap, then undecided, then not worse: the order of favour.
    fn favour(finding: Finding) -> u8 {
        match finding {
            Finding::Worse | Finding::AboveCap => 0,
            Finding::Undecided => 1,
            Finding::NotWorse => 2,
        }
    }

    fn counts_strategy() -> impl Strategy<Value = (u64, u64)> {
        (0u64..5_000).prop_flat_map(|total| (Just(total), 0..=total))
    }

    proptest! {
        #[test]
        fn one_more_candidate_error_never_helps_the_candidate(
            (total, errors) in counts_strategy(),
            (stable_total, stable_errors) in counts_strategy(),
            cap in 0.005f64..0.5,
            margin in 0.0f64..1.0,
        ) {
            prop_assume!(errors < total);
            let stable = counts(stable_total * 10, stable_errors * 10);
            let before = compare(counts(total, errors), stable, cap, margin);
            let after = compare(counts(total, errors + 1), stable, cap, margin);
            prop_assert!(favour(after.finding) <= favour(before.finding), "{before:?} {after:?}");
            prop_assert!(after.evidence_worse >= before.evidence_worse);
            prop_assert!(after.evidence_above_cap >= before.evidence_above_cap);
            prop_assert!(after.evidence_not_worse <= before.evidence_not_worse);
        }

        #[test]
        fn one_more_stable_error_never_hurts_the_candidate(
            (total, errors) in counts_strategy(),
            (stable_total, stable_errors) in counts_strategy(),
            cap in 0.005f64..0.5,
            margin in 0.0f64..1.0,
        ) {
            prop_assume!(stable_errors < stable_total);
            let candidate = counts(total, errors);
            let before = compare(candidate, counts(stable_total, stable_errors), cap, margin);
            let after = compare(candidate, counts(stable_total, stable_errors + 1), cap, margin);
            prop_assert!(favour(after.finding) >= favour(before.finding), "{before:?} {after:?}");
            prop_assert!(after.stable_bounds.upper >= before.stable_bounds.upper);
            prop_assert!(after.stable_bounds.lower >= before.stable_bounds.lower);
        }

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

    #[test]
    fn a_clearly_worse_candidate_is_worse_and_a_matching_one_is_not() {
        let stable = counts(180_000, 1_800);
        let worse = compare(counts(2_000, 100), stable, 0.05, 0.25);
        assert_eq!(worse.finding, Finding::Worse, "{worse:?}");
        assert!(
            worse
                .explain(0.05)
                .contains("worse than stable beyond the margin")
        );
        let same = compare(counts(60_000, 600), stable, 0.05, 0.25);
        assert_ne!(same.finding, Finding::Worse);
        assert_ne!(same.finding, Finding::AboveCap);
        let none = compare(counts(0, 0), counts(0, 0), 0.05, 0.25);
        assert_eq!(none.finding, Finding::Undecided);
        assert!(none.explain(0.05).starts_with("not shown worse"));
    }

    #[test]
    fn the_cap_must_be_proven_exceeded_not_crossed_by_noise() {
        // 6 of 100 is above 5%, but far from proof.
        let noisy = compare(counts(100, 6), counts(0, 0), 0.05, 0.25);
        assert_eq!(noisy.finding, Finding::Undecided, "{noisy:?}");
        let proven = compare(counts(2_000, 200), counts(0, 0), 0.05, 0.25);
        assert_eq!(proven.finding, Finding::AboveCap, "{proven:?}");
    }

    #[test]
    fn the_margin_never_goes_below_a_quarter_point() {
        assert!((tolerated(0.0, 0.25) - 0.0025).abs() < 1e-12);
        assert!((tolerated(0.04, 0.25) - 0.05).abs() < 1e-12);
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
