//! `shiftgate status`: revisions, the traffic split, tag URLs and any rollout in progress, read
//! from the service; changes nothing.

use serde::Serialize;

use crate::actions::{ResultFacts, ServiceChange, ServiceFacts};
use crate::cli::StatusArgs;
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, Endpoints};
use crate::exit::ExitCode;
use crate::rollout::ports::{Platform, PortError, RevisionInfo, RolloutRecord, ServiceState};
use crate::rollout::timeline::{TrafficShare, traffic_shares};

/// `shiftgate status --json`: the service as read, nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusResult {
    /// Always `ok`: a service that could not be read is an error result instead.
    pub outcome: &'static str,
    pub service: String,
    pub uri: Option<String>,
    pub reconciling: bool,
    pub traffic: Vec<TrafficShare>,
    /// The same split as `traffic`, under the key every traffic-touching command has.
    pub final_traffic: Vec<TrafficShare>,
    pub tags: Vec<TagUrl>,
    pub latest_ready_revision: Option<String>,
    pub latest_created_revision: Option<String>,
    /// The rollout in progress; `null` when none is.
    pub rollout: Option<RolloutRecord>,
    /// Why a rollout record on the service cannot be read.
    pub rollout_record_unreadable: Option<String>,
    pub revisions: Vec<RevisionRow>,
    pub exit_code: ExitCode,
}

/// A traffic tag, the revision it names and its own URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagUrl {
    pub tag: String,
    pub revision: String,
    pub url: Option<String>,
}

/// One revision of the service and its share of traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionRow {
    pub name: String,
    pub ready: bool,
    pub reason: Option<String>,
    pub image: Option<String>,
    pub create_time: Option<String>,
    pub percent: u8,
}

impl StatusResult {
    pub fn new(service: &ServiceState, revisions: &[RevisionInfo]) -> Self {
        let tags = service
            .traffic
            .iter()
            .filter_map(|t| {
                let tag = t.tag.as_ref()?;
                Some(TagUrl {
                    tag: tag.clone(),
                    revision: t.revision.clone(),
                    url: service.tag_uris.get(tag).cloned(),
                })
            })
            .collect();
        let revisions = revisions
            .iter()
            .map(|r| RevisionRow {
                name: r.name.clone(),
                ready: r.ready,
                reason: r.reason.clone(),
                image: r.image.clone(),
                create_time: r.create_time.clone(),
                percent: service.percent_of(&r.name),
            })
            .collect();
        Self {
            outcome: "ok",
            service: service.name.clone(),
            uri: service.uri.clone(),
            reconciling: service.reconciling,
            traffic: traffic_shares(&service.traffic),
            final_traffic: traffic_shares(&service.traffic),
            tags,
            latest_ready_revision: service.latest_ready_revision.clone(),
            latest_created_revision: service.latest_created_revision.clone(),
            rollout: service.rollout.clone().filter(|r| r.is_running()),
            rollout_record_unreadable: service.unreadable_rollout.clone(),
            revisions,
            exit_code: ExitCode::Ok,
        }
    }

    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts {
            service: Some(ServiceFacts {
                name: &self.service,
                change: ServiceChange::Read,
                image: None,
            }),
            final_traffic: Some(self.final_traffic.clone()),
            ..ResultFacts::new(command, self.outcome, self.exit_code)
        }
    }
}

pub async fn run(context: &Context, args: StatusArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let endpoints = Endpoints::from_env();
    let platform = endpoints.cloud_run(&address).await?;
    platform
        .rest()
        .set_deadline(Some(tokio::time::Instant::now() + args.timeout));
    let result = tokio::time::timeout(args.timeout, status(&platform))
        .await
        .unwrap_or_else(|_| {
            Err(CommandError::api(format!(
                "could not read the service within --timeout {}",
                humantime::format_duration(args.timeout)
            )))
        })?;
    Ok(CommandResult::Status(result))
}

/// Reads the service and its revisions, and shows them on stderr.
pub async fn status(platform: &dyn Platform) -> Result<StatusResult, CommandError> {
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
    show(&service, &revisions);
    Ok(StatusResult::new(&service, &revisions))
}

/// The service for people, on stderr.
fn show(service: &ServiceState, revisions: &[RevisionInfo]) {
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
            if let Some(pause) = record.pause.as_ref().filter(|_| record.is_paused()) {
                crate::say!(
                    "          PAUSED at {}% since {}, gates still running; at {} it will {}",
                    record.percent,
                    pause.since,
                    pause.until,
                    if pause.on_timeout == "promote" {
                        "go on by itself"
                    } else {
                        "roll back"
                    }
                );
                crate::say!(
                    "          go on with `shiftgate promote`, roll back now with `shiftgate \
                     abort` (both with the same service flags)"
                );
            } else if record.state == crate::rollout::ports::RolloutRecord::RESUMING {
                crate::say!(
                    "          promote was asked for; the rollout goes on at its next check"
                );
            } else {
                crate::say!(
                    "          if that process is gone: continue with `shiftgate rollout --resume`, \
                     or undo with `shiftgate abort` (both with the same service flags)"
                );
            }
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
    for revision in revisions {
        crate::say!(
            "  {:<40} {:<9} {:>3}%  {}",
            revision.name,
            if revision.ready { "ready" } else { "not ready" },
            service.percent_of(&revision.name),
            revision.image.as_deref().unwrap_or("")
        );
    }
}
