//! Black-box tests of `shiftgate dispatch`, `shiftgate incident` and rollout's automatic incident,
//! with `GITHUB_API_URL` pointing at the fake GitHub (and the Cloud Run simulator for rollout).

use std::process::Command;
use std::time::Duration;

use shiftgate::clock::Clock;
use shiftgate_sim::{GitHubSim, JobSpec, LoadHandle, Sim, WorkflowSpec};

use crate::support::binary::{json_of, run, stderr_of};
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, expect_refused_naming, shiftgate, with_github, workdir,
};

const MS: Duration = Duration::from_millis(1);

async fn github() -> GitHubSim {
    let sim = GitHubSim::start(Clock::new(), "loopcloser", "app")
        .await
        .unwrap();
    sim.add_workflow(
        WorkflowSpec::new("deploy.yml", "Deploy to Cloud Run")
            .input("environment")
            .input("image_tag")
            .queued_for(100 * MS)
            .job(
                JobSpec::new("deploy")
                    .step("gcloud run deploy", 300 * MS)
                    .step("Smoke test", 200 * MS),
            ),
    );
    sim
}

/// The binary talking to `github` (and to no Cloud Run).
fn command(github: &GitHubSim, args: &[&str]) -> Command {
    let mut command = shiftgate(&std::env::temp_dir(), args);
    with_github(&mut command, github);
    command
}

/// A simulated loopcloser-dev with traffic flowing, whose v1.1.0 answers 40% 5xx; returns the
/// world and the load (kept alive by the caller).
async fn bad_candidate_service() -> (BinaryWorld, LoadHandle) {
    let world = BinaryWorld::start("github").await;
    world.candidate_fails(0.4);
    let load = world.start_load(40.0);
    (world, load)
}

/// The binary on the bad-candidate rollout against the world's service, with `extra` arguments.
fn bad_candidate_rollout(github: &GitHubSim, world: &BinaryWorld, extra: &[&str]) -> Command {
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(extra);
    let mut command = world.service_command(&args);
    with_github(&mut command, github);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_fake_github_when_dispatch_runs_then_it_prints_one_json_result_and_exits_0() {
    let github = github().await;
    let output = run(command(
        &github,
        &[
            "dispatch",
            "--json",
            "--repo",
            "loopcloser/app",
            "--workflow",
            "deploy.yml",
            "--ref",
            "main",
            "--input",
            "environment=prod",
            "--input",
            "image_tag=v1.4.0",
            "--poll",
            "100ms",
        ],
    ))
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["command"], "dispatch");
    assert_eq!(result["outcome"], "success");
    assert_eq!(result["conclusion"], "success");
    assert_eq!(
        result["jobs"],
        serde_json::json!([{"name": "deploy", "conclusion": "success"}])
    );
    assert_eq!(result["exit_code"], 0);
    assert!(
        result["run_url"]
            .as_str()
            .unwrap()
            .ends_with(&result["run_id"].to_string())
    );
    assert!(result["duration_s"].is_number());
    assert!(stderr_of(&output).contains("deploy › Smoke test: success"));
    assert_eq!(github.dispatch_posts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_fake_github_when_incident_runs_twice_then_it_creates_then_comments() {
    let github = github().await;
    let body = std::env::temp_dir().join(format!("shiftgate-summary-{}.md", std::process::id()));
    std::fs::write(&body, "prod answered 503 after the deploy").unwrap();
    let args = [
        "incident",
        "--json",
        "--repo",
        "loopcloser/app",
        "--severity",
        "SEV-2",
        "--title",
        "Deploy of v1.4.0 to prod failed",
        "--body-file",
        body.to_str().unwrap(),
    ];
    let mut first = command(&github, &args);
    first
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "loopcloser/app")
        .env("GITHUB_RUN_ID", "77");

    let created = run(first).await;
    let commented = run(command(&github, &args)).await;

    assert_eq!(created.status.code(), Some(0), "{}", stderr_of(&created));
    let created = json_of(&created);
    assert_eq!(created["command"], "incident");
    assert_eq!(created["outcome"], "created");
    assert_eq!(created["key"], "Deploy of v1.4.0 to prod failed");
    assert_eq!(created["exit_code"], 0);
    let commented = json_of(&commented);
    assert_eq!(commented["outcome"], "commented");
    assert_eq!(commented["number"], created["number"]);
    let issues = github.issues();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].body.contains("prod answered 503"));
    assert!(
        issues[0]
            .body
            .contains("https://github.com/loopcloser/app/actions/runs/77")
    );
    assert_eq!(issues[0].labels, vec!["incident", "sev-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_bad_input_when_dispatch_or_incident_runs_then_exit_2_naming_the_flag_and_nothing_is_sent()
 {
    let github = github().await;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["dispatch", "--workflow", "deploy.yml", "--ref", "main"],
            "--repo",
        ),
        (
            vec![
                "dispatch",
                "--repo",
                "loopcloser",
                "--workflow",
                "d.yml",
                "--ref",
                "main",
            ],
            "--repo",
        ),
        (
            vec![
                "dispatch",
                "--repo",
                "a/b",
                "--workflow",
                "d.yml",
                "--ref",
                "main",
                "--input",
                "environment",
            ],
            "--input",
        ),
        (
            vec!["dispatch", "--repo", "a/b", "--workflow", "d.yml"],
            "--ref",
        ),
        (
            vec![
                "incident",
                "--repo",
                "a/b",
                "--title",
                "t",
                "--severity",
                "SEV-5",
            ],
            "--severity",
        ),
        (
            vec![
                "incident",
                "--repo",
                "a/b",
                "--title",
                "t",
                "--body",
                "x",
                "--body-file",
                "f",
            ],
            "--body",
        ),
    ];
    for (args, flag) in cases {
        let output = run(command(&github, &args)).await;
        expect_refused_naming(&output, flag, &args);
    }
    let mut no_token = command(&github, &["incident", "--repo", "a/b", "--title", "t"]);
    no_token.env_remove("GITHUB_TOKEN");
    let output = run(no_token).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("GITHUB_TOKEN"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(github.counts().total, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_candidate_when_rollout_rolls_back_then_it_files_a_sev2_incident_with_its_timeline()
 {
    let github = github().await;
    let (world, _load) = bad_candidate_service().await;
    let rollout =
        |github: &GitHubSim| bad_candidate_rollout(github, &world, &["--repo", "loopcloser/app"]);

    let first = run(rollout(&github)).await;
    let second = run(rollout(&github)).await;

    assert_eq!(first.status.code(), Some(1), "{}", stderr_of(&first));
    let result = json_of(&first);
    assert_eq!(result["outcome"], "rolled_back");
    assert_eq!(result["incident"]["filed"], true, "{}", result["incident"]);
    assert_eq!(result["incident"]["action"], "created");
    assert_eq!(result["incident"]["severity"], "SEV-2");
    assert_eq!(
        json_of(&second)["incident"]["action"],
        "commented",
        "one issue per service"
    );
    let issues = github.issues();
    assert_eq!(issues.len(), 1);
    let body = &issues[0].body;
    assert!(
        body.contains(
            "| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |"
        ),
        "{body}"
    );
    assert!(
        body.contains("```mermaid\nxychart-beta"),
        "the step summary's chart: {body}"
    );
    assert!(body.contains(&world.stable), "{body}");
    assert!(body.contains("rolling back to stable"), "{body}");
    assert_eq!(issues[0].labels, vec!["incident", "sev-2"]);
    assert_eq!(issues[0].comments.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_repository_when_rollout_rolls_back_then_it_says_once_why_no_incident_was_filed() {
    let github = github().await;
    let (world, _load) = bad_candidate_service().await;
    let command = bad_candidate_rollout(&github, &world, &[]);

    let output = run(command).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["incident"]["filed"], false);
    assert!(
        result["incident"]["reason"]
            .as_str()
            .unwrap()
            .contains("no repository")
    );
    assert_eq!(stderr_of(&output).matches("incident: not filed").count(), 1);
    assert_eq!(github.counts().total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_platform_that_never_applies_changes_when_rollback_gives_up_then_it_exits_4_and_files_sev1()
 {
    let github = GitHubSim::start(Clock::new(), "loopcloser", "app")
        .await
        .unwrap();
    let sim = Sim::start(Clock::new()).await.unwrap();
    sim.set_operation_delay(Duration::from_millis(20));
    let stable = sim.add_service("sim-project", "us-central1", "app", "registry/app:v1");
    // Split traffic by hand, then stop the platform from finishing any change.
    let candidate = {
        use shiftgate::ports::{NewRevision, Platform, TrafficTarget};
        let platform = crate::support::inproc::SimPlatform::new(
            sim.model(),
            "sim-project",
            "us-central1",
            "app",
        );
        let service = platform.read_service().await.unwrap();
        platform
            .create_revision(
                &NewRevision {
                    revision: "app-00002-new".into(),
                    image: "registry/app:v2".into(),
                    traffic: vec![
                        TrafficTarget::new(&stable, 50),
                        TrafficTarget::new("app-00002-new", 50),
                    ],
                    rollout: None,
                },
                &service.etag,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        "app-00002-new".to_string()
    };
    sim.hold_operations(true);
    let mut rollback = command(
        &github,
        &[
            "rollback",
            "--json",
            "--project",
            "sim-project",
            "--region",
            "us-central1",
            "--service",
            "app",
            "--to",
            &stable,
            "--timeout",
            "2s",
            "--repo",
            "loopcloser/app",
        ],
    );
    rollback.env("SHIFTGATE_CLOUD_RUN_URL", sim.cloud_run_url());

    let output = run(rollback).await;

    assert_eq!(output.status.code(), Some(4), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "failed");
    assert_eq!(result["incident"]["severity"], "SEV-1", "{result}");
    let served: Vec<String> = result["final_traffic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["revision"].as_str().unwrap().to_string())
        .collect();
    assert!(
        served.contains(&candidate),
        "the split actually served is reported: {result}"
    );
    let issues = github.issues();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].title.contains("FAILED"), "{}", issues[0].title);
    assert_eq!(issues[0].labels, vec!["incident", "sev-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_rollback_when_filing_its_incident_fails_then_at_most_one_issue_exists_and_the_exit_code_stands()
 {
    let cases = [
        ("search fails", "GET", "/issues", 500, false),
        ("create refused", "POST", "/issues", 500, false),
        ("create unavailable", "POST", "/issues", 503, false),
        ("create applied, answer lost", "POST", "/issues", 502, true),
        ("label call fails", "POST", "/labels", 500, false),
    ];
    for (name, method, path_suffix, status, after_effect) in cases {
        let github = github().await;
        github.inject(shiftgate_sim::GitHubFault {
            method,
            path_suffix,
            status,
            after_effect,
        });
        let (world, _load) = bad_candidate_service().await;
        let command = bad_candidate_rollout(&github, &world, &["--repo", "loopcloser/app"]);

        let output = run(command).await;

        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: {}",
            stderr_of(&output)
        );
        let result = json_of(&output);
        assert_eq!(result["outcome"], "rolled_back", "{name}");
        let issues = github.issues();
        assert!(issues.len() <= 1, "{name}: {} issues", issues.len());
        if result["incident"]["filed"] == false {
            assert!(
                result["incident"]["reason"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty()),
                "{name}: says why no incident was filed: {result}"
            );
        }
        eprintln!(
            "incident × {name}: {} issue(s), filed={}",
            issues.len(),
            result["incident"]["filed"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_config_naming_the_repo_when_incident_and_dispatch_run_without_repo_then_they_use_it()
 {
    // Given a shiftgate.toml naming loopcloser/app, and a job whose own repository is another.
    let github = github().await;
    let dir = workdir("github-config-repo");
    let config = dir.join("deploy.toml");
    std::fs::write(&config, "repo = \"loopcloser/app\"\n").unwrap();
    let config = config.to_str().unwrap();
    let runs = [
        vec![
            "incident",
            "--json",
            "--config",
            config,
            "--title",
            "prod is down",
        ],
        vec![
            "dispatch",
            "--json",
            "--config",
            config,
            "--workflow",
            "deploy.yml",
            "--ref",
            "main",
            "--input",
            "environment=prod",
            "--input",
            "image_tag=v1.4.0",
            "--poll",
            "100ms",
        ],
    ];
    for args in runs {
        // When incident or dispatch runs with no --repo.
        let mut command = shiftgate(&dir, &args);
        with_github(&mut command, &github).env("GITHUB_REPOSITORY", "someone/else");
        let output = run(command).await;

        // Then it works on the config's repository (the fake GitHub knows no other).
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
    assert_eq!(github.issues().len(), 1);
    assert_eq!(github.dispatch_posts(), 1);
}
