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

/// `config` with a `[state]` file in `dir` when it names none: never the system's default
/// `/var/lib/hotpool/state.json`, which a test would otherwise write for a daemon that is
/// gone (and a daemon started there later would find and ignore).
pub fn own_state(config: &str, dir: &std::path::Path) -> String {
    let mut text = config.to_owned();
    if !text.contains("[state]") {
        text.push_str(&format!(
            "\n[state]\npath = \"{}/state.json\"\n",
            dir.display()
        ));
    }
    text
}
