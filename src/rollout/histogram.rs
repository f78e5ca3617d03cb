//! Latency histograms as metrics backends give them (counts in buckets of known bounds, in
//! milliseconds), and the questions the latency gate asks of them, answered only as far as the buckets show.

use serde::Serialize;

/// Requests whose latency fell between `lower_ms` and `upper_ms`. Cloud Monitoring's buckets are
/// `[lower, upper)` and Prometheus' `(lower, upper]`; the gate never needs the difference,
/// because it only counts a request as slow (or fast) when its whole bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// `-inf` for an underflow bucket.
    pub lower_ms: f64,
    /// `+inf` for an overflow bucket.
    pub upper_ms: f64,
    pub count: u64,
}

/// One revision's latencies over a window. Buckets from different layouts may be mixed (two
/// windows, two backends): each keeps its own bounds, so nothing is ever split or guessed.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LatencyHistogram {
    buckets: Vec<Bucket>,
}

impl LatencyHistogram {
    /// Adds `count` requests between `lower_ms` and `upper_ms`; refuses bounds that are not a
    /// range (NaN, or lower not below upper).
    pub fn add(&mut self, lower_ms: f64, upper_ms: f64, count: u64) -> Result<(), String> {
        if lower_ms.is_nan() || upper_ms.is_nan() || lower_ms >= upper_ms {
            return Err(format!(
                "a latency bucket from {lower_ms} to {upper_ms} ms is not a range"
            ));
        }
        if count == 0 {
            return Ok(());
        }
        match self
            .buckets
            .iter_mut()
            .find(|b| b.lower_ms == lower_ms && b.upper_ms == upper_ms)
        {
            Some(bucket) => bucket.count = bucket.count.saturating_add(count),
            None => {
                self.buckets.push(Bucket {
                    lower_ms,
                    upper_ms,
                    count,
                });
                self.buckets.sort_by(|a, b| {
                    a.upper_ms
                        .total_cmp(&b.upper_ms)
                        .then(a.lower_ms.total_cmp(&b.lower_ms))
                });
            }
        }
        Ok(())
    }

    /// Both histograms' requests together.
    pub fn plus(&self, other: &LatencyHistogram) -> LatencyHistogram {
        let mut sum = self.clone();
        for bucket in &other.buckets {
            // Bounds in `other` were checked when they went in.
            let _ = sum.add(bucket.lower_ms, bucket.upper_ms, bucket.count);
        }
        sum
    }

    pub fn total(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0u64, |sum, b| sum.saturating_add(b.count))
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Requests that surely took at least `limit_ms`: those whose whole bucket lies at or above it.
    pub fn surely_at_least(&self, limit_ms: f64) -> u64 {
        self.buckets
            .iter()
            .filter(|b| b.lower_ms >= limit_ms)
            .fold(0u64, |sum, b| sum.saturating_add(b.count))
    }

    /// Requests that may have taken `limit_ms` or more: all but those whose whole bucket lies at
    /// or below it.
    pub fn maybe_at_least(&self, limit_ms: f64) -> u64 {
        let fast = self
            .buckets
            .iter()
            .filter(|b| b.upper_ms <= limit_ms)
            .fold(0u64, |sum, b| sum.saturating_add(b.count));
        self.total().saturating_sub(fast)
    }

    /// The `q`-quantile at its highest: the upper bound of the bucket it falls in (`+inf` when
    /// that is the overflow bucket). `None` without requests.
    pub fn quantile_at_most(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        self.buckets.iter().find_map(|b| {
            seen = seen.saturating_add(b.count);
            (seen >= rank).then_some(b.upper_ms)
        })
    }

    /// The `q`-quantile for people to read: interpolated within its bucket (as Prometheus'
    /// `histogram_quantile` does), the lower bound in an overflow bucket. `None` without requests.
    pub fn quantile_estimate(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for bucket in &self.buckets {
            let before = seen;
            seen = seen.saturating_add(bucket.count);
            if seen as f64 >= rank {
                let lower = if bucket.lower_ms.is_finite() {
                    bucket.lower_ms.max(0.0)
                } else {
                    0.0
                };
                if !bucket.upper_ms.is_finite() {
                    return Some(lower);
                }
                let within = (rank - before as f64) / bucket.count as f64;
                return Some(lower + (bucket.upper_ms - lower) * within.clamp(0.0, 1.0));
            }
        }
        self.buckets.last().map(|b| b.lower_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(buckets: &[(f64, f64, u64)]) -> LatencyHistogram {
        let mut h = LatencyHistogram::default();
        for &(lower, upper, count) in buckets {
            h.add(lower, upper, count).unwrap();
        }
        h
    }

    #[test]
    fn slow_and_fast_requests_are_counted_only_where_their_whole_bucket_is() {
        let h = histogram(&[(0.0, 100.0, 80), (100.0, 500.0, 15), (500.0, 1000.0, 5)]);
        assert_eq!(h.total(), 100);
        // 300 ms falls inside the middle bucket: its 15 may or may not be that slow.
        assert_eq!(h.surely_at_least(300.0), 5);
        assert_eq!(h.maybe_at_least(300.0), 20);
        assert_eq!(h.surely_at_least(500.0), 5);
        assert_eq!(h.maybe_at_least(500.0), 5);
    }

    #[test]
    fn quantiles_are_bounded_by_bucket_edges_and_interpolated_for_reading() {
        let h = histogram(&[
            (0.0, 100.0, 80),
            (100.0, 500.0, 15),
            (500.0, f64::INFINITY, 5),
        ]);
        assert_eq!(h.quantile_at_most(0.5), Some(100.0));
        assert_eq!(h.quantile_at_most(0.95), Some(500.0));
        assert_eq!(h.quantile_at_most(0.99), Some(f64::INFINITY));
        let p90 = h.quantile_estimate(0.9).unwrap();
        assert!((p90 - (100.0 + 400.0 * 10.0 / 15.0)).abs() < 1e-9, "{p90}");
        assert_eq!(h.quantile_estimate(0.99), Some(500.0));
        assert_eq!(LatencyHistogram::default().quantile_at_most(0.5), None);
    }

    #[test]
    fn histograms_of_two_layouts_add_up_without_splitting_buckets() {
        let google = histogram(&[(f64::NEG_INFINITY, 1.0, 2), (1.0, 1.4, 3)]);
        let prometheus = histogram(&[(0.0, 1.0, 4), (1.0, 1.4, 1)]);
        let both = google.plus(&prometheus);
        assert_eq!(both.total(), 10);
        assert_eq!(both.buckets().len(), 3);
        assert_eq!(both.surely_at_least(1.0), 4);
    }

    #[test]
    fn bounds_that_are_not_a_range_are_refused() {
        let mut h = LatencyHistogram::default();
        assert!(h.add(5.0, 5.0, 1).is_err());
        assert!(h.add(f64::NAN, 5.0, 1).is_err());
        assert!(h.add(0.0, 5.0, u64::MAX).is_ok());
        assert!(h.add(0.0, 5.0, 1).is_ok());
        assert_eq!(h.total(), u64::MAX);
    }
}
