//! hotpool's developer tasks, run as `cargo xtask <task>` from anywhere in the workspace.

mod bench;
mod bpffs;
mod cmd;
mod fuzz;
mod layout;
mod probes;
mod run;
mod setup;
mod test;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "hotpool developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (toolchains, Debian packages, bpf-linker)
    ///
    /// Checks for the nightly toolchain and its rust-src, rustfmt and clippy, the Debian
    /// packages the tests use, and bpf-linker built against the nightly's libLLVM, installing
    /// what is missing. Every other task but clean-bpf runs these checks first.
    Setup,
    /// Build the workspace (the XDP program too)
    ///
    /// Builds the default members; dns-userspace's build script builds the XDP program.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build, then run hotpool as root
    ///
    /// Runs target/<profile>/hotpool, through `sudo -E` when not root. With no arguments,
    /// runs `hotpool run --config examples/hotpool.toml`.
    Run {
        /// Build and run the release profile.
        #[arg(long)]
        release: bool,
        /// Arguments for hotpool, after `--`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Run the whole test suite as root, as CI does
    ///
    /// Stages: setup, `cargo fmt --check`, `cargo clippy -D warnings`, then `cargo test` of the
    /// workspace, root-only tests included. Re-runs itself under `sudo -E` when not root.
    Test {
        /// Skip the fmt and clippy stages.
        #[arg(long)]
        skip_lint: bool,
        /// Arguments for `cargo test`, after `--` (a test name filter; `-- --nocapture` for the
        /// test binaries).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Run the benchmarks, the current tree side by side with a baseline revision
    ///
    /// Parts: host (criterion), kernel (ns per packet in the XDP program), system (dnsperf,
    /// kxdpgun and latency against hotpool, Knot, NSD and gdnsd), xdp-cost (the mixed load
    /// with and without XDP on the server veth). Each prints markdown tables and writes them to
    /// target/bench/<part>.md. Installs the Debian packages it needs. Needs root.
    Bench {
        /// Which part to run.
        #[arg(value_enum, default_value_t = bench::Part::All)]
        part: bench::Part,
        /// The revision to compare with (built in a worktree under target/bench/).
        #[arg(long, default_value = bench::PREVIOUS_RELEASE)]
        baseline: String,
        /// Seconds per dnsperf and kxdpgun run.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
        seconds: u32,
        /// Queries per second of the fixed-rate latency client.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..=80_000))]
        latency_rate: u32,
        /// Rounds of system and xdp-cost (every server in turn each round; medians reported).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
        /// xdp-cost: record a whole-box perf profile of each dnsperf run under
        /// target/bench/perf/ (needs perf, Debian package linux-perf).
        #[arg(long)]
        perf: bool,
    },
    /// Benchmark the probe scheduler at scale, as root
    ///
    /// Generates a config of --pools pools (4 endpoints each, TCP probes every second; half
    /// the endpoints accept connections, half silently drop every packet), runs the release
    /// daemon (--no-xdp) in a network namespace for --seconds and reports `hotpool check`
    /// time, start-up time, probes per second against the expected rate, late runs, verdict
    /// coverage, resident memory and CPU (also written to target/probes-bench/report.md).
    ProbesBench {
        /// Pools in the generated config (1 to 16000).
        #[arg(long, default_value_t = 10_000)]
        pools: usize,
        /// Seconds the daemon runs (the first 10 are not measured).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Probe timeout in milliseconds (the interval is 1 s; the default timeout is the
        /// interval).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1000))]
        timeout_ms: u64,
    },
    /// Fuzz the answer path, the zone and config parsers and the XDP program for a time
    ///
    /// answer, zone and config are cargo-fuzz targets (crate fuzz/, nightly; cargo-fuzz is
    /// installed if missing), seeded from generated queries and the repository's zone file and
    /// config; xdp runs mutated frames through the XDP program with BPF_PROG_TEST_RUN and
    /// checks every reply against the daemon's answer (needs root). Corpora, crashing inputs
    /// and the fuzz build go under target/fuzz/.
    Fuzz {
        /// Which target (all: each in turn, for --time each).
        #[arg(value_enum, default_value_t = fuzz::Target::All)]
        target: fuzz::Target,
        /// Seconds per target.
        #[arg(long, visible_alias = "seconds", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
        time: u32,
        /// Seed of the xdp target (decimal or 0x-hex; default: from the clock, printed).
        #[arg(long)]
        seed: Option<String>,
    },
    /// Show the daemon's layout: lines per folder, module dependencies, problems
    ///
    /// The rules (no source file over 1000 lines outside tests, no module dependency
    /// cycles, folders depending on each other only as allowed) are also checked by
    /// xtask's tests, so `cargo xtask test` fails when one is broken.
    Layout,
    /// Remove stale pins under hotpool's pin directory (/sys/fs/bpf/hotpool)
    ///
    /// Needed after an incompatible upgrade. Detaches nothing: a running hotpool keeps its
    /// program and maps, and pinned links are kept.
    CleanBpf {
        /// The pin directory to clean.
        #[arg(long, default_value = dns_common::DEFAULT_PIN_PATH)]
        pin_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Setup => setup::ensure(true),
        Task::Build { release } => {
            setup::ensure(false)?;
            run::build(release)
        }
        Task::Run { release, args } => run::run(release, args),
        Task::Test { skip_lint, args } => test::test(skip_lint, &args),
        Task::Bench {
            part,
            baseline,
            seconds,
            latency_rate,
            rounds,
            perf,
        } => bench::bench(
            part,
            &baseline,
            perf,
            bench::Settings {
                seconds,
                latency_rate,
                latency_seconds: 3,
                rounds,
                perf: None,
            },
        ),
        Task::ProbesBench {
            pools,
            seconds,
            timeout_ms,
        } => probes::bench(&probes::Options {
            pools,
            seconds,
            timeout_ms,
        }),
        Task::Fuzz { target, time, seed } => fuzz::fuzz(target, time, seed),
        Task::Layout => layout::report(&cmd::workspace_root().join("dns-userspace/src"), "hotpool"),
        Task::CleanBpf { pin_dir } => bpffs::clean_bpf(&pin_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_args_after_double_dash_pass_through_verbatim() {
        let cli = Cli::try_parse_from([
            "xtask",
            "test",
            "--skip-lint",
            "--",
            "dns",
            "--",
            "--nocapture",
        ])
        .unwrap();
        let Task::Test { skip_lint, args } = cli.task else {
            panic!("parsed as another task");
        };
        assert!(skip_lint);
        assert_eq!(args, ["dns", "--", "--nocapture"]);
    }

    #[test]
    fn fuzz_takes_a_target_and_a_time() {
        let cli = Cli::try_parse_from(["xtask", "fuzz", "zone", "--time", "30"]).unwrap();
        let Task::Fuzz { target, time, seed } = cli.task else {
            panic!("parsed as another task");
        };
        assert_eq!((target, time, seed), (fuzz::Target::Zone, 30, None));
        let cli = Cli::try_parse_from(["xtask", "fuzz", "--seconds", "5"]).unwrap();
        assert!(matches!(
            cli.task,
            Task::Fuzz {
                target: fuzz::Target::All,
                time: 5,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["xtask", "fuzz", "xdp", "--time", "0"]).is_err());
    }

    #[test]
    fn run_args_after_double_dash() {
        let cli = Cli::try_parse_from([
            "xtask",
            "run",
            "--release",
            "--",
            "check",
            "--config",
            "x.toml",
        ])
        .unwrap();
        let Task::Run { release, args } = cli.task else {
            panic!("parsed as another task");
        };
        assert!(release);
        assert_eq!(args, ["check", "--config", "x.toml"]);
    }
}
