//! shiftgate's integration tests, linked into one binary: each module is one area's scenarios,
//! and `support` holds what they share (binary runner, API contracts, in-process ports).

mod action;
mod cli;
mod cli_deployments;
mod cli_evidence;
mod cli_github;
mod cli_hooks;
mod cli_identity;
mod cli_lifecycle;
mod cli_pause;
mod cli_report;
mod cli_tokens;
mod cli_waves;
mod contracts;
mod discovery_validator;
mod engine_scenarios;
mod github;
mod input;
mod install;
mod notify;
mod parsers;
mod pause_scenarios;
mod prometheus;
mod rollout_http;
mod simulate;
mod simulator;
mod support;
mod transport;
