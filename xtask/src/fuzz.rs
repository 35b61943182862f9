//! `cargo xtask fuzz`: the cargo-fuzz targets (`answer`, `zone`, `config`; crate `fuzz/`,
//! bodies in `fuzz/harness/`) and the kernel frame fuzzer (`xdp`, the `xdp-fuzz` binary of
//! `tests/`), each for a given time.
//!
//! Everything they write goes under `<target-dir>/fuzz/`: the fuzz build (`build/`), the
//! corpora (`corpus/<target>/`, seeded every run and kept between runs, so coverage
//! accumulates), the dictionaries, crashing inputs (`artifacts/<target>/`) and the config
//! target's scratch directory (`work/`, removed afterwards). `cargo clean` removes it all.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::{cmd, run::become_root, setup};

/// What to fuzz.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The daemon's answer path: any octets as a query, over UDP and TCP.
    Answer,
    /// The zone-file parser.
    Zone,
    /// The config parser.
    Config,
    /// The XDP program: mutated frames through BPF_PROG_TEST_RUN (root).
    Xdp,
    /// All of the above, one after the other.
    All,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Zone => "zone",
            Self::Config => "config",
            Self::Xdp => "xdp",
            Self::All => "all",
        }
    }

    /// The targets `self` stands for, in the order they run.
    fn expand(self) -> Vec<Target> {
        match self {
            Self::All => vec![Self::Answer, Self::Zone, Self::Config, Self::Xdp],
            t => vec![t],
        }
    }

    /// Longest input libFuzzer makes: a UDP datagram for queries; zone files and configs
    /// longer than the seeds.
    fn max_len(self) -> usize {
        match self {
            Self::Answer => 4096,
            _ => 32 * 1024,
        }
    }
}

/// The toolchain cargo-fuzz needs (`-Z` flags for the coverage instrumentation).
const NIGHTLY: &str = "+nightly";

/// Where the fuzz runs keep their files.
struct Dirs {
    root: PathBuf,
}

impl Dirs {
    fn new() -> Self {
        Self {
            root: cmd::target_dir().join("fuzz"),
        }
    }
    fn build(&self) -> PathBuf {
        self.root.join("build")
    }
    fn corpus(&self, t: Target) -> PathBuf {
        self.root.join("corpus").join(t.name())
    }
    fn artifacts(&self, t: Target) -> PathBuf {
        self.root.join("artifacts").join(t.name())
    }
    fn dict(&self, t: Target) -> PathBuf {
        self.root.join(format!("{}.dict", t.name()))
    }
    fn work(&self) -> PathBuf {
        self.root.join("work")
    }
}

/// Runs `target` for `seconds` each (all targets one after the other for `all`); `seed`
/// goes to the kernel fuzzer (else it takes one from the clock and prints it).
pub fn fuzz(target: Target, seconds: u32, seed: Option<String>) -> Result<()> {
    let targets = target.expand();
    if targets.contains(&Target::Xdp) {
        become_root(
            "fuzz",
            "the xdp target loads the XDP program and runs it with BPF_PROG_TEST_RUN",
        )?;
    }
    setup::ensure(false)?;
    let dirs = Dirs::new();
    if targets.iter().any(|&t| t != Target::Xdp) {
        ensure_cargo_fuzz()?;
        seed_lockfile()?;
    }
    for t in targets {
        println!("\n==> fuzz {} for {seconds} s", t.name());
        match t {
            Target::Xdp => xdp(seconds, seed.as_deref())?,
            _ => cargo_fuzz(&dirs, t, seconds)?,
        }
    }
    Ok(())
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<()> {
    let mut version = cmd::cargo();
    version.args([NIGHTLY, "fuzz", "--version"]);
    if let Some((true, out)) = cmd::output_if_installed(&mut version)? {
        println!("==> {}", out.trim());
        return Ok(());
    }
    println!("==> installing cargo-fuzz");
    cmd::run(cmd::cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// Gives the fuzz crate the main workspace's lock file, so it builds the daemon with the
/// same dependency versions (cargo then adds what only the fuzz crate uses).
fn seed_lockfile() -> Result<()> {
    let root = cmd::workspace_root();
    fs::copy(root.join("Cargo.lock"), root.join("fuzz/Cargo.lock"))
        .context("copying Cargo.lock to fuzz/Cargo.lock")?;
    Ok(())
}

/// Writes the seeds and the dictionary of `t`, then runs it under libFuzzer.
fn cargo_fuzz(dirs: &Dirs, t: Target, seconds: u32) -> Result<()> {
    let corpus = dirs.corpus(t);
    let artifacts = dirs.artifacts(t);
    fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
    cmd::run(
        cmd::cargo()
            .args(["run", "--quiet", "--package", "hotpool-fuzz-harness"])
            .args([
                "--bin".as_ref(),
                "fuzz-seeds".as_ref(),
                "--".as_ref(),
                t.name().as_ref(),
                corpus.as_os_str(),
                dirs.dict(t).as_os_str(),
            ]),
    )?;
    let work = dirs.work();
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = cmd::run(&mut fuzz_run(dirs, t, seconds));
    let _ = fs::remove_dir_all(&work);
    result.with_context(|| {
        format!(
            "fuzz target {} failed: the input is in {}",
            t.name(),
            artifacts.display()
        )
    })
}

/// `cargo +nightly fuzz run <t> ...`: without a sanitizer (the code is safe Rust; ASan
/// would halve the speed) and with debug assertions (overflow checks).
fn fuzz_run(dirs: &Dirs, t: Target, seconds: u32) -> Command {
    let mut cargo = cmd::cargo();
    cargo.env("HOTPOOL_FUZZ_WORK", dirs.work());
    cargo.args([NIGHTLY, "fuzz", "run", t.name()]);
    cargo.args([
        "--fuzz-dir",
        "fuzz",
        "--sanitizer",
        "none",
        "--debug-assertions",
    ]);
    cargo.arg("--target-dir").arg(dirs.build());
    cargo.arg(dirs.corpus(t));
    cargo.arg("--");
    cargo.args(libfuzzer_args(dirs, t, seconds));
    cargo
}

fn libfuzzer_args(dirs: &Dirs, t: Target, seconds: u32) -> Vec<String> {
    let mut artifacts = dirs.artifacts(t).display().to_string();
    artifacts.push('/');
    vec![
        format!("-max_total_time={seconds}"),
        format!("-max_len={}", t.max_len()),
        format!("-dict={}", dirs.dict(t).display()),
        format!("-artifact_prefix={artifacts}"),
        "-timeout=10".to_string(),
        "-print_final_stats=1".to_string(),
    ]
}

/// Builds and runs the kernel frame fuzzer (release: the oracle decodes and answers every
/// reply, several times faster optimised).
fn xdp(seconds: u32, seed: Option<&str>) -> Result<()> {
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "--package",
        "hotpool-tests",
        "--bin",
        "xdp-fuzz",
    ]))?;
    let binary = cmd::target_dir().join("release/xdp-fuzz");
    let mut run = Command::new(&binary);
    run.current_dir(cmd::workspace_root());
    run.args(["--seconds", &seconds.to_string()]);
    if let Some(seed) = seed {
        run.args(["--seed", seed]);
    }
    cmd::run(&mut run).with_context(|| {
        format!(
            "the kernel frame fuzzer found bad replies (replay one with {} --seed S --replay INDEX)",
            binary.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_runs_every_target_once() {
        assert_eq!(
            Target::All.expand(),
            [Target::Answer, Target::Zone, Target::Config, Target::Xdp]
        );
        assert_eq!(Target::Zone.expand(), [Target::Zone]);
    }

    #[test]
    fn cargo_fuzz_command_keeps_everything_under_the_target_dir() {
        let dirs = Dirs {
            root: PathBuf::from("/w/target/fuzz"),
        };
        let line = cmd::display(&fuzz_run(&dirs, Target::Zone, 30));
        assert!(
            line.starts_with("HOTPOOL_FUZZ_WORK=/w/target/fuzz/work cargo +nightly fuzz run zone --fuzz-dir fuzz --sanitizer none --debug-assertions --target-dir /w/target/fuzz/build /w/target/fuzz/corpus/zone -- -max_total_time=30 -max_len=32768 -dict=/w/target/fuzz/zone.dict -artifact_prefix=/w/target/fuzz/artifacts/zone/ "),
            "{line}"
        );
    }
}
