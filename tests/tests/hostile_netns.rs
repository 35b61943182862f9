//! Hostile traffic against the daemon's server (issue 10), in network namespaces: a
//! 5000-connection TCP flood against a daemon with a 1024 open-file limit (a normal client
//! is still answered, probes stay healthy, accept never runs out of descriptors), and
//! spoofed UDP sources the network stack lets through (a subnet broadcast source, a
//! reflection port) get no answer and move their counter.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType, serialize::binary::BinEncodable as _};
use hotpool_tests::{
    client,
    daemon::Daemon,
    netns::Link,
    process::{self, Files, Running},
    require_root,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The metrics port inside the server namespace.
const METRICS_PORT: u16 = 9153;

/// `GET /metrics` from inside the server namespace.
fn metrics(link: &Link) -> String {
    link.server.run(|| {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, METRICS_PORT)).expect("metrics");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{METRICS_PORT}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
}

/// The value of the metric line starting with `series` (0 when absent).
fn metric(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The process tests' zone and a record to ask for.
fn zone() -> String {
    format!("{}mail IN A   192.0.2.25\n", process::ZONE)
}

/// Adds `addr`/24 to the client end of `link`.
fn add_client_address(link: &Link, addr: Ipv4Addr) {
    link.client.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        &link.client_if,
    ]);
}

#[test]
fn a_tcp_flood_locks_out_no_client_and_starves_no_probe() {
    require_root();
    let limit = hotpool::limits::raise_nofile().expect("raising the open-file limit");
    assert!(
        limit.soft >= 6000,
        "the test opens 5000 connections and needs an open-file limit of 6000 (hard limit {})",
        limit.hard
    );
    let link = Link::new();
    // A probed endpoint inside the server namespace: accepts and closes.
    let (probe_port, _endpoint) = link.server.run(|| {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            for c in l.incoming() {
                drop(c);
            }
        });
        (port, handle)
    });
    let files = Files::new(
        "hostile-flood",
        &format!(
            r#"[server]
listen = ["{v4}"]
metrics_listen = "127.0.0.1:{METRICS_PORT}"
pin_path = "/sys/fs/bpf/hotpool-hostile-{pid}"

[[zone]]
origin = "example.test."
file = "example.test.zone"

[[pool]]
name = "www.example.test."
type = "A"
probe = {{ kind = "tcp", port = {probe_port}, interval = "1s", timeout = "900ms", rise = 1, fall = 2 }}
endpoints = [{{ address = "127.0.0.1" }}]

[events]
log = "events.jsonl"
"#,
            v4 = link.server_v4,
            pid = std::process::id(),
        ),
    );
    std::fs::write(files.file("example.test.zone"), zone()).unwrap();
    // The common default limit, which 1100 connections exhausted in issue 10.
    let daemon = Running::start_with_nofile(&link, &files, &["--no-xdp"], "hotpool.log", 1024);

    // 5000 connections from 50 addresses, opened without waiting, then held idle.
    let n = link.server_v4.octets()[2];
    let flooders: Vec<Ipv4Addr> = (100..150).map(|h| Ipv4Addr::new(10, 77, n, h)).collect();
    for a in &flooders {
        add_client_address(&link, *a);
    }
    let normal = Ipv4Addr::new(10, 77, n, 3);
    add_client_address(&link, normal);
    let server = SocketAddr::new(IpAddr::V4(link.server_v4), 53);
    let flood = link.client.spawn(move || {
        let mut held = Vec::with_capacity(5000);
        for i in 0..5000 {
            // 100 from each address in turn: over the per-client share, then over the total.
            let from = SocketAddr::new(IpAddr::V4(flooders[i / 100]), 0);
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            s.set_nonblocking(true).unwrap();
            s.bind(&from.into()).unwrap();
            let _ = s.connect(&SockAddr::from(server));
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(6));
        held.len()
    });

    // While the flood holds its connections, a normal client's query is answered.
    std::thread::sleep(Duration::from_millis(1500));
    let answered = link.client.run(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            s.bind(&SocketAddr::new(IpAddr::V4(normal), 0).into())
                .unwrap();
            if s.connect_timeout(&SockAddr::from(server), Duration::from_secs(1))
                .is_ok()
            {
                let mut s = TcpStream::from(s);
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let q = client::query("mail.example.test.", RecordType::A, false);
                let wire = q.to_bytes().unwrap();
                let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&wire);
                let mut len = [0u8; 2];
                if s.write_all(&framed).is_ok() && s.read_exact(&mut len).is_ok() {
                    return Some(started.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    assert_eq!(flood.join().unwrap(), 5000);
    let page = metrics(&link);
    let log = daemon.log();
    assert!(
        answered.is_some(),
        "the normal client got no TCP answer during the flood:\n{page}\n{log}"
    );
    println!(
        "normal client answered {:?} into its attempts",
        answered.unwrap()
    );
    let event = |e: &str| {
        metric(
            &page,
            &format!("hotpool_daemon_tcp_connections_total{{event=\"{e}\"}}"),
        )
    };
    assert!(event("per_client_limit") > 0, "{page}");
    assert!(event("total_limit") + event("evicted") > 0, "{page}");
    assert_eq!(event("accept_error"), 0, "{page}");
    assert!(!log.contains("Too many open files"), "{log}");
    // The probe never failed: the endpoint stayed up and no event says otherwise.
    assert_eq!(
        metric(
            &page,
            "hotpool_endpoint_up{pool=\"www.example.test.\",endpoint=\"127.0.0.1\"}"
        ),
        1,
        "{page}"
    );
    let events = std::fs::read_to_string(files.file("events.jsonl")).unwrap_or_default();
    assert!(!events.contains("\"new\":\"down\""), "{events}");
}

/// An IPv4/UDP packet from `src` to `dst` carrying `payload`, sent with a raw socket (so
/// any source address can be given) from the calling thread's namespace.
fn send_raw(src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only")
    };
    let builder =
        etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64).udp(src.port(), dst.port());
    let mut packet = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut packet, payload).unwrap();
    let raw = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .unwrap();
    raw.send_to(&packet, &SockAddr::from(dst)).unwrap();
}

#[test]
fn spoofed_sources_the_stack_lets_through_get_no_answer() {
    require_root();
    let link = Link::new();
    // No reverse-path filter in the server namespace: what a spoofed source gets past.
    for key in ["all", "default", &link.server_if] {
        link.server
            .exec_ok(&["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")]);
    }
    let d = Daemon::start(
        &link,
        &format!(
            r#"[server]
listen = ["{v4}"]
metrics_listen = "127.0.0.1:{METRICS_PORT}"
pin_path = "{{pin}}"

[[zone]]
origin = "example.test."
file = "zones/example.test.zone"
"#,
            v4 = link.server_v4
        ),
        false,
    );
    let server = SocketAddr::new(IpAddr::V4(link.server_v4), 53);
    let q = client::query("mail.example.test.", RecordType::A, false);
    let wire = q.to_bytes().unwrap();

    // The server subnet's broadcast address as source: a reply would go to every host.
    let n = link.server_v4.octets()[2];
    let broadcast = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 77, n, 255)), 40000);
    let sent = wire.clone();
    link.client.run(move || send_raw(broadcast, server, &sent));

    // Source port 19 (chargen) from the client's real address.
    let client_v4 = link.client_v4;
    let sent = wire.clone();
    let reply = link.client.run(move || {
        let s = UdpSocket::bind((client_v4, 19)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.send_to(&sent, server).unwrap();
        let mut buf = [0u8; 512];
        s.recv_from(&mut buf).ok().map(|(n, _)| n)
    });
    assert_eq!(reply, None, "no answer to source port 19");

    // An ordinary client is answered.
    let r = link
        .client
        .run(move || client::udp(server, &q, Duration::from_secs(2)).expect("an answer"));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = metrics(&link);
        let rejected =
            |r: &str| metric(&page, &format!("hotpool_rejected_total{{reason=\"{r}\"}}"));
        if rejected("broadcast") == 1 && rejected("source_port") == 1 {
            assert_eq!(
                rejected("loopback") + rejected("own_address") + rejected("multicast"),
                0
            );
            assert!(
                metric(
                    &page,
                    "hotpool_daemon_responses_total{rcode=\"NOERROR\",qtype=\"A\",transport=\"udp\"}"
                ) >= 1,
                "{page}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "rejections not counted:\n{page}");
        std::thread::sleep(Duration::from_millis(100));
    }
    d.stop();
}
