//! What a probe is: its timing and its kind with the kind's own settings, and the rules a
//! `probe = { ... }` table must follow to become one ([`ProbeSpec::from_keys`]).

use std::{net::IpAddr, str::FromStr as _, time::Duration};

use hickory_proto::rr::{Name, RecordType};

use crate::dns::parse_name;

/// Default probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest accepted probe interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Longest accepted probe interval: an endpoint probed less often has no useful verdict
/// (and "1M" is a month).
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest accepted probe timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The default timeout is the interval, but at most this.
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// Default consecutive successes to go up.
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures to go down.
pub const DEFAULT_FALL: u32 = 3;

/// The probe kinds as the config names them (`kind = "..."`), in [`ProbeKind`]'s order.
pub const KIND_NAMES: &[&str] = &["http", "https", "tcp", "icmp", "dns"];

/// The effective probe of one endpoint (pool defaults with endpoint overrides).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub timing: ProbeTiming,
    pub kind: ProbeKind,
}

/// When a probe runs and how its results count, whatever its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// Time between probes. Default 5 s, at least 250 ms, at most 1 h.
    pub interval: Duration,
    /// Default min(interval, 2 s); more than 0 and at most the interval and 60 s.
    pub timeout: Duration,
    /// Consecutive successes to go up. Default 2.
    pub rise: u32,
    /// Consecutive failures to go down. Default 3.
    pub fall: u32,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            timeout: Self::default_timeout(DEFAULT_INTERVAL),
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }
}

impl ProbeTiming {
    /// The timeout used when none is configured: the interval, at most 2 s.
    pub fn default_timeout(interval: Duration) -> Duration {
        interval.min(DEFAULT_MAX_TIMEOUT)
    }
}

/// How an endpoint is probed, with the settings only that kind has. See the module docs
/// of [`crate::steering::probe`] for what each measures. The bigger settings are boxed, so
/// a TCP or ICMP probe (the kinds used by the thousand) stays small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// An HTTP request until the response headers.
    Http(Box<HttpProbe>),
    /// As `Http`, over TLS.
    Https {
        http: Box<HttpProbe>,
        /// Verify the certificate (Mozilla roots). Default true.
        tls_verify: bool,
    },
    /// A TCP connect.
    Tcp { port: u16 },
    /// An ICMP echo.
    Icmp,
    /// One UDP query.
    Dns(Box<DnsProbe>),
}

/// The settings of an `http` or `https` probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    /// Default 80 (http) or 443 (https).
    pub port: u16,
    /// HTTP method. Default GET.
    pub method: String,
    /// HTTP path (and query). Default "/".
    pub path: String,
    /// HTTP Host header and TLS SNI; default the endpoint's host name, else its address.
    pub host: Option<String>,
    /// Statuses that count as healthy. Default 200..=399.
    pub expect_status: Vec<u16>,
    /// Text the first [`super::BODY_LIMIT`] bytes of the body must contain.
    pub body_contains: Option<String>,
}

impl HttpProbe {
    /// A request to `port` with every other default.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            method: "GET".to_string(),
            path: "/".to_string(),
            host: None,
            expect_status: (200..=399).collect(),
            body_contains: None,
        }
    }

    /// Whether `status` counts as healthy.
    pub fn expects(&self, status: u16) -> bool {
        self.expect_status.contains(&status)
    }
}

/// The settings of a `dns` probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsProbe {
    /// The name asked for.
    pub qname: Name,
    /// The type asked for. Default A.
    pub qtype: RecordType,
    /// Default 53.
    pub port: u16,
}

impl ProbeKind {
    /// An `http` probe with every default.
    pub fn default_http() -> Self {
        Self::Http(Box::new(HttpProbe::new(80)))
    }

    /// An `https` probe with every default.
    pub fn default_https() -> Self {
        Self::Https {
            http: Box::new(HttpProbe::new(443)),
            tls_verify: true,
        }
    }

    /// A `dns` probe for `qname` with every default.
    pub fn default_dns(qname: Name) -> Self {
        Self::Dns(Box::new(DnsProbe {
            qname,
            qtype: RecordType::A,
            port: 53,
        }))
    }

    /// The kind's name in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Https { .. } => "https",
            Self::Tcp { .. } => "tcp",
            Self::Icmp => "icmp",
            Self::Dns(_) => "dns",
        }
    }

    /// The port probed (`icmp` has none).
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Http(http) | Self::Https { http, .. } => Some(http.port),
            Self::Tcp { port } => Some(*port),
            Self::Icmp => None,
            Self::Dns(dns) => Some(dns.port),
        }
    }

    /// The HTTP settings of an `http` or `https` probe.
    pub fn http(&self) -> Option<&HttpProbe> {
        match self {
            Self::Http(http) | Self::Https { http, .. } => Some(http),
            Self::Tcp { .. } | Self::Icmp | Self::Dns(_) => None,
        }
    }
}

impl ProbeSpec {
    /// A probe of `kind` with the default timing.
    pub fn new(kind: ProbeKind) -> Self {
        Self {
            timing: ProbeTiming::default(),
            kind,
        }
    }

    /// The port probed (`icmp` has none).
    pub fn port(&self) -> Option<u16> {
        self.kind.port()
    }

    /// The HTTP settings of an `http` or `https` probe.
    pub fn http(&self) -> Option<&HttpProbe> {
        self.kind.http()
    }
}

/// A `probe = { ... }` table's keys as written in the config (an endpoint's overrides
/// already merged with its pool's); `kind` is one of [`KIND_NAMES`].
#[derive(Clone, Debug, Default)]
pub struct ProbeKeys<'a> {
    pub kind: Option<&'a str>,
    /// A duration such as "5s".
    pub interval: Option<&'a str>,
    /// A duration such as "500ms".
    pub timeout: Option<&'a str>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub port: Option<u16>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub host: Option<&'a str>,
    pub expect_status: Option<Vec<u16>>,
    pub body_contains: Option<&'a str>,
    pub tls_verify: Option<bool>,
    pub qname: Option<&'a str>,
    pub qtype: Option<&'a str>,
}

/// The key a [`ProbeSpecError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKey {
    /// The table as a whole (a key is missing).
    Table,
    Kind,
    Interval,
    Timeout,
    Rise,
    Fall,
    Port,
    Method,
    Path,
    Host,
    ExpectStatus,
    /// One entry of `expect_status`.
    ExpectStatusItem(usize),
    BodyContains,
    TlsVerify,
    Qname,
    Qtype,
}

/// A probe table that does not make a probe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct ProbeSpecError {
    pub key: ProbeKey,
    pub problem: String,
}

fn error(key: ProbeKey, problem: impl Into<String>) -> ProbeSpecError {
    ProbeSpecError {
        key,
        problem: problem.into(),
    }
}

impl ProbeSpec {
    /// The probe a table of pool `pool` describes, defaults applied: the timing keys are
    /// checked first, then that no key of another kind is given, then the kind's own keys.
    pub fn from_keys(keys: &ProbeKeys<'_>, pool: &Name) -> Result<Self, ProbeSpecError> {
        let Some(kind) = keys.kind else {
            return Err(error(
                ProbeKey::Table,
                format!("the probe of pool {pool} needs a kind: {}", kind_list()),
            ));
        };
        let timing = timing(keys)?;
        let is_http = matches!(kind, "http" | "https");

        // Keys that only some kinds have.
        let not_for = |key: ProbeKey, text: &str, kinds: &str| {
            error(
                key,
                format!("{text} only applies to {kinds} probes, not to {kind}"),
            )
        };
        if !is_http {
            let http_keys = [
                (ProbeKey::Method, "method", keys.method.is_some()),
                (ProbeKey::Path, "path", keys.path.is_some()),
                (ProbeKey::Host, "host", keys.host.is_some()),
                (
                    ProbeKey::ExpectStatus,
                    "expect_status",
                    keys.expect_status.is_some(),
                ),
                (
                    ProbeKey::BodyContains,
                    "body_contains",
                    keys.body_contains.is_some(),
                ),
            ];
            if let Some((key, text, _)) = http_keys.into_iter().find(|(_, _, given)| *given) {
                return Err(not_for(key, text, "http and https"));
            }
        }
        if keys.tls_verify.is_some() && kind != "https" {
            return Err(not_for(ProbeKey::TlsVerify, "tls_verify", "https"));
        }
        if kind != "dns" {
            for (key, text, given) in [
                (ProbeKey::Qname, "qname", keys.qname.is_some()),
                (ProbeKey::Qtype, "qtype", keys.qtype.is_some()),
            ] {
                if given {
                    return Err(not_for(key, text, "dns"));
                }
            }
        }
        let port = match keys.port {
            Some(_) if kind == "icmp" => {
                return Err(error(ProbeKey::Port, "icmp probes have no port"));
            }
            Some(0) => {
                return Err(error(
                    ProbeKey::Port,
                    "probe port must be between 1 and 65535",
                ));
            }
            port => port,
        };

        let kind = match kind {
            "http" => ProbeKind::Http(Box::new(http(keys, port.unwrap_or(80))?)),
            "https" => ProbeKind::Https {
                http: Box::new(http(keys, port.unwrap_or(443))?),
                tls_verify: keys.tls_verify.unwrap_or(true),
            },
            "tcp" => match port {
                Some(port) => ProbeKind::Tcp { port },
                None => {
                    return Err(error(
                        ProbeKey::Kind,
                        format!("the tcp probe of pool {pool} needs a port"),
                    ));
                }
            },
            "icmp" => ProbeKind::Icmp,
            "dns" => ProbeKind::Dns(Box::new(dns(keys, port.unwrap_or(53), pool)?)),
            other => {
                return Err(error(
                    ProbeKey::Kind,
                    format!("unknown probe kind {other:?}; use {}", kind_list()),
                ));
            }
        };
        Ok(Self { timing, kind })
    }
}

/// `"http", "https", "tcp", "icmp" or "dns"`.
fn kind_list() -> String {
    let quoted: Vec<String> = KIND_NAMES.iter().map(|k| format!("{k:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn duration(text: &str, key: ProbeKey, what: &str) -> Result<Duration, ProbeSpecError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        error(
            key,
            format!("invalid {what} {text:?}: {e} (write e.g. \"5s\" or \"500ms\")"),
        )
    })
}

/// `interval`, `timeout`, `rise` and `fall`.
fn timing(keys: &ProbeKeys<'_>) -> Result<ProbeTiming, ProbeSpecError> {
    let mut timing = ProbeTiming::default();
    if let Some(text) = keys.interval {
        let d = duration(text, ProbeKey::Interval, "probe interval")?;
        if d < MIN_INTERVAL {
            return Err(error(
                ProbeKey::Interval,
                format!(
                    "probe interval {} is shorter than {}",
                    humantime::format_duration(d),
                    humantime::format_duration(MIN_INTERVAL)
                ),
            ));
        }
        if d > MAX_INTERVAL {
            return Err(error(
                ProbeKey::Interval,
                format!(
                    "probe interval {} is longer than {}",
                    humantime::format_duration(d),
                    humantime::format_duration(MAX_INTERVAL)
                ),
            ));
        }
        timing.interval = d;
    }
    timing.timeout = match keys.timeout {
        Some(text) => {
            let d = duration(text, ProbeKey::Timeout, "probe timeout")?;
            if d.is_zero() {
                return Err(error(
                    ProbeKey::Timeout,
                    "probe timeout must be longer than 0s",
                ));
            }
            if d > MAX_TIMEOUT {
                return Err(error(
                    ProbeKey::Timeout,
                    format!(
                        "probe timeout {} is longer than {}",
                        humantime::format_duration(d),
                        humantime::format_duration(MAX_TIMEOUT)
                    ),
                ));
            }
            if d > timing.interval {
                return Err(error(
                    ProbeKey::Timeout,
                    format!(
                        "probe timeout {} is longer than the interval {}",
                        humantime::format_duration(d),
                        humantime::format_duration(timing.interval)
                    ),
                ));
            }
            d
        }
        None => ProbeTiming::default_timeout(timing.interval),
    };
    for (key, text, value, out) in [
        (ProbeKey::Rise, "rise", keys.rise, &mut timing.rise),
        (ProbeKey::Fall, "fall", keys.fall, &mut timing.fall),
    ] {
        if let Some(v) = value {
            if v == 0 {
                return Err(error(key, format!("{text} must be at least 1")));
            }
            *out = v;
        }
    }
    Ok(timing)
}

/// The HTTP keys of an `http` or `https` probe to `port`.
fn http(keys: &ProbeKeys<'_>, port: u16) -> Result<HttpProbe, ProbeSpecError> {
    let mut http = HttpProbe::new(port);
    if let Some(m) = keys.method {
        let method = m.trim();
        // RFC 9110 §5.6.2: a method is a token.
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if method.is_empty() || !method.chars().all(tchar) {
            return Err(error(
                ProbeKey::Method,
                format!("invalid HTTP method {m:?}"),
            ));
        }
        http.method = method.to_string();
    }
    if let Some(path) = keys.path {
        if !path.starts_with('/') {
            return Err(error(
                ProbeKey::Path,
                format!("probe path {path:?} must start with \"/\""),
            ));
        }
        if path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            return Err(error(
                ProbeKey::Path,
                format!("probe path {path:?} contains white space, a control character or '#'"),
            ));
        }
        http.path = path.to_string();
    }
    if let Some(h) = keys.host {
        let text = h.trim();
        let valid_chars = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if IpAddr::from_str(text).is_ok() {
            return Err(error(
                ProbeKey::Host,
                format!(
                    "probe host {text:?} is an address; leave host out to send the endpoint's address"
                ),
            ));
        }
        if !valid_chars {
            return Err(error(
                ProbeKey::Host,
                format!(
                    "probe host {text:?} must be a host name (letters, digits, '-', '_' and '.'; no port)"
                ),
            ));
        }
        let name = parse_name(text)
            .map_err(|e| error(ProbeKey::Host, format!("invalid probe host: {e}")))?;
        http.host = Some(name.to_ascii().trim_end_matches('.').to_string());
    }
    if let Some(list) = &keys.expect_status {
        if list.is_empty() {
            return Err(error(
                ProbeKey::ExpectStatus,
                "expect_status must list at least one status",
            ));
        }
        let mut statuses = Vec::with_capacity(list.len());
        for (i, &code) in list.iter().enumerate() {
            if !(100..=599).contains(&code) {
                return Err(error(
                    ProbeKey::ExpectStatusItem(i),
                    format!("HTTP status {code} is out of range 100..=599"),
                ));
            }
            if !statuses.contains(&code) {
                statuses.push(code);
            }
        }
        http.expect_status = statuses;
    }
    if let Some(b) = keys.body_contains {
        if b.is_empty() {
            return Err(error(
                ProbeKey::BodyContains,
                "body_contains is empty; leave it out",
            ));
        }
        http.body_contains = Some(b.to_string());
    }
    Ok(http)
}

/// The keys of a `dns` probe to `port`.
fn dns(keys: &ProbeKeys<'_>, port: u16, pool: &Name) -> Result<DnsProbe, ProbeSpecError> {
    let Some(q) = keys.qname else {
        return Err(error(
            ProbeKey::Kind,
            format!("the dns probe of pool {pool} needs a qname to ask for"),
        ));
    };
    let qname =
        parse_name(q).map_err(|e| error(ProbeKey::Qname, format!("invalid probe qname: {e}")))?;
    let qtype = match keys.qtype {
        None => RecordType::A,
        Some(t) => {
            let text = t.trim().to_ascii_uppercase();
            RecordType::from_str(&text)
                .ok()
                .filter(|t| {
                    !matches!(
                        t,
                        RecordType::ANY
                            | RecordType::AXFR
                            | RecordType::IXFR
                            | RecordType::OPT
                            | RecordType::ZERO
                    ) && !matches!(t, RecordType::Unknown(_))
                })
                .ok_or_else(|| {
                    error(
                        ProbeKey::Qtype,
                        format!(
                            "invalid probe qtype {t:?}: expected a record type such as A, AAAA, NS, SOA or TXT"
                        ),
                    )
                })?
        }
    };
    Ok(DnsProbe { qname, qtype, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults() {
        let s = ProbeSpec::new(ProbeKind::default_https());
        assert_eq!(s.timing.interval, Duration::from_secs(5));
        assert_eq!(s.timing.timeout, Duration::from_secs(2));
        assert_eq!((s.timing.rise, s.timing.fall), (2, 3));
        assert_eq!(s.port(), Some(443));
        let http = s.http().unwrap();
        assert_eq!((http.method.as_str(), http.path.as_str()), ("GET", "/"));
        assert!(http.expects(200) && http.expects(399) && !http.expects(199) && !http.expects(400));
        assert!(matches!(
            s.kind,
            ProbeKind::Https {
                tls_verify: true,
                ..
            }
        ));
        let dns = ProbeKind::default_dns(Name::root());
        let ProbeKind::Dns(d) = &dns else {
            panic!("{dns:?}");
        };
        assert_eq!(d.qtype, RecordType::A);
        assert_eq!(ProbeSpec::new(ProbeKind::Icmp).port(), None);
        assert_eq!(dns.port(), Some(53));
        assert_eq!(
            ProbeTiming::default_timeout(Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn every_kind_name_is_listed_and_builds_its_kind() {
        let pool = Name::from_ascii("www.example.test.").unwrap();
        for name in KIND_NAMES {
            let keys = ProbeKeys {
                kind: Some(name),
                port: (*name == "tcp").then_some(22),
                qname: (*name == "dns").then_some("q.example.test"),
                ..ProbeKeys::default()
            };
            let spec = ProbeSpec::from_keys(&keys, &pool).unwrap();
            assert_eq!(spec.kind.name(), *name);
        }
        assert_eq!(
            kind_list(),
            "\"http\", \"https\", \"tcp\", \"icmp\" or \"dns\""
        );
    }
}
