//! Google Cloud REST plumbing shared by the Cloud Run and Monitoring adapters: credentials,
//! per-call timeouts, retries that respect idempotency and `retry-after`, and Google error bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use google_cloud_auth::credentials::{AccessTokenCredentials, Builder as CredentialsBuilder};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::health::describe_reqwest_error;
use crate::rollout::ports::PortError;

const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// One HTTP exchange may take this long; operations are waited for by polling, not by long calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A server asking us to wait longer than this is treated as down rather than waited for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Where Google access tokens come from.
#[derive(Clone)]
pub enum Credentials {
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`, or `access_token` from google-github-actions/auth.
    Token(String),
    /// Application Default Credentials, including Workload Identity Federation's
    /// `external_account` file; built on first use, inside the tokio runtime.
    ApplicationDefault(Arc<OnceCell<AccessTokenCredentials>>),
    /// No credentials: only for plain-HTTP endpoints (local fakes and the simulator).
    None,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Token(_) => "Credentials::Token([masked])",
            Credentials::ApplicationDefault(_) => "Credentials::ApplicationDefault",
            Credentials::None => "Credentials::None",
        })
    }
}

impl Credentials {
    /// `GOOGLE_OAUTH_ACCESS_TOKEN` when set, else Application Default Credentials.
    pub fn from_env() -> Self {
        match non_empty_env("GOOGLE_OAUTH_ACCESS_TOKEN") {
            Some(token) => Credentials::Token(token),
            None => Credentials::ApplicationDefault(Arc::new(OnceCell::new())),
        }
    }

    /// A plain-HTTP endpoint is a local fake or the simulator: without a credentials file, ADC
    /// would fall back to the metadata server, off this machine, for nothing; send no token.
    fn for_endpoint(self, base: &str) -> Self {
        match self {
            Credentials::ApplicationDefault(_)
                if base.starts_with("http://")
                    && non_empty_env("GOOGLE_APPLICATION_CREDENTIALS").is_none() =>
            {
                Credentials::None
            }
            other => other,
        }
    }

    async fn bearer(&self) -> Result<Option<String>, PortError> {
        match self {
            Credentials::Token(token) => Ok(Some(token.clone())),
            Credentials::None => Ok(None),
            Credentials::ApplicationDefault(cell) => {
                let credentials = cell
                    .get_or_try_init(|| async {
                        CredentialsBuilder::default()
                            .with_scopes([CLOUD_PLATFORM_SCOPE])
                            .build_access_token_credentials()
                            .map_err(|error| {
                                PortError::Rejected {
                                    status: 401,
                                    message: format!(
                                        "no usable Google credentials ({error}); set GOOGLE_OAUTH_ACCESS_TOKEN, or \
                                         GOOGLE_APPLICATION_CREDENTIALS to a credentials file (google-github-actions/auth writes one)"
                                    ),
                                }
                            })
                    })
                    .await?;
                let token = credentials.access_token().await.map_err(|error| {
                    PortError::Unavailable(format!(
                        "could not obtain a Google access token: {error}"
                    ))
                })?;
                crate::actions::mask_once(&token.token);
                Ok(Some(token.token))
            }
        }
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// Whether a request may be sent again after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and writes guarded by an etag: a repeat cannot apply twice.
    Safe,
    /// Anything else: sent once.
    Never,
}

/// A JSON REST client for one Google API base URL.
#[derive(Debug, Clone)]
pub struct GoogleRest {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    calls: Arc<AtomicU64>,
}

/// Google's error envelope: `{"error": {"code", "message", "status"}}`.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

impl GoogleRest {
    pub fn new(base: &str, credentials: Credentials) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("shiftgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with only timeouts set builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            credentials: credentials.for_endpoint(base),
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// HTTP requests sent so far, retries included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Sends `method path?query` with an optional JSON body; retries per `retry` until `budget`
    /// is spent; returns the parsed JSON answer of a 2xx response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
        budget: Duration,
    ) -> Result<Value, PortError> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let give_up = Instant::now() + budget;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = self.attempt(method.clone(), &url, query, body).await;
            let (error, wait) = match attempt {
                Ok(value) => return Ok(value),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Transient { error, retry_after }) => (error, retry_after),
            };
            if retry == Retry::Never {
                return Err(error);
            }
            let wait = match wait {
                Some(asked) if asked > MAX_RETRY_AFTER => {
                    return Err(PortError::Unavailable(format!(
                        "{error}; the server asked to retry after {}s",
                        asked.as_secs()
                    )));
                }
                Some(asked) => asked,
                None => backoff,
            };
            if Instant::now() + wait > give_up {
                return Err(error);
            }
            tracing::debug!(%url, ?wait, %error, "retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut request = self.http.request(method, url).query(query);
        if let Some(token) = self.credentials.bearer().await.map_err(Failure::Final)? {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(Failure::Transient {
                    error: PortError::Unavailable(format!(
                        "{url}: {}",
                        describe_reqwest_error(&error)
                    )),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response.text().await.map_err(|error| Failure::Transient {
            error: PortError::Unavailable(format!("{url}: {}", describe_reqwest_error(&error))),
            retry_after: None,
        })?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_str(&text).map_err(|error| {
                Failure::Final(PortError::Unavailable(format!(
                    "{url} answered {status} with a body that is not JSON: {error}"
                )))
            });
        }
        let (message, grpc_status) = match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(envelope) => (envelope.error.message, envelope.error.status),
            Err(_) => (text.chars().take(300).collect(), String::new()),
        };
        let described = if grpc_status.is_empty() {
            format!("HTTP {} from {url}: {message}", status.as_u16())
        } else {
            format!(
                "{grpc_status} (HTTP {}) from {url}: {message}",
                status.as_u16()
            )
        };
        Err(classify(status, described, retry_after))
    }
}

enum Failure {
    Final(PortError),
    Transient {
        error: PortError,
        retry_after: Option<Duration>,
    },
}

fn classify(status: StatusCode, message: String, retry_after: Option<Duration>) -> Failure {
    match status.as_u16() {
        404 => Failure::Final(PortError::NotFound(message)),
        409 => Failure::Final(PortError::Conflict(message)),
        408 | 429 | 500 | 502 | 503 | 504 => Failure::Transient {
            error: PortError::Unavailable(message),
            retry_after,
        },
        401 => Failure::Final(PortError::Rejected {
            status: 401,
            message: format!(
                "{message} (the Google credentials were not accepted; check GOOGLE_OAUTH_ACCESS_TOKEN or the Workload Identity setup)"
            ),
        }),
        403 => Failure::Final(PortError::Rejected {
            status: 403,
            message: format!(
                "{message} (the caller lacks permission; it needs roles/run.developer and roles/monitoring.viewer)"
            ),
        }),
        code => Failure::Final(PortError::Rejected {
            status: code,
            message,
        }),
    }
}

/// `retry-after` as delta-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate_to_system_time(value)?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

fn httpdate_to_system_time(value: &str) -> Option<std::time::SystemTime> {
    // RFC 7231 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT": reuse humantime's RFC 3339 parser.
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    humantime::parse_rfc3339(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
}

/// Seconds in Google's duration format (`"90s"`).
pub fn google_duration(duration: Duration) -> String {
    format!("{}s", duration.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        assert_eq!(
            httpdate_to_system_time("Sun, 06 Nov 1994 08:49:37 GMT"),
            humantime::parse_rfc3339("1994-11-06T08:49:37Z").ok()
        );
    }

    #[test]
    fn errors_map_to_what_the_engine_decides_on() {
        assert!(matches!(
            classify(StatusCode::CONFLICT, "x".into(), None),
            Failure::Final(PortError::Conflict(_))
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, "x".into(), None),
            Failure::Transient { .. }
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, "x".into(), None),
            Failure::Final(PortError::Rejected { status: 400, .. })
        ));
    }
}
