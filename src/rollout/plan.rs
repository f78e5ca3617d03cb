//! The rollout policy and its plan: traffic steps, bake time, thresholds, and the parsers that turn
//! user input (`10,25,50,100`, `5%`, `90s`) into them with messages that say what would be valid.

use std::time::Duration;

use serde::Serialize;

use crate::health::Expectations;

pub const DEFAULT_STEPS: [u8; 4] = [10, 25, 50, 100];
pub const DEFAULT_BAKE: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.05;
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
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

/// A humantime duration (`90s`, `5m`, `1h`); `0s` is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|error| format!("{text:?} is not a duration ({error}; for example 90s, 5m, 1h)"))
}

/// A humantime duration that must be longer than zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(duration)
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
            health: Expectations::default(),
            create_deadline: Duration::from_secs(10 * 60),
            traffic_deadline: Duration::from_secs(3 * 60),
        }
    }
}

impl Policy {
    /// An inconclusive step may run this long past its bake before it fails: one more bake.
    pub fn step_deadline(&self) -> Duration {
        self.bake * 2 + self.metrics_delay
    }

    /// Flagger's figure users reason with: the least time a healthy rollout takes.
    pub fn time_to_promote(&self) -> Duration {
        (self.bake + self.metrics_delay) * self.steps.percents().len() as u32
    }

    /// Checks that combinations of valid values still make sense; names the flag to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("--interval must be longer than zero".into());
        }
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
        assert!(parse_positive_duration("0s").is_err());
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
}
