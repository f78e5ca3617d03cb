//! `shiftgate rollout`: resolves service and policy, runs the engine against Cloud Run and Cloud
//! Monitoring (or Prometheus), files the incident of a rollback, and reports the outcome.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use serde::{Serialize, Serializer};

use crate::actions::{ResultFacts, ServiceChange, ServiceFacts, progress_sink};
use crate::cli::{MetricsBackend, RolloutArgs};
use crate::clock::Clock;
use crate::commands::github_deployment::{
    DeploymentRecord, DeploymentTarget, DeploymentTracker, git_ref_from_env,
};
use crate::commands::public_url::{UriSeen, public_url};
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, Endpoints};
use crate::exit::ExitCode;
use crate::gcp::{Credentials, GoogleRest};
use crate::github::incident::Severity;
use crate::health::HttpHealthEndpoint;
use crate::hooks::GoogleHooks;
use crate::id_token::IdTokens;
use crate::metrics::{CloudMonitoring, PrometheusMetrics};
use crate::notify::{Delivery, Notifier, Subject};
use crate::output::summary;
use crate::rollout::engine::{force_traffic, restore_traffic};
use crate::rollout::judge::JudgeKind;
use crate::rollout::ownership::Identity;
use crate::rollout::pause::PauseTimeoutAction;
use crate::rollout::plan::DEFAULT_MONITORING_DELAY;
use crate::rollout::ports::{Hooks, Metrics, Platform};
use crate::rollout::timeline::{Event, describe_traffic, traffic_shares};
use crate::rollout::{
    CandidateSource, Engine, Outcome, Policy, Ports, Report, RolloutError, RolloutRequest, Steps,
};

pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// A rollout as `--json` shows it, for `rollout` and `demo`: the engine's report, the policy it
/// ran under, the API calls it took, and its exit code.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutRun {
    #[serde(flatten)]
    pub report: Report,
    #[serde(serialize_with = "serialize_policy")]
    pub policy: Policy,
    pub api_calls: GoogleApiCalls,
    pub exit_code: ExitCode,
}

impl RolloutRun {
    pub fn new(report: Report, policy: Policy, api_calls: GoogleApiCalls) -> Self {
        let exit_code = report.exit_code();
        Self {
            report,
            policy,
            api_calls,
            exit_code,
        }
    }

    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        let report = &self.report;
        ResultFacts {
            service: Some(ServiceFacts {
                name: &report.service,
                change: ServiceChange::Rollout {
                    stable: &report.stable,
                    candidate: &report.candidate,
                },
                image: report.image.as_deref(),
            }),
            rollout: Some((report, &self.policy)),
            reason: report.reason.as_deref(),
            final_traffic: Some(traffic_shares(&report.final_traffic)),
            ..ResultFacts::new(command, report.outcome.as_str(), self.exit_code)
        }
    }
}

/// Requests made to the Google APIs during one rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GoogleApiCalls {
    pub cloud_run: u64,
    pub monitoring: u64,
}

/// The policy as results show it: durations in seconds.
fn serialize_policy<S: Serializer>(policy: &Policy, serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        steps: &'a Steps,
        bake_s: f64,
        interval_s: f64,
        max_error_rate: f64,
        min_requests: u64,
        metrics_delay_s: f64,
        health_path: &'a str,
        judge: JudgeKind,
        margin: f64,
        early_pass: bool,
        /// `{"p95": 800.0}`: each limit in milliseconds; absent without limits.
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        max_latency_ms: std::collections::BTreeMap<&'static str, f64>,
        /// Absent without `--pause-at`.
        #[serde(skip_serializing_if = "<[u8]>::is_empty")]
        pause_at: &'a [u8],
        #[serde(skip_serializing_if = "Option::is_none")]
        pause_timeout_s: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        on_pause_timeout: Option<PauseTimeoutAction>,
        /// `report-only`; absent when gates act (the default).
        #[serde(skip_serializing_if = "Option::is_none")]
        gates: Option<&'static str>,
    }
    Shown {
        steps: &policy.steps,
        bake_s: policy.bake.as_secs_f64(),
        interval_s: policy.interval.as_secs_f64(),
        max_error_rate: policy.max_error_rate,
        min_requests: policy.min_requests,
        metrics_delay_s: policy.metrics_delay.as_secs_f64(),
        health_path: &policy.health.path,
        judge: policy.judge,
        margin: policy.margin,
        early_pass: policy.early_pass,
        max_latency_ms: policy
            .latency
            .iter()
            .map(|limit| (limit.quantile.name(), limit.limit.as_secs_f64() * 1000.0))
            .collect(),
        pause_at: &policy.pause.at,
        pause_timeout_s: (!policy.pause.at.is_empty())
            .then_some(policy.pause.timeout.as_secs_f64()),
        on_pause_timeout: (!policy.pause.at.is_empty()).then_some(policy.pause.on_timeout),
        gates: policy.report_only.then_some("report-only"),
    }
    .serialize(serializer)
}

/// `shiftgate rollout --json`: the rollout, the incident filed when it rolled back, the
/// environment's URL and the GitHub deployment (with `--github-deployment`).
#[derive(Debug, Clone, Serialize)]
pub struct RolloutResult {
    #[serde(flatten)]
    pub run: RolloutRun,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentFiling>,
    /// The config's `url` of the environment, else the service's URL from Cloud Run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_deployment: Option<DeploymentRecord>,
    /// Each `--notify` message and whether it arrived; absent without webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<Delivery>>,
    /// After a promotion: the service's open SEV-2 incident closed, or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_incident: Option<crate::commands::resolve::Resolution>,
}

impl RolloutResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts {
            incident_url: self.incident.as_ref().and_then(IncidentFiling::url),
            url: self.url.as_deref(),
            ..self.run.facts(command)
        }
    }
}

/// What became of an automatic incident: filed (created or commented on), or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentFiling {
    Filed {
        /// `created` or `commented`.
        action: &'static str,
        number: u64,
        url: String,
        severity: Severity,
    },
    NotFiled {
        reason: String,
    },
}

impl IncidentFiling {
    pub fn url(&self) -> Option<&str> {
        match self {
            IncidentFiling::Filed { url, .. } => Some(url),
            IncidentFiling::NotFiled { .. } => None,
        }
    }
}

/// `{"filed": true, "action", "number", "url", "severity"}` or `{"filed": false, "reason"}`.
impl Serialize for IncidentFiling {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            IncidentFiling::Filed {
                action,
                number,
                url,
                severity,
            } => {
                let mut map = serializer.serialize_map(Some(5))?;
                map.serialize_entry("filed", &true)?;
                map.serialize_entry("action", action)?;
                map.serialize_entry("number", number)?;
                map.serialize_entry("url", url)?;
                map.serialize_entry("severity", &severity.name())?;
                map.end()
            }
            IncidentFiling::NotFiled { reason } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("filed", &false)?;
                map.serialize_entry("reason", reason)?;
                map.end()
            }
        }
    }
}

pub async fn run(context: &Context, args: RolloutArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let backend = metrics_backend(&args)?;
    let policy = config.resolve_policy(
        address.environment.as_deref(),
        &args.policy_overrides(),
        default_metrics_delay(backend, &args),
    )?;
    let minute_resolution =
        !(backend == MetricsBackend::Prometheus && args.prometheus_url.is_some());
    if let Some(warning) = short_bake_warning(&policy).filter(|_| minute_resolution) {
        crate::say!("warning: {warning}");
    }
    let incident_repo = config.incident_repo(args.repo.as_deref());
    let webhooks = config.notify_targets(address.environment.as_deref(), &args.notify, |name| {
        std::env::var(name).ok()
    })?;
    let endpoints = Endpoints::from_env();
    let metrics_root = match (backend, &args.prometheus_url) {
        (MetricsBackend::Prometheus, Some(url)) => url.as_str(),
        _ => endpoints.monitoring.as_str(),
    };
    let mut called = vec![endpoints.cloud_run.as_str(), metrics_root];
    if policy.hooks.backup.is_some() {
        called.push(&endpoints.storage);
    }
    let credentials = Endpoints::credentials(&called).await?;
    if let Some(warning) = crate::gcp::static_token_warning(&credentials, longest_run(&policy)) {
        crate::say!("warning: {warning}");
    }
    let identity = Identity::generate();
    let tracker = match args.github_deployment && !args.dry_run {
        true => Some(DeploymentTracker::start(deployment_target(
            &args,
            incident_repo.as_deref(),
            &address,
            &identity.id,
        )?)),
        false => None,
    };
    let platform = endpoints.cloud_run_with(&address, credentials.clone());
    let hooks = GoogleHooks::new(
        GoogleRest::new(&endpoints.storage, credentials.clone()),
        GoogleRest::new(&endpoints.cloud_run, credentials.clone()),
        &address.project,
        &address.region,
    );
    let seen = UriSeen::new(&platform);
    let (metrics, metrics_rest) =
        metrics_adapter(backend, &args, &endpoints, credentials, &address);
    let health = HttpHealthEndpoint::new(HEALTH_TIMEOUT).with_id_tokens(IdTokens::from_env());
    let ports = Ports {
        platform: &seen,
        metrics: metrics.as_ref(),
        health: &health,
    };
    let request = RolloutRequest {
        policy,
        candidate: candidate_source(&args),
        dry_run: args.dry_run,
    };
    // A dry run changes nothing, so it has nothing to announce.
    let notifier = (!webhooks.urls.is_empty() && !args.dry_run)
        .then(|| Notifier::start(webhooks.urls.clone(), notify_subject(&address)));
    for unset in &webhooks.unset {
        crate::notify::warn(&format!(
            "{unset}: that webhook is not told of this rollout"
        ));
    }
    let observe = |event: &Event| {
        if let Some(tracker) = &tracker {
            tracker.observe(event);
        }
        if let Some(notifier) = &notifier {
            notifier.observe(event);
        }
    };
    let report = match run_engine(context, ports, &request, identity, &observe, Some(&hooks)).await
    {
        Ok(report) => report,
        Err(error) => {
            if let Some(tracker) = tracker {
                tracker.abandon(&error.message).await;
            }
            if let Some(notifier) = notifier {
                notifier
                    .finish(Some(&error.message), &context.interrupt)
                    .await;
            }
            return Err(error);
        }
    };
    let api_calls = GoogleApiCalls {
        cloud_run: platform.rest().calls(),
        monitoring: metrics_rest.calls(),
    };
    let url = public_url(address.url.as_deref(), seen.uri());
    let github_deployment = match tracker {
        Some(tracker) => Some(tracker.finish(&report, url.as_deref()).await),
        None => None,
    };
    let incident = match report.outcome {
        // An expired hold is nobody's approval, not a fault of the candidate.
        Outcome::RolledBack if report.pause_expired => None,
        Outcome::RolledBack | Outcome::Failed => Some(
            file_incident(args.no_incident, incident_repo.as_deref(), |repo| {
                crate::github::incident::rollout_incident(repo, &report, &request.policy)
            })
            .await,
        ),
        _ => None,
    };
    let resolved_incident = crate::commands::resolve::after_rollout(
        (args.no_incident, incident_repo.as_deref()),
        address.environment.as_deref(),
        &report,
        incident.as_ref(),
        notifier.as_ref(),
    )
    .await;
    // Messages were being sent while the incident was filed; what is left gets a bounded wait.
    let notifications = match notifier {
        // An end with no message of its own (a failed backup or pre-job) still closes the start.
        Some(notifier) => Some(
            notifier
                .finish(report.reason.as_deref(), &context.interrupt)
                .await,
        ),
        None => (!webhooks.urls.is_empty()).then(Vec::new),
    };
    Ok(CommandResult::Rollout(RolloutResult {
        run: RolloutRun::new(report, request.policy, api_calls),
        incident,
        url,
        github_deployment,
        notifications,
        resolved_incident,
    }))
}

/// What `--github-deployment` needs, checked before anything changes: a repository, a token and
/// the commit being deployed. The environment is the config's, else the service's name.
fn deployment_target(
    args: &RolloutArgs,
    repo: Option<&str>,
    address: &crate::config::ServiceAddress,
    rollout_id: &str,
) -> Result<DeploymentTarget, CommandError> {
    let flag = |message: String| CommandError::bad_input(format!("--github-deployment: {message}"));
    let repo = repo.ok_or_else(|| {
        flag(
            "no repository: give --repo OWNER/NAME, `repo` in shiftgate.toml, or GITHUB_REPOSITORY"
                .into(),
        )
    })?;
    let repo = crate::github::Repo::parse(repo).map_err(flag)?;
    let github = crate::commands::github_from_env().map_err(|error| flag(error.message))?;
    let git_ref = git_ref_from_env()?;
    Ok(DeploymentTarget {
        github,
        repo,
        git_ref,
        environment: address
            .environment
            .clone()
            .unwrap_or_else(|| address.service.clone()),
        service: address.service.clone(),
        image: args.image.clone(),
        rollout_id: rollout_id.to_string(),
        log_url: crate::github::incident::workflow_run_link(),
    })
}

/// What every message names: the service and its environment, and the workflow run.
fn notify_subject(address: &crate::config::ServiceAddress) -> Subject {
    Subject {
        environment: address.environment.clone(),
        project: address.project.clone(),
        region: address.region.clone(),
        service: address.service.clone(),
        run_link: crate::github::incident::workflow_run_link(),
    }
}

/// How long the rollout may run without anyone's help going wrong: its steps, every hold's
/// timeout and every hook's (a static token must last all of it).
fn longest_run(policy: &crate::rollout::Policy) -> Duration {
    let hooks = [
        policy.hooks.backup.is_some(),
        policy.hooks.pre_job.is_some(),
        policy.hooks.post_job.is_some(),
        policy.hooks.on_rollback_job.is_some(),
    ]
    .iter()
    .filter(|given| **given)
    .count() as u32;
    policy
        .time_to_promote()
        .saturating_add(policy.pause.longest_wait())
        .saturating_add(policy.hooks.timeout.saturating_mul(hooks))
}

/// `--metrics`, or Prometheus when only `--prometheus-url` is given.
fn metrics_backend(args: &RolloutArgs) -> Result<MetricsBackend, CommandError> {
    match (args.metrics, &args.prometheus_url) {
        (Some(MetricsBackend::CloudMonitoring), Some(_)) => Err(CommandError::bad_input(
            "--prometheus-url goes with --metrics prometheus, not --metrics cloud-monitoring",
        )),
        (Some(backend), _) => Ok(backend),
        (None, Some(_)) => Ok(MetricsBackend::Prometheus),
        (None, None) => Ok(MetricsBackend::CloudMonitoring),
    }
}

/// A Prometheus server scraping the service sees requests at once; Google's backends lag.
fn default_metrics_delay(backend: MetricsBackend, args: &RolloutArgs) -> Duration {
    match (backend, &args.prometheus_url) {
        (MetricsBackend::Prometheus, Some(_)) => Duration::ZERO,
        _ => DEFAULT_MONITORING_DELAY,
    }
}

/// The metrics adapter for the backend, and its REST client (which counts the calls made).
fn metrics_adapter(
    backend: MetricsBackend,
    args: &RolloutArgs,
    endpoints: &Endpoints,
    credentials: Credentials,
    address: &crate::config::ServiceAddress,
) -> (Box<dyn Metrics>, GoogleRest) {
    match (backend, &args.prometheus_url) {
        (MetricsBackend::CloudMonitoring, _) => {
            let monitoring = CloudMonitoring::new(
                GoogleRest::new(&endpoints.monitoring, credentials),
                &address.project,
                &address.service,
            );
            let rest = monitoring.rest().clone();
            (Box::new(monitoring), rest)
        }
        (MetricsBackend::Prometheus, Some(url)) => {
            let prometheus = PrometheusMetrics::server(url, credentials, &address.service);
            let rest = prometheus.rest().clone();
            (Box::new(prometheus), rest)
        }
        (MetricsBackend::Prometheus, None) => {
            let prometheus = PrometheusMetrics::managed(
                &endpoints.monitoring,
                credentials,
                &address.project,
                &address.service,
            );
            let rest = prometheus.rest().clone();
            (Box::new(prometheus), rest)
        }
    }
}

/// Cloud Monitoring (and Managed Prometheus, which reads it) counts requests per whole minute, so a
/// shorter bake is judged partly on the previous step's traffic: worth saying, not worth refusing.
fn short_bake_warning(policy: &Policy) -> Option<String> {
    (!policy.bake.is_zero() && policy.bake < Duration::from_secs(60)).then(|| {
        format!(
            "--bake {} is shorter than Cloud Monitoring's one-minute resolution; each check then \
             also counts requests from the minute before the step began (use 1m or more)",
            humantime::format_duration(policy.bake)
        )
    })
}

pub fn candidate_source(args: &RolloutArgs) -> CandidateSource {
    match (&args.image, &args.revision) {
        _ if args.resume => CandidateSource::Resume,
        (Some(image), _) => CandidateSource::Image(image.clone()),
        (None, Some(revision)) => CandidateSource::Revision(revision.clone()),
        (None, None) => CandidateSource::LatestCreated,
    }
}

/// Runs the engine as `identity`, with progress on stderr (and to `observe`) and the summary at
/// the end.
pub async fn run_engine(
    context: &Context,
    ports: Ports<'_>,
    request: &RolloutRequest,
    identity: Identity,
    observe: &(dyn Fn(&Event) + Send + Sync),
    hooks: Option<&dyn Hooks>,
) -> Result<Report, CommandError> {
    let shown = progress_sink(&request.policy);
    let progress = |event: &Event| {
        shown(event);
        observe(event);
    };
    let id = identity.id.clone();
    let mut engine = Engine::new(ports, Clock::new(), context.interrupt.clone())
        .with_progress(&progress)
        .with_identity(identity);
    if let Some(hooks) = hooks {
        engine = engine.with_hooks(hooks);
    }
    // A bug must not leave the split where it was: a panic is caught, and the service put back
    // on stable if the rollout record on it is still this run's.
    let ran = AssertUnwindSafe(engine.run(request)).catch_unwind().await;
    let report = match ran {
        Ok(result) => result.map_err(|error| CommandError {
            exit_code: error.exit_code(),
            message: match error {
                RolloutError::Refused(message) => format!("{message} (nothing was changed)"),
                RolloutError::Api(message) => format!("{message} (nothing was changed)"),
            },
        })?,
        Err(panic) => return Err(recover_after_panic(ports.platform, &id, panic).await),
    };
    if report.outcome == Outcome::DryRun {
        crate::say!("{}", report.reason.clone().unwrap_or_default());
    } else {
        crate::say!("{}", summary(&report).trim_end());
    }
    Ok(report)
}

/// After a panic inside the engine: restore stable if the record on the service is still ours.
async fn recover_after_panic(
    platform: &dyn Platform,
    id: &str,
    panic: Box<dyn std::any::Any + Send>,
) -> CommandError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    let message = format!("internal error (please report it): {what}");
    let service = match tokio::time::timeout(PANIC_RESTORE_DEADLINE, platform.read_service()).await
    {
        Ok(Ok(service)) => service,
        _ => {
            return CommandError {
                exit_code: ExitCode::RollbackFailed,
                message: format!(
                    "{message}; the service could not be read to restore stable traffic: it needs a person"
                ),
            };
        }
    };
    let Some(record) = service.rollout.clone().filter(|r| r.id == id) else {
        return CommandError::api(format!(
            "{message}; this rollout had not changed the service (traffic {})",
            describe_traffic(&service.traffic)
        ));
    };
    let wanted = restore_traffic(&service, &record.stable);
    let say = |line: &str| crate::say!("restoring stable: {line}");
    match force_traffic(platform, &wanted, PANIC_RESTORE_DEADLINE, &say).await {
        Ok(after) => CommandError::api(format!(
            "{message}; stable traffic was restored (traffic {})",
            describe_traffic(&after.traffic)
        )),
        Err(why) => CommandError {
            exit_code: ExitCode::RollbackFailed,
            message: format!(
                "{message}; restoring stable traffic failed ({why}): the service needs a person"
            ),
        },
    }
}

const PANIC_RESTORE_DEADLINE: Duration = Duration::from_secs(60);

/// Files an automatic incident (a rollback, or a rollback that failed), or says once why not.
/// Never changes the command's exit code: a failure to file is logged and reported in the result.
pub async fn file_incident(
    no_incident: bool,
    repo: Option<&str>,
    build: impl FnOnce(crate::github::Repo) -> crate::github::incident::Incident,
) -> IncidentFiling {
    if no_incident {
        return IncidentFiling::NotFiled {
            reason: "--no-incident".into(),
        };
    }
    let not_filed = |reason: String| {
        crate::say!("incident: not filed: {reason}");
        IncidentFiling::NotFiled { reason }
    };
    let Some(repo) = repo else {
        return not_filed(
            "no repository configured (--repo, config `repo` or GITHUB_REPOSITORY)".into(),
        );
    };
    let repo = match crate::github::Repo::parse(repo) {
        Ok(repo) => repo,
        Err(message) => return not_filed(message),
    };
    let github = match crate::commands::github_from_env() {
        Ok(github) => github,
        Err(error) => return not_filed(error.message),
    };
    let incident = build(repo);
    let severity = incident.severity;
    match tokio::time::timeout(
        INCIDENT_TIMEOUT,
        crate::github::incident::file(&github, &incident),
    )
    .await
    {
        Ok(Ok(filed)) => {
            crate::say!(
                "incident {} {}: #{} {}",
                severity.name(),
                filed.action,
                filed.number,
                filed.url
            );
            IncidentFiling::Filed {
                action: filed.action,
                number: filed.number,
                url: filed.url,
                severity,
            }
        }
        Ok(Err(error)) => not_filed(format!("filing the incident failed: {error}")),
        Err(_) => not_filed(format!(
            "filing the incident took longer than {}s",
            INCIDENT_TIMEOUT.as_secs()
        )),
    }
}

/// How long filing the rollback's incident may take.
pub const INCIDENT_TIMEOUT: Duration = Duration::from_secs(120);
