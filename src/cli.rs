//! The command line: clap types only. Every option can also come from `SHIFTGATE_<OPTION>`;
//! values are parsed and range-checked here so bad input fails before anything is touched.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use semver::VersionReq;

use crate::config::{HealthOverrides, PolicyOverrides, ServiceSelector};
use crate::names::arg as name;
use crate::notify::NotifyUrl;
use crate::rollout::health_judge::FieldRule;
use crate::rollout::hooks::GcsObject;
use crate::rollout::judge::JudgeKind;
use crate::rollout::latency::LatencyLimit;
use crate::rollout::limits::{self, parse_rate};
use crate::rollout::pause::PauseTimeoutAction;
use crate::rollout::plan::Steps;
use crate::simulate::traffic::{ColdStart, Traffic};

// Bounded value parsers, one per kind of setting: clap names the flag and the value, these say the
// valid range (see `limits::DurationBounds`).
fn bake(text: &str) -> Result<Duration, String> {
    limits::BAKE.parse(text)
}

fn pause_timeout(text: &str) -> Result<Duration, String> {
    limits::PAUSE_TIMEOUT.parse(text)
}

fn pause_percent(text: &str) -> Result<u8, String> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|percent| (1..=99).contains(percent))
        .ok_or_else(|| {
            format!(
                "must be the percent of a step to hold after, a whole number from 1 to 99 (for \
                 example 50), got {}",
                crate::names::quote(text.trim())
            )
        })
}

/// Whether failed gates act (roll back) or are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GateMode {
    /// A failed gate rolls back.
    Enforce,
    /// A failed gate is reported and the rollout goes on.
    ReportOnly,
}

fn interval(text: &str) -> Result<Duration, String> {
    limits::INTERVAL.parse(text)
}

fn metrics_delay(text: &str) -> Result<Duration, String> {
    limits::METRICS_DELAY.parse(text)
}

fn timeout(text: &str) -> Result<Duration, String> {
    limits::TIMEOUT.parse(text)
}

fn poll(text: &str) -> Result<Duration, String> {
    limits::POLL.parse(text)
}

/// `health --every`: checks a scheduled run can wait between, and still end well within its job.
const CHECK_EVERY: limits::DurationBounds = limits::DurationBounds {
    min: Duration::from_millis(100),
    max: Duration::from_secs(5 * 60),
};

fn every(text: &str) -> Result<Duration, String> {
    CHECK_EVERY.parse(text)
}

/// `health --failures`: checks in a row before an environment counts as down.
fn failures(text: &str) -> Result<u8, String> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|n| (1..=20).contains(n))
        .ok_or_else(|| {
            format!(
                "must be a whole number of checks from 1 to 20, got {}",
                crate::names::quote(text.trim())
            )
        })
}

/// `simulate --runs`: enough to be worth drawing, few enough to finish.
fn runs(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(runs) if (1..=1_000_000).contains(&runs) => Ok(runs),
        _ => Err(format!(
            "must be a whole number between 1 and 1000000, got {}",
            crate::names::quote(text.trim())
        )),
    }
}

/// `--workflow` goes into a request path (percent-encoded): a dot segment would still be resolved
/// away by URL normalisation, and an empty one would address the workflow list.
fn workflow(text: &str) -> Result<String, String> {
    let bad = text.is_empty()
        || text.len() > 255
        || text
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        || text.chars().any(char::is_control);
    if bad {
        Err(format!(
            "{} is not a workflow: give its file name (deploy.yml), its path \
             (.github/workflows/deploy.yml) or its numeric ID",
            crate::names::quote(text)
        ))
    } else {
        Ok(text.to_string())
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "shiftgate",
    version,
    about = "Safe Cloud Run deploys: shift traffic in steps, gate every step on health and error rate, roll back by itself.",
    propagate_version = true
)]
pub struct Cli {
    /// Print one JSON result object on stdout (progress stays on stderr).
    #[arg(long, global = true, env = "SHIFTGATE_JSON")]
    pub json: bool,

    /// Config file naming environments, policy and repo; read by every command but demo [default: shiftgate.toml, then .github/shiftgate.toml].
    #[arg(long, global = true, env = "SHIFTGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or pick a candidate revision with no traffic, shift traffic in steps gated on health
    /// and error rate, then promote it or roll back.
    Rollout(Box<RolloutArgs>),
    /// Send 100% of traffic to the stable revision (or --to REVISION) now.
    Rollback(RollbackArgs),
    /// Let a rollout paused by --pause-at go on to its next step.
    Promote(PromoteArgs),
    /// Roll the rollout in progress (running or paused) back to its stable revision now.
    Abort(AbortArgs),
    /// Show revisions, the traffic split, tag URLs and any rollout in progress.
    Status(StatusArgs),
    /// Probe the health endpoints of one or all environments.
    Health(HealthArgs),
    /// Run a full rollout against the built-in simulated Cloud Run on this machine.
    Demo(DemoArgs),
    /// Run a rollout policy over seeded synthetic traffic: false rollbacks, detection, time to
    /// decision and exposure, per judge.
    Simulate(SimulateArgs),
    /// Trigger a workflow_dispatch workflow and watch the run to its conclusion.
    Dispatch(DispatchArgs),
    /// Open an incident issue, or comment on the open one with the same key.
    Incident(IncidentArgs),
    /// Rollouts, rollbacks and incidents of an environment over a period, from the service's
    /// rollout history and the repository's incident issues.
    Report(ReportArgs),
    /// Print the shell completion script for SHELL on stdout.
    Completions(CompletionsArgs),
    /// Print the roff man page of shiftgate, or of one of its commands, on stdout.
    Man(ManArgs),
}

/// `RATE:STABLE:CANDIDATE` for `simulate --scenario`: requests per second, then stable's and the
/// candidate's 5xx shares (`50:1%:2%`).
pub fn parse_scenario(text: &str) -> Result<Traffic, String> {
    let parts: Vec<&str> = text.split(':').map(str::trim).collect();
    let [rate, stable, candidate] = parts[..] else {
        return Err(format!(
            "expected RATE:STABLE:CANDIDATE (requests per second, stable's and the candidate's \
             5xx share), e.g. 50:1%:2%, got {text:?}"
        ));
    };
    let rate = match rate.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=100_000.0).contains(&rate) => rate,
        _ => {
            return Err(format!(
                "the request rate must be 0 to 100000 per second, got {rate:?}"
            ));
        }
    };
    Ok(Traffic {
        rate,
        stable_errors: parse_rate(stable).map_err(|m| format!("stable's 5xx share: {m}"))?,
        candidate_errors: parse_rate(candidate)
            .map_err(|m| format!("the candidate's 5xx share: {m}"))?,
        cold_start: None,
    })
}

/// `DURATION:RATE` for `simulate --cold-start`: after each traffic increase the candidate fails
/// RATE more often for DURATION.
pub fn parse_cold_start(text: &str) -> Result<ColdStart, String> {
    let Some((duration, rate)) = text.split_once(':') else {
        return Err(format!(
            "expected DURATION:RATE, e.g. 60s:10%, got {text:?}"
        ));
    };
    let seconds = limits::BAKE.parse(duration)?.as_secs();
    Ok(ColdStart {
        seconds,
        extra_errors: parse_rate(rate)?,
    })
}

/// `KEY=VALUE` for `--input`.
pub fn parse_input(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct DispatchArgs {
    /// Repository, OWNER/NAME [default: $GITHUB_REPOSITORY].
    #[arg(long, env = "SHIFTGATE_REPO", value_name = "OWNER/NAME", value_parser = name::repo)]
    pub repo: Option<String>,
    /// Workflow file name (deploy.yml) or numeric ID.
    #[arg(long, env = "SHIFTGATE_WORKFLOW", value_name = "FILE|ID", value_parser = workflow)]
    pub workflow: String,
    /// Branch or tag to run the workflow on [default: $GITHUB_REF_NAME].
    #[arg(long = "ref", env = "SHIFTGATE_REF", value_name = "REF")]
    pub git_ref: Option<String>,
    /// A workflow input; repeatable. An input named distinct_id is matched against the run title.
    #[arg(long = "input", env = "SHIFTGATE_INPUT", value_name = "KEY=VALUE", value_parser = parse_input, value_delimiter = ',')]
    pub inputs: Vec<(String, String)>,
    /// Stop watching after this long (exit 1); the run keeps going unless --cancel-on-timeout.
    #[arg(long, env = "SHIFTGATE_TIMEOUT", value_parser = timeout, default_value = "60m", value_name = "DURATION")]
    pub timeout: Duration,
    /// Time between polls (conditional requests: unchanged answers cost no rate limit).
    #[arg(long, env = "SHIFTGATE_POLL", value_parser = poll, default_value = "10s", value_name = "DURATION")]
    pub poll: Duration,
    /// Dispatch, print the run URL and exit without watching.
    #[arg(long, env = "SHIFTGATE_NO_WAIT")]
    pub no_wait: bool,
    /// Cancel the run when --timeout ends the watch.
    #[arg(long, env = "SHIFTGATE_CANCEL_ON_TIMEOUT")]
    pub cancel_on_timeout: bool,
    /// Cancel the run on SIGINT/SIGTERM.
    #[arg(long, env = "SHIFTGATE_CANCEL_ON_INTERRUPT")]
    pub cancel_on_interrupt: bool,
}

#[derive(Debug, Clone, Args)]
pub struct IncidentArgs {
    /// Repository, OWNER/NAME [default: $GITHUB_REPOSITORY].
    #[arg(long, env = "SHIFTGATE_REPO", value_name = "OWNER/NAME", value_parser = name::repo)]
    pub repo: Option<String>,
    /// Issue title.
    #[arg(long, env = "SHIFTGATE_TITLE", value_name = "TEXT")]
    pub title: String,
    /// SEV-1 (service down) … SEV-4 (cosmetic).
    #[arg(
        long,
        env = "SHIFTGATE_SEVERITY",
        default_value = "SEV-2",
        value_name = "SEV-N"
    )]
    pub severity: String,
    /// What happened (Markdown).
    #[arg(
        long,
        env = "SHIFTGATE_BODY",
        value_name = "TEXT",
        conflicts_with = "body_file"
    )]
    pub body: Option<String>,
    /// What happened, from a Markdown file.
    #[arg(long, env = "SHIFTGATE_BODY_FILE", value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// De-duplication key [default: the title].
    #[arg(long, env = "SHIFTGATE_KEY", value_name = "KEY")]
    pub key: Option<String>,
    /// Extra label; repeatable.
    #[arg(
        long = "label",
        env = "SHIFTGATE_LABEL",
        value_name = "LABEL",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// Post a message to this Slack-compatible incoming webhook when the issue is opened or
    /// commented on; repeatable or a comma list. A failed post is a warning, never a change to the
    /// outcome [default: the config's `notify`].
    #[arg(long, env = "SHIFTGATE_NOTIFY", value_parser = NotifyUrl::parse, value_delimiter = ',', value_name = "URL")]
    pub notify: Vec<NotifyUrl>,
}

/// Which Cloud Run service: explicit coordinates, or an environment from the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServiceArgs {
    /// Environment from the config file (its project, region, service, URL and policy).
    #[arg(long = "env", env = "SHIFTGATE_ENV", value_name = "NAME")]
    pub environment: Option<String>,
    /// Google Cloud project ID.
    #[arg(long, env = "SHIFTGATE_PROJECT", value_parser = name::project)]
    pub project: Option<String>,
    /// Cloud Run region, e.g. us-central1; `rollout` also takes a comma list, rolled out in waves
    /// in that order.
    #[arg(long, env = "SHIFTGATE_REGION", value_parser = name::regions, value_name = "REGION")]
    pub region: Option<String>,
    /// Cloud Run service name.
    #[arg(long, env = "SHIFTGATE_SERVICE", value_parser = name::service)]
    pub service: Option<String>,
}

impl From<&ServiceArgs> for ServiceSelector {
    fn from(args: &ServiceArgs) -> Self {
        ServiceSelector {
            environment: args.environment.clone(),
            project: args.project.clone(),
            region: args.region.clone(),
            service: args.service.clone(),
        }
    }
}

/// What a healthy answer looks like.
#[derive(Debug, Clone, Default, Args)]
pub struct HealthCheckArgs {
    /// Path of the health endpoint [default: /health].
    #[arg(long, env = "SHIFTGATE_HEALTH_PATH", value_name = "PATH", value_parser = name::health_path)]
    pub health_path: Option<String>,
    /// Require a JSON body field (dotted paths allowed); repeatable; replaces the default status rule.
    #[arg(
        long,
        env = "SHIFTGATE_HEALTH_EXPECT",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    pub health_expect: Vec<FieldRule>,
    /// Semver requirement on the health body's `version`, e.g. ">=1.4.0" or "=1.4.0".
    #[arg(long, env = "SHIFTGATE_EXPECT_VERSION", value_name = "REQ")]
    pub expect_version: Option<VersionReq>,
    /// Send every probe a Google ID token for this audience (an IAM-protected service behind a
    /// custom domain or load balancer). Cloud Run URLs get one without it when they refuse a probe.
    #[arg(long, env = "SHIFTGATE_HEALTH_AUDIENCE", value_name = "AUDIENCE", value_parser = name::audience)]
    pub health_audience: Option<String>,
}

impl HealthCheckArgs {
    /// The expectations given on the command line, for the config to layer.
    pub fn overrides(&self) -> HealthOverrides {
        HealthOverrides {
            path: self.health_path.clone(),
            expect: self.health_expect.clone(),
            version: self.expect_version.clone(),
            audience: self.health_audience.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Make the candidate: a new revision from the current template with this image and no traffic.
    #[arg(long, env = "SHIFTGATE_IMAGE", conflicts_with = "revision")]
    pub image: Option<String>,
    /// Use this existing revision as the candidate.
    #[arg(long, env = "SHIFTGATE_REVISION", value_name = "NAME", value_parser = name::revision)]
    pub revision: Option<String>,
    /// Continue the rollout recorded on the service after its process died (runner lost,
    /// SIGKILL): checks its revisions, split and health, bakes the recorded step again from its
    /// start, then runs the remaining steps of this policy.
    #[arg(long, env = "SHIFTGATE_RESUME", conflicts_with_all = ["image", "revision"])]
    pub resume: bool,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Where request counts come from [default: cloud-monitoring; prometheus when --prometheus-url is given].
    #[arg(long, env = "SHIFTGATE_METRICS", value_enum, value_name = "BACKEND")]
    pub metrics: Option<MetricsBackend>,
    /// Prometheus API root holding `run_googleapis_com:request_count` [default with --metrics prometheus: Google Managed Prometheus of --project].
    #[arg(long, env = "SHIFTGATE_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// A latency quantile the candidate must not be shown above, QUANTILE=DURATION with p50, p95
    /// or p99 (repeatable or a comma list: p95=800ms,p99=2s); it must not be shown slower than
    /// stable beyond --margin either [default: no latency gate].
    #[arg(long, env = "SHIFTGATE_MAX_LATENCY", value_parser = LatencyLimit::parse, value_delimiter = ',', value_name = "QUANTILE=DURATION")]
    pub max_latency: Vec<LatencyLimit>,
    /// Hold after this step passes until `shiftgate promote` (go on) or `shiftgate abort` (roll
    /// back); the gates keep running meanwhile. Repeatable or a comma list; a step other than the
    /// last [default: no hold].
    #[arg(long, env = "SHIFTGATE_PAUSE_AT", value_parser = pause_percent, value_delimiter = ',', value_name = "PERCENT")]
    pub pause_at: Vec<u8>,
    /// How long a hold waits for `promote` or `abort` [default: 1h].
    #[arg(long, env = "SHIFTGATE_PAUSE_TIMEOUT", value_parser = pause_timeout, value_name = "DURATION")]
    pub pause_timeout: Option<Duration>,
    /// What a hold nobody ends comes to [default: rollback].
    #[arg(
        long,
        env = "SHIFTGATE_ON_PAUSE_TIMEOUT",
        value_enum,
        value_name = "ACTION"
    )]
    pub on_pause_timeout: Option<PauseTimeoutAction>,
    /// Before any traffic moves, copy this Cloud Storage object (gs://BUCKET/OBJECT, e.g. the
    /// app's SQLite database) to a timestamped name beside it; a failed copy changes nothing else.
    #[arg(long, env = "SHIFTGATE_BACKUP", value_parser = GcsObject::parse, value_name = "gs://BUCKET/OBJECT")]
    pub backup: Option<GcsObject>,
    /// Before any traffic moves (after --backup), run this Cloud Run job of the service's project
    /// and region (e.g. a migration) and wait for it; a failed job changes nothing else.
    #[arg(long, env = "SHIFTGATE_PRE_JOB", value_parser = name::service, value_name = "JOB")]
    pub pre_job: Option<String>,
    /// After promotion, run this Cloud Run job and wait for it (a failure is reported, not undone).
    #[arg(long, env = "SHIFTGATE_POST_JOB", value_parser = name::service, value_name = "JOB")]
    pub post_job: Option<String>,
    /// After a rollback, run this Cloud Run job and wait for it.
    #[arg(long, env = "SHIFTGATE_ON_ROLLBACK_JOB", value_parser = name::service, value_name = "JOB")]
    pub on_rollback_job: Option<String>,
    /// How long each hook (backup, job) may take [default: 30m].
    #[arg(long, env = "SHIFTGATE_HOOK_TIMEOUT", value_parser = timeout, value_name = "DURATION")]
    pub hook_timeout: Option<Duration>,
    /// `report-only`: evaluate and report every gate without acting on it (a failed gate never
    /// rolls back), for a team trying shiftgate next to its existing deploy [default: enforce].
    #[arg(long, env = "SHIFTGATE_GATES", value_enum, value_name = "MODE")]
    pub gates: Option<GateMode>,
    /// With several regions: the steps of every region after the first, which rolls out with
    /// --steps [default: 100, straight to all traffic].
    #[arg(long, env = "SHIFTGATE_WAVE_STEPS", value_name = "LIST")]
    pub wave_steps: Option<Steps>,
    /// With several regions: how long each step of a region after the first must stay healthy
    /// [default: 2m].
    #[arg(long, env = "SHIFTGATE_WAVE_BAKE", value_parser = bake, value_name = "DURATION")]
    pub wave_bake: Option<Duration>,
    #[command(flatten)]
    pub health: HealthCheckArgs,

    /// Repository for incident issues, OWNER/NAME [default: $GITHUB_REPOSITORY].
    #[arg(long, env = "SHIFTGATE_REPO", value_name = "OWNER/NAME", value_parser = name::repo)]
    pub repo: Option<String>,
    /// Do not file an incident issue when the rollout rolls back.
    #[arg(long, env = "SHIFTGATE_NO_INCIDENT")]
    pub no_incident: bool,
    /// Create a GitHub deployment of the environment in --repo and post its statuses as the
    /// rollout moves (needs `deployments: write`; for jobs without `environment:`, where GitHub
    /// makes its own: use the `url` output there).
    #[arg(long, env = "SHIFTGATE_GITHUB_DEPLOYMENT")]
    pub github_deployment: bool,
    /// Post a message to this Slack-compatible incoming webhook when the rollout starts, rolls
    /// back or is promoted; repeatable or a comma list. https://, or http:// to this machine. A
    /// failed post is a warning, never a change to the rollout [default: the config's `notify`].
    #[arg(long, env = "SHIFTGATE_NOTIFY", value_parser = NotifyUrl::parse, value_delimiter = ',', value_name = "URL")]
    pub notify: Vec<NotifyUrl>,
    /// Print the plan and change nothing.
    #[arg(long, env = "SHIFTGATE_DRY_RUN")]
    pub dry_run: bool,
}

impl RolloutArgs {
    /// The policy values given on the command line, for the config to layer.
    pub fn policy_overrides(&self) -> PolicyOverrides {
        PolicyOverrides {
            health: self.health.overrides(),
            latency: (!self.max_latency.is_empty()).then(|| self.max_latency.clone()),
            pause_at: (!self.pause_at.is_empty()).then(|| self.pause_at.clone()),
            pause_timeout: self.pause_timeout,
            on_pause_timeout: self.on_pause_timeout,
            report_only: self.gates.map(|mode| mode == GateMode::ReportOnly),
            backup: self.backup.clone(),
            pre_job: self.pre_job.clone(),
            post_job: self.post_job.clone(),
            on_rollback_job: self.on_rollback_job.clone(),
            hook_timeout: self.hook_timeout,
            wave_steps: self.wave_steps.clone(),
            wave_bake: self.wave_bake,
            ..self.policy.overrides()
        }
    }
}

/// How a rollout moves and is judged: shared by `rollout` and `simulate`.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Candidate traffic percentages: strictly increasing, 1-100, ending at 100 [default: 10,25,50,100].
    #[arg(long, env = "SHIFTGATE_STEPS", value_name = "LIST")]
    pub steps: Option<Steps>,
    /// How long each step must stay healthy [default: 5m].
    #[arg(long, env = "SHIFTGATE_BAKE", value_parser = bake, value_name = "DURATION")]
    pub bake: Option<Duration>,
    /// Time between checks within a step [default: 30s].
    #[arg(long, env = "SHIFTGATE_INTERVAL", value_parser = interval, value_name = "DURATION")]
    pub interval: Option<Duration>,
    /// Candidate 5xx share that fails a step, as 0.05 or 5% [default: 5%].
    #[arg(long, env = "SHIFTGATE_MAX_ERROR_RATE", value_parser = parse_rate, value_name = "RATE")]
    pub max_error_rate: Option<f64>,
    /// Fewer candidate requests than this in a step is inconclusive, never a pass [default: 100].
    #[arg(long, env = "SHIFTGATE_MIN_REQUESTS", value_parser = limits::parse_min_requests, value_name = "N")]
    pub min_requests: Option<u64>,
    /// How the error counts are judged: `sequential` (the candidate against stable, valid however
    /// often it looks) or `threshold` (the step's 5xx share against --max-error-rate) [default: sequential].
    #[arg(long, env = "SHIFTGATE_JUDGE", value_parser = limits::parse_judge, value_name = "RULE")]
    pub judge: Option<JudgeKind>,
    /// How much worse than stable the candidate may be before it is "worse", as 25% or 0.25 (never less than 0.25 points) [default: 25%].
    #[arg(long, env = "SHIFTGATE_MARGIN", value_parser = limits::parse_margin, value_name = "RATIO", allow_hyphen_values = true)]
    pub margin: Option<f64>,
    /// Let a step end before its bake once the candidate is shown not worse than stable (never in its first minute).
    #[arg(long, env = "SHIFTGATE_EARLY_PASS")]
    pub early_pass: bool,
    /// How long the metrics backend takes to show a request [default: 3m for Cloud Monitoring and Managed Prometheus, 0s for a Prometheus server].
    #[arg(long, env = "SHIFTGATE_METRICS_DELAY", value_parser = metrics_delay, value_name = "DURATION")]
    pub metrics_delay: Option<Duration>,
}

impl PolicyArgs {
    /// The values given, for the config to layer (health expectations are the caller's).
    pub fn overrides(&self) -> PolicyOverrides {
        PolicyOverrides {
            steps: self.steps.clone(),
            bake: self.bake,
            interval: self.interval,
            max_error_rate: self.max_error_rate,
            min_requests: self.min_requests,
            metrics_delay: self.metrics_delay,
            judge: self.judge,
            margin: self.margin,
            early_pass: self.early_pass.then_some(true),
            latency: None,
            health: HealthOverrides::default(),
            ..PolicyOverrides::default()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Revision to send 100% of traffic to [default: the stable revision of the rollout in progress].
    #[arg(long, env = "SHIFTGATE_TO", value_name = "REVISION", value_parser = name::revision)]
    pub to: Option<String>,
    /// Roll back only if a rollout is in progress; with none (it finished, or already restored
    /// stable), change nothing and exit 0. For cleanup steps such as `if: cancelled()`.
    #[arg(long, env = "SHIFTGATE_IF_IN_PROGRESS", conflicts_with = "to")]
    pub if_in_progress: bool,
    #[command(flatten)]
    pub restore: RestoreArgs,
}

/// How `rollback` and `abort` restore traffic: how long they try, and the incident if they cannot.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Repository for the SEV-1 incident filed if the rollback fails, OWNER/NAME [default: $GITHUB_REPOSITORY].
    #[arg(long, env = "SHIFTGATE_REPO", value_name = "OWNER/NAME", value_parser = name::repo)]
    pub repo: Option<String>,
    /// Do not file an incident issue when the rollback fails.
    #[arg(long, env = "SHIFTGATE_NO_INCIDENT")]
    pub no_incident: bool,
    /// How long to keep trying before declaring the rollback failed (exit 4).
    #[arg(long, env = "SHIFTGATE_TIMEOUT", value_parser = timeout, default_value = "2m", value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// How long to wait for the rollout's process to take the decision up (it does at its next
    /// check, within its --interval).
    #[arg(long, env = "SHIFTGATE_TIMEOUT", value_parser = timeout, default_value = "2m", value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct AbortArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub restore: RestoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The period: a duration back from now (1h to 400d, e.g. 7d) or an RFC 3339 time.
    #[arg(long, env = "SHIFTGATE_SINCE", value_parser = since, default_value = "7d", value_name = "DURATION|TIME")]
    pub since: Since,
    /// Repository whose `incident` issues are counted, OWNER/NAME [default: $GITHUB_REPOSITORY].
    #[arg(long, env = "SHIFTGATE_REPO", value_name = "OWNER/NAME", value_parser = name::repo)]
    pub repo: Option<String>,
    /// How long to keep trying to read the service and the issues before giving up (exit 3).
    #[arg(long, env = "SHIFTGATE_TIMEOUT", value_parser = timeout, default_value = "60s", value_name = "DURATION")]
    pub timeout: Duration,
}

/// `report --since`: how far back, or from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(std::time::SystemTime),
}

/// The shortest and the longest period a report covers.
pub const SINCE_BOUNDS: (Duration, Duration) = (
    Duration::from_secs(3600),
    Duration::from_secs(400 * 24 * 3600),
);

fn since(text: &str) -> Result<Since, String> {
    let trimmed = text.trim();
    if let Ok(ago) = humantime::parse_duration(trimmed) {
        let (min, max) = SINCE_BOUNDS;
        if ago < min || ago > max {
            return Err(format!(
                "must be 1h to 400d back (or an RFC 3339 time), got {}",
                crate::names::quote(trimmed)
            ));
        }
        return Ok(Since::Ago(ago));
    }
    humantime::parse_rfc3339_weak(trimmed.trim_end_matches('Z'))
        .ok()
        .filter(|_| trimmed.contains('T'))
        .map(Since::At)
        .ok_or_else(|| {
            format!(
                "expected a duration (1h to 400d, e.g. 7d) or an RFC 3339 time \
                 (2026-11-24T00:00:00Z), got {}",
                crate::names::quote(trimmed)
            )
        })
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// How long to keep trying to read the service before giving up (exit 3).
    #[arg(long, env = "SHIFTGATE_TIMEOUT", value_parser = timeout, default_value = "60s", value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Probe this base URL instead of an environment's.
    #[arg(long, env = "SHIFTGATE_URL", value_name = "URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub health: HealthCheckArgs,
    /// Per-probe timeout.
    #[arg(long, env = "SHIFTGATE_TIMEOUT", value_parser = timeout, default_value = "10s", value_name = "DURATION")]
    pub timeout: Duration,
    /// For a scheduled workflow: open a SEV-1 incident issue for an environment that is down, comment
    /// on it at most once an hour while it stays down, and close it with the downtime once it is
    /// healthy again (needs a repository and `issues: write`).
    #[arg(long, env = "SHIFTGATE_INCIDENT")]
    pub incident: bool,
    /// Checks in a row that must fail before an environment counts as down; a check that passes
    /// ends the checking [default: 3 with --incident, else 1].
    #[arg(long, env = "SHIFTGATE_FAILURES", value_parser = failures, value_name = "N")]
    pub failures: Option<u8>,
    /// Time between those checks (100ms to 5m).
    #[arg(long, env = "SHIFTGATE_EVERY", value_parser = every, default_value = "10s", value_name = "DURATION")]
    pub every: Duration,
    /// With --incident: repository for the incident issues, OWNER/NAME [default: the config's
    /// `repo`, then $GITHUB_REPOSITORY].
    #[arg(long, env = "SHIFTGATE_REPO", value_name = "OWNER/NAME", value_parser = name::repo)]
    pub repo: Option<String>,
    /// With --incident: post a message to this Slack-compatible incoming webhook when an incident
    /// is opened, commented on or closed; repeatable or a comma list [default: the config's
    /// `notify`, or the environment's].
    #[arg(long, env = "SHIFTGATE_NOTIFY", value_parser = NotifyUrl::parse, value_delimiter = ',', value_name = "URL")]
    pub notify: Vec<NotifyUrl>,
}

/// A source of per-revision request counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsBackend {
    /// Cloud Monitoring v3 `timeSeries.list` of `run.googleapis.com/request_count`.
    CloudMonitoring,
    /// PromQL over the Prometheus HTTP API: Managed Prometheus, or the server in --prometheus-url.
    Prometheus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// A healthy candidate that is promoted through every step.
    Good,
    /// A candidate that answers 5xx to a third of requests: rolled back at the first step.
    Bad,
    /// A candidate whose /health fails: never gets traffic.
    Unhealthy,
    /// A candidate whose p95 latency is over a second (stable's is 90ms): rolled back at the
    /// first step by the latency gate (p95=500ms).
    Slow,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Use the policy of this environment of the config file (flags still override it).
    #[arg(long = "env", env = "SHIFTGATE_ENV", value_name = "NAME")]
    pub environment: Option<String>,
    /// A traffic scenario, RATE:STABLE:CANDIDATE (requests per second, stable's and the
    /// candidate's 5xx share), e.g. 50:1%:2%; repeatable [default: the built-in matrix A1-A15].
    #[arg(long = "scenario", value_name = "R:STABLE:CANDIDATE", value_parser = parse_scenario)]
    pub scenarios: Vec<Traffic>,
    /// Rollouts per scenario (and per judge).
    #[arg(long, default_value_t = 2000, value_parser = runs, value_name = "N")]
    pub runs: u64,
    /// Seed of the synthetic traffic: the same seed draws the same traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stable's traffic before the rollout that the sequential judge starts from.
    #[arg(long, value_parser = bake, default_value = "60m", value_name = "DURATION")]
    pub history: Duration,
    /// After each traffic increase the candidate fails RATE more often for DURATION, e.g. 60s:10%.
    #[arg(long, value_parser = parse_cold_start, value_name = "DURATION:RATE")]
    pub cold_start: Option<ColdStart>,
    /// Run the sequential judge, the threshold rule and a Flagger-style counter (two failed
    /// checks) side by side on the same draws.
    #[arg(long)]
    pub compare: bool,
    /// Also draw exposure against false-rollback rate per judge as an SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Which candidate to roll out.
    #[arg(long, env = "SHIFTGATE_SCENARIO", value_enum, default_value = "good")]
    pub scenario: Scenario,
    /// Bake per step (the demo keeps it short).
    #[arg(long, env = "SHIFTGATE_BAKE", value_parser = bake, default_value = "8s", value_name = "DURATION")]
    pub bake: Duration,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Load them in the current shell with e.g. `source <(shiftgate completions bash)`, \
    or write the script where your shell looks for completions."
)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Every subcommand, each with its own man page (`shiftgate man COMMAND`); a unit test keeps this
/// list equal to `Command`'s.
pub const COMMAND_NAMES: [&str; 13] = [
    "rollout",
    "rollback",
    "promote",
    "abort",
    "status",
    "health",
    "demo",
    "simulate",
    "dispatch",
    "incident",
    "report",
    "completions",
    "man",
];

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Read it with e.g. `shiftgate man | man -l -`, or install it with \
    `shiftgate man > ~/.local/share/man/man1/shiftgate.1`."
)]
pub struct ManArgs {
    /// The command whose page to print (shiftgate-COMMAND(1)) [default: shiftgate(1), which lists
    /// the commands].
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(COMMAND_NAMES))]
    pub command: Option<String>,
}

/// A refused command line, reworded the way config errors read (`WHERE: what is wrong, got VALUE`),
/// where WHERE is the flag, or the `SHIFTGATE_*` variable and its flag when the value came from the
/// environment (the flag alone would send a person looking at a command line that does not
/// have it). Other refusals (a missing or unknown argument) keep clap's words, which name it.
pub fn describe_parse_error(
    error: &clap::Error,
    argv: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        _ => None,
    };
    let (Some(arg), Some(value)) = (
        context(ContextKind::InvalidArg),
        context(ContextKind::InvalidValue),
    ) else {
        return error.render().to_string();
    };
    let reason = match error.kind() {
        ErrorKind::ValueValidation => std::error::Error::source(error)
            .map(|source| source.to_string())
            .unwrap_or_else(|| "not a valid value".to_string()),
        ErrorKind::InvalidValue => match error.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("expected {}", one_of(valid)),
            _ => "not a valid value".to_string(),
        },
        _ => return error.render().to_string(),
    };
    // `--min-requests <N>`: the flag is the first word.
    let flag = arg.split_whitespace().next().unwrap_or(&arg).to_string();
    let quoted = crate::names::quote(&value);
    // A webhook URL's path is its key: its parser shows the value masked, and it is never quoted.
    let secret = SECRET_VALUED_FLAGS.contains(&flag.as_str());
    let reason = if secret || reason.contains(&quoted) || reason.contains(&format!("{value:?}")) {
        reason
    } else {
        format!("{reason}, got {quoted}")
    };
    let on_command_line = argv
        .iter()
        .any(|word| word == &flag || word.starts_with(&format!("{flag}=")));
    let variable = env_variable_of(&flag).filter(|name| !on_command_line && env(name).is_some());
    match variable {
        Some(name) => format!("error: {name} ({flag}): {reason}\n"),
        None => format!("error: {flag}: {reason}\n"),
    }
}

/// Flags whose values hold secrets: a refusal never repeats their value.
const SECRET_VALUED_FLAGS: [&str; 1] = ["--notify"];

/// `a`, `a or b`, `a, b or c`.
fn one_of(words: &[String]) -> String {
    match words {
        [] => "nothing".to_string(),
        [only] => only.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The `SHIFTGATE_*` variable behind a long flag, in whichever command has it.
fn env_variable_of(flag: &str) -> Option<String> {
    use clap::CommandFactory;

    fn find(command: &clap::Command, long: &str) -> Option<String> {
        command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))
            .and_then(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .or_else(|| command.get_subcommands().find_map(|sub| find(sub, long)))
    }
    find(&Cli::command(), flag.strip_prefix("--")?)
}

/// The subcommand named on the command line, for a refusal's `command`.
pub fn command_named_in(argv: &[String]) -> Option<&'static str> {
    argv.iter()
        .skip(1)
        .find_map(|word| COMMAND_NAMES.iter().find(|name| *name == word).copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn man_has_a_page_for_every_command() {
        let commands: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|command| command.get_name().to_string())
            .collect();
        assert_eq!(commands, COMMAND_NAMES);
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_accepted_before_or_after_the_subcommand() {
        let before =
            Cli::try_parse_from(["shiftgate", "--json", "status", "--env", "prod"]).unwrap();
        let after =
            Cli::try_parse_from(["shiftgate", "status", "--env", "prod", "--json"]).unwrap();
        assert!(before.json && after.json);
    }

    #[test]
    fn bad_steps_are_refused_by_the_parser_naming_the_flag() {
        let error = Cli::try_parse_from(["shiftgate", "rollout", "--steps", "50,10"]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("--steps"), "{message}");
        assert!(message.contains("strictly increasing"), "{message}");
        assert_eq!(error.exit_code(), 2);
    }

    fn refusal(argv: &[&str]) -> String {
        let mut full = vec!["shiftgate"];
        full.extend_from_slice(argv);
        let error = Cli::try_parse_from(full).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{argv:?}");
        error.to_string()
    }

    #[test]
    fn given_out_of_range_values_then_the_parser_names_the_flag_the_value_and_the_range() {
        for (argv, words) in [
            (
                vec!["rollout", "--bake", "9999999999999999999s"],
                vec!["--bake", "9999999999999999999s", "between 0s and 24h"],
            ),
            (
                vec!["rollout", "--metrics-delay", "9999999999999999999s"],
                vec!["--metrics-delay", "between 0s and 1h"],
            ),
            (
                vec!["rollout", "--interval", "2h"],
                vec!["--interval", "between 100ms and 1h"],
            ),
            (
                vec!["rollout", "--min-requests", "0"],
                vec!["--min-requests", "between 1 and 1000000000, got \"0\""],
            ),
            (
                vec!["rollback", "--timeout", "48h"],
                vec!["--timeout", "between 1ms and 24h"],
            ),
            (
                vec!["dispatch", "--workflow", "d.yml", "--poll", "0s"],
                vec!["--poll", "between 100ms and 1h"],
            ),
            (
                vec!["demo", "--bake", "2d"],
                vec!["--bake", "between 0s and 24h"],
            ),
        ] {
            let message = refusal(&argv);
            for word in words {
                assert!(message.contains(word), "{argv:?}: {message}");
            }
        }
    }

    #[test]
    fn given_names_that_smuggle_url_parts_then_the_parser_refuses_them_naming_the_flag() {
        for (argv, flag) in [
            (
                vec!["status", "--service", "web?updateMask=traffic"],
                "--service",
            ),
            (vec!["status", "--service", "nope/../web"], "--service"),
            (vec!["status", "--project", "p/x"], "--project"),
            (vec!["status", "--region", "us-central1/x"], "--region"),
            (vec!["rollout", "--revision", "web/../x"], "--revision"),
            (vec!["rollback", "--to", "web?x"], "--to"),
            (vec!["rollout", "--repo", "a/b/c"], "--repo"),
            (vec!["incident", "--title", "t", "--repo", "a/.."], "--repo"),
            (
                vec!["rollout", "--health-path", "http://169.254.169.254/x"],
                "--health-path",
            ),
            (vec!["health", "--health-path", "//evil/x"], "--health-path"),
            (vec!["dispatch", "--workflow", "../x"], "--workflow"),
        ] {
            let message = refusal(&argv);
            assert!(message.contains(flag), "{argv:?}: {message}");
        }
    }
}
