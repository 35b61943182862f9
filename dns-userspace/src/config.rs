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
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use hickory_proto::rr::{
    LowerName, Name, RData, RecordType,
    rdata::{A, AAAA, CNAME},
};
use serde::Deserialize;
use toml::Spanned;

use crate::zone::{Zone, ZoneError};

/// Default UDP/TCP port.
pub const DEFAULT_PORT: u16 = 53;
/// Default EDNS UDP payload size we advertise (DNS flag day 2020).
pub const DEFAULT_EDNS_UDP_SIZE: u16 = 1232;
/// Smallest and largest accepted `edns_udp_size`.
pub const EDNS_UDP_SIZE_RANGE: std::ops::RangeInclusive<u16> = 512..=4096;
/// Default idle timeout of a TCP connection (RFC 7766 §6.2.3 suggests seconds).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit of concurrent TCP connections.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 1024;
/// Default bpffs directory the daemon pins its maps under.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/hotpool";
/// Default TTL of a pool's answers.
pub const DEFAULT_POOL_TTL: u32 = 30;
/// Most endpoints in one pool (the XDP path answers at most this many records).
pub const MAX_ENDPOINTS: usize = dns_common::MAX_ANSWER_RRS;
/// Largest TTL (RFC 2181 §8: the top bit of a TTL must be zero).
pub const MAX_TTL: u32 = i32::MAX as u32;
/// Default TTL of NS records given in the config.
pub const DEFAULT_NS_TTL: u32 = 3600;
/// Longest interface name (`IFNAMSIZ` is 16 including the terminating NUL).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was read from (zone files are relative to its directory).
    pub source: PathBuf,
    pub server: ServerSettings,
    pub xdp: XdpSettings,
    pub zones: Vec<ZoneSettings>,
    pub pools: Vec<PoolSettings>,
    /// The zones as loaded and validated, in the order of `zones`.
    zone_data: Vec<Zone>,
}

/// `[server]`: the UDP/TCP server and daemon-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// Addresses to listen on (UDP and TCP). Default `0.0.0.0` and `::`.
    pub listen: Vec<IpAddr>,
    /// Port to listen on. Default 53.
    pub port: u16,
    /// EDNS UDP payload size we advertise, 512..=4096. Default 1232.
    pub edns_udp_size: u16,
    /// A TCP connection without a new query for this long is closed. Default 10 s.
    pub tcp_idle_timeout: Duration,
    /// Most concurrent TCP connections. Default 1024.
    pub tcp_max_connections: usize,
    /// bpffs directory for pinned maps. Default `/sys/fs/bpf/hotpool`.
    pub pin_path: PathBuf,
    /// Prometheus endpoint, off by default.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: vec![
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ],
            port: DEFAULT_PORT,
            edns_udp_size: DEFAULT_EDNS_UDP_SIZE,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            tcp_max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
            pin_path: PathBuf::from(DEFAULT_PIN_PATH),
            metrics_listen: None,
        }
    }
}

/// `[xdp]`: where the XDP fast path is attached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpSettings {
    /// Interfaces to attach to; empty means no XDP (the daemon answers everything).
    pub interfaces: Vec<String>,
    pub mode: XdpModeSetting,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Native (driver) mode where supported, generic (SKB) mode otherwise.
    #[default]
    Auto,
    /// Driver mode only; attaching fails if the driver lacks XDP support.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

impl fmt::Display for XdpModeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// One `[[zone]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSettings {
    /// The zone's apex (fully qualified, lower case).
    pub origin: Name,
    /// The RFC 1035 zone file, resolved relative to the config file's directory.
    pub file: PathBuf,
    /// SOA given in the config instead of the zone file.
    pub soa: Option<SoaSettings>,
    /// Apex NS names given in the config (added to any in the zone file).
    pub ns: Vec<Name>,
    /// TTL of the NS records in `ns`.
    pub ns_ttl: u32,
}

/// A zone's SOA given in the config (`soa = { ... }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoaSettings {
    pub mname: Name,
    pub rname: Name,
    /// Default 1.
    pub serial: u32,
    /// Default 3600. This and the other timers are at most 2^31-1.
    pub refresh: u32,
    /// Default 600.
    pub retry: u32,
    /// Default 604800.
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308). Default 60.
    pub minimum: u32,
    /// TTL of the SOA record itself. Default 3600.
    pub ttl: u32,
}

/// One `[[pool]]`: a name whose answer the daemon steers between endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Owner name (fully qualified, lower case).
    pub name: Name,
    /// A, AAAA or CNAME.
    pub rtype: RecordType,
    /// TTL of the answer records, at most 2^31-1.
    pub ttl: u32,
    /// 1 to 8 endpoints, in config order.
    pub endpoints: Vec<EndpointSettings>,
}

/// One endpoint of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSettings {
    /// An address for A/AAAA pools, a host name for CNAME pools.
    pub address: EndpointAddress,
    /// Relative weight, at least 1. Default 1.
    pub weight: u32,
}

/// What an endpoint answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointAddress {
    Ip(IpAddr),
    Host(Name),
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Host(name) => write!(f, "{name}"),
        }
    }
}

impl EndpointSettings {
    /// The record data this endpoint answers with.
    pub fn rdata(&self) -> RData {
        match &self.address {
            EndpointAddress::Ip(IpAddr::V4(ip)) => RData::A(A(*ip)),
            EndpointAddress::Ip(IpAddr::V6(ip)) => RData::AAAA(AAAA(*ip)),
            EndpointAddress::Host(name) => RData::CNAME(CNAME(name.clone())),
        }
    }
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
            format!("bpf pin path: {}", server.pin_path.display()),
            match server.metrics_listen {
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
        }
        lines.push(String::new());
        lines.join("\n")
    }
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
    mode: Option<Spanned<XdpModeSetting>>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
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
        let server = match raw.server {
            Some(s) => self.server(s)?,
            None => ServerSettings::default(),
        };
        let xdp = match raw.xdp {
            Some(x) => self.xdp(x)?,
            None => XdpSettings::default(),
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

        Ok(Config {
            source: self.source.to_path_buf(),
            server,
            xdp,
            zones,
            pools,
            zone_data,
        })
    }

    fn line_col(&self, span: Range<usize>) -> (usize, usize) {
        let e = self.err_at(span, "");
        (e.line.unwrap_or(1), e.column.unwrap_or(1))
    }

    fn server(&self, raw: RawServer) -> Result<ServerSettings, ConfigError> {
        let mut s = ServerSettings::default();
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
            s.pin_path = path;
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
            s.metrics_listen = Some(addr);
        }
        Ok(s)
    }

    fn xdp(&self, raw: RawXdp) -> Result<XdpSettings, ConfigError> {
        let mut x = XdpSettings::default();
        for i in raw.interfaces.unwrap_or_default() {
            let name = i.get_ref();
            let problem = if name.is_empty() {
                Some("interface name is empty".to_string())
            } else if name.len() > MAX_IFNAME_LEN {
                Some(format!(
                    "interface name {name:?} is longer than {MAX_IFNAME_LEN} bytes (IFNAMSIZ)"
                ))
            } else if name == "."
                || name == ".."
                || name
                    .chars()
                    .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
            {
                Some(format!("{name:?} is not a valid interface name"))
            } else if x.interfaces.contains(name) {
                Some(format!("interface {name:?} is given twice"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(self.err_at(i.span(), problem));
            }
            x.interfaces.push(i.into_inner());
        }
        if let Some(mode) = raw.mode {
            x.mode = mode.into_inner();
        }
        Ok(x)
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
        let endpoints_span = raw.endpoints.span();
        let raw_endpoints = raw.endpoints.into_inner();
        if raw_endpoints.is_empty() {
            return Err(self.err_at(endpoints_span, format!("pool {name} has no endpoints")));
        }
        if raw_endpoints.len() > MAX_ENDPOINTS {
            return Err(self.err_at(
                endpoints_span,
                format!(
                    "pool {name} has {} endpoints, at most {MAX_ENDPOINTS} are supported",
                    raw_endpoints.len()
                ),
            ));
        }
        let mut endpoints: Vec<EndpointSettings> = Vec::with_capacity(raw_endpoints.len());
        for e in raw_endpoints {
            let e = e.into_inner();
            let text = e.address.get_ref().trim();
            let address = match rtype {
                RecordType::A => match IpAddr::from_str(text) {
                    Ok(ip @ IpAddr::V4(_)) => EndpointAddress::Ip(ip),
                    _ => {
                        return Err(self.err_at(
                            e.address.span(),
                            format!("pool {name} has type A, so {text:?} must be an IPv4 address"),
                        ));
                    }
                },
                RecordType::AAAA => match IpAddr::from_str(text) {
                    Ok(ip @ IpAddr::V6(_)) => EndpointAddress::Ip(ip),
                    _ => {
                        return Err(self.err_at(
                            e.address.span(),
                            format!(
                                "pool {name} has type AAAA, so {text:?} must be an IPv6 address"
                            ),
                        ));
                    }
                },
                _ => {
                    if IpAddr::from_str(text).is_ok() {
                        return Err(self.err_at(
                            e.address.span(),
                            format!(
                                "pool {name} has type CNAME, so {text:?} must be a host name, not an address"
                            ),
                        ));
                    }
                    let target = self.name(&e.address, "CNAME target")?;
                    if target.is_root() {
                        return Err(
                            self.err_at(e.address.span(), "a CNAME target cannot be the root")
                        );
                    }
                    if target == name {
                        return Err(self.err_at(
                            e.address.span(),
                            format!("pool {name} cannot be a CNAME to itself"),
                        ));
                    }
                    EndpointAddress::Host(target)
                }
            };
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
            endpoints.push(EndpointSettings { address, weight });
        }
        Ok(PoolSettings {
            name,
            rtype,
            ttl,
            endpoints,
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

/// Parses a domain name from the config: with or without the trailing dot (always taken as
/// absolute), in any case (folded to lower case).
pub fn parse_name(text: &str) -> Result<Name, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the name is empty".into());
    }
    if text.contains("..") {
        return Err(format!("{text:?} has an empty label"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!("{text:?} contains white space"));
    }
    let mut name = Name::from_str(text).map_err(|e| format!("{text:?}: {e}"))?;
    name.set_fqdn(true);
    let name = name.to_lowercase();
    // The wire form (labels plus the root) is at most 255 octets.
    let wire_len = name.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
    if wire_len > dns_common::MAX_NAME_LEN {
        return Err(format!("{text:?} is longer than 255 octets"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            cfg.server.metrics_listen,
            Some(SocketAddr::from_str("127.0.0.1:9153").unwrap())
        );
        assert_eq!(cfg.xdp.interfaces, vec!["lo".to_string()]);
        assert_eq!(cfg.xdp.mode, XdpModeSetting::Auto);
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
        assert_eq!(cfg.server.pin_path, PathBuf::from("/sys/fs/bpf/hotpool"));
        assert_eq!(cfg.server.metrics_listen, None);
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
        assert_eq!(cfg.server.pin_path, PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(
            cfg.server.metrics_listen,
            Some(SocketAddr::from_str("[::1]:9153").unwrap())
        );
        assert_eq!(
            cfg.xdp.interfaces,
            vec!["eth0".to_string(), "veth-a".to_string()]
        );
        assert_eq!(cfg.xdp.mode, XdpModeSetting::Generic);
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
}
