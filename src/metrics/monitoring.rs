//! Cloud Monitoring v3 adapter: per-revision request and 5xx counts (`request_count`) and latency
//! distributions (`request_latencies`) of one Cloud Run service, each one `timeSeries.list` query.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::gcp::{GoogleRest, Retry, google_duration};
use crate::metrics::distribution::add_distribution;
use crate::rollout::ports::{
    LatencyHistogram, Metrics, PortError, PortResult, RequestCounts, Window,
};

pub const REQUEST_COUNT_METRIC: &str = "run.googleapis.com/request_count";
/// Cloud Run's request latencies: a DELTA DISTRIBUTION in milliseconds.
pub const REQUEST_LATENCIES_METRIC: &str = "run.googleapis.com/request_latencies";
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
    interval: Option<Interval>,
    value: TypedValue,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Interval {
    start_time: Option<String>,
    end_time: Option<String>,
}

/// Kept as raw JSON so that a bad value is reported as itself, not as a parse error of the page.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TypedValue {
    int64_value: Option<Value>,
    double_value: Option<Value>,
    distribution_value: Option<Value>,
}

/// Counts are int64 on the wire; a sum beyond that is not data, however it came about.
const MAX_COUNT: u64 = i64::MAX as u64;

/// What a series is, for messages: its revision and response class.
struct SeriesName<'a> {
    revision: &'a str,
    class: &'a str,
}

impl SeriesName<'_> {
    fn bad_count(&self, raw: &Value) -> PortError {
        PortError::Unavailable(format!(
            "Cloud Monitoring returned a {} count {raw} for revision {}; not a non-negative integer",
            self.class, self.revision
        ))
    }
}

/// The interval a window is asked for with, as the query sends it (to the millisecond), and
/// the alignment period: a legitimate point lies inside `[end - alignment, end]`.
#[derive(Debug, Clone, Copy)]
struct Requested {
    start: SystemTime,
    end: SystemTime,
    alignment: Duration,
}

impl Requested {
    fn new(window: Window) -> Self {
        let length = window.end.duration_since(window.start).unwrap_or_default();
        let whole_seconds =
            Duration::from_secs(length.as_secs() + u64::from(length.subsec_nanos() > 0));
        Self {
            start: millis(window.start),
            end: millis(window.end),
            alignment: whole_seconds.max(MIN_ALIGNMENT),
        }
    }

    /// The earliest start a point may have: ALIGN_DELTA makes one period end at `end`, and a
    /// window shorter than a period is read as the period ending with it.
    fn earliest(&self) -> SystemTime {
        self.end
            .checked_sub(self.alignment)
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .min(self.start)
    }
}

fn millis(at: SystemTime) -> SystemTime {
    humantime::parse_rfc3339(&rfc3339_millis(at)).unwrap_or(at)
}

fn rfc3339_millis(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// Refuses a point not dated inside the request: it would count another window's requests.
fn check_point_time(point: &Point, series: &SeriesName, requested: &Requested) -> PortResult<()> {
    let interval = point.interval.as_ref();
    let time = |field: Option<&String>, name: &str| -> PortResult<SystemTime> {
        let text = field.ok_or_else(|| {
            PortError::Unavailable(format!(
                "Cloud Monitoring returned a {} point for revision {} without an interval {name}",
                series.class, series.revision
            ))
        })?;
        humantime::parse_rfc3339_weak(text).map_err(|error| {
            PortError::Unavailable(format!(
                "Cloud Monitoring returned a {} point for revision {} with the {name} {text:?}: {error}",
                series.class, series.revision
            ))
        })
    };
    let end = time(interval.and_then(|i| i.end_time.as_ref()), "endTime")?;
    let start = time(interval.and_then(|i| i.start_time.as_ref()), "startTime")?;
    if start > end || start < requested.earliest() || end > requested.end || end <= requested.start
    {
        return Err(PortError::Unavailable(format!(
            "Cloud Monitoring returned a {} point for revision {} dated {} to {}, outside the requested window {} to {}",
            series.class,
            series.revision,
            rfc3339_millis(start),
            rfc3339_millis(end),
            rfc3339_millis(requested.start),
            rfc3339_millis(requested.end)
        )));
    }
    Ok(())
}

/// One point's count, refused unless it is a non-negative int64 dated inside the request.
fn point_count(point: &Point, series: &SeriesName, requested: &Requested) -> PortResult<u64> {
    check_point_time(point, series, requested)?;
    match (&point.value.int64_value, &point.value.double_value) {
        (Some(raw), _) => {
            let count = match raw {
                // proto3 JSON writes int64 as a string of digits; a number is accepted too.
                Value::String(text)
                    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    text.parse::<u64>().ok()
                }
                Value::Number(n) => n.as_u64(),
                _ => None,
            };
            count
                .filter(|c| *c <= MAX_COUNT)
                .ok_or_else(|| series.bad_count(raw))
        }
        (None, Some(raw)) => {
            // A request count is INT64, but a whole-number double carries the same count.
            let count = raw
                .as_f64()
                .filter(|v| v.is_finite() && *v >= 0.0 && v.fract() == 0.0 && *v <= 2f64.powi(53));
            count.map(|v| v as u64).ok_or_else(|| series.bad_count(raw))
        }
        (None, None) => Err(PortError::Unavailable(format!(
            "Cloud Monitoring returned a {} point for revision {} without a value",
            series.class, series.revision
        ))),
    }
}

fn add_count(sum: u64, count: u64, series: &SeriesName) -> PortResult<u64> {
    sum.checked_add(count)
        .filter(|total| *total <= MAX_COUNT)
        .ok_or_else(|| {
            PortError::Unavailable(format!(
                "Cloud Monitoring's {} counts for revision {} add up to more than an int64 holds; the data cannot be right",
                series.class, series.revision
            ))
        })
}

/// Adds one page of series to `counts`; any unreadable point makes the whole answer an error,
/// since a count read as zero would judge the candidate on data that is not there.
fn add_page(
    counts: &mut BTreeMap<String, RequestCounts>,
    page: &ListTimeSeriesResponse,
    requested: &Requested,
) -> PortResult<()> {
    for series in &page.time_series {
        let Some(revision) = series.resource.labels.get("revision_name") else {
            continue;
        };
        let class = series.metric.labels.get("response_code_class");
        let name = SeriesName {
            revision,
            class: class.map(String::as_str).unwrap_or("request"),
        };
        let mut requests = 0u64;
        for point in &series.points {
            requests = add_count(requests, point_count(point, &name, requested)?, &name)?;
        }
        let entry = counts.entry(revision.clone()).or_default();
        entry.total = add_count(entry.total, requests, &name)?;
        if class.is_some_and(|class| class == "5xx") {
            entry.server_errors = add_count(entry.server_errors, requests, &name)?;
        }
    }
    Ok(())
}

/// Reads one `timeSeries.list` answer to a query for `window` into `counts` and returns the
/// token of the next page, if any. This is the whole of what shiftgate believes of Monitoring's
/// answers, public so that it can be tested and fuzzed on its own.
pub fn read_answer(
    counts: &mut BTreeMap<String, RequestCounts>,
    answer: Value,
    window: Window,
) -> PortResult<Option<String>> {
    read_page(counts, answer, &Requested::new(window))
}

fn read_page(
    counts: &mut BTreeMap<String, RequestCounts>,
    answer: Value,
    requested: &Requested,
) -> PortResult<Option<String>> {
    let page: ListTimeSeriesResponse = serde_json::from_value(answer)
        .map_err(|error| PortError::Unavailable(format!("unexpected timeSeries JSON: {error}")))?;
    add_page(counts, &page, requested)?;
    Ok(page.next_page_token.filter(|t| !t.is_empty()))
}

/// Reads one `timeSeries.list` answer to a latency query for `window` into `latencies` and
/// returns the token of the next page, if any. Public so that it can be tested and fuzzed.
pub fn read_latency_answer(
    latencies: &mut BTreeMap<String, LatencyHistogram>,
    answer: Value,
    window: Window,
) -> PortResult<Option<String>> {
    read_latency_page(latencies, answer, &Requested::new(window))
}

fn read_latency_page(
    latencies: &mut BTreeMap<String, LatencyHistogram>,
    answer: Value,
    requested: &Requested,
) -> PortResult<Option<String>> {
    let page: ListTimeSeriesResponse = serde_json::from_value(answer)
        .map_err(|error| PortError::Unavailable(format!("unexpected timeSeries JSON: {error}")))?;
    for series in &page.time_series {
        let Some(revision) = series.resource.labels.get("revision_name") else {
            continue;
        };
        let name = SeriesName {
            revision,
            class: "latency",
        };
        let histogram = latencies.entry(revision.clone()).or_default();
        for point in &series.points {
            check_point_time(point, &name, requested)?;
            let value = point.value.distribution_value.as_ref().ok_or_else(|| {
                PortError::Unavailable(format!(
                    "Cloud Monitoring returned a latency point for revision {revision} without a distribution"
                ))
            })?;
            add_distribution(histogram, value).map_err(|problem| {
                PortError::Unavailable(format!(
                    "Cloud Monitoring returned {problem} for the latencies of revision {revision}"
                ))
            })?;
        }
    }
    Ok(page.next_page_token.filter(|t| !t.is_empty()))
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
        self.query_for(
            REQUEST_COUNT_METRIC,
            &[
                "resource.labels.revision_name",
                "metric.labels.response_code_class",
            ],
            window,
        )
    }

    /// The query parameters for the latencies of one window: one distribution per revision.
    pub fn latency_query(&self, window: Window) -> Vec<(&'static str, String)> {
        self.query_for(
            REQUEST_LATENCIES_METRIC,
            &["resource.labels.revision_name"],
            window,
        )
    }

    fn query_for(
        &self,
        metric: &str,
        group_by: &[&str],
        window: Window,
    ) -> Vec<(&'static str, String)> {
        let alignment = Requested::new(window).alignment;
        // Revisions are grouped by name, and only the two under rollout are read, so the
        // service name is filter enough (the form DESIGN.md gives, which fakes implement).
        let filter = format!(
            "metric.type=\"{metric}\" AND resource.labels.service_name=\"{}\"",
            self.service
        );
        let mut query = vec![
            ("filter", filter),
            ("interval.startTime", rfc3339_millis(window.start)),
            ("interval.endTime", rfc3339_millis(window.end)),
            ("aggregation.alignmentPeriod", google_duration(alignment)),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA".to_string()),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM".to_string()),
        ];
        query.extend(
            group_by
                .iter()
                .map(|field| ("aggregation.groupByFields", field.to_string())),
        );
        query.push(("view", "FULL".to_string()));
        query
    }

    /// Sends `query` and each next page's, handing every answer to `read_page` until one has
    /// no next page.
    async fn list_pages(
        &self,
        query: Vec<(&'static str, String)>,
        mut read_page: impl FnMut(Value) -> PortResult<Option<String>>,
    ) -> PortResult<()> {
        let path = format!("v3/projects/{}/timeSeries", self.project);
        let mut page_token: Option<String> = None;
        loop {
            let mut query = query.clone();
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let answer = self
                .rest
                .send(Method::GET, &path, &query, None, Retry::Safe, QUERY_BUDGET)
                .await?;
            match read_page(answer)? {
                Some(token) => page_token = Some(token),
                None => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl Metrics for CloudMonitoring {
    async fn request_counts(&self, window: Window) -> PortResult<BTreeMap<String, RequestCounts>> {
        let mut counts: BTreeMap<String, RequestCounts> = BTreeMap::new();
        let requested = Requested::new(window);
        self.list_pages(self.query(window), |answer| {
            read_page(&mut counts, answer, &requested)
        })
        .await?;
        Ok(counts)
    }

    async fn latencies(&self, window: Window) -> PortResult<BTreeMap<String, LatencyHistogram>> {
        let mut latencies: BTreeMap<String, LatencyHistogram> = BTreeMap::new();
        let requested = Requested::new(window);
        self.list_pages(self.latency_query(window), |answer| {
            read_latency_page(&mut latencies, answer, &requested)
        })
        .await?;
        Ok(latencies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::Credentials;
    use serde_json::json;

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

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn rfc(t: SystemTime) -> String {
        humantime::format_rfc3339_nanos(t).to_string()
    }

    /// A 2xx series of 100 and a 5xx series with `value` over `(start, end]`, as Monitoring sends them.
    fn page(value: Value, start: SystemTime, end: SystemTime) -> ListTimeSeriesResponse {
        let point = |v: Value| json!({"interval": {"startTime": rfc(start), "endTime": rfc(end)}, "value": v});
        serde_json::from_value(json!({"timeSeries": [
            {"metric": {"labels": {"response_code_class": "2xx"}}, "resource": {"labels": {"revision_name": "app-2"}},
             "points": [point(json!({"int64Value": "100"}))]},
            {"metric": {"labels": {"response_code_class": "5xx"}}, "resource": {"labels": {"revision_name": "app-2"}},
             "points": [point(value)]},
        ]}))
        .unwrap()
    }

    /// The counts a page gives for a five-minute window ending at +300s.
    fn read(page: &ListTimeSeriesResponse) -> PortResult<BTreeMap<String, RequestCounts>> {
        let requested = Requested::new(Window {
            start: at(0),
            end: at(300),
        });
        let mut counts = BTreeMap::new();
        add_page(&mut counts, page, &requested).map(|()| counts)
    }

    fn unavailable(result: PortResult<BTreeMap<String, RequestCounts>>) -> String {
        match result {
            Err(PortError::Unavailable(message)) => message,
            other => panic!("expected a metrics error, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_points_are_summed_per_revision() {
        let counts = read(&page(json!({"int64Value": "6"}), at(0), at(300))).unwrap();
        assert_eq!(
            counts["app-2"],
            RequestCounts {
                total: 106,
                server_errors: 6
            }
        );
        // proto3 JSON may carry int64 as a number, and a whole double is the same count.
        let counts = read(&page(json!({"int64Value": 6}), at(0), at(300))).unwrap();
        assert_eq!(counts["app-2"].server_errors, 6);
        let counts = read(&page(json!({"doubleValue": 6.0}), at(0), at(300))).unwrap();
        assert_eq!(counts["app-2"].server_errors, 6);
    }

    #[test]
    fn a_count_that_is_not_a_non_negative_integer_is_a_metrics_error_not_zero() {
        for value in [
            json!({"int64Value": "sixty"}),
            json!({"int64Value": "-60"}),
            json!({"int64Value": "60.0"}),
            json!({"int64Value": "+60"}),
            json!({"int64Value": ""}),
            json!({"int64Value": "9223372036854775808"}),
            json!({"int64Value": -60}),
            json!({"doubleValue": 1.5}),
            json!({"doubleValue": -1.0}),
        ] {
            let message = unavailable(read(&page(value.clone(), at(0), at(300))));
            assert!(
                message.contains("5xx count") && message.contains("revision app-2"),
                "{value}: {message}"
            );
            assert!(message.contains("not a non-negative integer"), "{message}");
        }
        for empty in [json!({}), json!({"int64Value": null})] {
            let message = unavailable(read(&page(empty, at(0), at(300))));
            assert!(message.contains("without a value"), "{message}");
        }
        let message = unavailable(read(&page(json!({"int64Value": "sixty"}), at(0), at(300))));
        assert!(
            message.contains("\"sixty\""),
            "the value is quoted as it came: {message}"
        );
    }

    #[test]
    fn counts_that_wrap_an_int64_are_a_metrics_error() {
        let max = i64::MAX.to_string();
        let point = json!({"interval": {"startTime": rfc(at(0)), "endTime": rfc(at(300))}, "value": {"int64Value": max}});
        let page: ListTimeSeriesResponse = serde_json::from_value(json!({"timeSeries": [
            {"metric": {"labels": {"response_code_class": "5xx"}}, "resource": {"labels": {"revision_name": "app-2"}},
             "points": [point, point]},
        ]}))
        .unwrap();
        let message = unavailable(read(&page));
        assert!(message.contains("more than an int64"), "{message}");
        // One i64::MAX of 5xx on top of 2xx requests overflows the revision's total too.
        let message = unavailable(read(&self::page(
            json!({"int64Value": max}),
            at(0),
            at(300),
        )));
        assert!(message.contains("more than an int64"), "{message}");
    }

    #[test]
    fn points_dated_outside_the_requested_window_are_a_metrics_error() {
        for (start, end) in [
            (
                at(0) - Duration::from_secs(600),
                at(0) - Duration::from_secs(300),
            ),
            (at(360), at(660)),
            (at(0), at(301)),
            (at(200), at(100)),
        ] {
            let message = unavailable(read(&page(json!({"int64Value": "6"}), start, end)));
            assert!(
                message.contains("outside the requested window"),
                "{message}"
            );
        }
        let point = json!({"value": {"int64Value": "6"}});
        let page: ListTimeSeriesResponse = serde_json::from_value(json!({"timeSeries": [
            {"metric": {"labels": {"response_code_class": "5xx"}}, "resource": {"labels": {"revision_name": "app-2"}},
             "points": [point]},
        ]}))
        .unwrap();
        assert!(unavailable(read(&page)).contains("without an interval endTime"));
    }

    #[test]
    fn the_alignment_a_short_window_is_read_with_is_not_out_of_window() {
        // A 20 s window is asked for with a 60 s alignment: its point starts 40 s before it.
        let requested = Requested::new(Window {
            start: at(40),
            end: at(60),
        });
        let mut counts = BTreeMap::new();
        add_page(
            &mut counts,
            &page(json!({"int64Value": "2"}), at(0), at(60)),
            &requested,
        )
        .unwrap();
        assert_eq!(counts["app-2"].server_errors, 2);
        // A window of 300.5 s is asked for with a 301 s alignment, and the times to the millisecond.
        let requested = Requested::new(Window {
            start: at(0) - Duration::from_micros(500_250),
            end: at(300) + Duration::from_micros(250),
        });
        let mut counts = BTreeMap::new();
        add_page(
            &mut counts,
            &page(
                json!({"int64Value": "2"}),
                at(0) - Duration::from_secs(1),
                at(300),
            ),
            &requested,
        )
        .unwrap();
        assert_eq!(counts["app-2"].total, 102);
    }
}
