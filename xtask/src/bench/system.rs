//! `cargo xtask bench system`: every server under the same load, one after the other, in
//! one run: hotpool (each build) with its XDP program in native mode and with `--no-xdp`, and
//! Knot (UDP and AF_XDP), NSD and gdnsd serving the same zone with the pool names as static
//! records. Each serves from the server namespace of its own veth pair; the load comes from
//! the client namespace, on the same two cores.

use std::path::Path;

use anyhow::Result;

use super::{
    Settings,
    bpf::{PassProgram, XdpMode},
    dns::{self, QueryLine},
    load::{self, Cost, Dnsperf, Kxdpgun, Latency},
    net::Link,
    report::{self, Report, Table},
    servers::{self, Binary, Server},
};

/// kxdpgun's requested rate: more than it can send on this machine, so it sends what it can.
pub const KXDPGUN_MAX_QPS: u32 = 2_000_000;

/// The servers, in table order.
pub fn servers(binaries: &[Binary]) -> Vec<Server> {
    let mut list: Vec<Server> = binaries
        .iter()
        .map(|b| Server::Hotpool {
            binary: b.clone(),
            xdp: Some(XdpMode::Native),
        })
        .collect();
    list.extend(binaries.iter().map(|b| Server::Hotpool {
        binary: b.clone(),
        xdp: None,
    }));
    list.extend([Server::KnotUdp, Server::KnotXdp, Server::Nsd, Server::Gdnsd]);
    list
}

/// One query file.
pub struct QuerySet {
    pub name: &'static str,
    pub lines: Vec<QueryLine>,
}

pub fn query_sets() -> [QuerySet; 2] {
    [
        QuerySet {
            name: "hot-only",
            lines: dns::hot_only(),
        },
        QuerySet {
            name: "mixed",
            lines: dns::mixed(),
        },
    ]
}

/// The three loads against one server and one query file.
pub struct Measured {
    pub dnsperf: Result<(Dnsperf, Cost)>,
    pub kxdpgun: Result<(Kxdpgun, Cost)>,
    pub latency: Result<(Latency, Cost)>,
}

/// dnsperf at its maximum, kxdpgun at its maximum, then the fixed-rate client, against a
/// server already answering on `link`. `peer` is the pass program on the client end, taken
/// off while kxdpgun (which brings its own) runs.
pub fn measure(
    link: &Link,
    peer: &mut Option<PassProgram>,
    file: &Path,
    lines: &[QueryLine],
    settings: &Settings,
) -> Measured {
    let dnsperf = load::costed(link, || load::dnsperf(link, file, settings.seconds));
    let peer_mode = peer.as_ref().map(|p| p.mode);
    *peer = None;
    let kxdpgun = load::costed(link, || {
        load::kxdpgun(link, file, settings.seconds, KXDPGUN_MAX_QPS)
    });
    if let Some(mode) = peer_mode {
        match PassProgram::attach(&link.client, &link.client_if, mode) {
            Ok(p) => *peer = Some(p),
            Err(err) => {
                let err = err.context("re-attaching the pass program on the client");
                return Measured {
                    dnsperf,
                    kxdpgun,
                    latency: Err(err),
                };
            }
        }
    }
    let latency = load::costed(link, || {
        load::fixed_rate(link, lines, settings.latency_rate, settings.latency_seconds)
    });
    Measured {
        dnsperf,
        kxdpgun,
        latency,
    }
}

pub fn run(binaries: &[Binary], work: &Path, settings: &Settings) -> Result<Report> {
    load::require(&["dnsperf", "kxdpgun", "knotd", "nsd", "gdnsd"])?;
    let sets = query_sets();
    let files = sets
        .iter()
        .map(|set| {
            load::query_file(
                work,
                &format!("{}-{}.txt", set.name, std::process::id()),
                &set.lines,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let mut results: Vec<(String, &'static str, Result<Measured>)> = Vec::new();
    for server in servers(binaries) {
        println!("system: {server}");
        let outcome = one_server(&server, work, &sets, &files, settings);
        match outcome {
            Ok(rows) => results.extend(
                rows.into_iter()
                    .map(|(set, m)| (server.to_string(), set, Ok(m))),
            ),
            Err(err) => results.push((server.to_string(), "all", Err(err))),
        }
    }
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    Ok(render(&results, settings))
}

fn one_server(
    server: &Server,
    work: &Path,
    sets: &[QuerySet],
    files: &[std::path::PathBuf],
    settings: &Settings,
) -> Result<Vec<(&'static str, Measured)>> {
    let link = Link::new()?;
    // Every server gets the same client end: a pass program there, which native XDP on the
    // server end needs for its XDP_TX replies to arrive.
    let mut peer = Some(PassProgram::attach(
        &link.client,
        &link.client_if,
        XdpMode::Native,
    )?);
    let running = servers::start(server, &link, work)?;
    let mut rows = Vec::new();
    for (set, file) in sets.iter().zip(files) {
        // Knot's AF_XDP front end is measured with pool names only, as in the issue.
        if matches!(server, Server::KnotXdp) && set.name != "hot-only" {
            continue;
        }
        rows.push((
            set.name,
            measure(&link, &mut peer, file, &set.lines, settings),
        ));
    }
    running.stop();
    Ok(rows)
}

fn err_cell(err: &anyhow::Error) -> String {
    format!(
        "error: {}",
        format!("{err:#}").replace('\n', " ").replace('|', "/")
    )
}

fn render(results: &[(String, &'static str, Result<Measured>)], settings: &Settings) -> Report {
    let mut dnsperf = Table::new(&[
        "server",
        "queries",
        "qps",
        "answered",
        "CPU s / 100k answered",
        "rcvbuf drops",
    ]);
    let mut kxdpgun = Table::new(&[
        "server",
        "queries",
        "sent pps",
        "answered pps",
        "answered",
        "CPU s / 100k answered",
        "rcvbuf drops",
    ]);
    let mut latency = Table::new(&[
        "server",
        "queries",
        "p50 ms",
        "p99 ms",
        "answered",
        "CPU s / 100k answered",
    ]);
    for (server, set, measured) in results {
        let head = vec![server.clone(), (*set).to_owned()];
        let m = match measured {
            Ok(m) => m,
            Err(err) => {
                for table in [&mut dnsperf, &mut kxdpgun, &mut latency] {
                    table.row([head.clone(), vec![err_cell(err)]].concat());
                }
                continue;
            }
        };
        dnsperf.row(
            [
                head.clone(),
                match &m.dnsperf {
                    Ok((d, cost)) => vec![
                        report::kilo(d.qps),
                        report::percent(d.completed, d.sent),
                        per_100k(cost, d.completed),
                        report::count(cost.rcvbuf_drops),
                    ],
                    Err(err) => vec![err_cell(err)],
                },
            ]
            .concat(),
        );
        kxdpgun.row(
            [
                head.clone(),
                match &m.kxdpgun {
                    Ok((k, cost)) => vec![
                        report::kilo(k.sent_pps as f64),
                        report::kilo(k.received_pps as f64),
                        report::percent(k.received, k.sent),
                        per_100k(cost, k.received),
                        report::count(cost.rcvbuf_drops),
                    ],
                    Err(err) => vec![err_cell(err)],
                },
            ]
            .concat(),
        );
        latency.row(
            [
                head,
                match &m.latency {
                    Ok((l, cost)) => vec![
                        report::ms(l.p50),
                        report::ms(l.p99),
                        report::percent(l.answered, l.sent),
                        per_100k(cost, l.answered),
                    ],
                    Err(err) => vec![err_cell(err)],
                },
            ]
            .concat(),
        );
    }
    let mut rep = Report::new(
        "System load: hotpool and the reference servers",
        "Each server alone in a server namespace on a veth pair, the load from the client \
             namespace, both on the same cores. Query files: *hot-only* (pool names: A, AAAA, \
             CNAME) and *mixed* (5 % pool names; zone names 40 %, NXDOMAIN 25 %, NODATA 15 %, \
             REFUSED 15 %). The client end runs a pass-everything XDP program for every server \
             (native XDP on the server end needs it for XDP_TX). CPU is whole-box busy time \
             (/proc/stat, load generator included) per 100 000 answered queries; rcvbuf drops \
             are the server namespace's `Udp: RcvbufErrors`.",
    );
    rep.table(
        &format!(
            "dnsperf, maximum rate, {} s, `-c 8 -T 2 -q 256`:",
            settings.seconds
        ),
        &dnsperf,
    );
    rep.table(
        &format!(
            "kxdpgun (AF_XDP), {} s, asked for {} qps (it sends what it can):",
            settings.seconds,
            report::count(u64::from(KXDPGUN_MAX_QPS))
        ),
        &kxdpgun,
    );
    rep.table(
        &format!(
            "Latency at a fixed {} qps for {} s (the harness's own UDP client; every query \
             timestamped; answers within 1 s after the last query count):",
            report::count(u64::from(settings.latency_rate)),
            settings.latency_seconds
        ),
        &latency,
    );
    rep
}

fn per_100k(cost: &Cost, answered: u64) -> String {
    cost.per_100k(answered)
        .map_or_else(|| "–".to_owned(), |s| format!("{s:.2}"))
}
