//! Traffic rules and naming: the split at each point of a rollout, what a restore sends, and the
//! names a rollout gives. Pure functions over `ServiceState`, no I/O.

use std::time::SystemTime;

use crate::rollout::plan::Policy;
use crate::rollout::ports::{ServiceState, TrafficTarget};

/// The tag that gives the candidate its own URL for health checks.
pub const CANDIDATE_TAG: &str = "candidate";

/// What `prepare` decided, before anything is changed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub service: ServiceState,
    pub stable: String,
    pub candidate: String,
    /// Set when the candidate is to be created from this image.
    pub image: Option<String>,
    /// Tagged zero-percent targets of other revisions, kept through every change.
    pub preserved: Vec<TrafficTarget>,
    /// Resuming a recorded rollout: the candidate's share when its process died.
    pub resume_at: Option<u8>,
    /// A resumed rollout whose hold there was already ended by `shiftgate promote`: it does not
    /// hold at this percent again.
    pub promoted_at: Option<u8>,
    /// A resumed rollout that was held at its recorded step: the hold it had, whose `until`
    /// still stands (a resume must not push a person's deadline out).
    pub held: Option<crate::rollout::ports::PauseRecord>,
    /// When the rollout started (kept across a resume).
    pub started_at: String,
}

impl Plan {
    /// The traffic for one point of the rollout: `candidate_percent` to the candidate (tagged
    /// while the rollout runs), the rest to stable, and the preserved tags.
    pub fn traffic(&self, candidate_percent: u8, tag_candidate: bool) -> Vec<TrafficTarget> {
        let mut traffic = self.preserved.clone();
        if candidate_percent < 100 {
            traffic.push(TrafficTarget::new(&self.stable, 100 - candidate_percent));
        }
        if candidate_percent > 0 || tag_candidate {
            traffic.push(TrafficTarget {
                revision: self.candidate.clone(),
                percent: candidate_percent,
                tag: tag_candidate.then(|| CANDIDATE_TAG.to_string()),
            });
        }
        traffic
    }

    /// Stable at 100%, the candidate's tag removed, other tags kept.
    pub fn stable_traffic(&self) -> Vec<TrafficTarget> {
        self.traffic(0, false)
    }

    /// The steps still to run: all of them, or on a resume the recorded step (baked again from its
    /// start) and those after it. Each is (step number in the policy, percent).
    pub(crate) fn schedule(&self, policy: &Policy) -> Vec<(usize, u8)> {
        let percents = policy.steps.percents();
        let numbered = percents.iter().enumerate().map(|(i, &p)| (i + 1, p));
        match self.resume_at {
            Some(at) if at > 0 => {
                let number = percents.iter().position(|&p| p >= at).unwrap_or(0) + 1;
                std::iter::once((number, at))
                    .chain(numbered.filter(|&(_, p)| p > at))
                    .collect()
            }
            _ => numbered.collect(),
        }
    }
}

/// Traffic that sends everything to `revision`, keeping the other tagged targets of `service`
/// except the candidate tag (used by `rollback`).
pub fn restore_traffic(service: &ServiceState, revision: &str) -> Vec<TrafficTarget> {
    restore_split(&service.traffic, revision)
}

/// [`restore_traffic`] from a split: 100% on `revision`, every tag but the candidate's kept.
pub fn restore_split(traffic: &[TrafficTarget], revision: &str) -> Vec<TrafficTarget> {
    let mut wanted = tags_of(traffic);
    wanted.push(TrafficTarget::new(revision, 100));
    wanted
}

pub(crate) fn preserved_tags(service: &ServiceState) -> Vec<TrafficTarget> {
    tags_of(&service.traffic)
}

fn tags_of(traffic: &[TrafficTarget]) -> Vec<TrafficTarget> {
    traffic
        .iter()
        .filter_map(|target| match &target.tag {
            Some(tag) if tag != CANDIDATE_TAG => {
                Some(TrafficTarget::tagged(&target.revision, 0, tag))
            }
            _ => None,
        })
        .collect()
}

/// The last path segment of a resource name (`projects/p/…/services/s` → `s`).
pub fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// A revision name Cloud Run accepts (`<service>-sg-<7 base-36 chars>`, at most 63 characters),
/// unique per millisecond, so a retried create is recognisable as ours.
pub fn new_revision_name(service: &str, now: SystemTime) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or_default();
    let mut suffix = [b'0'; 7];
    for slot in suffix.iter_mut().rev() {
        *slot = DIGITS[(millis % 36) as usize];
        millis /= 36;
    }
    let suffix = std::str::from_utf8(&suffix).expect("base-36 digits are ASCII");
    let prefix: String = service.chars().take(63 - 11).collect();
    format!("{prefix}-sg-{suffix}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn revision_names_are_valid_and_prefixed_by_the_service() {
        let name = new_revision_name(
            "loopcloser-prod",
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
        );
        assert!(name.starts_with("loopcloser-prod-sg-"), "{name}");
        assert!(name.len() <= 63);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn plan_traffic_keeps_other_tags_and_moves_the_candidate_tag() {
        let service = ServiceState {
            traffic: vec![
                TrafficTarget::new("svc-1", 100),
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::tagged("svc-x", 0, CANDIDATE_TAG),
            ],
            ..ServiceState::default()
        };
        let plan = Plan {
            preserved: preserved_tags(&service),
            service,
            stable: "svc-1".into(),
            candidate: "svc-2".into(),
            image: None,
            resume_at: None,
            promoted_at: None,
            held: None,
            started_at: String::new(),
        };
        assert_eq!(
            plan.traffic(10, true),
            vec![
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::new("svc-1", 90),
                TrafficTarget::tagged("svc-2", 10, CANDIDATE_TAG),
            ]
        );
        assert_eq!(
            plan.traffic(100, false),
            vec![
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::new("svc-2", 100)
            ]
        );
        assert_eq!(
            plan.stable_traffic(),
            vec![
                TrafficTarget::tagged("svc-0", 0, "old"),
                TrafficTarget::new("svc-1", 100)
            ]
        );
    }
}
