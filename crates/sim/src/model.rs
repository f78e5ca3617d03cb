//! The simulator's state: services, revisions, long-running operations, traffic and request
//! records, behind one mutex. Pure logic and no HTTP: the HTTP layers and the in-process adapters drive it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::distribution::LatencyBuckets;
use crate::error::{ApiError, not_found_service, status_error};
use crate::faults::{Answer, BadPoint, BadSeries, Fault, RESET_MESSAGE};
use crate::identity::{AudienceRule, Identity, Refusal};
use crate::jobs::{JobBehavior, Jobs};
use crate::latency::Latency;
use crate::logging::{AppLog, Body, Logs, Severity};
use crate::state::{
    Hit, Operation, RevState, RevStats, Revision, Service, ServiceKey, ServicePatch, TYPE_LATEST,
    TYPE_REVISION, Target,
};
use crate::storage::Storage;
use crate::tokens::TokenLedger;
use crate::wire::typed_service;
use shiftgate_clock::Clock;

pub const HEALTH_PATH: &str = "/health";

/// How revisions made from one image behave.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub version: String,
    /// Share of non-health requests answered 500, applied deterministically: request n fails iff
    /// `floor(n*rate) > floor((n-1)*rate)`.
    pub error_rate: f64,
    /// When false, `/health` answers 503 `{"status":"error"}`.
    pub healthy: bool,
    /// Replaces the `/health` body.
    pub health_body: Option<String>,
    /// Creating a revision from this image fails: the operation ends with an error, the revision is
    /// not ready and traffic stays as it was.
    pub fails_to_start: bool,
    /// How long each request (every path, `/health` too) takes; request n of a revision gets the
    /// n-th of its deterministic draws (see [`Latency`]).
    pub latency: Latency,
    /// What the container logs (severity ERROR) when it answers a request 500; `None`: the line
    /// `internal error while handling PATH`.
    pub error_log: Option<AppLog>,
}

impl Behavior {
    pub fn healthy(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            error_rate: 0.0,
            healthy: true,
            health_body: None,
            fails_to_start: false,
            latency: Latency::DEFAULT,
            error_log: None,
        }
    }

    pub fn unhealthy(version: impl Into<String>) -> Self {
        Self {
            healthy: false,
            ..Self::healthy(version)
        }
    }

    pub fn erroring(version: impl Into<String>, error_rate: f64) -> Self {
        Self {
            error_rate,
            ..Self::healthy(version)
        }
    }

    pub fn failing_to_start(version: impl Into<String>) -> Self {
        Self {
            fails_to_start: true,
            ..Self::healthy(version)
        }
    }

    pub fn with_health_body(mut self, body: impl Into<String>) -> Self {
        self.health_body = Some(body.into());
        self
    }

    /// Requests take a log-normal latency with this median and p95 (equal: always the median).
    pub fn with_latency(mut self, median: Duration, p95: Duration) -> Self {
        self.latency = Latency { median, p95 };
        self
    }

    /// The line the container logs with each 500 it answers (a `textPayload`, or a `jsonPayload`).
    pub fn with_error_log(mut self, line: AppLog) -> Self {
        self.error_log = Some(line);
        self
    }

    /// An unregistered image is healthy; its version comes from a semver tag (`:v1.2.3`, `:1.2.3`).
    pub fn for_unknown_image(image: &str) -> Self {
        let after_path = image.rsplit('/').next().unwrap_or(image);
        let tag = after_path.split_once(':').map(|(_, tag)| tag).unwrap_or("");
        let candidate = tag.strip_prefix('v').unwrap_or(tag);
        let version = match semver::Version::parse(candidate) {
            Ok(v) => v.to_string(),
            Err(_) => "0.0.0".to_string(),
        };
        Self::healthy(version)
    }
}

/// Hands out the URLs of services and tags. The HTTP simulator binds a listener per URL; in process
/// the URLs only need to be unique and look like Cloud Run's.
pub trait Endpoints: Send + Sync {
    fn service_uri(&self, key: &ServiceKey) -> String;
    fn tag_uri(&self, key: &ServiceKey, tag: &str) -> String;
}

struct RunAppUrls;

impl Endpoints for RunAppUrls {
    fn service_uri(&self, key: &ServiceKey) -> String {
        format!("https://{}-{}-uc.a.run.app", key.service, project_hash(key))
    }

    fn tag_uri(&self, key: &ServiceKey, tag: &str) -> String {
        format!(
            "https://{tag}---{}-{}-uc.a.run.app",
            key.service,
            project_hash(key)
        )
    }
}

fn project_hash(key: &ServiceKey) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.project.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(h % 36) as usize] as char);
        h /= 36;
    }
    out
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A control-plane or monitoring call, as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub method: String,
    pub path: String,
    pub at: SystemTime,
}

/// How the simulator reads a PATCH that carries no `updateMask`. With a mask both modes are the
/// same: exactly the named fields change, and a named field absent from the body is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatchMode {
    /// AIP-134, what Google documents: no mask means "the fields present in the body", so a body
    /// without `annotations` leaves the annotations as they are.
    #[default]
    FieldMask,
    /// The older reading some servers and fakes use: the body replaces every updatable field, so an
    /// absent `annotations` clears them.
    FullReplace,
}

impl PatchMode {
    /// Names a tester sets the mode with (see [`PATCH_MODE_ENV`]).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "field-mask" => Some(PatchMode::FieldMask),
            "full-replace" => Some(PatchMode::FullReplace),
            _ => None,
        }
    }

    /// The mode [`PATCH_MODE_ENV`] asks for (unset or empty: the documented rule).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(PATCH_MODE_ENV) {
            Ok(text) if !text.trim().is_empty() => Self::parse(&text).ok_or_else(|| {
                format!(
                    "{PATCH_MODE_ENV}={text:?} is not a PATCH mode: use field-mask or full-replace"
                )
            }),
            _ => Ok(PatchMode::default()),
        }
    }
}

/// Lets a whole test run (or `shiftgate demo`) use either reading of a mask-less PATCH without
/// code changes, so every scenario can be run under both.
pub const PATCH_MODE_ENV: &str = "SHIFTGATE_SIM_PATCH_MODE";

pub(crate) struct Inner {
    pub clock: Clock,
    pub patch_mode: PatchMode,
    rng: u64,
    pub services: BTreeMap<ServiceKey, Service>,
    rev_index: HashMap<String, ServiceKey>,
    behaviors: HashMap<String, Behavior>,
    /// `(region, image)`: how an image behaves in one region only (a secret or a database that
    /// region lacks), before `behaviors`.
    regional_behaviors: HashMap<(String, String), Behavior>,
    pub stats: HashMap<String, RevStats>,
    pub ops: BTreeMap<String, Operation>,
    pub faults: Vec<Fault>,
    point_overrides: Vec<BadSeries>,
    pub hold: bool,
    pub op_delay: Duration,
    pub ingestion_lag: Duration,
    pub latency_buckets: LatencyBuckets,
    pub write_count: u64,
    pub log: Vec<ApiCall>,
    pub bearer: Option<Vec<String>>,
    pub seen_tokens: Vec<String>,
    pub tokens: TokenLedger,
    pub identity: Identity,
    pub storage: Storage,
    pub jobs: Jobs,
    pub logs: Logs,
    urls: HashMap<String, (ServiceKey, Option<String>)>,
    endpoints: Arc<dyn Endpoints>,
}

/// The simulated platform's state. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct SimModel {
    inner: Arc<Mutex<Inner>>,
}

/// A handle that does not keep the state alive (for servers the state itself refers to).
#[derive(Clone)]
pub(crate) struct WeakModel {
    inner: std::sync::Weak<Mutex<Inner>>,
}

impl WeakModel {
    pub fn upgrade(&self) -> Option<SimModel> {
        self.inner.upgrade().map(|inner| SimModel { inner })
    }
}

impl std::fmt::Debug for SimModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimModel").finish_non_exhaustive()
    }
}

impl SimModel {
    /// A model in the PATCH mode [`PATCH_MODE_ENV`] names, else the documented field-mask rule.
    ///
    /// # Panics
    ///
    /// When [`PATCH_MODE_ENV`] holds something other than a mode name: a typo must not silently
    /// test the other mode. [`Sim::start`](crate::Sim::start) checks it first and returns an error.
    pub fn new(clock: Clock) -> Self {
        let patch_mode = PatchMode::from_env().unwrap_or_else(|message| panic!("{message}"));
        Self {
            inner: Arc::new(Mutex::new(Inner {
                clock,
                patch_mode,
                rng: 0x9e3779b97f4a7c15,
                services: BTreeMap::new(),
                rev_index: HashMap::new(),
                behaviors: HashMap::new(),
                regional_behaviors: HashMap::new(),
                stats: HashMap::new(),
                ops: BTreeMap::new(),
                faults: Vec::new(),
                point_overrides: Vec::new(),
                hold: false,
                op_delay: Duration::from_millis(100),
                ingestion_lag: Duration::ZERO,
                latency_buckets: LatencyBuckets::default(),
                write_count: 0,
                log: Vec::new(),
                bearer: None,
                seen_tokens: Vec::new(),
                tokens: Default::default(),
                identity: Identity::default(),
                storage: Storage::default(),
                jobs: Jobs::default(),
                logs: Logs::default(),
                urls: HashMap::new(),
                endpoints: Arc::new(RunAppUrls),
            })),
        }
    }

    /// Locks the state after completing every operation that is due, so that no reader ever sees
    /// an operation that should have finished by now.
    pub(crate) fn state(&self) -> MutexGuard<'_, Inner> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.tick();
        guard
    }

    pub(crate) fn downgrade(&self) -> WeakModel {
        WeakModel {
            inner: Arc::downgrade(&self.inner),
        }
    }

    pub(crate) fn set_endpoints(&self, endpoints: Arc<dyn Endpoints>) {
        self.state().endpoints = endpoints;
    }

    pub fn clock(&self) -> Clock {
        self.state().clock
    }

    /// Creates a service as `gcloud run deploy` leaves it (one ready revision, `LATEST=100`, a
    /// pinned `template.revision`) and returns the revision's short name.
    pub fn add_service(&self, project: &str, region: &str, service: &str, image: &str) -> String {
        let key = ServiceKey::new(project, region, service);
        let endpoints = self.state().endpoints.clone();
        // Binding a listener must not happen under the state lock: its server task locks it too.
        let uri = endpoints.service_uri(&key);
        let mut s = self.state();
        let now = s.clock.now();
        let suffix = s.random_chars(3);
        let revision = format!("{service}-00001-{suffix}");
        let uid = s.uuid();
        let rev_uid = s.uuid();
        let etag = s.etag();
        s.urls.insert(uri.clone(), (key.clone(), None));
        s.rev_index.insert(revision.clone(), key.clone());
        let mut svc = Service {
            key: key.clone(),
            uid,
            generation: 1,
            observed_generation: 1,
            etag,
            uri,
            created: now,
            updated: now,
            template_revision: Some(revision.clone()),
            image: image.to_string(),
            session_affinity: false,
            traffic: vec![Target::latest(100)],
            applied: vec![Target::latest(100)],
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            description: None,
            revisions: vec![Revision {
                name: revision.clone(),
                uid: rev_uid,
                image: image.to_string(),
                created: now,
                updated: now,
                state: RevState::Ready,
            }],
            next_index: 2,
            tag_uris: BTreeMap::new(),
            history: Vec::new(),
            pending: 0,
            failure: None,
            transition: now,
            wrr: Vec::new(),
        };
        svc.record_split();
        s.services.insert(key, svc);
        revision
    }

    pub fn register_image(&self, image: &str, behavior: Behavior) {
        self.state().behaviors.insert(image.to_string(), behavior);
    }

    pub fn behavior(&self, image: &str) -> Behavior {
        self.state().behavior(image)
    }

    /// How `image` behaves in `region` only, whatever it does elsewhere (a secret or a database
    /// that region lacks): a rollout in waves can then fail in its second region.
    pub fn register_image_in(&self, region: &str, image: &str, behavior: Behavior) {
        self.state()
            .regional_behaviors
            .insert((region.to_string(), image.to_string()), behavior);
    }

    pub fn set_operation_delay(&self, delay: Duration) {
        self.state().op_delay = delay;
    }

    /// How a PATCH without `updateMask` is read from now on.
    /// Turns `template.sessionAffinity` on or off, without a new revision or generation: what a
    /// person set before the rollout.
    pub fn set_session_affinity(&self, key: &ServiceKey, on: bool) {
        if let Some(svc) = self.state().services.get_mut(key) {
            svc.session_affinity = on;
        }
    }

    pub fn set_patch_mode(&self, mode: PatchMode) {
        self.state().patch_mode = mode;
    }

    pub fn patch_mode(&self) -> PatchMode {
        self.state().patch_mode
    }

    /// While held, no operation completes; releasing lets every due operation finish.
    pub fn hold_operations(&self, hold: bool) {
        self.state().hold = hold;
    }

    pub fn set_ingestion_lag(&self, lag: Duration) {
        self.state().ingestion_lag = lag;
    }

    /// The buckets of the latency distributions Monitoring and `/metrics` report from now on.
    ///
    /// # Panics
    ///
    /// When Google's API would refuse the layout (no finite bucket where one is needed, a growth
    /// of at most 1, a width or scale of at most 0, explicit bounds not strictly increasing): a
    /// test must not silently read buckets no real backend could send.
    pub fn set_latency_buckets(&self, buckets: LatencyBuckets) {
        if let Err(message) = buckets.check() {
            panic!("{message}");
        }
        self.state().latency_buckets = buckets;
    }

    pub fn latency_buckets(&self) -> LatencyBuckets {
        self.state().latency_buckets.clone()
    }

    /// Control-plane and monitoring calls need `Authorization: Bearer <one of these>` (HTTP only).
    pub fn require_bearer(&self, tokens: Option<Vec<String>>) {
        self.state().bearer = tokens;
    }

    pub fn seen_tokens(&self) -> Vec<String> {
        self.state().seen_tokens.clone()
    }

    /// From now on every service (`Some`) or none (`None`) requires its callers to carry a Google
    /// ID token, as a service without `allUsers` as invoker does, accepting audiences by `rule`.
    pub fn require_id_token(&self, rule: Option<AudienceRule>) {
        self.state().identity.require_invoker(rule);
    }

    /// Stores an object of `size` bytes in `bucket` (Cloud Storage).
    pub fn put_object(&self, bucket: &str, name: &str, size: u64) {
        let mut s = self.state();
        let now = s.clock.now();
        s.storage.put(bucket, name, size, now);
    }

    /// Names and sizes of a bucket's objects.
    pub fn objects(&self, bucket: &str) -> Vec<(String, u64)> {
        self.state().storage.list(bucket)
    }

    /// A Cloud Run job that can be run (`jobs.run`), behaving so.
    pub fn add_job(&self, project: &str, region: &str, job: &str, behavior: JobBehavior) {
        self.state().jobs.add(project, region, job, behavior);
    }

    /// How many times `job` was run.
    pub fn job_runs(&self, job: &str) -> usize {
        self.state().jobs.runs(job)
    }

    /// `(service account, audience)` of every ID token the IAM Credentials fake issued.
    pub fn id_token_requests(&self) -> Vec<(String, String)> {
        self.state().identity.requested.clone()
    }

    /// Data-plane requests refused for lack of a valid ID token.
    pub fn invoker_refusals(&self) -> u64 {
        self.state().identity.refused
    }

    /// Cloud Run's invoker check of a request to `called`, a URL of the service `key`.
    pub(crate) fn check_invoker(
        &self,
        key: &ServiceKey,
        called: &str,
        authorization: Option<&str>,
    ) -> Result<(), Refusal> {
        let mut s = self.state();
        let now = s.clock.now();
        let Some(service_url) = s.services.get(key).map(|svc| svc.uri.clone()) else {
            return Ok(());
        };
        s.identity.check(authorization, &service_url, called, now)
    }

    /// The `Authorization` value a caller with `roles/run.invoker` sends to `url` of the service
    /// `key` when ID tokens are required (the load generator is such a caller); `None` otherwise.
    pub(crate) fn invoker_authorization(&self, key: &ServiceKey) -> Option<String> {
        let mut s = self.state();
        s.identity.invoker()?;
        let now = s.clock.now();
        let service_url = s.services.get(key)?.uri.clone();
        Some(format!(
            "Bearer {}",
            s.identity.token_for_load(&service_url, now)
        ))
    }

    /// `expires_in` of the access tokens the STS issues from now on; the APIs refuse them after.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().tokens.lifetime = lifetime;
    }

    /// Ends every access token issued so far; the client is not told.
    pub fn revoke_tokens(&self) {
        let mut state = self.state();
        let now = state.clock.now();
        state.tokens.revoke_all(now);
    }

    /// Access tokens the STS has issued.
    pub fn issued_tokens(&self) -> usize {
        self.state().tokens.issued()
    }

    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// From now on every `timeSeries.list` answer carries `points` as the `class` series of
    /// `revision` (replacing a previous override of that series), until
    /// [`SimModel::clear_point_overrides`].
    pub fn override_points(&self, revision: &str, class: &str, points: Vec<BadPoint>) {
        let mut s = self.state();
        s.point_overrides
            .retain(|o| (o.revision.as_str(), o.class.as_str()) != (revision, class));
        s.point_overrides
            .push(BadSeries::new(revision, class, points));
    }

    pub fn clear_point_overrides(&self) {
        self.state().point_overrides.clear();
    }

    /// Faults injected and not yet consumed.
    pub fn pending_faults(&self) -> usize {
        self.state().faults.len()
    }

    pub fn traffic_history(
        &self,
        project: &str,
        region: &str,
        service: &str,
    ) -> Vec<Vec<(String, u8)>> {
        self.state()
            .services
            .get(&ServiceKey::new(project, region, service))
            .map(|s| s.history.clone())
            .unwrap_or_default()
    }

    /// The split in effect now (same shape as a `traffic_history` entry).
    pub fn current_split(&self, project: &str, region: &str, service: &str) -> Vec<(String, u8)> {
        self.state()
            .services
            .get(&ServiceKey::new(project, region, service))
            .map(Service::resolved_split)
            .unwrap_or_default()
    }

    /// Accepted PATCH calls.
    pub fn write_count(&self) -> u64 {
        self.state().write_count
    }

    pub fn request_log(&self) -> Vec<ApiCall> {
        self.state().log.clone()
    }

    /// Calls received with this HTTP method (e.g. `"PATCH"`).
    pub fn api_calls(&self, method: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .count()
    }

    /// A service's annotations as stored, read without an API call (for in-process adapters, which
    /// then write under the service's etag).
    pub fn service_annotations(&self, key: &ServiceKey) -> Option<BTreeMap<String, String>> {
        self.state()
            .services
            .get(key)
            .map(|s| s.annotations.clone())
    }

    /// Sets one annotation of a service as an edit outside shiftgate would (`gcloud run services
    /// update --update-annotations`): a new etag, no new revision.
    pub fn set_service_annotation(&self, key: &ServiceKey, name: &str, value: &str) {
        let mut state = self.state();
        let etag = state.etag();
        if let Some(svc) = state.services.get_mut(key) {
            svc.annotations.insert(name.to_string(), value.to_string());
            svc.etag = etag;
        }
    }

    /// Logs a call an in-process adapter makes outside [`crate::call`] and answers it with the first
    /// matching call fault, if any (see [`Inner::take_status_fault`]).
    pub fn admit_in_process_call(&self, method: &str, path: &str) -> Result<(), ApiError> {
        let mut state = self.state();
        state.log_call(method, path);
        state.take_status_fault(method, path).map_or(Ok(()), Err)
    }

    /// Requests a revision answered, and how many of them were 5xx.
    pub fn counts(&self, revision: &str) -> (u64, u64) {
        let s = self.state();
        s.stats
            .get(revision)
            .map(|st| {
                let total = st.hits.len() as u64;
                let errors = st.hits.iter().filter(|h| h.code >= 500).count() as u64;
                (total, errors)
            })
            .unwrap_or((0, 0))
    }

    /// Revision names of a service, oldest first.
    pub fn revisions(&self, project: &str, region: &str, service: &str) -> Vec<String> {
        self.state()
            .services
            .get(&ServiceKey::new(project, region, service))
            .map(|s| s.revisions.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    }

    pub fn service_uri(&self, project: &str, region: &str, service: &str) -> Option<String> {
        self.state()
            .services
            .get(&ServiceKey::new(project, region, service))
            .map(|s| s.uri.clone())
    }

    /// Picks the revision for one data-plane request: the tag's revision, or the next one of the
    /// split by smooth weighted round-robin.
    pub fn route(
        &self,
        project: &str,
        region: &str,
        service: &str,
        tag: Option<&str>,
    ) -> Option<String> {
        let mut s = self.state();
        let svc = s
            .services
            .get_mut(&ServiceKey::new(project, region, service))?;
        match tag {
            Some(tag) => svc.tag_revision(tag),
            None => svc.pick(),
        }
    }

    /// The service (and tag) a service or tag URL belongs to.
    pub fn resolve_url(&self, base: &str) -> Option<(ServiceKey, Option<String>)> {
        self.state().urls.get(base.trim_end_matches('/')).cloned()
    }

    /// Counts one answered request, with the revision's next latency draw (see
    /// [`SimModel::next_latency`]); monitoring sees it after the ingestion lag.
    pub fn record(&self, revision: &str, status: u16, at: SystemTime) {
        let latency = self.next_latency(revision);
        self.record_with_latency(revision, status, at, latency);
    }

    /// Counts one answered request that took `latency` (drawn before it was served, as the HTTP
    /// data plane does); monitoring sees it after the ingestion lag.
    pub fn record_with_latency(
        &self,
        revision: &str,
        status: u16,
        at: SystemTime,
        latency: Duration,
    ) {
        self.state()
            .stats
            .entry(revision.to_string())
            .or_default()
            .hits
            .push(Hit {
                at,
                code: status,
                latency,
            });
    }

    /// Writes Cloud Run's request log of one request a revision answered with a 4xx or 5xx (as
    /// WARNING or ERROR); the simulator keeps no log of successful requests.
    pub fn log_request(
        &self,
        key: &ServiceKey,
        revision: &str,
        request: (&str, &str),
        status: u16,
        latency: Duration,
        at: SystemTime,
    ) {
        let severity = Severity::of_status(status);
        if severity < Severity::Warning {
            return;
        }
        let (method, url) = request;
        self.state().logs.push(
            key,
            revision,
            at,
            severity,
            Body::Request {
                method: method.to_string(),
                url: url.to_string(),
                status,
                latency,
            },
        );
    }

    /// From now on `entries:list` answers 403 PERMISSION_DENIED (`true`: the caller lacks
    /// `roles/logging.viewer`), or answers again (`false`).
    pub fn deny_logging(&self, denied: bool) {
        self.state().logs.denied = denied;
    }

    /// The next `pages` answers of `entries:list` are empty pages with a `nextPageToken` that goes
    /// on from the same place, as Cloud Logging answers when its search runs out of time.
    pub fn logging_empty_pages(&self, pages: usize) {
        self.state().logs.empty_pages = pages;
    }

    /// The log entries kept for `revision`, oldest first, as `entries:list` shows them.
    pub fn log_entries(&self, revision: &str) -> Vec<serde_json::Value> {
        crate::logging::entries_of(&self.state().logs, revision)
    }

    /// How many entries are kept per (revision, severity).
    pub fn log_counts(&self) -> BTreeMap<(String, &'static str), usize> {
        crate::logging::counts(&self.state().logs)
    }

    /// Draws the latency of a revision's next request (of any path): the n-th draw of its image's
    /// [`Latency`]. A revision the model does not know takes [`Latency::DEFAULT`].
    pub fn next_latency(&self, revision: &str) -> Duration {
        let mut s = self.state();
        let latency = s
            .rev_index
            .get(revision)
            .and_then(|k| Some((k, s.services.get(k)?)))
            .and_then(|(k, svc)| Some((k, svc.revision(revision)?)))
            .map(|(k, r)| s.behavior_in(k, &r.image).latency)
            .unwrap_or_default();
        let stats = s.stats.entry(revision.to_string()).or_default();
        stats.timed += 1;
        latency.nth(stats.timed)
    }

    /// What a revision answers for `path`, per its image's behaviour.
    pub fn respond(&self, revision: &str, path: &str) -> (u16, String) {
        let mut s = self.state();
        let image = s.rev_index.get(revision).and_then(|k| {
            let image = s.services.get(k)?.revision(revision)?.image.clone();
            Some((k.clone(), image))
        });
        let Some((key, image)) = image else {
            return (404, format!("no revision {revision}"));
        };
        let behavior = s.behavior_in(&key, &image);
        let path_only = path.split('?').next().unwrap_or(path);
        if path_only == HEALTH_PATH {
            return if behavior.healthy {
                let body = behavior.health_body.clone().unwrap_or_else(|| {
                    serde_json::json!({"status": "ok", "ready": true, "version": behavior.version})
                        .to_string()
                });
                (200, body)
            } else {
                let body = behavior
                    .health_body
                    .clone()
                    .unwrap_or_else(|| r#"{"status":"error"}"#.to_string());
                (503, body)
            };
        }
        let stats = s.stats.entry(revision.to_string()).or_default();
        stats.served += 1;
        let n = stats.served as f64;
        let rate = behavior.error_rate.clamp(0.0, 1.0);
        if (n * rate).floor() > ((n - 1.0) * rate).floor() {
            let line = behavior.error_log.clone().unwrap_or_else(|| {
                AppLog::Text(format!("internal error while handling {path_only}"))
            });
            let key = s.rev_index.get(revision).cloned();
            if let Some(key) = key {
                let now = s.clock.now();
                s.logs
                    .push(&key, revision, now, Severity::Error, Body::App(line));
            }
            (500, format!("internal error from {revision}"))
        } else {
            (200, format!("hello from {revision}"))
        }
    }

    /// Requests per revision of a service answered in `(start, end]` and already ingested:
    /// revision → (total, 5xx).
    pub fn counts_between(
        &self,
        key: &ServiceKey,
        start: SystemTime,
        end: SystemTime,
    ) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        for (revision, hit) in self.state().hits_between(key, start, end) {
            let entry: &mut (u64, u64) = out.entry(revision).or_default();
            entry.0 += 1;
            if hit.code >= 500 {
                entry.1 += 1;
            }
        }
        out
    }

    /// Latencies of the requests per revision of a service answered in `(start, end]` and already
    /// ingested (what [`SimModel::counts_between`] counts), in the order they were recorded.
    pub fn latencies_between(
        &self,
        key: &ServiceKey,
        start: SystemTime,
        end: SystemTime,
    ) -> BTreeMap<String, Vec<Duration>> {
        let mut out: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        for (revision, hit) in self.state().hits_between(key, start, end) {
            out.entry(revision).or_default().push(hit.latency);
        }
        out
    }

    /// Ingested hits of every revision of the services matching the filter: (service, revision, hits).
    pub(crate) fn visible_hits(&self, project: &str) -> Vec<(ServiceKey, String, Vec<Hit>)> {
        let s = self.state();
        let visible_until = s.clock.now().checked_sub(s.ingestion_lag);
        let mut out = Vec::new();
        for (key, svc) in s.services.iter().filter(|(k, _)| k.project == project) {
            for rev in &svc.revisions {
                let hits: Vec<Hit> = s
                    .stats
                    .get(&rev.name)
                    .map(|st| {
                        st.hits
                            .iter()
                            .filter(|h| visible_until.is_some_and(|v| h.at <= v))
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((key.clone(), rev.name.clone(), hits));
            }
        }
        out
    }
}

impl Inner {
    /// The hits of a service's revisions answered in `(start, end]` and already ingested: the one
    /// visibility rule of every in-process metrics reader.
    fn hits_between(
        &self,
        key: &ServiceKey,
        start: SystemTime,
        end: SystemTime,
    ) -> Vec<(String, Hit)> {
        let visible_until = self.clock.now().checked_sub(self.ingestion_lag);
        let Some(svc) = self.services.get(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for rev in &svc.revisions {
            let Some(stats) = self.stats.get(&rev.name) else {
                continue;
            };
            out.extend(
                stats
                    .hits
                    .iter()
                    .filter(|h| {
                        h.at > start && h.at <= end && visible_until.is_some_and(|v| h.at <= v)
                    })
                    .map(|h| (rev.name.clone(), *h)),
            );
        }
        out
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic names and ids, so test runs are reproducible.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545f4914f6cdd1d)
    }

    pub fn random_chars(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| ALPHABET[(self.next_random() % 36) as usize] as char)
            .collect()
    }

    pub fn uuid(&mut self) -> String {
        let a = self.next_random();
        let b = self.next_random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn etag(&mut self) -> String {
        let a = self.next_random();
        format!("\"{a:016x}\"")
    }

    pub fn behavior(&self, image: &str) -> Behavior {
        self.behaviors
            .get(image)
            .cloned()
            .unwrap_or_else(|| Behavior::for_unknown_image(image))
    }

    /// [`Self::behavior`] of an image run by the service `key`: its region's own first.
    pub fn behavior_in(&self, key: &ServiceKey, image: &str) -> Behavior {
        self.regional_behaviors
            .get(&(key.region.clone(), image.to_string()))
            .cloned()
            .unwrap_or_else(|| self.behavior(image))
    }

    pub fn log_call(&mut self, method: &str, path: &str) {
        let at = self.clock.now();
        self.log.push(ApiCall {
            method: method.to_string(),
            path: path.to_string(),
            at,
        });
    }

    /// Consumes the first call fault matching this call: what its caller gets, and whether the
    /// call is applied first.
    pub fn take_call_fault(&mut self, method: &str, path: &str) -> Option<(Answer, bool)> {
        let (i, answer) = self
            .faults
            .iter()
            .enumerate()
            .find_map(|(i, f)| f.call_answer(method, path).map(|a| (i, a)))?;
        self.faults.remove(i);
        Some(answer)
    }

    /// Consumes the first call fault matching this call, as the error an in-process caller that
    /// cannot wait or read raw bytes sees: a hang is a 504, a reset 503, a mangled body a 502.
    pub fn take_status_fault(&mut self, method: &str, path: &str) -> Option<ApiError> {
        let (answer, _) = self.take_call_fault(method, path)?;
        Some(match answer {
            Answer::Status {
                status,
                retry_after,
            } => status_error(status, retry_after),
            Answer::Hang => status_error(504, None),
            Answer::Reset => ApiError::new(503, RESET_MESSAGE),
            Answer::MalformedJson | Answer::TruncatedJson => {
                ApiError::new(502, "The answer was not valid JSON (simulated).")
            }
        })
    }

    /// The series a `timeSeries.list` answer carries in place of recorded ones: the lasting
    /// overrides, then the first one-shot [`Fault::MetricPoints`], which this uses up.
    pub fn take_bad_series(&mut self) -> Vec<BadSeries> {
        let mut out = self.point_overrides.clone();
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| matches!(f, Fault::MetricPoints(_)))
            && let Fault::MetricPoints(series) = self.faults.remove(i)
        {
            out.retain(|s| (&s.revision, &s.class) != (&series.revision, &series.class));
            out.push(series);
        }
        out
    }

    fn take_operation_fault(&mut self) -> (Option<Duration>, Option<String>) {
        let mut delay = None;
        let mut failure = None;
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| matches!(f, Fault::SlowOperation(_)))
            && let Fault::SlowOperation(d) = self.faults.remove(i)
        {
            delay = Some(d);
        }
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| matches!(f, Fault::FailOperation(_)))
            && let Fault::FailOperation(m) = self.faults.remove(i)
        {
            failure = Some(m);
        }
        (delay, failure)
    }

    pub fn service(&self, key: &ServiceKey) -> Result<&Service, ApiError> {
        self.services.get(key).ok_or_else(|| not_found_service(key))
    }

    /// Completes every due operation, oldest due first.
    pub fn tick(&mut self) {
        if self.hold {
            return;
        }
        let now = self.clock.now();
        let mut due: Vec<(SystemTime, u64, String)> = self
            .ops
            .values()
            .filter(|op| !op.done && op.due <= now)
            .map(|op| (op.due, op.seq, op.id.clone()))
            .collect();
        due.sort();
        for (_, _, id) in due {
            self.complete(&id, now);
        }
    }

    fn complete(&mut self, id: &str, now: SystemTime) {
        let Some(op) = self.ops.get(id).cloned() else {
            return;
        };
        let behavior = op
            .new_revision
            .as_ref()
            .and_then(|r| {
                self.services
                    .get(&op.key)?
                    .revision(r)
                    .map(|r| r.image.clone())
            })
            .map(|image| self.behavior_in(&op.key, &image));
        let Some(svc) = self.services.get_mut(&op.key) else {
            return;
        };
        svc.pending = svc.pending.saturating_sub(1);
        svc.observed_generation = svc.observed_generation.max(op.generation);
        svc.transition = now;
        let mut error: Option<String> = None;
        if let Some(rev_name) = &op.new_revision {
            let start_failure = if behavior.as_ref().is_some_and(|b| b.fails_to_start) {
                Some(format!(
                    "Revision '{rev_name}' is not ready and cannot serve traffic. The user-provided container failed to start and listen on the port defined provided by the PORT=8080 environment variable within the allocated timeout. Logs for this revision might contain more information."
                ))
            } else {
                op.injected_failure.clone()
            };
            if let Some(rev) = svc.revisions.iter_mut().find(|r| &r.name == rev_name) {
                rev.updated = now;
                rev.state = match &start_failure {
                    Some(msg) => RevState::Failed(msg.clone()),
                    None => RevState::Ready,
                };
            }
            error = start_failure;
        } else if let Some(msg) = &op.injected_failure {
            error = Some(msg.clone());
        }
        if error.is_none() {
            for t in op.traffic.iter().filter(|t| !t.latest) {
                let name = t.revision.as_deref().unwrap_or_default();
                if svc
                    .revision(name)
                    .is_none_or(|r| r.state != RevState::Ready)
                {
                    error = Some(format!(
                        "Revision '{name}' is not ready and cannot serve traffic."
                    ));
                    break;
                }
            }
        }
        match &error {
            Some(msg) => {
                // The split in effect stays, and the configured one goes back to it unless a
                // later change has replaced it meanwhile.
                if op.generation == svc.generation {
                    svc.traffic = svc.applied.clone();
                }
                svc.failure = Some(msg.clone());
            }
            None => {
                svc.applied = op.traffic.clone();
                svc.failure = None;
                svc.record_split();
            }
        }
        let response = typed_service(svc);
        let op = self.ops.get_mut(id).expect("operation exists");
        op.done = true;
        match error {
            Some(msg) => op.error = Some((9, msg)),
            None => op.response = Some(response),
        }
    }

    /// Validates and accepts a PATCH; returns the new operation's id (or, with `validate_only`,
    /// nothing: the service is left as is).
    pub fn patch(
        &mut self,
        key: &ServiceKey,
        patch: ServicePatch,
    ) -> Result<Option<String>, ApiError> {
        let now = self.clock.now();
        let svc = self.service(key)?;
        if let Some(etag) = &patch.etag
            && etag != &svc.etag
        {
            return Err(ApiError::new(
                409,
                format!(
                    "Resource '{}' has been modified: the etag {etag} does not match the current etag {}. Read the service again and retry.",
                    key.service, svc.etag
                ),
            ));
        }
        let mut new_revision: Option<String> = None;
        if let Some(t) = &patch.template {
            validate_image(&t.image)?;
            let changed = t.image != svc.image
                || t.revision != svc.template_revision
                || patch.force_new_revision;
            if changed {
                let name = match &t.revision {
                    Some(name) => {
                        validate_revision_name(&key.service, name)?;
                        if svc.revision(name).is_some() {
                            return Err(ApiError::new(
                                409,
                                format!("Revision named '{name}' already exists."),
                            )
                            .with_status("ALREADY_EXISTS"));
                        }
                        name.clone()
                    }
                    None => String::new(),
                };
                new_revision = Some(name);
            }
        }
        let traffic = match &patch.traffic {
            Some(t) if t.is_empty() => Some(vec![Target::latest(100)]),
            other => other.clone(),
        };
        if let Some(traffic) = &traffic {
            validate_traffic(svc, traffic, new_revision.as_deref())?;
        }
        if let Some(annotations) = &patch.annotations {
            validate_annotations(annotations)?;
        }
        if let Some(labels) = &patch.labels {
            validate_annotations(labels)?;
        }
        if patch.validate_only {
            return Ok(None);
        }
        // Accepted: from here on the service changes.
        let new_revision = match new_revision {
            Some(name) if name.is_empty() => {
                let index = self.services[key].next_index;
                let suffix = self.random_chars(3);
                Some(format!("{}-{index:05}-{suffix}", key.service))
            }
            other => other,
        };
        let etag = self.etag();
        let op_id = self.uuid();
        let rev_uid = self.uuid();
        let (slow, injected_failure) = self.take_operation_fault();
        let delay = slow.unwrap_or(self.op_delay);
        let new_tags: Vec<String> = traffic
            .iter()
            .flatten()
            .filter_map(|t| t.tag.clone())
            .filter(|tag| !self.services[key].tag_uris.contains_key(tag))
            .collect();
        let mut tag_uris = Vec::new();
        for tag in new_tags {
            let uri = self.endpoints.tag_uri(key, &tag);
            self.urls
                .insert(uri.clone(), (key.clone(), Some(tag.clone())));
            tag_uris.push((tag, uri));
        }
        if let Some(name) = &new_revision {
            self.rev_index.insert(name.clone(), key.clone());
        }
        self.write_count += 1;
        let svc = self.services.get_mut(key).expect("checked above");
        svc.tag_uris.extend(tag_uris);
        svc.generation += 1;
        svc.etag = etag;
        svc.updated = now;
        svc.transition = now;
        svc.pending += 1;
        if let Some(t) = &patch.template {
            svc.image = t.image.clone();
            svc.template_revision = t.revision.clone();
            // The template is replaced whole: a PATCH that leaves sessionAffinity out turns it off.
            svc.session_affinity = t.session_affinity;
        }
        if let Some(name) = &new_revision {
            svc.next_index += 1;
            svc.revisions.push(Revision {
                name: name.clone(),
                uid: rev_uid,
                image: svc.image.clone(),
                created: now,
                updated: now,
                state: RevState::Pending,
            });
        }
        if let Some(traffic) = &traffic {
            svc.traffic = traffic.clone();
        }
        if let Some(a) = patch.annotations {
            svc.annotations = a;
        }
        if let Some(l) = patch.labels {
            svc.labels = l;
        }
        if let Some(d) = patch.description {
            svc.description = d;
        }
        let op = Operation {
            id: op_id.clone(),
            seq: self.ops.len() as u64,
            key: key.clone(),
            generation: svc.generation,
            new_revision,
            traffic: svc.traffic.clone(),
            due: now + delay,
            injected_failure,
            done: false,
            error: None,
            metadata: typed_service(svc),
            response: None,
        };
        self.ops.insert(op_id.clone(), op);
        Ok(Some(op_id))
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn validate_image(image: &str) -> Result<(), ApiError> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(format!(
            "spec.template.containers[0].image: Invalid image reference '{image}'."
        )));
    }
    Ok(())
}

fn validate_revision_name(service: &str, name: &str) -> Result<(), ApiError> {
    if !name.starts_with(&format!("{service}-")) || !is_dns_label(name) {
        return Err(ApiError::invalid(format!(
            "template.revision: Revision name '{name}' must be prefixed by the name of the enclosing Service '{service}-' and be a lowercase DNS label of at most 63 characters."
        )));
    }
    Ok(())
}

fn validate_traffic(
    svc: &Service,
    traffic: &[Target],
    new_revision: Option<&str>,
) -> Result<(), ApiError> {
    let mut sum: u32 = 0;
    let mut tags: Vec<&str> = Vec::new();
    for (i, t) in traffic.iter().enumerate() {
        sum += t.percent as u32;
        match (&t.revision, t.latest) {
            (Some(_), true) => {
                return Err(ApiError::invalid(format!(
                    "traffic[{i}]: a target of type {TYPE_LATEST} must not name a revision."
                )));
            }
            (None, false) => {
                return Err(ApiError::invalid(format!(
                    "traffic[{i}]: a target of type {TYPE_REVISION} must name a revision."
                )));
            }
            (Some(name), false) => {
                if svc.revision(name).is_none() && Some(name.as_str()) != new_revision {
                    return Err(ApiError::invalid(format!(
                        "traffic[{i}]: Revision '{name}' does not exist in service '{}'.",
                        svc.key.service
                    )));
                }
            }
            (None, true) => {}
        }
        if let Some(tag) = &t.tag {
            if !is_dns_label(tag) || tag.len() + svc.key.service.len() > 46 {
                return Err(ApiError::invalid(format!(
                    "traffic[{i}].tag: '{tag}' is not a valid tag: use lowercase letters, digits and '-', starting with a letter."
                )));
            }
            if tags.contains(&tag.as_str()) {
                return Err(ApiError::invalid(format!(
                    "traffic[{i}].tag: tag '{tag}' is used by more than one traffic target."
                )));
            }
            tags.push(tag);
        }
    }
    if sum != 100 {
        return Err(ApiError::invalid(format!(
            "traffic: the percent values of all traffic targets must add up to 100, got {sum}."
        )));
    }
    Ok(())
}

fn validate_annotations(map: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for key in map.keys() {
        let name = key.rsplit('/').next().unwrap_or(key);
        let valid = !name.is_empty()
            && name.len() <= 63
            && key.matches('/').count() <= 1
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ApiError::invalid(format!(
                "annotations: '{key}' is not a valid annotation key."
            )));
        }
        if key.starts_with("run.googleapis.com/") || key.starts_with("serving.knative.dev/") {
            return Err(ApiError::invalid(format!(
                "annotations: the annotation '{key}' is reserved and cannot be set on a v2 Service."
            )));
        }
    }
    let size: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 256 * 1024 {
        return Err(ApiError::invalid(
            "annotations: total size exceeds 256 KiB.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn latencies_are_drawn_per_revision_and_read_with_the_visibility_of_counts() {
        let model = SimModel::new(Clock::new());
        model.register_image(
            "slow:1",
            Behavior::healthy("1.0.0").with_latency(MS * 200, MS * 800),
        );
        let revision = model.add_service("p", "r", "app", "slow:1");
        let key = ServiceKey::new("p", "r", "app");
        model.set_ingestion_lag(Duration::from_secs(60));
        let start = model.clock().now();

        // Given 1,000 requests recorded one second apart, each with the revision's next draw,
        for _ in 0..1000 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            model.record(&revision, 200, model.clock().now());
        }
        let end = model.clock().now();

        // then the last 60 s are not visible yet, and what is visible is what the counts count,
        let latencies = model.latencies_between(&key, start, end);
        let counts = model.counts_between(&key, start, end);
        assert_eq!(latencies[&revision].len(), 940);
        assert_eq!(counts[&revision].0, 940);
        // in the order of the draws: request n took the n-th draw of its image's latency.
        let expected = Behavior::healthy("1.0.0")
            .with_latency(MS * 200, MS * 800)
            .latency;
        for (i, latency) in latencies[&revision].iter().enumerate() {
            assert_eq!(*latency, expected.nth(i as u64 + 1));
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        let all = model.latencies_between(&key, start, end);
        let slow = all[&revision].iter().filter(|l| **l > MS * 800).count();
        assert_eq!((all[&revision].len(), slow), (1000, 50));
        // A window is (start, end]: the request at `end` is in, the one at `start` is not.
        let last = model.latencies_between(&key, end - Duration::from_secs(1), end);
        assert_eq!(last[&revision], vec![expected.nth(1000)]);
        let unknown = ServiceKey::new("p", "r", "other");
        assert!(model.latencies_between(&unknown, start, end).is_empty());
    }

    #[test]
    fn a_recorded_latency_is_kept_as_given_and_does_not_use_up_a_draw() {
        let model = SimModel::new(Clock::new());
        let revision = model.add_service("p", "r", "app", "img:1");
        let now = model.clock().now();
        model.record_with_latency(&revision, 200, now, MS * 1234);
        assert_eq!(model.next_latency(&revision), Latency::DEFAULT.nth(1));
        let key = ServiceKey::new("p", "r", "app");
        let seen = model.latencies_between(&key, now - MS, now);
        assert_eq!(seen[&revision], vec![MS * 1234]);
    }
}
