//! Etag-guarded writes of an owned rollout: a failed or lost write is followed by a fresh read,
//! and is sent again only while the service is still this rollout's with the split it wrote.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::rollout::engine::{Engine, Stop};
use crate::rollout::ownership::{still_ours, traffic_matches};
use crate::rollout::ports::{PortError, RolloutRecord, ServiceState, TrafficChange, TrafficTarget};
use crate::rollout::restore::later;
use crate::rollout::timeline::EventKind;

/// How many times a write is sent again after a conflict or a lost answer, each time only after
/// a fresh read shows the service is still this rollout's and unchanged.
pub(super) const WRITE_ATTEMPTS: u32 = 5;
/// Pause between attempts when the platform is unavailable.
pub(super) const WRITE_BACKOFF: Duration = Duration::from_secs(1);

impl Engine<'_> {
    /// Applies one traffic change of an owned rollout. Every failed or lost write is followed by
    /// a fresh read: a write that landed is not sent again, and one is sent again only while the
    /// service is still this rollout's with the split it last wrote.
    pub(super) async fn apply(
        &mut self,
        step: Option<usize>,
        traffic: Vec<TrafficTarget>,
        record: Option<RolloutRecord>,
        deadline: Duration,
    ) -> Result<ServiceState, Stop> {
        let give_up = later(Instant::now(), deadline);
        let change = TrafficChange {
            traffic: traffic.clone(),
            rollout: record.clone(),
        };
        let platform = self.ports.platform;
        let mut etag = self.last_etag();
        for attempt in 1..=WRITE_ATTEMPTS {
            self.in_flight = Some(traffic.clone());
            let remaining = give_up.saturating_duration_since(Instant::now());
            let written = self
                .guard(platform.set_traffic(&change, &etag, remaining))
                .await
                .ok_or(Stop::Interrupted)?;
            let error = match written {
                Ok(service) => return Ok(self.applied(step, service, record)),
                Err(error) => error,
            };
            let current = self
                .read_settled(give_up.saturating_duration_since(Instant::now()))
                .await?;
            if traffic_matches(&current, &traffic) && current.rollout == record {
                // It landed; only its answer was lost.
                return Ok(self.applied(step, current, record));
            }
            still_ours(&current, &self.identity.id, &[&self.confirmed]).map_err(Stop::Aborted)?;
            match error {
                PortError::Conflict(reason) | PortError::Unavailable(reason)
                    if attempt < WRITE_ATTEMPTS && Instant::now() < give_up =>
                {
                    self.emit(EventKind::Retrying {
                        what: "set traffic".into(),
                        reason,
                    });
                    self.guard(tokio::time::sleep(WRITE_BACKOFF))
                        .await
                        .ok_or(Stop::Interrupted)?;
                }
                other => return Err(Stop::Error(format!("could not set traffic: {other}"))),
            }
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
