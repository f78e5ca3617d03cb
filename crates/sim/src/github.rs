//! A fake GitHub REST API on loopback for `dispatch`, `incident` and deployments: workflow runs that
//! move queued → in_progress → (waiting) → completed with jobs and steps, ETags and 304s, rate limits,
//! issues and their comments, and a `Date` header from its own clock (which a test can move on).

mod deployments;

pub use deployments::{DeploymentState, DeploymentStatusState};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use shiftgate_clock::Clock;

/// How the fake answers a workflow dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchMode {
    /// github.com today: 200 with the run id when `return_run_details` is true.
    RunDetails,
    /// Older servers: 204 and no body, whatever the request says.
    NoContent,
    /// GitHub Enterprise Server before 3.21: 400 when the body carries `return_run_details`.
    RejectsRunDetails,
}

/// One step of a scripted job.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub name: String,
    pub duration: Duration,
    pub fails: bool,
}

/// An environment protection rule in front of a job.
#[derive(Debug, Clone)]
pub struct Approval {
    pub environment: String,
    pub reviewers: Vec<String>,
    pub teams: Vec<String>,
    /// Approved this long after the job starts waiting; `None` waits for [`GitHubSim::approve`].
    pub approve_after: Option<Duration>,
}

/// One scripted job: steps run one after another.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    pub steps: Vec<StepSpec>,
    pub approval: Option<Approval>,
}

impl JobSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            steps: Vec::new(),
            approval: None,
        }
    }

    pub fn step(mut self, name: &str, duration: Duration) -> Self {
        self.steps.push(StepSpec {
            name: name.into(),
            duration,
            fails: false,
        });
        self
    }

    pub fn failing_step(mut self, name: &str, duration: Duration) -> Self {
        self.steps.push(StepSpec {
            name: name.into(),
            duration,
            fails: true,
        });
        self
    }

    pub fn approval(mut self, approval: Approval) -> Self {
        self.approval = Some(approval);
        self
    }
}

/// A `workflow_dispatch` workflow and what each of its runs does.
#[derive(Debug, Clone)]
pub struct WorkflowSpec {
    pub id: u64,
    pub name: String,
    pub file: String,
    pub inputs: Vec<String>,
    /// The input `run-name:` shows, so the run's `display_title` equals its value.
    pub run_name_input: Option<String>,
    pub queued_for: Duration,
    pub jobs: Vec<JobSpec>,
}

impl WorkflowSpec {
    pub fn new(file: &str, name: &str) -> Self {
        Self {
            id: 0,
            name: name.into(),
            file: file.into(),
            inputs: Vec::new(),
            run_name_input: None,
            queued_for: Duration::from_secs(5),
            jobs: Vec::new(),
        }
    }

    pub fn input(mut self, name: &str) -> Self {
        self.inputs.push(name.into());
        self
    }

    pub fn run_name_from(mut self, input: &str) -> Self {
        self.run_name_input = Some(input.into());
        self
    }

    pub fn queued_for(mut self, queued: Duration) -> Self {
        self.queued_for = queued;
        self
    }

    pub fn job(mut self, job: JobSpec) -> Self {
        self.jobs.push(job);
        self
    }

    fn yaml(&self) -> String {
        let mut text = format!("name: {}\n", self.name);
        if let Some(input) = &self.run_name_input {
            text.push_str(&format!("run-name: ${{{{ inputs.{input} }}}}\n"));
        }
        text.push_str("on:\n  workflow_dispatch:\n    inputs:\n");
        for input in &self.inputs {
            text.push_str(&format!(
                "      {input}:\n        description: \"{input}\"\n        required: false\n"
            ));
        }
        text.push_str("jobs:\n");
        for job in &self.jobs {
            text.push_str(&format!("  {}:\n    runs-on: ubuntu-latest\n", job.name));
        }
        text
    }
}

/// One request/response pair the fake answered, for the contract test.
#[derive(Debug, Clone)]
pub struct GitHubExchange {
    pub method: String,
    /// The OpenAPI path template, e.g. `/repos/{owner}/{repo}/issues`.
    pub operation: String,
    pub status: u16,
    pub body: Option<Value>,
    /// The request's JSON body, when it had one.
    pub request: Option<Value>,
    /// The request's query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// The answer's `Link` header (GitHub's pagination), when it had one.
    pub link: Option<String>,
}

/// Counters for rate-limit accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Every request that reached the fake.
    pub total: u64,
    /// 304 Not Modified answers (free).
    pub not_modified: u64,
    /// Requests that counted against the rate limit.
    pub counted: u64,
}

#[derive(Debug, Clone)]
struct Run {
    id: u64,
    number: u64,
    workflow: usize,
    head_branch: String,
    display_title: String,
    created: SystemTime,
    approved_at: Option<SystemTime>,
    cancelled_at: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct IssueState {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub open: bool,
    pub state_reason: Option<String>,
    pub comments: Vec<String>,
    /// Each comment's id and creation time, in the order of `comments`.
    comment_meta: Vec<(u64, SystemTime)>,
    created: SystemTime,
    /// When it was last closed (`None` while open).
    closed: Option<SystemTime>,
    /// Creation, any comment, closing or reopening.
    updated: SystemTime,
}

#[derive(Debug, Clone)]
struct Label {
    id: u64,
    name: String,
    color: String,
}

/// A fault the fake serves instead of (or after) a real answer.
#[derive(Debug, Clone)]
pub struct GitHubFault {
    pub method: &'static str,
    pub path_suffix: &'static str,
    pub status: u16,
    /// Carry out the request, then answer `status` anyway (an ambiguous failure).
    pub after_effect: bool,
}

struct State {
    clock: Clock,
    base: String,
    owner: String,
    repo: String,
    branches: Vec<String>,
    mode: DispatchMode,
    workflows: Vec<WorkflowSpec>,
    runs: Vec<Run>,
    next_id: u64,
    issues: Vec<IssueState>,
    labels: Vec<Label>,
    actions_write: bool,
    limit: u64,
    used: u64,
    window_end: SystemTime,
    secondary: u32,
    faults: Vec<GitHubFault>,
    counts: RequestCounts,
    exchanges: Vec<GitHubExchange>,
    dispatches: u64,
    issue_creates: u64,
    deployments: Vec<DeploymentState>,
    deployment_creates: u64,
    /// `METHOD /path` of every request, in order.
    requests: Vec<String>,
    /// How many issues were closed through `PATCH …/issues/N`.
    issue_closes: u64,
}

/// The fake GitHub on 127.0.0.1. Its server stops when it is dropped.
pub struct GitHubSim {
    state: Arc<Mutex<State>>,
    base: String,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for GitHubSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubSim")
            .field("base", &self.base)
            .finish()
    }
}

impl Drop for GitHubSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHubSim {
    /// Serves repository `owner/repo` (branch `main`) on a free loopback port.
    pub async fn start(clock: Clock, owner: &str, repo: &str) -> std::io::Result<GitHubSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            clock,
            base: base.clone(),
            owner: owner.into(),
            repo: repo.into(),
            branches: vec!["main".into()],
            mode: DispatchMode::RunDetails,
            workflows: Vec::new(),
            runs: Vec::new(),
            next_id: 1000,
            issues: Vec::new(),
            labels: Vec::new(),
            actions_write: true,
            limit: 1000,
            used: 0,
            window_end: clock.now() + Duration::from_secs(3600),
            secondary: 0,
            faults: Vec::new(),
            counts: RequestCounts::default(),
            exchanges: Vec::new(),
            dispatches: 0,
            issue_creates: 0,
            deployments: Vec::new(),
            deployment_creates: 0,
            requests: Vec::new(),
            issue_closes: 0,
        }));
        let shared = state.clone();
        let router = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { handle(&state, method, uri, headers, body) }
            },
        );
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!("fake GitHub stopped: {error}");
            }
        });
        Ok(GitHubSim { state, base, task })
    }

    /// The value for `GITHUB_API_URL`.
    pub fn api_url(&self) -> String {
        self.base.clone()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("fake GitHub state"))
    }

    pub fn add_workflow(&self, mut workflow: WorkflowSpec) -> u64 {
        self.with(|s| {
            s.next_id += 1;
            workflow.id = s.next_id;
            s.workflows.push(workflow);
            s.next_id
        })
    }

    pub fn add_branch(&self, name: &str) {
        self.with(|s| s.branches.push(name.into()))
    }

    pub fn set_dispatch_mode(&self, mode: DispatchMode) {
        self.with(|s| s.mode = mode)
    }

    /// Answers dispatches with 403 "Resource not accessible by integration".
    pub fn deny_actions_write(&self) {
        self.with(|s| s.actions_write = false)
    }

    /// Sets the primary limit and how much of it is already used in this window.
    pub fn set_rate_limit(&self, limit: u64, used: u64) {
        self.with(|s| {
            s.limit = limit;
            s.used = used;
        })
    }

    /// The next `count` requests get a secondary-rate-limit 403 with `retry-after: 60`.
    pub fn secondary_limit(&self, count: u32) {
        self.with(|s| s.secondary = count)
    }

    pub fn inject(&self, fault: GitHubFault) {
        self.with(|s| s.faults.push(fault))
    }

    /// Starts a run of workflow `file` on `branch` as if someone else dispatched it.
    pub fn start_run(&self, file: &str, branch: &str, display_title: &str) -> u64 {
        self.with(|s| {
            let workflow = s
                .workflows
                .iter()
                .position(|w| w.file == file)
                .expect("a workflow added to the fake");
            new_run(s, workflow, branch, display_title.into())
        })
    }

    /// Approves the pending deployment of a waiting run now.
    pub fn approve(&self, run_id: u64) {
        self.with(|s| {
            let now = s.clock.now();
            if let Some(run) = s.runs.iter_mut().find(|r| r.id == run_id) {
                run.approved_at = Some(now);
            }
        })
    }

    /// Cancels a run as if someone pressed "Cancel workflow" now.
    pub fn cancel(&self, run_id: u64) {
        self.with(|s| {
            let now = s.clock.now();
            if let Some(run) = s.runs.iter_mut().find(|r| r.id == run_id) {
                run.cancelled_at.get_or_insert(now);
            }
        })
    }

    pub fn run_ids(&self) -> Vec<u64> {
        self.with(|s| s.runs.iter().map(|r| r.id).collect())
    }

    /// `(status, conclusion)` of a run now.
    pub fn run_state(&self, run_id: u64) -> Option<(String, Option<String>)> {
        self.with(|s| {
            let run = s.runs.iter().find(|r| r.id == run_id)?.clone();
            let view = view(s, &run);
            Some((view.status, view.conclusion))
        })
    }

    pub fn dispatch_posts(&self) -> u64 {
        self.with(|s| s.dispatches)
    }

    pub fn issue_create_posts(&self) -> u64 {
        self.with(|s| s.issue_creates)
    }

    /// `PATCH …/issues/N` requests that closed an open issue.
    pub fn issue_closes(&self) -> u64 {
        self.with(|s| s.issue_closes)
    }

    /// Moves the fake's clock on by `by`: every later timestamp it writes (`created_at`, the
    /// `Date` header) is that much later, as if the time had passed. For scenarios that span hours
    /// across separate runs of the binary without waiting for them.
    pub fn advance(&self, by: Duration) {
        self.with(|s| s.clock = s.clock.advanced(by))
    }

    /// The fake's time now.
    pub fn now(&self) -> SystemTime {
        self.with(|s| s.clock.now())
    }

    /// An incident issue someone (or an earlier run) opened at the fake's time now; its number.
    pub fn seed_incident(&self, title: &str, body: &str, labels: &[&str]) -> u64 {
        let now = self.with(|s| s.clock.now());
        self.seed(title, body, labels, now, None)
    }

    pub fn issues(&self) -> Vec<IssueState> {
        self.with(|s| s.issues.clone())
    }

    /// An issue as if filed at `created` (and closed at `closed`), with its labels made as
    /// `POST /issues` makes them; returns its number.
    pub fn seed_issue(
        &self,
        title: &str,
        labels: &[&str],
        created: SystemTime,
        closed: Option<SystemTime>,
    ) -> u64 {
        self.seed(title, "", labels, created, closed)
    }

    /// [`Self::seed_issue`] with a body (an incident's hidden key, say).
    pub fn seed(
        &self,
        title: &str,
        body: &str,
        labels: &[&str],
        created: SystemTime,
        closed: Option<SystemTime>,
    ) -> u64 {
        self.with(|s| {
            for label in labels {
                ensure_label(s, label, "ededed");
            }
            let number = s.issues.len() as u64 + 1;
            s.issues.push(IssueState {
                number,
                title: title.into(),
                body: body.into(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                open: closed.is_none(),
                state_reason: closed.map(|_| "completed".to_string()),
                comments: Vec::new(),
                comment_meta: Vec::new(),
                created,
                closed,
                updated: closed.unwrap_or(created),
            });
            number
        })
    }

    pub fn label_names(&self) -> Vec<String> {
        self.with(|s| s.labels.iter().map(|l| l.name.clone()).collect())
    }

    pub fn counts(&self) -> RequestCounts {
        self.with(|s| s.counts)
    }

    pub fn exchanges(&self) -> Vec<GitHubExchange> {
        self.with(|s| s.exchanges.clone())
    }

    /// `METHOD /path` of every request that reached the fake, in order (faults included).
    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.requests.clone())
    }

    /// Every deployment, oldest first, with its statuses.
    pub fn deployments(&self) -> Vec<DeploymentState> {
        self.with(|s| s.deployments.clone())
    }

    /// `POST …/deployments` requests carried out (faults answered before the route excluded).
    pub fn deployment_create_posts(&self) -> u64 {
        self.with(|s| s.deployment_creates)
    }

    /// A deployment of `environment` that an earlier run made, with `states` posted in order;
    /// returns its id.
    pub fn seed_deployment(&self, environment: &str, production: bool, states: &[&str]) -> u64 {
        self.with(|s| deployments::seed(s, environment, production, states))
    }
}

fn new_run(s: &mut State, workflow: usize, branch: &str, display_title: String) -> u64 {
    s.next_id += 1;
    let id = s.next_id;
    let number = s.runs.iter().filter(|r| r.workflow == workflow).count() as u64 + 1;
    s.runs.push(Run {
        id,
        number,
        workflow,
        head_branch: branch.into(),
        display_title,
        created: s.clock.now(),
        approved_at: None,
        cancelled_at: None,
    });
    id
}

// ---------------------------------------------------------------------------------------------
// Run progression, computed from the clock.

#[derive(Debug, Clone)]
struct StepView {
    name: String,
    number: usize,
    status: &'static str,
    conclusion: Option<&'static str>,
    started_at: Option<SystemTime>,
    completed_at: Option<SystemTime>,
}

#[derive(Debug, Clone)]
struct JobView {
    index: usize,
    status: &'static str,
    conclusion: Option<&'static str>,
    started_at: Option<SystemTime>,
    completed_at: Option<SystemTime>,
    steps: Vec<StepView>,
}

#[derive(Debug, Clone)]
struct RunView {
    status: String,
    conclusion: Option<String>,
    updated: SystemTime,
    started: SystemTime,
    jobs: Vec<JobView>,
    /// The waiting job and since when.
    waiting: Option<(usize, SystemTime)>,
}

fn view(s: &State, run: &Run) -> RunView {
    let spec = &s.workflows[run.workflow];
    let now = s.clock.now();
    let cancel = run.cancelled_at.filter(|c| *c <= now);
    let horizon = cancel.unwrap_or(now);
    let mut last = run.created;
    let mut t = run.created + spec.queued_for;
    let queued_job = |index: usize| JobView {
        index,
        status: "queued",
        conclusion: None,
        started_at: None,
        completed_at: None,
        steps: Vec::new(),
    };
    let mut jobs = Vec::new();
    let mut failed = false;
    let mut waiting = None;
    let mut finished = true;
    if horizon < t {
        jobs = (0..spec.jobs.len()).map(queued_job).collect();
        finished = false;
    } else {
        last = t;
        for (index, job) in spec.jobs.iter().enumerate() {
            if !finished {
                jobs.push(queued_job(index));
                continue;
            }
            if failed {
                jobs.push(JobView {
                    index,
                    status: "completed",
                    conclusion: Some("skipped"),
                    started_at: Some(t),
                    completed_at: Some(t),
                    steps: Vec::new(),
                });
                continue;
            }
            if let Some(approval) = &job.approval {
                let gate = t;
                let approved = run
                    .approved_at
                    .or(approval.approve_after.map(|after| gate + after));
                match approved {
                    Some(at) if at <= horizon => {
                        t = t.max(at);
                        last = last.max(t);
                    }
                    _ => {
                        waiting = Some((index, gate));
                        jobs.push(JobView {
                            status: "waiting",
                            ..queued_job(index)
                        });
                        finished = false;
                        continue;
                    }
                }
            }
            let started = t;
            let mut steps = Vec::new();
            let mut job_failed = false;
            let mut running = false;
            for (number, step) in job.steps.iter().enumerate() {
                let number = number + 1;
                if running || job_failed {
                    steps.push(StepView {
                        name: step.name.clone(),
                        number,
                        status: if job_failed { "completed" } else { "queued" },
                        conclusion: job_failed.then_some("skipped"),
                        started_at: job_failed.then_some(t),
                        completed_at: job_failed.then_some(t),
                    });
                    continue;
                }
                let end = t + step.duration;
                if horizon < end {
                    running = true;
                    steps.push(StepView {
                        name: step.name.clone(),
                        number,
                        status: "in_progress",
                        conclusion: None,
                        started_at: Some(t),
                        completed_at: None,
                    });
                    continue;
                }
                steps.push(StepView {
                    name: step.name.clone(),
                    number,
                    status: "completed",
                    conclusion: Some(if step.fails { "failure" } else { "success" }),
                    started_at: Some(t),
                    completed_at: Some(end),
                });
                t = end;
                last = last.max(t);
                job_failed = step.fails;
            }
            if running {
                finished = false;
                jobs.push(JobView {
                    index,
                    status: "in_progress",
                    conclusion: None,
                    started_at: Some(started),
                    completed_at: None,
                    steps,
                });
            } else {
                failed |= job_failed;
                jobs.push(JobView {
                    index,
                    status: "completed",
                    conclusion: Some(if job_failed { "failure" } else { "success" }),
                    started_at: Some(started),
                    completed_at: Some(t),
                    steps,
                });
            }
        }
    }
    let started = run.created + spec.queued_for;
    if finished {
        return RunView {
            status: "completed".into(),
            conclusion: Some(if failed { "failure" } else { "success" }.into()),
            updated: last,
            started,
            jobs,
            waiting: None,
        };
    }
    if let Some(at) = cancel {
        for job in &mut jobs {
            if job.status != "completed" {
                job.status = "completed";
                job.conclusion = Some("cancelled");
                job.completed_at = Some(at);
                for step in &mut job.steps {
                    if step.status != "completed" {
                        step.conclusion = Some(if step.status == "in_progress" {
                            "cancelled"
                        } else {
                            "skipped"
                        });
                        step.status = "completed";
                        step.completed_at = Some(at);
                    }
                }
            }
        }
        return RunView {
            status: "completed".into(),
            conclusion: Some("cancelled".into()),
            updated: at,
            started,
            jobs,
            waiting: None,
        };
    }
    let status = if waiting.is_some() {
        "waiting"
    } else if now < started {
        "queued"
    } else {
        "in_progress"
    };
    if let Some((_, gate)) = waiting {
        last = last.max(gate);
    }
    RunView {
        status: status.into(),
        conclusion: None,
        updated: last,
        started,
        jobs,
        waiting,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Debug)]
struct Answer {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    operation: &'static str,
}

fn answer(status: u16, operation: &'static str, body: Value) -> Answer {
    Answer {
        status,
        body: Some(body),
        headers: Vec::new(),
        operation,
    }
}

fn error(status: u16, operation: &'static str, message: &str) -> Answer {
    answer(
        status,
        operation,
        json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.to_string(),
        }),
    )
}

fn handle(
    state: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().expect("fake GitHub state");
    s.counts.total += 1;
    let now = s.clock.now();
    if now >= s.window_end {
        s.used = 0;
        s.window_end = now + Duration::from_secs(3600);
    }
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect()
        })
        .unwrap_or_default();
    let path = uri.path().to_string();
    s.requests.push(format!("{method} {path}"));
    let request = serde_json::from_slice::<Value>(&body).ok();
    let mut result = if headers.get(header::AUTHORIZATION).is_none() {
        error(401, "", "Requires authentication")
    } else if s.secondary > 0 {
        s.secondary -= 1;
        let mut limited = error(
            403,
            "",
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        );
        limited.headers.push(("retry-after", "60".into()));
        limited
    } else if s.used >= s.limit {
        error(
            403,
            "",
            "API rate limit exceeded for installation. Please wait until the limit resets.",
        )
    } else {
        let fault = s
            .faults
            .iter()
            .position(|f| f.method == method.as_str() && path.ends_with(f.path_suffix));
        let fault = fault.map(|i| s.faults.remove(i));
        match fault {
            Some(fault) if !fault.after_effect => error(fault.status, "", "Server Error"),
            fault => {
                let mut routed = route(&mut s, &method, &path, &query, &body);
                if let Some(fault) = fault {
                    routed = error(fault.status, "", "Server Error");
                }
                routed
            }
        }
    };
    // ETags: a GET whose body is unchanged answers 304, which costs no rate limit.
    let mut etag = None;
    if method == Method::GET && result.status == 200 {
        let text = result
            .body
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
        let tag = format!("W/\"{:016x}\"", fnv(&text));
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == tag);
        if matches {
            result.status = 304;
            result.body = None;
        }
        etag = Some(tag);
    }
    if result.status == 304 {
        s.counts.not_modified += 1;
    } else {
        s.counts.counted += 1;
        s.used += 1;
    }
    let date = httpdate::fmt_http_date(now);
    let limit = s.limit;
    let remaining = s.limit.saturating_sub(s.used);
    let reset = s
        .window_end
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let link = result
        .headers
        .iter()
        .find(|(name, _)| *name == "link")
        .map(|(_, value)| value.clone());
    s.exchanges.push(GitHubExchange {
        method: method.to_string(),
        operation: result.operation.to_string(),
        status: result.status,
        body: result.body.clone(),
        request,
        query: query.clone(),
        link,
    });
    drop(s);
    let status = StatusCode::from_u16(result.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match &result.body {
        Some(body) => (status, body.to_string()).into_response(),
        None => status.into_response(),
    };
    let h = response.headers_mut();
    if result.body.is_some() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert(header::ETAG, tag);
    }
    for (name, value) in [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
        // GitHub's time, as every answer carries it (hyper would otherwise write the real time).
        ("date", date),
    ]
    .into_iter()
    .chain(result.headers)
    {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(name, value);
        }
    }
    response
}

/// GitHub's `per_page` (default 30, at most 100) and `page` (from 1) of a list request.
fn paging(query: &BTreeMap<String, String>) -> (usize, usize) {
    let number = |name: &str| query.get(name).and_then(|n| n.parse::<usize>().ok());
    (
        number("per_page").unwrap_or(30).clamp(1, 100),
        number("page").unwrap_or(1).max(1),
    )
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(byte) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

const OP_WORKFLOWS: &str = "/repos/{owner}/{repo}/actions/workflows";
const OP_DISPATCH: &str = "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches";
const OP_WORKFLOW_RUNS: &str = "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs";
const OP_RUN: &str = "/repos/{owner}/{repo}/actions/runs/{run_id}";
const OP_JOBS: &str = "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs";
const OP_PENDING: &str = "/repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments";
const OP_CANCEL: &str = "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel";
const OP_CONTENTS: &str = "/repos/{owner}/{repo}/contents/{path}";
const OP_ISSUES: &str = "/repos/{owner}/{repo}/issues";
const OP_ISSUE: &str = "/repos/{owner}/{repo}/issues/{issue_number}";
const OP_COMMENTS: &str = "/repos/{owner}/{repo}/issues/{issue_number}/comments";
const OP_LABEL: &str = "/repos/{owner}/{repo}/labels/{name}";
const OP_LABELS: &str = "/repos/{owner}/{repo}/labels";

fn route(
    s: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Answer {
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some(["repos", owner, repo, rest @ ..]) = Some(segments.as_slice()) else {
        return error(404, "", "Not Found");
    };
    if *owner != s.owner || *repo != s.repo {
        return error(404, "", "Not Found");
    }
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(answer) = deployments::route(s, method.as_str(), rest, query, &body) {
        return answer;
    }
    match (method.as_str(), rest) {
        ("GET", ["actions", "workflows"]) => {
            let workflows: Vec<Value> = (0..s.workflows.len())
                .map(|i| workflow_json(s, i))
                .collect();
            answer(
                200,
                OP_WORKFLOWS,
                json!({"total_count": workflows.len(), "workflows": workflows}),
            )
        }
        ("POST", ["actions", "workflows", id, "dispatches"]) => dispatch(s, id, &body),
        ("GET", ["actions", "workflows", id, "runs"]) => {
            let Some(workflow) = find_workflow(s, id) else {
                return error(404, OP_WORKFLOW_RUNS, "Not Found");
            };
            let since = query
                .get("created")
                .and_then(|c| c.strip_prefix(">="))
                .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok());
            let per_page: usize = query
                .get("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(30);
            let mut runs: Vec<Run> = s
                .runs
                .iter()
                .filter(|r| r.workflow == workflow)
                .filter(|r| query.get("branch").is_none_or(|b| *b == r.head_branch))
                .filter(|_| query.get("event").is_none_or(|e| e == "workflow_dispatch"))
                .filter(|r| since.is_none_or(|since| r.created >= since))
                .cloned()
                .collect();
            runs.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
            let total = runs.len();
            let runs: Vec<Value> = runs.iter().take(per_page).map(|r| run_json(s, r)).collect();
            answer(
                200,
                OP_WORKFLOW_RUNS,
                json!({"total_count": total, "workflow_runs": runs}),
            )
        }
        ("GET", ["actions", "runs", id]) => match find_run(s, id) {
            Some(run) => answer(200, OP_RUN, run_json(s, &run)),
            None => error(404, OP_RUN, "Not Found"),
        },
        ("GET", ["actions", "runs", id, "jobs"]) => match find_run(s, id) {
            Some(run) => {
                let view = view(s, &run);
                let jobs: Vec<Value> = view.jobs.iter().map(|j| job_json(s, &run, j)).collect();
                answer(
                    200,
                    OP_JOBS,
                    json!({"total_count": jobs.len(), "jobs": jobs}),
                )
            }
            None => error(404, OP_JOBS, "Not Found"),
        },
        ("GET", ["actions", "runs", id, "pending_deployments"]) => match find_run(s, id) {
            Some(run) => {
                let view = view(s, &run);
                let pending: Vec<Value> = view
                    .waiting
                    .iter()
                    .filter_map(|(job, since)| {
                        let approval = s.workflows[run.workflow].jobs[*job].approval.as_ref()?;
                        Some(pending_json(s, approval, *since))
                    })
                    .collect();
                answer(200, OP_PENDING, Value::Array(pending))
            }
            None => error(404, OP_PENDING, "Not Found"),
        },
        ("POST", ["actions", "runs", id, "cancel"]) => {
            let Some(run) = find_run(s, id) else {
                return error(404, OP_CANCEL, "Not Found");
            };
            if view(s, &run).status == "completed" {
                return error(
                    409,
                    OP_CANCEL,
                    "Cannot cancel a workflow run that is completed.",
                );
            }
            let now = s.clock.now() + Duration::from_secs(2);
            if let Some(run) = s.runs.iter_mut().find(|r| r.id == run.id) {
                run.cancelled_at.get_or_insert(now);
            }
            answer(202, OP_CANCEL, json!({}))
        }
        ("GET", ["contents", file @ ..]) => {
            let file = file.join("/");
            match s
                .workflows
                .iter()
                .find(|w| format!(".github/workflows/{}", w.file) == file)
            {
                Some(workflow) => {
                    let text = workflow.yaml();
                    answer(200, OP_CONTENTS, content_json(s, &file, &text))
                }
                None => error(404, OP_CONTENTS, "Not Found"),
            }
        }
        ("GET", ["issues"]) => list_issues(s, query),
        ("POST", ["issues"]) => {
            s.issue_creates += 1;
            let Some(title) = body["title"].as_str().filter(|t| !t.is_empty()) else {
                return answer(
                    422,
                    OP_ISSUES,
                    json!({"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest", "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]}),
                );
            };
            let labels: Vec<String> = body["labels"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for label in &labels {
                ensure_label(s, label, "ededed");
            }
            let number = s.issues.len() as u64 + 1;
            let issue = IssueState {
                number,
                title: title.into(),
                body: body["body"].as_str().unwrap_or_default().into(),
                labels,
                open: true,
                state_reason: None,
                comments: Vec::new(),
                comment_meta: Vec::new(),
                created: s.clock.now(),
                closed: None,
                updated: s.clock.now(),
            };
            s.issues.push(issue.clone());
            answer(201, OP_ISSUES, issue_json(s, &issue))
        }
        ("PATCH", ["issues", number]) => {
            let Some(index) = issue_index(s, number) else {
                return error(404, OP_ISSUE, "Not Found");
            };
            let state = body["state"].as_str();
            let reason = body["state_reason"].as_str();
            let valid_state = state.is_none_or(|state| matches!(state, "open" | "closed"));
            let valid_reason = reason.is_none_or(|reason| {
                matches!(
                    reason,
                    "completed" | "not_planned" | "duplicate" | "reopened"
                )
            });
            if !valid_state || !valid_reason {
                return answer(
                    422,
                    OP_ISSUE,
                    json!({"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest", "errors": [{"resource": "Issue", "code": "invalid", "field": if valid_state { "state_reason" } else { "state" }}]}),
                );
            }
            let now = s.clock.now();
            match state {
                Some("closed") if s.issues[index].open => {
                    s.issues[index].open = false;
                    s.issues[index].closed = Some(now);
                    s.issue_closes += 1;
                }
                Some("open") => {
                    s.issues[index].open = true;
                    s.issues[index].closed = None;
                }
                _ => {}
            }
            if state.is_some() {
                s.issues[index].updated = now;
            }
            if let Some(reason) = reason {
                s.issues[index].state_reason = Some(reason.into());
            }
            let issue = s.issues[index].clone();
            answer(200, OP_ISSUE, issue_json(s, &issue))
        }
        ("POST", ["issues", number, "comments"]) => {
            let Some(index) = issue_index(s, number) else {
                return error(404, OP_COMMENTS, "Not Found");
            };
            let Some(text) = body["body"].as_str().filter(|t| !t.is_empty()) else {
                return answer(
                    422,
                    OP_COMMENTS,
                    json!({"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest", "errors": [{"resource": "IssueComment", "code": "missing_field", "field": "body"}]}),
                );
            };
            let text = text.to_string();
            s.issues[index].updated = s.clock.now();
            s.next_id += 1;
            let id = s.next_id;
            let now = s.clock.now();
            s.issues[index].comments.push(text.clone());
            s.issues[index].comment_meta.push((id, now));
            let issue = s.issues[index].clone();
            answer(201, OP_COMMENTS, comment_json(s, &issue, id, &text, now))
        }
        ("GET", ["issues", number, "comments"]) => {
            let Some(index) = issue_index(s, number) else {
                return error(404, OP_COMMENTS, "Not Found");
            };
            // Oldest first; `since` keeps those updated at or after it (comments here are never
            // edited, so updated is created).
            let since = query
                .get("since")
                .and_then(|c| humantime::parse_rfc3339(c).ok());
            let (per_page, page) = paging(query);
            let issue = s.issues[index].clone();
            let comments: Vec<Value> = issue
                .comments
                .iter()
                .zip(&issue.comment_meta)
                .filter(|(_, (_, at))| since.is_none_or(|since| *at >= since))
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|(text, (id, at))| comment_json(s, &issue, *id, text, *at))
                .collect();
            answer(200, OP_COMMENTS, Value::Array(comments))
        }
        ("GET", ["labels", name]) => match s.labels.iter().find(|l| l.name == *name) {
            Some(label) => answer(200, OP_LABEL, label_json(s, label)),
            None => error(404, OP_LABEL, "Not Found"),
        },
        ("POST", ["labels"]) => {
            let name = body["name"].as_str().unwrap_or_default().to_string();
            if s.labels.iter().any(|l| l.name == name) {
                return answer(
                    422,
                    OP_LABELS,
                    json!({"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest", "errors": [{"resource": "Label", "code": "already_exists", "field": "name"}]}),
                );
            }
            let color = body["color"].as_str().unwrap_or("ededed").to_string();
            let label = ensure_label(s, &name, &color);
            answer(201, OP_LABELS, label_json(s, &label))
        }
        _ => error(404, "", "Not Found"),
    }
}

fn dispatch(s: &mut State, id: &str, body: &Value) -> Answer {
    s.dispatches += 1;
    let Some(workflow) = find_workflow(s, id) else {
        return error(404, OP_DISPATCH, "Not Found");
    };
    if !s.actions_write {
        return error(403, OP_DISPATCH, "Resource not accessible by integration");
    }
    if s.mode == DispatchMode::RejectsRunDetails && body.get("return_run_details").is_some() {
        return error(
            400,
            OP_DISPATCH,
            "Invalid request.\n\n\"return_run_details\" is not a permitted key.",
        );
    }
    let Some(git_ref) = body["ref"].as_str() else {
        return error(
            422,
            OP_DISPATCH,
            "Invalid request.\n\n\"ref\" wasn't supplied.",
        );
    };
    let branch = git_ref.trim_start_matches("refs/heads/").to_string();
    if !s.branches.contains(&branch) {
        return error(422, OP_DISPATCH, &format!("No ref found for: {git_ref}"));
    }
    let inputs = body["inputs"].as_object().cloned().unwrap_or_default();
    let spec = &s.workflows[workflow];
    let unexpected: Vec<String> = inputs
        .keys()
        .filter(|k| !spec.inputs.contains(k))
        .map(|k| format!("\"{k}\""))
        .collect();
    if !unexpected.is_empty() {
        return error(
            422,
            OP_DISPATCH,
            &format!("Unexpected inputs provided: [{}]", unexpected.join(", ")),
        );
    }
    let title = spec
        .run_name_input
        .as_ref()
        .and_then(|input| inputs.get(input))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| spec.name.clone());
    let run = new_run(s, workflow, &branch, title);
    if s.mode == DispatchMode::RunDetails && body["return_run_details"] == json!(true) {
        let repo = repo_path(s);
        return answer(
            200,
            OP_DISPATCH,
            json!({
                "workflow_run_id": run,
                "run_url": format!("{}/repos/{repo}/actions/runs/{run}", s.base),
                "html_url": format!("{}/{repo}/actions/runs/{run}", s.base),
            }),
        );
    }
    Answer {
        status: 204,
        body: None,
        headers: Vec::new(),
        operation: OP_DISPATCH,
    }
}

/// `GET /repos/{owner}/{repo}/issues` as GitHub answers it: `state` (default open), `labels`
/// (all of them), `since` (updated at or after), `sort` (created, updated) and `direction`
/// (default desc), `per_page` (default 30, at most 100) and `page` (from 1), with a `Link` header
/// naming the next, last, first and previous pages.
fn list_issues(s: &State, query: &BTreeMap<String, String>) -> Answer {
    let state = query.get("state").map(String::as_str).unwrap_or("open");
    let wanted: Vec<&str> = query
        .get("labels")
        .map(|l| l.split(',').filter(|l| !l.is_empty()).collect())
        .unwrap_or_default();
    let since = match query.get("since") {
        None => None,
        Some(text) => match humantime::parse_rfc3339_weak(text.trim_end_matches('Z')) {
            Ok(at) => Some(at),
            Err(_) => {
                return answer(
                    422,
                    OP_ISSUES,
                    json!({"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest", "errors": [{"resource": "Issue", "code": "invalid", "field": "since"}]}),
                );
            }
        },
    };
    let (per_page, page) = paging(query);
    let mut issues: Vec<&IssueState> = s
        .issues
        .iter()
        .filter(|i| match state {
            "all" => true,
            "closed" => !i.open,
            _ => i.open,
        })
        .filter(|i| wanted.iter().all(|w| i.labels.iter().any(|l| l == w)))
        .filter(|i| since.is_none_or(|since| i.updated >= since))
        .collect();
    let by_updated = query.get("sort").is_some_and(|sort| sort == "updated");
    issues.sort_by_key(|i| (if by_updated { i.updated } else { i.created }, i.number));
    if query.get("direction").is_none_or(|d| d != "asc") {
        issues.reverse();
    }
    let last = issues.len().div_ceil(per_page).max(1);
    let shown: Vec<Value> = issues
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|i| issue_json(s, i))
        .collect();
    let mut listed = answer(200, OP_ISSUES, Value::Array(shown));
    if last > 1 {
        let url = |n: usize| {
            let mut params: Vec<(String, String)> = query
                .iter()
                .filter(|(k, _)| *k != "page")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            params.push(("page".into(), n.to_string()));
            let text: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
                .collect();
            format!(
                "{}/repos/{}/issues?{}",
                s.base,
                repo_path(s),
                text.join("&")
            )
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
        }
        if page < last {
            links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
            links.push(format!("<{}>; rel=\"last\"", url(last)));
        }
        if page > 1 {
            links.push(format!("<{}>; rel=\"first\"", url(1)));
        }
        listed.headers.push(("link", links.join(", ")));
    }
    listed
}

fn encode_query(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn find_workflow(s: &State, id: &str) -> Option<usize> {
    s.workflows
        .iter()
        .position(|w| w.id.to_string() == id || w.file == id)
}

fn find_run(s: &State, id: &str) -> Option<Run> {
    s.runs.iter().find(|r| r.id.to_string() == id).cloned()
}

fn issue_index(s: &State, number: &str) -> Option<usize> {
    s.issues.iter().position(|i| i.number.to_string() == number)
}

fn ensure_label(s: &mut State, name: &str, color: &str) -> Label {
    if let Some(label) = s.labels.iter().find(|l| l.name == name) {
        return label.clone();
    }
    s.next_id += 1;
    let label = Label {
        id: s.next_id,
        name: name.into(),
        color: color.into(),
    };
    s.labels.push(label.clone());
    label
}

// ---------------------------------------------------------------------------------------------
// JSON shapes (the OpenAPI schemas' required fields, filled in).

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

fn repo_path(s: &State) -> String {
    format!("{}/{}", s.owner, s.repo)
}

fn user_json(s: &State, login: &str, id: u64) -> Value {
    let api = format!("{}/users/{login}", s.base);
    json!({
        "login": login, "id": id, "node_id": format!("U_{id}"), "type": "User", "site_admin": false,
        "avatar_url": format!("{}/avatars/{login}", s.base), "gravatar_id": "",
        "url": api, "html_url": format!("{}/{login}", s.base),
        "events_url": format!("{api}/events{{/privacy}}"), "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"), "gists_url": format!("{api}/gists{{/gist_id}}"),
        "organizations_url": format!("{api}/orgs"), "received_events_url": format!("{api}/received_events"),
        "repos_url": format!("{api}/repos"), "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
    })
}

fn team_json(s: &State, slug: &str, id: u64) -> Value {
    let api = format!("{}/orgs/{}/teams/{slug}", s.base, s.owner);
    json!({
        "id": id, "node_id": format!("T_{id}"), "url": api, "members_url": format!("{api}/members{{/member}}"),
        "name": slug, "slug": slug, "description": null, "permission": "push", "privacy": "closed",
        "html_url": format!("{}/orgs/{}/teams/{slug}", s.base, s.owner),
        "repositories_url": format!("{api}/repos"), "parent": null, "type": "organization",
    })
}

fn repository_json(s: &State) -> Value {
    let full = repo_path(s);
    let api = format!("{}/repos/{full}", s.base);
    let mut repo = json!({
        "id": 1, "node_id": "R_1", "name": s.repo, "full_name": full, "private": true, "fork": false,
        "description": null, "owner": user_json(s, &s.owner, 1), "url": api,
        "html_url": format!("{}/{full}", s.base),
    });
    for (field, suffix) in [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ] {
        repo[field] = json!(format!("{api}{suffix}"));
    }
    repo
}

fn workflow_json(s: &State, index: usize) -> Value {
    let w = &s.workflows[index];
    let full = repo_path(s);
    json!({
        "id": w.id, "node_id": format!("W_{}", w.id), "name": w.name,
        "path": format!(".github/workflows/{}", w.file), "state": "active",
        "created_at": time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        "updated_at": time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        "url": format!("{}/repos/{full}/actions/workflows/{}", s.base, w.id),
        "html_url": format!("{}/{full}/blob/main/.github/workflows/{}", s.base, w.file),
        "badge_url": format!("{}/{full}/workflows/{}/badge.svg", s.base, w.file),
    })
}

fn run_json(s: &State, run: &Run) -> Value {
    let view = view(s, run);
    let workflow = &s.workflows[run.workflow];
    let full = repo_path(s);
    let api = format!("{}/repos/{full}/actions/runs/{}", s.base, run.id);
    let sha = format!("{:040x}", run.id);
    json!({
        "id": run.id, "node_id": format!("WFR_{}", run.id), "name": workflow.name,
        "display_title": run.display_title, "head_branch": run.head_branch, "head_sha": sha,
        "path": format!(".github/workflows/{}", workflow.file), "run_number": run.number,
        "run_attempt": 1, "event": "workflow_dispatch", "status": view.status,
        "conclusion": view.conclusion, "workflow_id": workflow.id, "check_suite_id": run.id + 7,
        "url": api, "html_url": format!("{}/{full}/actions/runs/{}", s.base, run.id),
        "created_at": time(run.created), "updated_at": time(view.updated),
        "run_started_at": time(view.started),
        "actor": user_json(s, "octocat", 2), "triggering_actor": user_json(s, "octocat", 2),
        "jobs_url": format!("{api}/jobs"), "logs_url": format!("{api}/logs"),
        "check_suite_url": format!("{}/repos/{full}/check-suites/{}", s.base, run.id + 7),
        "artifacts_url": format!("{api}/artifacts"), "cancel_url": format!("{api}/cancel"),
        "rerun_url": format!("{api}/rerun"), "previous_attempt_url": null,
        "workflow_url": format!("{}/repos/{full}/actions/workflows/{}", s.base, workflow.id),
        "pull_requests": [],
        "head_commit": {
            "id": sha, "tree_id": sha, "message": "deploy", "timestamp": time(run.created),
            "author": {"name": "Octo Cat", "email": "octocat@example.com"},
            "committer": {"name": "Octo Cat", "email": "octocat@example.com"},
        },
        "repository": repository_json(s), "head_repository": repository_json(s),
    })
}

fn job_json(s: &State, run: &Run, job: &JobView) -> Value {
    let spec = &s.workflows[run.workflow];
    let full = repo_path(s);
    let id = run.id * 100 + job.index as u64;
    let steps: Vec<Value> = job
        .steps
        .iter()
        .map(|step| {
            json!({
                "name": step.name, "number": step.number, "status": step.status,
                "conclusion": step.conclusion, "started_at": step.started_at.map(time),
                "completed_at": step.completed_at.map(time),
            })
        })
        .collect();
    let runner = job.started_at.is_some();
    json!({
        "id": id, "run_id": run.id, "node_id": format!("J_{id}"), "run_attempt": 1,
        "run_url": format!("{}/repos/{full}/actions/runs/{}", s.base, run.id),
        "url": format!("{}/repos/{full}/actions/jobs/{id}", s.base),
        "html_url": format!("{}/{full}/actions/runs/{}/job/{id}", s.base, run.id),
        "check_run_url": format!("{}/repos/{full}/check-runs/{id}", s.base),
        "head_sha": format!("{:040x}", run.id), "head_branch": run.head_branch,
        "workflow_name": spec.name, "name": spec.jobs[job.index].name,
        "status": job.status, "conclusion": job.conclusion,
        "created_at": time(run.created),
        "started_at": time(job.started_at.unwrap_or(run.created)),
        "completed_at": job.completed_at.map(time), "steps": steps,
        "labels": ["ubuntu-latest"],
        "runner_id": if runner { json!(7) } else { Value::Null },
        "runner_name": if runner { json!("GitHub Actions 7") } else { Value::Null },
        "runner_group_id": if runner { json!(1) } else { Value::Null },
        "runner_group_name": if runner { json!("GitHub Actions") } else { Value::Null },
    })
}

fn pending_json(s: &State, approval: &Approval, since: SystemTime) -> Value {
    let full = repo_path(s);
    let mut reviewers: Vec<Value> = approval
        .reviewers
        .iter()
        .enumerate()
        .map(|(i, login)| json!({"type": "User", "reviewer": user_json(s, login, 100 + i as u64)}))
        .collect();
    reviewers.extend(
        approval.teams.iter().enumerate().map(
            |(i, slug)| json!({"type": "Team", "reviewer": team_json(s, slug, 200 + i as u64)}),
        ),
    );
    json!({
        "environment": {
            "id": 55, "node_id": "EN_55", "name": approval.environment,
            "url": format!("{}/repos/{full}/environments/{}", s.base, approval.environment),
            "html_url": format!("{}/{full}/deployments/activity_log?environments_filter={}", s.base, approval.environment),
        },
        "wait_timer": 0, "wait_timer_started_at": time(since),
        "current_user_can_approve": false, "reviewers": reviewers,
    })
}

fn content_json(s: &State, path: &str, text: &str) -> Value {
    let full = repo_path(s);
    let sha = format!("{:040x}", fnv(text));
    let url = format!("{}/repos/{full}/contents/{path}?ref=main", s.base);
    let html = format!("{}/{full}/blob/main/{path}", s.base);
    let git = format!("{}/repos/{full}/git/blobs/{sha}", s.base);
    json!({
        "type": "file", "encoding": "base64", "size": text.len(),
        "name": path.rsplit('/').next().unwrap_or(path), "path": path, "sha": sha,
        "content": base64(text.as_bytes()), "url": url, "git_url": git, "html_url": html,
        "download_url": format!("{}/raw/{full}/main/{path}", s.base),
        "_links": {"self": url, "git": git, "html": html},
    })
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn label_json(s: &State, label: &Label) -> Value {
    json!({
        "id": label.id, "node_id": format!("LA_{}", label.id),
        "url": format!("{}/repos/{}/labels/{}", s.base, repo_path(s), label.name),
        "name": label.name, "description": null, "color": label.color, "default": false,
    })
}

fn issue_json(s: &State, issue: &IssueState) -> Value {
    let full = repo_path(s);
    let api = format!("{}/repos/{full}/issues/{}", s.base, issue.number);
    let labels: Vec<Value> = issue
        .labels
        .iter()
        .filter_map(|name| s.labels.iter().find(|l| &l.name == name))
        .map(|l| label_json(s, l))
        .collect();
    json!({
        "id": 5000 + issue.number, "node_id": format!("I_{}", issue.number), "number": issue.number,
        "title": issue.title, "body": issue.body, "state": if issue.open { "open" } else { "closed" },
        "state_reason": issue.state_reason, "locked": false, "active_lock_reason": null,
        "url": api, "repository_url": format!("{}/repos/{full}", s.base),
        "labels_url": format!("{api}/labels{{/name}}"), "comments_url": format!("{api}/comments"),
        "events_url": format!("{api}/events"),
        "html_url": format!("{}/{full}/issues/{}", s.base, issue.number),
        "user": user_json(s, "github-actions[bot]", 41898282), "labels": labels,
        "assignee": null, "assignees": [], "milestone": null, "comments": issue.comments.len(),
        "closed_at": issue.closed.filter(|_| !issue.open).map(|at| json!(time(at))).unwrap_or(Value::Null),
        "created_at": time(issue.created), "updated_at": time(issue.updated),
        "author_association": "NONE",
    })
}

fn comment_json(s: &State, issue: &IssueState, id: u64, body: &str, at: SystemTime) -> Value {
    let full = repo_path(s);
    json!({
        "id": id, "node_id": format!("IC_{id}"), "body": body,
        "url": format!("{}/repos/{full}/issues/comments/{id}", s.base),
        "html_url": format!("{}/{full}/issues/{}#issuecomment-{id}", s.base, issue.number),
        "issue_url": format!("{}/repos/{full}/issues/{}", s.base, issue.number),
        "user": user_json(s, "github-actions[bot]", 41898282),
        "created_at": time(at), "updated_at": time(at),
        "author_association": "NONE",
    })
}
