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
            several_regions: several_regions(context, address),
        },
    }
}

/// Whether the rollout's environment names more than one region (then a rollback or a rollout of
/// one revision needs `--region`). The config was read once already; unreadable now: no.
fn several_regions(context: &Context, address: &ServiceAddress) -> bool {
    let Some(name) = &address.environment else {
        return false;
    };
    context.config().ok().is_some_and(|config| {
        config
            .environment(name)
            .ok()
            .and_then(|environment| environment.regions.as_ref())
            .is_some_and(|regions| regions.len() > 1)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::engine::Interrupt;

    fn address(environment: Option<&str>, region: &str) -> ServiceAddress {
        ServiceAddress {
            environment: environment.map(str::to_string),
            project: "proj-1".into(),
            region: region.into(),
            service: "app".into(),
            url: None,
        }
    }

    #[test]
    fn given_an_environment_with_several_regions_then_the_retarget_says_so() {
        let dir = std::env::temp_dir().join(format!("shiftgate-retarget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shiftgate.toml");
        std::fs::write(
            &path,
            "[environments.prod]\nproject = \"proj-1\"\nregions = [\"us-central1\", \"europe-west1\"]\n\
             service = \"app\"\n\n[environments.staging]\nproject = \"proj-1\"\n\
             regions = [\"us-central1\"]\nservice = \"app\"\n",
        )
        .unwrap();
        let context = Context {
            json: true,
            config_path: Some(path),
            interrupt: Interrupt::never(),
        };
        let prod = address(Some("prod"), "europe-west1");
        let staging = address(Some("staging"), "us-central1");
        context.config().expect("the config loads");
        assert!(several_regions(&context, &prod));
        assert!(!several_regions(&context, &staging));
        assert!(!several_regions(&context, &address(None, "europe-west1")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
