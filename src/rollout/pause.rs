//! The gates a person controls: holds at `--pause-at` steps (the paused record, what ends a hold:
//! `shiftgate promote` through the record or `--pause-timeout`) and `--gates report-only`.

use std::time::Duration;

use tokio::time::Instant;

use crate::rollout::check::Decision;
use crate::rollout::engine::{Engine, Stop};
use crate::rollout::plan::Policy;
use crate::rollout::ports::{PauseRecord, RolloutRecord};
use crate::rollout::timeline::EventKind;
use crate::rollout::traffic::Plan;

/// What a hold nobody ends comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseTimeoutAction {
    /// Roll back: nobody approved, so the candidate does not go further (the safe default).
    #[default]
    Rollback,
    /// Go on to the next step, as if `shiftgate promote` had been run.
    Promote,
}

impl PauseTimeoutAction {
    pub fn name(self) -> &'static str {
        match self {
            PauseTimeoutAction::Rollback => "rollback",
            PauseTimeoutAction::Promote => "promote",
        }
    }
}

/// Where the rollout holds for a person, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausePolicy {
    /// Percents of the plan after which to hold (each a step, never the last).
    pub at: Vec<u8>,
    pub timeout: Duration,
    pub on_timeout: PauseTimeoutAction,
}

/// One hour: long enough for a person to look, short enough not to hold a runner for a day.
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for PausePolicy {
    fn default() -> Self {
        Self {
            at: Vec::new(),
            timeout: DEFAULT_PAUSE_TIMEOUT,
            on_timeout: PauseTimeoutAction::Rollback,
        }
    }
}

impl PausePolicy {
    /// Checks the holds against the plan's steps; names the flag.
    pub fn validate(&self, steps: &[u8]) -> Result<(), String> {
        crate::rollout::limits::PAUSE_TIMEOUT.check("--pause-timeout", self.timeout)?;
        for (i, percent) in self.at.iter().enumerate() {
            if self.at[..i].contains(percent) {
                return Err(format!("--pause-at gives {percent} twice"));
            }
            let last = steps.last().copied().unwrap_or(100);
            if !steps.contains(percent) || *percent == last {
                let holds: Vec<String> = steps
                    .iter()
                    .filter(|p| **p != last)
                    .map(u8::to_string)
                    .collect();
                return Err(format!(
                    "--pause-at {percent} is not a step the rollout can hold at: it holds after \
                     a step other than the last, one of {} (--steps)",
                    holds.join(", ")
                ));
            }
        }
        Ok(())
    }

    pub fn holds_at(&self, percent: u8) -> bool {
        self.at.contains(&percent)
    }

    /// How much longer a rollout may take because of its holds.
    pub fn longest_wait(&self) -> Duration {
        let holds = u32::try_from(self.at.len()).unwrap_or(u32::MAX);
        self.timeout.saturating_mul(holds)
    }
}

/// A hold under way.
pub(super) struct Hold {
    started: Instant,
    timeout: Duration,
}

/// How a look during a hold ended it, if it did.
pub(super) enum HoldEnd {
    /// Go on to the next step.
    GoOn,
    /// Roll back: the hold timed out.
    TimedOut(String),
}

impl Engine<'_> {
    /// Starts holding after `step` passed: the record says `paused` (with the same split), and
    /// the timeline says how to go on.
    pub(super) async fn start_hold(
        &mut self,
        step: usize,
        percent: u8,
        plan: &Plan,
        policy: &Policy,
    ) -> Result<Hold, Stop> {
        let Some(owned) = self.record.clone() else {
            return Err(Stop::Error("the rollout record was lost".into()));
        };
        let now = self.clock.now();
        // Resumed while held here: the recorded deadline stands.
        let recorded = plan
            .held
            .as_ref()
            .filter(|_| plan.resume_at == Some(percent))
            .and_then(|held| {
                let until = humantime::parse_rfc3339(&held.until).ok()?;
                Some((held.since.clone(), until))
            });
        let (since, until) = match recorded {
            Some((since, until)) => (since, until),
            None => (
                humantime::format_rfc3339_seconds(now).to_string(),
                now + policy.pause.timeout,
            ),
        };
        let timeout = until.duration_since(now).unwrap_or_default();
        let record = RolloutRecord {
            state: RolloutRecord::PAUSED.to_string(),
            pause: Some(PauseRecord {
                since,
                until: humantime::format_rfc3339_seconds(until).to_string(),
                on_timeout: policy.pause.on_timeout.name().to_string(),
            }),
            ..owned
        };
        self.apply(
            Some(step),
            plan.traffic(percent, true),
            Some(record),
            None,
            policy.traffic_deadline,
        )
        .await?;
        self.emit(EventKind::Paused {
            step,
            percent,
            timeout_s: timeout.as_secs_f64(),
            on_timeout: policy.pause.on_timeout,
        });
        Ok(Hold {
            started: Instant::now(),
            timeout,
        })
    }

    /// After a look during a hold: `promote` was asked for (the service as read says
    /// `resuming`), or the hold ran out. `Ok(None)`: keep holding.
    pub(super) async fn hold_end(
        &mut self,
        hold: &Hold,
        step: usize,
        percent: u8,
        policy: &Policy,
    ) -> Result<Option<HoldEnd>, Stop> {
        let timed_out = hold.started.elapsed() >= hold.timeout;
        if timed_out {
            // The look's read may be seconds old: a promote that came in since must win over
            // the timeout's rollback.
            self.still_owned().await?;
        }
        let asked = self
            .last_seen
            .as_ref()
            .and_then(|service| service.rollout.as_ref())
            .is_some_and(|record| record.state == RolloutRecord::RESUMING);
        let by = if asked {
            "shiftgate promote"
        } else if timed_out {
            match policy.pause.on_timeout {
                PauseTimeoutAction::Promote => "--pause-timeout",
                PauseTimeoutAction::Rollback => {
                    return Ok(Some(HoldEnd::TimedOut(format!(
                        "held at {percent}% for {} and nobody ran `shiftgate promote` \
                         (--pause-timeout; --on-pause-timeout rollback)",
                        humantime::format_duration(hold.timeout)
                    ))));
                }
            }
        } else {
            return Ok(None);
        };
        // The next step's write carries a running record again.
        if let Some(record) = self.record.as_mut() {
            record.state = RolloutRecord::RUNNING.to_string();
            record.pause = None;
        }
        self.emit(EventKind::Resumed {
            step,
            percent,
            by: by.to_string(),
        });
        Ok(Some(HoldEnd::GoOn))
    }

    /// `--gates report-only`: a failed gate is said once per step and the step goes on to the
    /// end of its bake, as if it had passed there.
    pub(super) fn ignore_gate(
        &mut self,
        step: Option<usize>,
        reason: String,
        ignored: &mut Option<String>,
        since: Duration,
        policy: &Policy,
    ) -> Decision {
        if ignored.is_none() {
            self.emit(EventKind::GateIgnored {
                step,
                reason: reason.clone(),
            });
            *ignored = Some(reason);
        }
        if since >= policy.bake {
            Decision::Pass
        } else {
            Decision::KeepBaking
        }
    }

    /// When to look next during a hold: the next interval, but not past the hold's end.
    pub(super) fn next_hold_look(&self, hold: &Hold, policy: &Policy) -> Instant {
        let end = hold.started + hold.timeout;
        (Instant::now() + policy.interval).min(end.max(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_after_a_step_other_than_the_last() {
        let steps = [10, 50, 100];
        let at = |percents: &[u8]| PausePolicy {
            at: percents.to_vec(),
            ..PausePolicy::default()
        };
        assert!(at(&[50]).validate(&steps).is_ok());
        assert!(at(&[10, 50]).validate(&steps).is_ok());
        let last = at(&[100]).validate(&steps).unwrap_err();
        assert!(last.contains("one of 10, 50"), "{last}");
        assert!(at(&[25]).validate(&steps).is_err());
        assert!(
            at(&[50, 50])
                .validate(&steps)
                .unwrap_err()
                .contains("twice")
        );
        let forever = PausePolicy {
            timeout: Duration::from_secs(30 * 24 * 3600),
            ..at(&[50])
        };
        assert!(
            forever
                .validate(&steps)
                .unwrap_err()
                .contains("--pause-timeout")
        );
        assert_eq!(at(&[10, 50]).longest_wait(), Duration::from_secs(7200));
    }
}
