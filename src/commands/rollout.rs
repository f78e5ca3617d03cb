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
use crate::commands::waves;
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
use crate::rollout::engine::{force_traffic, restore_split, restore_traffic};
use crate::rollout::hooks::{HookKind, HookReport};
use crate::rollout::judge::JudgeKind;
use crate::rollout::ownership::Identity;
use crate::rollout::pause::PauseTimeoutAction;
use crate::rollout::plan::DEFAULT_MONITORING_DELAY;
use crate::rollout::ports::{Hooks, Metrics, Platform};
use crate::rollout::timeline::{Event, EventKind, describe_traffic, traffic_shares};
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
    /// Each region of a rollout in waves, in order; absent with one region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<waves::RegionSummary>>,
    /// After a promotion: the service's open SEV-2 incident closed, or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_incident: Option<crate::commands::resolve::Resolution>,
}

impl RolloutResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts {
            incident_url: self.incident.as_ref().and_then(IncidentFiling::url),
            url: self.url.as_deref(),
            regions: self.regions.as_deref(),
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
    let addresses = config.resolve_waves(&args.service)?;
    waves::check_candidate(&args, &addresses)?;
    let first = &addresses[0];
    let backend = metrics_backend(&args)?;
    let policy = config.resolve_policy(
        first.environment.as_deref(),
        &args.policy_overrides(),
        default_metrics_delay(backend, &args),
    )?;
    if addresses.len() > 1 {
        policy.validate_waves().map_err(CommandError::bad_input)?;
    }
    let minute_resolution =
        !(backend == MetricsBackend::Prometheus && args.prometheus_url.is_some());
    if let Some(warning) = short_bake_warning(&policy).filter(|_| minute_resolution) {
        crate::say!("warning: {warning}");
    }
    let incident_repo = config.incident_repo(args.repo.as_deref());
    let webhooks = config.notify_targets(first.environment.as_deref(), &args.notify, |name| {
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
    if let Some(warning) =
        crate::gcp::static_token_warning(&credentials, longest_run(&policy, addresses.len()))
    {
        crate::say!("warning: {warning}");
    }
    let identities: Vec<Identity> = addresses.iter().map(|_| Identity::generate()).collect();
    let tracker = match args.github_deployment && !args.dry_run {
        true => Some(DeploymentTracker::start(deployment_target(
            &args,
            incident_repo.as_deref(),
            first,
            &identities[0].id,
        )?)),
        false => None,
    };
    for unset in &webhooks.unset {
        crate::notify::warn(&format!(
            "{unset}: that webhook is not told of this rollout"
        ));
    }
    let setup = RegionSetup {
        context,
        args: &args,
        backend,
        endpoints: &endpoints,
        credentials: &credentials,
        webhooks: &webhooks.urls,
        tracker: tracker.as_ref(),
    };
    let in_waves = addresses.len() > 1;
    if in_waves && !args.dry_run {
        let platforms: Vec<_> = addresses
            .iter()
            .map(|address| endpoints.cloud_run_with(address, credentials.clone()))
            .collect();
        let regions: Vec<(&crate::config::ServiceAddress, &dyn Platform)> = addresses
            .iter()
            .zip(&platforms)
            .map(|(address, platform)| (address, platform as &dyn Platform))
            .collect();
        let checked = tokio::select! {
            checked = waves::preflight(&regions, PREFLIGHT_TIMEOUT) => checked,
            _ = context.interrupt.fired() => Err(CommandError {
                exit_code: ExitCode::Interrupted,
                message: "interrupted while reading the regions; nothing was changed".into(),
            }),
        };
        if let Err(error) = checked {
            if let Some(tracker) = tracker {
                tracker.abandon(&error.message).await;
            }
            return Err(error);
        }
    }

    let mut runs: Vec<RegionRun> = Vec::new();
    let mut failure: Option<CommandError> = None;
    for (index, (address, identity)) in addresses.iter().zip(identities).enumerate() {
        let policy = match index {
            0 => policy.clone(),
            _ => policy.for_wave(),
        };
        if in_waves {
            crate::say!(
                "region {} of {}: {} ({})",
                index + 1,
                addresses.len(),
                address.region,
                match index {
                    0 => format!("steps {}", policy.steps),
                    _ => format!(
                        "wave: steps {}, bake {}",
                        policy.steps,
                        humantime::format_duration(policy.bake)
                    ),
                }
            );
        }
        match run_region(&setup, address, policy, identity).await {
            Ok(run) => {
                let outcome = run.run.report.outcome;
                runs.push(run);
                if waves::stops_waves(outcome) {
                    break;
                }
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }

    // A region that failed takes back every region promoted before it.
    let deciding_failed = match (&failure, runs.last()) {
        (Some(_), _) => true,
        (None, Some(last)) => waves::undoes_earlier(last.run.report.outcome),
        (None, None) => false,
    };
    let promoted_before = match &failure {
        Some(_) => runs.len(),
        None => runs.len().saturating_sub(1),
    };
    let mut summaries: Vec<waves::RegionSummary> = runs
        .iter()
        .map(|run| waves::RegionSummary::ran(&run.address.region, &run.run.report))
        .collect();
    if in_waves && deciding_failed {
        let why = match (&failure, runs.last()) {
            (Some(error), _) => error.message.clone(),
            (None, Some(last)) => last.run.report.reason.clone().unwrap_or_default(),
            (None, None) => String::new(),
        };
        let failed_region = &addresses[promoted_before].region;
        let promoted = &runs[..promoted_before];
        undo_earlier(&setup, promoted, &mut summaries, failed_region, &why).await;
    }
    // The pipeline's hooks ran around the first region: the result and the incident of a later
    // region's failure carry them, and a rollback of the first region runs its job.
    let mut first_hooks = match runs.len() {
        0 | 1 => Vec::new(),
        _ => runs[0].run.report.hooks.clone(),
    };
    if let (Some(job), Some(first), Some(summary)) = (
        &policy.hooks.on_rollback_job,
        runs.first(),
        summaries.first(),
    ) && summary.undone == Some(waves::UndoOutcome::RolledBack)
        && !context.interrupt.is_set()
    {
        first_hooks.push(on_rollback_job(&setup, &first.address, job, policy.hooks.timeout).await);
    }
    let undo_failed = summaries
        .iter()
        .any(|summary| summary.undone == Some(waves::UndoOutcome::Failed));
    let undo_interrupted = summaries
        .iter()
        .any(|summary| summary.undone == Some(waves::UndoOutcome::Interrupted));
    let undo_note = waves::undo_note(&summaries);
    let wave_steps = policy.wave.steps.percents();
    if let Some(error) = &failure {
        let region = &addresses[runs.len()].region;
        let reason = Some(error.message.clone());
        let steps = match runs.len() {
            0 => policy.steps.percents(),
            _ => wave_steps,
        };
        summaries.push(waves::RegionSummary::not_run(
            region, "error", steps, reason,
        ));
    }
    for address in addresses.iter().skip(summaries.len()) {
        let region = &address.region;
        summaries.push(waves::RegionSummary::not_run(
            region,
            "not_started",
            wave_steps,
            None,
        ));
    }

    let mut notifiers: Vec<Notifier> = Vec::new();
    let mut api_calls = GoogleApiCalls {
        cloud_run: 0,
        monitoring: 0,
    };
    let mut first_uri = None;
    let mut deciding = None;
    for (index, run) in runs.into_iter().enumerate() {
        api_calls.cloud_run += run.run.api_calls.cloud_run;
        api_calls.monitoring += run.run.api_calls.monitoring;
        if index == 0 {
            first_uri = run.uri.clone();
        }
        notifiers.extend(run.notifier);
        deciding = Some((run.run, run.address));
    }

    if let Some(mut error) = failure {
        if in_waves && promoted_before > 0 {
            // Earlier regions were changed (and undone): not "nothing was changed".
            let region = &addresses[promoted_before].region;
            error.message = format!(
                "region {region}: {}; {}",
                error.message,
                undo_note.clone().unwrap_or_default()
            );
            error.exit_code = match error.exit_code {
                _ if undo_failed => ExitCode::RollbackFailed,
                _ if undo_interrupted => ExitCode::Interrupted,
                ExitCode::BadInput => ExitCode::CheckFailed,
                other => other,
            };
            // No region's report carries this end, so the rollback that failed is filed here.
            for summary in summaries
                .iter()
                .filter(|summary| summary.undone == Some(waves::UndoOutcome::Failed))
            {
                let Some(address) = addresses.iter().find(|a| a.region == summary.region) else {
                    continue;
                };
                let service = format!(
                    "projects/{}/locations/{}/services/{}",
                    address.project, address.region, address.service
                );
                let split = crate::rollout::timeline::traffic_json_text(&summary.final_traffic);
                file_incident(args.no_incident, incident_repo.as_deref(), |repo| {
                    crate::github::incident::failed_rollback_incident(
                        repo,
                        "The rollout in waves, undoing this region after a later one failed,",
                        &service,
                        summary.stable.as_deref().unwrap_or_default(),
                        summary.reason.as_deref().unwrap_or_default(),
                        &split,
                    )
                })
                .await;
            }
        }
        if let Some(tracker) = tracker {
            tracker.abandon(&error.message).await;
        }
        finish_all(notifiers, Some(&error.message), &context.interrupt).await;
        return Err(error);
    }
    let Some((mut run, deciding_address)) = deciding else {
        return Err(CommandError::api("no region was rolled out"));
    };
    first_hooks.append(&mut run.report.hooks);
    run.report.hooks = first_hooks;
    if in_waves && deciding_failed {
        let region = &addresses[promoted_before].region;
        let own = run.report.reason.clone().unwrap_or_default();
        run.report.reason = Some(match &undo_note {
            Some(note) => format!("region {region}: {own}; {note}"),
            None => format!("region {region}: {own}"),
        });
        if undo_failed {
            run.report.rollback_failed = true;
            run.exit_code = run.report.exit_code();
        } else if undo_interrupted {
            run.exit_code = ExitCode::Interrupted;
        }
    }
    let url = public_url(first.url.as_deref(), first_uri);
    let github_deployment = match tracker {
        Some(tracker) => Some(tracker.finish(&run.report, url.as_deref()).await),
        None => None,
    };
    let incident = match run.report.outcome {
        // An expired hold is nobody's approval, not a fault of the candidate.
        Outcome::RolledBack if run.report.pause_expired => None,
        Outcome::RolledBack | Outcome::Failed => {
            let platform = endpoints.cloud_run_with(&deciding_address, credentials.clone());
            let evidence = crate::commands::rollout_evidence::for_incident(
                context,
                args.no_incident,
                incident_repo.as_deref(),
                &deciding_address,
                &endpoints,
                credentials.clone(),
                &platform,
                &run.report,
            )
            .await;
            Some(
                file_incident(args.no_incident, incident_repo.as_deref(), |repo| {
                    let incident =
                        crate::github::incident::rollout_incident(repo, &run.report, &run.policy);
                    match &evidence {
                        Some(evidence) => incident.with_evidence(evidence),
                        None => incident,
                    }
                })
                .await,
            )
        }
        _ => None,
    };
    let resolved_incident = crate::commands::resolve::after_rollout(
        (args.no_incident, incident_repo.as_deref()),
        deciding_address.environment.as_deref(),
        &run.report,
        incident.as_ref(),
        notifiers.last(),
    )
    .await;
    // Messages were being sent while the incident was filed; what is left gets a bounded wait.
    let notifications = match notifiers.is_empty() {
        // An end with no message of its own (a failed backup or pre-job) still closes the start.
        false => {
            Some(finish_all(notifiers, run.report.reason.as_deref(), &context.interrupt).await)
        }
        true => (!webhooks.urls.is_empty()).then(Vec::new),
    };
    run.api_calls = api_calls;
    Ok(CommandResult::Rollout(RolloutResult {
        run,
        incident,
        url,
        github_deployment,
        notifications,
        regions: in_waves.then_some(summaries),
        resolved_incident,
    }))
}

/// Puts back, latest first, each region promoted before `failed_region` failed, and tells its
/// webhooks as of any rollback.
async fn undo_earlier(
    setup: &RegionSetup<'_>,
    promoted: &[RegionRun],
    summaries: &mut [waves::RegionSummary],
    failed_region: &str,
    why: &str,
) {
    for (run, summary) in promoted.iter().zip(summaries.iter_mut()).rev() {
        let interrupt = &setup.context.interrupt;
        // After a signal no new write starts: the one under way has the runner's last seconds.
        if interrupt.is_set() {
            waves::not_undone(summary);
            continue;
        }
        let platform = setup
            .endpoints
            .cloud_run_with(&run.address, setup.credentials.clone());
        let report = &run.run.report;
        let reason = format!("{failed_region} failed after this region's promotion: {why}");
        waves::undo(&platform, summary, report, &reason, UNDO_TIMEOUT, interrupt).await;
        let Some(notifier) = &run.notifier else {
            continue;
        };
        let end = match summary.undone {
            Some(waves::UndoOutcome::RolledBack) => EventKind::RolledBack {
                traffic: restore_split(&report.final_traffic, &report.stable),
            },
            Some(waves::UndoOutcome::Failed) => EventKind::RollbackFailed {
                reason: summary.reason.clone().unwrap_or_default(),
            },
            _ => continue,
        };
        for kind in [EventKind::RollbackStarted { reason }, end] {
            notifier.observe(&Event {
                at: std::time::SystemTime::now(),
                elapsed_s: 0.0,
                kind,
            });
        }
    }
}

/// Runs `--on-rollback-job` after the first region, promoted, was rolled back because a later
/// region failed (the engine runs it after a rollback of its own).
async fn on_rollback_job(
    setup: &RegionSetup<'_>,
    address: &crate::config::ServiceAddress,
    job: &str,
    timeout: Duration,
) -> HookReport {
    let hooks = GoogleHooks::new(
        GoogleRest::new(&setup.endpoints.storage, setup.credentials.clone()),
        GoogleRest::new(&setup.endpoints.cloud_run, setup.credentials.clone()),
        &address.project,
        &address.region,
    );
    crate::say!(
        "running job {job} in {} (--on-rollback-job)",
        address.region
    );
    let started = tokio::time::Instant::now();
    let ran = tokio::select! {
        ran = hooks.run_job(job, timeout) => ran,
        _ = setup.context.interrupt.fired() => Err("interrupted; the job may still run in Cloud Run".to_string()),
    };
    let (ok, detail) = match ran {
        Ok(execution) => (true, execution),
        Err(why) => {
            crate::say!("warning: job {job} failed: {why}");
            (false, why)
        }
    };
    HookReport {
        hook: HookKind::OnRollbackJob,
        target: job.to_string(),
        ok,
        detail,
        duration_s: started.elapsed().as_secs_f64(),
    }
}

/// Waits (bounded) for every region's messages still being sent.
async fn finish_all(
    notifiers: Vec<Notifier>,
    stopped: Option<&str>,
    interrupt: &crate::rollout::engine::Interrupt,
) -> Vec<Delivery> {
    let mut delivered = Vec::new();
    for notifier in notifiers {
        delivered.extend(notifier.finish(stopped, interrupt).await);
    }
    delivered
}

/// How long the reads of every region before the first wave may take, each.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long undoing one promoted region may take.
const UNDO_TIMEOUT: Duration = Duration::from_secs(3 * 60);

/// What every region's rollout shares.
struct RegionSetup<'a> {
    context: &'a Context,
    args: &'a RolloutArgs,
    backend: MetricsBackend,
    endpoints: &'a Endpoints,
    credentials: &'a Credentials,
    webhooks: &'a [crate::notify::NotifyUrl],
    tracker: Option<&'a DeploymentTracker>,
}

/// One region's rollout: its report, the service URL it saw, and its messages still being sent.
struct RegionRun {
    address: crate::config::ServiceAddress,
    run: RolloutRun,
    uri: Option<String>,
    notifier: Option<Notifier>,
}

/// Runs the rollout of one region (the only one, or one wave) to its end.
async fn run_region(
    setup: &RegionSetup<'_>,
    address: &crate::config::ServiceAddress,
    policy: Policy,
    identity: Identity,
) -> Result<RegionRun, CommandError> {
    let args = setup.args;
    let endpoints = setup.endpoints;
    let credentials = setup.credentials;
    let platform = endpoints.cloud_run_with(address, credentials.clone());
    let hooks = GoogleHooks::new(
        GoogleRest::new(&endpoints.storage, credentials.clone()),
        GoogleRest::new(&endpoints.cloud_run, credentials.clone()),
        &address.project,
        &address.region,
    );
    let seen = UriSeen::new(&platform);
    let (metrics, metrics_rest) =
        metrics_adapter(setup.backend, args, endpoints, credentials.clone(), address);
    let health = HttpHealthEndpoint::new(HEALTH_TIMEOUT).with_id_tokens(IdTokens::from_env());
    let ports = Ports {
        platform: &seen,
        metrics: metrics.as_ref(),
        health: &health,
    };
    let request = RolloutRequest {
        policy,
        candidate: candidate_source(args),
        dry_run: args.dry_run,
    };
    // A dry run changes nothing, so it has nothing to announce.
    let notifier = (!setup.webhooks.is_empty() && !args.dry_run)
        .then(|| Notifier::start(setup.webhooks.to_vec(), notify_subject(address)));
    let tracker = setup.tracker;
    let observe = |event: &Event| {
        if let Some(tracker) = tracker {
            tracker.observe(event);
        }
        if let Some(notifier) = &notifier {
            notifier.observe(event);
        }
    };
    let ran = run_engine(
        setup.context,
        ports,
        &request,
        identity,
        &observe,
        Some(&hooks),
    )
    .await;
    let report = match ran {
        Ok(report) => report,
        Err(error) => {
            if let Some(notifier) = notifier {
                notifier
                    .finish(Some(&error.message), &setup.context.interrupt)
                    .await;
            }
            return Err(error);
        }
    };
    let api_calls = GoogleApiCalls {
        cloud_run: platform.rest().calls(),
        monitoring: metrics_rest.calls(),
    };
    Ok(RegionRun {
        address: address.clone(),
        uri: seen.uri(),
        run: RolloutRun::new(report, request.policy, api_calls),
        notifier,
    })
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
/// timeout and every hook's, and each later region's wave (a static token must last all of it).
fn longest_run(policy: &crate::rollout::Policy, regions: usize) -> Duration {
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
        .saturating_add(
            policy
                .for_wave()
                .time_to_promote()
                .saturating_mul(u32::try_from(regions.saturating_sub(1)).unwrap_or(u32::MAX)),
        )
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
