//! The bounds of every value a person gives (rates, margins, durations, request counts) and the
//! parsers that check them, with messages that say what would be valid.

use std::time::Duration;

use crate::rollout::judge::JudgeKind;

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
/// `--max-latency`'s durations: Cloud Run's request timeout is at most an hour.
pub const LATENCY: DurationBounds = DurationBounds {
    min: Duration::from_millis(1),
    max: HOUR,
};
/// `--pause-timeout`: a hold may last up to a week (a self-hosted runner can wait that long; a
/// hosted job ends at 6 hours, which the README says).
pub const PAUSE_TIMEOUT: DurationBounds = DurationBounds {
    min: SECOND,
    max: Duration::from_secs(7 * 24 * 3600),
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

pub fn check_min_requests(value: u64) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
