//! GitHub Deployments: create a deployment of an environment and post its statuses, each POST sent
//! once (never re-sent after an ambiguous answer), descriptions cut to GitHub's 140 characters.

use serde::Serialize;
use serde_json::{Value, json};

use crate::github::client::encode;
use crate::github::{GitHub, GitHubError, Repo};

/// GitHub refuses (422) a status whose description is longer than this, in characters.
pub const MAX_DESCRIPTION: usize = 140;
/// How many earlier deployments of the environment are looked at to mark the active one inactive.
const PREVIOUS_DEPLOYMENTS_LOOKED_AT: u32 = 10;

/// The states shiftgate posts (GitHub has more: `queued`, `pending`, `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Inactive,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Inactive => "inactive",
        }
    }
}

/// A deployment to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// The commit or branch deployed (GitHub resolves it; an unknown ref is a 422).
    pub git_ref: String,
    pub environment: String,
    pub description: String,
    pub payload: Value,
}

impl NewDeployment {
    /// The request body. `required_contexts: []` because GitHub otherwise refuses while the
    /// commit's checks are pending (this very job is one); `auto_merge: false` because a deploy
    /// must never merge branches.
    pub fn body(&self) -> Value {
        json!({
            "ref": self.git_ref,
            "task": "deploy",
            "environment": self.environment,
            "auto_merge": false,
            "required_contexts": [],
            "transient_environment": false,
            "production_environment": is_production(&self.environment),
            "description": description(&self.description),
            "payload": self.payload,
        })
    }
}

/// Environments people use: `prod` and `production` (any case) are production.
pub fn is_production(environment: &str) -> bool {
    matches!(
        environment.to_ascii_lowercase().as_str(),
        "prod" | "production"
    )
}

/// A created deployment: its id and API URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: u64,
    pub url: String,
}

/// A status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStatus {
    pub state: DeploymentState,
    pub description: String,
    pub environment_url: Option<String>,
    pub log_url: Option<String>,
}

impl NewStatus {
    pub fn new(state: DeploymentState, description: impl Into<String>) -> Self {
        Self {
            state,
            description: description.into(),
            environment_url: None,
            log_url: None,
        }
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "state": self.state.as_str(),
            "description": description(&self.description),
        });
        if let Some(url) = &self.environment_url {
            body["environment_url"] = json!(url);
        }
        if let Some(url) = &self.log_url {
            body["log_url"] = json!(url);
        }
        if self.state == DeploymentState::Success {
            // GitHub's default, said explicitly: earlier non-production deployments of the
            // environment go inactive. Production ones are shiftgate's to retire.
            body["auto_inactive"] = json!(true);
        }
        body
    }
}

/// One line of at most [`MAX_DESCRIPTION`] characters: control characters become spaces, and a
/// longer text ends in `…`.
pub fn description(text: &str) -> String {
    let line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= MAX_DESCRIPTION {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_DESCRIPTION - 1).collect();
    cut.push('…');
    cut
}

/// `POST /repos/{owner}/{repo}/deployments`, once.
pub async fn create(
    github: &GitHub,
    repo: &Repo,
    deployment: &NewDeployment,
) -> Result<Deployment, GitHubError> {
    let answer = github
        .post(&format!("{}/deployments", repo.path()), &deployment.body())
        .await?;
    let id = answer.body["id"].as_u64().ok_or_else(|| {
        // A 202 ("merged branch") has no id: with auto_merge off it should not happen.
        GitHubError::Other(format!(
            "GitHub answered without a deployment id: {}",
            answer.body
        ))
    })?;
    let url = answer.body["url"].as_str().unwrap_or_default().to_string();
    Ok(Deployment { id, url })
}

/// `POST /repos/{owner}/{repo}/deployments/{id}/statuses`, once.
pub async fn post_status(
    github: &GitHub,
    repo: &Repo,
    id: u64,
    status: &NewStatus,
) -> Result<(), GitHubError> {
    github
        .post(
            &format!("{}/deployments/{id}/statuses", repo.path()),
            &status.body(),
        )
        .await
        .map(|_| ())
}

/// Marks inactive the earlier deployments of `environment` whose latest status is `success`:
/// GitHub's `auto_inactive` leaves production deployments alone, so without this a production
/// environment would show every past rollout as active. Returns the ids marked.
pub async fn retire_previous(
    github: &GitHub,
    repo: &Repo,
    environment: &str,
    current: u64,
) -> Result<Vec<u64>, GitHubError> {
    let listed = github
        .get(&format!(
            "{}/deployments?environment={}&per_page={PREVIOUS_DEPLOYMENTS_LOOKED_AT}",
            repo.path(),
            encode(environment)
        ))
        .await?;
    let mut retired = Vec::new();
    for id in listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|deployment| deployment["id"].as_u64())
        .filter(|id| *id != current)
    {
        // Statuses are listed newest first: the first is the deployment's state now.
        let statuses = github
            .get(&format!(
                "{}/deployments/{id}/statuses?per_page=1",
                repo.path()
            ))
            .await?;
        if statuses[0]["state"] == "success" {
            let status = NewStatus::new(
                DeploymentState::Inactive,
                "superseded by a later shiftgate rollout",
            );
            post_status(github, repo, id, &status).await?;
            retired.push(id);
        }
    }
    Ok(retired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_one_line_of_at_most_140_characters() {
        assert_eq!(
            description("  step 1/2: 50%\non web-1 "),
            "step 1/2: 50% on web-1"
        );
        let long = "é".repeat(200);
        let cut = description(&long);
        assert_eq!(cut.chars().count(), MAX_DESCRIPTION);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(MAX_DESCRIPTION);
        assert_eq!(description(&exact), exact);
    }

    #[test]
    fn prod_and_production_are_production_environments() {
        for name in ["prod", "production", "Production"] {
            assert!(is_production(name), "{name}");
        }
        for name in ["staging", "dev", "prod-eu", "preprod"] {
            assert!(!is_production(name), "{name}");
        }
    }

    #[test]
    fn a_deployment_never_merges_and_never_waits_for_checks() {
        let body = NewDeployment {
            git_ref: "main".into(),
            environment: "prod".into(),
            description: "d".into(),
            payload: json!({"rollout_id": "abc"}),
        }
        .body();
        assert_eq!(body["auto_merge"], false);
        assert_eq!(body["required_contexts"], json!([]));
        assert_eq!(body["transient_environment"], false);
        assert_eq!(body["production_environment"], true);
    }

    #[test]
    fn only_a_success_status_carries_auto_inactive() {
        let success = NewStatus::new(DeploymentState::Success, "promoted").body();
        assert_eq!(success["auto_inactive"], true);
        let failure = NewStatus::new(DeploymentState::Failure, "rolled back").body();
        assert!(failure.get("auto_inactive").is_none());
        assert_eq!(failure["state"], "failure");
    }
}
