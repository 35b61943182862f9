//! The DNS side of the daemon: zone data, the authoritative answer path and the UDP/TCP
//! server that feeds it.

pub mod authority;
pub mod server;
pub mod zone;
