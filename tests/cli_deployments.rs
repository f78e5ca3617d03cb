//! Black-box scenarios of `rollout --github-deployment` and the `url` output: the binary against the
//! simulated Cloud Run and the fake GitHub, every deployment exchange checked against the contract.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use shiftgate::clock::Clock;
use shiftgate_sim::{DeploymentState, GitHubFault, GitHubSim, LoadHandle};

use crate::support::binary::{json_of, run, stderr_of};
use crate::support::openapi::OpenApi;
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, PROJECT, QUICK_ROLLOUT, REGION, SERVICE,
    expect_refused_naming, with_github,
};

/// The commit the job deploys (`$GITHUB_SHA`).
const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const RUN_URL: &str = "https://github.com/loopcloser/app/actions/runs/77";
const PROD_URL: &str = "https://app.loopcloser.example";

async fn github() -> GitHubSim {
    GitHubSim::start(Clock::new(), "loopcloser", "app")
        .await
        .unwrap()
}

/// A healthy loopcloser-dev with traffic flowing, and a config naming it as environment `prod`
/// with its public URL.
async fn healthy_service(label: &str) -> (BinaryWorld, LoadHandle) {
    let world = BinaryWorld::start(label).await;
    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        format!(
            "[environments.prod]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\n\
             service = \"{SERVICE}\"\nurl = \"{PROD_URL}\"\n"
        ),
    )
    .unwrap();
    let load = world.start_load(40.0);
    (world, load)
}

/// `rollout` of `args` with the Actions job's variables a deployment needs: the repository, the
/// commit and the run.
fn deployment_rollout(world: &BinaryWorld, github: &GitHubSim, args: &[&str]) -> Command {
    let mut command = world.command(args);
    with_github(&mut command, github)
        .env("GITHUB_REPOSITORY", "loopcloser/app")
        .env("GITHUB_SHA", SHA)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_RUN_ID", "77");
    command
}

fn with_args<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = base.to_vec();
    args.extend(extra);
    args
}

fn states(deployment: &DeploymentState) -> Vec<&str> {
    deployment
        .statuses
        .iter()
        .map(|status| status.state.as_str())
        .collect()
}

/// Every request the binary sent the fake and every answer follows GitHub's OpenAPI description.
fn assert_contract(github: &GitHubSim) {
    let api = OpenApi::load("tests/contracts/github.json");
    for exchange in github.exchanges() {
        let context = format!(
            "{} {} → {}",
            exchange.method, exchange.operation, exchange.status
        );
        if let Some(request) = exchange
            .request
            .as_ref()
            .filter(|_| exchange.method == "POST")
            && let Err(problems) =
                api.validate_request(&exchange.method, &exchange.operation, request)
        {
            panic!("{context}: request {problems:#?}\n{request:#}");
        }
        let body = exchange.body.clone().unwrap_or_default();
        match api.response_schema(&exchange.method, &exchange.operation, exchange.status) {
            Ok(Some(schema)) => {
                if let Err(problems) = api.validate(schema, &body) {
                    panic!("{context}: {problems:#?}\n{body:#}");
                }
            }
            Ok(None) => {}
            // A fault the scenario injected: GitHub's generic error shape.
            Err(_) => assert!(body["message"].is_string(), "{context}: {body}"),
        }
    }
}

fn deployment_json(output: &Output) -> Value {
    json_of(output)["github_deployment"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_previous_prod_deployment_when_a_good_rollout_runs_then_one_deployment_follows_each_step_to_success()
 {
    // Given a healthy prod service and an earlier successful deployment of prod.
    let (world, _load) = healthy_service("deploy-good").await;
    let github = github().await;
    let previous = github.seed_deployment("prod", true, &["in_progress", "success"]);

    // When the rollout runs with --github-deployment.
    let args = with_args(
        QUICK_ROLLOUT,
        &["--json", "--env", "prod", "--github-deployment"],
    );
    let output = run(deployment_rollout(&world, &github, &args)).await;

    // Then it promotes as it would without a deployment.
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let result = json_of(&output);
    assert_eq!(result["outcome"], "promoted");
    // And one deployment of prod was created, for the job's commit, never merging or waiting.
    let creates: Vec<String> = github
        .requests()
        .into_iter()
        .filter(|r| r == "POST /repos/loopcloser/app/deployments")
        .collect();
    assert_eq!(creates.len(), 1, "{:?}", github.requests());
    let deployments = github.deployments();
    let created = deployments.last().unwrap();
    assert_eq!(created.environment, "prod");
    assert_eq!(created.git_ref, SHA);
    assert!(created.production);
    assert!(!created.transient);
    assert_eq!(created.auto_merge, Some(false));
    assert_eq!(created.required_contexts, Some(serde_json::json!([])));
    assert_eq!(created.payload["rollout_id"], result["rollout_id"]);
    assert_eq!(created.payload["candidate"], result["candidate"]);
    // And its statuses went in_progress at the start and at each step, then success.
    assert_eq!(
        states(created),
        ["in_progress", "in_progress", "in_progress", "success"]
    );
    let candidate = result["candidate"].as_str().unwrap();
    assert_eq!(
        created.statuses[1].description,
        format!("step 1/2: 50% on {candidate}")
    );
    let success = created.statuses.last().unwrap();
    assert_eq!(success.environment_url, PROD_URL);
    assert_eq!(success.log_url, RUN_URL);
    // And the previous prod deployment is inactive (auto_inactive leaves production alone).
    let before = deployments.iter().find(|d| d.id == previous).unwrap();
    assert_eq!(before.latest_state(), Some("inactive"));
    // And the result says so.
    let record = deployment_json(&output);
    assert_eq!(record["id"], created.id);
    assert_eq!(
        record["statuses"],
        serde_json::json!(["in_progress", "in_progress", "in_progress", "success"])
    );
    assert_eq!(record["inactivated"], serde_json::json!([previous]));
    assert!(record.get("error").is_none(), "{record}");
    assert_eq!(result["url"], PROD_URL);
    assert_contract(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_config_environment_when_a_rollout_promotes_then_the_service_names_the_environment_and_auto_inactive_retires_the_previous()
 {
    // Given a healthy service addressed by flags, and an earlier successful deployment of it.
    let world = BinaryWorld::start("deploy-service").await;
    let _load = world.start_load(40.0);
    let github = github().await;
    let previous = github.seed_deployment(SERVICE, false, &["success"]);

    // When the rollout runs with --github-deployment.
    let mut args = with_args(QUICK_ROLLOUT, &["--json", "--github-deployment"]);
    args.extend(crate::support::world::SERVICE_ARGS);
    let output = run(deployment_rollout(&world, &github, &args)).await;

    // Then the deployment is of the service's environment, at the service's own URL.
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let deployments = github.deployments();
    let created = deployments.last().unwrap();
    assert_eq!(created.environment, SERVICE);
    assert!(!created.production);
    let service_url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    assert_eq!(
        created.statuses.last().unwrap().environment_url,
        service_url
    );
    assert_eq!(json_of(&output)["url"], service_url.as_str());
    // And GitHub's auto_inactive, not shiftgate, retired the previous one.
    let before = deployments.iter().find(|d| d.id == previous).unwrap();
    assert_eq!(before.latest_state(), Some("inactive"));
    assert!(deployment_json(&output).get("inactivated").is_none());
    assert_contract(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_candidate_when_the_rollout_rolls_back_then_the_deployment_ends_in_failure_with_the_reason()
 {
    // Given a candidate answering 40% 5xx.
    let world = BinaryWorld::start("deploy-bad").await;
    world.candidate_fails(0.4);
    let _load = world.start_load(40.0);
    let github = github().await;

    // When the rollout runs with --github-deployment.
    let mut args = with_args(
        BAD_CANDIDATE_ROLLOUT,
        &["--github-deployment", "--no-incident"],
    );
    args.extend(crate::support::world::SERVICE_ARGS);
    let output = run(deployment_rollout(&world, &github, &args)).await;

    // Then it rolls back as it would without a deployment.
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back");
    // And the deployment's last status is a failure saying why, within GitHub's 140 characters.
    let deployments = github.deployments();
    let failure = deployments[0].statuses.last().unwrap();
    assert_eq!(failure.state, "failure");
    assert!(
        failure.description.starts_with("rolled back: "),
        "{failure:?}"
    );
    assert!(failure.description.chars().count() <= 140);
    let reason = result["reason"].as_str().unwrap();
    let shown = failure.description.trim_start_matches("rolled back: ");
    assert!(
        reason.starts_with(shown.trim_end_matches('…')),
        "{shown} / {reason}"
    );
    assert_eq!(failure.log_url, RUN_URL);
    assert_eq!(
        deployment_json(&output)["statuses"]
            .as_array()
            .unwrap()
            .last(),
        Some(&serde_json::json!("failure"))
    );
    assert_contract(&github);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_github_failing_the_deployment_create_then_the_rollout_is_unchanged_warned_once_and_never_resent()
 {
    // A 500 after GitHub made the deployment (ambiguous), and a 403 (no deployments: write).
    for (name, after_effect, status, made) in [
        ("500 after the effect", true, 500, 1),
        ("403 refused", false, 403, 0),
    ] {
        // Given GitHub answering the create with this failure.
        let (world, _load) = healthy_service(&format!("deploy-{status}")).await;
        let github = github().await;
        github.inject(GitHubFault {
            method: "POST",
            path_suffix: "/deployments",
            status,
            after_effect,
        });

        // When the rollout runs with --github-deployment.
        let args = with_args(
            QUICK_ROLLOUT,
            &["--json", "--env", "prod", "--github-deployment"],
        );
        let output = run(deployment_rollout(&world, &github, &args)).await;

        // Then the rollout's outcome and exit code are those of the rollout alone.
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(0), "{name}: {stderr}");
        let result = json_of(&output);
        assert_eq!(result["outcome"], "promoted", "{name}");
        assert_eq!(result["exit_code"], 0, "{name}");
        // And one warning says what failed, and the result carries it.
        assert_eq!(
            stderr.matches("warning: GitHub deployment").count(),
            1,
            "{name}: {stderr}"
        );
        let error = result["github_deployment"]["error"].as_str().unwrap();
        assert!(
            error.contains("creating the deployment failed"),
            "{name}: {error}"
        );
        // And the create was sent once, and nothing followed it but the promotion's look for an
        // open incident of the service to close.
        assert_eq!(
            github.requests(),
            [
                "POST /repos/loopcloser/app/deployments",
                "GET /repos/loopcloser/app/issues"
            ],
            "{name}"
        );
        assert_eq!(github.deployments().len(), made, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_actions_job_when_a_rollout_promotes_then_the_url_output_is_the_environment_url() {
    // Given an Actions job with an output file.
    let (world, _load) = healthy_service("deploy-url").await;
    let outputs = world.workdir.join("github_output");
    std::fs::write(&outputs, "").unwrap();

    // When the rollout of prod runs (without --github-deployment).
    let args = with_args(QUICK_ROLLOUT, &["--env", "prod"]);
    let mut command = world.command(&args);
    command
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs);
    let output = run(command).await;

    // Then the `url` output is the environment's URL, for `environment: url:`.
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let written = std::fs::read_to_string(&outputs).unwrap();
    let (_, after) = written.split_once("\nurl<<").unwrap();
    let mut lines = after.lines();
    let delimiter = lines.next().unwrap();
    assert_eq!(lines.next(), Some(PROD_URL), "{written}");
    assert_eq!(lines.next(), Some(delimiter));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_what_a_deployment_needs_is_missing_then_exit_2_naming_it_and_nothing_changes() {
    let world = BinaryWorld::start("deploy-refused").await;
    let github = github().await;
    let mut args = with_args(QUICK_ROLLOUT, &["--github-deployment"]);
    args.extend(crate::support::world::SERVICE_ARGS);
    for (case, unset, named) in [
        ("no repository", "GITHUB_REPOSITORY", "--repo"),
        ("no commit", "GITHUB_SHA", "GITHUB_SHA"),
        ("no token", "GITHUB_TOKEN", "GITHUB_TOKEN"),
    ] {
        // Given the job's variables without one.
        let mut command = deployment_rollout(&world, &github, &args);
        command.env_remove(unset);

        // When the rollout runs with --github-deployment.
        let output = run(command).await;

        // Then it refuses, naming the flag and what is missing, and changes nothing.
        expect_refused_naming(&output, "--github-deployment", &case);
        expect_refused_naming(&output, named, &case);
        assert_eq!(world.split(), world.stable_only(), "{case}");
        assert_eq!(world.sim.model().write_count(), 0, "{case}");
    }
    assert!(github.requests().is_empty(), "{:?}", github.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_rollout_in_its_first_step_when_interrupted_then_the_deployment_ends_in_failure_and_exit_is_130()
 {
    // Given a rollout with --github-deployment baking its first step for ten minutes.
    let (world, _load) = healthy_service("deploy-interrupt").await;
    let github = github().await;
    let args = [
        "rollout",
        "--json",
        "--env",
        "prod",
        "--github-deployment",
        "--image",
        crate::support::world::CANDIDATE_IMAGE,
        "--bake",
        "10m",
        "--interval",
        "1s",
        "--metrics-delay",
        "0s",
    ];
    let child = deployment_rollout(&world, &github, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    world.wait_for_first_step().await;
    // The step's in_progress status is posted in the background: wait for it to arrive.
    let step_posted = || {
        github
            .deployments()
            .first()
            .is_some_and(|deployment| states(deployment).len() >= 2)
    };
    let mut waited = Duration::ZERO;
    while !step_posted() {
        assert!(
            waited < Duration::from_secs(30),
            "the step's status never reached GitHub"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }

    // When the job is cancelled (SIGINT).
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();

    // Then stable is restored and the exit is 130, as without a deployment.
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert_eq!(world.split(), world.stable_only());
    // And the deployment ends in failure, saying it was interrupted.
    let deployment = github.deployments().remove(0);
    assert_eq!(
        states(&deployment),
        ["in_progress", "in_progress", "failure"]
    );
    let failure = deployment.statuses.last().unwrap();
    assert!(
        failure.description.starts_with("interrupted"),
        "{failure:?}"
    );
    assert_eq!(
        deployment_json(&output)["statuses"],
        serde_json::json!(["in_progress", "in_progress", "failure"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_another_rollout_owns_the_service_when_one_with_a_deployment_is_refused_then_github_hears_nothing()
 {
    // Given a rollout in its first step.
    let (world, _load) = healthy_service("deploy-owned").await;
    let github = github().await;
    let long = [
        "rollout",
        "--env",
        "prod",
        "--image",
        crate::support::world::CANDIDATE_IMAGE,
        "--bake",
        "10m",
        "--metrics-delay",
        "0s",
    ];
    let mut first = world
        .command(&long)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    world.wait_for_first_step().await;

    // When a second rollout with --github-deployment starts.
    let args = with_args(QUICK_ROLLOUT, &["--env", "prod", "--github-deployment"]);
    let second = run(deployment_rollout(&world, &github, &args)).await;
    first.kill().unwrap();
    first.wait().unwrap();

    // Then it is refused (exit 2) and no deployment was made for it.
    assert_eq!(second.status.code(), Some(2), "{}", stderr_of(&second));
    assert!(github.requests().is_empty(), "{:?}", github.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_failing_migration_when_a_rollout_with_a_deployment_ends_before_any_change_then_no_deployment_is_made()
 {
    let (world, _load) = healthy_service("deploy-pre-job").await;
    world.sim.model().add_job(
        PROJECT,
        REGION,
        "migrate",
        shiftgate_sim::JobBehavior::failing(
            Duration::from_millis(100),
            shiftgate_sim::FailureShape::OperationError,
        ),
    );
    let github = github().await;
    let args = with_args(
        QUICK_ROLLOUT,
        &[
            "--json",
            "--env",
            "prod",
            "--github-deployment",
            "--pre-job",
            "migrate",
        ],
    );

    let output = run(deployment_rollout(&world, &github, &args)).await;

    // The rollout changed nothing, so there is nothing deployed to fail on GitHub.
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "failed");
    assert!(github.deployments().is_empty(), "{:?}", github.requests());
}
