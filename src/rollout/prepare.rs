//! Preparing a rollout: read the service once and decide stable, candidate and plan, refusing
//! (and changing nothing) when the service needs a person first.

use crate::rollout::engine::Engine;
use crate::rollout::ownership::{describe_owner, live_local_owner, traffic_matches};
use crate::rollout::plan::Policy;
use crate::rollout::ports::{PortError, RolloutRecord, ServiceState};
use crate::rollout::request::{CandidateSource, RolloutError};
use crate::rollout::timeline::{EventKind, Outcome, Report, describe_traffic};
use crate::rollout::traffic::{Plan, new_revision_name, preserved_tags, short_name};

impl Engine<'_> {
    /// Reads the service and decides stable and candidate; changes nothing.
    pub async fn prepare(&mut self, source: &CandidateSource) -> Result<Plan, RolloutError> {
        let service = self
            .ports
            .platform
            .read_service()
            .await
            .map_err(|error| match error {
                PortError::NotFound(what) => RolloutError::Refused(format!(
                    "the service was not found ({what}); check --project, --region and --service"
                )),
                other => RolloutError::Api(format!("could not read the service: {other}")),
            })?;
        self.last_seen = Some(service.clone());
        if *source == CandidateSource::Resume {
            return self.prepare_resume(service).await;
        }
        if let Some(why) = &service.unreadable_rollout {
            return Err(RolloutError::Refused(format!(
                "{} carries a rollout record that cannot be read ({why}), so another rollout may \
                 own it; put traffic on one revision and clear it with \
                 `shiftgate rollback --to REVISION`",
                service.name
            )));
        }
        if let Some(record) = service.rollout.as_ref().filter(|r| r.is_running()) {
            return Err(RolloutError::Refused(format!(
                "a rollout is already in progress on {}: {}; if its process is gone, continue it \
                 with `shiftgate rollout --resume` or undo it with `shiftgate rollback`",
                service.name,
                describe_owner(record)
            )));
        }
        let stable = single_serving_revision(&service)?;
        let (candidate, image) = self.choose_candidate(source, &service, &stable).await?;
        Ok(Plan {
            preserved: preserved_tags(&service),
            stable,
            candidate,
            image,
            service,
            resume_at: None,
            promoted_at: None,
            held: None,
            started_at: humantime::format_rfc3339_seconds(self.clock.now()).to_string(),
        })
    }

    /// The candidate's name, and the image when it is to be created; an existing one must be
    /// ready and not stable.
    async fn choose_candidate(
        &self,
        source: &CandidateSource,
        service: &ServiceState,
        stable: &str,
    ) -> Result<(String, Option<String>), RolloutError> {
        let service_short = short_name(&service.name).to_string();
        let chosen = match source {
            CandidateSource::Image(image) => {
                if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
                    return Err(RolloutError::Refused(format!(
                        "--image {image:?} is not an image reference (expected REGISTRY/NAME:TAG)"
                    )));
                }
                (
                    new_revision_name(&service_short, self.clock.now()),
                    Some(image.clone()),
                )
            }
            CandidateSource::Revision(revision) => {
                let revision = short_name(revision).to_string();
                self.check_existing_candidate(&revision, stable).await?;
                (revision, None)
            }
            CandidateSource::LatestCreated => {
                let latest = service.latest_created_revision.clone().ok_or_else(|| {
                    RolloutError::Refused(
                        "the service has no revision to roll out; give --image or --revision"
                            .to_string(),
                    )
                })?;
                if latest == *stable || service.percent_of(&latest) > 0 {
                    return Err(RolloutError::Refused(format!(
                        "nothing to roll out: the latest revision {latest} already serves traffic; \
                         give --image IMAGE or --revision NAME"
                    )));
                }
                self.check_existing_candidate(&latest, stable).await?;
                (latest, None)
            }
            CandidateSource::Resume => unreachable!("handled above"),
        };
        Ok(chosen)
    }

    /// A recorded rollout whose process is gone: its revisions still exist and the split is still
    /// the one it recorded, else a person must decide (exit 2, nothing changed).
    async fn prepare_resume(&mut self, service: ServiceState) -> Result<Plan, RolloutError> {
        let Some(record) = service.rollout.clone().filter(|r| r.is_running()) else {
            return Err(RolloutError::Refused(format!(
                "no rollout is recorded on {}, so there is nothing to resume; start one with \
                 `shiftgate rollout --image IMAGE`",
                service.name
            )));
        };
        if let Some(pid) = live_local_owner(&record.owner) {
            return Err(RolloutError::Refused(format!(
                "the recorded rollout is still run by process {pid} on this host ({}); stop it \
                 before resuming",
                describe_owner(&record)
            )));
        }
        for (role, revision) in [("stable", &record.stable), ("candidate", &record.candidate)] {
            let info = self
                .ports
                .platform
                .read_revision(revision)
                .await
                .map_err(|error| match error {
                    PortError::NotFound(_) => RolloutError::Refused(format!(
                        "cannot resume: the recorded {role} revision {revision} no longer exists; \
                         undo the rollout with `shiftgate rollback --to REVISION`"
                    )),
                    other => {
                        RolloutError::Api(format!("could not read revision {revision}: {other}"))
                    }
                })?;
            if !info.ready {
                return Err(RolloutError::Refused(format!(
                    "cannot resume: the recorded {role} revision {revision} is not ready ({}); \
                     undo the rollout with `shiftgate rollback`",
                    info.reason.unwrap_or_default()
                )));
            }
        }
        let plan = Plan {
            preserved: preserved_tags(&service),
            stable: record.stable.clone(),
            candidate: record.candidate.clone(),
            image: None,
            resume_at: Some(record.percent),
            promoted_at: (record.state == RolloutRecord::RESUMING).then_some(record.percent),
            held: record.pause.clone().filter(|_| record.is_paused()),
            started_at: record.started_at.clone(),
            service,
        };
        let expected = plan.traffic(record.percent, true);
        if !traffic_matches(&plan.service, &expected) {
            return Err(RolloutError::Refused(format!(
                "cannot resume: traffic on {} is {}, not the {} the record says; undo the \
                 rollout with `shiftgate rollback`",
                plan.service.name,
                describe_traffic(&plan.service.traffic),
                describe_traffic(&expected)
            )));
        }
        Ok(plan)
    }

    async fn check_existing_candidate(
        &self,
        revision: &str,
        stable: &str,
    ) -> Result<(), RolloutError> {
        if revision == stable {
            return Err(RolloutError::Refused(format!(
                "--revision {revision} is the stable revision already serving 100% of traffic"
            )));
        }
        let info =
            self.ports
                .platform
                .read_revision(revision)
                .await
                .map_err(|error| match error {
                    PortError::NotFound(_) => {
                        RolloutError::Refused(format!("--revision {revision} does not exist"))
                    }
                    other => {
                        RolloutError::Api(format!("could not read revision {revision}: {other}"))
                    }
                })?;
        if !info.ready {
            return Err(RolloutError::Refused(format!(
                "revision {revision} is not ready{}",
                info.reason
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_default()
            )));
        }
        Ok(())
    }

    pub(super) fn dry_run_report(&mut self, plan: &Plan, policy: &Policy) -> Report {
        self.emit(EventKind::Planned {
            stable: plan.stable.clone(),
            candidate: plan.candidate.clone(),
            steps: policy.steps.percents().to_vec(),
            creates_revision: plan.image.is_some(),
        });
        let mut report = self.report(plan, policy, Outcome::DryRun, Vec::new());
        report.final_traffic = plan.service.traffic.clone();
        report.final_traffic_confirmed = true;
        let action = match plan.resume_at {
            Some(at) => format!("resume the rollout of {} at {at}%, then", plan.candidate),
            None => String::new(),
        };
        report.reason = Some(format!(
            "dry run: would {action} move {} from {} to {} in steps {} (bake {} each, at least {} to promote); nothing was changed",
            short_name(&plan.service.name),
            plan.stable,
            plan.candidate,
            policy.steps,
            humantime::format_duration(policy.bake),
            humantime::format_duration(policy.time_to_promote()),
        ));
        report
    }
}

/// The one revision serving all traffic, which a rollout falls back to.
fn single_serving_revision(service: &ServiceState) -> Result<String, RolloutError> {
    match service.serving().as_slice() {
        [(revision, 100)] => Ok(revision.clone()),
        [] => Err(RolloutError::Refused(format!(
            "{} serves no traffic, so there is no stable revision to fall back to",
            service.name
        ))),
        split => {
            let shares: Vec<String> = split.iter().map(|(r, p)| format!("{r} {p}%")).collect();
            Err(RolloutError::Refused(format!(
                "traffic on {} is split ({}); put it on one revision first with \
                 `shiftgate rollback --to REVISION`",
                service.name,
                shares.join(", ")
            )))
        }
    }
}
