//! The rollout state machine: prepare (stable, candidate, plan), shift traffic step by step, judge
//! every step, and restore stable traffic on any failure, error or interruption.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::health::{Expectations, Verdict};
use crate::rollout::judge::{StepPhase, judge_errors};
use crate::rollout::plan::Policy;
use crate::rollout::ports::{
    HealthEndpoint, Metrics, NewRevision, Platform, PortError, RequestCounts, RolloutRecord,
    ServiceState, TrafficChange, TrafficTarget, Window,
};
use crate::rollout::timeline::{Event, EventKind, Outcome, Report, StepReport, seconds};

/// The tag that gives the candidate its own URL for health checks.
pub const CANDIDATE_TAG: &str = "candidate";
/// A restore after SIGINT must finish well inside the 7.5 s a cancelled Actions job gets.
pub const INTERRUPTED_RESTORE_DEADLINE: Duration = Duration::from_secs(6);
/// How many times a write is re-based on a fresh read after an etag conflict.
const CONFLICT_RETRIES: u32 = 5;

/// Where the candidate revision comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateSource {
    /// Make a new revision from the current template with this image.
    Image(String),
    /// An existing revision.
    Revision(String),
    /// The latest created revision, when it serves no traffic.
    LatestCreated,
}

#[derive(Debug, Clone)]
pub struct RolloutRequest {
    pub policy: Policy,
    pub candidate: CandidateSource,
    pub dry_run: bool,
}

/// Why a rollout did not start. Nothing was changed on the service in either case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// Bad input or a service state that needs a person first (exit 2).
    #[error("{0}")]
    Refused(String),
    /// The platform could not be read (exit 3).
    #[error("{0}")]
    Api(String),
}

impl RolloutError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RolloutError::Refused(_) => 2,
            RolloutError::Api(_) => 3,
        }
    }
}

/// Tells the engine that SIGINT/SIGTERM arrived. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Interrupt(watch::Receiver<bool>);

/// Raises the interrupt.
#[derive(Debug)]
pub struct InterruptTrigger(watch::Sender<bool>);

impl InterruptTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Interrupt {
    pub fn channel() -> (InterruptTrigger, Interrupt) {
        let (sender, receiver) = watch::channel(false);
        (InterruptTrigger(sender), Interrupt(receiver))
    }

    /// An interrupt that never fires: its trigger is gone, and `fired` pends on a closed channel.
    pub fn never() -> Interrupt {
        Interrupt::channel().1
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the interrupt has been raised.
    pub async fn fired(&self) {
        let mut receiver = self.0.clone();
        if receiver.wait_for(|raised| *raised).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The adapters a rollout runs against.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub platform: &'a dyn Platform,
    pub metrics: &'a dyn Metrics,
    pub health: &'a dyn HealthEndpoint,
}

/// Receives every timeline event as it happens (the progress log).
pub type ProgressSink<'a> = &'a (dyn Fn(&Event) + Send + Sync);

/// What `prepare` decided, before anything is changed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub service: ServiceState,
    pub stable: String,
    pub candidate: String,
    /// Set when the candidate is to be created from this image.
    pub image: Option<String>,
    /// Tagged zero-percent targets of other revisions, kept through every change.
    pub preserved: Vec<TrafficTarget>,
}

impl Plan {
    /// The traffic for one point of the rollout: `candidate_percent` to the candidate (tagged
    /// while the rollout runs), the rest to stable, and the preserved tags.
    pub fn traffic(&self, candidate_percent: u8, tag_candidate: bool) -> Vec<TrafficTarget> {
        let mut traffic = self.preserved.clone();
        if candidate_percent < 100 {
            traffic.push(TrafficTarget::new(&self.stable, 100 - candidate_percent));
        }
        if candidate_percent > 0 || tag_candidate {
            traffic.push(TrafficTarget {
                revision: self.candidate.clone(),
                percent: candidate_percent,
                tag: tag_candidate.then(|| CANDIDATE_TAG.to_string()),
            });
        }
        traffic
    }

    /// Stable at 100%, the candidate's tag removed, other tags kept.
    pub fn stable_traffic(&self) -> Vec<TrafficTarget> {
        self.traffic(0, false)
    }
}

/// Traffic that sends everything to `revision`, keeping the other tagged targets of `service`
/// except the candidate tag (used by `rollback`).
pub fn restore_traffic(service: &ServiceState, revision: &str) -> Vec<TrafficTarget> {
    let mut traffic = preserved_tags(service);
    traffic.push(TrafficTarget::new(revision, 100));
    traffic
}

fn preserved_tags(service: &ServiceState) -> Vec<TrafficTarget> {
    service
        .traffic
        .iter()
        .filter_map(|target| match &target.tag {
            Some(tag) if tag != CANDIDATE_TAG => {
                Some(TrafficTarget::tagged(&target.revision, 0, tag))
            }
            _ => None,
        })
        .collect()
}

/// True when the service's traffic is `wanted`, ignoring order and zero-percent untagged entries.
pub fn traffic_matches(service: &ServiceState, wanted: &[TrafficTarget]) -> bool {
    fn normalized(traffic: &[TrafficTarget]) -> Vec<(String, u8, Option<String>)> {
        let mut entries: Vec<_> = traffic
            .iter()
            .filter(|t| t.percent > 0 || t.tag.is_some())
            .map(|t| (t.revision.clone(), t.percent, t.tag.clone()))
            .collect();
        entries.sort();
        entries
    }
    normalized(&service.traffic) == normalized(wanted)
}

enum StepEnd {
    Passed,
    Failed { reason: String, api: bool },
    Interrupted,
}

/// Runs one rollout. Create one per rollout.
pub struct Engine<'a> {
    ports: Ports<'a>,
    clock: Clock,
    interrupt: Interrupt,
    progress: Option<ProgressSink<'a>>,
    started: Instant,
    timeline: Vec<Event>,
    /// The service as last read or written, so writes use the freshest etag without a read.
    last_seen: Option<ServiceState>,
}

impl<'a> Engine<'a> {
    pub fn new(ports: Ports<'a>, clock: Clock, interrupt: Interrupt) -> Self {
        Self {
            ports,
            clock,
            interrupt,
            progress: None,
            started: Instant::now(),
            timeline: Vec::new(),
            last_seen: None,
        }
    }

    pub fn with_progress(mut self, progress: ProgressSink<'a>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Prepares and, unless it is a dry run, executes the rollout.
    pub async fn run(&mut self, request: &RolloutRequest) -> Result<Report, RolloutError> {
        request.policy.validate().map_err(RolloutError::Refused)?;
        let plan = self.prepare(&request.candidate).await?;
        if request.dry_run {
            return Ok(self.dry_run_report(&plan, &request.policy));
        }
        Ok(self.execute(&plan, &request.policy).await)
    }

    /// Reads the service and decides stable and candidate; changes nothing.
    pub async fn prepare(&mut self, source: &CandidateSource) -> Result<Plan, RolloutError> {
        let service = self
            .ports
            .platform
            .read_service()
            .await
            .map_err(|error| match error {
                PortError::NotFound(what) => RolloutError::Refused(format!(
                    "the service was not found ({what}); check --project, --region and --service"
                )),
                other => RolloutError::Api(format!("could not read the service: {other}")),
            })?;
        if let Some(record) = &service.rollout {
            return Err(RolloutError::Refused(format!(
                "a rollout is already in progress on {} (stable {}, candidate {} at {}%, started {}); \
                 finish it with `shiftgate rollback` before starting another",
                service.name, record.stable, record.candidate, record.percent, record.started_at
            )));
        }
        let serving = service.serving();
        let stable = match serving.as_slice() {
            [(revision, 100)] => revision.clone(),
            [] => {
                return Err(RolloutError::Refused(format!(
                    "{} serves no traffic, so there is no stable revision to fall back to",
                    service.name
                )));
            }
            split => {
                let shares: Vec<String> = split.iter().map(|(r, p)| format!("{r} {p}%")).collect();
                return Err(RolloutError::Refused(format!(
                    "traffic on {} is split ({}); put it on one revision first with \
                     `shiftgate rollback --to REVISION`",
                    service.name,
                    shares.join(", ")
                )));
            }
        };
        let service_short = short_name(&service.name).to_string();
        let (candidate, image) = match source {
            CandidateSource::Image(image) => {
                if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                    return Err(RolloutError::Refused(format!(
                        "--image {image:?} is not an image reference (expected REGISTRY/NAME:TAG)"
                    )));
                }
                (
                    new_revision_name(&service_short, self.clock.now()),
                    Some(image.clone()),
                )
            }
            CandidateSource::Revision(revision) => {
                let revision = short_name(revision).to_string();
                self.check_existing_candidate(&revision, &stable).await?;
                (revision, None)
            }
            CandidateSource::LatestCreated => {
                let latest = service.latest_created_revision.clone().ok_or_else(|| {
                    RolloutError::Refused(
                        "the service has no revision to roll out; give --image or --revision"
                            .to_string(),
                    )
                })?;
                if latest == stable || service.percent_of(&latest) > 0 {
                    return Err(RolloutError::Refused(format!(
                        "nothing to roll out: the latest revision {latest} already serves traffic; \
                         give --image IMAGE or --revision NAME"
                    )));
                }
                self.check_existing_candidate(&latest, &stable).await?;
                (latest, None)
            }
        };
        let plan = Plan {
            preserved: preserved_tags(&service),
            stable,
            candidate,
            image,
            service,
        };
        self.last_seen = Some(plan.service.clone());
        Ok(plan)
    }

    async fn check_existing_candidate(
        &self,
        revision: &str,
        stable: &str,
    ) -> Result<(), RolloutError> {
        if revision == stable {
            return Err(RolloutError::Refused(format!(
                "--revision {revision} is the stable revision already serving 100% of traffic"
            )));
        }
        let info =
            self.ports
                .platform
                .read_revision(revision)
                .await
                .map_err(|error| match error {
                    PortError::NotFound(_) => {
                        RolloutError::Refused(format!("--revision {revision} does not exist"))
                    }
                    other => {
                        RolloutError::Api(format!("could not read revision {revision}: {other}"))
                    }
                })?;
        if !info.ready {
            return Err(RolloutError::Refused(format!(
                "revision {revision} is not ready{}",
                info.reason
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_default()
            )));
        }
        Ok(())
    }

    fn dry_run_report(&mut self, plan: &Plan, policy: &Policy) -> Report {
        self.emit(EventKind::Planned {
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            steps: policy.steps.percents().to_vec(),
            creates_revision: plan.image.is_some(),
        });
        let mut report = self.report(plan, policy, Outcome::DryRun, Vec::new());
        report.final_traffic = plan.service.traffic.clone();
        report.reason = Some(format!(
            "dry run: would move {} from {} to {} in steps {} (bake {} each, at least {} to promote); nothing was changed",
            short_name(&plan.service.name),
            plan.stable,
            plan.candidate,
            policy.steps,
            humantime::format_duration(policy.bake),
            humantime::format_duration(policy.time_to_promote()),
        ));
        report
    }

    /// Runs the plan to promotion, or restores stable traffic and says why.
    pub async fn execute(&mut self, plan: &Plan, policy: &Policy) -> Report {
        self.emit(EventKind::Planned {
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            steps: policy.steps.percents().to_vec(),
            creates_revision: plan.image.is_some(),
        });
        let record = RolloutRecord {
            id: format!(
                "{}@{}",
                plan.candidate,
                humantime::format_rfc3339_seconds(self.clock.now())
            ),
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            percent: 0,
            started_at: humantime::format_rfc3339_seconds(self.clock.now()).to_string(),
        };
        let mut steps: Vec<StepReport> = Vec::new();

        // Phase 1: the candidate exists, is tagged, and has no traffic.
        if let Err(end) = self.stage_candidate(plan, policy, &record).await {
            return self.finish_after_failure(plan, policy, steps, end).await;
        }
        let candidate_url = match self.candidate_url() {
            Ok(url) => url,
            Err(reason) => {
                let end = StepEnd::Failed { reason, api: true };
                return self.finish_after_failure(plan, policy, steps, end).await;
            }
        };
        let preflight = self.preflight_health(&candidate_url, &policy.health).await;
        match preflight {
            Some(Verdict::Fail(reason)) => {
                let end = StepEnd::Failed {
                    reason: format!("candidate is unhealthy before any traffic: {reason}"),
                    api: false,
                };
                return self.finish_after_failure(plan, policy, steps, end).await;
            }
            None => {
                return self
                    .finish_after_failure(plan, policy, steps, StepEnd::Interrupted)
                    .await;
            }
            Some(_) => {}
        }

        // Phase 2: the steps.
        for (index, &percent) in policy.steps.percents().iter().enumerate() {
            let step = index + 1;
            let step_record = RolloutRecord {
                percent,
                ..record.clone()
            };
            let traffic = plan.traffic(percent, true);
            if let Err(end) = self
                .apply(
                    Some(step),
                    traffic,
                    Some(step_record),
                    policy.traffic_deadline,
                )
                .await
            {
                return self.finish_after_failure(plan, policy, steps, end).await;
            }
            let (end, step_report) = self
                .bake_step(step, percent, plan, policy, &candidate_url)
                .await;
            steps.push(step_report);
            match end {
                StepEnd::Passed => self.emit(EventKind::StepPassed { step, percent }),
                failed @ StepEnd::Failed { .. } => {
                    if let StepEnd::Failed { reason, .. } = &failed {
                        self.emit(EventKind::StepFailed {
                            step,
                            percent,
                            reason: reason.clone(),
                        });
                    }
                    return self.finish_after_failure(plan, policy, steps, failed).await;
                }
                StepEnd::Interrupted => {
                    return self
                        .finish_after_failure(plan, policy, steps, StepEnd::Interrupted)
                        .await;
                }
            }
        }

        // Phase 3: promote — 100% on the candidate, its tag and the rollout record removed.
        if let Err(end) = self
            .apply(
                None,
                plan.traffic(100, false),
                None,
                policy.traffic_deadline,
            )
            .await
        {
            return self.finish_after_failure(plan, policy, steps, end).await;
        }
        self.emit(EventKind::Promoted {
            revision: plan.candidate.clone(),
        });
        let mut report = self.report(plan, policy, Outcome::Promoted, steps);
        report.final_traffic = self.read_back().await;
        report
    }

    async fn stage_candidate(
        &mut self,
        plan: &Plan,
        policy: &Policy,
        record: &RolloutRecord,
    ) -> Result<(), StepEnd> {
        let traffic = plan.traffic(0, true);
        let Some(image) = &plan.image else {
            return self
                .apply(None, traffic, Some(record.clone()), policy.traffic_deadline)
                .await
                .map(drop);
        };
        let spec = NewRevision {
            revision: plan.candidate.clone(),
            image: image.clone(),
            traffic,
            rollout: Some(record.clone()),
        };
        let platform = self.ports.platform;
        let mut etag = self.last_etag();
        for attempt in 0..=CONFLICT_RETRIES {
            let created = self
                .guard(platform.create_revision(&spec, &etag, policy.create_deadline))
                .await
                .ok_or(StepEnd::Interrupted)?;
            match created {
                Ok(service) => {
                    self.last_seen = Some(service);
                    self.emit(EventKind::CandidateCreated {
                        revision: plan.candidate.clone(),
                        image: image.clone(),
                    });
                    return Ok(());
                }
                Err(PortError::Conflict(reason)) if attempt < CONFLICT_RETRIES => {
                    // An earlier attempt may have gone through before its answer was lost.
                    let current = self.reread().await?;
                    if current.latest_created_revision.as_deref() == Some(&plan.candidate) {
                        self.emit(EventKind::CandidateCreated {
                            revision: plan.candidate.clone(),
                            image: image.clone(),
                        });
                        return self
                            .apply(
                                None,
                                spec.traffic.clone(),
                                Some(record.clone()),
                                policy.traffic_deadline,
                            )
                            .await
                            .map(drop);
                    }
                    self.emit(EventKind::Retrying {
                        what: "create candidate".into(),
                        reason,
                    });
                    etag = current.etag;
                }
                Err(PortError::Unavailable(reason)) => {
                    return Err(StepEnd::Failed {
                        reason: format!("could not create the candidate revision: {reason}"),
                        api: true,
                    });
                }
                Err(other) => {
                    return Err(StepEnd::Failed {
                        reason: format!(
                            "candidate revision {} did not become ready: {other}",
                            plan.candidate
                        ),
                        api: false,
                    });
                }
            }
        }
        Err(StepEnd::Failed {
            reason: "the service kept changing underneath the candidate creation".into(),
            api: true,
        })
    }

    fn candidate_url(&self) -> Result<String, String> {
        self.last_seen
            .as_ref()
            .and_then(|service| service.tag_uris.get(CANDIDATE_TAG).cloned())
            .ok_or_else(|| {
                format!(
                    "the platform gave no URL for the `{CANDIDATE_TAG}` tag, so the candidate's \
                     health cannot be checked"
                )
            })
    }

    /// One health check at 0% traffic; a refused connection gets two more tries, since a new tag
    /// URL can take a moment to route. `None`: interrupted.
    async fn preflight_health(
        &mut self,
        url: &str,
        expectations: &Expectations,
    ) -> Option<Verdict> {
        let mut verdict = Verdict::Inconclusive(String::new());
        for attempt in 0..3 {
            if attempt > 0 {
                self.guard(tokio::time::sleep(Duration::from_secs(2)))
                    .await?;
            }
            let (answered, checked) = self.check_health(None, url, expectations).await?;
            verdict = checked;
            if answered || verdict.is_pass() {
                break;
            }
        }
        Some(verdict)
    }

    /// Returns whether the endpoint answered at all, and the verdict; `None` when interrupted.
    async fn check_health(
        &mut self,
        step: Option<usize>,
        base: &str,
        expectations: &Expectations,
    ) -> Option<(bool, Verdict)> {
        let url = expectations.url_for(base);
        let health = self.ports.health;
        let fetched = self.guard(health.fetch(&url)).await?;
        let (answered, verdict) = match fetched {
            Ok(response) => (true, expectations.judge(&response)),
            Err(reason) => (false, Verdict::Fail(format!("no answer: {reason}"))),
        };
        self.emit(EventKind::HealthChecked {
            step,
            url,
            verdict: verdict.clone(),
        });
        Some((answered, verdict))
    }

    async fn bake_step(
        &mut self,
        step: usize,
        percent: u8,
        plan: &Plan,
        policy: &Policy,
        candidate_url: &str,
    ) -> (StepEnd, StepReport) {
        let started = Instant::now();
        let window_start = self.clock.wall(started);
        let judge_at = started + policy.bake + policy.metrics_delay;
        let deadline = started + policy.step_deadline();
        let mut report = StepReport {
            step,
            percent,
            verdict: "inconclusive",
            candidate_requests: 0,
            candidate_5xx: 0,
            error_rate: None,
            stable_requests: 0,
            stable_5xx: 0,
            health: "not_checked",
            checks: 0,
            duration_s: 0.0,
            reason: None,
        };
        let mut next_check = started;
        let mut last_inconclusive: String;
        let mut last_was_api_failure = false;
        let end = loop {
            report.checks += 1;
            let Some((_, health)) = self
                .check_health(Some(step), candidate_url, &policy.health)
                .await
            else {
                break StepEnd::Interrupted;
            };
            if let Verdict::Fail(reason) = health {
                report.health = "fail";
                break StepEnd::Failed {
                    reason: format!("candidate health check failed: {reason}"),
                    api: false,
                };
            }
            report.health = "pass";

            let now = Instant::now();
            let phase = if now >= judge_at {
                StepPhase::Judging
            } else {
                StepPhase::Baking
            };
            let visible_until = now.checked_sub(policy.metrics_delay).unwrap_or(started);
            // The first check of a step has no window yet: it only probes health.
            let nothing_to_read = report.checks == 1 || visible_until <= started;
            let verdict = if nothing_to_read && phase == StepPhase::Baking {
                Verdict::Inconclusive("waiting for metrics to arrive".into())
            } else {
                let window = Window {
                    start: window_start,
                    end: self.clock.wall(visible_until.max(started)),
                };
                let Some(counts) = self.guard(self.ports.metrics.request_counts(window)).await
                else {
                    break StepEnd::Interrupted;
                };
                match counts {
                    Ok(by_revision) => {
                        last_was_api_failure = false;
                        let candidate = count_of(&by_revision, &plan.candidate);
                        let stable = count_of(&by_revision, &plan.stable);
                        report.candidate_requests = candidate.total;
                        report.candidate_5xx = candidate.server_errors;
                        report.error_rate = candidate.error_rate();
                        report.stable_requests = stable.total;
                        report.stable_5xx = stable.server_errors;
                        let verdict = judge_errors(
                            candidate,
                            policy.max_error_rate,
                            policy.min_requests,
                            phase,
                        );
                        self.emit(EventKind::ErrorsChecked {
                            step,
                            candidate,
                            stable,
                            error_rate: candidate.error_rate(),
                            verdict: verdict.clone(),
                        });
                        verdict
                    }
                    Err(error) => {
                        last_was_api_failure = true;
                        Verdict::Inconclusive(format!("metrics unavailable: {error}"))
                    }
                }
            };
            match verdict {
                Verdict::Fail(reason) => break StepEnd::Failed { reason, api: false },
                Verdict::Pass => break StepEnd::Passed,
                Verdict::Inconclusive(reason) => last_inconclusive = reason,
            }
            if now >= deadline {
                break StepEnd::Failed {
                    reason: format!(
                        "step {percent}% stayed inconclusive until its deadline ({}): {last_inconclusive}",
                        humantime::format_duration(policy.step_deadline())
                    ),
                    api: last_was_api_failure,
                };
            }
            while next_check <= now {
                next_check += policy.interval;
            }
            let mut wake = next_check.min(deadline);
            if now < judge_at {
                wake = wake.min(judge_at);
            }
            if self.guard(tokio::time::sleep_until(wake)).await.is_none() {
                break StepEnd::Interrupted;
            }
        };
        report.duration_s = seconds(started.elapsed());
        let (verdict, reason) = match &end {
            StepEnd::Passed => ("pass", None),
            StepEnd::Failed { reason, .. } => ("fail", Some(reason.clone())),
            StepEnd::Interrupted => ("interrupted", Some("interrupted".to_string())),
        };
        report.verdict = verdict;
        report.reason = reason;
        (end, report)
    }

    /// Puts stable back, then builds the report for how the rollout ended.
    async fn finish_after_failure(
        &mut self,
        plan: &Plan,
        policy: &Policy,
        steps: Vec<StepReport>,
        end: StepEnd,
    ) -> Report {
        let (outcome, reason, api_failed, deadline) = match end {
            StepEnd::Passed => unreachable!("a passed step does not end a rollout"),
            StepEnd::Interrupted => {
                self.emit(EventKind::Interrupted);
                (
                    Outcome::Interrupted,
                    "interrupted by a signal".to_string(),
                    false,
                    INTERRUPTED_RESTORE_DEADLINE,
                )
            }
            StepEnd::Failed { reason, api: true } => {
                self.emit(EventKind::ApiFailed {
                    reason: reason.clone(),
                });
                (Outcome::Failed, reason, true, policy.traffic_deadline)
            }
            StepEnd::Failed { reason, api: false } => {
                (Outcome::RolledBack, reason, false, policy.traffic_deadline)
            }
        };
        self.emit(EventKind::RollbackStarted {
            reason: reason.clone(),
        });
        let restored = self.restore_stable(plan, deadline).await;
        let mut report = self.report(plan, policy, outcome, steps);
        report.reason = Some(reason);
        report.api_failed = api_failed;
        match restored {
            Ok(service) => {
                self.emit(EventKind::RolledBack {
                    traffic: service.traffic.clone(),
                });
                report.final_traffic = service.traffic.clone();
                // A stable revision that is unhealthy too means users are still hurting (SEV-1).
                if outcome != Outcome::Interrupted
                    && let Some(uri) = &service.uri
                {
                    report.stable_health = self
                        .check_health(None, uri, &policy.health)
                        .await
                        .map(|(_, verdict)| verdict);
                }
            }
            Err(why) => {
                self.emit(EventKind::RollbackFailed {
                    reason: why.clone(),
                });
                report.rollback_failed = true;
                report.outcome = Outcome::Failed;
                report.reason = Some(format!(
                    "{}; then restoring stable traffic failed: {why}",
                    report.reason.take().unwrap_or_default()
                ));
                report.final_traffic = self.read_back().await;
            }
        }
        report.timeline = self.timeline.clone();
        report
    }

    /// Sends 100% to stable until the platform confirms it or `deadline` passes. Not interruptible:
    /// this is what an interruption runs.
    async fn restore_stable(
        &mut self,
        plan: &Plan,
        deadline: Duration,
    ) -> Result<ServiceState, String> {
        let known = self.last_seen.clone();
        let restored =
            force_traffic(self.ports.platform, known, &plan.stable_traffic(), deadline).await?;
        self.last_seen = Some(restored.clone());
        Ok(restored)
    }

    /// Applies a traffic change using the freshest etag known, re-reading after conflicts.
    async fn apply(
        &mut self,
        step: Option<usize>,
        traffic: Vec<TrafficTarget>,
        rollout: Option<RolloutRecord>,
        deadline: Duration,
    ) -> Result<ServiceState, StepEnd> {
        let change = TrafficChange { traffic, rollout };
        let platform = self.ports.platform;
        let mut etag = self.last_etag();
        let mut attempt = 0;
        loop {
            let written = self
                .guard(platform.set_traffic(&change, &etag, deadline))
                .await
                .ok_or(StepEnd::Interrupted)?;
            match written {
                Ok(service) => {
                    self.emit(EventKind::TrafficSet {
                        step,
                        traffic: service.traffic.clone(),
                    });
                    self.last_seen = Some(service.clone());
                    return Ok(service);
                }
                Err(PortError::Conflict(reason)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    let current = self.reread().await?;
                    if let (Some(ours), Some(theirs)) = (&change.rollout, &current.rollout)
                        && ours.id != theirs.id
                    {
                        return Err(StepEnd::Failed {
                            reason: format!(
                                "another rollout ({}) took over the service",
                                theirs.id
                            ),
                            api: true,
                        });
                    }
                    if traffic_matches(&current, &change.traffic)
                        && current.rollout == change.rollout
                        && !current.reconciling
                    {
                        self.emit(EventKind::TrafficSet {
                            step,
                            traffic: current.traffic.clone(),
                        });
                        return Ok(current);
                    }
                    self.emit(EventKind::Retrying {
                        what: "set traffic".into(),
                        reason,
                    });
                    etag = current.etag;
                }
                Err(error) => {
                    return Err(StepEnd::Failed {
                        reason: format!("could not set traffic: {error}"),
                        api: true,
                    });
                }
            }
        }
    }

    async fn reread(&mut self) -> Result<ServiceState, StepEnd> {
        let platform = self.ports.platform;
        match self.guard(platform.read_service()).await {
            None => Err(StepEnd::Interrupted),
            Some(Ok(service)) => {
                self.last_seen = Some(service.clone());
                Ok(service)
            }
            Some(Err(error)) => Err(StepEnd::Failed {
                reason: format!("could not read the service: {error}"),
                api: true,
            }),
        }
    }

    /// The traffic as the service reports it now; empty when it cannot be read.
    async fn read_back(&mut self) -> Vec<TrafficTarget> {
        let platform = self.ports.platform;
        for _ in 0..3 {
            match tokio::time::timeout(Duration::from_secs(10), platform.read_service()).await {
                Ok(Ok(service)) => {
                    let traffic = service.traffic.clone();
                    self.last_seen = Some(service);
                    return traffic;
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        self.last_seen
            .as_ref()
            .map(|service| service.traffic.clone())
            .unwrap_or_default()
    }

    fn last_etag(&self) -> String {
        self.last_seen
            .as_ref()
            .map(|service| service.etag.clone())
            .unwrap_or_default()
    }

    /// Runs `future` unless the interrupt fires first (`None`).
    async fn guard<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        if self.interrupt.is_set() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.interrupt.fired() => None,
            value = future => Some(value),
        }
    }

    fn emit(&mut self, kind: EventKind) {
        let event = Event {
            at: self.clock.now(),
            elapsed_s: seconds(self.started.elapsed()),
            kind,
        };
        if let Some(progress) = self.progress {
            progress(&event);
        }
        self.timeline.push(event);
    }

    fn report(
        &self,
        plan: &Plan,
        policy: &Policy,
        outcome: Outcome,
        steps: Vec<StepReport>,
    ) -> Report {
        Report {
            outcome,
            service: plan.service.name.clone(),
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            image: plan.image.clone(),
            planned_steps: policy.steps.percents().to_vec(),
            steps,
            final_traffic: Vec::new(),
            reason: None,
            rollback_failed: false,
            api_failed: false,
            stable_health: None,
            duration_s: seconds(self.started.elapsed()),
            timeline: self.timeline.clone(),
        }
    }
}

/// Sets `wanted` as the whole traffic split and clears any rollout record, re-reading and retrying
/// through conflicts and outages until the platform confirms it or `deadline` passes. `known` is
/// a recent read to save one round trip.
pub async fn force_traffic(
    platform: &dyn Platform,
    mut known: Option<ServiceState>,
    wanted: &[TrafficTarget],
    deadline: Duration,
) -> Result<ServiceState, String> {
    let give_up = Instant::now() + deadline;
    let change = TrafficChange {
        traffic: wanted.to_vec(),
        rollout: None,
    };
    let mut last_error = String::from("the deadline passed before any attempt");
    while Instant::now() < give_up {
        let service = match known.take() {
            Some(service) => service,
            None => {
                let remaining = give_up.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, platform.read_service()).await {
                    Ok(Ok(service)) => service,
                    Ok(Err(error)) => {
                        last_error = format!("could not read the service: {error}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(_) => break,
                }
            }
        };
        if traffic_matches(&service, wanted) && service.rollout.is_none() && !service.reconciling {
            return Ok(service);
        }
        let remaining = give_up.saturating_duration_since(Instant::now());
        match tokio::time::timeout(
            remaining,
            platform.set_traffic(&change, &service.etag, remaining),
        )
        .await
        {
            Ok(Ok(service)) => return Ok(service),
            Ok(Err(PortError::Conflict(reason))) => last_error = reason,
            Ok(Err(error)) => {
                last_error = error.to_string();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_) => {
                last_error = format!(
                    "the platform did not confirm the change within {}",
                    humantime::format_duration(deadline)
                );
                break;
            }
        }
    }
    Err(last_error)
}

fn count_of(
    counts: &std::collections::BTreeMap<String, RequestCounts>,
    revision: &str,
) -> RequestCounts {
    counts.get(revision).copied().unwrap_or_default()
}

/// The last path segment of a resource name (`projects/p/…/services/s` → `s`).
pub fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// A revision name Cloud Run accepts (`<service>-sg-<7 base-36 chars>`, at most 63 characters),
/// unique per millisecond, so a retried create is recognisable as ours.
pub fn new_revision_name(service: &str, now: SystemTime) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or_default();
    let mut suffix = [b'0'; 7];
    for slot in suffix.iter_mut().rev() {
        *slot = DIGITS[(millis % 36) as usize];
        millis /= 36;
    }
    let suffix = std::str::from_utf8(&suffix).expect("base-36 digits are ASCII");
    let prefix: String = service.chars().take(63 - 11).collect();
    format!("{prefix}-sg-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_names_are_valid_and_prefixed_by_the_service() {
        let name = new_revision_name(
            "loopcloser-prod",
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
        );
        assert!(name.starts_with("loopcloser-prod-sg-"), "{name}");
        assert!(name.len() <= 63);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn plan_traffic_keeps_other_tags_and_moves_the_candidate_tag() {
        let service = ServiceState {
            traffic: vec![
                TrafficTarget::new("svc-1", 100),
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::tagged("svc-x", 0, CANDIDATE_TAG),
            ],
            ..ServiceState::default()
        };
        let plan = Plan {
            preserved: preserved_tags(&service),
            service,
            stable: "svc-1".into(),
            candidate: "svc-2".into(),
            image: None,
        };
        assert_eq!(
            plan.traffic(10, true),
            vec![
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::new("svc-1", 90),
                TrafficTarget::tagged("svc-2", 10, CANDIDATE_TAG),
            ]
        );
        assert_eq!(
            plan.traffic(100, false),
            vec![
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::new("svc-2", 100)
            ]
        );
        assert_eq!(
            plan.stable_traffic(),
            vec![
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::new("svc-1", 100)
            ]
        );
    }
}
