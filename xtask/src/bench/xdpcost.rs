//! `cargo xtask bench xdp-cost`: why attaching XDP in native mode on a veth makes the
//! daemon's traffic slower. The same mixed load (dnsperf at its maximum, then the fixed-rate
//! client) against hotpool with nothing on the server end, with a trivial pass program there
//! (native and generic), and with hotpool's own program (native and generic). The difference
//! between "nothing" and "pass" is the veth's XDP receive path; between "pass" and hotpool's
//! program, the program. The kernel's run-time statistics give the programs' own time.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::{
    Settings,
    bpf::{BpfStatsEnabled, PassProgram, Program, RunStats, XdpMode},
    dns,
    load::{self, Cost, Dnsperf, Latency},
    net::Link,
    report::{self, Report, Table},
    servers::{self, Binary, Server},
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
    let mut rows = Vec::new();
    for variant in variants(binaries) {
        println!("xdp-cost: {}", variant.name);
        let outcome = one(&variant, work, &file, &lines, settings)
            .with_context(|| format!("xdp-cost: {}", variant.name));
        rows.push((variant.name, outcome));
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
    let (dnsperf, cost) = load::costed(&link, || load::dnsperf(&link, file, settings.seconds))?;
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

fn render(rows: &[(String, Result<Outcome>)], settings: &Settings) -> Report {
    let reference = rows.iter().find_map(|(name, o)| match o {
        Ok(o) if name == "--no-xdp" => Some(o.cost.per_100k(o.dnsperf.completed)),
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
    for (name, outcome) in rows {
        let o = match outcome {
            Ok(o) => o,
            Err(err) => {
                table.row(vec![
                    name.clone(),
                    format!("error: {err:#}").replace('\n', " "),
                ]);
                continue;
            }
        };
        let per_100k = o.cost.per_100k(o.dnsperf.completed);
        let delta = match (per_100k, reference.flatten()) {
            (Some(v), Some(r)) => format!("{:+.2}", v - r),
            _ => "–".to_owned(),
        };
        let (prog_ns, prog_cpu) = match o.program {
            Some(stats) => (
                stats
                    .ns_per_run()
                    .map_or_else(|| "–".to_owned(), report::ns),
                if o.dnsperf.completed > 0 {
                    format!(
                        "{:.2}",
                        stats.run_time_ns as f64 / 1e9 * 100_000.0 / o.dnsperf.completed as f64
                    )
                } else {
                    "–".to_owned()
                },
            ),
            None => ("–".to_owned(), "–".to_owned()),
        };
        let (p50, p99) = match &o.latency {
            Ok(l) => (report::ms(l.p50), report::ms(l.p99)),
            Err(err) => (format!("error: {err:#}"), String::new()),
        };
        table.row(vec![
            name.clone(),
            report::kilo(o.dnsperf.qps),
            report::percent(o.dnsperf.completed, o.dnsperf.sent),
            per_100k.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}")),
            delta,
            prog_ns,
            prog_cpu,
            report::count(o.cost.rcvbuf_drops),
            p50,
            p99,
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
             run; *vs --no-xdp* is the difference from the second row.",
            settings.seconds,
            report::count(u64::from(settings.latency_rate)),
            settings.latency_seconds
        ),
    );
    rep.table("", &table);
    rep
}
