//! Scenario tests of the rollout engine against the simulator's in-process ports, under a paused
//! tokio clock: given a service and a candidate, when something happens, then traffic is exactly so.

use std::time::Duration;

use crate::support::inproc::{SimHealth, SimMetrics, SimPlatform, start_inproc_load};
use shiftgate::clock::Clock;
use shiftgate::ports::{Platform, RevisionInfo, ServiceState};
use shiftgate::{
    CandidateSource, Engine, Expectations, Interrupt, JudgeKind, LatencyLimit, Outcome, Policy,
    Ports, Quantile, Report, RolloutError, RolloutRequest, Steps,
};
use shiftgate_sim::{Behavior, LoadHandle, ServiceKey, SimModel};

pub(crate) const PROJECT: &str = "loopcloser";
pub(crate) const REGION: &str = "us-central1";
pub(crate) const SERVICE: &str = "loopcloser-prod";
const STABLE_IMAGE: &str = "registry/loopcloser-app:v1.3.0";
pub(crate) const CANDIDATE_IMAGE: &str = "registry/loopcloser-app:v1.4.0";

/// A service deployed the way `gcloud run deploy` leaves it, with steady traffic.
pub(crate) struct World {
    pub(crate) model: SimModel,
    pub(crate) stable: String,
    pub(crate) clock: Clock,
    /// Requests sent to the service for as long as the world lives, when it is under load.
    _load: Option<LoadHandle>,
}

impl World {
    pub(crate) fn new() -> Self {
        let clock = Clock::new();
        let model = SimModel::new(clock);
        let stable = model.add_service(PROJECT, REGION, SERVICE, STABLE_IMAGE);
        model.set_operation_delay(Duration::from_millis(500));
        Self {
            model,
            stable,
            clock,
            _load: None,
        }
    }

    /// The service with 10 requests a second sent to it, enough for every step to be judged.
    pub(crate) fn under_load() -> Self {
        let world = Self::new();
        let load = start_inproc_load(&world.model, PROJECT, REGION, SERVICE, 10.0);
        Self {
            _load: Some(load),
            ..world
        }
    }

    /// From now on the candidate image behaves so.
    pub(crate) fn candidate_behaves(&self, behavior: Behavior) {
        self.model.register_image(CANDIDATE_IMAGE, behavior);
    }

    /// Rolls the candidate image out under the 30-minute policy; the rollout must start.
    async fn roll_out_candidate(&self) -> Report {
        self.roll_out(image_request(CANDIDATE_IMAGE)).await.unwrap()
    }

    /// A rollout that must be refused before it starts; why.
    async fn roll_out_refused(&self, request: RolloutRequest) -> RolloutError {
        self.roll_out(request).await.unwrap_err()
    }

    /// The same rollout, with `other` running alongside it until both are done.
    async fn roll_out_candidate_alongside<T>(
        &self,
        other: impl std::future::Future<Output = T>,
    ) -> (Report, T) {
        let (report, other) = tokio::join!(self.roll_out(image_request(CANDIDATE_IMAGE)), other);
        (report.unwrap(), other)
    }

    /// The same rollout, until it ends or `interrupt` fires.
    async fn roll_out_candidate_with(&self, interrupt: Interrupt) -> Report {
        self.roll_out_with(image_request(CANDIDATE_IMAGE), interrupt)
            .await
            .unwrap()
    }

    /// The rollout was rolled back (exit 1) without the candidate ever carrying traffic.
    #[track_caller]
    fn expect_rolled_back_before_any_traffic(&self, report: &Report) {
        assert_eq!(report.outcome, Outcome::RolledBack, "{:?}", report.reason);
        assert_eq!(report.exit_code(), 1);
        assert_eq!(self.splits(), vec![self.stable_only()]);
    }

    /// The split with all traffic on the stable revision.
    pub(crate) fn stable_only(&self) -> Vec<(String, u8)> {
        split(&[(&self.stable, 100)])
    }

    pub(crate) fn ports(&self) -> (SimPlatform, SimMetrics, SimHealth) {
        (
            SimPlatform::new(&self.model, PROJECT, REGION, SERVICE),
            SimMetrics::new(&self.model, PROJECT, REGION, SERVICE),
            SimHealth::new(&self.model),
        )
    }

    pub(crate) async fn roll_out(&self, request: RolloutRequest) -> Result<Report, RolloutError> {
        self.roll_out_with(request, Interrupt::never()).await
    }

    async fn roll_out_with(
        &self,
        request: RolloutRequest,
        interrupt: Interrupt,
    ) -> Result<Report, RolloutError> {
        let (platform, metrics, health) = self.ports();
        let ports = Ports {
            platform: &platform,
            metrics: &metrics,
            health: &health,
        };
        Engine::new(ports, self.clock, interrupt)
            .run(&request)
            .await
    }

    /// Every split the service took, consecutive repeats folded, zero shares left out.
    pub(crate) fn splits(&self) -> Vec<Vec<(String, u8)>> {
        let mut folded: Vec<Vec<(String, u8)>> = Vec::new();
        for split in self.model.traffic_history(PROJECT, REGION, SERVICE) {
            if folded.last() != Some(&split) {
                folded.push(split);
            }
        }
        folded
    }

    pub(crate) fn current(&self) -> Vec<(String, u8)> {
        self.model.current_split(PROJECT, REGION, SERVICE)
    }

    /// Resolves once some revision carries exactly `percent`% of the traffic.
    pub(crate) fn when_a_revision_has(
        &self,
        percent: u8,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.when_split(move |split| split.iter().any(|(_, share)| *share == percent))
    }

    /// Resolves once traffic is split between two revisions (the first step is live).
    pub(crate) fn when_traffic_is_split(
        &self,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.when_split(|split| split.len() == 2)
    }

    /// Resolves, in virtual time, once the service's split satisfies `reached`.
    pub(crate) fn when_split(
        &self,
        reached: impl Fn(&[(String, u8)]) -> bool + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let model = self.model.clone();
        async move {
            while !reached(&model.current_split(PROJECT, REGION, SERVICE)) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

pub(crate) fn split(entries: &[(&str, u8)]) -> Vec<(String, u8)> {
    entries.iter().map(|(r, p)| (r.to_string(), *p)).collect()
}

/// The splits of a promotion from `stable` to `candidate` through the default steps.
pub(crate) fn every_default_step(stable: &str, candidate: &str) -> Vec<Vec<(String, u8)>> {
    let (s, c) = (stable, candidate);
    vec![
        split(&[(s, 100)]),
        split(&[(s, 90), (c, 10)]),
        split(&[(s, 75), (c, 25)]),
        split(&[(s, 50), (c, 50)]),
        split(&[(c, 100)]),
    ]
}

/// The 30-minute policy: 4 steps × 5 min bake, checks every 30 s.
pub(crate) fn thirty_minute_policy() -> Policy {
    Policy {
        steps: Steps::default(),
        bake: Duration::from_secs(300),
        interval: Duration::from_secs(30),
        max_error_rate: 0.05,
        min_requests: 100,
        metrics_delay: Duration::ZERO,
        health: Expectations::default(),
        ..Policy::default()
    }
}

/// A rollout of `candidate` under the 30-minute policy, not a dry run.
fn request_for(candidate: CandidateSource) -> RolloutRequest {
    RolloutRequest {
        policy: thirty_minute_policy(),
        candidate,
        dry_run: false,
    }
}

pub(crate) fn image_request(image: &str) -> RolloutRequest {
    request_for(CandidateSource::Image(image.to_string()))
}

#[tokio::test(start_paused = true)]
async fn a_good_candidate_is_promoted_through_every_step() {
    let world = World::under_load();
    let wall = std::time::Instant::now();

    let report = world.roll_out_candidate().await;

    eprintln!(
        "30-minute policy took {:?} of wall time ({}s virtual)",
        wall.elapsed(),
        report.duration_s
    );
    let candidate = report.candidate.clone();
    let (s, c) = (world.stable.as_str(), candidate.as_str());
    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_eq!(report.exit_code(), 0);
    assert_eq!(world.splits(), every_default_step(s, c));
    assert_eq!(report.steps.len(), 4);
    assert!(report.steps.iter().all(|step| step.verdict == "pass"));
    assert!(
        report
            .steps
            .iter()
            .all(|step| step.candidate_requests >= 100),
        "every step judged on enough requests: {:?}",
        report.steps
    );
    // Each step reports its own requests; together they are what the judge counted.
    let judged = report
        .timeline
        .iter()
        .rev()
        .find_map(|event| match &event.kind {
            shiftgate::EventKind::ErrorsChecked { candidate, .. } => Some(candidate.total),
            _ => None,
        })
        .unwrap();
    let per_step: u64 = report
        .steps
        .iter()
        .map(|step| step.candidate_requests)
        .sum();
    assert_eq!(per_step, judged, "{:?}", report.steps);
    // 10 requests/s for a 5-minute bake: about 300 at 10% and 3,000 at 100%, not a running total.
    let own = |step: usize| report.steps[step].candidate_requests;
    assert!(
        (270..=330).contains(&own(0)) && (2_850..=3_150).contains(&own(3)),
        "{:?}",
        report.steps
    );
    assert!(report.duration_s >= 20.0 * 60.0, "four full bakes ran");
    assert_eq!(report.final_traffic.len(), 1);
    assert_eq!(report.final_traffic[0].revision, candidate);
}

#[tokio::test(start_paused = true)]
async fn a_candidate_made_from_an_image_starts_with_no_traffic_and_its_own_tag() {
    let world = World::under_load();
    let (platform, _, _) = world.ports();
    let watcher = {
        let model = world.model.clone();
        tokio::spawn(async move {
            // Look at the service the moment the candidate exists.
            loop {
                if model.revisions(PROJECT, REGION, SERVICE).len() == 2 {
                    return model.current_split(PROJECT, REGION, SERVICE);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let report = world.roll_out_candidate().await;
    let split_when_created = watcher.await.unwrap();
    assert_eq!(split_when_created, world.stable_only());
    assert!(report.candidate.starts_with("loopcloser-prod-sg-"));
    let created = report
        .timeline
        .iter()
        .position(|e| matches!(e.kind, shiftgate::EventKind::CandidateCreated { .. }))
        .expect("the candidate was created");
    let first_traffic = report
        .timeline
        .iter()
        .position(|e| {
            matches!(
                e.kind,
                shiftgate::EventKind::TrafficSet { step: Some(1), .. }
            )
        })
        .unwrap();
    assert!(created < first_traffic);
    let revision = shiftgate::ports::Platform::read_revision(&platform, &report.candidate)
        .await
        .unwrap();
    assert_eq!(revision.image.as_deref(), Some(CANDIDATE_IMAGE));
}

#[tokio::test(start_paused = true)]
async fn a_5xx_burst_rolls_back_from_the_step_where_it_shows() {
    let world = World::under_load();
    // The candidate turns bad once it carries 25% of traffic.
    let saboteur = {
        let model = world.model.clone();
        let at_25 = world.when_a_revision_has(25);
        tokio::spawn(async move {
            at_25.await;
            model.register_image(CANDIDATE_IMAGE, Behavior::erroring("1.4.0", 0.3));
        })
    };

    let report = world.roll_out_candidate().await;
    saboteur.await.unwrap();

    let candidate = report.candidate.clone();
    let (s, c) = (world.stable.as_str(), candidate.as_str());
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(
        world.splits(),
        vec![
            split(&[(s, 100)]),
            split(&[(s, 90), (c, 10)]),
            split(&[(s, 75), (c, 25)]),
            split(&[(s, 100)]),
        ]
    );
    let failed = report.steps.last().unwrap();
    assert_eq!(
        (failed.step, failed.percent, failed.verdict),
        (2, 25, "fail")
    );
    assert!(
        report.reason.as_deref().unwrap().contains("candidate 5xx"),
        "{:?}",
        report.reason
    );
    assert_eq!(world.current(), split(&[(s, 100)]));
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_candidate_never_gets_traffic() {
    let world = World::under_load();
    world.candidate_behaves(Behavior::unhealthy("1.4.0"));

    let report = world.roll_out_candidate().await;

    world.expect_rolled_back_before_any_traffic(&report);
    assert!(
        !report.service_problem,
        "stable is healthy: the candidate is to blame"
    );
    assert!(
        report
            .reason
            .unwrap()
            .contains("unhealthy before any traffic")
    );
}

#[tokio::test(start_paused = true)]
async fn health_failing_on_stable_too_is_reported_as_a_service_problem_not_the_candidates() {
    let world = World::under_load();
    // The database is down: every revision's /health fails, whichever image it runs.
    world.candidate_behaves(Behavior::unhealthy("1.4.0"));
    world
        .model
        .register_image(STABLE_IMAGE, Behavior::unhealthy("1.3.0"));

    let report = world.roll_out_candidate().await;

    world.expect_rolled_back_before_any_traffic(&report);
    assert!(report.service_problem);
    assert!(matches!(
        report.stable_health,
        Some(shiftgate::Verdict::Fail(_))
    ));
    let reason = report.reason.unwrap();
    assert!(
        reason.contains("stable fails its health check too")
            && reason.contains("not of the candidate"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_candidate_that_turns_unhealthy_in_the_first_step_never_exceeds_it() {
    let world = World::under_load();
    let saboteur = {
        let model = world.model.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(120)).await;
            model.register_image(CANDIDATE_IMAGE, Behavior::unhealthy("1.4.0"));
        })
    };

    let report = world.roll_out_candidate().await;
    saboteur.await.unwrap();

    let most = world
        .splits()
        .iter()
        .flat_map(|s| {
            s.iter()
                .filter(|(r, _)| *r == report.candidate)
                .map(|(_, p)| *p)
        })
        .max()
        .unwrap_or(0);
    assert_eq!(most, 10);
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert!(report.reason.unwrap().contains("health check failed"));
    assert_eq!(world.current(), world.stable_only());
}

#[tokio::test(start_paused = true)]
async fn zero_traffic_is_never_promoted() {
    let world = World::new();
    // No load at all: nothing shows the candidate worse, so the steps pass at their bakes, but the
    // whole rollout never reaches --min-requests: the last step waits one more bake, then fails.

    let report = world.roll_out_candidate().await;

    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(report.exit_code(), 1);
    let candidate = report.candidate.clone();
    let (s, c) = (world.stable.as_str(), candidate.as_str());
    assert_eq!(
        world.splits(),
        vec![
            split(&[(s, 100)]),
            split(&[(s, 90), (c, 10)]),
            split(&[(s, 75), (c, 25)]),
            split(&[(s, 50), (c, 50)]),
            split(&[(c, 100)]),
            split(&[(s, 100)]),
        ]
    );
    assert!(
        report.timeline.iter().any(|event| matches!(
            &event.kind,
            shiftgate::EventKind::TrafficForecast { advice: Some(advice), .. } if advice.contains("no bake")
        )),
        "said up front that the floor cannot be reached"
    );
    let last = report.steps.last().unwrap();
    assert_eq!((last.percent, last.verdict), (100, "fail"));
    assert!(
        last.reason
            .as_deref()
            .unwrap()
            .contains("not enough traffic to judge"),
        "{last:?}"
    );
    assert!(
        last.duration_s >= 600.0,
        "the last step waited one more bake for traffic before failing: {last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_traffic_under_the_threshold_rule_fails_the_first_step() {
    let world = World::new();
    let mut request = image_request(CANDIDATE_IMAGE);
    request.policy.judge = JudgeKind::Threshold;

    let report = world.roll_out(request).await.unwrap();

    assert_eq!(report.outcome, Outcome::RolledBack);
    let candidate = report.candidate.clone();
    assert_eq!(
        world.splits(),
        vec![
            world.stable_only(),
            split(&[(&world.stable, 90), (&candidate, 10)]),
            world.stable_only(),
        ]
    );
    let step = &report.steps[0];
    assert_eq!(step.verdict, "fail");
    assert!(
        step.reason.as_deref().unwrap().contains("inconclusive"),
        "{step:?}"
    );
    assert!(
        step.duration_s >= 600.0,
        "the step was extended to its deadline (2 × bake) before failing: {step:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_split_between_revisions_is_refused_without_a_write() {
    let world = World::under_load();
    // A first rollout is interrupted in its first step and restores stable…
    let (trigger, interrupt) = Interrupt::channel();
    let half = tokio::spawn(world.when_traffic_is_split());
    let mut request = image_request(CANDIDATE_IMAGE);
    request.policy.steps = "50,100".parse().unwrap();
    let run = world.roll_out_with(request, interrupt);
    let (report, _) = tokio::join!(run, async {
        half.await.unwrap();
        trigger.trigger();
    });
    assert_eq!(report.unwrap().outcome, Outcome::Interrupted);
    assert_eq!(world.current(), world.stable_only());

    // …then a person splits traffic by hand, and a rollout of a split service is refused.
    let writes = world.model.write_count();
    let (platform, _, _) = world.ports();
    use shiftgate::ports::{Platform, TrafficChange, TrafficTarget};
    let service = platform.read_service().await.unwrap();
    let candidate = service.latest_created_revision.clone().unwrap();
    platform
        .set_traffic(
            &TrafficChange {
                traffic: vec![
                    TrafficTarget::new(&world.stable, 60),
                    TrafficTarget::new(&candidate, 40),
                ],
                rollout: None,
                history: None,
            },
            &service.etag,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let writes = writes + 1;
    let refused = world
        .roll_out_refused(image_request("registry/loopcloser-app:v1.5.0"))
        .await;
    assert_eq!(refused.exit_code(), 2);
    assert!(refused.to_string().contains("rollback --to"), "{refused}");
    assert_eq!(world.model.write_count(), writes, "nothing was written");
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_mid_step_restores_stable_at_once() {
    let world = World::under_load();
    let (trigger, interrupt) = Interrupt::channel();
    let signaller = {
        let at_25 = world.when_a_revision_has(25);
        tokio::spawn(async move {
            at_25.await;
            tokio::time::sleep(Duration::from_secs(90)).await;
            trigger.trigger();
            tokio::time::Instant::now()
        })
    };

    let report = world.roll_out_candidate_with(interrupt).await;
    let signalled_at = signaller.await.unwrap();

    assert_eq!(report.outcome, Outcome::Interrupted);
    assert_eq!(report.exit_code(), 130);
    assert_eq!(world.current(), world.stable_only());
    assert!(
        signalled_at.elapsed() < Duration::from_secs(6),
        "stable was restored within the interrupt budget, took {:?}",
        signalled_at.elapsed()
    );
    assert_eq!(
        report.final_traffic,
        vec![shiftgate::ports::TrafficTarget::new(&world.stable, 100)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_existing_revision_can_be_the_candidate_and_a_dry_run_changes_nothing() {
    let world = World::new();
    let (platform, _, _) = world.ports();
    use shiftgate::ports::Platform;
    let before = platform.read_service().await.unwrap();
    let writes = world.model.write_count();

    let dry = world
        .roll_out(RolloutRequest {
            dry_run: true,
            ..image_request(CANDIDATE_IMAGE)
        })
        .await
        .unwrap();

    assert_eq!(dry.outcome, Outcome::DryRun);
    assert_eq!(dry.exit_code(), 0);
    assert_eq!(world.model.write_count(), writes);
    assert_eq!(platform.read_service().await.unwrap().etag, before.etag);

    let refused = world
        .roll_out_refused(request_for(CandidateSource::Revision(world.stable.clone())))
        .await;
    assert_eq!(refused.exit_code(), 2);
    let missing = world
        .roll_out_refused(request_for(CandidateSource::Revision(
            "loopcloser-prod-nope".into(),
        )))
        .await;
    assert!(missing.to_string().contains("does not exist"), "{missing}");
    let nothing_new = world
        .roll_out_refused(request_for(CandidateSource::LatestCreated))
        .await;
    assert!(
        nothing_new.to_string().contains("nothing to roll out"),
        "{nothing_new}"
    );
    assert_eq!(world.model.write_count(), writes);
}

#[tokio::test(start_paused = true)]
async fn a_candidate_that_fails_to_start_leaves_stable_serving() {
    let world = World::under_load();
    world.candidate_behaves(Behavior::failing_to_start("1.4.0"));

    let report = world.roll_out_candidate().await;

    world.expect_rolled_back_before_any_traffic(&report);
    assert!(report.reason.unwrap().contains("did not become ready"));
}

#[tokio::test(start_paused = true)]
async fn metrics_arriving_late_are_waited_for_not_judged_early() {
    let world = World::under_load();
    world.model.set_ingestion_lag(Duration::from_secs(120));
    let mut request = image_request(CANDIDATE_IMAGE);
    request.policy.metrics_delay = Duration::from_secs(180);
    request.policy.steps = "50,100".parse().unwrap();

    let report = world.roll_out(request).await.unwrap();

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    let (last, earlier) = report.steps.split_last().unwrap();
    for step in earlier {
        // The sequential test judges a step's late requests with the next step.
        assert!(step.duration_s >= 300.0, "a step bakes fully: {step:?}");
    }
    assert!(
        last.duration_s >= 480.0,
        "the last step waits bake + metrics delay for its own requests: {last:?}"
    );
    assert!(last.candidate_requests >= 100);
}

#[tokio::test(start_paused = true)]
async fn an_existing_revision_with_no_traffic_is_rolled_out_by_name_or_as_the_latest() {
    let world = World::under_load();
    let (platform, _, _) = world.ports();
    use shiftgate::ports::{NewRevision, Platform, TrafficTarget};
    // Deployed with --no-traffic, as the runbook's blue-green step does.
    let service = platform.read_service().await.unwrap();
    platform
        .create_revision(
            &NewRevision {
                revision: format!("{SERVICE}-00002-blu"),
                image: CANDIDATE_IMAGE.into(),
                traffic: vec![TrafficTarget::new(&world.stable, 100)],
                rollout: None,
            },
            &service.etag,
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    let mut request = image_request(CANDIDATE_IMAGE);
    request.candidate = CandidateSource::LatestCreated;
    request.policy.steps = "50,100".parse().unwrap();
    let report = world.roll_out(request).await.unwrap();

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_eq!(report.candidate, format!("{SERVICE}-00002-blu"));
    assert_eq!(
        world.splits(),
        vec![
            world.stable_only(),
            split(&[(&world.stable, 50), (&report.candidate, 50)]),
            split(&[(&report.candidate, 100)]),
        ]
    );
    assert_eq!(
        world.model.revisions(PROJECT, REGION, SERVICE).len(),
        2,
        "no revision was made"
    );
}

#[tokio::test(start_paused = true)]
async fn when_the_rollback_itself_cannot_complete_the_rollout_says_a_person_is_needed() {
    let world = World::under_load();
    world.candidate_behaves(Behavior::erroring("1.4.0", 0.5));
    // Once the first step is live, the platform stops finishing operations.
    let freezer = {
        let model = world.model.clone();
        let first_step = world.when_traffic_is_split();
        tokio::spawn(async move {
            first_step.await;
            model.hold_operations(true);
        })
    };
    let mut request = image_request(CANDIDATE_IMAGE);
    request.policy.traffic_deadline = Duration::from_secs(60);

    let report = world.roll_out(request).await.unwrap();
    freezer.await.unwrap();

    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.rollback_failed);
    assert_eq!(report.exit_code(), 4);
    assert!(report.reason.unwrap().contains("restoring stable traffic"));
    assert!(
        report
            .final_traffic
            .iter()
            .any(|t| t.revision == report.candidate && t.percent == 10),
        "the final split is read back, not assumed: {:?}",
        report.final_traffic
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_rollback_the_stable_revision_is_health_checked() {
    let world = World::under_load();
    world.candidate_behaves(Behavior::erroring("1.4.0", 0.5));

    let report = world.roll_out_candidate().await;

    assert_eq!(report.outcome, Outcome::RolledBack);
    assert_eq!(report.stable_health, Some(shiftgate::Verdict::Pass));
}

// ---- Trust under real conditions: the people and processes around a rollout ----

#[tokio::test(start_paused = true)]
async fn a_person_rolling_back_during_a_bake_stops_the_rollout_without_another_write() {
    let world = World::under_load();
    let person = {
        let platform = world.ports().0;
        let at_10 = world.when_a_revision_has(10);
        let model = world.model.clone();
        async move {
            at_10.await;
            tokio::time::sleep(Duration::from_secs(100)).await;
            let finished = shiftgate::roll_back(&platform, None, Duration::from_secs(120))
                .await
                .expect("the person's rollback runs");
            assert_eq!(finished.exit_code, 0, "{finished:?}");
            model.write_count()
        }
    };

    let (report, writes_after_person) = world.roll_out_candidate_alongside(person).await;

    assert_eq!(report.outcome, Outcome::Aborted, "{:?}", report.reason);
    assert_eq!(report.exit_code(), 1);
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("record was removed"),
        "{:?}",
        report.reason
    );
    assert_eq!(
        world.model.write_count(),
        writes_after_person,
        "the rollout wrote nothing after the person's rollback"
    );
    assert_eq!(world.current(), world.stable_only());
    let c = report.candidate.as_str();
    assert!(
        world
            .splits()
            .iter()
            .all(|s| s.iter().all(|(r, p)| r != c || *p <= 10)),
        "the rollout never went past the step the person stopped: {:?}",
        world.splits()
    );
    assert!(report.final_traffic_confirmed);
}

#[tokio::test(start_paused = true)]
async fn two_rollouts_started_together_one_owns_the_service_and_the_other_changes_nothing() {
    let world = World::under_load();
    let other_image = "registry/loopcloser-app:v1.5.0";
    world
        .model
        .register_image(other_image, Behavior::healthy("1.5.0"));

    // Both read the service before either writes (each first write waits a moment), as two
    // jobs started in the same second do.
    let (platform, metrics, health) = world.ports();
    let slow = SlowFirstWrite(platform.clone());
    let ports = Ports {
        platform: &slow,
        metrics: &metrics,
        health: &health,
    };
    let (request_a, request_b) = (image_request(CANDIDATE_IMAGE), image_request(other_image));
    let mut engine_a = Engine::new(ports, world.clock, Interrupt::never());
    let mut engine_b = Engine::new(ports, world.clock, Interrupt::never());
    let (first, second) = tokio::join!(engine_a.run(&request_a), engine_b.run(&request_b));

    let (winner, loser) = match (first, second) {
        (Ok(report), Err(error)) | (Err(error), Ok(report)) => (report, error),
        other => panic!("exactly one rollout must own the service: {other:?}"),
    };
    assert_eq!(winner.outcome, Outcome::Promoted, "{:?}", winner.reason);
    assert_eq!(loser.exit_code(), 2);
    let message = loser.to_string();
    assert!(message.contains("another rollout took"), "{message}");
    assert!(
        message.contains(&winner.rollout_id),
        "names the owner: {message}"
    );
    assert!(
        message.contains("pid"),
        "names the owner's process: {message}"
    );
    for split in world.splits() {
        assert!(
            split
                .iter()
                .all(|(revision, _)| revision == &world.stable || revision == &winner.candidate),
            "only the winner's candidate ever got traffic: {split:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_rollout_whose_process_died_is_resumed_from_its_recorded_step() {
    let world = World::under_load();
    // The runner is lost during the second step's bake: no restore runs, the record stays.
    let killed = tokio::time::timeout(
        Duration::from_secs(7 * 60),
        world.roll_out(image_request(CANDIDATE_IMAGE)),
    )
    .await;
    assert!(killed.is_err(), "the first run was cut off mid-rollout");
    let (platform, _, _) = world.ports();
    let dead = platform.read_service().await.unwrap().rollout.unwrap();
    assert_eq!(dead.percent, 25);
    let another = world
        .roll_out_refused(image_request("registry/loopcloser-app:v9.9.9"))
        .await;
    assert_eq!(another.exit_code(), 2);
    assert!(another.to_string().contains("--resume"), "{another}");

    let resumed = world
        .roll_out(request_for(CandidateSource::Resume))
        .await
        .unwrap();

    assert_eq!(resumed.outcome, Outcome::Promoted, "{:?}", resumed.reason);
    assert_ne!(
        resumed.rollout_id, dead.id,
        "the resumed run owns a new record"
    );
    assert_eq!(resumed.candidate, dead.candidate);
    let c = dead.candidate.as_str();
    let s = world.stable.as_str();
    assert_eq!(
        world.splits(),
        every_default_step(s, c),
        "the resumed run went on from 25%, never back"
    );
    assert_eq!(resumed.steps.first().map(|s| s.percent), Some(25));
    assert!(platform.read_service().await.unwrap().rollout.is_none());
}

#[tokio::test(start_paused = true)]
async fn resume_without_a_recorded_rollout_is_refused_and_changes_nothing() {
    let world = World::new();
    let writes = world.model.write_count();

    let refused = world
        .roll_out_refused(request_for(CandidateSource::Resume))
        .await;

    assert_eq!(refused.exit_code(), 2);
    assert!(
        refused.to_string().contains("nothing to resume"),
        "{refused}"
    );
    assert_eq!(world.model.write_count(), writes);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_while_the_platform_hangs_ends_in_time_with_the_last_split_read() {
    let world = World::under_load();
    let (trigger, interrupt) = Interrupt::channel();
    // Once the first step is live the platform stops finishing operations; then SIGINT arrives
    // while the next write hangs.
    let signaller = {
        let model = world.model.clone();
        let first_step = world.when_traffic_is_split();
        tokio::spawn(async move {
            first_step.await;
            model.hold_operations(true);
            tokio::time::sleep(Duration::from_secs(320)).await;
            trigger.trigger();
            tokio::time::Instant::now()
        })
    };

    let report = world.roll_out_candidate_with(interrupt).await;
    let signalled_at = signaller.await.unwrap();

    let took = signalled_at.elapsed();
    assert!(
        took <= Duration::from_millis(7500),
        "the restore, reading back included, fits the runner's 7.5 s: took {took:?}"
    );
    assert!(report.rollback_failed, "{:?}", report.reason);
    assert_eq!(report.exit_code(), 4);
    assert!(!report.final_traffic_confirmed);
    assert!(
        report
            .final_traffic
            .iter()
            .any(|t| t.revision == report.candidate && t.percent > 0),
        "the result gives the last split read, not an assumed 100% stable: {:?}",
        report.final_traffic
    );
}

#[tokio::test(start_paused = true)]
async fn stable_is_judged_on_the_basic_health_rule_after_a_rollback() {
    let world = World::under_load();
    world.candidate_behaves(Behavior::erroring("1.4.0", 0.5));
    let mut request = image_request(CANDIDATE_IMAGE);
    request.policy.health.version = Some(">=1.4.0".parse().unwrap());

    let report = world.roll_out(request).await.unwrap();

    assert_eq!(report.outcome, Outcome::RolledBack, "{:?}", report.reason);
    assert_eq!(
        report.stable_health,
        Some(shiftgate::Verdict::Pass),
        "stable (1.3.0) is not held to the candidate's version requirement"
    );
}

/// A platform whose revision creations start two seconds late, so that two rollouts both read the
/// service before either writes.
struct SlowFirstWrite(SimPlatform);

#[async_trait::async_trait]
impl shiftgate::ports::Platform for SlowFirstWrite {
    async fn read_service(&self) -> shiftgate::ports::PortResult<ServiceState> {
        self.0.read_service().await
    }
    async fn read_revision(&self, revision: &str) -> shiftgate::ports::PortResult<RevisionInfo> {
        self.0.read_revision(revision).await
    }
    async fn list_revisions(&self) -> shiftgate::ports::PortResult<Vec<RevisionInfo>> {
        self.0.list_revisions().await
    }
    async fn create_revision(
        &self,
        spec: &shiftgate::ports::NewRevision,
        etag: &str,
        deadline: Duration,
    ) -> shiftgate::ports::PortResult<ServiceState> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.0.create_revision(spec, etag, deadline).await
    }
    async fn set_traffic(
        &self,
        change: &shiftgate::ports::TrafficChange,
        etag: &str,
        deadline: Duration,
    ) -> shiftgate::ports::PortResult<ServiceState> {
        self.0.set_traffic(change, etag, deadline).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_traffic_change_made_with_gcloud_during_a_bake_aborts_the_rollout() {
    let world = World::under_load();
    // `gcloud run services update-traffic` keeps the annotations: the record stays, the split moves.
    let person = {
        let platform = world.ports().0;
        let at_10 = world.when_a_revision_has(10);
        let model = world.model.clone();
        async move {
            at_10.await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            let service = platform.read_service().await.unwrap();
            let mut traffic: Vec<_> = service.traffic.clone();
            for target in &mut traffic {
                target.percent = 50;
            }
            let change = shiftgate::ports::TrafficChange {
                traffic,
                rollout: service.rollout.clone(),
                history: None,
            };
            platform
                .set_traffic(&change, &service.etag, Duration::from_secs(60))
                .await
                .unwrap();
            model.write_count()
        }
    };

    let (report, writes_after_person) = world.roll_out_candidate_alongside(person).await;

    assert_eq!(report.outcome, Outcome::Aborted, "{:?}", report.reason);
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("changed outside this rollout"),
        "{:?}",
        report.reason
    );
    assert_eq!(
        world.model.write_count(),
        writes_after_person,
        "no write after theirs"
    );
    let c = report.candidate.as_str();
    assert_eq!(
        world.current(),
        split(&[(&world.stable, 50), (c, 50)]),
        "the person's split is left as they made it"
    );
}

// ---- The latency gate ----

/// The 30-minute policy with `--max-latency p95=LIMIT`.
fn latency_request(limit: Duration) -> RolloutRequest {
    let mut request = image_request(CANDIDATE_IMAGE);
    request.policy.latency = vec![LatencyLimit {
        quantile: Quantile::P95,
        limit,
    }];
    request
}

#[tokio::test(start_paused = true)]
async fn a_candidate_whose_p95_is_far_above_the_limit_is_rolled_back_at_the_first_step() {
    let world = World::under_load();
    world.candidate_behaves(
        Behavior::healthy("1.4.0")
            .with_latency(Duration::from_millis(1500), Duration::from_millis(3000)),
    );

    let report = world
        .roll_out(latency_request(Duration::from_millis(800)))
        .await
        .unwrap();

    let (s, c) = (world.stable.as_str(), report.candidate.as_str());
    assert_eq!(report.outcome, Outcome::RolledBack, "{:?}", report.reason);
    assert_eq!(
        world.splits(),
        vec![
            split(&[(s, 100)]),
            split(&[(s, 90), (c, 10)]),
            split(&[(s, 100)])
        ]
    );
    let reason = report.reason.as_deref().unwrap();
    assert!(
        reason.contains("candidate p95") && reason.contains("above the limit"),
        "{reason}"
    );
    let failed = &report.steps[0];
    assert_eq!((failed.step, failed.verdict), (1, "fail"));
    assert!(
        failed.duration_s <= 300.0,
        "decided inside one bake: {failed:?}"
    );
    assert!(failed.latency[0].failed());
}

#[tokio::test(start_paused = true)]
async fn a_candidate_slower_than_stable_beyond_the_margin_is_rolled_back_within_the_limit() {
    let world = World::under_load();
    // Stable answers in ~30ms (p95 90ms); the candidate takes ~300ms, far inside 2s.
    world.candidate_behaves(
        Behavior::healthy("1.4.0")
            .with_latency(Duration::from_millis(300), Duration::from_millis(450)),
    );

    let report = world
        .roll_out(latency_request(Duration::from_secs(2)))
        .await
        .unwrap();

    assert_eq!(report.outcome, Outcome::RolledBack, "{:?}", report.reason);
    let reason = report.reason.as_deref().unwrap();
    assert!(
        reason.contains("slower than stable beyond the margin"),
        "{reason}"
    );
    let check = &report.steps[0].latency[0];
    assert!(
        check.threshold_ms < 2000.0 && check.stable_ms.is_some(),
        "{check:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_candidate_as_fast_as_stable_passes_the_latency_gate_at_every_step() {
    let world = World::under_load();

    let report = world
        .roll_out(latency_request(Duration::from_millis(800)))
        .await
        .unwrap();

    let (s, c) = (world.stable.as_str(), report.candidate.as_str());
    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_eq!(world.splits(), every_default_step(s, c));
    for step in &report.steps {
        assert_eq!(step.latency.len(), 1, "{step:?}");
        assert!(!step.latency[0].failed(), "{step:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_latency_limit_no_latencies_are_read() {
    let world = World::under_load();
    world.candidate_behaves(
        Behavior::healthy("1.4.0")
            .with_latency(Duration::from_millis(1500), Duration::from_millis(3000)),
    );

    let report = world.roll_out_candidate().await;

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert!(report.steps.iter().all(|step| step.latency.is_empty()));
}

// ---- Session affinity ----

#[tokio::test(start_paused = true)]
async fn a_service_with_session_affinity_is_warned_about_before_any_traffic_moves() {
    let world = World::under_load();
    world
        .model
        .set_session_affinity(&ServiceKey::new(PROJECT, REGION, SERVICE), true);

    let report = world.roll_out_candidate().await;

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    let warned = report.timeline.iter().position(|event| {
        matches!(&event.kind, shiftgate::EventKind::Warned { warning } if warning.contains("session affinity"))
    });
    let first_traffic = report
        .timeline
        .iter()
        .position(|event| matches!(event.kind, shiftgate::EventKind::TrafficSet { .. }));
    assert!(
        warned.is_some() && warned < first_traffic,
        "warned before any traffic moved"
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_without_session_affinity_gets_no_warning() {
    let world = World::under_load();

    let report = world.roll_out_candidate().await;

    assert!(
        !report
            .timeline
            .iter()
            .any(|event| matches!(event.kind, shiftgate::EventKind::Warned { .. }))
    );
}
