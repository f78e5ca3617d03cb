//! `simulate`: a rollout policy run over seeded synthetic traffic with the engine's own step
//! schedule and judges, summarised as rates: rollbacks, promotions, no data, time, exposure.

pub(crate) mod svg;
pub(crate) mod traffic;

use std::time::Duration;

use serde::Serialize;

use crate::rollout::judge::{Counts, JudgeKind, StepPhase, judge_step};
use crate::rollout::plan::Policy;
use crate::rollout::ports::RequestCounts;
use crate::rollout::step::{Decision, Errors, StepSchedule, decide};
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
    let mut draw = Draw::new(traffic, seed, run, history.as_secs());
    let settings = policy.judge_settings();
    let percents = policy.steps.percents();
    let interval = policy.interval.as_secs().max(1);
    let mut failed_checks = 0;
    let mut elapsed = Duration::ZERO;
    for (index, &percent) in percents.iter().enumerate() {
        let last_step = index + 1 == percents.len();
        let step_start = elapsed;
        draw.set_share(step_start.as_secs(), percent);
        let schedule = StepSchedule::new(policy, last_step);
        let (mut look, mut tick, mut since) = (0, Duration::ZERO, Duration::ZERO);
        loop {
            look += 1;
            let phase = schedule.phase(since);
            let mut lacking = false;
            let errors = match schedule.visible_until(look, since) {
                None if phase == StepPhase::Baking => Errors::Waiting,
                visible => {
                    let end = (step_start + visible.unwrap_or_default()).as_secs();
                    let (rollout_candidate, stable) = draw.window(0, end);
                    let (step_candidate, _) = draw.window(step_start.as_secs(), end);
                    let (last_interval_candidate, _) =
                        draw.window(end.saturating_sub(interval), end);
                    let counts = Counts {
                        step_candidate,
                        rollout_candidate,
                        stable: stable.plus(draw.baseline),
                        last_interval_candidate,
                    };
                    let judged = judge_step(
                        &settings,
                        &counts,
                        phase,
                        since,
                        last_step,
                        &mut failed_checks,
                    );
                    lacking = judged.lacking_traffic;
                    Errors::Judged(judged.verdict)
                }
            };
            let decision = decide(
                &Verdict::Pass,
                &errors,
                schedule.out_of_time(since),
                0,
                percent,
                policy.step_deadline(),
            );
            match decision {
                Decision::Pass => break,
                Decision::KeepBaking => since = schedule.next_look(since, &mut tick),
                Decision::Fail(_) | Decision::Error(_) => {
                    let ending = if lacking {
                        Ending::NoData
                    } else {
                        Ending::RolledBack
                    };
                    return finished(&mut draw, traffic, ending, step_start + since);
                }
            }
        }
        elapsed = step_start + since;
    }
    finished(&mut draw, traffic, Ending::Promoted, elapsed)
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
