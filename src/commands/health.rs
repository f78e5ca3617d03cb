//! `shiftgate health`: probes the health endpoint of one URL, one environment, or every
//! environment in the config file (up to --failures checks in a row), judged as a rollout judges.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::HealthArgs;
use crate::clock::Clock;
use crate::commands::health_incident::{self, HealthIncident};
use crate::commands::result::CommandResult;
use crate::commands::{CommandError, Context, Endpoints};
use crate::config::Config;
use crate::exit::ExitCode;
use crate::health::HttpHealthEndpoint;
use crate::id_token::IdTokens;
use crate::rollout::health_judge::Expectations;
use crate::rollout::ports::{HealthEndpoint, HealthProbe, Platform};
use crate::rollout::verdict::Verdict;

pub(crate) struct Target {
    pub(crate) environment: Option<String>,
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
    /// How many checks in a row make an environment down; absent when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Checks>,
    /// `--incident`: what was done on GitHub for each environment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<HealthIncident>,
    /// Each `--notify` message about an incident and whether it arrived; absent without webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Vec<crate::notify::Delivery>>,
    pub exit_code: ExitCode,
}

/// `--failures` and `--every` as the result shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checks {
    pub failures: u8,
    pub every_s: f64,
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
    /// Checks made (the last one's answer is shown); absent when it was one.
    #[serde(skip_serializing_if = "is_one")]
    pub checks: u32,
}

fn is_one(checks: &u32) -> bool {
    *checks == 1
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
            checks: None,
            incidents: Vec::new(),
            notifications: None,
            exit_code,
        }
    }

    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        ResultFacts {
            // `--incident`: the first issue opened, commented on or closed.
            incident_url: self
                .incidents
                .iter()
                .filter(|incident| matches!(incident.action, "opened" | "commented" | "closed"))
                .find_map(|incident| incident.url.as_deref()),
            ..ResultFacts::new(command, self.outcome, self.exit_code)
        }
    }
}

pub async fn run(context: &Context, args: HealthArgs) -> Result<CommandResult, CommandError> {
    let config = context.config()?;
    // Without --incident these have no use. Given on the command line that is a mistake worth
    // saying; set for the whole job (SHIFTGATE_REPO, SHIFTGATE_NOTIFY, as the action and many
    // workflows do for every step) it is not, and must not fail a plain health check.
    let from_environment = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    for (given, flag, variable) in [
        (!args.notify.is_empty(), "--notify", "SHIFTGATE_NOTIFY"),
        (args.repo.is_some(), "--repo", "SHIFTGATE_REPO"),
    ] {
        if given && !args.incident && !from_environment(variable) {
            return Err(CommandError::bad_input(format!(
                "{flag} goes with --incident (health files and announces only incidents)"
            )));
        }
    }
    let failures = args.failures.unwrap_or(if args.incident { 3 } else { 1 });
    let targets = targets(&config, &args).await?;
    // The repository, token and webhooks are checked before any probe.
    let filing = match args.incident {
        true => Some(health_incident::Filing::prepare(&config, &args, &targets)?),
        false => None,
    };
    let endpoint = HttpHealthEndpoint::new(args.timeout).with_id_tokens(IdTokens::from_env());
    let clock = Clock::new();
    // Environments are checked side by side: each may take --failures checks.
    let watched = futures_util::future::join_all(targets.iter().map(|target| {
        // A recovery must hold as long as an outage had to: a flapping service then
        // neither closes its issue nor opens a second one.
        let passes = if args.incident { failures } else { 1 };
        let needed = Needed { failures, passes };
        probe_until(&endpoint, target, needed, args.every, clock)
    }))
    .await;
    let mut result = HealthResult::new(watched.iter().map(|w| w.result.clone()).collect());
    if failures > 1 {
        result.checks = Some(Checks {
            failures,
            every_s: args.every.as_secs_f64(),
        });
    }
    if let Some(filing) = filing {
        let (incidents, notifications) = filing.act(&targets, &watched, clock, context).await;
        if result.exit_code == ExitCode::Ok && incidents.iter().any(|i| i.action == "failed") {
            result.exit_code = ExitCode::ApiFailed;
        }
        result.incidents = incidents;
        result.notifications = notifications;
    }
    Ok(CommandResult::Health(result))
}

/// One environment's checks: the last answer, and when the failing run of checks began.
pub(crate) struct Watched {
    pub(crate) result: ProbeResult,
    /// This machine's time of the first of the failed checks, when the environment is down.
    pub(crate) down_since: Option<SystemTime>,
    /// Checks made (all failed when down).
    pub(crate) failures: u8,
    /// As many passes in a row as a recovery needs: an open incident may be closed.
    pub(crate) recovered: bool,
}

/// How many checks in a row decide: `failures` failed ones make an environment down, `passes`
/// passed ones make it healthy.
#[derive(Debug, Clone, Copy)]
struct Needed {
    failures: u8,
    passes: u8,
}

/// Probes `target`, `every` apart, until `needed.failures` checks in a row failed (down, since
/// the first of them) or `needed.passes` in a row passed (recovered); a run that settles neither
/// way ends after as many checks as both would take, its last answer standing.
async fn probe_until(
    endpoint: &dyn HealthEndpoint,
    target: &Target,
    needed: Needed,
    every: Duration,
    clock: Clock,
) -> Watched {
    let limit = needed.failures.max(1) + needed.passes.max(1) - 1;
    let (mut passes, mut failed, mut checks) = (0u8, 0u8, 0u8);
    let mut failing_since = clock.now();
    loop {
        checks += 1;
        let numbered = (limit > 1).then_some((checks, limit));
        let at = clock.now();
        let mut result = probe(endpoint, target, numbered).await;
        result.checks = u32::from(checks);
        if result.verdict == "pass" {
            (passes, failed) = (passes + 1, 0);
        } else {
            if failed == 0 {
                failing_since = at;
            }
            (passes, failed) = (0, failed + 1);
        }
        let down = failed >= needed.failures.max(1);
        let recovered = passes >= needed.passes.max(1);
        if down || recovered || checks >= limit {
            return Watched {
                result,
                down_since: down.then_some(failing_since),
                failures: failed,
                recovered,
            };
        }
        tokio::time::sleep(every).await;
    }
}

pub(crate) async fn targets(
    config: &Config,
    args: &HealthArgs,
) -> Result<Vec<Target>, CommandError> {
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
    let explicit_service = args.service.project.is_some()
        || args.service.service.is_some()
        || args.service.region.is_some();
    // An environment's public URL is its health endpoint, whatever region serves it (one in
    // several regions needs no --region then).
    if let (Some(name), false) = (&args.service.environment, explicit_service)
        && let Some(url) = &config.environment(name)?.url
    {
        return Ok(vec![Target {
            environment: Some(name.clone()),
            base_url: url.clone(),
            service_url: None,
            expectations: config.resolve_health(Some(name), &args.health.overrides())?,
        }]);
    }
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

/// One check; `of` is `(this check, checks allowed)` when there may be more than one.
async fn probe(
    endpoint: &dyn HealthEndpoint,
    target: &Target,
    of: Option<(u8, u8)>,
) -> ProbeResult {
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
    let check = of
        .map(|(n, of)| format!(" [check {n} of {of}]"))
        .unwrap_or_default();
    match &verdict {
        Verdict::Pass => crate::say!("{label:<10} healthy    {url} ({latency_ms} ms){check}"),
        other => crate::say!(
            "{label:<10} UNHEALTHY  {url}: {}{check}",
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
        checks: 1,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::rollout::ports::HealthResponse;

    /// Answers each probe with the next status of its script, and keeps the last one after.
    struct Scripted(Mutex<Vec<u16>>);

    #[async_trait]
    impl HealthEndpoint for Scripted {
        async fn fetch(&self, _probe: &HealthProbe<'_>) -> Result<HealthResponse, String> {
            let mut script = self.0.lock().unwrap();
            let status = if script.len() > 1 {
                script.remove(0)
            } else {
                script[0]
            };
            Ok(HealthResponse {
                status,
                body: String::new(),
            })
        }
    }

    fn target() -> Target {
        Target {
            environment: Some("prod".into()),
            base_url: "https://app".into(),
            service_url: None,
            expectations: Expectations::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn given_failing_checks_then_a_pass_ends_the_checking_and_the_environment_is_not_down() {
        let endpoint = Scripted(Mutex::new(vec![503, 503, 200]));
        let clock = Clock::new();
        let started = tokio::time::Instant::now();

        let needed = Needed {
            failures: 5,
            passes: 1,
        };
        let watched =
            probe_until(&endpoint, &target(), needed, Duration::from_secs(10), clock).await;

        assert_eq!(watched.result.verdict, "pass");
        assert_eq!(watched.result.checks, 3);
        assert_eq!(watched.down_since, None);
        assert!(watched.recovered);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(20),
            "two waits of --every"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn given_as_many_failed_checks_in_a_row_as_failures_then_it_is_down_since_the_first() {
        let endpoint = Scripted(Mutex::new(vec![503]));
        let clock = Clock::new();
        let first = clock.now();

        let needed = Needed {
            failures: 3,
            passes: 3,
        };
        let watched =
            probe_until(&endpoint, &target(), needed, Duration::from_secs(10), clock).await;

        assert_eq!(watched.result.verdict, "fail");
        assert_eq!(watched.result.checks, 3);
        assert_eq!(watched.failures, 3);
        assert_eq!(watched.down_since, Some(first));
        assert_eq!(
            clock.now().duration_since(first).unwrap(),
            Duration::from_secs(20),
            "no wait after the last check"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_flapping_service_then_it_is_neither_down_nor_recovered() {
        // Half its answers fail: never three failures in a row, never three passes.
        let flapping = vec![503, 200, 503, 200, 503, 200, 503];
        let endpoint = Scripted(Mutex::new(flapping));
        let needed = Needed {
            failures: 3,
            passes: 3,
        };

        let watched = probe_until(
            &endpoint,
            &target(),
            needed,
            Duration::from_secs(10),
            Clock::new(),
        )
        .await;

        assert_eq!(
            watched.result.checks, 5,
            "as many checks as both would take"
        );
        assert_eq!(watched.down_since, None);
        assert!(!watched.recovered);
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_failure_then_three_passes_then_it_has_recovered() {
        let endpoint = Scripted(Mutex::new(vec![503, 200]));
        let needed = Needed {
            failures: 3,
            passes: 3,
        };

        let watched = probe_until(
            &endpoint,
            &target(),
            needed,
            Duration::from_secs(10),
            Clock::new(),
        )
        .await;

        assert_eq!(watched.result.checks, 4);
        assert!(watched.recovered && watched.down_since.is_none());
    }
}
