//! Cloud Logging v2 `entries:list` over what the data plane saw: the request log of every 4xx/5xx
//! a revision answered and the lines its container wrote when it failed, with the filter subset
//! clients send parsed for real (anything else is a 400, as the API answers an unparseable one).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::model::SimModel;
use crate::state::ServiceKey;
use crate::wire::rfc3339;

/// What a revision's container writes when it answers a request with a 5xx.
#[derive(Debug, Clone, PartialEq)]
pub enum AppLog {
    /// A plain line on stderr: a `textPayload`.
    Text(String),
    /// A structured line on stdout: a `jsonPayload` (Cloud Run reads `severity` out of it).
    Json(Value),
}

/// `resource.type` of every entry the simulator keeps.
pub const RESOURCE_TYPE: &str = "cloud_run_revision";
/// `pageSize` when the request gives none, and the largest the API accepts.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: i64 = 1000;

/// The message of a 403 for `entries:list` without `logging.logEntries.list`.
pub const DENIED_MESSAGE: &str =
    "Permission 'logging.logEntries.list' denied on resource (or it may not exist).";

/// One stored entry.
#[derive(Debug, Clone)]
pub(crate) struct LogRecord {
    pub key: ServiceKey,
    pub revision: String,
    pub at: SystemTime,
    pub severity: Severity,
    pub insert_id: String,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// Cloud Run's request log of one answered request.
    Request {
        method: String,
        url: String,
        status: u16,
        latency: Duration,
    },
    /// A line the container wrote.
    App(AppLog),
}

/// The stored entries and whether the caller may read them.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    records: Vec<LogRecord>,
    next_id: u64,
    pub denied: bool,
    /// How many of the next `entries:list` answers are an empty page with a `nextPageToken` for
    /// the same place (what Cloud Logging answers when its search ran out of time).
    pub empty_pages: usize,
}

impl Logs {
    pub fn push(
        &mut self,
        key: &ServiceKey,
        revision: &str,
        at: SystemTime,
        severity: Severity,
        body: Body,
    ) {
        self.next_id += 1;
        self.records.push(LogRecord {
            key: key.clone(),
            revision: revision.to_string(),
            at,
            severity,
            insert_id: format!("{:016x}", self.next_id),
            body,
        });
    }

    pub fn records(&self) -> &[LogRecord] {
        &self.records
    }
}

/// Logging's severities, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Default = 0,
    Debug = 100,
    Info = 200,
    Notice = 300,
    Warning = 400,
    Error = 500,
    Critical = 600,
    Alert = 700,
    Emergency = 800,
}

impl Severity {
    const ALL: [Severity; 9] = [
        Severity::Default,
        Severity::Debug,
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
        Severity::Alert,
        Severity::Emergency,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Default => "DEFAULT",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
            Severity::Alert => "ALERT",
            Severity::Emergency => "EMERGENCY",
        }
    }

    /// A name (any case) or its number, as the query language accepts.
    fn parse(text: &str) -> Option<Severity> {
        let upper = text.to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|s| s.name() == upper || (*s as u16).to_string() == text)
    }

    /// The request log's severity for an HTTP status, as Cloud Run writes it.
    pub fn of_status(status: u16) -> Severity {
        match status {
            500.. => Severity::Error,
            400.. => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

/// `logName` of an entry: the project's `run.googleapis.com/requests`, `stderr` or `stdout` log.
fn log_name(record: &LogRecord) -> String {
    let log = match &record.body {
        Body::Request { .. } => "requests",
        Body::App(AppLog::Text(_)) => "stderr",
        Body::App(AppLog::Json(_)) => "stdout",
    };
    format!(
        "projects/{}/logs/run.googleapis.com%2F{log}",
        record.key.project
    )
}

fn resource_label<'a>(record: &'a LogRecord, name: &str) -> Option<&'a str> {
    match name {
        "project_id" => Some(&record.key.project),
        "service_name" | "configuration_name" => Some(&record.key.service),
        "revision_name" => Some(&record.revision),
        "location" => Some(&record.key.region),
        _ => None,
    }
}

/// The entry as `LogEntry` JSON.
fn entry_json(record: &LogRecord) -> Value {
    let mut labels = Map::new();
    for name in [
        "project_id",
        "service_name",
        "revision_name",
        "location",
        "configuration_name",
    ] {
        labels.insert(
            name.to_string(),
            json!(resource_label(record, name).unwrap_or_default()),
        );
    }
    let mut entry = json!({
        "insertId": record.insert_id,
        "logName": log_name(record),
        "resource": {"type": RESOURCE_TYPE, "labels": labels},
        "timestamp": rfc3339(record.at),
        "receiveTimestamp": rfc3339(record.at),
        "severity": record.severity.name(),
        "labels": {"instanceId": format!("sim-{}", record.revision)},
    });
    match &record.body {
        Body::Request {
            method,
            url,
            status,
            latency,
        } => {
            entry["httpRequest"] = json!({
                "requestMethod": method,
                "requestUrl": url,
                "status": status,
                "latency": format!("{:.6}s", latency.as_secs_f64()),
                "protocol": "HTTP/1.1",
                "userAgent": "shiftgate-sim-load",
            });
        }
        Body::App(AppLog::Text(text)) => entry["textPayload"] = json!(text),
        Body::App(AppLog::Json(value)) => entry["jsonPayload"] = value.clone(),
    }
    entry
}

/// `POST /v2/entries:list`.
pub(crate) fn list_entries(model: &SimModel, body: &[u8]) -> Result<Value, ApiError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("Invalid JSON payload received. {error}")))?;
    let Some(fields) = request.as_object() else {
        return Err(ApiError::invalid(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    for name in fields.keys() {
        match name.as_str() {
            "resourceNames" | "filter" | "orderBy" | "pageSize" | "pageToken" => {}
            "projectIds" => {
                return Err(ApiError::invalid(
                    "projectIds is deprecated; the simulator reads resourceNames only",
                ));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "Invalid JSON payload received. Unknown name \"{other}\": Cannot find field."
                )));
            }
        }
    }
    let projects = resource_projects(&request["resourceNames"])?;
    let filter_text = match &request["filter"] {
        Value::Null => "",
        Value::String(text) => text.as_str(),
        _ => return Err(ApiError::invalid("Invalid value at 'filter' (TYPE_STRING)")),
    };
    let filter = Filter::parse(filter_text)?;
    let newest_first = match &request["orderBy"] {
        Value::Null => false,
        Value::String(text) => match text.trim() {
            "" | "timestamp asc" => false,
            "timestamp desc" => true,
            other => {
                return Err(ApiError::invalid(format!(
                    "Invalid orderBy value \"{other}\": only \"timestamp asc\" and \"timestamp desc\" are supported"
                )));
            }
        },
        _ => {
            return Err(ApiError::invalid(
                "Invalid value at 'order_by' (TYPE_STRING)",
            ));
        }
    };
    let page_size = match &request["pageSize"] {
        Value::Null => DEFAULT_PAGE_SIZE,
        Value::Number(n) => match n.as_i64() {
            Some(0) => DEFAULT_PAGE_SIZE,
            Some(size @ 1..=MAX_PAGE_SIZE) => size as usize,
            _ => {
                return Err(ApiError::invalid(format!(
                    "Invalid page_size {n}: it must be between 0 and {MAX_PAGE_SIZE}"
                )));
            }
        },
        _ => {
            return Err(ApiError::invalid(
                "Invalid value at 'page_size' (TYPE_INT32)",
            ));
        }
    };
    let fingerprint = fingerprint(&projects, filter_text, newest_first);
    let offset = match &request["pageToken"] {
        Value::Null => 0,
        Value::String(token) if token.is_empty() => 0,
        Value::String(token) => read_token(token, fingerprint)?,
        _ => {
            return Err(ApiError::invalid(
                "Invalid value at 'page_token' (TYPE_STRING)",
            ));
        }
    };
    let mut state = model.state();
    if state.logs.denied {
        return Err(ApiError::new(403, DENIED_MESSAGE));
    }
    if state.logs.empty_pages > 0 {
        // The search ran out of time before it found anything: no entries, and a token to go on
        // from the same place.
        state.logs.empty_pages -= 1;
        return Ok(json!({"nextPageToken": format!("{offset}.{fingerprint:016x}")}));
    }
    let mut matching: Vec<&LogRecord> = state
        .logs
        .records()
        .iter()
        .filter(|record| projects.contains(&record.key.project))
        .filter(|record| filter.matches(record))
        .collect();
    // Stored in the order they happened; a stable sort keeps insertion order among equal times.
    matching.sort_by_key(|record| record.at);
    if newest_first {
        matching.reverse();
    }
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|record| entry_json(record))
        .collect();
    let mut answer = json!({});
    if !page.is_empty() {
        answer["entries"] = Value::Array(page);
    }
    if matching.len() > offset + page_size {
        answer["nextPageToken"] = json!(format!("{}.{fingerprint:016x}", offset + page_size));
    }
    Ok(answer)
}

fn resource_projects(names: &Value) -> Result<Vec<String>, ApiError> {
    let names = match names {
        Value::Array(names) if !names.is_empty() => names,
        Value::Null | Value::Array(_) => {
            return Err(ApiError::invalid(
                "resourceNames is required: name at least one parent resource",
            ));
        }
        _ => return Err(ApiError::invalid("Invalid value at 'resource_names'")),
    };
    names
        .iter()
        .map(|name| {
            let text = name.as_str().unwrap_or_default();
            match text.strip_prefix("projects/") {
                Some(project) if !project.is_empty() && !project.contains('/') => {
                    Ok(project.to_string())
                }
                _ => Err(ApiError::invalid(format!(
                    "Invalid resource name {name}: the simulator holds projects/PROJECT_ID only"
                ))),
            }
        })
        .collect()
}

fn fingerprint(projects: &[String], filter: &str, newest_first: bool) -> u64 {
    // DefaultHasher::new() uses fixed keys: the same query gives the same token in every run.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (projects, filter, newest_first).hash(&mut hasher);
    hasher.finish()
}

fn read_token(token: &str, fingerprint: u64) -> Result<usize, ApiError> {
    let invalid = || ApiError::invalid(format!("Invalid page token \"{token}\""));
    let (offset, print) = token.split_once('.').ok_or_else(invalid)?;
    let print = u64::from_str_radix(print, 16).map_err(|_| invalid())?;
    if print != fingerprint {
        return Err(ApiError::invalid(
            "The page token was issued for another query (filter, orderBy and resourceNames must not change between pages)",
        ));
    }
    offset.parse().map_err(|_| invalid())
}

/// A comparison of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
            Op::Gt => ordering == Greater,
            Op::Ge => ordering != Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Restriction {
    /// `resource.type`, `resource.labels.*`, `logName`: `=` or `!=` a string.
    Text {
        field: String,
        equal: bool,
        value: String,
    },
    Severity(Op, Severity),
    Timestamp(Op, SystemTime),
}

/// A conjunction of restrictions: the part of the Logging query language the simulator reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Filter {
    restrictions: Vec<Restriction>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
    Other(char),
}

fn unsupported(what: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!(
        "Unparseable filter: {what} (the simulator reads FIELD OP VALUE restrictions joined by AND, \
         on resource.type, resource.labels.*, logName, severity and timestamp)"
    ))
}

fn tokens(text: &str) -> Result<Vec<Token>, ApiError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(unsupported("unterminated string")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(unsupported("unterminated string")),
                        },
                        Some(other) => value.push(other),
                    }
                }
                out.push(Token::Quoted(value));
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let next_is_eq = chars.peek() == Some(&'=');
                let op = match (c, next_is_eq) {
                    ('=', _) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    ('>', false) => Op::Gt,
                    _ => return Err(unsupported(format!("operator {c:?}"))),
                };
                if next_is_eq && c != '=' {
                    chars.next();
                }
                if matches!(chars.peek(), Some('~')) {
                    return Err(unsupported("regular expressions (=~, !~)"));
                }
                out.push(Token::Op(op));
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | ':') => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | ':') {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(word));
            }
            other => {
                chars.next();
                out.push(Token::Other(other));
            }
        }
    }
    Ok(out)
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, ApiError> {
        let tokens = tokens(text)?;
        let mut restrictions = Vec::new();
        let mut rest = tokens.as_slice();
        while !rest.is_empty() {
            if !restrictions.is_empty() && rest[0] == Token::Word("AND".into()) {
                rest = &rest[1..];
            }
            let (field, op, value) = match rest {
                [Token::Word(field), Token::Op(op), value, ..] => (field, *op, value),
                [Token::Word(word), ..] if matches!(word.as_str(), "OR" | "NOT" | "AND") => {
                    return Err(unsupported(format!("{word} where a restriction belongs")));
                }
                [Token::Word(field), Token::Other(c), ..] => {
                    return Err(unsupported(format!("operator {c:?} after {field}")));
                }
                [Token::Other(c), ..] => return Err(unsupported(format!("{c:?}"))),
                [first, ..] => {
                    return Err(unsupported(format!("expected FIELD OP VALUE at {first:?}")));
                }
                [] => break,
            };
            if field.contains(':') {
                return Err(unsupported(format!("the has operator (:) in {field}")));
            }
            let value = match value {
                Token::Word(word) if matches!(word.as_str(), "AND" | "OR" | "NOT") => {
                    return Err(unsupported(format!("{word} where a value belongs")));
                }
                Token::Word(word) | Token::Quoted(word) => word.clone(),
                other => return Err(unsupported(format!("expected a value, got {other:?}"))),
            };
            restrictions.push(Self::restriction(field, op, &value)?);
            rest = &rest[3..];
        }
        Ok(Filter { restrictions })
    }

    fn restriction(field: &str, op: Op, value: &str) -> Result<Restriction, ApiError> {
        let text_field = field == "resource.type"
            || field == "logName"
            || field
                .strip_prefix("resource.labels.")
                .is_some_and(|label| !label.is_empty() && !label.contains('.'));
        if text_field {
            return match op {
                Op::Eq | Op::Ne => Ok(Restriction::Text {
                    field: field.to_string(),
                    equal: op == Op::Eq,
                    value: value.to_string(),
                }),
                _ => Err(unsupported(format!("ordering comparison on {field}"))),
            };
        }
        match field {
            "severity" => Severity::parse(value)
                .map(|severity| Restriction::Severity(op, severity))
                .ok_or_else(|| ApiError::invalid(format!("Invalid severity \"{value}\""))),
            "timestamp" => humantime::parse_rfc3339_weak(value)
                .ok()
                .filter(|_| value.ends_with('Z') || value.contains('+'))
                .map(|at| Restriction::Timestamp(op, at))
                .ok_or_else(|| {
                    ApiError::invalid(format!("Invalid timestamp \"{value}\": not RFC 3339"))
                }),
            other => Err(unsupported(format!("the field {other}"))),
        }
    }

    fn matches(&self, record: &LogRecord) -> bool {
        self.restrictions
            .iter()
            .all(|restriction| match restriction {
                Restriction::Text {
                    field,
                    equal,
                    value,
                } => {
                    let actual = match field.as_str() {
                        "resource.type" => Some(RESOURCE_TYPE.to_string()),
                        "logName" => Some(log_name(record)),
                        label => {
                            resource_label(record, label.trim_start_matches("resource.labels."))
                                .map(str::to_string)
                        }
                    };
                    (actual.as_deref() == Some(value.as_str())) == *equal
                }
                Restriction::Severity(op, severity) => op.holds(record.severity.cmp(severity)),
                Restriction::Timestamp(op, at) => op.holds(record.at.cmp(at)),
            })
    }
}

/// Entries of `revision` as stored, oldest first, for tests that check what a client shows.
pub(crate) fn entries_of(logs: &Logs, revision: &str) -> Vec<Value> {
    logs.records()
        .iter()
        .filter(|record| record.revision == revision)
        .map(entry_json)
        .collect()
}

/// Counts of stored entries per revision and severity name, for tests.
pub(crate) fn counts(logs: &Logs) -> BTreeMap<(String, &'static str), usize> {
    let mut out = BTreeMap::new();
    for record in logs.records() {
        *out.entry((record.revision.clone(), record.severity.name()))
            .or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{ApiRequest, Caller, call};
    use crate::model::Behavior;

    async fn list(model: &SimModel, body: Value) -> (u16, Value) {
        let answer = call(
            model,
            ApiRequest {
                method: "POST".into(),
                path: "/v2/entries:list".into(),
                query: Vec::new(),
                caller: Caller::InProcess,
                body: body.to_string().into_bytes(),
            },
        )
        .await;
        (answer.status, answer.body)
    }

    /// A service whose second revision fails every other request; `requests` are served to it one
    /// second apart, and the stable revision answers one 503 of its own.
    async fn failing_candidate(requests: u32) -> (SimModel, String, String, SystemTime) {
        let model = SimModel::new(shiftgate_clock::Clock::new());
        model.register_image(
            "app:bad",
            Behavior::erroring("1.1.0", 0.5).with_error_log(AppLog::Json(
                json!({"message": "db timeout", "severity": "ERROR"}),
            )),
        );
        let stable = model.add_service("p", "r", "app", "app:good");
        // The same service in a second region: another revision of service_name "app".
        let candidate = model.add_service("p", "r2", "app", "app:bad");
        let start = model.clock().now();
        let key = ServiceKey::new("p", "r2", "app");
        for _ in 0..requests {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (status, _) = model.respond(&candidate, "/orders");
            let now = model.clock().now();
            model.record(&candidate, status, now);
            model.log_request(
                &key,
                &candidate,
                ("POST", "https://app/orders"),
                status,
                Duration::from_millis(12),
                now,
            );
        }
        model.log_request(
            &ServiceKey::new("p", "r", "app"),
            &stable,
            ("GET", "https://app/"),
            503,
            Duration::ZERO,
            model.clock().now(),
        );
        (model, stable, candidate, start)
    }

    fn shiftgate_filter(revision: &str, since: SystemTime) -> String {
        format!(
            "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"app\" AND \
             resource.labels.revision_name=\"{revision}\" AND severity>=ERROR AND timestamp>=\"{}\"",
            humantime::format_rfc3339_millis(since)
        )
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_failing_revision_when_its_errors_are_listed_newest_first_then_pages_hold_what_the_data_plane_saw()
     {
        // Given 6 requests to the candidate, 3 of them answered 500.
        let (model, _, candidate, start) = failing_candidate(6).await;

        // When its errors are listed newest first, 4 at a time.
        let request = json!({
            "resourceNames": ["projects/p"],
            "filter": shiftgate_filter(&candidate, start),
            "orderBy": "timestamp desc",
            "pageSize": 4,
        });
        let (status, first) = list(&model, request.clone()).await;
        assert_eq!(status, 200, "{first}");

        // Then each 500 is two ERROR entries (the request log and the app's line), newest first,
        let entries = first["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 4);
        let times: Vec<&str> = entries
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        for entry in entries {
            assert_eq!(entry["severity"], "ERROR");
            assert_eq!(entry["resource"]["type"], "cloud_run_revision");
            assert_eq!(
                entry["resource"]["labels"]["revision_name"],
                candidate.as_str()
            );
        }
        let request_log = entries
            .iter()
            .find(|e| e.get("httpRequest").is_some())
            .unwrap();
        assert_eq!(request_log["httpRequest"]["status"], 500);
        assert_eq!(request_log["httpRequest"]["requestMethod"], "POST");
        let app_log = entries
            .iter()
            .find(|e| e.get("jsonPayload").is_some())
            .unwrap();
        assert_eq!(app_log["jsonPayload"]["message"], "db timeout");

        // and the next page holds the last 2, with no further token.
        let token = first["nextPageToken"].as_str().unwrap().to_string();
        let mut next = request.clone();
        next["pageToken"] = json!(token);
        let (status, second) = list(&model, next).await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(second["entries"].as_array().unwrap().len(), 2);
        assert!(second.get("nextPageToken").is_none(), "{second}");

        // A token used with another filter is refused.
        let mut other = request.clone();
        other["pageToken"] = json!(token);
        other["filter"] = json!("severity>=ERROR");
        assert_eq!(list(&model, other).await.0, 400);
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_search_that_runs_out_of_time_then_the_page_is_empty_with_a_token_to_go_on() {
        let (model, _, candidate, start) = failing_candidate(6).await;
        model.logging_empty_pages(2);
        let request = json!({
            "resourceNames": ["projects/p"],
            "filter": shiftgate_filter(&candidate, start),
            "orderBy": "timestamp desc",
            "pageSize": 4,
        });

        // When the errors are listed while the search runs out of time twice,
        let (status, first) = list(&model, request.clone()).await;
        assert_eq!(status, 200, "{first}");
        // then the first two pages are empty, each with a token,
        assert_eq!(first.get("entries"), None, "{first}");
        let mut next = request.clone();
        next["pageToken"] = first["nextPageToken"].clone();
        let (_, second) = list(&model, next.clone()).await;
        assert_eq!(second.get("entries"), None, "{second}");
        assert_eq!(second["nextPageToken"], first["nextPageToken"]);
        // and the third, with the same token, holds the newest 4.
        let (_, third) = list(&model, next).await;
        assert_eq!(third["entries"].as_array().unwrap().len(), 4, "{third}");
        assert!(third["nextPageToken"].is_string(), "{third}");
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_start_time_and_a_severity_then_only_entries_inside_both_are_listed() {
        let (model, stable, candidate, start) = failing_candidate(4).await;
        let counts = model.log_counts();
        assert_eq!(counts[&(candidate.clone(), "ERROR")], 4);
        assert_eq!(counts[&(stable.clone(), "ERROR")], 1);

        // Entries from the third second on: the 500 of request 4 only (two entries).
        let since = start + Duration::from_secs(3);
        let (_, late) = list(
            &model,
            json!({"resourceNames": ["projects/p"], "filter": shiftgate_filter(&candidate, since)}),
        )
        .await;
        assert_eq!(late["entries"].as_array().unwrap().len(), 2, "{late}");
        // Oldest first by default.
        let (_, all) = list(
            &model,
            json!({"resourceNames": ["projects/p"], "filter": "severity>=ERROR"}),
        )
        .await;
        let all = all["entries"].as_array().unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(
            all[4]["resource"]["labels"]["revision_name"],
            stable.as_str()
        );
        // Another project holds none of them.
        let (status, none) = list(
            &model,
            json!({"resourceNames": ["projects/q"], "filter": "severity>=ERROR"}),
        )
        .await;
        assert_eq!((status, none), (200, json!({})));
        // CRITICAL and above: none.
        let (_, critical) = list(
            &model,
            json!({"resourceNames": ["projects/p"], "filter": "severity>=CRITICAL"}),
        )
        .await;
        assert_eq!(critical, json!({}));
    }

    #[tokio::test(start_paused = true)]
    async fn given_bad_requests_or_no_permission_then_google_errors_are_answered() {
        let (model, _, _, _) = failing_candidate(2).await;
        for (body, why) in [
            (json!({"filter": "severity>=ERROR"}), "no resourceNames"),
            (json!({"resourceNames": ["folders/1"]}), "a folder"),
            (
                json!({"resourceNames": ["projects/p"], "filter": "severity>=ERROR OR x=1"}),
                "OR",
            ),
            (
                json!({"resourceNames": ["projects/p"], "orderBy": "severity"}),
                "orderBy",
            ),
            (
                json!({"resourceNames": ["projects/p"], "pageSize": 1001}),
                "pageSize",
            ),
            (
                json!({"resourceNames": ["projects/p"], "pageSize": -1}),
                "negative pageSize",
            ),
            (
                json!({"resourceNames": ["projects/p"], "limit": 5}),
                "unknown field",
            ),
            (
                json!({"resourceNames": ["projects/p"], "pageToken": "zzz"}),
                "bad token",
            ),
        ] {
            let (status, answer) = list(&model, body).await;
            assert_eq!(status, 400, "{why}: {answer}");
            assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT", "{why}");
        }

        model.deny_logging(true);
        let (status, answer) = list(&model, json!({"resourceNames": ["projects/p"]})).await;
        assert_eq!(status, 403);
        assert_eq!(
            answer,
            json!({"error": {"code": 403, "message": DENIED_MESSAGE, "status": "PERMISSION_DENIED"}})
        );
        model.deny_logging(false);
        assert_eq!(
            list(&model, json!({"resourceNames": ["projects/p"]}))
                .await
                .0,
            200
        );
    }

    #[test]
    fn given_the_filter_shiftgate_sends_then_every_restriction_is_read() {
        let filter = Filter::parse(
            "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"app\" \
             AND resource.labels.revision_name=\"app-00002\" AND severity>=ERROR \
             AND timestamp>=\"2026-12-01T02:00:00Z\"",
        )
        .unwrap();
        assert_eq!(filter.restrictions.len(), 5);
        assert_eq!(
            filter.restrictions[3],
            Restriction::Severity(Op::Ge, Severity::Error)
        );
    }

    #[test]
    fn given_filters_the_simulator_cannot_read_then_each_is_a_400() {
        for text in [
            "severity>=ERROR OR severity=INFO",
            "NOT severity=ERROR",
            "(severity=ERROR)",
            "textPayload:\"boom\"",
            "resource.labels.service_name=~\"ap.*\"",
            "jsonPayload.message=\"x\"",
            "severity>=LOUD",
            "timestamp>=\"yesterday\"",
            "resource.type>\"a\"",
            "severity>=",
            "\"unterminated",
        ] {
            let error = Filter::parse(text).expect_err(text);
            assert_eq!(
                (error.code, error.status.as_str()),
                (400, "INVALID_ARGUMENT"),
                "{text}"
            );
        }
        assert_eq!(Filter::parse("").unwrap(), Filter::default());
    }
}
