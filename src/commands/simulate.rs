//! `shiftgate simulate`: a policy run over seeded synthetic traffic (the built-in matrix, or given
//! scenarios) with the engine's own judges; prints each judge's rates, times and exposure.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::SimulateArgs;
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context};
use crate::exit::ExitCode;
use crate::rollout::judge::{JudgeKind, percent};
use crate::rollout::plan::Policy;
use crate::simulate::svg::JudgePoint;
use crate::simulate::traffic::Traffic;
use crate::simulate::{Summary, summarise};

/// What a scenario of the built-in matrix must show to count as met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Bound {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rollback: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rollback: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_promote: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_no_data: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_no_data: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_median_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_p90_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_s: Option<f64>,
}

impl Bound {
    pub fn met_by(&self, s: &Summary) -> bool {
        let at_most = |limit: Option<f64>, value: f64| limit.is_none_or(|l| value <= l + 1e-12);
        let at_least = |limit: Option<f64>, value: f64| limit.is_none_or(|l| value >= l - 1e-12);
        at_most(self.max_rollback, s.p_rollback)
            && at_least(self.min_rollback, s.p_rollback)
            && at_least(self.min_promote, s.p_promote)
            && at_most(self.max_no_data, s.p_no_data)
            && at_least(self.min_no_data, s.p_no_data)
            && at_most(self.max_median_s, s.median_s)
            && at_most(self.max_p90_s, s.p90_s)
            && at_most(self.max_s, s.max_s)
    }

    /// The bound as people write it: `P(rollback) ≥ 97%, median ≤ 900 s`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut rate = |name: &str, sign: &str, value: Option<f64>| {
            if let Some(value) = value {
                parts.push(format!("{name} {sign} {}", percent(value)));
            }
        };
        rate("P(rollback)", "≤", self.max_rollback);
        rate("P(rollback)", "≥", self.min_rollback);
        rate("P(promote)", "≥", self.min_promote);
        rate("no data", "≤", self.max_no_data);
        rate("no data", "≥", self.min_no_data);
        for (name, value) in [
            ("median", self.max_median_s),
            ("p90", self.max_p90_s),
            ("decided by", self.max_s),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name} ≤ {value:.0} s"));
            }
        }
        parts.join(", ")
    }
}

/// A named scenario of the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub name: &'static str,
    pub traffic: Traffic,
    pub bound: Option<Bound>,
}

const fn traffic(rate: f64, stable_errors: f64, candidate_errors: f64) -> Traffic {
    Traffic {
        rate,
        stable_errors,
        candidate_errors,
        cold_start: None,
    }
}

const NONE: Bound = Bound {
    max_rollback: None,
    min_rollback: None,
    min_promote: None,
    max_no_data: None,
    min_no_data: None,
    max_median_s: None,
    max_p90_s: None,
    max_s: None,
};

const fn rollback_at_most(rate: f64) -> Bound {
    Bound {
        max_rollback: Some(rate),
        ..NONE
    }
}

const fn rollback_at_least(rate: f64, median_s: Option<f64>) -> Bound {
    Bound {
        min_rollback: Some(rate),
        max_median_s: median_s,
        ..NONE
    }
}

/// The matrix issue 9 holds the judge to: quiet and busy services, healthy and regressed
/// candidates, near the cap and at the margin.
pub const MATRIX: [Scenario; 15] = [
    Scenario {
        name: "A1",
        traffic: traffic(50.0, 0.045, 0.045),
        bound: Some(rollback_at_most(0.02)),
    },
    Scenario {
        name: "A2",
        traffic: traffic(5.0, 0.045, 0.045),
        bound: Some(rollback_at_most(0.02)),
    },
    Scenario {
        name: "A3",
        traffic: traffic(5.0, 0.03, 0.03),
        bound: Some(rollback_at_most(0.02)),
    },
    Scenario {
        name: "A4",
        traffic: traffic(50.0, 0.03, 0.0375),
        bound: Some(rollback_at_most(0.02)),
    },
    Scenario {
        name: "A5",
        traffic: traffic(0.2, 0.01, 0.01),
        bound: Some(Bound {
            min_promote: Some(0.97),
            max_no_data: Some(0.01),
            ..NONE
        }),
    },
    Scenario {
        name: "A6",
        traffic: traffic(0.05, 0.01, 0.01),
        bound: Some(Bound {
            min_no_data: Some(0.95),
            max_s: Some(1500.0),
            ..NONE
        }),
    },
    Scenario {
        name: "A7",
        traffic: traffic(50.0, 0.01, 0.02),
        bound: Some(rollback_at_least(0.97, Some(900.0))),
    },
    Scenario {
        name: "A8",
        traffic: traffic(50.0, 0.01, 0.05),
        bound: Some(rollback_at_least(0.99, Some(120.0))),
    },
    Scenario {
        name: "A9",
        traffic: traffic(5.0, 0.01, 0.05),
        bound: Some(Bound {
            min_rollback: Some(0.98),
            max_median_s: Some(600.0),
            max_p90_s: Some(900.0),
            ..NONE
        }),
    },
    Scenario {
        name: "A10",
        traffic: traffic(5.0, 0.045, 0.09),
        bound: Some(rollback_at_least(0.98, None)),
    },
    Scenario {
        name: "A11",
        traffic: traffic(50.0, 0.001, 0.01),
        bound: Some(rollback_at_least(0.98, Some(600.0))),
    },
    Scenario {
        name: "A12",
        traffic: traffic(1.0, 0.03, 0.15),
        bound: Some(rollback_at_least(0.98, Some(720.0))),
    },
    Scenario {
        name: "A13",
        traffic: traffic(0.2, 0.03, 0.30),
        bound: Some(rollback_at_least(0.98, None)),
    },
    Scenario {
        name: "A14",
        traffic: traffic(500.0, 0.01, 0.01),
        bound: Some(Bound {
            max_rollback: Some(0.02),
            max_median_s: Some(1200.0),
            ..NONE
        }),
    },
    Scenario {
        name: "A15",
        traffic: traffic(500.0, 0.01, 0.02),
        bound: Some(rollback_at_least(0.99, Some(300.0))),
    },
];

/// `shiftgate simulate --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulateResult {
    /// `met` (every bound of the built-in matrix held for the policy's judge), `missed`, or
    /// `done` (scenarios without bounds).
    pub outcome: &'static str,
    pub judge: JudgeKind,
    pub runs: u64,
    pub seed: u64,
    pub history_s: f64,
    pub metrics_delay_s: f64,
    pub scenarios: Vec<ScenarioResult>,
    pub exit_code: ExitCode,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub rate: f64,
    pub stable_errors: f64,
    pub candidate_errors: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
    pub judges: Vec<JudgeResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeResult {
    #[serde(flatten)]
    pub summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meets_bound: Option<bool>,
}

impl SimulateResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts::new(command, self.outcome, self.exit_code)
    }
}

pub async fn run(context: &Context, args: SimulateArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    // A simulation has no metrics pipeline: requests are visible at once unless asked otherwise.
    let policy = config.resolve_policy(
        args.environment.as_deref(),
        &args.policy.overrides(),
        Duration::ZERO,
    )?;
    if !policy.latency.is_empty() && !context.json {
        // The synthetic traffic has 5xx counts only; saying so beats a silent pass.
        crate::say!(
            "note: the policy's latency limits ({}) are not simulated; only the 5xx judge is",
            policy.latency_text()
        );
    }
    if (!policy.pause.at.is_empty() || policy.report_only) && !context.json {
        // A hold waits for a person and report-only never acts: neither changes what the judge
        // decides, which is what the error rates measure.
        crate::say!(
            "note: the policy's holds (pause_at) and gates mode are not simulated; the error rates \
             are the judge's decisions"
        );
    }
    let scenarios = scenarios(&args);
    let judges = if args.compare {
        vec![policy.judge, other(policy.judge), JudgeKind::Counter]
    } else {
        vec![policy.judge]
    };
    let started = std::time::Instant::now();
    let (args_runs, seed, history) = (args.runs, args.seed, args.history);
    let metrics_delay = policy.metrics_delay;
    let results = tokio::task::spawn_blocking(move || {
        scenarios
            .iter()
            .map(|scenario| simulate_scenario(&policy, &judges, scenario, args_runs, seed, history))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|error| CommandError::api(format!("the simulation stopped: {error}")))?;
    let result = build_result(&args, metrics_delay, results);
    if !context.json {
        crate::output::print_text(&table(&result, started.elapsed()));
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, crate::simulate::svg::plot(&judge_points(&result))).map_err(
            |error| {
                CommandError::bad_input(format!(
                    "--svg: could not write {}: {error}",
                    path.display()
                ))
            },
        )?;
    }
    Ok(CommandResult::Simulate(result))
}

fn other(judge: JudgeKind) -> JudgeKind {
    match judge {
        JudgeKind::Sequential => JudgeKind::Threshold,
        _ => JudgeKind::Sequential,
    }
}

fn scenarios(args: &SimulateArgs) -> Vec<Scenario> {
    let mut chosen: Vec<Scenario> = if args.scenarios.is_empty() {
        MATRIX.to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|traffic| Scenario {
                name: "custom",
                traffic: *traffic,
                bound: None,
            })
            .collect()
    };
    for scenario in &mut chosen {
        scenario.traffic.cold_start = args.cold_start;
    }
    chosen
}

fn simulate_scenario(
    policy: &Policy,
    judges: &[JudgeKind],
    scenario: &Scenario,
    runs: u64,
    seed: u64,
    history: Duration,
) -> ScenarioResult {
    let judged = judges
        .iter()
        .map(|&judge| {
            let policy = Policy {
                judge,
                ..policy.clone()
            };
            let summary = summarise(&policy, scenario.traffic, runs, seed, history);
            JudgeResult {
                meets_bound: scenario.bound.map(|bound| bound.met_by(&summary)),
                summary,
            }
        })
        .collect();
    ScenarioResult {
        name: scenario.name.to_string(),
        rate: scenario.traffic.rate,
        stable_errors: scenario.traffic.stable_errors,
        candidate_errors: scenario.traffic.candidate_errors,
        bound: scenario.bound,
        judges: judged,
    }
}

fn build_result(
    args: &SimulateArgs,
    metrics_delay: Duration,
    scenarios: Vec<ScenarioResult>,
) -> SimulateResult {
    let primary: Vec<Option<bool>> = scenarios
        .iter()
        .map(|s| s.judges.first().and_then(|j| j.meets_bound))
        .collect();
    let (outcome, exit_code) = if primary.iter().all(Option::is_none) {
        ("done", ExitCode::Ok)
    } else if primary.iter().all(|met| met.unwrap_or(true)) {
        ("met", ExitCode::Ok)
    } else {
        ("missed", ExitCode::CheckFailed)
    };
    let judge = scenarios
        .first()
        .and_then(|s| s.judges.first())
        .map_or(JudgeKind::default(), |j| j.summary.judge);
    SimulateResult {
        outcome,
        judge,
        runs: args.runs,
        seed: args.seed,
        history_s: args.history.as_secs_f64(),
        metrics_delay_s: metrics_delay.as_secs_f64(),
        scenarios,
        exit_code,
    }
}

/// One line of the table: the scenario's own columns only on its first judge's line.
fn row(scenario: &ScenarioResult, judge: &JudgeResult, first: bool) -> String {
    let s = &judge.summary;
    let (name, rate, rates) = if first {
        (
            scenario.name.as_str(),
            format!("{}", scenario.rate),
            format!(
                "{}→{}",
                percent(scenario.stable_errors),
                percent(scenario.candidate_errors)
            ),
        )
    } else {
        ("", String::new(), String::new())
    };
    let bound = match (&scenario.bound, judge.meets_bound) {
        (Some(bound), Some(met)) => format!("{} {}", if met { "✓" } else { "✗" }, bound.describe()),
        _ => String::new(),
    };
    format!(
        "{:<6} {:>8} {:>13}  {:<10} {:>8} {:>8} {:>8} {:>7.0}s {:>7.0}s {:>9.1}  {}\n",
        name,
        rate,
        rates,
        s.judge.name(),
        percent(s.p_rollback),
        percent(s.p_promote),
        percent(s.p_no_data),
        s.median_s,
        s.p90_s,
        s.exposure,
        bound
    )
}

/// The table people read: one line per scenario and judge.
pub fn table(result: &SimulateResult, took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} runs per scenario and judge, seed {}, stable history {}",
        result.runs,
        result.seed,
        humantime::format_duration(Duration::from_secs_f64(result.history_s))
    );
    let _ = writeln!(
        out,
        "{:<6} {:>8} {:>13}  {:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  bound",
        "",
        "req/s",
        "5xx stb→cand",
        "judge",
        "rollback",
        "promote",
        "no data",
        "median",
        "p90",
        "exposure"
    );
    for scenario in &result.scenarios {
        for (i, judge) in scenario.judges.iter().enumerate() {
            out.push_str(&row(scenario, judge, i == 0));
        }
    }
    let _ = writeln!(
        out,
        "{}: {} ({:.1} s)",
        result.judge.name(),
        match result.outcome {
            "met" => "every bound of the matrix met",
            "missed" => "some bounds of the matrix missed",
            _ => "done",
        },
        took.as_secs_f64()
    );
    out
}

/// Each judge's place on the trade-off: mean false-rollback rate over the scenarios whose
/// candidate is no worse than stable, mean exposure over those whose candidate is worse.
pub fn judge_points(result: &SimulateResult) -> Vec<JudgePoint> {
    let Some(first) = result.scenarios.first() else {
        return Vec::new();
    };
    (0..first.judges.len())
        .map(|i| {
            let mean = |good: bool, value: fn(&Summary) -> f64| {
                let values: Vec<f64> = result
                    .scenarios
                    .iter()
                    .filter(|s| (s.candidate_errors <= s.stable_errors) == good)
                    .filter_map(|s| s.judges.get(i).map(|j| value(&j.summary)))
                    .collect();
                values.iter().sum::<f64>() / values.len().max(1) as f64
            };
            JudgePoint {
                judge: first.judges[i].summary.judge.name(),
                false_rollback: mean(true, |s| s.p_rollback),
                exposure: mean(false, |s| s.exposure),
            }
        })
        .collect()
}
