//! Cloud Run Admin API v2: the platform port's real adapter (`client`) and the resource shapes it
//! reads (`model`).

pub mod client;
pub mod model;

pub use client::CloudRunService;
