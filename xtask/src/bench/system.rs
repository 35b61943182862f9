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
    interrupt,
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
            rrl: None,
            binary: b.clone(),
            xdp: Some(XdpMode::Native),
        })
        .collect();
    list.extend(binaries.iter().map(|b| Server::Hotpool {
        rrl: None,
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
    let mut results = Results::default();
    for round in 1..=settings.rounds {
        for server in servers(binaries) {
            interrupt::check()?;
            println!("system: round {round}/{}: {server}", settings.rounds);
            match one_server(&server, work, &sets, &files, settings) {
                Ok(rows) => {
                    for (set, m) in rows {
                        results.push(&server.to_string(), set, Ok(m));
                    }
                }
                Err(err) => results.push(&server.to_string(), "all", Err(err)),
            }
        }
    }
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    let current = binaries.last().map_or("current", |b| b.label.as_str());
    Ok(render(&results, settings, current))
}

/// Every round's measurements, by server and query file, in first-seen order.
#[derive(Default)]
struct Results(Vec<(String, &'static str, Vec<Result<Measured>>)>);

impl Results {
    fn push(&mut self, server: &str, set: &'static str, m: Result<Measured>) {
        match self.0.iter_mut().find(|(s, q, _)| s == server && *q == set) {
            Some((_, _, rounds)) => rounds.push(m),
            None => self.0.push((server.to_owned(), set, vec![m])),
        }
    }
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

/// Median, minimum and maximum of one figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The [`Spread`] of each figure `figures` reads from the rounds that succeeded; the first
/// error (one line) when none did.
pub fn spreads<T>(
    rounds: &[Result<&T, String>],
    figures: impl Fn(&T) -> Vec<f64>,
) -> Result<Vec<Spread>, String> {
    let ok: Vec<Vec<f64>> = rounds
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|t| figures(t)))
        .collect();
    if ok.is_empty() {
        return Err(rounds
            .iter()
            .find_map(|r| r.as_ref().err().cloned())
            .unwrap_or_else(|| "no measurement".to_owned()));
    }
    Ok((0..ok[0].len())
        .map(|i| {
            let mut values: Vec<f64> = ok.iter().map(|v| v[i]).collect();
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            let median = if values.len() % 2 == 1 {
                values[mid]
            } else {
                (values[mid - 1] + values[mid]) / 2.0
            };
            Spread {
                median,
                min: values[0],
                max: values[values.len() - 1],
            }
        })
        .collect())
}

fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ").replace('|', "/")
}

/// `74.4k`, with the range over the rounds when there were several.
fn kilo_spread(s: &Spread, rounds: u32) -> String {
    if rounds > 1 {
        format!(
            "{} ({}–{})",
            report::kilo(s.median),
            report::kilo(s.min),
            report::kilo(s.max)
        )
    } else {
        report::kilo(s.median)
    }
}

fn render(results: &Results, settings: &Settings, current: &str) -> Report {
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
    let rounds = settings.rounds;
    let mut medians = Medians::default();
    for (server, set, measured) in &results.0 {
        let head = vec![server.clone(), (*set).to_owned()];
        let pick = |f: &dyn Fn(&Measured) -> Result<Vec<f64>, String>| {
            let per_round: Vec<Result<Vec<f64>, String>> = measured
                .iter()
                .map(|m| m.as_ref().map_err(one_line).and_then(f))
                .collect();
            let refs: Vec<Result<&Vec<f64>, String>> = per_round
                .iter()
                .map(|r| r.as_ref().map_err(Clone::clone))
                .collect();
            spreads(&refs, Clone::clone)
        };
        let cells = |r: Result<Vec<Spread>, String>, fmt: &dyn Fn(&[Spread]) -> Vec<String>| match r
        {
            Ok(s) => fmt(&s),
            Err(e) => vec![format!("error: {e}")],
        };
        let d = pick(&|m| {
            m.dnsperf.as_ref().map_err(one_line).map(|(d, cost)| {
                vec![
                    d.qps,
                    ratio(d.completed, d.sent),
                    cost.per_100k(d.completed).unwrap_or(f64::NAN),
                    cost.rcvbuf_drops as f64,
                ]
            })
        });
        if let Ok(d) = &d {
            medians.dnsperf.push((server.clone(), set, d[0].median));
        }
        dnsperf.row(
            [
                head.clone(),
                cells(d, &|s| {
                    vec![
                        kilo_spread(&s[0], rounds),
                        format!("{:.1} %", s[1].median),
                        format!("{:.2}", s[2].median),
                        report::count(s[3].median as u64),
                    ]
                }),
            ]
            .concat(),
        );
        let k = pick(&|m| {
            m.kxdpgun.as_ref().map_err(one_line).map(|(k, cost)| {
                vec![
                    k.sent_pps as f64,
                    k.received_pps as f64,
                    ratio(k.received, k.sent),
                    cost.per_100k(k.received).unwrap_or(f64::NAN),
                    cost.rcvbuf_drops as f64,
                ]
            })
        });
        if let Ok(k) = &k {
            medians
                .kxdpgun
                .push((server.clone(), set, k[1].median, k[2].median));
        }
        kxdpgun.row(
            [
                head.clone(),
                cells(k, &|s| {
                    vec![
                        kilo_spread(&s[0], rounds),
                        kilo_spread(&s[1], rounds),
                        format!("{:.1} %", s[2].median),
                        format!("{:.2}", s[3].median),
                        report::count(s[4].median as u64),
                    ]
                }),
            ]
            .concat(),
        );
        let l = pick(&|m| {
            m.latency.as_ref().map_err(one_line).map(|(l, cost)| {
                vec![
                    l.p50.as_secs_f64(),
                    l.p99.as_secs_f64(),
                    ratio(l.answered, l.sent),
                    cost.per_100k(l.answered).unwrap_or(f64::NAN),
                ]
            })
        });
        latency.row(
            [
                head,
                cells(l, &|s| {
                    vec![
                        report::ms(std::time::Duration::from_secs_f64(s[0].median)),
                        report::ms(std::time::Duration::from_secs_f64(s[1].median)),
                        format!("{:.1} %", s[2].median),
                        format!("{:.2}", s[3].median),
                    ]
                }),
            ]
            .concat(),
        );
    }
    let mut rep = Report::new(
        "System load: hotpool and the reference servers",
        &format!(
            "Each server alone in a server namespace on a veth pair, the load from the client \
             namespace, both on the same cores. Query files: *hot-only* (pool names: A, AAAA, \
             CNAME) and *mixed* (5 % pool names; zone names 40 %, NXDOMAIN 25 %, NODATA 15 %, \
             REFUSED 15 %). The client end runs a pass-everything XDP program for every server \
             (native XDP on the server end needs it for XDP_TX). CPU is whole-box busy time \
             (/proc/stat, load generator included) per 100 000 answered queries; rcvbuf drops \
             are the server namespace's `Udp: RcvbufErrors`. {}",
            if rounds > 1 {
                format!(
                    "Medians of {rounds} rounds (servers taken in turn each round); rates show \
                     the range in parentheses."
                )
            } else {
                "One round.".to_owned()
            }
        ),
    );
    rep.table(
        &format!(
            "Issue 7's targets, for hotpool {current} (medians; references: Knot UDP, NSD, \
             gdnsd):"
        ),
        &targets(&medians, current),
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

/// The medians the targets are judged on.
#[derive(Default)]
struct Medians {
    /// (server, query file, dnsperf qps)
    dnsperf: Vec<(String, &'static str, f64)>,
    /// (server, query file, kxdpgun answered pps, answered %)
    kxdpgun: Vec<(String, &'static str, f64, f64)>,
}

/// The reference servers a daemon is compared with.
const REFERENCES: [&str; 3] = ["Knot UDP", "NSD", "gdnsd"];

/// One row per target of issue 7 that the system load measures: the figure, what it is held
/// against, and whether it is met.
fn targets(m: &Medians, current: &str) -> Table {
    let mut t = Table::new(&["target", "queries", "hotpool", "against", "met"]);
    let dnsperf = |server: &str, set: &str| {
        m.dnsperf
            .iter()
            .find(|(s, q, _)| s == server && *q == set)
            .map(|(_, _, v)| *v)
    };
    let kx = |server: &str, set: &str| {
        m.kxdpgun
            .iter()
            .find(|(s, q, _, _)| s == server && *q == set)
            .map(|(_, _, pps, pct)| (*pps, *pct))
    };
    let best = |f: &dyn Fn(&str) -> Option<f64>| {
        REFERENCES
            .iter()
            .filter_map(|r| f(r).map(|v| (v, *r)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let xdp = format!("hotpool {current} XDP native");
    let daemon = format!("hotpool {current} --no-xdp");
    let verdict = |ok: bool| if ok { "yes" } else { "**no**" }.to_owned();
    let mut row = |target: &str,
                   set: &str,
                   ours: Option<f64>,
                   against: Option<(f64, String)>,
                   fmt: &dyn Fn(f64) -> String| {
        let cells = match (ours, against) {
            (Some(o), Some((a, label))) => {
                vec![fmt(o), format!("{} ({label})", fmt(a)), verdict(o >= a)]
            }
            _ => vec!["–".to_owned(), "–".to_owned(), "not measured".to_owned()],
        };
        t.row([vec![target.to_owned(), set.to_owned()], cells].concat());
    };
    row(
        "mixed traffic with XDP attached at least as fast as --no-xdp (dnsperf qps)",
        "mixed",
        dnsperf(&xdp, "mixed"),
        dnsperf(&daemon, "mixed").map(|v| (v, "--no-xdp".to_owned())),
        &report::kilo,
    );
    for set in ["hot-only", "mixed"] {
        row(
            "the daemon at least the best reference (dnsperf qps)",
            set,
            dnsperf(&daemon, set),
            best(&|r| dnsperf(r, set)).map(|(v, r)| (v, r.to_owned())),
            &report::kilo,
        );
    }
    for set in ["hot-only", "mixed"] {
        row(
            "the daemon at least the best reference (kxdpgun answered pps)",
            set,
            kx(&daemon, set).map(|(pps, _)| pps),
            best(&|r| kx(r, set).map(|(pps, _)| pps)).map(|(v, r)| (v, r.to_owned())),
            &report::kilo,
        );
    }
    for set in ["hot-only", "mixed"] {
        row(
            "every query kxdpgun sends is answered (XDP native, answered %)",
            set,
            kx(&xdp, set).map(|(_, pct)| pct),
            Some((99.95, "all".to_owned())),
            &|v| format!("{v:.1} %"),
        );
    }
    t
}

/// `part / whole` in percent (0 when nothing was sent).
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_the_median_of_the_rounds_that_worked() {
        let a = vec![1.0, 10.0];
        let b = vec![3.0, 30.0];
        let c = vec![2.0, 20.0];
        let rounds = [Ok(&a), Err("boom".to_owned()), Ok(&b), Ok(&c)];
        let s = spreads(&rounds, Clone::clone).unwrap();
        assert_eq!(
            s[0],
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(s[1].median, 20.0);
        let even = [Ok(&a), Ok(&b)];
        assert_eq!(spreads(&even, Clone::clone).unwrap()[0].median, 2.0);
        let failed: [Result<&Vec<f64>, String>; 1] = [Err("boom".to_owned())];
        assert_eq!(spreads(&failed, Clone::clone), Err("boom".to_owned()));
    }

    #[test]
    fn targets_compare_with_the_best_reference() {
        let m = Medians {
            dnsperf: vec![
                ("hotpool current XDP native".to_owned(), "mixed", 60_000.0),
                ("hotpool current --no-xdp".to_owned(), "mixed", 75_000.0),
                ("hotpool current --no-xdp".to_owned(), "hot-only", 90_000.0),
                ("Knot UDP".to_owned(), "hot-only", 95_000.0),
                ("gdnsd".to_owned(), "hot-only", 105_000.0),
                ("Knot AF_XDP".to_owned(), "hot-only", 500_000.0),
            ],
            kxdpgun: vec![(
                "hotpool current XDP native".to_owned(),
                "hot-only",
                250_000.0,
                100.0,
            )],
        };
        let text = targets(&m, "current").render();
        let line = |start: &str, set: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("| {start}")) && l.contains(&format!("| {set} |")))
                .unwrap_or_else(|| panic!("no {start} / {set} in\n{text}"))
                .to_owned()
        };
        assert!(line("mixed traffic", "mixed").ends_with("| 60.0k | 75.0k (--no-xdp) | **no** |"));
        // AF_XDP Knot is not a reference for the daemon.
        assert!(
            line(
                "the daemon at least the best reference (dnsperf",
                "hot-only"
            )
            .ends_with("| 90.0k | 105.0k (gdnsd) | **no** |")
        );
        assert!(line("every query", "hot-only").ends_with("| 100.0 % | 100.0 % (all) | yes |"));
        assert!(line("every query", "mixed").ends_with("| not measured |"));
    }

    #[test]
    fn every_server_is_listed_once_per_build() {
        let b = |label: &str| Binary {
            label: label.to_owned(),
            path: "/x".into(),
        };
        let names: Vec<String> = servers(&[b("baseline"), b("current")])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "hotpool baseline XDP native",
                "hotpool current XDP native",
                "hotpool baseline --no-xdp",
                "hotpool current --no-xdp",
                "Knot UDP",
                "Knot AF_XDP",
                "NSD",
                "gdnsd"
            ]
        );
    }
}
