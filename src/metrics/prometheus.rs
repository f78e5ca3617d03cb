//! Prometheus HTTP API adapter: per-revision request and 5xx counts from one PromQL `increase()`
//! over the window, from Google Managed Prometheus or any Prometheus holding Cloud Run's series.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use crate::gcp::{Credentials, GoogleRest, Retry};
use crate::rollout::ports::{Metrics, PortError, PortResult, RequestCounts, Window};

/// How Managed Prometheus names Cloud Run's `run.googleapis.com/request_count`.
pub const REQUEST_COUNT_SERIES: &str = "run_googleapis_com:request_count";
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
        let length = window.end.duration_since(window.start).unwrap_or_default();
        format!(
            "sum by (revision_name, response_code_class) (increase({REQUEST_COUNT_SERIES}{{service_name=\"{}\"}}[{}ms]))",
            self.service.replace('\\', "\\\\").replace('"', "\\\""),
            length.as_millis().max(1)
        )
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
        let query = [
            ("query", self.promql(window)),
            ("time", unix_seconds(window.end)),
        ];
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
        let data = answer.data.ok_or_else(|| {
            PortError::Unavailable("Prometheus answered success without data".into())
        })?;
        if data.result_type != "vector" {
            return Err(PortError::Unavailable(format!(
                "Prometheus answered a {} where a vector was expected",
                data.result_type
            )));
        }
        let mut counts: BTreeMap<String, RequestCounts> = BTreeMap::new();
        for sample in data.result {
            let Some(revision) = sample.metric.get("revision_name") else {
                continue;
            };
            // increase() extrapolates to the window's edges, so counts come back fractional.
            let requests = sample.value.1.parse::<f64>().unwrap_or(0.0);
            let requests = if requests.is_finite() && requests > 0.0 {
                requests.round() as u64
            } else {
                0
            };
            let entry = counts.entry(revision.clone()).or_default();
            entry.total += requests;
            if sample.metric.get("response_code_class").map(String::as_str) == Some("5xx") {
                entry.server_errors += requests;
            }
        }
        Ok(counts)
    }
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
}
