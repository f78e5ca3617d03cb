//! `shiftgate promote`: lets a rollout held by `--pause-at` go on, through its record on the service
//! (so it works from a laptop, another job or chat-ops), and waits for the rollout to take it up.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::actions::ResultFacts;
use crate::cli::PromoteArgs;
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, Endpoints};
use crate::exit::ExitCode;
use crate::rollout::ports::{Platform, PortError, RolloutRecord, ServiceState, TrafficChange};
use crate::rollout::timeline::{TrafficShare, describe_traffic, traffic_shares};

/// How often the record is read while waiting for the rollout to go on.
const POLL: Duration = Duration::from_secs(1);
/// A write refused because the rollout wrote first (a check's record) is read and tried again.
const WRITE_ATTEMPTS: u32 = 5;

/// `shiftgate promote --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoteResult {
    /// `resumed`: the rollout took the decision up; `ended`: it ended first (exit 1);
    /// `not_acknowledged`: it did not within `--timeout` (the request stays on the record).
    pub outcome: &'static str,
    pub service: String,
    pub rollout_id: String,
    /// Where the rollout was held.
    pub percent: u8,
    /// Who drives the rollout.
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub final_traffic: Vec<TrafficShare>,
    pub exit_code: ExitCode,
}

impl PromoteResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts {
            reason: self.reason.as_deref(),
            final_traffic: Some(self.final_traffic.clone()),
            ..ResultFacts::new(command, self.outcome, self.exit_code)
        }
    }
}

pub async fn run(context: &Context, args: PromoteArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let platform = Endpoints::from_env().cloud_run(&address).await?;
    platform
        .rest()
        .set_deadline(Some(Instant::now() + args.timeout));
    promote(&platform, args.timeout)
        .await
        .map(CommandResult::Promote)
}

/// Asks the paused rollout on `platform`'s service to go on, then waits up to `timeout` for it
/// to do so.
pub async fn promote(
    platform: &dyn Platform,
    timeout: Duration,
) -> Result<PromoteResult, CommandError> {
    let give_up = Instant::now() + timeout;
    let (service, record) = ask(platform, give_up).await?;
    crate::say!(
        "asked the rollout of {} on {} (held at {}%) to go on; waiting for it to take that up",
        record.candidate,
        service.name,
        record.percent
    );
    let mut last = service;
    loop {
        if Instant::now() >= give_up {
            return Ok(result(
                &last,
                &record,
                "not_acknowledged",
                Some(format!(
                    "the rollout did not go on within {}: is its process ({}) still running? \
                     `shiftgate status` shows the record; the request stays on it",
                    humantime::format_duration(timeout),
                    record.owner
                )),
                ExitCode::CheckFailed,
            ));
        }
        tokio::time::sleep(POLL.min(give_up.saturating_duration_since(Instant::now()))).await;
        let Ok(Ok(now)) = tokio::time::timeout_at(give_up, platform.read_service()).await else {
            continue;
        };
        last = now;
        let current = last.rollout.as_ref().filter(|r| r.id == record.id);
        let went_on = match current {
            Some(current) if current.state == RolloutRecord::RUNNING => true,
            // Still held, or not yet taken up.
            Some(_) => continue,
            // Gone: promoted through to the end, or ended otherwise (a gate, the hold's
            // timeout, an abort) before it took the request up.
            None => last.percent_of(&record.candidate) == 100,
        };
        if went_on {
            crate::say!(
                "the rollout went on: traffic {}",
                describe_traffic(&last.traffic)
            );
            return Ok(result(&last, &record, "resumed", None, ExitCode::Ok));
        }
        let reason = format!(
            "the rollout ended before it went on (a failed gate, its --pause-timeout or an \
             abort): traffic now {}",
            describe_traffic(&last.traffic)
        );
        crate::say!("{reason}");
        return Ok(result(
            &last,
            &record,
            "ended",
            Some(reason),
            ExitCode::CheckFailed,
        ));
    }
}

/// Writes `resuming` on the paused record, guarded by the service's etag; returns the service as
/// written and the record as it was.
async fn ask(
    platform: &dyn Platform,
    give_up: Instant,
) -> Result<(ServiceState, RolloutRecord), CommandError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let service = read(platform, give_up).await?;
        let Some(record) = service.rollout.clone().filter(RolloutRecord::is_running) else {
            return Err(CommandError::bad_input(format!(
                "no rollout is in progress on {}: nothing to promote (traffic: {})",
                service.name,
                describe_traffic(&service.traffic)
            )));
        };
        match record.state.as_str() {
            RolloutRecord::PAUSED => {}
            // Asked already (a second `promote`): just wait with the first.
            RolloutRecord::RESUMING => return Ok((service, record)),
            _ => {
                return Err(CommandError::bad_input(format!(
                    "the rollout on {} is not paused: it is at {}% and goes on by itself; \
                     `promote` lets a rollout held by --pause-at go on",
                    service.name, record.percent
                )));
            }
        }
        let change = TrafficChange {
            traffic: service.traffic.clone(),
            rollout: Some(RolloutRecord {
                state: RolloutRecord::RESUMING.to_string(),
                ..record.clone()
            }),
            history: None,
        };
        let remaining = give_up.saturating_duration_since(Instant::now());
        match platform
            .set_traffic(&change, &service.etag, remaining)
            .await
        {
            Ok(written) => return Ok((written, record)),
            // The rollout (or someone) wrote in between: look again.
            Err(PortError::Conflict(_)) if attempt < WRITE_ATTEMPTS => continue,
            Err(error) => {
                return Err(CommandError::api(format!(
                    "could not record the decision on {}: {error}",
                    service.name
                )));
            }
        }
    }
}

async fn read(platform: &dyn Platform, give_up: Instant) -> Result<ServiceState, CommandError> {
    match tokio::time::timeout_at(give_up, platform.read_service()).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(PortError::NotFound(what))) => Err(CommandError::bad_input(format!(
            "the service was not found ({what}); check --project, --region and --service"
        ))),
        Ok(Err(error)) => Err(CommandError::api(format!(
            "could not read the service: {error}"
        ))),
        Err(_) => Err(CommandError::api(
            "could not read the service within --timeout",
        )),
    }
}

fn result(
    service: &ServiceState,
    record: &RolloutRecord,
    outcome: &'static str,
    reason: Option<String>,
    exit_code: ExitCode,
) -> PromoteResult {
    PromoteResult {
        outcome,
        service: service.name.clone(),
        rollout_id: record.id.clone(),
        percent: record.percent,
        owner: record.owner.clone(),
        reason,
        final_traffic: traffic_shares(&service.traffic),
        exit_code,
    }
}
