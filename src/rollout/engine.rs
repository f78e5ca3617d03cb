//! The rollout state machine: prepare (stable, candidate, plan), take ownership of the service,
//! shift traffic step by step, judge every step, and restore stable traffic on any failure.

use tokio::time::Instant;

use crate::clock::Clock;
use crate::health::{Expectations, Verdict};
use crate::rollout::ownership::{Identity, describe_owner};
use crate::rollout::plan::Policy;
use crate::rollout::ports::{
    NewRevision, PortError, RolloutRecord, ServiceState, TrafficChange, TrafficTarget,
};
use crate::rollout::timeline::{
    Event, EventKind, Outcome, Report, StepReport, describe_traffic, seconds,
};
use crate::rollout::write::{WRITE_ATTEMPTS, WRITE_BACKOFF};

pub use crate::rollout::interrupt::{Interrupt, InterruptTrigger};
pub use crate::rollout::ownership::traffic_matches;
pub use crate::rollout::request::{
    CandidateSource, Ports, ProgressSink, RolloutError, RolloutRequest,
};
pub use crate::rollout::restore::{INTERRUPTED_RESTORE_DEADLINE, force_traffic};
pub use crate::rollout::traffic::{
    CANDIDATE_TAG, Plan, new_revision_name, restore_traffic, short_name,
};

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

    pub(super) fn report(
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
