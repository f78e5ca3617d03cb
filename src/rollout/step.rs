//! One step's bake: measure (ownership, candidate health, error counts) on the policy's interval,
//! and a pure decision over each measurement: pass, fail, error, or keep baking.

use std::time::Duration;

use tokio::time::Instant;

use crate::rollout::engine::{Engine, Stop};
use crate::rollout::health_judge::Expectations;
use crate::rollout::judge::{Counts, JudgeKind, StepPhase, judge_step};
use crate::rollout::ownership::still_ours;
use crate::rollout::plan::Policy;
use crate::rollout::ports::{RequestCounts, Window};
use crate::rollout::restore::later;
use crate::rollout::timeline::{EventKind, StepReport, seconds};
use crate::rollout::traffic::Plan;
use crate::rollout::verdict::Verdict;

/// What the error-rate side of one check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Errors {
    /// No window to read yet (the first check, or metrics still delayed) while baking.
    Waiting,
    /// The counts were read and judged.
    Judged(Verdict),
    /// The metrics backend did not answer: says nothing about the candidate.
    Unavailable(String),
}

/// What one check decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Pass,
    /// The candidate is to blame.
    Fail(String),
    /// Out of time on an unanswered metrics query: the backend is to blame (Argo's Error).
    Error(String),
    /// Inconclusive with time left: check again at the next interval.
    KeepBaking,
}

/// Metrics queries that may fail in a row before the step ends as an API failure (Argo's
/// consecutive error limit): a backend down for two minutes says nothing about the candidate.
pub const METRICS_ERROR_LIMIT: u32 = 4;

/// Decides one check from what it measured. `errors` is not looked at when health failed (it was
/// not measured); `out_of_time` says whether the step's deadline has passed; `errors_in_a_row`
/// counts this check's failed metrics query with the ones just before it.
pub fn decide(
    health: &Verdict,
    errors: &Errors,
    out_of_time: bool,
    errors_in_a_row: u32,
    percent: u8,
    step_deadline: Duration,
) -> Decision {
    if let Verdict::Fail(reason) = health {
        return Decision::Fail(format!("candidate health check failed: {reason}"));
    }
    let inconclusive = match errors {
        Errors::Judged(Verdict::Fail(reason)) => return Decision::Fail(reason.clone()),
        Errors::Judged(Verdict::Pass) => return Decision::Pass,
        Errors::Judged(Verdict::Inconclusive(reason)) => reason.clone(),
        Errors::Waiting => "waiting for metrics to arrive".to_string(),
        Errors::Unavailable(error) if errors_in_a_row >= METRICS_ERROR_LIMIT => {
            return Decision::Error(format!(
                "the metrics query failed {errors_in_a_row} times in a row: {error}"
            ));
        }
        Errors::Unavailable(error) => format!("metrics unavailable: {error}"),
    };
    if !out_of_time {
        return Decision::KeepBaking;
    }
    let reason = format!(
        "step {percent}% stayed inconclusive until its deadline ({}): {inconclusive}",
        humantime::format_duration(step_deadline)
    );
    match errors {
        Errors::Unavailable(_) => Decision::Error(reason),
        _ => Decision::Fail(reason),
    }
}

/// When a step looks and decides, as offsets from its start: the same for the engine and for
/// `simulate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSchedule {
    interval: Duration,
    /// From here on the step is judged rather than baked.
    judge_after: Duration,
    deadline: Duration,
    metrics_delay: Duration,
}

impl StepSchedule {
    pub fn new(policy: &Policy, last_step: bool) -> Self {
        // The sequential test counts from the rollout's start, so requests still in the metrics
        // pipeline at the end of a step are judged with the next one; the last step has no next
        // one, and the threshold rule judges each step's own window: both wait for it.
        let judge_after = match policy.judge {
            JudgeKind::Sequential if !last_step => policy.bake,
            _ => policy.bake.saturating_add(policy.metrics_delay),
        };
        StepSchedule {
            interval: policy.interval,
            judge_after,
            deadline: policy.step_deadline(),
            metrics_delay: policy.metrics_delay,
        }
    }

    pub fn phase(&self, since_start: Duration) -> StepPhase {
        if since_start >= self.judge_after {
            StepPhase::Judging
        } else {
            StepPhase::Baking
        }
    }

    pub fn out_of_time(&self, since_start: Duration) -> bool {
        since_start >= self.deadline
    }

    /// How far into the step the metrics can show requests at `since_start`, or `None` when
    /// there is nothing to read yet (a step's first look only probes health).
    pub fn visible_until(&self, look: u32, since_start: Duration) -> Option<Duration> {
        let visible = since_start.saturating_sub(self.metrics_delay);
        (look > 1 && !visible.is_zero()).then_some(visible)
    }

    /// The next look after one at `since_start`: the next interval tick (advancing `tick` past
    /// it), or sooner the instant judging starts, never past the deadline.
    pub fn next_look(&self, since_start: Duration, tick: &mut Duration) -> Duration {
        while *tick <= since_start {
            *tick = tick.saturating_add(self.interval.max(Duration::from_millis(1)));
        }
        let mut wake = (*tick).min(self.deadline);
        if since_start < self.judge_after {
            wake = wake.min(self.judge_after);
        }
        wake
    }
}

/// A failed health probe is probed again this many times, this far apart, before it counts: one
/// blip never rolls back, a candidate that is down still fails within the interval.
const HEALTH_RECHECKS: u32 = 2;
const HEALTH_RECHECK_GAP: Duration = Duration::from_secs(2);

/// The judge's state across the steps of one rollout.
#[derive(Debug, Clone, Default)]
pub(super) struct JudgeRun {
    /// Stable's counts over the hour before the rollout (none when that query failed).
    pub baseline: RequestCounts,
    /// When the first step started: the sequential test counts from here.
    pub started: Option<Instant>,
    /// The counter rule's failed checks.
    pub failed_checks: u32,
    /// Failed metrics queries in a row.
    pub errors_in_a_row: u32,
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
            let (answered, checked) = self.check_health(None, url, expectations).await?;
            verdict = checked;
            if answered || verdict.is_pass() {
                break;
            }
        }
        Some(verdict)
    }

    /// Returns whether the endpoint answered at all, and the verdict; `None` when interrupted.
    pub(super) async fn check_health(
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

    /// Between checks, a read of the service tells whether it is still this rollout's: a person's
    /// `rollback` during a bake stops the rollout at the next check, not at its next write.
    async fn still_owned(&mut self) -> Result<(), Stop> {
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
        // Steps are numbered from 1 in the policy's list, whose last is the 100% step.
        let last_step = step == policy.steps.percents().len();
        let schedule = StepSchedule::new(policy, last_step);
        let mut look = Look {
            step_started: started,
            rollout_started,
            last_step,
            number: 0,
        };
        let mut report = new_step_report(step, percent);
        let mut tick = Duration::ZERO;
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
            match decision {
                Decision::Pass => break Ok(()),
                Decision::Fail(reason) => break Err(Stop::Failed(reason)),
                Decision::Error(reason) => break Err(Stop::Error(reason)),
                Decision::KeepBaking => {}
            }
            let wake = later(started, schedule.next_look(since, &mut tick));
            if self.guard(tokio::time::sleep_until(wake)).await.is_none() {
                break Err(Stop::Interrupted);
            }
        };
        report.duration_s = seconds(started.elapsed());
        let (verdict, reason) = match &end {
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
        let judge = &mut self.judge;
        let decision = |errors: &Errors, errors_in_a_row: u32| {
            decide(
                &health,
                errors,
                schedule.out_of_time(since),
                errors_in_a_row,
                percent,
                policy.step_deadline(),
            )
        };
        if health.is_fail() {
            report.health = "fail";
            return Ok((since, decision(&Errors::Waiting, judge.errors_in_a_row)));
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
        report.candidate_requests = candidate.total;
        report.candidate_5xx = candidate.server_errors;
        report.error_rate = candidate.error_rate();
        report.stable_requests = stable.total;
        report.stable_5xx = stable.server_errors;
        let judged = judge_step(
            &policy.judge_settings(),
            &counts,
            phase,
            since,
            look.last_step,
            &mut self.judge.failed_checks,
        );
        self.emit(EventKind::ErrorsChecked {
            step: report.step,
            candidate,
            stable,
            error_rate: candidate.error_rate(),
            verdict: judged.verdict.clone(),
            phase,
            comparison: judged.comparison,
        });
        Some(Errors::Judged(judged.verdict))
    }

    /// Stable's counts over the hour before the rollout, the sequential test's baseline; a
    /// failed query leaves none (the test then only has what the rollout itself sees).
    pub(super) async fn read_baseline(&mut self, plan: &Plan, policy: &Policy) -> Option<()> {
        if policy.judge != JudgeKind::Sequential {
            return Some(());
        }
        let now = Instant::now();
        let visible = now.checked_sub(policy.metrics_delay).unwrap_or(now);
        let window = Window {
            start: self
                .clock
                .wall(visible.checked_sub(STABLE_HISTORY).unwrap_or(visible)),
            end: self.clock.wall(visible),
        };
        let counts = self
            .guard(self.ports.metrics.request_counts(window))
            .await?;
        if let Ok(by_revision) = counts {
            self.judge.baseline = count_of(&by_revision, &plan.stable);
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
    }
}

fn count_of(
    counts: &std::collections::BTreeMap<String, RequestCounts>,
    revision: &str,
) -> RequestCounts {
    counts.get(revision).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(600);

    fn decide_at(health: Verdict, errors: Errors, out_of_time: bool) -> Decision {
        decide(&health, &errors, out_of_time, 1, 10, DEADLINE)
    }

    fn policy(judge: JudgeKind) -> Policy {
        Policy {
            judge,
            bake: Duration::from_secs(300),
            interval: Duration::from_secs(30),
            metrics_delay: Duration::from_secs(180),
            ..Policy::default()
        }
    }

    #[test]
    fn the_sequential_judge_ends_a_step_at_its_bake_but_the_last_one_waits_for_its_requests() {
        let middle = StepSchedule::new(&policy(JudgeKind::Sequential), false);
        let last = StepSchedule::new(&policy(JudgeKind::Sequential), true);
        let threshold = StepSchedule::new(&policy(JudgeKind::Threshold), false);
        let at = Duration::from_secs;
        assert_eq!(middle.phase(at(300)), StepPhase::Judging);
        assert_eq!(last.phase(at(300)), StepPhase::Baking);
        assert_eq!(last.phase(at(480)), StepPhase::Judging);
        assert_eq!(threshold.phase(at(479)), StepPhase::Baking);
        assert!(!middle.out_of_time(at(779)) && middle.out_of_time(at(780)));
    }

    #[test]
    fn looks_come_every_interval_and_at_the_instant_judging_starts() {
        let schedule = StepSchedule::new(&policy(JudgeKind::Threshold), false);
        let mut tick = Duration::ZERO;
        let mut since = Duration::ZERO;
        let mut looks = Vec::new();
        while since < Duration::from_secs(800) && looks.len() < 40 {
            since = schedule.next_look(since, &mut tick);
            looks.push(since.as_secs());
            if schedule.out_of_time(since) {
                break;
            }
        }
        assert_eq!(&looks[..3], &[30, 60, 90]);
        assert!(looks.contains(&480), "the judging instant: {looks:?}");
        assert_eq!(looks.last(), Some(&780), "the deadline ends it: {looks:?}");
    }

    #[test]
    fn the_first_look_and_delayed_metrics_have_nothing_to_read() {
        let schedule = StepSchedule::new(&policy(JudgeKind::Sequential), false);
        let at = Duration::from_secs;
        assert_eq!(schedule.visible_until(1, at(0)), None);
        assert_eq!(
            schedule.visible_until(3, at(60)),
            None,
            "still inside the delay"
        );
        assert_eq!(schedule.visible_until(8, at(210)), Some(at(30)));
    }

    #[test]
    fn a_run_of_failed_metrics_queries_ends_the_step_as_an_api_failure() {
        let unavailable = Errors::Unavailable("HTTP 503".into());
        assert_eq!(
            decide(
                &Verdict::Pass,
                &unavailable,
                false,
                METRICS_ERROR_LIMIT - 1,
                10,
                DEADLINE
            ),
            Decision::KeepBaking
        );
        assert!(matches!(
            decide(&Verdict::Pass, &unavailable, false, METRICS_ERROR_LIMIT, 10, DEADLINE),
            Decision::Error(reason) if reason.contains("4 times in a row")
        ));
    }

    #[test]
    fn a_failed_health_check_fails_the_step_whatever_the_metrics() {
        let failed = decide_at(
            Verdict::Fail("HTTP 500".into()),
            Errors::Judged(Verdict::Pass),
            false,
        );
        assert_eq!(
            failed,
            Decision::Fail("candidate health check failed: HTTP 500".into())
        );
    }

    #[test]
    fn judged_errors_pass_or_fail_at_once_even_past_the_deadline() {
        for out_of_time in [false, true] {
            assert_eq!(
                decide_at(Verdict::Pass, Errors::Judged(Verdict::Pass), out_of_time),
                Decision::Pass
            );
            assert_eq!(
                decide_at(
                    Verdict::Inconclusive("no answer yet".into()),
                    Errors::Judged(Verdict::Fail("5xx 12%".into())),
                    out_of_time
                ),
                Decision::Fail("5xx 12%".into())
            );
        }
    }

    #[test]
    fn inconclusive_keeps_baking_until_the_deadline() {
        for errors in [
            Errors::Waiting,
            Errors::Unavailable("503".into()),
            Errors::Judged(Verdict::Inconclusive("too few requests".into())),
        ] {
            assert_eq!(
                decide_at(Verdict::Pass, errors, false),
                Decision::KeepBaking
            );
        }
    }

    #[test]
    fn out_of_time_on_unanswered_metrics_is_an_error_not_a_verdict_on_the_candidate() {
        assert_eq!(
            decide_at(Verdict::Pass, Errors::Unavailable("HTTP 503".into()), true),
            Decision::Error(
                "step 10% stayed inconclusive until its deadline (10m): metrics unavailable: \
                 HTTP 503"
                    .into()
            )
        );
        assert_eq!(
            decide_at(
                Verdict::Pass,
                Errors::Judged(Verdict::Inconclusive("too few requests".into())),
                true
            ),
            Decision::Fail(
                "step 10% stayed inconclusive until its deadline (10m): too few requests".into()
            )
        );
        assert_eq!(
            decide_at(Verdict::Pass, Errors::Waiting, true),
            Decision::Fail(
                "step 10% stayed inconclusive until its deadline (10m): waiting for metrics to \
                 arrive"
                    .into()
            )
        );
    }
}
