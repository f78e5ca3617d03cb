//! `shiftgate health`: probes the health endpoint of one URL, one environment, or every
//! environment in the config file, and judges the answers with the same rules as a rollout.

use std::time::Instant;

use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::HealthArgs;
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, Endpoints};
use crate::config::Config;
use crate::exit::ExitCode;
use crate::health::HttpHealthEndpoint;
use crate::id_token::IdTokens;
use crate::rollout::health_judge::Expectations;
use crate::rollout::ports::{HealthEndpoint, HealthProbe, Platform};
use crate::rollout::verdict::Verdict;

struct Target {
    environment: Option<String>,
    base_url: String,
    /// The service's main URL, when read from Cloud Run (an ID token's audience).
    service_url: Option<String>,
    expectations: Expectations,
}

/// `shiftgate health --json`: one probe per endpoint; healthy only when every one passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthResult {
    /// `healthy` or `unhealthy`.
    pub outcome: &'static str,
    pub results: Vec<ProbeResult>,
    pub exit_code: ExitCode,
}

/// One endpoint's answer and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    pub environment: Option<String>,
    pub url: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: &'static str,
    pub reason: Option<String>,
    pub latency_ms: u64,
}

impl HealthResult {
    pub fn new(results: Vec<ProbeResult>) -> Self {
        let all_healthy = results.iter().all(|probe| probe.verdict == "pass");
        let (outcome, exit_code) = if all_healthy {
            ("healthy", ExitCode::Ok)
        } else {
            ("unhealthy", ExitCode::CheckFailed)
        };
        Self {
            outcome,
            results,
            exit_code,
        }
    }

    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts::new(command, self.outcome, self.exit_code)
    }
}

pub async fn run(context: &Context, args: HealthArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    let targets = targets(&config, &args).await?;
    let endpoint = HttpHealthEndpoint::new(args.timeout).with_id_tokens(IdTokens::from_env());
    let mut results = Vec::new();
    for target in targets {
        results.push(probe(&endpoint, &target).await);
    }
    Ok(CommandResult::Health(HealthResult::new(results)))
}

async fn targets(config: &Config, args: &HealthArgs) -> Result<Vec<Target>, CommandError> {
    if let Some(url) = &args.url {
        return Ok(vec![Target {
            environment: args.service.environment.clone(),
            base_url: url.clone(),
            service_url: None,
            expectations: config.resolve_health(
                args.service.environment.as_deref(),
                &args.health.overrides(),
            )?,
        }]);
    }
    let explicit_service = args.service.project.is_some() || args.service.service.is_some();
    if args.service.environment.is_some() || explicit_service {
        let address = config.resolve_service(&args.service)?;
        let (base_url, service_url) = match &address.url {
            Some(url) => (url.clone(), None),
            None => {
                let endpoints = Endpoints::from_env();
                let platform = endpoints.cloud_run(&address).await?;
                let service = platform.read_service().await.map_err(|error| {
                    CommandError::api(format!("could not read the service's URL: {error}"))
                })?;
                let uri = service.uri.ok_or_else(|| {
                    CommandError::bad_input(format!("{} has no URL; give --url", service.name))
                })?;
                (uri.clone(), Some(uri))
            }
        };
        return Ok(vec![Target {
            expectations: config
                .resolve_health(address.environment.as_deref(), &args.health.overrides())?,
            environment: address.environment,
            base_url,
            service_url,
        }]);
    }
    if config.environments.is_empty() {
        return Err(CommandError::bad_input(
            "nothing to probe: give --url URL, --env NAME, or --project/--region/--service, \
             or list environments with a `url` in shiftgate.toml",
        ));
    }
    let mut all = Vec::new();
    for (name, environment) in &config.environments {
        let Some(url) = &environment.url else {
            return Err(CommandError::bad_input(format!(
                "environment {name} has no `url` in the config file; add one or probe it with --env {name}"
            )));
        };
        all.push(Target {
            environment: Some(name.clone()),
            base_url: url.clone(),
            service_url: None,
            expectations: config.resolve_health(Some(name), &args.health.overrides())?,
        });
    }
    Ok(all)
}

async fn probe(endpoint: &dyn HealthEndpoint, target: &Target) -> ProbeResult {
    let url = target.expectations.url_for(&target.base_url);
    let started = Instant::now();
    let fetched = endpoint
        .fetch(&HealthProbe {
            url: &url,
            service_url: target.service_url.as_deref(),
            audience: target.expectations.audience.as_deref(),
        })
        .await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (status, verdict) = match &fetched {
        Ok(response) => (Some(response.status), target.expectations.judge(response)),
        Err(reason) => (None, Verdict::Fail(format!("no answer: {reason}"))),
    };
    let label = target.environment.as_deref().unwrap_or("url");
    match &verdict {
        Verdict::Pass => crate::say!("{label:<10} healthy    {url} ({latency_ms} ms)"),
        other => crate::say!(
            "{label:<10} UNHEALTHY  {url}: {}",
            other.reason().unwrap_or_default()
        ),
    }
    ProbeResult {
        environment: target.environment.clone(),
        status,
        verdict: verdict.label(),
        reason: verdict.reason().map(str::to_string),
        latency_ms,
        url,
    }
}
