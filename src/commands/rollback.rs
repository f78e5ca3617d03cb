//! `shiftgate rollback`: sends 100% of traffic to the stable revision recorded by the rollout in
//! progress (or `--to REVISION`), clears the rollout record, and reads the split back.

use std::time::Duration;

use serde_json::json;

use crate::cli::RollbackArgs;
use crate::commands::rollout::file_incident;
use crate::commands::{
    CommandError, Context, EXIT_OK, EXIT_ROLLBACK_FAILED, Endpoints, Finished, traffic_json,
};
use crate::github::incident::failed_rollback_incident;
use crate::rollout::engine::{force_traffic, restore_traffic, short_name};
use crate::rollout::ports::{Platform, PortError};
use crate::rollout::timeline::describe_traffic;

pub async fn run(context: &Context, args: RollbackArgs) -> Result<Finished, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let endpoints = Endpoints::from_env();
    let platform = endpoints.cloud_run(&address);
    let mut finished = roll_back(&platform, args.to.as_deref(), args.timeout).await?;
    if finished.exit_code == EXIT_ROLLBACK_FAILED {
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

/// The rollback itself, on any platform.
/// Sends 100% to `to` (or the recorded stable revision), trying for up to `deadline`.
pub async fn roll_back(
    platform: &dyn Platform,
    to: Option<&str>,
    deadline: Duration,
) -> Result<Finished, CommandError> {
    let service = platform.read_service().await.map_err(|error| match error {
        PortError::NotFound(what) => CommandError::bad_input(format!(
            "the service was not found ({what}); check --project, --region and --service"
        )),
        other => CommandError::api(format!("could not read the service: {other}")),
    })?;
    let target = match (to, &service.rollout) {
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
        let revision = platform
            .read_revision(&target)
            .await
            .map_err(|error| match error {
                PortError::NotFound(_) => {
                    CommandError::bad_input(format!("--to {target}: no such revision"))
                }
                other => CommandError::api(format!("could not read revision {target}: {other}")),
            })?;
        if !revision.ready {
            return Err(CommandError::bad_input(format!(
                "--to {target}: the revision is not ready ({}); pick a ready one",
                revision.reason.unwrap_or_default()
            )));
        }
    }
    let before = service.traffic.clone();
    let wanted = restore_traffic(&service, &target);
    crate::say!("rolling back {}: 100% to {target}", service.name);
    match force_traffic(platform, Some(service.clone()), &wanted, deadline).await {
        Ok(after) => {
            crate::say!("done: traffic {}", describe_traffic(&after.traffic));
            Ok(Finished {
                exit_code: EXIT_OK,
                result: json!({
                    "command": "rollback",
                    "outcome": "rolled_back",
                    "service": after.name,
                    "revision": target,
                    "previous_traffic": traffic_json(&before),
                    "final_traffic": traffic_json(&after.traffic),
                    "exit_code": EXIT_OK,
                }),
            })
        }
        Err(reason) => {
            crate::say!("ROLLBACK FAILED, the service needs a person: {reason}");
            let final_traffic = platform
                .read_service()
                .await
                .map(|s| traffic_json(&s.traffic))
                .unwrap_or_else(|_| json!([]));
            Ok(Finished {
                exit_code: EXIT_ROLLBACK_FAILED,
                result: json!({
                    "command": "rollback",
                    "outcome": "failed",
                    "service": service.name,
                    "revision": target,
                    "reason": reason,
                    "previous_traffic": traffic_json(&before),
                    "final_traffic": final_traffic,
                    "exit_code": EXIT_ROLLBACK_FAILED,
                }),
            })
        }
    }
}
