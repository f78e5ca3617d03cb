//! The real adapters (Cloud Run v2 client, Monitoring v3 client, HTTP health probe) against the
//! simulator over loopback HTTP, under a paused tokio clock: retries, conflicts and the wire format.

use std::time::Duration;

use shiftgate::clock::Clock;
use shiftgate::{
    CandidateSource, CloudMonitoring, CloudRunService, Credentials, GoogleRest, LatencyLimit,
    Outcome, Policy, Quantile, Report,
};
use shiftgate_sim::{BadPoint, Behavior, Fault, LatencyBuckets, LoadHandle, Sim};

use crate::support::adapters::roll_out_over_http;

const PROJECT: &str = "loopcloser";
const REGION: &str = "us-central1";
const SERVICE: &str = "loopcloser-staging";

struct Harness {
    sim: Sim,
    stable: String,
    clock: Clock,
}

impl Harness {
    async fn start() -> Self {
        let clock = Clock::new();
        let sim = Sim::start(clock)
            .await
            .expect("the simulator binds loopback ports");
        let stable = sim.add_service(PROJECT, REGION, SERVICE, "registry/app:v1.0.0");
        Self { sim, stable, clock }
    }

    fn platform(&self) -> CloudRunService {
        CloudRunService::new(
            GoogleRest::new(&self.sim.cloud_run_url(), Credentials::None),
            PROJECT,
            REGION,
            SERVICE,
        )
    }

    fn metrics(&self) -> CloudMonitoring {
        CloudMonitoring::new(
            GoogleRest::new(&self.sim.monitoring_url(), Credentials::None),
            PROJECT,
            SERVICE,
        )
    }

    /// A rollout of v1.1.0 under `policy`, which must start; with the adapters it went through.
    async fn roll_out(&self, policy: Policy) -> (Report, CloudRunService, CloudMonitoring) {
        let (platform, metrics) = (self.platform(), self.metrics());
        let candidate = CandidateSource::Image("registry/app:v1.1.0".into());
        let report = roll_out_over_http(&platform, &metrics, self.clock, policy, candidate)
            .await
            .expect("the rollout starts");
        (report, platform, metrics)
    }

    /// One rollout of `candidate` under the quick policy, through `platform`.
    async fn try_roll_out(
        &self,
        platform: &CloudRunService,
        candidate: CandidateSource,
    ) -> Result<Report, shiftgate::RolloutError> {
        let metrics = self.metrics();
        roll_out_over_http(platform, &metrics, self.clock, quick_policy(), candidate).await
    }

    /// Sends 5 requests a second to the service until the handle is dropped.
    fn start_load(&self) -> LoadHandle {
        self.sim.start_load(PROJECT, REGION, SERVICE, 5.0)
    }

    fn splits(&self) -> Vec<Vec<(String, u8)>> {
        let mut folded: Vec<Vec<(String, u8)>> = Vec::new();
        for split in self.sim.model().traffic_history(PROJECT, REGION, SERVICE) {
            if folded.last() != Some(&split) {
                folded.push(split);
            }
        }
        folded
    }
}

fn quick_policy() -> Policy {
    Policy {
        steps: "20,100".parse().unwrap(),
        bake: Duration::from_secs(120),
        interval: Duration::from_secs(20),
        min_requests: 50,
        metrics_delay: Duration::ZERO,
        ..Policy::default()
    }
}

/// The splits of a promotion from `stable` to `candidate` under the quick policy.
fn promoted_in_two_steps(stable: &str, candidate: &str) -> Vec<Vec<(String, u8)>> {
    vec![
        split(&[(stable, 100)]),
        split(&[(stable, 80), (candidate, 20)]),
        split(&[(candidate, 100)]),
    ]
}

fn split(entries: &[(&str, u8)]) -> Vec<(String, u8)> {
    entries.iter().map(|(r, p)| (r.to_string(), *p)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_rollout_over_http_promotes_and_counts_its_api_calls() {
    let harness = Harness::start().await;
    let _load = harness.start_load();

    let (report, platform, metrics) = harness.roll_out(quick_policy()).await;

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    let c = report.candidate.as_str();
    let s = harness.stable.as_str();
    assert_eq!(harness.splits(), promoted_in_two_steps(s, c));
    eprintln!(
        "API calls for a 2-step rollout: cloud run {}, monitoring {}, checks per step {:?}",
        platform.rest().calls(),
        metrics.rest().calls(),
        report.steps.iter().map(|s| s.checks).collect::<Vec<_>>()
    );
    assert!(report.steps.iter().all(|s| s.candidate_requests >= 50));
}

#[tokio::test(start_paused = true)]
async fn unavailable_and_throttled_reads_and_a_conflicting_write_are_survived() {
    let harness = Harness::start().await;
    let _load = harness.start_load();
    let service_path = format!("services/{SERVICE}");
    harness.sim.inject(Fault::status("GET", &service_path, 503));
    harness
        .sim
        .inject(Fault::status_retry_after("GET", &service_path, 429, 2));
    harness
        .sim
        .inject(Fault::status("PATCH", &service_path, 409));
    harness
        .sim
        .inject(Fault::status_retry_after("GET", "timeSeries", 503, 1));

    let (report, _, _) = harness.roll_out(quick_policy()).await;

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_eq!(
        harness.sim.model().pending_faults(),
        0,
        "every fault was hit"
    );
    let c = report.candidate.as_str();
    let s = harness.stable.as_str();
    assert_eq!(
        harness.splits(),
        promoted_in_two_steps(s, c),
        "no unplanned split"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_candidate_over_http_is_rolled_back_and_the_record_cleared() {
    let harness = Harness::start().await;
    harness.sim.register_image(
        "registry/app:v1.1.0",
        shiftgate_sim::Behavior::erroring("1.1.0", 0.5),
    );
    let _load = harness.start_load();

    let (report, platform, _) = harness.roll_out(quick_policy()).await;

    assert_eq!(report.outcome, Outcome::RolledBack);
    let s = harness.stable.as_str();
    let c = report.candidate.as_str();
    assert_eq!(
        harness.splits(),
        vec![
            split(&[(s, 100)]),
            split(&[(s, 80), (c, 20)]),
            split(&[(s, 100)])
        ]
    );
    use shiftgate::ports::Platform;
    let service = platform.read_service().await.unwrap();
    assert!(service.rollout.is_none(), "the rollout record is cleared");
    assert!(
        service
            .traffic
            .iter()
            .all(|t| t.tag.as_deref() != Some("candidate")),
        "the candidate's tag is removed: {:?}",
        service.traffic
    );
}

/// The quick policy with `--max-latency p95=500ms`.
fn latency_policy() -> Policy {
    Policy {
        latency: vec![LatencyLimit {
            quantile: Quantile::P95,
            limit: Duration::from_millis(500),
        }],
        ..quick_policy()
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_candidate_is_rolled_back_from_monitoring_distributions_in_every_bucket_layout() {
    for layout in [
        LatencyBuckets::Exponential {
            count: 40,
            growth: 1.4,
            scale: 1.0,
        },
        LatencyBuckets::Linear {
            count: 30,
            width: 100.0,
            offset: 0.0,
        },
        LatencyBuckets::Explicit(vec![10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0]),
    ] {
        let harness = Harness::start().await;
        harness.sim.set_latency_buckets(layout.clone());
        harness.sim.register_image(
            "registry/app:v1.1.0",
            Behavior::healthy("1.1.0")
                .with_latency(Duration::from_millis(1200), Duration::from_millis(2500)),
        );
        let _load = harness.start_load();

        let (report, _, _) = harness.roll_out(latency_policy()).await;

        assert_eq!(
            report.outcome,
            Outcome::RolledBack,
            "{layout:?}: {:?}",
            report.reason
        );
        let reason = report.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("candidate p95"), "{layout:?}: {reason}");
        let (s, c) = (harness.stable.as_str(), report.candidate.as_str());
        assert_eq!(
            harness.splits(),
            vec![
                split(&[(s, 100)]),
                split(&[(s, 80), (c, 20)]),
                split(&[(s, 100)])
            ],
            "{layout:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_candidate_as_fast_as_stable_is_promoted_through_the_latency_gate_over_http() {
    let harness = Harness::start().await;
    let _load = harness.start_load();

    let (report, _, _) = harness.roll_out(latency_policy()).await;

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    let check = &report.steps.last().unwrap().latency[0];
    assert!(
        check.candidate_requests > 0 && !check.failed(),
        "the latencies were read and judged: {check:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_keeps_its_session_affinity_through_the_candidates_new_template() {
    let harness = Harness::start().await;
    harness
        .sim
        .set_session_affinity(PROJECT, REGION, SERVICE, true);
    let _load = harness.start_load();

    let (report, platform, _) = harness.roll_out(quick_policy()).await;

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert!(
        report
            .timeline
            .iter()
            .any(|event| matches!(event.kind, shiftgate::EventKind::Warned { .. })),
        "warned about the affinity"
    );
    use shiftgate::ports::Platform;
    let service = platform.read_service().await.unwrap();
    assert!(
        service.session_affinity,
        "the PATCH that made the candidate kept the template's other fields"
    );
}

/// A minimal server that answers a PATCH with the service itself rather than an Operation.
async fn start_service_echoing_server() -> String {
    use axum::Json;
    use axum::routing::get;
    use std::sync::{Arc, Mutex};
    let stored = Arc::new(Mutex::new(serde_json::json!({
        "name": "projects/p/locations/r/services/app",
        "etag": "\"1\"", "generation": "1", "observedGeneration": "1",
        "template": {"revision": "app-1", "containers": [{"image": "img:1"}]},
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "latestReadyRevision": "projects/p/locations/r/services/app/revisions/app-1",
        "latestCreatedRevision": "projects/p/locations/r/services/app/revisions/app-1"
    })));
    let read = stored.clone();
    let app = axum::Router::new().route(
        "/v2/projects/p/locations/r/services/app",
        get(move || {
            let read = read.clone();
            async move { Json(read.lock().unwrap().clone()) }
        })
        .patch(move |Json(mut body): Json<serde_json::Value>| {
            let stored = stored.clone();
            async move {
                body["etag"] = serde_json::json!("\"2\"");
                *stored.lock().unwrap() = body.clone();
                Json(body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test(start_paused = true)]
async fn a_server_that_answers_a_patch_with_the_service_needs_no_operation_polling() {
    use shiftgate::ports::{Platform, TrafficChange, TrafficTarget};
    let base = start_service_echoing_server().await;
    let platform = CloudRunService::new(GoogleRest::new(&base, Credentials::None), "p", "r", "app");
    let before = platform.read_service().await.unwrap();
    assert_eq!(before.traffic, vec![TrafficTarget::new("app-1", 100)]);

    let after = platform
        .set_traffic(
            &TrafficChange {
                traffic: vec![TrafficTarget::tagged("app-1", 100, "blue")],
                rollout: None,
                history: None,
            },
            &before.etag,
            Duration::from_secs(30),
        )
        .await
        .unwrap();

    assert_eq!(
        after.traffic,
        vec![TrafficTarget::tagged("app-1", 100, "blue")]
    );
    assert_eq!(after.etag, "\"2\"");
    assert_eq!(
        platform.rest().calls(),
        4,
        "GET, PATCH, GET to settle, plus the first read"
    );
}

/// Each way Cloud Monitoring data can be unreadable that once counted as zero errors.
fn unreadable_5xx_points() -> Vec<(&'static str, Vec<BadPoint>)> {
    let max = i64::MAX.to_string();
    vec![
        ("a word", vec![BadPoint::int64("sixty")]),
        ("a negative", vec![BadPoint::int64("-60")]),
        ("a decimal", vec![BadPoint::int64("60.0")]),
        (
            "two i64::MAX",
            vec![BadPoint::int64(&max), BadPoint::int64(&max)],
        ),
        (
            "out of window",
            vec![BadPoint::int64("60").before_window(Duration::from_secs(3600))],
        ),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_bad_candidate_whose_5xx_points_are_unreadable_is_never_promoted() {
    use shiftgate::ports::{NewRevision, Platform, TrafficTarget};
    for (kind, points) in unreadable_5xx_points() {
        // Given a candidate that fails half its requests, already deployed with no traffic,
        let harness = Harness::start().await;
        harness.sim.register_image(
            "registry/app:v1.1.0",
            shiftgate_sim::Behavior::erroring("1.1.0", 0.5),
        );
        let platform = harness.platform();
        let before = platform.read_service().await.unwrap();
        let candidate = format!("{SERVICE}-bad");
        platform
            .create_revision(
                &NewRevision {
                    revision: candidate.clone(),
                    image: "registry/app:v1.1.0".into(),
                    traffic: vec![TrafficTarget::new(&harness.stable, 100)],
                    rollout: None,
                },
                &before.etag,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        // and Cloud Monitoring answering its 5xx series with points that are not counts,
        harness
            .sim
            .model()
            .override_points(&candidate, "5xx", points);
        let _load = harness.start_load();

        // when it is rolled out with the real Monitoring adapter,
        let report = harness
            .try_roll_out(&platform, CandidateSource::Revision(candidate.clone()))
            .await
            .expect("the rollout starts");

        // then it is not promoted, stable has everything again,
        assert!(
            matches!(report.outcome, Outcome::RolledBack | Outcome::Failed),
            "{kind}: {:?} ({:?})",
            report.outcome,
            report.reason
        );
        assert_eq!(
            harness.sim.model().current_split(PROJECT, REGION, SERVICE),
            split(&[(harness.stable.as_str(), 100)]),
            "{kind}"
        );
        // and the timeline says the metrics could not be read.
        let timeline = serde_json::to_string(&report.timeline).unwrap();
        let said = [
            "not a non-negative integer",
            "more than an int64",
            "outside the requested window",
        ];
        assert!(
            said.iter().any(|s| timeline.contains(s)),
            "{kind}: the timeline names the unreadable metrics: {timeline}"
        );
    }
}

// ---- The fault matrix: every external call of a rollout × every way it can fail ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Before the rollout starts: the first matching call gets the fault.
    AtStart,
    /// Once the first step's split is live: the next matching call gets it.
    AfterFirstStep,
}

struct Call {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    when: When,
    /// The candidate errors, so the call after the first step is the restore.
    bad_candidate: bool,
}

const CALLS: &[Call] = &[
    Call {
        name: "service read",
        method: "GET",
        path: "services/loopcloser-staging",
        when: When::AtStart,
        bad_candidate: false,
    },
    Call {
        name: "candidate create",
        method: "PATCH",
        path: "services/loopcloser-staging",
        when: When::AtStart,
        bad_candidate: false,
    },
    Call {
        name: "operation wait",
        method: "POST",
        path: ":wait",
        when: When::AtStart,
        bad_candidate: false,
    },
    Call {
        name: "step traffic write",
        method: "PATCH",
        path: "services/loopcloser-staging",
        when: When::AfterFirstStep,
        bad_candidate: false,
    },
    Call {
        name: "read during a step",
        method: "GET",
        path: "services/loopcloser-staging",
        when: When::AfterFirstStep,
        bad_candidate: false,
    },
    Call {
        name: "metrics query",
        method: "GET",
        path: "timeSeries",
        when: When::AfterFirstStep,
        bad_candidate: false,
    },
    Call {
        name: "restore write",
        method: "PATCH",
        path: "services/loopcloser-staging",
        when: When::AfterFirstStep,
        bad_candidate: true,
    },
];

fn faults_for(method: &str, path: &str) -> Vec<(&'static str, Fault)> {
    vec![
        ("500", Fault::status(method, path, 500)),
        ("503", Fault::status(method, path, 503)),
        (
            "429 retry-after",
            Fault::status_retry_after(method, path, 429, 2),
        ),
        ("409", Fault::status(method, path, 409)),
        ("401", Fault::status(method, path, 401)),
        ("403", Fault::status(method, path, 403)),
        ("timeout", Fault::hang(method, path)),
        ("reset", Fault::reset(method, path)),
        ("malformed JSON", Fault::malformed_json(method, path)),
        ("truncated JSON", Fault::truncated_json(method, path)),
        ("lost answer (503)", Fault::lost_answer(method, path, 503)),
        (
            "lost answer (reset)",
            Fault::lost_answer_reset(method, path),
        ),
    ]
}

/// Runs one rollout with one fault and checks what must hold whatever the fault: the service
/// ends at 100% stable, or 100% candidate only when promoted; the result's split is the one read
/// back; the exit code follows DESIGN.md; no write is sent again after it landed.
async fn fault_cell(call: &Call, fault: Fault) -> Result<String, String> {
    let harness = Harness::start().await;
    if call.bad_candidate {
        harness.sim.register_image(
            "registry/app:v1.1.0",
            shiftgate_sim::Behavior::erroring("1.1.0", 0.5),
        );
    }
    let _load = harness.start_load();
    let model = harness.sim.model().clone();
    let injector = match call.when {
        When::AtStart => {
            model.inject(fault);
            None
        }
        When::AfterFirstStep => Some(tokio::spawn(async move {
            while model.current_split(PROJECT, REGION, SERVICE).len() < 2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            model.inject(fault);
        })),
    };
    let platform = harness.platform();
    let ran = harness
        .try_roll_out(
            &platform,
            CandidateSource::Image("registry/app:v1.1.0".into()),
        )
        .await;
    if let Some(injector) = injector {
        injector.abort();
    }
    let model = harness.sim.model();
    let now = model.current_split(PROJECT, REGION, SERVICE);
    let (writes, patches) = (model.write_count(), model.api_calls("PATCH") as u64);
    let stable_only = now == split(&[(harness.stable.as_str(), 100)]);
    let report = match ran {
        Err(refused) => {
            // Refused before any write: nothing may have changed.
            return if writes == 0 && stable_only {
                Ok(format!("not started (exit {})", refused.exit_code()))
            } else {
                Err(format!(
                    "refused ({refused}) but the service changed: {now:?}"
                ))
            };
        }
        Ok(report) => report,
    };
    let code = report.exit_code();
    let expected_code = match report.outcome {
        Outcome::Promoted => 0,
        _ if report.rollback_failed => 4,
        Outcome::RolledBack => 1,
        Outcome::Failed => 3,
        other => return Err(format!("unexpected outcome {other:?}: {:?}", report.reason)),
    };
    if code != expected_code {
        return Err(format!("exit {code} for {:?}", report.outcome));
    }
    let promoted_only = now == split(&[(report.candidate.as_str(), 100)]);
    match report.outcome {
        Outcome::Promoted if !promoted_only => {
            return Err(format!("promoted but the split is {now:?}"));
        }
        Outcome::Promoted if call.bad_candidate => {
            return Err("a bad candidate was promoted".into());
        }
        Outcome::Promoted => {}
        Outcome::RolledBack if !call.bad_candidate => {
            return Err(format!(
                "an API fault was blamed on a good candidate: {:?}",
                report.reason
            ));
        }
        _ if report.rollback_failed => {}
        _ if !stable_only => return Err(format!("{:?} but the split is {now:?}", report.outcome)),
        _ => {}
    }
    let reported: Vec<(String, u8)> = report
        .final_traffic
        .iter()
        .filter(|t| t.percent > 0)
        .map(|t| (t.revision.clone(), t.percent))
        .collect();
    let mut reported_sorted = reported.clone();
    reported_sorted.sort();
    let mut now_sorted = now.clone();
    now_sorted.sort();
    if report.final_traffic_confirmed && reported_sorted != now_sorted {
        return Err(format!("reported {reported:?}, the service has {now:?}"));
    }
    // The faulted PATCH may be one that never landed; any other PATCH beyond the writes that
    // landed would be a write sent again.
    if patches > writes + 1 {
        return Err(format!("{patches} PATCHes for {writes} applied writes"));
    }
    let record_left = {
        use shiftgate::ports::Platform;
        platform.read_service().await.map(|s| s.rollout.is_some())
    };
    if !report.rollback_failed && record_left != Ok(false) {
        return Err(format!(
            "the rollout record was left behind: {record_left:?}"
        ));
    }
    Ok(format!(
        "{} (exit {code}, {writes} writes)",
        report.outcome.as_str()
    ))
}

/// Every fault in every call made `when`, one rollout each.
async fn run_fault_matrix(when: When) {
    let mut failures = Vec::new();
    let mut cells = 0;
    for call in CALLS.iter().filter(|call| call.when == when) {
        for (fault_name, fault) in faults_for(call.method, call.path) {
            cells += 1;
            let verdict = fault_cell(call, fault).await;
            eprintln!("{:<20} × {:<20} → {verdict:?}", call.name, fault_name);
            if let Err(why) = verdict {
                failures.push(format!("{} × {fault_name}: {why}", call.name));
            }
        }
    }
    eprintln!("fault matrix: {cells} cells, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(start_paused = true)]
async fn fault_matrix_of_the_calls_that_start_a_rollout() {
    run_fault_matrix(When::AtStart).await;
}

#[tokio::test(start_paused = true)]
async fn fault_matrix_of_the_calls_during_and_after_the_steps() {
    run_fault_matrix(When::AfterFirstStep).await;
}

#[tokio::test(start_paused = true)]
async fn a_second_rollout_of_a_service_starts_under_either_reading_of_a_maskless_patch() {
    for mode in [
        shiftgate_sim::PatchMode::FieldMask,
        shiftgate_sim::PatchMode::FullReplace,
    ] {
        let harness = Harness::start().await;
        harness.sim.set_patch_mode(mode);
        let _load = harness.start_load();

        let (first, platform, _) = harness.roll_out(quick_policy()).await;
        assert_eq!(
            first.outcome,
            Outcome::Promoted,
            "{mode:?}: {:?}",
            first.reason
        );
        use shiftgate::ports::Platform;
        let after_first = platform.read_service().await.unwrap();
        assert!(
            after_first.rollout.is_none(),
            "{mode:?}: the record is cleared when it was the only annotation"
        );
        let (second, _, _) = harness.roll_out(quick_policy()).await;

        assert_eq!(
            second.outcome,
            Outcome::Promoted,
            "{mode:?}: {:?}",
            second.reason
        );
        assert_eq!(
            harness.sim.model().current_split(PROJECT, REGION, SERVICE),
            split(&[(second.candidate.as_str(), 100)]),
            "{mode:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_rollout_record_that_cannot_be_read_is_never_taken_for_no_rollout() {
    let harness = Harness::start().await;
    // Someone (or an older tool) left garbage in the record annotation.
    let url = format!(
        "{}/v2/projects/{PROJECT}/locations/{REGION}/services/{SERVICE}",
        harness.sim.cloud_run_url()
    );
    let answer = shiftgate::client_builder()
        .build()
        .unwrap()
        .patch(&url)
        .query(&[("updateMask", "annotations")])
        .json(&serde_json::json!({"annotations": {"shiftgate.dev/rollout": "{not json"}}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let platform = harness.platform();

    let refused = harness
        .try_roll_out(
            &platform,
            CandidateSource::Image("registry/app:v1.1.0".into()),
        )
        .await
        .unwrap_err();

    assert_eq!(refused.exit_code(), 2);
    assert!(refused.to_string().contains("cannot be read"), "{refused}");
    let cleared = shiftgate::roll_back(&platform, Some(&harness.stable), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cleared.exit_code, 0, "{cleared:?}");
    use shiftgate::ports::Platform;
    let after = platform.read_service().await.unwrap();
    assert!(after.unreadable_rollout.is_none() && after.rollout.is_none());
}

#[tokio::test(start_paused = true)]
async fn given_other_annotations_and_a_foreign_history_when_a_rollout_ends_then_its_entry_is_added_and_the_rest_kept()
 {
    for mode in [
        shiftgate_sim::PatchMode::FieldMask,
        shiftgate_sim::PatchMode::FullReplace,
    ] {
        let harness = Harness::start().await;
        harness.sim.set_patch_mode(mode);
        let _load = harness.start_load();
        // Someone's own annotation, and a history another tool wrote in its own format.
        let url = format!(
            "{}/v2/projects/{PROJECT}/locations/{REGION}/services/{SERVICE}",
            harness.sim.cloud_run_url()
        );
        let seeded = shiftgate::client_builder()
            .build()
            .unwrap()
            .patch(&url)
            .query(&[("updateMask", "annotations")])
            .json(&serde_json::json!({"annotations": {
                "team.example.com/owner": "web",
                "shiftgate.dev/history": "{\"deploys\": 3}",
            }}))
            .send()
            .await
            .unwrap();
        assert!(seeded.status().is_success(), "{:?}", seeded.text().await);
        tokio::time::sleep(Duration::from_secs(5)).await;

        let (first, _, _) = harness.roll_out(quick_policy()).await;
        let (second, _, _) = harness.roll_out(quick_policy()).await;

        assert_eq!(
            first.outcome,
            Outcome::Promoted,
            "{mode:?}: {:?}",
            first.reason
        );
        assert_eq!(
            second.outcome,
            Outcome::Promoted,
            "{mode:?}: {:?}",
            second.reason
        );
        let key = shiftgate_sim::ServiceKey::new(PROJECT, REGION, SERVICE);
        let annotations = harness.sim.model().service_annotations(&key).unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["shiftgate.dev/history", "team.example.com/owner"],
            "{mode:?}: the record is gone, every other annotation kept"
        );
        assert_eq!(annotations["team.example.com/owner"], "web");
        let history: serde_json::Value =
            serde_json::from_str(&annotations["shiftgate.dev/history"]).unwrap();
        let entries = history.as_array().unwrap();
        assert_eq!(
            entries.len(),
            2,
            "{mode:?}: the foreign list was replaced: {history}"
        );
        for (entry, report) in entries.iter().zip([&first, &second]) {
            assert_eq!(entry["id"], report.rollout_id.as_str());
            assert_eq!(entry["outcome"], "promoted");
            assert_eq!(entry["candidate"], report.candidate.as_str());
            assert_eq!(entry["stable"], report.stable.as_str());
        }
    }
}
