//! Cloud Monitoring v3 adapter: per-revision request and 5xx counts of one Cloud Run service from
//! `run.googleapis.com/request_count`, summed over a window with one `timeSeries.list` query.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use crate::gcp::{GoogleRest, Retry, google_duration};
use crate::rollout::ports::{Metrics, PortError, PortResult, RequestCounts, Window};

pub const REQUEST_COUNT_METRIC: &str = "run.googleapis.com/request_count";
/// Cloud Monitoring refuses alignment periods shorter than a minute.
const MIN_ALIGNMENT: Duration = Duration::from_secs(60);
const QUERY_BUDGET: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct CloudMonitoring {
    rest: GoogleRest,
    project: String,
    service: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ListTimeSeriesResponse {
    time_series: Vec<TimeSeries>,
    next_page_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TimeSeries {
    metric: Labelled,
    resource: Labelled,
    points: Vec<Point>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Labelled {
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Point {
    value: TypedValue,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TypedValue {
    /// int64 travels as a JSON string.
    int64_value: Option<String>,
    double_value: Option<f64>,
}

impl TypedValue {
    fn count(&self) -> u64 {
        match (&self.int64_value, self.double_value) {
            (Some(text), _) => text.parse::<i64>().map(|n| n.max(0) as u64).unwrap_or(0),
            (None, Some(value)) if value.is_finite() && value > 0.0 => value.round() as u64,
            _ => 0,
        }
    }
}

impl CloudMonitoring {
    pub fn new(rest: GoogleRest, project: &str, service: &str) -> Self {
        Self {
            rest,
            project: project.to_string(),
            service: service.to_string(),
        }
    }

    pub fn rest(&self) -> &GoogleRest {
        &self.rest
    }

    /// The query parameters for one window. The alignment period covers the whole window in one
    /// point where it can; a window shorter than a minute is read as the minute ending at its end.
    pub fn query(&self, window: Window) -> Vec<(&'static str, String)> {
        let length = window.end.duration_since(window.start).unwrap_or_default();
        let whole_seconds =
            Duration::from_secs(length.as_secs() + u64::from(length.subsec_nanos() > 0));
        let alignment = whole_seconds.max(MIN_ALIGNMENT);
        // Revisions are grouped by name, and only the two under rollout are read, so the
        // service name is filter enough (the form DESIGN.md gives, which fakes implement).
        let filter = format!(
            "metric.type=\"{REQUEST_COUNT_METRIC}\" AND resource.labels.service_name=\"{}\"",
            self.service
        );
        vec![
            ("filter", filter),
            (
                "interval.startTime",
                humantime::format_rfc3339_millis(window.start).to_string(),
            ),
            (
                "interval.endTime",
                humantime::format_rfc3339_millis(window.end).to_string(),
            ),
            ("aggregation.alignmentPeriod", google_duration(alignment)),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA".to_string()),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM".to_string()),
            (
                "aggregation.groupByFields",
                "resource.labels.revision_name".to_string(),
            ),
            (
                "aggregation.groupByFields",
                "metric.labels.response_code_class".to_string(),
            ),
            ("view", "FULL".to_string()),
        ]
    }
}

#[async_trait]
impl Metrics for CloudMonitoring {
    async fn request_counts(&self, window: Window) -> PortResult<BTreeMap<String, RequestCounts>> {
        let path = format!("v3/projects/{}/timeSeries", self.project);
        let mut counts: BTreeMap<String, RequestCounts> = BTreeMap::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = self.query(window);
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let answer = self
                .rest
                .send(Method::GET, &path, &query, None, Retry::Safe, QUERY_BUDGET)
                .await?;
            let page: ListTimeSeriesResponse = serde_json::from_value(answer).map_err(|error| {
                PortError::Unavailable(format!("unexpected timeSeries JSON: {error}"))
            })?;
            for series in &page.time_series {
                let Some(revision) = series.resource.labels.get("revision_name") else {
                    continue;
                };
                let requests: u64 = series.points.iter().map(|p| p.value.count()).sum();
                let entry = counts.entry(revision.clone()).or_default();
                entry.total += requests;
                if series
                    .metric
                    .labels
                    .get("response_code_class")
                    .is_some_and(|class| class == "5xx")
                {
                    entry.server_errors += requests;
                }
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => return Ok(counts),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::Credentials;
    use std::time::SystemTime;

    #[test]
    fn a_short_window_is_read_with_a_one_minute_alignment() {
        let monitoring = CloudMonitoring::new(
            GoogleRest::new("http://127.0.0.1:1", Credentials::None),
            "p",
            "app",
        );
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let short = monitoring.query(Window {
            start,
            end: start + Duration::from_secs(20),
        });
        assert!(short.contains(&("aggregation.alignmentPeriod", "60s".to_string())));
        let long = monitoring.query(Window {
            start,
            end: start + Duration::from_millis(300_500),
        });
        assert!(long.contains(&("aggregation.alignmentPeriod", "301s".to_string())));
        assert!(
            long.iter()
                .any(|(k, v)| *k == "filter" && v.contains("resource.labels.service_name=\"app\""))
        );
    }
}
