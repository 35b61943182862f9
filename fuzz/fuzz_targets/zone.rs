//! The zone-file parser: any text as a zone file (`hotpool_fuzz_harness::zone` says what
//! is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = hotpool_fuzz_harness::zone::check(data) {
        panic!("{v}");
    }
});
