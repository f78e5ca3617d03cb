//! The rollout engine: plan the steps, move traffic, judge each step, roll back on failure.
//! It talks only to the ports in `ports`; adapters for Cloud Run, Monitoring and HTTP live elsewhere.

pub(crate) mod check;
pub(crate) mod compare;
pub(crate) mod engine;
mod forecast;
pub(crate) mod health_judge;
pub(crate) mod histogram;
pub(crate) mod history;
pub(crate) mod hooks;
mod interrupt;
pub(crate) mod judge;
pub(crate) mod latency;
pub(crate) mod limits;
pub(crate) mod ownership;
pub(crate) mod pause;
pub(crate) mod plan;
pub(crate) mod ports;
mod prepare;
mod request;
mod restore;
mod sequential;
mod start;
mod step;
pub(crate) mod timeline;
mod traffic;
pub(crate) mod verdict;
mod write;

pub use engine::{
    CandidateSource, Engine, Interrupt, InterruptTrigger, Ports, RolloutError, RolloutRequest,
};
pub use plan::{Policy, Steps};
pub use timeline::{Outcome, Report};
