//! The world the black-box scenarios start from: a simulated Cloud Run with one service, and the
//! `shiftgate` binary pointed at it from a work directory of its own, with nothing else inherited.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use shiftgate::clock::Clock;
use shiftgate_sim::{Behavior, GitHubSim, LoadHandle, Sim};

use super::binary;

pub const PROJECT: &str = "loopcloser";
pub const REGION: &str = "us-central1";
pub const SERVICE: &str = "loopcloser-dev";
/// What the service runs when the world starts.
pub const STABLE_IMAGE: &str = "registry/app:v1.0.0";
/// The image the scenarios roll out.
pub const CANDIDATE_IMAGE: &str = "registry/app:v1.1.0";

/// The flags that address the world's service.
pub const SERVICE_ARGS: [&str; 6] = [
    "--project",
    PROJECT,
    "--region",
    REGION,
    "--service",
    SERVICE,
];

/// A rollout of the candidate short enough for a test: steps 50 and 100, each baked for one
/// second and judged on at least 5 requests, metrics read at once.
pub const QUICK_ROLLOUT: &[&str] = &[
    "rollout",
    "--image",
    CANDIDATE_IMAGE,
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
];

/// The same two steps baked for two seconds and judged on 10 requests: long enough for a
/// candidate failing 40% of 40 requests a second to be caught in its first step.
pub const BAD_CANDIDATE_ROLLOUT: &[&str] = &[
    "rollout",
    "--json",
    "--image",
    CANDIDATE_IMAGE,
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
];

/// The binary with an empty environment, run from `workdir` with nothing on stdin.
pub fn shiftgate(workdir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shiftgate"));
    command
        .args(args)
        .env_clear()
        .current_dir(workdir)
        .stdin(Stdio::null());
    command
}

/// A directory of one test's own (`shiftgate-{name}-{pid}`), so that config files and credentials
/// written there are seen by no other test.
pub fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shiftgate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Points `command` at the fake GitHub, with a token.
pub fn with_github<'c>(command: &'c mut Command, github: &GitHubSim) -> &'c mut Command {
    command
        .env("GITHUB_API_URL", github.api_url())
        .env("GITHUB_TOKEN", "test-token")
}

/// The URL of a loopback port nothing listens on: a connection there is refused at once.
pub fn closed_port_url() -> String {
    // Bound but never listening: a connection is refused, and since the socket stays bound for
    // the life of the test process, no other test's server can be given this port.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    std::mem::forget(socket);
    url
}

/// A Workload Identity credentials file's content, for the simulator's STS and subject token.
pub fn external_account(sim: &Sim) -> Value {
    serde_json::json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/github/providers/github",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": sim.sts_url(),
        "credential_source": {"url": sim.subject_token_url(), "format": {"type": "text"}}
    })
}

/// The binary refused its input before doing anything: exit 2, and stderr names `flag`.
#[track_caller]
pub fn expect_refused_naming(output: &Output, flag: &str, case: &dyn std::fmt::Debug) {
    let stderr = binary::stderr_of(output);
    assert_eq!(output.status.code(), Some(2), "{case:?}: {stderr}");
    assert!(stderr.contains(flag), "{case:?}: {stderr}");
}

/// The simulator with the service as `gcloud run deploy` of [`STABLE_IMAGE`] left it (changes
/// take 50 ms to apply), and a work directory for the binary.
pub struct BinaryWorld {
    pub sim: Sim,
    pub stable: String,
    pub workdir: PathBuf,
}

impl BinaryWorld {
    /// `label` names the work directory, with the simulator's port so that each world has its own.
    pub async fn start(label: &str) -> Self {
        let sim = Sim::start(Clock::new()).await.unwrap();
        sim.set_operation_delay(Duration::from_millis(50));
        let stable = sim.add_service(PROJECT, REGION, SERVICE, STABLE_IMAGE);
        let port = sim.cloud_run_url().rsplit(':').next().unwrap().to_string();
        let workdir = workdir(&format!("{label}-{port}"));
        Self {
            sim,
            stable,
            workdir,
        }
    }

    /// The binary with `args`, calling the simulator's Cloud Run, Monitoring and Logging.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = shiftgate(&self.workdir, args);
        command
            .env("SHIFTGATE_CLOUD_RUN_URL", self.sim.cloud_run_url())
            .env("SHIFTGATE_MONITORING_URL", self.sim.monitoring_url())
            .env("SHIFTGATE_LOGGING_URL", self.sim.logging_url());
        command
    }

    /// The same, addressed to the world's service.
    pub fn service_command(&self, args: &[&str]) -> Command {
        let mut command = self.command(args);
        command.args(SERVICE_ARGS);
        command
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        binary::run(self.command(args)).await
    }

    pub async fn run_on_service(&self, args: &[&str]) -> Output {
        binary::run(self.service_command(args)).await
    }

    /// Sends requests to the service at `rps` until the handle is dropped.
    pub fn start_load(&self, rps: f64) -> LoadHandle {
        self.sim.start_load(PROJECT, REGION, SERVICE, rps)
    }

    /// From now on the candidate image answers `share` of its requests with a 5xx.
    pub fn candidate_fails(&self, share: f64) {
        self.sim
            .register_image(CANDIDATE_IMAGE, Behavior::erroring("1.1.0", share));
    }

    pub fn split(&self) -> Vec<(String, u8)> {
        self.sim.model().current_split(PROJECT, REGION, SERVICE)
    }

    /// The split with all traffic on the stable revision.
    pub fn stable_only(&self) -> Vec<(String, u8)> {
        vec![(self.stable.clone(), 100)]
    }

    /// Writes [`external_account`] into the work directory and returns its path.
    pub fn write_external_account(&self) -> PathBuf {
        let path = self.workdir.join("external_account.json");
        std::fs::write(&path, external_account(&self.sim).to_string()).unwrap();
        path
    }

    /// Waits until a rollout run by the binary has applied its first step's split.
    pub async fn wait_for_first_step(&self) {
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
}
