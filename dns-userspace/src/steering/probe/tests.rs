//! Probes against loopback servers, and the scheduler.

use std::{
    collections::HashMap,
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
    sync::{mpsc, watch},
};

use super::{
    run::{IcmpClients, first_line},
    schedule::{first_delay, next_delay},
    *,
};
use crate::steering::{endpoint::EndpointAddress, health::ProbeOutcome};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn target() -> ProbeTarget {
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

fn tcp_spec(port: u16) -> ProbeSpec {
    spec(ProbeKind::Tcp { port })
}

fn http_spec(port: u16) -> ProbeSpec {
    spec(ProbeKind::Http(HttpProbe::new(port)))
}

fn https_spec(port: u16) -> ProbeSpec {
    spec(ProbeKind::Https {
        http: HttpProbe::new(port),
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
fn every(mut s: ProbeSpec, interval: Duration) -> ProbeSpec {
    s.timing.interval = interval;
    s.timing.timeout = interval;
    s
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
    let o = probe_once(&tcp_spec(port), &target()).await;
    assert_ok(&o);
    assert_eq!(o.detail, "connected");
    assert!(o.latency.unwrap() < Duration::from_secs(1));
}

#[tokio::test]
async fn tcp_probe_to_a_closed_port_is_refused() {
    let port = closed_port().await;
    let o = probe_once(&tcp_spec(port), &target()).await;
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
    assert_ok(&probe_once(&tcp_spec(port), &t).await);
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
    assert_ok(&probe_once(&tcp_spec(port), &t).await);
    drop(v6);

    let t = ProbeTarget {
        address: LOCALHOST,
        hostname: Some("no-such-host.invalid".into()),
    };
    assert_fails(
        &probe_once(&tcp_spec(port), &t).await,
        "cannot resolve no-such-host.invalid",
    );
}

// --- http -----------------------------------------------------------------------

#[tokio::test]
async fn http_probe_200_is_healthy() {
    let (port, seen) = http_server(Reply::new(200, "hello")).await;
    let mut s = http_spec(port);
    http_mut(&mut s).path = "/health?full=1".into();
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
    let o = probe_once(&http_spec(port), &target()).await;
    assert_fails(&o, "HTTP 503");
    assert_eq!(o.detail, "HTTP 503");

    let mut s = http_spec(port);
    http_mut(&mut s).expect_status = vec![503];
    assert_ok(&probe_once(&s, &target()).await);

    // Redirects are a status, not followed.
    let (port, seen) = http_server(Reply::new(302, "")).await;
    assert_ok(&probe_once(&http_spec(port), &target()).await);
    let mut s = http_spec(port);
    http_mut(&mut s).expect_status = vec![200];
    assert_fails(&probe_once(&s, &target()).await, "HTTP 302");
    assert_eq!(seen.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn http_probe_body_contains() {
    let (port, _) = http_server(Reply::new(200, "status: ok, all good")).await;
    let mut s = http_spec(port);
    http_mut(&mut s).body_contains = Some("all good".into());
    let o = probe_once(&s, &target()).await;
    assert_ok(&o);
    assert_eq!(o.detail, "HTTP 200, body matches");

    http_mut(&mut s).body_contains = Some("degraded".into());
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
    let mut s = http_spec(port);
    http_mut(&mut s).body_contains = Some("marker".into());
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
    let mut s = http_spec(port);
    s.timing.timeout = Duration::from_millis(300);
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
    let o = probe_once(&http_spec(port), &target()).await;
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
    let o = probe_once(&s, &target()).await;
    assert_ok(&o);
    assert_eq!(o.detail, "HTTP 204");
    assert_eq!(
        seen.last_header("host").unwrap(),
        format!("cdn.example.net:{port}")
    );
    assert!(seen.requests.lock().unwrap()[0].starts_with("HEAD / HTTP/1.1"));

    // An address as host only sets the header.
    http_mut(&mut s).host = Some("192.0.2.1".into());
    assert_ok(&probe_once(&s, &target()).await);
    assert_eq!(seen.last_header("host").unwrap(), "192.0.2.1");
}

#[tokio::test]
async fn http_probe_to_a_closed_port_is_refused() {
    let port = closed_port().await;
    let o = probe_once(&http_spec(port), &target()).await;
    assert_fails(&o, "connection refused");
}

#[tokio::test]
async fn https_probe_verifies_certificates_unless_told_not_to() {
    let (port, seen) = https_server(Reply::new(200, "secure ok")).await;
    let mut s = https_spec(port);
    http_mut(&mut s).host = Some("localhost".into());
    let o = probe_once(&s, &target()).await;
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
    spec(ProbeKind::Dns(DnsProbe {
        qname: Name::from_str("www.example.test.").unwrap(),
        qtype: RecordType::A,
        port,
    }))
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
    s.timing.timeout = Duration::from_millis(300);
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
    let job = |id, port| ProbeJob {
        id: JobId(id),
        spec: every(tcp_spec(port), interval),
        target: target(),
    };
    let jobs = vec![job(1, port), job(2, closed), job(3, port)];
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let start = Instant::now();
    let runner = tokio::spawn(run_probes(jobs, 2, tx, shutdown));

    let mut seen: HashMap<JobId, Vec<(Instant, ProbeOutcome)>> = HashMap::new();
    let until = start + Duration::from_millis(1600);
    while let Ok(Some((id, at, outcome))) = tokio::time::timeout_at(until.into(), rx.recv()).await {
        seen.entry(id).or_default().push((at, outcome));
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
        let up = *key != JobId(2);
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
        .map(|id| ProbeJob {
            id: JobId(id),
            spec: every(http_spec(port), Duration::from_millis(250)),
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
        id: JobId(0),
        spec: every(tcp_spec(port), MIN_INTERVAL),
        target: target(),
    }];
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let (_stop, shutdown) = watch::channel(false);
    tokio::time::timeout(Duration::from_secs(2), run_probes(jobs, 4, tx, shutdown))
        .await
        .expect("run_probes returns once nobody listens");
}

/// The ids of the jobs whose results arrive within `ms`.
async fn collect(rx: &mut mpsc::Receiver<ProbeResult>, ms: u64) -> std::collections::BTreeSet<u64> {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut ids = std::collections::BTreeSet::new();
    while let Ok(Some((id, _, _))) = tokio::time::timeout_at(until.into(), rx.recv()).await {
        ids.insert(id.0);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_added_and_removed_while_the_others_run() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let job = |id| ProbeJob {
        id: JobId(id),
        spec: every(tcp_spec(port), MIN_INTERVAL),
        target: target(),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let (stop, shutdown) = watch::channel(false);
    let runner = tokio::spawn(run_probe_set(
        vec![job(1), job(2)],
        4,
        tx,
        changes_rx,
        shutdown,
    ));
    assert_eq!(collect(&mut rx, 700).await, [1, 2].into());
    changes.send(JobChange::Remove(JobId(1))).unwrap();
    changes.send(JobChange::Add(Box::new(job(3)))).unwrap();
    // Results of job 1 already queued may still arrive; after a pause none do.
    let _ = collect(&mut rx, 100).await;
    assert_eq!(collect(&mut rx, 800).await, [2, 3].into());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), runner)
        .await
        .expect("stops on shutdown")
        .unwrap();
}
