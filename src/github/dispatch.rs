//! `workflow_dispatch` and the watch: sends the dispatch once, finds its run (200 run details, or by
//! listing runs), then follows run, jobs and steps to the conclusion with conditional polling.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::exit::ExitCode;
use crate::github::client::{GitHub, GitHubError, Repo, encode};
use crate::rollout::Interrupt;

/// What to dispatch and how to watch it.
#[derive(Debug, Clone)]
pub struct DispatchRequest {
    pub repo: Repo,
    pub workflow: String,
    pub git_ref: String,
    pub inputs: Vec<(String, String)>,
    pub timeout: Duration,
    pub poll: Duration,
    pub wait: bool,
    pub cancel_on_timeout: bool,
    pub cancel_on_interrupt: bool,
}

/// How the watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// The run completed with this conclusion.
    Concluded(String),
    TimedOut,
    Interrupted,
    /// `--no-wait`: dispatched, not watched.
    Dispatched,
}

/// The result of one dispatch.
#[derive(Debug, Clone)]
pub struct DispatchReport {
    pub run_id: u64,
    pub run_url: String,
    pub end: WatchEnd,
    pub jobs: Vec<(String, Option<String>)>,
    pub duration: Duration,
    pub cancelled: bool,
}

impl DispatchReport {
    pub fn outcome(&self) -> String {
        match &self.end {
            WatchEnd::Concluded(conclusion) => conclusion.clone(),
            WatchEnd::TimedOut => "timed_out".into(),
            WatchEnd::Interrupted => "interrupted".into(),
            WatchEnd::Dispatched => "dispatched".into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match &self.end {
            WatchEnd::Concluded(c) if c == "success" => ExitCode::Ok,
            WatchEnd::Dispatched => ExitCode::Ok,
            WatchEnd::Interrupted => ExitCode::Interrupted,
            _ => ExitCode::CheckFailed,
        }
    }

    /// The run as the `dispatch --json` result shows it.
    pub fn result(&self) -> RunResult {
        RunResult {
            outcome: self.outcome(),
            run_id: self.run_id,
            run_url: self.run_url.clone(),
            conclusion: match &self.end {
                WatchEnd::Concluded(conclusion) => Some(conclusion.clone()),
                _ => None,
            },
            jobs: self
                .jobs
                .iter()
                .map(|(name, conclusion)| JobResult {
                    name: name.clone(),
                    conclusion: conclusion.clone(),
                })
                .collect(),
            duration_s: (self.duration.as_secs_f64() * 10.0).round() / 10.0,
            cancelled: self.cancelled,
            exit_code: self.exit_code(),
        }
    }

    /// [`Self::result`] as JSON.
    pub fn json(&self) -> Value {
        serde_json::to_value(self.result()).expect("a run result serializes")
    }
}

/// A dispatched run as results show it: how the watch ended, the run, and each job's conclusion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// The run's conclusion, or `timed_out`, `interrupted`, `dispatched`.
    pub outcome: String,
    pub run_id: u64,
    pub run_url: String,
    pub conclusion: Option<String>,
    pub jobs: Vec<JobResult>,
    /// Seconds, to a tenth.
    pub duration_s: f64,
    pub cancelled: bool,
    pub exit_code: ExitCode,
}

/// One job of a run and its conclusion (`None` while it had none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobResult {
    pub name: String,
    pub conclusion: Option<String>,
}

/// Why a dispatch could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchError {
    /// Something the user can fix; nothing was started.
    BadInput(String),
    /// The API failed.
    Api(String),
}

/// The input that carries a unique id the workflow shows as its `run-name`.
pub fn distinct_id(inputs: &[(String, String)]) -> Option<&str> {
    inputs
        .iter()
        .find(|(key, _)| matches!(key.to_lowercase().as_str(), "distinct_id" | "distinct-id"))
        .map(|(_, value)| value.as_str())
}

/// Dispatches the workflow and watches its run. `log` gets one line per change.
pub async fn dispatch(
    github: &GitHub,
    request: &DispatchRequest,
    interrupt: &Interrupt,
    log: &(dyn Fn(&str) + Sync),
) -> Result<DispatchReport, DispatchError> {
    let clock = github.clock();
    let started = clock.now();
    let repo = &request.repo;
    let workflow = encode(&request.workflow);
    let inputs: serde_json::Map<String, Value> = request
        .inputs
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let path = format!("{}/actions/workflows/{workflow}/dispatches", repo.path());
    let mut body = json!({"ref": request.git_ref, "inputs": inputs, "return_run_details": true});
    log(&format!(
        "dispatching {} on {} in {repo}",
        request.workflow, request.git_ref
    ));
    let mut answer = github.post(&path, &body).await;
    if let Err(GitHubError::Status {
        status: 400 | 422,
        message,
        ..
    }) = &answer
        && message.contains("return_run_details")
    {
        // GitHub Enterprise Server before 3.21 refuses the field (and did not run anything).
        log("this GitHub does not return run details: dispatching without them");
        body.as_object_mut().map(|b| b.remove("return_run_details"));
        answer = github.post(&path, &body).await;
    }
    let details = match answer {
        Ok(answer) if answer.body["workflow_run_id"].is_u64() => Some(answer.body),
        Ok(_) => None,
        Err(GitHubError::Ambiguous(reason)) => {
            log(&format!(
                "no clear answer to the dispatch ({reason}): looking for its run instead of sending it again"
            ));
            None
        }
        Err(error) => return Err(explain(github, request, error).await),
    };
    let run_id = match &details {
        Some(details) => details["workflow_run_id"].as_u64().unwrap_or_default(),
        None => find_run(github, request, started, log).await?,
    };
    let run_url = details
        .as_ref()
        .and_then(|d| d["html_url"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{}/{}/{}/actions/runs/{run_id}",
                github.web_base(),
                repo.owner,
                repo.name
            )
        });
    log(&format!("run: {run_url}"));
    let mut report = DispatchReport {
        run_id,
        run_url,
        end: WatchEnd::Dispatched,
        jobs: Vec::new(),
        duration: Duration::ZERO,
        cancelled: false,
    };
    if request.wait {
        watch(github, request, interrupt, log, &mut report).await?;
    }
    report.duration = clock.now().duration_since(started).unwrap_or_default();
    Ok(report)
}

/// Turns a refusal into a message naming what to fix.
async fn explain(github: &GitHub, request: &DispatchRequest, error: GitHubError) -> DispatchError {
    let repo = &request.repo;
    match error.status() {
        Some(404) => {
            let listing = github
                .get(&format!("{}/actions/workflows?per_page=100", repo.path()))
                .await;
            let names: Vec<String> = listing
                .ok()
                .and_then(|l| l["workflows"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|w| {
                    format!(
                        "{} ({})",
                        w["path"]
                            .as_str()
                            .unwrap_or_default()
                            .rsplit('/')
                            .next()
                            .unwrap_or_default(),
                        w["name"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            DispatchError::BadInput(if names.is_empty() {
                format!(
                    "--workflow {}: not found in {repo} (or the token cannot see the repository)",
                    request.workflow
                )
            } else {
                format!(
                    "--workflow {}: not found in {repo}; its workflows are: {}",
                    request.workflow,
                    names.join(", ")
                )
            })
        }
        Some(422) => {
            let message = error_message(&error);
            if message.contains("Unexpected inputs") {
                let declared = declared_inputs(github, request).await;
                DispatchError::BadInput(match declared {
                    Some(names) => format!(
                        "--input: {message}; {} declares: {}",
                        request.workflow,
                        if names.is_empty() {
                            "no inputs".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                    None => format!("--input: {message}"),
                })
            } else if message.contains("ref") {
                DispatchError::BadInput(format!("--ref {}: {message}", request.git_ref))
            } else {
                DispatchError::BadInput(format!("the dispatch was refused: {message}"))
            }
        }
        Some(403) => DispatchError::BadInput(format!(
            "the token may not dispatch workflows in {repo} ({}): it needs the `actions: write` permission (workflow `permissions:` or the token's scopes)",
            error_message(&error)
        )),
        Some(401) => DispatchError::BadInput(
            "GitHub refused the token: set GITHUB_TOKEN (or GH_TOKEN) to a valid token".into(),
        ),
        _ => DispatchError::Api(format!("the dispatch failed: {error}")),
    }
}

fn error_message(error: &GitHubError) -> String {
    match error {
        GitHubError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The `workflow_dispatch` input names the workflow file declares (read from the file at `ref`).
async fn declared_inputs(github: &GitHub, request: &DispatchRequest) -> Option<Vec<String>> {
    let repo = &request.repo;
    let file = if request.workflow.contains('/') || request.workflow.parse::<u64>().is_ok() {
        let workflow = github
            .get(&format!(
                "{}/actions/workflows/{}",
                repo.path(),
                encode(&request.workflow)
            ))
            .await
            .ok()?;
        workflow["path"].as_str()?.to_string()
    } else {
        format!(".github/workflows/{}", request.workflow)
    };
    let content = github
        .get(&format!(
            "{}/contents/{file}?ref={}",
            repo.path(),
            encode(&request.git_ref)
        ))
        .await
        .ok()?;
    let text = decode_base64(content["content"].as_str()?)?;
    Some(workflow_dispatch_inputs(&text))
}

fn decode_base64(text: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// The keys under `on: workflow_dispatch: inputs:` of a workflow file (indentation-based).
pub fn workflow_dispatch_inputs(yaml: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut dispatch_indent = None;
    let mut inputs_indent = None;
    let mut child_indent = None;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(inputs) = inputs_indent {
            if indent <= inputs {
                break;
            }
            let child = *child_indent.get_or_insert(indent);
            if indent == child
                && let Some((key, _)) = trimmed.split_once(':')
            {
                names.push(key.trim().trim_matches(['"', '\'']).to_string());
            }
            continue;
        }
        if let Some(dispatch) = dispatch_indent {
            if indent <= dispatch {
                dispatch_indent = None;
            } else if trimmed.starts_with("inputs:") {
                inputs_indent = Some(indent);
            }
            continue;
        }
        if trimmed.starts_with("workflow_dispatch:") {
            dispatch_indent = Some(indent);
        }
    }
    names
}

/// Finds the run a dispatch started when GitHub did not say: the workflow's `workflow_dispatch`
/// runs on the ref created since the dispatch; the one whose title is the distinct id when there
/// is one, else the earliest.
async fn find_run(
    github: &GitHub,
    request: &DispatchRequest,
    started: std::time::SystemTime,
    log: &(dyn Fn(&str) + Sync),
) -> Result<u64, DispatchError> {
    // GitHub's timestamps have whole seconds; allow a little clock skew.
    let since = started - Duration::from_secs(2);
    let since_text = humantime::format_rfc3339_seconds(since).to_string();
    let path = format!(
        "{}/actions/workflows/{}/runs?event=workflow_dispatch&branch={}&created={}&per_page=50",
        request.repo.path(),
        encode(&request.workflow),
        encode(&request.git_ref),
        encode(&format!(">={since_text}"))
    );
    let distinct = distinct_id(&request.inputs);
    let pause = request
        .poll
        .clamp(Duration::from_secs(1), Duration::from_secs(5));
    for attempt in 0..24 {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
        }
        let listing = github
            .get(&path)
            .await
            .map_err(|e| DispatchError::Api(format!("could not list runs: {e}")))?;
        let mut runs: Vec<&Value> = listing["workflow_runs"]
            .as_array()
            .map(|r| r.iter().collect())
            .unwrap_or_default();
        runs.retain(|run| {
            run["head_branch"].as_str() == Some(request.git_ref.trim_start_matches("refs/heads/"))
                && distinct.is_none_or(|id| run["display_title"].as_str() == Some(id))
        });
        runs.sort_by_key(|run| {
            (
                run["created_at"].as_str().unwrap_or_default().to_string(),
                run["id"].as_u64(),
            )
        });
        if let Some(run) = runs.first()
            && let Some(id) = run["id"].as_u64()
        {
            if distinct.is_none() && runs.len() > 1 {
                log(&format!(
                    "{} runs started since the dispatch; taking the earliest (pass a distinct_id input to match exactly)",
                    runs.len()
                ));
            }
            return Ok(id);
        }
    }
    Err(DispatchError::Api(format!(
        "the dispatch may or may not have started a run: none found on {} since {since_text} (it was not sent again)",
        request.git_ref
    )))
}

/// Remembers each job's and step's last state and says what changed.
#[derive(Debug, Default)]
struct Transitions {
    run: String,
    seen: HashMap<String, String>,
}

fn state_text(item: &Value) -> String {
    match (item["status"].as_str(), item["conclusion"].as_str()) {
        (Some("completed"), Some(conclusion)) => conclusion.to_string(),
        (Some(status), _) => status.to_string(),
        _ => "unknown".into(),
    }
}

impl Transitions {
    fn run(&mut self, run: &Value, log: &(dyn Fn(&str) + Sync)) {
        let state = state_text(run);
        if state != self.run {
            log(&format!("run {}: {state}", run["id"]));
            self.run = state;
        }
    }

    fn jobs(&mut self, jobs: &Value, log: &(dyn Fn(&str) + Sync)) {
        for job in jobs["jobs"].as_array().into_iter().flatten() {
            let name = job["name"].as_str().unwrap_or("?");
            let key = format!("job {}", job["id"]);
            let state = state_text(job);
            if self.seen.get(&key) != Some(&state) {
                log(&format!("  job {name}: {state}"));
                self.seen.insert(key.clone(), state);
            }
            for step in job["steps"].as_array().into_iter().flatten() {
                let step_key = format!("{key} step {}", step["number"]);
                let state = state_text(step);
                if state == "queued" && !self.seen.contains_key(&step_key) {
                    self.seen.insert(step_key, state);
                    continue;
                }
                if self.seen.get(&step_key) != Some(&state) {
                    log(&format!(
                        "    {name} › {}: {state}",
                        step["name"].as_str().unwrap_or("?")
                    ));
                    self.seen.insert(step_key, state);
                }
            }
        }
    }
}

async fn watch(
    github: &GitHub,
    request: &DispatchRequest,
    interrupt: &Interrupt,
    log: &(dyn Fn(&str) + Sync),
    report: &mut DispatchReport,
) -> Result<(), DispatchError> {
    let run_path = format!("{}/actions/runs/{}", request.repo.path(), report.run_id);
    let jobs_path = format!("{run_path}/jobs?per_page=100");
    let deadline = tokio::time::Instant::now() + request.timeout;
    let mut transitions = Transitions::default();
    let mut approval_shown = false;
    let api = |e: GitHubError| DispatchError::Api(format!("watching the run failed: {e}"));
    loop {
        let run = github.get(&run_path).await.map_err(api)?;
        let jobs = github.get(&jobs_path).await.map_err(api)?;
        transitions.run(&run, log);
        transitions.jobs(&jobs, log);
        report.jobs = jobs["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| {
                (
                    j["name"].as_str().unwrap_or_default().to_string(),
                    j["conclusion"].as_str().map(str::to_string),
                )
            })
            .collect();
        let status = run["status"].as_str().unwrap_or_default();
        if status == "completed" {
            let conclusion = run["conclusion"].as_str().unwrap_or("unknown").to_string();
            log(&format!("run concluded: {conclusion} — {}", report.run_url));
            report.end = WatchEnd::Concluded(conclusion);
            return Ok(());
        }
        if status == "waiting" && !approval_shown {
            approval_shown = true;
            let pending = github
                .get(&format!("{run_path}/pending_deployments"))
                .await
                .map_err(api)?;
            for deployment in pending.as_array().into_iter().flatten() {
                log(&approval_line(deployment, &report.run_url));
            }
        } else if status != "waiting" {
            approval_shown = false;
        }
        tokio::select! {
            _ = tokio::time::sleep(request.poll) => {}
            _ = tokio::time::sleep_until(deadline) => {
                log(&format!("timed out after {}s waiting for the run", request.timeout.as_secs()));
                report.end = WatchEnd::TimedOut;
                if request.cancel_on_timeout {
                    report.cancelled = cancel(github, request, report, log).await;
                } else {
                    log(&format!("the run is left running: {}", report.run_url));
                }
                return Ok(());
            }
            _ = interrupt.fired() => {
                log("interrupted");
                report.end = WatchEnd::Interrupted;
                if request.cancel_on_interrupt {
                    report.cancelled = cancel(github, request, report, log).await;
                } else {
                    log(&format!("the run is left running: {}", report.run_url));
                }
                return Ok(());
            }
        }
    }
}

fn approval_line(deployment: &Value, run_url: &str) -> String {
    let environment = deployment["environment"]["name"].as_str().unwrap_or("?");
    let reviewers: Vec<String> = deployment["reviewers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| match r["type"].as_str() {
            Some("Team") => format!(
                "team {}",
                r["reviewer"]["slug"]
                    .as_str()
                    .or(r["reviewer"]["name"].as_str())
                    .unwrap_or("?")
            ),
            _ => format!("@{}", r["reviewer"]["login"].as_str().unwrap_or("?")),
        })
        .collect();
    format!(
        "WAITING for approval to deploy to environment {environment}: {} can approve at {run_url}",
        if reviewers.is_empty() {
            "anyone with write access".to_string()
        } else {
            reviewers.join(", ")
        }
    )
}

async fn cancel(
    github: &GitHub,
    request: &DispatchRequest,
    report: &DispatchReport,
    log: &(dyn Fn(&str) + Sync),
) -> bool {
    let path = format!(
        "{}/actions/runs/{}/cancel",
        request.repo.path(),
        report.run_id
    );
    match github.post(&path, &json!({})).await {
        Ok(_) => {
            log(&format!("cancelled the run: {}", report.run_url));
            true
        }
        Err(error) => {
            log(&format!("could not cancel the run: {error}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_inputs_are_read_from_the_workflow_file() {
        let yaml = "name: Deploy\non:\n  workflow_dispatch:\n    inputs:\n      environment:\n        type: choice\n        options: [dev, prod]\n      image_tag:\n        default: latest\n  push:\n    branches: [main]\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n";
        assert_eq!(
            workflow_dispatch_inputs(yaml),
            vec!["environment".to_string(), "image_tag".to_string()]
        );
    }

    #[test]
    fn base64_content_decodes() {
        assert_eq!(decode_base64("aGVs\nbG8=").as_deref(), Some("hello"));
    }

    #[test]
    fn the_distinct_id_input_is_found_by_name() {
        let inputs = vec![
            ("environment".to_string(), "prod".to_string()),
            ("distinct_id".to_string(), "abc".to_string()),
        ];
        assert_eq!(distinct_id(&inputs), Some("abc"));
    }
}
