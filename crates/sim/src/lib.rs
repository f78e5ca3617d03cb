//! A simulated Cloud Run (control plane, data plane, Cloud Monitoring, Cloud Logging, STS) and a fake GitHub on
//! loopback, used by `demo` and the tests; [`call`] reaches the same API code in process, without sockets.

mod auth;
mod control;
mod dataplane;
mod distribution;
mod error;
mod faults;
mod github;
mod identity;
mod jobs;
mod latency;
mod logging;
mod model;
mod monitoring;
mod prometheus;
mod state;
mod storage;
mod tokens;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub use auth::SUBJECT_TOKEN;
pub use control::{ApiRequest, ApiResponse, Caller, call};
pub use dataplane::LoadHandle;
pub use distribution::LatencyBuckets;
pub use error::ApiError;
pub use faults::{Answer, BadPoint, BadSeries, Fault, HANG, MALFORMED_JSON, PointAt};
pub use github::{
    Approval, DeploymentState, DeploymentStatusState, DispatchMode, GitHubExchange, GitHubFault,
    GitHubSim, JobSpec, WorkflowSpec,
};
pub use identity::{AudienceRule, RUNNER_ACCOUNT};
pub use jobs::{FailureShape, JobBehavior};
pub use latency::Latency;
pub use logging::{AppLog, DENIED_MESSAGE as LOGGING_DENIED_MESSAGE};
pub use model::{ApiCall, Behavior, PATCH_MODE_ENV, PatchMode, SimModel};
pub use state::ServiceKey;

use auth::Sts;
use control::Delivery;
use dataplane::DataPlane;
use shiftgate_clock::Clock;

/// The whole simulator on 127.0.0.1. Its servers stop when it is dropped.
pub struct Sim {
    model: SimModel,
    plane: Arc<DataPlane>,
    base: String,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("base", &self.base).finish()
    }
}

impl Sim {
    /// Binds the API listener (Cloud Run, Monitoring and STS share it) on a free loopback port.
    /// The PATCH mode comes from [`PATCH_MODE_ENV`] (see [`SimModel::new`]); a value that names
    /// no mode is an `InvalidInput` error.
    pub async fn start(clock: Clock) -> std::io::Result<Sim> {
        PatchMode::from_env()
            .map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidInput, message))?;
        let model = SimModel::new(clock);
        let plane = DataPlane::new(&model);
        model.set_endpoints(plane.clone());
        let (listener, port) = dataplane::bind_loopback()?;
        let sts = Arc::new(Sts);
        let api_model = model.clone();
        let metrics_model = model.clone();
        let router = Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let model = metrics_model.clone();
                    async move { prometheus::exposition(&model) }
                }),
            )
            .fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let (model, sts) = (api_model.clone(), sts.clone());
                    async move { api(&model, &sts, method, uri, headers, body).await }
                },
            );
        plane.track(dataplane::serve(listener, router));
        Ok(Sim {
            model,
            plane,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Base URL of the Cloud Run Admin API (clients append `/v2/...`).
    pub fn cloud_run_url(&self) -> String {
        self.base.clone()
    }

    /// Where a Prometheus server scrapes the request counters (`/metrics`, text exposition).
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.base)
    }

    /// Base URL of the Monitoring API (clients append `/v3/...`).
    pub fn monitoring_url(&self) -> String {
        self.base.clone()
    }

    /// Base URL of the Cloud Logging API (clients append `/v2/entries:list`).
    pub fn logging_url(&self) -> String {
        self.base.clone()
    }

    /// From now on `entries:list` answers 403 PERMISSION_DENIED, or answers again (see
    /// [`SimModel::deny_logging`]).
    pub fn deny_logging(&self, denied: bool) {
        self.model.deny_logging(denied)
    }

    /// The next `pages` answers of `entries:list` are empty pages with a token to go on (see
    /// [`SimModel::logging_empty_pages`]).
    pub fn logging_empty_pages(&self, pages: usize) {
        self.model.logging_empty_pages(pages)
    }

    /// STS token endpoint (`token_url` of an external_account credential).
    pub fn sts_url(&self) -> String {
        format!("{}{}", self.base, auth::TOKEN_PATH)
    }

    /// URL-sourced subject token (`credential_source.url`), a text body.
    pub fn subject_token_url(&self) -> String {
        format!("{}{}", self.base, auth::SUBJECT_TOKEN_PATH)
    }

    pub fn model(&self) -> &SimModel {
        &self.model
    }

    /// Creates a service (see [`SimModel::add_service`]) and returns its first revision's name.
    pub fn add_service(&self, project: &str, region: &str, service: &str, image: &str) -> String {
        self.model.add_service(project, region, service, image)
    }

    pub fn service_url(&self, project: &str, region: &str, service: &str) -> Option<String> {
        self.model.service_uri(project, region, service)
    }

    pub fn register_image(&self, image: &str, behavior: Behavior) {
        self.model.register_image(image, behavior)
    }

    /// How `image` behaves in `region` only (see [`SimModel::register_image_in`]).
    pub fn register_image_in(&self, region: &str, image: &str, behavior: Behavior) {
        self.model.register_image_in(region, image, behavior)
    }

    pub fn set_operation_delay(&self, delay: Duration) {
        self.model.set_operation_delay(delay)
    }

    /// Turns `template.sessionAffinity` on or off for a service, as `gcloud run services update
    /// --session-affinity` would.
    pub fn set_session_affinity(&self, project: &str, region: &str, service: &str, on: bool) {
        self.model
            .set_session_affinity(&ServiceKey::new(project, region, service), on)
    }

    /// How a PATCH without `updateMask` is read (default: the documented field-mask rule).
    pub fn set_patch_mode(&self, mode: PatchMode) {
        self.model.set_patch_mode(mode)
    }

    pub fn set_ingestion_lag(&self, lag: Duration) {
        self.model.set_ingestion_lag(lag)
    }

    /// The buckets latency distributions are reported in (see [`SimModel::set_latency_buckets`]).
    pub fn set_latency_buckets(&self, buckets: LatencyBuckets) {
        self.model.set_latency_buckets(buckets)
    }

    pub fn hold_operations(&self, hold: bool) {
        self.model.hold_operations(hold)
    }

    pub fn require_bearer(&self, tokens: Option<Vec<String>>) {
        self.model.require_bearer(tokens)
    }

    pub fn seen_tokens(&self) -> Vec<String> {
        self.model.seen_tokens()
    }

    /// Makes the STS issue access tokens valid for `lifetime` (see [`SimModel::set_token_lifetime`]).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.model.set_token_lifetime(lifetime)
    }

    pub fn issued_tokens(&self) -> usize {
        self.model.issued_tokens()
    }

    pub fn revoke_tokens(&self) {
        self.model.revoke_tokens()
    }

    pub fn inject(&self, fault: Fault) {
        self.model.inject(fault)
    }

    /// Every `timeSeries.list` answer from now on carries `points` as the `class` series of
    /// `revision` (see [`SimModel::override_points`]).
    pub fn override_points(&self, revision: &str, class: &str, points: Vec<BadPoint>) {
        self.model.override_points(revision, class, points)
    }

    /// Sends `GET /` to the service URL at `rps` over HTTP until the handle is dropped.
    pub fn start_load(&self, project: &str, region: &str, service: &str, rps: f64) -> LoadHandle {
        let url = self
            .service_url(project, region, service)
            .unwrap_or_else(|| "http://127.0.0.1:9".to_string());
        let (model, key) = (
            self.model.clone(),
            ServiceKey::new(project, region, service),
        );
        dataplane::start_http_load(self.plane.client(), url, rps, move || {
            model.invoker_authorization(&key)
        })
    }

    /// From now on every service requires a Google ID token from its callers (`Some`, accepting
    /// audiences by the rule), or none does (`None`, the default), as Cloud Run's invoker IAM.
    pub fn require_id_token(&self, rule: Option<AudienceRule>) {
        self.model.require_id_token(rule)
    }

    /// Base of the Cloud Storage JSON API (clients append `/storage/v1/...`).
    pub fn storage_url(&self) -> String {
        self.base.clone()
    }

    /// Base of the IAM Credentials API (`generateAccessToken`, `generateIdToken`); credentials
    /// files name `{base}/v1/projects/-/serviceAccounts/{email}:generateAccessToken`.
    pub fn iam_credentials_url(&self) -> String {
        self.base.clone()
    }

    /// `host:port` of the simulated metadata server (a self-hosted runner on Google Cloud), for
    /// `GCE_METADATA_HOST`; its ID tokens are [`RUNNER_ACCOUNT`]'s.
    pub fn metadata_host(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// `(service account, audience)` of every ID token issued, in order.
    pub fn id_token_requests(&self) -> Vec<(String, String)> {
        self.model.id_token_requests()
    }

    /// Data-plane requests refused for lack of a valid ID token.
    pub fn invoker_refusals(&self) -> u64 {
        self.model.invoker_refusals()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.plane.abort_all();
    }
}

async fn api(
    model: &SimModel,
    sts: &Sts,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::GET {
        let flavor = headers.get("metadata-flavor").and_then(|v| v.to_str().ok());
        let query = auth::parse_form(uri.query().unwrap_or(""));
        let answer = identity::metadata(&mut model.state(), path, &query, flavor);
        if let Some((status, body)) = answer {
            let mut response = dataplane::text(status, "application/text", body);
            response
                .headers_mut()
                .insert("metadata-flavor", HeaderValue::from_static("Google"));
            return response;
        }
    }
    let sts_answer = match (method.as_str(), path) {
        ("GET", auth::SUBJECT_TOKEN_PATH) => Some(sts.subject_token()),
        ("POST", auth::TOKEN_PATH) => Some(
            sts.exchange(
                model,
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                &body,
            ),
        ),
        _ => None,
    };
    if let Some((status, content_type, body)) = sts_answer {
        return dataplane::text(status, content_type, body);
    }
    let request = ApiRequest {
        method: method.as_str().to_string(),
        path: path.to_string(),
        query: auth::parse_form(uri.query().unwrap_or("")),
        caller: Caller::Http(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ),
        body: body.to_vec(),
    };
    let answer = control::call(model, request).await;
    let body = match answer.delivery {
        Delivery::Json => answer.body.to_string(),
        Delivery::Raw(text) => text,
        Delivery::Reset => return reset_connection(),
    };
    let mut response = dataplane::text(answer.status, "application/json; charset=UTF-8", body);
    if let Some(seconds) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A response hyper never sends: its body fails before the first byte, and hyper then drops the
/// connection without flushing the buffered status line, so the client reads end-of-stream where
/// a response should be, as after a reset.
fn reset_connection() -> Response {
    (StatusCode::OK, axum::body::Body::new(FailingBody)).into_response()
}

struct FailingBody;

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::SystemTime;

    const MS: Duration = Duration::from_millis(1);

    /// `request_latencies` of service `app` over `(start, end]` as one period per revision.
    async fn latency_series(model: &SimModel, start: SystemTime, end: SystemTime) -> Value {
        let period = end.duration_since(start).unwrap();
        let query = [
            (
                "filter",
                "metric.type=\"run.googleapis.com/request_latencies\" AND resource.labels.service_name=\"app\"".to_string(),
            ),
            ("interval.startTime", wire::rfc3339(start)),
            ("interval.endTime", wire::rfc3339(end)),
            ("aggregation.alignmentPeriod", format!("{}s", period.as_secs())),
            ("aggregation.perSeriesAligner", "ALIGN_DELTA".to_string()),
            ("aggregation.crossSeriesReducer", "REDUCE_SUM".to_string()),
            (
                "aggregation.groupByFields",
                "resource.labels.revision_name".to_string(),
            ),
        ];
        let answer = call(
            model,
            ApiRequest {
                method: "GET".into(),
                path: "/v3/projects/p/timeSeries".into(),
                query: query
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                caller: Caller::InProcess,
                body: Vec::new(),
            },
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    #[tokio::test(start_paused = true)]
    async fn given_median_200ms_p95_800ms_when_1000_requests_are_served_then_monitoring_and_metrics_agree()
     {
        let model = SimModel::new(shiftgate_clock::Clock::new());
        model.register_image(
            "slow:1",
            Behavior::healthy("1.0.0").with_latency(MS * 200, MS * 800),
        );
        let revision = model.add_service("p", "r", "app", "slow:1");
        let key = ServiceKey::new("p", "r", "app");
        let start = model.clock().now();

        // When 1,000 requests are served in process, one every 100 ms,
        for _ in 0..1000 {
            tokio::time::sleep(MS * 100).await;
            let picked = model.route("p", "r", "app", None).unwrap();
            let (status, _) = model.respond(&picked, "/");
            model.record(&picked, status, model.clock().now());
        }
        let end = start + Duration::from_secs(100);

        // then exactly 5% of the recorded latencies exceed the p95,
        let latencies = model.latencies_between(&key, start, end);
        let slow = latencies[&revision]
            .iter()
            .filter(|l| **l > MS * 800)
            .count();
        assert_eq!((latencies[&revision].len(), slow), (1000, 50));

        // Monitoring's one distribution counts them all, and its buckets add up to its count,
        let body = latency_series(&model, start, end).await;
        let distribution = &body["timeSeries"][0]["points"][0]["value"]["distributionValue"];
        assert_eq!(distribution["count"], "1000", "{body}");
        let buckets: u64 = distribution["bucketCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(buckets, 1000);
        let mean = distribution["mean"].as_f64().unwrap();
        let served_ms: f64 = latencies[&revision]
            .iter()
            .map(|l| l.as_secs_f64() * 1000.0)
            .sum();
        assert!((mean - served_ms / 1000.0).abs() < 1e-6, "{mean} ms");

        // and /metrics counts 1,000 requests in the histogram as in the counter.
        let text = prometheus::exposition(&model);
        let labels = format!(
            "project_id=\"p\",location=\"r\",service_name=\"app\",revision_name=\"{revision}\""
        );
        for line in [
            format!("run_googleapis_com:request_latencies_count{{{labels}}} 1000"),
            format!("run_googleapis_com:request_latencies_bucket{{{labels},le=\"+Inf\"}} 1000"),
            format!(
                "run_googleapis_com:request_count{{{labels},response_code_class=\"2xx\"}} 1000"
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
