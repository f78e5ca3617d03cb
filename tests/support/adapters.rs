//! One rollout through the real adapters the binary uses (Cloud Run v2 and Monitoring v3 clients,
//! the HTTP health probe), for the scenarios that run the engine against a simulator over loopback.

use std::time::Duration;

use shiftgate::clock::Clock;
use shiftgate::ports::{Metrics, Platform};
use shiftgate::{
    CandidateSource, Engine, HttpHealthEndpoint, Interrupt, Policy, Ports, Report, RolloutError,
    RolloutRequest,
};

/// Rolls `candidate` out under `policy` through `platform`, `metrics` and an HTTP health probe
/// with a 5 s timeout, never interrupted.
pub async fn roll_out_over_http(
    platform: &dyn Platform,
    metrics: &dyn Metrics,
    clock: Clock,
    policy: Policy,
    candidate: CandidateSource,
) -> Result<Report, RolloutError> {
    let health = HttpHealthEndpoint::new(Duration::from_secs(5));
    let ports = Ports {
        platform,
        metrics,
        health: &health,
    };
    Engine::new(ports, clock, Interrupt::never())
        .run(&RolloutRequest {
            policy,
            candidate,
            dry_run: false,
        })
        .await
}
