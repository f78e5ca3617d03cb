//! Cloud Run Admin API v2: the platform port's real adapter (`client`) and the resource shapes it
//! reads (`model`).

mod client;
pub(crate) mod model;

pub use client::CloudRunService;
