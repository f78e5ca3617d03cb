//! Hooks through the real binary against the simulator's Cloud Storage and Cloud Run jobs: a
//! backup and a migration before any traffic moves, a job after promotion or rollback.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use shiftgate::ports::Platform;
use shiftgate::{CloudRunService, Credentials, GoogleRest};
use shiftgate_sim::{FailureShape, JobBehavior};

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, PROJECT, QUICK_ROLLOUT, REGION, SERVICE,
};

const BUCKET: &str = "loopcloser-db";
const DATABASE: &str = "data/loopcloser.db";
/// Larger than one rewrite call copies, as a real database may be.
const DATABASE_BYTES: u64 = 100 * 1024 * 1024;

impl BinaryWorld {
    async fn run_with_hooks(&self, rollout: &[&str], hooks: &[&str]) -> Output {
        let mut args = vec!["--json"];
        args.extend(rollout);
        args.extend(hooks);
        let mut command = self.service_command(&args);
        command.env("SHIFTGATE_STORAGE_URL", self.sim.storage_url());
        binary::run(command).await
    }

    async fn revisions(&self) -> usize {
        let platform = CloudRunService::new(
            GoogleRest::new(&self.sim.cloud_run_url(), Credentials::None),
            PROJECT,
            REGION,
            SERVICE,
        );
        platform.list_revisions().await.unwrap().len()
    }
}

fn kinds(result: &Value) -> Vec<String> {
    result["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["kind"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_database_and_a_migration_when_a_good_candidate_rolls_out_then_both_run_before_any_traffic_and_the_post_job_after()
 {
    let world = BinaryWorld::start("hooks-good").await;
    let _load = world.start_load(40.0);
    world
        .sim
        .model()
        .put_object(BUCKET, DATABASE, DATABASE_BYTES);
    for job in ["migrate", "warm-cache"] {
        world.sim.model().add_job(
            PROJECT,
            REGION,
            job,
            JobBehavior::succeeding(Duration::from_millis(300)),
        );
    }

    let output = world
        .run_with_hooks(
            QUICK_ROLLOUT,
            &[
                "--backup",
                "gs://loopcloser-db/data/loopcloser.db",
                "--pre-job",
                "migrate",
                "--post-job",
                "warm-cache",
            ],
        )
        .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "promoted");
    // The copy sits beside the database, named for the rollout's start, the same size.
    let objects = world.sim.model().objects(BUCKET);
    let copy = objects
        .iter()
        .find(|(name, _)| name.starts_with("data/loopcloser.db.shiftgate-"))
        .unwrap_or_else(|| panic!("no backup copy: {objects:?}"));
    assert_eq!(copy.1, DATABASE_BYTES);
    let hooks = result["hooks"].as_array().unwrap();
    let summary: Vec<(&str, bool)> = hooks
        .iter()
        .map(|hook| {
            (
                hook["hook"].as_str().unwrap(),
                hook["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("backup", true), ("pre_job", true), ("post_job", true)]
    );
    assert_eq!(hooks[0]["detail"], format!("gs://{BUCKET}/{}", copy.0));
    assert!(
        hooks[1]["detail"]
            .as_str()
            .unwrap()
            .contains("/jobs/migrate/executions/")
    );
    // In the timeline: both hooks before the candidate exists, the post-job after promotion.
    let kinds = kinds(&result);
    let position = |kind: &str| kinds.iter().position(|k| k == kind).unwrap();
    assert!(
        position("hook_finished") < position("candidate_created"),
        "{kinds:?}"
    );
    assert!(kinds.iter().rposition(|k| k == "hook_started").unwrap() > position("promoted"));
    assert_eq!(world.sim.model().job_runs("migrate"), 1);
    assert_eq!(world.sim.model().job_runs("warm-cache"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_migration_that_fails_then_the_service_is_left_untouched_under_either_reading_of_a_failed_run()
 {
    for shape in [FailureShape::OperationError, FailureShape::ExecutionOnly] {
        let world = BinaryWorld::start(&format!("hooks-failing-{shape:?}")).await;
        world.sim.model().add_job(
            PROJECT,
            REGION,
            "migrate",
            JobBehavior::failing(Duration::from_millis(200), shape),
        );
        let before = world.revisions().await;

        let output = world
            .run_with_hooks(QUICK_ROLLOUT, &["--pre-job", "migrate"])
            .await;

        assert_eq!(
            output.status.code(),
            Some(1),
            "{shape:?}: {}",
            stderr_of(&output)
        );
        let result = json_of(&output);
        assert_eq!(result["outcome"], "failed");
        let reason = result["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("--pre-job migrate failed before the rollout changed the service"),
            "{shape:?}: {reason}"
        );
        assert_eq!(world.split(), world.stable_only(), "{shape:?}");
        assert_eq!(
            world.revisions().await,
            before,
            "{shape:?}: no candidate was made"
        );
        assert_eq!(
            world.sim.model().job_runs("migrate"),
            1,
            "run once, never again"
        );
        let status = world.run_on_service(&["--json", "status"]).await;
        assert_eq!(
            json_of(&status)["rollout"],
            Value::Null,
            "{shape:?}: no record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_backup_of_a_missing_object_then_nothing_runs_and_nothing_changes() {
    let world = BinaryWorld::start("hooks-missing").await;
    world.sim.model().add_job(
        PROJECT,
        REGION,
        "migrate",
        JobBehavior::succeeding(Duration::from_millis(100)),
    );

    let output = world
        .run_with_hooks(
            QUICK_ROLLOUT,
            &[
                "--backup",
                "gs://loopcloser-db/nope.db",
                "--pre-job",
                "migrate",
            ],
        )
        .await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let reason = json_of(&output)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("No such object"), "{reason}");
    assert_eq!(world.sim.model().job_runs("migrate"), 0);
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_candidate_then_the_on_rollback_job_runs_once_stable_is_back() {
    let world = BinaryWorld::start("hooks-rollback").await;
    world.candidate_fails(0.5);
    let _load = world.start_load(40.0);
    world.sim.model().add_job(
        PROJECT,
        REGION,
        "page-team",
        JobBehavior::succeeding(Duration::from_millis(100)),
    );

    let output = world
        .run_with_hooks(BAD_CANDIDATE_ROLLOUT, &["--on-rollback-job", "page-team"])
        .await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(world.sim.model().job_runs("page-team"), 1);
    assert_eq!(result["hooks"][0]["hook"], "on_rollback_job");
    assert_eq!(result["hooks"][0]["ok"], true);
    let kinds = kinds(&result);
    assert!(
        kinds.iter().position(|k| k == "rolled_back")
            < kinds.iter().position(|k| k == "hook_started"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_input_that_is_not_valid_is_refused_naming_the_flag_before_any_change() {
    let world = BinaryWorld::start("hooks-input").await;
    for (hooks, flag) in [
        (vec!["--backup", "s3://bucket/db"], "--backup"),
        (vec!["--backup", "gs://bucket"], "--backup"),
        (vec!["--pre-job", "Migrate_DB"], "--pre-job"),
        (vec!["--hook-timeout", "3d"], "--hook-timeout"),
    ] {
        let output = world.run_with_hooks(QUICK_ROLLOUT, &hooks).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{hooks:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains(flag),
            "{hooks:?}: {}",
            stderr_of(&output)
        );
        assert_eq!(world.split(), world.stable_only());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_long_migration_when_the_job_is_cancelled_then_the_rollout_ends_interrupted_at_once_with_nothing_changed()
 {
    let world = BinaryWorld::start("hooks-interrupt").await;
    world.sim.model().add_job(
        PROJECT,
        REGION,
        "migrate",
        JobBehavior::succeeding(Duration::from_secs(3600)),
    );
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args.extend(["--pre-job", "migrate"]);
    let child = world
        .service_command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if world.sim.model().job_runs("migrate") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        world.sim.model().job_runs("migrate"),
        1,
        "the migration started"
    );

    // When the job is cancelled (SIGINT, as Actions sends) during the hour-long migration.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();

    // Then it ends interrupted (exit 130) with its result, and nothing of the rollout is there.
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "interrupted");
    assert_eq!(result["hooks"][0]["ok"], false);
    assert_eq!(world.split(), world.stable_only());
    let status = world.run_on_service(&["--json", "status"]).await;
    assert_eq!(json_of(&status)["rollout"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_rollout_whose_runner_died_after_its_migration_when_it_is_resumed_then_the_backup_and_migration_do_not_run_again()
 {
    let world = BinaryWorld::start("hooks-resume").await;
    let _load = world.start_load(40.0);
    world.sim.model().put_object(BUCKET, DATABASE, 1024);
    world.sim.model().add_job(
        PROJECT,
        REGION,
        "migrate",
        JobBehavior::succeeding(Duration::from_millis(100)),
    );
    let hooks = [
        "--backup",
        "gs://loopcloser-db/data/loopcloser.db",
        "--pre-job",
        "migrate",
    ];
    let mut first = vec!["rollout", "--image", crate::support::world::CANDIDATE_IMAGE];
    first.extend(["--bake", "10m", "--interval", "1s", "--metrics-delay", "0s"]);
    first.extend(hooks);
    let mut child = world
        .service_command(&first)
        .env("SHIFTGATE_STORAGE_URL", world.sim.storage_url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    world.wait_for_first_step().await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(world.sim.model().job_runs("migrate"), 1);

    let mut resume = vec![
        "--json",
        "rollout",
        "--resume",
        "--bake",
        "1s",
        "--interval",
        "250ms",
        "--min-requests",
        "5",
        "--metrics-delay",
        "0s",
    ];
    resume.extend(hooks);
    let mut command = world.service_command(&resume);
    command.env("SHIFTGATE_STORAGE_URL", world.sim.storage_url());
    let output = binary::run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "promoted");
    assert_eq!(
        world.sim.model().job_runs("migrate"),
        1,
        "the migration ran once"
    );
    assert_eq!(
        world.sim.model().objects(BUCKET).len(),
        2,
        "one backup copy"
    );
    assert!(json_of(&output).get("hooks").is_none());
}
