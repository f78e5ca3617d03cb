//! The evidence `rollout` gathers for the incident of a rollback, only when one will be filed: the
//! candidate's error logs from Cloud Logging, the revisions, and the commands, within a bound.

use std::time::{Duration, SystemTime};

use crate::commands::{Context, Endpoints};
use crate::config::ServiceAddress;
use crate::evidence::{Change, Evidence, GATHER_TIMEOUT, Retarget, gather};
use crate::gcp::{Credentials, GoogleRest};
use crate::logging::CloudLogging;
use crate::rollout::Report;
use crate::rollout::ports::Platform;

/// Whether [`file_incident`](crate::commands::rollout::file_incident) would try to file: not
/// `--no-incident`, a repository that parses, and a GitHub token.
pub fn incident_will_be_filed(no_incident: bool, repo: Option<&str>) -> bool {
    !no_incident
        && repo.is_some_and(|repo| crate::github::Repo::parse(repo).is_ok())
        && crate::github::client::token_from_env().is_some()
}

/// Where and when the rolled-back change happened, from the report and the request.
pub fn change_of(context: &Context, address: &ServiceAddress, report: &Report) -> Change {
    let since = report.timeline.first().map_or_else(
        || SystemTime::now() - Duration::from_secs_f64(report.duration_s.max(0.0)),
        |event| event.at,
    );
    Change {
        stable: report.stable.clone(),
        candidate: report.candidate.clone(),
        image: report.image.clone(),
        since,
        target: Retarget {
            environment: address.environment.clone(),
            project: address.project.clone(),
            region: address.region.clone(),
            service: address.service.clone(),
            config: context
                .config_path
                .as_ref()
                .map(|path| path.display().to_string()),
        },
    }
}

/// The evidence for the incident about to be filed, or `None` when none will be (nothing is read
/// then). Takes at most [`GATHER_TIMEOUT`]; what could not be read is a note in it.
#[allow(clippy::too_many_arguments)]
pub async fn for_incident(
    context: &Context,
    no_incident: bool,
    repo: Option<&str>,
    address: &ServiceAddress,
    endpoints: &Endpoints,
    credentials: Credentials,
    platform: &dyn Platform,
    report: &Report,
) -> Option<Evidence> {
    if !incident_will_be_filed(no_incident, repo) {
        return None;
    }
    let logging = CloudLogging::new(
        GoogleRest::new(&endpoints.logging, credentials),
        &address.project,
    );
    let change = change_of(context, address, report);
    let evidence = gather(
        &logging,
        platform,
        &change,
        GATHER_TIMEOUT,
        &context.interrupt,
        SystemTime::now,
    )
    .await;
    if let Err(why) = &evidence.errors {
        crate::say!("incident: error logs could not be read: {why}");
    }
    if let Err(why) = &evidence.revisions {
        crate::say!("incident: revisions could not be listed: {why}");
    }
    Some(evidence)
}
