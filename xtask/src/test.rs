//! `cargo xtask test`: the whole suite; CI runs exactly this.

use std::{
    ffi::OsString,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{cmd, run::become_root, setup};

/// One step of a task: a name for banners and failures, and what it does.
struct Stage {
    name: &'static str,
    action: Action,
}

enum Action {
    Setup,
    Run(Command),
}

impl Stage {
    fn setup() -> Self {
        Self {
            name: "setup",
            action: Action::Setup,
        }
    }

    fn cargo(name: &'static str, args: &[&str]) -> Self {
        let mut cargo = cmd::cargo();
        cargo.args(args);
        Self {
            name,
            action: Action::Run(cargo),
        }
    }

    fn describe(&self) -> String {
        match &self.action {
            Action::Setup => "toolchains, components, Debian packages, bpf-linker".to_owned(),
            Action::Run(command) => cmd::display(command),
        }
    }
}

/// Runs `stages` in order with a banner each, stopping at the first failure, which the error
/// names.
fn run_stages(task: &str, stages: Vec<Stage>) -> Result<()> {
    let total = stages.len();
    let started = Instant::now();
    for (index, mut stage) in stages.into_iter().enumerate() {
        println!(
            "\n==> [{}/{total}] {}: {}",
            index + 1,
            stage.name,
            stage.describe()
        );
        let stage_started = Instant::now();
        let result = match &mut stage.action {
            Action::Setup => setup::ensure(true),
            Action::Run(command) => cmd::run(command),
        };
        result.with_context(|| format!("`cargo xtask {task}`: stage `{}` failed", stage.name))?;
        println!(
            "==> {} passed in {}",
            stage.name,
            elapsed(stage_started.elapsed())
        );
    }
    println!(
        "\n==> cargo xtask {task}: all {total} stages passed in {}",
        elapsed(started.elapsed())
    );
    Ok(())
}

fn elapsed(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// The stages of `cargo xtask test`: `args` go to `cargo test` after the workspace flags (a
/// test name filter, or `-- --nocapture` for the test binaries).
fn test_stages(skip_lint: bool, args: &[OsString]) -> Vec<Stage> {
    let mut stages = vec![Stage::setup()];
    if !skip_lint {
        stages.push(Stage::cargo("fmt", &["fmt", "--all", "--", "--check"]));
        // dns-ebpf only builds for bpfel-unknown-none; dns-userspace's build script builds it.
        stages.push(Stage::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--exclude",
                "dns-ebpf",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ));
    }
    // The process-level tests in hotpool-tests run the real `hotpool` binary.
    stages.push(Stage::cargo(
        "build",
        &["build", "--package", "dns-userspace", "--bin", "hotpool"],
    ));
    let mut test = Stage::cargo("test", &["test", "--workspace", "--exclude", "dns-ebpf"]);
    if let Action::Run(cargo) = &mut test.action {
        cargo.args(args);
    }
    stages.push(test);
    stages
}

/// `cargo xtask test`: setup, fmt, clippy, then every test in the workspace, including the
/// root-only ones in `hotpool-tests`.
pub fn test(skip_lint: bool, args: &[OsString]) -> Result<()> {
    become_root(
        "test",
        "hotpool-tests creates network namespaces and attaches XDP programs",
    )?;
    run_stages("test", test_stages(skip_lint, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(stages: &[Stage]) -> Vec<String> {
        stages
            .iter()
            .map(|stage| format!("{}: {}", stage.name, stage.describe()))
            .collect()
    }

    #[test]
    fn test_runs_lints_then_the_workspace_tests() {
        let stages = test_stages(false, &[]);
        assert_eq!(
            describe(&stages)[1..],
            [
                "fmt: cargo fmt --all -- --check",
                "clippy: cargo clippy --workspace --exclude dns-ebpf --all-targets -- -D warnings",
                "build: cargo build --package dns-userspace --bin hotpool",
                "test: cargo test --workspace --exclude dns-ebpf",
            ]
        );
        assert_eq!(stages[0].name, "setup");
    }

    #[test]
    fn skip_lint_and_pass_through() {
        let args = ["xdp_answers".into(), "--".into(), "--nocapture".into()];
        let stages = test_stages(true, &args);
        assert_eq!(
            describe(&stages)[1..],
            [
                "build: cargo build --package dns-userspace --bin hotpool",
                "test: cargo test --workspace --exclude dns-ebpf xdp_answers -- --nocapture"
            ]
        );
    }

    #[test]
    fn elapsed_formats() {
        assert_eq!(elapsed(Duration::from_millis(2500)), "2.5s");
        assert_eq!(elapsed(Duration::from_secs(302)), "5m02s");
    }
}
