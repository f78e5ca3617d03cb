//! `rollout --github-deployment`: a background task turns the rollout's timeline into a GitHub
//! deployment and its statuses; what happens on GitHub is reported, and never changes the rollout.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::commands::CommandError;
use crate::github::deployment::{
    self, Deployment, DeploymentState, NewDeployment, NewStatus, is_production,
};
use crate::github::{GitHub, Repo};
use crate::rollout::timeline::{Event, EventKind};
use crate::rollout::{Outcome, Report};
use crate::workflow_command::{emit, is_actions, workflow_command};

/// How long the command waits, once the rollout has ended, for the last statuses to be posted.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The same after an interrupt: the runner's SIGKILL follows SIGTERM by 2.5 s.
pub const FINISH_TIMEOUT_INTERRUPTED: Duration = Duration::from_secs(2);

/// What the deployment needs, resolved before the rollout starts (a refusal is exit 2).
pub struct DeploymentTarget {
    pub github: GitHub,
    pub repo: Repo,
    pub git_ref: String,
    pub environment: String,
    pub service: String,
    pub image: Option<String>,
    pub rollout_id: String,
    /// The workflow run, for each status's `log_url`.
    pub log_url: Option<String>,
}

/// The commit to record: `$GITHUB_SHA`, else `$GITHUB_REF_NAME` (a branch or tag GitHub resolves).
pub fn git_ref_from_env() -> Result<String, CommandError> {
    ["GITHUB_SHA", "GITHUB_REF_NAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_string())
        .find(|value| !value.is_empty())
        .ok_or_else(|| {
            CommandError::bad_input(
                "--github-deployment needs the commit being deployed: GITHUB_SHA (set in every \
                 Actions job) or GITHUB_REF_NAME",
            )
        })
}

/// What became of the deployment, for the `--json` result's `github_deployment`:
/// `{"id", "url", "statuses"}`, with `error` when something GitHub was asked failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeploymentRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<DeploymentState>,
    /// Earlier deployments of the environment this one made inactive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inactivated: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

enum Message {
    Event(Box<Event>),
    Finish(NewStatus),
    /// The command failed without a report (a panic, say): end a deployment already made.
    Abandon(NewStatus),
}

/// The background task and the channel that feeds it.
pub struct DeploymentTracker {
    sender: mpsc::UnboundedSender<Message>,
    task: tokio::task::JoinHandle<DeploymentRecord>,
}

impl DeploymentTracker {
    pub fn start(target: DeploymentTarget) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(track(Arc::new(target), receiver));
        Self { sender, task }
    }

    /// The engine's progress sink calls this: it only queues, so GitHub never slows a step.
    pub fn observe(&self, event: &Event) {
        let _ = self.sender.send(Message::Event(Box::new(event.clone())));
    }

    /// Queues the rollout's last status and waits (bounded) for everything to be posted.
    pub async fn finish(self, report: &Report, url: Option<&str>) -> DeploymentRecord {
        let wait = if report.outcome == Outcome::Interrupted {
            FINISH_TIMEOUT_INTERRUPTED
        } else {
            FINISH_TIMEOUT
        };
        if let Some(status) = final_status(report, url) {
            let _ = self.sender.send(Message::Finish(status));
        }
        drop(self.sender);
        match tokio::time::timeout(wait, self.task).await {
            Ok(Ok(record)) => record,
            Ok(Err(panic)) => failed(format!("the deployment task failed: {panic}")),
            Err(_) => failed(format!(
                "GitHub did not answer within {}s of the rollout's end; the deployment's last \
                 status may be missing",
                wait.as_secs()
            )),
        }
    }
}

impl DeploymentTracker {
    /// The command ended in an error rather than a report: a deployment already created ends in
    /// `failure` with that error; none is created for it (a refusal changed nothing).
    pub async fn abandon(self, error: &str) {
        let status = NewStatus::new(DeploymentState::Failure, error);
        let _ = self.sender.send(Message::Abandon(status));
        drop(self.sender);
        let _ = tokio::time::timeout(FINISH_TIMEOUT_INTERRUPTED, self.task).await;
    }
}

fn failed(error: String) -> DeploymentRecord {
    warn(&error);
    DeploymentRecord {
        error: Some(error),
        ..DeploymentRecord::default()
    }
}

/// One warning on stderr (an annotation under Actions).
fn warn(message: &str) {
    let message = format!("GitHub deployment: {message} (the rollout is not affected)");
    if is_actions() {
        emit(&workflow_command(
            "warning",
            &[("title", "shiftgate: GitHub deployment")],
            &message,
        ));
    } else {
        crate::say!("warning: {message}");
    }
}

/// What the rollout looks like so far, for descriptions.
#[derive(Debug, Default, Clone)]
struct Progress {
    stable: String,
    candidate: String,
    steps: usize,
}

/// What an event asks of the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// The rollout has started changing the service: the deployment must exist.
    Start,
    Post(NewStatus),
    Nothing,
}

/// The event → status mapping. Anything not named here posts nothing; a pause (when the engine
/// has one) belongs here as `in_progress` "paused at 50%: waiting for shiftgate promote".
fn action_for(progress: &mut Progress, event: &EventKind) -> Action {
    match event {
        EventKind::Planned {
            stable,
            candidate,
            steps,
            ..
        } => {
            *progress = Progress {
                stable: stable.clone(),
                candidate: candidate.clone(),
                steps: steps.len(),
            };
            Action::Nothing
        }
        EventKind::CandidateCreated { .. } => Action::Start,
        EventKind::TrafficSet {
            step: Some(step),
            traffic,
        } => {
            let percent = traffic
                .iter()
                .find(|target| target.revision == progress.candidate)
                .map_or(0, |target| target.percent);
            Action::Post(NewStatus::new(
                DeploymentState::InProgress,
                format!(
                    "step {step}/{}: {percent}% on {}",
                    progress.steps, progress.candidate
                ),
            ))
        }
        EventKind::Paused { percent, .. } => Action::Post(NewStatus::new(
            DeploymentState::InProgress,
            format!("paused at {percent}%: waiting for shiftgate promote or abort"),
        )),
        EventKind::Resumed { percent, by, .. } => Action::Post(NewStatus::new(
            DeploymentState::InProgress,
            format!("resumed after {percent}% ({by})"),
        )),
        _ => Action::Nothing,
    }
}

/// The status a finished rollout ends its deployment with: `success` with the environment's URL
/// on promotion, `failure` with the reason otherwise; nothing for a dry run.
fn final_status(report: &Report, url: Option<&str>) -> Option<NewStatus> {
    let status = match report.outcome {
        Outcome::DryRun => return None,
        Outcome::Promoted => NewStatus {
            environment_url: url.map(str::to_string),
            ..NewStatus::new(
                DeploymentState::Success,
                format!("promoted {}: 100% of traffic", report.candidate),
            )
        },
        outcome => {
            let what = outcome.as_str().replace('_', " ");
            NewStatus::new(
                DeploymentState::Failure,
                match &report.reason {
                    Some(reason) => format!("{what}: {reason}"),
                    None => what,
                },
            )
        }
    };
    Some(status)
}

async fn track(
    target: Arc<DeploymentTarget>,
    mut receiver: mpsc::UnboundedReceiver<Message>,
) -> DeploymentRecord {
    let mut tracking = Tracking {
        target,
        progress: Progress::default(),
        deployment: None,
        gave_up: false,
        record: DeploymentRecord::default(),
    };
    while let Some(message) = receiver.recv().await {
        match message {
            Message::Event(event) => match action_for(&mut tracking.progress, &event.kind) {
                Action::Start => tracking.ensure_created().await,
                Action::Post(status) => tracking.post(status).await,
                Action::Nothing => {}
            },
            // A rollout that ended before it changed the service (a failed backup or pre-job)
            // deployed nothing: no deployment is made just to fail it.
            Message::Finish(_) if tracking.deployment.is_none() => {}
            Message::Finish(status) => {
                let succeeded = status.state == DeploymentState::Success;
                tracking.post(status).await;
                if succeeded {
                    tracking.retire_previous().await;
                }
            }
            Message::Abandon(status) => tracking.send(status).await,
        }
    }
    tracking.record
}

struct Tracking {
    target: Arc<DeploymentTarget>,
    progress: Progress,
    deployment: Option<Deployment>,
    /// Set after a failure: nothing more is sent (no loop of failing POSTs).
    gave_up: bool,
    record: DeploymentRecord,
}

impl Tracking {
    fn fail(&mut self, error: String) {
        warn(&error);
        self.record.error = Some(error);
        self.gave_up = true;
    }

    /// Creates the deployment once, with an `in_progress` status saying what is rolled out.
    async fn ensure_created(&mut self) {
        if self.deployment.is_some() || self.gave_up {
            return;
        }
        let target = self.target.clone();
        let Progress {
            stable, candidate, ..
        } = &self.progress;
        let image = target
            .image
            .as_deref()
            .map(|image| format!(" (image {image})"))
            .unwrap_or_default();
        let new = NewDeployment {
            git_ref: target.git_ref.clone(),
            environment: target.environment.clone(),
            description: format!("shiftgate: {candidate}{image} replacing {stable}"),
            payload: json!({
                "rollout_id": target.rollout_id,
                "service": target.service,
                "stable": stable,
                "candidate": candidate,
                "image": target.image,
            }),
        };
        match deployment::create(&target.github, &target.repo, &new).await {
            Ok(created) => {
                crate::say!(
                    "GitHub deployment {} of environment {} created",
                    created.id,
                    target.environment
                );
                self.record.id = Some(created.id);
                self.record.url = Some(created.url.clone());
                self.deployment = Some(created);
                let starting = format!("rolling out {candidate}{image}");
                self.send(NewStatus::new(DeploymentState::InProgress, starting))
                    .await;
            }
            // Never re-sent, even when GitHub's answer was ambiguous: a second POST could make
            // a second deployment.
            Err(error) => self.fail(format!("creating the deployment failed: {error}")),
        }
    }

    /// Posts a status, creating the deployment first if the rollout has not yet done so.
    async fn post(&mut self, status: NewStatus) {
        self.ensure_created().await;
        self.send(status).await;
    }

    async fn send(&mut self, mut status: NewStatus) {
        let Some(id) = self.deployment.as_ref().map(|d| d.id) else {
            return;
        };
        if self.gave_up {
            return;
        }
        status.log_url = self.target.log_url.clone();
        let target = self.target.clone();
        match deployment::post_status(&target.github, &target.repo, id, &status).await {
            Ok(()) => self.record.statuses.push(status.state),
            Err(error) => self.fail(format!(
                "posting the {} status failed: {error}",
                status.state.as_str()
            )),
        }
    }

    /// GitHub's `auto_inactive` covers non-production environments; production is ours.
    async fn retire_previous(&mut self) {
        let target = self.target.clone();
        let Some(id) = self.deployment.as_ref().map(|d| d.id) else {
            return;
        };
        if self.gave_up || !is_production(&target.environment) {
            return;
        }
        match deployment::retire_previous(&target.github, &target.repo, &target.environment, id)
            .await
        {
            Ok(retired) => self.record.inactivated = retired,
            Err(error) => self.fail(format!(
                "marking the previous deployment inactive failed: {error}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::ports::TrafficTarget;

    fn planned() -> (Progress, EventKind) {
        (
            Progress::default(),
            EventKind::Planned {
                stable: "web-00001-aaa".into(),
                candidate: "web-00002-bbb".into(),
                steps: vec![10, 50, 100],
                creates_revision: true,
            },
        )
    }

    #[test]
    fn given_a_planned_rollout_when_a_step_sets_traffic_then_in_progress_names_step_and_share() {
        let (mut progress, plan) = planned();
        assert_eq!(action_for(&mut progress, &plan), Action::Nothing);
        let step = EventKind::TrafficSet {
            step: Some(2),
            traffic: vec![
                TrafficTarget::new("web-00001-aaa", 50),
                TrafficTarget::new("web-00002-bbb", 50),
            ],
        };
        assert_eq!(
            action_for(&mut progress, &step),
            Action::Post(NewStatus::new(
                DeploymentState::InProgress,
                "step 2/3: 50% on web-00002-bbb"
            ))
        );
    }

    #[test]
    fn given_the_candidate_created_then_the_deployment_starts_and_other_events_post_nothing() {
        let (mut progress, plan) = planned();
        action_for(&mut progress, &plan);
        let created = EventKind::CandidateCreated {
            revision: "web-00002-bbb".into(),
            image: "registry/app:v2".into(),
        };
        assert_eq!(action_for(&mut progress, &created), Action::Start);
        for quiet in [
            EventKind::StepPassed {
                step: 1,
                percent: 10,
            },
            EventKind::Interrupted,
            EventKind::TrafficSet {
                step: None,
                traffic: Vec::new(),
            },
        ] {
            assert_eq!(action_for(&mut progress, &quiet), Action::Nothing);
        }
    }

    fn report(outcome: Outcome, reason: Option<&str>) -> Report {
        Report {
            outcome,
            service: "web".into(),
            stable: "web-00001-aaa".into(),
            candidate: "web-00002-bbb".into(),
            image: None,
            rollout_id: "r".into(),
            planned_steps: vec![100],
            steps: Vec::new(),
            final_traffic: Vec::new(),
            final_traffic_confirmed: true,
            reason: reason.map(str::to_string),
            rollback_failed: false,
            api_failed: false,
            stable_health: None,
            service_problem: false,
            pause_expired: false,
            hooks: Vec::new(),
            duration_s: 0.0,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn given_an_ended_rollout_then_its_outcome_maps_to_success_failure_or_nothing() {
        let promoted = final_status(
            &report(Outcome::Promoted, None),
            Some("https://app.example"),
        )
        .unwrap();
        assert_eq!(promoted.state, DeploymentState::Success);
        assert_eq!(
            promoted.environment_url.as_deref(),
            Some("https://app.example")
        );
        for outcome in [
            Outcome::RolledBack,
            Outcome::Failed,
            Outcome::Aborted,
            Outcome::Interrupted,
        ] {
            let status = final_status(&report(outcome, Some("5xx 40%")), None).unwrap();
            assert_eq!(status.state, DeploymentState::Failure, "{outcome:?}");
            assert!(status.description.ends_with(": 5xx 40%"), "{status:?}");
        }
        assert_eq!(final_status(&report(Outcome::DryRun, None), None), None);
    }
}
