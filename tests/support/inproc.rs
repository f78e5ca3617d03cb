//! The engine's ports implemented directly on the simulator model, without sockets, so engine tests
//! run whole rollouts under a paused tokio clock through the same API code the HTTP simulator serves.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use shiftgate::ports::{
    HealthEndpoint, HealthProbe, HealthResponse, LatencyHistogram, Metrics, NewRevision, Platform,
    PortError, PortResult, RequestCounts, RevisionInfo, RolloutRecord, ServiceState, TrafficChange,
    Window,
};
use shiftgate::wire::cloudrun::{
    ListRevisionsResponse, ROLLOUT_ANNOTATION, Revision, Service, rpc_code_to_http,
    traffic_targets_json,
};
use shiftgate_sim::{ApiRequest, ApiResponse, Caller, LoadHandle, ServiceKey, SimModel, call};

/// Maps an API error status to what the engine decides on.
pub fn port_error(status: u16, message: String) -> PortError {
    match status {
        409 => PortError::Conflict(message),
        404 => PortError::NotFound(message),
        429 | 500..=599 => PortError::Unavailable(message),
        _ => PortError::Rejected { status, message },
    }
}

/// Reads a `GoogleCloudRunV2Service` the way the real client does.
fn service_state(value: Value) -> PortResult<ServiceState> {
    serde_json::from_value::<Service>(value)
        .map(|service| service.to_state())
        .map_err(|error| PortError::Unavailable(format!("unexpected service JSON: {error}")))
}

fn revision_info(value: Value) -> PortResult<RevisionInfo> {
    serde_json::from_value::<Revision>(value)
        .map(|revision| revision.to_info())
        .map_err(|error| PortError::Unavailable(format!("unexpected revision JSON: {error}")))
}

/// One call to the simulated APIs as an in-process caller: the answer as the HTTP layer would
/// have sent it, status and body, for tests to read or for the ports to turn into results.
pub async fn call_in_process(
    model: &SimModel,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> ApiResponse {
    call(
        model,
        ApiRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            caller: Caller::InProcess,
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        },
    )
    .await
}

/// The platform port for one simulated service.
#[derive(Debug, Clone)]
pub struct SimPlatform {
    pub model: SimModel,
    key: ServiceKey,
}

impl SimPlatform {
    pub fn new(model: &SimModel, project: &str, region: &str, service: &str) -> Self {
        let key = ServiceKey::new(project, region, service);
        Self {
            model: model.clone(),
            key,
        }
    }

    async fn api(
        &self,
        method: &str,
        path: String,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> PortResult<Value> {
        let response = call_in_process(&self.model, method, &path, query, body).await;
        if response.status == 200 {
            return Ok(response.body);
        }
        let message = response
            .body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_string();
        Err(port_error(response.status, message))
    }

    /// The service's annotations with the rollout record set (or cleared), read without an API
    /// call: the etag guards against them having changed since.
    fn annotations_with(&self, rollout: &Option<RolloutRecord>) -> BTreeMap<String, String> {
        let mut annotations = self
            .model
            .service_annotations(&self.key)
            .unwrap_or_default();
        match rollout {
            Some(r) => {
                annotations.insert(
                    ROLLOUT_ANNOTATION.to_string(),
                    serde_json::to_string(r).expect("a rollout record serializes"),
                );
            }
            None => {
                annotations.remove(ROLLOUT_ANNOTATION);
            }
        }
        annotations
    }

    async fn patch_and_wait(
        &self,
        body: Value,
        mask: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState> {
        let clock = self.model.clock();
        let give_up = clock.now() + deadline;
        let op = self
            .api(
                "PATCH",
                format!("/v2/{}", self.key.name()),
                &[("updateMask", mask)],
                Some(body),
            )
            .await?;
        let name = op
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut op = op;
        while op.get("done") != Some(&Value::Bool(true)) {
            let left = give_up.duration_since(clock.now()).unwrap_or_default();
            if left.is_zero() {
                return Err(PortError::Unavailable(format!(
                    "operation {name} was not done after {}",
                    humantime::format_duration(deadline)
                )));
            }
            let timeout = format!("{}s", left.as_secs_f64());
            match self
                .api(
                    "POST",
                    format!("/v2/{name}:wait"),
                    &[],
                    Some(json!({ "timeout": timeout })),
                )
                .await
            {
                Ok(next) => op = next,
                // A failed poll does not mean a failed change: poll again until the deadline.
                Err(PortError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_secs(1).min(left)).await;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(error) = op.get("error") {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(2);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("operation failed")
                .to_string();
            return Err(port_error(rpc_code_to_http(code as i32), message));
        }
        self.read_service().await
    }
}

#[async_trait]
impl Platform for SimPlatform {
    async fn read_service(&self) -> PortResult<ServiceState> {
        let v = self
            .api("GET", format!("/v2/{}", self.key.name()), &[], None)
            .await?;
        service_state(v)
    }

    async fn read_revision(&self, revision: &str) -> PortResult<RevisionInfo> {
        let v = self
            .api(
                "GET",
                format!("/v2/{}", self.key.revision_name(revision)),
                &[],
                None,
            )
            .await?;
        revision_info(v)
    }

    async fn list_revisions(&self) -> PortResult<Vec<RevisionInfo>> {
        let v = self
            .api(
                "GET",
                format!("/v2/{}/revisions", self.key.name()),
                &[],
                None,
            )
            .await?;
        let page: ListRevisionsResponse = serde_json::from_value(v).map_err(|error| {
            PortError::Unavailable(format!("unexpected revision list: {error}"))
        })?;
        Ok(page.revisions.iter().map(Revision::to_info).collect())
    }

    async fn create_revision(
        &self,
        spec: &NewRevision,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState> {
        let body = json!({
            "etag": etag,
            "template": {
                "revision": spec.revision,
                "containers": [{ "image": spec.image }],
            },
            "traffic": traffic_targets_json(&spec.traffic),
            "annotations": self.annotations_with(&spec.rollout),
        });
        self.patch_and_wait(body, "template,traffic,annotations", deadline)
            .await
    }

    async fn set_traffic(
        &self,
        change: &TrafficChange,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState> {
        let body = json!({
            "etag": etag,
            "traffic": traffic_targets_json(&change.traffic),
            "annotations": self.annotations_with(&change.rollout),
        });
        self.patch_and_wait(body, "traffic,annotations", deadline)
            .await
    }
}

/// The metrics port over the model's request records (what timeSeries.list would report).
#[derive(Debug, Clone)]
pub struct SimMetrics {
    pub model: SimModel,
    key: ServiceKey,
}

impl SimMetrics {
    pub fn new(model: &SimModel, project: &str, region: &str, service: &str) -> Self {
        let key = ServiceKey::new(project, region, service);
        Self {
            model: model.clone(),
            key,
        }
    }
}

impl SimMetrics {
    /// A `timeSeries.list` call as the HTTP simulator would admit it (faults, tokens, limits).
    fn admit_query(&self) -> PortResult<()> {
        let path = format!("/v3/projects/{}/timeSeries", self.key.project);
        self.model
            .admit_in_process_call("GET", &path)
            .map_err(|e| port_error(e.code, e.message))
    }
}

#[async_trait]
impl Metrics for SimMetrics {
    async fn request_counts(&self, window: Window) -> PortResult<BTreeMap<String, RequestCounts>> {
        self.admit_query()?;
        Ok(self
            .model
            .counts_between(&self.key, window.start, window.end)
            .into_iter()
            .map(|(rev, (total, server_errors))| {
                (
                    rev,
                    RequestCounts {
                        total,
                        server_errors,
                    },
                )
            })
            .collect())
    }

    async fn latencies(&self, window: Window) -> PortResult<BTreeMap<String, LatencyHistogram>> {
        self.admit_query()?;
        Ok(self
            .model
            .latencies_between(&self.key, window.start, window.end)
            .into_iter()
            .map(|(revision, latencies)| (revision, in_buckets(&latencies)))
            .collect())
    }
}

/// Latencies in Cloud Run's kind of buckets: exponential from 1 ms, growing by 1.4, with an
/// underflow and an overflow bucket, as `Distribution.BucketOptions` counts them.
fn in_buckets(latencies: &[Duration]) -> LatencyHistogram {
    const FINITE: i32 = 40;
    let bound = |i: i32| 1.4f64.powi(i);
    let mut histogram = LatencyHistogram::default();
    for latency in latencies {
        let ms = latency.as_secs_f64() * 1000.0;
        let (lower, upper) = match (0..=FINITE).find(|&i| ms < bound(i)) {
            Some(0) => (f64::NEG_INFINITY, bound(0)),
            Some(i) => (bound(i - 1), bound(i)),
            None => (bound(FINITE), f64::INFINITY),
        };
        histogram.add(lower, upper, 1).expect("bounds are a range");
    }
    histogram
}

/// The health port: service and tag URLs the model handed out answer like their revision would.
#[derive(Debug, Clone)]
pub struct SimHealth {
    pub model: SimModel,
}

impl SimHealth {
    pub fn new(model: &SimModel) -> Self {
        Self {
            model: model.clone(),
        }
    }
}

/// Splits `scheme://host[:port]/path?q` into its base and its path (with query).
fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find(['/', '?']) {
        Some(i) => (&url[..after_scheme + i], &url[after_scheme + i..]),
        None => (url, "/"),
    }
}

#[async_trait]
impl HealthEndpoint for SimHealth {
    async fn fetch(&self, probe: &HealthProbe<'_>) -> Result<HealthResponse, String> {
        let url = probe.url;
        let (base, path) = split_url(url);
        let (key, tag) = self.model.resolve_url(base).ok_or_else(|| {
            format!("error sending request for url ({url}): no simulated service answers at {base}")
        })?;
        let revision = self
            .model
            .route(&key.project, &key.region, &key.service, tag.as_deref())
            .ok_or_else(|| format!("{url}: no revision serves this URL"))?;
        let (status, body) = self.model.respond(&revision, path);
        self.model
            .record(&revision, status, self.model.clock().now());
        Ok(HealthResponse { status, body })
    }
}

/// Sends `GET /` to a service at `rps` through `route`/`respond`/`record`, in tokio time.
pub fn start_inproc_load(
    model: &SimModel,
    project: &str,
    region: &str,
    service: &str,
    rps: f64,
) -> LoadHandle {
    let model = model.clone();
    let key = ServiceKey::new(project, region, service);
    LoadHandle::spawn(rps, move || {
        if let Some(rev) = model.route(&key.project, &key.region, &key.service, None) {
            let (status, _) = model.respond(&rev, "/");
            model.record(&rev, status, model.clock().now());
        }
        std::future::ready(())
    })
}
