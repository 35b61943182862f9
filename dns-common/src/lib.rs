//! Types shared by the hotpool XDP program (`dns-ebpf`) and its daemon (`dns-userspace`),
//! plus the pure logic both sides use: name folding and hashing, the query checks and reply
//! header and OPT writes, the weighted pick, the Internet checksum, the UDP reply size, the
//! acceptance rules with the kernel's layout of this host's interfaces and addresses, and
//! the response rate limiter's bucket and slot.
//!
//! Everything here is `#![no_std]` and allocation-free so the eBPF program can use it; the
//! same code is unit-tested on the host with plain `cargo test`.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod accept;
pub mod csum;
pub mod ecs;
pub mod local;
pub mod maps;
pub mod name;
pub mod pick;
pub mod query;
pub mod rrl;
pub mod size;
pub mod stats;

pub use maps::*;
pub use pick::pick;
pub use stats::Outcome;

/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "hotpool";
/// Name of the pass-everything XDP program (for the peer of a veth in native mode).
pub const PASS_PROGRAM_NAME: &str = "hotpool_pass";

/// DNS record types the XDP path answers.
pub mod qtype {
    pub const A: u16 = 1;
    pub const CNAME: u16 = 5;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
}

/// DNS class IN.
pub const CLASS_IN: u16 = 1;

/// Largest DNS message the XDP path answers without EDNS (RFC 1035 §4.2.1).
pub const PLAIN_UDP_LIMIT: usize = 512;

/// Default bpffs directory the daemon pins its maps under (`server.pin_path`).
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/hotpool";

/// `statfs` type of a BPF filesystem (`BPF_FS_MAGIC` in `include/uapi/linux/magic.h`).
pub const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// A 16-bit field in network order (DNS, IP and UDP headers).
#[inline(always)]
pub const fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}
