//! The error-rate gate: turns a step's request counts into Pass, Fail or Inconclusive.
//! Pure functions, so the rules people rely on are tested without any clock or network.

use crate::rollout::ports::RequestCounts;
use crate::rollout::verdict::Verdict;

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
