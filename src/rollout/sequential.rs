//! Anytime-valid evidence about 5xx rates: mixture likelihood ratios (e-processes) on binomial
//! counts, and the confidence bounds they give, valid however often a rollout looks at them.

use serde::Serialize;

use crate::rollout::ports::RequestCounts;

/// The alternatives each mixture averages over: a rate `m` times higher (or lower) than the one
/// tested. Equal weights; a wide spread finds both a doubling fast and a ×10 jump at once.
const MULTIPLIERS: [f64; 6] = [1.25, 1.5, 2.0, 3.0, 5.0, 10.0];

/// ln E for "the true rate is above `q`": the mean over `m` of the likelihood ratio of rate `m·q`
/// against `q`. Under any rate ≤ `q` it is a nonnegative supermartingale, so it reaches 1/α with
/// probability at most α, at any time. Decreasing in `q`. An alternative past 100% counts as 0.
pub fn ln_evidence_above(counts: RequestCounts, q: f64) -> f64 {
    if q.is_nan() || q >= 1.0 {
        return f64::NEG_INFINITY;
    }
    let q = q.max(0.0);
    let x = counts.server_errors as f64;
    let rest = counts.total.saturating_sub(counts.server_errors) as f64;
    if q == 0.0 {
        // Against a zero rate a single failure is proof; without one there is no evidence.
        return if counts.server_errors > 0 {
            f64::INFINITY
        } else {
            0.0
        };
    }
    mean_exp(MULTIPLIERS.iter().map(|&m| {
        let alternative = m * q;
        if alternative >= 1.0 {
            return if counts.total == counts.server_errors && alternative == 1.0 {
                x * m.ln()
            } else {
                f64::NEG_INFINITY
            };
        }
        x * m.ln() + rest * ((1.0 - alternative).ln() - (1.0 - q).ln())
    }))
}

/// ln E for "the true rate is below `q`": the mean over `m` of the likelihood ratio of rate `q/m`
/// against `q`. The mirror of [`ln_evidence_above`]; increasing in `q`.
pub fn ln_evidence_below(counts: RequestCounts, q: f64) -> f64 {
    if q.is_nan() || q <= 0.0 {
        return f64::NEG_INFINITY;
    }
    let x = counts.server_errors as f64;
    let rest = counts.total.saturating_sub(counts.server_errors) as f64;
    if q >= 1.0 {
        // Against a 100% rate a single success is proof.
        return if rest > 0.0 {
            f64::INFINITY
        } else {
            mean_exp(MULTIPLIERS.iter().map(|&m| -x * m.ln()))
        };
    }
    mean_exp(
        MULTIPLIERS
            .iter()
            .map(|&m| -x * m.ln() + rest * ((1.0 - q / m).ln() - (1.0 - q).ln())),
    )
}

/// ln of the mean of `exp(terms)`, without overflow for millions of requests.
fn mean_exp(terms: impl Iterator<Item = f64>) -> f64 {
    let terms: Vec<f64> = terms.collect();
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if top.is_infinite() {
        return top;
    }
    let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
    top + (sum / terms.len() as f64).ln()
}

/// The rates not ruled out at level `alpha`: `lower` is the highest rate shown too low,
/// `upper` the lowest shown too high. Holds at every look at once with probability 1 − α each side.
/// With a grid of alternatives the bounds narrow to about ±12% of the rate, not to a point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bounds {
    pub lower: f64,
    pub upper: f64,
}

/// The confidence sequence for one revision's rate, by bisection on the two e-processes.
pub fn bounds(counts: RequestCounts, alpha: f64) -> Bounds {
    let needed = (1.0 / alpha).ln();
    let estimate = counts.error_rate().unwrap_or(0.0);
    // Rates above `upper` are those where the evidence of "below" reaches the level.
    let upper = bisect(estimate, 1.0, |q| ln_evidence_below(counts, q) >= needed);
    // Rates below `lower` are those where the evidence of "above" reaches the level.
    let lower = bisect(0.0, estimate, |q| ln_evidence_above(counts, q) < needed);
    Bounds { lower, upper }
}

/// The point in `[low, high]` where a monotone predicate turns from false to true (`high` when it
/// never does). 60 halvings: far below any rate a person would read.
fn bisect(mut low: f64, mut high: f64, reached: impl Fn(f64) -> bool) -> f64 {
    if !reached(high) {
        return high;
    }
    if reached(low) {
        return low;
    }
    for _ in 0..60 {
        let middle = 0.5 * (low + high);
        if reached(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    high
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

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn no_requests_is_no_evidence_either_way() {
        let none = RequestCounts::default();
        assert!(close(ln_evidence_above(none, 0.05), 0.0));
        assert!(close(ln_evidence_below(none, 0.05), 0.0));
        assert_eq!(none.error_rate(), None);
        let b = bounds(none, 0.01);
        assert_eq!((b.lower, b.upper), (0.0, 1.0));
    }

    #[test]
    fn one_request_matches_the_formula_written_out() {
        // One failure at q = 0.1: mean of m over the multipliers whose m·q < 1.
        let one_failure = counts(1, 1);
        let expected: f64 = MULTIPLIERS.iter().sum::<f64>() / 6.0;
        assert!(close(ln_evidence_above(one_failure, 0.1), expected.ln()));
        // One success at q = 0.1: mean of (1 − m·q)/(1 − q), where m = 10 gives 0.
        let one_success = counts(1, 0);
        let expected: f64 = MULTIPLIERS
            .iter()
            .map(|m| ((1.0 - m * 0.1) / 0.9_f64).max(0.0))
            .sum::<f64>()
            / 6.0;
        assert!(close(ln_evidence_above(one_success, 0.1), expected.ln()));
    }

    #[test]
    fn values_agree_with_an_independent_computation() {
        // Computed in Python with the formulas of issue 9 written out term by term (and the bounds
        // by 200 bisection steps), not with this module.
        let cases = [
            (
                ln_evidence_above(counts(200, 9), 0.03),
                -0.17856389225997718,
            ),
            (
                ln_evidence_below(counts(5000, 40), 0.012),
                2.566324233990939,
            ),
            (ln_evidence_above(counts(40, 0), 0.02), -1.0313862659707365),
        ];
        for (got, expected) in cases {
            assert!(close(got, expected), "{got} vs {expected}");
        }
        let b = bounds(counts(1000, 50), 0.01);
        assert!((b.upper - 0.07759156497706216).abs() < 1e-12, "{b:?}");
        assert!((b.lower - 0.029407359467363867).abs() < 1e-12, "{b:?}");
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let huge = counts(2_000_000_000, 100_000_000);
        let above = ln_evidence_above(huge, 0.04);
        let below = ln_evidence_below(huge, 0.06);
        assert!(above.is_finite() && above > 1_000.0, "{above}");
        assert!(below.is_finite() && below > 1_000.0, "{below}");
        // The bounds stop narrowing near the grid's finest step (×1.25): no alternative closer to
        // the truth than that carries evidence.
        let b = bounds(huge, 0.01);
        assert!(0.05 / 1.25 < b.lower && b.lower < 0.05, "{b:?}");
        assert!(0.05 < b.upper && b.upper < 0.05 * 1.25, "{b:?}");
    }

    #[test]
    fn bounds_hold_the_estimate_and_narrow_with_data() {
        let small = bounds(counts(100, 5), 0.01);
        let large = bounds(counts(100_000, 5_000), 0.01);
        for b in [small, large] {
            assert!(b.lower <= 0.05 && 0.05 <= b.upper, "{b:?}");
        }
        assert!(large.upper - large.lower < small.upper - small.lower);
    }

    #[test]
    fn edge_rates_are_proof_not_panics() {
        assert_eq!(ln_evidence_above(counts(10, 1), 0.0), f64::INFINITY);
        assert_eq!(ln_evidence_above(counts(10, 0), 0.0), 0.0);
        assert_eq!(ln_evidence_above(counts(10, 10), 1.0), f64::NEG_INFINITY);
        assert_eq!(ln_evidence_below(counts(10, 9), 1.0), f64::INFINITY);
        assert_eq!(ln_evidence_below(counts(10, 0), 0.0), f64::NEG_INFINITY);
        assert_eq!(bounds(counts(50, 0), 0.01).lower, 0.0);
        assert_eq!(bounds(counts(50, 50), 0.01).upper, 1.0);
    }
}
