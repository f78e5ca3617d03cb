//! The sequential comparison of candidate against stable: worse beyond the margin, above the
//! cap, or not worse, each at 1% however often it looks, with the look explained in words.

use serde::Serialize;

use crate::rollout::judge::percent;
use crate::rollout::ports::RequestCounts;
use crate::rollout::sequential::{Bounds, bounds, ln_evidence_above, ln_evidence_below};

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
}
