//! The hooks adapter: a backup copy through the Cloud Storage JSON API (`objects.rewrite`) and
//! Cloud Run jobs through the Admin API v2 (`jobs.run`, its operation, the execution's outcome).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::gcp::{GoogleRest, Retry};
use crate::rollout::hooks::GcsObject;
use crate::rollout::ports::{Hooks, PortError};

const CALL_BUDGET: Duration = Duration::from_secs(60);
const FIRST_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(10);

/// Hooks on Google Cloud: Storage for the backup, Cloud Run jobs of the service's project and
/// region for the jobs.
#[derive(Debug, Clone)]
pub struct GoogleHooks {
    storage: GoogleRest,
    run: GoogleRest,
    project: String,
    region: String,
}

impl GoogleHooks {
    pub fn new(storage: GoogleRest, run: GoogleRest, project: &str, region: &str) -> Self {
        Self {
            storage,
            run,
            project: project.to_string(),
            region: region.to_string(),
        }
    }

    /// Requests sent to Storage and to Cloud Run for hooks.
    pub fn calls(&self) -> (u64, u64) {
        (self.storage.calls(), self.run.calls())
    }

    async fn wait_for_operation(
        &self,
        mut operation: Value,
        give_up: Instant,
    ) -> Result<Value, String> {
        let mut pause = FIRST_POLL;
        while operation.get("done").and_then(Value::as_bool) != Some(true) {
            let name = operation
                .get("name")
                .and_then(Value::as_str)
                .ok_or("the jobs.run operation has no name to follow")?
                .to_string();
            let remaining = give_up.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(format!(
                    "still running at --hook-timeout (execution {}); it goes on in Cloud Run unless cancelled there",
                    execution_name(&operation).unwrap_or("unknown")
                ));
            }
            tokio::time::sleep(pause.min(remaining)).await;
            pause = (pause * 2).min(MAX_POLL);
            let remaining = give_up.saturating_duration_since(Instant::now());
            operation = self
                .run
                .send(
                    Method::GET,
                    &format!("v2/{name}"),
                    &[],
                    None,
                    Retry::Safe,
                    CALL_BUDGET.min(remaining.max(Duration::from_secs(1))),
                )
                .await
                .map_err(|error| format!("could not follow the job's operation: {error}"))?;
        }
        Ok(operation)
    }
}

/// What a path segment keeps as is: RFC 3986's unreserved characters; everything else, `/` in
/// object names first, is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A segment of a URL path, whatever it holds (object names have `/`).
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

fn execution_name(operation: &Value) -> Option<&str> {
    operation
        .get("response")
        .or_else(|| operation.get("metadata"))
        .and_then(|execution| execution.get("name"))
        .and_then(Value::as_str)
}

/// Whether a finished `jobs.run` operation succeeded: its `error`, or its execution's failed or
/// cancelled tasks, or a `Completed` condition that failed. Google documents the response as the
/// Execution without saying whether a failure also sets `error`, so both are read.
fn judge_execution(operation: &Value) -> Result<String, String> {
    let execution = operation
        .get("response")
        .or_else(|| operation.get("metadata"))
        .cloned()
        .unwrap_or(Value::Null);
    let name = execution
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("unknown execution")
        .to_string();
    if let Some(error) = operation.get("error")
        && error.get("code").and_then(Value::as_i64).unwrap_or(0) != 0
    {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("failed");
        // Google's message usually names the execution already.
        return Err(if message.contains(&name) {
            message.to_string()
        } else {
            format!("{name}: {message}")
        });
    }
    let count = |field: &str| execution.get(field).and_then(Value::as_i64).unwrap_or(0);
    let completed = execution
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions.iter().find(|condition| {
                condition.get("type").and_then(Value::as_str) == Some("Completed")
            })
        });
    let condition_failed = completed
        .and_then(|condition| condition.get("state").and_then(Value::as_str))
        .is_some_and(|state| state == "CONDITION_FAILED");
    if count("failedCount") > 0 || count("cancelledCount") > 0 || condition_failed {
        let message = completed
            .and_then(|condition| condition.get("message").and_then(Value::as_str))
            .unwrap_or("");
        return Err(format!(
            "{name}: {} of {} tasks failed, {} cancelled{}",
            count("failedCount"),
            count("taskCount").max(1),
            count("cancelledCount"),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        ));
    }
    Ok(name)
}

#[async_trait]
impl Hooks for GoogleHooks {
    async fn backup(
        &self,
        source: &GcsObject,
        copy: &GcsObject,
        deadline: Duration,
    ) -> Result<(), String> {
        let give_up = Instant::now() + deadline;
        let path = format!(
            "storage/v1/b/{}/o/{}/rewriteTo/b/{}/o/{}",
            segment(&source.bucket),
            segment(&source.name),
            segment(&copy.bucket),
            segment(&copy.name)
        );
        // ifGenerationMatch=0: the copy's name is new, so a retried call can never overwrite
        // anything but a copy this rollout made.
        let mut query = vec![("ifGenerationMatch", "0".to_string())];
        loop {
            let remaining = give_up.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(format!(
                    "the copy of {source} was not done by --hook-timeout"
                ));
            }
            let answer = self
                .storage
                .send(
                    Method::POST,
                    &path,
                    &query,
                    Some(&json!({})),
                    Retry::Safe,
                    remaining.min(CALL_BUDGET),
                )
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                // A retry after a lost answer finds its own copy in place.
                Err(PortError::Rejected { status: 412, .. }) if query.len() == 1 => return Ok(()),
                Err(error) => return Err(format!("could not copy {source}: {error}")),
            };
            if answer.get("done").and_then(Value::as_bool) == Some(true) {
                return Ok(());
            }
            let token = answer
                .get("rewriteToken")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("the copy of {source} is not done and has no rewriteToken")
                })?;
            query = vec![
                ("ifGenerationMatch", "0".to_string()),
                ("rewriteToken", token.to_string()),
            ];
        }
    }

    async fn run_job(&self, job: &str, deadline: Duration) -> Result<String, String> {
        let give_up = Instant::now() + deadline;
        let path = format!(
            "v2/projects/{}/locations/{}/jobs/{}:run",
            segment(&self.project),
            segment(&self.region),
            segment(job)
        );
        // Never sent twice: a second run of a migration is not the same as one.
        let operation = self
            .run
            .send(
                Method::POST,
                &path,
                &[],
                Some(&json!({})),
                Retry::Never,
                CALL_BUDGET.min(deadline),
            )
            .await
            .map_err(|error| format!("could not run job {job}: {error}"))?;
        let finished = self.wait_for_operation(operation, give_up).await?;
        judge_execution(&finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_execution_is_failed_whether_or_not_its_operation_carries_an_error() {
        let failed_execution = json!({
            "name": "projects/p/locations/r/jobs/migrate/executions/migrate-1",
            "taskCount": 1,
            "failedCount": 1,
            "conditions": [{"type": "Completed", "state": "CONDITION_FAILED", "message": "exit status 1"}]
        });
        let with_error = json!({"done": true, "error": {"code": 9, "message": "Task failed"}, "metadata": failed_execution});
        let without = json!({"done": true, "response": failed_execution});
        assert!(
            judge_execution(&with_error)
                .unwrap_err()
                .contains("Task failed")
        );
        let reason = judge_execution(&without).unwrap_err();
        assert!(
            reason.contains("1 of 1 tasks failed") && reason.contains("exit status 1"),
            "{reason}"
        );
        let succeeded = json!({"done": true, "response": {
            "name": "projects/p/locations/r/jobs/migrate/executions/migrate-2",
            "taskCount": 1, "succeededCount": 1,
            "conditions": [{"type": "Completed", "state": "CONDITION_SUCCEEDED"}]
        }});
        assert_eq!(
            judge_execution(&succeeded).unwrap(),
            "projects/p/locations/r/jobs/migrate/executions/migrate-2"
        );
    }
}
