//! The kernel frame fuzzer: mutated query frames ([`input`]) through the XDP program with
//! `BPF_PROG_TEST_RUN`, every result judged by the [`oracle`] against the daemon's answer
//! path, over the fixed zone and pools of `hotpool_fuzz_harness::world`.
//!
//! Frame `i` of a run seeded with `s` depends on `s` and `i` alone, and so does how it is
//! run (replies preferring the headroom in alternate blocks of frames; now and then with
//! XDP metadata taking part of the headroom), so a failure is reproduced by its seed and
//! index ([`replay`]). `tests/tests/xdp_fuzz.rs` runs a bounded number of frames in the
//! test suite; `cargo xtask fuzz --target xdp` runs the `xdp-fuzz` binary for a time.

pub mod input;
pub mod oracle;

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use dns_common::Outcome;
use hotpool::datapath::hot::DatapathSettings;
use hotpool_fuzz_harness::{hex, rng::Rng, world};

use crate::datapath::TestDatapath;
use oracle::{Oracle, Verdict};

/// Frames run with one setting of `prefer_headroom` before it flips.
const BLOCK: u64 = 4096;
/// XDP metadata octets taken from the headroom in the runs that use it.
const METADATA: u32 = 32;
/// Failures kept in a report (all are counted).
const KEEP_FAILURES: usize = 10;

/// How long a run lasts.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Frames(u64),
    Time(Duration),
}

/// One frame the oracle rejected.
#[derive(Clone, Debug)]
pub struct Failure {
    pub index: u64,
    pub problem: String,
    pub input: Vec<u8>,
    pub action: u32,
    pub output: Vec<u8>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub frames: u64,
    pub answered: u64,
    pub passed: u64,
    /// Frames the program sent back (`XDP_TX`), good or bad.
    pub transmitted: u64,
    /// Frames the oracle rejected (the first few are in `failures`), plus a disagreement of
    /// the counters with the actions, if any.
    pub bad: u64,
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
    /// How much each outcome counter moved.
    pub outcomes: Vec<(Outcome, u64)>,
}

impl Report {
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Frames, rate, answers and bad replies on one line, then the outcome counts.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "seed {:#x}: {} frames in {:.1} s ({:.0} frames/s), {} answered, {} passed, {} bad\noutcomes:",
            self.seed,
            self.frames,
            self.elapsed.as_secs_f64(),
            self.frames_per_second(),
            self.answered,
            self.passed,
            self.bad
        );
        for (outcome, n) in self.outcomes.iter().filter(|(_, n)| *n > 0) {
            let _ = write!(s, " {}={n}", outcome.name());
        }
        s
    }

    /// The kept failures, with their frames in hex.
    pub fn failures(&self) -> String {
        let mut s = String::new();
        for f in &self.failures {
            let _ = write!(
                s,
                "\nframe {} (seed {:#x}; replay: xdp-fuzz --seed {:#x} --replay {}): {}\n  input:  {}\n  action {}, output: {}",
                f.index,
                self.seed,
                self.seed,
                f.index,
                f.problem,
                hex(&f.input),
                f.action,
                hex(&f.output)
            );
        }
        s
    }
}

/// The XDP program with the world's pools, and the oracle over the same world.
pub struct Fuzzer {
    t: TestDatapath,
    oracle: Oracle,
    settings: DatapathSettings,
}

impl Fuzzer {
    /// Loads the program (root only) and publishes the world's pools.
    pub fn new() -> Self {
        let settings = DatapathSettings {
            port: 53,
            edns_udp_size: world::EDNS_UDP_SIZE,
            listen: vec![
                input::SERVER_V4.into(),
                input::SERVER_V6.parse().expect("an IPv6 address"),
            ],
            prefer_headroom: false,
            // The test datapath beats before it configures: never stale within a run.
            staleness: hotpool::datapath::heartbeat::Staleness::default(),
            // Off: the oracle never expects a drop (rate limiting has its own tests).
            rrl: Default::default(),
        };
        let t = TestDatapath::new(&settings, &world::pools());
        let oracle = Oracle {
            authority: world::authority(),
            listen: settings.listen.clone(),
            port: settings.port,
            mac: crate::datapath::test_run_link().mac,
            local: crate::datapath::local_addrs(&settings),
        };
        Self {
            t,
            oracle,
            settings,
        }
    }

    /// Runs frame `index` of `seed`: its input, action, output and verdict.
    pub fn frame(
        &mut self,
        seed: u64,
        index: u64,
    ) -> (Vec<u8>, u32, Vec<u8>, Result<Verdict, String>) {
        let headroom = (index / BLOCK) % 2 == 1;
        if headroom != self.settings.prefer_headroom {
            self.settings.prefer_headroom = headroom;
            self.t
                .dp
                .maps
                .configure(&self.settings, true)
                .expect("configuring the program");
        }
        let mut rng = Rng::for_item(seed, index);
        let input = input::mutated(&mut rng);
        let (action, output) = if rng.percent(5) {
            self.t.run_with_metadata(&input, METADATA)
        } else {
            self.t.run(&input)
        };
        let verdict = self.oracle.judge(&input, action, &output);
        (input, action, output, verdict)
    }

    /// Runs frames `0..` of `seed` until the budget is spent.
    pub fn run(&mut self, seed: u64, budget: Budget, progress: bool) -> Report {
        let before = self.t.stats();
        let started = Instant::now();
        let mut report = Report {
            seed,
            frames: 0,
            answered: 0,
            passed: 0,
            transmitted: 0,
            bad: 0,
            failures: Vec::new(),
            elapsed: Duration::ZERO,
            outcomes: Vec::new(),
        };
        let mut next_progress = Duration::from_secs(10);
        for index in 0.. {
            let done = match budget {
                Budget::Frames(n) => index >= n,
                Budget::Time(d) => index % 1024 == 0 && started.elapsed() >= d,
            };
            if done {
                break;
            }
            let (input, action, output, verdict) = self.frame(seed, index);
            report.frames += 1;
            report.transmitted += u64::from(action == crate::datapath::XDP_TX);
            match verdict {
                Ok(Verdict::Answered) => report.answered += 1,
                Ok(Verdict::Passed) => report.passed += 1,
                Err(problem) => {
                    report.bad += 1;
                    if report.failures.len() < KEEP_FAILURES {
                        report.failures.push(Failure {
                            index,
                            problem,
                            input,
                            action,
                            output,
                        });
                    }
                }
            }
            if progress && index % 1024 == 0 && started.elapsed() >= next_progress {
                println!(
                    "{:>4} s: {} frames, {} answered, {} bad",
                    next_progress.as_secs(),
                    report.frames,
                    report.answered,
                    report.bad
                );
                next_progress += Duration::from_secs(10);
            }
        }
        report.elapsed = started.elapsed();
        let after = self.t.stats();
        report.outcomes = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a.0, a.1 - b.1))
            .collect();
        if let Some(problem) = counters_disagree(&report) {
            report.bad += 1;
            report.failures.push(Failure {
                index: report.frames,
                problem,
                input: vec![],
                action: 0,
                output: vec![],
            });
        }
        report
    }
}

impl Default for Fuzzer {
    fn default() -> Self {
        Self::new()
    }
}

/// Every frame moved one counter, every answer a hit counter, none aborted.
fn counters_disagree(r: &Report) -> Option<String> {
    let count = |o: Outcome| {
        r.outcomes
            .iter()
            .find(|(x, _)| *x == o)
            .map_or(0, |(_, n)| *n)
    };
    let total: u64 = r.outcomes.iter().map(|(_, n)| n).sum();
    let hits: u64 = r
        .outcomes
        .iter()
        .filter(|(o, _)| o.answered())
        .map(|(_, n)| n)
        .sum();
    let consistent = total == r.frames && hits == r.transmitted && count(Outcome::Aborted) == 0;
    (!consistent).then(|| {
        format!(
            "counters disagree with the actions: {total} counted for {} frames, {hits} hits for {} XDP_TX, {} aborted",
            r.frames,
            r.transmitted,
            count(Outcome::Aborted)
        )
    })
}

/// Runs frame `index` of `seed` alone (after loading a fresh program) and describes it.
pub fn replay(seed: u64, index: u64) -> String {
    let mut f = Fuzzer::new();
    let (input, action, output, verdict) = f.frame(seed, index);
    format!(
        "frame {index} of seed {seed:#x}: {verdict:?}\n  input:  {}\n  action {action}, output: {}",
        hex(&input),
        hex(&output)
    )
}
