//! Latencies as Cloud Monitoring reports them: the bucket layouts of Google's
//! `Distribution.BucketOptions`, the one binning rule, and the `Distribution` value of a set of latencies.

use std::time::Duration;

use serde_json::{Value, json};

/// The buckets the simulator's latency distributions use, in milliseconds, with the rules of
/// Google's `Distribution.BucketOptions`: bucket 0 is the underflow `(-inf, first bound)`, each
/// finite bucket is `[lower, upper)`, and the last bucket is the overflow `[last bound, +inf)`.
#[derive(Debug, Clone, PartialEq)]
pub enum LatencyBuckets {
    /// Finite bucket i (1..=count) is `[scale·growth^(i−1), scale·growth^i)`.
    Exponential { count: u32, growth: f64, scale: f64 },
    /// Finite bucket i (1..=count) is `[offset + width·(i−1), offset + width·i)`.
    Linear { count: u32, width: f64, offset: f64 },
    /// Finite bucket i is `[b[i−1], b[i])`: one bound makes no finite bucket at all.
    Explicit(Vec<f64>),
}

impl Default for LatencyBuckets {
    /// 40 buckets growing by 1.4 from 1 ms, up to about 700 s.
    fn default() -> Self {
        LatencyBuckets::Exponential {
            count: 40,
            growth: 1.4,
            scale: 1.0,
        }
    }
}

impl LatencyBuckets {
    /// Why Google's API would refuse this layout, if it would.
    pub(crate) fn check(&self) -> Result<(), String> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let valid = match self {
            LatencyBuckets::Exponential {
                count,
                growth,
                scale,
            } => *count > 0 && positive(*scale) && growth.is_finite() && *growth > 1.0,
            LatencyBuckets::Linear {
                count,
                width,
                offset,
            } => *count > 0 && positive(*width) && offset.is_finite(),
            LatencyBuckets::Explicit(bounds) => {
                !bounds.is_empty()
                    && bounds.iter().all(|b| b.is_finite())
                    && bounds.windows(2).all(|w| w[0] < w[1])
            }
        };
        if valid {
            Ok(())
        } else {
            Err(format!(
                "{self:?} is not a bucket layout Cloud Monitoring accepts: exponential needs count > 0, \
                 growth > 1 and scale > 0; linear count > 0 and width > 0; explicit at least one \
                 bound, strictly increasing"
            ))
        }
    }

    /// Every bound between two buckets, ascending: finite bucket i is `[bounds[i−1], bounds[i])`.
    pub(crate) fn bounds(&self) -> Vec<f64> {
        match self {
            LatencyBuckets::Exponential {
                count,
                growth,
                scale,
            } => (0..=*count)
                .map(|i| scale * growth.powi(i as i32))
                .collect(),
            LatencyBuckets::Linear {
                count,
                width,
                offset,
            } => (0..=*count)
                .map(|i| offset + width * f64::from(i))
                .collect(),
            LatencyBuckets::Explicit(bounds) => bounds.clone(),
        }
    }

    /// `bucketOptions` as the Monitoring API writes it.
    pub(crate) fn options_json(&self) -> Value {
        match self {
            LatencyBuckets::Exponential {
                count,
                growth,
                scale,
            } => json!({"exponentialBuckets": {
                "numFiniteBuckets": count, "growthFactor": growth, "scale": scale,
            }}),
            LatencyBuckets::Linear {
                count,
                width,
                offset,
            } => json!({"linearBuckets": {
                "numFiniteBuckets": count, "width": width, "offset": offset,
            }}),
            LatencyBuckets::Explicit(bounds) => json!({"explicitBuckets": {"bounds": bounds}}),
        }
    }
}

/// Latencies binned by the simulator's one rule, Google's: a value on a bound belongs to the
/// bucket that bound opens (`[lower, upper)`). `/metrics` derives its `le` buckets from these
/// counts, so `le="b"` there counts latencies strictly below b, as Managed Prometheus shows a
/// Cloud Monitoring distribution, where a Prometheus client would count `<= b`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Binned {
    pub bounds: Vec<f64>,
    /// One count per bucket: underflow, the finite buckets, overflow (`bounds.len() + 1`).
    pub counts: Vec<u64>,
    /// The latencies in milliseconds, for the moments.
    pub millis: Vec<f64>,
}

impl Binned {
    pub fn new(buckets: &LatencyBuckets, latencies: impl IntoIterator<Item = Duration>) -> Self {
        let bounds = buckets.bounds();
        let mut counts = vec![0; bounds.len() + 1];
        let mut millis = Vec::new();
        for latency in latencies {
            // From nanoseconds, so a whole number of milliseconds is exact and lands on its bound.
            let ms = latency.as_nanos() as f64 / 1e6;
            counts[bounds.partition_point(|b| *b <= ms)] += 1;
            millis.push(ms);
        }
        Self {
            bounds,
            counts,
            millis,
        }
    }

    pub fn sum(&self) -> f64 {
        self.millis.iter().sum()
    }

    /// A `Distribution` value in the Monitoring API's JSON: int64 counts as strings, the
    /// trailing empty buckets left out (as the API may), mean and squared deviation in ms.
    pub fn distribution_json(&self, buckets: &LatencyBuckets) -> Value {
        let count = self.millis.len();
        let mean = if count == 0 {
            0.0
        } else {
            self.sum() / count as f64
        };
        let squared_deviation: f64 = self.millis.iter().map(|x| (x - mean).powi(2)).sum();
        let used = self
            .counts
            .iter()
            .rposition(|c| *c > 0)
            .map_or(0, |i| i + 1);
        let bucket_counts: Vec<String> = self.counts[..used].iter().map(u64::to_string).collect();
        json!({
            "count": count.to_string(),
            "mean": mean,
            "sumOfSquaredDeviation": squared_deviation,
            "bucketOptions": buckets.options_json(),
            "bucketCounts": bucket_counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[f64]) -> Vec<Duration> {
        values
            .iter()
            .map(|v| Duration::from_secs_f64(v / 1000.0))
            .collect()
    }

    #[test]
    fn the_default_is_40_exponential_buckets_of_growth_1_4_from_1ms() {
        let bounds = LatencyBuckets::default().bounds();
        assert_eq!(bounds.len(), 41);
        assert_eq!(bounds[0], 1.0);
        assert_eq!(bounds[1], 1.4);
        assert!((bounds[40] - 1.4f64.powi(40)).abs() < 1e-6);
    }

    #[test]
    fn a_value_on_a_bound_opens_the_next_bucket_in_every_layout() {
        let layouts = [
            LatencyBuckets::Exponential {
                count: 3,
                growth: 2.0,
                scale: 100.0,
            },
            LatencyBuckets::Linear {
                count: 3,
                width: 100.0,
                offset: 100.0,
            },
            LatencyBuckets::Explicit(vec![100.0, 200.0, 400.0]),
        ];
        let expected = [
            // bounds 100, 200, 400, 800
            vec![1, 2, 2, 1, 1],
            // bounds 100, 200, 300, 400
            vec![1, 2, 1, 1, 2],
            // bounds 100, 200, 400: two finite buckets
            vec![1, 2, 2, 2],
        ];
        let latencies = ms(&[99.999, 100.0, 199.0, 200.0, 399.0, 400.0, 800.0]);
        for (layout, expected) in layouts.iter().zip(expected) {
            layout.check().unwrap();
            let binned = Binned::new(layout, latencies.iter().copied());
            assert_eq!(binned.counts, expected, "{layout:?}");
            assert_eq!(binned.counts.iter().sum::<u64>(), 7);
        }
        let single = LatencyBuckets::Explicit(vec![50.0]);
        let binned = Binned::new(&single, ms(&[49.0, 50.0]));
        assert_eq!(binned.counts, vec![1, 1], "underflow and overflow only");
    }

    #[test]
    fn layouts_google_would_refuse_are_refused() {
        for layout in [
            LatencyBuckets::Exponential {
                count: 0,
                growth: 2.0,
                scale: 1.0,
            },
            LatencyBuckets::Exponential {
                count: 4,
                growth: 1.0,
                scale: 1.0,
            },
            LatencyBuckets::Linear {
                count: 4,
                width: 0.0,
                offset: 0.0,
            },
            LatencyBuckets::Explicit(vec![]),
            LatencyBuckets::Explicit(vec![1.0, 1.0]),
            LatencyBuckets::Explicit(vec![1.0, f64::NAN]),
        ] {
            assert!(layout.check().is_err(), "{layout:?}");
        }
    }

    #[test]
    fn a_distribution_value_has_the_moments_and_no_trailing_empty_buckets() {
        let layout = LatencyBuckets::Linear {
            count: 10,
            width: 100.0,
            offset: 0.0,
        };
        let binned = Binned::new(&layout, ms(&[50.0, 150.0, 150.0, 250.0]));
        assert_eq!(
            binned.distribution_json(&layout),
            json!({
                "count": "4",
                "mean": 150.0,
                "sumOfSquaredDeviation": 20000.0,
                "bucketOptions": {"linearBuckets": {"numFiniteBuckets": 10, "width": 100.0, "offset": 0.0}},
                "bucketCounts": ["0", "1", "2", "1"],
            })
        );
        let explicit = LatencyBuckets::Explicit(vec![1.0, 2.5]);
        assert_eq!(
            explicit.options_json(),
            json!({"explicitBuckets": {"bounds": [1.0, 2.5]}})
        );
        assert_eq!(
            LatencyBuckets::default().options_json(),
            json!({"exponentialBuckets": {"numFiniteBuckets": 40, "growthFactor": 1.4, "scale": 1.0}})
        );
    }
}
