//! The rollout engine: plan the steps, move traffic, judge each step, roll back on failure.
//! It talks only to the ports in `ports`; adapters for Cloud Run, Monitoring and HTTP live elsewhere.

pub mod engine;
pub mod health_judge;
pub mod interrupt;
pub mod judge;
pub mod ownership;
pub mod plan;
pub mod ports;
mod prepare;
mod request;
mod restore;
pub mod sequential;
mod start;
pub(crate) mod step;
pub mod timeline;
pub mod traffic;
pub mod verdict;
mod write;

pub use engine::{
    CandidateSource, Engine, Interrupt, InterruptTrigger, Ports, RolloutError, RolloutRequest,
};
pub use plan::{Policy, Steps};
pub use timeline::{Outcome, Report};
