//! Prometheus HTTP API adapter: per-revision request and 5xx counts and latency histograms, each
//! one PromQL `increase()` over the window, from Managed Prometheus or any Prometheus with Cloud Run's series.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use crate::gcp::{Credentials, GoogleRest, Retry};
use crate::rollout::ports::{
    LatencyHistogram, Metrics, PortError, PortResult, RequestCounts, Window,
};

/// How Managed Prometheus names Cloud Run's `run.googleapis.com/request_count`.
pub const REQUEST_COUNT_SERIES: &str = "run_googleapis_com:request_count";
/// And `run.googleapis.com/request_latencies`, a histogram whose `le` is in milliseconds.
pub const REQUEST_LATENCIES_BUCKETS: &str = "run_googleapis_com:request_latencies_bucket";
const QUERY_BUDGET: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct PrometheusMetrics {
    rest: GoogleRest,
    service: String,
}

#[derive(Debug, Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<QueryData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    #[serde(default)]
    result: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]`.
    value: (f64, String),
}

impl PrometheusMetrics {
    /// A Prometheus server at `url` (its API root, e.g. `http://prometheus:9090`).
    pub fn server(url: &str, credentials: Credentials, service: &str) -> Self {
        Self {
            rest: GoogleRest::new(url, credentials),
            service: service.to_string(),
        }
    }

    /// Google Managed Prometheus' PromQL endpoint for `project` under the Monitoring base URL.
    pub fn managed(
        monitoring: &str,
        credentials: Credentials,
        project: &str,
        service: &str,
    ) -> Self {
        let root = format!(
            "{}/v1/projects/{project}/location/global/prometheus",
            monitoring.trim_end_matches('/')
        );
        Self::server(&root, credentials, service)
    }

    pub fn rest(&self) -> &GoogleRest {
        &self.rest
    }

    /// The PromQL for one window: requests per revision and class that the window added.
    pub fn promql(&self, window: Window) -> String {
        self.increase(
            "revision_name, response_code_class",
            REQUEST_COUNT_SERIES,
            window,
        )
    }

    /// The PromQL for the latencies of one window: requests per revision and histogram bucket.
    pub fn latency_promql(&self, window: Window) -> String {
        self.increase("revision_name, le", REQUEST_LATENCIES_BUCKETS, window)
    }

    fn increase(&self, by: &str, series: &str, window: Window) -> String {
        let length = window.end.duration_since(window.start).unwrap_or_default();
        format!(
            "sum by ({by}) (increase({series}{{service_name=\"{}\"}}[{}ms]))",
            self.service.replace('\\', "\\\\").replace('"', "\\\""),
            length.as_millis().max(1)
        )
    }

    /// One instant query at the end of `window`, its vector's samples.
    async fn instant(&self, promql: String, window: Window) -> PortResult<Vec<Sample>> {
        let query = [("query", promql), ("time", unix_seconds(window.end))];
        let answer = self
            .rest
            .send(
                Method::GET,
                "api/v1/query",
                &query,
                None,
                Retry::Safe,
                QUERY_BUDGET,
            )
            .await?;
        vector(answer)
    }
}

fn unix_seconds(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

#[async_trait]
impl Metrics for PrometheusMetrics {
    async fn request_counts(&self, window: Window) -> PortResult<BTreeMap<String, RequestCounts>> {
        let samples = self.instant(self.promql(window), window).await?;
        counts_from(&samples, window.end)
    }

    async fn latencies(&self, window: Window) -> PortResult<BTreeMap<String, LatencyHistogram>> {
        let samples = self.instant(self.latency_promql(window), window).await?;
        latencies_from(&samples, window.end)
    }
}

/// Reads the answer to the instant query for `window` into counts per revision. This is the
/// whole of what shiftgate believes of a Prometheus answer, public so that it can be tested and
/// fuzzed on its own.
pub fn read_answer(
    answer: serde_json::Value,
    window: Window,
) -> PortResult<BTreeMap<String, RequestCounts>> {
    counts_from(&vector(answer)?, window.end)
}

/// Reads the answer to the latency query for `window` into a histogram per revision.
pub fn read_latency_answer(
    answer: serde_json::Value,
    window: Window,
) -> PortResult<BTreeMap<String, LatencyHistogram>> {
    latencies_from(&vector(answer)?, window.end)
}

/// The samples of an instant query's vector; a failed query or another result type is an error.
fn vector(answer: serde_json::Value) -> PortResult<Vec<Sample>> {
    let answer: QueryResponse = serde_json::from_value(answer).map_err(|error| {
        PortError::Unavailable(format!("unexpected Prometheus answer: {error}"))
    })?;
    if answer.status != "success" {
        return Err(PortError::Rejected {
            status: 400,
            message: format!(
                "Prometheus query failed: {}",
                answer.error.unwrap_or(answer.status)
            ),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| PortError::Unavailable("Prometheus answered success without data".into()))?;
    if data.result_type != "vector" {
        return Err(PortError::Unavailable(format!(
            "Prometheus answered a {} where a vector was expected",
            data.result_type
        )));
    }
    Ok(data.result)
}

/// `increase()` over a window cannot legitimately reach this: beyond 2^53 a float no longer
/// holds a whole count exactly, so such a value is a broken series, not traffic.
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// One sample's count: `increase()` extrapolates to the window's edges, so a fractional count is
/// normal and is rounded; NaN, infinities, negatives and absurd sizes are a metrics error.
fn sample_count(sample: &Sample, revision: &str, class: &str) -> PortResult<u64> {
    let text = sample.value.1.as_str();
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && (0.0..=MAX_COUNT).contains(&value) => {
            Ok(value.round() as u64)
        }
        _ => Err(PortError::Unavailable(format!(
            "Prometheus returned a {class} count {text:?} for revision {revision}; not a non-negative count"
        ))),
    }
}

/// An instant query answers at the time it was asked for (to the millisecond we send); a sample
/// from another time covers another window.
fn check_evaluated_at(sample: &Sample, asked: f64, revision: &str, class: &str) -> PortResult<()> {
    if !sample.value.0.is_finite() || (sample.value.0 - asked).abs() > 0.002 {
        return Err(PortError::Unavailable(format!(
            "Prometheus returned a {class} count for revision {revision} evaluated at {}, not at the requested {asked:.3}",
            sample.value.0
        )));
    }
    Ok(())
}

fn unix_seconds_f64(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Turns each revision's cumulative `le` buckets into a histogram of `(previous le, le]`
/// buckets. `increase()` extrapolates each bucket on its own, so after rounding a bucket may
/// come out below the one before it: it is then taken as adding nothing, never as negative.
fn latencies_from(
    result: &[Sample],
    evaluated_at: SystemTime,
) -> PortResult<BTreeMap<String, LatencyHistogram>> {
    let asked = unix_seconds_f64(evaluated_at);
    let mut cumulative: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for sample in result {
        let Some(revision) = sample.metric.get("revision_name") else {
            continue;
        };
        check_evaluated_at(sample, asked, revision, "latency")?;
        let le = sample.metric.get("le").map(String::as_str).unwrap_or("");
        let bound = match le.trim() {
            "+Inf" | "Inf" | "inf" => f64::INFINITY,
            text => text.parse::<f64>().ok().filter(|b| b.is_finite()).ok_or_else(|| {
                PortError::Unavailable(format!(
                    "Prometheus returned a latency bucket le={le:?} for revision {revision}; not a bucket bound"
                ))
            })?,
        };
        let requests = sample_count(sample, revision, "latency")?;
        cumulative
            .entry(revision.clone())
            .or_default()
            .push((bound, requests));
    }
    let mut latencies = BTreeMap::new();
    for (revision, mut buckets) in cumulative {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(PortError::Unavailable(format!(
                "Prometheus returned one latency bucket twice for revision {revision}"
            )));
        }
        if buckets.last().is_none_or(|(bound, _)| bound.is_finite()) {
            return Err(PortError::Unavailable(format!(
                "Prometheus returned latency buckets for revision {revision} without le=\"+Inf\"; \
                 the histogram's slowest requests would be missing"
            )));
        }
        let mut histogram = LatencyHistogram::default();
        let (mut lower, mut below) = (f64::NEG_INFINITY, 0u64);
        for (upper, at_or_below) in buckets {
            let at_or_below = at_or_below.max(below);
            histogram
                .add(lower, upper, at_or_below - below)
                .map_err(PortError::Unavailable)?;
            (lower, below) = (upper, at_or_below);
        }
        latencies.insert(revision, histogram);
    }
    Ok(latencies)
}

/// Sums the vector per revision; any unreadable sample makes the whole answer an error, so a
/// broken count is never judged as zero errors.
fn counts_from(
    result: &[Sample],
    evaluated_at: SystemTime,
) -> PortResult<BTreeMap<String, RequestCounts>> {
    let asked = unix_seconds_f64(evaluated_at);
    let mut counts: BTreeMap<String, RequestCounts> = BTreeMap::new();
    for sample in result {
        let Some(revision) = sample.metric.get("revision_name") else {
            continue;
        };
        let class = sample
            .metric
            .get("response_code_class")
            .map(String::as_str)
            .unwrap_or("request");
        check_evaluated_at(sample, asked, revision, class)?;
        let requests = sample_count(sample, revision, class)?;
        let overflow = || {
            PortError::Unavailable(format!(
                "Prometheus' {class} counts for revision {revision} add up beyond any real count"
            ))
        };
        let entry = counts.entry(revision.clone()).or_default();
        entry.total = entry
            .total
            .checked_add(requests)
            .filter(|t| *t as f64 <= MAX_COUNT)
            .ok_or_else(overflow)?;
        if class == "5xx" {
            entry.server_errors = entry
                .server_errors
                .checked_add(requests)
                .filter(|t| *t as f64 <= MAX_COUNT)
                .ok_or_else(overflow)?;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_covers_exactly_the_window_for_one_service() {
        let metrics = PrometheusMetrics::server("http://127.0.0.1:1", Credentials::None, "app");
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let window = Window {
            start,
            end: start + Duration::from_millis(90_500),
        };
        assert_eq!(
            metrics.promql(window),
            "sum by (revision_name, response_code_class) (increase(run_googleapis_com:request_count{service_name=\"app\"}[90500ms]))"
        );
        assert_eq!(unix_seconds(window.end), "1800000090.500");
    }

    #[test]
    fn managed_prometheus_lives_under_the_monitoring_api() {
        let metrics = PrometheusMetrics::managed(
            "https://monitoring.googleapis.com/",
            Credentials::None,
            "loopcloser",
            "app",
        );
        assert_eq!(
            metrics.rest().base(),
            "https://monitoring.googleapis.com/v1/projects/loopcloser/location/global/prometheus"
        );
    }

    fn sample(revision: &str, class: &str, at: f64, value: &str) -> Sample {
        serde_json::from_value(serde_json::json!({
            "metric": {"revision_name": revision, "response_code_class": class},
            "value": [at, value],
        }))
        .unwrap()
    }

    const AT: f64 = 1_800_000_090.5;

    fn evaluated() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_090_500)
    }

    #[test]
    fn extrapolated_fractional_counts_are_rounded_and_summed() {
        let counts = counts_from(
            &[
                sample("app-2", "2xx", AT, "97.49"),
                sample("app-2", "5xx", AT, "2.5"),
                sample("app-1", "2xx", AT, "0"),
            ],
            evaluated(),
        )
        .unwrap();
        assert_eq!(
            counts["app-2"],
            RequestCounts {
                total: 100,
                server_errors: 3
            }
        );
        assert_eq!(counts["app-1"], RequestCounts::default());
    }

    #[test]
    fn counts_that_are_not_numbers_or_are_negative_or_absurd_are_a_metrics_error() {
        for bad in ["sixty", "-60", "NaN", "+Inf", "-Inf", "", "1e300", "1e17"] {
            let result = counts_from(
                &[
                    sample("app-2", "2xx", AT, "100"),
                    sample("app-2", "5xx", AT, bad),
                ],
                evaluated(),
            );
            match result {
                Err(PortError::Unavailable(message)) => assert!(
                    message.contains("5xx count") && message.contains("revision app-2"),
                    "{bad}: {message}"
                ),
                other => panic!("{bad:?} must be a metrics error, got {other:?}"),
            }
        }
    }

    #[test]
    fn counts_that_add_up_beyond_any_real_count_are_a_metrics_error() {
        let huge = "9007199254740992";
        let result = counts_from(
            &[
                sample("app-2", "5xx", AT, huge),
                sample("app-2", "5xx", AT, huge),
            ],
            evaluated(),
        );
        assert!(
            matches!(&result, Err(PortError::Unavailable(m)) if m.contains("add up")),
            "{result:?}"
        );
    }

    #[test]
    fn a_sample_evaluated_at_another_time_is_a_metrics_error() {
        let result = counts_from(&[sample("app-2", "5xx", AT - 600.0, "3")], evaluated());
        assert!(
            matches!(&result, Err(PortError::Unavailable(m)) if m.contains("not at the requested")),
            "{result:?}"
        );
    }
}
