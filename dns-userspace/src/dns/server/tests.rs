//! The server over real sockets on loopback: UDP and TCP answers, pipelining, limits,
//! shutdown, bind errors.

use std::{path::PathBuf, str::FromStr, time::Instant};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{LowerName, Name, RData, RecordType, rdata::A},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

use super::*;
use crate::{
    datapath::pools::{PoolAnswer, PoolTable},
    dns::zone::{Zone, ZoneSettings},
};

mod answers;
mod defences;

const ZONE: &str = "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 h 1 2 3 4 60\n@ NS ns1\nns1 A 192.0.2.53\nmail A 192.0.2.25\n";

/// `text` as the zone example.test.
fn parse_zone(text: &str) -> Zone {
    let settings = ZoneSettings {
        origin: Name::from_str("example.test.").unwrap(),
        file: PathBuf::from("/nonexistent/test.zone"),
        soa: None,
        ns: vec![],
        ns_ttl: 3600,
    };
    Zone::parse(&settings, text).unwrap()
}

fn authority() -> Arc<Authority> {
    let zone = parse_zone(ZONE);
    let pools = Arc::new(PoolTable::new([PoolAnswer {
        name: Name::from_str("www.example.test.").unwrap(),
        rtype: RecordType::A,
        ttl: 30,
        rdata: vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))],
        selection: crate::datapath::pools::Selection::All,
        region: crate::geo::RegionId::DEFAULT,
    }]));
    Arc::new(Authority::new(vec![zone], pools, 1232))
}

fn settings(listen: Vec<IpAddr>) -> ServerSettings {
    ServerSettings {
        listen,
        port: 0,
        tcp_idle_timeout: Duration::from_secs(5),
        ..ServerSettings::default()
    }
}

fn localhost() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
}

struct Running {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    stats: Arc<ServerStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops within 5 s")
            .unwrap()
            .unwrap();
    }
}

async fn start(settings: ServerSettings) -> Running {
    start_with(settings, authority()).await
}

async fn start_with(settings: ServerSettings, authority: Arc<Authority>) -> Running {
    let listeners = bind(&settings).await.unwrap();
    let (udp, tcp) = (listeners.udp_addrs(), listeners.tcp_addrs());
    let stats = listeners.stats();
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move { listeners.serve(authority, &settings, shutdown).await });
    Running {
        udp,
        tcp,
        stats,
        stop,
        task,
    }
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    out
}

async fn read_framed(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    timeout(Duration::from_secs(5), stream.read_exact(&mut len))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).await.unwrap();
    Message::from_vec(&msg).unwrap()
}

async fn udp_ask(server: SocketAddr, msg: &[u8]) -> Message {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
    };
    let client = UdpSocket::bind(local).await.unwrap();
    client.send_to(msg, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .expect("a response within 5 s")
        .unwrap();
    assert_eq!(from, server);
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test]
async fn answers_over_udp() {
    let server = start(settings(localhost())).await;
    assert_eq!(server.udp.len(), 1);
    assert_eq!(server.udp[0].port(), server.tcp[0].port());

    let r = udp_ask(server.udp[0], &query(7, "WWW.example.test.", RecordType::A)).await;
    assert_eq!(r.metadata.id, 7);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 10))));

    let r = udp_ask(
        server.udp[0],
        &query(8, "nope.example.test.", RecordType::A),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    server.stop().await;
}

#[tokio::test]
async fn answers_pipelined_queries_over_tcp_in_order() {
    let server = start(settings(localhost())).await;
    let mut stream = TcpStream::connect(server.tcp[0]).await.unwrap();
    // Two queries in one segment, the second split across a later write.
    let mut both = framed(&query(1, "mail.example.test.", RecordType::A));
    let second = framed(&query(2, "www.example.test.", RecordType::A));
    both.extend_from_slice(&second[..5]);
    stream.write_all(&both).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    stream.write_all(&second[5..]).await.unwrap();

    let first = read_framed(&mut stream).await;
    assert_eq!(first.metadata.id, 1);
    assert_eq!(
        first.answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 25)))
    );
    let second = read_framed(&mut stream).await;
    assert_eq!(second.metadata.id, 2);
    assert_eq!(
        second.answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))
    );

    // The connection stays open for more.
    stream
        .write_all(&framed(&query(3, "example.test.", RecordType::SOA)))
        .await
        .unwrap();
    assert_eq!(read_framed(&mut stream).await.metadata.id, 3);

    // A clean close from the client ends the connection without a reply.
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let mut s = settings(localhost());
    s.tcp_idle_timeout = Duration::from_millis(200);
    let server = start(s).await;
    let mut stream = TcpStream::connect(server.tcp[0]).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("closed by the server within 5 s")
        .unwrap();
    assert!(rest.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let mut s = settings(localhost());
    s.tcp_max_connections = Some(1);
    let server = start(s).await;
    let mut first = TcpStream::connect(server.tcp[0]).await.unwrap();
    first
        .write_all(&framed(&query(1, "mail.example.test.", RecordType::A)))
        .await
        .unwrap();
    assert_eq!(read_framed(&mut first).await.metadata.id, 1);

    let mut second = TcpStream::connect(server.tcp[0]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("closed by the server within 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // The first connection still works; after it closes a new one is accepted.
    first
        .write_all(&framed(&query(2, "mail.example.test.", RecordType::A)))
        .await
        .unwrap();
    assert_eq!(read_framed(&mut first).await.metadata.id, 2);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut third = TcpStream::connect(server.tcp[0]).await.unwrap();
        third
            .write_all(&framed(&query(3, "mail.example.test.", RecordType::A)))
            .await
            .unwrap();
        let mut len = [0u8; 2];
        if let Ok(Ok(_)) = timeout(Duration::from_secs(1), third.read_exact(&mut len)).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slot freed after the first connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let server = start(settings(localhost())).await;
    let mut stream = TcpStream::connect(server.tcp[0]).await.unwrap();
    stream
        .write_all(&framed(&query(1, "mail.example.test.", RecordType::A)))
        .await
        .unwrap();
    read_framed(&mut stream).await;
    server.stop().await;
    let mut rest = Vec::new();
    let _ = timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("connection closed at shutdown");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn ipv4_and_ipv6_wildcards_coexist() {
    if std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipping: no IPv6 on this machine");
        return;
    }
    let listen = vec![
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    let server = start(settings(listen)).await;
    let port = server.udp[0].port();
    assert!(
        server
            .udp
            .iter()
            .chain(&server.tcp)
            .all(|a| a.port() == port)
    );
    let v4: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    let v6: SocketAddr = (Ipv6Addr::LOCALHOST, port).into();
    for addr in [v4, v6] {
        let r = udp_ask(addr, &query(9, "mail.example.test.", RecordType::A)).await;
        assert_eq!(r.answers.len(), 1, "{addr}");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&framed(&query(10, "mail.example.test.", RecordType::A)))
            .await
            .unwrap();
        assert_eq!(read_framed(&mut stream).await.metadata.id, 10, "{addr}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bind_errors_name_the_address() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut s = settings(localhost());
    s.port = port;
    // UDP on that port may be free; TCP is not.
    let e = bind(&s).await.unwrap_err();
    let shown = format!("{e:#}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");

    let taken = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.port = taken.local_addr().unwrap().port();
    let e = bind(&s).await.unwrap_err();
    let shown = format!("{e:#}");
    assert!(
        shown.contains(&format!("binding UDP 127.0.0.1:{}", s.port)),
        "{shown}"
    );
}

#[tokio::test]
async fn serve_returns_when_shutdown_is_already_requested() {
    let s = settings(localhost());
    let (_stop, shutdown) = watch::channel(true);
    timeout(Duration::from_secs(5), serve(authority(), &s, shutdown))
        .await
        .expect("returns at once")
        .unwrap();
    // The pool table is shared, not copied.
    let a = authority();
    assert!(
        a.pools()
            .get(&LowerName::from(
                Name::from_str("www.example.test.").unwrap()
            ))
            .is_some()
    );
}
