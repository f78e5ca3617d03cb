//! The simulated platform's records — services, revisions, traffic targets, operations, request
//! hits — and the rules that read them (resolved split, weighted round-robin), without I/O.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

pub const TYPE_LATEST: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST";

pub const TYPE_REVISION: &str = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION";

/// A service's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub project: String,
    pub region: String,
    pub service: String,
}

impl ServiceKey {
    pub fn new(project: &str, region: &str, service: &str) -> Self {
        Self {
            project: project.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        }
    }

    /// `projects/P/locations/R/services/S`
    pub fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.service
        )
    }

    pub fn revision_name(&self, revision: &str) -> String {
        format!("{}/revisions/{revision}", self.name())
    }
}

/// One `traffic[]` entry as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub latest: bool,
    pub revision: Option<String>,
    pub percent: u8,
    pub tag: Option<String>,
}

impl Target {
    pub fn latest(percent: u8) -> Self {
        Self {
            latest: true,
            revision: None,
            percent,
            tag: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RevState {
    Pending,
    Ready,
    Failed(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Revision {
    pub name: String,
    pub uid: String,
    pub image: String,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub state: RevState,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub key: ServiceKey,
    pub uid: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub etag: String,
    pub uri: String,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub template_revision: Option<String>,
    pub image: String,
    /// `template.sessionAffinity`: a client keeps reaching the revision it first reached, so
    /// the split is not what each request sees.
    pub session_affinity: bool,
    /// `traffic[]` as last written.
    pub traffic: Vec<Target>,
    /// The split actually in effect (`trafficStatuses[]`).
    pub applied: Vec<Target>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub description: Option<String>,
    pub revisions: Vec<Revision>,
    pub(crate) next_index: u32,
    pub tag_uris: BTreeMap<String, String>,
    pub history: Vec<Vec<(String, u8)>>,
    pub pending: usize,
    pub failure: Option<String>,
    pub transition: SystemTime,
    pub(crate) wrr: Vec<(String, i64)>,
}

impl Service {
    pub fn revision(&self, name: &str) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.name == name)
    }

    pub fn latest_ready(&self) -> Option<&str> {
        self.revisions
            .iter()
            .rev()
            .find(|r| r.state == RevState::Ready)
            .map(|r| r.name.as_str())
    }

    pub fn latest_created(&self) -> Option<&str> {
        self.revisions.last().map(|r| r.name.as_str())
    }

    pub fn reconciling(&self) -> bool {
        self.pending > 0
    }

    /// The split in effect, LATEST resolved, shares of one revision merged, zeros dropped, largest first.
    pub fn resolved_split(&self) -> Vec<(String, u8)> {
        let mut shares: BTreeMap<String, u8> = BTreeMap::new();
        for t in self.applied.iter().filter(|t| t.percent > 0) {
            let name = if t.latest {
                self.latest_ready().map(str::to_string)
            } else {
                t.revision.clone()
            };
            if let Some(name) = name {
                *shares.entry(name).or_default() += t.percent;
            }
        }
        let mut split: Vec<(String, u8)> = shares.into_iter().collect();
        split.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        split
    }

    /// The revision a tag points at, in the split in effect.
    pub fn tag_revision(&self, tag: &str) -> Option<String> {
        let target = self
            .applied
            .iter()
            .find(|t| t.tag.as_deref() == Some(tag))?;
        if target.latest {
            self.latest_ready().map(str::to_string)
        } else {
            target.revision.clone()
        }
    }

    pub(crate) fn record_split(&mut self) {
        let split = self.resolved_split();
        if self.history.last() != Some(&split) {
            self.history.push(split);
            self.wrr.clear();
        }
    }

    /// Smooth weighted round-robin (nginx's): over any 100 consecutive picks each revision gets
    /// exactly its percent, spread evenly.
    pub(crate) fn pick(&mut self) -> Option<String> {
        let split = self.resolved_split();
        if split.is_empty() {
            return None;
        }
        if self.wrr.len() != split.len() || self.wrr.iter().zip(&split).any(|(a, b)| a.0 != b.0) {
            self.wrr = split.iter().map(|(n, _)| (n.clone(), 0)).collect();
        }
        let total: i64 = split.iter().map(|(_, p)| *p as i64).sum();
        let mut best = 0;
        for (i, (_, p)) in split.iter().enumerate() {
            self.wrr[i].1 += *p as i64;
            if self.wrr[i].1 > self.wrr[best].1 {
                best = i;
            }
        }
        self.wrr[best].1 -= total;
        Some(self.wrr[best].0.clone())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub id: String,
    /// Acceptance order: operations due at the same instant finish in the order they were accepted.
    pub seq: u64,
    pub key: ServiceKey,
    pub generation: i64,
    pub new_revision: Option<String>,
    pub traffic: Vec<Target>,
    pub due: SystemTime,
    pub injected_failure: Option<String>,
    pub done: bool,
    pub error: Option<(i32, String)>,
    pub metadata: Value,
    pub response: Option<Value>,
}

impl Operation {
    pub fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/operations/{}",
            self.key.project, self.key.region, self.id
        )
    }
}

/// One request the revision answered: when the answer left, its status, and how long it took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub at: SystemTime,
    pub code: u16,
    pub latency: Duration,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RevStats {
    pub hits: Vec<Hit>,
    /// Non-health requests answered, for the deterministic error pattern.
    pub served: u64,
    /// Latencies drawn (requests of every path), for the deterministic latency pattern.
    pub timed: u64,
}

/// What a PATCH asks for, after the update mask has been applied: `None` leaves a field as is.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServicePatch {
    pub etag: Option<String>,
    pub template: Option<TemplateSpec>,
    pub traffic: Option<Vec<Target>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub description: Option<Option<String>>,
    pub validate_only: bool,
    pub force_new_revision: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateSpec {
    pub revision: Option<String>,
    pub image: String,
    pub session_affinity: bool,
}
