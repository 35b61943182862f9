//! hotpool: an XDP-accelerated authoritative DNS server for latency- and health-steered pools.
//!
//! The daemon's modules, by role (each folder's module doc says what it owns):
//!
//! * [`dns`]: the packet path in userspace: zones, the authoritative answer path, the UDP and
//!   TCP server;
//! * [`steering`]: the probe path and the decision path: probes, endpoint health, policies,
//!   applying decisions, the event record;
//! * [`datapath`]: the kernel side: loading and pinning the XDP program, encoding and
//!   publishing the hot map, and the answer table both answer paths read;
//! * [`geo`]: regions, the client networks that map to them (geo steering, EDNS Client
//!   Subnet);
//! * [`config`]: the file format, parsed into the types above;
//! * [`api`]: the HTTP endpoint (metrics and control);
//! * [`daemon`]: start-up, signals, shutdown;
//! * [`limits`]: the open-file limit and how its descriptors are shared (the HTTP API,
//!   TCP connections, probes): the daemon hands each share to the part that enforces it;
//! * [`logs`]: log output and how values read in it (used by all of the above).

pub mod api;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod dns;
pub mod geo;
pub mod limits;
pub mod logs;
pub mod steering;
