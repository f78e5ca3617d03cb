//! Google's `Distribution` (Cloud Monitoring's DISTRIBUTION values) read into a latency histogram:
//! the three bucket layouts, the underflow and overflow buckets, and counts that must add up.

use serde::Deserialize;
use serde_json::Value;

use crate::rollout::ports::LatencyHistogram;

/// A layout with more buckets than this is not one a metric uses (Cloud Monitoring allows 200).
const MOST_BUCKETS: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Distribution {
    count: Option<Value>,
    bucket_options: Option<BucketOptions>,
    bucket_counts: Vec<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BucketOptions {
    linear_buckets: Option<Linear>,
    exponential_buckets: Option<Exponential>,
    explicit_buckets: Option<Explicit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Linear {
    num_finite_buckets: i64,
    width: f64,
    offset: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Exponential {
    num_finite_buckets: i64,
    growth_factor: f64,
    scale: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Explicit {
    bounds: Vec<f64>,
}

/// Adds one `distributionValue` to `histogram`. Anything that does not add up (counts that are
/// not int64, more counts than buckets, a sum other than `count`, a layout that is not one) is
/// an error: a histogram read wrong would judge latencies that were never measured.
pub fn add_distribution(histogram: &mut LatencyHistogram, value: &Value) -> Result<(), String> {
    let distribution: Distribution = serde_json::from_value(value.clone())
        .map_err(|error| format!("a distribution that is not one: {error}"))?;
    let count = match &distribution.count {
        None => 0,
        Some(raw) => int64(raw).ok_or_else(|| format!("a distribution count {raw}"))?,
    };
    let counts = distribution
        .bucket_counts
        .iter()
        .map(|raw| int64(raw).ok_or_else(|| format!("a bucket count {raw}")))
        .collect::<Result<Vec<u64>, String>>()?;
    let sum = counts
        .iter()
        .try_fold(0u64, |sum, c| sum.checked_add(*c))
        .ok_or("bucket counts that add up beyond an int64")?;
    if counts.is_empty() {
        return if count == 0 {
            Ok(())
        } else {
            Err(format!("{count} latencies without bucket counts"))
        };
    }
    if sum != count {
        return Err(format!(
            "bucket counts that add up to {sum}, not to its count {count}"
        ));
    }
    let options = distribution
        .bucket_options
        .ok_or("bucket counts without bucket options")?;
    let bounds = bounds(&options)?;
    // Bucket 0 is the underflow, the last the overflow: one more count than bounds at most.
    if counts.len() > bounds.len() + 1 {
        return Err(format!(
            "{} bucket counts for {} buckets",
            counts.len(),
            bounds.len() + 1
        ));
    }
    for (i, &n) in counts.iter().enumerate() {
        let lower = if i == 0 {
            f64::NEG_INFINITY
        } else {
            bounds[i - 1]
        };
        let upper = bounds.get(i).copied().unwrap_or(f64::INFINITY);
        histogram.add(lower, upper, n)?;
    }
    Ok(())
}

/// The finite bucket boundaries of a layout, strictly increasing: N finite buckets have N + 1.
fn bounds(options: &BucketOptions) -> Result<Vec<f64>, String> {
    let finite = |n: i64| -> Result<usize, String> {
        usize::try_from(n)
            .ok()
            .filter(|n| (1..=MOST_BUCKETS).contains(n))
            .ok_or_else(|| format!("a layout of {n} finite buckets"))
    };
    let bounds: Vec<f64> = match (
        &options.linear_buckets,
        &options.exponential_buckets,
        &options.explicit_buckets,
    ) {
        (Some(linear), None, None) => {
            let n = finite(linear.num_finite_buckets)?;
            if linear.width.is_nan() || linear.width <= 0.0 {
                return Err(format!("linear buckets of width {}", linear.width));
            }
            (0..=n)
                .map(|i| linear.offset + linear.width * i as f64)
                .collect()
        }
        (None, Some(exponential), None) => {
            let n = finite(exponential.num_finite_buckets)?;
            let (growth, scale) = (exponential.growth_factor, exponential.scale);
            if growth.is_nan() || growth <= 1.0 || scale.is_nan() || scale <= 0.0 {
                return Err(format!(
                    "exponential buckets growing by {} from {}",
                    exponential.growth_factor, exponential.scale
                ));
            }
            (0..=n)
                .map(|i| exponential.scale * exponential.growth_factor.powi(i as i32))
                .collect()
        }
        (None, None, Some(explicit)) => {
            if explicit.bounds.is_empty() || explicit.bounds.len() > MOST_BUCKETS {
                return Err(format!("{} explicit bounds", explicit.bounds.len()));
            }
            explicit.bounds.clone()
        }
        _ => return Err("bucket options that name no single layout".to_string()),
    };
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("bucket bounds that do not strictly increase".to_string());
    }
    Ok(bounds)
}

/// proto3 JSON writes int64 as a string of digits; a number is accepted too.
fn int64(raw: &Value) -> Option<u64> {
    let value = match raw {
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u64>().ok()
        }
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    value.filter(|v| *v <= i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value) -> Result<LatencyHistogram, String> {
        let mut histogram = LatencyHistogram::default();
        add_distribution(&mut histogram, &value).map(|()| histogram)
    }

    #[test]
    fn exponential_buckets_start_with_an_underflow_and_may_omit_trailing_zeros() {
        let h = read(json!({
            "count": "10",
            "bucketOptions": {"exponentialBuckets": {"numFiniteBuckets": 3, "growthFactor": 2, "scale": 100}},
            "bucketCounts": ["1", "2", "7"]
        }))
        .unwrap();
        let buckets: Vec<(f64, f64, u64)> = h
            .buckets()
            .iter()
            .map(|b| (b.lower_ms, b.upper_ms, b.count))
            .collect();
        assert_eq!(
            buckets,
            vec![
                (f64::NEG_INFINITY, 100.0, 1),
                (100.0, 200.0, 2),
                (200.0, 400.0, 7)
            ]
        );
    }

    #[test]
    fn linear_and_explicit_layouts_have_an_overflow_bucket() {
        let linear = read(json!({
            "count": 3,
            "bucketOptions": {"linearBuckets": {"numFiniteBuckets": 1, "width": 50, "offset": 0}},
            "bucketCounts": ["0", "1", "2"]
        }))
        .unwrap();
        assert_eq!(linear.surely_at_least(50.0), 2);
        let explicit = read(json!({
            "count": "4",
            "bucketOptions": {"explicitBuckets": {"bounds": [10, 100, 1000]}},
            "bucketCounts": ["0", "0", "1", "3"]
        }))
        .unwrap();
        assert_eq!(explicit.surely_at_least(1000.0), 3);
        assert_eq!(explicit.quantile_at_most(0.5), Some(f64::INFINITY));
    }

    #[test]
    fn distributions_that_do_not_add_up_are_errors() {
        let layout = json!({"explicitBuckets": {"bounds": [10, 100]}});
        for (value, says) in [
            (
                json!({"count": "5", "bucketOptions": layout, "bucketCounts": ["1", "1"]}),
                "not to its count 5",
            ),
            (
                json!({"count": "4", "bucketOptions": layout, "bucketCounts": ["1", "1", "1", "1"]}),
                "4 bucket counts for 3 buckets",
            ),
            (json!({"count": "4"}), "without bucket counts"),
            (
                json!({"count": "-1", "bucketOptions": layout, "bucketCounts": ["-1"]}),
                "count",
            ),
            (
                json!({"count": "1", "bucketOptions": {"explicitBuckets": {"bounds": [10, 10]}}, "bucketCounts": ["1"]}),
                "strictly increase",
            ),
            (
                json!({"count": "1", "bucketOptions": {"exponentialBuckets": {"numFiniteBuckets": 3, "growthFactor": 1, "scale": 1}}, "bucketCounts": ["1"]}),
                "growing by 1",
            ),
            (
                json!({"count": "1", "bucketCounts": ["1"]}),
                "without bucket options",
            ),
        ] {
            let error = read(value.clone()).unwrap_err();
            assert!(error.contains(says), "{value}: {error}");
        }
        assert_eq!(read(json!({})).unwrap().total(), 0);
    }
}
