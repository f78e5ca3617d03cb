//! A simulated Cloud Run (control plane, data plane, Cloud Monitoring) on loopback, used by `demo`
//! and by the tests.
