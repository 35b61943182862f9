//! The status document (`GET /api/status`, `hotpool status --json`) and its table
//! (`hotpool status`): the daemon, then per pool the answer, why it is the answer, since
//! when, and each endpoint's state, latency, probe counts and last error.
//!
//! Figures are rounded for people and machines alike (latencies to the microsecond, as
//! milliseconds with three decimals); times are RFC 3339 in UTC, and the table shows them
//! relative to the daemon's `now`, so it reads the same whatever the client's clock says.

use std::{
    collections::HashMap,
    fmt::Write as _,
    str::FromStr as _,
    time::{Duration, SystemTime},
};

use hickory_proto::rr::Name;

use serde::{Deserialize, Serialize};

use crate::{
    api::{state::ApiState, version},
    datapath::{ebpf::mode_name, heartbeat::Staleness, hot::HotMaps},
    steering::{
        events::timestamp,
        steer::{EndpointStatus, PoolStatus},
    },
};

/// Everything `hotpool status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub daemon: DaemonDoc,
    pub pools: Vec<PoolDoc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonDoc {
    pub version: String,
    pub revision: String,
    /// The daemon's clock when it answered.
    pub now: String,
    pub started: String,
    pub uptime_s: u64,
    /// Interfaces the XDP program is attached to; empty: everything is answered by the
    /// daemon.
    pub xdp: Vec<XdpDoc>,
    /// Age of the daemon's heartbeat in the kernel, seconds: how stale the kernel's
    /// answers could be. `null` while the daemon writes no heartbeat.
    pub heartbeat_age_s: Option<f64>,
    /// `[xdp] stale` in force, seconds (`null`: never stale, or no kernel path).
    #[serde(default)]
    pub stale_after_s: Option<f64>,
    /// `[xdp] on_stale` in force: serve or pass (`null` without a kernel path).
    #[serde(default)]
    pub on_stale: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpDoc {
    pub interface: String,
    /// native, generic, offload.
    pub mode: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolDoc {
    pub pool: String,
    /// A, AAAA or CNAME.
    pub rtype: String,
    pub policy: String,
    /// The answer in force: `192.0.2.1, 192.0.2.2`, `SERVFAIL`, ...
    pub answer: String,
    /// Why: the policy's reason.
    pub reason: String,
    /// When the answer was published.
    pub since: String,
    pub all_down: bool,
    /// Times the answer changed since start.
    pub changes: u64,
    /// A `geo` pool's regions, each with its own policy, answer and reason (the pool's
    /// `answer`, `reason`, ... are its `default` region's); absent for other pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionDoc>,
    pub endpoints: Vec<EndpointDoc>,
    /// Queries the kernel answered for the pool since it got its kernel index (`null`:
    /// not in the kernel).
    #[serde(default)]
    pub kernel_answers: Option<u64>,
}

/// One region of a `geo` pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDoc {
    pub region: String,
    pub policy: String,
    /// What `fastest` ranks by: probes, rum, blend.
    pub latency: String,
    /// The region's endpoints, in its order.
    pub endpoints: Vec<String>,
    pub answer: String,
    pub reason: String,
    pub since: String,
    pub all_down: bool,
    pub changes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointDoc {
    pub endpoint: String,
    /// Effective state: probes and pins.
    pub up: bool,
    /// Part of the answer in force.
    pub answered: bool,
    /// The operator's pin: follow, up, down.
    pub admin: String,
    /// What the probes say: unknown, up, down; none without probes.
    pub probe: String,
    /// When the effective state last changed; `null`: not since start.
    pub since: Option<String>,
    /// Smoothed latency (median of the last successful probes), ms.
    pub latency_ms: Option<f64>,
    /// The last successful probes' latencies, ms, oldest first.
    pub samples_ms: Vec<f64>,
    /// What the last probe said.
    pub last_detail: String,
    /// What the last failed probe said, and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Probe results since start, and the failed ones among them.
    pub probes: u64,
    pub probe_failures: u64,
    /// Probes that failed on this host (no verdict), and runs that started late.
    #[serde(default)]
    pub probe_local_failures: u64,
    #[serde(default)]
    pub probes_late: u64,
}

/// Rounds to 3 decimals (milliseconds to the microsecond).
pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

impl StatusDoc {
    /// The document for the daemon behind `state`, as of `now`.
    pub fn collect(state: &ApiState, now: SystemTime) -> Self {
        let pools = state
            .steering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status();
        let (xdp, kernel) = state
            .datapath
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|dp| {
                let xdp = dp
                    .attached()
                    .map(|(interface, mode)| XdpDoc {
                        interface: interface.to_string(),
                        mode: mode_name(mode).to_string(),
                    })
                    .collect();
                (xdp, Some(KernelView::collect(&dp.maps)))
            })
            .unwrap_or_default();
        let kernel = kernel.unwrap_or_default();
        let started = state.daemon.started;
        Self {
            daemon: DaemonDoc {
                version: version::VERSION.to_string(),
                revision: version::GIT_REVISION.to_string(),
                now: timestamp(now),
                started: timestamp(started),
                uptime_s: now.duration_since(started).unwrap_or_default().as_secs(),
                xdp,
                heartbeat_age_s: kernel.heartbeat_age.map(|a| round3(a.as_secs_f64())),
                stale_after_s: kernel
                    .staleness
                    .and_then(|s| s.after)
                    .map(|d| d.as_secs_f64()),
                on_stale: kernel.staleness.map(|s| s.on_stale.to_string()),
            },
            pools: pools
                .iter()
                .map(|p| PoolDoc {
                    kernel_answers: kernel.pool_answers(&p.pool),
                    ..PoolDoc::from(p)
                })
                .collect(),
        }
    }
}

/// The kernel's side of the status, read under the datapath's lock.
#[derive(Default)]
struct KernelView {
    heartbeat_age: Option<Duration>,
    staleness: Option<Staleness>,
    /// Answers per pool, by lower-case name.
    answers: HashMap<Name, u64>,
}

impl KernelView {
    fn collect(maps: &HotMaps) -> Self {
        Self {
            heartbeat_age: maps.heartbeat_age().ok().flatten(),
            staleness: Some(maps.staleness()),
            answers: maps.pool_answers_all().into_iter().collect(),
        }
    }

    fn pool_answers(&self, pool: &str) -> Option<u64> {
        let name = Name::from_str(pool).ok()?.to_lowercase();
        self.answers.get(&name).copied()
    }
}

impl From<&PoolStatus> for PoolDoc {
    fn from(p: &PoolStatus) -> Self {
        Self {
            pool: p.pool.clone(),
            rtype: p.rtype.clone(),
            policy: p.policy.clone(),
            answer: p.answer.clone(),
            reason: p.reason.clone(),
            since: timestamp(p.answer_since),
            all_down: p.all_down,
            changes: p.changes,
            regions: p
                .regions
                .iter()
                .map(|r| RegionDoc {
                    region: r.region.clone(),
                    policy: r.policy.clone(),
                    latency: r.latency.clone(),
                    endpoints: r.endpoints.clone(),
                    answer: r.answer.clone(),
                    reason: r.reason.clone(),
                    since: timestamp(r.answer_since),
                    all_down: r.all_down,
                    changes: r.changes,
                })
                .collect(),
            endpoints: p.endpoints.iter().map(EndpointDoc::from).collect(),
            kernel_answers: None,
        }
    }
}

impl From<&EndpointStatus> for EndpointDoc {
    fn from(e: &EndpointStatus) -> Self {
        Self {
            endpoint: e.endpoint.clone(),
            up: e.up,
            answered: e.answered,
            admin: e.admin.clone(),
            probe: e.probe.clone(),
            since: e.since.map(timestamp),
            latency_ms: e.latency_ms.map(round3),
            samples_ms: e.samples_ms.iter().copied().map(round3).collect(),
            last_detail: e.last_detail.clone(),
            last_error: e.last_failure.as_ref().map(|(_, what)| what.clone()),
            last_error_at: e.last_failure.as_ref().map(|(at, _)| timestamp(*at)),
            probes: e.probes.attempts,
            probe_failures: e.probes.failures,
            probe_local_failures: e.probes.local_failures,
            probes_late: e.probes.late,
        }
    }
}

/// `3m 12s`, `2h 5m`, `4d 1h`, `0s`: the two largest units.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (d_, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d_, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d_}d {h}h"),
    }
}

/// `0.38 ms`, `16.2 ms`, `162 ms`.
pub fn short_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

impl StatusDoc {
    /// The table `hotpool status` prints.
    pub fn table(&self) -> String {
        let now = humantime::parse_rfc3339(&self.daemon.now).ok();
        // `2026-11-22T04:09:02Z (3m 12s ago)`; the time alone if a clock is unreadable.
        let when = |t: &str| {
            let at = humantime::parse_rfc3339(t).ok();
            let shown = at
                .map(|at| humantime::format_rfc3339_seconds(at).to_string())
                .unwrap_or_else(|| t.to_string());
            match (now, at) {
                (Some(now), Some(at)) => {
                    let ago = now.duration_since(at).unwrap_or_default();
                    format!("{shown} ({} ago)", short_duration(ago))
                }
                _ => shown,
            }
        };
        let ago = |t: &str| match (now, humantime::parse_rfc3339(t).ok()) {
            (Some(now), Some(at)) => {
                format!(
                    "{} ago",
                    short_duration(now.duration_since(at).unwrap_or_default())
                )
            }
            _ => t.to_string(),
        };

        let d = &self.daemon;
        let mut out = String::new();
        let xdp = if d.xdp.is_empty() {
            "off (the daemon answers everything)".to_string()
        } else {
            d.xdp
                .iter()
                .map(|x| format!("{} ({})", x.interface, x.mode))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let heartbeat = staleness(d);
        let _ = writeln!(
            out,
            "hotpool {} (git {}), up {}; XDP: {xdp}; staleness: {heartbeat}",
            d.version,
            d.revision,
            short_duration(Duration::from_secs(d.uptime_s))
        );
        if self.pools.is_empty() {
            out.push_str("\nno pools configured\n");
        }
        for p in &self.pools {
            let _ = writeln!(out, "\n{} {} ({})", p.pool, p.rtype, p.policy);
            let all_down = |down: bool| {
                if down { "  [all endpoints down]" } else { "" }
            };
            let changes = |n: u64| match n {
                0 => "no change since start".to_string(),
                1 => "1 change since start".to_string(),
                n => format!("{n} changes since start"),
            };
            if p.regions.is_empty() {
                let _ = writeln!(out, "  answer  {}{}", p.answer, all_down(p.all_down));
                let _ = writeln!(out, "  reason  {}", p.reason);
                let _ = writeln!(out, "  since   {}, {}", when(&p.since), changes(p.changes));
            }
            for r in &p.regions {
                let _ = writeln!(
                    out,
                    "  region {} ({}, latency from {}; {})",
                    r.region,
                    r.policy,
                    r.latency,
                    r.endpoints.join(", ")
                );
                let _ = writeln!(out, "    answer  {}{}", r.answer, all_down(r.all_down));
                let _ = writeln!(out, "    reason  {}", r.reason);
                let _ = writeln!(
                    out,
                    "    since   {}, {}",
                    when(&r.since),
                    changes(r.changes)
                );
            }
            if let Some(n) = p.kernel_answers {
                let _ = writeln!(out, "  kernel  {n} answered");
            }
            let mut rows = vec![
                [
                    "endpoint",
                    "answered",
                    "state",
                    "pin",
                    "probe",
                    "latency",
                    "probes",
                    "since",
                    "last error",
                ]
                .map(String::from),
            ];
            for e in &p.endpoints {
                let state = if e.up { "up" } else { "down" };
                let notes: Vec<String> = [
                    (e.probe_failures, "failed"),
                    (e.probe_local_failures, "failed here"),
                    (e.probes_late, "late"),
                ]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
                let failed = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join(", "))
                };
                let last_error = match (&e.last_error, &e.last_error_at) {
                    (Some(what), Some(at)) => format!("{what} ({})", ago(at)),
                    (Some(what), None) => what.clone(),
                    _ => "-".to_string(),
                };
                rows.push([
                    e.endpoint.clone(),
                    if e.answered { "yes" } else { "no" }.to_string(),
                    state.to_string(),
                    e.admin.clone(),
                    e.probe.clone(),
                    e.latency_ms.map_or("-".to_string(), short_ms),
                    if e.probe == "none" {
                        "-".to_string()
                    } else {
                        format!("{}{failed}", e.probes)
                    },
                    e.since.as_deref().map_or("start".to_string(), ago),
                    last_error,
                ]);
            }
            out.push_str(&columns(&rows, "  "));
        }
        out
    }
}

/// `2s old (stale after 30s: serve)`, `2s old (never stale)`, `n/a`.
fn staleness(d: &DaemonDoc) -> String {
    let Some(age) = d.heartbeat_age_s else {
        return "n/a".to_string();
    };
    let age = short_duration(Duration::from_secs_f64(age.max(0.0)));
    match (d.stale_after_s, &d.on_stale) {
        (Some(after), Some(on_stale)) => {
            let after = short_duration(Duration::from_secs_f64(after.max(0.0)));
            let past = if d.heartbeat_age_s > d.stale_after_s {
                "STALE, "
            } else {
                ""
            };
            format!("{age} old ({past}stale after {after}: {on_stale})")
        }
        (None, Some(_)) => format!("{age} old (never stale)"),
        _ => format!("{age} old"),
    }
}

/// Left-aligned columns two spaces apart, each row indented by `indent`; no trailing
/// spaces.
fn columns<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
