//! The daemon's DNS server: UDP and TCP on every `listen` address, answering with
//! [`Authority::respond`]. Queries the XDP path answers never get here; everything else
//! does (other types, other names, TCP, EDNS options, ...).
//!
//! - UDP: a few receive loops per socket (one per CPU, at most four), each answering inline.
//! - TCP (RFC 7766): two-octet length framing, any number of queries per connection
//!   answered in order (pipelining), an idle timeout while waiting for the next query and
//!   for each read or write, a limit on concurrent connections (connections beyond it are
//!   closed right after accept), `TCP_NODELAY`.
//! - IPv6 sockets are IPv6-only, so `0.0.0.0` and `::` can both be listed. TCP listeners set
//!   `SO_REUSEADDR` (restart while old connections linger in TIME_WAIT); UDP sockets do
//!   not, because on Linux it would let a second process bind the same address and silently
//!   take over its queries.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{Semaphore, watch},
    task::JoinSet,
    time::timeout,
};

use crate::{
    dns::{
        authority::Authority,
        request::{Request, Transport},
    },
    logs::List,
};

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

/// `[server]`: the UDP/TCP server.
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
        }
    }
}

/// Largest DNS message (and so UDP datagram) we read.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// Backlog of the TCP listeners.
const TCP_BACKLOG: i32 = 1024;
/// Socket receive buffer asked for UDP (bursts while the loops are busy).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Pause after a failed accept or receive, so a persistent error does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(20);
/// Attempts at finding one free ephemeral port for every socket when `port` is 0.
const EPHEMERAL_ATTEMPTS: usize = 32;

/// Why the server cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no listen addresses configured")]
    NoListenAddresses,
    #[error("binding {transport} {addr}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("finding one free port for every listen address")]
    NoFreePort(#[source] Box<ServerError>),
}

/// Bound UDP sockets and TCP listeners, ready to [`serve`](Listeners::serve).
#[derive(Debug)]
pub struct Listeners {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

/// Binds UDP and TCP on every `settings.listen` address at `settings.port`.
///
/// With port 0 one free port is picked and used for all sockets, so tests can ask a
/// single address over both transports.
pub async fn bind(settings: &ServerSettings) -> Result<Listeners, ServerError> {
    Listeners::bind(settings).await
}

/// Serves until `shutdown` becomes true (or its sender is dropped).
pub async fn serve(
    authority: Arc<Authority>,
    settings: &ServerSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    bind(settings)
        .await?
        .serve(authority, settings, shutdown)
        .await
}

/// [`Listeners::serve`] with owned settings, for `tokio::spawn`.
pub async fn run(
    listeners: Listeners,
    authority: Arc<Authority>,
    settings: ServerSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    listeners.serve(authority, &settings, shutdown).await
}

impl Listeners {
    /// See [`bind`].
    pub async fn bind(settings: &ServerSettings) -> Result<Self, ServerError> {
        if settings.listen.is_empty() {
            return Err(ServerError::NoListenAddresses);
        }
        if settings.port != 0 {
            return Self::bind_port(&settings.listen, settings.port);
        }
        // Replaced by the error of every failed attempt (there are several).
        let mut last_error = ServerError::NoListenAddresses;
        for _ in 0..EPHEMERAL_ATTEMPTS {
            // The first socket picks the port, the others take the same one.
            let first = SocketAddr::new(settings.listen[0], 0);
            let port = udp_socket(first)
                .and_then(|probe| probe.local_addr())
                .map_err(bind_error("UDP", first))?
                .port();
            match Self::bind_port(&settings.listen, port) {
                Ok(l) => return Ok(l),
                Err(e) => last_error = e,
            }
        }
        Err(ServerError::NoFreePort(Box::new(last_error)))
    }

    fn bind_port(listen: &[IpAddr], port: u16) -> Result<Self, ServerError> {
        let mut udp = Vec::with_capacity(listen.len());
        let mut tcp = Vec::with_capacity(listen.len());
        for ip in listen {
            let addr = SocketAddr::new(*ip, port);
            let socket = udp_socket(addr)
                .and_then(UdpSocket::from_std)
                .map_err(bind_error("UDP", addr))?;
            udp.push(Arc::new(socket));
            let listener = tcp_listener(addr)
                .and_then(TcpListener::from_std)
                .map_err(bind_error("TCP", addr))?;
            tcp.push(listener);
        }
        Ok(Self { udp, tcp })
    }

    /// Local addresses of the UDP sockets, in `listen` order.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Local addresses of the TCP listeners, in `listen` order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped); then stops
    /// receiving, closes the TCP connections and returns.
    pub async fn serve(
        self,
        authority: Arc<Authority>,
        settings: &ServerSettings,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ServerError> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let mut tasks = JoinSet::new();
        for socket in &self.udp {
            for _ in 0..workers {
                tasks.spawn(udp_loop(
                    socket.clone(),
                    authority.clone(),
                    shutdown.clone(),
                ));
            }
        }
        let slots = Arc::new(Semaphore::new(settings.tcp_max_connections.max(1)));
        for listener in self.tcp {
            tasks.spawn(tcp_loop(
                listener,
                authority.clone(),
                slots.clone(),
                settings.tcp_idle_timeout,
                shutdown.clone(),
            ));
        }
        tracing::info!(
            udp = %List(&self.udp.iter().filter_map(|s| s.local_addr().ok()).collect::<Vec<_>>()),
            "dns server listening"
        );
        stopped(&mut shutdown).await;
        // The loops see the same signal; wait for them (the TCP loops close their
        // connections on the way out).
        while tasks.join_next().await.is_some() {}
        tracing::info!("dns server stopped");
        Ok(())
    }
}

fn bind_error(transport: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> ServerError {
    move |source| ServerError::Bind {
        transport,
        addr,
        source,
    }
}

/// Completes once shutdown is requested (true) or can no longer be (sender dropped).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    Ok(socket.into())
}

async fn udp_loop(
    socket: Arc<UdpSocket>,
    authority: Arc<Authority>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    // A socket bound to a wildcard address does not say which address a datagram was for.
    let local = socket
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            () = stopped(&mut shutdown) => return,
        };
        let (len, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // E.g. ICMP port unreachable reported for an earlier reply.
                tracing::debug!("udp receive: {e}");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let mut request = Request::new(&buf[..len], peer, Transport::Udp);
        if let Some(local) = local {
            request = request.with_local(local);
        }
        let Some(response) = authority.respond(&request) else {
            continue;
        };
        if let Err(e) = socket.send_to(&response, peer).await {
            tracing::debug!(%peer, "udp send: {e}");
        }
    }
}

async fn tcp_loop(
    listener: TcpListener,
    authority: Arc<Authority>,
    slots: Arc<Semaphore>,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = connections.join_next() => continue,
            () = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. out of file descriptors: the backlog keeps the connection waiting.
                tracing::warn!("tcp accept: {e}");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many tcp connections, closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let authority = authority.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            if let Err(e) = tcp_connection(stream, peer, &authority, idle, shutdown).await {
                tracing::debug!(%peer, "tcp connection: {e}");
            }
            drop(slot);
        });
    }
    // Connections stop at the same signal; wait for them to close.
    while connections.join_next().await.is_some() {}
}

/// Answers the queries of one connection in order until the client closes it, it idles
/// for `idle`, a read or write takes longer than `idle`, or shutdown.
async fn tcp_connection(
    stream: TcpStream,
    peer: SocketAddr,
    authority: &Authority,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let local = stream.local_addr().ok();
    let (read, write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut write = BufWriter::new(write);
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "idle timeout");
    let mut message = Vec::new();
    loop {
        let mut len = [0u8; 2];
        let first = tokio::select! {
            r = timeout(idle, read.read_exact(&mut len)) => r,
            () = stopped(&mut shutdown) => break,
        };
        match first {
            Ok(Ok(_)) => {}
            // The client closed between messages: the normal end.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
        message.resize(usize::from(dns_common::be16(len)), 0);
        timeout(idle, read.read_exact(&mut message))
            .await
            .map_err(|_| timed_out())??;
        let mut request = Request::new(&message, peer, Transport::Tcp);
        if let Some(local) = local {
            request = request.with_local(local);
        }
        if let Some(response) = authority.respond(&request) {
            let len = u16::try_from(response.len())
                .map_err(|_| io::Error::other("response longer than 65535 octets"))?;
            timeout(idle, async {
                write.write_all(&len.to_be_bytes()).await?;
                write.write_all(&response).await
            })
            .await
            .map_err(|_| timed_out())??;
        }
        // Send once no further pipelined query is already waiting.
        if read.buffer().is_empty() {
            timeout(idle, write.flush())
                .await
                .map_err(|_| timed_out())??;
        }
    }
    timeout(idle, write.flush())
        .await
        .map_err(|_| timed_out())??;
    timeout(idle, write.shutdown())
        .await
        .map_err(|_| timed_out())??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, str::FromStr, time::Instant};

    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query, ResponseCode},
        rr::{LowerName, Name, RData, RecordType, rdata::A},
    };

    use super::*;
    use crate::{
        datapath::pools::{PoolAnswer, PoolTable},
        dns::zone::{Zone, ZoneSettings},
    };

    const ZONE: &str = "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 h 1 2 3 4 60\n@ NS ns1\nns1 A 192.0.2.53\nmail A 192.0.2.25\n";

    fn authority() -> Arc<Authority> {
        let settings = ZoneSettings {
            origin: Name::from_str("example.test.").unwrap(),
            file: PathBuf::from("/nonexistent/test.zone"),
            soa: None,
            ns: vec![],
            ns_ttl: 3600,
        };
        let zone = Zone::parse(&settings, ZONE).unwrap();
        let pools = Arc::new(PoolTable::new([PoolAnswer {
            name: Name::from_str("www.example.test.").unwrap(),
            rtype: RecordType::A,
            ttl: 30,
            rdata: vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))],
            selection: crate::datapath::pools::Selection::All,
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
        let listeners = bind(&settings).await.unwrap();
        let (udp, tcp) = (listeners.udp_addrs(), listeners.tcp_addrs());
        let (stop, shutdown) = watch::channel(false);
        let task =
            tokio::spawn(async move { listeners.serve(authority(), &settings, shutdown).await });
        Running {
            udp,
            tcp,
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
        s.tcp_max_connections = 1;
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
}
