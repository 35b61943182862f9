//! The daemon's HTTP endpoint (bind it to loopback: it is unauthenticated):
//!
//! * `GET /metrics`: Prometheus text exposition of the XDP counters, whether XDP is
//!   attached, every pool's and endpoint's steering state, and the DNS server's counters
//!   ([`render_server`]);
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
    dns::stats::{ServerStats, StatsSnapshot},
    steering::{
        health::parse_admin,
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

/// Renders the DNS server's part of the metrics page: responses by RCODE, query type and
/// transport, answers per pool, rate-limited answers, rejected queries, TCP connections.
pub fn render_server(s: &StatsSnapshot) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP hotpool_daemon_responses_total Responses the daemon sent, by RCODE, query type \
         and transport (the kernel's answers are hotpool_xdp_packets_total{outcome=\"hit\"}).\n\
         # TYPE hotpool_daemon_responses_total counter\n",
    );
    for (transport, rcode, qtype, n) in &s.responses {
        let _ = writeln!(
            out,
            "hotpool_daemon_responses_total{{rcode=\"{rcode}\",qtype=\"{qtype}\",transport=\"{transport}\"}} {n}"
        );
    }
    out.push_str(
        "# HELP hotpool_daemon_answers_total Answers the daemon sent with a pool's records.\n\
         # TYPE hotpool_daemon_answers_total counter\n",
    );
    for (pool, n) in &s.pool_answers {
        let _ = writeln!(out, "hotpool_daemon_answers_total{{pool=\"{pool}\"}} {n}");
    }
    out.push_str(
        "# HELP hotpool_rrl_total UDP answers over the rate limit, by action (limited = \
         slipped + dropped) and kind of answer.\n# TYPE hotpool_rrl_total counter\n",
    );
    for (action, reason, n) in &s.rrl {
        let _ = writeln!(
            out,
            "hotpool_rrl_total{{action=\"{action}\",reason=\"{reason}\"}} {n}"
        );
    }
    out.push_str(
        "# HELP hotpool_rejected_total UDP queries not answered under the acceptance rules, \
         by reason.\n# TYPE hotpool_rejected_total counter\n",
    );
    for (reason, n) in &s.rejected {
        let _ = writeln!(out, "hotpool_rejected_total{{reason=\"{reason}\"}} {n}");
    }
    out.push_str(
        "# HELP hotpool_daemon_tcp_connections_total TCP connections by what happened to them.\n\
         # TYPE hotpool_daemon_tcp_connections_total counter\n",
    );
    for (event, n) in &s.tcp {
        let _ = writeln!(
            out,
            "hotpool_daemon_tcp_connections_total{{event=\"{event}\"}} {n}"
        );
    }
    out
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
    server: Option<&ServerStats>,
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
                let status = s.lock().unwrap_or_else(|p| p.into_inner()).status();
                body.push_str(&render_steering(&status));
            }
            if let Some(server) = server {
                body.push_str(&render_server(&server.snapshot()));
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
    server: Option<Arc<ServerStats>>,
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
        let server = server.clone();
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
            let (status, content_type, body) = handle(
                method,
                path,
                &datapath,
                steering.as_deref(),
                server.as_deref(),
            );
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
            let (status, _, body) = handle("POST", path, &datapath, Some(&steering), None);
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
    fn the_server_counters_are_rendered_with_their_labels() {
        use hickory_proto::{
            op::ResponseCode,
            rr::{LowerName, Name, RecordType},
        };

        use crate::dns::{
            authority::ResponseKind,
            request::Transport,
            stats::{Counters, RrlAction, TcpEvent, qtype_slot, rcode_slot},
        };

        let stats = ServerStats::default();
        let udp = Arc::new(Counters::new(Transport::Udp, false));
        let tcp = Arc::new(Counters::new(Transport::Tcp, true));
        stats.register(udp.clone());
        stats.register(tcp.clone());
        udp.response(
            rcode_slot(ResponseCode::NXDomain),
            qtype_slot(Some(RecordType::AAAA)),
        );
        tcp.response(
            rcode_slot(ResponseCode::NoError),
            qtype_slot(Some(RecordType::A)),
        );
        let pool = LowerName::from(Name::from_ascii("www.example.test.").unwrap());
        udp.bump(&udp.pool(&pool));
        udp.rrl(RrlAction::Slipped, ResponseKind::Answer);
        udp.reject(dns_common::accept::Reject::Broadcast);
        tcp.tcp(TcpEvent::Evicted);
        let page = render_server(&stats.snapshot());
        for line in [
            "hotpool_daemon_responses_total{rcode=\"NXDOMAIN\",qtype=\"AAAA\",transport=\"udp\"} 1",
            "hotpool_daemon_responses_total{rcode=\"NOERROR\",qtype=\"A\",transport=\"tcp\"} 1",
            "hotpool_daemon_answers_total{pool=\"www.example.test.\"} 1",
            "hotpool_rrl_total{action=\"slipped\",reason=\"answer\"} 1",
            "hotpool_rrl_total{action=\"dropped\",reason=\"nxdomain\"} 0",
            "hotpool_rejected_total{reason=\"broadcast\"} 1",
            "hotpool_rejected_total{reason=\"source_port\"} 0",
            "hotpool_daemon_tcp_connections_total{event=\"evicted\"} 1",
            "# TYPE hotpool_daemon_responses_total counter",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "{line} missing from:\n{page}"
            );
        }
        // Served from the metrics endpoint too.
        let datapath = Mutex::new(None);
        let (status, _, body) = handle("GET", "/metrics", &datapath, None, Some(&stats));
        assert_eq!(status, "200 OK");
        assert!(body.contains("hotpool_rejected_total{reason=\"broadcast\"} 1"));
    }

    #[test]
    fn every_outcome_has_a_distinct_label() {
        let names: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
