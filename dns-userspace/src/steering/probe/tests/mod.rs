//! Probes against loopback servers; the scheduler ([`schedule`]) and local failures
//! ([`local`]) in their own files.

mod local;
mod schedule;

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, OpCode, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
};

use super::{
    run::{IcmpClients, first_line},
    *,
};
use crate::steering::{endpoint::EndpointAddress, health::ProbeOutcome};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(super) fn target() -> ProbeTarget {
    ProbeTarget {
        address: LOCALHOST,
        hostname: None,
    }
}

/// A probe of `kind` every 2 s with a 2 s timeout.
fn spec(kind: ProbeKind) -> ProbeSpec {
    ProbeSpec {
        timing: ProbeTiming {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            ..ProbeTiming::default()
        },
        kind,
    }
}

pub(super) fn tcp_spec(port: u16) -> ProbeSpec {
    spec(ProbeKind::Tcp { port })
}

pub(super) fn http_spec(port: u16) -> ProbeSpec {
    spec(ProbeKind::Http(Box::new(HttpProbe::new(port))))
}

fn https_spec(port: u16) -> ProbeSpec {
    spec(ProbeKind::Https {
        http: Box::new(HttpProbe::new(port)),
        tls_verify: true,
    })
}

/// The HTTP settings of an http or https spec, to change.
fn http_mut(s: &mut ProbeSpec) -> &mut HttpProbe {
    match &mut s.kind {
        ProbeKind::Http(http) | ProbeKind::Https { http, .. } => http,
        other => panic!("not an http probe: {other:?}"),
    }
}

/// `s` every `interval`, with that as its timeout too.
pub(super) fn every(mut s: ProbeSpec, interval: Duration) -> ProbeSpec {
    s.timing.interval = interval;
    s.timing.timeout = interval;
    s
}

/// Probes once and expects a verdict on the endpoint (not a local failure).
async fn verdict(spec: &ProbeSpec, target: &ProbeTarget) -> ProbeOutcome {
    probe_once(spec, target)
        .await
        .unwrap_or_else(|f| panic!("a local failure, not a verdict: {f}"))
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
pub(super) async fn closed_port() -> u16 {
    let l = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    l.local_addr().unwrap().port()
}

// --- a tiny HTTP server ----------------------------------------------------------

#[derive(Clone)]
pub(super) struct Reply {
    status: u16,
    body: String,
    pub(super) delay: Duration,
}

impl Reply {
    pub(super) fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
pub(super) struct Seen {
    /// Every request's head (request line and headers), lower-cased header names.
    requests: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    pub(super) most_in_flight: AtomicUsize,
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
pub(super) async fn http_server(reply: Reply) -> (u16, Arc<Seen>) {
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
    let o = verdict(&tcp_spec(port), &target()).await;
    assert_ok(&o);
    assert_eq!(o.detail, "connected");
    assert!(o.latency.unwrap() < Duration::from_secs(1));
}

#[tokio::test]
async fn tcp_probe_to_a_closed_port_is_refused() {
    let port = closed_port().await;
    let o = verdict(&tcp_spec(port), &target()).await;
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
    assert_ok(&verdict(&tcp_spec(port), &t).await);
}

#[tokio::test]
async fn host_name_targets_are_looked_up_at_probe_time() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // "localhost" resolves from /etc/hosts to loopback (IPv4 first or ::1: listen on
    // both where possible).
    let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).await.ok();
    let t = ProbeTarget::from_endpoint(&EndpointAddress::Host(Box::new(
        Name::from_str("localhost.").unwrap(),
    )));
    assert_eq!(t.hostname.as_deref(), Some("localhost"));
    assert_ok(&verdict(&tcp_spec(port), &t).await);
    drop(v6);

    let t = ProbeTarget {
        address: LOCALHOST,
        hostname: Some("no-such-host.invalid".into()),
    };
    assert_fails(
        &verdict(&tcp_spec(port), &t).await,
        "cannot resolve no-such-host.invalid",
    );
}

// --- http -----------------------------------------------------------------------

#[tokio::test]
async fn http_probe_200_is_healthy() {
    let (port, seen) = http_server(Reply::new(200, "hello")).await;
    let mut s = http_spec(port);
    http_mut(&mut s).path = "/health?full=1".into();
    let o = verdict(&s, &target()).await;
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
    let o = verdict(&http_spec(port), &target()).await;
    assert_fails(&o, "HTTP 503");
    assert_eq!(o.detail, "HTTP 503");

    let mut s = http_spec(port);
    http_mut(&mut s).expect_status = vec![503];
    assert_ok(&verdict(&s, &target()).await);

    // Redirects are a status, not followed.
    let (port, seen) = http_server(Reply::new(302, "")).await;
    assert_ok(&verdict(&http_spec(port), &target()).await);
    let mut s = http_spec(port);
    http_mut(&mut s).expect_status = vec![200];
    assert_fails(&verdict(&s, &target()).await, "HTTP 302");
    assert_eq!(seen.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn http_probe_body_contains() {
    let (port, _) = http_server(Reply::new(200, "status: ok, all good")).await;
    let mut s = http_spec(port);
    http_mut(&mut s).body_contains = Some("all good".into());
    let o = verdict(&s, &target()).await;
    assert_ok(&o);
    assert_eq!(o.detail, "HTTP 200, body matches");

    http_mut(&mut s).body_contains = Some("degraded".into());
    assert_fails(
        &verdict(&s, &target()).await,
        "HTTP 200, body lacks \"degraded\" (read 20 bytes)",
    );
}

#[tokio::test]
async fn http_probe_body_read_is_capped() {
    let mut body = "x".repeat(BODY_LIMIT + 1000);
    body.push_str("marker");
    let (port, _) = http_server(Reply::new(200, &body)).await;
    let mut s = http_spec(port);
    http_mut(&mut s).body_contains = Some("marker".into());
    assert_fails(
        &verdict(&s, &target()).await,
        &format!("(read {BODY_LIMIT} bytes)"),
    );
}

#[tokio::test]
async fn http_probe_times_out_on_a_slow_server() {
    let mut reply = Reply::new(200, "late");
    reply.delay = Duration::from_secs(3);
    let (port, _) = http_server(reply).await;
    let mut s = http_spec(port);
    s.timing.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let o = verdict(&s, &target()).await;
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
    let o = verdict(&http_spec(port), &target()).await;
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
    let mut s = http_spec(port);
    http_mut(&mut s).host = Some("cdn.example.net".into());
    http_mut(&mut s).method = "HEAD".into();
    let o = verdict(&s, &target()).await;
    assert_ok(&o);
    assert_eq!(o.detail, "HTTP 204");
    assert_eq!(
        seen.last_header("host").unwrap(),
        format!("cdn.example.net:{port}")
    );
    assert!(seen.requests.lock().unwrap()[0].starts_with("HEAD / HTTP/1.1"));

    // An address as host only sets the header.
    http_mut(&mut s).host = Some("192.0.2.1".into());
    assert_ok(&verdict(&s, &target()).await);
    assert_eq!(seen.last_header("host").unwrap(), "192.0.2.1");
}

#[tokio::test]
async fn http_probe_to_a_closed_port_is_refused() {
    let port = closed_port().await;
    let o = verdict(&http_spec(port), &target()).await;
    assert_fails(&o, "connection refused");
}

#[tokio::test]
async fn https_probe_verifies_certificates_unless_told_not_to() {
    let (port, seen) = https_server(Reply::new(200, "secure ok")).await;
    let mut s = https_spec(port);
    http_mut(&mut s).host = Some("localhost".into());
    let o = verdict(&s, &target()).await;
    assert!(!o.ok, "a self-signed certificate must not verify: {o:?}");
    assert!(
        o.detail.to_ascii_lowercase().contains("certificate"),
        "{:?}",
        o.detail
    );

    if let ProbeKind::Https { tls_verify, .. } = &mut s.kind {
        *tls_verify = false;
    }
    http_mut(&mut s).body_contains = Some("secure".into());
    let o = verdict(&s, &target()).await;
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
    spec(ProbeKind::Dns(Box::new(DnsProbe {
        qname: Name::from_str("www.example.test.").unwrap(),
        qtype: RecordType::A,
        port,
    })))
}

#[tokio::test]
async fn dns_probe_needs_noerror_with_an_answer() {
    let port = dns_server(ResponseCode::NoError, 2).await;
    let o = verdict(&dns_spec(port), &target()).await;
    assert_ok(&o);
    assert_eq!(o.detail, "DNS NOERROR, 2 answers");

    let port = dns_server(ResponseCode::NoError, 0).await;
    assert_fails(
        &verdict(&dns_spec(port), &target()).await,
        "DNS NOERROR without an answer",
    );
    let port = dns_server(ResponseCode::ServFail, 0).await;
    assert_fails(&verdict(&dns_spec(port), &target()).await, "DNS SERVFAIL");
    let port = dns_server(ResponseCode::NXDomain, 0).await;
    assert_fails(&verdict(&dns_spec(port), &target()).await, "DNS NXDOMAIN");
}

#[tokio::test]
async fn dns_probe_without_a_server() {
    // Nothing listens: loopback reports port unreachable, or the probe times out.
    let socket = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    drop(socket);
    let mut s = dns_spec(port);
    s.timing.timeout = Duration::from_millis(300);
    let o = verdict(&s, &target()).await;
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
        let o = match probe_once(&s, &t).await {
            Err(f) if address.is_ipv6() && f.reason == LocalReason::NoRoute => {
                eprintln!("skipped {kind} to {address}: no IPv6 loopback here ({f})");
                continue;
            }
            attempt => attempt.unwrap_or_else(|f| panic!("a local failure: {f}")),
        };
        assert_ok(&o);
        assert_eq!(o.detail, "echo reply");
        assert!(o.latency.unwrap() < Duration::from_secs(1), "{o:?}");
    }
}
