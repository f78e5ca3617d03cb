//! A fake of Cloud Run jobs (Admin API v2 `jobs.run`, its operation and `executions.get`): each run
//! is an execution that succeeds or fails after the job's duration, on the simulator's clock.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::wire::rfc3339;

/// What a simulated job does when run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobBehavior {
    pub succeeds: bool,
    /// How long an execution runs.
    pub duration: Duration,
    /// How a failed execution ends its operation. Google documents the operation's response as
    /// the Execution; whether a failed one also sets the operation's `error` is not spelled out,
    /// so the simulator offers each reading.
    pub failure: FailureShape,
}

/// How a failed execution shows in its `jobs.run` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureShape {
    /// The operation ends with `error` set.
    OperationError,
    /// The operation ends with the failed Execution as its response, and no `error`.
    ExecutionOnly,
}

impl JobBehavior {
    pub fn succeeding(duration: Duration) -> Self {
        Self {
            succeeds: true,
            duration,
            failure: FailureShape::OperationError,
        }
    }

    pub fn failing(duration: Duration, failure: FailureShape) -> Self {
        Self {
            succeeds: false,
            duration,
            failure,
        }
    }
}

#[derive(Debug, Clone)]
struct Execution {
    /// `projects/P/locations/R/jobs/J/executions/E`.
    name: String,
    job: String,
    behavior: JobBehavior,
    created: SystemTime,
}

impl Execution {
    fn done(&self, now: SystemTime) -> bool {
        now >= self.created + self.behavior.duration
    }

    fn json(&self, now: SystemTime) -> Value {
        let done = self.done(now);
        let (succeeded, failed, running) = match (done, self.behavior.succeeds) {
            (false, _) => (0, 0, 1),
            (true, true) => (1, 0, 0),
            (true, false) => (0, 1, 0),
        };
        let state = match (done, self.behavior.succeeds) {
            (false, _) => "CONDITION_PENDING",
            (true, true) => "CONDITION_SUCCEEDED",
            (true, false) => "CONDITION_FAILED",
        };
        let mut condition = json!({
            "type": "Completed",
            "state": state,
            "lastTransitionTime": rfc3339(now.min(self.created + self.behavior.duration)),
        });
        if done && !self.behavior.succeeds {
            condition["message"] = json!("Task migrate-0 failed with message: exit status 1.");
            condition["executionReason"] = json!("NON_ZERO_EXIT_CODE");
        }
        let mut execution = json!({
            "@type": "type.googleapis.com/google.cloud.run.v2.Execution",
            "name": self.name,
            "uid": format!("uid-{}", self.name.rsplit('/').next().unwrap_or_default()),
            "job": self.job,
            "createTime": rfc3339(self.created),
            "startTime": rfc3339(self.created),
            "taskCount": 1,
            "parallelism": 1,
            "runningCount": running,
            "succeededCount": succeeded,
            "failedCount": failed,
            "cancelledCount": 0,
            "retriedCount": 0,
            "reconciling": !done,
            "conditions": [condition],
            "logUri": format!("https://console.cloud.google.com/logs/viewer?execution={}", self.job),
            "etag": format!("\"{}\"", self.name.len()),
        });
        if done {
            execution["completionTime"] = json!(rfc3339(self.created + self.behavior.duration));
        }
        execution
    }
}

/// Jobs that can be run, and the executions run so far (keyed by operation id).
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    jobs: BTreeMap<(String, String, String), JobBehavior>,
    executions: BTreeMap<String, Execution>,
}

/// Operation ids of job runs start so, to tell them from the services' operations.
pub(crate) const OPERATION_PREFIX: &str = "job-run-";

impl Jobs {
    pub fn add(&mut self, project: &str, region: &str, job: &str, behavior: JobBehavior) {
        self.jobs.insert(
            (project.to_string(), region.to_string(), job.to_string()),
            behavior,
        );
    }

    /// How many times `job` was run.
    pub fn runs(&self, job: &str) -> usize {
        self.executions.values().filter(|e| e.job == job).count()
    }

    /// `POST v2/projects/{p}/locations/{r}/jobs/{j}:run`.
    pub fn run(
        &mut self,
        project: &str,
        region: &str,
        job: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Value, ApiError> {
        if !body.iter().all(u8::is_ascii_whitespace) {
            let request: Value = serde_json::from_slice(body).map_err(|error| {
                ApiError::invalid(format!("Invalid JSON payload received. {error}"))
            })?;
            let Some(fields) = request.as_object() else {
                return Err(ApiError::invalid("Invalid JSON payload received."));
            };
            for field in fields.keys() {
                if !["overrides", "etag", "validateOnly"].contains(&field.as_str()) {
                    return Err(ApiError::invalid(format!(
                        "Invalid JSON payload received. Unknown name \"{field}\": Cannot find field."
                    )));
                }
            }
        }
        let key = (project.to_string(), region.to_string(), job.to_string());
        let Some(behavior) = self.jobs.get(&key).copied() else {
            return Err(ApiError::new(
                404,
                format!(
                    "Resource '{job}' of kind 'JOB' in region '{region}' in project '{project}' does not exist."
                ),
            ));
        };
        let number = self.executions.len() + 1;
        let id = format!("{OPERATION_PREFIX}{number:04}");
        let execution = Execution {
            name: format!(
                "projects/{project}/locations/{region}/jobs/{job}/executions/{job}-{number:05}"
            ),
            job: job.to_string(),
            behavior,
            created: now,
        };
        self.executions.insert(id.clone(), execution);
        self.operation(project, region, &id, now)
    }

    /// The operation of a run, as `operations.get` answers it.
    pub fn operation(
        &self,
        project: &str,
        region: &str,
        id: &str,
        now: SystemTime,
    ) -> Result<Value, ApiError> {
        let execution = self
            .executions
            .get(id)
            .filter(|e| e.name.starts_with(&format!("projects/{project}/locations/{region}/")))
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    format!("Operation 'projects/{project}/locations/{region}/operations/{id}' not found."),
                )
            })?;
        let body = execution.json(now);
        let mut operation = Map::new();
        operation.insert(
            "name".into(),
            json!(format!(
                "projects/{project}/locations/{region}/operations/{id}"
            )),
        );
        operation.insert("metadata".into(), body.clone());
        if execution.done(now) {
            operation.insert("done".into(), json!(true));
            let failed_with_error = !execution.behavior.succeeds
                && execution.behavior.failure == FailureShape::OperationError;
            if failed_with_error {
                operation.insert(
                    "error".into(),
                    json!({"code": 9, "message": format!("Execution {} failed: Task migrate-0 failed with message: exit status 1.", execution.name)}),
                );
            } else {
                operation.insert("response".into(), body);
            }
        }
        Ok(Value::Object(operation))
    }

    /// When the run of operation `id` ends, if it is a run.
    pub fn due(&self, id: &str) -> Option<SystemTime> {
        self.executions
            .get(id)
            .map(|e| e.created + e.behavior.duration)
    }

    /// `GET v2/projects/{p}/locations/{r}/jobs/{j}/executions/{e}`.
    pub fn execution(&self, name: &str, now: SystemTime) -> Result<Value, ApiError> {
        self.executions
            .values()
            .find(|e| e.name == name)
            .map(|e| {
                let mut body = e.json(now);
                if let Some(map) = body.as_object_mut() {
                    map.remove("@type");
                }
                body
            })
            .ok_or_else(|| ApiError::new(404, format!("Resource '{name}' does not exist.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_an_operation_that_ends_with_its_execution_after_the_jobs_duration() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut jobs = Jobs::default();
        jobs.add(
            "p",
            "r",
            "migrate",
            JobBehavior::succeeding(Duration::from_secs(30)),
        );
        jobs.add(
            "p",
            "r",
            "broken",
            JobBehavior::failing(Duration::from_secs(5), FailureShape::OperationError),
        );
        let running = jobs.run("p", "r", "migrate", b"{}", start).unwrap();
        assert!(running.get("done").is_none());
        assert_eq!(running["metadata"]["runningCount"], 1);
        let id = running["name"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let done = jobs
            .operation("p", "r", &id, start + Duration::from_secs(30))
            .unwrap();
        assert_eq!(done["done"], true);
        assert_eq!(done["response"]["succeededCount"], 1);
        let failed = jobs.run("p", "r", "broken", b"", start).unwrap();
        let id = failed["name"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let failed = jobs
            .operation("p", "r", &id, start + Duration::from_secs(5))
            .unwrap();
        assert_eq!(failed["error"]["code"], 9);
        assert_eq!(jobs.runs("migrate"), 1);
        assert_eq!(
            jobs.run("p", "r", "missing", b"", start).unwrap_err().code,
            404
        );
    }
}
