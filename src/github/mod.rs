//! GitHub: trigger and watch `workflow_dispatch` runs, incident issues from filing to closing, and
//! deployments, through one client that polls with ETags, honours rate limits and never sends a create twice.

pub(crate) mod client;
pub(crate) mod deployment;
pub(crate) mod dispatch;
pub(crate) mod incident;
pub(crate) mod incident_list;
pub(crate) mod lifecycle;

pub use client::{GitHub, GitHubError, Repo};
