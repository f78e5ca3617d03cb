//! The rollout engine: plan the steps, move traffic, judge each step, roll back on failure.
//! It talks only to the ports in `ports`; adapters for Cloud Run, Monitoring and HTTP live elsewhere.

pub mod ports;
