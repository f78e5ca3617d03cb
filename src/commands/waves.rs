//! Several regions of one service as waves of one rollout: what every region must allow before
//! the first changes, and the undoing of regions already promoted when a later one fails.

use std::time::Duration;

use serde::Serialize;

use crate::cli::RolloutArgs;
use crate::commands::CommandError;
use crate::config::ServiceAddress;
use crate::rollout::engine::restore_split;
use crate::rollout::engine::{INTERRUPTED_RESTORE_DEADLINE, Interrupt, NotForced, undo_promotion};
use crate::rollout::history::{HistoryEntry, time_text};
use crate::rollout::ownership::{describe_owner, owner_from_env};
use crate::rollout::ports::{Platform, PortError};
use crate::rollout::timeline::{TrafficShare, describe_traffic, traffic_shares};
use crate::rollout::{Outcome, Report};

/// One region of a rollout in waves, as the result and the step summary show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionSummary {
    pub region: String,
    /// The region's own rollout (`promoted`, `rolled_back`, …); `not_started` when an earlier
    /// region ended the rollout, `error` when it ended before changing anything.
    pub outcome: String,
    /// The steps this region ran with: the policy's in the first, `--wave-steps` after.
    pub steps: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The split read back at the region's end, or after its undo.
    pub final_traffic: Vec<TrafficShare>,
    pub final_traffic_confirmed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A promoted region a later one's failure undid: `rolled_back`, `left` (changed by someone
    /// since; left as it is), `failed` (not confirmed: it needs a person) or `interrupted` (a
    /// signal came before its undo began; it still serves the candidate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undone: Option<UndoOutcome>,
    /// How long that undo took, reads and retries included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_s: Option<f64>,
}

impl RegionSummary {
    pub fn ran(region: &str, report: &Report) -> Self {
        Self {
            region: region.to_string(),
            outcome: report.outcome.as_str().to_string(),
            steps: report.planned_steps.clone(),
            stable: Some(report.stable.clone()),
            candidate: Some(report.candidate.clone()),
            final_traffic: traffic_shares(&report.final_traffic),
            final_traffic_confirmed: report.final_traffic_confirmed,
            reason: report.reason.clone(),
            undone: None,
            undo_s: None,
        }
    }

    pub fn not_run(region: &str, outcome: &str, steps: &[u8], reason: Option<String>) -> Self {
        Self {
            region: region.to_string(),
            outcome: outcome.to_string(),
            steps: steps.to_vec(),
            stable: None,
            candidate: None,
            final_traffic: Vec::new(),
            final_traffic_confirmed: false,
            reason,
            undone: None,
            undo_s: None,
        }
    }
}

/// What became of a promoted region when a later region failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoOutcome {
    RolledBack,
    Left,
    Failed,
    /// A signal came before its undo began.
    Interrupted,
}

/// Refuses, before anything changes, a candidate that cannot mean the same in every region: a
/// revision name belongs to one region's service, and a resumed rollout to one region.
pub fn check_candidate(
    args: &RolloutArgs,
    addresses: &[ServiceAddress],
) -> Result<(), CommandError> {
    if addresses.len() < 2 {
        return Ok(());
    }
    let regions = region_list(addresses);
    let refuse = |flag: &str, why: &str| {
        Err(CommandError::bad_input(format!(
            "{flag}: {why}; this rollout goes through several regions ({regions})"
        )))
    };
    if args.resume {
        return refuse(
            "--resume",
            "a rollout is resumed in the region it was left in: give --region with that one",
        );
    }
    if args.revision.is_some() {
        return refuse(
            "--revision",
            "a revision belongs to one region's service: give --image, which each region makes \
             its own revision of",
        );
    }
    if args.image.is_none() {
        return refuse(
            "--image",
            "give the image to deploy (each region makes its own revision of it); the latest \
             revision of each region need not be the same release",
        );
    }
    Ok(())
}

pub fn region_list(addresses: &[ServiceAddress]) -> String {
    addresses
        .iter()
        .map(|address| address.region.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads every region's service before the first wave moves: each must exist and have no rollout
/// in progress, so a rollout does not promote one region only to find the next unusable.
pub async fn preflight(
    regions: &[(&ServiceAddress, &dyn Platform)],
    deadline: Duration,
) -> Result<(), CommandError> {
    for (address, platform) in regions {
        let region = &address.region;
        let service = match tokio::time::timeout(deadline, platform.read_service()).await {
            Ok(Ok(service)) => service,
            Ok(Err(PortError::NotFound(what))) => {
                return Err(CommandError::bad_input(format!(
                    "--region {region}: the service was not found there ({what}); nothing was \
                     changed in any region"
                )));
            }
            Ok(Err(error)) => {
                return Err(CommandError::api(format!(
                    "could not read the service in {region}: {error}; nothing was changed in any \
                     region"
                )));
            }
            Err(_) => {
                return Err(CommandError::api(format!(
                    "could not read the service in {region} within {}; nothing was changed in \
                     any region",
                    humantime::format_duration(deadline)
                )));
            }
        };
        if let Some(record) = service.rollout.as_ref().filter(|r| r.is_running()) {
            return Err(CommandError::bad_input(format!(
                "a rollout is already in progress in {region}, by the {}: nothing was changed in \
                 any region (`shiftgate status --region {region}` shows it)",
                describe_owner(record)
            )));
        }
    }
    Ok(())
}

/// Puts a region this rollout promoted back on its stable revision, only while it still serves
/// exactly what the promotion left: a person's change since, or another rollout, is left alone.
pub async fn undo(
    platform: &dyn Platform,
    summary: &mut RegionSummary,
    report: &Report,
    later_failure: &str,
    deadline: Duration,
    interrupt: &Interrupt,
) {
    let region = summary.region.clone();
    let wanted = restore_split(&report.final_traffic, &report.stable);
    // The region's history gets the rollback beside its promotion: the rollout's own decision,
    // not a person's.
    let now = time_text(std::time::SystemTime::now());
    let entry = HistoryEntry {
        // The rollout's own id: `report` reads this entry as the end of that rollout.
        id: report.rollout_id.clone(),
        candidate: report.candidate.clone(),
        stable: report.stable.clone(),
        outcome: Outcome::RolledBack.as_str().to_string(),
        reason: Some(later_failure.to_string()),
        started: now.clone(),
        ended: now.clone(),
        restored_at: Some(now),
        who: owner_from_env(),
        ..HistoryEntry::default()
    };
    crate::say!(
        "rolling back {region} too: 100% to {} (it was promoted before a later region failed)",
        report.stable
    );
    let say = |line: &str| crate::say!("rollback of {region}: {line}");
    let started = tokio::time::Instant::now();
    let promoted = &report.final_traffic;
    let undo = undo_promotion(platform, &wanted, promoted, Some(entry), deadline, &say);
    tokio::pin!(undo);
    // A signal leaves the runner seconds: the write under way may finish in them, no more.
    let undone = tokio::select! {
        undone = &mut undo => undone,
        _ = interrupt.fired() => match tokio::time::timeout(INTERRUPTED_RESTORE_DEADLINE, &mut undo).await {
            Ok(undone) => undone,
            Err(_) => Err(NotForced::Failed(format!(
                "interrupted before the rollback of {region} was confirmed"
            ))),
        },
    };
    let (outcome, reason) = match undone {
        Ok(service) => {
            crate::say!("{region}: traffic {}", describe_traffic(&service.traffic));
            summary.final_traffic = traffic_shares(&service.traffic);
            summary.final_traffic_confirmed = true;
            (UndoOutcome::RolledBack, None)
        }
        Err(NotForced::Ended(reason)) => {
            crate::say!("{region}: {reason}");
            (UndoOutcome::Left, Some(reason))
        }
        Err(NotForced::Failed(reason)) => {
            crate::say!("ROLLBACK OF {region} FAILED, it needs a person: {reason}");
            (UndoOutcome::Failed, Some(reason))
        }
    };
    // Whatever the undo did not confirm, the result shows the split as read now, or says the
    // one it has is not confirmed.
    if outcome != UndoOutcome::RolledBack {
        let patience = match interrupt.is_set() {
            true => Duration::from_secs(1),
            false => LAST_READ_TIMEOUT,
        };
        match tokio::time::timeout(patience, platform.read_service()).await {
            Ok(Ok(service)) => {
                summary.final_traffic = traffic_shares(&service.traffic);
                summary.final_traffic_confirmed = true;
            }
            _ => summary.final_traffic_confirmed = false,
        }
    }
    summary.undone = Some(outcome);
    summary.undo_s = Some(started.elapsed().as_secs_f64());
    if let Some(reason) = reason {
        summary.reason = Some(reason);
    }
}

/// How long the read after an unconfirmed undo may take.
const LAST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a region's end undoes the regions promoted before it: a failure of the candidate or
/// of the platform does. A person's change (`aborted`) stops the waves without writing again, as
/// it stops any rollout; an interrupt stops them too (a cancelled runner has seconds).
pub fn undoes_earlier(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::RolledBack | Outcome::Failed)
}

/// Whether a region's end stops the waves.
pub fn stops_waves(outcome: Outcome) -> bool {
    !matches!(outcome, Outcome::Promoted | Outcome::DryRun)
}

/// A promoted region the waves did not undo because a signal came first: it still serves the
/// candidate, which passed its gates there.
pub fn not_undone(summary: &mut RegionSummary) {
    summary.undone = Some(UndoOutcome::Interrupted);
    summary.reason = Some(
        "interrupted before its rollback: it still serves the candidate, which passed its gates \
         here"
            .into(),
    );
}

/// What the waves' end says after the deciding region's own reason.
pub fn undo_note(summaries: &[RegionSummary]) -> Option<String> {
    let parts: Vec<String> = summaries
        .iter()
        .filter_map(|summary| {
            let undone = summary.undone?;
            Some(match undone {
                UndoOutcome::RolledBack => format!(
                    "{} was rolled back too (100% on {})",
                    summary.region,
                    summary.stable.as_deref().unwrap_or("its stable revision")
                ),
                UndoOutcome::Left => format!(
                    "{} had changed since its promotion and was left as it is",
                    summary.region
                ),
                UndoOutcome::Failed => {
                    format!("rolling back {} FAILED: it needs a person", summary.region)
                }
                UndoOutcome::Interrupted => format!(
                    "{} was not rolled back (interrupted first): it still serves the candidate",
                    summary.region
                ),
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(region: &str, undone: Option<UndoOutcome>) -> RegionSummary {
        RegionSummary {
            stable: Some(format!("web-{region}-old")),
            undone,
            ..RegionSummary::not_run(region, "promoted", &[100], None)
        }
    }

    #[test]
    fn given_regions_undone_each_way_then_the_note_says_which_and_how() {
        let note = undo_note(&[
            summary("us-central1", Some(UndoOutcome::RolledBack)),
            summary("europe-west1", Some(UndoOutcome::Left)),
            summary("asia-east1", Some(UndoOutcome::Failed)),
            summary("us-east1", None),
        ])
        .unwrap();
        assert_eq!(
            note,
            "us-central1 was rolled back too (100% on web-us-central1-old); europe-west1 had \
             changed since its promotion and was left as it is; rolling back asia-east1 FAILED: \
             it needs a person"
        );
        assert_eq!(undo_note(&[summary("us-east1", None)]), None);
    }

    #[test]
    fn only_a_failure_of_the_candidate_or_the_platform_undoes_earlier_regions() {
        for outcome in [Outcome::RolledBack, Outcome::Failed] {
            assert!(undoes_earlier(outcome), "{outcome:?}");
            assert!(stops_waves(outcome), "{outcome:?}");
        }
        // A person's change stops the waves without writing again; so does a signal.
        for outcome in [Outcome::Aborted, Outcome::Interrupted] {
            assert!(!undoes_earlier(outcome), "{outcome:?}");
            assert!(stops_waves(outcome), "{outcome:?}");
        }
        for outcome in [Outcome::Promoted, Outcome::DryRun] {
            assert!(
                !undoes_earlier(outcome) && !stops_waves(outcome),
                "{outcome:?}"
            );
        }
    }
}
