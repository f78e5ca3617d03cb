//! Scenario tests of holds and report-only gates against the simulator's in-process ports, under a
//! paused tokio clock: given a rollout that pauses at 50%, when a person promotes, aborts or nobody
//! answers, then traffic is exactly so.

use std::time::Duration;

use crate::engine_scenarios::{
    CANDIDATE_IMAGE, World, every_default_step, image_request, split, thirty_minute_policy,
};
use shiftgate::ports::Platform;
use shiftgate::{
    EventKind, Outcome, PausePolicy, PauseTimeoutAction, Policy, Report, RolloutRequest,
};
use shiftgate_sim::Behavior;

/// The 30-minute policy, holding after the 50% step for at most `timeout`.
fn pausing_at_50(timeout: Duration, on_timeout: PauseTimeoutAction) -> RolloutRequest {
    RolloutRequest {
        policy: Policy {
            pause: PausePolicy {
                at: vec![50],
                timeout,
                on_timeout,
            },
            ..thirty_minute_policy()
        },
        ..image_request(CANDIDATE_IMAGE)
    }
}

impl World {
    /// Runs `request` until it has held for `after`, then drops it as a lost runner would: no
    /// restore runs, and the paused record stays on the service.
    async fn lose_runner_while_held(&self, request: &RolloutRequest, after: Duration) {
        tokio::select! {
            _ = self.roll_out(request.clone()) => panic!("the rollout ended before it held"),
            () = async {
                self.until_paused().await;
                tokio::time::sleep(after).await;
            } => {}
        }
    }

    /// Resolves, in virtual time, once the rollout's record says it is paused.
    async fn until_paused(&self) {
        let (platform, _, _) = self.ports();
        loop {
            let service = platform.read_service().await.unwrap();
            if service.rollout.is_some_and(|record| record.is_paused()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The same rollout, resumed from its record by another runner.
fn resuming(request: RolloutRequest) -> RolloutRequest {
    RolloutRequest {
        candidate: shiftgate::CandidateSource::Resume,
        ..request
    }
}

fn paused_and_resumed(report: &Report) -> (usize, Vec<String>) {
    let paused = report
        .timeline
        .iter()
        .filter(|event| matches!(event.kind, EventKind::Paused { percent: 50, .. }))
        .count();
    let resumed = report
        .timeline
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::Resumed { by, .. } => Some(by.clone()),
            _ => None,
        })
        .collect();
    (paused, resumed)
}

#[tokio::test(start_paused = true)]
async fn given_a_hold_at_50_when_a_person_promotes_after_20_minutes_then_traffic_waits_at_50_and_goes_on()
 {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(3600), PauseTimeoutAction::Rollback);
    let person = async {
        world.until_paused().await;
        tokio::time::sleep(Duration::from_secs(20 * 60)).await;
        let held = world.current();
        let (platform, _, _) = world.ports();
        let promoted = shiftgate::promote(&platform, Duration::from_secs(120))
            .await
            .unwrap();
        (held, promoted)
    };

    let (report, (held, promoted)) = tokio::join!(world.roll_out(request), person);

    let report = report.unwrap();
    let candidate = report.candidate.clone();
    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_eq!(
        held,
        split(&[(&world.stable, 50), (&candidate, 50)]),
        "20 minutes into the hold traffic was still at 50%"
    );
    assert_eq!(promoted.outcome, "resumed", "{promoted:?}");
    assert_eq!(
        world.splits(),
        every_default_step(&world.stable, &candidate)
    );
    assert_eq!(
        paused_and_resumed(&report),
        (1, vec!["shiftgate promote".to_string()])
    );
    // The hold is part of the 50% step: it baked its 5 minutes, then waited 20 for the person.
    assert!(
        report.steps[2].duration_s >= 25.0 * 60.0,
        "{:?}",
        report.steps[2]
    );
    // The record was `paused` with its deadline while held, and is gone after promotion.
    let (platform, _, _) = world.ports();
    assert!(platform.read_service().await.unwrap().rollout.is_none());
}

#[tokio::test(start_paused = true)]
async fn given_a_hold_when_a_person_aborts_then_stable_gets_everything_and_the_rollout_stops_without_another_write()
 {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(3600), PauseTimeoutAction::Rollback);
    let person = async {
        world.until_paused().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let (platform, _, _) = world.ports();
        shiftgate::roll_back(&platform, None, Duration::from_secs(120))
            .await
            .unwrap()
    };

    let (report, aborted) = tokio::join!(world.roll_out(request), person);

    let report = report.unwrap();
    let candidate = report.candidate.clone();
    assert_eq!(report.outcome, Outcome::Aborted, "{:?}", report.reason);
    assert_eq!(aborted.exit_code, shiftgate::ExitCode::Ok);
    let (s, c) = (world.stable.as_str(), candidate.as_str());
    assert_eq!(
        world.splits(),
        vec![
            split(&[(s, 100)]),
            split(&[(s, 90), (c, 10)]),
            split(&[(s, 75), (c, 25)]),
            split(&[(s, 50), (c, 50)]),
            split(&[(s, 100)]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn given_a_hold_nobody_ends_then_at_its_timeout_the_rollout_rolls_back_without_blaming_the_candidate()
 {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(30 * 60), PauseTimeoutAction::Rollback);

    let report = world.roll_out(request).await.unwrap();

    assert_eq!(report.outcome, Outcome::RolledBack, "{:?}", report.reason);
    assert!(report.pause_expired);
    let reason = report.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("nobody ran `shiftgate promote`"),
        "{reason}"
    );
    assert_eq!(world.current(), world.stable_only());
    assert!(
        report.steps[2].duration_s >= 35.0 * 60.0,
        "a 5-minute bake and the 30-minute hold: {:?}",
        report.steps[2]
    );
}

#[tokio::test(start_paused = true)]
async fn given_a_hold_that_promotes_on_timeout_then_nobody_answering_still_promotes() {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(10 * 60), PauseTimeoutAction::Promote);

    let report = world.roll_out(request).await.unwrap();

    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    let candidate = report.candidate.clone();
    assert_eq!(
        world.splits(),
        every_default_step(&world.stable, &candidate)
    );
    assert_eq!(
        paused_and_resumed(&report),
        (1, vec!["--pause-timeout".to_string()])
    );
}

#[tokio::test(start_paused = true)]
async fn given_a_hold_when_the_candidate_starts_failing_then_the_gates_still_roll_it_back() {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(3600), PauseTimeoutAction::Promote);
    let turn_bad = async {
        world.until_paused().await;
        world.candidate_behaves(Behavior::erroring("1.4.0", 0.5));
    };

    let (report, ()) = tokio::join!(world.roll_out(request), turn_bad);

    let report = report.unwrap();
    assert_eq!(report.outcome, Outcome::RolledBack, "{:?}", report.reason);
    assert!(!report.pause_expired);
    assert_eq!(world.current(), world.stable_only());
    let reason = report.reason.clone().unwrap_or_default();
    assert!(reason.contains("5xx"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn given_report_only_gates_when_the_candidate_fails_then_every_failure_is_reported_and_traffic_moves_as_planned()
 {
    let world = World::under_load();
    world.candidate_behaves(Behavior::erroring("1.4.0", 0.3));
    let request = RolloutRequest {
        policy: Policy {
            report_only: true,
            ..thirty_minute_policy()
        },
        ..image_request(CANDIDATE_IMAGE)
    };

    let report = world.roll_out(request).await.unwrap();

    let candidate = report.candidate.clone();
    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_eq!(
        world.splits(),
        every_default_step(&world.stable, &candidate)
    );
    let ignored: Vec<_> = report
        .timeline
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::GateIgnored { step, reason } => Some((*step, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(ignored.len(), 4, "one report per step: {ignored:?}");
    assert!(ignored.iter().all(|(_, reason)| reason.contains("5xx")));
    assert!(
        report.steps.iter().all(|step| step.verdict == "ignored"),
        "{:?}",
        report.steps
    );
}

#[tokio::test(start_paused = true)]
async fn given_a_rollout_that_is_not_held_when_a_person_promotes_then_it_is_refused_and_nothing_changes()
 {
    let world = World::under_load();
    let person = async {
        world.when_traffic_is_split().await;
        let (platform, _, _) = world.ports();
        shiftgate::promote(&platform, Duration::from_secs(10))
            .await
            .unwrap_err()
    };

    let (report, refused) = tokio::join!(world.roll_out(image_request(CANDIDATE_IMAGE)), person);

    assert_eq!(refused.exit_code, shiftgate::ExitCode::BadInput);
    assert!(
        refused.message.contains("is not paused"),
        "{}",
        refused.message
    );
    let report = report.unwrap();
    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert_eq!(
        world.splits(),
        every_default_step(&world.stable, &report.candidate)
    );
}

#[tokio::test(start_paused = true)]
async fn given_a_held_rollout_whose_runner_died_when_a_person_promotes_then_the_resumed_rollout_goes_on_without_holding_again()
 {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(3600), PauseTimeoutAction::Rollback);
    // The runner is lost while the rollout holds: no restore runs, the paused record stays.
    world.lose_runner_while_held(&request, Duration::ZERO).await;
    let (platform, _, _) = world.ports();
    let asked = shiftgate::promote(&platform, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        asked.outcome, "not_acknowledged",
        "nobody runs it: {asked:?}"
    );

    let resumed = world.roll_out(resuming(request)).await.unwrap();

    assert_eq!(resumed.outcome, Outcome::Promoted, "{:?}", resumed.reason);
    assert_eq!(paused_and_resumed(&resumed), (0, Vec::new()));
    assert_eq!(
        world.splits(),
        every_default_step(&world.stable, &resumed.candidate)
    );
}

#[tokio::test(start_paused = true)]
async fn given_a_promote_a_second_before_the_hold_runs_out_then_the_promote_wins_over_the_timeouts_rollback()
 {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(10 * 60), PauseTimeoutAction::Rollback);
    let person = async {
        world.until_paused().await;
        tokio::time::sleep(Duration::from_secs(10 * 60 - 1)).await;
        let (platform, _, _) = world.ports();
        shiftgate::promote(&platform, Duration::from_secs(120))
            .await
            .unwrap()
    };

    let (report, promoted) = tokio::join!(world.roll_out(request), person);

    let report = report.unwrap();
    assert_eq!(report.outcome, Outcome::Promoted, "{:?}", report.reason);
    assert!(!report.pause_expired);
    assert_eq!(promoted.outcome, "resumed");
}

#[tokio::test(start_paused = true)]
async fn given_a_promote_that_the_rollout_never_took_up_when_the_rollout_ends_otherwise_then_promote_says_it_ended()
 {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(3600), PauseTimeoutAction::Rollback);
    // A held rollout whose runner is gone, so nothing takes the promote up.
    world.lose_runner_while_held(&request, Duration::ZERO).await;
    let (platform, _, _) = world.ports();
    let someone_else = async {
        // Then, once promote has asked, the rollout ends another way (here: a person's abort).
        loop {
            let record = platform.read_service().await.unwrap().rollout.unwrap();
            if record.state == "resuming" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shiftgate::roll_back(&platform, None, Duration::from_secs(60))
            .await
            .unwrap()
    };

    let (promoted, _) = tokio::join!(
        shiftgate::promote(&platform, Duration::from_secs(300)),
        someone_else
    );

    let promoted = promoted.unwrap();
    assert_eq!(promoted.outcome, "ended", "{promoted:?}");
    assert_eq!(promoted.exit_code, shiftgate::ExitCode::CheckFailed);
    assert!(
        promoted
            .reason
            .unwrap_or_default()
            .contains("ended before it went on"),
        "never reported as gone on"
    );
    assert_eq!(world.current(), world.stable_only());
}

#[tokio::test(start_paused = true)]
async fn given_a_held_rollout_whose_runner_died_when_it_is_resumed_then_the_hold_keeps_its_recorded_deadline()
 {
    let world = World::under_load();
    let request = pausing_at_50(Duration::from_secs(3600), PauseTimeoutAction::Rollback);
    // The runner is lost 20 minutes into an hour's hold.
    world
        .lose_runner_while_held(&request, Duration::from_secs(20 * 60))
        .await;

    let resumed = world.roll_out(resuming(request)).await.unwrap();

    // Nobody answers: it rolls back when the first hold would have ended, not an hour later.
    assert_eq!(resumed.outcome, Outcome::RolledBack, "{:?}", resumed.reason);
    assert!(resumed.pause_expired);
    let held_for = resumed
        .timeline
        .iter()
        .find_map(|event| match &event.kind {
            EventKind::Paused { timeout_s, .. } => Some(*timeout_s),
            _ => None,
        })
        .unwrap();
    assert!(
        held_for <= 40.0 * 60.0,
        "the hold had at most the 40 minutes left of its deadline, not a new hour: {held_for}s"
    );
    assert!(resumed.duration_s < 50.0 * 60.0, "{}", resumed.duration_s);
}
