//! Health checks: what a healthy answer looks like (`Expectations`) and the HTTP probe that fetches
//! one (`HttpHealthEndpoint`). The engine and the `health` command share both.

use std::time::Duration;

use async_trait::async_trait;
use semver::{Version, VersionReq};
use serde_json::Value;

use crate::rollout::ports::{HealthEndpoint, HealthResponse};

/// `status` values that mean healthy when no `--health-expect` rule is given.
pub const HEALTHY_STATUSES: [&str; 4] = ["ok", "healthy", "pass", "up"];

/// The most of a health answer that is read. `HttpHealthEndpoint` hands the judge one byte more
/// when the body went on, which the judge refuses; the rest is never read.
pub const MAX_HEALTH_BODY: usize = 64 * 1024;

/// The outcome of one check. "No data" is never a pass: it is `Inconclusive`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail(String),
    Inconclusive(String),
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    pub fn is_fail(&self) -> bool {
        matches!(self, Verdict::Fail(_))
    }

    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(reason) | Verdict::Inconclusive(reason) => Some(reason),
        }
    }
}

/// One `--health-expect KEY=VALUE` rule; KEY may be a dotted path into the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for FieldRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(FieldRule {
                key: key.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(format!(
                "expected KEY=VALUE (for example status=ok), got {text:?}"
            )),
        }
    }
}

/// What the health endpoint must answer for a revision to count as healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    pub path: String,
    /// Empty: the default rule (a JSON `status`, when present, is one of `HEALTHY_STATUSES`).
    pub fields: Vec<FieldRule>,
    pub version: Option<VersionReq>,
}

impl Default for Expectations {
    fn default() -> Self {
        Self {
            path: "/health".to_string(),
            fields: Vec::new(),
            version: None,
        }
    }
}

impl Expectations {
    /// The health URL under a base URL (a service or tag URL).
    pub fn url_for(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        if self.path.starts_with('/') {
            format!("{base}{}", self.path)
        } else {
            format!("{base}/{}", self.path)
        }
    }

    pub fn judge(&self, response: &HealthResponse) -> Verdict {
        if (300..400).contains(&response.status) {
            // Followed, a redirect would let another revision (stable's /health) answer for
            // this one.
            let target = response.body.trim();
            let to = if target.is_empty() {
                String::new()
            } else {
                format!(" to {}", target.chars().take(200).collect::<String>())
            };
            return Verdict::Fail(format!(
                "redirected ({}{to}) — a redirect is not healthy",
                response.status
            ));
        }
        if !(200..300).contains(&response.status) {
            return Verdict::Fail(format!(
                "answered HTTP {}{}",
                response.status,
                excerpt(&response.body)
            ));
        }
        if response.body.len() > MAX_HEALTH_BODY {
            return Verdict::Fail(format!(
                "body larger than {} KiB; a health answer is short",
                MAX_HEALTH_BODY / 1024
            ));
        }
        let body: Option<Value> = serde_json::from_str(&response.body).ok();
        if let Some(verdict) = self.judge_fields(body.as_ref()) {
            return verdict;
        }
        if let Some(requirement) = &self.version {
            let found = body.as_ref().and_then(|b| lookup(b, "version"));
            let Some(found) = found.and_then(scalar_text) else {
                return Verdict::Fail(format!(
                    "body has no \"version\" to check against {requirement}"
                ));
            };
            match Version::parse(found.trim_start_matches('v')) {
                Ok(version) if requirement.matches(&version) => {}
                Ok(version) => {
                    return Verdict::Fail(format!(
                        "version {version} does not satisfy {requirement}"
                    ));
                }
                Err(error) => {
                    return Verdict::Fail(format!("version {found:?} is not semver: {error}"));
                }
            }
        }
        Verdict::Pass
    }

    fn judge_fields(&self, body: Option<&Value>) -> Option<Verdict> {
        if self.fields.is_empty() {
            // A `status` that is there must be a healthy word: `null`, `[]` or `{}` is not one.
            let status = body.and_then(|b| b.get("status"))?;
            let healthy = status.as_str().is_some_and(|status| {
                HEALTHY_STATUSES
                    .iter()
                    .any(|ok| ok.eq_ignore_ascii_case(status))
            });
            return (!healthy).then(|| {
                let shown = match scalar_text(status) {
                    Some(text) => format!("{text:?}"),
                    None => status.to_string().chars().take(120).collect(),
                };
                Verdict::Fail(format!(
                    "status is {shown}, expected one of {}",
                    HEALTHY_STATUSES.join(", ")
                ))
            });
        }
        let Some(body) = body else {
            return Some(Verdict::Fail(
                "body is not JSON, so --health-expect cannot be checked".to_string(),
            ));
        };
        for rule in &self.fields {
            match lookup(body, &rule.key).and_then(scalar_text) {
                Some(found) if found == rule.value => {}
                Some(found) => {
                    return Some(Verdict::Fail(format!(
                        "{} is {found:?}, expected {:?}",
                        rule.key, rule.value
                    )));
                }
                None => {
                    return Some(Verdict::Fail(format!(
                        "body has no {:?} (expected {:?})",
                        rule.key, rule.value
                    )));
                }
            }
        }
        None
    }
}

fn lookup<'a>(body: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(body, |value, key| value.as_object()?.get(key))
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        _ => None,
    }
}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let short: String = trimmed.chars().take(120).collect();
    format!(": {short}")
}

/// Fetches health endpoints over HTTP with a per-request timeout. Redirects are not followed: a
/// 3xx is handed to the judge with the `Location` target as its body (the judge has no headers,
/// and where the redirect points is what a person needs to see). Bodies are read up to
/// `MAX_HEALTH_BODY` + 1 bytes.
#[derive(Debug, Clone)]
pub struct HttpHealthEndpoint {
    client: reqwest::Client,
}

impl HttpHealthEndpoint {
    pub fn new(timeout: Duration) -> Self {
        let client = crate::tls::client_builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shiftgate/", env!("CARGO_PKG_VERSION"), " health"))
            .build()
            .expect("a reqwest client with only timeouts set builds");
        Self { client }
    }
}

#[async_trait]
impl HealthEndpoint for HttpHealthEndpoint {
    async fn fetch(&self, url: &str) -> Result<HealthResponse, String> {
        let mut response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|error| describe_reqwest_error(&error))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .unwrap_or_default();
            return Ok(HealthResponse {
                status: status.as_u16(),
                body: location,
            });
        }
        let body = match read_bounded(&mut response, MAX_HEALTH_BODY)
            .await
            .map_err(|error| describe_reqwest_error(&error))?
        {
            Bounded::Whole(bytes) | Bounded::Cut(bytes) => bytes,
        };
        Ok(HealthResponse {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// A body read up to a limit.
pub enum Bounded {
    Whole(Vec<u8>),
    /// The body went on past the limit: the first `limit + 1` bytes, the rest unread.
    Cut(Vec<u8>),
}

/// Reads at most `limit + 1` bytes of a body, chunk by chunk, so a huge or endless answer costs
/// no more memory than the limit; dropping the response afterwards closes the connection.
pub async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Bounded, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit + 1 - bytes.len();
        if chunk.len() >= room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Bounded::Cut(bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bounded::Whole(bytes))
}

/// A one-line reason for a failed request that names timeouts and refused connections plainly.
pub fn describe_reqwest_error(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        format!("{kind}: {error}")
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> HealthResponse {
        HealthResponse {
            status,
            body: body.to_string(),
        }
    }

    #[test]
    fn both_body_shapes_from_the_runbook_pass_the_default_rule() {
        let expectations = Expectations::default();
        assert_eq!(
            expectations.judge(&answer(200, r#"{"status":"ok","ready":true}"#)),
            Verdict::Pass
        );
        assert_eq!(
            expectations.judge(&answer(
                200,
                r#"{"status":"healthy","database":"connected","version":"1.0.0"}"#
            )),
            Verdict::Pass
        );
        assert_eq!(expectations.judge(&answer(204, "")), Verdict::Pass);
    }

    #[test]
    fn an_unhealthy_status_or_a_non_2xx_answer_fails() {
        let expectations = Expectations::default();
        assert!(
            expectations
                .judge(&answer(200, r#"{"status":"degraded"}"#))
                .is_fail()
        );
        assert!(
            expectations
                .judge(&answer(503, r#"{"status":"ok"}"#))
                .is_fail()
        );
    }

    #[test]
    fn field_rules_replace_the_default_rule_and_follow_dotted_paths() {
        let expectations = Expectations {
            fields: vec![
                "database=connected".parse().unwrap(),
                "checks.cache=true".parse().unwrap(),
            ],
            ..Expectations::default()
        };
        let good = r#"{"status":"weird","database":"connected","checks":{"cache":true}}"#;
        assert_eq!(expectations.judge(&answer(200, good)), Verdict::Pass);
        let bad = r#"{"database":"down","checks":{"cache":true}}"#;
        assert_eq!(
            expectations.judge(&answer(200, bad)),
            Verdict::Fail(r#"database is "down", expected "connected""#.to_string())
        );
        assert!(expectations.judge(&answer(200, "plain text")).is_fail());
    }

    #[test]
    fn version_is_checked_with_semver() {
        let expectations = Expectations {
            version: Some(VersionReq::parse(">=1.4.0").unwrap()),
            ..Expectations::default()
        };
        assert_eq!(
            expectations.judge(&answer(200, r#"{"status":"ok","version":"1.4.2"}"#)),
            Verdict::Pass
        );
        assert!(
            expectations
                .judge(&answer(200, r#"{"status":"ok","version":"1.3.9"}"#))
                .is_fail()
        );
        assert!(
            expectations
                .judge(&answer(200, r#"{"status":"ok"}"#))
                .is_fail()
        );
    }

    #[test]
    fn a_redirect_is_not_healthy_and_says_where_it_pointed() {
        let verdict = Expectations::default().judge(&answer(302, "https://stable---web/health"));
        assert_eq!(
            verdict,
            Verdict::Fail(
                "redirected (302 to https://stable---web/health) — a redirect is not healthy"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_body_over_the_limit_fails_even_when_it_starts_healthy() {
        let mut body = r#"{"status":"ok","pad":""#.to_string();
        body.push_str(&"x".repeat(MAX_HEALTH_BODY));
        let verdict = Expectations::default().judge(&answer(200, &body));
        assert_eq!(
            verdict,
            Verdict::Fail("body larger than 64 KiB; a health answer is short".to_string())
        );
    }

    #[test]
    fn a_rule_without_equals_sign_is_refused() {
        assert!("status".parse::<FieldRule>().is_err());
        assert!("=ok".parse::<FieldRule>().is_err());
    }

    #[test]
    fn health_url_joins_base_and_path() {
        let expectations = Expectations::default();
        assert_eq!(
            expectations.url_for("https://candidate---svc.run.app/"),
            "https://candidate---svc.run.app/health"
        );
    }
}
