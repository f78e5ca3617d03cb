//! `shiftgate rollout`: resolves service and policy, runs the engine against Cloud Run and Cloud
//! Monitoring, and reports the outcome.

use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use serde_json::{Value, json};

use crate::actions::progress_sink;
use crate::cli::MetricsBackend;
use crate::cli::RolloutArgs;
use crate::clock::Clock;
use crate::commands::{CommandError, Context, Endpoints, Finished, traffic_json};
use crate::exit::ExitCode;
use crate::gcp::GoogleRest;
use crate::health::HttpHealthEndpoint;
use crate::metrics::{CloudMonitoring, PrometheusMetrics};
use crate::output::summary;
use crate::rollout::engine::{force_traffic, restore_traffic};
use crate::rollout::ownership::Identity;
use crate::rollout::plan::DEFAULT_MONITORING_DELAY;
use crate::rollout::ports::{Metrics, Platform};
use crate::rollout::timeline::describe_traffic;
use crate::rollout::{
    CandidateSource, Engine, Outcome, Policy, Ports, Report, RolloutError, RolloutRequest,
};

pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(context: &Context, args: RolloutArgs) -> Result<Finished, CommandError> {
    let config = context.config()?;
    let address = config.resolve_service(&args.service)?;
    let backend = match (args.metrics, &args.prometheus_url) {
        (Some(MetricsBackend::CloudMonitoring), Some(_)) => {
            return Err(CommandError::bad_input(
                "--prometheus-url goes with --metrics prometheus, not --metrics cloud-monitoring",
            ));
        }
        (Some(backend), _) => backend,
        (None, Some(_)) => MetricsBackend::Prometheus,
        (None, None) => MetricsBackend::CloudMonitoring,
    };
    // A Prometheus server scraping the service sees requests at once; Google's backends lag.
    let default_delay = match (backend, &args.prometheus_url) {
        (MetricsBackend::Prometheus, Some(_)) => Duration::ZERO,
        _ => DEFAULT_MONITORING_DELAY,
    };
    let policy = config.resolve_policy(
        address.environment.as_deref(),
        &args.policy_overrides(),
        default_delay,
    )?;
    let minute_resolution =
        !(backend == MetricsBackend::Prometheus && args.prometheus_url.is_some());
    if let Some(warning) = short_bake_warning(&policy).filter(|_| minute_resolution) {
        crate::say!("warning: {warning}");
    }
    let candidate = candidate_source(&args);
    let incident_repo = config.incident_repo(args.repo.as_deref());

    let endpoints = Endpoints::from_env();
    let credentials = crate::gcp::Credentials::from_env();
    if let Some(warning) = crate::gcp::static_token_warning(&credentials, policy.time_to_promote())
    {
        crate::say!("warning: {warning}");
    }
    let platform = endpoints.cloud_run_with(&address, credentials.clone());
    let (metrics, metrics_rest): (Box<dyn Metrics>, GoogleRest) =
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
        };
    let health = HttpHealthEndpoint::new(HEALTH_TIMEOUT);
    let ports = Ports {
        platform: &platform,
        metrics: metrics.as_ref(),
        health: &health,
    };
    let request = RolloutRequest {
        policy,
        candidate,
        dry_run: args.dry_run,
    };
    let report = run_engine(context, ports, &request).await?;
    let mut result = report_json(&report, &request.policy);
    result["api_calls"] = json!({
        "cloud_run": platform.rest().calls(),
        "monitoring": metrics_rest.calls(),
    });
    if matches!(report.outcome, Outcome::RolledBack | Outcome::Failed) {
        result["incident"] = file_incident(args.no_incident, incident_repo.as_deref(), |repo| {
            crate::github::incident::rollout_incident(repo, &report)
        })
        .await;
    }
    Ok(Finished {
        exit_code: report.exit_code(),
        result,
    })
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

/// Runs the engine with progress on stderr and the summary at the end.
pub async fn run_engine(
    context: &Context,
    ports: Ports<'_>,
    request: &RolloutRequest,
) -> Result<Report, CommandError> {
    let progress = progress_sink();
    let identity = Identity::generate();
    let id = identity.id.clone();
    let mut engine = Engine::new(ports, Clock::new(), context.interrupt.clone())
        .with_progress(&*progress)
        .with_identity(identity);
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

/// The `--json` result of a rollout.
pub fn report_json(report: &Report, policy: &Policy) -> Value {
    let mut value = serde_json::to_value(report).expect("a report serializes");
    value["command"] = json!("rollout");
    value["final_traffic"] = traffic_json(&report.final_traffic);
    value["exit_code"] = json!(report.exit_code());
    value["policy"] = json!({
        "steps": policy.steps,
        "bake_s": policy.bake.as_secs_f64(),
        "interval_s": policy.interval.as_secs_f64(),
        "max_error_rate": policy.max_error_rate,
        "min_requests": policy.min_requests,
        "metrics_delay_s": policy.metrics_delay.as_secs_f64(),
        "health_path": policy.health.path,
    });
    value
}

/// Files an automatic incident (a rollback, or a rollback that failed), or says once why not.
/// Never changes the command's exit code: a failure to file is logged and reported in the result.
pub async fn file_incident(
    no_incident: bool,
    repo: Option<&str>,
    build: impl FnOnce(crate::github::Repo) -> crate::github::incident::Incident,
) -> Value {
    if no_incident {
        return json!({"filed": false, "reason": "--no-incident"});
    }
    let not_filed = |reason: String| {
        crate::say!("incident: not filed: {reason}");
        json!({"filed": false, "reason": reason})
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
    let severity = incident.severity.name();
    match tokio::time::timeout(
        INCIDENT_TIMEOUT,
        crate::github::incident::file(&github, &incident),
    )
    .await
    {
        Ok(Ok(filed)) => {
            crate::say!(
                "incident {severity} {}: #{} {}",
                filed.action,
                filed.number,
                filed.url
            );
            json!({"filed": true, "action": filed.action, "number": filed.number,
                   "url": filed.url, "severity": severity})
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
