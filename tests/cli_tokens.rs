//! Credentials through the real binary, with every log switched to trace: tokens never appear in
//! anything it prints, Workload Identity tokens that expire mid-rollout are replaced, and a refused
//! static token is called what it is.

use crate::support::binary;

use binary::{json_of, stderr_of};

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use shiftgate::clock::Clock;
use shiftgate_sim::Sim;

const PROJECT: &str = "loopcloser";
const REGION: &str = "us-central1";
const SERVICE: &str = "loopcloser-dev";
const STATIC_TOKEN: &str = "ya29.static-token-that-must-never-be-printed";

struct Fixture {
    sim: Sim,
    workdir: PathBuf,
}

impl Fixture {
    async fn start() -> Self {
        let sim = Sim::start(Clock::new()).await.unwrap();
        sim.set_operation_delay(Duration::from_millis(50));
        sim.add_service(PROJECT, REGION, SERVICE, "registry/app:v1.0.0");
        let workdir = std::env::temp_dir().join(format!(
            "shiftgate-tokens-{}-{}",
            std::process::id(),
            sim.cloud_run_url().rsplit(':').next().unwrap()
        ));
        std::fs::create_dir_all(&workdir).unwrap();
        Self { sim, workdir }
    }

    /// The binary against the simulator, logging everything it can.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shiftgate"));
        command
            .args(args)
            .args([
                "--project",
                PROJECT,
                "--region",
                REGION,
                "--service",
                SERVICE,
            ])
            .env_clear()
            .env("SHIFTGATE_CLOUD_RUN_URL", self.sim.cloud_run_url())
            .env("SHIFTGATE_MONITORING_URL", self.sim.monitoring_url())
            .env("SHIFTGATE_LOG", "trace")
            .env("RUST_LOG", "trace")
            .current_dir(&self.workdir)
            .stdin(Stdio::null());
        command
    }

    fn external_account(&self) -> PathBuf {
        let path = self.workdir.join("external_account.json");
        std::fs::write(
            &path,
            serde_json::json!({
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/github/providers/github",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": self.sim.sts_url(),
                "credential_source": {"url": self.sim.subject_token_url(), "format": {"type": "text"}}
            })
            .to_string(),
        )
        .unwrap();
        path
    }
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn rollout_args() -> Vec<&'static str> {
    vec![
        "--json",
        "rollout",
        "--image",
        "registry/app:v1.1.0",
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
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_token_appears_nowhere_in_trace_output_and_a_refused_one_is_named() {
    // Given APIs that accept only the static token, and a binary logging at trace.
    let fixture = Fixture::start().await;
    fixture
        .sim
        .require_bearer(Some(vec![STATIC_TOKEN.to_string()]));
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 40.0);

    // When a rollout and a status run with it.
    let mut rollout = fixture.command(&rollout_args());
    rollout.env("GOOGLE_OAUTH_ACCESS_TOKEN", STATIC_TOKEN);
    let rolled = binary::run(rollout).await;
    let mut status = fixture.command(&["--json", "status"]);
    status.env("GOOGLE_OAUTH_ACCESS_TOKEN", STATIC_TOKEN);
    let status = binary::run(status).await;

    // Then both work, the token was sent, and not one byte of it was printed.
    assert_eq!(rolled.status.code(), Some(0), "{}", stderr_of(&rolled));
    assert_eq!(json_of(&rolled)["outcome"], "promoted");
    assert_eq!(status.status.code(), Some(0), "{}", stderr_of(&status));
    assert!(fixture.sim.seen_tokens().iter().all(|t| t == STATIC_TOKEN));
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
    let mut refused = fixture.command(&["--json", "status"]);
    refused.env("GOOGLE_OAUTH_ACCESS_TOKEN", refused_token);
    let refused = binary::run(refused).await;
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
    let fixture = Fixture::start().await;
    fixture.sim.require_bearer(Some(Vec::new()));
    fixture.sim.set_token_lifetime(Duration::from_secs(2));
    let _load = fixture.sim.start_load(PROJECT, REGION, SERVICE, 40.0);
    let credentials = fixture.external_account();
    let mut command = fixture.command(&rollout_args());
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
    let mut used = fixture.sim.seen_tokens();
    used.sort();
    used.dedup();
    eprintln!(
        "binary rollout on 2-second tokens: {lasted:?}, {} tokens issued, {} used",
        fixture.sim.issued_tokens(),
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
