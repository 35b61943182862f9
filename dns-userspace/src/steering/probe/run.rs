//! Probing an endpoint once: each kind's exchange, measured as the module docs of
//! [`crate::steering::probe`] describe.

use std::{
    error::Error as _,
    io,
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
use tokio::net::{TcpStream, UdpSocket};

use crate::steering::{
    endpoint::EndpointAddress,
    health::ProbeOutcome,
    probe::spec::{HttpProbe, ProbeKind, ProbeSpec},
};

/// The User-Agent of HTTP(S) probes.
pub const USER_AGENT: &str = concat!("hotpool/", env!("CARGO_PKG_VERSION"), " (health probe)");
/// Most body bytes read when looking for `body_contains`.
pub const BODY_LIMIT: usize = 64 * 1024;

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

/// ICMP clients (one socket per address family), shared by every job and opened on first
/// use.
#[derive(Default)]
pub(super) struct IcmpClients {
    v4: Mutex<Option<surge_ping::Client>>,
    v6: Mutex<Option<surge_ping::Client>>,
}

impl IcmpClients {
    pub(super) fn get(&self, v6: bool) -> io::Result<surge_ping::Client> {
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
pub(super) struct Prober {
    icmp: Arc<IcmpClients>,
    http: Option<(HttpClientKey, reqwest::Client)>,
}

impl Prober {
    pub(super) fn new(icmp: Arc<IcmpClients>) -> Self {
        Self { icmp, http: None }
    }

    pub(super) async fn probe(&mut self, spec: &ProbeSpec, target: &ProbeTarget) -> ProbeOutcome {
        let timeout = spec.timing.timeout;
        let address = match &target.hostname {
            None => target.address,
            Some(name) => match resolve(name, timeout).await {
                Ok(ip) => ip,
                Err(detail) => return ProbeOutcome::failure(detail),
            },
        };
        let result = match &spec.kind {
            ProbeKind::Http(http) => self.http(http, None, target, address, timeout).await,
            ProbeKind::Https { http, tls_verify } => {
                self.http(http, Some(*tls_verify), target, address, timeout)
                    .await
            }
            ProbeKind::Tcp { port } => {
                tokio::time::timeout(timeout, tcp(SocketAddr::new(address, *port))).await
            }
            ProbeKind::Icmp => match self.icmp.get(address.is_ipv6()) {
                Ok(client) => Ok(icmp(client, address, timeout).await),
                Err(e) => Ok(ProbeOutcome::failure(format!(
                    "cannot open an ICMP socket: {}",
                    first_line(&e.to_string())
                ))),
            },
            ProbeKind::Dns(d) => {
                let server = SocketAddr::new(address, d.port);
                tokio::time::timeout(timeout, dns(server, &d.qname, d.qtype)).await
            }
        };
        result.unwrap_or_else(|_| {
            ProbeOutcome::failure(format!(
                "timeout after {}",
                humantime::format_duration(timeout)
            ))
        })
    }

    /// An HTTP probe, or with `tls` (whether to verify the certificate) an HTTPS one.
    async fn http(
        &mut self,
        http: &HttpProbe,
        tls: Option<bool>,
        target: &ProbeTarget,
        address: IpAddr,
        timeout: Duration,
    ) -> Result<ProbeOutcome, tokio::time::error::Elapsed> {
        match self.http_request(http, tls, target, SocketAddr::new(address, http.port)) {
            Ok((client, request)) => {
                tokio::time::timeout(timeout, http_exchange(http, client, request)).await
            }
            Err(detail) => Ok(ProbeOutcome::failure(detail)),
        }
    }

    /// The client (cached) and request of an HTTP(S) probe to `addr`.
    fn http_request(
        &mut self,
        http: &HttpProbe,
        tls: Option<bool>,
        target: &ProbeTarget,
        addr: SocketAddr,
    ) -> Result<(reqwest::Client, reqwest::Request), String> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = http
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
        let url = format!("{scheme}://{url_host}:{}{}", addr.port(), http.path);
        let url = reqwest::Url::parse(&url).map_err(|e| format!("invalid URL {url}: {e}"))?;
        let method = reqwest::Method::from_bytes(http.method.as_bytes())
            .map_err(|_| format!("invalid HTTP method {:?}", http.method))?;
        let key = HttpClientKey {
            tls_verify: tls.unwrap_or(true),
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

async fn http_exchange(
    spec: &HttpProbe,
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

pub(super) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
