//! The rollout's timeline and result: every decision and measurement in order, and the report built
//! from it that feeds the progress log, the `--json` result, the step summary and incident bodies.

use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::exit::ExitCode;
use crate::rollout::compare::Comparison;
use crate::rollout::judge::StepPhase;
use crate::rollout::latency::LatencyCheck;
use crate::rollout::pause::PauseTimeoutAction;
use crate::rollout::ports::{RequestCounts, TrafficTarget};
use crate::rollout::verdict::Verdict;

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    Failed,
    DryRun,
    Interrupted,
    /// A person or another process changed the service during the rollout; it stopped without
    /// writing again.
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled_back",
            Outcome::Failed => "failed",
            Outcome::DryRun => "dry_run",
            Outcome::Interrupted => "interrupted",
            Outcome::Aborted => "aborted",
        }
    }
}

/// What kind of thing happened, with its facts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Planned {
        stable: String,
        candidate: String,
        steps: Vec<u8>,
        creates_revision: bool,
    },
    /// Before any traffic moves: how many candidate requests the plan should see at stable's
    /// recent rate, and what would reach `--min-requests` when that is short of it.
    TrafficForecast {
        requests_per_second: f64,
        expected_candidate_requests: u64,
        min_requests: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        advice: Option<String>,
    },
    /// Something a person should know before trusting the rollout's numbers.
    Warned {
        warning: String,
    },
    CandidateCreated {
        revision: String,
        image: String,
    },
    TrafficSet {
        step: Option<usize>,
        traffic: Vec<TrafficTarget>,
    },
    HealthChecked {
        step: Option<usize>,
        url: String,
        #[serde(flatten)]
        verdict: Verdict,
    },
    ErrorsChecked {
        step: usize,
        candidate: RequestCounts,
        stable: RequestCounts,
        error_rate: Option<f64>,
        #[serde(flatten)]
        verdict: Verdict,
        /// Whether the step was still baking (an inconclusive verdict is then expected, not a
        /// judgement). Not in the JSON result, which predates it.
        #[serde(skip)]
        phase: StepPhase,
        /// How far into its bake the step was, and the bake: for progress lines, not the JSON.
        #[serde(skip)]
        bake_progress: (Duration, Duration),
        /// The sequential test's look (its counts since the rollout started, stable's bounds,
        /// the tolerated rate and each evidence), when that judge ran.
        #[serde(skip_serializing_if = "Option::is_none")]
        comparison: Option<Comparison>,
        /// Each `--max-latency` quantile's look, in the policy's order; empty without limits.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        latency: Vec<LatencyCheck>,
    },
    StepPassed {
        step: usize,
        percent: u8,
    },
    StepFailed {
        step: usize,
        percent: u8,
        reason: String,
    },
    /// The step passed and the rollout holds there (`--pause-at`) for `promote` or `abort`.
    Paused {
        step: usize,
        percent: u8,
        timeout_s: f64,
        on_timeout: PauseTimeoutAction,
    },
    /// The hold ended and the rollout goes on; `by` says what ended it.
    Resumed {
        step: usize,
        percent: u8,
        by: String,
    },
    /// `--gates report-only`: a gate failed and the rollout went on, as told.
    GateIgnored {
        step: Option<usize>,
        reason: String,
    },
    Retrying {
        what: String,
        reason: String,
    },
    RollbackStarted {
        reason: String,
    },
    RolledBack {
        traffic: Vec<TrafficTarget>,
    },
    RollbackFailed {
        reason: String,
    },
    Promoted {
        revision: String,
    },
    Interrupted,
    ApiFailed {
        reason: String,
    },
    /// Someone else changed the service: the rollout stops without writing again.
    Aborted {
        reason: String,
    },
}

/// One timeline entry: when (wall clock, and seconds since the rollout started) and what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    pub elapsed_s: f64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Per-step result, for the JSON result and the summary table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub percent: u8,
    pub verdict: &'static str,
    pub candidate_requests: u64,
    pub candidate_5xx: u64,
    pub error_rate: Option<f64>,
    pub stable_requests: u64,
    pub stable_5xx: u64,
    /// `pass`, `fail`, or `not_checked`.
    pub health: &'static str,
    pub checks: u32,
    pub duration_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last latency look of each `--max-latency` quantile; empty without limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyCheck>,
}

/// The whole result of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub outcome: Outcome,
    pub service: String,
    pub stable: String,
    pub candidate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The rollout record's id on the service while this rollout owned it.
    pub rollout_id: String,
    pub planned_steps: Vec<u8>,
    pub steps: Vec<StepReport>,
    /// The split read back from the service at the end (empty only when it could not be read).
    #[serde(serialize_with = "serialize_shares")]
    pub final_traffic: Vec<TrafficTarget>,
    /// False when the last read of the split is older than the end of the rollout (the restore
    /// could not be confirmed): `final_traffic` is then the last split actually read.
    pub final_traffic_confirmed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True when restoring stable traffic failed: the service needs a person.
    pub rollback_failed: bool,
    /// True when an API failure (not a failed gate) ended the rollout.
    pub api_failed: bool,
    /// After a rollback: the service URL's health with stable serving everything (`None` when
    /// not checked: no rollback, no service URL, or interrupted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_health: Option<Verdict>,
    /// The candidate failed its health check and, after the rollback, stable failed its own:
    /// the service is unhealthy, whichever revision serves it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub service_problem: bool,
    /// A `--pause-at` hold ran out with nobody's `promote`: rolled back, and no incident (nothing
    /// was wrong with the candidate; nobody approved it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pause_expired: bool,
    pub duration_s: f64,
    pub timeline: Vec<Event>,
}

impl Report {
    /// The process exit code DESIGN.md gives this result.
    pub fn exit_code(&self) -> ExitCode {
        match self.outcome {
            Outcome::Promoted | Outcome::DryRun => ExitCode::Ok,
            _ if self.rollback_failed => ExitCode::RollbackFailed,
            Outcome::Interrupted => ExitCode::Interrupted,
            Outcome::Failed => ExitCode::ApiFailed,
            Outcome::RolledBack if self.api_failed => ExitCode::ApiFailed,
            Outcome::RolledBack | Outcome::Aborted => ExitCode::CheckFailed,
        }
    }
}

fn rfc3339<S: serde::Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*at))
}

/// One revision's share of traffic as results show a split (DESIGN.md's
/// `[{"revision": NAME, "percent": N}]`): serving revisions only, without tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficShare {
    pub revision: String,
    pub percent: u8,
}

/// The shares of a split that serve traffic.
pub fn traffic_shares(traffic: &[TrafficTarget]) -> Vec<TrafficShare> {
    traffic
        .iter()
        .filter(|t| t.percent > 0)
        .map(|t| TrafficShare {
            revision: t.revision.clone(),
            percent: t.percent,
        })
        .collect()
}

fn serialize_shares<S: Serializer>(
    traffic: &[TrafficTarget],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    traffic_shares(traffic).serialize(serializer)
}

/// A split as one line of JSON with its keys sorted, as `--json` prints it (the action's
/// `traffic` output, a failed rollback's incident).
pub fn traffic_json_text(shares: &[TrafficShare]) -> String {
    let mut value = serde_json::to_value(shares).expect("traffic shares serialize");
    value.sort_all_objects();
    value.to_string()
}

/// Formats a traffic split the way people write it: `rev-a=90 rev-b=10 (tag candidate)`.
pub fn describe_traffic(traffic: &[TrafficTarget]) -> String {
    let mut parts: Vec<String> = traffic
        .iter()
        .filter(|t| t.percent > 0)
        .map(|t| format!("{}={}%", t.revision, t.percent))
        .collect();
    if parts.is_empty() {
        parts.push("(no traffic)".to_string());
    }
    parts.join(" ")
}

pub fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}
