//! `simulate`: a rollout policy run over seeded synthetic traffic with the engine's own step
//! schedule and judges, summarised as rates: rollbacks, promotions, no data, time, exposure.

pub(crate) mod svg;
pub(crate) mod traffic;

use std::time::Duration;

use serde::Serialize;

use crate::rollout::check::{Decision, Errors, StepSchedule, decide};
use crate::rollout::judge::{Counts, JudgeKind, StepPhase, judge_step};
use crate::rollout::plan::Policy;
use crate::rollout::ports::RequestCounts;
use crate::rollout::verdict::Verdict;
use traffic::{Draw, Traffic};

/// How one simulated rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Promoted,
    /// A gate failed on what the candidate did.
    RolledBack,
    /// A gate failed for want of requests to judge.
    NoData,
}

/// One simulated rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunResult {
    pub ending: Ending,
    /// From the first traffic step to the decision.
    pub seconds: f64,
    /// Failed candidate requests beyond what stable's rate would have failed of them.
    pub exposure: f64,
}

/// Runs one rollout of `policy` over the traffic of run `run` under `seed`, with the engine's step
/// schedule and judge; `history` of stable traffic comes before it (the sequential baseline).
pub fn run_once(
    policy: &Policy,
    traffic: Traffic,
    seed: u64,
    run: u64,
    history: Duration,
) -> RunResult {
    let mut rollout = Rollout {
        draw: Draw::new(traffic, seed, run, history.as_secs()),
        failed_checks: 0,
    };
    let percents = policy.steps.percents();
    let mut elapsed = Duration::ZERO;
    for (index, &percent) in percents.iter().enumerate() {
        let last_step = index + 1 == percents.len();
        match rollout.bake(policy, percent, elapsed, last_step) {
            Ok(ended) => elapsed = ended,
            Err((ending, at)) => return finished(&mut rollout.draw, traffic, ending, at),
        }
    }
    finished(&mut rollout.draw, traffic, Ending::Promoted, elapsed)
}

/// One simulated rollout in progress: its traffic and the judge's tally.
struct Rollout {
    draw: Draw,
    failed_checks: u32,
}

impl Rollout {
    /// Bakes one step from `step_start` as the engine does: looks on the schedule, judges, and
    /// decides. `Ok`: when the step passed; `Err`: how and when the rollout ended.
    fn bake(
        &mut self,
        policy: &Policy,
        percent: u8,
        step_start: Duration,
        last_step: bool,
    ) -> Result<Duration, (Ending, Duration)> {
        self.draw.set_share(step_start.as_secs(), percent);
        let schedule = StepSchedule::new(policy, last_step);
        let (mut look, mut tick, mut since) = (0, Duration::ZERO, Duration::ZERO);
        loop {
            look += 1;
            let (errors, lacking) =
                self.look(policy, &schedule, look, step_start, since, last_step);
            let decision = decide(
                &Verdict::Pass,
                &errors,
                schedule.out_of_time(since),
                0,
                percent,
                policy.step_deadline(),
            );
            match decision {
                Decision::Pass => return Ok(step_start + since),
                Decision::KeepBaking => since = schedule.next_look(since, &mut tick),
                Decision::Fail(_) | Decision::Error(_) => {
                    let ending = if lacking {
                        Ending::NoData
                    } else {
                        Ending::RolledBack
                    };
                    return Err((ending, step_start + since));
                }
            }
        }
    }

    /// One look: the counts visible `since` into the step, judged; and whether a failure now
    /// would be for want of traffic.
    fn look(
        &mut self,
        policy: &Policy,
        schedule: &StepSchedule,
        look: u32,
        step_start: Duration,
        since: Duration,
        last_step: bool,
    ) -> (Errors, bool) {
        let phase = schedule.phase(since);
        let visible = match schedule.visible_until(look, since) {
            None if phase == StepPhase::Baking => return (Errors::Waiting, false),
            visible => visible.unwrap_or_default(),
        };
        let end = (step_start + visible).as_secs();
        let interval = policy.interval.as_secs().max(1);
        let (rollout_candidate, stable) = self.draw.window(0, end);
        let (step_candidate, _) = self.draw.window(step_start.as_secs(), end);
        let (last_interval_candidate, _) = self.draw.window(end.saturating_sub(interval), end);
        let counts = Counts {
            step_candidate,
            rollout_candidate,
            stable: stable.plus(self.draw.baseline),
            last_interval_candidate,
        };
        let judged = judge_step(
            &policy.judge_settings(),
            &counts,
            phase,
            since,
            last_step,
            &mut self.failed_checks,
        );
        (Errors::Judged(judged.verdict), judged.lacking_traffic)
    }
}

fn finished(draw: &mut Draw, traffic: Traffic, ending: Ending, at: Duration) -> RunResult {
    let (candidate, _) = draw.window(0, at.as_secs());
    RunResult {
        ending,
        seconds: at.as_secs_f64(),
        exposure: excess_failures(candidate, traffic.stable_errors),
    }
}

fn excess_failures(candidate: RequestCounts, stable_rate: f64) -> f64 {
    candidate.server_errors as f64 - candidate.total as f64 * stable_rate
}

/// Many runs of one scenario under one judge, as rates and quantiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub judge: JudgeKind,
    pub runs: u64,
    pub p_rollback: f64,
    pub p_promote: f64,
    pub p_no_data: f64,
    /// Time to decision (promotion or rollback) over all runs, seconds.
    pub median_s: f64,
    pub p90_s: f64,
    pub max_s: f64,
    /// Mean failed candidate requests beyond stable's rate, per rollout.
    pub exposure: f64,
}

/// Runs `runs` rollouts of `policy` over `traffic`, on every core; run `i` draws the same traffic
/// whatever the judge, so judges compare on the same draws.
pub fn summarise(
    policy: &Policy,
    traffic: Traffic,
    runs: u64,
    seed: u64,
    history: Duration,
) -> Summary {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut results: Vec<RunResult> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    (worker..runs)
                        .step_by(threads as usize)
                        .map(|run| run_once(policy, traffic, seed, run, history))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a simulation thread panicked"))
            .collect()
    });
    let share =
        |ending| results.iter().filter(|r| r.ending == ending).count() as f64 / runs.max(1) as f64;
    let (p_rollback, p_promote, p_no_data) = (
        share(Ending::RolledBack),
        share(Ending::Promoted),
        share(Ending::NoData),
    );
    results.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let quantile = |q: f64| {
        results
            .get(((results.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |r| r.seconds)
    };
    Summary {
        judge: policy.judge,
        runs,
        p_rollback,
        p_promote,
        p_no_data,
        median_s: quantile(0.5),
        p90_s: quantile(0.9),
        max_s: quantile(1.0),
        exposure: results.iter().map(|r| r.exposure).sum::<f64>() / runs.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traffic::ColdStart;

    fn traffic(rate: f64, stable: f64, candidate: f64) -> Traffic {
        Traffic {
            rate,
            stable_errors: stable,
            candidate_errors: candidate,
            cold_start: None,
        }
    }

    fn policy(judge: JudgeKind) -> Policy {
        Policy {
            judge,
            metrics_delay: Duration::ZERO,
            ..Policy::default()
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_healthy_candidate_is_promoted_after_every_bake() {
        let result = run_once(
            &policy(JudgeKind::Sequential),
            traffic(50.0, 0.01, 0.01),
            1,
            0,
            HOUR,
        );
        assert_eq!(result.ending, Ending::Promoted);
        assert_eq!(result.seconds, 1200.0, "four bakes of 5 minutes");
    }

    #[test]
    fn a_five_fold_regression_is_rolled_back_in_the_first_step() {
        let result = run_once(
            &policy(JudgeKind::Sequential),
            traffic(50.0, 0.01, 0.05),
            1,
            0,
            HOUR,
        );
        assert_eq!(result.ending, Ending::RolledBack);
        assert!(result.seconds <= 300.0, "{result:?}");
        assert!(result.exposure > 0.0);
    }

    #[test]
    fn a_silent_service_ends_for_want_of_data_after_one_more_bake() {
        let result = run_once(
            &policy(JudgeKind::Sequential),
            traffic(0.0, 0.01, 0.01),
            1,
            0,
            HOUR,
        );
        assert_eq!(result.ending, Ending::NoData);
        assert_eq!(result.seconds, 1500.0);
    }

    #[test]
    fn the_same_seed_gives_the_same_summary_and_judges_share_draws() {
        let scenario = traffic(5.0, 0.03, 0.06);
        let a = summarise(&policy(JudgeKind::Sequential), scenario, 40, 9, HOUR);
        let b = summarise(&policy(JudgeKind::Sequential), scenario, 40, 9, HOUR);
        assert_eq!(a, b);
        let threshold = summarise(&policy(JudgeKind::Threshold), scenario, 40, 9, HOUR);
        assert_eq!(threshold.judge, JudgeKind::Threshold);
        assert!((a.p_rollback + a.p_promote + a.p_no_data - 1.0).abs() < 1e-9);
    }

    #[test]
    fn cold_start_bursts_cost_exposure_but_not_a_rollback_of_a_good_candidate_by_themselves() {
        let bursty = Traffic {
            cold_start: Some(ColdStart {
                seconds: 20,
                extra_errors: 0.02,
            }),
            ..traffic(50.0, 0.01, 0.01)
        };
        let summary = summarise(&policy(JudgeKind::Sequential), bursty, 40, 3, HOUR);
        assert!(summary.exposure > 0.0, "{summary:?}");
        assert!(summary.p_rollback <= 0.1, "{summary:?}");
    }
}
