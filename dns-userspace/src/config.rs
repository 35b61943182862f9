//! The daemon's one declarative TOML file: parsing and validation.
//!
//! [`Config::load`] reads the file, checks every value, loads every zone file and checks the
//! pools against the zones, so a config that loads is one the daemon can serve. Every
//! problem is reported as a [`ConfigError`] naming the file, line and column where known
//! (`hotpool.toml:12:7: ...`, or the zone file and its line for zone-file problems).
//!
//! `examples/hotpool.toml` documents every key.

use std::{
    collections::BTreeMap,
    fmt,
    marker::PhantomData,
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
};

use dns_common::MAX_ANSWER_RRS;
use hickory_proto::rr::{LowerName, Name, RecordType};
use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, EnumAccess, VariantAccess as _, Visitor},
};
use toml::Spanned;

use crate::{
    datapath::ebpf::{AttachMode, XdpSettings, check_interface_name},
    dns::{
        MAX_TTL, parse_name,
        server::{EDNS_UDP_SIZE_RANGE, ServerSettings},
        zone::{DEFAULT_NS_TTL, SoaSettings, Zone, ZoneError, ZoneSettings},
    },
    steering::{
        endpoint::EndpointAddress,
        events::EventSettings,
        health::AdminState,
        policy::{ALL_DOWN_NAMES, AllDown, POLICY_NAMES, Policy, PolicyKey, PolicyKeys},
        pool::{DEFAULT_POOL_TTL, EndpointSettings, PoolSettings},
        probe::{HttpProbe, KIND_NAMES, ProbeKey, ProbeKeys, ProbeKind, ProbeSettings, ProbeSpec},
    },
};

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was read from (zone files are relative to its directory).
    pub source: PathBuf,
    pub server: ServerSettings,
    /// `server.metrics_listen`: the HTTP endpoint (metrics and control), off by default.
    pub metrics_listen: Option<SocketAddr>,
    pub xdp: XdpSettings,
    pub zones: Vec<ZoneSettings>,
    pub pools: Vec<PoolSettings>,
    pub events: EventSettings,
    pub probes: ProbeSettings,
    /// The zones as loaded and validated, in the order of `zones`.
    zone_data: Vec<Zone>,
}

/// A problem with the configuration, located where possible.
///
/// Displays as `<file>:<line>:<column>: <problem>`, or with fewer parts when the line or
/// column is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    file: PathBuf,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

impl ConfigError {
    /// An error about `file` as a whole.
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// The file the problem is in (the config file or a zone file).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line, if known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// 1-based column (in characters), if known.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The problem without its location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl From<ZoneError> for ConfigError {
    fn from(e: ZoneError) -> Self {
        Self {
            file: e.file().to_path_buf(),
            line: e.line(),
            column: None,
            message: e.message().to_string(),
        }
    }
}

impl Config {
    /// Reads, parses and validates the config at `path`, loading every zone file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read config file: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text` as if read from `source`; zone files are read relative to
    /// `source`'s directory.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        Parser { text, source }.parse()
    }

    /// The zones as loaded when the config was validated, in the order of [`Config::zones`].
    pub fn zone_data(&self) -> &[Zone] {
        &self.zone_data
    }

    /// A human-readable summary (printed by `hotpool check`).
    pub fn summary(&self) -> String {
        let server = &self.server;
        let listen: Vec<String> = server.listen.iter().map(IpAddr::to_string).collect();
        let mut lines = vec![
            format!("config {}", self.source.display()),
            format!(
                "server: udp+tcp on {} port {}, edns udp size {}, tcp idle timeout {}, at most {} tcp connections",
                listen.join(", "),
                server.port,
                server.edns_udp_size,
                humantime::format_duration(server.tcp_idle_timeout),
                server.tcp_max_connections
            ),
            format!("bpf pin path: {}", self.xdp.pin_path.display()),
            match self.metrics_listen {
                Some(addr) => format!("metrics: http://{addr}/metrics"),
                None => "metrics: off".to_string(),
            },
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
            lines.push(format!(
                "  policy {}; all down: {}",
                pool.policy.describe(),
                pool.all_down
            ));
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
        lines.push(format!(
            "probes: at most {} in flight",
            self.probes.max_concurrent
        ));
        lines.push(String::new());
        lines.join("\n")
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
fn status_ranges(statuses: &[u16]) -> String {
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

// ---------------------------------------------------------------------------------------
// The file as written, with spans for error locations.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: Option<RawServer>,
    #[serde(default)]
    xdp: Option<RawXdp>,
    #[serde(default)]
    zone: Vec<Spanned<RawZone>>,
    #[serde(default)]
    pool: Vec<Spanned<RawPool>>,
    #[serde(default)]
    events: Option<RawEvents>,
    #[serde(default)]
    probes: Option<RawProbes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    log: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbes {
    max_concurrent: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    port: Option<Spanned<u16>>,
    edns_udp_size: Option<Spanned<u16>>,
    tcp_idle_timeout: Option<Spanned<String>>,
    tcp_max_connections: Option<Spanned<usize>>,
    pin_path: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXdp {
    interfaces: Option<Vec<Spanned<String>>>,
    mode: Option<Spanned<AttachMode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    origin: Spanned<String>,
    file: Spanned<String>,
    soa: Option<Spanned<RawSoa>>,
    ns: Option<Spanned<Vec<Spanned<String>>>>,
    ns_ttl: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    mname: Spanned<String>,
    rname: Spanned<String>,
    serial: Option<u32>,
    refresh: Option<Spanned<u32>>,
    retry: Option<Spanned<u32>>,
    expire: Option<Spanned<u32>>,
    minimum: Option<Spanned<u32>>,
    ttl: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Spanned<String>,
    #[serde(rename = "type")]
    rtype: Spanned<String>,
    ttl: Option<Spanned<u32>>,
    endpoints: Spanned<Vec<Spanned<RawEndpoint>>>,
    policy: Option<Spanned<Keyword<PolicyNames>>>,
    count: Option<Spanned<usize>>,
    deviation: Option<Spanned<u32>>,
    hysteresis: Option<Spanned<u32>>,
    all_down: Option<Spanned<Keyword<AllDownNames>>>,
    fallback: Option<Spanned<Vec<Spanned<String>>>>,
    webhook: Option<Spanned<String>>,
    probe: Option<Spanned<RawProbe>>,
}

/// A keyword of a closed set (policy names, ...): deserialized like a unit-only enum, so a
/// value outside the set is reported by serde as an unknown variant at its position, while
/// the set itself belongs to the module whose keyword it is.
struct Keyword<K>(&'static str, PhantomData<K>);

impl<K> Clone for Keyword<K> {
    fn clone(&self) -> Self {
        Self(self.0, PhantomData)
    }
}

/// A set of keywords: the names a [`Keyword`] accepts.
trait Keywords {
    /// What the keyword names, for serde's messages.
    const WHAT: &'static str;
    const NAMES: &'static [&'static str];
}

impl<K> Keyword<K> {
    fn name(&self) -> &'static str {
        self.0
    }
}

impl<'de, K: Keywords> Deserialize<'de> for Keyword<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name<K>(PhantomData<K>);
        impl<'de, K: Keywords> DeserializeSeed<'de> for Name<K> {
            type Value = &'static str;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
                d.deserialize_identifier(self)
            }
        }
        impl<K: Keywords> Visitor<'_> for Name<K> {
            type Value = &'static str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} name", K::WHAT)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
                K::NAMES
                    .iter()
                    .find(|n| **n == v)
                    .copied()
                    .ok_or_else(|| E::unknown_variant(v, K::NAMES))
            }
        }
        struct Unit<K>(PhantomData<K>);
        impl<'de, K: Keywords> Visitor<'de> for Unit<K> {
            type Value = &'static str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {}", K::WHAT)
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<&'static str, A::Error> {
                let (name, variant) = data.variant_seed(Name::<K>(PhantomData))?;
                variant.unit_variant()?;
                Ok(name)
            }
        }
        deserializer
            .deserialize_enum(K::WHAT, K::NAMES, Unit::<K>(PhantomData))
            .map(|name| Keyword(name, PhantomData))
    }
}

/// `policy = "..."`.
enum PolicyNames {}
impl Keywords for PolicyNames {
    const WHAT: &'static str = "policy";
    const NAMES: &'static [&'static str] = POLICY_NAMES;
}

/// `kind = "..."` of a probe.
enum KindNames {}
impl Keywords for KindNames {
    const WHAT: &'static str = "probe kind";
    const NAMES: &'static [&'static str] = KIND_NAMES;
}

/// `all_down = "..."`.
enum AllDownNames {}
impl Keywords for AllDownNames {
    const WHAT: &'static str = "all_down";
    const NAMES: &'static [&'static str] = ALL_DOWN_NAMES;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
    priority: Option<Spanned<u32>>,
    state: Option<Spanned<AdminState>>,
    probe: Option<Spanned<RawProbe>>,
}

/// A `probe = { ... }` table, of a pool or (as overrides) of an endpoint.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    kind: Option<Spanned<Keyword<KindNames>>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    port: Option<Spanned<u16>>,
    method: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    expect_status: Option<Spanned<Vec<Spanned<u16>>>>,
    body_contains: Option<Spanned<String>>,
    tls_verify: Option<Spanned<bool>>,
    qname: Option<Spanned<String>>,
    qtype: Option<Spanned<String>>,
}

impl RawProbe {
    /// The endpoint's overrides on top of the pool's probe. The timing keys (`interval`,
    /// `timeout`, `rise`, `fall`) are inherited; the kind's own keys only when the
    /// endpoint keeps the pool's kind.
    fn overridden_by(&self, ep: &RawProbe) -> RawProbe {
        let same_kind = match (&ep.kind, &self.kind) {
            (Some(e), Some(p)) => e.get_ref().name() == p.get_ref().name(),
            _ => true,
        };
        fn pick<T: Clone>(ep: &Option<T>, pool: &Option<T>, inherit: bool) -> Option<T> {
            match ep {
                Some(v) => Some(v.clone()),
                None if inherit => pool.clone(),
                None => None,
            }
        }
        RawProbe {
            kind: pick(&ep.kind, &self.kind, true),
            interval: pick(&ep.interval, &self.interval, true),
            timeout: pick(&ep.timeout, &self.timeout, true),
            rise: pick(&ep.rise, &self.rise, true),
            fall: pick(&ep.fall, &self.fall, true),
            port: pick(&ep.port, &self.port, same_kind),
            method: pick(&ep.method, &self.method, same_kind),
            path: pick(&ep.path, &self.path, same_kind),
            host: pick(&ep.host, &self.host, same_kind),
            expect_status: pick(&ep.expect_status, &self.expect_status, same_kind),
            body_contains: pick(&ep.body_contains, &self.body_contains, same_kind),
            tls_verify: pick(&ep.tls_verify, &self.tls_verify, same_kind),
            qname: pick(&ep.qname, &self.qname, same_kind),
            qtype: pick(&ep.qtype, &self.qtype, same_kind),
        }
    }
}

// ---------------------------------------------------------------------------------------

struct Parser<'a> {
    text: &'a str,
    source: &'a Path,
}

impl Parser<'_> {
    /// An error at byte `span` of the config text.
    fn err_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: self.source.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    fn parse(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| match e.span() {
            Some(span) => self.err_at(span, e.message().trim_end()),
            None => ConfigError::new(self.source, e.message().trim_end()),
        })?;
        let (server, pin_path, metrics_listen) = match raw.server {
            Some(s) => self.server(s)?,
            None => (
                ServerSettings::default(),
                XdpSettings::default().pin_path,
                None,
            ),
        };
        let xdp = match raw.xdp {
            Some(x) => self.xdp(x, pin_path)?,
            None => XdpSettings {
                pin_path,
                ..XdpSettings::default()
            },
        };

        let mut zones = Vec::with_capacity(raw.zone.len());
        let mut seen = BTreeMap::new();
        for z in raw.zone {
            let origin_span = z.get_ref().origin.span();
            let settings = self.zone(z.into_inner())?;
            let key = LowerName::new(&settings.origin);
            if let Some(first) = seen.insert(key, origin_span.clone()) {
                let (line, _) = self.line_col(first);
                return Err(self.err_at(
                    origin_span,
                    format!(
                        "zone {} is configured twice (first at line {line})",
                        settings.origin
                    ),
                ));
            }
            zones.push(settings);
        }
        if zones.is_empty() && !raw.pool.is_empty() {
            return Err(self.err_at(
                raw.pool[0].span(),
                "pools need a zone: add a [[zone]] that contains the pool names",
            ));
        }

        let mut zone_data = Vec::with_capacity(zones.len());
        for settings in &zones {
            zone_data.push(Zone::load(settings)?);
        }

        let mut pools: Vec<PoolSettings> = Vec::with_capacity(raw.pool.len());
        let mut pool_lines = BTreeMap::new();
        for p in raw.pool {
            let name_span = p.get_ref().name.span();
            let pool = self.pool(p.into_inner())?;
            let key = LowerName::new(&pool.name);
            if let Some(first) = pool_lines.insert(key, name_span.clone()) {
                let (line, _) = self.line_col(first);
                return Err(self.err_at(
                    name_span,
                    format!(
                        "pool {} is configured twice (first at line {line}); one name has one pool",
                        pool.name
                    ),
                ));
            }
            self.check_pool_in_zones(&pool, name_span, &zones, &zone_data)?;
            pools.push(pool);
        }
        if pools.len() > dns_common::MAX_POOLS as usize {
            return Err(ConfigError::new(
                self.source,
                format!(
                    "{} pools configured, at most {} are supported",
                    pools.len(),
                    dns_common::MAX_POOLS
                ),
            ));
        }

        let events = match raw.events {
            Some(e) => self.events(e)?,
            None => EventSettings::default(),
        };
        let probes = match raw.probes {
            Some(p) => self.probes(p)?,
            None => ProbeSettings::default(),
        };

        Ok(Config {
            source: self.source.to_path_buf(),
            server,
            metrics_listen,
            xdp,
            zones,
            pools,
            events,
            probes,
            zone_data,
        })
    }

    fn line_col(&self, span: Range<usize>) -> (usize, usize) {
        let e = self.err_at(span, "");
        (e.line.unwrap_or(1), e.column.unwrap_or(1))
    }

    /// `[server]`: the server's settings, the pin path and the metrics address.
    #[allow(clippy::type_complexity)]
    fn server(
        &self,
        raw: RawServer,
    ) -> Result<(ServerSettings, PathBuf, Option<SocketAddr>), ConfigError> {
        let mut s = ServerSettings::default();
        let mut pin_path = XdpSettings::default().pin_path;
        let mut metrics_listen = None;
        if let Some(listen) = raw.listen {
            if listen.get_ref().is_empty() {
                return Err(self.err_at(listen.span(), "listen must name at least one address"));
            }
            let mut addrs = Vec::new();
            for a in listen.into_inner() {
                let ip = IpAddr::from_str(a.get_ref().trim()).map_err(|_| {
                    self.err_at(
                        a.span(),
                        format!(
                            "invalid listen address {:?}: expected an IPv4 or IPv6 address without port",
                            a.get_ref()
                        ),
                    )
                })?;
                if addrs.contains(&ip) {
                    return Err(self.err_at(a.span(), format!("listen address {ip} given twice")));
                }
                addrs.push(ip);
            }
            s.listen = addrs;
        }
        if let Some(port) = raw.port {
            if *port.get_ref() == 0 {
                return Err(self.err_at(port.span(), "port must be between 1 and 65535"));
            }
            s.port = port.into_inner();
        }
        if let Some(size) = raw.edns_udp_size {
            if !EDNS_UDP_SIZE_RANGE.contains(size.get_ref()) {
                return Err(self.err_at(
                    size.span(),
                    format!(
                        "edns_udp_size {} is out of range {}..={}",
                        size.get_ref(),
                        EDNS_UDP_SIZE_RANGE.start(),
                        EDNS_UDP_SIZE_RANGE.end()
                    ),
                ));
            }
            s.edns_udp_size = size.into_inner();
        }
        if let Some(t) = raw.tcp_idle_timeout {
            let d = humantime::parse_duration(t.get_ref().trim()).map_err(|e| {
                self.err_at(
                    t.span(),
                    format!(
                        "invalid tcp_idle_timeout {:?}: {e} (write e.g. \"10s\" or \"1m 30s\")",
                        t.get_ref()
                    ),
                )
            })?;
            if d.is_zero() {
                return Err(self.err_at(t.span(), "tcp_idle_timeout must be longer than 0s"));
            }
            s.tcp_idle_timeout = d;
        }
        if let Some(n) = raw.tcp_max_connections {
            if *n.get_ref() == 0 {
                return Err(self.err_at(n.span(), "tcp_max_connections must be at least 1"));
            }
            s.tcp_max_connections = n.into_inner();
        }
        if let Some(p) = raw.pin_path {
            let path = PathBuf::from(p.get_ref());
            if !path.is_absolute() {
                return Err(self.err_at(
                    p.span(),
                    format!("pin_path {:?} must be an absolute path", p.get_ref()),
                ));
            }
            pin_path = path;
        }
        if let Some(m) = raw.metrics_listen {
            let addr = SocketAddr::from_str(m.get_ref().trim()).map_err(|_| {
                self.err_at(
                    m.span(),
                    format!(
                        "invalid metrics_listen {:?}: expected address:port, e.g. \"127.0.0.1:9153\" or \"[::1]:9153\"",
                        m.get_ref()
                    ),
                )
            })?;
            metrics_listen = Some(addr);
        }
        Ok((s, pin_path, metrics_listen))
    }

    fn xdp(&self, raw: RawXdp, pin_path: PathBuf) -> Result<XdpSettings, ConfigError> {
        let mut x = XdpSettings {
            pin_path,
            ..XdpSettings::default()
        };
        for i in raw.interfaces.unwrap_or_default() {
            let name = i.get_ref();
            check_interface_name(name).map_err(|e| self.err_at(i.span(), e.to_string()))?;
            if x.interfaces.contains(name) {
                return Err(self.err_at(i.span(), format!("interface {name:?} is given twice")));
            }
            x.interfaces.push(i.into_inner());
        }
        if let Some(mode) = raw.mode {
            x.mode = mode.into_inner();
        }
        Ok(x)
    }

    fn events(&self, raw: RawEvents) -> Result<EventSettings, ConfigError> {
        let mut e = EventSettings::default();
        if let Some(log) = raw.log {
            if log.get_ref().trim().is_empty() {
                return Err(self.err_at(log.span(), "events log path is empty"));
            }
            let path = Path::new(log.get_ref());
            e.log = Some(self.source.parent().unwrap_or(Path::new("")).join(path));
        }
        Ok(e)
    }

    fn probes(&self, raw: RawProbes) -> Result<ProbeSettings, ConfigError> {
        let mut p = ProbeSettings::default();
        if let Some(n) = raw.max_concurrent {
            if *n.get_ref() == 0 {
                return Err(self.err_at(n.span(), "max_concurrent must be at least 1"));
            }
            p.max_concurrent = n.into_inner();
        }
        Ok(p)
    }

    fn name(&self, s: &Spanned<String>, what: &str) -> Result<Name, ConfigError> {
        parse_name(s.get_ref()).map_err(|e| self.err_at(s.span(), format!("invalid {what}: {e}")))
    }

    fn ttl(&self, ttl: &Spanned<u32>, what: &str) -> Result<u32, ConfigError> {
        let v = *ttl.get_ref();
        if v > MAX_TTL {
            return Err(self.err_at(
                ttl.span(),
                format!("{what} {v} is larger than {MAX_TTL} (RFC 2181 §8)"),
            ));
        }
        Ok(v)
    }

    fn zone(&self, raw: RawZone) -> Result<ZoneSettings, ConfigError> {
        let origin = self.name(&raw.origin, "zone origin")?;
        if raw.file.get_ref().trim().is_empty() {
            return Err(self.err_at(raw.file.span(), "zone file path is empty"));
        }
        let file = self
            .source
            .parent()
            .unwrap_or(Path::new(""))
            .join(raw.file.get_ref());
        let soa = match raw.soa {
            None => None,
            Some(soa) => {
                let soa = soa.into_inner();
                let timer = |v: &Option<Spanned<u32>>, what: &str, default: u32| match v {
                    Some(t) => self.ttl(t, what),
                    None => Ok(default),
                };
                Some(SoaSettings {
                    mname: self.name(&soa.mname, "soa mname")?,
                    rname: self.name(&soa.rname, "soa rname")?,
                    serial: soa.serial.unwrap_or(1),
                    refresh: timer(&soa.refresh, "soa refresh", 3600)?,
                    retry: timer(&soa.retry, "soa retry", 600)?,
                    expire: timer(&soa.expire, "soa expire", 604_800)?,
                    minimum: timer(&soa.minimum, "soa minimum", 60)?,
                    ttl: timer(&soa.ttl, "soa ttl", 3600)?,
                })
            }
        };
        let mut ns = Vec::new();
        let ns_span = raw.ns.as_ref().map(Spanned::span);
        for n in raw.ns.map(Spanned::into_inner).unwrap_or_default() {
            let name = self.name(&n, "ns name")?;
            if ns.contains(&name) {
                return Err(self.err_at(n.span(), format!("ns {name} is given twice")));
            }
            ns.push(name);
        }
        if let Some(span) = ns_span
            && ns.is_empty()
        {
            return Err(self.err_at(span, "ns is empty; leave it out or name a server"));
        }
        let ns_ttl = match &raw.ns_ttl {
            Some(t) if ns.is_empty() => {
                return Err(self.err_at(t.span(), "ns_ttl is set but ns is not"));
            }
            Some(t) => self.ttl(t, "ns_ttl")?,
            None => DEFAULT_NS_TTL,
        };
        Ok(ZoneSettings {
            origin,
            file,
            soa,
            ns,
            ns_ttl,
        })
    }

    fn pool(&self, raw: RawPool) -> Result<PoolSettings, ConfigError> {
        let name = self.name(&raw.name, "pool name")?;
        let name_span = raw.name.span();
        if name.is_wildcard() || name.iter().any(|l| l == b"*") {
            return Err(self.err_at(
                raw.name.span(),
                format!(
                    "pool name {name} contains a wildcard label; wildcard pools are not supported"
                ),
            ));
        }
        let rtype = match raw.rtype.get_ref().trim().to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::AAAA,
            "CNAME" => RecordType::CNAME,
            other => {
                return Err(self.err_at(
                    raw.rtype.span(),
                    format!("pool type must be A, AAAA or CNAME, not {other:?}"),
                ));
            }
        };
        let ttl = match &raw.ttl {
            Some(t) => self.ttl(t, "pool ttl")?,
            None => DEFAULT_POOL_TTL,
        };
        let (policy, all_down) = self.policy(&raw, &name, rtype)?;
        let webhook = match &raw.webhook {
            Some(w) => Some(self.webhook(w)?),
            None => None,
        };
        let pool_probe = match &raw.probe {
            Some(p) => Some(self.probe_spec(p.get_ref(), p.span(), &name)?),
            None => None,
        };
        let endpoints_span = raw.endpoints.span();
        let raw_endpoints = raw.endpoints.into_inner();
        if raw_endpoints.is_empty() {
            return Err(self.err_at(endpoints_span, format!("pool {name} has no endpoints")));
        }
        if raw_endpoints.len() > MAX_ANSWER_RRS {
            return Err(self.err_at(
                endpoints_span,
                format!(
                    "pool {name} has {} endpoints, at most {MAX_ANSWER_RRS} are supported",
                    raw_endpoints.len()
                ),
            ));
        }
        let mut endpoints: Vec<EndpointSettings> = Vec::with_capacity(raw_endpoints.len());
        // Where each endpoint's priority was given (or its address, for the default).
        let mut priority_spans: Vec<Range<usize>> = Vec::with_capacity(raw_endpoints.len());
        for (position, e) in raw_endpoints.into_iter().enumerate() {
            let e = e.into_inner();
            let address = self.endpoint_address(&name, rtype, &e.address)?;
            if endpoints.iter().any(|x| x.address == address) {
                return Err(self.err_at(
                    e.address.span(),
                    format!("pool {name} lists endpoint {address} twice"),
                ));
            }
            let weight = match &e.weight {
                Some(w) if *w.get_ref() == 0 => {
                    return Err(self.err_at(w.span(), "weight must be at least 1"));
                }
                Some(w) => *w.get_ref(),
                None => 1,
            };
            let (priority, priority_span) = match &e.priority {
                Some(p) => (*p.get_ref(), p.span()),
                None => (
                    u32::try_from(position).unwrap_or(u32::MAX),
                    e.address.span(),
                ),
            };
            let admin = e
                .state
                .as_ref()
                .map_or(AdminState::Follow, |s| *s.get_ref());
            let probe = match (&raw.probe, &e.probe) {
                (None, None) => None,
                (None, Some(over)) => {
                    return Err(self.err_at(
                        over.span(),
                        format!(
                            "endpoint {address} has probe overrides, but pool {name} has no probe; add probe = {{ kind = ... }} to the pool"
                        ),
                    ));
                }
                (Some(_), None) => pool_probe.clone(),
                (Some(pool), Some(over)) => Some(self.probe_spec(
                    &pool.get_ref().overridden_by(over.get_ref()),
                    over.span(),
                    &name,
                )?),
            };
            endpoints.push(EndpointSettings {
                address,
                weight,
                priority,
                admin,
                probe,
            });
            priority_spans.push(priority_span);
        }
        let priorities: Vec<(&EndpointAddress, u32)> =
            endpoints.iter().map(|e| (&e.address, e.priority)).collect();
        policy.check_priorities(&name, &priorities).map_err(|e| {
            let span = match e.key {
                PolicyKey::Priority(i) => priority_spans.get(i).cloned(),
                _ => None,
            };
            self.err_at(span.unwrap_or_else(|| name_span.clone()), e.to_string())
        })?;
        Ok(PoolSettings {
            name,
            rtype,
            ttl,
            endpoints,
            policy,
            all_down,
            probe: pool_probe,
            webhook,
        })
    }

    /// An endpoint (or fallback) address of a pool of type `rtype`.
    fn endpoint_address(
        &self,
        name: &Name,
        rtype: RecordType,
        raw: &Spanned<String>,
    ) -> Result<EndpointAddress, ConfigError> {
        EndpointAddress::parse(raw.get_ref(), name, rtype)
            .map_err(|e| self.err_at(raw.span(), e.to_string()))
    }

    /// `policy`, `count`, `deviation`, `hysteresis`, `all_down` and `fallback`, validated by
    /// the policy module.
    fn policy(
        &self,
        raw: &RawPool,
        name: &Name,
        rtype: RecordType,
    ) -> Result<(Policy, AllDown), ConfigError> {
        let keys = PolicyKeys {
            policy: raw.policy.as_ref().map(|p| p.get_ref().name()),
            count: raw.count.as_ref().map(|c| *c.get_ref()),
            deviation: raw.deviation.as_ref().map(|d| *d.get_ref()),
            hysteresis: raw.hysteresis.as_ref().map(|h| *h.get_ref()),
            all_down: raw.all_down.as_ref().map(|a| a.get_ref().name()),
            fallback: raw.fallback.as_ref().map(|list| {
                list.get_ref()
                    .iter()
                    .map(|a| a.get_ref().as_str())
                    .collect()
            }),
        };
        Policy::from_keys(&keys, name, rtype, raw.probe.is_some()).map_err(|e| {
            let span = match e.key {
                PolicyKey::Policy => raw.policy.as_ref().map(Spanned::span),
                PolicyKey::Count => raw.count.as_ref().map(Spanned::span),
                PolicyKey::Deviation => raw.deviation.as_ref().map(Spanned::span),
                PolicyKey::Hysteresis => raw.hysteresis.as_ref().map(Spanned::span),
                PolicyKey::AllDown => raw.all_down.as_ref().map(Spanned::span),
                PolicyKey::Fallback => raw.fallback.as_ref().map(Spanned::span),
                PolicyKey::FallbackItem(i) => raw
                    .fallback
                    .as_ref()
                    .and_then(|list| list.get_ref().get(i))
                    .map(Spanned::span),
                PolicyKey::Priority(_) => None,
            };
            self.err_at(span.unwrap_or_else(|| raw.name.span()), e.to_string())
        })
    }

    fn webhook(&self, raw: &Spanned<String>) -> Result<String, ConfigError> {
        let text = raw.get_ref().trim();
        let url = url::Url::parse(text)
            .map_err(|e| self.err_at(raw.span(), format!("invalid webhook URL {text:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.err_at(
                raw.span(),
                format!(
                    "webhook URL {text:?} must be http or https, not {:?}",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(self.err_at(raw.span(), format!("webhook URL {text:?} has no host")));
        }
        Ok(url.to_string())
    }

    /// A complete probe spec from a pool's `probe` table (or a pool's merged with an
    /// endpoint's overrides), validated by the probe module; `span` is the table the
    /// problem is reported at when no key is to blame.
    fn probe_spec(
        &self,
        raw: &RawProbe,
        span: Range<usize>,
        pool: &Name,
    ) -> Result<ProbeSpec, ConfigError> {
        let keys = ProbeKeys {
            kind: raw.kind.as_ref().map(|k| k.get_ref().name()),
            interval: raw.interval.as_ref().map(|v| v.get_ref().as_str()),
            timeout: raw.timeout.as_ref().map(|v| v.get_ref().as_str()),
            rise: raw.rise.as_ref().map(|v| *v.get_ref()),
            fall: raw.fall.as_ref().map(|v| *v.get_ref()),
            port: raw.port.as_ref().map(|v| *v.get_ref()),
            method: raw.method.as_ref().map(|v| v.get_ref().as_str()),
            path: raw.path.as_ref().map(|v| v.get_ref().as_str()),
            host: raw.host.as_ref().map(|v| v.get_ref().as_str()),
            expect_status: raw
                .expect_status
                .as_ref()
                .map(|list| list.get_ref().iter().map(|s| *s.get_ref()).collect()),
            body_contains: raw.body_contains.as_ref().map(|v| v.get_ref().as_str()),
            tls_verify: raw.tls_verify.as_ref().map(|v| *v.get_ref()),
            qname: raw.qname.as_ref().map(|v| v.get_ref().as_str()),
            qtype: raw.qtype.as_ref().map(|v| v.get_ref().as_str()),
        };
        ProbeSpec::from_keys(&keys, pool).map_err(|e| {
            let at = match e.key {
                ProbeKey::Table => None,
                ProbeKey::Kind => raw.kind.as_ref().map(Spanned::span),
                ProbeKey::Interval => raw.interval.as_ref().map(Spanned::span),
                ProbeKey::Timeout => raw.timeout.as_ref().map(Spanned::span),
                ProbeKey::Rise => raw.rise.as_ref().map(Spanned::span),
                ProbeKey::Fall => raw.fall.as_ref().map(Spanned::span),
                ProbeKey::Port => raw.port.as_ref().map(Spanned::span),
                ProbeKey::Method => raw.method.as_ref().map(Spanned::span),
                ProbeKey::Path => raw.path.as_ref().map(Spanned::span),
                ProbeKey::Host => raw.host.as_ref().map(Spanned::span),
                ProbeKey::ExpectStatus => raw.expect_status.as_ref().map(Spanned::span),
                ProbeKey::ExpectStatusItem(i) => raw
                    .expect_status
                    .as_ref()
                    .and_then(|list| list.get_ref().get(i))
                    .map(Spanned::span),
                ProbeKey::BodyContains => raw.body_contains.as_ref().map(Spanned::span),
                ProbeKey::TlsVerify => raw.tls_verify.as_ref().map(Spanned::span),
                ProbeKey::Qname => raw.qname.as_ref().map(Spanned::span),
                ProbeKey::Qtype => raw.qtype.as_ref().map(Spanned::span),
            };
            self.err_at(at.unwrap_or(span), e.to_string())
        })
    }

    /// The pool's name must be in a zone (the most specific one answers), not at or under a
    /// delegation, and must not clash with the zone's own data at that name.
    fn check_pool_in_zones(
        &self,
        pool: &PoolSettings,
        span: Range<usize>,
        zones: &[ZoneSettings],
        data: &[Zone],
    ) -> Result<(), ConfigError> {
        let name = &pool.name;
        let Some((settings, zone)) = zones
            .iter()
            .zip(data)
            .filter(|(z, _)| z.origin.zone_of(name))
            .max_by_key(|(z, _)| z.origin.num_labels())
        else {
            let origins: Vec<String> = zones.iter().map(|z| z.origin.to_string()).collect();
            return Err(self.err_at(
                span,
                format!(
                    "pool {name} is outside every configured zone ({})",
                    origins.join(", ")
                ),
            ));
        };
        let file = settings.file.display();
        let key = LowerName::new(name);
        if let Some(cut) = zone.find_cut(&key) {
            return Err(self.err_at(
                span,
                format!(
                    "pool {name} is at or below the delegation {} in {file}; the child zone answers there",
                    cut.0
                ),
            ));
        }
        let types = zone.types_at(&key);
        let clash = match pool.rtype {
            RecordType::CNAME => types.first().map(|t| {
                format!(
                    "pool {name} is a CNAME, but {file} also has {t} records at that name (a CNAME cannot coexist with other data)"
                )
            }),
            rtype => types.iter().find(|&&t| t == rtype || t == RecordType::CNAME).map(|t| {
                format!(
                    "pool {name} has type {rtype}, but {file} also has {t} records at that name; remove them from the zone file"
                )
            }),
        };
        match clash {
            Some(problem) => Err(self.err_at(span, problem)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        time::Duration,
    };

    use super::*;
    use crate::steering::probe::{DnsProbe, ProbeTiming};

    fn testdata() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata"))
    }

    fn source() -> PathBuf {
        testdata().join("hotpool.toml")
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, &source())
    }

    /// The config must fail at `line` of the config file, with `problem` in the message.
    #[track_caller]
    fn assert_fails_at(text: &str, line: usize, problem: &str) -> ConfigError {
        let e = parse(text).expect_err("config must be rejected");
        let shown = e.to_string();
        assert_eq!(e.file(), source(), "{shown}");
        assert_eq!(e.line(), Some(line), "{shown}");
        assert!(e.column().is_some(), "{shown}");
        let prefix = format!("{}:{line}:{}: ", source().display(), e.column().unwrap());
        assert!(shown.starts_with(&prefix), "{shown}");
        assert!(shown.contains(problem), "{shown} does not say {problem:?}");
        e
    }

    /// A valid [[zone]] for the pool tests (lines 1-3).
    const ZONE: &str = "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n";

    fn with_zone(rest: &str) -> String {
        format!("{ZONE}{rest}")
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/hotpool.toml"
        ));
        let cfg = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.server.listen,
            vec![
                IpAddr::from_str("127.0.0.1").unwrap(),
                IpAddr::from_str("::1").unwrap()
            ]
        );
        assert_eq!(cfg.server.port, 53);
        assert_eq!(
            cfg.metrics_listen,
            Some(SocketAddr::from_str("127.0.0.1:9153").unwrap())
        );
        assert_eq!(cfg.xdp.interfaces, vec!["lo".to_string()]);
        assert_eq!(cfg.xdp.mode, AttachMode::Auto);
        assert_eq!(cfg.zones.len(), 1);
        assert!(
            cfg.zones[0]
                .file
                .ends_with("examples/zones/example.test.zone")
        );
        assert_eq!(cfg.zone_data().len(), 1);
        let pools: Vec<(String, RecordType, usize)> = cfg
            .pools
            .iter()
            .map(|p| (p.name.to_string(), p.rtype, p.endpoints.len()))
            .collect();
        assert_eq!(
            pools,
            vec![
                ("www.example.test.".into(), RecordType::A, 2),
                ("v6.example.test.".into(), RecordType::AAAA, 2),
                ("cdn.example.test.".into(), RecordType::CNAME, 1),
            ]
        );
        assert_eq!(cfg.pools[0].endpoints[1].weight, 2);
        let summary = cfg.summary();
        assert!(summary.contains("zone example.test."), "{summary}");
        assert!(
            summary.contains(
                "pool cdn.example.test. CNAME ttl 60: example.cdn-provider.net. (weight 1)"
            ),
            "{summary}"
        );
        assert!(summary.contains("xdp: lo (mode auto)"), "{summary}");

        // Issue 3: the www pool is probed over http and fails open.
        let www = &cfg.pools[0];
        assert_eq!(www.policy, Policy::default());
        assert_eq!(www.all_down, AllDown::FailOpen);
        let probe = www.probe.as_ref().expect("www has a probe");
        assert_eq!(probe.kind.name(), "http");
        assert_eq!(probe.timing.interval, Duration::from_secs(1));
        assert_eq!(probe.timing.timeout, Duration::from_millis(500));
        // Loopback only: the example must send nothing off the machine.
        assert_eq!(probe.http().unwrap().path, "/metrics");
        assert_eq!(probe.port(), Some(9153));
        assert_eq!(www.endpoints[0].probe.as_ref(), Some(probe));
        let b = www.endpoints[1].probe.as_ref().unwrap();
        assert_eq!(
            b.http().unwrap().host.as_deref(),
            Some("origin-b.example.test")
        );
        for pool in cfg.pools.iter().filter(|p| p.probe.is_some()) {
            for e in &pool.endpoints {
                match &e.address {
                    EndpointAddress::Ip(ip) => assert!(ip.is_loopback(), "{ip} is probed"),
                    other => panic!("probed host name {other:?}"),
                }
            }
        }
        assert_eq!(cfg.pools[1].policy, Policy::AllHealthy);
        assert_eq!(cfg.pools[1].probe, None);
        assert_eq!(cfg.pools[2].probe, None);
        assert_eq!(
            cfg.events.log.as_deref(),
            Some(Path::new("/run/hotpool/events.jsonl"))
        );
        assert_eq!(cfg.probes.max_concurrent, 64);
        assert!(
            summary.contains("  probe http GET /metrics port 9153 expect 200, every 1s"),
            "{summary}"
        );
    }

    #[test]
    fn defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.server, ServerSettings::default());
        assert_eq!(
            cfg.server.listen,
            vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            ]
        );
        assert_eq!(cfg.server.port, 53);
        assert_eq!(cfg.server.edns_udp_size, 1232);
        assert_eq!(cfg.server.tcp_idle_timeout, Duration::from_secs(10));
        assert_eq!(cfg.server.tcp_max_connections, 1024);
        assert_eq!(cfg.xdp.pin_path, PathBuf::from("/sys/fs/bpf/hotpool"));
        assert_eq!(cfg.metrics_listen, None);
        assert_eq!(cfg.xdp, XdpSettings::default());
        assert!(cfg.zones.is_empty() && cfg.pools.is_empty());

        let cfg = parse(&with_zone(
            "[[pool]]\nname = \"www.example.test\"\ntype = \"a\"\nendpoints = [{ address = \"192.0.2.1\" }]\n",
        ))
        .unwrap();
        assert_eq!(cfg.pools[0].ttl, 30);
        assert_eq!(cfg.pools[0].endpoints[0].weight, 1);
        assert_eq!(cfg.zones[0].file, testdata().join("example.test.zone"));
    }

    #[test]
    fn server_values() {
        let cfg = parse(
            "[server]\nlisten = [\"127.0.0.1\", \"::1\"]\nport = 5353\nedns_udp_size = 4096\ntcp_idle_timeout = \"1m 30s\"\ntcp_max_connections = 7\npin_path = \"/sys/fs/bpf/x\"\nmetrics_listen = \"[::1]:9153\"\n[xdp]\ninterfaces = [\"eth0\", \"veth-a\"]\nmode = \"generic\"\n",
        )
        .unwrap();
        assert_eq!(cfg.server.port, 5353);
        assert_eq!(cfg.server.edns_udp_size, 4096);
        assert_eq!(cfg.server.tcp_idle_timeout, Duration::from_secs(90));
        assert_eq!(cfg.server.tcp_max_connections, 7);
        assert_eq!(cfg.xdp.pin_path, PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(
            cfg.metrics_listen,
            Some(SocketAddr::from_str("[::1]:9153").unwrap())
        );
        assert_eq!(
            cfg.xdp.interfaces,
            vec!["eth0".to_string(), "veth-a".to_string()]
        );
        assert_eq!(cfg.xdp.mode, AttachMode::Generic);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert_fails_at(
            "[server]\nport = 53\nprot = 54\n",
            3,
            "unknown field `prot`",
        );
        assert_fails_at("[servr]\n", 1, "unknown field `servr`");
        assert_fails_at(
            &with_zone(
                "[[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\nendpoints = [{ address = \"192.0.2.1\", wieght = 2 }]\n",
            ),
            7,
            "unknown field `wieght`",
        );
    }

    #[test]
    fn bad_types_are_rejected() {
        assert_fails_at("[server]\nport = \"53\"\n", 2, "invalid type");
        assert_fails_at("[server]\nport = 70000\n", 2, "u16");
        assert_fails_at("[server]\nlisten = \"::1\"\n", 2, "invalid type");
        assert_fails_at("[xdp]\nmode = \"fast\"\n", 2, "unknown variant `fast`");
        assert_fails_at(
            "[server]\nlisten = [\"::1\", \"localhost\"]\n",
            2,
            "invalid listen address \"localhost\"",
        );
        assert_fails_at(
            "[server]\ntcp_idle_timeout = \"10 parsecs\"\n",
            2,
            "invalid tcp_idle_timeout",
        );
        assert_fails_at(
            "[server]\nmetrics_listen = \"127.0.0.1\"\n",
            2,
            "invalid metrics_listen",
        );
        assert_fails_at("[server]\npin_path = \"bpf/hotpool\"\n", 2, "absolute");
    }

    #[test]
    fn port_and_edns_size_are_checked() {
        assert_fails_at(
            "[server]\nport = 0\n",
            2,
            "port must be between 1 and 65535",
        );
        assert_fails_at(
            "[server]\nedns_udp_size = 511\n",
            2,
            "edns_udp_size 511 is out of range 512..=4096",
        );
        assert_fails_at("[server]\nedns_udp_size = 4097\n", 2, "out of range");
        assert_fails_at("[server]\ntcp_max_connections = 0\n", 2, "at least 1");
    }

    #[test]
    fn interface_names_are_checked() {
        assert_fails_at("[xdp]\ninterfaces = [\"\"]\n", 2, "interface name is empty");
        assert_fails_at(
            "[xdp]\ninterfaces = [\"lo\", \"a-very-long-ifname\"]\n",
            2,
            "longer than 15 bytes (IFNAMSIZ)",
        );
        assert_fails_at(
            "[xdp]\ninterfaces = [\"eth/0\"]\n",
            2,
            "not a valid interface name",
        );
        assert_fails_at("[xdp]\ninterfaces = [\"lo\", \"lo\"]\n", 2, "given twice");
    }

    #[test]
    fn duplicate_zones_are_rejected() {
        let e = assert_fails_at(
            &with_zone("[[zone]]\norigin = \"EXAMPLE.test\"\nfile = \"example.test.zone\"\n"),
            5,
            "zone example.test. is configured twice",
        );
        assert!(e.message().contains("first at line 2"), "{e}");
    }

    #[test]
    fn zone_file_problems_name_the_zone_file() {
        let e =
            parse("[[zone]]\norigin = \"missing.test\"\nfile = \"missing.zone\"\n").unwrap_err();
        assert_eq!(e.file(), testdata().join("missing.zone"));
        assert!(e.to_string().contains("cannot read zone file"), "{e}");

        let e =
            parse("[[zone]]\norigin = \"broken.test\"\nfile = \"bad-syntax.zone\"\n").unwrap_err();
        assert_eq!(e.file(), testdata().join("bad-syntax.zone"));
        assert_eq!(e.line(), Some(6), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "{}:6: ",
                testdata().join("bad-syntax.zone").display()
            )),
            "{e}"
        );

        let e =
            parse("[[zone]]\norigin = \"example.test\"\nfile = \"outside.zone\"\n").unwrap_err();
        assert_eq!(e.file(), testdata().join("outside.zone"));
        assert_eq!(e.line(), Some(5), "{e}");
        assert!(
            e.message()
                .contains("www.example.org. A is outside the zone example.test."),
            "{e}"
        );

        let e = parse("[[zone]]\norigin = \"example.test\"\nfile = \"no-soa.zone\"\n").unwrap_err();
        assert_eq!(e.file(), testdata().join("no-soa.zone"));
        assert!(e.message().contains("has no SOA record"), "{e}");

        let e = parse("[[zone]]\norigin = \"example.test\"\nfile = \"no-ns.zone\"\n").unwrap_err();
        assert_eq!(e.file(), testdata().join("no-ns.zone"));
        assert!(e.message().contains("no NS records"), "{e}");
    }

    #[test]
    fn soa_and_ns_from_the_config() {
        let cfg = parse(
            "[[zone]]\norigin = \"example.test\"\nfile = \"no-soa.zone\"\nsoa = { mname = \"ns1.example.test\", rname = \"hostmaster.example.test\", serial = 42 }\nns = [\"ns2.example.test\"]\nns_ttl = 600\n",
        )
        .unwrap();
        assert_eq!(cfg.zone_data()[0].serial(), 42);
        assert_eq!(cfg.zones[0].ns_ttl, 600);
        let soa = cfg.zones[0].soa.as_ref().unwrap();
        assert_eq!(
            (soa.refresh, soa.retry, soa.expire, soa.minimum, soa.ttl),
            (3600, 600, 604800, 60, 3600)
        );

        // An SOA in both places: the zone file's SOA line is named.
        let e = parse(
            "[[zone]]\norigin = \"example.test\"\nfile = \"example.test.zone\"\nsoa = { mname = \"ns1.example.test\", rname = \"h.example.test\" }\n",
        )
        .unwrap_err();
        assert_eq!(e.file(), testdata().join("example.test.zone"));
        assert_eq!(e.line(), Some(4), "{e}");
        assert!(e.message().contains("keep one"), "{e}");

        assert_fails_at(
            "[[zone]]\norigin = \"example.test\"\nfile = \"no-soa.zone\"\nsoa = { mname = \"ns1.example.test\", rname = \"h.example.test\", ttl = 2147483648 }\n",
            4,
            "soa ttl 2147483648 is larger than 2147483647",
        );
        assert_fails_at(
            "[[zone]]\norigin = \"example.test\"\nfile = \"example.test.zone\"\nns_ttl = 60\n",
            4,
            "ns_ttl is set but ns is not",
        );
    }

    fn pool(name: &str, rtype: &str, endpoints: &str) -> String {
        with_zone(&format!(
            "[[pool]]\nname = \"{name}\"\ntype = \"{rtype}\"\nendpoints = [{endpoints}]\n"
        ))
    }

    #[test]
    fn pool_names_must_be_inside_one_zone_and_unique() {
        assert_fails_at(
            &pool("www.example.org", "A", "{ address = \"192.0.2.1\" }"),
            5,
            "pool www.example.org. is outside every configured zone (example.test.)",
        );
        let twice = format!(
            "{}[[pool]]\nname = \"WWW.example.test.\"\ntype = \"AAAA\"\nendpoints = [{{ address = \"2001:db8::1\" }}]\n",
            pool("www.example.test", "A", "{ address = \"192.0.2.1\" }")
        );
        assert_fails_at(
            &twice,
            9,
            "pool www.example.test. is configured twice (first at line 5)",
        );
        assert_fails_at(
            &pool("host.sub.example.test", "A", "{ address = \"192.0.2.1\" }"),
            5,
            "at or below the delegation sub.example.test.",
        );
        assert_fails_at(
            &pool("*.example.test", "A", "{ address = \"192.0.2.1\" }"),
            5,
            "wildcard",
        );
        assert_fails_at(
            "[[pool]]\nname = \"www.example.test\"\ntype = \"A\"\nendpoints = [{ address = \"192.0.2.1\" }]\n",
            1,
            "pools need a zone",
        );
    }

    #[test]
    fn pools_must_not_clash_with_zone_data() {
        let zone_file = testdata().join("example.test.zone");
        let zone_file = zone_file.display();
        let e = assert_fails_at(
            &pool(
                "info.example.test",
                "CNAME",
                "{ address = \"x.example.net\" }",
            ),
            5,
            "pool info.example.test. is a CNAME, but",
        );
        assert!(
            e.message()
                .contains(&format!("{zone_file} also has TXT records")),
            "{e}"
        );
        assert_fails_at(
            &pool("static.example.test", "A", "{ address = \"192.0.2.9\" }"),
            5,
            "pool static.example.test. has type A, but",
        );
        assert_fails_at(
            &pool(
                "alias.example.test",
                "AAAA",
                "{ address = \"2001:db8::9\" }",
            ),
            5,
            "also has CNAME records",
        );
        // Other types at an A pool's name are fine.
        parse(&pool(
            "info.example.test",
            "A",
            "{ address = \"192.0.2.9\" }",
        ))
        .unwrap();
        parse(&pool(
            "static.example.test",
            "AAAA",
            "{ address = \"2001:db8::9\" }",
        ))
        .unwrap();
    }

    #[test]
    fn endpoints_are_checked() {
        assert_fails_at(
            &pool("www.example.test", "A", ""),
            7,
            "pool www.example.test. has no endpoints",
        );
        let nine: Vec<String> = (1..=9)
            .map(|i| format!("{{ address = \"192.0.2.{i}\" }}"))
            .collect();
        assert_fails_at(
            &pool("www.example.test", "A", &nine.join(", ")),
            7,
            "has 9 endpoints, at most 8 are supported",
        );
        assert_fails_at(
            &pool("www.example.test", "A", "{ address = \"2001:db8::1\" }"),
            7,
            "has type A, so \"2001:db8::1\" must be an IPv4 address",
        );
        assert_fails_at(
            &pool("www.example.test", "A", "{ address = \"web.example.net\" }"),
            7,
            "must be an IPv4 address",
        );
        assert_fails_at(
            &pool("www.example.test", "AAAA", "{ address = \"192.0.2.1\" }"),
            7,
            "has type AAAA, so \"192.0.2.1\" must be an IPv6 address",
        );
        assert_fails_at(
            &pool("www.example.test", "CNAME", "{ address = \"192.0.2.1\" }"),
            7,
            "has type CNAME, so \"192.0.2.1\" must be a host name",
        );
        assert_fails_at(
            &pool(
                "www.example.test",
                "CNAME",
                "{ address = \"www.example.test\" }",
            ),
            7,
            "cannot be a CNAME to itself",
        );
        assert_fails_at(
            &pool(
                "www.example.test",
                "A",
                "{ address = \"192.0.2.1\", weight = 0 }",
            ),
            7,
            "weight must be at least 1",
        );
        assert_fails_at(
            &pool(
                "www.example.test",
                "A",
                "{ address = \"192.0.2.1\" }, { address = \"192.0.2.1\" }",
            ),
            7,
            "lists endpoint 192.0.2.1 twice",
        );
        assert_fails_at(
            &pool("www.example.test", "MX", "{ address = \"192.0.2.1\" }"),
            6,
            "pool type must be A, AAAA or CNAME",
        );
    }

    #[test]
    fn ttls_are_at_most_2_pow_31_minus_1() {
        let text = with_zone(
            "[[pool]]\nname = \"www.example.test\"\ntype = \"A\"\nttl = 2147483648\nendpoints = [{ address = \"192.0.2.1\" }]\n",
        );
        assert_fails_at(&text, 7, "pool ttl 2147483648 is larger than 2147483647");
        let ok = with_zone(
            "[[pool]]\nname = \"www.example.test\"\ntype = \"A\"\nttl = 2147483647\nendpoints = [{ address = \"192.0.2.1\" }]\n",
        );
        assert_eq!(parse(&ok).unwrap().pools[0].ttl, 2147483647);
    }

    #[test]
    fn names_take_any_case_and_optional_trailing_dot() {
        let cfg = parse(
            "[[zone]]\norigin = \"Example.TEST\"\nfile = \"example.test.zone\"\n[[pool]]\nname = \"WWW.Example.Test\"\ntype = \"cname\"\nendpoints = [{ address = \"Edge.CDN.example.NET\" }]\n",
        )
        .unwrap();
        assert_eq!(cfg.zones[0].origin.to_string(), "example.test.");
        assert_eq!(cfg.pools[0].name.to_string(), "www.example.test.");
        assert!(cfg.pools[0].name.is_fqdn());
        assert_eq!(
            cfg.pools[0].endpoints[0].address,
            EndpointAddress::Host(Name::from_str("edge.cdn.example.net.").unwrap())
        );
        assert_fails_at(
            &pool("www..example.test", "A", "{ address = \"192.0.2.1\" }"),
            5,
            "empty label",
        );
    }

    #[test]
    fn load_names_a_missing_config_file() {
        let e = Config::load(&testdata().join("nonexistent.toml")).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "{}: cannot read config file",
                testdata().join("nonexistent.toml").display()
            )),
            "{e}"
        );
    }

    // --- issue 3: policies, probes, events -----------------------------------------

    /// A pool `www.example.test.` of `rtype` with `extra` lines from line 7 on and the
    /// endpoints on the line after them (7 + extra.len()).
    fn pool_with(rtype: &str, extra: &[&str], endpoints: &str) -> String {
        let mut text =
            format!("{ZONE}[[pool]]\nname = \"www.example.test.\"\ntype = \"{rtype}\"\n");
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("endpoints = [{endpoints}]\n"));
        text
    }

    const TWO: &str = "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }";

    fn one_pool(text: &str) -> PoolSettings {
        parse(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .pools
            .remove(0)
    }

    #[test]
    fn policy_probe_and_global_defaults() {
        let cfg = parse(&pool_with("A", &[], TWO)).unwrap();
        let p = &cfg.pools[0];
        // No probe: every endpoint is answered.
        assert_eq!(p.policy, Policy::AllHealthy);
        let probed = parse(&pool_with(
            "A",
            &["probe = { kind = \"tcp\", port = 80 }"],
            TWO,
        ))
        .unwrap();
        assert_eq!(probed.pools[0].policy, Policy::default());
        assert_eq!(
            (&probed.pools[0].policy, &probed.pools[0].all_down),
            (
                &Policy::Fastest {
                    count: 1,
                    deviation_pct: 0,
                    hysteresis_pct: 10,
                },
                &AllDown::FailOpen
            )
        );
        assert_eq!(p.probe, None);
        assert_eq!(p.webhook, None);
        let e: Vec<(u32, AdminState, Option<ProbeSpec>)> = p
            .endpoints
            .iter()
            .map(|e| (e.priority, e.admin, e.probe.clone()))
            .collect();
        assert_eq!(
            e,
            vec![(0, AdminState::Follow, None), (1, AdminState::Follow, None)]
        );
        assert_eq!(cfg.events, EventSettings { log: None });
        assert_eq!(cfg.probes, ProbeSettings { max_concurrent: 64 });
        let empty = parse("").unwrap();
        assert_eq!(empty.events, EventSettings::default());
        assert_eq!(empty.probes.max_concurrent, 64);
    }

    #[test]
    fn probe_defaults_per_kind() {
        let p = one_pool(&pool_with("A", &["probe = { kind = \"http\" }"], TWO));
        let spec = p.probe.clone().unwrap();
        assert_eq!(spec, ProbeSpec::new(ProbeKind::default_http()));
        assert_eq!(spec.timing.interval, Duration::from_secs(5));
        assert_eq!(spec.timing.timeout, Duration::from_secs(2));
        assert_eq!((spec.timing.rise, spec.timing.fall), (2, 3));
        assert_eq!(spec.port(), Some(80));
        let http = spec.http().unwrap();
        assert_eq!((http.method.as_str(), http.path.as_str()), ("GET", "/"));
        assert_eq!(http.host, None);
        assert_eq!(http.expect_status, (200..=399).collect::<Vec<u16>>());
        assert_eq!(http.body_contains, None);
        // Every endpoint gets the pool's spec.
        assert!(p.endpoints.iter().all(|e| e.probe.as_ref() == Some(&spec)));

        let p = one_pool(&pool_with(
            "A",
            &["probe = { kind = \"https\", interval = \"1s\" }"],
            TWO,
        ));
        let spec = p.probe.unwrap();
        assert_eq!(spec.port(), Some(443));
        assert!(matches!(
            spec.kind,
            ProbeKind::Https {
                tls_verify: true,
                ..
            }
        ));
        assert_eq!(
            spec.timing.timeout,
            Duration::from_secs(1),
            "min(interval, 2s)"
        );

        let p = one_pool(&pool_with(
            "A",
            &["probe = { kind = \"dns\", qname = \"WWW.example.test\" }"],
            TWO,
        ));
        let spec = p.probe.unwrap();
        assert_eq!(spec.port(), Some(53));
        assert_eq!(
            spec.kind,
            ProbeKind::Dns(DnsProbe {
                qname: Name::from_str("www.example.test.").unwrap(),
                qtype: RecordType::A,
                port: 53,
            })
        );

        let p = one_pool(&pool_with("A", &["probe = { kind = \"icmp\" }"], TWO));
        assert_eq!(p.probe.unwrap().port(), None);
        let p = one_pool(&pool_with(
            "A",
            &["probe = { kind = \"tcp\", port = 22, interval = \"250ms\" }"],
            TWO,
        ));
        let spec = p.probe.unwrap();
        assert_eq!(spec.port(), Some(22));
        assert_eq!(spec.timing.interval, Duration::from_millis(250));
        assert_eq!(spec.timing.timeout, Duration::from_millis(250));
    }

    #[test]
    fn every_pool_key() {
        let p = one_pool(&pool_with(
            "A",
            &[
                "policy = \"fastest\"",
                "count = 2",
                "deviation = 10",
                "hysteresis = 20",
                "all_down = \"fallback\"",
                "fallback = [\"198.51.100.1\", \"198.51.100.2\"]",
                "webhook = \"http://127.0.0.1:8080/hook\"",
                "probe = { kind = \"http\", interval = \"1s\", timeout = \"500ms\", rise = 4, fall = 5, port = 8000, method = \"HEAD\", path = \"/health?x=1\", host = \"CDN.example.net.\", expect_status = [200, 204, 204], body_contains = \"ok\" }",
            ],
            "{ address = \"192.0.2.10\", weight = 2, priority = 7, state = \"up\", probe = { port = 8080 } }, { address = \"192.0.2.11\", state = \"down\" }",
        ));
        assert_eq!(
            (&p.policy, &p.all_down),
            (
                &Policy::Fastest {
                    count: 2,
                    deviation_pct: 10,
                    hysteresis_pct: 20,
                },
                &AllDown::Fallback(vec![
                    EndpointAddress::Ip(IpAddr::from_str("198.51.100.1").unwrap()),
                    EndpointAddress::Ip(IpAddr::from_str("198.51.100.2").unwrap()),
                ]),
            )
        );
        assert_eq!(p.webhook.as_deref(), Some("http://127.0.0.1:8080/hook"));
        let http = HttpProbe {
            port: 8000,
            method: "HEAD".into(),
            path: "/health?x=1".into(),
            host: Some("cdn.example.net".into()),
            expect_status: vec![200, 204],
            body_contains: Some("ok".into()),
        };
        let pool_spec = ProbeSpec {
            timing: ProbeTiming {
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                rise: 4,
                fall: 5,
            },
            kind: ProbeKind::Http(http.clone()),
        };
        assert_eq!(p.probe.as_ref(), Some(&pool_spec));
        let e0 = &p.endpoints[0];
        assert_eq!((e0.weight, e0.priority, e0.admin), (2, 7, AdminState::Up));
        assert_eq!(
            e0.probe,
            Some(ProbeSpec {
                kind: ProbeKind::Http(HttpProbe { port: 8080, ..http }),
                ..pool_spec.clone()
            })
        );
        let e1 = &p.endpoints[1];
        assert_eq!((e1.priority, e1.admin), (1, AdminState::Down));
        assert_eq!(e1.probe.as_ref(), Some(&pool_spec));

        let p = one_pool(&pool_with(
            "A",
            &[
                "all_down = \"servfail\"",
                "probe = { kind = \"https\", tls_verify = false }",
            ],
            TWO,
        ));
        assert_eq!(p.all_down, AllDown::Servfail);
        assert!(matches!(
            p.probe.unwrap().kind,
            ProbeKind::Https {
                tls_verify: false,
                ..
            }
        ));
        let p = one_pool(&pool_with(
            "A",
            &[
                "probe = { kind = \"dns\", qname = \"www.example.test\", qtype = \"aaaa\", port = 5353 }",
            ],
            TWO,
        ));
        let spec = p.probe.unwrap();
        let ProbeKind::Dns(dns) = &spec.kind else {
            panic!("{spec:?}");
        };
        assert_eq!((dns.qtype, spec.port()), (RecordType::AAAA, Some(5353)));
    }

    #[test]
    fn every_policy_kind() {
        for (text, kind) in [
            ("fastest", Policy::default()),
            ("weighted", Policy::Weighted),
            ("failover", Policy::Failover),
            ("all-healthy", Policy::AllHealthy),
        ] {
            let p = one_pool(&pool_with("A", &[&format!("policy = \"{text}\"")], TWO));
            assert_eq!(p.policy, kind);
            assert_eq!(kind.to_string(), text);
            if let Policy::Fastest { count, .. } = p.policy {
                assert_eq!(count, 1);
            }
        }
        // Weighted and failover CNAME pools are fine.
        let cname = "{ address = \"a.cdn.example.net\" }, { address = \"b.cdn.example.net\" }";
        for policy in ["weighted", "failover"] {
            let p = one_pool(&pool_with(
                "CNAME",
                &[&format!("policy = \"{policy}\"")],
                cname,
            ));
            assert_eq!(p.endpoints.len(), 2);
        }
    }

    #[test]
    fn endpoint_overrides_merge_with_the_pool_probe() {
        let p = one_pool(&pool_with(
            "A",
            &[
                "probe = { kind = \"http\", interval = \"1s\", rise = 3, port = 8080, path = \"/health\", host = \"cdn.example.net\" }",
            ],
            "{ address = \"192.0.2.1\", probe = { interval = \"4s\" } }, { address = \"192.0.2.2\", probe = { kind = \"tcp\", port = 22 } }, { address = \"192.0.2.3\", probe = { kind = \"http\", path = \"/other\" } }",
        ));
        let pool = p.probe.clone().unwrap();
        // Interval overridden: the default timeout follows the endpoint's interval.
        let e0 = p.endpoints[0].probe.clone().unwrap();
        assert_eq!(e0.timing.interval, Duration::from_secs(4));
        assert_eq!(e0.timing.timeout, Duration::from_secs(2));
        assert_eq!((e0.timing.rise, e0.port()), (3, Some(8080)));
        assert_eq!(e0.http().unwrap().path, "/health");
        // Another kind: timing keys inherited, the http keys not.
        let e1 = p.endpoints[1].probe.clone().unwrap();
        assert_eq!(e1.kind, ProbeKind::Tcp { port: 22 });
        assert_eq!(
            (e1.timing.interval, e1.timing.rise, e1.port()),
            (pool.timing.interval, 3, Some(22))
        );
        assert_eq!(e1.http(), None);
        // The same kind named again: everything inherited.
        let e2 = p.endpoints[2].probe.clone().unwrap();
        let pool_http = pool.http().unwrap().clone();
        assert_eq!(
            e2,
            ProbeSpec {
                kind: ProbeKind::Http(HttpProbe {
                    path: "/other".into(),
                    ..pool_http
                }),
                ..pool
            }
        );
    }

    #[test]
    fn probe_timing_errors() {
        let probe = |p: &str| pool_with("A", &[&format!("probe = {{ {p} }}")], TWO);
        assert_fails_at(
            &probe("kind = \"http\", interval = \"100ms\""),
            7,
            "probe interval 100ms is shorter than 250ms",
        );
        assert_fails_at(
            &probe("kind = \"http\", interval = \"soon\""),
            7,
            "invalid probe interval \"soon\"",
        );
        assert_fails_at(
            &probe("kind = \"http\", timeout = \"0s\""),
            7,
            "probe timeout must be longer than 0s",
        );
        assert_fails_at(
            &probe("kind = \"http\", interval = \"1s\", timeout = \"2s\""),
            7,
            "probe timeout 2s is longer than the interval 1s",
        );
        assert_fails_at(
            &probe("kind = \"http\", rise = 0"),
            7,
            "rise must be at least 1",
        );
        assert_fails_at(
            &probe("kind = \"http\", fall = 0"),
            7,
            "fall must be at least 1",
        );
        assert_fails_at(&probe("kind = \"http\", rise = -1"), 7, "invalid value");
        // An endpoint's interval shorter than the pool's timeout: named where it merges.
        let text = pool_with(
            "A",
            &["probe = { kind = \"http\", interval = \"5s\", timeout = \"2s\" }"],
            "{ address = \"192.0.2.1\" },\n{ address = \"192.0.2.2\", probe = { interval = \"1s\" } }",
        );
        assert_fails_at(&text, 7, "probe timeout 2s is longer than the interval 1s");
        let text = pool_with(
            "A",
            &["probe = { kind = \"http\" }"],
            "{ address = \"192.0.2.1\" },\n{ address = \"192.0.2.2\", probe = { interval = \"10ms\" } }",
        );
        assert_fails_at(&text, 9, "shorter than 250ms");
    }

    #[test]
    fn probe_kind_errors() {
        let probe = |p: &str| pool_with("A", &[&format!("probe = {{ {p} }}")], TWO);
        assert_fails_at(&probe("port = 80"), 7, "needs a kind: \"http\"");
        assert_fails_at(&probe("kind = \"smtp\""), 7, "unknown variant `smtp`");
        assert_fails_at(
            &probe("kind = \"http\", paht = \"/\""),
            7,
            "unknown field `paht`",
        );
        assert_fails_at(
            &probe("kind = \"tcp\""),
            7,
            "the tcp probe of pool www.example.test. needs a port",
        );
        assert_fails_at(
            &probe("kind = \"icmp\", port = 7"),
            7,
            "icmp probes have no port",
        );
        assert_fails_at(
            &probe("kind = \"http\", port = 0"),
            7,
            "probe port must be between 1 and 65535",
        );
        assert_fails_at(
            &probe("kind = \"dns\""),
            7,
            "the dns probe of pool www.example.test. needs a qname",
        );
        assert_fails_at(
            &probe("kind = \"dns\", qname = \"a..b\""),
            7,
            "invalid probe qname",
        );
        for qtype in ["ANY", "AXFR", "OPT", "BOGUS"] {
            assert_fails_at(
                &probe(&format!(
                    "kind = \"dns\", qname = \"www.example.test\", qtype = \"{qtype}\""
                )),
                7,
                &format!("invalid probe qtype \"{qtype}\""),
            );
        }
        // Keys of other kinds.
        assert_fails_at(
            &probe("kind = \"tcp\", port = 22, path = \"/\""),
            7,
            "path only applies to http and https probes, not to tcp",
        );
        assert_fails_at(
            &probe("kind = \"dns\", qname = \"x.test\", host = \"a.test\""),
            7,
            "host only applies to http and https probes, not to dns",
        );
        assert_fails_at(
            &probe("kind = \"icmp\", expect_status = [200]"),
            7,
            "expect_status only applies",
        );
        assert_fails_at(
            &probe("kind = \"tcp\", port = 1, method = \"GET\""),
            7,
            "method only applies",
        );
        assert_fails_at(
            &probe("kind = \"tcp\", port = 1, body_contains = \"x\""),
            7,
            "body_contains only applies",
        );
        assert_fails_at(
            &probe("kind = \"http\", tls_verify = false"),
            7,
            "tls_verify only applies to https probes, not to http",
        );
        assert_fails_at(
            &probe("kind = \"http\", qname = \"www.example.test\""),
            7,
            "qname only applies to dns probes, not to http",
        );
        assert_fails_at(
            &probe("kind = \"http\", qtype = \"A\""),
            7,
            "qtype only applies to dns probes",
        );
    }

    #[test]
    fn http_probe_value_errors() {
        let probe =
            |p: &str| pool_with("A", &[&format!("probe = {{ kind = \"http\", {p} }}")], TWO);
        assert_fails_at(
            &probe("path = \"health\""),
            7,
            "probe path \"health\" must start with \"/\"",
        );
        assert_fails_at(&probe("path = \"/a b\""), 7, "contains white space");
        assert_fails_at(&probe("path = \"/a#b\""), 7, "'#'");
        assert_fails_at(
            &probe("method = \"GE T\""),
            7,
            "invalid HTTP method \"GE T\"",
        );
        assert_fails_at(&probe("method = \"\""), 7, "invalid HTTP method");
        assert_fails_at(
            &probe("host = \"192.0.2.1\""),
            7,
            "probe host \"192.0.2.1\" is an address",
        );
        assert_fails_at(
            &probe("host = \"cdn.example.net:8080\""),
            7,
            "must be a host name",
        );
        assert_fails_at(&probe("host = \"a..b\""), 7, "invalid probe host");
        assert_fails_at(
            &probe("expect_status = [200, 600]"),
            7,
            "HTTP status 600 is out of range 100..=599",
        );
        assert_fails_at(&probe("expect_status = [99]"), 7, "HTTP status 99");
        assert_fails_at(
            &probe("expect_status = []"),
            7,
            "expect_status must list at least one status",
        );
        assert_fails_at(&probe("body_contains = \"\""), 7, "body_contains is empty");
        // A method is kept as written (methods are case-sensitive).
        let p = one_pool(&probe("method = \"OPTIONS\""));
        assert_eq!(p.probe.unwrap().http().unwrap().method, "OPTIONS");
    }

    #[test]
    fn endpoint_probe_and_state_errors() {
        assert_fails_at(
            &pool_with(
                "A",
                &[],
                "{ address = \"192.0.2.1\", probe = { port = 8080 } }",
            ),
            7,
            "endpoint 192.0.2.1 has probe overrides, but pool www.example.test. has no probe",
        );
        assert_fails_at(
            &pool_with(
                "A",
                &["probe = { kind = \"http\" }"],
                "{ address = \"192.0.2.1\", probe = { kind = \"tcp\" } }",
            ),
            8,
            "needs a port",
        );
        assert_fails_at(
            &pool_with(
                "A",
                &["probe = { kind = \"http\" }"],
                "{ address = \"192.0.2.1\", state = \"always_on\" }",
            ),
            8,
            "unknown variant `always_on`",
        );
        assert_fails_at(
            &pool_with(
                "A",
                &["probe = { kind = \"http\" }"],
                "{ address = \"192.0.2.1\", probe = { kind = \"http\", bogus = 1 } }",
            ),
            8,
            "unknown field `bogus`",
        );
    }

    #[test]
    fn policy_errors() {
        assert_fails_at(
            &pool_with("A", &["policy = \"random\""], TWO),
            7,
            "unknown variant `random`",
        );
        assert_fails_at(
            &pool_with("A", &["count = 0"], TWO),
            7,
            "count 0 is out of range 1..=8",
        );
        assert_fails_at(
            &pool_with("A", &["count = 9"], TWO),
            7,
            "count 9 is out of range",
        );
        assert_fails_at(
            &pool_with("A", &["policy = \"weighted\"", "count = 2"], TWO),
            8,
            "count only applies to policy \"fastest\", and pool www.example.test. has policy \"weighted\"",
        );
        assert_fails_at(
            &pool_with("A", &["deviation = 1001"], TWO),
            7,
            "deviation 1001% is larger than 1000%",
        );
        assert_fails_at(
            &pool_with("A", &["hysteresis = 5000"], TWO),
            7,
            "hysteresis 5000% is larger than 1000%",
        );
        assert_fails_at(
            &pool_with("A", &["policy = \"failover\"", "hysteresis = 5"], TWO),
            8,
            "hysteresis only applies to policy \"fastest\"",
        );
        assert_fails_at(
            &pool_with("A", &["policy = \"all-healthy\"", "deviation = 5"], TWO),
            8,
            "deviation only applies",
        );
        let cname = "{ address = \"a.cdn.example.net\" }";
        assert_fails_at(
            &pool_with("CNAME", &["count = 2"], cname),
            7,
            "is a CNAME, which answers one record; count must be 1",
        );
        assert_fails_at(
            &pool_with("CNAME", &["policy = \"all-healthy\""], cname),
            7,
            "all-healthy needs an A or AAAA pool",
        );
        // Percent values at the limits are fine.
        let p = one_pool(&pool_with(
            "A",
            &["deviation = 1000", "hysteresis = 0", "count = 8"],
            TWO,
        ));
        assert_eq!(
            p.policy,
            Policy::Fastest {
                deviation_pct: 1000,
                hysteresis_pct: 0,
                count: 8
            }
        );
    }

    #[test]
    fn all_down_and_fallback_errors() {
        assert_fails_at(
            &pool_with("A", &["all_down = \"fallback\""], TWO),
            7,
            "pool www.example.test. has all_down = \"fallback\" but no fallback = [...] addresses",
        );
        assert_fails_at(
            &pool_with("A", &["fallback = [\"198.51.100.1\"]"], TWO),
            7,
            "has fallback addresses, but they are only used with all_down = \"fallback\"",
        );
        assert_fails_at(
            &pool_with(
                "A",
                &["all_down = \"servfail\"", "fallback = [\"198.51.100.1\"]"],
                TWO,
            ),
            8,
            "only used with all_down = \"fallback\"",
        );
        assert_fails_at(
            &pool_with("A", &["all_down = \"nxdomain\""], TWO),
            7,
            "unknown variant `nxdomain`",
        );
        let fallback = |rtype: &str, list: &str, endpoints: &str| {
            pool_with(
                rtype,
                &["all_down = \"fallback\"", &format!("fallback = [{list}]")],
                endpoints,
            )
        };
        assert_fails_at(
            &fallback("A", "\"2001:db8::1\"", TWO),
            8,
            "has type A, so \"2001:db8::1\" must be an IPv4 address",
        );
        assert_fails_at(
            &fallback("A", "\"198.51.100.1\", \"198.51.100.1\"", TWO),
            8,
            "lists fallback 198.51.100.1 twice",
        );
        assert_fails_at(
            &fallback("A", "", TWO),
            8,
            "has 0 fallback addresses; give 1 to 8",
        );
        let cname = "{ address = \"a.cdn.example.net\" }";
        assert_fails_at(
            &fallback("CNAME", "\"x.example.net\", \"y.example.net\"", cname),
            8,
            "has 2 fallback addresses; give 1 to 1",
        );
        assert_fails_at(
            &fallback("CNAME", "\"www.example.test\"", cname),
            8,
            "cannot be a CNAME to itself",
        );
        let p = one_pool(&fallback("CNAME", "\"Static.Example.NET\"", cname));
        assert_eq!(
            p.all_down,
            AllDown::Fallback(vec![EndpointAddress::Host(
                Name::from_str("static.example.net.").unwrap()
            )])
        );
        let p = one_pool(&fallback(
            "AAAA",
            "\"2001:db8::99\"",
            "{ address = \"2001:db8::1\" }",
        ));
        assert_eq!(p.all_down.to_string(), "fallback to 2001:db8::99");
    }

    #[test]
    fn webhook_errors() {
        let hook = |url: &str| pool_with("A", &[&format!("webhook = \"{url}\"")], TWO);
        assert_fails_at(&hook("not a url"), 7, "invalid webhook URL \"not a url\"");
        assert_fails_at(
            &hook("ftp://127.0.0.1/hook"),
            7,
            "webhook URL \"ftp://127.0.0.1/hook\" must be http or https, not \"ftp\"",
        );
        assert_fails_at(&hook("http://"), 7, "invalid webhook URL");
        assert_fails_at(&hook("mailto:ops@example.net"), 7, "must be http or https");
        let p = one_pool(&hook("https://hooks.example.net:8443/hotpool?pool=www"));
        assert_eq!(
            p.webhook.as_deref(),
            Some("https://hooks.example.net:8443/hotpool?pool=www")
        );
        let p = one_pool(&hook("http://127.0.0.1:8080"));
        assert_eq!(p.webhook.as_deref(), Some("http://127.0.0.1:8080/"));
    }

    #[test]
    fn failover_priorities_must_be_distinct() {
        let failover = |endpoints: &str| pool_with("A", &["policy = \"failover\""], endpoints);
        assert_fails_at(
            &failover(
                "{ address = \"192.0.2.1\", priority = 5 },\n{ address = \"192.0.2.2\", priority = 5 }",
            ),
            9,
            "pool www.example.test.: endpoints 192.0.2.1 and 192.0.2.2 both have priority 5; failover needs distinct priorities",
        );
        // A default (the position) can clash with an explicit priority.
        assert_fails_at(
            &failover("{ address = \"192.0.2.1\", priority = 1 },\n{ address = \"192.0.2.2\" }"),
            9,
            "both have priority 1",
        );
        let p = one_pool(&failover(
            "{ address = \"192.0.2.1\", priority = 10 }, { address = \"192.0.2.2\", priority = 0 }",
        ));
        let priorities: Vec<u32> = p.endpoints.iter().map(|e| e.priority).collect();
        assert_eq!(priorities, vec![10, 0]);
        // Other policies do not use priorities, so repeats are fine there.
        let p = one_pool(&pool_with(
            "A",
            &[],
            "{ address = \"192.0.2.1\", priority = 1 }, { address = \"192.0.2.2\", priority = 1 }",
        ));
        assert_eq!(p.endpoints[1].priority, 1);
    }

    #[test]
    fn events_and_probes_sections() {
        let cfg =
            parse("[events]\nlog = \"events.jsonl\"\n[probes]\nmax_concurrent = 3\n").unwrap();
        assert_eq!(cfg.events.log, Some(testdata().join("events.jsonl")));
        assert_eq!(cfg.probes.max_concurrent, 3);
        let cfg = parse("[events]\nlog = \"/var/lib/hotpool/events.jsonl\"\n").unwrap();
        assert_eq!(
            cfg.events.log,
            Some(PathBuf::from("/var/lib/hotpool/events.jsonl"))
        );
        assert_fails_at("[events]\nlog = \"\"\n", 2, "events log path is empty");
        assert_fails_at("[events]\nlgo = \"x\"\n", 2, "unknown field `lgo`");
        assert_fails_at(
            "[probes]\nmax_concurrent = 0\n",
            2,
            "max_concurrent must be at least 1",
        );
        assert_fails_at("[probes]\nmax_concurrent = -4\n", 2, "invalid value");
        assert_fails_at(
            "[probes]\ninterval = \"1s\"\n",
            2,
            "unknown field `interval`",
        );
    }

    #[test]
    fn summary_shows_policies_probes_and_pins() {
        let mut text = pool_with(
            "A",
            &[
                "policy = \"failover\"",
                "all_down = \"fallback\"",
                "fallback = [\"198.51.100.1\"]",
                "webhook = \"http://127.0.0.1:8080/hook\"",
                "probe = { kind = \"https\", path = \"/h\", host = \"cdn.example.net\", expect_status = [200, 201, 202, 204], body_contains = \"ok\", tls_verify = false, interval = \"1s\" }",
            ],
            "{ address = \"192.0.2.1\", state = \"up\" }, { address = \"192.0.2.2\", probe = { kind = \"icmp\" } }",
        );
        text.push_str(
            "[[pool]]\nname = \"dns.example.test\"\ntype = \"A\"\nprobe = { kind = \"dns\", qname = \"x.test\", qtype = \"TXT\" }\nendpoints = [{ address = \"192.0.2.3\" }]\n",
        );
        text.push_str("[events]\nlog = \"/tmp/e.jsonl\"\n[probes]\nmax_concurrent = 9\n");
        let summary = parse(&text).unwrap().summary();
        for want in [
            "  policy failover; all down: fallback to 198.51.100.1\n",
            "  probe https GET /h port 443 host cdn.example.net expect 200-202,204 body contains \"ok\" tls_verify off, every 1s, timeout 1s, rise 2, fall 3\n",
            "  endpoint 192.0.2.1: priority 0, pinned up\n",
            "  endpoint 192.0.2.2: priority 1, probe icmp, every 1s, timeout 1s, rise 2, fall 3\n",
            "  webhook http://127.0.0.1:8080/hook\n",
            "  policy fastest (count 1, deviation 0%, hysteresis 10%); all down: fail-open\n",
            "  probe dns x.test. TXT port 53, every 5s, timeout 2s, rise 2, fall 3\n",
            "event log: /tmp/e.jsonl\n",
            "probes: at most 9 in flight\n",
        ] {
            assert!(
                summary.contains(want),
                "{summary}\ndoes not contain\n{want}"
            );
        }
        assert_eq!(status_ranges(&[404, 200, 201, 200]), "200-201,404");
    }

    #[test]
    fn the_commented_example_pools_are_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/hotpool.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        // Uncomment every "# [[pool]]" block (up to the next blank line).
        let mut out = String::new();
        let mut in_block = false;
        for line in text.lines() {
            if line == "# [[pool]]" {
                in_block = true;
            } else if line.is_empty() {
                in_block = false;
            }
            let line = match line.strip_prefix("# ") {
                Some(rest) if in_block => rest,
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
        let cfg = Config::parse(&out, path).unwrap_or_else(|e| panic!("{e}"));
        let api = cfg
            .pools
            .iter()
            .find(|p| p.name.to_string() == "api.example.test.")
            .expect("the weighted example");
        assert_eq!(api.policy, Policy::Weighted);
        assert_eq!(api.all_down, AllDown::Servfail);
        assert_eq!(api.probe.as_ref().unwrap().kind.name(), "tcp");
        let db = cfg
            .pools
            .iter()
            .find(|p| p.name.to_string() == "db.example.test.")
            .expect("the failover example");
        assert_eq!(db.policy, Policy::Failover);
        assert_eq!(db.probe.as_ref().unwrap().kind.name(), "dns");
        assert!(matches!(db.all_down, AllDown::Fallback(_)));
    }
}
