//! The daemon's HTTP endpoint ([`http`]): Prometheus metrics from the kernel's counters
//! and the steering state, the status as JSON, and the control API that pins endpoints up
//! or down. Reads steering and the datapath; nothing depends on it but the daemon.

pub mod http;
pub mod version;
