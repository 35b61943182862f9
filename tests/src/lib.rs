//! Shared helpers for the root-only tests: frame building, `BPF_PROG_TEST_RUN`, network
//! namespaces with cleanup guards, the kernel frame fuzzer.

pub mod frames;

/// Panics with a clear message unless running as root (these tests load XDP programs and
/// create network namespaces; `cargo xtask test` runs them as root).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the hotpool-tests crate needs root (BPF and network namespaces): run `cargo xtask test`"
    );
}

pub mod client;
pub mod daemon;
pub mod datapath;
pub mod endpoint;
pub mod fuzz;
pub mod netns;
pub mod process;
pub mod steady;
