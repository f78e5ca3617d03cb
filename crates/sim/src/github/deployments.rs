//! The fake GitHub's deployments and deployment statuses, with GitHub's rules: 201 on create, 422
//! for a missing ref, an unknown state or a description over 140 characters, and `auto_inactive`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::{Answer, State, answer, error, fnv, repo_path, time, user_json};

pub(super) const OP_DEPLOYMENTS: &str = "/repos/{owner}/{repo}/deployments";
pub(super) const OP_DEPLOYMENT: &str = "/repos/{owner}/{repo}/deployments/{deployment_id}";
pub(super) const OP_STATUSES: &str = "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses";

/// GitHub's limit on a deployment status's description.
const MAX_DESCRIPTION: usize = 140;
const STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

/// A deployment as the fake holds it.
#[derive(Debug, Clone)]
pub struct DeploymentState {
    pub id: u64,
    pub git_ref: String,
    pub sha: String,
    pub task: String,
    pub environment: String,
    pub description: Option<String>,
    pub payload: Value,
    pub production: bool,
    pub transient: bool,
    /// The request's `auto_merge` and `required_contexts`, as sent (absent: `None`).
    pub auto_merge: Option<bool>,
    pub required_contexts: Option<Value>,
    /// Oldest first.
    pub statuses: Vec<DeploymentStatusState>,
    created: SystemTime,
}

impl DeploymentState {
    /// The state of its latest status, if it has one.
    pub fn latest_state(&self) -> Option<&str> {
        self.statuses.last().map(|status| status.state.as_str())
    }
}

/// One status of a deployment.
#[derive(Debug, Clone)]
pub struct DeploymentStatusState {
    pub id: u64,
    pub state: String,
    pub description: String,
    pub environment_url: String,
    pub log_url: String,
    created: SystemTime,
}

/// A deployment made before the scenario starts (by an earlier run), with its statuses.
pub(super) fn seed(s: &mut State, environment: &str, production: bool, states: &[&str]) -> u64 {
    let id = create(
        s,
        &json!({"ref": "main", "environment": environment, "production_environment": production}),
    )
    .expect("a seeded deployment is valid")
    .id;
    for state in states {
        add_status(s, id, state, &json!({})).expect("a seeded status is valid");
    }
    id
}

pub(super) fn route(
    s: &mut State,
    method: &str,
    rest: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Option<Answer> {
    Some(match (method, rest) {
        ("GET", ["deployments"]) => {
            let filter =
                |key: &str, value: &str| query.get(key).is_none_or(|wanted| wanted == value);
            let per_page = page_size(query);
            let listed: Vec<Value> = s
                .deployments
                .iter()
                .rev()
                .filter(|d| {
                    filter("environment", &d.environment)
                        && filter("ref", &d.git_ref)
                        && filter("sha", &d.sha)
                        && filter("task", &d.task)
                })
                .take(per_page)
                .map(|d| deployment_json(s, d))
                .collect();
            answer(200, OP_DEPLOYMENTS, Value::Array(listed))
        }
        ("POST", ["deployments"]) => {
            s.deployment_creates += 1;
            match create(s, body) {
                Ok(deployment) => answer(201, OP_DEPLOYMENTS, deployment_json(s, &deployment)),
                Err(answer) => answer,
            }
        }
        ("GET", ["deployments", id]) => match find(s, id) {
            Some(index) => answer(
                200,
                OP_DEPLOYMENT,
                deployment_json(s, &s.deployments[index]),
            ),
            None => error(404, OP_DEPLOYMENT, "Not Found"),
        },
        ("GET", ["deployments", id, "statuses"]) => match find(s, id) {
            Some(index) => {
                let deployment = &s.deployments[index];
                let listed: Vec<Value> = deployment
                    .statuses
                    .iter()
                    .rev()
                    .take(page_size(query))
                    .map(|status| status_json(s, deployment, status))
                    .collect();
                answer(200, OP_STATUSES, Value::Array(listed))
            }
            None => error(404, OP_STATUSES, "Not Found"),
        },
        ("POST", ["deployments", id, "statuses"]) => {
            let Some(index) = find(s, id) else {
                return Some(error(404, OP_STATUSES, "Not Found"));
            };
            let id = s.deployments[index].id;
            let state = body["state"].as_str().unwrap_or_default().to_string();
            match add_status(s, id, &state, body) {
                Ok(status) => {
                    let deployment = &s.deployments[index];
                    answer(201, OP_STATUSES, status_json(s, deployment, &status))
                }
                Err(answer) => answer,
            }
        }
        _ => return None,
    })
}

fn page_size(query: &BTreeMap<String, String>) -> usize {
    query
        .get("per_page")
        .and_then(|n| n.parse().ok())
        .unwrap_or(30usize)
        .clamp(1, 100)
}

fn find(s: &State, id: &str) -> Option<usize> {
    let id: u64 = id.parse().ok()?;
    s.deployments.iter().position(|d| d.id == id)
}

fn invalid(operation: &'static str, resource: &str, field: &str, message: &str) -> Answer {
    answer(
        422,
        operation,
        json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "errors": [{"resource": resource, "code": "invalid", "field": field}],
        }),
    )
}

/// A full commit SHA, or a branch of the repository: what GitHub can deploy.
fn resolve_ref(s: &State, git_ref: &str) -> Option<String> {
    let is_sha = git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha {
        return Some(git_ref.to_string());
    }
    s.branches
        .iter()
        .any(|branch| branch == git_ref)
        .then(|| format!("{:016x}{:016x}{:08x}", fnv(git_ref), fnv(&s.repo), 0))
}

fn create(s: &mut State, body: &Value) -> Result<DeploymentState, Answer> {
    let Some(git_ref) = body["ref"].as_str().filter(|r| !r.is_empty()) else {
        return Err(invalid(
            OP_DEPLOYMENTS,
            "Deployment",
            "ref",
            "Invalid request.\n\n\"ref\" wasn't supplied.",
        ));
    };
    let Some(sha) = resolve_ref(s, git_ref) else {
        return Err(invalid(
            OP_DEPLOYMENTS,
            "Deployment",
            "ref",
            &format!("No ref found for: {git_ref}"),
        ));
    };
    let environment = body["environment"]
        .as_str()
        .unwrap_or("production")
        .to_string();
    s.next_id += 1;
    let deployment = DeploymentState {
        id: s.next_id,
        git_ref: git_ref.into(),
        sha,
        task: body["task"].as_str().unwrap_or("deploy").into(),
        production: body["production_environment"]
            .as_bool()
            .unwrap_or(environment == "production"),
        transient: body["transient_environment"].as_bool().unwrap_or(false),
        environment,
        description: body["description"].as_str().map(str::to_string),
        payload: match &body["payload"] {
            Value::Null => json!({}),
            payload => payload.clone(),
        },
        auto_merge: body["auto_merge"].as_bool(),
        required_contexts: body.get("required_contexts").cloned(),
        statuses: Vec::new(),
        created: s.clock.now(),
    };
    s.deployments.push(deployment.clone());
    Ok(deployment)
}

fn add_status(
    s: &mut State,
    id: u64,
    state: &str,
    body: &Value,
) -> Result<DeploymentStatusState, Answer> {
    if !STATES.contains(&state) {
        return Err(invalid(
            OP_STATUSES,
            "DeploymentStatus",
            "state",
            "Validation Failed",
        ));
    }
    let description = body["description"].as_str().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(
            OP_STATUSES,
            "DeploymentStatus",
            "description",
            "Validation Failed",
        ));
    }
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_string();
    s.next_id += 1;
    let status = DeploymentStatusState {
        id: s.next_id,
        state: state.into(),
        description: description.into(),
        environment_url: text("environment_url"),
        log_url: match text("log_url") {
            url if url.is_empty() => text("target_url"),
            url => url,
        },
        created: s.clock.now(),
    };
    let now = status.created;
    let index = s
        .deployments
        .iter()
        .position(|d| d.id == id)
        .expect("found");
    s.deployments[index].statuses.push(status.clone());
    // GitHub: "Adds a new inactive status to all prior non-transient, non-production environment
    // deployments with the same repository and environment name as the created status's
    // deployment. An inactive status is only added to deployments that had a success state."
    if state == "success" && body["auto_inactive"].as_bool().unwrap_or(true) {
        let environment = s.deployments[index].environment.clone();
        let mut next_id = s.next_id;
        for prior in s.deployments[..index].iter_mut().filter(|d| {
            d.environment == environment
                && !d.transient
                && !d.production
                && d.statuses.iter().any(|status| status.state == "success")
                && d.latest_state() != Some("inactive")
        }) {
            next_id += 1;
            prior.statuses.push(DeploymentStatusState {
                id: next_id,
                state: "inactive".into(),
                description: String::new(),
                environment_url: String::new(),
                log_url: String::new(),
                created: now,
            });
        }
        s.next_id = next_id;
    }
    Ok(status)
}

fn deployment_json(s: &State, d: &DeploymentState) -> Value {
    let api = format!("{}/repos/{}/deployments/{}", s.base, repo_path(s), d.id);
    let updated = d.statuses.last().map_or(d.created, |status| status.created);
    json!({
        "id": d.id, "node_id": format!("DE_{}", d.id), "sha": d.sha, "ref": d.git_ref,
        "task": d.task, "payload": d.payload, "original_environment": d.environment,
        "environment": d.environment, "description": d.description,
        "creator": user_json(s, "github-actions[bot]", 41898282),
        "created_at": time(d.created), "updated_at": time(updated),
        "statuses_url": format!("{api}/statuses"),
        "repository_url": format!("{}/repos/{}", s.base, repo_path(s)), "url": api,
        "transient_environment": d.transient, "production_environment": d.production,
        "performed_via_github_app": null,
    })
}

fn status_json(s: &State, d: &DeploymentState, status: &DeploymentStatusState) -> Value {
    let deployment_url = format!("{}/repos/{}/deployments/{}", s.base, repo_path(s), d.id);
    json!({
        "id": status.id, "node_id": format!("DES_{}", status.id), "state": status.state,
        "creator": user_json(s, "github-actions[bot]", 41898282),
        "description": status.description, "environment": d.environment,
        "target_url": status.log_url, "log_url": status.log_url,
        "environment_url": status.environment_url,
        "created_at": time(status.created), "updated_at": time(status.created),
        "deployment_url": deployment_url.clone(), "url": format!("{deployment_url}/statuses/{}", status.id),
        "repository_url": format!("{}/repos/{}", s.base, repo_path(s)),
        "performed_via_github_app": null,
    })
}
