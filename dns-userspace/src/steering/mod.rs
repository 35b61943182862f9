//! Steering: probes measure endpoints, health turns results into up/down, policies pick a
//! pool's answer, and steer applies it (answer table and kernel map) and records events.

pub mod endpoint;
pub mod events;
pub mod health;
pub mod policy;
pub mod pool;
pub mod probe;
pub mod steer;
