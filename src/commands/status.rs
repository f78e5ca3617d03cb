//! `shiftgate status`: revisions, the traffic split, tag URLs and any rollout in progress, read
//! from the service; changes nothing.

use serde_json::json;

use crate::cli::StatusArgs;
use crate::commands::{CommandError, Context, Endpoints, Finished, traffic_json};
use crate::exit::ExitCode;
use crate::rollout::ports::{Platform, PortError};

pub async fn run(context: &Context, args: StatusArgs) -> Result<Finished, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let endpoints = Endpoints::from_env();
    let platform = endpoints.cloud_run(&address);
    platform
        .rest()
        .set_deadline(Some(tokio::time::Instant::now() + args.timeout));
    tokio::time::timeout(args.timeout, status(&platform))
        .await
        .unwrap_or_else(|_| {
            Err(CommandError::api(format!(
                "could not read the service within --timeout {}",
                humantime::format_duration(args.timeout)
            )))
        })
}

pub async fn status(platform: &dyn Platform) -> Result<Finished, CommandError> {
    let service = platform.read_service().await.map_err(|error| match error {
        PortError::NotFound(what) => CommandError::bad_input(format!(
            "the service was not found ({what}); check --project, --region and --service"
        )),
        other => CommandError::api(format!("could not read the service: {other}")),
    })?;
    let revisions = platform
        .list_revisions()
        .await
        .map_err(|error| CommandError::api(format!("could not list revisions: {error}")))?;

    crate::say!("service   {}", service.name);
    if let Some(uri) = &service.uri {
        crate::say!("url       {uri}");
    }
    if service.reconciling {
        crate::say!("state     reconciling (a change is still being applied)");
    }
    crate::say!("traffic");
    for target in &service.traffic {
        let tag = target
            .tag
            .as_ref()
            .map(|tag| {
                let url = service.tag_uris.get(tag).map(String::as_str).unwrap_or("");
                format!("  tag {tag} {url}")
            })
            .unwrap_or_default();
        crate::say!("  {:>3}%  {}{tag}", target.percent, target.revision);
    }
    let rollout = service.rollout.as_ref().filter(|r| r.is_running());
    match rollout {
        Some(record) => {
            crate::say!(
                "rollout   in progress: {} → {} at {}% since {}",
                record.stable,
                record.candidate,
                record.percent,
                record.started_at
            );
            crate::say!("          owner {} (id {})", record.owner, record.id);
            crate::say!(
                "          if that process is gone: continue with `shiftgate rollout --resume`, \
                 or undo with `shiftgate rollback` (both with the same service flags)"
            );
        }
        None => match &service.unreadable_rollout {
            Some(why) => crate::say!(
                "rollout   a rollout record is on the service but cannot be read ({why}); \
                 `shiftgate rollback --to REVISION` puts traffic on one revision and clears it"
            ),
            None => crate::say!("rollout   none in progress"),
        },
    }
    crate::say!("revisions");
    for revision in &revisions {
        crate::say!(
            "  {:<40} {:<9} {:>3}%  {}",
            revision.name,
            if revision.ready { "ready" } else { "not ready" },
            service.percent_of(&revision.name),
            revision.image.as_deref().unwrap_or("")
        );
    }

    let tags: Vec<_> = service
        .traffic
        .iter()
        .filter_map(|t| {
            let tag = t.tag.as_ref()?;
            Some(json!({"tag": tag, "revision": t.revision, "url": service.tag_uris.get(tag)}))
        })
        .collect();
    let revision_list: Vec<_> = revisions
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "ready": r.ready,
                "reason": r.reason,
                "image": r.image,
                "create_time": r.create_time,
                "percent": service.percent_of(&r.name),
            })
        })
        .collect();
    Ok(Finished {
        exit_code: ExitCode::Ok,
        result: json!({
            "command": "status",
            "outcome": "ok",
            "service": service.name,
            "uri": service.uri,
            "reconciling": service.reconciling,
            "traffic": traffic_json(&service.traffic),
            "final_traffic": traffic_json(&service.traffic),
            "tags": tags,
            "latest_ready_revision": service.latest_ready_revision,
            "latest_created_revision": service.latest_created_revision,
            "rollout": rollout,
            "rollout_record_unreadable": service.unreadable_rollout,
            "revisions": revision_list,
            "exit_code": ExitCode::Ok,
        }),
    })
}
