//! Who owns a service's rollout: a random identity per run, the owner's description, and the
//! check every write makes that the record and the split are still the ones this rollout wrote.

use crate::rollout::ports::{RolloutRecord, ServiceState, TrafficTarget};

/// This process's claim on a rollout: a random id and a description of where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub owner: String,
}

impl Identity {
    /// A fresh random id, and the owner from the environment (the Actions run URL when there is
    /// one, else this host and pid).
    pub fn generate() -> Self {
        Self {
            id: random_id(),
            owner: owner_from_env(),
        }
    }
}

/// 16 random bytes from the operating system, as 32 hex digits.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is exceedingly rare; the pid and a clock reading still separate two
        // processes, which is all the id must do.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The Actions run URL (with its attempt), else `host NAME pid N`.
pub fn owner_from_env() -> String {
    if let (Some(server), Some(repo), Some(run)) = (
        env("GITHUB_SERVER_URL"),
        env("GITHUB_REPOSITORY"),
        env("GITHUB_RUN_ID"),
    ) {
        let attempt = env("GITHUB_RUN_ATTEMPT")
            .map(|a| format!("/attempts/{a}"))
            .unwrap_or_default();
        return format!(
            "{}/{repo}/actions/runs/{run}{attempt}",
            server.trim_end_matches('/')
        );
    }
    format!("host {} pid {}", hostname(), std::process::id())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// When `owner` names a process on this host that is still alive, its pid. A rollout owned by a
/// live process must not be resumed or taken over from under it.
pub fn live_local_owner(owner: &str) -> Option<u32> {
    let rest = owner.strip_prefix("host ")?;
    let (host, pid) = rest.split_once(" pid ")?;
    let pid: u32 = pid.trim().parse().ok()?;
    if host != hostname() || pid == std::process::id() {
        return None;
    }
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// How a record reads to a person: who owns it and since when.
pub fn describe_owner(record: &RolloutRecord) -> String {
    let owner = if record.owner.is_empty() {
        "an unknown owner".to_string()
    } else {
        record.owner.clone()
    };
    format!(
        "rollout {} by {owner} (stable {}, candidate {} at {}%, started {})",
        record.id, record.stable, record.candidate, record.percent, record.started_at
    )
}

/// True when the service's traffic is `wanted`, ignoring order and zero-percent untagged entries.
pub fn traffic_matches(service: &ServiceState, wanted: &[TrafficTarget]) -> bool {
    normalized(&service.traffic) == normalized(wanted)
}

fn normalized(traffic: &[TrafficTarget]) -> Vec<(String, u8, Option<String>)> {
    let mut entries: Vec<_> = traffic
        .iter()
        .filter(|t| t.percent > 0 || t.tag.is_some())
        .map(|t| (t.revision.clone(), t.percent, t.tag.clone()))
        .collect();
    entries.sort();
    entries
}

/// Whether `service` is still this rollout's to write: its record carries `id`, and its split is
/// one of `splits` (what this rollout last confirmed, or a write of its own still in flight; no
/// splits: only the record is checked). `Err` says, for a person, what changed.
pub fn still_ours(
    service: &ServiceState,
    id: &str,
    splits: &[&[TrafficTarget]],
) -> Result<(), String> {
    match &service.rollout {
        None => {
            return Err(format!(
                "the rollout record was removed from {} (a `shiftgate rollback`, `abort` or \
                 another tool changed the service); traffic now {}",
                service.name,
                describe(&service.traffic)
            ));
        }
        Some(record) if record.id != id => {
            return Err(format!(
                "another process took over {}: {}",
                service.name,
                describe_owner(record)
            ));
        }
        Some(_) => {}
    }
    if splits.is_empty() || splits.iter().any(|split| traffic_matches(service, split)) {
        return Ok(());
    }
    Err(format!(
        "traffic on {} was changed outside this rollout: now {}, this rollout last set {}",
        service.name,
        describe(&service.traffic),
        splits.first().map(|s| describe(s)).unwrap_or_default()
    ))
}

fn describe(traffic: &[TrafficTarget]) -> String {
    crate::rollout::timeline::describe_traffic(traffic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(traffic: Vec<TrafficTarget>, record: Option<RolloutRecord>) -> ServiceState {
        ServiceState {
            name: "web".into(),
            traffic,
            rollout: record,
            ..ServiceState::default()
        }
    }

    fn record(id: &str) -> RolloutRecord {
        RolloutRecord {
            id: id.into(),
            owner: "host a pid 1".into(),
            stable: "web-1".into(),
            candidate: "web-2".into(),
            percent: 10,
            state: RolloutRecord::RUNNING.into(),
            started_at: "2026-11-30T00:00:00Z".into(),
            pause: None,
        }
    }

    #[test]
    fn ids_are_random_and_long() {
        let (a, b) = (random_id(), random_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn a_service_with_our_record_and_our_split_is_ours() {
        let split = vec![
            TrafficTarget::new("web-1", 90),
            TrafficTarget::tagged("web-2", 10, "candidate"),
        ];
        let svc = service(split.clone(), Some(record("ours")));
        assert!(still_ours(&svc, "ours", &[&split]).is_ok());
    }

    #[test]
    fn a_removed_record_a_foreign_record_or_a_changed_split_is_not_ours() {
        let split = vec![
            TrafficTarget::new("web-1", 90),
            TrafficTarget::tagged("web-2", 10, "candidate"),
        ];
        let removed = service(vec![TrafficTarget::new("web-1", 100)], None);
        assert!(
            still_ours(&removed, "ours", &[&split])
                .unwrap_err()
                .contains("record was removed")
        );
        let foreign = service(split.clone(), Some(record("theirs")));
        assert!(
            still_ours(&foreign, "ours", &[&split])
                .unwrap_err()
                .contains("host a pid 1")
        );
        let moved = service(
            vec![
                TrafficTarget::new("web-1", 50),
                TrafficTarget::tagged("web-2", 50, "candidate"),
            ],
            Some(record("ours")),
        );
        assert!(
            still_ours(&moved, "ours", &[&split])
                .unwrap_err()
                .contains("changed outside")
        );
    }

    #[test]
    fn a_record_without_owner_or_state_reads_as_running() {
        let old: RolloutRecord = serde_json::from_str(
            r#"{"id":"x@1","stable":"a","candidate":"b","percent":10,"started_at":"t"}"#,
        )
        .unwrap();
        assert!(old.is_running());
        assert!(describe_owner(&old).contains("unknown owner"));
    }
}
