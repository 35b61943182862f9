//! The test endpoints and webhook receiver themselves: each behaviour as a client inside the
//! namespace sees it. Every test builds its own namespace and uses only addresses in it.

use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    sync::mpsc,
    time::{Duration, Instant},
};

use hotpool_tests::{
    endpoint::{Behaviour, TestEndpoint, WebhookReceiver},
    netns::NetNs,
    require_root,
};

const V4: &str = "10.99.0.1";
const V4_B: &str = "10.99.0.2";
const V6: &str = "fd99::1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A response as the client saw it.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Sends one request on a new connection and reads the response to EOF. Must run inside
/// the namespace.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}").into_bytes();
    if !body.is_empty() && !headers.to_ascii_lowercase().contains("transfer-encoding") {
        req.extend(format!("Content-Length: {}\r\n", body.len()).bytes());
    }
    req.extend(b"\r\n");
    req.extend(body);
    s.write_all(&req)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    // Skip an interim `100 Continue`.
    let raw = raw
        .strip_prefix("HTTP/1.1 100 Continue\r\n\r\n")
        .unwrap_or(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no blank line in the response {raw:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in the response {raw:?}"));
    Ok(Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

fn get(addr: SocketAddr) -> io::Result<Response> {
    request(
        addr,
        "GET",
        "/health",
        "User-Agent: endpoint-harness\r\n",
        b"",
    )
}

/// GET from inside `ns`, expecting a response.
fn get_in(ns: &NetNs, addr: SocketAddr) -> Response {
    ns.run(move || get(addr))
        .unwrap_or_else(|e| panic!("GET http://{addr}/health: {e}"))
}

/// Connects from inside `ns` and sends a request head, returning the open connection.
fn send_head_in(ns: &NetNs, addr: SocketAddr, head: &'static str) -> TcpStream {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        s.write_all(head.as_bytes()).unwrap();
        s
    })
}

/// Polls `f` until it holds, panicking after 10 s.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn healthy_answers_200_ok() {
    require_root();
    let ns = NetNs::new("ep-ok");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);
    assert_eq!(ep.addr(), SocketAddr::new(ip(V4), 8080));

    let r = get_in(&ns, ep.addr());

    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "ok\n");
    assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{r:?}");
    assert!(r.head.contains("Connection: close"), "{r:?}");
    assert!(r.head.contains("Content-Length: 3"), "{r:?}");
    let seen = ep.last_head().expect("the request head is kept");
    assert!(seen.starts_with("GET /health HTTP/1.1\r\n"), "{seen:?}");
    assert!(seen.contains("User-Agent: endpoint-harness"), "{seen:?}");
}

#[test]
fn port_zero_binds_a_real_port() {
    require_root();
    let ns = NetNs::new("ep-port0");
    let ep = TestEndpoint::start(&ns, ip(V4), 0);
    assert_eq!(ep.addr().ip(), ip(V4));
    assert_ne!(ep.addr().port(), 0);

    ep.set_behaviour(Behaviour::Refuse);
    ep.set_behaviour(Behaviour::Healthy);

    assert_eq!(
        get_in(&ns, ep.addr()).status,
        200,
        "same port after rebinding"
    );
}

#[test]
fn head_request_gets_no_body() {
    require_root();
    let ns = NetNs::new("ep-head");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);
    let addr = ep.addr();

    let r = ns
        .run(move || request(addr, "HEAD", "/", "", b""))
        .expect("HEAD");

    assert_eq!(r.status, 200);
    assert!(r.head.contains("Content-Length: 3"), "{r:?}");
    assert_eq!(r.body, "");
}

#[test]
fn delay_is_applied() {
    require_root();
    let ns = NetNs::new("ep-delay");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);
    let delay = Duration::from_millis(400);
    ep.set_delay(delay);
    let addr = ep.addr();

    let (r, took) = ns.run(move || {
        let t0 = Instant::now();
        let r = get(addr);
        (r, t0.elapsed())
    });

    let r = r.expect("a delayed answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");
    assert!(took >= delay, "answered after {took:?}, delay {delay:?}");

    ep.set_delay(Duration::ZERO);
    assert_eq!(get_in(&ns, addr).status, 200);
}

#[test]
fn status_503_answers_503() {
    require_root();
    let ns = NetNs::new("ep-503");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);

    ep.set_behaviour(Behaviour::Status(503));
    let r = get_in(&ns, ep.addr());

    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{r:?}"
    );
    assert!(!r.body.contains("ok"), "{r:?}");
    assert_eq!(ep.behaviour(), Behaviour::Status(503));

    ep.set_behaviour(Behaviour::Status(200));
    let r = get_in(&ns, ep.addr());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "status 200\n", "Status(200) has no `ok` body");

    ep.set_behaviour(Behaviour::Healthy);
    assert_eq!(get_in(&ns, ep.addr()).body, "ok\n");
}

#[test]
fn refuse_refuses_and_healthy_serves_again() {
    require_root();
    let ns = NetNs::new("ep-refuse");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);
    let addr = ep.addr();
    assert_eq!(get_in(&ns, addr).status, 200);

    ep.set_behaviour(Behaviour::Refuse);
    let refused = ns.run(move || get(addr));

    match refused {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(r) => panic!("a refusing endpoint answered {r:?}"),
    }

    ep.set_behaviour(Behaviour::Healthy);
    let r = get_in(&ns, addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");

    // And once more, to show the rebound listener can be closed again.
    ep.set_behaviour(Behaviour::Refuse);
    let e = ns.run(move || get(addr)).expect_err("refused again");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    ep.set_behaviour(Behaviour::Status(503));
    assert_eq!(get_in(&ns, addr).status, 503);
}

#[test]
fn blackhole_accepts_but_never_answers() {
    require_root();
    let ns = NetNs::new("ep-bh");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);
    ep.set_behaviour(Behaviour::Blackhole);

    let mut s = send_head_in(&ns, ep.addr(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let read = s.read(&mut buf);

    match read {
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "expected a read timeout, got {e}"
        ),
        Ok(0) => panic!("the blackholed connection was closed"),
        Ok(n) => panic!(
            "the blackhole answered {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    assert!(ep.last_head().is_some(), "the request was read");
    assert_eq!(ep.requests(), 0);

    // Leaving the blackhole serves new connections again.
    ep.set_behaviour(Behaviour::Healthy);
    assert_eq!(get_in(&ns, ep.addr()).status, 200);
}

#[test]
fn requests_counts_answered_requests() {
    require_root();
    let ns = NetNs::new("ep-count");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);
    let addr = ep.addr();
    assert_eq!(ep.requests(), 0);

    for _ in 0..3 {
        assert_eq!(get_in(&ns, addr).status, 200);
    }
    assert_eq!(ep.requests(), 3);

    ep.set_behaviour(Behaviour::Status(500));
    assert_eq!(get_in(&ns, addr).status, 500);
    assert_eq!(ep.requests(), 4, "error answers count too");

    ep.set_behaviour(Behaviour::Refuse);
    assert!(ns.run(move || get(addr)).is_err());
    ep.set_behaviour(Behaviour::Blackhole);
    let held = send_head_in(&ns, addr, "GET / HTTP/1.1\r\n\r\n");
    wait_until("the blackholed request is read", || {
        ep.last_head().is_some_and(|h| !h.contains("Host:"))
    });
    assert_eq!(
        ep.requests(),
        4,
        "refused and blackholed requests do not count"
    );
    drop(held);

    ep.set_behaviour(Behaviour::Healthy);
    assert_eq!(get_in(&ns, addr).status, 200);
    assert_eq!(ep.requests(), 5);
}

#[test]
fn early_disconnects_do_not_break_the_server() {
    require_root();
    let ns = NetNs::new("ep-early");
    let ep = TestEndpoint::start(&ns, ip(V4), 8080);
    let addr = ep.addr();

    // Gone before the head is complete.
    drop(send_head_in(&ns, addr, "GET / HTTP/1.1\r\nHost"));
    // Gone during the delay.
    ep.set_delay(Duration::from_millis(300));
    let s = send_head_in(&ns, addr, "GET /early HTTP/1.1\r\n\r\n");
    wait_until("the early request is read", || {
        ep.last_head().is_some_and(|h| h.contains("/early"))
    });
    drop(s);
    std::thread::sleep(Duration::from_millis(500));
    // Connected and gone without a byte.
    drop(ns.run(move || TcpStream::connect(addr).unwrap()));

    ep.set_delay(Duration::ZERO);
    assert_eq!(get_in(&ns, addr).status, 200);
    assert_eq!(ep.requests(), 1, "only the complete exchange counts");
}

#[test]
fn two_endpoints_on_different_addresses() {
    require_root();
    let ns = NetNs::new("ep-two");
    let a = TestEndpoint::start(&ns, ip(V4), 8080);
    let b = TestEndpoint::start(&ns, ip(V4_B), 8080);
    assert_ne!(a.addr(), b.addr());

    b.set_behaviour(Behaviour::Status(503));
    let ra = get_in(&ns, a.addr());
    let rb = get_in(&ns, b.addr());
    let rb2 = get_in(&ns, b.addr());

    assert_eq!(ra.status, 200);
    assert_eq!(rb.status, 503);
    assert_eq!(rb2.status, 503);
    assert_eq!((a.requests(), b.requests()), (1, 2));

    a.set_behaviour(Behaviour::Refuse);
    assert!(ns.run({
        let addr = a.addr();
        move || get(addr).is_err()
    }));
    assert_eq!(get_in(&ns, b.addr()).status, 503, "b is unaffected by a");
}

#[test]
fn ipv6_endpoint() {
    require_root();
    let ns = NetNs::new("ep-v6");
    let ep = TestEndpoint::start(&ns, ip(V6), 8080);
    assert_eq!(ep.addr(), SocketAddr::new(ip(V6), 8080));

    let r = get_in(&ns, ep.addr());
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");

    ep.set_behaviour(Behaviour::Refuse);
    let addr = ep.addr();
    let e = ns.run(move || get(addr)).expect_err("refused");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    ep.set_behaviour(Behaviour::Healthy);
    assert_eq!(get_in(&ns, addr).status, 200);
    assert_eq!(ep.requests(), 2);
}

#[test]
fn webhook_receiver_collects_bodies_in_order() {
    require_root();
    let ns = NetNs::new("ep-hook");
    let hook = WebhookReceiver::start(&ns, ip(V4), 9000);
    assert_eq!(hook.url(), "http://10.99.0.1:9000/hook");
    let addr = hook.addr();
    let first = r#"{"pool":"www.example.test.","seq":1}"#;
    let second = r#"{"pool":"www.example.test.","seq":2}"#;

    let (r1, r2) = ns.run(move || {
        let h = "Content-Type: application/json\r\n";
        (
            request(addr, "POST", "/hook", h, first.as_bytes()).expect("first POST"),
            request(addr, "POST", "/hook", h, second.as_bytes()).expect("second POST"),
        )
    });

    assert_eq!((r1.status, r2.status), (200, 200));
    assert_eq!(r1.body, "");
    assert_eq!(hook.bodies(), vec![first.to_string(), second.to_string()]);
}

#[test]
fn webhook_receiver_chunked_continue_and_other_paths() {
    require_root();
    let ns = NetNs::new("ep-hook2");
    let hook = WebhookReceiver::start(&ns, ip(V6), 9000);
    assert_eq!(hook.url(), "http://[fd99::1]:9000/hook");
    let addr = hook.addr();

    let (other, get_hook, chunked, cont) = ns.run(move || {
        (
            request(addr, "POST", "/elsewhere", "", b"nope").unwrap(),
            request(addr, "GET", "/hook", "", b"").unwrap(),
            request(
                addr,
                "POST",
                "/hook",
                "Transfer-Encoding: chunked\r\n",
                b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
            )
            .unwrap(),
            request(addr, "POST", "/hook", "Expect: 100-continue\r\n", b"{}").unwrap(),
        )
    });

    assert_eq!(other.status, 404);
    assert_eq!(get_hook.status, 404);
    assert_eq!(chunked.status, 200);
    assert_eq!(cont.status, 200);
    assert_eq!(
        hook.wait_for_bodies(2, Duration::from_secs(5)),
        vec!["hello, world".to_string(), "{}".to_string()]
    );
}

#[test]
fn webhook_wait_for_bodies_waits_for_a_late_post() {
    require_root();
    let ns = NetNs::new("ep-hook3");
    let hook = WebhookReceiver::start(&ns, ip(V4), 9000);
    let addr = hook.addr();
    assert!(
        hook.wait_for_bodies(1, Duration::from_millis(100))
            .is_empty()
    );

    let poster = ns.spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        request(addr, "POST", "/hook", "", b"late").map(|r| r.status)
    });

    assert_eq!(
        hook.wait_for_bodies(1, Duration::from_secs(10)),
        vec!["late".to_string()]
    );
    assert_eq!(poster.join().unwrap().unwrap(), 200);
}

#[test]
fn drop_returns_promptly_with_open_connections() {
    require_root();
    let ns = NetNs::new("ep-drop");
    let name = ns.name.clone();
    let bh = TestEndpoint::start(&ns, ip(V4), 8080);
    let slow = TestEndpoint::start(&ns, ip(V4_B), 8080);
    let hook = WebhookReceiver::start(&ns, ip(V6), 9000);
    bh.set_behaviour(Behaviour::Blackhole);
    slow.set_delay(Duration::from_secs(600));
    // A blackholed request, one waiting out a long delay, a webhook POST that never
    // finishes its body, and a refusing endpoint with no listener.
    let held = send_head_in(&ns, bh.addr(), "GET / HTTP/1.1\r\n\r\n");
    let waiting = send_head_in(&ns, slow.addr(), "GET / HTTP/1.1\r\n\r\n");
    let partial = send_head_in(
        &ns,
        hook.addr(),
        "POST /hook HTTP/1.1\r\nContent-Length: 100\r\n\r\n{",
    );
    let refusing = TestEndpoint::start(&ns, ip(V4), 8081);
    refusing.set_behaviour(Behaviour::Refuse);
    wait_until("both requests are read", || {
        bh.last_head().is_some() && slow.last_head().is_some()
    });

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop((bh, slow, hook, refusing));
        drop(ns);
        let _ = tx.send(());
    });

    rx.recv_timeout(Duration::from_secs(20))
        .expect("dropping the servers and the namespace hung");
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.split_whitespace().any(|w| w == name),
        "{name} still listed:\n{list}"
    );
    // The servers closed their ends: the clients see EOF or a reset, never an answer.
    for (what, mut s) in [
        ("blackholed", held),
        ("delayed", waiting),
        ("webhook", partial),
    ] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("{what} connection after drop: {other:?}"),
        }
    }
}
