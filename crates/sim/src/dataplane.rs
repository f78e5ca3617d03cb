//! The data plane on loopback: a listener per service URL and per tag URL that routes each request
//! to a revision, one small backend server per revision standing in for its container, and a load generator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use crate::model::{Endpoints, HEALTH_PATH, SimModel, WeakModel};
use crate::state::ServiceKey;

/// Binds 127.0.0.1 on a free port. Synchronous on purpose: URLs are handed out while the model
/// assigns them, and a std bind needs no await.
pub(crate) fn bind_loopback() -> std::io::Result<(tokio::net::TcpListener, u16)> {
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    std_listener.set_nonblocking(true)?;
    let port = std_listener.local_addr()?.port();
    Ok((tokio::net::TcpListener::from_std(std_listener)?, port))
}

pub(crate) fn serve(listener: tokio::net::TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!("simulator listener stopped: {e}");
        }
    })
}

/// A response with this status, content type and body.
pub(crate) fn text(status: u16, content_type: &'static str, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// How a backend tells the front which latency it drew, so the hit records that draw exactly
/// rather than a measurement that would carry the loopback's own time. The front does not pass it on.
const LATENCY_HEADER: &str = "x-shiftgate-sim-latency-ns";

fn latency_nanos(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
}

/// Listeners and backends of the HTTP simulator. Lock order: never lock the model while holding
/// one of these mutexes (the model calls `Endpoints` while locked).
pub(crate) struct DataPlane {
    model: WeakModel,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    backends: Mutex<HashMap<String, String>>,
    client: reqwest::Client,
    this: std::sync::Weak<DataPlane>,
}

impl DataPlane {
    pub fn new(model: &SimModel) -> Arc<Self> {
        // reqwest is built without a crypto provider of its own (shiftgate installs ring); the
        // load generator only speaks plain HTTP to loopback, but building a client still asks.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            // Cloud Run's default request timeout: a slow revision's answer is waited for as the
            // platform would.
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client builds");
        Arc::new_cyclic(|this| Self {
            model: model.downgrade(),
            tasks: Mutex::new(Vec::new()),
            backends: Mutex::new(HashMap::new()),
            client,
            this: this.clone(),
        })
    }

    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    pub fn track(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    pub fn abort_all(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// A front listener for a service (tag `None`) or one of its tags; returns its URL.
    fn front(&self, key: &ServiceKey, tag: Option<&str>) -> String {
        let (Some(model), Some(plane)) = (self.model.upgrade(), self.this.upgrade()) else {
            return "http://127.0.0.1:9".to_string();
        };
        let (listener, port) = match bind_loopback() {
            Ok(bound) => bound,
            Err(e) => {
                tracing::warn!("simulator could not bind a service listener: {e}");
                return "http://127.0.0.1:9".to_string();
            }
        };
        let key = key.clone();
        let tag = tag.map(str::to_string);
        let url = format!("http://127.0.0.1:{port}");
        let called = url.clone();
        let router = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let (model, plane, key, tag) = (model.clone(), plane.clone(), key.clone(), tag.clone());
            let called = called.clone();
            async move {
                let authorization = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok());
                // Google's front end refuses before the container sees anything or counts it.
                if let Err((status, page)) = model.check_invoker(&key, &called, authorization) {
                    return text(status, "text/html; charset=UTF-8", page);
                }
                plane
                    .forward(&model, &key, tag.as_deref(), method, uri)
                    .await
            }
        });
        self.track(serve(listener, router));
        url
    }

    async fn forward(
        &self,
        model: &SimModel,
        key: &ServiceKey,
        tag: Option<&str>,
        method: Method,
        uri: Uri,
    ) -> Response {
        let Some(revision) = model.route(&key.project, &key.region, &key.service, tag) else {
            return text(
                404,
                "text/plain",
                "no revision serves this URL yet".to_string(),
            );
        };
        let backend = match self.backend(model, &revision) {
            Ok(b) => b,
            Err(e) => return text(502, "text/plain", format!("backend unavailable: {e}")),
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let method_name = method.as_str().to_string();
        match self
            .client
            .request(method, format!("{backend}{path}"))
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let json = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                let latency = resp
                    .headers()
                    .get(LATENCY_HEADER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map(Duration::from_nanos);
                let body = resp.text().await.unwrap_or_default();
                let now = model.clock().now();
                let latency = latency.unwrap_or_else(|| model.next_latency(&revision));
                model.record_with_latency(&revision, status, now, latency);
                let url = format!(
                    "{}{path}",
                    model
                        .service_uri(&key.project, &key.region, &key.service)
                        .unwrap_or_default()
                );
                model.log_request(
                    key,
                    &revision,
                    (method_name.as_str(), &url),
                    status,
                    latency,
                    now,
                );
                let content_type = if json {
                    "application/json"
                } else {
                    "text/plain"
                };
                text(status, content_type, body)
            }
            Err(e) => text(502, "text/plain", format!("upstream error: {e}")),
        }
    }

    /// The backend server of a revision, started on first use.
    fn backend(&self, model: &SimModel, revision: &str) -> std::io::Result<String> {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(url) = backends.get(revision) {
            return Ok(url.clone());
        }
        let (listener, port) = bind_loopback()?;
        let model = model.clone();
        let rev = revision.to_string();
        let router = Router::new().fallback(move |uri: Uri| {
            let (model, rev) = (model.clone(), rev.clone());
            async move {
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let (status, body) = model.respond(&rev, path);
                let latency = model.next_latency(&rev);
                // The container is what is slow: the front sees the wait like a client would.
                tokio::time::sleep(latency).await;
                let content_type = if uri.path() == HEALTH_PATH {
                    "application/json"
                } else {
                    "text/plain"
                };
                let mut response = text(status, content_type, body);
                response
                    .headers_mut()
                    .insert(LATENCY_HEADER, HeaderValue::from(latency_nanos(latency)));
                response
            }
        });
        self.track(serve(listener, router));
        let url = format!("http://127.0.0.1:{port}");
        backends.insert(revision.to_string(), url.clone());
        Ok(url)
    }
}

impl Endpoints for DataPlane {
    fn service_uri(&self, key: &ServiceKey) -> String {
        self.front(key, None)
    }

    fn tag_uri(&self, key: &ServiceKey, tag: &str) -> String {
        self.front(key, Some(tag))
    }
}

/// A running load generator; dropping it stops the load.
#[derive(Debug)]
pub struct LoadHandle {
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl LoadHandle {
    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Runs `request` at `rps` per second of tokio time; late ticks are delayed, never bunched.
    /// Each request runs in its own task, so slow answers do not lower the rate; with 256
    /// requests unanswered the next one waits for a slot. Dropping the handle ends the requests
    /// in flight too.
    pub fn spawn<F, Fut>(rps: f64, mut request: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let period = Duration::from_secs_f64(1.0 / rps.max(0.001));
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // Owned by this task, so aborting it aborts the requests in flight.
            let mut in_flight = JoinSet::new();
            loop {
                interval.tick().await;
                while in_flight.try_join_next().is_some() {}
                if in_flight.len() >= MAX_IN_FLIGHT {
                    in_flight.join_next().await;
                }
                counter.fetch_add(1, Ordering::Relaxed);
                in_flight.spawn(request());
            }
        });
        Self { sent, task }
    }
}

/// Requests a load generator leaves unanswered before it waits: a client's connection limit,
/// far above what a test's rate times a revision's latency needs.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `GET /` to a service URL at `rps` over HTTP, with the `Authorization` header
/// `authorization` gives at the time (an invoker's ID token when the service requires one).
pub(crate) fn start_http_load(
    client: reqwest::Client,
    url: String,
    rps: f64,
    authorization: impl Fn() -> Option<String> + Send + Sync + 'static,
) -> LoadHandle {
    LoadHandle::spawn(rps, move || {
        let (client, url) = (client.clone(), url.clone());
        let mut request = client.get(format!("{url}/"));
        if let Some(value) = authorization() {
            request = request.header(header::AUTHORIZATION.as_str(), value);
        }
        async move {
            if let Err(e) = request.send().await {
                tracing::debug!("simulated load request failed: {e}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A load at `rps` whose every request takes `latency`; also returns how many have answered.
    fn slow_load(rps: f64, latency: Duration) -> (LoadHandle, Arc<AtomicUsize>) {
        let answered = Arc::new(AtomicUsize::new(0));
        let counter = answered.clone();
        let load = LoadHandle::spawn(rps, move || {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(latency).await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        (load, answered)
    }

    #[tokio::test(start_paused = true)]
    async fn given_requests_slower_than_the_period_then_the_load_keeps_its_rate() {
        let (load, answered) = slow_load(10.0, Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(9_950)).await;
        assert_eq!(load.sent(), 100);
        assert_eq!(
            answered.load(Ordering::Relaxed),
            50,
            "5 s of requests in flight"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn given_requests_that_never_answer_then_the_load_stops_at_the_in_flight_bound() {
        let (load, answered) = slow_load(100.0, Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(load.sent(), MAX_IN_FLIGHT as u64);
        assert_eq!(answered.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_slow_revision_then_every_path_waits_its_latency_and_the_hit_records_it() {
        let sim = crate::Sim::start(shiftgate_clock::Clock::new())
            .await
            .unwrap();
        let slow = Duration::from_millis(250);
        sim.register_image(
            "slow:1",
            crate::Behavior::healthy("1.0.0").with_latency(slow, slow),
        );
        let revision = sim.add_service("p", "r", "app", "slow:1");
        let url = sim.service_url("p", "r", "app").unwrap();
        let client = sim.plane.client();
        for path in ["/", "/health"] {
            let started = tokio::time::Instant::now();
            let answer = client.get(format!("{url}{path}")).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            assert!(
                answer.headers().get(LATENCY_HEADER).is_none(),
                "kept inside"
            );
            assert!(started.elapsed() >= slow, "{path}: {:?}", started.elapsed());
        }
        let key = ServiceKey::new("p", "r", "app");
        let now = sim.model().clock().now();
        let seen = sim
            .model()
            .latencies_between(&key, now - Duration::from_secs(10), now);
        assert_eq!(seen[&revision], vec![slow, slow]);
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_revision_slower_than_the_period_then_http_load_keeps_its_rate() {
        let sim = crate::Sim::start(shiftgate_clock::Clock::new())
            .await
            .unwrap();
        let slow = Duration::from_secs(2);
        sim.register_image(
            "slow:1",
            crate::Behavior::healthy("1.0.0").with_latency(slow, slow),
        );
        let revision = sim.add_service("p", "r", "app", "slow:1");
        let load = sim.start_load("p", "r", "app", 20.0);
        tokio::time::sleep(Duration::from_millis(9_990)).await;
        assert_eq!(load.sent(), 200);
        // Answered: what was sent at least 2 s ago.
        assert_eq!(sim.model().counts(&revision).0, 160);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_handle_ends_the_requests_in_flight() {
        let (load, answered) = slow_load(10.0, Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(load);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(answered.load(Ordering::Relaxed), 0);
    }
}
