//! The latency gate (`--max-latency p95=800ms`): a candidate's quantile tested against the limit
//! and against stable's with the margin, anytime-valid like the 5xx test, explained in words.

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::rollout::compare::ALPHA;
use crate::rollout::histogram::LatencyHistogram;
use crate::rollout::judge::{StepPhase, percent};
use crate::rollout::limits::LATENCY;
use crate::rollout::ports::RequestCounts;
use crate::rollout::sequential::{ln_evidence_above, ln_evidence_below};
use crate::rollout::verdict::Verdict;

/// The quantiles a limit may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quantile {
    P50,
    P95,
    P99,
}

impl Quantile {
    pub fn fraction(self) -> f64 {
        match self {
            Quantile::P50 => 0.50,
            Quantile::P95 => 0.95,
            Quantile::P99 => 0.99,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
        }
    }
}

impl Serialize for Quantile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One `--max-latency` limit: the quantile and the latency it must not be shown above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyLimit {
    pub quantile: Quantile,
    pub limit: Duration,
}

impl LatencyLimit {
    /// `p95=800ms`: a quantile among p50, p95, p99, and a duration from 1ms to 1h.
    pub fn parse(text: &str) -> Result<Self, String> {
        let quoted = crate::names::quote(text.trim());
        let (name, value) = text
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("expected QUANTILE=DURATION such as p95=800ms, got {quoted}"))?;
        let quantile = match name.trim().to_ascii_lowercase().as_str() {
            "p50" => Quantile::P50,
            "p95" => Quantile::P95,
            "p99" => Quantile::P99,
            _ => {
                return Err(format!(
                    "the quantile in {quoted} must be p50, p95 or p99 (as in p95=800ms)"
                ));
            }
        };
        let limit = LATENCY
            .parse(value)
            .map_err(|problem| format!("the latency in {quoted}: {problem}"))?;
        Ok(LatencyLimit { quantile, limit })
    }

    /// Several limits, from a comma list or repeated values; one per quantile.
    pub fn parse_all<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Vec<Self>, String> {
        let mut limits: Vec<LatencyLimit> = Vec::new();
        for text in texts.into_iter().flat_map(|t| t.split(',')) {
            if text.trim().is_empty() {
                continue;
            }
            let limit = Self::parse(text)?;
            if limits.iter().any(|l| l.quantile == limit.quantile) {
                return Err(format!(
                    "{} is limited twice; give each quantile once",
                    limit.quantile.name()
                ));
            }
            limits.push(limit);
        }
        limits.sort_by_key(|l| l.quantile);
        Ok(limits)
    }
}

impl std::fmt::Display for LatencyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={}",
            self.quantile.name(),
            milliseconds_text(self.limit_ms())
        )
    }
}

impl LatencyLimit {
    fn limit_ms(&self) -> f64 {
        self.limit.as_secs_f64() * 1000.0
    }
}

/// Stable's quantile is only compared with once its tail holds this many requests: fewer say
/// little about where its p99 is.
pub const STABLE_TAIL_NEEDED: f64 = 10.0;
/// The candidate's quantile may exceed stable's by the relative margin, and never by less than
/// this much: a 10 ms service may be 50 ms slower without anyone noticing.
pub const LATENCY_ABSOLUTE_MARGIN_MS: f64 = 50.0;

/// What one latency look has shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyFinding {
    /// The candidate's quantile is above stable's beyond the margin.
    Slower,
    /// The candidate's quantile is above the limit.
    AboveLimit,
    /// The candidate's quantile is at or below the threshold.
    NotSlower,
    /// Nothing shown yet either way.
    Undecided,
}

/// One look of the latency gate for one quantile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyCheck {
    pub quantile: Quantile,
    pub limit_ms: f64,
    /// Stable's quantile at its highest (its bucket's upper bound), when its tail is big enough.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_ms: Option<f64>,
    /// What the candidate was found against: the limit when it is shown above it, else the
    /// lower of the limit and stable's quantile with the margin.
    pub threshold_ms: f64,
    /// The candidate's quantile for reading (interpolated), when it had requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_ms: Option<f64>,
    pub candidate_requests: u64,
    /// Candidate requests that surely took the threshold or longer.
    pub candidate_slow: u64,
    /// Evidence that more than `1 − q` of the candidate's requests take the threshold or longer
    /// (its quantile is above it), and that fewer do; each decides at 1/α.
    pub evidence_slower: f64,
    pub evidence_not_slower: f64,
    pub finding: LatencyFinding,
}

/// Tests one quantile of the candidate's latencies (since the rollout started) against the limit
/// and against stable's (baseline included) with `relative_margin`.
///
/// "The q-quantile is above T" is "more than 1 − q of requests take T or longer", a share, so
/// the 5xx test's anytime-valid evidence applies to it unchanged. Requests count as slow only
/// when their whole bucket is (and as fast likewise), so coarse buckets delay a decision and
/// never make one.
pub fn check_latency(
    limit: &LatencyLimit,
    candidate: &LatencyHistogram,
    stable: &LatencyHistogram,
    relative_margin: f64,
) -> LatencyCheck {
    let q = limit.quantile.fraction();
    let tail = 1.0 - q;
    let limit_ms = limit.limit_ms();
    let stable_ms = (stable.total() as f64 * tail >= STABLE_TAIL_NEEDED)
        .then(|| stable.quantile_at_most(q))
        .flatten()
        .filter(|ms| ms.is_finite());
    let relative =
        stable_ms.map(|ms| (ms * (1.0 + relative_margin)).max(ms + LATENCY_ABSOLUTE_MARGIN_MS));
    let threshold_ms = relative.map_or(limit_ms, |r| r.min(limit_ms));
    let n = candidate.total();
    let needed = (1.0 / ALPHA).ln();
    // "Above the limit" is tested on its own first, as the 5xx cap is: it is the stronger claim
    // and the one a person set, so it is the one said when both hold.
    let ln_above_limit = ln_evidence_above(slow_share(candidate, limit_ms), tail);
    let ln_slower = ln_evidence_above(slow_share(candidate, threshold_ms), tail);
    let ln_not_slower = ln_evidence_below(
        RequestCounts {
            total: n,
            server_errors: candidate.maybe_at_least(threshold_ms),
        },
        tail,
    );
    let (finding, reported_ms, ln_reported) = if ln_above_limit >= needed {
        (LatencyFinding::AboveLimit, limit_ms, ln_above_limit)
    } else if ln_slower >= needed {
        (LatencyFinding::Slower, threshold_ms, ln_slower)
    } else if ln_not_slower >= needed {
        (LatencyFinding::NotSlower, threshold_ms, ln_slower)
    } else {
        (LatencyFinding::Undecided, threshold_ms, ln_slower)
    };
    LatencyCheck {
        quantile: limit.quantile,
        limit_ms,
        stable_ms,
        threshold_ms: reported_ms,
        candidate_ms: candidate.quantile_estimate(q),
        candidate_requests: n,
        candidate_slow: candidate.surely_at_least(reported_ms),
        evidence_slower: ln_reported.exp(),
        evidence_not_slower: ln_not_slower.exp(),
        finding,
    }
}

/// The candidate's requests that surely took `threshold_ms` or longer, as a share to test.
fn slow_share(candidate: &LatencyHistogram, threshold_ms: f64) -> RequestCounts {
    RequestCounts {
        total: candidate.total(),
        server_errors: candidate.surely_at_least(threshold_ms),
    }
}

impl LatencyCheck {
    pub fn failed(&self) -> bool {
        matches!(
            self.finding,
            LatencyFinding::Slower | LatencyFinding::AboveLimit
        )
    }

    /// The look in words, with the numbers a person would check.
    pub fn explain(&self) -> String {
        let name = self.quantile.name();
        let candidate = self
            .candidate_ms
            .map_or("no requests".to_string(), milliseconds_text);
        let stable = self.stable_ms.map_or("not known yet".to_string(), |ms| {
            format!("at most {}", milliseconds_text(ms))
        });
        let head = format!(
            "candidate {name} {candidate} vs stable {stable} (limit {})",
            milliseconds_text(self.limit_ms)
        );
        let share = format!(
            "{} of {} candidate requests took {} or longer",
            self.candidate_slow,
            self.candidate_requests,
            milliseconds_text(self.threshold_ms)
        );
        let confidence = percent(1.0 - ALPHA);
        let tail = percent(1.0 - self.quantile.fraction());
        match self.finding {
            LatencyFinding::Slower => format!(
                "{head}: slower than stable beyond the margin with {confidence} confidence \
                 ({share}, more than {tail})"
            ),
            LatencyFinding::AboveLimit => format!(
                "{head}: above the limit with {confidence} confidence ({share}, more than {tail})"
            ),
            LatencyFinding::NotSlower => format!(
                "{head}: within {} with {confidence} confidence",
                milliseconds_text(self.threshold_ms)
            ),
            LatencyFinding::Undecided => format!(
                "{head}: not shown slower than {} nor within it yet",
                milliseconds_text(self.threshold_ms)
            ),
        }
    }
}

/// One look's verdict with the latency checks added: a latency shown too high fails the step
/// (after a 5xx failure, which is said first); an early pass waits until every quantile is shown
/// within its threshold. At the end of a bake an undecided latency passes, as undecided 5xx do.
pub fn with_latency(verdict: Verdict, checks: &[LatencyCheck], phase: StepPhase) -> Verdict {
    if verdict.is_fail() {
        return verdict;
    }
    if let Some(failed) = checks.iter().find(|check| check.failed()) {
        return Verdict::Fail(failed.explain());
    }
    let unproven = checks
        .iter()
        .find(|check| check.finding != LatencyFinding::NotSlower);
    match (verdict, unproven, phase) {
        (Verdict::Pass, Some(check), StepPhase::Baking) => {
            Verdict::Inconclusive(format!("baking: {}", check.explain()))
        }
        (verdict, _, _) => verdict,
    }
}

/// `850ms`, `1.2s`: how a person writes a latency.
pub fn milliseconds_text(ms: f64) -> String {
    if !ms.is_finite() {
        "unbounded".to_string()
    } else if ms >= 1000.0 {
        let seconds = format!("{:.2}", ms / 1000.0);
        format!("{}s", seconds.trim_end_matches('0').trim_end_matches('.'))
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p95(ms: u64) -> LatencyLimit {
        LatencyLimit {
            quantile: Quantile::P95,
            limit: Duration::from_millis(ms),
        }
    }

    /// Requests spread over 100 ms buckets: `slow` of every 100 in [800, 900), the rest in
    /// [0, 100).
    fn latencies(total: u64, slow_share: f64, slow_from_ms: f64) -> LatencyHistogram {
        let slow = (total as f64 * slow_share).round() as u64;
        let mut h = LatencyHistogram::default();
        h.add(0.0, 100.0, total - slow).unwrap();
        h.add(slow_from_ms, slow_from_ms + 100.0, slow).unwrap();
        h
    }

    #[test]
    fn limits_parse_with_messages_that_say_what_is_valid() {
        assert_eq!(LatencyLimit::parse("p95=800ms").unwrap(), p95(800));
        assert_eq!(
            LatencyLimit::parse_all(["p99=2s,p50=100ms"]).unwrap(),
            vec![
                LatencyLimit {
                    quantile: Quantile::P50,
                    limit: Duration::from_millis(100)
                },
                LatencyLimit {
                    quantile: Quantile::P99,
                    limit: Duration::from_secs(2)
                }
            ]
        );
        for (text, says) in [
            ("p95", "QUANTILE=DURATION"),
            ("p90=1s", "p50, p95 or p99"),
            ("p95=fast", "not a duration"),
            ("p95=0ms", "between 1ms and 1h"),
            ("p95=2h", "between 1ms and 1h"),
        ] {
            let error = LatencyLimit::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
        let twice = LatencyLimit::parse_all(["p95=1s", "p95=2s"]).unwrap_err();
        assert!(twice.contains("p95 is limited twice"), "{twice}");
    }

    #[test]
    fn given_a_candidate_whose_p95_is_far_above_the_limit_then_it_is_shown_above_it() {
        let stable = LatencyHistogram::default();
        let candidate = latencies(400, 0.30, 900.0);
        let check = check_latency(&p95(800), &candidate, &stable, 0.25);
        assert_eq!(check.finding, LatencyFinding::AboveLimit);
        assert_eq!(check.threshold_ms, 800.0);
        assert!(
            check
                .explain()
                .contains("above the limit with 99% confidence")
        );
    }

    #[test]
    fn given_a_candidate_slower_than_stable_but_within_the_limit_then_it_is_slower() {
        // Stable: 3% of requests in [200, 300); its p95 is at most 100 ms.
        let stable = latencies(20_000, 0.03, 200.0);
        let candidate = latencies(500, 0.20, 300.0);
        let check = check_latency(&p95(800), &candidate, &stable, 0.25);
        assert_eq!(check.stable_ms, Some(100.0));
        // max(125, 150) ms: the absolute margin wins for a fast stable.
        assert_eq!(check.threshold_ms, 150.0);
        assert_eq!(check.finding, LatencyFinding::Slower);
        assert!(
            check
                .explain()
                .contains("slower than stable beyond the margin")
        );
    }

    #[test]
    fn given_a_candidate_above_both_stable_and_the_limit_then_the_limit_is_what_is_said() {
        let stable = latencies(20_000, 0.03, 200.0);
        let candidate = latencies(500, 0.50, 900.0);
        let check = check_latency(&p95(800), &candidate, &stable, 0.25);
        assert_eq!(check.finding, LatencyFinding::AboveLimit);
        assert_eq!((check.threshold_ms, check.candidate_slow), (800.0, 250));
    }

    #[test]
    fn given_a_candidate_like_stable_then_it_is_shown_not_slower() {
        let stable = latencies(20_000, 0.03, 200.0);
        let candidate = latencies(2_000, 0.03, 200.0);
        let check = check_latency(&p95(800), &candidate, &stable, 0.25);
        // Requests in [200, 300) may be above the 150 ms threshold: 3% of them, under 5%.
        assert_eq!(check.finding, LatencyFinding::NotSlower);
    }

    #[test]
    fn a_quiet_stable_is_not_compared_with_and_few_candidate_requests_decide_nothing() {
        let stable = latencies(100, 0.0, 200.0);
        let candidate = latencies(10, 0.1, 900.0);
        let check = check_latency(&p95(800), &candidate, &stable, 0.25);
        assert_eq!(check.stable_ms, None);
        assert_eq!(check.threshold_ms, 800.0);
        assert_eq!(check.finding, LatencyFinding::Undecided);
        let none = check_latency(&p95(800), &LatencyHistogram::default(), &stable, 0.25);
        assert_eq!(none.finding, LatencyFinding::Undecided);
        assert!(none.explain().contains("no requests"), "{}", none.explain());
    }

    #[test]
    fn a_slow_share_inside_a_bucket_that_straddles_the_threshold_never_fails() {
        // Every request in [700, 900): none is surely at or above 800 ms.
        let mut candidate = LatencyHistogram::default();
        candidate.add(700.0, 900.0, 10_000).unwrap();
        let check = check_latency(&p95(800), &candidate, &LatencyHistogram::default(), 0.25);
        assert_eq!(check.candidate_slow, 0);
        assert!(!check.failed());
    }

    #[test]
    fn latencies_read_as_people_write_them() {
        assert_eq!(milliseconds_text(850.0), "850ms");
        assert_eq!(milliseconds_text(1200.0), "1.2s");
        assert_eq!(milliseconds_text(2000.0), "2s");
        assert_eq!(milliseconds_text(4.25), "4.2ms");
        assert_eq!(p95(800).to_string(), "p95=800ms");
    }
}
