//! The config parser: any text as hotpool.toml, in a directory with the zone files it may
//! name (`hotpool_fuzz_harness::config` says what is checked). The directory is created
//! under `HOTPOOL_FUZZ_WORK` (`cargo xtask fuzz` sets it and removes it afterwards), else
//! the system's temporary directory.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use hotpool_fuzz_harness::config::ConfigTarget;
use libfuzzer_sys::fuzz_target;

fn target() -> &'static ConfigTarget {
    static TARGET: OnceLock<ConfigTarget> = OnceLock::new();
    TARGET.get_or_init(|| {
        let parent = std::env::var_os("HOTPOOL_FUZZ_WORK")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        ConfigTarget::new(&parent).expect("creating the config target's directory")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Err(v) = target().check(data) {
        panic!("{v}");
    }
});
