//! The GitHub REST client: octocrab from `GITHUB_API_URL` and `GITHUB_TOKEN`/`GH_TOKEN`, conditional
//! GETs with an ETag cache (304s cost no rate limit), rate-limit waits, and POSTs sent exactly once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method};
use octocrab::Octocrab;
use serde_json::Value;

use crate::clock::Clock;

pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// Longest single wait for a rate limit to reset before giving up (the primary window is an hour).
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(61 * 60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const GET_ATTEMPTS: u32 = 5;
/// No answer shiftgate asks GitHub for comes near this (a page of issues or runs is well under a
/// megabyte); a bigger one is refused rather than buffered.
pub const MAX_GITHUB_BODY: usize = 8 * 1024 * 1024;
const TOO_LARGE: &str = "the answer was larger than";

/// A repository, `OWNER/NAME`, checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

impl Repo {
    pub fn parse(text: &str) -> Result<Repo, String> {
        let (owner, name) = crate::names::check_repo(text.trim())?;
        Ok(Repo {
            owner: owner.into(),
            name: name.into(),
        })
    }

    /// `/repos/OWNER/NAME`
    pub fn path(&self) -> String {
        format!("/repos/{}/{}", self.owner, self.name)
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The token from `GITHUB_TOKEN`, else `GH_TOKEN`.
pub fn token_from_env() -> Option<String> {
    ["GITHUB_TOKEN", "GH_TOKEN"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
}

/// `GITHUB_API_URL`, else api.github.com.
pub fn api_url_from_env() -> String {
    std::env::var("GITHUB_API_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_API_URL.to_string())
}

/// What went wrong talking to GitHub.
#[derive(Debug, Clone, PartialEq)]
pub enum GitHubError {
    /// GitHub answered with an error status: the request was not carried out.
    Status {
        status: u16,
        message: String,
        body: Value,
    },
    /// No clear answer (connection failed, timed out, or a 5xx): the server may or may not have
    /// acted on the request.
    Ambiguous(String),
    /// Could not even build the request, or a rate limit too long to wait for.
    Other(String),
}

impl GitHubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl std::fmt::Display for GitHubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitHubError::Status {
                status, message, ..
            } => write!(f, "GitHub answered {status}: {message}"),
            GitHubError::Ambiguous(reason) => write!(f, "no clear answer from GitHub: {reason}"),
            GitHubError::Other(reason) => write!(f, "{reason}"),
        }
    }
}

/// A 2xx answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Value,
}

/// Requests made, for the rate-limit budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallStats {
    pub requests: u64,
    pub not_modified: u64,
    pub rate_limit_waits: u64,
}

/// One GitHub API endpoint with a token.
pub struct GitHub {
    octocrab: Octocrab,
    base: String,
    clock: Clock,
    cache: Mutex<HashMap<String, (String, Value)>>,
    stats: Mutex<CallStats>,
    /// Set when `x-ratelimit-remaining` reached 0: no request before this time.
    blocked_until: Mutex<Option<SystemTime>>,
    /// GitHub's time from the last answer's `Date` header, and this clock's time when it came.
    server_time: Mutex<Option<(SystemTime, SystemTime)>>,
    on_wait: Box<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub").field("base", &self.base).finish()
    }
}

impl GitHub {
    /// A client for `base` (e.g. `https://api.github.com` or `https://ghe.example/api/v3`).
    /// octocrab is built without its retry layer: nothing is ever re-sent behind our back.
    pub fn new(base: &str, token: &str, clock: Clock) -> Result<GitHub, String> {
        let base = base.trim_end_matches('/').to_string();
        // octocrab sends through the program's one reqwest/rustls stack rather than its own
        // hyper-rustls connector. The settings keep what that connector did: no redirects
        // followed, no proxy from the environment, HTTP/1.1 only.
        let http = crate::tls::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .build()
            .map_err(|e| format!("cannot set up the GitHub client: {e}"))?;
        let octocrab = Octocrab::builder()
            .base_uri(base.as_str())
            .map_err(|e| format!("GITHUB_API_URL {base:?} is not a URL: {e}"))?
            .personal_token(token.to_string())
            .build_with_reqwest(http)
            .map_err(|e| format!("cannot set up the GitHub client: {e}"))?;
        Ok(GitHub {
            octocrab,
            base,
            clock,
            cache: Mutex::new(HashMap::new()),
            stats: Mutex::new(CallStats::default()),
            blocked_until: Mutex::new(None),
            server_time: Mutex::new(None),
            on_wait: Box::new(crate::output::say_line),
        })
    }

    /// Where rate-limit waits are reported (stderr by default).
    pub fn with_wait_log(mut self, log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_wait = Box::new(log);
        self
    }

    /// The web URL that matches the API URL (`https://github.com` for api.github.com).
    pub fn web_base(&self) -> String {
        if self.base == DEFAULT_API_URL {
            "https://github.com".into()
        } else {
            self.base.trim_end_matches("/api/v3").to_string()
        }
    }

    pub fn stats(&self) -> CallStats {
        *self.stats.lock().expect("stats")
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// GitHub's time now: the last answer's `Date` header moved on by the time since it came
    /// (whole seconds), else this machine's clock. Issue and comment times are GitHub's, so ages
    /// computed against them do not depend on the runner's clock being right.
    pub fn server_now(&self) -> SystemTime {
        let now = self.clock.now();
        match *self.server_time.lock().expect("server time") {
            Some((server, local)) => server + now.duration_since(local).unwrap_or_default(),
            None => now,
        }
    }

    /// One HTTP exchange, no retries.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        etag: Option<&str>,
    ) -> Result<(u16, HeaderMap, Value), GitHubError> {
        self.wait_for_reset().await;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(etag) = etag {
            builder = builder.header("if-none-match", etag);
        }
        let request = self
            .octocrab
            .build_request(builder, body)
            .map_err(|e| GitHubError::Other(format!("cannot build the request: {e}")))?;
        self.stats.lock().expect("stats").requests += 1;
        let response = tokio::time::timeout(CALL_TIMEOUT, self.octocrab.execute(request))
            .await
            .map_err(|_| GitHubError::Ambiguous(format!("no answer in {CALL_TIMEOUT:?}")))?
            .map_err(|e| GitHubError::Ambiguous(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(date) = headers
            .get(http::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| httpdate::parse_http_date(text).ok())
        {
            *self.server_time.lock().expect("server time") = Some((date, self.clock.now()));
        }
        let text = tokio::time::timeout(CALL_TIMEOUT, read_bounded(response))
            .await
            .map_err(|_| GitHubError::Ambiguous("the answer stalled".into()))??;
        if header_u64(&headers, "x-ratelimit-remaining") == Some(0)
            && let Some(reset) = header_u64(&headers, "x-ratelimit-reset")
        {
            *self.blocked_until.lock().expect("blocked") =
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(reset));
        }
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, headers, value))
    }

    async fn wait_for_reset(&self) {
        let until = self.blocked_until.lock().expect("blocked").take();
        if let Some(until) = until
            && let Ok(wait) = until.duration_since(self.clock.now())
        {
            let wait = wait.min(MAX_RATE_LIMIT_WAIT) + Duration::from_secs(1);
            (self.on_wait)(&format!(
                "GitHub rate limit used up: waiting {}s for it to reset",
                wait.as_secs()
            ));
            self.stats.lock().expect("stats").rate_limit_waits += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// How long to wait when an answer is a rate-limit rejection (which was not carried out).
    fn rate_limit_wait(&self, status: u16, headers: &HeaderMap, body: &Value) -> Option<Duration> {
        if status != 403 && status != 429 {
            return None;
        }
        if let Some(seconds) = header_u64(headers, "retry-after") {
            return Some(Duration::from_secs(seconds.max(1)));
        }
        let message = body["message"].as_str().unwrap_or_default().to_lowercase();
        if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
            let reset = header_u64(headers, "x-ratelimit-reset")
                .map(|r| SystemTime::UNIX_EPOCH + Duration::from_secs(r));
            let wait = reset
                .and_then(|r| r.duration_since(self.clock.now()).ok())
                .unwrap_or_default();
            return Some(wait.max(Duration::from_secs(1)));
        }
        if message.contains("rate limit") {
            // A secondary limit without retry-after: GitHub asks for at least a minute.
            return Some(Duration::from_secs(60));
        }
        None
    }

    async fn rate_limited(&self, wait: Duration) -> Result<(), GitHubError> {
        *self.blocked_until.lock().expect("blocked") = None;
        if wait > MAX_RATE_LIMIT_WAIT {
            return Err(GitHubError::Other(format!(
                "GitHub rate limit: would have to wait {}s",
                wait.as_secs()
            )));
        }
        (self.on_wait)(&format!(
            "GitHub rate limit: waiting {}s before trying again",
            wait.as_secs()
        ));
        self.stats.lock().expect("stats").rate_limit_waits += 1;
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// A conditional GET: sends the last ETag for this path and answers from the cache on 304.
    /// Retries rate limits (after the wait GitHub asks for), 5xx and connection failures.
    /// Every item of a listing (`path` with its query, without `per_page`/`page`), page after page
    /// of 100 until a short page or `max_pages`; `true` when the last page read was full (there
    /// may be more).
    pub async fn get_pages(
        &self,
        path: &str,
        max_pages: u32,
    ) -> Result<(Vec<Value>, bool), GitHubError> {
        const PER_PAGE: usize = 100;
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        for page in 1..=max_pages {
            let listing = self
                .get(&format!("{path}{separator}per_page={PER_PAGE}&page={page}"))
                .await?;
            let found = listing.as_array().cloned().unwrap_or_default();
            let full = found.len() >= PER_PAGE;
            items.extend(found);
            if !full {
                return Ok((items, false));
            }
        }
        Ok((items, true))
    }

    pub async fn get(&self, path: &str) -> Result<Value, GitHubError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let cached = self.cache.lock().expect("cache").get(path).cloned();
            let result = self
                .send(
                    Method::GET,
                    path,
                    None,
                    cached.as_ref().map(|(etag, _)| etag.as_str()),
                )
                .await;
            let failure = match result {
                Ok((304, _, _)) if cached.is_some() => {
                    self.stats.lock().expect("stats").not_modified += 1;
                    return Ok(cached.map(|(_, body)| body).unwrap_or_default());
                }
                Ok((status, headers, body)) if (200..300).contains(&status) => {
                    if let Some(etag) = headers.get("etag").and_then(|v| v.to_str().ok()) {
                        self.cache
                            .lock()
                            .expect("cache")
                            .insert(path.to_string(), (etag.to_string(), body.clone()));
                    }
                    return Ok(body);
                }
                Ok((status, headers, body)) => {
                    if let Some(wait) = self.rate_limit_wait(status, &headers, &body) {
                        self.rate_limited(wait).await?;
                        continue;
                    }
                    let error = status_error(status, body);
                    if status < 500 {
                        return Err(error);
                    }
                    error
                }
                // An oversized answer would be just as big the next time.
                Err(GitHubError::Ambiguous(reason)) if reason.starts_with(TOO_LARGE) => {
                    return Err(GitHubError::Ambiguous(reason));
                }
                Err(error @ GitHubError::Ambiguous(_)) => error,
                Err(error) => return Err(error),
            };
            if attempt >= GET_ATTEMPTS {
                return Err(failure);
            }
            let wait = Duration::from_secs(1 << attempt);
            (self.on_wait)(&format!(
                "retrying GET {path} (attempt {}, in {}s): {}",
                attempt + 1,
                wait.as_secs(),
                one_line(&failure.to_string())
            ));
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends a POST (or PATCH) once. A rate-limit rejection is waited out and sent again (GitHub
    /// did not carry it out); anything without a clear answer is [`GitHubError::Ambiguous`] and is
    /// never re-sent here: the caller must look for its effect first.
    pub async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<Answer, GitHubError> {
        loop {
            let (status, headers, answer) =
                self.send(method.clone(), path, Some(body), None).await?;
            if (200..300).contains(&status) {
                return Ok(Answer { body: answer });
            }
            if let Some(wait) = self.rate_limit_wait(status, &headers, &answer) {
                self.rate_limited(wait).await?;
                continue;
            }
            let error = status_error(status, answer);
            return Err(match error {
                GitHubError::Status { status, .. } if status >= 500 => {
                    GitHubError::Ambiguous(error.to_string())
                }
                error => error,
            });
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, GitHubError> {
        self.send_once(Method::POST, path, body).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Answer, GitHubError> {
        self.send_once(Method::PATCH, path, body).await
    }
}

/// Reads an answer up to `MAX_GITHUB_BODY`; past that, stops reading (which drops the
/// connection) and reports it. The request may have been carried out, so this is ambiguous.
async fn read_bounded(
    response: http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, octocrab::Error>>,
) -> Result<String, GitHubError> {
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(response.into_body(), MAX_GITHUB_BODY);
    match limited.collect().await {
        Ok(collected) => Ok(String::from_utf8_lossy(&collected.to_bytes()).into_owned()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(GitHubError::Ambiguous(format!(
                "{TOO_LARGE} {} MiB; stopped reading it",
                MAX_GITHUB_BODY / (1024 * 1024)
            )))
        }
        Err(error) => Err(GitHubError::Ambiguous(error.to_string())),
    }
}

/// Server text on one line, so nothing in it can pose as a workflow command.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

fn status_error(status: u16, body: Value) -> GitHubError {
    let message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    GitHubError::Status {
        status,
        message,
        body,
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Percent-encodes one query value or path segment.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_must_be_owner_slash_name() {
        assert_eq!(
            Repo::parse("loopcloser/app").unwrap().path(),
            "/repos/loopcloser/app"
        );
        for bad in ["loopcloser", "/app", "a/b/c", "a b/c", ""] {
            let message = Repo::parse(bad).unwrap_err();
            assert!(message.contains("--repo"), "{bad}: {message}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode(">=2026-01-01T00:00:00Z"),
            "%3E%3D2026-01-01T00%3A00%3A00Z"
        );
        assert_eq!(encode("sev-2"), "sev-2");
    }
}
