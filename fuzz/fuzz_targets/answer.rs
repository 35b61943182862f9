//! The daemon's answer path: any octets as a query, over UDP and TCP
//! (`hotpool_fuzz_harness::answer` says what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = hotpool_fuzz_harness::answer::check(data) {
        panic!("{v}");
    }
});
