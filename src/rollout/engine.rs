//! The rollout state machine: prepare (stable, candidate, plan), take ownership of the service,
//! shift traffic step by step, judge every step, and restore stable traffic on any failure.

use tokio::time::Instant;

use crate::clock::Clock;
use crate::rollout::health_judge::Expectations;
use crate::rollout::history::{self, HistoryEntry};
use crate::rollout::hooks::{HookKind, HookReport};
use crate::rollout::ownership::Identity;
use crate::rollout::plan::Policy;
use crate::rollout::ports::{Hooks, RolloutRecord, ServiceState, TrafficTarget};
use crate::rollout::step::JudgeRun;
use crate::rollout::timeline::{Event, EventKind, Outcome, Report, StepReport, seconds};
use crate::rollout::verdict::Verdict;

pub use crate::rollout::interrupt::{Interrupt, InterruptTrigger};
pub use crate::rollout::request::{
    CandidateSource, Ports, ProgressSink, RolloutError, RolloutRequest,
};
pub use crate::rollout::restore::{
    INTERRUPTED_RESTORE_DEADLINE, ManualEnd, NotForced, force_traffic, force_traffic_of,
    undo_promotion,
};
pub use crate::rollout::traffic::{
    CANDIDATE_TAG, Plan, restore_split, restore_traffic, short_name,
};

/// Cloud Run gives session affinity precedence over the split: returning clients stay on the
/// revision they first reached, so a step's percent is not what users get.
pub const SESSION_AFFINITY_WARNING: &str = "session affinity is on for this service: Cloud Run \
    keeps each client on the revision it first reached, so a step's percentage is not the share \
    of users the candidate gets (new clients follow the split; returning ones stay on stable), \
    and the candidate's requests come from fewer users than the step says";
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
    /// The judge's state across steps (baseline, start of counting, tallies).
    pub(super) judge: JudgeRun,
    /// Runs the policy's hooks (backup, jobs); `None` when the caller gave none.
    pub(super) hooks: Option<&'a dyn Hooks>,
    pub(super) hook_reports: Vec<HookReport>,
    /// The history entry the restoring write appends (its restore time is set when it is sent).
    pub(super) ending: Option<HistoryEntry>,
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
            judge: JudgeRun::default(),
            hooks: None,
            hook_reports: Vec::new(),
            ending: None,
        }
    }

    /// Runs the policy's hooks with `hooks`.
    pub fn with_hooks(mut self, hooks: &'a dyn Hooks) -> Self {
        self.hooks = Some(hooks);
        self
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
        if plan.service.session_affinity {
            self.emit(EventKind::Warned {
                warning: SESSION_AFFINITY_WARNING.to_string(),
            });
        }
        let resuming = plan.resume_at.is_some();
        if let Err(stop) = self.before_traffic(&policy.hooks, resuming).await {
            // Nothing of this rollout is on the service yet: nothing to restore.
            let (outcome, reason) = match stop {
                Stop::Interrupted => (Outcome::Interrupted, "interrupted by a signal".to_string()),
                Stop::Aborted(reason) => (Outcome::Aborted, reason),
                Stop::Failed(reason) => (Outcome::Failed, reason),
                Stop::Error(reason) => (Outcome::Failed, reason),
            };
            let mut report = self.report(&plan, policy, outcome, Vec::new());
            report.reason = Some(reason);
            report.final_traffic = plan.service.traffic.clone();
            report.final_traffic_confirmed = true;
            return Ok(report);
        }
        if let Some(end) = self.take_ownership(&plan, policy).await? {
            return Ok(self.finish(&plan, policy, Vec::new(), end).await);
        }
        Ok(self.execute(&plan, policy).await)
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
            Some(Verdict::Fail(reason)) if policy.report_only => {
                self.emit(EventKind::GateIgnored {
                    step: None,
                    reason: format!("candidate is unhealthy before any traffic: {reason}"),
                });
            }
            Some(Verdict::Fail(reason)) => {
                self.judge.candidate_unhealthy = true;
                let stop = Stop::Failed(format!(
                    "candidate is unhealthy before any traffic: {reason}"
                ));
                return self.finish(plan, policy, steps, stop).await;
            }
            Some(_) => {}
        }
        if self.read_baseline(plan, policy).await.is_none() {
            return self.finish(plan, policy, steps, Stop::Interrupted).await;
        }

        for (step, percent) in plan.schedule(policy) {
            let ran = self.run_step(step, percent, plan, policy, &candidate_url, &mut steps);
            if let Err(stop) = ran.await {
                return self.finish(plan, policy, steps, stop).await;
            }
        }

        // Promote: 100% on the candidate, its tag and the rollout record removed, and the
        // rollout's history entry added by the same write.
        let entry = self.history_entry(plan, Outcome::Promoted, None);
        let promoted = match self
            .apply(
                None,
                plan.traffic(100, false),
                None,
                Some(entry),
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
        if let Some(job) = &policy.hooks.post_job {
            // The candidate serves everything already: a failed post-job is reported, not undone.
            self.run_hook(HookKind::PostJob, job.clone(), &policy.hooks)
                .await;
        }
        let mut report = self.report(plan, policy, Outcome::Promoted, steps);
        report.final_traffic = promoted.traffic;
        report.final_traffic_confirmed = true;
        report
    }

    /// Moves traffic to `percent` (unless a resume finds it there already) and bakes the step;
    /// its report goes into `steps` once baked.
    async fn run_step(
        &mut self,
        step: usize,
        percent: u8,
        plan: &Plan,
        policy: &Policy,
        candidate_url: &str,
        steps: &mut Vec<StepReport>,
    ) -> Result<(), Stop> {
        // A resumed rollout's recorded step already has its traffic; it is only baked again.
        if plan.resume_at != Some(percent) {
            let Some(owned) = self.record.clone() else {
                return Err(Stop::Error("the rollout record was lost".into()));
            };
            let record = RolloutRecord { percent, ..owned };
            let traffic = plan.traffic(percent, true);
            self.apply(
                Some(step),
                traffic,
                Some(record),
                None,
                policy.traffic_deadline,
            )
            .await?;
        }
        let (ended, step_report) = self
            .bake_step(step, percent, plan, policy, candidate_url)
            .await;
        steps.push(step_report);
        match ended {
            Ok(()) => {
                self.emit(EventKind::StepPassed { step, percent });
                Ok(())
            }
            Err(stop) => {
                if let Stop::Failed(reason) = &stop {
                    self.emit(EventKind::StepFailed {
                        step,
                        percent,
                        reason: reason.clone(),
                    });
                }
                Err(stop)
            }
        }
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
        self.ending = Some(self.history_entry(plan, report.outcome, Some(&reason)));
        self.emit(EventKind::RollbackStarted { reason });
        match self.restore(plan, policy.traffic_deadline).await {
            Restore::Done(service) => self.restored(&mut report, policy, *service).await,
            Restore::NotOurs(why) => self.left_as_found(&mut report, why).await,
            Restore::Failed(why) => self.restore_unconfirmed(&mut report, why),
        }
        report.timeline = self.timeline.clone();
        report
    }

    /// Stable serves everything again, as read back; then stable's own health is checked.
    async fn restored(&mut self, report: &mut Report, policy: &Policy, service: ServiceState) {
        self.emit(EventKind::RolledBack {
            traffic: service.traffic.clone(),
        });
        report.final_traffic = service.traffic.clone();
        report.final_traffic_confirmed = true;
        // An interrupted job has seconds left before its runner kills it: no job fits in that.
        if let Some(job) = &policy.hooks.on_rollback_job
            && report.outcome != Outcome::Interrupted
        {
            self.run_hook(HookKind::OnRollbackJob, job.clone(), &policy.hooks)
                .await;
            report.hooks = self.hook_reports.clone();
        }
        // A stable revision that is unhealthy too means users are still hurting (SEV-1).
        // Stable is judged on the basic rule: the candidate's version expectations are
        // not stable's.
        if report.outcome != Outcome::Interrupted
            && let Some(uri) = &service.uri
        {
            let basic = Expectations {
                path: policy.health.path.clone(),
                audience: policy.health.audience.clone(),
                ..Expectations::default()
            };
            let checked = self.check_health(None, uri, &basic).await;
            if let Some((Some(401 | 403), Verdict::Fail(why))) = &checked {
                // Refused to shiftgate says nothing of stable's health, only of the probe's
                // identity, which the candidate's failure may share.
                report.stable_health = Some(Verdict::Inconclusive(format!(
                    "the probe was refused: {why}"
                )));
                return;
            }
            report.stable_health = checked.map(|(_, verdict)| verdict);
            if let Some(Verdict::Fail(why)) = &report.stable_health
                && self.judge.candidate_unhealthy
            {
                report.service_problem = true;
                report.reason = Some(format!(
                    "{}; stable fails its health check too ({why}): a problem of the service \
                     (a dependency such as its database), not of the candidate",
                    report.reason.take().unwrap_or_default()
                ));
            }
        }
    }

    /// Someone else changed the service first: their change stands, and the report says so.
    async fn left_as_found(&mut self, report: &mut Report, why: String) {
        self.emit(EventKind::Aborted {
            reason: why.clone(),
        });
        report.outcome = Outcome::Aborted;
        report.api_failed = false;
        report.reason = Some(format!(
            "{}; stable was not restored by this rollout: {why}",
            report.reason.take().unwrap_or_default()
        ));
        self.read_final(report).await;
    }

    /// The restore was not confirmed in time, or was refused.
    fn restore_unconfirmed(&mut self, report: &mut Report, why: String) {
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

    /// This rollout as its service's history keeps it, ending now with `outcome`.
    fn history_entry(&self, plan: &Plan, outcome: Outcome, reason: Option<&str>) -> HistoryEntry {
        let instants = history::instants(&self.timeline, &plan.candidate, plan.resume_at.is_some());
        HistoryEntry {
            id: self.identity.id.clone(),
            candidate: plan.candidate.clone(),
            stable: plan.stable.clone(),
            outcome: outcome.as_str().to_string(),
            reason: reason.map(str::to_string),
            started: plan.started_at.clone(),
            ended: history::time_text(self.clock.now()),
            failed_percent: instants.failed_percent,
            traffic_at: instants.traffic_at.map(history::time_text),
            detected_at: instants.detected_at.map(history::time_text),
            restored_at: None,
            who: self.identity.owner.clone(),
            manual: false,
        }
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
            service_problem: false,
            pause_expired: self.judge.pause_expired,
            hooks: self.hook_reports.clone(),
            duration_s: seconds(self.started.elapsed()),
            timeline: self.timeline.clone(),
        }
    }
}
