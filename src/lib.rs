//! shiftgate: progressive delivery for Google Cloud Run — stepped traffic shifting gated on health
//! and error rate, with automatic rollback.
//!
//! - **The engine**: [`Engine`] runs a [`RolloutRequest`] under a [`Policy`] through [`Ports`]
//!   and answers with a [`Report`]; it sees the world only through the traits in [`ports`].
//! - **The adapters** that implement those ports for real (Cloud Run, Cloud Monitoring,
//!   Prometheus, HTTP health), and the GitHub client for [`dispatch`] and incidents.
//! - **The command line**, what the binary calls: [`Cli`], then [`run`].
//! - **The wire formats** the adapters parse ([`wire`]), for the parser tests and fuzzers.

// Private modules and the chosen re-exports below are the whole public surface, so rustc reports
// whatever inside nothing uses.
mod actions;
mod cli;
mod cloudrun;
mod commands;
mod config;
mod evidence;
mod exit;
mod gcp;
mod github;
mod health;
mod hooks;
mod id_token;
mod live;
mod logging;
mod markdown;
mod mask;
mod metrics;
mod names;
mod notify;
mod output;
mod report_markdown;
mod rollout;
mod simulate;
mod tls;
mod workflow_command;

/// Wall-clock time as tokio sees it (its own crate, shared with the simulator).
pub use shiftgate_clock as clock;

// The engine.
pub use rollout::health_judge::{Expectations, HEALTHY_STATUSES};
pub use rollout::hooks::{GcsObject, HookPlan};
pub use rollout::judge::JudgeKind;
pub use rollout::latency::{LatencyCheck, LatencyFinding, LatencyLimit, Quantile};
pub use rollout::pause::{PausePolicy, PauseTimeoutAction};
pub use rollout::timeline::EventKind;
pub use rollout::verdict::Verdict;
pub use rollout::{
    CandidateSource, Engine, Interrupt, InterruptTrigger, Outcome, Policy, Ports, Report,
    RolloutError, RolloutRequest, Steps,
};

/// What the engine needs from the world: a platform to shift traffic on, request counts and
/// latencies per revision, and health answers. The adapters below implement these; tests implement fakes.
pub mod ports {
    pub use crate::rollout::ports::{
        HealthEndpoint, HealthProbe, HealthResponse, Hooks, LatencyHistogram, Metrics, NewRevision,
        Platform, PortError, PortResult, RequestCounts, RevisionInfo, RolloutRecord, ServiceState,
        TrafficChange, TrafficTarget, Window,
    };
}

// The adapters.
pub use cloudrun::CloudRunService;
pub use evidence::{ErrorEntries, ErrorLogs, LogLine, LogQuery};
pub use gcp::{Credentials, GoogleRest, Retry};
pub use github::dispatch::{
    DispatchError, DispatchReport, DispatchRequest, WatchEnd, dispatch, workflow_dispatch_inputs,
};
pub use github::incident::{Incident, Severity, file as file_incident, marker as incident_marker};
pub use github::{GitHub, GitHubError, Repo};
pub use health::HttpHealthEndpoint;
pub use hooks::GoogleHooks;
pub use id_token::IdTokens;
pub use logging::CloudLogging;
pub use metrics::{CloudMonitoring, PrometheusMetrics};
pub use tls::{client_builder, ensure_crypto_provider};

// The command line, and the commands tests drive without a process.
pub use cli::{Cli, Command, ServiceArgs};
pub use commands::promote::promote;
pub use commands::result::ErrorResult;
pub use commands::rollback::roll_back;
pub use commands::status::status;
pub use commands::{refuse_arguments, run};
pub use config::Config;
pub use exit::ExitCode;
pub use output::{log_writer, print_json, say_line};
pub use rollout::engine::{NotForced, undo_promotion};

/// The answers the adapters parse, as they read them: for the parser tests and the fuzzers.
pub mod wire {
    /// Cloud Run Admin API v2 resources and the annotations shiftgate writes on them.
    pub mod cloudrun {
        pub use crate::cloudrun::model::{
            ListRevisionsResponse, Operation, ROLLOUT_ANNOTATION, Revision, Service, TYPE_LATEST,
            TYPE_REVISION, rpc_code_to_http, traffic_targets_json,
        };
    }

    /// Cloud Logging `entries:list`: the filter sent and how an entry is read.
    pub mod logging {
        pub use crate::logging::{MAX_PAGES, filter, line_of};
    }

    /// Cloud Monitoring `timeSeries.list` answers.
    pub mod monitoring {
        pub use crate::metrics::monitoring::{read_answer, read_latency_answer};
    }

    /// Prometheus instant-query answers.
    pub mod prometheus {
        pub use crate::metrics::prometheus::{read_answer, read_latency_answer};
    }
}
