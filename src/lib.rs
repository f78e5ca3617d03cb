//! shiftgate: progressive delivery for Google Cloud Run — stepped traffic shifting gated on health
//! and error rate, with automatic rollback.

pub mod clock;
pub mod cloudrun;
pub mod gcp;
pub mod health;
pub mod metrics;
pub mod rollout;
pub mod sim;
pub mod cli;
pub mod config;
pub mod commands;
pub mod output;
