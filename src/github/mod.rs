//! GitHub: trigger and watch `workflow_dispatch` runs, and file incident issues, through one
//! client that polls with ETags, honours rate limits and never sends a create twice.

pub mod client;
pub mod dispatch;
pub mod incident;

pub use client::{GitHub, GitHubError, Repo};
