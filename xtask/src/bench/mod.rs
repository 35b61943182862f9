//! `cargo xtask bench [host|kernel|rrl|system|xdp-cost|all]`: side-by-side benchmarks of the
//! current tree and a baseline revision (by default the previous release), each part printing
//! markdown tables and writing them to target/bench/<part>.md.
//!
//! The daemon is driven as a binary through its CLI and a TOML config (any hotpool build
//! works: nothing here links the hotpool library), inside network namespaces joined by veth
//! pairs; the kernel figures come from the attached program, found by id.

mod binaries;
mod bpf;
mod dns;
mod host;
mod interrupt;
mod kernel;
mod load;
mod net;
mod prereq;
mod report;
mod servers;
mod system;
mod xdpcost;

use std::{fs, path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum;

pub use binaries::PREVIOUS_RELEASE;

use crate::{cmd, run::become_root, setup};

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// criterion micro-benchmarks of both trees
    Host,
    /// nanoseconds per packet in the XDP program (test runs and bpf_stats under kxdpgun)
    Kernel,
    /// response rate limiting's cost per hot hit, switched on and off in one daemon
    Rrl,
    /// dnsperf, kxdpgun and latency against hotpool and Knot, NSD, gdnsd
    System,
    /// the mixed load with no XDP, a pass program and hotpool's program on the server veth
    XdpCost,
    /// all of the above
    All,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Kernel => "kernel",
            Self::Rrl => "rrl",
            Self::System => "system",
            Self::XdpCost => "xdp-cost",
            Self::All => "all",
        }
    }
}

/// Durations and rates of the load runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seconds per dnsperf and kxdpgun run.
    pub seconds: u32,
    /// Queries per second of the fixed-rate latency client.
    pub latency_rate: u32,
    /// Seconds of the fixed-rate latency client.
    pub latency_seconds: u32,
    /// How often system and xdp-cost measure every server (reported: medians).
    pub rounds: u32,
    /// Where xdp-cost writes a whole-box perf profile of each dnsperf run (`--perf`).
    pub perf: Option<PathBuf>,
}

/// The working directory of one run (configs, zone and query files), removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn bench(part: Part, baseline: &str, perf: bool, mut settings: Settings) -> Result<()> {
    become_root(
        "bench",
        "the benchmarks create network namespaces, attach XDP programs and install packages",
    )?;
    let started = Instant::now();
    interrupt::install();
    setup::ensure(false)?;
    let parts: Vec<Part> = match part {
        Part::All => vec![
            Part::Host,
            Part::Kernel,
            Part::Rrl,
            Part::System,
            Part::XdpCost,
        ],
        part => vec![part],
    };
    let mut packages: Vec<&str> = prereq::TOOLS.to_vec();
    if parts.contains(&Part::System) {
        packages.extend(prereq::SERVERS);
    }
    if perf && parts.contains(&Part::XdpCost) {
        packages.push(prereq::PERF);
    }
    if parts != [Part::Host] {
        prereq::ensure(&packages)?;
    }
    let bench_dir = cmd::target_dir().join("bench");
    if perf {
        load::require(&["perf"])?;
        settings.perf = Some(bench_dir.join("perf"));
    }
    let work = WorkDir(bench_dir.join(format!("run-{}", std::process::id())));
    fs::create_dir_all(&work.0).with_context(|| format!("creating {}", work.0.display()))?;
    let binaries = if parts.iter().any(|p| *p != Part::Host) {
        Some(binaries::prepare(baseline, &bench_dir)?)
    } else {
        None
    };
    let mut failed = Vec::new();
    let mut all = String::new();
    for part in parts {
        interrupt::check()?;
        let part_started = Instant::now();
        let machine = machine()?;
        let result = match (part, &binaries) {
            (Part::Host, _) => host::run(baseline, &bench_dir),
            (Part::Kernel, Some(b)) => kernel::run(b, &work.0),
            (Part::Rrl, Some(b)) => kernel::run_rrl(b, &work.0),
            (Part::System, Some(b)) => system::run(b, &work.0, &settings),
            (Part::XdpCost, Some(b)) => xdpcost::run(b, &work.0, &settings),
            _ => unreachable!("binaries are built for every part but host"),
        };
        match result {
            Ok(mut rep) => {
                rep.note(&format!(
                    "{machine}; this part took {} s.",
                    part_started.elapsed().as_secs()
                ));
                rep.write(&bench_dir, part.name())?;
                all.push_str(rep.text());
            }
            Err(err) => {
                eprintln!("xtask: bench {}: {err:#}", part.name());
                failed.push(part.name());
            }
        }
    }
    if part == Part::All {
        let path = bench_dir.join("all.md");
        fs::write(&path, &all).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "cargo xtask bench {}: done in {} s",
        part.name(),
        started.elapsed().as_secs()
    );
    if !failed.is_empty() {
        bail!("these parts failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Kernel, cores and load average, for the report.
fn machine() -> Result<String> {
    let release =
        fs::read_to_string("/proc/sys/kernel/osrelease").context("reading the kernel release")?;
    let load = fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    Ok(format!(
        "Measured on Linux {}, {cores} cores, load average {} at the start (other work on the \
         machine makes every figure noisy)",
        release.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ))
}
