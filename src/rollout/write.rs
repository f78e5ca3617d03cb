//! Etag-guarded traffic writes: the one write every writer sends (a step, the restore, a person's
//! rollback), and a rollout's own loop, which re-reads and re-sends only while the service is its.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::rollout::engine::{Engine, Stop};
use crate::rollout::history::HistoryEntry;
use crate::rollout::ownership::{still_ours, traffic_matches};
use crate::rollout::ports::{
    Platform, PortError, RolloutRecord, ServiceState, TrafficChange, TrafficTarget,
};
use crate::rollout::restore::later;
use crate::rollout::timeline::EventKind;

/// How many times a write is sent again after a conflict or a lost answer, each time only after
/// a fresh read shows the service is still this rollout's and unchanged.
pub(super) const WRITE_ATTEMPTS: u32 = 5;
/// Pause between attempts when the platform is unavailable.
pub(super) const WRITE_BACKOFF: Duration = Duration::from_secs(1);

/// How the platform answered one traffic write, sorted the same way for every writer.
pub(super) enum WriteAnswer {
    Applied(Box<ServiceState>),
    /// A conflict, an outage or a lost answer: read again before deciding to send it again.
    Retry(PortError),
    /// Permission, a bad request, a missing service: sending it again will not help.
    Refused(PortError),
}

/// One traffic write over the etag just read, with the time left until `until` as its deadline:
/// the only place a rollout, its restore and a person's rollback change the split. The loops
/// around it differ on purpose: whose service it must still be before writing again.
pub(super) async fn write_traffic(
    platform: &dyn Platform,
    change: &TrafficChange,
    etag: &str,
    until: Instant,
) -> WriteAnswer {
    let remaining = until.saturating_duration_since(Instant::now());
    match platform.set_traffic(change, etag, remaining).await {
        Ok(service) => WriteAnswer::Applied(Box::new(service)),
        Err(error @ (PortError::Conflict(_) | PortError::Unavailable(_))) => {
            WriteAnswer::Retry(error)
        }
        Err(error @ (PortError::Rejected { .. } | PortError::NotFound(_))) => {
            WriteAnswer::Refused(error)
        }
    }
}

impl Engine<'_> {
    /// Applies one traffic change of an owned rollout (`history`: the entry the write that ends
    /// it appends). Every failed or lost write is followed by
    /// a fresh read: a write that landed is not sent again, and one is sent again only while the
    /// service is still this rollout's with the split it last wrote.
    pub(super) async fn apply(
        &mut self,
        step: Option<usize>,
        traffic: Vec<TrafficTarget>,
        record: Option<RolloutRecord>,
        history: Option<HistoryEntry>,
        deadline: Duration,
    ) -> Result<ServiceState, Stop> {
        let give_up = later(Instant::now(), deadline);
        let change = TrafficChange {
            traffic: traffic.clone(),
            rollout: record.clone(),
            history,
        };
        let platform = self.ports.platform;
        let mut etag = self.last_etag();
        for attempt in 1..=WRITE_ATTEMPTS {
            self.in_flight = Some(traffic.clone());
            let written = self
                .guard(write_traffic(platform, &change, &etag, give_up))
                .await
                .ok_or(Stop::Interrupted)?;
            let (error, retry) = match written {
                WriteAnswer::Applied(service) => return Ok(self.applied(step, *service, record)),
                WriteAnswer::Retry(error) => (error, true),
                WriteAnswer::Refused(error) => (error, false),
            };
            let current = self
                .read_settled(give_up.saturating_duration_since(Instant::now()))
                .await?;
            if traffic_matches(&current, &traffic) && current.rollout == record {
                // It landed; only its answer was lost.
                return Ok(self.applied(step, current, record));
            }
            still_ours(&current, &self.identity.id, &[&self.confirmed]).map_err(Stop::Aborted)?;
            if !(retry && attempt < WRITE_ATTEMPTS && Instant::now() < give_up) {
                return Err(Stop::Error(format!("could not set traffic: {error}")));
            }
            let (PortError::Conflict(reason)
            | PortError::Unavailable(reason)
            | PortError::NotFound(reason)
            | PortError::Rejected {
                message: reason, ..
            }) = error;
            self.emit(EventKind::Retrying {
                what: "set traffic".into(),
                reason,
            });
            self.guard(tokio::time::sleep(WRITE_BACKOFF))
                .await
                .ok_or(Stop::Interrupted)?;
            etag = current.etag;
        }
        Err(Stop::Error(format!(
            "could not set traffic after {WRITE_ATTEMPTS} attempts"
        )))
    }

    fn applied(
        &mut self,
        step: Option<usize>,
        service: ServiceState,
        record: Option<RolloutRecord>,
    ) -> ServiceState {
        self.emit(EventKind::TrafficSet {
            step,
            traffic: service.traffic.clone(),
        });
        self.confirmed = service.traffic.clone();
        self.in_flight = None;
        self.record = record;
        self.last_seen = Some(service.clone());
        service
    }

    /// Reads the service once it has finished applying changes, retrying reads that fail for
    /// reasons that pass.
    pub(super) async fn read_settled(&mut self, budget: Duration) -> Result<ServiceState, Stop> {
        let give_up = later(Instant::now(), budget.max(Duration::from_secs(5)));
        let platform = self.ports.platform;
        let mut pause = Duration::from_millis(250);
        loop {
            let read = self
                .guard(platform.read_service())
                .await
                .ok_or(Stop::Interrupted)?;
            match read {
                Ok(service) => {
                    self.last_seen = Some(service.clone());
                    if !service.reconciling {
                        return Ok(service);
                    }
                    if later(Instant::now(), pause) > give_up {
                        return Err(Stop::Error(format!(
                            "{} was still applying a change after {}",
                            service.name,
                            humantime::format_duration(budget)
                        )));
                    }
                }
                Err(PortError::Unavailable(reason)) if later(Instant::now(), pause) < give_up => {
                    self.emit(EventKind::Retrying {
                        what: "read the service".into(),
                        reason,
                    });
                }
                Err(error) => {
                    return Err(Stop::Error(format!("could not read the service: {error}")));
                }
            }
            self.guard(tokio::time::sleep(pause))
                .await
                .ok_or(Stop::Interrupted)?;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    fn last_etag(&self) -> String {
        self.last_seen
            .as_ref()
            .map(|service| service.etag.clone())
            .unwrap_or_default()
    }

    /// Runs `future` unless the interrupt fires first (`None`).
    pub(super) async fn guard<T>(&mut self, future: impl Future<Output = T>) -> Option<T> {
        if self.interrupt.is_set() {
            self.interrupted_at.get_or_insert_with(Instant::now);
            return None;
        }
        let interrupt = self.interrupt.clone();
        let value = tokio::select! {
            biased;
            _ = interrupt.fired() => None,
            value = future => Some(value),
        };
        if value.is_none() {
            self.interrupted_at.get_or_insert_with(Instant::now);
        }
        value
    }
}
