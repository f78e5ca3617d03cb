//! The GitHub Action in a simulated runner: action.yml's step and action/run.sh with a local release
//! server, checksums, $GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY and signals, against the simulator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use shiftgate::clock::Clock;
use shiftgate_sim::Sim;

use crate::support::webhook::{Answer, SECRET, Webhook, masked};

const PROJECT: &str = "loopcloser";
const REGION: &str = "us-central1";
const SERVICE: &str = "loopcloser-dev";
const TAG: &str = "v9.8.7";
const ASSET: &str = "shiftgate-v9.8.7-x86_64-unknown-linux-musl";
/// The release of the action's own Cargo.toml version, which an empty github.action_ref means.
const CARGO_TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));
const CARGO_ASSET: &str = concat!(
    "shiftgate-v",
    env!("CARGO_PKG_VERSION"),
    "-x86_64-unknown-linux-musl"
);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_shiftgate"))
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}

/// A stand-in for the GitHub release download: serves the locally built binary as the x86_64
/// asset of `TAG` and of `CARGO_TAG`, and counts the downloads.
async fn release_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(std::fs::read(binary()).unwrap());
    let app = Router::new()
        .route(
            "/{tag}/{asset}",
            get(
                |State((bytes, hits)): State<(Arc<Vec<u8>>, Arc<AtomicUsize>)>,
                 UrlPath((tag, asset)): UrlPath<(String, String)>| async move {
                    let known = (tag == TAG && asset == ASSET)
                        || (tag == CARGO_TAG && asset == CARGO_ASSET);
                    if !known {
                        return Err(StatusCode::NOT_FOUND);
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    Ok(bytes.as_ref().clone())
                },
            ),
        )
        .with_state((bytes, hits.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

/// One simulated runner: temp dirs and files the runner would provide, the simulator, and the
/// release server.
struct Runner {
    sim: Sim,
    stable: String,
    dir: PathBuf,
    release_url: String,
    downloads: Arc<AtomicUsize>,
}

impl Runner {
    async fn start(name: &str) -> Self {
        let sim = Sim::start(Clock::new()).await.unwrap();
        sim.set_operation_delay(Duration::from_millis(50));
        let stable = sim.add_service(PROJECT, REGION, SERVICE, "registry/app:v1.0.0");
        let dir =
            std::env::temp_dir().join(format!("shiftgate-action-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["cache", "temp", "work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let (release_url, downloads) = release_server().await;
        let runner = Self {
            sim,
            stable,
            dir,
            release_url,
            downloads,
        };
        runner.write_checksums(&sha256(binary()));
        runner
    }

    fn write_checksums(&self, sha: &str) {
        self.write_checksums_of(sha, ASSET);
    }

    fn write_checksums_of(&self, sha: &str, asset: &str) {
        std::fs::write(
            self.dir.join("checksums.txt"),
            format!("# test release\n{sha}  {asset}\n"),
        )
        .unwrap();
    }

    /// The composite step exactly as action.yml has it, run the way the runner runs a bash step.
    fn step(&self, ref_name: &str, command: &str) -> Command {
        let action = std::fs::read_to_string(root().join("action.yml")).unwrap();
        let run = action
            .lines()
            .find_map(|line| line.trim().strip_prefix("run: "))
            .expect("action.yml has a one-line run: step");
        assert!(run.starts_with("exec "), "the step must exec: {run}");
        let script = self.dir.join("temp/step.sh");
        std::fs::write(&script, format!("{run}\n")).unwrap();

        let mut step = Command::new("bash");
        step.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_ACTION_PATH", root())
            .env("GITHUB_OUTPUT", self.dir.join("output"))
            .env("GITHUB_STEP_SUMMARY", self.dir.join("summary.md"))
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env("RUNNER_TOOL_CACHE", self.dir.join("cache"))
            .env("RUNNER_TEMP", self.dir.join("temp"))
            .env("GITHUB_TOKEN", "ghs_secret_token_value")
            .env("SHIFTGATE_ACTION_REF", ref_name)
            .env("SHIFTGATE_ACTION_REPOSITORY", "shiftgate/shiftgate")
            .env("SHIFTGATE_ACTION_COMMAND", command)
            .env("SHIFTGATE_RELEASE_BASE_URL", &self.release_url)
            .env("SHIFTGATE_CHECKSUMS_FILE", self.dir.join("checksums.txt"))
            .env("SHIFTGATE_CLOUD_RUN_URL", self.sim.cloud_run_url())
            .env("SHIFTGATE_MONITORING_URL", self.sim.monitoring_url())
            .env("SHIFTGATE_PROJECT", PROJECT)
            .env("SHIFTGATE_REGION", REGION)
            .env("SHIFTGATE_SERVICE", SERVICE)
            // Inputs left empty arrive as empty variables: they must mean "not given".
            .env("SHIFTGATE_REVISION", "")
            .env("SHIFTGATE_DRY_RUN", "")
            .env("SHIFTGATE_ENV", "")
            .env("SHIFTGATE_ACTION_ARGS", "")
            .current_dir(self.dir.join("work"))
            .stdin(Stdio::null());
        step
    }

    fn rollout_step(&self, ref_name: &str) -> Command {
        let mut step = self.step(ref_name, "rollout");
        step.env("SHIFTGATE_IMAGE", "registry/app:v1.1.0")
            .env("SHIFTGATE_METRICS_DELAY", "0s")
            .env("SHIFTGATE_NO_INCIDENT", "true");
        step
    }

    async fn run(&self, command: Command) -> Output {
        let mut command = command;
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    fn outputs(&self) -> HashMap<String, String> {
        let text = std::fs::read_to_string(self.dir.join("output")).unwrap_or_default();
        let mut outputs = HashMap::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let (name, delimiter) = line
                .split_once("<<")
                .unwrap_or_else(|| panic!("not a heredoc output: {line:?} in {text}"));
            assert!(delimiter.starts_with("ghadelimiter_"), "{delimiter}");
            let mut value = Vec::new();
            for line in lines.by_ref() {
                if line == delimiter {
                    break;
                }
                value.push(line);
            }
            outputs.insert(name.to_string(), value.join("\n"));
        }
        outputs
    }

    fn split(&self) -> Vec<(String, u8)> {
        self.sim.model().current_split(PROJECT, REGION, SERVICE)
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_action_downloads_verifies_and_runs_a_rollout_writing_outputs_and_summary() {
    let runner = Runner::start("rollout").await;
    let _load = runner.sim.start_load(PROJECT, REGION, SERVICE, 40.0);
    let slack = Webhook::start(Answer::Slack).await;
    let broken = Webhook::start(Answer::ServerError).await;
    let mut step = runner.rollout_step("v9");
    step.env("SHIFTGATE_STEPS", "50,100")
        .env("SHIFTGATE_BAKE", "1s")
        .env("SHIFTGATE_INTERVAL", "250ms")
        .env("SHIFTGATE_MIN_REQUESTS", "5")
        // The `notify` input: one URL per line, blank lines and spaces around them allowed.
        .env(
            "SHIFTGATE_ACTION_NOTIFY",
            format!("  {}\n\n{}  \n", slack.url, broken.url),
        );

    let output = runner.run(step).await;

    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(slack.texts().len(), 2, "start and promotion");
    // The runner hides each whole URL from its mask on; shiftgate itself only shows it masked.
    let mut unmasked = stderr.clone();
    for hook in [&slack, &broken] {
        let mask = format!("::add-mask::{}", hook.url);
        assert_eq!(stderr.matches(&mask).count(), 1, "{stderr}");
        unmasked = unmasked.replace(&mask, "");
    }
    assert!(!unmasked.contains(SECRET), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "::warning title=shiftgate notify::notification `started` to {} was not delivered",
            masked(&broken.url)
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("verified {ASSET}")), "{stderr}");
    assert_eq!(runner.downloads.load(Ordering::SeqCst), 1);
    assert!(
        stderr.contains("::add-mask::ghs_secret_token_value"),
        "{stderr}"
    );
    assert!(stderr.contains("::group::step 1: traffic "), "{stderr}");
    assert!(stderr.contains("::endgroup::"), "{stderr}");
    assert!(output.stdout.is_empty(), "no --json: stdout stays empty");

    let outputs = runner.outputs();
    assert_eq!(outputs["outcome"], "promoted");
    assert_eq!(outputs["exit-code"], "0");
    let candidate = outputs["revision"].clone();
    assert_ne!(candidate, runner.stable);
    assert_eq!(outputs["stable-revision"], runner.stable);
    let traffic: serde_json::Value = serde_json::from_str(&outputs["traffic"]).unwrap();
    assert_eq!(
        traffic,
        serde_json::json!([{"revision": candidate, "percent": 100}])
    );
    assert_eq!(runner.split(), vec![(candidate.clone(), 100)]);

    let summary = std::fs::read_to_string(runner.dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("### shiftgate rollout: ✅ promoted"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "| step | traffic | candidate requests | 5xx | 5xx rate | health | verdict | time |"
        ),
        "{summary}"
    );
    assert!(summary.contains("| 1 | 50% | "), "{summary}");
    assert!(summary.contains("| 2 | 100% | "), "{summary}");
    assert!(summary.contains("```mermaid\nxychart-beta\n"), "{summary}");
    assert!(summary.contains("    line [50, "), "{summary}");

    // A second step on the same runner uses the verified binary from the tool cache.
    let status = runner.run(runner.step("v9", "status")).await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr_of(&status));
    assert!(stderr_of(&status).contains("using cached"));
    assert_eq!(runner.downloads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_mismatch_is_refused_and_nothing_runs() {
    let runner = Runner::start("mismatch").await;
    runner.write_checksums(&"0".repeat(64));

    let output = runner.run(runner.rollout_step(TAG)).await;

    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(stderr.contains("refusing to run it"), "{stderr}");
    assert_eq!(runner.downloads.load(Ordering::SeqCst), 1);
    assert_eq!(runner.sim.model().write_count(), 0, "nothing was changed");
    assert!(!runner.dir.join("output").exists(), "shiftgate never ran");
    let cached = runner.dir.join("cache/shiftgate").join(TAG);
    let leftovers: Vec<_> = walk(&cached);
    assert!(leftovers.is_empty(), "nothing kept: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_to_the_step_process_reaches_shiftgate() {
    let runner = Runner::start("sigint").await;
    let _load = runner.sim.start_load(PROJECT, REGION, SERVICE, 20.0);
    let mut step = runner.rollout_step(TAG);
    step.env("SHIFTGATE_BAKE", "10m")
        .env("SHIFTGATE_INTERVAL", "1s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = step.spawn().unwrap();
    let pid = child.id();

    let mut waited = Duration::ZERO;
    while runner.split().len() < 2 {
        assert!(
            waited < Duration::from_secs(60),
            "the rollout never reached its first step"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    // The step's process is shiftgate itself: bash exec'd run.sh, which exec'd the binary.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe,
        runner
            .dir
            .join("cache/shiftgate")
            .join(TAG)
            .join("x86_64-unknown-linux-musl/shiftgate")
    );
    // A cancelled job: SIGINT to the step's own process only.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();

    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert_eq!(runner.split(), vec![(runner.stable.clone(), 100)]);
    assert_eq!(runner.outputs()["outcome"], "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_ref_builds_from_source_and_says_so() {
    let runner = Runner::start("branch").await;
    // A stand-in cargo that "builds" by copying the test's binary where cargo would put it.
    let bin = runner.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("cargo");
    std::fs::write(
        &fake,
        format!(
            "#!/usr/bin/env bash\nset -eu\necho \"$*\" >> '{log}'\n\
             while [ $# -gt 0 ]; do [ \"$1\" = --target-dir ] && dir=$2; shift; done\n\
             mkdir -p \"$dir/release\" && cp '{binary}' \"$dir/release/shiftgate\"\n",
            log = runner.dir.join("cargo.log").display(),
            binary = binary().display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let mut step = runner.step("main", "status");
    step.env(
        "PATH",
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );

    let output = runner.run(step).await;

    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("no release matches ref main")
            && stderr.contains("building shiftgate from source with cargo"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(runner.dir.join("cargo.log")).unwrap();
    assert!(log.starts_with("build --release --locked"), "{log}");
    assert_eq!(runner.downloads.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_action_ref_finds_the_release_of_the_actions_own_version() {
    // github.action_ref can arrive empty in a composite action (actions/runner#2473); the
    // checked-out action's Cargo.toml still says which release it is.
    let runner = Runner::start("empty-ref").await;
    runner.write_checksums_of(&sha256(binary()), CARGO_ASSET);
    // Should the release not be found, fail fast instead of a real source build.
    let bin = runner.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("cargo"), "#!/usr/bin/env bash\nexit 97\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(bin.join("cargo"))
        .status()
        .unwrap();
    let mut step = runner.step("", "status");
    step.env(
        "PATH",
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );

    let output = runner.run(step).await;

    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("github.action_ref is empty (actions/runner#2473)")
            && stderr.contains(CARGO_TAG),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("verified {CARGO_ASSET}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("building shiftgate from source"),
        "{stderr}"
    );
    assert_eq!(runner.downloads.load(Ordering::SeqCst), 1);
    assert_eq!(runner.outputs()["exit-code"], "0");
}

#[test]
fn every_input_of_the_action_reaches_the_step() {
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap();
    let inputs_section = action
        .split("\ninputs:\n")
        .nth(1)
        .and_then(|rest| rest.split("\noutputs:\n").next())
        .unwrap();
    let names: Vec<&str> = inputs_section
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   ") && line.ends_with(':'))
        .map(|line| line.trim().trim_end_matches(':'))
        .collect();
    assert!(names.len() > 30, "{names:?}");
    for name in names {
        assert!(
            action.contains(&format!("${{{{ inputs.{name} }}}}")),
            "input {name} is not passed to the step"
        );
    }
    for output in [
        "outcome",
        "revision",
        "stable-revision",
        "traffic",
        "run-id",
        "run-url",
        "incident-url",
        "url",
        "exit-code",
    ] {
        assert!(
            action.contains(&format!("${{{{ steps.shiftgate.outputs.{output} }}}}")),
            "output {output}"
        );
    }
}

#[test]
fn the_example_config_loads_with_every_environment() {
    let path = root().join("examples/shiftgate.toml");
    let config = shiftgate::Config::load(Some(&path)).unwrap();
    for environment in ["prod", "staging", "dev"] {
        let args = shiftgate::ServiceArgs {
            environment: Some(environment.into()),
            ..Default::default()
        };
        let address = config.resolve_service(&args).unwrap();
        assert_eq!(address.project, "loopcloser");
        assert_eq!(address.service, format!("loopcloser-{environment}"));
        // The webhooks come from the secrets deploy.yml passes; on-call hears of prod only.
        let webhooks = config
            .notify_targets(Some(environment), &[], |name| {
                Some(format!("https://hooks.slack.com/services/{name}/x"))
            })
            .unwrap();
        let expected = if environment == "prod" { 2 } else { 1 };
        assert_eq!(webhooks.urls.len(), expected, "{environment}");
    }
    let workflow = std::fs::read_to_string(root().join("examples/deploy.yml")).unwrap();
    for secret in ["SLACK_DEPLOYS_WEBHOOK_URL", "SLACK_ONCALL_WEBHOOK_URL"] {
        assert!(
            workflow.contains(&format!("{secret}: ${{{{ secrets.{secret} }}}}")),
            "deploy.yml passes {secret}"
        );
    }
}

#[test]
fn the_example_deploy_job_outlasts_the_prod_policys_worst_case() {
    // Given the example config's prod policy, layered as shiftgate layers it (prod's own policy,
    // then [policy], then the defaults; Cloud Monitoring's metrics delay).
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("examples/shiftgate.toml")).unwrap())
            .unwrap();
    let setting = |key: &str| {
        config["environments"]["prod"]["policy"]
            .get(key)
            .or_else(|| config["policy"].get(key))
            .cloned()
    };
    let defaults = shiftgate::Policy::default();
    let steps = setting("steps").map_or(defaults.steps.percents().len(), |steps| {
        steps.as_array().unwrap().len()
    }) as u32;
    let bake = setting("bake").map_or(defaults.bake, |bake| {
        humantime::parse_duration(bake.as_str().unwrap()).unwrap()
    });
    let step = shiftgate::Policy {
        bake,
        ..defaults.clone()
    }
    .step_deadline();
    let holds = setting("pause_at").map_or(0, |at| at.as_array().unwrap().len()) as u32;
    let hold = setting("pause_timeout").map_or(defaults.pause.timeout, |timeout| {
        humantime::parse_duration(timeout.as_str().unwrap()).unwrap()
    });
    let hooks = ["backup", "pre_job", "post_job", "on_rollback_job"]
        .iter()
        .filter(|key| setting(key).is_some())
        .count() as u32;
    let hook = setting("hook_timeout").map_or(defaults.hooks.timeout, |timeout| {
        humantime::parse_duration(timeout.as_str().unwrap()).unwrap()
    });
    let worst = step * steps
        + defaults.create_deadline
        + defaults.traffic_deadline * steps
        + hold * holds
        + hook * hooks;

    // When the example workflow's job timeout is read.
    let workflow = std::fs::read_to_string(root().join("examples/deploy.yml")).unwrap();
    let minutes: u64 = workflow
        .lines()
        .find_map(|line| line.trim().strip_prefix("timeout-minutes:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // Then the job is not cancelled before a rollout could end on its own.
    assert!(
        minutes * 60 >= worst.as_secs(),
        "timeout-minutes: {minutes} is below the worst case {}",
        humantime::format_duration(worst)
    );
    // And its cancel cleanup is green when stable was already restored.
    assert!(workflow.contains("if-in-progress: true"), "{workflow}");
}

#[test]
fn the_example_uptime_workflow_checks_every_few_minutes_and_reviews_daily_through_the_action() {
    let workflow = std::fs::read_to_string(root().join("examples/uptime.yml")).unwrap();
    let action = std::fs::read_to_string(root().join("action.yml")).unwrap();

    // A cron every 5 minutes, and a daily one that the review job keys on.
    let crons: Vec<&str> = workflow
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- cron: "))
        .map(|cron| cron.split('#').next().unwrap().trim().trim_matches('"'))
        .collect();
    assert_eq!(crons.len(), 2, "{crons:?}");
    assert_eq!(crons[0], "*/5 * * * *");
    let daily: Vec<&str> = crons[1].split(' ').collect();
    assert!(
        daily[..2].iter().all(|f| f.parse::<u8>().is_ok()) && daily[2..] == ["*", "*", "*"],
        "daily: {crons:?}"
    );
    assert!(
        workflow.contains(&format!("github.event.schedule == '{}'", crons[1])),
        "the review runs on the daily schedule"
    );

    // Every `with:` key of the workflow's shiftgate steps is an input of the action.
    let mut keys = Vec::new();
    let mut in_with = false;
    for line in workflow.lines() {
        let trimmed = line.trim();
        if trimmed == "with:" {
            in_with = true;
            continue;
        }
        if in_with && line.starts_with("          ") {
            keys.push(trimmed.split(':').next().unwrap().to_string());
        } else {
            in_with = false;
        }
    }
    for key in ["command", "incident", "failures", "every", "timeout"] {
        assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
    }
    for key in keys
        .iter()
        .filter(|key| !["workload_identity_provider", "service_account"].contains(&key.as_str()))
    {
        assert!(
            action.contains(&format!("\n  {key}:\n")),
            "{key} is an input of action.yml"
        );
    }
    assert!(workflow.contains("incident: true"));
    assert!(workflow.contains("issues: write"));

    // The values parse as the binary's own options do, and the checks fit in the job.
    let failures: u64 = value_of(&workflow, "failures").parse().unwrap();
    let every = humantime::parse_duration(&value_of(&workflow, "every")).unwrap();
    let timeout = humantime::parse_duration(&value_of(&workflow, "timeout")).unwrap();
    let parsed = <shiftgate::Cli as clap::Parser>::try_parse_from([
        "shiftgate",
        "health",
        "--incident",
        "--failures",
        &failures.to_string(),
        "--every",
        &value_of(&workflow, "every"),
    ]);
    assert!(parsed.is_ok(), "{parsed:?}");
    let minutes: u64 = value_of(&workflow, "timeout-minutes").parse().unwrap();
    let checks = every * (failures as u32 - 1) + timeout * failures as u32;
    assert!(
        checks + Duration::from_secs(2 * 60) <= Duration::from_secs(minutes * 60),
        "the checks ({checks:?}) and two minutes of GitHub work fit in {minutes} minutes"
    );

    // Every webhook the config names for an environment is passed from a secret.
    let config = shiftgate::Config::load(Some(&root().join("examples/shiftgate.toml"))).unwrap();
    for environment in ["prod", "staging", "dev"] {
        let mut unset = config
            .notify_targets(Some(environment), &[], |_| None)
            .unwrap()
            .unset;
        unset.retain(|entry| {
            let name = entry.split("${").nth(1).unwrap().split('}').next().unwrap();
            !workflow.contains(&format!("{name}: ${{{{ secrets.{name} }}}}"))
        });
        assert!(unset.is_empty(), "not passed: {unset:?}");
    }
}

/// The first `KEY: VALUE` of the workflow, its value unquoted.
fn value_of(workflow: &str, key: &str) -> String {
    workflow
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} in the workflow"))
        .trim()
        .trim_matches('"')
        .to_string()
}
