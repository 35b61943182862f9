//! The kernel frame fuzzer, bounded: mutated query frames through `BPF_PROG_TEST_RUN`,
//! every `XDP_TX` output checked as the reply to its input and byte-equal to the daemon's
//! answer, every `XDP_PASS` unchanged, nothing aborted (see `hotpool_tests::fuzz`).
//!
//! `HOTPOOL_FUZZ_SEED` picks another seed, `HOTPOOL_XDP_FUZZ_FRAMES` another count;
//! `cargo xtask fuzz --target xdp` runs it for a time.

use dns_common::Outcome;
use hotpool_tests::fuzz::{Budget, Fuzzer};

/// Frames in the test suite's run: about 7 s on the 2-core test VM (debug build), twice that
/// while other builds run.
const FRAMES: u64 = 100_000;

#[test]
fn mutated_frames_are_answered_correctly_or_passed_unchanged() {
    let seed = hotpool_fuzz_harness::bounded::seed();
    let frames = std::env::var("HOTPOOL_XDP_FUZZ_FRAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(FRAMES);
    let mut fuzzer = Fuzzer::new();
    let report = fuzzer.run(seed, Budget::Frames(frames), false);
    println!("{}", report.summary());
    assert_eq!(
        report.bad,
        0,
        "{}\nfailures:{}",
        report.summary(),
        report.failures()
    );

    // Not vacuous: a good share of the frames is answered, and the edits reach every
    // check of the program (but `collision`, which needs a forced hash tag: the packet
    // tables test it; `disabled`; `stale` and `stale_hit`, which need an old heartbeat:
    // xdp_stale tests them; `rrl_dropped` and `rrl_slipped`, rate limiting being off here:
    // the packet tables test them; and `aborted`, which is a bug).
    assert!(
        report.answered >= frames / 10,
        "only {} of {frames} frames answered",
        report.answered
    );
    let silent: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|(o, n)| {
            *n == 0
                && !matches!(
                    o,
                    Outcome::Collision
                        | Outcome::Disabled
                        | Outcome::Stale
                        | Outcome::StaleHit
                        | Outcome::RrlDropped
                        | Outcome::RrlSlipped
                        | Outcome::Aborted
                )
        })
        .map(|(o, _)| o.name())
        .collect();
    assert!(
        silent.is_empty(),
        "outcomes never reached: {silent:?}\n{}",
        report.summary()
    );
}
