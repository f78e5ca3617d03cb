//! Holds through the real binary: a rollout paused at 50% in one process, and a person's `status`,
//! `promote` or `abort` from another, acting only through the record on the service.

use std::time::Duration;

use shiftgate::ports::Platform;
use shiftgate::{CloudRunService, Credentials, GoogleRest};

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::world::{BinaryWorld, PROJECT, QUICK_ROLLOUT, REGION, SERVICE};

/// The quick rollout (50% then 100%), holding after 50% for up to `timeout`.
fn pausing_rollout(timeout: &str) -> Vec<&str> {
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args.extend(["--pause-at", "50", "--pause-timeout", timeout]);
    args
}

impl BinaryWorld {
    /// Waits (polling the service as any other process would) until its rollout is paused.
    async fn until_paused(&self) {
        let platform = CloudRunService::new(
            GoogleRest::new(&self.sim.cloud_run_url(), Credentials::None),
            PROJECT,
            REGION,
            SERVICE,
        );
        for _ in 0..600 {
            let service = platform.read_service().await.unwrap();
            if service.rollout.is_some_and(|record| record.is_paused()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the rollout never paused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_rollout_paused_at_50_when_a_second_process_promotes_it_then_it_goes_on_to_100() {
    let world = BinaryWorld::start("pause-promote").await;
    let _load = world.start_load(40.0);
    let rollout = binary::run(world.service_command(&pausing_rollout("10m")));
    let person = async {
        world.until_paused().await;
        let held = world.split();
        let status = world.run_on_service(&["status"]).await;
        let promoted = world.run_on_service(&["--json", "promote"]).await;
        (held, status, promoted)
    };

    let (rolled, (held, status, promoted)) = tokio::join!(rollout, person);

    // While held: traffic at 50%, and `status` says so and how to go on.
    assert_eq!(held.iter().map(|(_, p)| *p).collect::<Vec<_>>(), [50, 50]);
    let shown = stderr_of(&status);
    assert!(
        shown.contains("PAUSED at 50%")
            && shown.contains("shiftgate promote")
            && shown.contains("shiftgate abort"),
        "{shown}"
    );
    // Then `promote` from the second process is taken up, and the rollout promotes.
    assert_eq!(promoted.status.code(), Some(0), "{}", stderr_of(&promoted));
    assert_eq!(json_of(&promoted)["outcome"], "resumed");
    assert_eq!(json_of(&promoted)["percent"], 50);
    assert_eq!(rolled.status.code(), Some(0), "{}", stderr_of(&rolled));
    let result = json_of(&rolled);
    assert_eq!(result["outcome"], "promoted");
    assert_eq!(result["policy"]["pause_at"], serde_json::json!([50]));
    let kinds: Vec<&str> = result["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["kind"].as_str())
        .filter(|kind| ["paused", "resumed", "promoted"].contains(kind))
        .collect();
    assert_eq!(kinds, ["paused", "resumed", "promoted"]);
    assert_eq!(world.split().len(), 1);

    // And with nothing in progress any more, promote and abort refuse (exit 2), changing nothing.
    for command in ["promote", "abort"] {
        let refused = world.run_on_service(&["--json", command]).await;
        assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
        assert!(
            stderr_of(&refused).contains("no rollout is in progress"),
            "{}",
            stderr_of(&refused)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_rollout_paused_at_50_when_a_second_process_aborts_then_stable_serves_all_and_the_rollout_ends_aborted()
 {
    let world = BinaryWorld::start("pause-abort").await;
    let _load = world.start_load(40.0);
    let rollout = binary::run(world.service_command(&pausing_rollout("10m")));
    let person = async {
        world.until_paused().await;
        world.run_on_service(&["--json", "abort"]).await
    };

    let (rolled, aborted) = tokio::join!(rollout, person);

    assert_eq!(aborted.status.code(), Some(0), "{}", stderr_of(&aborted));
    assert_eq!(json_of(&aborted)["command"], "abort");
    assert_eq!(json_of(&aborted)["outcome"], "rolled_back");
    assert_eq!(rolled.status.code(), Some(1), "{}", stderr_of(&rolled));
    assert_eq!(json_of(&rolled)["outcome"], "aborted");
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pause_and_gate_input_is_refused_before_any_change() {
    let world = BinaryWorld::start("pause-input").await;
    for (args, named) in [
        (vec!["--pause-at", "100"], "--pause-at"),
        (vec!["--pause-at", "30"], "--pause-at"),
        (vec!["--pause-at", "0"], "--pause-at"),
        (
            vec!["--pause-at", "50", "--pause-timeout", "30d"],
            "--pause-timeout",
        ),
        (vec!["--on-pause-timeout", "maybe"], "--on-pause-timeout"),
        (vec!["--gates", "off"], "--gates"),
    ] {
        let mut all = vec!["--json"];
        all.extend(QUICK_ROLLOUT);
        all.extend(args.iter().copied());
        let refused = world.run_on_service(&all).await;
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&refused)
        );
        assert!(
            stderr_of(&refused).contains(named),
            "{args:?}: {}",
            stderr_of(&refused)
        );
        assert_eq!(
            world.split(),
            world.stable_only(),
            "{args:?} changed nothing"
        );
    }
}
