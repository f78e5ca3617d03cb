//! Taking ownership: the first write puts this rollout's record on the service in the same
//! etag-guarded change that stages the candidate, so of two rollouts started together one wins.

use crate::rollout::engine::{Engine, Stop};
use crate::rollout::ownership::{describe_owner, traffic_matches};
use crate::rollout::plan::Policy;
use crate::rollout::ports::{
    NewRevision, PortError, PortResult, RolloutRecord, ServiceState, TrafficChange, TrafficTarget,
};
use crate::rollout::request::RolloutError;
use crate::rollout::timeline::{EventKind, describe_traffic};
use crate::rollout::traffic::Plan;
use crate::rollout::write::{WRITE_ATTEMPTS, WRITE_BACKOFF};

impl Engine<'_> {
    /// The first write: the record (with this rollout's id) goes onto the service in the same
    /// etag-guarded change that stages the candidate, so of two rollouts started together exactly
    /// one wins. The loser changes nothing and says who won (exit 2). `Ok(Some(end))`: the write's
    /// fate is unknown or it failed; the caller restores whatever of it landed.
    pub(super) async fn take_ownership(
        &mut self,
        plan: &Plan,
        policy: &Policy,
    ) -> Result<Option<Stop>, RolloutError> {
        let percent = plan.resume_at.unwrap_or(0);
        let record = RolloutRecord {
            id: self.identity.id.clone(),
            owner: self.identity.owner.clone(),
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            percent,
            state: RolloutRecord::RUNNING.to_string(),
            started_at: plan.started_at.clone(),
            pause: None,
        };
        let traffic = plan.traffic(percent, true);
        let mut etag = plan.service.etag.clone();
        for attempt in 1..=WRITE_ATTEMPTS {
            self.in_flight = Some(traffic.clone());
            let written = self.first_write(plan, policy, &traffic, &record, &etag);
            let Some(written) = written.await else {
                return Ok(Some(Stop::Interrupted));
            };
            let error = match written {
                Ok(service) => {
                    self.took_ownership(plan, service, record);
                    return Ok(None);
                }
                Err(error) => error,
            };
            // A conflict, a lost answer or a failure: only a fresh read tells what happened.
            let current = match self.read_settled(policy.traffic_deadline).await {
                Ok(current) => current,
                Err(end) => return Ok(Some(end)),
            };
            if first_write_landed(plan, &record, &current)? {
                // Ours went through: either only its answer was lost, or the platform took
                // the change but could not start the new revision. The revision says which.
                self.took_ownership(plan, current, record);
                return Ok(match plan.image {
                    Some(_) if plan.resume_at.is_none() => self.candidate_started(plan).await,
                    _ => None,
                });
            }
            if let Some(end) = self.retry_first_write(error, attempt).await {
                return Ok(Some(end));
            }
            etag = current.etag;
        }
        Ok(Some(Stop::Error(
            "the service kept changing while the candidate was being staged".into(),
        )))
    }

    /// Creates the candidate with the record (a new image), or only sets the traffic and the
    /// record (an existing revision, or a resume). `None`: interrupted.
    async fn first_write(
        &mut self,
        plan: &Plan,
        policy: &Policy,
        traffic: &[TrafficTarget],
        record: &RolloutRecord,
        etag: &str,
    ) -> Option<PortResult<ServiceState>> {
        let platform = self.ports.platform;
        match (&plan.image, plan.resume_at) {
            (Some(image), None) => {
                let spec = NewRevision {
                    revision: plan.candidate.clone(),
                    image: image.clone(),
                    traffic: traffic.to_vec(),
                    rollout: Some(record.clone()),
                };
                self.guard(platform.create_revision(&spec, etag, policy.create_deadline))
                    .await
            }
            _ => {
                let change = TrafficChange {
                    traffic: traffic.to_vec(),
                    rollout: Some(record.clone()),
                    history: None,
                };
                self.guard(platform.set_traffic(&change, etag, policy.traffic_deadline))
                    .await
            }
        }
    }

    /// After a first write that failed although nothing of it landed: waits to send it again, or
    /// says why not (`Some`).
    async fn retry_first_write(&mut self, error: PortError, attempt: u32) -> Option<Stop> {
        match error {
            PortError::Conflict(reason) | PortError::Unavailable(reason)
                if attempt < WRITE_ATTEMPTS =>
            {
                self.emit(EventKind::Retrying {
                    what: "take ownership of the service".into(),
                    reason,
                });
                self.guard(tokio::time::sleep(WRITE_BACKOFF))
                    .await
                    .is_none()
                    .then_some(Stop::Interrupted)
            }
            other => Some(Stop::Error(format!(
                "could not stage the candidate: {other}"
            ))),
        }
    }

    /// After a creation whose answer was an error although it landed: did the revision start?
    /// `None`: it is ready and the rollout goes on.
    async fn candidate_started(&mut self, plan: &Plan) -> Option<Stop> {
        let platform = self.ports.platform;
        match self.guard(platform.read_revision(&plan.candidate)).await {
            None => Some(Stop::Interrupted),
            Some(Ok(info)) if info.ready => None,
            Some(Ok(info)) => Some(Stop::Failed(format!(
                "candidate revision {} did not become ready: {}",
                plan.candidate,
                info.reason.unwrap_or_else(|| "no reason given".into())
            ))),
            Some(Err(error)) => Some(Stop::Error(format!(
                "could not read candidate revision {}: {error}",
                plan.candidate
            ))),
        }
    }

    fn took_ownership(&mut self, plan: &Plan, service: ServiceState, record: RolloutRecord) {
        if let (Some(image), None) = (&plan.image, plan.resume_at) {
            self.emit(EventKind::CandidateCreated {
                revision: plan.candidate.clone(),
                image: image.clone(),
            });
        }
        self.confirmed = service.traffic.clone();
        self.in_flight = None;
        self.record = Some(record);
        self.last_seen = Some(service);
    }
}

/// What a fresh read after a failed first write shows: `true` when it landed after all; an error
/// when another rollout won or the service changed meanwhile; `false` when nothing of it landed
/// and the service is still as prepared, so it may be sent again.
fn first_write_landed(
    plan: &Plan,
    record: &RolloutRecord,
    current: &ServiceState,
) -> Result<bool, RolloutError> {
    match &current.rollout {
        Some(theirs) if theirs.id == record.id => return Ok(true),
        Some(theirs) if plan.service.rollout.as_ref() != Some(theirs) => {
            return Err(RolloutError::Refused(format!(
                "another rollout took {} first: {}",
                current.name,
                describe_owner(theirs)
            )));
        }
        _ => {}
    }
    if current.rollout != plan.service.rollout || !traffic_matches(current, &plan.service.traffic) {
        return Err(RolloutError::Refused(format!(
            "{} changed while this rollout was starting (traffic now {}); look with \
             `shiftgate status` and start again",
            current.name,
            describe_traffic(&current.traffic)
        )));
    }
    Ok(false)
}
