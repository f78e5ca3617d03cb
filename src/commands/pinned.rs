//! Pins each command's `--json` result, Actions outputs and step summary, for fixed inputs, to
//! what the code printed when these pins were captured: the contract must not drift.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::actions::{outputs_for, step_summary};
#[cfg(feature = "demo")]
use crate::commands::demo::DemoResult;
use crate::commands::dispatch::DispatchResult;
use crate::commands::health::{HealthResult, ProbeResult};
use crate::commands::incident::IncidentResult;
use crate::commands::result::{CommandResult, ErrorResult};
use crate::commands::rollback::roll_back;
use crate::commands::rollout::{
    GoogleApiCalls, IncidentFiling, RolloutResult, RolloutRun, file_incident,
};
use crate::commands::status::status;
use crate::exit::ExitCode;
use crate::github::client::CallStats;
use crate::github::dispatch::{DispatchReport, WatchEnd};
use crate::github::incident::{Severity, failed_rollback_incident, rollout_incident};
use crate::rollout::judge::StepPhase;
use crate::rollout::ports::{
    NewRevision, Platform, PortError, PortResult, RequestCounts, RevisionInfo, RolloutRecord,
    ServiceState, TrafficChange, TrafficTarget,
};
use crate::rollout::timeline::{Event, EventKind, StepReport, traffic_json_text};
use crate::rollout::verdict::Verdict;
use crate::rollout::{Outcome, Policy, Report, Steps};

/// A service that answers from memory; writes are applied, or refused with a 403.
struct FixedPlatform {
    service: Mutex<ServiceState>,
    revisions: Vec<RevisionInfo>,
    refuse_writes: bool,
}

#[async_trait]
impl Platform for FixedPlatform {
    async fn read_service(&self) -> PortResult<ServiceState> {
        Ok(self.service.lock().unwrap().clone())
    }

    async fn read_revision(&self, revision: &str) -> PortResult<RevisionInfo> {
        self.revisions
            .iter()
            .find(|r| r.name == revision)
            .cloned()
            .ok_or_else(|| PortError::NotFound(revision.to_string()))
    }

    async fn list_revisions(&self) -> PortResult<Vec<RevisionInfo>> {
        Ok(self.revisions.clone())
    }

    async fn create_revision(
        &self,
        _: &NewRevision,
        _: &str,
        _: Duration,
    ) -> PortResult<ServiceState> {
        unreachable!("no command pinned here creates a revision")
    }

    async fn set_traffic(
        &self,
        change: &TrafficChange,
        _: &str,
        _: Duration,
    ) -> PortResult<ServiceState> {
        if self.refuse_writes {
            return Err(PortError::Rejected {
                status: 403,
                message: "permission denied on @team".into(),
            });
        }
        let mut service = self.service.lock().unwrap();
        service.traffic = change.traffic.clone();
        service.rollout = change.rollout.clone();
        service.etag.push('x');
        Ok(service.clone())
    }
}

fn service() -> ServiceState {
    ServiceState {
        name: "projects/p/locations/us-central1/services/app".into(),
        etag: "e1".into(),
        uri: Some("https://app-xyz.a.run.app".into()),
        traffic: vec![
            TrafficTarget::new("app-00001", 75),
            TrafficTarget::tagged("app-00002", 25, "candidate"),
            TrafficTarget::new("app-00000", 0),
        ],
        tag_uris: [(
            "candidate".to_string(),
            "https://candidate---app-xyz.a.run.app".to_string(),
        )]
        .into(),
        latest_ready_revision: Some("app-00002".into()),
        latest_created_revision: Some("app-00002".into()),
        image: Some("registry/app:v2".into()),
        rollout: Some(RolloutRecord {
            id: "0123456789abcdef0123456789abcdef".into(),
            owner: "host ci pid 42".into(),
            stable: "app-00001".into(),
            candidate: "app-00002".into(),
            percent: 25,
            state: "running".into(),
            started_at: "2026-01-02T03:04:05Z".into(),
            pause: None,
        }),
        unreadable_rollout: None,
        reconciling: false,
        session_affinity: false,
    }
}

fn revision(name: &str, image: Option<&str>, created: Option<&str>) -> RevisionInfo {
    RevisionInfo {
        name: name.into(),
        ready: image.is_some(),
        reason: image.is_none().then(|| "image not found".to_string()),
        image: image.map(str::to_string),
        create_time: created.map(str::to_string),
    }
}

fn platform(refuse_writes: bool) -> FixedPlatform {
    FixedPlatform {
        service: Mutex::new(service()),
        revisions: vec![
            revision(
                "app-00002",
                Some("registry/app:v2"),
                Some("2026-01-02T03:00:00Z"),
            ),
            revision(
                "app-00001",
                Some("registry/app:v1"),
                Some("2026-01-01T03:00:00Z"),
            ),
            revision("app-00000", None, None),
        ],
        refuse_writes,
    }
}

fn event(seconds: u64, kind: EventKind) -> Event {
    Event {
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_000_000 + seconds),
        elapsed_s: seconds as f64 + 0.25,
        kind,
    }
}

fn split(stable: u8, candidate: u8) -> Vec<TrafficTarget> {
    vec![
        TrafficTarget::new("app-00001", stable),
        TrafficTarget::tagged("app-00002", candidate, "candidate"),
    ]
}

fn errors_checked(
    step: usize,
    candidate: (u64, u64),
    stable: (u64, u64),
    phase: StepPhase,
    verdict: Verdict,
) -> EventKind {
    let counts = |(total, server_errors)| RequestCounts {
        total,
        server_errors,
    };
    EventKind::ErrorsChecked {
        step,
        candidate: counts(candidate),
        stable: counts(stable),
        error_rate: counts(candidate).error_rate(),
        verdict,
        phase,
        bake_progress: (Duration::ZERO, Duration::ZERO),
        comparison: None,
        latency: Vec::new(),
    }
}

const FAILED_GATE: &str = "candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%";

fn timeline() -> Vec<Event> {
    vec![
        event(
            0,
            EventKind::Planned {
                stable: "app-00001".into(),
                candidate: "app-00002".into(),
                steps: vec![10, 50, 100],
                creates_revision: true,
            },
        ),
        event(
            1,
            EventKind::CandidateCreated {
                revision: "app-00002".into(),
                image: "registry/app:v2".into(),
            },
        ),
        event(
            2,
            EventKind::HealthChecked {
                step: None,
                url: "https://candidate---app/health".into(),
                verdict: Verdict::Pass,
            },
        ),
        event(
            3,
            EventKind::TrafficSet {
                step: Some(1),
                traffic: split(90, 10),
            },
        ),
        event(
            60,
            errors_checked(
                1,
                (30, 0),
                (300, 1),
                StepPhase::Baking,
                Verdict::Inconclusive("baking: 30 candidate requests so far, 0 5xx".into()),
            ),
        ),
        event(
            300,
            errors_checked(1, (120, 1), (1000, 2), StepPhase::Judging, Verdict::Pass),
        ),
        event(
            301,
            EventKind::StepPassed {
                step: 1,
                percent: 10,
            },
        ),
        event(
            302,
            EventKind::Retrying {
                what: "set traffic".into(),
                reason: "409 conflict".into(),
            },
        ),
        event(
            303,
            EventKind::TrafficSet {
                step: Some(2),
                traffic: split(50, 50),
            },
        ),
        event(
            360,
            errors_checked(
                2,
                (400, 60),
                (400, 1),
                StepPhase::Judging,
                Verdict::Fail(FAILED_GATE.into()),
            ),
        ),
        event(
            361,
            EventKind::StepFailed {
                step: 2,
                percent: 50,
                reason: "candidate 5xx rate 15%".into(),
            },
        ),
        event(
            362,
            EventKind::RollbackStarted {
                reason: "step 2 (50%) failed".into(),
            },
        ),
        event(
            363,
            EventKind::RolledBack {
                traffic: vec![TrafficTarget::new("app-00001", 100)],
            },
        ),
        event(
            364,
            EventKind::HealthChecked {
                step: None,
                url: "https://app/health".into(),
                verdict: Verdict::Fail("answered HTTP 503".into()),
            },
        ),
    ]
}

fn step(
    step: usize,
    percent: u8,
    requests: (u64, u64),
    checks: u32,
    duration_s: f64,
) -> StepReport {
    let failed = requests.1 * 20 > requests.0;
    StepReport {
        step,
        percent,
        verdict: if failed { "failed" } else { "passed" },
        candidate_requests: requests.0,
        candidate_5xx: requests.1,
        error_rate: Some(requests.1 as f64 / requests.0 as f64),
        stable_requests: if failed { 400 } else { 1000 },
        stable_5xx: if failed { 1 } else { 2 },
        health: "pass",
        checks,
        duration_s,
        reason: failed.then(|| FAILED_GATE.to_string()),
        latency: Vec::new(),
    }
}

/// A rollout rolled back at its second step, after which stable answered 503.
fn report() -> Report {
    Report {
        outcome: Outcome::RolledBack,
        service: "projects/p/locations/us-central1/services/app".into(),
        stable: "app-00001".into(),
        candidate: "app-00002".into(),
        image: Some("registry/app:v2".into()),
        rollout_id: "0123456789abcdef0123456789abcdef".into(),
        planned_steps: vec![10, 50, 100],
        steps: vec![
            step(1, 10, (120, 1), 5, 300.5),
            step(2, 50, (400, 60), 2, 61.0),
        ],
        final_traffic: vec![
            TrafficTarget::new("app-00001", 100),
            TrafficTarget::tagged("app-00002", 0, "candidate"),
        ],
        final_traffic_confirmed: true,
        reason: Some("step 2 (50%) failed: candidate 5xx rate 15%".into()),
        rollback_failed: false,
        api_failed: false,
        stable_health: Some(Verdict::Fail("answered HTTP 503".into())),
        service_problem: false,
        pause_expired: false,
        hooks: Vec::new(),
        duration_s: 420.125,
        timeline: timeline(),
    }
}

fn promoted_report() -> Report {
    Report {
        outcome: Outcome::Promoted,
        image: None,
        reason: None,
        stable_health: None,
        service_problem: false,
        pause_expired: false,
        hooks: Vec::new(),
        ..report()
    }
}

fn policy() -> Policy {
    Policy {
        steps: Steps::new(vec![10, 50, 100]).unwrap(),
        bake: Duration::from_secs(300),
        interval: Duration::from_millis(30_500),
        max_error_rate: 0.05,
        min_requests: 100,
        metrics_delay: Duration::from_secs(180),
        ..Policy::default()
    }
}

fn dispatch_report() -> DispatchReport {
    DispatchReport {
        run_id: 4242,
        run_url: "https://github.com/o/r/actions/runs/4242".into(),
        end: WatchEnd::Concluded("failure".into()),
        jobs: vec![
            ("build".into(), Some("success".into())),
            ("deploy".into(), None),
        ],
        duration: Duration::from_millis(163_449),
        cancelled: false,
    }
}

/// A result as the job and `--json` see it.
struct Shown {
    json: Value,
    summary: String,
    outputs: Vec<(&'static str, String)>,
}

#[track_caller]
fn assert_shown(shown: &Shown, json: &str, summary: &str, outputs: &[(&str, &str)]) {
    let pinned: Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        serde_json::to_string(&shown.json).unwrap(),
        serde_json::to_string(&pinned).unwrap()
    );
    assert_eq!(shown.summary, summary);
    let outputs: Vec<(&str, &str)> = outputs.to_vec();
    let shown_outputs: Vec<(&str, &str)> = shown
        .outputs
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    assert_eq!(shown_outputs, outputs);
}

#[track_caller]
fn assert_json(result: &impl Serialize, json: &str) {
    let pinned: Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        serde_json::to_string(&serde_json::to_value(result).unwrap()).unwrap(),
        serde_json::to_string(&pinned).unwrap()
    );
}

fn shown(result: CommandResult) -> Shown {
    let facts = result.facts();
    Shown {
        json: serde_json::to_value(&result).unwrap(),
        summary: step_summary(&facts),
        outputs: outputs_for(&facts),
    }
}

fn rollout_run(report: Report, cloud_run: u64, monitoring: u64) -> RolloutRun {
    RolloutRun::new(
        report,
        policy(),
        GoogleApiCalls {
            cloud_run,
            monitoring,
        },
    )
}

#[tokio::test]
async fn a_rollout_result_is_pinned() {
    let incident = file_incident(true, None, |_| unreachable!()).await;
    let rolled_back = CommandResult::Rollout(RolloutResult {
        run: rollout_run(report(), 12, 7),
        incident: Some(incident),
        url: None,
        github_deployment: None,
        notifications: None,
        regions: None,
        resolved_incident: None,
    });
    assert_shown(
        &shown(rolled_back),
        ROLLOUT_JSON,
        ROLLOUT_SUMMARY,
        ROLLOUT_OUTPUTS,
    );
    let promoted = CommandResult::Rollout(RolloutResult {
        run: rollout_run(promoted_report(), 3, 0),
        incident: None,
        url: None,
        github_deployment: None,
        notifications: None,
        regions: None,
        resolved_incident: None,
    });
    assert_shown(
        &shown(promoted),
        ROLLOUT_PROMOTED_JSON,
        ROLLOUT_PROMOTED_SUMMARY,
        ROLLOUT_PROMOTED_OUTPUTS,
    );
}

#[cfg(feature = "demo")]
#[test]
fn a_demo_result_is_pinned() {
    let demo = CommandResult::Demo(DemoResult {
        run: rollout_run(report(), 12, 7),
        scenario: "bad",
    });
    assert_shown(&shown(demo), DEMO_JSON, DEMO_SUMMARY, DEMO_OUTPUTS);
}

#[tokio::test]
async fn a_rollback_result_is_pinned() {
    let done = roll_back(&platform(false), Some("app-00001"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_shown(
        &shown(CommandResult::Rollback(done)),
        ROLLBACK_JSON,
        ROLLBACK_SUMMARY,
        ROLLBACK_OUTPUTS,
    );
    let mut failed = roll_back(&platform(true), None, Duration::from_secs(5))
        .await
        .unwrap();
    failed.incident = Some(file_incident(false, None, |_| unreachable!()).await);
    assert_shown(
        &shown(CommandResult::Rollback(failed)),
        ROLLBACK_FAILED_JSON,
        ROLLBACK_FAILED_SUMMARY,
        ROLLBACK_FAILED_OUTPUTS,
    );
}

#[tokio::test]
async fn a_status_result_is_pinned() {
    let result = status(&platform(false)).await.unwrap();
    assert_shown(
        &shown(CommandResult::Status(result)),
        STATUS_JSON,
        STATUS_SUMMARY,
        STATUS_OUTPUTS,
    );
    let bare = ServiceState {
        uri: None,
        rollout: None,
        unreadable_rollout: Some("not JSON".into()),
        tag_uris: Default::default(),
        latest_ready_revision: None,
        reconciling: true,
        ..service()
    };
    let bare = FixedPlatform {
        service: Mutex::new(bare),
        revisions: Vec::new(),
        refuse_writes: false,
    };
    let result = status(&bare).await.unwrap();
    assert_json(&CommandResult::Status(result), STATUS_BARE_JSON);
}

fn probe(
    environment: Option<&str>,
    url: &str,
    status: Option<u16>,
    verdict: &Verdict,
    latency_ms: u64,
) -> ProbeResult {
    ProbeResult {
        environment: environment.map(str::to_string),
        url: url.into(),
        status,
        verdict: verdict.label(),
        reason: verdict.reason().map(str::to_string),
        latency_ms,
        checks: 1,
    }
}

#[test]
fn a_health_result_is_pinned() {
    let ok = probe(
        Some("prod"),
        "https://app/health",
        Some(200),
        &Verdict::Pass,
        12,
    );
    let unhealthy = HealthResult::new(vec![
        ok.clone(),
        probe(
            None,
            "https://other/health",
            None,
            &Verdict::Fail("no answer: could not connect".into()),
            3,
        ),
        probe(
            Some("dev"),
            "https://dev/health",
            Some(503),
            &Verdict::Fail("answered HTTP 503: down".into()),
            40,
        ),
    ]);
    assert_shown(
        &shown(CommandResult::Health(unhealthy)),
        HEALTH_JSON,
        HEALTH_SUMMARY,
        HEALTH_OUTPUTS,
    );
    let healthy = HealthResult::new(vec![ok]);
    assert_json(&CommandResult::Health(healthy), HEALTH_OK_JSON);
}

#[test]
fn a_dispatch_result_is_pinned() {
    let dispatch = CommandResult::Dispatch(DispatchResult {
        run: dispatch_report().result(),
        api_calls: CallStats {
            requests: 9,
            not_modified: 4,
            rate_limit_waits: 0,
        },
    });
    assert_shown(
        &shown(dispatch),
        DISPATCH_JSON,
        DISPATCH_SUMMARY,
        DISPATCH_OUTPUTS,
    );
    let timed_out = DispatchReport {
        end: WatchEnd::TimedOut,
        cancelled: true,
        ..dispatch_report()
    };
    // The run's own JSON has no `command` and no `api_calls`: `dispatch --json` adds those.
    let mut pinned: Value = serde_json::from_str(DISPATCH_TIMED_OUT_JSON).unwrap();
    pinned.as_object_mut().unwrap().remove("command");
    assert_eq!(timed_out.json(), pinned);
}

#[test]
fn an_incident_result_is_pinned() {
    let incident = CommandResult::Incident(IncidentResult {
        outcome: "commented",
        number: 17,
        url: "https://github.com/o/r/issues/17".into(),
        key: "Deploy failed".into(),
        notifications: None,
        exit_code: ExitCode::Ok,
    });
    assert_shown(
        &shown(incident),
        INCIDENT_JSON,
        INCIDENT_SUMMARY,
        INCIDENT_OUTPUTS,
    );
    let filed = IncidentFiling::Filed {
        action: "created",
        number: 7,
        url: "https://github.com/o/r/issues/7".into(),
        severity: Severity::Sev2,
    };
    assert_json(&filed, INCIDENT_FILED_JSON);
}

#[test]
fn an_error_result_is_pinned() {
    let error = ErrorResult::new(Some("rollout"), "--env qa: unknown", ExitCode::BadInput);
    let facts = error.facts();
    let shown = Shown {
        json: serde_json::to_value(&error).unwrap(),
        summary: step_summary(&facts),
        outputs: outputs_for(&facts),
    };
    assert_shown(&shown, ERROR_JSON, ERROR_SUMMARY, ERROR_OUTPUTS);
    let unparsed = ErrorResult::new(None, "invalid value", ExitCode::BadInput);
    assert_json(&unparsed, PARSE_ERROR_JSON);
}

#[tokio::test]
async fn the_incident_bodies_are_pinned() {
    let repo = crate::github::Repo::parse("o/r").unwrap();
    let incident = rollout_incident(repo.clone(), &report(), &policy());
    assert_eq!(incident.title, ROLLOUT_INCIDENT_TITLE);
    assert_eq!(incident.summary, ROLLOUT_INCIDENT_SUMMARY);
    assert_eq!(
        incident.timeline.as_deref(),
        Some(ROLLOUT_INCIDENT_TIMELINE)
    );
    let failed = roll_back(&platform(true), None, Duration::from_secs(5))
        .await
        .unwrap();
    let incident = failed_rollback_incident(
        repo,
        "`shiftgate rollback`",
        &failed.service,
        &failed.revision,
        failed.reason.as_deref().unwrap(),
        &traffic_json_text(&failed.final_traffic),
    );
    assert_eq!(incident.title, ROLLBACK_INCIDENT_TITLE);
    assert_eq!(incident.summary, ROLLBACK_INCIDENT_SUMMARY);
}

// What the code printed for the inputs above, when the pins were captured.

const ROLLOUT_JSON: &str = r##"{
    "api_calls": {
        "cloud_run": 12,
        "monitoring": 7
    },
    "api_failed": false,
    "candidate": "app-00002",
    "command": "rollout",
    "duration_s": 420.125,
    "exit_code": 1,
    "final_traffic": [
        {
            "percent": 100,
            "revision": "app-00001"
        }
    ],
    "final_traffic_confirmed": true,
    "image": "registry/app:v2",
    "incident": {
        "filed": false,
        "reason": "--no-incident"
    },
    "outcome": "rolled_back",
    "planned_steps": [
        10,
        50,
        100
    ],
    "policy": {
        "bake_s": 300.0,
        "early_pass": false,
        "health_path": "/health",
        "interval_s": 30.5,
        "judge": "sequential",
        "margin": 0.25,
        "max_error_rate": 0.05,
        "metrics_delay_s": 180.0,
        "min_requests": 100,
        "steps": [
            10,
            50,
            100
        ]
    },
    "reason": "step 2 (50%) failed: candidate 5xx rate 15%",
    "rollback_failed": false,
    "rollout_id": "0123456789abcdef0123456789abcdef",
    "service": "projects/p/locations/us-central1/services/app",
    "stable": "app-00001",
    "stable_health": {
        "reason": "answered HTTP 503",
        "verdict": "fail"
    },
    "steps": [
        {
            "candidate_5xx": 1,
            "candidate_requests": 120,
            "checks": 5,
            "duration_s": 300.5,
            "error_rate": 0.008333333333333333,
            "health": "pass",
            "percent": 10,
            "stable_5xx": 2,
            "stable_requests": 1000,
            "step": 1,
            "verdict": "passed"
        },
        {
            "candidate_5xx": 60,
            "candidate_requests": 400,
            "checks": 2,
            "duration_s": 61.0,
            "error_rate": 0.15,
            "health": "pass",
            "percent": 50,
            "reason": "candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%",
            "stable_5xx": 1,
            "stable_requests": 400,
            "step": 2,
            "verdict": "failed"
        }
    ],
    "timeline": [
        {
            "at": "2025-12-29T09:20:00.000Z",
            "candidate": "app-00002",
            "creates_revision": true,
            "elapsed_s": 0.25,
            "kind": "planned",
            "stable": "app-00001",
            "steps": [
                10,
                50,
                100
            ]
        },
        {
            "at": "2025-12-29T09:20:01.000Z",
            "elapsed_s": 1.25,
            "image": "registry/app:v2",
            "kind": "candidate_created",
            "revision": "app-00002"
        },
        {
            "at": "2025-12-29T09:20:02.000Z",
            "elapsed_s": 2.25,
            "kind": "health_checked",
            "step": null,
            "url": "https://candidate---app/health",
            "verdict": "pass"
        },
        {
            "at": "2025-12-29T09:20:03.000Z",
            "elapsed_s": 3.25,
            "kind": "traffic_set",
            "step": 1,
            "traffic": [
                {
                    "percent": 90,
                    "revision": "app-00001"
                },
                {
                    "percent": 10,
                    "revision": "app-00002",
                    "tag": "candidate"
                }
            ]
        },
        {
            "at": "2025-12-29T09:21:00.000Z",
            "candidate": {
                "server_errors": 0,
                "total": 30
            },
            "elapsed_s": 60.25,
            "error_rate": 0.0,
            "kind": "errors_checked",
            "reason": "baking: 30 candidate requests so far, 0 5xx",
            "stable": {
                "server_errors": 1,
                "total": 300
            },
            "step": 1,
            "verdict": "inconclusive"
        },
        {
            "at": "2025-12-29T09:25:00.000Z",
            "candidate": {
                "server_errors": 1,
                "total": 120
            },
            "elapsed_s": 300.25,
            "error_rate": 0.008333333333333333,
            "kind": "errors_checked",
            "stable": {
                "server_errors": 2,
                "total": 1000
            },
            "step": 1,
            "verdict": "pass"
        },
        {
            "at": "2025-12-29T09:25:01.000Z",
            "elapsed_s": 301.25,
            "kind": "step_passed",
            "percent": 10,
            "step": 1
        },
        {
            "at": "2025-12-29T09:25:02.000Z",
            "elapsed_s": 302.25,
            "kind": "retrying",
            "reason": "409 conflict",
            "what": "set traffic"
        },
        {
            "at": "2025-12-29T09:25:03.000Z",
            "elapsed_s": 303.25,
            "kind": "traffic_set",
            "step": 2,
            "traffic": [
                {
                    "percent": 50,
                    "revision": "app-00001"
                },
                {
                    "percent": 50,
                    "revision": "app-00002",
                    "tag": "candidate"
                }
            ]
        },
        {
            "at": "2025-12-29T09:26:00.000Z",
            "candidate": {
                "server_errors": 60,
                "total": 400
            },
            "elapsed_s": 360.25,
            "error_rate": 0.15,
            "kind": "errors_checked",
            "reason": "candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%",
            "stable": {
                "server_errors": 1,
                "total": 400
            },
            "step": 2,
            "verdict": "fail"
        },
        {
            "at": "2025-12-29T09:26:01.000Z",
            "elapsed_s": 361.25,
            "kind": "step_failed",
            "percent": 50,
            "reason": "candidate 5xx rate 15%",
            "step": 2
        },
        {
            "at": "2025-12-29T09:26:02.000Z",
            "elapsed_s": 362.25,
            "kind": "rollback_started",
            "reason": "step 2 (50%) failed"
        },
        {
            "at": "2025-12-29T09:26:03.000Z",
            "elapsed_s": 363.25,
            "kind": "rolled_back",
            "traffic": [
                {
                    "percent": 100,
                    "revision": "app-00001"
                }
            ]
        },
        {
            "at": "2025-12-29T09:26:04.000Z",
            "elapsed_s": 364.25,
            "kind": "health_checked",
            "reason": "answered HTTP 503",
            "step": null,
            "url": "https://app/health",
            "verdict": "fail"
        }
    ]
}"##;

const ROLLOUT_PROMOTED_JSON: &str = r##"{"api_calls":{"cloud_run":3,"monitoring":0},"api_failed":false,"candidate":"app-00002","command":"rollout","duration_s":420.125,"exit_code":0,"final_traffic":[{"percent":100,"revision":"app-00001"}],"final_traffic_confirmed":true,"outcome":"promoted","planned_steps":[10,50,100],"policy":{"bake_s":300.0,"early_pass":false,"health_path":"/health","interval_s":30.5,"judge":"sequential","margin":0.25,"max_error_rate":0.05,"metrics_delay_s":180.0,"min_requests":100,"steps":[10,50,100]},"rollback_failed":false,"rollout_id":"0123456789abcdef0123456789abcdef","service":"projects/p/locations/us-central1/services/app","stable":"app-00001","steps":[{"candidate_5xx":1,"candidate_requests":120,"checks":5,"duration_s":300.5,"error_rate":0.008333333333333333,"health":"pass","percent":10,"stable_5xx":2,"stable_requests":1000,"step":1,"verdict":"passed"},{"candidate_5xx":60,"candidate_requests":400,"checks":2,"duration_s":61.0,"error_rate":0.15,"health":"pass","percent":50,"reason":"candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%","stable_5xx":1,"stable_requests":400,"step":2,"verdict":"failed"}],"timeline":[{"at":"2025-12-29T09:20:00.000Z","candidate":"app-00002","creates_revision":true,"elapsed_s":0.25,"kind":"planned","stable":"app-00001","steps":[10,50,100]},{"at":"2025-12-29T09:20:01.000Z","elapsed_s":1.25,"image":"registry/app:v2","kind":"candidate_created","revision":"app-00002"},{"at":"2025-12-29T09:20:02.000Z","elapsed_s":2.25,"kind":"health_checked","step":null,"url":"https://candidate---app/health","verdict":"pass"},{"at":"2025-12-29T09:20:03.000Z","elapsed_s":3.25,"kind":"traffic_set","step":1,"traffic":[{"percent":90,"revision":"app-00001"},{"percent":10,"revision":"app-00002","tag":"candidate"}]},{"at":"2025-12-29T09:21:00.000Z","candidate":{"server_errors":0,"total":30},"elapsed_s":60.25,"error_rate":0.0,"kind":"errors_checked","reason":"baking: 30 candidate requests so far, 0 5xx","stable":{"server_errors":1,"total":300},"step":1,"verdict":"inconclusive"},{"at":"2025-12-29T09:25:00.000Z","candidate":{"server_errors":1,"total":120},"elapsed_s":300.25,"error_rate":0.008333333333333333,"kind":"errors_checked","stable":{"server_errors":2,"total":1000},"step":1,"verdict":"pass"},{"at":"2025-12-29T09:25:01.000Z","elapsed_s":301.25,"kind":"step_passed","percent":10,"step":1},{"at":"2025-12-29T09:25:02.000Z","elapsed_s":302.25,"kind":"retrying","reason":"409 conflict","what":"set traffic"},{"at":"2025-12-29T09:25:03.000Z","elapsed_s":303.25,"kind":"traffic_set","step":2,"traffic":[{"percent":50,"revision":"app-00001"},{"percent":50,"revision":"app-00002","tag":"candidate"}]},{"at":"2025-12-29T09:26:00.000Z","candidate":{"server_errors":60,"total":400},"elapsed_s":360.25,"error_rate":0.15,"kind":"errors_checked","reason":"candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%","stable":{"server_errors":1,"total":400},"step":2,"verdict":"fail"},{"at":"2025-12-29T09:26:01.000Z","elapsed_s":361.25,"kind":"step_failed","percent":50,"reason":"candidate 5xx rate 15%","step":2},{"at":"2025-12-29T09:26:02.000Z","elapsed_s":362.25,"kind":"rollback_started","reason":"step 2 (50%) failed"},{"at":"2025-12-29T09:26:03.000Z","elapsed_s":363.25,"kind":"rolled_back","traffic":[{"percent":100,"revision":"app-00001"}]},{"at":"2025-12-29T09:26:04.000Z","elapsed_s":364.25,"kind":"health_checked","reason":"answered HTTP 503","step":null,"url":"https://app/health","verdict":"fail"}]}"##;

#[cfg(feature = "demo")]
const DEMO_JSON: &str = r##"{"api_calls":{"cloud_run":12,"monitoring":7},"api_failed":false,"candidate":"app-00002","command":"demo","duration_s":420.125,"exit_code":1,"final_traffic":[{"percent":100,"revision":"app-00001"}],"final_traffic_confirmed":true,"image":"registry/app:v2","outcome":"rolled_back","planned_steps":[10,50,100],"policy":{"bake_s":300.0,"early_pass":false,"health_path":"/health","interval_s":30.5,"judge":"sequential","margin":0.25,"max_error_rate":0.05,"metrics_delay_s":180.0,"min_requests":100,"steps":[10,50,100]},"reason":"step 2 (50%) failed: candidate 5xx rate 15%","rollback_failed":false,"rollout_id":"0123456789abcdef0123456789abcdef","scenario":"bad","service":"projects/p/locations/us-central1/services/app","stable":"app-00001","stable_health":{"reason":"answered HTTP 503","verdict":"fail"},"steps":[{"candidate_5xx":1,"candidate_requests":120,"checks":5,"duration_s":300.5,"error_rate":0.008333333333333333,"health":"pass","percent":10,"stable_5xx":2,"stable_requests":1000,"step":1,"verdict":"passed"},{"candidate_5xx":60,"candidate_requests":400,"checks":2,"duration_s":61.0,"error_rate":0.15,"health":"pass","percent":50,"reason":"candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%","stable_5xx":1,"stable_requests":400,"step":2,"verdict":"failed"}],"timeline":[{"at":"2025-12-29T09:20:00.000Z","candidate":"app-00002","creates_revision":true,"elapsed_s":0.25,"kind":"planned","stable":"app-00001","steps":[10,50,100]},{"at":"2025-12-29T09:20:01.000Z","elapsed_s":1.25,"image":"registry/app:v2","kind":"candidate_created","revision":"app-00002"},{"at":"2025-12-29T09:20:02.000Z","elapsed_s":2.25,"kind":"health_checked","step":null,"url":"https://candidate---app/health","verdict":"pass"},{"at":"2025-12-29T09:20:03.000Z","elapsed_s":3.25,"kind":"traffic_set","step":1,"traffic":[{"percent":90,"revision":"app-00001"},{"percent":10,"revision":"app-00002","tag":"candidate"}]},{"at":"2025-12-29T09:21:00.000Z","candidate":{"server_errors":0,"total":30},"elapsed_s":60.25,"error_rate":0.0,"kind":"errors_checked","reason":"baking: 30 candidate requests so far, 0 5xx","stable":{"server_errors":1,"total":300},"step":1,"verdict":"inconclusive"},{"at":"2025-12-29T09:25:00.000Z","candidate":{"server_errors":1,"total":120},"elapsed_s":300.25,"error_rate":0.008333333333333333,"kind":"errors_checked","stable":{"server_errors":2,"total":1000},"step":1,"verdict":"pass"},{"at":"2025-12-29T09:25:01.000Z","elapsed_s":301.25,"kind":"step_passed","percent":10,"step":1},{"at":"2025-12-29T09:25:02.000Z","elapsed_s":302.25,"kind":"retrying","reason":"409 conflict","what":"set traffic"},{"at":"2025-12-29T09:25:03.000Z","elapsed_s":303.25,"kind":"traffic_set","step":2,"traffic":[{"percent":50,"revision":"app-00001"},{"percent":50,"revision":"app-00002","tag":"candidate"}]},{"at":"2025-12-29T09:26:00.000Z","candidate":{"server_errors":60,"total":400},"elapsed_s":360.25,"error_rate":0.15,"kind":"errors_checked","reason":"candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%","stable":{"server_errors":1,"total":400},"step":2,"verdict":"fail"},{"at":"2025-12-29T09:26:01.000Z","elapsed_s":361.25,"kind":"step_failed","percent":50,"reason":"candidate 5xx rate 15%","step":2},{"at":"2025-12-29T09:26:02.000Z","elapsed_s":362.25,"kind":"rollback_started","reason":"step 2 (50%) failed"},{"at":"2025-12-29T09:26:03.000Z","elapsed_s":363.25,"kind":"rolled_back","traffic":[{"percent":100,"revision":"app-00001"}]},{"at":"2025-12-29T09:26:04.000Z","elapsed_s":364.25,"kind":"health_checked","reason":"answered HTTP 503","step":null,"url":"https://app/health","verdict":"fail"}]}"##;

const ROLLBACK_JSON: &str = r##"{
    "command": "rollback",
    "exit_code": 0,
    "final_traffic": [
        {
            "percent": 100,
            "revision": "app-00001"
        }
    ],
    "final_traffic_confirmed": true,
    "outcome": "rolled_back",
    "previous_traffic": [
        {
            "percent": 75,
            "revision": "app-00001"
        },
        {
            "percent": 25,
            "revision": "app-00002"
        }
    ],
    "revision": "app-00001",
    "service": "projects/p/locations/us-central1/services/app"
}"##;

const ROLLBACK_FAILED_JSON: &str = r##"{
    "command": "rollback",
    "exit_code": 4,
    "final_traffic": [
        {
            "percent": 75,
            "revision": "app-00001"
        },
        {
            "percent": 25,
            "revision": "app-00002"
        }
    ],
    "final_traffic_confirmed": false,
    "incident": {
        "filed": false,
        "reason": "no repository configured (--repo, config `repo` or GITHUB_REPOSITORY)"
    },
    "outcome": "failed",
    "previous_traffic": [
        {
            "percent": 75,
            "revision": "app-00001"
        },
        {
            "percent": 25,
            "revision": "app-00002"
        }
    ],
    "reason": "could not set traffic: rejected (403): permission denied on @team",
    "revision": "app-00001",
    "service": "projects/p/locations/us-central1/services/app"
}"##;

const STATUS_JSON: &str = r##"{
    "command": "status",
    "exit_code": 0,
    "final_traffic": [
        {
            "percent": 75,
            "revision": "app-00001"
        },
        {
            "percent": 25,
            "revision": "app-00002"
        }
    ],
    "latest_created_revision": "app-00002",
    "latest_ready_revision": "app-00002",
    "outcome": "ok",
    "reconciling": false,
    "revisions": [
        {
            "create_time": "2026-01-02T03:00:00Z",
            "image": "registry/app:v2",
            "name": "app-00002",
            "percent": 25,
            "ready": true,
            "reason": null
        },
        {
            "create_time": "2026-01-01T03:00:00Z",
            "image": "registry/app:v1",
            "name": "app-00001",
            "percent": 75,
            "ready": true,
            "reason": null
        },
        {
            "create_time": null,
            "image": null,
            "name": "app-00000",
            "percent": 0,
            "ready": false,
            "reason": "image not found"
        }
    ],
    "rollout": {
        "candidate": "app-00002",
        "id": "0123456789abcdef0123456789abcdef",
        "owner": "host ci pid 42",
        "percent": 25,
        "stable": "app-00001",
        "started_at": "2026-01-02T03:04:05Z",
        "state": "running"
    },
    "rollout_record_unreadable": null,
    "service": "projects/p/locations/us-central1/services/app",
    "tags": [
        {
            "revision": "app-00002",
            "tag": "candidate",
            "url": "https://candidate---app-xyz.a.run.app"
        }
    ],
    "traffic": [
        {
            "percent": 75,
            "revision": "app-00001"
        },
        {
            "percent": 25,
            "revision": "app-00002"
        }
    ],
    "uri": "https://app-xyz.a.run.app"
}"##;

const STATUS_BARE_JSON: &str = r##"{"command":"status","exit_code":0,"final_traffic":[{"percent":75,"revision":"app-00001"},{"percent":25,"revision":"app-00002"}],"latest_created_revision":"app-00002","latest_ready_revision":null,"outcome":"ok","reconciling":true,"revisions":[],"rollout":null,"rollout_record_unreadable":"not JSON","service":"projects/p/locations/us-central1/services/app","tags":[{"revision":"app-00002","tag":"candidate","url":null}],"traffic":[{"percent":75,"revision":"app-00001"},{"percent":25,"revision":"app-00002"}],"uri":null}"##;

const HEALTH_JSON: &str = r##"{
    "command": "health",
    "exit_code": 1,
    "outcome": "unhealthy",
    "results": [
        {
            "environment": "prod",
            "latency_ms": 12,
            "reason": null,
            "status": 200,
            "url": "https://app/health",
            "verdict": "pass"
        },
        {
            "environment": null,
            "latency_ms": 3,
            "reason": "no answer: could not connect",
            "status": null,
            "url": "https://other/health",
            "verdict": "fail"
        },
        {
            "environment": "dev",
            "latency_ms": 40,
            "reason": "answered HTTP 503: down",
            "status": 503,
            "url": "https://dev/health",
            "verdict": "fail"
        }
    ]
}"##;

const HEALTH_OK_JSON: &str = r##"{"command":"health","exit_code":0,"outcome":"healthy","results":[{"environment":"prod","latency_ms":12,"reason":null,"status":200,"url":"https://app/health","verdict":"pass"}]}"##;

const DISPATCH_JSON: &str = r##"{
    "api_calls": {
        "not_modified": 4,
        "rate_limit_waits": 0,
        "requests": 9
    },
    "cancelled": false,
    "command": "dispatch",
    "conclusion": "failure",
    "duration_s": 163.4,
    "exit_code": 1,
    "jobs": [
        {
            "conclusion": "success",
            "name": "build"
        },
        {
            "conclusion": null,
            "name": "deploy"
        }
    ],
    "outcome": "failure",
    "run_id": 4242,
    "run_url": "https://github.com/o/r/actions/runs/4242"
}"##;

const DISPATCH_TIMED_OUT_JSON: &str = r##"{"cancelled":true,"command":"dispatch","conclusion":null,"duration_s":163.4,"exit_code":1,"jobs":[{"conclusion":"success","name":"build"},{"conclusion":null,"name":"deploy"}],"outcome":"timed_out","run_id":4242,"run_url":"https://github.com/o/r/actions/runs/4242"}"##;

const INCIDENT_JSON: &str = r##"{"command":"incident","exit_code":0,"key":"Deploy failed","number":17,"outcome":"commented","url":"https://github.com/o/r/issues/17"}"##;

const ERROR_JSON: &str =
    r##"{"command":"rollout","error":"--env qa: unknown","exit_code":2,"outcome":"error"}"##;

const PARSE_ERROR_JSON: &str = r##"{"error":"invalid value","exit_code":2,"outcome":"error"}"##;

const INCIDENT_FILED_JSON: &str = r##"{"action":"created","filed":true,"number":7,"severity":"SEV-2","url":"https://github.com/o/r/issues/7"}"##;

const ROLLOUT_SUMMARY: &str = r##"### shiftgate rollout: ↩️ rolled back

Service `projects/p/locations/us-central1/services/app`: `app-00001` (stable) → `app-00002` from image `registry/app:v2`

**Plan:** steps 10% → 50% → 100%; bake 5m0s per step, checks every 30.5s; a step fails above 5% 5xx and needs 100 candidate requests; metrics delay 3m0s; health `/health`.

**reason:** `step 2 (50%) failed: candidate 5xx rate 15%`

| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |
|---:|---:|---:|---:|---:|---|---|---:|
| 1 | 10% | 120 | 1 | 0.83% | pass | ✅ passed | 5m1s |
| 2 | 50% | 400 | 60 | 15% | pass | ❌ failed: `candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` | 1m1s |

<details><summary>Every check (3)</summary>

| time | step | candidate 5xx | stable 5xx | evidence (needed 100) | verdict |
|---:|---:|---:|---:|---:|---|
| 1m0s | 1 | 0 of 30 | 1 of 300 | n/a | `inconclusive: baking: 30 candidate requests so far, 0 5xx` |
| 5m0s | 1 | 1 of 120 | 2 of 1000 | n/a | `pass` |
| 6m0s | 2 | 60 of 400 | 1 of 400 | n/a | `fail: candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` |

</details>

```mermaid
xychart-beta
    title "app-00002: candidate traffic and 5xx rate"
    x-axis "time since start" ["3.3s", "1m0s", "5m0s", "5m3s", "6m0s", "6m3s"]
    y-axis "percent" 0 --> 100
    line [10, 10, 10, 50, 50, 0]
    line [0, 0, 0.83, 0.83, 15, 15]
    line [5, 5, 5, 5, 5, 5]
```

Lines, in order: candidate traffic share (%), candidate 5xx rate (%), the 5xx limit (%).

Final traffic (read back from the service): `app-00001` 100%

"##;

const ROLLOUT_OUTPUTS: &[(&str, &str)] = &[
    ("outcome", "rolled_back"),
    ("revision", "app-00002"),
    ("stable-revision", "app-00001"),
    ("traffic", "[{\"percent\":100,\"revision\":\"app-00001\"}]"),
    ("exit-code", "1"),
];

const ROLLOUT_PROMOTED_SUMMARY: &str = r##"### shiftgate rollout: ✅ promoted

Service `projects/p/locations/us-central1/services/app`: `app-00001` (stable) → `app-00002`

**Plan:** steps 10% → 50% → 100%; bake 5m0s per step, checks every 30.5s; a step fails above 5% 5xx and needs 100 candidate requests; metrics delay 3m0s; health `/health`.

| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |
|---:|---:|---:|---:|---:|---|---|---:|
| 1 | 10% | 120 | 1 | 0.83% | pass | ✅ passed | 5m1s |
| 2 | 50% | 400 | 60 | 15% | pass | ❌ failed: `candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` | 1m1s |

<details><summary>Every check (3)</summary>

| time | step | candidate 5xx | stable 5xx | evidence (needed 100) | verdict |
|---:|---:|---:|---:|---:|---|
| 1m0s | 1 | 0 of 30 | 1 of 300 | n/a | `inconclusive: baking: 30 candidate requests so far, 0 5xx` |
| 5m0s | 1 | 1 of 120 | 2 of 1000 | n/a | `pass` |
| 6m0s | 2 | 60 of 400 | 1 of 400 | n/a | `fail: candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` |

</details>

```mermaid
xychart-beta
    title "app-00002: candidate traffic and 5xx rate"
    x-axis "time since start" ["3.3s", "1m0s", "5m0s", "5m3s", "6m0s", "6m3s"]
    y-axis "percent" 0 --> 100
    line [10, 10, 10, 50, 50, 0]
    line [0, 0, 0.83, 0.83, 15, 15]
    line [5, 5, 5, 5, 5, 5]
```

Lines, in order: candidate traffic share (%), candidate 5xx rate (%), the 5xx limit (%).

Final traffic (read back from the service): `app-00001` 100%

"##;

const ROLLOUT_PROMOTED_OUTPUTS: &[(&str, &str)] = &[
    ("outcome", "promoted"),
    ("revision", "app-00002"),
    ("stable-revision", "app-00001"),
    ("traffic", "[{\"percent\":100,\"revision\":\"app-00001\"}]"),
    ("exit-code", "0"),
];

#[cfg(feature = "demo")]
const DEMO_SUMMARY: &str = r##"### shiftgate demo: ↩️ rolled back

Service `projects/p/locations/us-central1/services/app`: `app-00001` (stable) → `app-00002` from image `registry/app:v2`

**Plan:** steps 10% → 50% → 100%; bake 5m0s per step, checks every 30.5s; a step fails above 5% 5xx and needs 100 candidate requests; metrics delay 3m0s; health `/health`.

**reason:** `step 2 (50%) failed: candidate 5xx rate 15%`

| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |
|---:|---:|---:|---:|---:|---|---|---:|
| 1 | 10% | 120 | 1 | 0.83% | pass | ✅ passed | 5m1s |
| 2 | 50% | 400 | 60 | 15% | pass | ❌ failed: `candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` | 1m1s |

<details><summary>Every check (3)</summary>

| time | step | candidate 5xx | stable 5xx | evidence (needed 100) | verdict |
|---:|---:|---:|---:|---:|---|
| 1m0s | 1 | 0 of 30 | 1 of 300 | n/a | `inconclusive: baking: 30 candidate requests so far, 0 5xx` |
| 5m0s | 1 | 1 of 120 | 2 of 1000 | n/a | `pass` |
| 6m0s | 2 | 60 of 400 | 1 of 400 | n/a | `fail: candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` |

</details>

```mermaid
xychart-beta
    title "app-00002: candidate traffic and 5xx rate"
    x-axis "time since start" ["3.3s", "1m0s", "5m0s", "5m3s", "6m0s", "6m3s"]
    y-axis "percent" 0 --> 100
    line [10, 10, 10, 50, 50, 0]
    line [0, 0, 0.83, 0.83, 15, 15]
    line [5, 5, 5, 5, 5, 5]
```

Lines, in order: candidate traffic share (%), candidate 5xx rate (%), the 5xx limit (%).

Final traffic (read back from the service): `app-00001` 100%

"##;

#[cfg(feature = "demo")]
const DEMO_OUTPUTS: &[(&str, &str)] = &[
    ("outcome", "rolled_back"),
    ("revision", "app-00002"),
    ("stable-revision", "app-00001"),
    ("traffic", "[{\"percent\":100,\"revision\":\"app-00001\"}]"),
    ("exit-code", "1"),
];

const ROLLBACK_SUMMARY: &str = r##"### shiftgate rollback: ↩️ rolled back

Service `projects/p/locations/us-central1/services/app`: 100% to `app-00001`

Final traffic (read back from the service): `app-00001` 100%

"##;

const ROLLBACK_OUTPUTS: &[(&str, &str)] = &[
    ("outcome", "rolled_back"),
    ("revision", "app-00001"),
    ("traffic", "[{\"percent\":100,\"revision\":\"app-00001\"}]"),
    ("exit-code", "0"),
];

const ROLLBACK_FAILED_SUMMARY: &str = "### shiftgate rollback: ❌ failed\n\nService `projects/p/locations/us-central1/services/app`: 100% to `app-00001`\n\n**reason:** `could not set traffic: rejected (403): permission denied on @\u{2060}team`\n\nFinal traffic (read back from the service): `app-00001` 75%, `app-00002` 25%\n\n";

const ROLLBACK_FAILED_OUTPUTS: &[(&str, &str)] = &[
    ("outcome", "failed"),
    ("revision", "app-00001"),
    (
        "traffic",
        "[{\"percent\":75,\"revision\":\"app-00001\"},{\"percent\":25,\"revision\":\"app-00002\"}]",
    ),
    ("exit-code", "4"),
];

const STATUS_SUMMARY: &str = r##"### shiftgate status: ✅ ok

Service `projects/p/locations/us-central1/services/app`

Final traffic (read back from the service): `app-00001` 75%, `app-00002` 25%

"##;

const STATUS_OUTPUTS: &[(&str, &str)] = &[
    ("outcome", "ok"),
    (
        "traffic",
        "[{\"percent\":75,\"revision\":\"app-00001\"},{\"percent\":25,\"revision\":\"app-00002\"}]",
    ),
    ("exit-code", "0"),
];

const HEALTH_SUMMARY: &str = r##"### shiftgate health: ❌ unhealthy

"##;

const HEALTH_OUTPUTS: &[(&str, &str)] = &[("outcome", "unhealthy"), ("exit-code", "1")];

const DISPATCH_SUMMARY: &str = r##"### shiftgate dispatch: ❌ failure

Run: <https://github.com/o/r/actions/runs/4242>

"##;

const DISPATCH_OUTPUTS: &[(&str, &str)] = &[
    ("outcome", "failure"),
    ("run-id", "4242"),
    ("run-url", "https://github.com/o/r/actions/runs/4242"),
    ("exit-code", "1"),
];

const INCIDENT_SUMMARY: &str = r##"### shiftgate incident: ❌ commented

"##;

const INCIDENT_OUTPUTS: &[(&str, &str)] = &[("outcome", "commented"), ("exit-code", "0")];

const ERROR_SUMMARY: &str = r##"### shiftgate rollout: ❌ error

**error:** `--env qa: unknown`

"##;

const ERROR_OUTPUTS: &[(&str, &str)] = &[("outcome", "error"), ("exit-code", "2")];

const ROLLOUT_INCIDENT_TITLE: &str =
    r##"app is unhealthy after rolling back to app-00001: the service needs a person"##;

const ROLLOUT_INCIDENT_SUMMARY: &str = r##"shiftgate rolled back the rollout of candidate revision `app-00002` (image `registry/app:v2`) to `projects/p/locations/us-central1/services/app`.

- Stable revision: `app-00001`
- Candidate revision: `app-00002`
- Reason: `step 2 (50%) failed: candidate 5xx rate 15%`
- Final traffic: `app-00001=100%`
- **Stable is unhealthy too** after the rollback: `answered HTTP 503`

| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |
|---:|---:|---:|---:|---:|---|---|---:|
| 1 | 10% | 120 | 1 | 0.83% | pass | ✅ passed | 5m1s |
| 2 | 50% | 400 | 60 | 15% | pass | ❌ failed: `candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` | 1m1s |

<details><summary>Every check (3)</summary>

| time | step | candidate 5xx | stable 5xx | evidence (needed 100) | verdict |
|---:|---:|---:|---:|---:|---|
| 1m0s | 1 | 0 of 30 | 1 of 300 | n/a | `inconclusive: baking: 30 candidate requests so far, 0 5xx` |
| 5m0s | 1 | 1 of 120 | 2 of 1000 | n/a | `pass` |
| 6m0s | 2 | 60 of 400 | 1 of 400 | n/a | `fail: candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%` |

</details>

```mermaid
xychart-beta
    title "app-00002: candidate traffic and 5xx rate"
    x-axis "time since start" ["3.3s", "1m0s", "5m0s", "5m3s", "6m0s", "6m3s"]
    y-axis "percent" 0 --> 100
    line [10, 10, 10, 50, 50, 0]
    line [0, 0, 0.83, 0.83, 15, 15]
    line [5, 5, 5, 5, 5, 5]
```

Lines, in order: candidate traffic share (%), candidate 5xx rate (%), the 5xx limit (%).

"##;

const ROLLOUT_INCIDENT_TIMELINE: &str = r##"- 2025-12-29T09:20:00Z `[    0.2s] plan: app-00001 (stable) → app-00002 (new revision) in steps 10% → 50% → 100%`
- 2025-12-29T09:20:01Z `[    1.2s] created candidate app-00002 from registry/app:v2, with no traffic`
- 2025-12-29T09:20:02Z `[    2.2s] health ok: https://candidate---app/health`
- 2025-12-29T09:20:03Z `[    3.2s] step 1: traffic app-00001=90% app-00002=10%`
- 2025-12-29T09:21:00Z `[   60.2s] step 1: candidate 30 requests, 0 5xx (0%); stable 300 requests, 1 5xx — baking: 30 candidate requests so far, 0 5xx`
- 2025-12-29T09:25:00Z `[  300.2s] step 1: candidate 120 requests, 1 5xx (0.83%); stable 1000 requests, 2 5xx — pass`
- 2025-12-29T09:25:01Z `[  301.2s] step 1 (10%) passed`
- 2025-12-29T09:25:02Z `[  302.2s] retrying set traffic: 409 conflict`
- 2025-12-29T09:25:03Z `[  303.2s] step 2: traffic app-00001=50% app-00002=50%`
- 2025-12-29T09:26:00Z `[  360.2s] step 2: candidate 400 requests, 60 5xx (15%); stable 400 requests, 1 5xx — FAIL: candidate 5xx rate 15% (60 of 400 requests) is above the limit 5%`
- 2025-12-29T09:26:01Z `[  361.2s] step 2 (50%) FAILED: candidate 5xx rate 15%`
- 2025-12-29T09:26:02Z `[  362.2s] rolling back to stable: step 2 (50%) failed`
- 2025-12-29T09:26:03Z `[  363.2s] rolled back: traffic app-00001=100%`
- 2025-12-29T09:26:04Z `[  364.2s] health fail: https://app/health: answered HTTP 503`"##;

const ROLLBACK_INCIDENT_TITLE: &str = r##"Rollback of app FAILED: the service needs a person"##;

const ROLLBACK_INCIDENT_SUMMARY: &str = "`shiftgate rollback` could not send 100% of traffic to `app-00001` on `projects/p/locations/us-central1/services/app`.\n\n- Reason: `could not set traffic: rejected (403): permission denied on @\u{2060}team`\n- Traffic as last read: `[{\"percent\":75,\"revision\":\"app-00001\"},{\"percent\":25,\"revision\":\"app-00002\"}]`\n";
