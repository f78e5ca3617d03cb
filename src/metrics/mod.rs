//! Request and 5xx counts and latencies per revision, the gates' data: Cloud Monitoring v3, or
//! PromQL against Managed Prometheus or a Prometheus server; both implement the `Metrics` port.

mod distribution;
pub(crate) mod monitoring;
pub(crate) mod prometheus;

pub use monitoring::CloudMonitoring;
pub use prometheus::PrometheusMetrics;
