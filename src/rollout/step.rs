//! One step's bake: every interval, check ownership, probe the candidate's health (again after a
//! failure), read and judge the error counts, and act on what the check decides.

use std::time::Duration;

use tokio::time::Instant;

use crate::rollout::check::{Decision, Errors, StepSchedule, decide};
use crate::rollout::engine::{Engine, Stop};
use crate::rollout::forecast::forecast;
use crate::rollout::health_judge::Expectations;
use crate::rollout::histogram::LatencyHistogram;
use crate::rollout::judge::{Counts, JudgeKind, StepPhase, judge_step};
use crate::rollout::latency::{LatencyCheck, check_latency, with_latency};
use crate::rollout::ownership::still_ours;
use crate::rollout::pause::{Hold, HoldEnd};
use crate::rollout::plan::Policy;
use crate::rollout::ports::{HealthProbe, RequestCounts, Window};
use crate::rollout::restore::later;
use crate::rollout::timeline::{EventKind, StepReport, seconds};
use crate::rollout::traffic::Plan;
use crate::rollout::verdict::Verdict;

/// A failed health probe is probed again this many times, this far apart, before it counts: one
/// blip never rolls back, a candidate that is down still fails within the interval.
const HEALTH_RECHECKS: u32 = 2;
const HEALTH_RECHECK_GAP: Duration = Duration::from_secs(2);

/// The judge's state across the steps of one rollout.
#[derive(Debug, Clone, Default)]
pub(super) struct JudgeRun {
    /// Stable's counts over the hour before the rollout (none when that query failed).
    pub baseline: RequestCounts,
    /// Stable's latencies over the same hour, when the policy limits latency.
    pub baseline_latency: LatencyHistogram,
    /// When the first step started: the sequential test counts from here.
    pub started: Option<Instant>,
    /// The counter rule's failed checks.
    pub failed_checks: u32,
    /// Failed metrics queries in a row.
    pub errors_in_a_row: u32,
    /// The candidate failed a health check (before traffic or in a step): when stable fails
    /// too after the rollback, the service is to blame, not the candidate.
    pub candidate_unhealthy: bool,
    /// The counts since the rollout started at its last look (candidate, stable): a step's own
    /// counts are what its looks add to those of the steps before it.
    pub counted: (RequestCounts, RequestCounts),
    /// `counted` when this step started.
    pub counted_before_step: (RequestCounts, RequestCounts),
    /// A hold ran out with nobody's `promote` (and `--on-pause-timeout rollback`).
    pub pause_expired: bool,
}

impl Engine<'_> {
    /// One health check at 0% traffic; a refused connection gets two more tries, since a new tag
    /// URL can take a moment to route. `None`: interrupted.
    pub(super) async fn preflight_health(
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
            let (status, checked) = self.check_health(None, url, expectations).await?;
            verdict = checked;
            if status.is_some() || verdict.is_pass() {
                break;
            }
        }
        Some(verdict)
    }

    /// Returns the HTTP status when the endpoint answered at all, and the verdict; `None` when
    /// interrupted.
    pub(super) async fn check_health(
        &mut self,
        step: Option<usize>,
        base: &str,
        expectations: &Expectations,
    ) -> Option<(Option<u16>, Verdict)> {
        let url = expectations.url_for(base);
        let health = self.ports.health;
        let service_url = self
            .last_seen
            .as_ref()
            .and_then(|service| service.uri.clone());
        let probe = HealthProbe {
            url: &url,
            service_url: service_url.as_deref(),
            audience: expectations.audience.as_deref(),
        };
        let fetched = self.guard(health.fetch(&probe)).await?;
        let (status, verdict) = match fetched {
            Ok(response) => (Some(response.status), expectations.judge(&response)),
            Err(reason) => (None, Verdict::Fail(format!("no answer: {reason}"))),
        };
        self.emit(EventKind::HealthChecked {
            step,
            url,
            verdict: verdict.clone(),
        });
        Some((status, verdict))
    }

    /// Between checks, a read of the service tells whether it is still this rollout's: a person's
    /// `rollback` during a bake stops the rollout at the next check, not at its next write.
    pub(super) async fn still_owned(&mut self) -> Result<(), Stop> {
        let platform = self.ports.platform;
        match self.guard(platform.read_service()).await {
            None => Err(Stop::Interrupted),
            Some(Ok(service)) => {
                let verdict = still_ours(&service, &self.identity.id, &[&self.confirmed]);
                self.last_seen = Some(service);
                verdict.map_err(Stop::Aborted)
            }
            // The next write checks again; a read that fails now says nothing about ownership.
            Some(Err(_)) => Ok(()),
        }
    }

    /// Bakes one step until a decision, checking on the policy's interval. The report carries the
    /// last counts read and how the step ended.
    pub(super) async fn bake_step(
        &mut self,
        step: usize,
        percent: u8,
        plan: &Plan,
        policy: &Policy,
        candidate_url: &str,
    ) -> (Result<(), Stop>, StepReport) {
        let started = Instant::now();
        let rollout_started = *self.judge.started.get_or_insert(started);
        self.judge.counted_before_step = self.judge.counted;
        // Steps are numbered from 1 in the policy's list, whose last is the 100% step.
        let last_step = step == policy.steps.percents().len();
        let schedule = StepSchedule::new(policy, last_step);
        let mut look = Look {
            step_started: started,
            rollout_started,
            last_step,
            holding: false,
            number: 0,
        };
        let mut report = new_step_report(step, percent);
        let mut tick = Duration::ZERO;
        let mut hold: Option<Hold> = None;
        let mut ignored: Option<String> = None;
        let end = loop {
            look.number += 1;
            report.checks = look.number;
            let (since, decision) = match self
                .check_step(&look, &schedule, plan, policy, candidate_url, &mut report)
                .await
            {
                Ok(checked) => checked,
                Err(stop) => break Err(stop),
            };
            let decision = match decision {
                Decision::Fail(reason) if policy.report_only => {
                    self.ignore_gate(Some(step), reason, &mut ignored, since, policy)
                }
                decided => decided,
            };
            match decision {
                Decision::Pass
                    if hold.is_none()
                        && policy.pause.holds_at(percent)
                        && plan.promoted_at != Some(percent) =>
                {
                    match self.start_hold(step, percent, plan, policy).await {
                        Ok(started_hold) => {
                            look.holding = true;
                            hold = Some(started_hold);
                        }
                        Err(stop) => break Err(stop),
                    }
                }
                Decision::Pass if hold.is_none() => break Ok(()),
                Decision::Fail(reason) => break Err(Stop::Failed(reason)),
                Decision::Error(reason) => break Err(Stop::Error(reason)),
                Decision::Pass | Decision::KeepBaking => {}
            }
            let wake = match &hold {
                None => later(started, schedule.next_look(since, &mut tick)),
                Some(held) => match self.hold_end(held, step, percent, policy).await {
                    Err(stop) => break Err(stop),
                    Ok(Some(HoldEnd::GoOn)) => break Ok(()),
                    Ok(Some(HoldEnd::TimedOut(reason))) => {
                        self.judge.pause_expired = true;
                        break Err(Stop::Failed(reason));
                    }
                    Ok(None) => self.next_hold_look(held, policy),
                },
            };
            if self.guard(tokio::time::sleep_until(wake)).await.is_none() {
                break Err(Stop::Interrupted);
            }
        };
        report.duration_s = seconds(started.elapsed());
        let (verdict, reason) = match &end {
            Ok(()) if ignored.is_some() => ("ignored", ignored),
            Ok(()) => ("pass", None),
            Err(Stop::Failed(reason) | Stop::Error(reason)) => ("fail", Some(reason.clone())),
            Err(Stop::Aborted(reason)) => ("aborted", Some(reason.clone())),
            Err(Stop::Interrupted) => ("interrupted", Some("interrupted".to_string())),
        };
        report.verdict = verdict;
        report.reason = reason;
        (end, report)
    }

    /// One check: still ours, candidate health, then (when there is a window) the error counts.
    /// Returns how far into the step it was measured and the decision; `Err` when interrupted or
    /// no longer owned.
    async fn check_step(
        &mut self,
        look: &Look,
        schedule: &StepSchedule,
        plan: &Plan,
        policy: &Policy,
        candidate_url: &str,
        report: &mut StepReport,
    ) -> Result<(Duration, Decision), Stop> {
        self.still_owned().await?;
        let health = self
            .probe_with_rechecks(report.step, candidate_url, &policy.health)
            .await
            .ok_or(Stop::Interrupted)?;
        let since = look.step_started.elapsed();
        let percent = report.percent;
        let decision = |errors: &Errors, errors_in_a_row: u32| {
            decide(
                &health,
                errors,
                schedule.out_of_time(since) && !look.holding,
                errors_in_a_row,
                percent,
                policy.step_deadline(),
            )
        };
        if health.is_fail() {
            report.health = "fail";
            self.judge.candidate_unhealthy = true;
            return Ok((
                since,
                decision(&Errors::Waiting, self.judge.errors_in_a_row),
            ));
        }
        report.health = "pass";
        let phase = schedule.phase(since);
        let errors = match schedule.visible_until(look.number, since) {
            None if phase == StepPhase::Baking => Errors::Waiting,
            visible => {
                let until = later(look.step_started, visible.unwrap_or_default());
                self.measure_errors(look, until, since, phase, plan, policy, report)
                    .await
                    .ok_or(Stop::Interrupted)?
            }
        };
        let judge = &mut self.judge;
        judge.errors_in_a_row = match errors {
            Errors::Unavailable(_) => judge.errors_in_a_row + 1,
            _ => 0,
        };
        Ok((since, decision(&errors, judge.errors_in_a_row)))
    }

    /// A health probe, probed again after a failure ([`HEALTH_RECHECKS`] times) before the
    /// failure counts. `None`: interrupted.
    async fn probe_with_rechecks(
        &mut self,
        step: usize,
        url: &str,
        expectations: &Expectations,
    ) -> Option<Verdict> {
        let (_, mut verdict) = self.check_health(Some(step), url, expectations).await?;
        for _ in 0..HEALTH_RECHECKS {
            if !verdict.is_fail() {
                break;
            }
            self.guard(tokio::time::sleep(HEALTH_RECHECK_GAP)).await?;
            verdict = self.check_health(Some(step), url, expectations).await?.1;
        }
        Some(verdict)
    }

    /// Reads and judges the counts visible up to `until`, recording them in the report and the
    /// timeline. `None`: interrupted.
    #[allow(clippy::too_many_arguments)]
    async fn measure_errors(
        &mut self,
        look: &Look,
        until: Instant,
        since: Duration,
        phase: StepPhase,
        plan: &Plan,
        policy: &Policy,
        report: &mut StepReport,
    ) -> Option<Errors> {
        // The sequential test counts from the rollout's start, the other rules from the step's.
        let from = match policy.judge {
            JudgeKind::Sequential => look.rollout_started,
            JudgeKind::Threshold | JudgeKind::Counter => look.step_started,
        };
        let window = Window {
            start: self.clock.wall(from),
            end: self.clock.wall(until.max(from)),
        };
        let counts = self
            .guard(self.ports.metrics.request_counts(window))
            .await?;
        let by_revision = match counts {
            Ok(by_revision) => by_revision,
            Err(error) => return Some(Errors::Unavailable(error.to_string())),
        };
        let candidate = count_of(&by_revision, &plan.candidate);
        let stable = count_of(&by_revision, &plan.stable);
        let counts = Counts {
            step_candidate: candidate,
            rollout_candidate: candidate,
            stable: stable.plus(self.judge.baseline),
            last_interval_candidate: candidate,
        };
        // The judge reads counts since the rollout started; a person reads a step's own.
        let (step_candidate, step_stable) = match policy.judge {
            JudgeKind::Sequential => {
                self.judge.counted = (candidate, stable);
                let (before_candidate, before_stable) = self.judge.counted_before_step;
                (
                    candidate.minus(before_candidate),
                    stable.minus(before_stable),
                )
            }
            JudgeKind::Threshold | JudgeKind::Counter => (candidate, stable),
        };
        report.candidate_requests = step_candidate.total;
        report.candidate_5xx = step_candidate.server_errors;
        report.error_rate = step_candidate.error_rate();
        report.stable_requests = step_stable.total;
        report.stable_5xx = step_stable.server_errors;
        let latency = match self.measure_latency(window, plan, policy).await? {
            Ok(checks) => checks,
            Err(error) => return Some(Errors::Unavailable(error)),
        };
        let judged = judge_step(
            &policy.judge_settings(),
            &counts,
            phase,
            since,
            look.last_step,
            &mut self.judge.failed_checks,
        );
        let verdict = with_latency(judged.verdict, &latency, phase);
        report.latency = latency.clone();
        self.emit(EventKind::ErrorsChecked {
            step: report.step,
            candidate,
            stable,
            error_rate: candidate.error_rate(),
            verdict: verdict.clone(),
            phase,
            bake_progress: (since, policy.bake),
            comparison: judged.comparison,
            latency,
        });
        Some(Errors::Judged(verdict))
    }

    /// Reads the latencies of `window` and checks each `--max-latency` quantile: no query
    /// without limits. `None`: interrupted; `Some(Err)`: the query failed.
    async fn measure_latency(
        &mut self,
        window: Window,
        plan: &Plan,
        policy: &Policy,
    ) -> Option<Result<Vec<LatencyCheck>, String>> {
        if policy.latency.is_empty() {
            return Some(Ok(Vec::new()));
        }
        let read = self.guard(self.ports.metrics.latencies(window)).await?;
        let by_revision = match read {
            Ok(by_revision) => by_revision,
            Err(error) => return Some(Err(format!("latencies: {error}"))),
        };
        let candidate = by_revision
            .get(&plan.candidate)
            .cloned()
            .unwrap_or_default();
        let stable = by_revision
            .get(&plan.stable)
            .cloned()
            .unwrap_or_default()
            .plus(&self.judge.baseline_latency);
        Some(Ok(policy
            .latency
            .iter()
            .map(|limit| check_latency(limit, &candidate, &stable, policy.margin))
            .collect()))
    }

    /// Stable's counts over the hour before the rollout, the sequential test's baseline; a
    /// failed query leaves none (the test then only has what the rollout itself sees).
    pub(super) async fn read_baseline(&mut self, plan: &Plan, policy: &Policy) -> Option<()> {
        let now = Instant::now();
        let visible = now.checked_sub(policy.metrics_delay).unwrap_or(now);
        let window = Window {
            start: self
                .clock
                .wall(visible.checked_sub(STABLE_HISTORY).unwrap_or(visible)),
            end: self.clock.wall(visible),
        };
        if !policy.latency.is_empty() {
            let latencies = self.guard(self.ports.metrics.latencies(window)).await?;
            // Like the counts: without a baseline, stable is known from the rollout alone.
            if let Some(stable) = latencies.ok().and_then(|mut l| l.remove(&plan.stable)) {
                self.judge.baseline_latency = stable;
            }
        }
        if policy.judge != JudgeKind::Sequential {
            return Some(());
        }
        let counts = self
            .guard(self.ports.metrics.request_counts(window))
            .await?;
        if let Ok(by_revision) = counts {
            self.judge.baseline = count_of(&by_revision, &plan.stable);
            let rate = self.judge.baseline.total as f64 / STABLE_HISTORY.as_secs_f64();
            self.emit(forecast(policy, rate));
        }
        Some(())
    }
}

/// How much of stable's past the sequential test starts from.
pub const STABLE_HISTORY: Duration = Duration::from_secs(60 * 60);

/// One look's place in its step and rollout.
struct Look {
    step_started: Instant,
    rollout_started: Instant,
    last_step: bool,
    /// Held after passing (`--pause-at`): the step has no deadline any more.
    holding: bool,
    /// 1 for a step's first look.
    number: u32,
}

fn new_step_report(step: usize, percent: u8) -> StepReport {
    StepReport {
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
        latency: Vec::new(),
    }
}

fn count_of(
    counts: &std::collections::BTreeMap<String, RequestCounts>,
    revision: &str,
) -> RequestCounts {
    counts.get(revision).copied().unwrap_or_default()
}
