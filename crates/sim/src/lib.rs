//! A simulated Cloud Run (control plane, data plane, Cloud Monitoring, STS) and a fake GitHub on
//! loopback, used by `demo` and the tests; [`call`] reaches the same API code in process, without sockets.

mod auth;
mod control;
mod dataplane;
mod distribution;
mod error;
mod faults;
mod github;
mod latency;
mod model;
mod monitoring;
mod prometheus;
mod state;
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
    Approval, DispatchMode, GitHubExchange, GitHubFault, GitHubSim, JobSpec, WorkflowSpec,
};
pub use latency::Latency;
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

    pub fn set_operation_delay(&self, delay: Duration) {
        self.model.set_operation_delay(delay)
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
        dataplane::start_http_load(self.plane.client(), url, rps)
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

