//! shiftgate: progressive delivery for Google Cloud Run — stepped traffic shifting gated on health
//! and error rate, with automatic rollback.

pub mod actions;
pub mod cli;
pub mod clock;
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
pub mod sim;
pub mod workflow_command;
