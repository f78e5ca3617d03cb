//! `shiftgate rollback`: sends 100% of traffic to the stable revision recorded by the rollout in
//! progress (or `--to REVISION`), clears the rollout record, and reads the split back.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::actions::{ResultFacts, ServiceChange, ServiceFacts};
use crate::cli::{AbortArgs, RestoreArgs, RollbackArgs, ServiceArgs};
use crate::commands::result::CommandResult;
use crate::commands::rollout::{IncidentFiling, file_incident};
use crate::commands::{CommandError, Context, Endpoints};
use crate::exit::ExitCode;
use crate::github::incident::failed_rollback_incident;
use crate::rollout::engine::{ManualEnd, NotForced, force_traffic_of, restore_traffic, short_name};
use crate::rollout::ports::{Platform, PortError, ServiceState};
use crate::rollout::timeline::{TrafficShare, describe_traffic, traffic_json_text, traffic_shares};

/// `shiftgate rollback --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackResult {
    pub outcome: RollbackOutcome,
    /// The service's full name; empty when it could not be read.
    pub service: String,
    /// The revision traffic was sent to.
    pub revision: String,
    /// Why the rollback could not be confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The split before the rollback, when the service was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_traffic: Option<Vec<TrafficShare>>,
    /// The split as last read: after the rollback when confirmed, else the last one read.
    pub final_traffic: Vec<TrafficShare>,
    pub final_traffic_confirmed: bool,
    pub exit_code: ExitCode,
    /// The SEV-1 incident of a rollback that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentFiling>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackOutcome {
    RolledBack,
    /// Not confirmed: the service needs a person.
    Failed,
    /// `--if-in-progress` and no rollout was in progress: nothing was written.
    NotInProgress,
}

impl RollbackResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        let (outcome, change) = match self.outcome {
            RollbackOutcome::RolledBack => (
                "rolled_back",
                ServiceChange::Restore {
                    revision: &self.revision,
                },
            ),
            RollbackOutcome::Failed => (
                "failed",
                ServiceChange::Restore {
                    revision: &self.revision,
                },
            ),
            RollbackOutcome::NotInProgress => ("not_in_progress", ServiceChange::Read),
        };
        ResultFacts {
            service: Some(ServiceFacts {
                name: &self.service,
                change,
                image: None,
            }),
            reason: self.reason.as_deref(),
            final_traffic: Some(self.final_traffic.clone()),
            incident_url: self.incident.as_ref().and_then(IncidentFiling::url),
            ..ResultFacts::new(command, outcome, self.exit_code)
        }
    }
}

pub async fn run(context: &Context, args: RollbackArgs) -> Result<CommandResult, CommandError> {
    let mode = if args.if_in_progress {
        Mode::IfInProgress
    } else {
        Mode::Rollback
    };
    run_as(
        context,
        &args.service,
        args.to.as_deref(),
        &args.restore,
        mode,
    )
    .await
    .map(CommandResult::Rollback)
}

/// `shiftgate abort`: the rollout in progress (running or paused) rolls back now; the rollout's
/// own process sees its record gone at its next check and stops without writing again.
pub async fn abort(context: &Context, args: AbortArgs) -> Result<CommandResult, CommandError> {
    run_as(context, &args.service, None, &args.restore, Mode::Abort)
        .await
        .map(CommandResult::Abort)
}

/// What a service without a rollout in progress means to the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `rollback`: go back to the recorded stable revision, or to `--to`.
    Rollback,
    /// `rollback --if-in-progress`: nothing to do is fine.
    IfInProgress,
    /// `abort`: nothing to abort is a mistake (exit 2).
    Abort,
}

async fn run_as(
    context: &Context,
    service: &ServiceArgs,
    to: Option<&str>,
    args: &RestoreArgs,
    mode: Mode,
) -> Result<RollbackResult, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(service)?;
    let endpoints = Endpoints::from_env();
    let platform = endpoints.cloud_run(&address).await?;
    // No single call may outlive --timeout: the command as a whole ends by then.
    platform
        .rest()
        .set_deadline(Some(Instant::now() + args.timeout));
    let mut result = roll_back_with(&platform, to, args.timeout, mode).await?;
    if result.exit_code == ExitCode::RollbackFailed {
        let repo = config.incident_repo(args.repo.as_deref());
        let incident = file_incident(args.no_incident, repo.as_deref(), |repo| {
            failed_rollback_incident(
                repo,
                "`shiftgate rollback`",
                &result.service,
                &result.revision,
                result.reason.as_deref().unwrap_or_default(),
                &traffic_json_text(&result.final_traffic),
            )
        })
        .await;
        result.incident = Some(incident);
    }
    Ok(result)
}

/// The rollback itself, on any platform: sends 100% to `to` (or the recorded stable revision).
/// The whole command, reads included, ends within `deadline`; a rollback that could not be
/// confirmed in that time (or that the platform refused) is exit 4, with the last split read.
pub async fn roll_back(
    platform: &dyn Platform,
    to: Option<&str>,
    deadline: Duration,
) -> Result<RollbackResult, CommandError> {
    roll_back_with(platform, to, deadline, Mode::Rollback).await
}

/// [`roll_back`]; with `if_in_progress`, a service with no rollout in progress is left as it is
/// (exit 0), so a cleanup step can run whether or not the rollout already restored stable.
async fn roll_back_with(
    platform: &dyn Platform,
    to: Option<&str>,
    deadline: Duration,
    mode: Mode,
) -> Result<RollbackResult, CommandError> {
    let give_up = Instant::now() + deadline;
    let prepared = async {
        let service = read_service(platform, to, give_up, deadline).await?;
        let in_progress = service.rollout.as_ref().is_some_and(|r| r.is_running());
        match mode {
            Mode::IfInProgress if !in_progress => {
                return Err(Ended::NotInProgress(not_in_progress(&service)));
            }
            Mode::Abort if !in_progress => {
                return Err(Ended::Refused(CommandError::bad_input(format!(
                    "no rollout is in progress on {}: nothing to abort (traffic: {}); \
                     `shiftgate rollback --to REVISION` sends all traffic to one revision",
                    service.name,
                    describe_traffic(&service.traffic)
                ))));
            }
            _ => {}
        }
        let target = choose_target(&service, to).map_err(Ended::Refused)?;
        if to.is_some() {
            check_revision(platform, &service, &target, give_up).await?;
        }
        Ok((service, target))
    };
    match prepared.await {
        Ok((service, target)) => {
            // `abort` aims at the rollout it read, and only at that one.
            let only_for = match mode {
                Mode::Abort => service.rollout.as_ref().map(|record| record.id.clone()),
                _ => None,
            };
            Ok(restore(platform, service, target, give_up, only_for.as_deref()).await)
        }
        Err(Ended::Refused(error)) => Err(error),
        Err(Ended::Unconfirmed(result) | Ended::NotInProgress(result)) => Ok(result),
    }
}

/// `--if-in-progress` found no rollout in progress: the split as read, nothing written.
fn not_in_progress(service: &ServiceState) -> RollbackResult {
    crate::say!(
        "no rollout is in progress on {}: nothing to roll back (traffic: {})",
        service.name,
        describe_traffic(&service.traffic)
    );
    RollbackResult {
        outcome: RollbackOutcome::NotInProgress,
        service: service.name.clone(),
        revision: String::new(),
        reason: None,
        previous_traffic: None,
        final_traffic: traffic_shares(&service.traffic),
        final_traffic_confirmed: true,
        exit_code: ExitCode::Ok,
        incident: None,
    }
}

/// Why a rollback ends before it sends traffic anywhere.
enum Ended {
    /// Bad input: nothing was changed (exit 2).
    Refused(CommandError),
    /// The platform could not be read: the service needs a person (exit 4).
    Unconfirmed(RollbackResult),
    /// `--if-in-progress` and no rollout in progress: done, nothing written (exit 0).
    NotInProgress(RollbackResult),
}

async fn read_service(
    platform: &dyn Platform,
    to: Option<&str>,
    give_up: Instant,
    deadline: Duration,
) -> Result<ServiceState, Ended> {
    let target = to.unwrap_or_default();
    match tokio::time::timeout_at(give_up, platform.read_service()).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(PortError::NotFound(what))) => Err(Ended::Refused(CommandError::bad_input(
            format!("the service was not found ({what}); check --project, --region and --service"),
        ))),
        Ok(Err(error)) => {
            let reason = format!("could not read the service: {error}");
            Err(Ended::Unconfirmed(unconfirmed(reason, "", target, None)))
        }
        Err(_) => {
            let reason = format!(
                "could not read the service within --timeout {}",
                humantime::format_duration(deadline)
            );
            Err(Ended::Unconfirmed(unconfirmed(reason, "", target, None)))
        }
    }
}

/// `--to`, else the stable revision of the rollout recorded on the service.
fn choose_target(service: &ServiceState, to: Option<&str>) -> Result<String, CommandError> {
    let recorded = service.rollout.as_ref().filter(|r| r.is_running());
    match (to, recorded) {
        (Some(revision), _) => Ok(short_name(revision).to_string()),
        (None, Some(record)) => Ok(record.stable.clone()),
        (None, None) => {
            let serving = describe_traffic(&service.traffic);
            Err(CommandError::bad_input(format!(
                "no rollout is recorded on {}, so there is no stable revision to go back to; \
                 give --to REVISION (traffic now: {serving}; `shiftgate status` lists revisions), \
                 or --if-in-progress to do nothing when no rollout is in progress",
                service.name
            )))
        }
    }
}

/// A revision named by `--to` must exist and be ready.
async fn check_revision(
    platform: &dyn Platform,
    service: &ServiceState,
    target: &str,
    give_up: Instant,
) -> Result<(), Ended> {
    let unread = |reason: String| {
        Ended::Unconfirmed(unconfirmed(reason, &service.name, target, Some(service)))
    };
    let revision = match tokio::time::timeout_at(give_up, platform.read_revision(target)).await {
        Ok(Ok(revision)) => revision,
        Ok(Err(PortError::NotFound(_))) => {
            return Err(Ended::Refused(CommandError::bad_input(format!(
                "--to {target}: no such revision"
            ))));
        }
        Ok(Err(other)) => return Err(unread(format!("could not read revision {target}: {other}"))),
        Err(_) => {
            return Err(unread(format!(
                "could not read revision {target} within --timeout"
            )));
        }
    };
    if !revision.ready {
        return Err(Ended::Refused(CommandError::bad_input(format!(
            "--to {target}: the revision is not ready ({}); pick a ready one",
            revision.reason.unwrap_or_default()
        ))));
    }
    Ok(())
}

/// Sends 100% to `target`, taking over from any rollout in progress, and reads the split back.
async fn restore(
    platform: &dyn Platform,
    service: ServiceState,
    target: String,
    give_up: Instant,
    only_for: Option<&str>,
) -> RollbackResult {
    if let Some(record) = service.rollout.as_ref().filter(|r| r.is_running()) {
        crate::say!(
            "taking over from the {}",
            crate::rollout::ownership::describe_owner(record)
        );
    }
    let previous = traffic_shares(&service.traffic);
    let wanted = restore_traffic(&service, &target);
    crate::say!("rolling back {}: 100% to {target}", service.name);
    let remaining = give_up.saturating_duration_since(Instant::now());
    let say = |line: &str| crate::say!("rollback: {line}");
    let manual = ManualEnd {
        outcome: if only_for.is_some() {
            "aborted"
        } else {
            "rolled_back"
        },
        command: if only_for.is_some() {
            "shiftgate abort"
        } else {
            "shiftgate rollback"
        },
        who: crate::rollout::ownership::owner_from_env(),
        clock: crate::clock::Clock::new(),
    };
    let forced = force_traffic_of(platform, &wanted, remaining, &say, only_for, Some(&manual));
    match forced.await {
        Ok(after) => {
            crate::say!("done: traffic {}", describe_traffic(&after.traffic));
            RollbackResult {
                outcome: RollbackOutcome::RolledBack,
                service: after.name,
                revision: target,
                reason: None,
                previous_traffic: Some(previous),
                final_traffic: traffic_shares(&after.traffic),
                final_traffic_confirmed: true,
                exit_code: ExitCode::Ok,
                incident: None,
            }
        }
        Err(NotForced::Ended(reason)) => {
            crate::say!("{reason}");
            let last = match tokio::time::timeout_at(give_up, platform.read_service()).await {
                Ok(Ok(now)) => now,
                _ => service.clone(),
            };
            RollbackResult {
                outcome: RollbackOutcome::NotInProgress,
                service: last.name.clone(),
                revision: target,
                reason: Some(reason),
                previous_traffic: Some(previous),
                final_traffic: traffic_shares(&last.traffic),
                final_traffic_confirmed: true,
                exit_code: ExitCode::CheckFailed,
                incident: None,
            }
        }
        Err(NotForced::Failed(reason)) => {
            // One last read, only if time is left: the result never reports a split not read.
            let last = match tokio::time::timeout_at(give_up, platform.read_service()).await {
                Ok(Ok(now)) => now,
                _ => service.clone(),
            };
            RollbackResult {
                previous_traffic: Some(previous),
                ..unconfirmed(reason, &service.name, &target, Some(&last))
            }
        }
    }
}

/// A rollback that could not be confirmed: the service needs a person (exit 4).
fn unconfirmed(
    reason: String,
    service: &str,
    target: &str,
    last: Option<&ServiceState>,
) -> RollbackResult {
    crate::say!("ROLLBACK FAILED, the service needs a person: {reason}");
    RollbackResult {
        outcome: RollbackOutcome::Failed,
        service: service.to_string(),
        revision: target.to_string(),
        reason: Some(reason),
        previous_traffic: None,
        final_traffic: last.map(|s| traffic_shares(&s.traffic)).unwrap_or_default(),
        final_traffic_confirmed: false,
        exit_code: ExitCode::RollbackFailed,
        incident: None,
    }
}
