//! The rollout state machine: prepare (stable, candidate, plan), take ownership of the service,
//! shift traffic step by step, judge every step, and restore stable traffic on any failure.

use tokio::time::Instant;

use crate::clock::Clock;
use crate::health::{Expectations, Verdict};
use crate::rollout::ownership::{Identity, describe_owner, live_local_owner};
use crate::rollout::plan::Policy;
use crate::rollout::ports::{
    HealthEndpoint, Metrics, NewRevision, Platform, PortError, RolloutRecord, ServiceState,
    TrafficChange, TrafficTarget,
};
use crate::rollout::timeline::{
    Event, EventKind, Outcome, Report, StepReport, describe_traffic, seconds,
};
use crate::rollout::write::{WRITE_ATTEMPTS, WRITE_BACKOFF};

pub use crate::rollout::interrupt::{Interrupt, InterruptTrigger};
pub use crate::rollout::ownership::traffic_matches;
pub use crate::rollout::restore::{INTERRUPTED_RESTORE_DEADLINE, force_traffic};
use crate::rollout::traffic::preserved_tags;
pub use crate::rollout::traffic::{
    CANDIDATE_TAG, Plan, new_revision_name, restore_traffic, short_name,
};

/// Where the candidate revision comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateSource {
    /// Make a new revision from the current template with this image.
    Image(String),
    /// An existing revision.
    Revision(String),
    /// The latest created revision, when it serves no traffic.
    LatestCreated,
    /// The rollout recorded on the service, whose process is gone (`rollout --resume`).
    Resume,
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
    /// Bad input, a service state that needs a person first, or another rollout owns the
    /// service (exit 2).
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

/// The adapters a rollout runs against.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub platform: &'a dyn Platform,
    pub metrics: &'a dyn Metrics,
    pub health: &'a dyn HealthEndpoint,
}

/// Receives every timeline event as it happens (the progress log).
pub type ProgressSink<'a> = &'a (dyn Fn(&Event) + Send + Sync);

/// Why a rollout stops before promotion.
pub(super) enum Stop {
    /// A gate failed: the candidate is to blame.
    Failed(String),
    /// An API failed: the platform or metrics backend is to blame, not the candidate (Argo's
    /// Error outcome).
    Error(String),
    /// A person or another process changed the service: this rollout no longer owns it.
    Aborted(String),
    Interrupted,
}

/// How a restore attempt ended.
pub(super) enum Restore {
    /// Stable serves everything and the record is gone, as read back.
    Done(Box<ServiceState>),
    /// Someone else changed the service first; it was left as they made it.
    NotOurs(String),
    /// Not confirmed before the deadline, or refused by the platform.
    Failed(String),
}

/// Runs one rollout. Create one per rollout.
pub struct Engine<'a> {
    pub(super) ports: Ports<'a>,
    pub(super) clock: Clock,
    pub(super) interrupt: Interrupt,
    progress: Option<ProgressSink<'a>>,
    started: Instant,
    timeline: Vec<Event>,
    pub(super) identity: Identity,
    /// The service as last read (every write answers with a read-back), for the freshest etag.
    pub(super) last_seen: Option<ServiceState>,
    /// The record this rollout last wrote; `None` before it owns the service and after promotion.
    pub(super) record: Option<RolloutRecord>,
    /// The split this rollout last saw applied by its own write.
    pub(super) confirmed: Vec<TrafficTarget>,
    /// A write of this rollout whose outcome is not known yet (its answer may be lost).
    pub(super) in_flight: Option<Vec<TrafficTarget>>,
    /// When the interrupt was first seen: the restore must end 6.5 s after it.
    pub(super) interrupted_at: Option<Instant>,
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
            identity: Identity::generate(),
            last_seen: None,
            record: None,
            confirmed: Vec::new(),
            in_flight: None,
            interrupted_at: None,
        }
    }

    pub fn with_progress(mut self, progress: ProgressSink<'a>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Runs under this identity (the caller keeps the id, e.g. to recover after a panic).
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Prepares, takes ownership of the service and, unless it is a dry run, runs the rollout.
    pub async fn run(&mut self, request: &RolloutRequest) -> Result<Report, RolloutError> {
        request.policy.validate().map_err(RolloutError::Refused)?;
        let plan = self.prepare(&request.candidate).await?;
        if request.dry_run {
            return Ok(self.dry_run_report(&plan, &request.policy));
        }
        let policy = &request.policy;
        self.emit(EventKind::Planned {
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            steps: policy.steps.percents().to_vec(),
            creates_revision: plan.image.is_some(),
        });
        if let Some(end) = self.take_ownership(&plan, policy).await? {
            return Ok(self.finish(&plan, policy, Vec::new(), end).await);
        }
        Ok(self.execute(&plan, policy).await)
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
        self.last_seen = Some(service.clone());
        if *source == CandidateSource::Resume {
            return self.prepare_resume(service).await;
        }
        if let Some(record) = service.rollout.as_ref().filter(|r| r.is_running()) {
            return Err(RolloutError::Refused(format!(
                "a rollout is already in progress on {}: {}; if its process is gone, continue it \
                 with `shiftgate rollout --resume` or undo it with `shiftgate rollback`",
                service.name,
                describe_owner(record)
            )));
        }
        let stable = single_serving_revision(&service)?;
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
            CandidateSource::Resume => unreachable!("handled above"),
        };
        Ok(Plan {
            preserved: preserved_tags(&service),
            stable,
            candidate,
            image,
            service,
            resume_at: None,
            started_at: humantime::format_rfc3339_seconds(self.clock.now()).to_string(),
        })
    }

    /// A recorded rollout whose process is gone: its revisions still exist and the split is still
    /// the one it recorded, else a person must decide (exit 2, nothing changed).
    async fn prepare_resume(&mut self, service: ServiceState) -> Result<Plan, RolloutError> {
        let Some(record) = service.rollout.clone().filter(|r| r.is_running()) else {
            return Err(RolloutError::Refused(format!(
                "no rollout is recorded on {}, so there is nothing to resume; start one with \
                 `shiftgate rollout --image IMAGE`",
                service.name
            )));
        };
        if let Some(pid) = live_local_owner(&record.owner) {
            return Err(RolloutError::Refused(format!(
                "the recorded rollout is still run by process {pid} on this host ({}); stop it \
                 before resuming",
                describe_owner(&record)
            )));
        }
        for (role, revision) in [("stable", &record.stable), ("candidate", &record.candidate)] {
            let info = self
                .ports
                .platform
                .read_revision(revision)
                .await
                .map_err(|error| match error {
                    PortError::NotFound(_) => RolloutError::Refused(format!(
                        "cannot resume: the recorded {role} revision {revision} no longer exists; \
                         undo the rollout with `shiftgate rollback --to REVISION`"
                    )),
                    other => {
                        RolloutError::Api(format!("could not read revision {revision}: {other}"))
                    }
                })?;
            if !info.ready {
                return Err(RolloutError::Refused(format!(
                    "cannot resume: the recorded {role} revision {revision} is not ready ({}); \
                     undo the rollout with `shiftgate rollback`",
                    info.reason.unwrap_or_default()
                )));
            }
        }
        let plan = Plan {
            preserved: preserved_tags(&service),
            stable: record.stable.clone(),
            candidate: record.candidate.clone(),
            image: None,
            resume_at: Some(record.percent),
            started_at: record.started_at.clone(),
            service,
        };
        let expected = plan.traffic(record.percent, true);
        if !traffic_matches(&plan.service, &expected) {
            return Err(RolloutError::Refused(format!(
                "cannot resume: traffic on {} is {}, not the {} the record says; undo the \
                 rollout with `shiftgate rollback`",
                plan.service.name,
                describe_traffic(&plan.service.traffic),
                describe_traffic(&expected)
            )));
        }
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
        report.final_traffic_confirmed = true;
        let action = match plan.resume_at {
            Some(at) => format!("resume the rollout of {} at {at}%, then", plan.candidate),
            None => String::new(),
        };
        report.reason = Some(format!(
            "dry run: would {action} move {} from {} to {} in steps {} (bake {} each, at least {} to promote); nothing was changed",
            short_name(&plan.service.name),
            plan.stable,
            plan.candidate,
            policy.steps,
            humantime::format_duration(policy.bake),
            humantime::format_duration(policy.time_to_promote()),
        ));
        report
    }

    /// The first write: the record (with this rollout's id) goes onto the service in the same
    /// etag-guarded change that stages the candidate, so of two rollouts started together exactly
    /// one wins. The loser changes nothing and says who won (exit 2). `Ok(Some(end))`: the write's
    /// fate is unknown or it failed; the caller restores whatever of it landed.
    async fn take_ownership(
        &mut self,
        plan: &Plan,
        policy: &Policy,
    ) -> Result<Option<Stop>, RolloutError> {
        let percent = plan.resume_at.unwrap_or(0);
        let record = RolloutRecord {
            id: self.identity.id.clone(),
            owner: self.identity.owner.clone(),
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            percent,
            state: RolloutRecord::RUNNING.to_string(),
            started_at: plan.started_at.clone(),
        };
        let traffic = plan.traffic(percent, true);
        let platform = self.ports.platform;
        let mut etag = plan.service.etag.clone();
        for attempt in 1..=WRITE_ATTEMPTS {
            self.in_flight = Some(traffic.clone());
            let written = match (&plan.image, plan.resume_at) {
                (Some(image), None) => {
                    let spec = NewRevision {
                        revision: plan.candidate.clone(),
                        image: image.clone(),
                        traffic: traffic.clone(),
                        rollout: Some(record.clone()),
                    };
                    self.guard(platform.create_revision(&spec, &etag, policy.create_deadline))
                        .await
                }
                _ => {
                    let change = TrafficChange {
                        traffic: traffic.clone(),
                        rollout: Some(record.clone()),
                    };
                    self.guard(platform.set_traffic(&change, &etag, policy.traffic_deadline))
                        .await
                }
            };
            let Some(written) = written else {
                return Ok(Some(Stop::Interrupted));
            };
            let error = match written {
                Ok(service) => {
                    self.took_ownership(plan, service, record);
                    return Ok(None);
                }
                Err(error) => error,
            };
            // A conflict, a lost answer or a failure: only a fresh read tells what happened.
            let current = match self.read_settled(policy.traffic_deadline).await {
                Ok(current) => current,
                Err(end) => return Ok(Some(end)),
            };
            match &current.rollout {
                Some(theirs) if theirs.id == record.id => {
                    // Ours went through: either only its answer was lost, or the platform took
                    // the change but could not start the new revision. The revision says which.
                    self.took_ownership(plan, current, record);
                    return Ok(match plan.image {
                        Some(_) if plan.resume_at.is_none() => self.candidate_started(plan).await,
                        _ => None,
                    });
                }
                Some(theirs) if plan.service.rollout.as_ref() != Some(theirs) => {
                    return Err(RolloutError::Refused(format!(
                        "another rollout took {} first: {}",
                        current.name,
                        describe_owner(theirs)
                    )));
                }
                _ => {}
            }
            // Nothing of ours landed. Try again only while the service is still as prepared.
            if current.rollout != plan.service.rollout
                || !traffic_matches(&current, &plan.service.traffic)
            {
                return Err(RolloutError::Refused(format!(
                    "{} changed while this rollout was starting (traffic now {}); look with \
                     `shiftgate status` and start again",
                    current.name,
                    describe_traffic(&current.traffic)
                )));
            }
            match error {
                PortError::Conflict(reason) | PortError::Unavailable(reason)
                    if attempt < WRITE_ATTEMPTS =>
                {
                    self.emit(EventKind::Retrying {
                        what: "take ownership of the service".into(),
                        reason,
                    });
                    if self
                        .guard(tokio::time::sleep(WRITE_BACKOFF))
                        .await
                        .is_none()
                    {
                        return Ok(Some(Stop::Interrupted));
                    }
                }
                other => {
                    return Ok(Some(Stop::Error(format!(
                        "could not stage the candidate: {other}"
                    ))));
                }
            }
            etag = current.etag;
        }
        Ok(Some(Stop::Error(
            "the service kept changing while the candidate was being staged".into(),
        )))
    }

    /// After a creation whose answer was an error although it landed: did the revision start?
    /// `None`: it is ready and the rollout goes on.
    async fn candidate_started(&mut self, plan: &Plan) -> Option<Stop> {
        let platform = self.ports.platform;
        match self.guard(platform.read_revision(&plan.candidate)).await {
            None => Some(Stop::Interrupted),
            Some(Ok(info)) if info.ready => None,
            Some(Ok(info)) => Some(Stop::Failed(format!(
                "candidate revision {} did not become ready: {}",
                plan.candidate,
                info.reason.unwrap_or_else(|| "no reason given".into())
            ))),
            Some(Err(error)) => Some(Stop::Error(format!(
                "could not read candidate revision {}: {error}",
                plan.candidate
            ))),
        }
    }

    fn took_ownership(&mut self, plan: &Plan, service: ServiceState, record: RolloutRecord) {
        if let (Some(image), None) = (&plan.image, plan.resume_at) {
            self.emit(EventKind::CandidateCreated {
                revision: plan.candidate.clone(),
                image: image.clone(),
            });
        }
        self.confirmed = service.traffic.clone();
        self.in_flight = None;
        self.record = Some(record);
        self.last_seen = Some(service);
    }

    /// Runs the owned rollout to promotion, or restores stable traffic and says why.
    async fn execute(&mut self, plan: &Plan, policy: &Policy) -> Report {
        let mut steps: Vec<StepReport> = Vec::new();
        let candidate_url = match self.candidate_url() {
            Ok(url) => url,
            Err(reason) => return self.finish(plan, policy, steps, Stop::Error(reason)).await,
        };
        match self.preflight_health(&candidate_url, &policy.health).await {
            None => return self.finish(plan, policy, steps, Stop::Interrupted).await,
            Some(Verdict::Fail(reason)) => {
                let stop = Stop::Failed(format!(
                    "candidate is unhealthy before any traffic: {reason}"
                ));
                return self.finish(plan, policy, steps, stop).await;
            }
            Some(_) => {}
        }

        for (step, percent) in plan.schedule(policy) {
            // A resumed rollout's recorded step already has its traffic; it is only baked again.
            if plan.resume_at != Some(percent) {
                let Some(owned) = self.record.clone() else {
                    let stop = Stop::Error("the rollout record was lost".into());
                    return self.finish(plan, policy, steps, stop).await;
                };
                let record = RolloutRecord { percent, ..owned };
                let traffic = plan.traffic(percent, true);
                if let Err(stop) = self
                    .apply(Some(step), traffic, Some(record), policy.traffic_deadline)
                    .await
                {
                    return self.finish(plan, policy, steps, stop).await;
                }
            }
            let (ended, step_report) = self
                .bake_step(step, percent, plan, policy, &candidate_url)
                .await;
            steps.push(step_report);
            match ended {
                Ok(()) => self.emit(EventKind::StepPassed { step, percent }),
                Err(stop) => {
                    if let Stop::Failed(reason) = &stop {
                        self.emit(EventKind::StepFailed {
                            step,
                            percent,
                            reason: reason.clone(),
                        });
                    }
                    return self.finish(plan, policy, steps, stop).await;
                }
            }
        }

        // Promote: 100% on the candidate, its tag and the rollout record removed.
        let promoted = match self
            .apply(
                None,
                plan.traffic(100, false),
                None,
                policy.traffic_deadline,
            )
            .await
        {
            Ok(service) => service,
            Err(stop) => return self.finish(plan, policy, steps, stop).await,
        };
        self.emit(EventKind::Promoted {
            revision: plan.candidate.clone(),
        });
        let mut report = self.report(plan, policy, Outcome::Promoted, steps);
        report.final_traffic = promoted.traffic;
        report.final_traffic_confirmed = true;
        report
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

    /// Ends a rollout that stopped before promotion: restores stable traffic when the service is
    /// still this rollout's, then builds the report.
    async fn finish(
        &mut self,
        plan: &Plan,
        policy: &Policy,
        steps: Vec<StepReport>,
        stop: Stop,
    ) -> Report {
        let mut report = self.report(plan, policy, Outcome::Failed, steps);
        let reason = match stop {
            Stop::Aborted(reason) => {
                self.emit(EventKind::Aborted {
                    reason: reason.clone(),
                });
                report.outcome = Outcome::Aborted;
                report.reason = Some(reason);
                self.read_final(&mut report).await;
                report.timeline = self.timeline.clone();
                return report;
            }
            Stop::Interrupted => {
                self.interrupted_at.get_or_insert_with(Instant::now);
                self.emit(EventKind::Interrupted);
                report.outcome = Outcome::Interrupted;
                "interrupted by a signal".to_string()
            }
            Stop::Error(reason) => {
                self.emit(EventKind::ApiFailed {
                    reason: reason.clone(),
                });
                report.api_failed = true;
                reason
            }
            Stop::Failed(reason) => {
                report.outcome = Outcome::RolledBack;
                reason
            }
        };
        report.reason = Some(reason.clone());
        self.emit(EventKind::RollbackStarted { reason });
        match self.restore(plan, policy.traffic_deadline).await {
            Restore::Done(service) => {
                let service = *service;
                self.emit(EventKind::RolledBack {
                    traffic: service.traffic.clone(),
                });
                report.final_traffic = service.traffic.clone();
                report.final_traffic_confirmed = true;
                // A stable revision that is unhealthy too means users are still hurting (SEV-1).
                // Stable is judged on the basic rule: the candidate's version expectations are
                // not stable's.
                if report.outcome != Outcome::Interrupted
                    && let Some(uri) = &service.uri
                {
                    let basic = Expectations {
                        path: policy.health.path.clone(),
                        ..Expectations::default()
                    };
                    report.stable_health = self
                        .check_health(None, uri, &basic)
                        .await
                        .map(|(_, verdict)| verdict);
                }
            }
            Restore::NotOurs(why) => {
                self.emit(EventKind::Aborted {
                    reason: why.clone(),
                });
                report.outcome = Outcome::Aborted;
                report.api_failed = false;
                report.reason = Some(format!(
                    "{}; stable was not restored by this rollout: {why}",
                    report.reason.take().unwrap_or_default()
                ));
                self.read_final(&mut report).await;
            }
            Restore::Failed(why) => {
                self.emit(EventKind::RollbackFailed {
                    reason: why.clone(),
                });
                report.rollback_failed = true;
                if report.outcome != Outcome::Interrupted {
                    report.outcome = Outcome::Failed;
                }
                report.reason = Some(format!(
                    "{}; then restoring stable traffic was not confirmed: {why}",
                    report.reason.take().unwrap_or_default()
                ));
                // The last split actually read, said to be unconfirmed: never one assumed.
                report.final_traffic = self
                    .last_seen
                    .as_ref()
                    .map(|service| service.traffic.clone())
                    .unwrap_or_default();
                report.final_traffic_confirmed = false;
            }
        }
        report.timeline = self.timeline.clone();
        report
    }

    pub(super) fn emit(&mut self, kind: EventKind) {
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
            rollout_id: self.identity.id.clone(),
            planned_steps: policy.steps.percents().to_vec(),
            steps,
            final_traffic: Vec::new(),
            final_traffic_confirmed: false,
            reason: None,
            rollback_failed: false,
            api_failed: false,
            stable_health: None,
            duration_s: seconds(self.started.elapsed()),
            timeline: self.timeline.clone(),
        }
    }
}

/// The one revision serving all traffic, which a rollout falls back to.
fn single_serving_revision(service: &ServiceState) -> Result<String, RolloutError> {
    match service.serving().as_slice() {
        [(revision, 100)] => Ok(revision.clone()),
        [] => Err(RolloutError::Refused(format!(
            "{} serves no traffic, so there is no stable revision to fall back to",
            service.name
        ))),
        split => {
            let shares: Vec<String> = split.iter().map(|(r, p)| format!("{r} {p}%")).collect();
            Err(RolloutError::Refused(format!(
                "traffic on {} is split ({}); put it on one revision first with \
                 `shiftgate rollback --to REVISION`",
                service.name,
                shares.join(", ")
            )))
        }
    }
}
