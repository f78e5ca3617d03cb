//! Cloud Run Admin API v2 client for one service: read it, write traffic and new revisions as
//! etag-guarded read-modify-writes, and wait for the long-running operation and reconciliation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::cloudrun::model::{
    ListRevisionsResponse, Operation, ROLLOUT_ANNOTATION, Revision, Service, rpc_code_to_http,
    traffic_targets_json,
};
use crate::gcp::{GoogleRest, Retry, google_duration};
use crate::rollout::history::{self, HISTORY_ANNOTATION, History, HistoryEntry};
use crate::rollout::ports::{
    NewRevision, Platform, PortError, PortResult, RevisionInfo, RolloutRecord, ServiceState,
    TrafficChange,
};

/// Reads are retried for this long on 429/503 and network errors.
const READ_BUDGET: Duration = Duration::from_secs(60);
const FIRST_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(2);
/// How long one `:wait` call may hold, well inside the per-request timeout.
const LONG_POLL: Duration = Duration::from_secs(20);

/// The Cloud Run service `projects/P/locations/R/services/S`.
#[derive(Debug, Clone)]
pub struct CloudRunService {
    rest: GoogleRest,
    project: String,
    region: String,
    service: String,
    /// Cleared once the server shows it has no `operations.wait`.
    long_poll: Arc<AtomicBool>,
}

impl CloudRunService {
    pub fn new(rest: GoogleRest, project: &str, region: &str, service: &str) -> Self {
        Self {
            long_poll: Arc::new(AtomicBool::new(true)),
            rest,
            project: project.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        }
    }

    pub fn rest(&self) -> &GoogleRest {
        &self.rest
    }

    fn location_path(&self) -> String {
        format!(
            "v2/projects/{}/locations/{}",
            segment(&self.project),
            segment(&self.region)
        )
    }

    fn service_path(&self) -> String {
        format!(
            "{}/services/{}",
            self.location_path(),
            segment(&self.service)
        )
    }

    async fn get_raw(&self) -> PortResult<Value> {
        self.rest
            .send(
                Method::GET,
                &self.service_path(),
                &[],
                None,
                Retry::Safe,
                READ_BUDGET,
            )
            .await
    }

    async fn get_service(&self) -> PortResult<Service> {
        parse(self.get_raw().await?, "service")
    }

    /// Read-modify-write: the current resource with `edit` applied is sent back with its etag, so
    /// the write fails with a conflict if anything changed since `expected_etag` was read.
    /// `update_mask` names exactly the fields `edit` changes: a PATCH then means the same whether
    /// the server reads a mask-less PATCH as "the fields present" (AIP-134) or as a full replace.
    /// The PATCH is sent once: after a lost answer only a fresh read (the engine's) can tell
    /// whether it landed, and sending it again blind could apply it twice.
    async fn write(
        &self,
        expected_etag: &str,
        deadline: Duration,
        update_mask: &str,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> PortResult<ServiceState> {
        let started = Instant::now();
        let mut resource = self.get_raw().await?;
        let current_etag = resource
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !expected_etag.is_empty() && current_etag != expected_etag {
            return Err(PortError::Conflict(format!(
                "the service changed since it was read (etag {expected_etag} is now {current_etag})"
            )));
        }
        let object = resource
            .as_object_mut()
            .ok_or_else(|| PortError::Unavailable("the service is not a JSON object".into()))?;
        edit(object);
        let answer = self
            .rest
            .send(
                Method::PATCH,
                &self.service_path(),
                &[("updateMask", update_mask.to_string())],
                Some(&resource),
                Retry::Never,
                deadline.min(READ_BUDGET),
            )
            .await?;
        // A server that answers the PATCH with the service itself has nothing left to wait for.
        let answered_with_service = answer.get("done").is_none()
            && answer
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| name.contains("/services/"));
        let operation: Operation = if answered_with_service {
            Operation {
                done: true,
                ..Operation::default()
            }
        } else {
            parse(answer, "operation")?
        };
        let remaining = deadline.saturating_sub(started.elapsed());
        self.wait_for(operation, remaining).await?;
        self.wait_settled(deadline.saturating_sub(started.elapsed()))
            .await
            .map(|service| service.to_state())
    }

    async fn wait_for(&self, mut operation: Operation, budget: Duration) -> PortResult<()> {
        let give_up = Instant::now() + budget;
        let mut pause = FIRST_POLL;
        while !operation.done {
            if operation.name.is_empty() {
                // Some servers answer with no operation to follow; the service itself tells.
                return Ok(());
            }
            let remaining = give_up.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(PortError::Unavailable(format!(
                    "operation {} was not done after {}",
                    operation.name,
                    humantime::format_duration(budget)
                )));
            }
            // One long-poll `:wait` call costs less than a dozen GETs; servers without it get polled.
            if self.long_poll.load(Ordering::Relaxed) {
                let timeout = remaining.min(LONG_POLL);
                let body = json!({ "timeout": google_duration(timeout) });
                let path = format!("v2/{}:wait", operation.name);
                match self
                    .rest
                    .send(
                        Method::POST,
                        &path,
                        &[],
                        Some(&body),
                        Retry::Safe,
                        READ_BUDGET,
                    )
                    .await
                {
                    Ok(answer) => {
                        operation = parse(answer, "operation")?;
                        continue;
                    }
                    Err(PortError::NotFound(_))
                    | Err(PortError::Rejected {
                        status: 400 | 405 | 501,
                        ..
                    }) => self.long_poll.store(false, Ordering::Relaxed),
                    Err(error) => return Err(error),
                }
            }
            tokio::time::sleep(pause.min(remaining)).await;
            pause = (pause * 2).min(MAX_POLL);
            let path = format!("v2/{}", operation.name);
            let answer = self
                .rest
                .send(Method::GET, &path, &[], None, Retry::Safe, READ_BUDGET)
                .await?;
            operation = parse(answer, "operation")?;
        }
        match operation.error {
            Some(status) if status.code != 0 => Err(PortError::Rejected {
                status: rpc_code_to_http(status.code),
                message: format!("operation {} failed: {}", operation.name, status.message),
            }),
            _ => Ok(()),
        }
    }

    async fn wait_settled(&self, budget: Duration) -> PortResult<Service> {
        let give_up = Instant::now() + budget;
        let mut pause = FIRST_POLL;
        loop {
            let service = self.get_service().await?;
            if service.settled() {
                return Ok(service);
            }
            if Instant::now() + pause > give_up {
                return Err(PortError::Unavailable(format!(
                    "{} was still reconciling after {}",
                    service.name,
                    humantime::format_duration(budget)
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    async fn get_revision(&self, revision: &str) -> PortResult<Revision> {
        let path = format!("{}/revisions/{}", self.service_path(), segment(revision));
        let answer = self
            .rest
            .send(Method::GET, &path, &[], None, Retry::Safe, READ_BUDGET)
            .await?;
        parse(answer, "revision")
    }
}

/// One path segment, percent-encoded whatever it holds: names are validated at input, and this
/// keeps a name that slipped through from adding path segments or a query.
fn segment(text: &str) -> String {
    // URL parsers resolve `.`, `..` and even `%2e%2e` segments: such a name must address
    // nothing rather than the parent resource.
    if text.chars().all(|c| c == '.') {
        return "-".repeat(text.len().max(1));
    }
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%5F", "_")
        .replace("%2E", ".")
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> PortResult<T> {
    serde_json::from_value(value)
        .map_err(|error| PortError::Unavailable(format!("unexpected {what} JSON: {error}")))
}

fn set_rollout_annotation(service: &mut Map<String, Value>, record: Option<&RolloutRecord>) {
    let annotations = service
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    let annotations = annotations.as_object_mut().expect("made an object above");
    match record {
        Some(record) => {
            let json = serde_json::to_string(record).expect("a rollout record serializes");
            annotations.insert(ROLLOUT_ANNOTATION.to_string(), Value::String(json));
        }
        None => {
            annotations.remove(ROLLOUT_ANNOTATION);
        }
    }
    if annotations.is_empty() {
        service.remove("annotations");
    }
}

/// Adds `entry` to the history annotation of the resource about to be written back (the same
/// etag-guarded write that ends the rollout), every other annotation left as read. An unreadable
/// history never stops the write: a new list starts, and the log says so.
fn append_history(service: &mut Map<String, Value>, entry: &HistoryEntry) {
    let annotations = service
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    let annotations = annotations.as_object_mut().expect("made an object above");
    let existing = match annotations.get(HISTORY_ANNOTATION) {
        None => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    };
    let appended = history::append(existing.as_deref(), entry.clone());
    if let Some(why) = &appended.unreadable {
        crate::say!("rollout history: {why}; a new list starts with this rollout");
    }
    annotations.insert(
        HISTORY_ANNOTATION.to_string(),
        Value::String(appended.value),
    );
}

impl CloudRunService {
    /// The service and its rollout history, as read now.
    pub async fn read_history(&self) -> PortResult<(ServiceState, History)> {
        let service = self.get_service().await?;
        let history = history::parse(
            service
                .annotations
                .get(HISTORY_ANNOTATION)
                .map(String::as_str),
        );
        Ok((service.to_state(), history))
    }
}

#[async_trait]
impl Platform for CloudRunService {
    async fn read_service(&self) -> PortResult<ServiceState> {
        Ok(self.get_service().await?.to_state())
    }

    async fn read_revision(&self, revision: &str) -> PortResult<RevisionInfo> {
        Ok(self.get_revision(revision).await?.to_info())
    }

    async fn list_revisions(&self) -> PortResult<Vec<RevisionInfo>> {
        let path = format!("{}/revisions", self.service_path());
        let mut revisions = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![("pageSize", "100".to_string())];
            if let Some(token) = &page_token {
                query.push(("pageToken", token.clone()));
            }
            let answer = self
                .rest
                .send(Method::GET, &path, &query, None, Retry::Safe, READ_BUDGET)
                .await?;
            let page: ListRevisionsResponse = parse(answer, "revision list")?;
            revisions.extend(page.revisions.iter().map(Revision::to_info));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        Ok(revisions)
    }

    async fn create_revision(
        &self,
        spec: &NewRevision,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState> {
        self.write(etag, deadline, "template,traffic,annotations", |service| {
            let template = service.entry("template").or_insert_with(|| json!({}));
            if !template.is_object() {
                *template = json!({});
            }
            // A new name makes Cloud Run create a revision; reusing the old one would be a 409.
            template["revision"] = json!(spec.revision);
            let containers = template
                .as_object_mut()
                .expect("made an object above")
                .entry("containers")
                .or_insert_with(|| json!([{}]));
            match containers.as_array_mut() {
                Some(list) if !list.is_empty() => list[0]["image"] = json!(spec.image),
                _ => *containers = json!([{ "image": spec.image }]),
            }
            service.insert("traffic".into(), traffic_targets_json(&spec.traffic));
            set_rollout_annotation(service, spec.rollout.as_ref());
        })
        .await
    }

    async fn set_traffic(
        &self,
        change: &TrafficChange,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState> {
        self.write(etag, deadline, "traffic,annotations", |service| {
            service.insert("traffic".into(), traffic_targets_json(&change.traffic));
            set_rollout_annotation(service, change.rollout.as_ref());
            if let Some(entry) = &change.history {
                append_history(service, entry);
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    #[test]
    fn path_segments_cannot_add_segments_or_a_query() {
        assert_eq!(segment("loopcloser-prod"), "loopcloser-prod");
        assert_eq!(
            segment("web?updateMask=traffic"),
            "web%3FupdateMask%3Dtraffic"
        );
        assert_eq!(segment("nope/../web"), "nope%2F..%2Fweb");
        assert_eq!(segment(".."), "--");
        assert_eq!(segment(""), "-");
    }
}
