//! `cargo xtask bench xdp-cost`: why attaching XDP in native mode on a veth makes the
//! daemon's traffic slower. The same mixed load (dnsperf at its maximum, then the fixed-rate
//! client) against hotpool with nothing on the server end, with a trivial pass program there
//! (native and generic), and with hotpool's own program (native and generic). The difference
//! between "nothing" and "pass" is the veth's XDP receive path; between "pass" and hotpool's
//! program, the program. The kernel's run-time statistics give the programs' own time.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{
    Settings,
    bpf::{BpfStatsEnabled, PassProgram, Program, RunStats, XdpMode},
    dns, interrupt,
    load::{self, Cost, Dnsperf, Latency},
    net::Link,
    report::{self, Report, Table},
    servers::{self, Binary, Server},
    system::{Spread, spreads},
};

/// What the server end runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerXdp {
    None,
    Pass(XdpMode),
    Hotpool(XdpMode),
}

struct Variant {
    name: String,
    binary: Binary,
    server_xdp: ServerXdp,
    /// A pass program on the client end (native XDP's XDP_TX replies need one).
    client_pass: bool,
}

fn variants(binaries: &[Binary]) -> Vec<Variant> {
    let current = binaries.last().expect("at least one build").clone();
    let mut list = vec![
        Variant {
            name: "--no-xdp, no XDP on either end".to_owned(),
            binary: current.clone(),
            server_xdp: ServerXdp::None,
            client_pass: false,
        },
        Variant {
            name: "--no-xdp".to_owned(),
            binary: current.clone(),
            server_xdp: ServerXdp::None,
            client_pass: true,
        },
    ];
    for mode in [XdpMode::Native, XdpMode::Generic] {
        list.push(Variant {
            name: format!("--no-xdp + pass program, {}", mode.name()),
            binary: current.clone(),
            server_xdp: ServerXdp::Pass(mode),
            client_pass: true,
        });
        for binary in binaries {
            list.push(Variant {
                name: format!("hotpool {} program, {}", binary.label, mode.name()),
                binary: binary.clone(),
                server_xdp: ServerXdp::Hotpool(mode),
                client_pass: true,
            });
        }
    }
    list
}

struct Outcome {
    dnsperf: Dnsperf,
    cost: Cost,
    program: Option<RunStats>,
    latency: Result<Latency>,
}

pub fn run(binaries: &[Binary], work: &Path, settings: &Settings) -> Result<Report> {
    load::require(&["dnsperf"])?;
    let lines = dns::mixed();
    let file = load::query_file(
        work,
        &format!("xdp-cost-{}.txt", std::process::id()),
        &lines,
    )?;
    // The same statistics overhead for every variant (two clock reads per program run).
    let stats = BpfStatsEnabled::enable()?;
    let variants = variants(binaries);
    let mut rows: Vec<(String, Vec<Result<Outcome>>)> = variants
        .iter()
        .map(|v| (v.name.clone(), Vec::new()))
        .collect();
    // Rounds take every variant in turn, so drift in the machine's load spreads evenly.
    for round in 1..=settings.rounds {
        for (variant, (_, outcomes)) in variants.iter().zip(&mut rows) {
            interrupt::check()?;
            println!(
                "xdp-cost: round {round}/{}: {}",
                settings.rounds, variant.name
            );
            outcomes.push(
                one(variant, work, &file, &lines, settings, round)
                    .with_context(|| format!("xdp-cost: {}", variant.name)),
            );
        }
    }
    drop(stats);
    let _ = std::fs::remove_file(&file);
    Ok(render(&rows, settings))
}

fn one(
    variant: &Variant,
    work: &Path,
    file: &Path,
    lines: &[dns::QueryLine],
    settings: &Settings,
    round: u32,
) -> Result<Outcome> {
    let link = Link::new()?;
    let _client = if variant.client_pass {
        Some(PassProgram::attach(
            &link.client,
            &link.client_if,
            XdpMode::Native,
        )?)
    } else {
        None
    };
    let server = Server::Hotpool {
        rrl: None,
        binary: variant.binary.clone(),
        xdp: match variant.server_xdp {
            ServerXdp::Hotpool(mode) => Some(mode),
            _ => None,
        },
    };
    let running = servers::start(&server, &link, work)?;
    let pass = match variant.server_xdp {
        ServerXdp::Pass(mode) => Some(PassProgram::attach(&link.server, &link.server_if, mode)?),
        _ => None,
    };
    let hotpool = match variant.server_xdp {
        ServerXdp::Hotpool(_) => Some(Program::from_id(servers::hotpool_prog(&link)?.id)?),
        _ => None,
    };
    let program_stats = || -> Result<Option<RunStats>> {
        match (&pass, &hotpool) {
            (Some(p), _) => p.run_stats().map(Some),
            (_, Some(h)) => h.run_stats().map(Some),
            _ => Ok(None),
        }
    };
    let before = program_stats()?;
    let profile = match &settings.perf {
        Some(dir) => Some(Profile::start(dir, &variant.name, round, settings.seconds)?),
        None => None,
    };
    let (dnsperf, cost) = load::costed(&link, || load::dnsperf(&link, file, settings.seconds))?;
    if let Some(profile) = profile {
        profile.finish()?;
    }
    let after = program_stats()?;
    let latency = load::fixed_rate(
        &link,
        lines,
        settings.latency_rate,
        settings.latency_seconds,
    );
    drop(pass);
    running.stop();
    Ok(Outcome {
        dnsperf,
        cost,
        program: before.zip(after).map(|(b, a)| a.since(&b)),
        latency,
    })
}

fn render(rows: &[(String, Vec<Result<Outcome>>)], settings: &Settings) -> Report {
    // Per variant: qps, answered %, CPU s/100k, program ns/packet, program CPU s/100k,
    // drops, p50 s, p99 s (NaN where a figure does not apply).
    let figures: Vec<(&String, Result<Vec<Spread>, String>)> = rows
        .iter()
        .map(|(name, outcomes)| {
            let per_round: Vec<Result<Vec<f64>, String>> = outcomes
                .iter()
                .map(|o| {
                    o.as_ref()
                        .map(|o| o.figures())
                        .map_err(|e| format!("{e:#}").replace('\n', " "))
                })
                .collect();
            let refs: Vec<Result<&Vec<f64>, String>> = per_round
                .iter()
                .map(|r| r.as_ref().map_err(Clone::clone))
                .collect();
            (name, spreads(&refs, Clone::clone))
        })
        .collect();
    let reference = figures.iter().find_map(|(name, f)| match f {
        Ok(s) if name.as_str() == "--no-xdp" => Some(s[2].median),
        _ => None,
    });
    let mut table = Table::new(&[
        "server end",
        "dnsperf qps",
        "answered",
        "CPU s / 100k",
        "vs --no-xdp",
        "program ns / packet",
        "program CPU s / 100k",
        "rcvbuf drops",
        "p50 ms",
        "p99 ms",
    ]);
    let num = |v: f64, fmt: &dyn Fn(f64) -> String| {
        if v.is_nan() { "–".to_owned() } else { fmt(v) }
    };
    for (name, spread) in figures {
        let s = match spread {
            Ok(s) => s,
            Err(err) => {
                table.row(vec![name.clone(), format!("error: {err}")]);
                continue;
            }
        };
        let qps = if settings.rounds > 1 {
            format!(
                "{} ({}–{})",
                report::kilo(s[0].median),
                report::kilo(s[0].min),
                report::kilo(s[0].max)
            )
        } else {
            report::kilo(s[0].median)
        };
        table.row(vec![
            name.clone(),
            qps,
            format!("{:.1} %", s[1].median),
            num(s[2].median, &|v| format!("{v:.2}")),
            reference.map_or_else(|| "–".to_owned(), |r| format!("{:+.2}", s[2].median - r)),
            num(s[3].median, &report::ns),
            num(s[4].median, &|v| format!("{v:.3}")),
            report::count(s[5].median as u64),
            num(s[6].median, &|v| report::ms(Duration::from_secs_f64(v))),
            num(s[7].median, &|v| report::ms(Duration::from_secs_f64(v))),
        ]);
    }
    let mut rep = Report::new(
        "XDP cost on the daemon's traffic (mixed load, veth)",
        &format!(
            "The mixed query file against hotpool: dnsperf at its maximum for {} s, then the \
             fixed-rate client at {} qps for {} s. The client end runs a native pass program \
             except in the first row. `kernel.bpf_stats_enabled=1` throughout (every row pays \
             its clock reads); *program* columns are the server-end program's own time from \
             it. CPU is whole-box busy seconds per 100 000 answered queries during the dnsperf \
             run; *vs --no-xdp* is the difference from the second row. {}",
            settings.seconds,
            report::count(u64::from(settings.latency_rate)),
            settings.latency_seconds,
            if settings.rounds > 1 {
                format!(
                    "Medians of {} rounds (variants taken in turn each round); qps shows the \
                     range in parentheses.",
                    settings.rounds
                )
            } else {
                "One round.".to_owned()
            }
        ),
    );
    rep.table("", &table);
    rep
}

/// A whole-box `perf record -a -g` over a dnsperf run (`--perf`), for `perf report`.
struct Profile {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl Profile {
    fn start(dir: &Path, variant: &str, round: u32, seconds: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let slug: String = variant
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = dir.join(format!("{}-r{round}.data", slug.trim_matches('-')));
        let child = std::process::Command::new("perf")
            .args(["record", "-a", "-g", "-F", "999", "-q", "-o"])
            .arg(&path)
            .args(["--", "sleep", &seconds.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting `perf record` (Debian package linux-perf)")?;
        Ok(Self { child, path })
    }

    fn finish(mut self) -> Result<()> {
        let status = self.child.wait().context("waiting for perf record")?;
        if !status.success() {
            anyhow::bail!("perf record failed ({status})");
        }
        println!("xdp-cost: profile in {}", self.path.display());
        Ok(())
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Outcome {
    fn figures(&self) -> Vec<f64> {
        let answered = self.dnsperf.completed;
        let (prog_ns, prog_cpu) = match self.program {
            Some(stats) if answered > 0 => (
                stats.ns_per_run().unwrap_or(f64::NAN),
                stats.run_time_ns as f64 / 1e9 * 100_000.0 / answered as f64,
            ),
            _ => (f64::NAN, f64::NAN),
        };
        let (p50, p99) = match &self.latency {
            Ok(l) => (l.p50.as_secs_f64(), l.p99.as_secs_f64()),
            Err(_) => (f64::NAN, f64::NAN),
        };
        vec![
            self.dnsperf.qps,
            if self.dnsperf.sent == 0 {
                0.0
            } else {
                answered as f64 * 100.0 / self.dnsperf.sent as f64
            },
            self.cost.per_100k(answered).unwrap_or(f64::NAN),
            prog_ns,
            prog_cpu,
            self.cost.rcvbuf_drops as f64,
            p50,
            p99,
        ]
    }
}
