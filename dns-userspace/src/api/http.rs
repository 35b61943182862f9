//! The daemon's HTTP endpoint (bind it to loopback: it is unauthenticated):
//!
//! * `GET /metrics`: Prometheus text exposition of the XDP counters, whether XDP is
//!   attached, and every pool's and endpoint's steering state;
//! * `GET /api/status`: the same steering state as JSON;
//! * `POST /api/pools/<pool>/endpoints/<endpoint>/<up|down|follow>`: pin an endpoint up or
//!   down at runtime, or make it follow its probes again (Constellix `always_on`,
//!   `always_off`, `follow_sonar`). Pins last until the daemon restarts; put lasting ones
//!   in the config (`state = ...`).

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::watch,
};
use tracing::debug;

use crate::{
    datapath::ebpf::Datapath,
    steering::{
        health::parse_admin,
        probe::{LocalReason, ProbeTotals, SchedulerStats},
        steer::{PoolStatus, Steering},
    },
};

/// Renders the steering part of the metrics page.
pub fn render_steering(status: &[PoolStatus]) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP hotpool_endpoint_up Whether an endpoint is up (probes and operator pins).\n\
         # TYPE hotpool_endpoint_up gauge\n",
    );
    for p in status {
        for e in &p.endpoints {
            let _ = writeln!(
                out,
                "hotpool_endpoint_up{{pool=\"{}\",endpoint=\"{}\"}} {}",
                p.pool, e.endpoint, e.up as u8
            );
        }
    }
    out.push_str(
        "# HELP hotpool_endpoint_latency_seconds Smoothed probe latency (median of the last 5 \
         successful probes).\n# TYPE hotpool_endpoint_latency_seconds gauge\n",
    );
    for p in status {
        for e in &p.endpoints {
            if let Some(ms) = e.latency_ms {
                let _ = writeln!(
                    out,
                    "hotpool_endpoint_latency_seconds{{pool=\"{}\",endpoint=\"{}\"}} {}",
                    p.pool,
                    e.endpoint,
                    ms / 1e3
                );
            }
        }
    }
    out.push_str(
        "# HELP hotpool_pool_all_down Whether no endpoint of the pool is up (the all_down \
         setting answers).\n# TYPE hotpool_pool_all_down gauge\n",
    );
    for p in status {
        let _ = writeln!(
            out,
            "hotpool_pool_all_down{{pool=\"{}\"}} {}",
            p.pool, p.all_down as u8
        );
    }
    out.push_str(
        "# HELP hotpool_pool_answer_changes_total Times the pool's answer was rewritten.\n\
         # TYPE hotpool_pool_answer_changes_total counter\n",
    );
    for p in status {
        let _ = writeln!(
            out,
            "hotpool_pool_answer_changes_total{{pool=\"{}\"}} {}",
            p.pool, p.changes
        );
    }
    out
}

/// Renders the probe accounting: per endpoint, runs by result and late runs; in total
/// (removed endpoints included) the same, local failures by reason and the latency
/// histogram (per endpoint it would be 14 series each: 560 000 at 40 000 endpoints; each
/// endpoint's histogram is in `/api/status`); and the scheduler's figures.
pub fn render_probes(
    status: &[PoolStatus],
    totals: &ProbeTotals,
    scheduler: Option<&SchedulerStats>,
) -> String {
    let mut out = String::new();
    let probed = || {
        status.iter().flat_map(|p| {
            p.endpoints
                .iter()
                .filter_map(move |e| e.probes.as_ref().map(|c| (p.pool.as_str(), e, c)))
        })
    };
    family(
        &mut out,
        "hotpool_probe_attempts_total",
        "counter",
        "Probe runs that finished, per endpoint.",
    );
    for (pool, e, c) in probed() {
        let _ = writeln!(
            out,
            "hotpool_probe_attempts_total{{pool=\"{pool}\",endpoint=\"{}\"}} {}",
            e.endpoint, c.attempts
        );
    }
    family(
        &mut out,
        "hotpool_probe_successes_total",
        "counter",
        "Successful probes, per endpoint.",
    );
    for (pool, e, c) in probed() {
        let _ = writeln!(
            out,
            "hotpool_probe_successes_total{{pool=\"{pool}\",endpoint=\"{}\"}} {}",
            e.endpoint, c.successes
        );
    }
    family(
        &mut out,
        "hotpool_probe_failures_total",
        "counter",
        "Failed probes, per endpoint, by kind: endpoint (a verdict, counted against it) or \
         local (a failure on this host, not a verdict).",
    );
    for (pool, e, c) in probed() {
        for (kind, n) in [("endpoint", c.failures), ("local", c.local_failures)] {
            let _ = writeln!(
                out,
                "hotpool_probe_failures_total{{pool=\"{pool}\",endpoint=\"{}\",kind=\"{kind}\"}} {n}",
                e.endpoint
            );
        }
    }
    family(
        &mut out,
        "hotpool_probe_late_total",
        "counter",
        "Probe runs that started late (more than a tenth of the interval, at least 50 ms, \
         after they were due), per endpoint.",
    );
    for (pool, e, c) in probed() {
        let _ = writeln!(
            out,
            "hotpool_probe_late_total{{pool=\"{pool}\",endpoint=\"{}\"}} {}",
            e.endpoint, c.late
        );
    }
    family(
        &mut out,
        "hotpool_probes_latency_seconds",
        "histogram",
        "Latency of successful probes of every endpoint (each endpoint's own histogram is in \
         /api/status).",
    );
    for (bound, n) in totals.latency.cumulative() {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            bound.to_string()
        };
        let _ = writeln!(
            out,
            "hotpool_probes_latency_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "hotpool_probes_latency_seconds_sum {}\nhotpool_probes_latency_seconds_count {}",
        totals.latency.sum_seconds,
        totals.latency.count()
    );
    family(
        &mut out,
        "hotpool_probes_total",
        "counter",
        "Probe runs of every endpoint since start-up (removed endpoints included), by result.",
    );
    let _ = writeln!(
        out,
        "hotpool_probes_total{{result=\"success\"}} {}\n\
         hotpool_probes_total{{result=\"failure\"}} {}\n\
         hotpool_probes_total{{result=\"local-failure\"}} {}",
        totals.successes,
        totals.failures,
        totals.local_failures_total()
    );
    family(
        &mut out,
        "hotpool_probes_late_total",
        "counter",
        "Probe runs of every endpoint that started late.",
    );
    let _ = writeln!(out, "hotpool_probes_late_total {}", totals.late);
    family(
        &mut out,
        "hotpool_probes_local_failures_total",
        "counter",
        "Probes that failed on this host (not verdicts), by reason.",
    );
    for (reason, n) in LocalReason::ALL.iter().zip(totals.local_failures) {
        let _ = writeln!(
            out,
            "hotpool_probes_local_failures_total{{reason=\"{}\"}} {n}",
            reason.label()
        );
    }
    if let Some(s) = scheduler {
        for (name, help, value) in [
            ("hotpool_probe_jobs", "Probed endpoints.", s.jobs),
            (
                "hotpool_probes_in_flight",
                "Probes running now.",
                s.in_flight,
            ),
            (
                "hotpool_probes_in_flight_limit",
                "Most probes in flight at once (the load's need, under [probes] \
                 max_concurrent and the descriptors set aside for probes).",
                s.limit,
            ),
            (
                "hotpool_probes_needed",
                "Probes in flight the load needs when every probe runs to its timeout, \
                 with headroom.",
                s.wanted,
            ),
            (
                "hotpool_probes_waiting",
                "Probes due but waiting for a slot.",
                s.waiting,
            ),
        ] {
            family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    out
}

/// A metric family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// Renders the XDP part of the metrics page.
pub fn render(datapath: Option<&Datapath>) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP hotpool_xdp_attached Whether the XDP fast path is attached to an interface.\n\
         # TYPE hotpool_xdp_attached gauge\n",
    );
    let mut attached = 0;
    if let Some(dp) = datapath {
        for (iface, mode) in dp.attached() {
            attached += 1;
            let mode = match mode {
                aya::programs::XdpMode::Driver => "native",
                aya::programs::XdpMode::Skb => "generic",
                aya::programs::XdpMode::Hardware => "offload",
                aya::programs::XdpMode::Default => "default",
            };
            let _ = writeln!(
                out,
                "hotpool_xdp_attached{{interface=\"{iface}\",mode=\"{mode}\"}} 1"
            );
        }
    }
    if attached == 0 {
        out.push_str("hotpool_xdp_attached 0\n");
    }
    if let Some(Ok(stats)) = datapath.map(|dp| dp.maps.stats()) {
        out.push_str(
            "# HELP hotpool_xdp_packets_total Packets seen by the XDP program, by outcome \
             (hit = answered in the kernel; the others were passed to the daemon).\n\
             # TYPE hotpool_xdp_packets_total counter\n",
        );
        for (o, n) in stats {
            let _ = writeln!(
                out,
                "hotpool_xdp_packets_total{{outcome=\"{}\"}} {n}",
                o.name()
            );
        }
    }
    out
}

/// Answers one request: (status line, content type, body).
pub fn handle(
    method: &str,
    path: &str,
    datapath: &Mutex<Option<Datapath>>,
    steering: Option<&Mutex<Steering>>,
) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; version=0.0.4";
    const JSON: &str = "application/json";
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", ["metrics"] | [""]) => {
            let mut body = {
                let dp = datapath.lock().unwrap_or_else(|p| p.into_inner());
                render(dp.as_ref())
            };
            if let Some(s) = steering {
                let (status, totals, scheduler) = {
                    let s = s.lock().unwrap_or_else(|p| p.into_inner());
                    (s.status(), s.probe_totals().clone(), s.probe_stats())
                };
                body.push_str(&render_steering(&status));
                body.push_str(&render_probes(&status, &totals, scheduler.as_ref()));
            }
            ("200 OK", TEXT, body)
        }
        ("GET", ["api", "status"]) => match steering {
            Some(s) => {
                let status = s.lock().unwrap_or_else(|p| p.into_inner()).status();
                let body = serde_json::to_string_pretty(&status).unwrap_or_default();
                ("200 OK", JSON, body + "\n")
            }
            None => (
                "404 Not Found",
                JSON,
                "{\"error\":\"no steering\"}\n".into(),
            ),
        },
        ("POST", ["api", "pools", pool, "endpoints", endpoint, state]) => {
            let Some(s) = steering else {
                return (
                    "404 Not Found",
                    JSON,
                    "{\"error\":\"no steering\"}\n".into(),
                );
            };
            let error = |status, e: &dyn std::error::Error| {
                let body = serde_json::json!({ "error": e.to_string() });
                (status, JSON, format!("{body}\n"))
            };
            let state = match parse_admin(state) {
                Ok(state) => state,
                Err(e) => return error("400 Bad Request", &e),
            };
            let result = s
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_admin(pool, endpoint, state);
            match result {
                Ok(msg) => (
                    "200 OK",
                    JSON,
                    format!("{}\n", serde_json::json!({ "ok": msg })),
                ),
                Err(e) if e.is_not_found() => error("404 Not Found", &e),
                Err(e) => error("400 Bad Request", &e),
            }
        }
        _ => (
            "404 Not Found",
            TEXT,
            "not found; try GET /metrics, GET /api/status or \
             POST /api/pools/<pool>/endpoints/<endpoint>/<up|down|follow>\n"
                .into(),
        ),
    }
}

/// Serves the endpoints above until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    datapath: Arc<Mutex<Option<Datapath>>>,
    steering: Option<Arc<Mutex<Steering>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut conn, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let datapath = datapath.clone();
        let steering = steering.clone();
        tokio::spawn(async move {
            // The request head, however it is split into segments (at most 8 KiB, 5 s).
            let mut buf = Vec::with_capacity(1024);
            let read_head = async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            };
            match tokio::time::timeout(std::time::Duration::from_secs(5), read_head).await {
                Ok(true) => {}
                _ => return,
            }
            let req = String::from_utf8_lossy(&buf);
            let mut words = req.lines().next().unwrap_or_default().split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            let (status, content_type, body) = handle(method, path, &datapath, steering.as_deref());
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = conn.write_all(resp.as_bytes()).await {
                debug!(%peer, error = %e, "metrics write failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dns_common::Outcome;

    use super::*;
    use crate::{
        config::Config,
        datapath::pools::PoolTable,
        steering::{events::EventSink, pool::PoolSettings},
    };

    #[test]
    fn pins_of_unknown_pools_and_endpoints_are_404_and_bad_requests_400() {
        let source = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/hotpool.toml"
        ));
        let cfg = Config::parse(
            "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
             [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n\
             endpoints = [{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }]\n",
            source,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let table = Arc::new(PoolTable::new(
            cfg.pools.iter().map(PoolSettings::initial_answer),
        ));
        let events = EventSink::new(None).unwrap();
        let steering = Mutex::new(Steering::new(
            &cfg.pools,
            table,
            Arc::new(Mutex::new(None)),
            events,
        ));
        let datapath = Mutex::new(None);
        let post = |path: &str| {
            let (status, _, body) = handle("POST", path, &datapath, Some(&steering));
            (status, body)
        };
        let (status, body) = post("/api/pools/www.example.test/endpoints/192.0.2.1/down");
        assert_eq!(status, "200 OK", "{body}");
        let (status, body) = post("/api/pools/nope.example.test/endpoints/192.0.2.1/down");
        assert_eq!(status, "404 Not Found", "{body}");
        assert!(body.contains("no pool nope.example.test"), "{body}");
        let (status, body) = post("/api/pools/www.example.test/endpoints/192.0.2.9/down");
        assert_eq!(status, "404 Not Found", "{body}");
        assert!(body.contains("has no endpoint 192.0.2.9"), "{body}");
        let (status, body) = post("/api/pools/www.example.test/endpoints/192.0.2.1/sideways");
        assert_eq!(status, "400 Bad Request", "{body}");
        assert!(body.contains("unknown endpoint state"), "{body}");
        let (status, body) = post("/api/pools/a..b/endpoints/192.0.2.1/up");
        assert_eq!(status, "400 Bad Request", "{body}");
        assert!(body.contains("empty label"), "{body}");
    }

    #[test]
    fn without_xdp_only_the_attached_gauge_is_rendered() {
        let page = render(None);
        assert!(page.contains("# TYPE hotpool_xdp_attached gauge"));
        assert!(page.contains("\nhotpool_xdp_attached 0\n"));
        assert!(!page.contains("hotpool_xdp_packets_total"));
    }

    #[test]
    fn probe_counters_are_rendered_per_endpoint_and_in_total() {
        use std::time::Duration;

        use crate::steering::{
            probe::{ProbeCounters, ProbeTotals, SchedulerStats},
            steer::EndpointStatus,
        };
        let mut counters = ProbeCounters {
            attempts: 7,
            successes: 4,
            failures: 2,
            local_failures: 1,
            late: 3,
            ..ProbeCounters::default()
        };
        counters.latency.record(Duration::from_millis(3));
        let endpoint = |name: &str, probes| EndpointStatus {
            endpoint: name.into(),
            up: true,
            admin: "follow".into(),
            probe: "up".into(),
            latency_ms: None,
            samples_ms: Vec::new(),
            last_detail: String::new(),
            probes,
        };
        let status = vec![PoolStatus {
            pool: "www.example.test.".into(),
            policy: "fastest".into(),
            answer: "192.0.2.1".into(),
            all_down: false,
            changes: 0,
            endpoints: vec![
                endpoint("192.0.2.1", Some(counters.clone())),
                endpoint("192.0.2.2", None),
            ],
        }];
        let mut totals = ProbeTotals {
            attempts: 7,
            successes: 4,
            failures: 2,
            late: 3,
            ..ProbeTotals::default()
        };
        totals.local_failures[0] = 1;
        totals.latency = counters.latency.clone();
        let scheduler = SchedulerStats {
            jobs: 1,
            in_flight: 1,
            limit: 17,
            wanted: 17,
            ..SchedulerStats::default()
        };
        let page = render_probes(&status, &totals, Some(&scheduler));
        let labels = "pool=\"www.example.test.\",endpoint=\"192.0.2.1\"";
        for line in [
            format!("hotpool_probe_attempts_total{{{labels}}} 7"),
            format!("hotpool_probe_successes_total{{{labels}}} 4"),
            format!("hotpool_probe_failures_total{{{labels},kind=\"endpoint\"}} 2"),
            format!("hotpool_probe_failures_total{{{labels},kind=\"local\"}} 1"),
            format!("hotpool_probe_late_total{{{labels}}} 3"),
            "hotpool_probes_total{result=\"local-failure\"} 1".into(),
            "hotpool_probes_late_total 3".into(),
            "hotpool_probes_local_failures_total{reason=\"descriptors\"} 1".into(),
            "hotpool_probes_latency_seconds_bucket{le=\"0.0025\"} 0".into(),
            "hotpool_probes_latency_seconds_bucket{le=\"0.005\"} 1".into(),
            "hotpool_probes_latency_seconds_bucket{le=\"+Inf\"} 1".into(),
            "hotpool_probes_latency_seconds_count 1".into(),
            "hotpool_probes_in_flight_limit 17".into(),
        ] {
            assert!(
                page.contains(&format!("\n{line}\n")),
                "{line} missing:\n{page}"
            );
        }
        // An endpoint without probes has no probe series.
        assert!(!page.contains("192.0.2.2"), "{page}");
    }

    #[test]
    fn every_outcome_has_a_distinct_label() {
        let names: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
