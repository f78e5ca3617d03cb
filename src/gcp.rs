//! Google Cloud REST plumbing shared by the Cloud Run and Monitoring adapters: credentials that
//! refresh, per-call timeouts inside an overall deadline, retries that respect idempotency and
//! `retry-after` and say so on stderr, bounded answers, and Google error bodies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_cloud_auth::credentials::{AccessTokenCredentials, Builder as CredentialsBuilder};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::health::{Bounded, describe_reqwest_error, read_bounded};
use crate::rollout::ports::PortError;

pub(crate) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// One HTTP exchange may take this long; operations are waited for by polling, not by long calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A server asking us to wait longer than this is treated as down rather than waited for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// No Cloud Run or Monitoring answer we ask for comes near this; a bigger one is refused rather
/// than buffered (a broken proxy can stream forever).
pub const MAX_API_BODY: usize = 16 * 1024 * 1024;
/// A metadata server answers within milliseconds where there is one; elsewhere the link-local
/// address may swallow the connection, and this bounds the wait before saying so.
const METADATA_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Policies that take longer than this to promote outlive a static token's default hour, with
/// margin for the time the token had already lived when the job got it.
const STATIC_TOKEN_SAFE_SPAN: Duration = Duration::from_secs(50 * 60);

/// Where Google access tokens come from.
#[derive(Clone)]
pub enum Credentials {
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`, or `access_token` from google-github-actions/auth.
    Token(String),
    /// Application Default Credentials, including Workload Identity Federation's
    /// `external_account` file; built on first use, inside the tokio runtime, and rebuilt when
    /// the API rejects a token the library still thought valid.
    ApplicationDefault(Arc<Refreshing>),
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

/// Where ADC-style credentials are built from.
#[derive(Debug, Clone)]
enum Source {
    /// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, or the metadata server.
    Environment,
    /// An `external_account` (Workload Identity Federation) configuration given as JSON.
    ExternalAccount(Value),
}

/// Credentials from google-cloud-auth, which caches tokens and refreshes them before they
/// expire. The library cannot be told that the server disagrees (clock skew, a revoked token), so
/// after a 401 the credentials are dropped and built again, which fetches a fresh token.
pub struct Refreshing {
    source: Source,
    /// The current credentials and their generation; a 401 retires only the generation that
    /// produced the rejected token, so concurrent callers rebuild once, not once each.
    current: tokio::sync::Mutex<(u64, Option<AccessTokenCredentials>)>,
    rebuilds: AtomicU64,
}

impl Refreshing {
    fn new(source: Source) -> Arc<Self> {
        Arc::new(Self {
            source,
            current: tokio::sync::Mutex::new((0, None)),
            rebuilds: AtomicU64::new(0),
        })
    }

    fn build(&self) -> Result<AccessTokenCredentials, PortError> {
        // google-cloud-auth looks up the process-wide provider when it signs or exchanges a
        // token, and every such use comes after this build.
        crate::tls::ensure_crypto_provider();
        let built = match &self.source {
            Source::Environment => CredentialsBuilder::default()
                .with_scopes([CLOUD_PLATFORM_SCOPE])
                .build_access_token_credentials(),
            Source::ExternalAccount(json) => {
                google_cloud_auth::credentials::external_account::Builder::new(json.clone())
                    .with_scopes([CLOUD_PLATFORM_SCOPE])
                    .build_access_token_credentials()
            }
        };
        built.map_err(|error| PortError::Rejected {
            status: 401,
            message: format!(
                "no usable Google credentials ({error}); set GOOGLE_OAUTH_ACCESS_TOKEN, or \
                 GOOGLE_APPLICATION_CREDENTIALS to a credentials file (google-github-actions/auth writes one)"
            ),
        })
    }

    async fn token(&self) -> Result<(u64, String), PortError> {
        let credentials = {
            let mut current = self.current.lock().await;
            if current.1.is_none() {
                current.1 = Some(self.build()?);
            }
            (current.0, current.1.clone().expect("set just above"))
        };
        let token = credentials.1.access_token().await.map_err(|error| {
            PortError::Unavailable(format!("could not obtain a Google access token: {error}"))
        })?;
        crate::mask::mask_once(&token.token);
        Ok((credentials.0, token.token))
    }

    /// Forgets the credentials of `generation` after the API rejected their token.
    async fn retire(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.0 == generation {
            *current = (generation + 1, None);
            self.rebuilds.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Credentials {
    /// `GOOGLE_OAUTH_ACCESS_TOKEN` when set, else Application Default Credentials.
    pub fn from_env() -> Self {
        match non_empty_env("GOOGLE_OAUTH_ACCESS_TOKEN") {
            Some(token) => Credentials::Token(token),
            None => Credentials::ApplicationDefault(Refreshing::new(Source::Environment)),
        }
    }

    /// The credentials for calls to the API base URLs `bases`, or, when nothing anywhere could
    /// supply a token, what to do about it (a configuration error: exit 2, before any request).
    /// Without this, ADC falls back to the metadata server, and off Google Cloud the first call
    /// fails with the library's "transient errors … future attempts may succeed".
    pub async fn from_env_for(bases: &[&str]) -> Result<Self, String> {
        let credentials = Self::from_env();
        let gac = non_empty_env("GOOGLE_APPLICATION_CREDENTIALS");
        // Plain-HTTP endpoints get no token at all (see `for_endpoint`): nothing to find.
        let needs_token = gac.is_some() || bases.iter().any(|base| !base.starts_with("http://"));
        if !matches!(credentials, Credentials::ApplicationDefault(_)) || !needs_token {
            return Ok(credentials);
        }
        if let Some(path) = gac {
            // The library says "Verify this environment variable points to a valid file" only
            // once a token is asked for; say it now, as the configuration problem it is.
            if !std::path::Path::new(&path).exists() {
                return Err(format!(
                    "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist; point it at a                      credentials file (google-github-actions/auth writes one), or unset it",
                    crate::names::quote(&path)
                ));
            }
            return Ok(credentials);
        }
        let well_known = adc_well_known_path();
        if well_known.as_ref().is_some_and(|path| path.exists()) || metadata_server_answers().await
        {
            return Ok(credentials);
        }
        let file = well_known.map_or_else(
            || "gcloud application default credentials file (HOME is not set)".to_string(),
            |path| path.display().to_string(),
        );
        Err(format!(
            "no Google credentials: GOOGLE_OAUTH_ACCESS_TOKEN and GOOGLE_APPLICATION_CREDENTIALS are \
             not set, there is no {file}, and no Google Cloud metadata server answers here. Fix it \
             one of three ways: on your machine, run `gcloud auth application-default login`; \
             anywhere, set GOOGLE_OAUTH_ACCESS_TOKEN (e.g. to the output of `gcloud auth \
             print-access-token`); in GitHub Actions, add a google-github-actions/auth step before \
             the shiftgate step"
        ))
    }

    /// Workload Identity Federation from an `external_account` configuration (the JSON that
    /// google-github-actions/auth writes), without going through the environment.
    pub fn external_account(config: Value) -> Self {
        Credentials::ApplicationDefault(Refreshing::new(Source::ExternalAccount(config)))
    }

    /// How many times credentials were rebuilt after the API rejected a token.
    pub fn rebuilds(&self) -> u64 {
        match self {
            Credentials::ApplicationDefault(refreshing) => {
                refreshing.rebuilds.load(Ordering::Relaxed)
            }
            _ => 0,
        }
    }

    /// A plain-HTTP endpoint is a local fake or the simulator: without a credentials file, ADC
    /// would fall back to the metadata server, off this machine, for nothing; send no token.
    fn for_endpoint(self, base: &str) -> Self {
        match &self {
            Credentials::ApplicationDefault(refreshing)
                if matches!(refreshing.source, Source::Environment)
                    && base.starts_with("http://")
                    && non_empty_env("GOOGLE_APPLICATION_CREDENTIALS").is_none() =>
            {
                Credentials::None
            }
            _ => self,
        }
    }

    /// The bearer token to send, and the credentials generation it came from.
    async fn bearer(&self) -> Result<Option<(u64, String)>, PortError> {
        match self {
            Credentials::Token(token) => Ok(Some((0, token.clone()))),
            Credentials::None => Ok(None),
            Credentials::ApplicationDefault(refreshing) => refreshing.token().await.map(Some),
        }
    }

    /// What a 401 means for these credentials.
    fn rejection_hint(&self) -> &'static str {
        match self {
            Credentials::Token(_) => {
                "the access token in GOOGLE_OAUTH_ACCESS_TOKEN was rejected (expired?); it cannot be \
                 refreshed — use Workload Identity / ADC for rollouts longer than its life"
            }
            Credentials::ApplicationDefault(_) => {
                "the Google credentials were not accepted, even freshly obtained; check the Workload \
                 Identity setup (pool, provider, service account binding)"
            }
            Credentials::None => {
                "no credentials were sent; set GOOGLE_OAUTH_ACCESS_TOKEN or GOOGLE_APPLICATION_CREDENTIALS"
            }
        }
    }
}

/// A warning for the start of a rollout whose policy outlives a static access token. Such a token
/// cannot be refreshed and its expiry is not published with it (google-github-actions/auth
/// outputs only `access_token`, valid for `access_token_lifetime`, 3600 s unless raised), so the
/// default hour is assumed.
pub fn static_token_warning(
    credentials: &Credentials,
    time_to_promote: Duration,
) -> Option<String> {
    if !matches!(credentials, Credentials::Token(_)) || time_to_promote <= STATIC_TOKEN_SAFE_SPAN {
        return None;
    }
    Some(format!(
        "this rollout takes at least {} to promote, but the token in GOOGLE_OAUTH_ACCESS_TOKEN cannot be \
         refreshed and usually lasts one hour: if it expires mid-rollout, the API refuses every call and \
         the rollout rolls back; use Workload Identity / ADC (GOOGLE_APPLICATION_CREDENTIALS) instead",
        humantime::format_duration(Duration::from_secs(time_to_promote.as_secs()))
    ))
}

/// Where gcloud writes Application Default Credentials, as google-cloud-auth looks for them
/// (AIP-4113): `$HOME/.config/gcloud/…`, or `%APPDATA%\gcloud\…` on Windows.
fn adc_well_known_path() -> Option<std::path::PathBuf> {
    let root = if cfg!(windows) { "APPDATA" } else { "HOME" };
    let relative = if cfg!(windows) {
        "gcloud/application_default_credentials.json"
    } else {
        ".config/gcloud/application_default_credentials.json"
    };
    std::env::var_os(root).map(|root| std::path::PathBuf::from(root).join(relative))
}

/// The content of the Application Default Credentials file (`GOOGLE_APPLICATION_CREDENTIALS`,
/// else gcloud's well-known file), `None` when there is none (ADC then asks the metadata server).
pub(crate) fn adc_file() -> Result<Option<Value>, String> {
    let (path, named) = match non_empty_env("GOOGLE_APPLICATION_CREDENTIALS") {
        Some(path) => (std::path::PathBuf::from(path), true),
        None => match adc_well_known_path().filter(|path| path.exists()) {
            Some(path) => (path, false),
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        let by = if named {
            " (GOOGLE_APPLICATION_CREDENTIALS)"
        } else {
            ""
        };
        format!(
            "cannot read the credentials file {}{by}: {error}",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map(Some).map_err(|error| {
        format!(
            "the credentials file {} is not JSON: {error}",
            path.display()
        )
    })
}

/// Where a metadata server would answer: google-cloud-auth's own override `GCE_METADATA_HOST`
/// (so the probe goes where the token request would), else its link-local address, which needs
/// no DNS lookup.
fn metadata_host() -> String {
    non_empty_env("GCE_METADATA_HOST").unwrap_or_else(|| "169.254.169.254".to_string())
}

/// Whether a Google metadata server answers (GCE, GKE, Cloud Run, Cloud Build): it says
/// `Metadata-Flavor: Google`, which other clouds' link-local servers (Azure's, under GitHub's
/// hosted runners; AWS's) do not.
pub(crate) async fn metadata_server_answers() -> bool {
    let Ok(client) = crate::tls::client_builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(METADATA_PROBE_TIMEOUT)
        .build()
    else {
        return false;
    };
    let url = format!("http://{}/computeMetadata/v1/", metadata_host());
    match client
        .get(url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
    {
        Ok(response) => response
            .headers()
            .get("metadata-flavor")
            .is_some_and(|flavor| flavor == "Google"),
        Err(_) => false,
    }
}

pub(crate) fn non_empty_env(name: &str) -> Option<String> {
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

type RetryLog = Arc<dyn Fn(&str) + Send + Sync>;

/// A JSON REST client for one Google API base URL.
#[derive(Clone)]
pub struct GoogleRest {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    calls: Arc<AtomicU64>,
    /// The command's overall deadline, shared by every clone of this client.
    deadline: Arc<Mutex<Option<Instant>>>,
    on_retry: RetryLog,
}

impl std::fmt::Debug for GoogleRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleRest")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
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
        let http = crate::tls::client_builder()
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
            deadline: Arc::new(Mutex::new(None)),
            on_retry: Arc::new(crate::output::say_line),
        }
    }

    /// Where retry lines go (stderr by default, never stdout, which `--json` owns).
    pub fn with_retry_log(mut self, log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_retry = Arc::new(log);
        self
    }

    /// Bounds every later call through this client and its clones: no attempt, retry or wait
    /// outlives `deadline` (a command's `--timeout`). `None` lifts the bound.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// HTTP requests sent so far, retries included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Sends `method path?query` with an optional JSON body; retries per `retry` until `budget`
    /// (or the client's deadline, whichever comes first) is spent; returns the parsed JSON answer
    /// of a 2xx response. Each retry is announced with one line.
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
        let what = format!("{method} {}", path.trim_start_matches('/'));
        let started = Instant::now();
        let give_up = match (started.checked_add(budget), self.deadline()) {
            (Some(own), Some(overall)) => own.min(overall),
            (Some(own), None) => own,
            (None, overall) => overall.unwrap_or(started + REQUEST_TIMEOUT),
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1u32;
        let mut refreshed = false;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PortError::Unavailable(format!(
                    "{what}: no time left to send it (the time limit was reached)"
                )));
            }
            let per_attempt = left.min(REQUEST_TIMEOUT);
            let outcome =
                tokio::time::timeout(per_attempt, self.attempt(method.clone(), &url, query, body))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure::Transient {
                            error: PortError::Unavailable(format!(
                                "{url}: no answer within {}",
                                seconds(per_attempt)
                            )),
                            retry_after: None,
                        })
                    });
            let (error, asked) = match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Unauthenticated { generation, error }) => {
                    // The library refreshes before expiry by its own clock; when the server
                    // disagrees, one fresh token settles it. Nothing was carried out, so resending
                    // is safe whatever the method.
                    match &self.credentials {
                        Credentials::ApplicationDefault(refreshing) if !refreshed => {
                            refreshed = true;
                            refreshing.retire(generation).await;
                            (self.on_retry)(&retry_line(
                                &what,
                                attempt + 1,
                                Duration::ZERO,
                                "the access token was rejected; fetching a new one",
                            ));
                            attempt += 1;
                            continue;
                        }
                        _ => return Err(error),
                    }
                }
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Transient { error, retry_after }) => (error, retry_after),
            };
            if retry == Retry::Never {
                return Err(error);
            }
            let left = give_up.saturating_duration_since(Instant::now());
            let wait = match asked {
                Some(asked) if asked > MAX_RETRY_AFTER || asked >= left => {
                    return Err(PortError::Unavailable(format!(
                        "{}; the server asked to retry after {}, {}",
                        error_text(&error),
                        seconds(asked),
                        if asked > MAX_RETRY_AFTER {
                            format!("more than the {} shiftgate waits", seconds(MAX_RETRY_AFTER))
                        } else {
                            format!("beyond the {} left for {what}", seconds(left))
                        }
                    )));
                }
                Some(asked) => asked,
                None => backoff,
            };
            if wait >= left {
                return Err(PortError::Unavailable(format!(
                    "{}; gave up on {what} after {attempt} attempts in {}",
                    error_text(&error),
                    seconds(started.elapsed())
                )));
            }
            attempt += 1;
            // The line already names the call; the URL in the error would only repeat it.
            let why = error_text(&error)
                .replace(&format!("{url}: "), "")
                .replace(&format!(" from {url}"), "");
            (self.on_retry)(&retry_line(&what, attempt, wait, &why));
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
        let mut generation = 0;
        if let Some((issued_by, token)) = self.credentials.bearer().await.map_err(Failure::Final)? {
            generation = issued_by;
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut response = match request.send().await {
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
        let bytes = match read_bounded(&mut response, MAX_API_BODY).await {
            Ok(Bounded::Whole(bytes)) => bytes,
            Ok(Bounded::Cut(_)) => {
                return Err(Failure::Final(PortError::Unavailable(format!(
                    "{url} answered {status} with a body larger than {} MiB; not reading it",
                    MAX_API_BODY / (1024 * 1024)
                ))));
            }
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
        let text = String::from_utf8_lossy(&bytes);
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
        if status == StatusCode::UNAUTHORIZED {
            return Err(Failure::Unauthenticated {
                generation,
                error: PortError::Rejected {
                    status: 401,
                    message: format!("{described} ({})", self.credentials.rejection_hint()),
                },
            });
        }
        Err(classify(status, described, retry_after))
    }
}

fn retry_line(what: &str, attempt: u32, wait: Duration, why: &str) -> String {
    // Error text comes from servers: one line, so nothing in it can pose as a workflow command.
    let why: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    format!(
        "retrying {what} (attempt {attempt}, in {}): {why}",
        seconds(wait)
    )
}

/// `0.25s`, `4s`, `90s`: as exact as a person needs, no more.
fn seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis >= 10_000 || millis.is_multiple_of(1000) {
        return format!("{}s", duration.as_secs());
    }
    let fraction = format!("{:03}", millis % 1000);
    format!("{}.{}s", millis / 1000, fraction.trim_end_matches('0'))
}

fn error_text(error: &PortError) -> String {
    match error {
        PortError::Unavailable(text) | PortError::Conflict(text) | PortError::NotFound(text) => {
            text.clone()
        }
        PortError::Rejected { message, .. } => message.clone(),
    }
}

enum Failure {
    Final(PortError),
    Transient {
        error: PortError,
        retry_after: Option<Duration>,
    },
    /// A 401: the token was refused, so nothing was carried out.
    Unauthenticated {
        generation: u64,
        error: PortError,
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

/// `retry-after` as delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
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
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        headers.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let asked = retry_after(&headers).unwrap();
        assert!(
            asked > Duration::from_secs(110) && asked <= Duration::from_secs(120),
            "{asked:?}"
        );
    }

    #[test]
    fn a_retry_line_names_the_call_the_attempt_the_wait_and_the_reason_on_one_line() {
        assert_eq!(
            retry_line(
                "GET v2/projects/p/locations/r/services/web",
                2,
                Duration::from_millis(500),
                "could not connect: Connection refused\n::warning::x"
            ),
            "retrying GET v2/projects/p/locations/r/services/web (attempt 2, in 0.5s): \
             could not connect: Connection refused ::warning::x"
        );
    }

    #[test]
    fn a_static_token_is_warned_about_only_when_the_policy_outlives_its_hour() {
        let token = Credentials::Token("t".into());
        assert!(static_token_warning(&token, Duration::from_secs(30 * 60)).is_none());
        let warning = static_token_warning(&token, Duration::from_secs(75 * 60)).unwrap();
        assert!(warning.contains("1h 15m"), "{warning}");
        assert!(warning.contains("cannot be refreshed"), "{warning}");
        assert!(static_token_warning(&Credentials::None, Duration::from_secs(7200)).is_none());
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
