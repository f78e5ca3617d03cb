//! `shiftgate rollback`: sends 100% of traffic to the stable revision recorded by the rollout in
//! progress (or `--to REVISION`), clears the rollout record, and reads the split back.

use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;

use crate::cli::RollbackArgs;
use crate::commands::rollout::file_incident;
use crate::commands::{CommandError, Context, Endpoints, Finished, traffic_json};
use crate::exit::ExitCode;
use crate::github::incident::failed_rollback_incident;
use crate::rollout::engine::{force_traffic, restore_traffic, short_name};
use crate::rollout::ports::{Platform, PortError, ServiceState};
use crate::rollout::timeline::describe_traffic;

pub async fn run(context: &Context, args: RollbackArgs) -> Result<Finished, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let endpoints = Endpoints::from_env();
    let platform = endpoints.cloud_run(&address);
    // No single call may outlive --timeout: the command as a whole ends by then.
    platform
        .rest()
        .set_deadline(Some(Instant::now() + args.timeout));
    let mut finished = roll_back(&platform, args.to.as_deref(), args.timeout).await?;
    if finished.exit_code == ExitCode::RollbackFailed {
        let result = finished.result.clone();
        let text = |key: &str| result[key].as_str().unwrap_or_default().to_string();
        let final_traffic = result["final_traffic"].to_string();
        let repo = config.incident_repo(args.repo.as_deref());
        finished.result["incident"] = file_incident(args.no_incident, repo.as_deref(), |repo| {
            failed_rollback_incident(
                repo,
                &text("service"),
                &text("revision"),
                &text("reason"),
                &final_traffic,
            )
        })
        .await;
    }
    Ok(finished)
}

/// The rollback itself, on any platform: sends 100% to `to` (or the recorded stable revision).
/// The whole command, reads included, ends within `deadline`; a rollback that could not be
/// confirmed in that time (or that the platform refused) is exit 4, with the last split read.
pub async fn roll_back(
    platform: &dyn Platform,
    to: Option<&str>,
    deadline: Duration,
) -> Result<Finished, CommandError> {
    let give_up = Instant::now() + deadline;
    let unconfirmed = |reason: String, service: &str, target: &str, last: Option<&ServiceState>| {
        crate::say!("ROLLBACK FAILED, the service needs a person: {reason}");
        Finished {
            exit_code: ExitCode::RollbackFailed,
            result: json!({
                "command": "rollback",
                "outcome": "failed",
                "service": service,
                "revision": target,
                "reason": reason,
                "final_traffic": last.map(|s| traffic_json(&s.traffic)).unwrap_or_else(|| json!([])),
                "final_traffic_confirmed": false,
                "exit_code": ExitCode::RollbackFailed,
            }),
        }
    };
    let service = match tokio::time::timeout_at(give_up, platform.read_service()).await {
        Ok(Ok(service)) => service,
        Ok(Err(PortError::NotFound(what))) => {
            return Err(CommandError::bad_input(format!(
                "the service was not found ({what}); check --project, --region and --service"
            )));
        }
        Ok(Err(error)) => {
            let reason = format!("could not read the service: {error}");
            return Ok(unconfirmed(reason, "", to.unwrap_or_default(), None));
        }
        Err(_) => {
            let reason = format!(
                "could not read the service within --timeout {}",
                humantime::format_duration(deadline)
            );
            return Ok(unconfirmed(reason, "", to.unwrap_or_default(), None));
        }
    };
    let recorded = service.rollout.as_ref().filter(|r| r.is_running());
    let target = match (to, recorded) {
        (Some(revision), _) => short_name(revision).to_string(),
        (None, Some(record)) => record.stable.clone(),
        (None, None) => {
            let serving = describe_traffic(&service.traffic);
            return Err(CommandError::bad_input(format!(
                "no rollout is recorded on {}, so there is no stable revision to go back to; \
                 give --to REVISION (traffic now: {serving}; `shiftgate status` lists revisions)",
                service.name
            )));
        }
    };
    if to.is_some() {
        let revision = match tokio::time::timeout_at(give_up, platform.read_revision(&target)).await
        {
            Ok(Ok(revision)) => revision,
            Ok(Err(PortError::NotFound(_))) => {
                return Err(CommandError::bad_input(format!(
                    "--to {target}: no such revision"
                )));
            }
            Ok(Err(other)) => {
                let reason = format!("could not read revision {target}: {other}");
                return Ok(unconfirmed(reason, &service.name, &target, Some(&service)));
            }
            Err(_) => {
                let reason = format!("could not read revision {target} within --timeout");
                return Ok(unconfirmed(reason, &service.name, &target, Some(&service)));
            }
        };
        if !revision.ready {
            return Err(CommandError::bad_input(format!(
                "--to {target}: the revision is not ready ({}); pick a ready one",
                revision.reason.unwrap_or_default()
            )));
        }
    }
    if let Some(record) = recorded {
        crate::say!(
            "taking over from the {}",
            crate::rollout::ownership::describe_owner(record)
        );
    }
    let before = service.traffic.clone();
    let wanted = restore_traffic(&service, &target);
    crate::say!("rolling back {}: 100% to {target}", service.name);
    let remaining = give_up.saturating_duration_since(Instant::now());
    let say = |line: &str| crate::say!("rollback: {line}");
    match force_traffic(platform, &wanted, remaining, &say).await {
        Ok(after) => {
            crate::say!("done: traffic {}", describe_traffic(&after.traffic));
            Ok(Finished {
                exit_code: ExitCode::Ok,
                result: json!({
                    "command": "rollback",
                    "outcome": "rolled_back",
                    "service": after.name,
                    "revision": target,
                    "previous_traffic": traffic_json(&before),
                    "final_traffic": traffic_json(&after.traffic),
                    "final_traffic_confirmed": true,
                    "exit_code": ExitCode::Ok,
                }),
            })
        }
        Err(reason) => {
            // One last read, only if time is left: the result never reports a split not read.
            let last = match tokio::time::timeout_at(give_up, platform.read_service()).await {
                Ok(Ok(now)) => now,
                _ => service.clone(),
            };
            let mut finished = unconfirmed(reason, &service.name, &target, Some(&last));
            finished.result["previous_traffic"] = traffic_json(&before);
            Ok(finished)
        }
    }
}
