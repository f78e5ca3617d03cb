//! Cloud Monitoring v3 `projects.timeSeries.list` over the simulator's request records, for Cloud Run's
//! `request_count` (DELTA, INT64) and `request_latencies` (DELTA, DISTRIBUTION in ms), with the aligners and reducers clients use.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::distribution::{Binned, LatencyBuckets};
use crate::error::ApiError;
use crate::faults::{BadPoint, PointAt};
use crate::model::SimModel;
use crate::state::{Hit, ServiceKey};
use crate::wire::{parse_google_duration, rfc3339};

pub const REQUEST_COUNT: &str = "run.googleapis.com/request_count";
pub const REQUEST_LATENCIES: &str = "run.googleapis.com/request_latencies";
const RESOURCE_TYPE: &str = "cloud_run_revision";

const PARAMS: &[&str] = &[
    "filter",
    "interval.startTime",
    "interval.endTime",
    "aggregation.alignmentPeriod",
    "aggregation.perSeriesAligner",
    "aggregation.crossSeriesReducer",
    "aggregation.groupByFields",
    "view",
    "pageSize",
    "pageToken",
    "orderBy",
];

const RESOURCE_LABELS: &[&str] = &[
    "project_id",
    "service_name",
    "revision_name",
    "location",
    "configuration_name",
];
const METRIC_LABELS: &[&str] = &["response_code", "response_code_class"];

/// One label a filter or `groupByFields` names: `(true, name)` for a resource label.
type LabelRef = (bool, String);

fn parse_label_ref(field: &str) -> Option<LabelRef> {
    for (prefixes, resource, known) in [
        (
            ["resource.labels.", "resource.label."],
            true,
            RESOURCE_LABELS,
        ),
        (["metric.labels.", "metric.label."], false, METRIC_LABELS),
    ] {
        for prefix in prefixes {
            if let Some(name) = field.strip_prefix(prefix)
                && known.contains(&name)
            {
                return Some((resource, name.to_string()));
            }
        }
    }
    None
}

/// `key = "value" AND …`: the only filter shape the simulator understands.
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut terms = Vec::new();
    let mut rest = filter.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| unsupported_filter(rest))?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.ends_with('!') || key.contains(char::is_whitespace) {
            return Err(unsupported_filter(rest));
        }
        let after = rest[eq + 1..].trim_start();
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| unsupported_filter(rest))?;
        let close = after.find('"').ok_or_else(|| {
            ApiError::invalid(format!("filter: unterminated string in '{filter}'."))
        })?;
        terms.push((key.to_string(), after[..close].to_string()));
        rest = after[close + 1..].trim_start();
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix("AND ")
            .ok_or_else(|| unsupported_filter(rest))?
            .trim_start();
    }
    Ok(terms)
}

fn unsupported_filter(part: &str) -> ApiError {
    ApiError::invalid(format!(
        "filter: the simulator supports only `key = \"value\"` terms joined by AND; cannot parse '{part}'."
    ))
}

fn rfc3339_param(query: &[(String, String)], name: &str) -> Result<SystemTime, ApiError> {
    let value = param(query, name)
        .ok_or_else(|| ApiError::invalid(format!("{name}: Required field is not set.")))?;
    humantime::parse_rfc3339(value).map_err(|e| {
        ApiError::invalid(format!(
            "Invalid value at '{name}' (type.googleapis.com/google.protobuf.Timestamp), Field '{name}', Invalid time format: {e}: \"{value}\""
        ))
    })
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A raw series before aggregation: its labels and the hits.
struct RawSeries {
    resource: BTreeMap<String, String>,
    metric: BTreeMap<String, String>,
    hits: Vec<Hit>,
}

/// What a series' points say about the hits of their period.
#[derive(Clone, Copy)]
enum Measure {
    Count,
    Latencies,
}

impl Measure {
    fn metric_type(self) -> &'static str {
        match self {
            Measure::Count => REQUEST_COUNT,
            Measure::Latencies => REQUEST_LATENCIES,
        }
    }

    fn value_type(self) -> &'static str {
        match self {
            Measure::Count => "INT64",
            Measure::Latencies => "DISTRIBUTION",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Measure::Count => "1",
            Measure::Latencies => "ms",
        }
    }

    /// The point value of one period's hits; no hits, no point (Cloud Run writes none).
    fn value(self, hits: &[&Hit], buckets: &LatencyBuckets) -> Option<Value> {
        if hits.is_empty() {
            return None;
        }
        Some(match self {
            Measure::Count => json!({"int64Value": hits.len().to_string()}),
            Measure::Latencies => {
                let binned = Binned::new(buckets, hits.iter().map(|h| h.latency));
                json!({"distributionValue": binned.distribution_json(buckets)})
            }
        })
    }
}

pub(crate) fn list_time_series(
    model: &SimModel,
    project: &str,
    query: &[(String, String)],
) -> Result<Value, ApiError> {
    for (k, _) in query {
        if k.starts_with("secondaryAggregation.") {
            return Err(ApiError::invalid(format!(
                "{k}: secondary aggregation is not supported by the simulator."
            )));
        }
        if !PARAMS.contains(&k.as_str())
            && !["alt", "prettyPrint", "key", "$.xgafv"].contains(&k.as_str())
        {
            return Err(ApiError::invalid(format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot bind query parameter."
            )));
        }
    }
    let filter = param(query, "filter")
        .ok_or_else(|| ApiError::invalid("filter: Required field is not set."))?;
    let mut metric_type = None;
    let mut label_filters: Vec<(LabelRef, String)> = Vec::new();
    for (key, value) in parse_filter(filter)? {
        match key.as_str() {
            "metric.type" => metric_type = Some(value),
            "resource.type" => {
                if value != RESOURCE_TYPE {
                    return Err(ApiError::invalid(format!(
                        "filter: resource.type \"{value}\" is not supported by the simulator (only {RESOURCE_TYPE})."
                    )));
                }
            }
            other => match parse_label_ref(other) {
                Some(label) => label_filters.push((label, value)),
                None => {
                    return Err(ApiError::invalid(format!(
                        "filter: the field '{other}' is not supported by the simulator."
                    )));
                }
            },
        }
    }
    let measure = match metric_type.as_deref() {
        Some(REQUEST_COUNT) => Measure::Count,
        Some(REQUEST_LATENCIES) => Measure::Latencies,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "filter: metric.type \"{other}\" is not supported by the simulator (only {REQUEST_COUNT} and {REQUEST_LATENCIES})."
            )));
        }
        None => {
            return Err(ApiError::invalid(
                "filter: a filter must specify exactly one metric.type.",
            ));
        }
    };
    let end = rfc3339_param(query, "interval.endTime")?;
    let start = rfc3339_param(query, "interval.startTime")?;
    if start > end {
        return Err(ApiError::invalid(
            "interval: the start time must not be later than the end time.",
        ));
    }
    let aligner = param(query, "aggregation.perSeriesAligner").unwrap_or("ALIGN_NONE");
    let reducer = param(query, "aggregation.crossSeriesReducer").unwrap_or("REDUCE_NONE");
    let period = match aligner {
        "ALIGN_NONE" => {
            if reducer != "REDUCE_NONE" {
                return Err(ApiError::invalid(
                    "aggregation.perSeriesAligner: the aligner cannot be ALIGN_NONE if cross series reduction is requested.",
                ));
            }
            // Cloud Run writes its request metrics once a minute.
            Duration::from_secs(60)
        }
        "ALIGN_DELTA" | "ALIGN_SUM" => {
            let raw = param(query, "aggregation.alignmentPeriod").ok_or_else(|| {
                ApiError::invalid("aggregation.alignmentPeriod: Required when an aligner is set.")
            })?;
            let p = parse_google_duration(raw).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Invalid value at 'aggregation.alignmentPeriod' (type.googleapis.com/google.protobuf.Duration), \"{raw}\""
                ))
            })?;
            if p < Duration::from_secs(60) {
                return Err(ApiError::invalid(format!(
                    "aggregation.alignmentPeriod: the alignment period must be at least 60s, got {raw}."
                )));
            }
            p
        }
        other => {
            return Err(ApiError::invalid(format!(
                "aggregation.perSeriesAligner: {other} is not supported by the simulator (use ALIGN_DELTA or ALIGN_SUM)."
            )));
        }
    };
    let group_by: Option<Vec<LabelRef>> = match reducer {
        "REDUCE_NONE" => None,
        "REDUCE_SUM" => {
            let mut fields = Vec::new();
            for (k, v) in query
                .iter()
                .filter(|(k, _)| k == "aggregation.groupByFields")
            {
                let label = parse_label_ref(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{k}: the field '{v}' is not supported by the simulator."
                    ))
                })?;
                fields.push(label);
            }
            Some(fields)
        }
        other => {
            return Err(ApiError::invalid(format!(
                "aggregation.crossSeriesReducer: {other} is not supported by the simulator (use REDUCE_SUM or REDUCE_NONE)."
            )));
        }
    };
    let headers_only = match param(query, "view").unwrap_or("FULL") {
        "FULL" => false,
        "HEADERS" => true,
        other => return Err(ApiError::invalid(format!("view: invalid value '{other}'."))),
    };

    // Replaced points are request counts: a latency query neither shows nor uses them up.
    let (bad_series, buckets) = {
        let mut state = model.state();
        let bad = match measure {
            Measure::Count => state.take_bad_series(),
            Measure::Latencies => Vec::new(),
        };
        (bad, state.latency_buckets.clone())
    };
    let resource_labels = |key: &ServiceKey, revision: &str| {
        BTreeMap::from([
            ("project_id".to_string(), key.project.clone()),
            ("service_name".to_string(), key.service.clone()),
            ("revision_name".to_string(), revision.to_string()),
            ("location".to_string(), key.region.clone()),
            ("configuration_name".to_string(), key.service.clone()),
        ])
    };

    // Raw series: one per (revision, response code), as Cloud Run writes them.
    let mut raw: BTreeMap<(String, u16), RawSeries> = BTreeMap::new();
    // Series a test replaced, with the labels Cloud Run would give them.
    let mut replaced: Vec<(RawSeries, &[BadPoint])> = Vec::new();
    for (key, revision, hits) in model.visible_hits(project) {
        for bad in bad_series.iter().filter(|b| b.revision == revision) {
            replaced.push((
                RawSeries {
                    resource: resource_labels(&key, &revision),
                    metric: BTreeMap::from([(
                        "response_code_class".to_string(),
                        bad.class.clone(),
                    )]),
                    hits: Vec::new(),
                },
                &bad.points,
            ));
        }
        for hit in hits {
            let series = raw
                .entry((revision.clone(), hit.code))
                .or_insert_with(|| RawSeries {
                    resource: resource_labels(&key, &revision),
                    metric: BTreeMap::from([
                        ("response_code".to_string(), hit.code.to_string()),
                        (
                            "response_code_class".to_string(),
                            format!("{}xx", hit.code / 100),
                        ),
                    ]),
                    hits: Vec::new(),
                });
            series.hits.push(hit);
        }
    }
    let label_of = |s: &RawSeries, (resource, name): &LabelRef| -> Option<String> {
        if *resource {
            s.resource.get(name)
        } else {
            s.metric.get(name)
        }
        .cloned()
    };
    let selected = |s: &RawSeries| {
        label_filters
            .iter()
            .all(|(label, value)| label_of(s, label).as_deref() == Some(value.as_str()))
    };
    // Group: with a reducer, labels outside groupByFields are dropped and series merged.
    type Labels = (BTreeMap<String, String>, BTreeMap<String, String>);
    let labels_of = |s: &RawSeries| -> Labels {
        match &group_by {
            None => (s.resource.clone(), s.metric.clone()),
            Some(fields) => {
                let mut resource = BTreeMap::new();
                let mut metric = BTreeMap::new();
                for field in fields {
                    if let Some(v) = label_of(s, field) {
                        let map = if field.0 { &mut resource } else { &mut metric };
                        map.insert(field.1.clone(), v);
                    }
                }
                (resource, metric)
            }
        }
    };
    let replaced: BTreeMap<Labels, &[BadPoint]> = replaced
        .into_iter()
        .filter(|(s, _)| selected(s))
        .map(|(s, points)| (labels_of(&s), points))
        .collect();
    let mut groups: BTreeMap<Labels, Vec<Hit>> = BTreeMap::new();
    for s in raw.into_values().filter(|s| selected(s)) {
        groups.entry(labels_of(&s)).or_default().extend(s.hits);
    }
    for labels in replaced.keys() {
        groups.entry(labels.clone()).or_default();
    }

    let mut series = Vec::new();
    for ((resource, metric), hits) in groups {
        if let Some(points) = replaced.get(&(resource.clone(), metric.clone())) {
            let points = points
                .iter()
                .map(|p| bad_point(p, start, end, period))
                .collect();
            series.push(series_json(
                measure,
                resource,
                metric,
                Value::Array(points),
                headers_only,
            ));
            continue;
        }
        // Point k covers (end-(k+1)P, end-kP], newest first, while its end is after startTime.
        let mut points = Vec::new();
        for k in 0u32.. {
            let Some(p_end) = end.checked_sub(period * k) else {
                break;
            };
            let Some(p_start) = p_end.checked_sub(period) else {
                break;
            };
            if p_end <= start {
                break;
            }
            let in_period: Vec<&Hit> = hits
                .iter()
                .filter(|h| h.at > p_start && h.at <= p_end)
                .collect();
            if let Some(value) = measure.value(&in_period, &buckets) {
                points.push(json!({
                    "interval": {"startTime": rfc3339(p_start), "endTime": rfc3339(p_end)},
                    "value": value,
                }));
            }
        }
        if points.is_empty() {
            continue;
        }
        series.push(series_json(
            measure,
            resource,
            metric,
            Value::Array(points),
            headers_only,
        ));
    }
    if series.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({"timeSeries": series, "unit": measure.unit()}))
}

fn series_json(
    measure: Measure,
    resource: BTreeMap<String, String>,
    metric: BTreeMap<String, String>,
    points: Value,
    headers_only: bool,
) -> Value {
    let mut metric_json = json!({"type": measure.metric_type()});
    if !metric.is_empty() {
        metric_json["labels"] = json!(metric);
    }
    let mut ts = json!({
        "metric": metric_json,
        "resource": {"type": RESOURCE_TYPE},
        "metricKind": "DELTA",
        "valueType": measure.value_type(),
    });
    if !resource.is_empty() {
        ts["resource"]["labels"] = json!(resource);
    }
    if !headers_only {
        ts["points"] = points;
    }
    ts
}

/// A replaced point, one alignment period long, placed relative to the requested interval.
fn bad_point(point: &BadPoint, start: SystemTime, end: SystemTime, period: Duration) -> Value {
    let (p_start, p_end) = match point.at {
        PointAt::InWindow => (end.checked_sub(period).unwrap_or(end), end),
        PointAt::BeforeWindow(by) => {
            let p_end = start.checked_sub(by).unwrap_or(start);
            (p_end.checked_sub(period).unwrap_or(p_end), p_end)
        }
        PointAt::AfterWindow(by) => (end + by, end + by + period),
    };
    json!({
        "interval": {"startTime": rfc3339(p_start), "endTime": rfc3339(p_end)},
        "value": point.value,
    })
}
