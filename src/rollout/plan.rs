//! The rollout policy and its plan: traffic steps, bake time, thresholds, and the parsers that turn
//! user input (`10,25,50,100`, `5%`, `90s`) into them with messages that say what would be valid.

use std::time::Duration;

use serde::Serialize;

use crate::rollout::health_judge::Expectations;
use crate::rollout::judge::{JudgeKind, JudgeSettings};

pub const DEFAULT_STEPS: [u8; 4] = [10, 25, 50, 100];
pub const DEFAULT_BAKE: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.05;
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
/// The candidate may be a quarter worse than stable before it is "worse".
pub const DEFAULT_MARGIN: f64 = 0.25;
/// Cloud Run's request counts reach Cloud Monitoring up to ~3 minutes late.
pub const DEFAULT_MONITORING_DELAY: Duration = Duration::from_secs(3 * 60);

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

/// A share in [0, 1], written `0.05` or `5%`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(percent) => (percent.trim(), 100.0),
        None => (trimmed, 1.0),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (expected a share like 0.05 or 5%)"))?;
    let rate = value / scale;
    if !rate.is_finite() || !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "{text:?} is out of range (expected 0 to 1, or 0% to 100%)"
        ));
    }
    Ok(rate)
}

/// A humantime duration (`90s`, `5m`, `1h`); `0s` is allowed. Callers bound it with
/// [`DurationBounds`]: on its own it accepts values that overflow time arithmetic.
/// `--margin`: how much worse than stable the candidate may be, relatively, as `25%` or `0.25`
/// (0% to 1000%).
pub fn parse_margin(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let value = match trimmed.strip_suffix('%') {
        Some(number) => number.trim().parse::<f64>().map(|v| v / 100.0),
        None => trimmed.parse::<f64>(),
    };
    match value {
        Ok(margin) if margin.is_finite() && (0.0..=10.0).contains(&margin) => Ok(margin),
        _ => Err(format!(
            "expected how much worse than stable the candidate may be, as 25% or 0.25 (0% to \
             1000%), got {}",
            crate::names::quote(trimmed)
        )),
    }
}

/// `--judge`: the rules a rollout can be judged by (the counter rule is only for `simulate`).
pub fn parse_judge(text: &str) -> Result<JudgeKind, String> {
    match text.trim().parse::<JudgeKind>() {
        Ok(JudgeKind::Counter) | Err(_) => Err(format!(
            "expected sequential or threshold, got {}",
            crate::names::quote(text.trim())
        )),
        Ok(kind) => Ok(kind),
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|error| format!("{text:?} is not a duration ({error}; for example 90s, 5m, 1h)"))
}

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The sane range of one duration setting, inclusive. Every duration a user gives is bounded, so
/// that `now + duration` can never overflow once traffic has moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationBounds {
    pub min: Duration,
    pub max: Duration,
}

/// `--bake`: a step may bake for at most a day.
pub const BAKE: DurationBounds = DurationBounds {
    min: Duration::ZERO,
    max: DAY,
};
/// `--interval`: sub-second checks are allowed (the simulator and the demo use them), a busy loop
/// is not.
pub const INTERVAL: DurationBounds = DurationBounds {
    min: Duration::from_millis(100),
    max: HOUR,
};
/// `--metrics-delay`: Cloud Monitoring lags about 3 minutes; an hour is already absurd.
pub const METRICS_DELAY: DurationBounds = DurationBounds {
    min: Duration::ZERO,
    max: HOUR,
};
/// `--timeout` of every command, and the policy's create and traffic deadlines.
pub const TIMEOUT: DurationBounds = DurationBounds {
    min: Duration::from_millis(1),
    max: DAY,
};
/// `dispatch --poll`.
pub const POLL: DurationBounds = DurationBounds {
    min: Duration::from_millis(100),
    max: HOUR,
};
/// `--min-requests`.
pub const MIN_REQUESTS: std::ops::RangeInclusive<u64> = 1..=1_000_000_000;

impl DurationBounds {
    /// Parses `text` and checks it is in range; the message says the range and repeats the value
    /// (the caller names the flag or key).
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let duration = parse_duration(text)?;
        if self.contains(duration) {
            Ok(duration)
        } else {
            Err(format!(
                "must be {}, got {}",
                self.describe(),
                crate::names::quote(text.trim())
            ))
        }
    }

    /// Checks a duration that did not come from text (a policy built in code).
    pub fn check(&self, name: &str, duration: Duration) -> Result<(), String> {
        if self.contains(duration) {
            Ok(())
        } else {
            Err(format!(
                "{name} must be {}, got {}",
                self.describe(),
                short_duration(duration)
            ))
        }
    }

    pub fn contains(&self, duration: Duration) -> bool {
        (self.min..=self.max).contains(&duration)
    }

    /// "between 0s and 24h"
    pub fn describe(&self) -> String {
        format!(
            "between {} and {}",
            short_duration(self.min),
            short_duration(self.max)
        )
    }
}

/// `86400s` → `24h`, `90s` → `90s`, `0.1s` → `100ms`: the unit people write bounds in.
fn short_duration(duration: Duration) -> String {
    if duration.subsec_nanos() != 0 || duration < SECOND {
        return humantime::format_duration(duration).to_string();
    }
    let seconds = duration.as_secs();
    if seconds.is_multiple_of(3600) && seconds > 0 {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) && seconds > 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// `--min-requests`: a whole number in [`MIN_REQUESTS`].
pub fn parse_min_requests(text: &str) -> Result<u64, String> {
    let out_of_range = || {
        format!(
            "must be a whole number between {} and {}, got {}",
            MIN_REQUESTS.start(),
            MIN_REQUESTS.end(),
            crate::names::quote(text.trim())
        )
    };
    let value: u64 = text.trim().parse().map_err(|_| out_of_range())?;
    check_min_requests(value).map_err(|_| out_of_range())?;
    Ok(value)
}

fn check_min_requests(value: u64) -> Result<(), String> {
    if MIN_REQUESTS.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "--min-requests must be between {} and {}, got {value}",
            MIN_REQUESTS.start(),
            MIN_REQUESTS.end()
        ))
    }
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
    pub health: Expectations,
    /// How long to wait for a new revision to become ready.
    pub create_deadline: Duration,
    /// How long to wait for a traffic change to be applied.
    pub traffic_deadline: Duration,
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
            health: Expectations::default(),
            create_deadline: Duration::from_secs(10 * 60),
            traffic_deadline: Duration::from_secs(3 * 60),
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
        crate::names::check_health_path(&self.health.path)
            .map_err(|message| format!("--health-path: {message}"))?;
        if !self.bake.is_zero() && self.interval > self.bake {
            return Err(format!(
                "--interval ({}) is longer than --bake ({}): each step would get no check within its bake",
                humantime::format_duration(self.interval),
                humantime::format_duration(self.bake)
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
    fn rates_accept_fractions_and_percentages() {
        assert_eq!(parse_rate("0.05").unwrap(), 0.05);
        assert_eq!(parse_rate("5%").unwrap(), 0.05);
        assert_eq!(parse_rate("0").unwrap(), 0.0);
        assert!(parse_rate("150%").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("lots").is_err());
    }

    #[test]
    fn durations_use_humantime_and_zero_is_allowed_where_it_makes_sense() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
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
    fn given_durations_out_of_their_bounds_then_the_message_says_the_range_and_the_value() {
        let message = BAKE.parse("9999999999999999999s").unwrap_err();
        assert_eq!(
            message,
            "must be between 0s and 24h, got \"9999999999999999999s\""
        );
        assert_eq!(BAKE.parse("24h").unwrap(), DAY);
        assert_eq!(BAKE.parse("0s").unwrap(), Duration::ZERO);
        assert!(
            INTERVAL
                .parse("0s")
                .unwrap_err()
                .contains("between 100ms and 1h")
        );
        assert!(METRICS_DELAY.parse("2h").is_err());
        assert!(TIMEOUT.parse("0s").is_err());
        assert!(POLL.parse("25h").is_err());
        assert!(BAKE.parse("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn given_min_requests_out_of_range_then_the_message_is_plain() {
        assert_eq!(
            parse_min_requests("0").unwrap_err(),
            "must be a whole number between 1 and 1000000000, got \"0\""
        );
        assert!(parse_min_requests("1000000001").is_err());
        assert!(parse_min_requests("-1").is_err());
        assert_eq!(parse_min_requests("100").unwrap(), 100);
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
