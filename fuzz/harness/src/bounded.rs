//! Bounded runs of a target for the test suite: a fixed number of generated inputs from a
//! fixed seed (`HOTPOOL_FUZZ_SEED` overrides it), each input derived from the seed and its
//! index alone, so a failure names both and reproduces.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{Violation, hex, rng::Rng};

/// Octets (characters) of a failing input shown; the seed and index reproduce all of it.
const SHOWN: usize = 4096;

/// The seed of the test suite's runs.
pub const DEFAULT_SEED: u64 = 0x686f_7470_6f6f_6c21;

/// The seed from `HOTPOOL_FUZZ_SEED` (decimal or 0x-hex), else [`DEFAULT_SEED`].
pub fn seed() -> u64 {
    match std::env::var("HOTPOOL_FUZZ_SEED") {
        Ok(s) => {
            parse_seed(&s).unwrap_or_else(|| panic!("HOTPOOL_FUZZ_SEED={s:?} is not a number"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

/// A seed written in decimal or as 0x-hex.
pub fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Runs `check` over `count` inputs made by `generate`; panics at the first input that
/// violates a rule or panics, naming the target, the seed, the index and the input.
pub fn run(
    target: &str,
    count: u64,
    generate: impl Fn(&mut Rng) -> Vec<u8>,
    check: impl Fn(&[u8]) -> Result<(), Violation>,
) {
    let seed = seed();
    println!("{target}: {count} inputs, seed {seed:#x}");
    for index in 0..count {
        let input = generate(&mut Rng::for_item(seed, index));
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(v)) => v.to_string(),
            Err(panic) => format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
            ),
        };
        let text: String = String::from_utf8_lossy(&input)
            .chars()
            .take(SHOWN)
            .collect();
        panic!(
            "{target}: input {index} of seed {seed:#x} (HOTPOOL_FUZZ_SEED={seed:#x}): {problem}\n\
             input, {} octets (at most {SHOWN} shown): {}\nas text: {text:?}",
            input.len(),
            hex(&input[..input.len().min(SHOWN)]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse() {
        assert_eq!(parse_seed("0x10"), Some(16));
        assert_eq!(parse_seed("10"), Some(10));
        assert_eq!(parse_seed("x"), None);
    }

    #[test]
    fn a_failing_input_is_reported_with_its_index() {
        let r = catch_unwind(|| {
            run(
                "t",
                100,
                |rng| vec![rng.below(10) as u8],
                |input| match input[0] {
                    7 => Err(Violation::new("seven".into())),
                    _ => Ok(()),
                },
            )
        });
        let message = r.expect_err("must fail").downcast::<String>().unwrap();
        assert!(message.contains("seven"), "{message}");
        assert!(
            message.contains("input, 1 octets (at most 4096 shown): 07"),
            "{message}"
        );
    }
}
