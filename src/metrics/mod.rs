//! Request and 5xx counts per revision, the error-rate gate's data: Cloud Monitoring v3, or
//! PromQL against Managed Prometheus or a Prometheus server; both implement the `Metrics` port.

pub(crate) mod monitoring;
pub(crate) mod prometheus;

pub use monitoring::CloudMonitoring;
pub use prometheus::PrometheusMetrics;
