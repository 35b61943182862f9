//! The daemon's HTTP endpoint: Prometheus metrics and the control API.

pub mod http;
