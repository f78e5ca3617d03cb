//! The engine's ports: what a rollout needs from the platform (Cloud Run), the metrics backend and
//! the health endpoint. Adapters implement these; the engine depends on nothing else.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use crate::rollout::histogram::LatencyHistogram;

/// One entry of a service's traffic split, always naming a concrete revision (short name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficTarget {
    pub revision: String,
    pub percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl TrafficTarget {
    pub fn new(revision: impl Into<String>, percent: u8) -> Self {
        Self {
            revision: revision.into(),
            percent,
            tag: None,
        }
    }

    pub fn tagged(revision: impl Into<String>, percent: u8, tag: impl Into<String>) -> Self {
        Self {
            revision: revision.into(),
            percent,
            tag: Some(tag.into()),
        }
    }
}

/// A rollout in progress, as recorded on the service itself (annotations), so that `status`,
/// `rollback` and later runs can see it even after this process is gone. The record is how a
/// rollout owns its service: a write whose record is not its own is never made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Random and unique per rollout (and per resume): never derived from names or time, so two
    /// rollouts started in the same second cannot mistake each other's record for their own.
    pub id: String,
    /// Who runs it: the Actions run URL, else `host HOST pid PID`.
    #[serde(default)]
    pub owner: String,
    pub stable: String,
    pub candidate: String,
    pub percent: u8,
    /// `running` while a process drives it; anything else is not a rollout in progress.
    #[serde(default = "RolloutRecord::running")]
    pub state: String,
    pub started_at: String,
    /// While the rollout holds at a `--pause-at` step: since when, until when, and what then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseRecord>,
}

/// A hold at a step, as recorded for `status`, `promote` and `abort` to see.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PauseRecord {
    /// RFC 3339.
    pub since: String,
    /// RFC 3339: when the hold ends by itself.
    pub until: String,
    /// `rollback` or `promote`: what the end of the hold does.
    pub on_timeout: String,
}

impl RolloutRecord {
    /// A process drives the rollout through its steps.
    pub const RUNNING: &'static str = "running";
    /// The rollout holds after a passed `--pause-at` step until `promote`, `abort` or its timeout;
    /// its gates keep running.
    pub const PAUSED: &'static str = "paused";
    /// `shiftgate promote` asked the paused rollout to go on; it does at its next check.
    pub const RESUMING: &'static str = "resuming";

    fn running() -> String {
        Self::RUNNING.to_string()
    }

    /// A rollout in progress: running, paused, or asked to go on. Any other state is a record
    /// kept after the end.
    pub fn is_running(&self) -> bool {
        [Self::RUNNING, Self::PAUSED, Self::RESUMING].contains(&self.state.as_str())
    }

    pub fn is_paused(&self) -> bool {
        self.state == Self::PAUSED
    }
}

/// What the engine knows about a service at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceState {
    /// Full resource name: `projects/P/locations/R/services/S`.
    pub name: String,
    pub etag: String,
    /// The service's public URL, when it has one.
    pub uri: Option<String>,
    /// The traffic split as configured, with a `LATEST` target resolved to its revision's short name.
    pub traffic: Vec<TrafficTarget>,
    /// Tag → URL of that tag (from `trafficStatuses`).
    pub tag_uris: BTreeMap<String, String>,
    pub latest_ready_revision: Option<String>,
    pub latest_created_revision: Option<String>,
    /// Image of the current revision template.
    pub image: Option<String>,
    pub rollout: Option<RolloutRecord>,
    /// Why the `shiftgate.dev/rollout` annotation could not be read, when it is there but is not a
    /// record: never taken for "no rollout in progress".
    pub unreadable_rollout: Option<String>,
    /// True while the platform is still applying the last change.
    pub reconciling: bool,
    /// Session affinity is on: a client keeps reaching the revision it reached first, so a
    /// step's percentage is not what each user gets.
    pub session_affinity: bool,
}

impl ServiceState {
    /// Revisions with a non-zero share, with their percent, largest first.
    pub fn serving(&self) -> Vec<(String, u8)> {
        let mut shares: BTreeMap<&str, u8> = BTreeMap::new();
        for target in self.traffic.iter().filter(|t| t.percent > 0) {
            // Saturating: a split is at most 100%, but a state built from bad data must not
            // panic (debug) or wrap (release) here.
            let share = shares.entry(target.revision.as_str()).or_default();
            *share = share.saturating_add(target.percent);
        }
        let mut serving: Vec<(String, u8)> = shares
            .into_iter()
            .map(|(revision, percent)| (revision.to_string(), percent))
            .collect();
        serving.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        serving
    }

    /// The share of traffic `revision` gets (0 when absent).
    pub fn percent_of(&self, revision: &str) -> u8 {
        self.traffic
            .iter()
            .filter(|t| t.revision == revision)
            .fold(0u8, |sum, t| sum.saturating_add(t.percent))
    }

    /// The split as `(revision, percent)` pairs with zero shares left out, in a stable order: what
    /// a person means by "the traffic split".
    pub fn split(&self) -> Vec<(String, u8)> {
        self.serving()
    }
}

/// A revision, as the platform describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevisionInfo {
    /// Short name.
    pub name: String,
    pub ready: bool,
    /// Why the revision is not ready, when it is not.
    pub reason: Option<String>,
    pub image: Option<String>,
    pub create_time: Option<String>,
}

/// A new revision made from the current template with another image. `traffic` is applied in the
/// same change and must name revisions explicitly, so the new revision gets only what it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevision {
    /// Short name for the new revision; must start with `<service>-`.
    pub revision: String,
    pub image: String,
    pub traffic: Vec<TrafficTarget>,
    pub rollout: Option<RolloutRecord>,
}

/// A change of traffic, with the rollout record to store alongside (`None` clears it), and the
/// history entry the same write appends when it ends a rollout (see `history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficChange {
    pub traffic: Vec<TrafficTarget>,
    pub rollout: Option<RolloutRecord>,
    pub history: Option<crate::rollout::history::HistoryEntry>,
}

/// Why a port call failed, in the terms the engine decides on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The write was based on a stale view (etag mismatch or concurrent change): re-read, decide again.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was refused for a reason retrying will not fix (bad request, permission, failed precondition).
    #[error("rejected ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The backend could not be reached or kept failing after retries, or a deadline passed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

pub type PortResult<T> = Result<T, PortError>;

/// The platform that runs revisions and splits traffic between them.
#[async_trait]
pub trait Platform: Send + Sync {
    async fn read_service(&self) -> PortResult<ServiceState>;
    async fn read_revision(&self, revision: &str) -> PortResult<RevisionInfo>;
    async fn list_revisions(&self) -> PortResult<Vec<RevisionInfo>>;
    /// Creates a revision and applies its traffic in one change, guarded by `etag`; returns once
    /// the platform has finished (or failed) applying it, or `deadline` has passed.
    async fn create_revision(
        &self,
        spec: &NewRevision,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState>;
    /// Applies a traffic change guarded by `etag`; returns the service as read back once the change
    /// is applied, or an error once `deadline` has passed.
    async fn set_traffic(
        &self,
        change: &TrafficChange,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState>;
}

/// Work around a rollout on the same cloud: a backup copy of a Cloud Storage object, and Cloud
/// Run jobs of the service's project and region. Each returns what it made (the copy's or the
/// execution's name), or why it failed, within `deadline`.
#[async_trait]
pub trait Hooks: Send + Sync {
    async fn backup(
        &self,
        source: &crate::rollout::hooks::GcsObject,
        copy: &crate::rollout::hooks::GcsObject,
        deadline: Duration,
    ) -> Result<(), String>;
    async fn run_job(&self, job: &str, deadline: Duration) -> Result<String, String>;
}

/// A span of wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: SystemTime,
    pub end: SystemTime,
}

/// Requests one revision served in a window, and how many of them were 5xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RequestCounts {
    pub total: u64,
    pub server_errors: u64,
}

impl RequestCounts {
    pub fn error_rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.server_errors as f64 / self.total as f64)
    }

    /// What these counts add to `earlier` ones of the same revision (never below zero: a
    /// backend that revises a count down must not make a step's count wrap).
    pub fn minus(self, earlier: RequestCounts) -> RequestCounts {
        let total = self.total.saturating_sub(earlier.total);
        RequestCounts {
            total,
            server_errors: self
                .server_errors
                .saturating_sub(earlier.server_errors)
                .min(total),
        }
    }

    /// Both windows' counts together (saturating: counts only ever add up).
    pub fn plus(self, other: RequestCounts) -> RequestCounts {
        RequestCounts {
            total: self.total.saturating_add(other.total),
            server_errors: self.server_errors.saturating_add(other.server_errors),
        }
    }
}

/// Request and 5xx counts per revision of the service under rollout.
#[async_trait]
pub trait Metrics: Send + Sync {
    /// Counts per revision (short name) for requests within `window`. Revisions with no requests
    /// may be absent.
    async fn request_counts(&self, window: Window) -> PortResult<BTreeMap<String, RequestCounts>>;

    /// Request latencies per revision (short name) within `window`, in the backend's own
    /// buckets. Only asked for when the policy limits latency. Revisions with no requests may
    /// be absent.
    async fn latencies(&self, window: Window) -> PortResult<BTreeMap<String, LatencyHistogram>>;
}

/// What a health endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthResponse {
    pub status: u16,
    pub body: String,
}

/// One health probe: the URL, and who it is for, so an IAM-protected service can be sent an ID
/// token for the right audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthProbe<'a> {
    pub url: &'a str,
    /// The main URL of the Cloud Run service `url` belongs to (its tag URLs are other URLs of the
    /// same service), when known.
    pub service_url: Option<&'a str>,
    /// An ID token for this audience goes with every probe (`--health-audience`).
    pub audience: Option<&'a str>,
}

impl<'a> HealthProbe<'a> {
    /// A probe of `url` with nothing known about its service.
    pub fn of(url: &'a str) -> Self {
        Self {
            url,
            service_url: None,
            audience: None,
        }
    }
}

/// Fetches a health endpoint. Judging the answer is the engine's job (see
/// `health_judge::Expectations`).
#[async_trait]
pub trait HealthEndpoint: Send + Sync {
    /// GET the probe's URL; `Err` carries why no HTTP answer came (refused, timeout, …).
    async fn fetch(&self, probe: &HealthProbe<'_>) -> Result<HealthResponse, String>;
}
