//! The rollout policy and its plan: traffic steps, bake time, thresholds, and the parsers that turn
//! user input (`10,25,50,100`, `5%`, `90s`) into them with messages that say what would be valid.

use std::time::Duration;

use serde::Serialize;

use crate::rollout::health_judge::Expectations;
use crate::rollout::hooks::HookPlan;
use crate::rollout::judge::{JudgeKind, JudgeSettings};
use crate::rollout::latency::LatencyLimit;
use crate::rollout::limits::{BAKE, INTERVAL, METRICS_DELAY, TIMEOUT, check_min_requests};
use crate::rollout::pause::PausePolicy;

pub const DEFAULT_STEPS: [u8; 4] = [10, 25, 50, 100];
pub const DEFAULT_BAKE: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.05;
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
/// The candidate may be a quarter worse than stable before it is "worse".
pub const DEFAULT_MARGIN: f64 = 0.25;
/// Cloud Run's request counts reach Cloud Monitoring up to ~3 minutes late.
pub const DEFAULT_MONITORING_DELAY: Duration = Duration::from_secs(3 * 60);
/// Each region after the first: the candidate proved itself in the first, so it goes straight to
/// 100% and is watched this long (`--wave-bake`).
pub const DEFAULT_WAVE_BAKE: Duration = Duration::from_secs(2 * 60);

/// How the regions after the first take a candidate the first region promoted (`--wave-steps`,
/// `--wave-bake`): every other gate is the first region's.
#[derive(Debug, Clone, PartialEq)]
pub struct WavePlan {
    pub steps: Steps,
    pub bake: Duration,
}

impl Default for WavePlan {
    fn default() -> Self {
        Self {
            steps: Steps(vec![100]),
            bake: DEFAULT_WAVE_BAKE,
        }
    }
}

/// Traffic percentages for the candidate: strictly increasing, 1–100, ending at 100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Steps(Vec<u8>);

impl Steps {
    pub fn new(percents: Vec<u8>) -> Result<Self, String> {
        if percents.is_empty() {
            return Err("give at least one step, ending at 100 (for example 10,25,50,100)".into());
        }
        for (index, &percent) in percents.iter().enumerate() {
            if !(1..=100).contains(&percent) {
                return Err(format!(
                    "step {percent} is out of range: each step is a percentage from 1 to 100"
                ));
            }
            if index > 0 && percent <= percents[index - 1] {
                return Err(format!(
                    "steps must be strictly increasing, but {} is followed by {percent} (for example 10,25,50,100)",
                    percents[index - 1]
                ));
            }
        }
        if percents.last() != Some(&100) {
            return Err(format!(
                "the last step must be 100 so the rollout ends fully promoted (got {})",
                join(&percents)
            ));
        }
        Ok(Self(percents))
    }

    pub fn percents(&self) -> &[u8] {
        &self.0
    }
}

impl Default for Steps {
    fn default() -> Self {
        Self(DEFAULT_STEPS.to_vec())
    }
}

impl std::str::FromStr for Steps {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let percents = text
            .split(',')
            .map(|part| {
                let part = part.trim().trim_end_matches('%');
                part.parse::<u8>().map_err(|_| {
                    format!(
                        "{part:?} is not a whole percentage (expected a list like 10,25,50,100)"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Steps::new(percents)
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&join(&self.0))
    }
}

fn join(percents: &[u8]) -> String {
    percents
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything that decides how a rollout moves and when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub steps: Steps,
    /// How long each step must stay healthy.
    pub bake: Duration,
    /// Time between checks within a step.
    pub interval: Duration,
    /// A candidate 5xx share above this fails the step.
    pub max_error_rate: f64,
    /// Fewer candidate requests than this in a step is inconclusive, never a pass.
    pub min_requests: u64,
    /// How long the metrics backend takes to show a request.
    pub metrics_delay: Duration,
    /// Which rule judges the error counts (`--judge`).
    pub judge: JudgeKind,
    /// The candidate may be this much worse than stable, relatively (`--margin`; never less
    /// than 0.25 percentage points).
    pub margin: f64,
    /// A step may end before its bake once the candidate is shown not worse (`--early-pass`).
    pub early_pass: bool,
    /// Latency quantiles the candidate must not be shown above (`--max-latency`), at most one
    /// per quantile; none reads no latencies.
    pub latency: Vec<LatencyLimit>,
    pub health: Expectations,
    /// How long to wait for a new revision to become ready.
    pub create_deadline: Duration,
    /// How long to wait for a traffic change to be applied.
    pub traffic_deadline: Duration,
    /// Steps after which the rollout holds for `shiftgate promote` (`--pause-at`).
    pub pause: PausePolicy,
    /// `--gates report-only`: every gate is evaluated and reported, none acted on.
    pub report_only: bool,
    /// A backup and jobs around the traffic steps.
    pub hooks: HookPlan,
    /// The steps and bake of every region after the first.
    pub wave: WavePlan,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            steps: Steps::default(),
            bake: DEFAULT_BAKE,
            interval: DEFAULT_INTERVAL,
            max_error_rate: DEFAULT_MAX_ERROR_RATE,
            min_requests: DEFAULT_MIN_REQUESTS,
            metrics_delay: DEFAULT_MONITORING_DELAY,
            judge: JudgeKind::default(),
            margin: DEFAULT_MARGIN,
            early_pass: false,
            latency: Vec::new(),
            health: Expectations::default(),
            create_deadline: Duration::from_secs(10 * 60),
            traffic_deadline: Duration::from_secs(3 * 60),
            pause: PausePolicy::default(),
            report_only: false,
            hooks: HookPlan::default(),
            wave: WavePlan::default(),
        }
    }
}

impl Policy {
    /// An inconclusive step may run this long past its bake before it fails: one more bake.
    /// Saturating, like every sum of user durations here: a policy that skipped `validate` must
    /// not panic (or wrap to a short deadline) after traffic moved.
    pub fn step_deadline(&self) -> Duration {
        self.bake
            .saturating_mul(2)
            .saturating_add(self.metrics_delay)
    }

    /// The policy of a region after the first: the wave's steps and bake, the same gates; no
    /// hold (a person approved the candidate in the first region) and no hooks (they ran once,
    /// around the first region).
    pub fn for_wave(&self) -> Policy {
        Policy {
            steps: self.wave.steps.clone(),
            bake: self.wave.bake,
            pause: PausePolicy::default(),
            hooks: HookPlan {
                timeout: self.hooks.timeout,
                ..HookPlan::default()
            },
            ..self.clone()
        }
    }

    /// What the judge needs of the policy.
    pub fn judge_settings(&self) -> JudgeSettings {
        JudgeSettings {
            kind: self.judge,
            max_error_rate: self.max_error_rate,
            min_requests: self.min_requests,
            relative_margin: self.margin,
            failed_checks_allowed: 2,
            early_pass: self.early_pass,
        }
    }

    /// The latency limits as written: `p95=800ms, p99=2s` (empty without limits).
    pub fn latency_text(&self) -> String {
        self.latency
            .iter()
            .map(|limit| limit.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Flagger's figure users reason with: the least time a healthy rollout takes.
    pub fn time_to_promote(&self) -> Duration {
        let steps = u32::try_from(self.steps.percents().len()).unwrap_or(u32::MAX);
        self.bake
            .saturating_add(self.metrics_delay)
            .saturating_mul(steps)
    }

    /// Checks every value against its bounds (a policy built in code gets the same checks as one
    /// from flags or the config file), then that combinations still make sense; names the flag.
    pub fn validate(&self) -> Result<(), String> {
        BAKE.check("--bake", self.bake)?;
        INTERVAL.check("--interval", self.interval)?;
        METRICS_DELAY.check("--metrics-delay", self.metrics_delay)?;
        TIMEOUT.check("the revision create deadline", self.create_deadline)?;
        TIMEOUT.check("the traffic change deadline", self.traffic_deadline)?;
        if !(self.max_error_rate.is_finite() && (0.0..=1.0).contains(&self.max_error_rate)) {
            return Err(format!(
                "--max-error-rate must be between 0 and 1 (0% and 100%), got {}",
                self.max_error_rate
            ));
        }
        check_min_requests(self.min_requests)?;
        if !(self.margin.is_finite() && (0.0..=10.0).contains(&self.margin)) {
            return Err(format!(
                "--margin must be between 0% and 1000% (how much worse than stable the candidate \
                 may be), got {}",
                self.margin
            ));
        }
        for (i, limit) in self.latency.iter().enumerate() {
            if self.latency[..i]
                .iter()
                .any(|l| l.quantile == limit.quantile)
            {
                return Err(format!(
                    "--max-latency gives {} twice; give each of p50, p95, p99 at most once",
                    limit.quantile.name()
                ));
            }
        }
        crate::names::check_health_path(&self.health.path)
            .map_err(|message| format!("--health-path: {message}"))?;
        self.pause.validate(self.steps.percents())?;
        TIMEOUT.check("--hook-timeout", self.hooks.timeout)?;
        if !self.bake.is_zero() && self.interval > self.bake {
            return Err(format!(
                "--interval ({}) is longer than --bake ({}): each step would get no check within its bake",
                humantime::format_duration(self.interval),
                humantime::format_duration(self.bake)
            ));
        }
        Ok(())
    }

    /// [`Self::validate`]'s checks of the waves, for a rollout through several regions (a policy
    /// of one region never uses them, so never fails on them).
    pub fn validate_waves(&self) -> Result<(), String> {
        BAKE.check("--wave-bake", self.wave.bake)?;
        if !self.wave.bake.is_zero() && self.interval > self.wave.bake {
            return Err(format!(
                "--wave-bake ({}) is shorter than --interval ({}): a region after the first would \
                 get no check within its bake",
                humantime::format_duration(self.wave.bake),
                humantime::format_duration(self.interval)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_increase_stay_in_range_and_end_at_100() {
        assert_eq!(
            "10,25,50,100".parse::<Steps>().unwrap().percents(),
            &[10, 25, 50, 100]
        );
        assert_eq!("100".parse::<Steps>().unwrap().percents(), &[100]);
        for bad in [
            "50,10",
            "10,10,100",
            "0,100",
            "10,50",
            "10,101",
            "",
            "ten,100",
        ] {
            assert!(bad.parse::<Steps>().is_err(), "{bad} should be refused");
        }
        let message = "50,10".parse::<Steps>().unwrap_err();
        assert!(message.contains("strictly increasing"), "{message}");
    }

    #[test]
    fn flagger_time_to_promote_is_steps_times_bake_plus_delay() {
        let policy = Policy {
            metrics_delay: Duration::ZERO,
            ..Policy::default()
        };
        assert_eq!(policy.time_to_promote(), Duration::from_secs(20 * 60));
    }

    #[test]
    fn given_a_policy_built_in_code_with_huge_values_then_validate_refuses_it_and_nothing_panics() {
        let huge = Policy {
            bake: Duration::MAX,
            metrics_delay: Duration::MAX,
            ..Policy::default()
        };
        assert_eq!(huge.step_deadline(), Duration::MAX);
        assert_eq!(huge.time_to_promote(), Duration::MAX);
        assert!(huge.validate().unwrap_err().contains("--bake"));
        for (policy, flag) in [
            (
                Policy {
                    metrics_delay: Duration::from_secs(7200),
                    ..Policy::default()
                },
                "--metrics-delay",
            ),
            (
                Policy {
                    interval: Duration::ZERO,
                    ..Policy::default()
                },
                "--interval",
            ),
            (
                Policy {
                    max_error_rate: f64::NAN,
                    ..Policy::default()
                },
                "--max-error-rate",
            ),
            (
                Policy {
                    min_requests: 0,
                    ..Policy::default()
                },
                "--min-requests",
            ),
            (
                Policy {
                    traffic_deadline: Duration::MAX,
                    ..Policy::default()
                },
                "deadline",
            ),
        ] {
            let message = policy.validate().unwrap_err();
            assert!(message.contains(flag), "{flag}: {message}");
        }
        let mut metadata = Policy::default();
        metadata.health.path = "http://169.254.169.254/".into();
        assert!(metadata.validate().unwrap_err().contains("--health-path"));
        Policy::default().validate().unwrap();
    }
}
