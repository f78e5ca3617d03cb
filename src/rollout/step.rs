//! One step's bake: measure (ownership, candidate health, error counts) on the policy's interval,
//! and a pure decision over each measurement: pass, fail, error, or keep baking.

use std::time::Duration;

use tokio::time::Instant;

use crate::rollout::engine::{Engine, Stop};
use crate::rollout::health_judge::Expectations;
use crate::rollout::judge::{StepPhase, judge_errors};
use crate::rollout::ownership::still_ours;
use crate::rollout::plan::Policy;
use crate::rollout::ports::{RequestCounts, Window};
use crate::rollout::restore::later;
use crate::rollout::timeline::{EventKind, StepReport, seconds};
use crate::rollout::traffic::Plan;
use crate::rollout::verdict::Verdict;

/// What the error-rate side of one check found.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Errors {
    /// No window to read yet (the first check, or metrics still delayed) while baking.
    Waiting,
    /// The counts were read and judged.
    Judged(Verdict),
    /// The metrics backend did not answer: says nothing about the candidate.
    Unavailable(String),
}

/// What one check decides.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decision {
    Pass,
    /// The candidate is to blame.
    Fail(String),
    /// Out of time on an unanswered metrics query: the backend is to blame (Argo's Error).
    Error(String),
    /// Inconclusive with time left: check again at the next interval.
    KeepBaking,
}

/// Decides one check from what it measured. `errors` is not looked at when health failed (it was
/// not measured); `out_of_time` says whether the step's deadline has passed.
pub(super) fn decide(
    health: &Verdict,
    errors: &Errors,
    out_of_time: bool,
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

/// The fixed instants of one step.
struct StepTimes {
    started: Instant,
    /// Past it, the step is judged rather than baked (bake plus the metrics delay).
    judge_at: Instant,
    deadline: Instant,
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
        let times = StepTimes {
            started,
            judge_at: later(later(started, policy.bake), policy.metrics_delay),
            deadline: later(started, policy.step_deadline()),
        };
        let mut report = new_step_report(step, percent);
        let mut next_check = started;
        let end = loop {
            report.checks += 1;
            let (now, decision) = match self
                .check_step(&times, plan, policy, candidate_url, &mut report)
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
            while next_check <= now {
                next_check = later(next_check, policy.interval);
            }
            let mut wake = next_check.min(times.deadline);
            if now < times.judge_at {
                wake = wake.min(times.judge_at);
            }
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
    /// Returns when it was measured and the decision; `Err` when interrupted or no longer owned.
    async fn check_step(
        &mut self,
        times: &StepTimes,
        plan: &Plan,
        policy: &Policy,
        candidate_url: &str,
        report: &mut StepReport,
    ) -> Result<(Instant, Decision), Stop> {
        self.still_owned().await?;
        let (_, health) = self
            .check_health(Some(report.step), candidate_url, &policy.health)
            .await
            .ok_or(Stop::Interrupted)?;
        let now = Instant::now();
        let out_of_time = now >= times.deadline;
        let percent = report.percent;
        let decision = |errors: &Errors| {
            decide(
                &health,
                errors,
                out_of_time,
                percent,
                policy.step_deadline(),
            )
        };
        if health.is_fail() {
            report.health = "fail";
            return Ok((now, decision(&Errors::Waiting)));
        }
        report.health = "pass";
        let phase = if now >= times.judge_at {
            StepPhase::Judging
        } else {
            StepPhase::Baking
        };
        let visible_until = now
            .checked_sub(policy.metrics_delay)
            .unwrap_or(times.started);
        // The first check of a step has no window yet: it only probes health.
        let nothing_to_read = report.checks == 1 || visible_until <= times.started;
        let errors = if nothing_to_read && phase == StepPhase::Baking {
            Errors::Waiting
        } else {
            let window = Window {
                start: self.clock.wall(times.started),
                end: self.clock.wall(visible_until.max(times.started)),
            };
            self.measure_errors(window, phase, plan, policy, report)
                .await
                .ok_or(Stop::Interrupted)?
        };
        Ok((now, decision(&errors)))
    }

    /// Reads and judges the counts of one window, recording them in the report and the
    /// timeline. `None`: interrupted.
    async fn measure_errors(
        &mut self,
        window: Window,
        phase: StepPhase,
        plan: &Plan,
        policy: &Policy,
        report: &mut StepReport,
    ) -> Option<Errors> {
        let counts = self
            .guard(self.ports.metrics.request_counts(window))
            .await?;
        let by_revision = match counts {
            Ok(by_revision) => by_revision,
            Err(error) => return Some(Errors::Unavailable(error.to_string())),
        };
        let candidate = count_of(&by_revision, &plan.candidate);
        let stable = count_of(&by_revision, &plan.stable);
        report.candidate_requests = candidate.total;
        report.candidate_5xx = candidate.server_errors;
        report.error_rate = candidate.error_rate();
        report.stable_requests = stable.total;
        report.stable_5xx = stable.server_errors;
        let verdict = judge_errors(candidate, policy.max_error_rate, policy.min_requests, phase);
        self.emit(EventKind::ErrorsChecked {
            step: report.step,
            candidate,
            stable,
            error_rate: candidate.error_rate(),
            verdict: verdict.clone(),
            phase,
        });
        Some(Errors::Judged(verdict))
    }
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
        decide(&health, &errors, out_of_time, 10, DEADLINE)
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
