//! The parts of Cloud Run Admin API v2 resources shiftgate reads (Service, Revision, Operation),
//! and their translation into the engine's `ServiceState` and `RevisionInfo`.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::rollout::ports::{RevisionInfo, RolloutRecord, ServiceState, TrafficTarget};

/// The service annotation that records a rollout in progress.
pub const ROLLOUT_ANNOTATION: &str = "shiftgate.dev/rollout";
pub const TYPE_REVISION: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION";
pub const TYPE_LATEST: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST";
const CONDITION_SUCCEEDED: &str = "CONDITION_SUCCEEDED";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Service {
    pub name: String,
    pub uri: Option<String>,
    pub etag: Option<String>,
    pub generation: Option<String>,
    pub observed_generation: Option<String>,
    pub reconciling: bool,
    pub annotations: BTreeMap<String, String>,
    pub template: Option<Template>,
    #[serde(deserialize_with = "traffic")]
    pub traffic: Vec<Traffic>,
    #[serde(deserialize_with = "traffic_statuses")]
    pub traffic_statuses: Vec<TrafficStatus>,
    pub latest_ready_revision: Option<String>,
    pub latest_created_revision: Option<String>,
    pub terminal_condition: Option<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Template {
    pub revision: Option<String>,
    pub containers: Vec<Container>,
    /// Left out by the API when false.
    pub session_affinity: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Traffic {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub revision: Option<String>,
    #[serde(deserialize_with = "percent")]
    pub percent: u8,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TrafficStatus {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub revision: Option<String>,
    #[serde(deserialize_with = "percent")]
    pub percent: u8,
    pub tag: Option<String>,
    pub uri: Option<String>,
}

/// A share of traffic: 0 to 100, refused (naming the field) otherwise.
fn percent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let percent = i64::deserialize(deserializer)
        .map_err(|error| D::Error::custom(format!("traffic percent: {error}")))?;
    u8::try_from(percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| D::Error::custom(format!("traffic percent {percent} is not 0 to 100")))
}

/// A split whose shares add up to more than 100% is not one Cloud Run can serve: refused rather
/// than read as a state (where it would overflow sums and mislead every decision).
fn checked_split<'de, D, T>(
    deserializer: D,
    field: &str,
    share: fn(&T) -> u8,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let entries = Vec::<T>::deserialize(deserializer)?;
    let sum: u32 = entries.iter().map(|e| u32::from(share(e))).sum();
    if sum > 100 {
        return Err(D::Error::custom(format!(
            "{field} percents add up to {sum}, more than 100"
        )));
    }
    Ok(entries)
}

fn traffic<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Traffic>, D::Error> {
    checked_split(deserializer, "traffic", |t: &Traffic| t.percent)
}

fn traffic_statuses<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<TrafficStatus>, D::Error> {
    checked_split(deserializer, "trafficStatuses", |t: &TrafficStatus| {
        t.percent
    })
}

impl TrafficStatus {
    fn target(&self) -> Traffic {
        Traffic {
            kind: self.kind.clone(),
            revision: self.revision.clone(),
            percent: self.percent,
            tag: self.tag.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub state: Option<String>,
    pub message: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Revision {
    pub name: String,
    pub reconciling: bool,
    pub create_time: Option<String>,
    pub containers: Vec<Container>,
    pub conditions: Vec<Condition>,
    pub terminal_condition: Option<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListRevisionsResponse {
    pub revisions: Vec<Revision>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Operation {
    pub name: String,
    pub done: bool,
    pub error: Option<Status>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    pub code: i32,
    pub message: String,
}

/// google.rpc.Code → the HTTP status Google maps it to.
pub fn rpc_code_to_http(code: i32) -> u16 {
    match code {
        3 | 9 | 11 => 400,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        16 => 401,
        14 => 503,
        4 => 504,
        _ => 500,
    }
}

/// A split as the `traffic[]` of a Service request: every target names its revision explicitly.
pub fn traffic_targets_json(traffic: &[TrafficTarget]) -> Value {
    Value::Array(
        traffic
            .iter()
            .map(|target| {
                let mut entry = json!({
                    "type": TYPE_REVISION,
                    "revision": target.revision,
                    "percent": target.percent,
                });
                if let Some(tag) = &target.tag {
                    entry["tag"] = json!(tag);
                }
                entry
            })
            .collect(),
    )
}

fn short(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

fn generation(value: &Option<String>) -> i64 {
    value.as_deref().and_then(|g| g.parse().ok()).unwrap_or(0)
}

impl Service {
    /// Done applying the last change: not reconciling and the latest generation observed.
    pub fn settled(&self) -> bool {
        !self.reconciling && generation(&self.observed_generation) >= generation(&self.generation)
    }

    pub fn to_state(&self) -> ServiceState {
        let latest_ready = self.latest_ready_revision.as_deref().map(short);
        // A LATEST target does not name its revision; its status entry usually does.
        let latest_resolved = self
            .traffic_statuses
            .iter()
            .find(|s| s.kind.as_deref() == Some(TYPE_LATEST))
            .and_then(|s| s.revision.as_deref().map(short))
            .or_else(|| latest_ready.clone());
        // While a change is being applied, `traffic` is what was asked for and
        // `trafficStatuses` what is actually served: report what users get.
        let served: Vec<Traffic>;
        let entries: &[Traffic] = if !self.settled() && !self.traffic_statuses.is_empty() {
            served = self
                .traffic_statuses
                .iter()
                .map(TrafficStatus::target)
                .collect();
            &served
        } else {
            &self.traffic
        };
        let traffic = entries
            .iter()
            .filter_map(|target| {
                let revision = match (target.kind.as_deref(), &target.revision) {
                    (Some(TYPE_LATEST), _) | (_, None) => latest_resolved.clone()?,
                    (_, Some(revision)) => short(revision),
                };
                Some(TrafficTarget {
                    revision,
                    percent: target.percent,
                    tag: target.tag.clone().filter(|t| !t.is_empty()),
                })
            })
            .collect();
        let tag_uris = self
            .traffic_statuses
            .iter()
            .filter_map(|s| Some((s.tag.clone()?, s.uri.clone()?)))
            .filter(|(tag, uri)| !tag.is_empty() && !uri.is_empty())
            .collect();
        let (rollout, unreadable_rollout) = match self.annotations.get(ROLLOUT_ANNOTATION) {
            None => (None, None),
            Some(json) => match serde_json::from_str::<RolloutRecord>(json) {
                Ok(record) if record.percent > 100 => (
                    None,
                    Some(format!(
                        "{ROLLOUT_ANNOTATION}: percent {} is not 0 to 100",
                        record.percent
                    )),
                ),
                Ok(record) => (Some(record), None),
                Err(error) => (None, Some(format!("{ROLLOUT_ANNOTATION}: {error}"))),
            },
        };
        ServiceState {
            name: self.name.clone(),
            etag: self.etag.clone().unwrap_or_default(),
            uri: self.uri.clone().filter(|u| !u.is_empty()),
            traffic,
            tag_uris,
            latest_ready_revision: latest_ready,
            latest_created_revision: self.latest_created_revision.as_deref().map(short),
            image: self
                .template
                .as_ref()
                .and_then(|t| t.containers.first())
                .and_then(|c| c.image.clone()),
            rollout,
            unreadable_rollout,
            reconciling: !self.settled(),
            session_affinity: self.template.as_ref().is_some_and(|t| t.session_affinity),
        }
    }
}

impl Revision {
    pub fn to_info(&self) -> RevisionInfo {
        let ready_condition = self
            .terminal_condition
            .iter()
            .chain(self.conditions.iter())
            .find(|c| matches!(c.kind.as_deref(), Some("Ready") | None));
        let ready = !self.reconciling
            && ready_condition.is_some_and(|c| c.state.as_deref() == Some(CONDITION_SUCCEEDED));
        let reason = (!ready).then(|| {
            ready_condition
                .and_then(|c| c.message.clone().or_else(|| c.reason.clone()))
                .unwrap_or_else(|| {
                    if self.reconciling {
                        "still starting".to_string()
                    } else {
                        "no Ready condition".to_string()
                    }
                })
        });
        RevisionInfo {
            name: short(&self.name),
            ready,
            reason,
            image: self.containers.first().and_then(|c| c.image.clone()),
            create_time: self.create_time.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gcloud_deployed_service_resolves_latest_to_its_revision() {
        let json = r#"{
            "name": "projects/p/locations/r/services/app",
            "etag": "\"abc\"", "generation": "3", "observedGeneration": "3",
            "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100},
                        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-00001-aaa", "tag": "old"}],
            "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100},
                        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-00001-aaa", "tag": "old", "uri": "https://old---app.run.app"}],
            "latestReadyRevision": "projects/p/locations/r/services/app/revisions/app-00002-bbb",
            "latestCreatedRevision": "projects/p/locations/r/services/app/revisions/app-00002-bbb",
            "template": {"revision": "app-00002-bbb", "containers": [{"image": "img:v2"}]}
        }"#;
        let service: Service = serde_json::from_str(json).unwrap();
        let state = service.to_state();
        assert_eq!(
            state.traffic,
            vec![
                TrafficTarget::new("app-00002-bbb", 100),
                TrafficTarget::tagged("app-00001-aaa", 0, "old")
            ]
        );
        assert_eq!(state.tag_uris["old"], "https://old---app.run.app");
        assert_eq!(
            state.latest_created_revision.as_deref(),
            Some("app-00002-bbb")
        );
        assert_eq!(state.image.as_deref(), Some("img:v2"));
        assert!(!state.reconciling);
        assert!(state.rollout.is_none());
    }

    #[test]
    fn while_reconciling_the_served_split_is_reported_not_the_requested_one() {
        let json = r#"{
            "name": "projects/p/locations/r/services/app", "generation": "5", "observedGeneration": "4",
            "reconciling": true,
            "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-1", "percent": 100}],
            "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-1", "percent": 90},
                                {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "app-2", "percent": 10}]
        }"#;
        let state = serde_json::from_str::<Service>(json).unwrap().to_state();
        assert_eq!(
            state.traffic,
            vec![
                TrafficTarget::new("app-1", 90),
                TrafficTarget::new("app-2", 10)
            ]
        );
        assert!(state.reconciling);
    }

    #[test]
    fn a_record_that_does_not_parse_or_is_out_of_range_is_unreadable_not_absent() {
        for annotation in [
            r#"{not json"#,
            r#"{"id":"x","stable":"a","candidate":"b","percent":150,"started_at":"t"}"#,
        ] {
            let service = Service {
                annotations: [(ROLLOUT_ANNOTATION.to_string(), annotation.to_string())].into(),
                ..Service::default()
            };
            let state = service.to_state();
            assert!(state.rollout.is_none(), "{annotation}");
            assert!(state.unreadable_rollout.is_some(), "{annotation}");
        }
    }

    #[test]
    fn a_service_behind_its_generation_is_still_reconciling() {
        let service: Service =
            serde_json::from_str(r#"{"name":"s","generation":"4","observedGeneration":"3"}"#)
                .unwrap();
        assert!(service.to_state().reconciling);
    }
}
