//! Request and 5xx counts per revision, the error-rate gate's data: Cloud Monitoring v3 today;
//! other backends implement the same `Metrics` port.

pub mod monitoring;

pub use monitoring::CloudMonitoring;
