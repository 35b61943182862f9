//! Steering, the probe path and the decision path: which endpoints of each pool are
//! answered, and why.
//!
//! The probe path: [`probe`] measures every endpoint on its interval (the scheduler and
//! each kind's exchange) and sends the results to [`steer`], where [`health`] turns them
//! into up and down. The decision path: for every change, [`policy`] picks the pool's
//! answer among the endpoints that are up, and [`steer`] publishes it to the answer table
//! and the kernel map (`datapath`) and records an event ([`events`]).
//!
//! * [`pool`], [`endpoint`]: a configured pool and what its endpoints answer with;
//! * [`probe`]: probe specs (an enum per kind, validated from the config), probing, the
//!   scheduler;
//! * [`health`]: rise/fall, operator pins, smoothed latency;
//! * [`policy`]: the policies and all-down behaviours (validated from the config), the
//!   selector, and the reasons for its decisions;
//! * [`steer`]: applying results and pins, publishing answers;
//! * [`geo`]: a `geo` pool's per-region policies, RUM samples;
//! * [`events`]: the event record (log, JSON lines, webhooks);
//! * [`rum`]: real-user latency and availability samples per (region, endpoint);
//! * [`state`]: the state file that carries health, latency and pins across restarts;
//! * [`tally`]: each endpoint's probe counts, latency histogram and last failure.

pub mod endpoint;
pub mod events;
pub mod geo;
pub mod health;
pub mod policy;
pub mod pool;
pub mod probe;
pub mod rum;
pub mod state;
pub mod steer;
pub mod tally;
