//! What a rollout is asked to do and the adapters it runs against, and why it can refuse to
//! start (refused: exit 2; the platform unreadable: exit 3).

use crate::exit::ExitCode;
use crate::rollout::plan::Policy;
use crate::rollout::ports::{HealthEndpoint, Metrics, Platform};
use crate::rollout::timeline::Event;

/// Where the candidate revision comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateSource {
    /// Make a new revision from the current template with this image.
    Image(String),
    /// An existing revision.
    Revision(String),
    /// The latest created revision, when it serves no traffic.
    LatestCreated,
    /// The rollout recorded on the service, whose process is gone (`rollout --resume`).
    Resume,
}

#[derive(Debug, Clone)]
pub struct RolloutRequest {
    pub policy: Policy,
    pub candidate: CandidateSource,
    pub dry_run: bool,
}

/// Why a rollout did not start. Nothing was changed on the service in either case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// Bad input, a service state that needs a person first, or another rollout owns the
    /// service (exit 2).
    #[error("{0}")]
    Refused(String),
    /// The platform could not be read (exit 3).
    #[error("{0}")]
    Api(String),
}

impl RolloutError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RolloutError::Refused(_) => ExitCode::BadInput,
            RolloutError::Api(_) => ExitCode::ApiFailed,
        }
    }
}

/// The adapters a rollout runs against.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub platform: &'a dyn Platform,
    pub metrics: &'a dyn Metrics,
    pub health: &'a dyn HealthEndpoint,
}

/// Receives every timeline event as it happens (the progress log).
pub type ProgressSink<'a> = &'a (dyn Fn(&Event) + Send + Sync);
