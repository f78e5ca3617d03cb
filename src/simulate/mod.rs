//! `simulate`: a rollout policy run over seeded synthetic traffic with the engine's own step
//! schedule and judges, summarised as rates: rollbacks, promotions, no data, time, exposure.

pub mod traffic;
