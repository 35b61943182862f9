//! `xdp-fuzz`: the kernel frame fuzzer for a time (`cargo xtask fuzz --target xdp` runs it,
//! as root).
//!
//! ```text
//! xdp-fuzz [--seconds N | --frames N] [--seed S] [--replay INDEX]
//! ```
//!
//! Prints frames tested, frames per second and bad replies, with the first failing frames
//! in hex; exits with 1 if any reply was bad. Without `--seed` the seed comes from the
//! clock (and is printed); `--replay` runs one frame of a seed again.

use std::{process::ExitCode, time::Duration};

use hotpool_fuzz_harness::{bounded::parse_seed, rng::clock_seed};
use hotpool_tests::fuzz::{Budget, Fuzzer, replay};

const USAGE: &str = "usage: xdp-fuzz [--seconds N | --frames N] [--seed S] [--replay INDEX]";

fn main() -> ExitCode {
    let mut budget = Budget::Time(Duration::from_secs(60));
    let mut seed = None;
    let mut replay_index = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| parse_seed(&v));
        match (arg.as_str(), value) {
            ("--seconds", Some(n)) => budget = Budget::Time(Duration::from_secs(n)),
            ("--frames", Some(n)) => budget = Budget::Frames(n),
            ("--seed", Some(s)) => seed = Some(s),
            ("--replay", Some(i)) => replay_index = Some(i),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let seed = seed.unwrap_or_else(clock_seed);
    if let Some(index) = replay_index {
        println!("{}", replay(seed, index));
        return ExitCode::SUCCESS;
    }
    println!("xdp-fuzz: seed {seed:#x}, {budget:?}");
    let report = Fuzzer::new().run(seed, budget, true);
    println!(
        "frames tested: {}\nframes per second: {:.0}\nbad replies: {}\n{}",
        report.frames,
        report.frames_per_second(),
        report.bad,
        report.summary()
    );
    if report.bad > 0 {
        println!("failures:{}", report.failures());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
