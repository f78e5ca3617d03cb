//! `shiftgate demo`: a full rollout of the real engine and the real Cloud Run, Monitoring and
//! health adapters against the built-in simulated Cloud Run on loopback, with traffic flowing.

use std::time::Duration;

use serde::Serialize;

use crate::actions::ResultFacts;
use crate::cli::{DemoArgs, Scenario};
use crate::clock::Clock;
use crate::cloudrun::CloudRunService;
use crate::commands::result::CommandResult;
use crate::commands::rollout::{GoogleApiCalls, RolloutRun, run_engine};
use crate::commands::{CommandError, Context};
use crate::gcp::{Credentials, GoogleRest};
use crate::health::HttpHealthEndpoint;
use crate::metrics::CloudMonitoring;
use crate::rollout::latency::{LatencyLimit, Quantile};
use crate::rollout::ownership::Identity;
use crate::rollout::plan::{Policy, Steps};
use crate::rollout::{CandidateSource, Ports, RolloutRequest};
use shiftgate_sim::{Behavior, Sim};

const PROJECT: &str = "demo-project";
const REGION: &str = "us-central1";
const SERVICE: &str = "loopcloser-demo";
const STABLE_IMAGE: &str = "us-central1-docker.pkg.dev/demo-project/images/loopcloser-app:v1.3.0";
const CANDIDATE_IMAGE: &str =
    "us-central1-docker.pkg.dev/demo-project/images/loopcloser-app:v1.4.0";
/// Enough traffic that a 10% step sees dozens of candidate requests in a short bake.
const REQUESTS_PER_SECOND: f64 = 50.0;

/// `shiftgate demo --json`: the rollout against the simulator, and which candidate it was.
#[derive(Debug, Clone, Serialize)]
pub struct DemoResult {
    #[serde(flatten)]
    pub run: RolloutRun,
    /// `good`, `bad`, `unhealthy` or `slow`.
    pub scenario: &'static str,
}

impl DemoResult {
    pub fn facts<'a>(&'a self, command: &'a str) -> ResultFacts<'a> {
        self.run.facts(command)
    }
}

fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Good => "good",
        Scenario::Bad => "bad",
        Scenario::Unhealthy => "unhealthy",
        Scenario::Slow => "slow",
    }
}

pub async fn run(context: &Context, args: DemoArgs) -> Result<CommandResult, CommandError> {
    // The demo's service, policy and traffic are built in, so a config would be ignored; saying
    // so beats letting someone think the demo tried their policy.
    if let Some(path) = &context.config_path {
        return Err(CommandError::bad_input(format!(
            "demo reads no config (its service, policy and traffic are built in), but --config (or \
             SHIFTGATE_CONFIG) names {}: drop it; to see what a config's policy does on synthetic traffic, run \
             `shiftgate simulate --env NAME`",
            path.display()
        )));
    }
    let sim = Sim::start(Clock::new())
        .await
        .map_err(|error| CommandError::api(format!("could not start the simulator: {error}")))?;
    sim.set_operation_delay(Duration::from_millis(400));
    let stable = sim.add_service(PROJECT, REGION, SERVICE, STABLE_IMAGE);
    served_an_hour_already(&sim, &stable);
    let behavior = match args.scenario {
        Scenario::Good => Behavior::healthy("1.4.0"),
        Scenario::Bad => Behavior::erroring("1.4.0", 0.3),
        Scenario::Unhealthy => Behavior::unhealthy("1.4.0"),
        Scenario::Slow => Behavior::healthy("1.4.0")
            .with_latency(Duration::from_millis(700), Duration::from_millis(1300)),
    };
    sim.register_image(CANDIDATE_IMAGE, behavior);
    let _load = sim.start_load(PROJECT, REGION, SERVICE, REQUESTS_PER_SECOND);
    let policy = demo_policy(args.bake);
    introduce(&sim, &stable, args.scenario, &policy);

    let platform = CloudRunService::new(
        GoogleRest::new(&sim.cloud_run_url(), Credentials::None),
        PROJECT,
        REGION,
        SERVICE,
    );
    let metrics = CloudMonitoring::new(
        GoogleRest::new(&sim.monitoring_url(), Credentials::None),
        PROJECT,
        SERVICE,
    );
    let health = HttpHealthEndpoint::new(Duration::from_secs(5));
    let request = RolloutRequest {
        policy,
        candidate: CandidateSource::Image(CANDIDATE_IMAGE.to_string()),
        dry_run: false,
    };
    let ports = Ports {
        platform: &platform,
        metrics: &metrics,
        health: &health,
    };
    let report = run_engine(
        context,
        ports,
        &request,
        Identity::generate(),
        &|_| {},
        None,
    )
    .await?;
    let api_calls = GoogleApiCalls {
        cloud_run: platform.rest().calls(),
        monitoring: metrics.rest().calls(),
    };
    Ok(CommandResult::Demo(DemoResult {
        run: RolloutRun::new(report, request.policy, api_calls),
        scenario: scenario_name(args.scenario),
    }))
}

/// The stable revision's last hour at the demo's rate, as a real service has one: the judge
/// starts from stable's history, and the up-front traffic forecast reads it.
fn served_an_hour_already(sim: &Sim, stable: &str) {
    let now = sim.model().clock().now();
    let hour = Duration::from_secs(60 * 60);
    let requests = (hour.as_secs_f64() * REQUESTS_PER_SECOND) as u32;
    for n in 0..requests {
        let ago = hour.mul_f64(1.0 - f64::from(n) / f64::from(requests));
        if let Some(at) = now.checked_sub(ago) {
            sim.model().record(stable, 200, at);
        }
    }
}

/// The default steps with a short bake, little enough traffic to judge on, and a latency gate
/// that stable's 90ms p95 passes.
fn demo_policy(bake: Duration) -> Policy {
    Policy {
        steps: Steps::default(),
        bake,
        interval: (bake / 4).max(Duration::from_millis(500)),
        max_error_rate: 0.05,
        min_requests: 20,
        metrics_delay: Duration::ZERO,
        latency: vec![LatencyLimit {
            quantile: Quantile::P95,
            limit: Duration::from_millis(500),
        }],
        ..Policy::default()
    }
}

/// Says what the demo is about to do.
fn introduce(sim: &Sim, stable: &str, scenario: Scenario, policy: &Policy) {
    crate::say!(
        "shiftgate demo ({scenario:?} candidate): a simulated Cloud Run on {}",
        sim.cloud_run_url()
    );
    crate::say!(
        "service {SERVICE} serves {stable} at {} with {REQUESTS_PER_SECOND} requests/s; rolling out {CANDIDATE_IMAGE}",
        sim.service_url(PROJECT, REGION, SERVICE)
            .unwrap_or_default()
    );
    crate::say!(
        "policy: steps {}, bake {} each, check every {}, fail above {} 5xx or {}, at least {} candidate requests in all\n",
        policy.steps,
        humantime::format_duration(policy.bake),
        humantime::format_duration(policy.interval),
        crate::rollout::judge::percent(policy.max_error_rate),
        policy.latency_text(),
        policy.min_requests
    );
}
