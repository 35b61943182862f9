//! What this build is: the crate version and the git revision it was built from (by
//! build.rs; "unknown" outside a git checkout), for `--version`, `build_info` and status.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The abbreviated commit id of the checkout this was built from, or "unknown".
pub const GIT_REVISION: &str = include_str!(concat!(env!("OUT_DIR"), "/git-revision"));

/// `0.1.0 (git 0123456789ab)`, as `hotpool --version` prints it.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    include_str!(concat!(env!("OUT_DIR"), "/git-revision")),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_names_the_revision() {
        assert!(!GIT_REVISION.is_empty() && !GIT_REVISION.contains(char::is_whitespace));
        assert_eq!(LONG_VERSION, format!("{VERSION} (git {GIT_REVISION})"));
    }
}
