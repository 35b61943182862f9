//! The bodies of hotpool's fuzz targets, with their seeds and a deterministic mutator.
//!
//! Each target is a function from octets to `Result<(), Violation>`: [`answer::check`]
//! (the daemon's answer path), [`zone::check`] (the zone-file parser) and [`config::check`]
//! (the config parser). They run in three places:
//!
//! * the cargo-fuzz targets in `fuzz/fuzz_targets/` (`cargo xtask fuzz`), which panic on a
//!   violation so libFuzzer records the input;
//! * the bounded runs of the test suite (`cargo xtask test`): a few thousand generated and
//!   mutated inputs each, from a fixed seed ([`bounded`]);
//! * the kernel frame fuzzer in `tests/` answers from the same [`world`] and compares the
//!   kernel's replies with the answer path's.

pub mod answer;
pub mod bounded;
pub mod config;
pub mod mutate;
pub mod rng;
pub mod seeds;
pub mod world;
pub mod zone;

/// An input that broke a rule of its target: what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(String);

impl Violation {
    pub fn new(what: String) -> Self {
        Self(what)
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

/// `data` as hex, for failure reports.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}
