//! Black-box tests of the `shiftgate` binary against the simulator on loopback, through the
//! endpoint variables in DESIGN.md: exit codes, `--json` results, signals and credentials.

use crate::support::binary;

use binary::{json_of, stderr_of};

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use shiftgate::clock::Clock;
use shiftgate_sim::{Behavior, Sim};

const PROJECT: &str = "loopcloser";
const REGION: &str = "us-central1";
const SERVICE: &str = "loopcloser-dev";

struct Fixture {
    sim: Sim,
    stable: String,
    workdir: PathBuf,
}

impl Fixture {
    async fn start() -> Self {
        let sim = Sim::start(Clock::new()).await.unwrap();
        sim.set_operation_delay(Duration::from_millis(50));
        let stable = sim.add_service(PROJECT, REGION, SERVICE, "registry/app:v1.0.0");
        let workdir = std::env::temp_dir().join(format!(
            "shiftgate-cli-{}-{}",
            std::process::id(),
            sim.cloud_run_url().rsplit(':').next().unwrap()
        ));
        std::fs::create_dir_all(&workdir).unwrap();
        Self {
            sim,
            stable,
            workdir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shiftgate"));
        command
            .args(args)
            .env_clear()
            .env("SHIFTGATE_CLOUD_RUN_URL", self.sim.cloud_run_url())
            .env("SHIFTGATE_MONITORING_URL", self.sim.monitoring_url())
            .current_dir(&self.workdir)
            .stdin(Stdio::null());
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(self.command(args)).await
    }

    async fn run_with(&self, command: Command) -> Output {
        binary::run(command).await
    }

    /// Waits until a rollout run by the binary has applied its first step's split.
    async fn wait_for_first_step(&self) {
        let mut waited = Duration::ZERO;
        while self.split().len() < 2 {
            assert!(
                waited < Duration::from_secs(30),
                "the rollout never reached its first step"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
    }

    fn service_args(&self) -> Vec<&'static str> {
        vec![
            "--project",
            PROJECT,
            "--region",
            REGION,
            "--service",
            SERVICE,
        ]
    }

    fn split(&self) -> Vec<(String, u8)> {
        self.sim.model().current_split(PROJECT, REGION, SERVICE)
    }

    /// A rollout through the binary that stays in its first step (a 10-minute bake, checked every
    /// second), with `extra` arguments; its output piped, or discarded.
    fn spawn_long_rollout(&self, extra: &[&str], piped: bool) -> std::process::Child {
        let mut args = vec!["rollout", "--image", "registry/app:v1.1.0"];
        args.extend(self.service_args());
        args.extend(["--bake", "10m", "--interval", "1s", "--metrics-delay", "0s"]);
        args.extend(extra);
        let output = || if piped { Stdio::piped() } else { Stdio::null() };
        self.command(&args)
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_naming_the_flag_and_changes_nothing() {
    let fixture = Fixture::start().await;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--steps", "50,10"], "--steps"),
        (vec!["--steps", "10,50"], "--steps"),
        (vec!["--max-error-rate", "150%"], "--max-error-rate"),
        (vec!["--bake", "soon"], "--bake"),
        (vec!["--min-requests", "0"], "--min-requests"),
        (vec!["--expect-version", "not-semver"], "--expect-version"),
        (vec!["--health-expect", "status"], "--health-expect"),
        (vec!["--interval", "10m", "--bake", "1m"], "--interval"),
        (vec!["--metrics", "datadog"], "--metrics"),
        (
            vec![
                "--metrics",
                "cloud-monitoring",
                "--prometheus-url",
                "http://127.0.0.1:9",
            ],
            "--prometheus-url",
        ),
    ];
    for (extra, flag) in cases {
        let mut args = vec!["rollout", "--image", "registry/app:v2"];
        args.extend(fixture.service_args());
        args.extend(extra.iter());
        let output = fixture.run(&args).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains(flag),
            "{extra:?}: {}",
            stderr_of(&output)
        );
    }
    let as_json = fixture
        .run(&["--json", "rollout", "--steps", "50,10", "--image", "x"])
        .await;
    assert_eq!(as_json.status.code(), Some(2));
    let error = json_of(&as_json);
    assert_eq!(error["outcome"], "error");
    assert!(
        error["error"].as_str().unwrap().contains("--steps"),
        "{error}"
    );
    let missing = fixture.run(&["rollout", "--project", PROJECT]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_of(&missing).contains("--service"));
    let unknown_env = fixture.run(&["status", "--env", "prod", "--json"]).await;
    assert_eq!(unknown_env.status.code(), Some(2));
    assert_eq!(json_of(&unknown_env)["outcome"], "error");
    assert_eq!(fixture.sim.model().write_count(), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_through_the_binary_prints_one_json_result() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 40.0);
    let mut args = vec!["--json", "rollout", "--image", "registry/app:v1.1.0"];
    args.extend(fixture.service_args());
    args.extend([
        "--steps",
        "50,100",
        "--bake",
        "1s",
        "--interval",
        "250ms",
        "--min-requests",
        "5",
        "--metrics-delay",
        "0s",
        "--expect-version",
        ">=1.1.0",
    ]);

    let output = fixture.run(&args).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("shorter than Cloud Monitoring's one-minute resolution"),
        "a 1s bake is warned about"
    );
    let result = json_of(&output);
    assert_eq!(result["outcome"], "promoted");
    let candidate = result["candidate"].as_str().unwrap().to_string();
    assert_eq!(
        result["final_traffic"],
        serde_json::json!([{"revision": candidate, "percent": 100}])
    );
    assert_eq!(result["stable"], fixture.stable.as_str());
    assert_eq!(result["steps"].as_array().unwrap().len(), 2);
    assert!(result["steps"][0]["candidate_requests"].as_u64().unwrap() >= 5);
    assert_eq!(fixture.split(), vec![(candidate, 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_candidate_through_the_binary_exits_1_with_stable_restored() {
    let fixture = Fixture::start().await;
    fixture
        .sim
        .register_image("registry/app:v1.1.0", Behavior::erroring("1.1.0", 0.4));
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 40.0);
    let mut args = vec![
        "rollout",
        "--image",
        "registry/app:v1.1.0",
        "--json",
        "--no-incident",
    ];
    args.extend(fixture.service_args());
    args.extend([
        "--steps",
        "50,100",
        "--bake",
        "2s",
        "--interval",
        "250ms",
        "--min-requests",
        "10",
        "--metrics-delay",
        "0s",
    ]);

    let output = fixture.run(&args).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(
        result["final_traffic"],
        serde_json::json!([{"revision": fixture.stable, "percent": 100}])
    );
    assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_step_restores_stable_and_exits_130() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
    let child = fixture.spawn_long_rollout(&["--json"], true);

    // Wait for the first step's split to be applied, then signal as a cancelled Actions job would.
    fixture.wait_for_first_step().await;
    assert_eq!(fixture.split().iter().map(|(_, p)| *p).max(), Some(90));
    let signalled = std::time::Instant::now();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    // A figure for the notes, not an assertion: shared 2-core machines make timings noisy.
    eprintln!(
        "SIGINT to exit with stable restored: {:?}",
        signalled.elapsed()
    );

    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "interrupted");
    assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_rollback_work_on_the_same_service() {
    let fixture = Fixture::start().await;
    let mut status_args = vec!["status", "--json"];
    status_args.extend(fixture.service_args());
    let status = fixture.run(&status_args).await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr_of(&status));
    let status = json_of(&status);
    assert_eq!(
        status["traffic"],
        serde_json::json!([{"revision": fixture.stable, "percent": 100}])
    );
    assert!(status["rollout"].is_null());

    let mut rollback_args = vec!["rollback", "--json"];
    rollback_args.extend(fixture.service_args());
    let refused = fixture.run(&rollback_args).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr_of(&refused).contains("--to"));

    rollback_args.extend(["--to", "no-such-revision"]);
    let unknown = fixture.run(&rollback_args).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr_of(&unknown));
    assert_eq!(fixture.sim.model().write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_credentials_are_exchanged_and_used() {
    let fixture = Fixture::start().await;
    fixture
        .sim
        .require_bearer(Some(vec!["sim-exchanged-token-1".to_string()]));
    let credentials = fixture.workdir.join("external_account.json");
    std::fs::write(
        &credentials,
        serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/github/providers/github",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": fixture.sim.sts_url(),
            "credential_source": {
                "url": fixture.sim.subject_token_url(),
                "format": {"type": "text"}
            }
        })
        .to_string(),
    )
    .unwrap();
    let mut args = vec!["status", "--json"];
    args.extend(fixture.service_args());
    let mut command = fixture.command(&args);
    command.env("GOOGLE_APPLICATION_CREDENTIALS", &credentials);

    let output = fixture.run_with(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        fixture
            .sim
            .seen_tokens()
            .contains(&"sim-exchanged-token-1".to_string())
    );

    // Without credentials the same call is refused by the API, and the binary says so.
    let rejected = fixture.run(&args).await;
    assert_eq!(rejected.status.code(), Some(3), "{}", stderr_of(&rejected));
    assert!(stderr_of(&rejected).contains("credentials"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_killed_outright_is_seen_by_status_refused_again_and_undone_by_rollback() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
    let mut child = fixture.spawn_long_rollout(&[], false);
    fixture.wait_for_first_step().await;
    // SIGKILL: no chance to clean up, as when a runner dies.
    child.kill().unwrap();
    child.wait().unwrap();
    let half_done = fixture.split();
    assert_eq!(half_done.len(), 2, "traffic is left split: {half_done:?}");

    let mut status_args = vec!["status", "--json"];
    status_args.extend(fixture.service_args());
    let status = json_of(&fixture.run(&status_args).await);
    assert_eq!(status["rollout"]["stable"], fixture.stable.as_str());
    assert_eq!(status["rollout"]["percent"], 10);

    let mut again = vec!["rollout", "--image", "registry/app:v1.2.0"];
    again.extend(fixture.service_args());
    let refused = fixture.run(&again).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr_of(&refused).contains("shiftgate rollback"),
        "{}",
        stderr_of(&refused)
    );

    let mut rollback_args = vec!["rollback", "--json"];
    rollback_args.extend(fixture.service_args());
    let rolled_back = fixture.run(&rollback_args).await;
    assert_eq!(
        rolled_back.status.code(),
        Some(0),
        "{}",
        stderr_of(&rolled_back)
    );
    let result = json_of(&rolled_back);
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(
        result["final_traffic"],
        serde_json::json!([{"revision": fixture.stable, "percent": 100}])
    );
    assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
    let status = json_of(&fixture.run(&status_args).await);
    assert!(
        status["rollout"].is_null(),
        "the record is cleared: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_every_environment_in_the_config_and_fails_on_any_unhealthy_one() {
    let fixture = Fixture::start().await;
    fixture
        .sim
        .register_image("registry/app:broken", Behavior::unhealthy("0.9.0"));
    fixture
        .sim
        .add_service(PROJECT, REGION, "loopcloser-staging", "registry/app:broken");
    let dev_url = fixture.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    let staging_url = fixture
        .sim
        .service_url(PROJECT, REGION, "loopcloser-staging")
        .unwrap();
    std::fs::write(
        fixture.workdir.join("shiftgate.toml"),
        format!(
            "[environments.dev]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\nservice = \"{SERVICE}\"\nurl = \"{dev_url}\"\n\n\
             [environments.staging]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\nservice = \"loopcloser-staging\"\nurl = \"{staging_url}\"\n"
        ),
    )
    .unwrap();

    let all = fixture.run(&["health", "--json"]).await;
    assert_eq!(all.status.code(), Some(1), "{}", stderr_of(&all));
    let result = json_of(&all);
    assert_eq!(result["outcome"], "unhealthy");
    let verdicts: Vec<(String, String)> = result["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["environment"].as_str().unwrap().to_string(),
                r["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("dev".into(), "pass".into()),
            ("staging".into(), "fail".into())
        ]
    );

    let dev = fixture
        .run(&["health", "--env", "dev", "--expect-version", "^1.0"])
        .await;
    assert_eq!(dev.status.code(), Some(0), "{}", stderr_of(&dev));
    let wrong_version = fixture
        .run(&["health", "--env", "dev", "--expect-version", ">=2"])
        .await;
    assert_eq!(wrong_version.status.code(), Some(1));
    assert!(stderr_of(&wrong_version).contains("does not satisfy"));
}

// ---- The people and processes around a rollout, through the binary ----

fn signal(child: &std::process::Child, signal: i32) {
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

async fn wait_output(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_killed_outright_is_continued_by_rollout_resume_and_promoted() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 40.0);
    let mut args = vec!["rollout", "--image", "registry/app:v1.1.0"];
    args.extend(fixture.service_args());
    args.extend(["--steps", "10,100", "--bake", "10m", "--interval", "1s"]);
    args.extend(["--metrics-delay", "0s", "--no-incident"]);
    let mut child = fixture
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    fixture.wait_for_first_step().await;
    child.kill().unwrap();
    child.wait().unwrap();
    let candidate = fixture
        .split()
        .into_iter()
        .find(|(revision, _)| revision != &fixture.stable)
        .unwrap()
        .0;

    let mut status_args = vec!["status"];
    status_args.extend(fixture.service_args());
    let status = fixture.run(&status_args).await;
    assert!(
        stderr_of(&status).contains("rollout --resume"),
        "status says how to resume: {}",
        stderr_of(&status)
    );

    let mut resume = vec!["rollout", "--resume", "--json"];
    resume.extend(fixture.service_args());
    resume.extend(["--steps", "10,100", "--bake", "3s", "--interval", "1s"]);
    resume.extend([
        "--metrics-delay",
        "0s",
        "--min-requests",
        "5",
        "--no-incident",
    ]);
    let resumed = fixture.run(&resume).await;

    assert_eq!(resumed.status.code(), Some(0), "{}", stderr_of(&resumed));
    let result = json_of(&resumed);
    assert_eq!(result["outcome"], "promoted");
    assert_eq!(result["candidate"], candidate.as_str());
    assert_eq!(fixture.split(), vec![(candidate, 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_rolling_back_during_a_bake_aborts_the_running_rollout() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
    let child = fixture.spawn_long_rollout(&["--json"], true);
    fixture.wait_for_first_step().await;

    let mut rollback_args = vec!["rollback"];
    rollback_args.extend(fixture.service_args());
    let person = fixture.run(&rollback_args).await;
    assert_eq!(person.status.code(), Some(0), "{}", stderr_of(&person));
    let writes_after_person = fixture.sim.model().write_count();
    let output = wait_output(child).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "aborted");
    assert!(
        result["incident"].is_null(),
        "no incident blames the candidate: {result}"
    );
    assert_eq!(fixture.sim.model().write_count(), writes_after_person);
    assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_binaries_racing_on_one_service_leave_one_owner() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 40.0);
    let spawn = |image: &str| {
        let mut args = vec!["rollout", "--image", image, "--json"];
        args.extend(fixture.service_args());
        args.extend(["--steps", "50,100", "--bake", "2s", "--interval", "1s"]);
        args.extend([
            "--metrics-delay",
            "0s",
            "--min-requests",
            "5",
            "--no-incident",
        ]);
        fixture
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("registry/app:v1.1.0"), spawn("registry/app:v1.2.0"));
    let (a, b) = (wait_output(a).await, wait_output(b).await);

    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(2)),
        "one promotes, the other is refused: {codes:?}\n{}\n{}",
        stderr_of(&a),
        stderr_of(&b)
    );
    let (winner, loser) = if a.status.code() == Some(0) {
        (a, b)
    } else {
        (b, a)
    };
    let loser_says = stderr_of(&loser);
    assert!(loser_says.contains("pid"), "names the owner: {loser_says}");
    assert!(loser_says.contains("nothing was changed"), "{loser_says}");
    let promoted = json_of(&winner)["candidate"].as_str().unwrap().to_string();
    assert_eq!(fixture.split(), vec![(promoted, 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_or_sigterm_during_a_rollout_restores_stable_like_sigint() {
    for (name, number) in [("SIGHUP", libc::SIGHUP), ("SIGTERM", libc::SIGTERM)] {
        let fixture = Fixture::start().await;
        let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
        let child = fixture.spawn_long_rollout(&["--json"], true);
        fixture.wait_for_first_step().await;
        let signalled = std::time::Instant::now();
        signal(&child, number);
        let output = wait_output(child).await;
        eprintln!(
            "{name} to exit with stable restored: {:?}",
            signalled.elapsed()
        );

        assert_eq!(
            output.status.code(),
            Some(130),
            "{name}: {}",
            stderr_of(&output)
        );
        assert_eq!(json_of(&output)["outcome"], "interrupted");
        assert_eq!(json_of(&output)["final_traffic_confirmed"], true);
        assert_eq!(
            fixture.split(),
            vec![(fixture.stable.clone(), 100)],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_the_candidate_is_being_created_leaves_no_trace() {
    let fixture = Fixture::start().await;
    // Creating the revision takes a while: the signal lands while its operation is awaited.
    fixture.sim.set_operation_delay(Duration::from_secs(2));
    let mut args = vec!["rollout", "--image", "registry/app:v1.1.0", "--json"];
    args.extend(fixture.service_args());
    let child = fixture
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = Duration::ZERO;
    while fixture.sim.model().write_count() == 0 {
        assert!(waited < Duration::from_secs(30), "no write was ever made");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    let signalled = std::time::Instant::now();
    signal(&child, libc::SIGINT);
    let output = wait_output(child).await;
    let took = signalled.elapsed();
    eprintln!("SIGINT during the candidate's creation to exit: {took:?}");

    let result = json_of(&output);
    assert!(
        matches!(output.status.code(), Some(130) | Some(4)),
        "{}",
        stderr_of(&output)
    );
    if output.status.code() == Some(130) {
        let mut status_args = vec!["status", "--json"];
        status_args.extend(fixture.service_args());
        let status = json_of(&fixture.run(&status_args).await);
        assert!(status["rollout"].is_null(), "the record is gone: {status}");
        assert!(
            status["tags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["tag"] != "candidate"),
            "the candidate tag is gone: {status}"
        );
        assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
    } else {
        assert_eq!(result["final_traffic_confirmed"], false, "{result}");
    }
}

/// Measures how long the binary takes from SIGINT to exit with stable confirmed, at moments
/// sampled across a rollout (during the candidate's creation, in a step's bake, while the platform
/// hangs). Run by `scripts/interrupt-timing.sh`; prints figures, asserts only correctness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: scripts/interrupt-timing.sh runs it"]
async fn interrupt_timing_sample() {
    let runs: usize = std::env::var("SHIFTGATE_TIMING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut by_moment: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    for run in 0..runs {
        for moment in [
            "during creation",
            "during a bake",
            "while the platform hangs",
        ] {
            let fixture = Fixture::start().await;
            let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
            if moment == "during creation" {
                fixture.sim.set_operation_delay(Duration::from_millis(1500));
            }
            let child = fixture.spawn_long_rollout(&["--json", "--no-incident"], true);
            match moment {
                "during creation" => {
                    while fixture.sim.model().write_count() == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // Somewhere inside the creation's operation wait.
                    tokio::time::sleep(Duration::from_millis(100 * (run as u64 % 10))).await;
                }
                "during a bake" => {
                    fixture.wait_for_first_step().await;
                    tokio::time::sleep(Duration::from_millis(200 * (run as u64 % 10))).await;
                }
                _ => {
                    fixture.wait_for_first_step().await;
                    fixture.sim.model().hold_operations(true);
                }
            }
            let signalled = std::time::Instant::now();
            signal(&child, libc::SIGINT);
            let output = wait_output(child).await;
            let took = signalled.elapsed();
            let result = json_of(&output);
            let code = output.status.code();
            if moment == "while the platform hangs" {
                assert!(
                    matches!(code, Some(4) | Some(130)),
                    "{}",
                    stderr_of(&output)
                );
                if code == Some(4) {
                    assert_eq!(result["final_traffic_confirmed"], false);
                }
            } else {
                assert_eq!(code, Some(130), "{moment}: {}", stderr_of(&output));
                assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
            }
            by_moment.entry(moment).or_default().push(took);
        }
    }
    for (moment, mut times) in by_moment {
        times.sort();
        eprintln!(
            "SIGINT {moment}: {} runs, median {:?}, worst {:?}",
            times.len(),
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_output_pipe_does_not_stop_the_restore() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
    let mut child = fixture.spawn_long_rollout(&["--json", "--no-incident"], true);
    fixture.wait_for_first_step().await;
    // As `shiftgate … 2>&1 | head` does once head has its lines: both readers are gone.
    drop(child.stdout.take());
    drop(child.stderr.take());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&child, libc::SIGINT);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();

    assert_eq!(status.code(), Some(130));
    assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_403_ends_a_rollback_at_once_with_exit_4() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
    let mut child = fixture.spawn_long_rollout(&[], false);
    fixture.wait_for_first_step().await;
    child.kill().unwrap();
    child.wait().unwrap();
    let split_before = fixture.split();
    for _ in 0..50 {
        fixture.sim.inject(shiftgate_sim::Fault::status(
            "PATCH",
            "services/loopcloser-dev",
            403,
        ));
    }
    let patches_before = fixture.sim.model().api_calls("PATCH");

    let mut rollback_args = vec!["rollback", "--json", "--no-incident"];
    rollback_args.extend(fixture.service_args());
    let started = std::time::Instant::now();
    let output = fixture.run(&rollback_args).await;
    eprintln!(
        "rollback refused with 403: exit after {:?}",
        started.elapsed()
    );

    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "failed");
    assert_eq!(
        fixture.sim.model().api_calls("PATCH") - patches_before,
        1,
        "a refusal is not retried"
    );
    assert!(stderr_of(&output).contains("403") || result["reason"].to_string().contains("403"));
    assert_eq!(
        fixture.split(),
        split_before,
        "the split is reported, unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_against_an_unreachable_api_ends_within_its_timeout_with_exit_4() {
    let fixture = Fixture::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut args = vec![
        "rollback",
        "--json",
        "--no-incident",
        "--to",
        "loopcloser-dev-00001-abc",
    ];
    args.extend(fixture.service_args());
    args.extend(["--timeout", "3s"]);
    let mut command = fixture.command(&args);
    command.env("SHIFTGATE_CLOUD_RUN_URL", &url);
    let started = std::time::Instant::now();
    let output = fixture.run_with(command).await;
    let took = started.elapsed();
    eprintln!("rollback --timeout 3s against a closed port: exit after {took:?}");

    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("retrying"),
        "each retry is said: {}",
        stderr_of(&output)
    );
    assert_eq!(json_of(&output)["final_traffic_confirmed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_the_restore_does_not_cut_it_short() {
    let fixture = Fixture::start().await;
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
    // Each change takes a moment to apply, so the restore is still running when SIGTERM follows.
    fixture.sim.set_operation_delay(Duration::from_millis(800));
    let child = fixture.spawn_long_rollout(&["--json", "--no-incident"], true);
    fixture.wait_for_first_step().await;
    signal(&child, libc::SIGINT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGTERM);
    let output = wait_output(child).await;

    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["final_traffic_confirmed"], true);
    assert_eq!(fixture.split(), vec![(fixture.stable.clone(), 100)]);
}
