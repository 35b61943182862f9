//! Prometheus text exposition of the XDP counters (and whether XDP is attached), served on
//! `GET /metrics`.

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

use crate::ebpf::Datapath;

/// Renders the metrics page.
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

/// Serves `GET /metrics` until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    datapath: Arc<Mutex<Option<Datapath>>>,
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
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics ") || req.starts_with("GET / ") {
                let body = {
                    let dp = datapath.lock().unwrap_or_else(|p| p.into_inner());
                    render(dp.as_ref())
                };
                ("200 OK", body)
            } else {
                ("404 Not Found", "not found; try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
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
    use dns_common::Outcome;

    use super::*;

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
