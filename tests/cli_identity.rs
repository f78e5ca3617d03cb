//! IAM-protected services through the real binary: health probes carry a Google ID token, made
//! through Workload Identity and IAM Credentials, for whichever audience Cloud Run accepts.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use shiftgate_sim::{AudienceRule, RUNNER_ACCOUNT};

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::world::{
    BinaryWorld, PROJECT, QUICK_ROLLOUT, REGION, SERVICE, closed_port_url, external_account,
};

/// The deploy identity google-github-actions/auth impersonates (`service_account:`).
const DEPLOY_ACCOUNT: &str = "deploy@loopcloser.iam.gserviceaccount.com";
/// Every JWT starts with the base64 of `{"alg":`: no output may contain one.
const JWT_START: &str = "eyJhbGciOi";

/// The credentials file google-github-actions/auth writes for Workload Identity through a
/// service account: the federated token is exchanged for the account's through IAM Credentials.
fn through_service_account(world: &BinaryWorld) -> PathBuf {
    let mut config = external_account(&world.sim);
    config["service_account_impersonation_url"] = Value::String(format!(
        "{}/v1/projects/-/serviceAccounts/{DEPLOY_ACCOUNT}:generateAccessToken",
        world.sim.iam_credentials_url()
    ));
    let path = world.workdir.join("through-service-account.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// The quick rollout (50% then 100%) of the world's service, with a JSON result.
fn quick_rollout(world: &BinaryWorld) -> std::process::Command {
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    world.service_command(&args)
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Given an IAM-protected service (the simulator's APIs also want the impersonated token).
async fn protected_world(label: &str, rule: AudienceRule) -> BinaryWorld {
    let world = BinaryWorld::start(label).await;
    world.sim.require_bearer(Some(Vec::new()));
    world.sim.require_id_token(Some(rule));
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_iam_protected_service_when_a_rollout_runs_on_workload_identity_then_every_probe_passes_under_each_reading_of_the_audience()
 {
    for rule in [
        AudienceRule::ServiceUrl,
        AudienceRule::RequestUrl,
        AudienceRule::Either,
    ] {
        let world = protected_world(&format!("id-token-{rule:?}"), rule).await;
        let _load = world.start_load(40.0);
        let credentials = through_service_account(&world);
        let mut command = quick_rollout(&world);
        command
            .env("GOOGLE_APPLICATION_CREDENTIALS", &credentials)
            .env("SHIFTGATE_LOG", "trace");

        // When the binary runs a rollout with the credentials file of the deploy identity.
        let output = binary::run(command).await;

        // Then it promotes: the candidate's health checks passed with an ID token of the deploy
        // account, for an audience this reading accepts, and no token was printed.
        assert_eq!(
            output.status.code(),
            Some(0),
            "{rule:?}: {}",
            stderr_of(&output)
        );
        let result = json_of(&output);
        assert_eq!(result["outcome"], "promoted", "{rule:?}");
        let service_url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
        let requests = world.sim.id_token_requests();
        assert!(!requests.is_empty(), "{rule:?}: no ID token was asked for");
        assert!(
            requests
                .iter()
                .all(|(account, _)| account == DEPLOY_ACCOUNT),
            "{requests:?}"
        );
        let for_service = requests.iter().any(|(_, aud)| *aud == service_url);
        let for_tag = requests.iter().any(|(_, aud)| *aud != service_url);
        match rule {
            AudienceRule::ServiceUrl => assert!(for_service, "{rule:?}: {requests:?}"),
            AudienceRule::RequestUrl => assert!(for_tag, "{rule:?}: {requests:?}"),
            AudienceRule::Either => assert!(
                !for_service,
                "the tag's own audience was accepted, so no other was needed: {requests:?}"
            ),
        }
        // The first probe of the tag went without a token and was refused; after that the tag
        // gets its accepted audience at once, so refusals stay a handful however many probes.
        let refusals = world.sim.invoker_refusals();
        assert!((1..=3).contains(&refusals), "{rule:?}: {refusals} refusals");
        assert!(
            !printed(&output).contains(JWT_START),
            "{rule:?}: an ID token was printed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_runner_on_google_cloud_when_a_rollout_probes_an_iam_protected_service_then_its_metadata_server_makes_the_id_tokens()
 {
    // Given a self-hosted runner on a Google Cloud VM: no credentials file, a metadata server.
    let world = BinaryWorld::start("id-token-metadata").await;
    world.sim.require_id_token(Some(AudienceRule::ServiceUrl));
    let _load = world.start_load(40.0);
    let mut command = quick_rollout(&world);
    command.env("GCE_METADATA_HOST", world.sim.metadata_host());

    // When a rollout runs there.
    let output = binary::run(command).await;

    // Then google-cloud-auth's metadata-server ID tokens (the VM's account) pass the probes.
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "promoted");
    let service_url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    let requests = world.sim.id_token_requests();
    assert!(
        requests.contains(&(RUNNER_ACCOUNT.to_string(), service_url)),
        "{requests:?}"
    );
    assert!(!printed(&output).contains(JWT_START));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_iam_protected_service_and_only_an_access_token_when_a_rollout_runs_then_no_traffic_moves_and_the_reason_says_why()
 {
    let world = BinaryWorld::start("id-token-static").await;
    world.sim.require_id_token(Some(AudienceRule::Either));
    let _load = world.start_load(40.0);
    let mut command = quick_rollout(&world);
    command.env("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.static-access-token");

    // When a rollout runs on a bare access token, which cannot make an ID token.
    let output = binary::run(command).await;

    // Then the candidate's pre-traffic check fails, stable keeps every request, and the reason
    // names the credentials problem, not just "403".
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let result = json_of(&output);
    let reason = result["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("wants an ID token (it answered 403 without one)")
            && reason.contains("GOOGLE_OAUTH_ACCESS_TOKEN is an access token"),
        "{reason}"
    );
    assert!(
        !reason.contains("a problem of the service") && result["service_problem"] != true,
        "a refused probe is the probe's identity, not the service: {reason}"
    );
    assert_eq!(world.split(), world.stable_only());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_iam_protected_service_when_health_probes_it_then_the_audience_is_automatic_or_given_and_a_wrong_one_is_named()
 {
    let world = protected_world("id-token-health", AudienceRule::ServiceUrl).await;
    let credentials = through_service_account(&world);
    let service_url = world.sim.service_url(PROJECT, REGION, SERVICE).unwrap();
    let health = |args: &[&str]| {
        let mut command = world.command(args);
        command
            .env("GOOGLE_APPLICATION_CREDENTIALS", &credentials)
            .env(
                "GCE_METADATA_HOST",
                closed_port_url().trim_start_matches("http://"),
            );
        binary::run(command)
    };

    // When `health` probes the service by name (its URL read from Cloud Run), by URL with its
    // audience, and by URL with an audience the service does not accept.
    let by_name = health(&[
        "--json",
        "health",
        "--project",
        PROJECT,
        "--region",
        REGION,
        "--service",
        SERVICE,
    ])
    .await;
    // (A loopback URL is no `*.run.app` one, so by URL the audience is given.)
    let by_url = health(&[
        "--json",
        "health",
        "--url",
        &service_url,
        "--health-audience",
        &service_url,
    ])
    .await;
    let wrong = health(&[
        "--json",
        "health",
        "--url",
        &service_url,
        "--health-audience",
        "https://app.example.com",
    ])
    .await;

    // Then the first two are healthy, and the third is unhealthy, naming the audience it sent.
    for output in [&by_name, &by_url] {
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
        assert_eq!(json_of(output)["outcome"], "healthy");
        assert!(!printed(output).contains(JWT_START));
    }
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr_of(&wrong));
    let reason = json_of(&wrong)["results"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("answered HTTP 401")
            && reason.contains("the ID token was refused (audience https://app.example.com)"),
        "{reason}"
    );

    // And Workload Identity without a service account is told how to make ID tokens.
    let direct = world.workdir.join("direct.json");
    std::fs::write(&direct, external_account(&world.sim).to_string()).unwrap();
    let mut command = world.command(&[
        "--json",
        "health",
        "--project",
        PROJECT,
        "--region",
        REGION,
        "--service",
        SERVICE,
    ]);
    command.env("GOOGLE_APPLICATION_CREDENTIALS", &direct);
    let output = binary::run(command).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let reason = json_of(&output)["results"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("Workload Identity without a service account cannot make ID tokens"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_audience_that_is_not_one_is_refused_naming_the_flag_and_the_env_var() {
    let world = BinaryWorld::start("id-token-input").await;
    let flag = world
        .run(&[
            "health",
            "--url",
            "http://127.0.0.1:9",
            "--health-audience",
            "two words",
        ])
        .await;
    assert_eq!(flag.status.code(), Some(2), "{}", stderr_of(&flag));
    assert!(
        stderr_of(&flag).contains("--health-audience"),
        "{}",
        stderr_of(&flag)
    );
    let mut command = world.command(&["health", "--url", "http://127.0.0.1:9"]);
    command.env("SHIFTGATE_HEALTH_AUDIENCE", " ");
    let env = binary::run(command).await;
    assert_eq!(env.status.code(), Some(2), "{}", stderr_of(&env));
    assert!(
        stderr_of(&env).contains("SHIFTGATE_HEALTH_AUDIENCE"),
        "{}",
        stderr_of(&env)
    );
}
