//! The `hotpool check` summary of a loaded configuration.

use std::net::IpAddr;

use crate::{
    api::settings::Reads,
    config::Config,
    geo::source::PrefixCounts,
    steering::{
        health::AdminState,
        policy::Policy,
        probe::{HttpProbe, ProbeKind, ProbeSpec, wanted_in_flight},
    },
};

impl Config {
    /// `[regions]`: the regions and how many prefixes each has from where (nothing
    /// without regions).
    fn region_lines(&self) -> Vec<String> {
        if self.regions.is_empty() {
            return Vec::new();
        }
        let total: usize = self.region_prefixes.iter().map(PrefixCounts::total).sum();
        let database = match &self.region_database {
            Some((path, db)) => format!("database {} ({db})", path.display()),
            None => "no database".to_string(),
        };
        let mut lines = vec![format!(
            "regions: {} (default included), {total} prefixes; {database}",
            self.regions.len()
        )];
        for (id, name) in self.regions.iter().skip(1) {
            let c = self
                .region_prefixes
                .get(id.index())
                .copied()
                .unwrap_or_default();
            lines.push(format!(
                "  region {name}: {} prefixes ({} inline, {} from files, {} from the database)",
                c.total(),
                c.inline,
                c.files,
                c.database
            ));
        }
        lines.push("  region default: every other client".to_string());
        lines
    }

    /// A human-readable summary (printed by `hotpool check`).
    pub fn summary(&self) -> String {
        let server = &self.server;
        let listen: Vec<String> = server.listen.iter().map(IpAddr::to_string).collect();
        let tcp_connections = match server.tcp_max_connections {
            Some(n) => n.to_string(),
            None => "(from the open-file limit)".to_string(),
        };
        let workers = match server.udp_workers {
            Some(n) => n.to_string(),
            None => "one per cpu".to_string(),
        };
        let rrl = &server.rrl;
        let mut lines = vec![
            format!("config {}", self.source.display()),
            format!(
                "server: udp+tcp on {} port {}, edns udp size {}, tcp idle timeout {}, at most {} tcp connections",
                listen.join(", "),
                server.port,
                server.edns_udp_size,
                humantime::format_duration(server.tcp_idle_timeout),
                tcp_connections
            ),
            format!(
                "udp: {workers} workers, answer cache {} per worker, receive buffer {}; tcp: {} per client, message timeout {}, lifetime {}",
                server.answer_cache_size,
                match server.udp_receive_buffer {
                    0 => "kernel default".to_string(),
                    n => format!("{n} octets"),
                },
                server.tcp_max_connections_per_client,
                humantime::format_duration(server.tcp_message_timeout),
                humantime::format_duration(server.tcp_max_lifetime),
            ),
            if rrl.enabled() {
                format!(
                    "rrl: {} answers/s per /{} (IPv4) and /{} (IPv6) network, window {} s, slip {}, {} exempt networks, {} buckets",
                    rrl.responses_per_second,
                    rrl.ipv4_prefix_length,
                    rrl.ipv6_prefix_length,
                    rrl.window,
                    rrl.slip,
                    rrl.exempt_clients.len(),
                    rrl.table_size
                )
            } else {
                "rrl: off".to_string()
            },
            format!("bpf pin path: {}", self.xdp.pin_path.display()),
            self.api_summary(),
            if self.xdp.interfaces.is_empty() {
                "xdp: off (no interfaces)".to_string()
            } else {
                format!(
                    "xdp: {} (mode {})",
                    self.xdp.interfaces.join(", "),
                    self.xdp.mode
                )
            },
        ];
        for (settings, zone) in self.zones.iter().zip(&self.zone_data) {
            lines.push(format!(
                "zone {} from {}: {} records at {} names, serial {}",
                settings.origin,
                settings.file.display(),
                zone.record_count(),
                zone.name_count(),
                zone.serial()
            ));
        }
        lines.extend(self.region_lines());
        for pool in &self.pools {
            let endpoints: Vec<String> = pool
                .endpoints
                .iter()
                .map(|e| format!("{} (weight {})", e.address, e.weight))
                .collect();
            lines.push(format!(
                "pool {} {} ttl {}: {}",
                pool.name,
                pool.rtype,
                pool.ttl,
                endpoints.join(", ")
            ));
            if pool.is_geo() {
                lines.push(format!("  policy geo; all down: {}", pool.all_down));
                for r in &pool.regions {
                    let members: Vec<String> = r
                        .endpoints
                        .iter()
                        .map(|e| {
                            let address = &pool.endpoints[e.index].address;
                            match r.policy {
                                Policy::Failover => format!("{address} (priority {})", e.priority),
                                Policy::Weighted => format!("{address} (weight {})", e.weight),
                                _ => address.to_string(),
                            }
                        })
                        .collect();
                    let latency = match r.policy {
                        Policy::Fastest { .. } => format!(", latency from {}", r.latency),
                        _ if r.latency.uses_rum() => format!(", availability from {}", r.latency),
                        _ => String::new(),
                    };
                    lines.push(format!(
                        "  region {}: {}{latency} over {}",
                        r.name,
                        r.policy.describe(),
                        members.join(", ")
                    ));
                }
            } else {
                lines.push(format!(
                    "  policy {}; all down: {}",
                    pool.policy.describe(),
                    pool.all_down
                ));
            }
            lines.push(match &pool.probe {
                Some(p) => format!("  probe {}", describe_probe(p)),
                None => "  no probe: every endpoint counts as up".to_string(),
            });
            for e in &pool.endpoints {
                let mut notes = Vec::new();
                if pool.policy == Policy::Failover {
                    notes.push(format!("priority {}", e.priority));
                }
                if e.admin != AdminState::Follow {
                    notes.push(format!("pinned {}", e.admin));
                }
                if let Some(p) = &e.probe
                    && e.probe != pool.probe
                {
                    notes.push(format!("probe {}", describe_probe(p)));
                }
                if !notes.is_empty() {
                    lines.push(format!("  endpoint {}: {}", e.address, notes.join(", ")));
                }
            }
            if let Some(url) = &pool.webhook {
                lines.push(format!("  webhook {url}"));
            }
        }
        lines.push(match &self.events.log {
            Some(path) => format!("event log: {}", path.display()),
            None => "event log: off".to_string(),
        });
        lines.push(self.probes_line());
        lines.push(format!(
            "state file: {} (trusted for {} after it was written)",
            self.state.path.display(),
            humantime::format_duration(self.state.max_age)
        ));
        lines.push(String::new());
        lines.join("\n")
    }
}

impl Config {
    /// How many probes run at once: what the load needs, and the ceiling if one is set.
    fn probes_line(&self) -> String {
        let wanted = wanted_in_flight(self.probe_specs());
        let ceiling = match self.probes.max_concurrent {
            Some(m) => format!("at most {m} ([probes] max_concurrent)"),
            None => "within the descriptors the open-file limit leaves for probes".to_string(),
        };
        format!(
            "probes: {} endpoints; up to {wanted} in flight (what the load needs), {ceiling}",
            self.probe_specs().count()
        )
    }
}

impl Config {
    /// `api: http://127.0.0.1:9153/ (metrics at /metrics; reads open, writes with the token
    /// in /etc/hotpool/api.token), unix socket /run/hotpool/api.sock (mode 0660)`.
    fn api_summary(&self) -> String {
        let api = &self.api;
        let mut parts = Vec::new();
        if let Some(addr) = api.listen {
            let writes = match &api.token_file {
                Some(file) => format!("changes with the token in {}", file.display()),
                None => "no changes over TCP (no token_file)".to_string(),
            };
            parts.push(format!(
                "http://{addr}/ (metrics at /metrics; reads {}, {writes})",
                match api.reads {
                    Reads::Open => "open",
                    Reads::Token => "with the token",
                }
            ));
        }
        if let Some(s) = &api.unix_socket {
            let group = s
                .group
                .as_ref()
                .map_or(String::new(), |g| format!(", group {}", g.name));
            parts.push(format!(
                "unix socket {} (mode {:04o}{group})",
                s.path.display(),
                s.mode
            ));
        }
        if parts.is_empty() {
            "api: off".to_string()
        } else {
            format!(
                "api: {}; at most {} connections each",
                parts.join(", "),
                api.max_connections
            )
        }
    }
}

fn describe_probe(p: &ProbeSpec) -> String {
    let port = p
        .port()
        .map_or(String::new(), |port| format!(" port {port}"));
    let describe_http = |http: &HttpProbe| {
        let mut w = format!("{} {} {}{port}", p.kind.name(), http.method, http.path);
        if let Some(host) = &http.host {
            w.push_str(&format!(" host {host}"));
        }
        w.push_str(&format!(" expect {}", status_ranges(&http.expect_status)));
        if let Some(text) = &http.body_contains {
            w.push_str(&format!(" body contains {text:?}"));
        }
        w
    };
    let mut what = match &p.kind {
        ProbeKind::Http(http) => describe_http(http),
        ProbeKind::Https { http, tls_verify } => {
            let mut w = describe_http(http);
            if !tls_verify {
                w.push_str(" tls_verify off");
            }
            w
        }
        ProbeKind::Tcp { .. } => format!("tcp{port}"),
        ProbeKind::Icmp => "icmp".to_string(),
        ProbeKind::Dns(dns) => format!("dns {} {}{port}", dns.qname, dns.qtype),
    };
    let t = &p.timing;
    what.push_str(&format!(
        ", every {}, timeout {}, rise {}, fall {}",
        humantime::format_duration(t.interval),
        humantime::format_duration(t.timeout),
        t.rise,
        t.fall
    ));
    what
}

/// `200-299,304` for a list of statuses.
pub(super) fn status_ranges(statuses: &[u16]) -> String {
    let mut sorted = statuses.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}
