//! hotpool: an XDP-accelerated authoritative DNS server for latency- and health-steered pools.

pub mod authority;
pub mod config;
pub mod daemon;
pub mod ebpf;
pub mod events;
pub mod health;
pub mod hot;
pub mod metrics;
pub mod policy;
pub mod pools;
pub mod probe;
pub mod server;
pub mod steer;
pub mod zone;
