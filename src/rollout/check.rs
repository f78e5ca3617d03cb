//! One check of a step, pure: when to look, judge and give up (`StepSchedule`), and what one
//! look decides: pass, fail, error, or keep baking. The engine and `simulate` share both.

use std::time::Duration;

use crate::rollout::judge::{JudgeKind, StepPhase};
use crate::rollout::plan::Policy;
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
