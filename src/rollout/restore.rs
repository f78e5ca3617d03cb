//! Putting stable back: the engine's restore (only while the service is still this rollout's),
//! a person's `force_traffic` (overrides any owner), and the deadlines that bound both.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::rollout::engine::{Engine, Restore};
use crate::rollout::history::HistoryEntry;
use crate::rollout::ownership::{still_ours, traffic_matches};
use crate::rollout::ports::{Platform, PortError, ServiceState, TrafficChange, TrafficTarget};
use crate::rollout::timeline::Report;
use crate::rollout::traffic::{Plan, short_name};
use crate::rollout::write::{WriteAnswer, write_traffic};

/// A restore after SIGINT/SIGTERM/SIGHUP, reading back included, must end well inside the 7.5 s
/// a cancelled Actions job gets before SIGTERM (and 10 s before SIGKILL).
pub const INTERRUPTED_RESTORE_DEADLINE: Duration = Duration::from_millis(6500);

pub(super) fn later(at: Instant, by: Duration) -> Instant {
    // Policies are bounded at parse time; this keeps a Policy built in code from panicking.
    at.checked_add(by)
        .unwrap_or_else(|| at + Duration::from_secs(10 * 365 * 24 * 3600))
}

impl Engine<'_> {
    /// Sends 100% to stable and clears the record, but only while the record on the service is
    /// this rollout's and its split one this rollout wrote; re-reads after every failed or lost
    /// write; never outlives `budget`, nor 6.5 s after an interrupt. Not interruptible: this is
    /// what an interruption runs.
    pub(super) async fn restore(&mut self, plan: &Plan, budget: Duration) -> Restore {
        let give_up = later(Instant::now(), budget);
        let began = Instant::now();
        let wanted = plan.stable_traffic();
        let mut last_error = String::from("no answer from the platform in time");
        let mut pause = Duration::from_millis(250);
        loop {
            let attempt = self.restore_once(plan, &wanted, began, give_up, &mut last_error);
            if let Some(end) = attempt.await {
                return end;
            }
            if !self.pause(give_up, &mut pause).await {
                return Restore::Failed(last_error);
            }
        }
    }

    /// One read and, when the service is still ours, one write. `None`: try again after a pause
    /// (`last_error` says why).
    async fn restore_once(
        &mut self,
        plan: &Plan,
        wanted: &[TrafficTarget],
        began: Instant,
        give_up: Instant,
        last_error: &mut String,
    ) -> Option<Restore> {
        let platform = self.ports.platform;
        let Some(read) = self
            .bounded(self.stop_by(give_up), platform.read_service())
            .await
        else {
            return Some(Restore::Failed(std::mem::take(last_error)));
        };
        let current = match read {
            Ok(current) => current,
            Err(error @ (PortError::Rejected { .. } | PortError::NotFound(_))) => {
                return Some(Restore::Failed(format!(
                    "could not read the service: {error}"
                )));
            }
            Err(error) => {
                *last_error = format!("could not read the service: {error}");
                return None;
            }
        };
        self.last_seen = Some(current.clone());
        let half_time = began + self.stop_by(give_up).saturating_duration_since(began) / 2;
        if current.reconciling && Instant::now() < half_time {
            // A change (perhaps our own lost write) is still being applied: decide on its
            // result while there is time; past half the budget, act on the record alone.
            *last_error = format!("{} was still applying a change", current.name);
            return None;
        }
        if let Some(end) = self.restore_needs_no_write(plan, wanted, current.clone()) {
            return Some(end);
        }
        self.write_stable(wanted, &current, give_up, last_error)
            .await
    }

    /// `Some` when the restore ends without a write: stable already serves everything, or the
    /// service is no longer this rollout's. `None`: it is ours, with a split we wrote.
    fn restore_needs_no_write(
        &self,
        plan: &Plan,
        wanted: &[TrafficTarget],
        current: ServiceState,
    ) -> Option<Restore> {
        let ours = current
            .rollout
            .as_ref()
            .is_some_and(|record| record.id == self.identity.id);
        if !ours {
            if current.rollout.is_none() && traffic_matches(&current, wanted) {
                // Stable already serves everything: our own restore landed, or nothing of
                // this rollout ever did.
                return Some(Restore::Done(Box::new(current)));
            }
            if self.record.is_none()
                && current.rollout == plan.service.rollout
                && traffic_matches(&current, &plan.service.traffic)
            {
                return Some(Restore::Done(Box::new(current)));
            }
            let splits: Vec<&[TrafficTarget]> = Vec::new();
            let why = still_ours(&current, &self.identity.id, &splits)
                .err()
                .unwrap_or_default();
            return Some(Restore::NotOurs(why));
        }
        let mut splits: Vec<&[TrafficTarget]> = vec![&self.confirmed];
        if let Some(in_flight) = &self.in_flight {
            splits.push(in_flight);
        }
        if current.reconciling {
            // What is served mid-change is neither split; the record is what tells.
            splits.clear();
        }
        still_ours(&current, &self.identity.id, &splits)
            .err()
            .map(Restore::NotOurs)
    }

    /// Writes stable over `current`'s etag. `None`: the write failed in a way worth retrying.
    async fn write_stable(
        &mut self,
        wanted: &[TrafficTarget],
        current: &ServiceState,
        give_up: Instant,
        last_error: &mut String,
    ) -> Option<Restore> {
        // The rollout's history entry goes with the write that ends it, stamped as sent now.
        let now = crate::rollout::history::time_text(self.clock.now());
        let history = self.ending.clone().map(|entry| HistoryEntry {
            ended: now.clone(),
            restored_at: Some(now),
            ..entry
        });
        let change = TrafficChange {
            traffic: wanted.to_vec(),
            rollout: None,
            history,
        };
        self.in_flight = Some(wanted.to_vec());
        let platform = self.ports.platform;
        let until = self.stop_by(give_up);
        let written = self
            .bounded(
                until,
                write_traffic(platform, &change, &current.etag, until),
            )
            .await;
        match written {
            Some(WriteAnswer::Applied(service)) => {
                self.last_seen = Some((*service).clone());
                self.record = None;
                self.in_flight = None;
                Some(Restore::Done(service))
            }
            // Permission or a bad request does not heal by retrying: say so now.
            Some(WriteAnswer::Refused(error)) => {
                Some(Restore::Failed(format!("could not set traffic: {error}")))
            }
            Some(WriteAnswer::Retry(error)) => {
                *last_error = format!("could not set traffic: {error}");
                None
            }
            None => Some(Restore::Failed(std::mem::take(last_error))),
        }
    }

    /// Reads the split for the report, within what time is left.
    pub(super) async fn read_final(&mut self, report: &mut Report) {
        let give_up = self.stop_by(later(Instant::now(), Duration::from_secs(20)));
        let platform = self.ports.platform;
        match self.bounded(give_up, platform.read_service()).await {
            Some(Ok(service)) => {
                report.final_traffic = service.traffic.clone();
                report.final_traffic_confirmed = true;
                self.last_seen = Some(service);
            }
            _ => {
                report.final_traffic = self
                    .last_seen
                    .as_ref()
                    .map(|service| service.traffic.clone())
                    .unwrap_or_default();
                report.final_traffic_confirmed = false;
            }
        }
    }

    /// Waits before the next restore attempt; false when no time is left for one.
    async fn pause(&mut self, give_up: Instant, pause: &mut Duration) -> bool {
        let wake = later(Instant::now(), *pause);
        if wake >= self.stop_by(give_up) {
            return false;
        }
        self.bounded(self.stop_by(give_up), tokio::time::sleep_until(wake))
            .await
            .is_some()
            && {
                *pause = (*pause * 2).min(Duration::from_secs(2));
                true
            }
    }

    /// `give_up`, or 6.5 s after the interrupt when that is sooner.
    pub(super) fn stop_by(&self, give_up: Instant) -> Instant {
        match self.interrupted_at {
            Some(at) => give_up.min(later(at, INTERRUPTED_RESTORE_DEADLINE)),
            None => give_up,
        }
    }

    /// Runs `future` until `give_up`, shortening the deadline if an interrupt arrives meanwhile.
    /// `None`: out of time.
    pub(super) async fn bounded<T>(
        &mut self,
        give_up: Instant,
        future: impl Future<Output = T>,
    ) -> Option<T> {
        let interrupt = self.interrupt.clone();
        tokio::pin!(future);
        loop {
            let deadline = self.stop_by(give_up);
            tokio::select! {
                biased;
                value = tokio::time::timeout_at(deadline, &mut future) => return value.ok(),
                _ = interrupt.fired(), if self.interrupted_at.is_none() => {
                    self.interrupted_at = Some(Instant::now());
                }
            }
        }
    }
}

/// Sets `wanted` as the whole traffic split and clears any rollout record (a person's
/// `rollback`: it overrides any owner). Reads first and after every failed or lost write, so a
/// write that landed is never sent again; retries through conflicts and outages until the platform
/// confirms it or `deadline` passes; a refusal (permission, bad request) ends it at once.
/// `on_retry` hears each retry, for the person waiting.
pub async fn force_traffic(
    platform: &dyn Platform,
    wanted: &[TrafficTarget],
    deadline: Duration,
    on_retry: &(dyn Fn(&str) + Send + Sync),
) -> Result<ServiceState, String> {
    force_traffic_of(platform, wanted, deadline, on_retry, None, None)
        .await
        .map_err(NotForced::reason)
}

/// Why [`force_traffic_of`] wrote nothing it could confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotForced {
    /// Refused, or not confirmed by the deadline: the service needs a person.
    Failed(String),
    /// The rollout it was aimed at ended first; nothing was written.
    Ended(String),
}

impl NotForced {
    pub fn reason(self) -> String {
        match self {
            NotForced::Failed(reason) | NotForced::Ended(reason) => reason,
        }
    }
}

/// A person's `rollback` or `abort`, as the service's history keeps it.
#[derive(Debug, Clone)]
pub struct ManualEnd {
    /// `rolled_back` or `aborted`.
    pub outcome: &'static str,
    /// The command, for the entry's reason (`shiftgate rollback`).
    pub command: &'static str,
    /// Who ran it (the Actions run URL, else host and pid).
    pub who: String,
    pub clock: crate::clock::Clock,
}

impl ManualEnd {
    /// The entry for a write of `wanted` over `service`: the rollout it ends when one is recorded,
    /// else the revision that served most before.
    pub fn entry(&self, service: &ServiceState, wanted: &[TrafficTarget]) -> HistoryEntry {
        let now = crate::rollout::history::time_text(self.clock.now());
        let target = wanted
            .iter()
            .max_by_key(|t| t.percent)
            .map(|t| t.revision.clone())
            .unwrap_or_default();
        let (id, candidate, stable, started, at) = match &service.rollout {
            Some(record) => (
                record.id.clone(),
                record.candidate.clone(),
                record.stable.clone(),
                record.started_at.clone(),
                format!(" at {}%", record.percent),
            ),
            None => (
                crate::rollout::ownership::random_id(),
                service
                    .serving()
                    .into_iter()
                    .map(|(revision, _)| revision)
                    .find(|revision| *revision != target)
                    .unwrap_or_default(),
                target.clone(),
                now.clone(),
                String::new(),
            ),
        };
        HistoryEntry {
            id,
            candidate,
            stable,
            outcome: self.outcome.to_string(),
            reason: Some(format!(
                "`{}` by a person{at}: 100% to {target}",
                self.command
            )),
            started,
            ended: now.clone(),
            restored_at: Some(now),
            who: self.who.clone(),
            manual: true,
            ..HistoryEntry::default()
        }
    }
}

/// [`force_traffic`], writing only while the service still carries the rollout record `only_for`
/// (`abort` aims at one rollout: if that one ended meanwhile, the service is left as it is); with
/// `manual`, the write also adds the person's rollback to the service's history.
pub async fn force_traffic_of(
    platform: &dyn Platform,
    wanted: &[TrafficTarget],
    deadline: Duration,
    on_retry: &(dyn Fn(&str) + Send + Sync),
    only_for: Option<&str>,
    manual: Option<&ManualEnd>,
) -> Result<ServiceState, NotForced> {
    let aim = match only_for {
        Some(id) => Aim::Rollout(id),
        None => Aim::Any,
    };
    let history = |service: &ServiceState| manual.map(|manual| manual.entry(service, wanted));
    force_aimed(platform, wanted, deadline, on_retry, aim, &history).await
}

/// Undoes a promotion this process made (a later wave failed): sets `wanted` only while the
/// service still serves exactly `promoted` with no rollout recorded. A person's change or another
/// rollout since then is left as it is ([`NotForced::Ended`]).
pub async fn undo_promotion(
    platform: &dyn Platform,
    wanted: &[TrafficTarget],
    promoted: &[TrafficTarget],
    history: Option<HistoryEntry>,
    deadline: Duration,
    on_retry: &(dyn Fn(&str) + Send + Sync),
) -> Result<ServiceState, NotForced> {
    let aim = Aim::Promoted(promoted);
    let history = |_: &ServiceState| history.clone();
    force_aimed(platform, wanted, deadline, on_retry, aim, &history).await
}

/// Which state of the service a forced write may replace.
#[derive(Clone, Copy)]
enum Aim<'a> {
    /// Any: a person's `rollback`.
    Any,
    /// The rollout with this record id, still in progress.
    Rollout(&'a str),
    /// This split, with no rollout recorded: a promotion of ours nobody changed since.
    Promoted(&'a [TrafficTarget]),
}

async fn force_aimed(
    platform: &dyn Platform,
    wanted: &[TrafficTarget],
    deadline: Duration,
    on_retry: &(dyn Fn(&str) + Send + Sync),
    aim: Aim<'_>,
    history: &(dyn Fn(&ServiceState) -> Option<HistoryEntry> + Send + Sync),
) -> Result<ServiceState, NotForced> {
    let give_up = later(Instant::now(), deadline);
    let mut last_error = format!(
        "no answer from the platform within {}",
        humantime::format_duration(deadline)
    );
    let mut pause = Duration::from_millis(250);
    let mut attempt = 0u32;
    let mut sent = false;
    loop {
        attempt += 1;
        let once = force_once(
            platform,
            wanted,
            give_up,
            &mut last_error,
            (aim, &mut sent),
            history,
        );
        if let Some(end) = once.await {
            return end;
        }
        if later(Instant::now(), pause) >= give_up {
            return Err(NotForced::Failed(last_error));
        }
        on_retry(&format!(
            "attempt {attempt} failed ({last_error}); reading the service again in {}",
            humantime::format_duration(pause)
        ));
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One read and, unless `wanted` is already confirmed or a change is still being applied, one
/// write over the etag just read. `None`: try again after a pause (`last_error` says why).
async fn force_once(
    platform: &dyn Platform,
    wanted: &[TrafficTarget],
    give_up: Instant,
    last_error: &mut String,
    (aim, sent): (Aim<'_>, &mut bool),
    history: &(dyn Fn(&ServiceState) -> Option<HistoryEntry> + Send + Sync),
) -> Option<Result<ServiceState, NotForced>> {
    let service = match tokio::time::timeout_at(give_up, platform.read_service()).await {
        Err(_) => return Some(Err(NotForced::Failed(last_error.clone()))),
        Ok(Ok(service)) => service,
        Ok(Err(error @ (PortError::Rejected { .. } | PortError::NotFound(_)))) => {
            return Some(Err(NotForced::Failed(format!(
                "could not read the service: {error}"
            ))));
        }
        Ok(Err(error)) => {
            *last_error = format!("could not read the service: {error}");
            return None;
        }
    };
    // Wanted already, and no rollout on the service: done, unless an undo has not written yet
    // (then it was someone else who put it there, which the aim below says).
    let undo_unsent = matches!(aim, Aim::Promoted(_)) && !*sent;
    if traffic_matches(&service, wanted)
        && service.rollout.is_none()
        && service.unreadable_rollout.is_none()
        && !service.reconciling
        && !undo_unsent
    {
        return Some(Ok(service));
    }
    let now = || crate::rollout::timeline::describe_traffic(&service.traffic);
    match aim {
        Aim::Rollout(id)
            if service.rollout.as_ref().map(|record| record.id.as_str()) != Some(id) =>
        {
            return Some(Err(NotForced::Ended(format!(
                "the rollout ended before this could take it over ({id}; traffic now {}); \
                 nothing was written",
                now()
            ))));
        }
        Aim::Promoted(promoted)
            if service.rollout.is_some()
                || service.unreadable_rollout.is_some()
                || !traffic_matches(&service, promoted) =>
        {
            return Some(Err(NotForced::Ended(format!(
                "{} changed since it was promoted (traffic now {}{}); it was left as it is",
                short_name(&service.name),
                now(),
                match &service.rollout {
                    Some(record) => format!(
                        ", a rollout by the {}",
                        crate::rollout::ownership::describe_owner(record)
                    ),
                    None => String::new(),
                }
            ))));
        }
        _ => {}
    }
    if service.reconciling {
        *last_error = format!("{} was still applying a change", service.name);
        return None;
    }
    let change = TrafficChange {
        traffic: wanted.to_vec(),
        rollout: None,
        history: history(&service),
    };
    *sent = true;
    let write = write_traffic(platform, &change, &service.etag, give_up);
    match tokio::time::timeout_at(give_up, write).await {
        Err(_) => Some(Err(NotForced::Failed(last_error.clone()))),
        Ok(WriteAnswer::Applied(service)) => Some(Ok(*service)),
        Ok(WriteAnswer::Refused(error)) => Some(Err(NotForced::Failed(format!(
            "could not set traffic: {error}"
        )))),
        Ok(WriteAnswer::Retry(error)) => {
            *last_error = format!("could not set traffic: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::ports::RolloutRecord;

    fn manual(outcome: &'static str, command: &'static str) -> ManualEnd {
        ManualEnd {
            outcome,
            command,
            who: "host laptop pid 7".into(),
            clock: crate::clock::Clock::new(),
        }
    }

    #[test]
    fn an_abort_records_the_rollout_it_ends_and_a_rollback_without_one_the_revision_it_left() {
        let record = RolloutRecord {
            id: "r1".into(),
            owner: "https://github.com/o/r/actions/runs/1".into(),
            stable: "web-1".into(),
            candidate: "web-2".into(),
            percent: 25,
            state: RolloutRecord::PAUSED.into(),
            started_at: "2026-11-30T10:00:00Z".into(),
            pause: None,
        };
        let held = ServiceState {
            traffic: vec![
                TrafficTarget::new("web-1", 75),
                TrafficTarget::tagged("web-2", 25, "candidate"),
            ],
            rollout: Some(record),
            ..ServiceState::default()
        };
        let wanted = [TrafficTarget::new("web-1", 100)];
        let aborted = manual("aborted", "shiftgate abort").entry(&held, &wanted);
        assert_eq!(
            (
                aborted.id.as_str(),
                aborted.candidate.as_str(),
                aborted.stable.as_str()
            ),
            ("r1", "web-2", "web-1")
        );
        assert_eq!(aborted.outcome, "aborted");
        assert_eq!(aborted.started, "2026-11-30T10:00:00Z");
        assert_eq!(
            aborted.reason.as_deref(),
            Some("`shiftgate abort` by a person at 25%: 100% to web-1")
        );
        assert!(aborted.manual);
        assert_eq!(aborted.who, "host laptop pid 7");
        assert_eq!(aborted.restored_at.as_deref(), Some(aborted.ended.as_str()));
        assert_eq!((aborted.traffic_at, aborted.detected_at), (None, None));

        let promoted = ServiceState {
            traffic: vec![TrafficTarget::new("web-2", 100)],
            ..ServiceState::default()
        };
        let back = manual("rolled_back", "shiftgate rollback").entry(&promoted, &wanted);
        assert_eq!(
            (back.candidate.as_str(), back.stable.as_str()),
            ("web-2", "web-1")
        );
        assert_eq!(back.id.len(), 32, "a fresh random id");
        assert_eq!(back.started, back.ended);
    }
}
