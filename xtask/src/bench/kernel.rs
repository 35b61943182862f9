//! `cargo xtask bench kernel`: nanoseconds per packet in the XDP program, for each hotpool
//! build, attached in native mode (a pass program on the peer) and in generic mode on a veth.
//!
//! * Frames the program passes unchanged: `BPF_PROG_TEST_RUN` in repeat mode (1M runs) on the
//!   attached program, by id. Repeating is only sound for frames that come out as they went
//!   in: a hit rewrites the frame into its reply, which the second run would see.
//! * Hits (and a miss for comparison): the kernel's own run-time statistics
//!   (`kernel.bpf_stats_enabled`, `run_time_ns / run_cnt`) while kxdpgun sends that one query
//!   at a fixed rate over the veth; hotpool's own counters confirm the queries were hits.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::RecordType;

use super::{
    bpf::{self, BpfStatsEnabled, PassProgram, PinnedMap, Program, XDP_PASS, XDP_TX, XdpMode},
    dns, interrupt, load,
    net::Link,
    report::{self, Report, Table},
    servers::{self, Binary, Server},
};

/// Runs per `BPF_PROG_TEST_RUN` figure.
pub const REPEAT: u32 = 1_000_000;
/// Calls per "one frame per call" figure: hits rewrite their frame, so each is a test run of
/// its own with a fresh copy of the query.
const SINGLE_CALLS: u32 = 100_000;
/// The methods, as the table names them.
const REPEAT_METHOD: &str = "test run ×1M";
const STATS_METHOD: &str = "bpf_stats, kxdpgun";
const SINGLE_METHOD: &str = "test run, 1 frame × 100k calls (median)";
/// `[rrl] responses_per_second` of the current tree's extra column: far above kxdpgun's
/// rate from its one source, so every hit pays for its bucket and none is limited.
const RRL_RATE: u32 = 10_000_000;
/// The interleaved RRL measurement ([`rrl_interleaved`]): rounds of test runs, each one
/// chunk with RRL off and one with it on, of this many runs per chunk...
const RRL_ROUNDS: usize = 40;
const RRL_CHUNK_RUNS: u32 = 5_000;
/// ... and under kxdpgun for this long, switched this often.
const RRL_GUN_SECONDS: u32 = 12;
const RRL_TOGGLE: Duration = Duration::from_millis(250);
/// The methods, as the RRL table names them.
const RRL_SINGLE_METHOD: &str = "test run, 1 frame (median of each chunk's runs)";
const RRL_STATS_METHOD: &str = "bpf_stats, kxdpgun";
/// The pinned map of the daemon's kernel config (`dns_common::MAP_CONFIG`).
const CONFIG_MAP: &str = "CONFIG";
/// kxdpgun's rate and duration per hit/miss figure.
const KXDPGUN_QPS: u32 = 50_000;
const KXDPGUN_SECONDS: u32 = 3;

/// One figure: a case, measured for one build in one mode.
struct Figure {
    case: String,
    method: &'static str,
    column: String,
    value: Result<f64>,
    detail: String,
    /// Set when the queries were not what the case is about (hits that were not hits).
    warning: Option<String>,
}

/// A warning when the share of kernel hits among the queries sent is not what the case
/// expects (all hits, or none for a miss); `None` when it is, or when hotpool's counters could
/// not be read.
fn hit_warning(expect_hits: bool, hits: Option<u64>, sent: u64) -> Option<String> {
    let hits = hits?;
    if sent == 0 {
        return Some("nothing sent".to_owned());
    }
    let share = hits as f64 / sent as f64;
    let ok = if expect_hits {
        share >= 0.99
    } else {
        share <= 0.01
    };
    (!ok).then(|| format!("{} hits", report::percent(hits, sent)))
}

pub fn run(binaries: &[Binary], work: &Path) -> Result<Report> {
    load::require(&["kxdpgun"])?;
    let mut figures = Vec::new();
    let mut columns = Vec::new();
    for binary in binaries {
        for mode in [XdpMode::Native, XdpMode::Generic] {
            interrupt::check()?;
            let column = format!("{} {}", binary.label, mode.name());
            println!("kernel: {column}");
            columns.push(column.clone());
            measure(binary, mode, &column, work, &mut figures)
                .with_context(|| format!("kernel benchmark of {column}"))?;
        }
    }
    let mut table = Table::new(
        &[
            &["packet", "method"][..],
            &columns.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    let mut cases: Vec<(String, &'static str)> = Vec::new();
    for (case, _) in test_run_cases((Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)) {
        cases.push((case.to_owned(), REPEAT_METHOD));
    }
    for (case, line) in dns::kernel_cases() {
        if line.kind == dns::Kind::Hot {
            cases.push((case.to_owned(), SINGLE_METHOD));
        }
    }
    for (case, _) in dns::kernel_cases() {
        cases.push((case.to_owned(), STATS_METHOD));
    }
    for (case, method) in &cases {
        let mut row = vec![case.clone(), (*method).to_owned()];
        for column in &columns {
            let cell = figures
                .iter()
                .find(|f| &f.case == case && f.method == *method && &f.column == column)
                .map_or_else(
                    || "–".to_owned(),
                    |f| match (&f.value, &f.warning) {
                        (Ok(ns), None) => report::ns(*ns),
                        (Ok(ns), Some(warning)) => format!("{} (⚠ {warning})", report::ns(*ns)),
                        (Err(err), _) => format!("error: {err:#}"),
                    },
                );
            row.push(cell);
        }
        table.row(row);
    }
    let mut rep = Report::new(
        "Kernel: nanoseconds per packet in the XDP program",
        &format!(
            "Test runs: `BPF_PROG_TEST_RUN` with repeat = {} on the attached program (frames \
             it passes unchanged; checked). One frame per call: the hit's query in {} test \
             runs of repeat = 1 each (every one an `XDP_TX` answer; checked), the median of \
             the kernel's per-run duration, which includes one clock read of its timer \
             (tens of ns on a VM): comparable between columns, a little above the \
             program's own cost. bpf_stats: `run_time_ns / run_cnt` deltas with \
             `kernel.bpf_stats_enabled=1` while kxdpgun sends that query at {} qps for {} s \
             from the client namespace over the veth. Targets: hit ≤ 100 ns, miss ≤ 50 ns, \
             other packets no slower than the baseline.",
            report::count(u64::from(REPEAT)),
            report::count(u64::from(SINGLE_CALLS)),
            report::count(u64::from(KXDPGUN_QPS)),
            KXDPGUN_SECONDS
        ),
    );
    rep.table("", &table);
    let details: Vec<String> = figures
        .iter()
        .filter(|f| !f.detail.is_empty())
        .map(|f| format!("- {} / {}: {}", f.column, f.case, f.detail))
        .collect();
    rep.note(&format!("Per run:\n\n{}", details.join("\n")));
    Ok(rep)
}

/// The frames the program must pass unchanged, from the client to the server's address.
fn test_run_cases((client, server): (Ipv4Addr, Ipv4Addr)) -> Vec<(&'static str, Result<Vec<u8>>)> {
    let query = |name: &str| dns::query_wire(name, hickory_proto::rr::RecordType::A, false);
    vec![
        ("not IP (ARP)", Ok(dns::arp_frame(client, server))),
        (
            "QR=1 (a response to port 53)",
            dns::response_wire(dns::POOL_A).map(|p| dns::udp_frame(client, server, 53, &p)),
        ),
        (
            "other port (pool query to 5353)",
            query(dns::POOL_A).map(|p| dns::udp_frame(client, server, 5353, &p)),
        ),
        (
            "miss (zone name, passed)",
            query("h001.example.test.").map(|p| dns::udp_frame(client, server, 53, &p)),
        ),
    ]
}

/// The hits of [`dns::kernel_cases`] as frames from the client to the server's address.
fn hit_cases((client, server): (Ipv4Addr, Ipv4Addr)) -> Vec<(&'static str, Result<Vec<u8>>)> {
    dns::kernel_cases()
        .into_iter()
        .filter(|(_, line)| line.kind == dns::Kind::Hot)
        .map(|(case, line)| {
            let frame = dns::query_wire(&line.name, line.rtype, line.edns)
                .map(|p| dns::udp_frame(client, server, 53, &p));
            (case, frame)
        })
        .collect()
}

/// The frame's destination MAC set to `mac` (unicast frames only: a broadcast stays one).
fn to_mac(mut frame: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    if frame[0] & 1 == 0 {
        frame[..6].copy_from_slice(&mac);
    }
    frame
}

fn measure(
    binary: &Binary,
    mode: XdpMode,
    column: &str,
    work: &Path,
    figures: &mut Vec<Figure>,
) -> Result<()> {
    let link = Link::new()?;
    // Native XDP on a veth delivers XDP_TX frames only when the peer runs XDP too; kxdpgun
    // brings its own program, so the pass program is only there for the readiness probe.
    let peer = match mode {
        XdpMode::Native => Some(PassProgram::attach(
            &link.client,
            &link.client_if,
            XdpMode::Native,
        )?),
        XdpMode::Generic => None,
    };
    let server = Server::Hotpool {
        binary: binary.clone(),
        xdp: Some(mode),
        rrl: None,
    };
    let running = servers::start(&server, &link, work)?;
    drop(peer);
    let prog = servers::hotpool_prog(&link)?;
    let program = Program::from_id(prog.id)?;

    // The frames arrive on the server's veth (the interface the daemon described), so they
    // go through the acceptance rules as on the wire; the test runs happen in the server's
    // namespace, where that interface index resolves.
    let cases = test_run_cases((link.client_v4, link.server_v4));
    let hits = hit_cases((link.client_v4, link.server_v4));
    let (id, server_if, server_mac) = (prog.id, link.server_if.clone(), link.server_mac);
    type Values = Vec<(&'static str, &'static str, Result<f64>)>;
    let values = link.server.run(move || -> Result<Values> {
        let program = Program::from_id(id)?;
        let ifindex = bpf::ifindex(&server_if)?;
        let mut out = Vec::new();
        let to_server = |frame: Vec<u8>| to_mac(frame, server_mac);
        let mut values: Values = cases
            .into_iter()
            .map(|(case, frame)| {
                let value = frame.map(to_server).and_then(|frame| {
                    let result = program.test_run(&frame, REPEAT, Some(ifindex), &mut out)?;
                    if result.retval != XDP_PASS {
                        bail!("returned {} instead of XDP_PASS", result.retval);
                    }
                    if out != frame {
                        bail!("the frame came out changed");
                    }
                    Ok(f64::from(result.ns_per_run))
                });
                (case, REPEAT_METHOD, value)
            })
            .collect();
        for (case, frame) in hits {
            let value = frame
                .map(to_server)
                .and_then(|frame| single_runs_median(&program, &frame, ifindex, SINGLE_CALLS));
            values.push((case, SINGLE_METHOD, value));
        }
        Ok(values)
    })??;
    for (case, method, value) in values {
        figures.push(Figure {
            case: case.to_owned(),
            method,
            column: column.to_owned(),
            value,
            detail: String::new(),
            warning: None,
        });
    }

    let stats = BpfStatsEnabled::enable()?;
    for (case, line) in dns::kernel_cases() {
        interrupt::check()?;
        let file = load::query_file(
            work,
            &format!("kernel-{}.txt", std::process::id()),
            std::slice::from_ref(&line),
        )?;
        let hits_before = running.hotpool_stats();
        let before = program.run_stats()?;
        let gun = load::kxdpgun(&link, &file, KXDPGUN_SECONDS, KXDPGUN_QPS);
        let after = program.run_stats()?;
        let hits_after = running.hotpool_stats();
        let gun = gun?;
        let runs = after.since(&before);
        let moved = hits_before
            .zip(hits_after)
            .map(|(b, a)| servers::stats_moved(&b, &a));
        let hits = moved.as_deref().map(servers::kernel_answered);
        let warning = hit_warning(line.kind == dns::Kind::Hot, hits, gun.sent);
        let value = runs
            .ns_per_run()
            .ok_or_else(|| anyhow::anyhow!("the program did not run"));
        let detail = format!(
            "{} runs, kxdpgun sent {} and got {} replies ({}); hotpool's counters: {}",
            report::count(runs.run_cnt),
            report::count(gun.sent),
            report::count(gun.received),
            report::percent(gun.received, gun.sent),
            moved.map_or_else(
                || "unreadable (`hotpool stats` failed)".to_owned(),
                |moved| moved
                    .iter()
                    .map(|(name, n)| format!("{name} {}", report::count(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        figures.push(Figure {
            case: case.to_owned(),
            method: STATS_METHOD,
            column: column.to_owned(),
            value,
            detail,
            warning,
        });
        let _ = std::fs::remove_file(&file);
    }
    drop(stats);
    running.stop();
    Ok(())
}

/// `cargo xtask bench rrl`: response rate limiting's cost per hot hit, for each build that
/// has it, interleaved in one daemon per build ([`rrl_interleaved`]).
pub fn run_rrl(binaries: &[Binary], work: &Path) -> Result<Report> {
    load::require(&["kxdpgun"])?;
    let mut builds = Vec::new();
    for binary in binaries.iter().filter(|b| b.can_reload()) {
        interrupt::check()?;
        println!(
            "rrl: {}: RRL off and on, interleaved in one daemon",
            binary.label
        );
        let batches = rrl_interleaved(binary, work)
            .with_context(|| format!("the interleaved RRL measurement of {}", binary.label))?;
        builds.push((binary.label.clone(), batches));
    }
    if builds.is_empty() {
        bail!("no build has [rrl] and `hotpool reload`");
    }
    let mut rep = Report::new(
        "RRL: nanoseconds per hot hit for response rate limiting",
        &format!(
            "Hit A, native XDP, per build: one daemon; its kernel config (the `CONFIG` map) \
             snapshot after a `hotpool reload` with `[rrl] responses_per_second = {}` (every \
             hit takes its bucket, none is limited) and after one without `[rrl]`, then the \
             two snapshots written in turn into the map: {RRL_ROUNDS} rounds of {} test runs \
             of one frame per state (the median of the kernel's duration of each run), and \
             while kxdpgun sends the query at {} qps for {RRL_GUN_SECONDS} s, the state \
             switched every {} ms with bpf_stats (`run_time_ns / run_cnt`) read at each \
             switch. Rounds go off-on, on-off, ... so a drift in the machine's speed falls \
             on both; separate daemons on separate links (the kernel part's columns) differ \
             by more than the cost looked for. Target: at most 20 ns.",
            report::count(u64::from(RRL_RATE)),
            report::count(u64::from(RRL_CHUNK_RUNS)),
            report::count(u64::from(KXDPGUN_QPS)),
            RRL_TOGGLE.as_millis()
        ),
    );
    rep.table("", &rrl_table(&builds));
    let details: Vec<String> = builds
        .iter()
        .map(|(_, b)| format!("- {}", b.detail))
        .collect();
    rep.note(&details.join("\n\n"));
    Ok(rep)
}

/// Values measured in a given RRL state, in the order of [`rrl_order`].
type Chunks = Vec<(bool, f64)>;

/// The chunks of one build's interleaved RRL measurement, per method, and a note.
struct RrlBatches {
    single: Chunks,
    stats: Chunks,
    detail: String,
}

/// The median of `values` (`NaN` for none).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The `q`-quantile of `values` (nearest rank; `NaN` for none).
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n => values[((n - 1) as f64 * q).round() as usize],
    }
}

/// RRL on and off in chunk order: round `r` is off then on for even `r`, on then off for
/// odd ones, so a drift of the machine's speed falls on both alike.
fn rrl_order(rounds: usize) -> Vec<bool> {
    (0..rounds)
        .flat_map(|r| {
            if r % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            }
        })
        .collect()
}

/// Each round's on minus off (chunks taken in pairs, as [`rrl_order`] lays them out).
fn round_differences(chunks: &[(bool, f64)]) -> Vec<f64> {
    chunks
        .chunks_exact(2)
        .filter_map(|pair| match (pair[0], pair[1]) {
            ((false, off), (true, on)) | ((true, on), (false, off)) => Some(on - off),
            _ => None,
        })
        .collect()
}

/// Per build and method: the medians off and on, the median of the rounds' own differences
/// (on minus off within a round) and their quartiles.
fn rrl_table(builds: &[(String, RrlBatches)]) -> Table {
    let mut table = Table::new(&[
        "build",
        "method",
        "rounds",
        "RRL off (median)",
        "RRL on (median)",
        "on − off: median of the rounds' differences",
        "quartiles of the rounds' differences",
    ]);
    let signed = |d: f64| {
        let sign = if d >= 0.0 { "+" } else { "−" };
        format!("{sign}{}", report::ns(d.abs()))
    };
    for (label, build) in builds {
        for (method, chunks) in [
            (RRL_SINGLE_METHOD, &build.single),
            (RRL_STATS_METHOD, &build.stats),
        ] {
            let of = |on: bool| -> Vec<f64> {
                chunks.iter().filter(|c| c.0 == on).map(|c| c.1).collect()
            };
            let diffs = round_differences(chunks);
            table.row(vec![
                label.clone(),
                method.to_owned(),
                diffs.len().to_string(),
                report::ns(median(of(false))),
                report::ns(median(of(true))),
                signed(median(diffs.clone())),
                format!(
                    "{} … {}",
                    signed(quantile(diffs.clone(), 0.25)),
                    signed(quantile(diffs, 0.75))
                ),
            ]);
        }
    }
    table
}

/// The median duration of `runs` test runs of `frame` (a hit) with repeat = 1, each checked
/// to be answered (`XDP_TX`). The median, not the mean: a run that an interrupt or another
/// task's work landed in counts once, not by its length.
fn single_runs_median(program: &Program, frame: &[u8], ifindex: u32, runs: u32) -> Result<f64> {
    let mut out = Vec::new();
    let mut durations = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let result = program.test_run(frame, 1, Some(ifindex), &mut out)?;
        if result.retval != XDP_TX {
            bail!("returned {} instead of XDP_TX", result.retval);
        }
        durations.push(f64::from(result.ns_per_run));
    }
    Ok(median(durations))
}

/// The daemon's kernel config with RRL on and off, as octets.
#[derive(Clone)]
struct ConfigStates {
    on: Vec<u8>,
    off: Vec<u8>,
}

impl ConfigStates {
    fn value(&self, on: bool) -> &[u8] {
        if on { &self.on } else { &self.off }
    }

    fn set(&self, map: &PinnedMap, on: bool) -> Result<()> {
        map.set(0, self.value(on))
    }

    /// The daemon writes its config on start and reload only: that it left ours alone.
    fn check(&self, map: &PinnedMap, on: bool) -> Result<()> {
        if map.get(0)? != self.value(on) {
            bail!("the daemon rewrote its kernel config during the measurement");
        }
        Ok(())
    }
}

/// RRL's cost per hit in one daemon. The daemon's kernel config (`CONFIG`, one value) is
/// snapshot with `[rrl]` and without it (each after a `hotpool reload`, so the bench needs
/// to know nothing of its layout); then the two snapshots are written in turn straight
/// into the map, [`RRL_ROUNDS`] rounds of [`RRL_CHUNK_RUNS`] test runs per state, and, while
/// kxdpgun sends the hit, every [`RRL_TOGGLE`] with bpf_stats read at each switch. Fine
/// interleaving: separate daemons, or batches seconds apart, differ by more than the cost
/// looked for.
fn rrl_interleaved(binary: &Binary, work: &Path) -> Result<RrlBatches> {
    let link = Link::new()?;
    let peer = PassProgram::attach(&link.client, &link.client_if, XdpMode::Native)?;
    let server = Server::Hotpool {
        binary: binary.clone(),
        xdp: Some(XdpMode::Native),
        rrl: None,
    };
    let running = servers::start(&server, &link, work)?;
    drop(peer);
    let prog = servers::hotpool_prog(&link)?;
    let program = Program::from_id(prog.id)?;
    let config_path = running
        .pin
        .as_ref()
        .context("hotpool without a pin directory")?
        .join(CONFIG_MAP);
    let config = PinnedMap::open(&config_path)?;
    let (_, line) = dns::kernel_cases()
        .into_iter()
        .find(|(_, line)| line.kind == dns::Kind::Hot && line.rtype == RecordType::A && !line.edns)
        .context("no plain A hit among the kernel cases")?;
    let frame = to_mac(
        dns::udp_frame(
            link.client_v4,
            link.server_v4,
            53,
            &dns::query_wire(&line.name, line.rtype, line.edns)?,
        ),
        link.server_mac,
    );
    let file = load::query_file(
        work,
        &format!("kernel-rrl-{}.txt", std::process::id()),
        std::slice::from_ref(&line),
    )?;

    // That a reload reaches the kernel: at one answer a second, kxdpgun's queries are
    // limited (dropped or slipped).
    running.reload_rrl(&link, Some(1))?;
    let before = running.hotpool_stats();
    load::kxdpgun(&link, &file, 1, 1000)?;
    let after = running.hotpool_stats();
    let limited = before.zip(after).map(|(b, a)| {
        ["rrl_dropped", "rrl_slipped"]
            .iter()
            .filter_map(|o| servers::stats_delta(&b, &a, o))
            .sum::<u64>()
    });
    if limited == Some(0) {
        bail!("with [rrl] responses_per_second = 1 after a reload, nothing was limited");
    }
    running.reload_rrl(&link, Some(RRL_RATE))?;
    let on_value = config.get(0)?;
    running.reload_rrl(&link, None)?;
    let off_value = config.get(0)?;
    if on_value == off_value {
        bail!("the kernel config is the same with [rrl] and without");
    }
    let states = ConfigStates {
        on: on_value,
        off: off_value,
    };

    let (id, server_if, path) = (prog.id, link.server_if.clone(), config_path.clone());
    let single = {
        let states = states.clone();
        link.server.run(move || -> Result<Chunks> {
            let program = Program::from_id(id)?;
            let map = PinnedMap::open(&path)?;
            let ifindex = bpf::ifindex(&server_if)?;
            let mut chunks = Vec::new();
            for on in rrl_order(RRL_ROUNDS) {
                states.set(&map, on)?;
                chunks.push((
                    on,
                    single_runs_median(&program, &frame, ifindex, RRL_CHUNK_RUNS)?,
                ));
                states.check(&map, on)?;
            }
            states.set(&map, false)?;
            Ok(chunks)
        })??
    };

    let stats_on = BpfStatsEnabled::enable()?;
    let hits_before = running.hotpool_stats();
    let (gun, stats) = std::thread::scope(|scope| -> Result<_> {
        let gun = scope.spawn(|| load::kxdpgun(&link, &file, RRL_GUN_SECONDS, KXDPGUN_QPS));
        // kxdpgun attaches its program and starts sending within a few hundred ms.
        std::thread::sleep(Duration::from_millis(1000));
        let rounds =
            (u64::from(RRL_GUN_SECONDS) * 1000 - 2000) / (2 * RRL_TOGGLE.as_millis() as u64);
        let mut chunks = Vec::new();
        let mut measured = || -> Result<()> {
            for on in rrl_order(rounds as usize) {
                states.set(&config, on)?;
                let before = program.run_stats()?;
                std::thread::sleep(RRL_TOGGLE);
                let runs = program.run_stats()?.since(&before);
                states.check(&config, on)?;
                chunks.push((on, runs.ns_per_run().context("the program did not run")?));
            }
            Ok(())
        };
        let result = measured();
        let _ = states.set(&config, false);
        let gun = gun
            .join()
            .map_err(|_| anyhow::anyhow!("the kxdpgun thread panicked"))?;
        result.map(|()| (gun, chunks))
    })?;
    let hits_after = running.hotpool_stats();
    drop(stats_on);
    let gun = gun?;
    let hits = hits_before
        .zip(hits_after)
        .map(|(b, a)| servers::kernel_answered(&servers::stats_moved(&b, &a)));
    if let Some(warning) = hit_warning(true, hits, gun.sent) {
        bail!("under kxdpgun: {warning} of {} sent", gun.sent);
    }
    let _ = std::fs::remove_file(&file);
    running.stop();
    let detail = format!(
        "{}: a reload to 1 answer/s limited {} of kxdpgun's queries; kxdpgun sent {} and \
         got {} replies",
        binary.label,
        limited.map_or_else(
            || "unknown (`hotpool stats` failed)".to_owned(),
            report::count
        ),
        report::count(gun.sent),
        report::count(gun.received)
    );
    Ok(RrlBatches {
        single,
        stats,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_when_hits_were_not_hits() {
        assert_eq!(hit_warning(true, Some(150_000), 150_010), None);
        assert_eq!(
            hit_warning(true, Some(30_002), 150_010).as_deref(),
            Some("20.0 % hits")
        );
        assert_eq!(hit_warning(false, Some(0), 150_010), None);
        assert!(hit_warning(false, Some(150_010), 150_010).is_some());
        assert_eq!(hit_warning(true, None, 150_010), None);
        assert!(hit_warning(true, Some(0), 0).is_some());
    }

    #[test]
    fn rrl_rounds_alternate_their_order() {
        assert_eq!(rrl_order(3), [false, true, true, false, false, true]);
    }

    #[test]
    fn rrl_rounds_pair_on_and_off() {
        // Off-on, on-off, off-on: the rounds' differences +10, +30, +5.
        let chunks: Vec<(bool, f64)> = rrl_order(3)
            .into_iter()
            .zip([100.0, 110.0, 130.0, 100.0, 90.0, 95.0])
            .collect();
        assert_eq!(round_differences(&chunks), [10.0, 30.0, 5.0]);
        let build = RrlBatches {
            single: chunks.clone(),
            stats: chunks,
            detail: String::new(),
        };
        let text = rrl_table(&[("current".to_owned(), build)]).render();
        let single = text
            .lines()
            .find(|l| l.contains(RRL_SINGLE_METHOD))
            .expect("a row per method");
        // Medians 100 and 110; the differences' median +10, quartiles (nearest rank) +10
        // and +30.
        assert_eq!(
            single,
            format!(
                "| current | {RRL_SINGLE_METHOD} | 3 | 100 ns | 110 ns | +10 ns | +10 ns … +30 ns |"
            )
        );
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(quantile(vec![4.0, 1.0, 2.0, 3.0, 5.0], 0.25), 2.0);
    }
}
