//! shiftgate: progressive delivery for Google Cloud Run — stepped traffic shifting gated on health
//! and error rate, with automatic rollback.

pub mod actions;
pub mod cli;
pub mod cloudrun;
pub mod commands;
pub mod config;
pub mod exit;
pub mod gcp;
pub mod github;
pub mod health;
pub mod markdown;
pub mod mask;
pub mod metrics;
pub mod names;
pub mod output;
pub mod report_markdown;
pub mod rollout;
pub mod simulate;
pub mod tls;
pub mod workflow_command;

/// Wall-clock time as tokio sees it (its own crate, shared with the simulator).
pub use shiftgate_clock as clock;
