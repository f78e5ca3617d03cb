//! What the scenario modules share: running the binary against a simulated world, the published API
//! contracts, and the engine's ports implemented on the simulator in process.

pub mod adapters;
pub mod binary;
pub mod discovery;
pub mod inproc;
pub mod openapi;
pub mod webhook;
pub mod world;
