//! Health and latency probes: one probe of an endpoint ([`probe_once`]) and the scheduler
//! that probes every endpoint forever ([`run_probes`]).
//!
//! # What each kind measures
//!
//! Every probe connects to the endpoint's address directly (for a host-name endpoint of a
//! CNAME pool, the name is looked up first; the lookup is not part of the figure). The
//! whole probe, from the first packet to the verdict, must finish within the timeout, or it
//! fails with "timeout after …".
//!
//! * `http` / `https`: TCP connect + (for `https`) the TLS handshake + sending the request +
//!   waiting until the response's status line and headers have arrived. That is reqwest's
//!   `send()`, which resolves once hyper has parsed the headers; for the small header blocks
//!   of a health endpoint it is time to first byte plus a few microseconds. Reading the
//!   body is not part of the figure. Every probe opens a fresh connection (no keep-alive
//!   pool), so connect and handshake are measured each time. The request carries
//!   `User-Agent: hotpool/<version> (health probe)`, the `Host` header and TLS SNI are the
//!   configured `host` (or the endpoint's host name; an address otherwise), and redirects
//!   are not followed (a 3xx is a status like any other). It succeeds when the status is
//!   in `expect_status` and, if `body_contains` is set, the first 64 KiB of the body
//!   contain that text. TLS certificates are verified against the bundled Mozilla roots
//!   unless `tls_verify = false`. No proxy from the environment is used.
//! * `tcp`: the TCP three-way handshake (connect() until established); the connection is
//!   closed at once.
//! * `icmp`: one ICMP (or ICMPv6) echo request until its reply (the round-trip time the
//!   `surge-ping` crate measures). Needs a raw socket (root or `CAP_NET_RAW`) or an
//!   unprivileged ping socket (`net.ipv4.ping_group_range`).
//! * `dns`: one UDP query for `dns_qname`/`dns_qtype` (RD clear) from sending until the
//!   matching reply. It succeeds on NOERROR with at least one answer record.
//!
//! A failed probe is `ok: false` with a `detail` and never a latency.
//!
//! # Scheduling
//!
//! [`run_probes`] runs each (pool, endpoint) job on its own interval: first at a random
//! offset within one interval (so a restart does not fire every probe at once), then
//! every interval ± 10 %, random each time. At most `max_concurrent` probes are in flight
//! (a [`Semaphore`]); a probe that waits for a slot runs late rather than being skipped, and
//! a late job does not catch up with a burst. Probes run on their own tokio tasks and only
//! send results on a channel, so they never block the DNS path.

use std::{
    error::Error as _,
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};
use serde::Deserialize;
use tokio::{
    net::{TcpStream, UdpSocket},
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
};

use crate::steering::{endpoint::EndpointAddress, health::ProbeOutcome};

/// The User-Agent of HTTP(S) probes.
pub const USER_AGENT: &str = concat!("hotpool/", env!("CARGO_PKG_VERSION"), " (health probe)");
/// Most body bytes read when looking for `body_contains`.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Default probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest accepted probe interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// The default timeout is the interval, but at most this.
pub const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// Default consecutive successes to go up.
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures to go down.
pub const DEFAULT_FALL: u32 = 3;
/// Default most probes in flight at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;
/// Successive runs of a job are this fraction of the interval apart at most, either way.
pub const JITTER: f64 = 0.1;

/// `[probes]`: settings shared by every probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Most probes in flight at once. Default 64.
    pub max_concurrent: usize,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// How an endpoint is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Http,
    Https,
    Tcp,
    Icmp,
    Dns,
}

impl ProbeKind {
    /// The port probed when none is configured (`tcp` needs one, `icmp` has none).
    pub fn default_port(self) -> Option<u16> {
        match self {
            Self::Http => Some(80),
            Self::Https => Some(443),
            Self::Dns => Some(53),
            Self::Tcp | Self::Icmp => None,
        }
    }

    /// `http` or `https`.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
            Self::Icmp => "icmp",
            Self::Dns => "dns",
        })
    }
}

/// The effective probe settings of one endpoint (pool defaults with endpoint overrides).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    /// Time between probes. Default 5 s, at least 250 ms.
    pub interval: Duration,
    /// Default min(interval, 2 s); more than 0 and at most the interval.
    pub timeout: Duration,
    /// Consecutive successes to go up. Default 2.
    pub rise: u32,
    /// Consecutive failures to go down. Default 3.
    pub fall: u32,
    /// Default 80 (http), 443 (https), 53 (dns); required for tcp; none for icmp.
    pub port: Option<u16>,
    /// HTTP method. Default GET.
    pub method: String,
    /// HTTP path (and query). Default "/".
    pub path: String,
    /// HTTP Host header and TLS SNI; default the endpoint's host name, else its address.
    pub host: Option<String>,
    /// Statuses that count as healthy. Default 200..=399.
    pub expect_status: Vec<u16>,
    /// Text the first [`BODY_LIMIT`] bytes of the body must contain.
    pub body_contains: Option<String>,
    /// Verify the TLS certificate (https). Default true.
    pub tls_verify: bool,
    /// Name a `dns` probe asks for.
    pub dns_qname: Option<Name>,
    /// Type a `dns` probe asks for. Default A.
    pub dns_qtype: RecordType,
}

impl ProbeSpec {
    /// A probe of `kind` with every default (a `tcp` probe still needs a port, a `dns`
    /// probe a name).
    pub fn new(kind: ProbeKind) -> Self {
        Self {
            kind,
            interval: DEFAULT_INTERVAL,
            timeout: Self::default_timeout(DEFAULT_INTERVAL),
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            port: kind.default_port(),
            method: "GET".to_string(),
            path: "/".to_string(),
            host: None,
            expect_status: (200..=399).collect(),
            body_contains: None,
            tls_verify: true,
            dns_qname: None,
            dns_qtype: RecordType::A,
        }
    }

    /// The timeout used when none is configured: the interval, at most 2 s.
    pub fn default_timeout(interval: Duration) -> Duration {
        interval.min(DEFAULT_MAX_TIMEOUT)
    }

    /// Whether `status` counts as healthy.
    pub fn expects(&self, status: u16) -> bool {
        self.expect_status.contains(&status)
    }

    /// The port probed: the configured one or the kind's default.
    pub fn effective_port(&self) -> Option<u16> {
        self.port.or(self.kind.default_port())
    }
}

/// What a probe is sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The endpoint's address. Not used when `hostname` is set: the name is looked up at
    /// every probe (CDN names move).
    pub address: IpAddr,
    /// The endpoint's host name (CNAME pools), without the trailing dot. Also the default
    /// HTTP Host and TLS SNI.
    pub hostname: Option<String>,
}

impl ProbeTarget {
    /// The target for a configured endpoint.
    pub fn from_endpoint(address: &EndpointAddress) -> Self {
        match address {
            EndpointAddress::Ip(ip) => Self {
                address: *ip,
                hostname: None,
            },
            EndpointAddress::Host(name) => Self {
                address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                hostname: Some(name.to_ascii().trim_end_matches('.').to_string()),
            },
        }
    }
}

/// Probes `target` once as `spec` says.
pub async fn probe_once(spec: &ProbeSpec, target: &ProbeTarget) -> ProbeOutcome {
    Prober::new(Arc::new(IcmpClients::default()))
        .probe(spec, target)
        .await
}

/// One (pool, endpoint) probe for [`run_probes`].
#[derive(Clone, Debug)]
pub struct ProbeJob {
    pub pool: usize,
    pub endpoint: usize,
    pub spec: ProbeSpec,
    pub target: ProbeTarget,
}

/// Runs every job forever on its jittered interval with at most `max_concurrent` probes
/// in flight, sending `(pool, endpoint, finished at, outcome)` on `tx`. Returns when
/// `shutdown` becomes true (or its sender is dropped) or when `tx`'s receiver is gone,
/// after every job has stopped.
pub async fn run_probes(
    jobs: Vec<ProbeJob>,
    max_concurrent: usize,
    tx: mpsc::Sender<(usize, usize, Instant, ProbeOutcome)>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let icmp = Arc::new(IcmpClients::default());
    let mut tasks = JoinSet::new();
    for job in jobs {
        tasks.spawn(run_job(
            job,
            slots.clone(),
            icmp.clone(),
            tx.clone(),
            shutdown.clone(),
        ));
    }
    drop(tx);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!("a probe task failed: {e}");
        }
    }
}

async fn run_job(
    job: ProbeJob,
    slots: Arc<Semaphore>,
    icmp: Arc<IcmpClients>,
    tx: mpsc::Sender<(usize, usize, Instant, ProbeOutcome)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ProbeJob {
        pool,
        endpoint,
        spec,
        target,
    } = job;
    let mut prober = Prober::new(icmp);
    let mut next = tokio::time::Instant::now() + first_delay(spec.interval, rand::random());
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let outcome = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            o = prober.probe(&spec, &target) => o,
        };
        drop(permit);
        let finished = Instant::now();
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            sent = tx.send((pool, endpoint, finished, outcome)) => if sent.is_err() {
                return;
            },
        }
        // Start to start, one jittered interval apart; a job that fell behind (a slow
        // probe, a wait for a slot) runs at once, rather than catching up in a burst.
        next = (next + next_delay(spec.interval, rand::random())).max(tokio::time::Instant::now());
    }
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Offset of a job's first run: `u` (uniform in [0, 1)) of an interval.
fn first_delay(interval: Duration, u: f64) -> Duration {
    interval.mul_f64(u.clamp(0.0, 1.0))
}

/// Time between runs: the interval ± [`JITTER`], `u` uniform in [0, 1).
fn next_delay(interval: Duration, u: f64) -> Duration {
    interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * u.clamp(0.0, 1.0))
}

// ---------------------------------------------------------------------------------------

/// ICMP clients (one socket per address family), shared by every job and opened on first
/// use.
#[derive(Default)]
struct IcmpClients {
    v4: Mutex<Option<surge_ping::Client>>,
    v6: Mutex<Option<surge_ping::Client>>,
}

impl IcmpClients {
    fn get(&self, v6: bool) -> io::Result<surge_ping::Client> {
        let slot = if v6 { &self.v6 } else { &self.v4 };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let kind = if v6 {
            surge_ping::ICMP::V6
        } else {
            surge_ping::ICMP::V4
        };
        let client = surge_ping::Client::new(&surge_ping::Config::builder().kind(kind).build())?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// Echo sequence numbers, unique across jobs sharing a socket (surge-ping refuses two
/// identical requests in flight, e.g. two pools probing the same address).
static ICMP_SEQUENCE: AtomicU16 = AtomicU16::new(0);

/// What an HTTP client was built for: it is rebuilt when this changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HttpClientKey {
    tls_verify: bool,
    /// (host name, address) the name is pinned to.
    pinned: Option<(String, SocketAddr)>,
}

/// Probes on behalf of one job, keeping its HTTP client between probes.
struct Prober {
    icmp: Arc<IcmpClients>,
    http: Option<(HttpClientKey, reqwest::Client)>,
}

impl Prober {
    fn new(icmp: Arc<IcmpClients>) -> Self {
        Self { icmp, http: None }
    }

    async fn probe(&mut self, spec: &ProbeSpec, target: &ProbeTarget) -> ProbeOutcome {
        let address = match &target.hostname {
            None => target.address,
            Some(name) => match resolve(name, spec.timeout).await {
                Ok(ip) => ip,
                Err(detail) => return ProbeOutcome::failure(detail),
            },
        };
        let port = spec.effective_port();
        let result = match spec.kind {
            ProbeKind::Http | ProbeKind::Https => {
                let port = port.unwrap_or(80);
                match self.http_request(spec, target, SocketAddr::new(address, port)) {
                    Ok((client, request)) => {
                        tokio::time::timeout(spec.timeout, http(spec, client, request)).await
                    }
                    Err(detail) => Ok(ProbeOutcome::failure(detail)),
                }
            }
            ProbeKind::Tcp => match port {
                Some(port) => {
                    tokio::time::timeout(spec.timeout, tcp(SocketAddr::new(address, port))).await
                }
                None => Ok(ProbeOutcome::failure("tcp probe without a port")),
            },
            ProbeKind::Icmp => match self.icmp.get(address.is_ipv6()) {
                Ok(client) => Ok(icmp(client, address, spec.timeout).await),
                Err(e) => Ok(ProbeOutcome::failure(format!(
                    "cannot open an ICMP socket: {}",
                    first_line(&e.to_string())
                ))),
            },
            ProbeKind::Dns => match &spec.dns_qname {
                Some(qname) => {
                    let server = SocketAddr::new(address, port.unwrap_or(53));
                    tokio::time::timeout(spec.timeout, dns(server, qname, spec.dns_qtype)).await
                }
                None => Ok(ProbeOutcome::failure("dns probe without a name to ask for")),
            },
        };
        result.unwrap_or_else(|_| {
            ProbeOutcome::failure(format!(
                "timeout after {}",
                humantime::format_duration(spec.timeout)
            ))
        })
    }

    /// The client (cached) and request of an HTTP(S) probe to `addr`.
    fn http_request(
        &mut self,
        spec: &ProbeSpec,
        target: &ProbeTarget,
        addr: SocketAddr,
    ) -> Result<(reqwest::Client, reqwest::Request), String> {
        let scheme = if spec.kind == ProbeKind::Https {
            "https"
        } else {
            "http"
        };
        let host = spec
            .host
            .as_deref()
            .or(target.hostname.as_deref())
            .map(|h| h.trim_end_matches('.'));
        // A host name is pinned to the endpoint's address, so the URL (and with it Host
        // and SNI) carries the name while the connection goes to the endpoint. An address
        // given as host only sets the Host header.
        let (url_host, pinned, host_header) = match host {
            Some(h) if h.parse::<IpAddr>().is_err() => {
                (h.to_string(), Some((h.to_string(), addr)), None)
            }
            Some(h) => (url_ip(addr.ip()), None, Some(h.to_string())),
            None => (url_ip(addr.ip()), None, None),
        };
        let url = format!("{scheme}://{url_host}:{}{}", addr.port(), spec.path);
        let url = reqwest::Url::parse(&url).map_err(|e| format!("invalid URL {url}: {e}"))?;
        let method = reqwest::Method::from_bytes(spec.method.as_bytes())
            .map_err(|_| format!("invalid HTTP method {:?}", spec.method))?;
        let key = HttpClientKey {
            tls_verify: spec.tls_verify,
            pinned,
        };
        let client = match &self.http {
            Some((k, client)) if *k == key => client.clone(),
            _ => {
                let client = http_client(&key)?;
                self.http = Some((key, client.clone()));
                client
            }
        };
        let mut request = client.request(method, url);
        if let Some(h) = host_header {
            request = request.header(reqwest::header::HOST, h);
        }
        let request = request
            .build()
            .map_err(|e| format!("invalid request: {}", error_detail(&e)))?;
        Ok((client, request))
    }
}

fn http_client(key: &HttpClientKey) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .danger_accept_invalid_certs(!key.tls_verify);
    if let Some((name, addr)) = &key.pinned {
        builder = builder.resolve(name, *addr);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {}", error_detail(&e)))
}

fn url_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// Looks up a host-name endpoint (not part of the measured figure).
async fn resolve(name: &str, timeout: Duration) -> Result<IpAddr, String> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((name, 0))).await {
        Err(_) => Err(format!(
            "cannot resolve {name}: timeout after {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(format!("cannot resolve {name}: {e}")),
        Ok(Ok(mut addrs)) => addrs
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("cannot resolve {name}: no addresses")),
    }
}

async fn http(
    spec: &ProbeSpec,
    client: reqwest::Client,
    request: reqwest::Request,
) -> ProbeOutcome {
    let start = Instant::now();
    let mut response = match client.execute(request).await {
        Ok(r) => r,
        Err(e) => return ProbeOutcome::failure(error_detail(&e)),
    };
    let latency = start.elapsed();
    let status = response.status().as_u16();
    if !spec.expects(status) {
        return ProbeOutcome::failure(format!("HTTP {status}"));
    }
    let Some(needle) = &spec.body_contains else {
        return ProbeOutcome::success(latency, format!("HTTP {status}"));
    };
    let mut body: Vec<u8> = Vec::new();
    loop {
        if contains(&body, needle.as_bytes()) {
            return ProbeOutcome::success(latency, format!("HTTP {status}, body matches"));
        }
        if body.len() >= BODY_LIMIT {
            break;
        }
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = BODY_LIMIT - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => {
                return ProbeOutcome::failure(format!(
                    "HTTP {status}, reading the body failed: {}",
                    error_detail(&e)
                ));
            }
        }
    }
    ProbeOutcome::failure(format!(
        "HTTP {status}, body lacks {needle:?} (read {} bytes)",
        body.len()
    ))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

async fn tcp(addr: SocketAddr) -> ProbeOutcome {
    let start = Instant::now();
    match TcpStream::connect(addr).await {
        Ok(stream) => {
            let latency = start.elapsed();
            drop(stream);
            ProbeOutcome::success(latency, "connected")
        }
        Err(e) => ProbeOutcome::failure(io_detail(&e)),
    }
}

async fn icmp(client: surge_ping::Client, address: IpAddr, timeout: Duration) -> ProbeOutcome {
    let mut pinger = client
        .pinger(address, surge_ping::PingIdentifier(rand::random()))
        .await;
    pinger.timeout(timeout);
    let seq = surge_ping::PingSequence(ICMP_SEQUENCE.fetch_add(1, Ordering::Relaxed));
    match pinger.ping(seq, &[0u8; 16]).await {
        Ok((_, rtt)) => ProbeOutcome::success(rtt, "echo reply"),
        Err(surge_ping::SurgeError::Timeout { .. }) => ProbeOutcome::failure(format!(
            "timeout after {}",
            humantime::format_duration(timeout)
        )),
        Err(surge_ping::SurgeError::IOError(e)) => ProbeOutcome::failure(io_detail(&e)),
        Err(e) => ProbeOutcome::failure(format!("icmp: {e}")),
    }
}

async fn dns(server: SocketAddr, qname: &Name, qtype: RecordType) -> ProbeOutcome {
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return ProbeOutcome::failure(format!("cannot open a UDP socket: {e}")),
    };
    if let Err(e) = socket.connect(server).await {
        return ProbeOutcome::failure(io_detail(&e));
    }
    let id: u16 = rand::random();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(qname.clone(), qtype));
    let bytes = match query.to_vec() {
        Ok(b) => b,
        Err(e) => return ProbeOutcome::failure(format!("cannot encode the query: {e}")),
    };
    let start = Instant::now();
    if let Err(e) = socket.send(&bytes).await {
        return ProbeOutcome::failure(io_detail(&e));
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => return ProbeOutcome::failure(io_detail(&e)),
        };
        let latency = start.elapsed();
        // Anything that is not the reply to our query (wrong id or question, garbage) is
        // ignored, as a resolver would.
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let answers_us = reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && reply.queries.len() == 1
            && reply.queries[0].name() == qname
            && reply.queries[0].query_type() == qtype;
        if !answers_us {
            continue;
        }
        let rcode = reply.metadata.response_code;
        let answers = reply.answers.len();
        return if rcode != ResponseCode::NoError {
            ProbeOutcome::failure(format!("DNS {}", rcode_name(rcode)))
        } else if answers == 0 {
            ProbeOutcome::failure("DNS NOERROR without an answer")
        } else {
            ProbeOutcome::success(
                latency,
                format!(
                    "DNS NOERROR, {answers} answer{}",
                    if answers == 1 { "" } else { "s" }
                ),
            )
        };
    }
}

fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// A short description of a socket error.
fn io_detail(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::PermissionDenied => format!("permission denied ({e})"),
        _ => e.to_string(),
    }
}

/// A short description of a reqwest error: the socket error if there is one, else the
/// innermost cause (e.g. the TLS verification failure), prefixed with the stage.
fn error_detail(e: &reqwest::Error) -> String {
    let mut source = e.source();
    let mut innermost = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>()
            && io.get_ref().is_none()
        {
            return io_detail(io);
        }
        innermost = Some(s);
        source = s.source();
    }
    let cause = innermost.map_or_else(|| e.to_string(), |s| s.to_string());
    if e.is_connect() {
        format!("connect failed: {cause}")
    } else if e.is_body() || e.is_decode() {
        format!("body: {cause}")
    } else {
        format!("request failed: {cause}")
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        str::FromStr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use hickory_proto::rr::{RData, Record, rdata::A};
    use tokio::{
        io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn target() -> ProbeTarget {
        ProbeTarget {
            address: LOCALHOST,
            hostname: None,
        }
    }

    fn spec(kind: ProbeKind, port: u16) -> ProbeSpec {
        ProbeSpec {
            port: Some(port),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            ..ProbeSpec::new(kind)
        }
    }

    #[track_caller]
    fn assert_ok(o: &ProbeOutcome) {
        assert!(o.ok, "probe failed: {o:?}");
        assert!(o.latency.is_some(), "{o:?}");
    }

    #[track_caller]
    fn assert_fails(o: &ProbeOutcome, detail: &str) {
        assert!(!o.ok, "probe succeeded: {o:?}");
        assert_eq!(o.latency, None, "{o:?}");
        assert!(
            o.detail.contains(detail),
            "{:?} does not say {detail:?}",
            o.detail
        );
    }

    /// A port on loopback that nothing listens on.
    async fn closed_port() -> u16 {
        let l = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        l.local_addr().unwrap().port()
    }

    // --- a tiny HTTP server ----------------------------------------------------------

    #[derive(Clone)]
    struct Reply {
        status: u16,
        body: String,
        delay: Duration,
    }

    impl Reply {
        fn new(status: u16, body: &str) -> Self {
            Self {
                status,
                body: body.into(),
                delay: Duration::ZERO,
            }
        }
    }

    #[derive(Default)]
    struct Seen {
        /// Every request's head (request line and headers), lower-cased header names.
        requests: Mutex<Vec<String>>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Seen {
        fn last_header(&self, name: &str) -> Option<String> {
            let requests = self.requests.lock().unwrap();
            let head = requests.last()?;
            head.lines().skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        }
    }

    async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, reply: Reply, seen: &Seen) {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        seen.requests
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head).into_owned());
        tokio::time::sleep(reply.delay).await;
        // Done before replying, so a client that has its answer finds it counted out.
        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
        let response = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            reply.status,
            reply.body.len(),
            reply.body
        );
        let _ = s.write_all(response.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    /// An HTTP server on loopback answering every request with `reply`.
    async fn http_server(reply: Reply) -> (u16, Arc<Seen>) {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (reply, s) = (reply.clone(), s.clone());
                tokio::spawn(async move { serve_http(conn, reply, &s).await });
            }
        });
        (port, seen)
    }

    /// An HTTPS server on loopback with a self-signed certificate for `localhost`.
    async fn https_server(reply: Reply) -> (u16, Arc<Seen>) {
        use tokio_rustls::rustls::{
            self,
            pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        };
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (reply, s, acceptor) = (reply.clone(), s.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(conn).await {
                        let sni = tls.get_ref().1.server_name().map(str::to_string);
                        serve_http(tls, reply, &s).await;
                        s.requests
                            .lock()
                            .unwrap()
                            .push(format!("SNI\r\nsni: {}\r\n", sni.unwrap_or_default()));
                    }
                });
            }
        });
        (port, seen)
    }

    // --- tcp ------------------------------------------------------------------------

    #[tokio::test]
    async fn tcp_probe_connects() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let o = probe_once(&spec(ProbeKind::Tcp, port), &target()).await;
        assert_ok(&o);
        assert_eq!(o.detail, "connected");
        assert!(o.latency.unwrap() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn tcp_probe_to_a_closed_port_is_refused() {
        let port = closed_port().await;
        let o = probe_once(&spec(ProbeKind::Tcp, port), &target()).await;
        assert_fails(&o, "connection refused");
        assert_eq!(o.detail, "connection refused");
    }

    #[tokio::test]
    async fn tcp_probe_over_ipv6_loopback() {
        let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        let t = ProbeTarget {
            address: IpAddr::V6(Ipv6Addr::LOCALHOST),
            hostname: None,
        };
        assert_ok(&probe_once(&spec(ProbeKind::Tcp, port), &t).await);
    }

    #[tokio::test]
    async fn host_name_targets_are_looked_up_at_probe_time() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // "localhost" resolves from /etc/hosts to loopback (IPv4 first or ::1: listen on
        // both where possible).
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).await.ok();
        let t = ProbeTarget::from_endpoint(&EndpointAddress::Host(
            Name::from_str("localhost.").unwrap(),
        ));
        assert_eq!(t.hostname.as_deref(), Some("localhost"));
        assert_ok(&probe_once(&spec(ProbeKind::Tcp, port), &t).await);
        drop(v6);

        let t = ProbeTarget {
            address: LOCALHOST,
            hostname: Some("no-such-host.invalid".into()),
        };
        assert_fails(
            &probe_once(&spec(ProbeKind::Tcp, port), &t).await,
            "cannot resolve no-such-host.invalid",
        );
    }

    // --- http -----------------------------------------------------------------------

    #[tokio::test]
    async fn http_probe_200_is_healthy() {
        let (port, seen) = http_server(Reply::new(200, "hello")).await;
        let mut s = spec(ProbeKind::Http, port);
        s.path = "/health?full=1".into();
        let o = probe_once(&s, &target()).await;
        assert_ok(&o);
        assert_eq!(o.detail, "HTTP 200");
        let head = seen.requests.lock().unwrap()[0].clone();
        assert!(
            head.starts_with("GET /health?full=1 HTTP/1.1\r\n"),
            "{head}"
        );
        assert_eq!(seen.last_header("user-agent").unwrap(), USER_AGENT);
        assert!(USER_AGENT.starts_with("hotpool/0.") && USER_AGENT.ends_with(" (health probe)"));
        // No Host configured: the endpoint's address.
        assert_eq!(
            seen.last_header("host").unwrap(),
            format!("127.0.0.1:{port}")
        );
    }

    #[tokio::test]
    async fn http_probe_503_fails_and_statuses_are_configurable() {
        let (port, _) = http_server(Reply::new(503, "busy")).await;
        let o = probe_once(&spec(ProbeKind::Http, port), &target()).await;
        assert_fails(&o, "HTTP 503");
        assert_eq!(o.detail, "HTTP 503");

        let mut s = spec(ProbeKind::Http, port);
        s.expect_status = vec![503];
        assert_ok(&probe_once(&s, &target()).await);

        // Redirects are a status, not followed.
        let (port, seen) = http_server(Reply::new(302, "")).await;
        assert_ok(&probe_once(&spec(ProbeKind::Http, port), &target()).await);
        let mut s = spec(ProbeKind::Http, port);
        s.expect_status = vec![200];
        assert_fails(&probe_once(&s, &target()).await, "HTTP 302");
        assert_eq!(seen.requests.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn http_probe_body_contains() {
        let (port, _) = http_server(Reply::new(200, "status: ok, all good")).await;
        let mut s = spec(ProbeKind::Http, port);
        s.body_contains = Some("all good".into());
        let o = probe_once(&s, &target()).await;
        assert_ok(&o);
        assert_eq!(o.detail, "HTTP 200, body matches");

        s.body_contains = Some("degraded".into());
        assert_fails(
            &probe_once(&s, &target()).await,
            "HTTP 200, body lacks \"degraded\" (read 20 bytes)",
        );
    }

    #[tokio::test]
    async fn http_probe_body_read_is_capped() {
        let mut body = "x".repeat(BODY_LIMIT + 1000);
        body.push_str("marker");
        let (port, _) = http_server(Reply::new(200, &body)).await;
        let mut s = spec(ProbeKind::Http, port);
        s.body_contains = Some("marker".into());
        assert_fails(
            &probe_once(&s, &target()).await,
            &format!("(read {BODY_LIMIT} bytes)"),
        );
    }

    #[tokio::test]
    async fn http_probe_times_out_on_a_slow_server() {
        let mut reply = Reply::new(200, "late");
        reply.delay = Duration::from_secs(3);
        let (port, _) = http_server(reply).await;
        let mut s = spec(ProbeKind::Http, port);
        s.timeout = Duration::from_millis(300);
        let start = Instant::now();
        let o = probe_once(&s, &target()).await;
        assert_fails(&o, "timeout after 300ms");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn http_probe_latency_is_time_to_the_response_headers() {
        let mut reply = Reply::new(200, "ok");
        reply.delay = Duration::from_millis(150);
        let (port, _) = http_server(reply).await;
        let o = probe_once(&spec(ProbeKind::Http, port), &target()).await;
        assert_ok(&o);
        let latency = o.latency.unwrap();
        assert!(
            latency >= Duration::from_millis(150) && latency < Duration::from_secs(1),
            "{latency:?}"
        );
    }

    #[tokio::test]
    async fn http_probe_sends_the_configured_host_to_the_endpoint_address() {
        let (port, seen) = http_server(Reply::new(204, "")).await;
        let mut s = spec(ProbeKind::Http, port);
        s.host = Some("cdn.example.net".into());
        s.method = "HEAD".into();
        let o = probe_once(&s, &target()).await;
        assert_ok(&o);
        assert_eq!(o.detail, "HTTP 204");
        assert_eq!(
            seen.last_header("host").unwrap(),
            format!("cdn.example.net:{port}")
        );
        assert!(seen.requests.lock().unwrap()[0].starts_with("HEAD / HTTP/1.1"));

        // An address as host only sets the header.
        s.host = Some("192.0.2.1".into());
        assert_ok(&probe_once(&s, &target()).await);
        assert_eq!(seen.last_header("host").unwrap(), "192.0.2.1");
    }

    #[tokio::test]
    async fn http_probe_to_a_closed_port_is_refused() {
        let port = closed_port().await;
        let o = probe_once(&spec(ProbeKind::Http, port), &target()).await;
        assert_fails(&o, "connection refused");
    }

    #[tokio::test]
    async fn https_probe_verifies_certificates_unless_told_not_to() {
        let (port, seen) = https_server(Reply::new(200, "secure ok")).await;
        let mut s = spec(ProbeKind::Https, port);
        s.host = Some("localhost".into());
        let o = probe_once(&s, &target()).await;
        assert!(!o.ok, "a self-signed certificate must not verify: {o:?}");
        assert!(
            o.detail.to_ascii_lowercase().contains("certificate"),
            "{:?}",
            o.detail
        );

        s.tls_verify = false;
        s.body_contains = Some("secure".into());
        let o = probe_once(&s, &target()).await;
        assert_ok(&o);
        assert_eq!(o.detail, "HTTP 200, body matches");
        let requests = seen.requests.lock().unwrap().clone();
        let head = requests
            .iter()
            .find(|r| r.starts_with("GET "))
            .expect("the request reached the server");
        assert!(
            head.contains(&format!("host: localhost:{port}"))
                || head.contains(&format!("Host: localhost:{port}")),
            "{head}"
        );
        let sni = requests
            .iter()
            .find(|r| r.starts_with("SNI"))
            .expect("the handshake completed");
        assert!(sni.contains("sni: localhost"), "{sni}");
    }

    // --- dns ------------------------------------------------------------------------

    /// A UDP DNS responder on loopback: answers `answers` A records with `rcode`, after
    /// first sending a reply with the wrong id (which the probe must ignore).
    async fn dns_server(rcode: ResponseCode, answers: usize) -> u16 {
        let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.metadata.response_code = rcode;
                r.add_queries(q.queries.clone());
                for i in 0..answers {
                    r.add_answer(Record::from_rdata(
                        q.queries[0].name().clone(),
                        30,
                        RData::A(A::new(192, 0, 2, i as u8 + 1)),
                    ));
                }
                let mut stray = r.clone();
                stray.metadata.id = q.metadata.id.wrapping_add(1);
                let _ = socket.send_to(&stray.to_vec().unwrap(), peer).await;
                let _ = socket.send_to(b"garbage", peer).await;
                let _ = socket.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        port
    }

    fn dns_spec(port: u16) -> ProbeSpec {
        let mut s = spec(ProbeKind::Dns, port);
        s.dns_qname = Some(Name::from_str("www.example.test.").unwrap());
        s
    }

    #[tokio::test]
    async fn dns_probe_needs_noerror_with_an_answer() {
        let port = dns_server(ResponseCode::NoError, 2).await;
        let o = probe_once(&dns_spec(port), &target()).await;
        assert_ok(&o);
        assert_eq!(o.detail, "DNS NOERROR, 2 answers");

        let port = dns_server(ResponseCode::NoError, 0).await;
        assert_fails(
            &probe_once(&dns_spec(port), &target()).await,
            "DNS NOERROR without an answer",
        );
        let port = dns_server(ResponseCode::ServFail, 0).await;
        assert_fails(
            &probe_once(&dns_spec(port), &target()).await,
            "DNS SERVFAIL",
        );
        let port = dns_server(ResponseCode::NXDomain, 0).await;
        assert_fails(
            &probe_once(&dns_spec(port), &target()).await,
            "DNS NXDOMAIN",
        );
    }

    #[tokio::test]
    async fn dns_probe_without_a_server() {
        // Nothing listens: loopback reports port unreachable, or the probe times out.
        let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        drop(socket);
        let mut s = dns_spec(port);
        s.timeout = Duration::from_millis(300);
        let o = probe_once(&s, &target()).await;
        assert!(!o.ok, "{o:?}");
        assert!(
            o.detail == "connection refused" || o.detail == "timeout after 300ms",
            "{o:?}"
        );
    }

    // --- icmp -----------------------------------------------------------------------

    #[tokio::test]
    async fn icmp_probe_to_loopback() {
        for address in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let kind = if address.is_ipv4() { "ICMP" } else { "ICMPv6" };
            let client = IcmpClients::default();
            if let Err(e) = client.get(address.is_ipv6()) {
                if matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
                ) || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                {
                    eprintln!(
                        "skipped {kind} to {address}: cannot open a raw or ping socket ({})",
                        first_line(&e.to_string())
                    );
                    continue;
                }
                panic!("opening an {kind} socket: {e}");
            }
            let s = ProbeSpec::new(ProbeKind::Icmp);
            let t = ProbeTarget {
                address,
                hostname: None,
            };
            let o = probe_once(&s, &t).await;
            if address.is_ipv6() && o.detail.contains("network unreachable") {
                eprintln!("skipped {kind} to {address}: no IPv6 loopback here");
                continue;
            }
            assert_ok(&o);
            assert_eq!(o.detail, "echo reply");
            assert!(o.latency.unwrap() < Duration::from_secs(1), "{o:?}");
        }
    }

    // --- scheduling -----------------------------------------------------------------

    #[test]
    fn jitter_stays_in_its_window() {
        let i = Duration::from_secs(1);
        assert_eq!(first_delay(i, 0.0), Duration::ZERO);
        assert!(first_delay(i, 0.999_999) < i);
        assert_eq!(next_delay(i, 0.0), Duration::from_millis(900));
        assert_eq!(next_delay(i, 0.5), Duration::from_millis(1000));
        assert!(next_delay(i, 0.999_999) <= Duration::from_millis(1100));
        // Out-of-range samples are clamped.
        assert_eq!(first_delay(i, 7.0), i);
        assert_eq!(next_delay(i, -1.0), Duration::from_millis(900));
        // Random samples spread over the window.
        let firsts: Vec<Duration> = (0..1000).map(|_| first_delay(i, rand::random())).collect();
        assert!(firsts.iter().all(|d| *d < i));
        assert!(firsts.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(firsts.iter().any(|d| *d > Duration::from_millis(900)));
        for _ in 0..1000 {
            let d = next_delay(i, rand::random());
            assert!(
                d >= Duration::from_millis(900) && d <= Duration::from_millis(1100),
                "{d:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_probes_sends_jittered_results_and_stops_on_shutdown() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        let closed = closed_port().await;
        let interval = Duration::from_millis(250);
        let job = |pool, endpoint, port| ProbeJob {
            pool,
            endpoint,
            spec: ProbeSpec {
                interval,
                timeout: interval,
                ..spec(ProbeKind::Tcp, port)
            },
            target: target(),
        };
        let jobs = vec![job(0, 0, port), job(0, 1, closed), job(1, 0, port)];
        let (tx, mut rx) = mpsc::channel(16);
        let (stop, shutdown) = watch::channel(false);
        let start = Instant::now();
        let runner = tokio::spawn(run_probes(jobs, 2, tx, shutdown));

        let mut seen: HashMap<(usize, usize), Vec<(Instant, ProbeOutcome)>> = HashMap::new();
        let until = start + Duration::from_millis(1600);
        while let Ok(Some((pool, endpoint, at, outcome))) =
            tokio::time::timeout_at(until.into(), rx.recv()).await
        {
            seen.entry((pool, endpoint))
                .or_default()
                .push((at, outcome));
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), runner)
            .await
            .expect("run_probes stops on shutdown")
            .unwrap();
        // Every sender is gone once it returned.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {}
        assert!(rx.recv().await.is_none());

        assert_eq!(seen.len(), 3, "{:?}", seen.keys());
        for (key, results) in &seen {
            let up = *key != (0, 1);
            for (_, o) in results {
                assert_eq!(o.ok, up, "{key:?}: {o:?}");
            }
            // First run within one interval (plus scheduling slack), then every
            // interval ± 10 %: in 1.6 s that is 5 to 7 runs. Results are timed when they
            // arrive, so a single gap also carries scheduling noise; their mean does not.
            let first = results[0].0 - start;
            assert!(
                first < interval + Duration::from_millis(100),
                "{key:?}: {first:?}"
            );
            assert!(
                (4..=8).contains(&results.len()),
                "{key:?}: {} results",
                results.len()
            );
            for pair in results.windows(2) {
                let gap = pair[1].0 - pair[0].0;
                assert!(
                    gap >= interval.mul_f64(0.9) - Duration::from_millis(100)
                        && gap <= interval.mul_f64(1.1) + Duration::from_millis(150),
                    "{key:?}: {gap:?} between runs"
                );
            }
            let runs = u32::try_from(results.len() - 1).unwrap();
            let mean = (results[results.len() - 1].0 - results[0].0) / runs;
            assert!(
                mean >= interval.mul_f64(0.9) - Duration::from_millis(15)
                    && mean <= interval.mul_f64(1.1) + Duration::from_millis(40),
                "{key:?}: {mean:?} between runs on average"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_probes_bounds_concurrency() {
        let mut reply = Reply::new(200, "ok");
        reply.delay = Duration::from_millis(120);
        let (port, seen) = http_server(reply).await;
        let jobs: Vec<ProbeJob> = (0..4)
            .map(|endpoint| ProbeJob {
                pool: 0,
                endpoint,
                spec: ProbeSpec {
                    interval: Duration::from_millis(250),
                    timeout: Duration::from_millis(250),
                    ..spec(ProbeKind::Http, port)
                },
                target: target(),
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(64);
        let (stop, shutdown) = watch::channel(false);
        let runner = tokio::spawn(run_probes(jobs, 1, tx, shutdown));
        let mut results = 0;
        let until = Instant::now() + Duration::from_millis(1200);
        while let Ok(Some(_)) = tokio::time::timeout_at(until.into(), rx.recv()).await {
            results += 1;
        }
        stop.send(true).unwrap();
        runner.await.unwrap();
        assert!(results >= 4, "{results} results");
        assert_eq!(seen.most_in_flight.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn run_probes_stops_when_the_receiver_is_gone() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let jobs = vec![ProbeJob {
            pool: 0,
            endpoint: 0,
            spec: ProbeSpec {
                interval: MIN_INTERVAL,
                timeout: MIN_INTERVAL,
                ..spec(ProbeKind::Tcp, port)
            },
            target: target(),
        }];
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let (_stop, shutdown) = watch::channel(false);
        tokio::time::timeout(Duration::from_secs(2), run_probes(jobs, 4, tx, shutdown))
            .await
            .expect("run_probes returns once nobody listens");
    }

    #[test]
    fn spec_defaults() {
        let s = ProbeSpec::new(ProbeKind::Https);
        assert_eq!(s.interval, Duration::from_secs(5));
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!((s.rise, s.fall), (2, 3));
        assert_eq!(s.port, Some(443));
        assert_eq!((s.method.as_str(), s.path.as_str()), ("GET", "/"));
        assert!(s.expects(200) && s.expects(399) && !s.expects(199) && !s.expects(400));
        assert!(s.tls_verify);
        assert_eq!(s.dns_qtype, RecordType::A);
        assert_eq!(ProbeSpec::new(ProbeKind::Tcp).port, None);
        assert_eq!(ProbeSpec::new(ProbeKind::Icmp).effective_port(), None);
        assert_eq!(ProbeSpec::new(ProbeKind::Dns).port, Some(53));
        assert_eq!(
            ProbeSpec::default_timeout(Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }
}
