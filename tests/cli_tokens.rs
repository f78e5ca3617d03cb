//! Credentials through the real binary, logging at trace: no token is ever printed, expiring
//! Workload Identity tokens are replaced, a refused one is named, none at all is exit 2 at once.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::binary::{self, json_of, stderr_of};
use crate::support::world::{
    BinaryWorld, CANDIDATE_IMAGE, QUICK_ROLLOUT, SERVICE_ARGS, closed_port_url, external_account,
    shiftgate, workdir,
};

const STATIC_TOKEN: &str = "ya29.static-token-that-must-never-be-printed";

/// The binary against the world's service, logging everything it can.
fn tracing_command(world: &BinaryWorld, args: &[&str]) -> Command {
    let mut command = world.service_command(args);
    command
        .env("SHIFTGATE_LOG", "trace")
        .env("RUST_LOG", "trace");
    command
}

/// Runs the traced binary with `token` as its static access token.
async fn run_with_static_token(world: &BinaryWorld, args: &[&str], token: &str) -> Output {
    let mut command = tracing_command(world, args);
    command.env("GOOGLE_OAUTH_ACCESS_TOKEN", token);
    binary::run(command).await
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn rollout_args() -> Vec<&'static str> {
    let mut args = vec!["--json"];
    args.extend(QUICK_ROLLOUT);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_token_appears_nowhere_in_trace_output_and_a_refused_one_is_named() {
    // Given APIs that accept only the static token, and a binary logging at trace.
    let world = BinaryWorld::start("tokens").await;
    world
        .sim
        .require_bearer(Some(vec![STATIC_TOKEN.to_string()]));
    let _load = world.start_load(40.0);

    // When a rollout and a status run with it.
    let rolled = run_with_static_token(&world, &rollout_args(), STATIC_TOKEN).await;
    let status = run_with_static_token(&world, &["--json", "status"], STATIC_TOKEN).await;

    // Then both work, the token was sent, and not one byte of it was printed.
    assert_eq!(rolled.status.code(), Some(0), "{}", stderr_of(&rolled));
    assert_eq!(json_of(&rolled)["outcome"], "promoted");
    assert_eq!(status.status.code(), Some(0), "{}", stderr_of(&status));
    assert!(world.sim.seen_tokens().iter().all(|t| t == STATIC_TOKEN));
    for output in [&rolled, &status] {
        assert!(
            printed(output).contains("TRACE"),
            "trace logging is on, or this proves nothing"
        );
        assert!(!printed(output).contains(STATIC_TOKEN));
        assert!(!printed(output).contains("static-token-that"));
    }

    // And a token the API refuses is not retried, and the user is told it cannot be refreshed.
    let refused_token = "ya29.expired-token-also-never-printed";
    let refused = run_with_static_token(&world, &["--json", "status"], refused_token).await;
    assert_eq!(refused.status.code(), Some(3), "{}", stderr_of(&refused));
    assert!(
        stderr_of(&refused).contains(
            "the access token in GOOGLE_OAUTH_ACCESS_TOKEN was rejected (expired?); it cannot be refreshed"
        ),
        "{}",
        stderr_of(&refused)
    );
    assert!(!printed(&refused).contains(refused_token));
    assert!(
        !printed(&refused).contains("retrying"),
        "a 401 is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_outliving_its_workload_identity_tokens_promotes_and_prints_none_of_them() {
    // Given an STS whose tokens live 2 seconds, and APIs that refuse anything else.
    let world = BinaryWorld::start("tokens").await;
    world.sim.require_bearer(Some(Vec::new()));
    world.sim.set_token_lifetime(Duration::from_secs(2));
    let _load = world.start_load(40.0);
    let credentials = world.write_external_account();
    let mut command = tracing_command(&world, &rollout_args());
    command.env("GOOGLE_APPLICATION_CREDENTIALS", &credentials);
    let started = std::time::Instant::now();

    // When the binary runs a rollout on Workload Identity, in real time. (google-cloud-auth
    // refreshes a token with under four minutes left every 10 s and holds callers until then, so
    // this takes about 11 s; real tokens live an hour and are refreshed 4 minutes early.)
    let output = binary::run(command).await;

    // Then it promotes on more than one token, and prints none of them.
    let lasted = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["outcome"], "promoted");
    let mut used = world.sim.seen_tokens();
    used.sort();
    used.dedup();
    eprintln!(
        "binary rollout on 2-second tokens: {lasted:?}, {} tokens issued, {} used",
        world.sim.issued_tokens(),
        used.len()
    );
    assert!(
        lasted > Duration::from_secs(2),
        "{lasted:?}: shorter than one token"
    );
    assert!(used.len() >= 2, "{used:?}");
    for token in &used {
        assert!(
            !printed(&output).contains(token.as_str()),
            "{token} printed"
        );
    }
    assert!(!printed(&output).contains(shiftgate_sim::SUBJECT_TOKEN));
}

/// A loopback listener that accepts nothing: a request sent to it would be waiting there.
fn silent_listener() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

/// `host:port` of a loopback port nothing listens on.
fn closed_host() -> String {
    closed_port_url().trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_google_credentials_anywhere_when_status_or_rollout_runs_then_it_exits_2_naming_the_three_fixes_before_any_request()
 {
    // Given an empty environment and an empty HOME (no token, no credentials file, no gcloud
    // ADC), Google endpoints that need a token (https, on a loopback listener that records any
    // connection), and the metadata server probe kept on loopback, where nothing answers.
    let dir = workdir("no-credentials");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let google = silent_listener();
    let endpoint = format!("https://{}", google.local_addr().unwrap());
    let metadata_host = closed_host();

    for args in [
        vec!["status", "--json"],
        vec!["rollout", "--json", "--image", CANDIDATE_IMAGE],
    ] {
        // When status or a rollout runs.
        let mut command = shiftgate(&dir, &args);
        command
            .args(SERVICE_ARGS)
            .env("HOME", &home)
            .env("GCE_METADATA_HOST", &metadata_host)
            .env("SHIFTGATE_CLOUD_RUN_URL", &endpoint)
            .env("SHIFTGATE_MONITORING_URL", &endpoint);
        let output = binary::run(command).await;

        // Then it is a configuration error that says how to fix it, three ways.
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        for fix in [
            "no Google credentials",
            "gcloud auth application-default login",
            "GOOGLE_OAUTH_ACCESS_TOKEN",
            "google-github-actions/auth",
        ] {
            assert!(stderr.contains(fix), "{args:?} lacks {fix:?}: {stderr}");
        }
        assert!(!stderr.contains("transient"), "{stderr}");
        let result = json_of(&output);
        assert_eq!(result["outcome"], "error");
        assert_eq!(result["exit_code"], 2);
    }

    // And nothing was sent to Google.
    assert_eq!(
        google.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a connection reached the Cloud Run endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_gcloud_adc_in_home_when_the_api_is_unreachable_then_it_is_an_api_failure_not_missing_credentials()
 {
    // Given gcloud's ADC file under HOME (a Workload Identity configuration for the simulator's
    // STS) and a Cloud Run endpoint that needs a token but refuses connections.
    let world = BinaryWorld::start("adc-home").await;
    let home = world.workdir.join("home");
    let gcloud = home.join(".config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    std::fs::write(
        gcloud.join("application_default_credentials.json"),
        external_account(&world.sim).to_string(),
    )
    .unwrap();
    let unreachable = closed_port_url().replace("http://", "https://");

    // When status runs.
    let mut command = shiftgate(&world.workdir, &["status", "--json", "--timeout", "2s"]);
    command
        .args(SERVICE_ARGS)
        .env("HOME", &home)
        .env("GCE_METADATA_HOST", closed_host())
        .env("SHIFTGATE_CLOUD_RUN_URL", &unreachable);
    let output = binary::run(command).await;

    // Then the credentials were found and used, and the failure is the API's: exit 3.
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("no Google credentials"), "{stderr}");
    assert!(world.sim.issued_tokens() >= 1, "the STS was never asked");
}
