//! The real adapters (Cloud Run v2 client, Monitoring v3 client, HTTP health probe) against the
//! simulator over loopback HTTP, under a paused tokio clock: retries, conflicts and the wire format.

use std::time::Duration;

use shiftgate::clock::Clock;
use shiftgate::cloudrun::CloudRunService;
use shiftgate::gcp::{Credentials, GoogleRest};
use shiftgate::health::HttpHealthEndpoint;
use shiftgate::metrics::CloudMonitoring;
use shiftgate::rollout::plan::Policy;
use shiftgate::rollout::{
    CandidateSource, Engine, Interrupt, Outcome, Ports, Report, RolloutRequest,
};
use shiftgate::sim::{BadPoint, Fault, Sim};

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

    async fn roll_out(&self, policy: Policy) -> (Report, CloudRunService, CloudMonitoring) {
        let platform = self.platform();
        let metrics = CloudMonitoring::new(
            GoogleRest::new(&self.sim.monitoring_url(), Credentials::None),
            PROJECT,
            SERVICE,
        );
        let health = HttpHealthEndpoint::new(Duration::from_secs(5));
        let report = Engine::new(
            Ports {
                platform: &platform,
                metrics: &metrics,
                health: &health,
            },
            self.clock,
            Interrupt::never(),
        )
        .run(&RolloutRequest {
            policy,
            candidate: CandidateSource::Image("registry/app:v1.1.0".into()),
            dry_run: false,
        })
        .await
        .expect("the rollout starts");
        (report, platform, metrics)
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

fn split(entries: &[(&str, u8)]) -> Vec<(String, u8)> {
    entries.iter().map(|(r, p)| (r.to_string(), *p)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_rollout_over_http_promotes_and_counts_its_api_calls() {
    let harness = Harness::start().await;
    let _load = harness.sim.start_load(PROJECT, REGION, SERVICE, 5.0);

    let (report, platform, metrics) = harness.roll_out(quick_policy()).await;

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    let c = report.candidate.as_str();
    let s = harness.stable.as_str();
    assert_eq!(
        harness.splits(),
        vec![
            split(&[(s, 100)]),
            split(&[(s, 80), (c, 20)]),
            split(&[(c, 100)])
        ]
    );
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
    let _load = harness.sim.start_load(PROJECT, REGION, SERVICE, 5.0);
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
        vec![
            split(&[(s, 100)]),
            split(&[(s, 80), (c, 20)]),
            split(&[(c, 100)])
        ],
        "no unplanned split"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_candidate_over_http_is_rolled_back_and_the_record_cleared() {
    let harness = Harness::start().await;
    harness.sim.register_image(
        "registry/app:v1.1.0",
        shiftgate::sim::Behavior::erroring("1.1.0", 0.5),
    );
    let _load = harness.sim.start_load(PROJECT, REGION, SERVICE, 5.0);

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
    use shiftgate::rollout::ports::Platform;
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
    use shiftgate::rollout::ports::{Platform, TrafficChange, TrafficTarget};
    let base = start_service_echoing_server().await;
    let platform = CloudRunService::new(GoogleRest::new(&base, Credentials::None), "p", "r", "app");
    let before = platform.read_service().await.unwrap();
    assert_eq!(before.traffic, vec![TrafficTarget::new("app-1", 100)]);

    let after = platform
        .set_traffic(
            &TrafficChange {
                traffic: vec![TrafficTarget::tagged("app-1", 100, "blue")],
                rollout: None,
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
    use shiftgate::rollout::ports::{NewRevision, Platform, TrafficTarget};
    for (kind, points) in unreadable_5xx_points() {
        // Given a candidate that fails half its requests, already deployed with no traffic,
        let harness = Harness::start().await;
        harness.sim.register_image(
            "registry/app:v1.1.0",
            shiftgate::sim::Behavior::erroring("1.1.0", 0.5),
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
        let _load = harness.sim.start_load(PROJECT, REGION, SERVICE, 5.0);

        // when it is rolled out with the real Monitoring adapter,
        let metrics = CloudMonitoring::new(
            GoogleRest::new(&harness.sim.monitoring_url(), Credentials::None),
            PROJECT,
            SERVICE,
        );
        let health = HttpHealthEndpoint::new(Duration::from_secs(5));
        let report = Engine::new(
            Ports {
                platform: &platform,
                metrics: &metrics,
                health: &health,
            },
            harness.clock,
            Interrupt::never(),
        )
        .run(&RolloutRequest {
            policy: quick_policy(),
            candidate: CandidateSource::Revision(candidate.clone()),
            dry_run: false,
        })
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
