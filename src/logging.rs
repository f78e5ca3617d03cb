//! Cloud Logging v2 adapter: the latest error entries of one Cloud Run revision (`entries:list`
//! filtered on the revision, `severity>=ERROR` and a start time), read into plain log lines, page
//! after page while the search ran out of time, within one bound.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use crate::evidence::{ErrorEntries, ErrorLogs, LogLine, LogQuery};
use crate::gcp::{GoogleRest, Retry};
use crate::rollout::ports::{PortError, PortResult};

/// Base URL when `SHIFTGATE_LOGGING_URL` is not set.
pub const DEFAULT_LOGGING_URL: &str = "https://logging.googleapis.com";
/// The role a 403 asks for.
pub const LOGGING_ROLE: &str = "roles/logging.viewer";
/// All pages together; less than the evidence's own bound, so what was read is kept.
const QUERY_BUDGET: Duration = Duration::from_secs(12);
/// At most this many pages are read: Cloud Logging answers a short or empty page with a
/// `nextPageToken` when its search ran out of time.
pub const MAX_PAGES: usize = 5;

#[derive(Debug, Clone)]
pub struct CloudLogging {
    rest: GoogleRest,
    project: String,
}

impl CloudLogging {
    pub fn new(rest: GoogleRest, project: &str) -> Self {
        Self {
            rest,
            project: project.to_string(),
        }
    }

    /// The `entries:list` body for `query`: newest first, one page of `query.limit`.
    pub fn request_body(&self, query: &LogQuery) -> Value {
        json!({
            "resourceNames": [format!("projects/{}", self.project)],
            "filter": filter(query),
            "orderBy": "timestamp desc",
            "pageSize": query.limit,
        })
    }
}

/// A string in the Logging query language: quoted, with `\` and `"` escaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The filter for `query`: the revision's Cloud Run entries at ERROR or above since `since`.
pub fn filter(query: &LogQuery) -> String {
    format!(
        "resource.type=\"cloud_run_revision\" AND resource.labels.service_name={} AND \
         resource.labels.revision_name={} AND severity>=ERROR AND timestamp>={}",
        quoted(&query.service),
        quoted(&query.revision),
        quoted(&humantime::format_rfc3339_millis(query.since).to_string())
    )
}

/// One `LogEntry` as a line: its time, severity, HTTP status and message. The message is the
/// text payload, else the JSON payload's `message` (or the payload itself), else the audit
/// payload's status message, else the request (`GET https://…`).
pub fn line_of(entry: &Value) -> LogLine {
    let text = |value: &Value| value.as_str().map(str::to_string);
    let http = &entry["httpRequest"];
    let status = http["status"]
        .as_u64()
        .and_then(|status| u16::try_from(status).ok());
    let message = text(&entry["textPayload"])
        .or_else(|| {
            let payload = entry.get("jsonPayload")?;
            ["message", "msg", "error"]
                .iter()
                .find_map(|key| text(&payload[*key]))
                .or_else(|| Some(payload.to_string()))
        })
        .or_else(|| {
            let payload = entry.get("protoPayload")?;
            text(&payload["status"]["message"])
                .or_else(|| text(&payload["methodName"]))
                .or_else(|| Some(payload.to_string()))
        })
        .or_else(|| {
            let method = text(&http["requestMethod"])?;
            Some(format!(
                "{method} {}",
                text(&http["requestUrl"]).unwrap_or_default()
            ))
        })
        .unwrap_or_else(|| "(no message)".to_string());
    LogLine {
        time: text(&entry["timestamp"]).unwrap_or_default(),
        severity: text(&entry["severity"]).unwrap_or_else(|| "DEFAULT".into()),
        status,
        message,
    }
}

impl CloudLogging {
    /// One page of `entries:list`: its entries and the token to go on with, if any.
    async fn page(
        &self,
        query: &LogQuery,
        token: Option<&str>,
        budget: Duration,
    ) -> PortResult<(Vec<Value>, Option<String>)> {
        let mut body = self.request_body(query);
        if let Some(token) = token {
            body["pageToken"] = json!(token);
        }
        let answer = self
            .rest
            .send(
                Method::POST,
                "v2/entries:list",
                &[],
                Some(&body),
                // A read, however it is sent: repeating it changes nothing.
                Retry::Safe,
                budget,
            )
            .await
            .map_err(|error| match error {
                PortError::Rejected {
                    status: 403,
                    message,
                } => PortError::Rejected {
                    status: 403,
                    message: format!(
                        "{} (reading logs needs {LOGGING_ROLE} on the project)",
                        message
                            .split(" (the caller lacks permission")
                            .next()
                            .unwrap_or(&message)
                    ),
                },
                other => other,
            })?;
        let entries = match &answer["entries"] {
            Value::Null => Vec::new(),
            Value::Array(entries) => entries.clone(),
            other => {
                return Err(PortError::Unavailable(format!(
                    "Cloud Logging answered entries that are not a list: {}",
                    other.to_string().chars().take(100).collect::<String>()
                )));
            }
        };
        let token = answer["nextPageToken"]
            .as_str()
            .filter(|token| !token.is_empty())
            .map(str::to_string);
        Ok((entries, token))
    }
}

#[async_trait]
impl ErrorLogs for CloudLogging {
    /// Pages are read until `query.limit` entries are in, no token is left, [`MAX_PAGES`] were
    /// read or [`QUERY_BUDGET`] is spent; a token left over makes the answer incomplete. A failure
    /// after the first page keeps what was read (incomplete).
    async fn recent_errors(&self, query: &LogQuery) -> PortResult<ErrorEntries> {
        let started = tokio::time::Instant::now();
        let mut lines = Vec::new();
        let mut token: Option<String> = None;
        for page in 0..MAX_PAGES {
            let left = QUERY_BUDGET.saturating_sub(started.elapsed());
            if page > 0 && left.is_zero() {
                break;
            }
            match self.page(query, token.as_deref(), left).await {
                Ok((entries, next)) => {
                    let room = query.limit.saturating_sub(lines.len());
                    lines.extend(entries.iter().take(room).map(line_of));
                    token = next;
                }
                Err(error) if page == 0 => return Err(error),
                // What the earlier pages found is kept; the token says the search is not done.
                Err(_) => break,
            }
            if token.is_none() || lines.len() >= query.limit {
                break;
            }
        }
        Ok(ErrorEntries {
            incomplete: token.is_some() && lines.len() < query.limit,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::Credentials;

    fn query() -> LogQuery {
        LogQuery {
            service: "app".into(),
            revision: "app-00002-new".into(),
            since: humantime::parse_rfc3339("2026-12-01T02:00:00.250Z").unwrap(),
            limit: 20,
        }
    }

    #[test]
    fn given_a_revision_and_a_start_then_the_filter_names_them_and_errors_only() {
        assert_eq!(
            filter(&query()),
            "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"app\" AND \
             resource.labels.revision_name=\"app-00002-new\" AND severity>=ERROR AND \
             timestamp>=\"2026-12-01T02:00:00.250Z\""
        );
        let logging = CloudLogging::new(GoogleRest::new("http://x", Credentials::None), "p-1");
        assert_eq!(
            logging.request_body(&query()),
            json!({
                "resourceNames": ["projects/p-1"],
                "filter": filter(&query()),
                "orderBy": "timestamp desc",
                "pageSize": 20,
            })
        );
    }

    #[test]
    fn given_a_name_with_quotes_then_the_filter_escapes_them() {
        let mut odd = query();
        odd.revision = "a\"b\\c".into();
        assert!(
            filter(&odd).contains(r#"revision_name="a\"b\\c""#),
            "{}",
            filter(&odd)
        );
    }

    #[test]
    fn given_each_payload_kind_then_the_line_carries_its_message() {
        let base = json!({"timestamp": "2026-12-01T02:00:01Z", "severity": "ERROR"});
        let with = |key: &str, value: Value| {
            let mut entry = base.clone();
            entry[key] = value;
            line_of(&entry).message
        };
        assert_eq!(with("textPayload", json!("boom")), "boom");
        assert_eq!(
            with("jsonPayload", json!({"message": "db down", "code": 7})),
            "db down"
        );
        assert_eq!(with("jsonPayload", json!({"code": 7})), "{\"code\":7}");
        assert_eq!(
            with(
                "protoPayload",
                json!({"status": {"message": "denied"}, "methodName": "m"})
            ),
            "denied"
        );
        let request = line_of(&json!({
            "timestamp": "2026-12-01T02:00:02Z",
            "severity": "ERROR",
            "httpRequest": {"requestMethod": "GET", "requestUrl": "https://a/b", "status": 503},
        }));
        assert_eq!(
            (
                request.status,
                request.message.as_str(),
                request.severity.as_str()
            ),
            (Some(503), "GET https://a/b", "ERROR")
        );
        assert_eq!(line_of(&base).message, "(no message)");
    }
}
