//! The up-front traffic forecast: how many candidate requests a plan should see at stable's recent
//! rate, and which `--bake` or `--steps` would reach `--min-requests` when it cannot. Pure.

use std::time::Duration;

use crate::rollout::plan::Policy;
use crate::rollout::timeline::EventKind;

/// What the plan should see at `rate` requests per second, and, when that is short of
/// `--min-requests`, the longest bake (at most a day) or the fewest steps that would reach it.
pub(crate) fn forecast(policy: &Policy, rate: f64) -> EventKind {
    let share_seconds = |bake: Duration, steps: &[u8]| -> f64 {
        steps.iter().map(|&p| f64::from(p) / 100.0).sum::<f64>() * bake.as_secs_f64()
    };
    let percents = policy.steps.percents();
    let expected = (rate * share_seconds(policy.bake, percents)).floor() as u64;
    let needed = policy.min_requests;
    let advice = (expected < needed).then(|| {
        let per_bake_second = rate * share_seconds(Duration::from_secs(1), percents);
        let bake = (needed as f64 / per_bake_second.max(f64::MIN_POSITIVE)).ceil();
        let direct = rate * policy.bake.as_secs_f64();
        if bake <= 86_400.0 {
            format!(
                "--bake {} would reach it with these steps{}",
                humantime::format_duration(Duration::from_secs(bake as u64)),
                if direct >= needed as f64 {
                    "; so would --steps 100"
                } else {
                    ""
                }
            )
        } else {
            "no bake of up to a day reaches it at this traffic: lower --min-requests, or accept \
             that this service's rollouts cannot be judged on their errors"
                .to_string()
        }
    });
    EventKind::TrafficForecast {
        requests_per_second: rate,
        expected_candidate_requests: expected,
        min_requests: needed,
        advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advice_at(rate: f64) -> (u64, Option<String>) {
        match forecast(&Policy::default(), rate) {
            EventKind::TrafficForecast {
                expected_candidate_requests,
                advice,
                ..
            } => (expected_candidate_requests, advice),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_busy_service_needs_no_advice() {
        // 10+25+50+100% of 5-minute bakes at 50 requests/s.
        assert_eq!(advice_at(50.0), (27_750, None));
    }

    #[test]
    fn a_quiet_service_is_told_up_front_which_bake_would_reach_the_floor() {
        let (expected, advice) = advice_at(0.05);
        assert_eq!(expected, 27);
        let advice = advice.unwrap();
        assert!(advice.starts_with("--bake 18m 2s"), "{advice}");
        let (_, silent) = advice_at(0.0);
        assert!(silent.unwrap().contains("no bake of up to a day"));
    }
}
