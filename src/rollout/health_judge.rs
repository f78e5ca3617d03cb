//! The health gate: what a healthy answer looks like (the default `status` rule, `--health-expect`
//! fields, a semver `version`) and the verdict on one answer. Pure, like the error-rate gate.

use semver::{Version, VersionReq};
use serde_json::Value;

use crate::rollout::ports::HealthResponse;
use crate::rollout::verdict::Verdict;

/// `status` values that mean healthy when no `--health-expect` rule is given.
pub const HEALTHY_STATUSES: [&str; 4] = ["ok", "healthy", "pass", "up"];

/// The most of a health answer that is read. `HttpHealthEndpoint` hands the judge one byte more
/// when the body went on, which the judge refuses; the rest is never read.
pub const MAX_HEALTH_BODY: usize = 64 * 1024;

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
    /// The audience of the ID token sent with every probe (`--health-audience`); without it,
    /// Cloud Run URLs get one when they refuse a probe without.
    pub audience: Option<String>,
}

impl Default for Expectations {
    fn default() -> Self {
        Self {
            path: "/health".to_string(),
            fields: Vec::new(),
            version: None,
            audience: None,
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
            // A refusal says why (the probe's identity, which audience was tried): keep more.
            let room = if matches!(response.status, 401 | 403) {
                400
            } else {
                120
            };
            return Verdict::Fail(format!(
                "answered HTTP {}{}",
                response.status,
                excerpt(&response.body, room)
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

fn excerpt(body: &str, room: usize) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let short: String = trimmed.chars().take(room).collect();
    format!(": {short}")
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
