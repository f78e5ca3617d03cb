//! Black-box tests of the `shiftgate` binary against the simulator on loopback, through the
//! endpoint variables in DESIGN.md: exit codes, `--json` results, signals and credentials.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use shiftgate_sim::Behavior;

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, CANDIDATE_IMAGE, PROJECT, QUICK_ROLLOUT, REGION, SERVICE,
    closed_port_url, expect_refused_naming, shiftgate, workdir,
};

/// A rollout through the binary that stays in its first step (a 10-minute bake, checked every
/// second), with `extra` arguments; its output piped, or discarded.
fn spawn_long_rollout(world: &BinaryWorld, extra: &[&str], piped: bool) -> Child {
    let mut args = vec!["rollout", "--image", CANDIDATE_IMAGE];
    args.extend(["--bake", "10m", "--interval", "1s", "--metrics-delay", "0s"]);
    args.extend(extra);
    let output = || if piped { Stdio::piped() } else { Stdio::null() };
    world
        .service_command(&args)
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap()
}

/// Starts a long rollout with `extra` arguments and SIGKILLs it once its first step is live: no
/// chance to clean up, as when a runner dies.
async fn kill_in_its_first_step(world: &BinaryWorld, extra: &[&str]) {
    let mut child = spawn_long_rollout(world, extra, false);
    world.wait_for_first_step().await;
    child.kill().unwrap();
    child.wait().unwrap();
}

fn spawn_piped(mut command: Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: i32) {
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

async fn wait_output(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_naming_the_flag_and_changes_nothing() {
    let world = BinaryWorld::start("cli").await;
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
        args.extend(extra.iter());
        let output = world.run_on_service(&args).await;
        expect_refused_naming(&output, flag, &extra);
    }
    let as_json = world
        .run(&["--json", "rollout", "--steps", "50,10", "--image", "x"])
        .await;
    assert_eq!(as_json.status.code(), Some(2));
    let error = json_of(&as_json);
    assert_eq!(error["outcome"], "error");
    assert!(
        error["error"].as_str().unwrap().contains("--steps"),
        "{error}"
    );
    let missing = world.run(&["rollout", "--project", PROJECT]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_of(&missing).contains("--service"));
    let unknown_env = world.run(&["status", "--env", "prod", "--json"]).await;
    assert_eq!(unknown_env.status.code(), Some(2));
    assert_eq!(json_of(&unknown_env)["outcome"], "error");
    assert_eq!(world.sim.model().write_count(), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_through_the_binary_prints_one_json_result() {
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(40.0);
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args.extend(["--expect-version", ">=1.1.0"]);

    let output = world.run_on_service(&args).await;

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
    assert_eq!(result["stable"], world.stable.as_str());
    assert_eq!(result["steps"].as_array().unwrap().len(), 2);
    assert!(result["steps"][0]["candidate_requests"].as_u64().unwrap() >= 5);
    assert_eq!(world.split(), vec![(candidate, 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_candidate_through_the_binary_exits_1_with_stable_restored() {
    let world = BinaryWorld::start("cli").await;
    world.candidate_fails(0.4);
    let _load = world.start_load(40.0);
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.push("--no-incident");

    let output = world.run_on_service(&args).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(
        result["final_traffic"],
        serde_json::json!([{"revision": world.stable, "percent": 100}])
    );
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_candidate_through_the_binary_fails_its_latency_gate_with_exit_1() {
    let world = BinaryWorld::start("cli").await;
    world.sim.register_image(
        CANDIDATE_IMAGE,
        Behavior::healthy("1.1.0")
            .with_latency(Duration::from_millis(900), Duration::from_millis(1500)),
    );
    let _load = world.start_load(40.0);
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(["--no-incident", "--max-latency", "p95=400ms"]);

    let output = world.run_on_service(&args).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    assert!(
        result["reason"].as_str().unwrap().contains("candidate p95"),
        "{}",
        result["reason"]
    );
    assert_eq!(result["policy"]["max_latency_ms"]["p95"], 400.0);
    let check = &result["steps"][0]["latency"][0];
    assert_eq!(check["quantile"], "p95");
    assert_eq!(check["finding"], "above_limit");
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slow_demo_is_rolled_back_by_its_latency_gate() {
    let args = ["demo", "--scenario", "slow", "--bake", "4s", "--json"];
    let output = binary::run(shiftgate(&workdir("demo-slow"), &args)).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["scenario"], "slow");
    assert_eq!(result["outcome"], "rolled_back");
    assert!(
        result["reason"].as_str().unwrap().contains("p95"),
        "{}",
        result["reason"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_step_restores_stable_and_exits_130() {
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(20.0);
    let child = spawn_long_rollout(&world, &["--json"], true);

    // Wait for the first step's split to be applied, then signal as a cancelled Actions job would.
    world.wait_for_first_step().await;
    assert_eq!(world.split().iter().map(|(_, p)| *p).max(), Some(90));
    let signalled = std::time::Instant::now();
    signal(&child, libc::SIGINT);
    let output = wait_output(child).await;
    // A figure for the notes, not an assertion: shared 2-core machines make timings noisy.
    eprintln!(
        "SIGINT to exit with stable restored: {:?}",
        signalled.elapsed()
    );

    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "interrupted");
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_rollback_work_on_the_same_service() {
    let world = BinaryWorld::start("cli").await;
    let status = world.run_on_service(&["status", "--json"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr_of(&status));
    let status = json_of(&status);
    assert_eq!(
        status["traffic"],
        serde_json::json!([{"revision": world.stable, "percent": 100}])
    );
    assert!(status["rollout"].is_null());

    let refused = world.run_on_service(&["rollback", "--json"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr_of(&refused).contains("--to"));

    let unknown = world
        .run_on_service(&["rollback", "--json", "--to", "no-such-revision"])
        .await;
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr_of(&unknown));
    assert_eq!(world.sim.model().write_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_credentials_are_exchanged_and_used() {
    let world = BinaryWorld::start("cli").await;
    world
        .sim
        .require_bearer(Some(vec!["sim-exchanged-token-1".to_string()]));
    let credentials = world.write_external_account();
    let mut command = world.service_command(&["status", "--json"]);
    command.env("GOOGLE_APPLICATION_CREDENTIALS", &credentials);

    let output = binary::run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(
        world
            .sim
            .seen_tokens()
            .contains(&"sim-exchanged-token-1".to_string())
    );

    // Without credentials the same call is refused by the API, and the binary says so.
    let rejected = world.run_on_service(&["status", "--json"]).await;
    assert_eq!(rejected.status.code(), Some(3), "{}", stderr_of(&rejected));
    assert!(stderr_of(&rejected).contains("credentials"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_killed_outright_is_seen_by_status_refused_again_and_undone_by_rollback() {
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(20.0);
    kill_in_its_first_step(&world, &[]).await;
    let half_done = world.split();
    assert_eq!(half_done.len(), 2, "traffic is left split: {half_done:?}");

    let status = json_of(&world.run_on_service(&["status", "--json"]).await);
    assert_eq!(status["rollout"]["stable"], world.stable.as_str());
    assert_eq!(status["rollout"]["percent"], 10);

    let again = ["rollout", "--image", "registry/app:v1.2.0"];
    let refused = world.run_on_service(&again).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr_of(&refused).contains("shiftgate rollback"),
        "{}",
        stderr_of(&refused)
    );

    let rolled_back = world.run_on_service(&["rollback", "--json"]).await;
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
        serde_json::json!([{"revision": world.stable, "percent": 100}])
    );
    assert_eq!(world.split(), world.stable_only());
    let status = json_of(&world.run_on_service(&["status", "--json"]).await);
    assert!(
        status["rollout"].is_null(),
        "the record is cleared: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_every_environment_in_the_config_and_fails_on_any_unhealthy_one() {
    let world = BinaryWorld::start("cli").await;
    world
        .sim
        .register_image("registry/app:broken", Behavior::unhealthy("0.9.0"));
    world
        .sim
        .add_service(PROJECT, REGION, "loopcloser-staging", "registry/app:broken");
    let dev_url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    let staging_url = world
        .sim
        .service_url(PROJECT, REGION, "loopcloser-staging")
        .unwrap();
    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        format!(
            "[environments.dev]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\nservice = \"{SERVICE}\"\nurl = \"{dev_url}\"\n\n\
             [environments.staging]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\nservice = \"loopcloser-staging\"\nurl = \"{staging_url}\"\n"
        ),
    )
    .unwrap();

    let all = world.run(&["health", "--json"]).await;
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

    let dev = world
        .run(&["health", "--env", "dev", "--expect-version", "^1.0"])
        .await;
    assert_eq!(dev.status.code(), Some(0), "{}", stderr_of(&dev));
    let wrong_version = world
        .run(&["health", "--env", "dev", "--expect-version", ">=2"])
        .await;
    assert_eq!(wrong_version.status.code(), Some(1));
    assert!(stderr_of(&wrong_version).contains("does not satisfy"));
}

// ---- The people and processes around a rollout, through the binary ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_killed_outright_is_continued_by_rollout_resume_and_promoted() {
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(40.0);
    kill_in_its_first_step(&world, &["--steps", "10,100", "--no-incident"]).await;
    let candidate = world
        .split()
        .into_iter()
        .find(|(revision, _)| revision != &world.stable)
        .unwrap()
        .0;

    let status = world.run_on_service(&["status"]).await;
    assert!(
        stderr_of(&status).contains("rollout --resume"),
        "status says how to resume: {}",
        stderr_of(&status)
    );

    let mut resume = vec!["rollout", "--resume", "--json"];
    resume.extend(["--steps", "10,100", "--bake", "3s", "--interval", "1s"]);
    resume.extend([
        "--metrics-delay",
        "0s",
        "--min-requests",
        "5",
        "--no-incident",
    ]);
    let resumed = world.run_on_service(&resume).await;

    assert_eq!(resumed.status.code(), Some(0), "{}", stderr_of(&resumed));
    let result = json_of(&resumed);
    assert_eq!(result["outcome"], "promoted");
    assert_eq!(result["candidate"], candidate.as_str());
    assert_eq!(world.split(), vec![(candidate, 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_rolling_back_during_a_bake_aborts_the_running_rollout() {
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(20.0);
    let child = spawn_long_rollout(&world, &["--json"], true);
    world.wait_for_first_step().await;

    let person = world.run_on_service(&["rollback"]).await;
    assert_eq!(person.status.code(), Some(0), "{}", stderr_of(&person));
    let writes_after_person = world.sim.model().write_count();
    let output = wait_output(child).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "aborted");
    assert!(
        result["incident"].is_null(),
        "no incident blames the candidate: {result}"
    );
    assert_eq!(world.sim.model().write_count(), writes_after_person);
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_binaries_racing_on_one_service_leave_one_owner() {
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(40.0);
    let spawn = |image: &str| {
        let mut args = vec!["rollout", "--image", image, "--json"];
        args.extend(["--steps", "50,100", "--bake", "2s", "--interval", "1s"]);
        args.extend([
            "--metrics-delay",
            "0s",
            "--min-requests",
            "5",
            "--no-incident",
        ]);
        spawn_piped(world.service_command(&args))
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
    assert_eq!(world.split(), vec![(promoted, 100)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_or_sigterm_during_a_rollout_restores_stable_like_sigint() {
    for (name, number) in [("SIGHUP", libc::SIGHUP), ("SIGTERM", libc::SIGTERM)] {
        let world = BinaryWorld::start("cli").await;
        let _load = world.start_load(20.0);
        let child = spawn_long_rollout(&world, &["--json"], true);
        world.wait_for_first_step().await;
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
        assert_eq!(world.split(), world.stable_only(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_the_candidate_is_being_created_leaves_no_trace() {
    let world = BinaryWorld::start("cli").await;
    // Creating the revision takes a while: the signal lands while its operation is awaited.
    world.sim.set_operation_delay(Duration::from_secs(2));
    let args = ["rollout", "--image", CANDIDATE_IMAGE, "--json"];
    let child = spawn_piped(world.service_command(&args));
    let mut waited = Duration::ZERO;
    while world.sim.model().write_count() == 0 {
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
        let status = json_of(&world.run_on_service(&["status", "--json"]).await);
        assert!(status["rollout"].is_null(), "the record is gone: {status}");
        assert!(
            status["tags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["tag"] != "candidate"),
            "the candidate tag is gone: {status}"
        );
        assert_eq!(world.split(), world.stable_only());
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
            let world = BinaryWorld::start("cli").await;
            let _load = world.start_load(20.0);
            if moment == "during creation" {
                world.sim.set_operation_delay(Duration::from_millis(1500));
            }
            let child = spawn_long_rollout(&world, &["--json", "--no-incident"], true);
            match moment {
                "during creation" => {
                    while world.sim.model().write_count() == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // Somewhere inside the creation's operation wait.
                    tokio::time::sleep(Duration::from_millis(100 * (run as u64 % 10))).await;
                }
                "during a bake" => {
                    world.wait_for_first_step().await;
                    tokio::time::sleep(Duration::from_millis(200 * (run as u64 % 10))).await;
                }
                _ => {
                    world.wait_for_first_step().await;
                    world.sim.model().hold_operations(true);
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
                assert_eq!(world.split(), world.stable_only());
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
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(20.0);
    let mut child = spawn_long_rollout(&world, &["--json", "--no-incident"], true);
    world.wait_for_first_step().await;
    // As `shiftgate … 2>&1 | head` does once head has its lines: both readers are gone.
    drop(child.stdout.take());
    drop(child.stderr.take());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&child, libc::SIGINT);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();

    assert_eq!(status.code(), Some(130));
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_403_ends_a_rollback_at_once_with_exit_4() {
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(20.0);
    kill_in_its_first_step(&world, &[]).await;
    let split_before = world.split();
    for _ in 0..50 {
        world.sim.inject(shiftgate_sim::Fault::status(
            "PATCH",
            "services/loopcloser-dev",
            403,
        ));
    }
    let patches_before = world.sim.model().api_calls("PATCH");

    let started = std::time::Instant::now();
    let output = world
        .run_on_service(&["rollback", "--json", "--no-incident"])
        .await;
    eprintln!(
        "rollback refused with 403: exit after {:?}",
        started.elapsed()
    );

    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "failed");
    assert_eq!(
        world.sim.model().api_calls("PATCH") - patches_before,
        1,
        "a refusal is not retried"
    );
    assert!(stderr_of(&output).contains("403") || result["reason"].to_string().contains("403"));
    assert_eq!(
        world.split(),
        split_before,
        "the split is reported, unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_against_an_unreachable_api_ends_within_its_timeout_with_exit_4() {
    let world = BinaryWorld::start("cli").await;
    let url = closed_port_url();
    let mut command = world.service_command(&[
        "rollback",
        "--json",
        "--no-incident",
        "--to",
        "loopcloser-dev-00001-abc",
        "--timeout",
        "3s",
    ]);
    command.env("SHIFTGATE_CLOUD_RUN_URL", &url);
    let started = std::time::Instant::now();
    let output = binary::run(command).await;
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
    let world = BinaryWorld::start("cli").await;
    let _load = world.start_load(20.0);
    // Each change takes a moment to apply, so the restore is still running when SIGTERM follows.
    world.sim.set_operation_delay(Duration::from_millis(800));
    let child = spawn_long_rollout(&world, &["--json", "--no-incident"], true);
    world.wait_for_first_step().await;
    signal(&child, libc::SIGINT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGTERM);
    let output = wait_output(child).await;

    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["final_traffic_confirmed"], true);
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_rollout_in_progress_when_rollback_if_in_progress_runs_then_it_exits_0_and_writes_nothing()
 {
    // Given a service with no rollout recorded (a cancelled job whose rollout already restored
    // stable leaves it so).
    let world = BinaryWorld::start("cli-if-in-progress-none").await;

    // When the cleanup step rolls back only if a rollout is in progress.
    let output = world
        .run_on_service(&["rollback", "--if-in-progress", "--json"])
        .await;

    // Then it succeeds without writing, and says there was nothing to do.
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "not_in_progress");
    assert_eq!(
        result["final_traffic"],
        serde_json::json!([{"revision": world.stable, "percent": 100}])
    );
    assert_eq!(world.sim.model().write_count(), 0, "nothing was written");
    assert!(
        stderr_of(&output).contains("no rollout is in progress"),
        "{}",
        stderr_of(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_rollout_left_in_progress_when_rollback_if_in_progress_runs_then_it_restores_stable()
 {
    // Given a rollout whose process was killed in its first step.
    let world = BinaryWorld::start("cli-if-in-progress-live").await;
    let _load = world.start_load(20.0);
    kill_in_its_first_step(&world, &[]).await;

    // When the cleanup step rolls back only if a rollout is in progress.
    let output = world
        .run_on_service(&["rollback", "--if-in-progress", "--json"])
        .await;

    // Then it rolls back to the recorded stable revision.
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "rolled_back");
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_config_when_demo_is_asked_to_use_it_then_it_refuses_saying_it_reads_none() {
    // Given a config file, when the demo is pointed at it.
    let dir = workdir("demo-config");
    std::fs::write(dir.join("shiftgate.toml"), "repo = \"loopcloser/app\"\n").unwrap();
    let output = binary::run(shiftgate(&dir, &["demo", "--config", "shiftgate.toml"])).await;

    // Then nothing runs, and the message says why and where to go instead.
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("demo reads no config"), "{stderr}");
    assert!(stderr.contains("shiftgate simulate --env NAME"), "{stderr}");
}
