//! The daemon's HTTP endpoint (bind it to loopback: it is unauthenticated):
//!
//! * `GET /metrics`: Prometheus text exposition of the XDP counters, whether XDP is
//!   attached, and every pool's and endpoint's steering state;
//! * `GET /api/status`: the same steering state as JSON;
//! * `POST /api/pools/<pool>/endpoints/<endpoint>/<up|down|follow>`: pin an endpoint up or
//!   down at runtime, or make it follow its probes again (Constellix `always_on`,
//!   `always_off`, `follow_sonar`). Pins are kept across restarts in the state file; put
//!   lasting ones in the config (`state = ...`);
//! * `POST /api/reload`: re-read the config and the zones and apply them (as SIGHUP does);
//!   200 with what changed, or 422 with why nothing did.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::{mpsc, oneshot, watch},
};
use tracing::debug;

use crate::{
    datapath::ebpf::Datapath,
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
                let status = s.lock().unwrap_or_else(|p| p.into_inner()).status();
                body.push_str(&render_steering(&status));
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
            "not found; try GET /metrics, GET /api/status, POST /api/reload or \
             POST /api/pools/<pool>/endpoints/<endpoint>/<up|down|follow>\n"
                .into(),
        ),
    }
}

/// A reload asked for: the daemon answers on the channel with what changed, or why nothing
/// did.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// `POST /api/reload`: asks the daemon (through `tx`) and waits for its answer.
pub async fn reload(
    tx: Option<&mpsc::Sender<ReloadRequest>>,
) -> (&'static str, &'static str, String) {
    const JSON: &str = "application/json";
    let json = |status, key: &str, text: String| {
        (
            status,
            JSON,
            format!("{}\n", serde_json::json!({ key: text })),
        )
    };
    let Some(tx) = tx else {
        return json(
            "404 Not Found",
            "error",
            "reloading is not available here".into(),
        );
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return json(
            "503 Service Unavailable",
            "error",
            "the daemon is stopping".into(),
        );
    }
    match answer.await {
        Ok(Ok(done)) => json("200 OK", "ok", done),
        Ok(Err(why)) => json("422 Unprocessable Content", "error", why),
        Err(_) => json(
            "503 Service Unavailable",
            "error",
            "the daemon is stopping".into(),
        ),
    }
}

/// Serves the endpoints above until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    datapath: Arc<Mutex<Option<Datapath>>>,
    steering: Option<Arc<Mutex<Steering>>>,
    reloads: Option<mpsc::Sender<ReloadRequest>>,
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
        let reloads = reloads.clone();
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
            let (status, content_type, body) =
                if (method, path.trim_end_matches('/')) == ("POST", "/api/reload") {
                    reload(reloads.as_ref()).await
                } else {
                    handle(method, path, &datapath, steering.as_deref())
                };
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
            None,
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

    #[tokio::test]
    async fn reload_answers_what_the_daemon_says() {
        let (status, _, body) = reload(None).await;
        assert_eq!(status, "404 Not Found", "{body}");
        let (tx, mut rx) = mpsc::channel::<ReloadRequest>(1);
        let daemon = tokio::spawn(async move {
            let reply = rx.recv().await.unwrap();
            reply.send(Ok("reloaded x: 1 pools".into())).unwrap();
            let reply = rx.recv().await.unwrap();
            reply
                .send(Err("x.toml:3:8: port must be between 1 and 65535".into()))
                .unwrap();
            // Gone without answering: the daemon is stopping.
            drop(rx.recv().await);
        });
        let (status, _, body) = reload(Some(&tx)).await;
        assert_eq!(status, "200 OK");
        assert_eq!(body, "{\"ok\":\"reloaded x: 1 pools\"}\n");
        let (status, _, body) = reload(Some(&tx)).await;
        assert_eq!(status, "422 Unprocessable Content");
        assert!(body.contains("port must be between"), "{body}");
        let (status, _, _) = reload(Some(&tx)).await;
        assert_eq!(status, "503 Service Unavailable");
        daemon.await.unwrap();
    }

    #[test]
    fn without_xdp_only_the_attached_gauge_is_rendered() {
        let page = render(None);
        assert!(page.contains("# TYPE hotpool_xdp_attached gauge"));
        assert!(page.contains("\nhotpool_xdp_attached 0\n"));
        assert!(!page.contains("hotpool_xdp_packets_total"));
    }

    #[test]
    fn every_outcome_has_a_distinct_label() {
        let names: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
