//! `[state]`: the state file and how old it may be.

use super::*;
use crate::steering::state::{DEFAULT_MAX_AGE, DEFAULT_STATE_PATH};

#[test]
fn state_defaults_and_a_relative_path_is_the_config_directorys() {
    let cfg = parse("").unwrap();
    assert_eq!(cfg.state.path, PathBuf::from(DEFAULT_STATE_PATH));
    assert_eq!(cfg.state.max_age, DEFAULT_MAX_AGE);
    let cfg = parse("[state]\npath = \"run/state.json\"\nmax_age = \"1h\"\n").unwrap();
    assert_eq!(cfg.state.path, testdata().join("run/state.json"));
    assert_eq!(cfg.state.max_age, Duration::from_secs(3600));
    let cfg = parse("[state]\npath = \"/var/lib/x/s.json\"\n").unwrap();
    assert_eq!(cfg.state.path, PathBuf::from("/var/lib/x/s.json"));
}

#[test]
fn state_errors() {
    assert_fails_at("[state]\npath = \"\"\n", 2, "state path is empty");
    assert_fails_at(
        "[state]\nmax_age = \"soon\"\n",
        2,
        "invalid max_age \"soon\"",
    );
    assert_fails_at("[state]\nmax_age = \"0s\"\n", 2, "must be longer than 0s");
    assert_fails_at("[state]\nmax_age = \"1M\"\n", 2, "at most 7days");
    assert_fails_at("[state]\nfile = \"x\"\n", 2, "unknown field `file`");
}
