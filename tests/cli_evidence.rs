//! Black-box tests of the evidence in a rollback's incident: the candidate's error log lines from
//! the simulator's Cloud Logging, the revisions with their images, and the undo/retry commands.

use serde_json::Value;
use shiftgate::clock::Clock;
use shiftgate_sim::{AppLog, Behavior, GitHubSim, LoadHandle};

use crate::support::binary::{json_of, run, stderr_of};
use crate::support::world::{
    BAD_CANDIDATE_ROLLOUT, BinaryWorld, CANDIDATE_IMAGE, PROJECT, REGION, SERVICE, STABLE_IMAGE,
    closed_port_url, with_github,
};

/// A loopcloser-dev under load whose v1.1.0 answers 40% 5xx, and a config naming it `prod`.
async fn bad_candidate(label: &str) -> (BinaryWorld, LoadHandle, GitHubSim) {
    let world = BinaryWorld::start(label).await;
    std::fs::write(
        world.workdir.join("shiftgate.toml"),
        format!(
            "[environments.prod]\nproject = \"{PROJECT}\"\nregion = \"{REGION}\"\n\
             service = \"{SERVICE}\"\n"
        ),
    )
    .unwrap();
    world.candidate_fails(0.4);
    let load = world.start_load(40.0);
    let github = GitHubSim::start(Clock::new(), "loopcloser", "app")
        .await
        .unwrap();
    (world, load, github)
}

/// The rollout rolled back and filed exactly one incident: its result, the issue's body, stderr.
async fn rolled_back_with_one_incident(
    world: &BinaryWorld,
    github: &GitHubSim,
    address: &[&str],
) -> (Value, String, String) {
    rolled_back_with_one_incident_given(world, github, address, |_| {}).await
}

/// The same, with the command adjusted first (e.g. another Logging URL).
async fn rolled_back_with_one_incident_given(
    world: &BinaryWorld,
    github: &GitHubSim,
    address: &[&str],
    adjust: impl FnOnce(&mut std::process::Command),
) -> (Value, String, String) {
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(address);
    args.extend(["--repo", "loopcloser/app"]);
    let mut command = world.command(&args);
    with_github(&mut command, github);
    adjust(&mut command);
    let output = run(command).await;
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let result = json_of(&output);
    assert_eq!(result["outcome"], "rolled_back", "{result}");
    assert_eq!(result["incident"]["filed"], true, "{}", result["incident"]);
    assert_eq!(result["incident"]["action"], "created");
    let issues = github.issues();
    assert_eq!(issues.len(), 1, "exactly one incident");
    (result, issues[0].body.clone(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bad_candidate_when_rollout_rolls_back_then_the_incident_carries_its_5xx_log_lines_the_revisions_and_the_commands()
 {
    let (world, _load, github) = bad_candidate("evidence").await;

    // When the rollout of the bad candidate to environment prod rolls back.
    let (result, body, _) =
        rolled_back_with_one_incident(&world, &github, &["--env", "prod"]).await;
    let candidate = result["candidate"].as_str().unwrap();

    // Then the body holds the candidate's newest error entries exactly as the simulator's Cloud
    // Logging recorded them (a request log line with its status, and the app's own line),
    let entries = world.sim.model().log_entries(candidate);
    let errors: Vec<&Value> = entries
        .iter()
        .filter(|e| e["severity"] == "ERROR")
        .collect();
    assert!(
        errors.len() >= 2,
        "the candidate failed requests: {entries:?}"
    );
    let shown = errors.len().min(20);
    assert!(
        body.contains(&format!(
            "The last {shown} entries at ERROR or above since "
        )),
        "{body}"
    );
    for entry in errors.iter().rev().take(shown) {
        let line = match entry.get("httpRequest") {
            Some(http) => format!(
                "{} ERROR 500 GET {}\n",
                entry["timestamp"].as_str().unwrap(),
                http["requestUrl"].as_str().unwrap()
            ),
            None => format!(
                "{} ERROR {}\n",
                entry["timestamp"].as_str().unwrap(),
                entry["textPayload"].as_str().unwrap()
            ),
        };
        assert!(body.contains(&line), "{line:?} in {body}");
    }
    assert!(
        body.contains(" ERROR internal error while handling /\n"),
        "{body}"
    );
    // the revisions with their images and ages, stable and candidate marked,
    let row = |name: &str| {
        body.lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("no row for {name} in {body}"))
            .to_string()
    };
    let (candidate_row, stable_row) = (row(candidate), row(&world.stable));
    assert!(
        candidate_row.starts_with(&format!("| `{candidate}` | `{CANDIDATE_IMAGE}` | "))
            && candidate_row.ends_with(" | **candidate** (rolled back) |"),
        "{candidate_row}"
    );
    assert!(
        stable_row.starts_with(&format!("| `{}` | `{STABLE_IMAGE}` | ", world.stable))
            && stable_row.ends_with(" | **stable** |"),
        "{stable_row}"
    );
    // and the commands that undo or retry it, addressed by the environment.
    for command in [
        format!("shiftgate rollback --env prod --to {}", world.stable),
        format!("shiftgate rollout --env prod --revision {candidate}"),
        format!("shiftgate rollout --env prod --image {CANDIDATE_IMAGE}"),
    ] {
        assert!(
            body.contains(&format!("\n{command}\n")),
            "{command} in {body}"
        );
    }
    // The step table is still there.
    assert!(body.contains("| step | traffic |"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_logging_permission_when_rollout_rolls_back_then_the_incident_is_filed_with_a_note()
 {
    let (world, _load, github) = bad_candidate("evidence-denied").await;
    world.sim.deny_logging(true);

    // When the rollout, addressed by coordinates, rolls back.
    let address = [
        "--project",
        PROJECT,
        "--region",
        REGION,
        "--service",
        SERVICE,
    ];
    let (result, body, stderr) = rolled_back_with_one_incident(&world, &github, &address).await;
    let candidate = result["candidate"].as_str().unwrap();

    // Then the incident says in one line why there are no logs, and has everything else.
    let note = "Error logs could not be read: `rejected (403): PERMISSION_DENIED (HTTP 403) from ";
    assert_eq!(body.matches(note).count(), 1, "{body}");
    assert!(
        body.contains("(reading logs needs roles/logging.viewer on the project)`\n"),
        "{body}"
    );
    assert!(
        stderr
            .contains("incident: error logs could not be read: rejected (403): PERMISSION_DENIED"),
        "{stderr}"
    );
    assert!(
        body.contains(&format!("| `{}` | `{STABLE_IMAGE}` | ", world.stable)),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "\nshiftgate rollback --project {PROJECT} --region {REGION} --service {SERVICE} --to {}\n",
            world.stable
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "\nshiftgate rollout --project {PROJECT} --region {REGION} --service {SERVICE} --revision {candidate}\n"
        )),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_candidate_that_logs_secrets_when_rollout_rolls_back_then_no_secret_reaches_the_incident()
 {
    let (world, _load, github) = bad_candidate("evidence-secrets").await;
    // Given a candidate whose every failed request logs a JSON line full of credentials: a
    // camelCase key, a space before the colon and a value with an escaped quote in it.
    let leaky = r#"db login failed: {"user" : "app", "password" : "hunter2\"tail-of-pw", "privateKey":"PK-1234-SECRET", "apiToken":"tok-5678-SECRET"}"#;
    world.sim.register_image(
        CANDIDATE_IMAGE,
        Behavior::erroring("1.1.0", 0.4).with_error_log(AppLog::Text(leaky.to_string())),
    );

    // When the rollout rolls back and files its incident,
    let (_, body, _) = rolled_back_with_one_incident(&world, &github, &["--env", "prod"]).await;

    // Then the line is there with every value redacted, and no part of a secret is in the body.
    assert!(
        body.contains(
            r#" ERROR db login failed: {"user" : "app", "password" : "[REDACTED]", "privateKey":"[REDACTED]", "apiToken":"[REDACTED]"}"#
        ),
        "{body}"
    );
    for secret in ["hunter2", "tail-of-pw", "PK-1234", "tok-5678", "SECRET"] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
}

/// Calls the simulator's Cloud Logging received.
fn logging_calls(world: &BinaryWorld) -> usize {
    world
        .sim
        .model()
        .request_log()
        .iter()
        .filter(|call| call.path == "/v2/entries:list")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_no_incident_will_be_filed_when_rollout_rolls_back_then_no_logs_are_read() {
    let (world, _load, github) = bad_candidate("evidence-none").await;

    // When the bad candidate rolls back with --no-incident, and again with no repository.
    let mut args = BAD_CANDIDATE_ROLLOUT.to_vec();
    args.extend(["--env", "prod", "--repo", "loopcloser/app", "--no-incident"]);
    let mut no_incident = world.command(&args);
    with_github(&mut no_incident, &github);
    let mut no_repo = world.command(&[BAD_CANDIDATE_ROLLOUT, &["--env", "prod"]].concat());
    with_github(&mut no_repo, &github);
    for command in [no_incident, no_repo] {
        let output = run(command).await;
        assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
        assert_eq!(json_of(&output)["incident"]["filed"], false);
    }

    // Then nothing was filed and Cloud Logging was never asked.
    assert!(github.issues().is_empty());
    assert_eq!(logging_calls(&world), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_unreachable_logging_api_when_rollout_rolls_back_then_the_incident_is_filed_with_a_note()
 {
    let (world, _load, github) = bad_candidate("evidence-unreachable").await;
    let closed = closed_port_url();

    // When Cloud Logging refuses every connection (retried until the evidence's bound).
    let (_, body, _) =
        rolled_back_with_one_incident_given(&world, &github, &["--env", "prod"], |command| {
            command.env("SHIFTGATE_LOGGING_URL", &closed);
        })
        .await;

    // Then the incident is there with one line for the logs, and the revisions and commands.
    let notes: Vec<&str> = body
        .lines()
        .filter(|line| line.starts_with("Error logs could not be read: `"))
        .collect();
    assert_eq!(notes.len(), 1, "{body}");
    assert!(notes[0].contains(&closed), "{}", notes[0]);
    assert!(body.contains("| **stable** |"), "{body}");
    assert!(
        body.contains(&format!(
            "\nshiftgate rollback --env prod --to {}\n",
            world.stable
        )),
        "{body}"
    );
}
