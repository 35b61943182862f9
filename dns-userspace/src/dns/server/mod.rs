//! The daemon's DNS server: UDP and TCP on every `listen` address, answering with
//! [`Authority::response`]. Queries the XDP path answers never get here; everything else
//! does (other types, other names, TCP, EDNS options, ...).
//!
//! - UDP ([`udp`]): `udp_workers` OS threads (default: one per CPU), each with its own
//!   socket per listen address (`SO_REUSEPORT`: the kernel spreads datagrams over them),
//!   moving up to 32 datagrams per `recvmmsg`/`sendmmsg` ([`mmsg`]), answering plain
//!   queries from a per-worker answer cache ([`crate::dns::cache`]), applying the acceptance
//!   rules and the response rate limiter ([`crate::dns::rrl`]).
//! - TCP ([`tcp`], RFC 7766): tokio tasks, with per-client and total connection limits,
//!   idle, per-message and lifetime deadlines.
//! - IPv6 sockets are IPv6-only, so `0.0.0.0` and `::` can both be listed. TCP listeners set
//!   `SO_REUSEADDR` (restart while old connections linger in TIME_WAIT). UDP sockets set
//!   `SO_REUSEPORT` for the workers' group, which would also let another process of the same
//!   user join the group and take a share of the queries: before binding the group, a socket
//!   without it must be able to bind the address (so an address some other socket holds is
//!   an error, as before), but a process started later as the same user can still join.
//! - Replies from a socket bound to a wildcard address leave from the address the query
//!   was sent to (`IP_PKTINFO`/`IPV6_PKTINFO`), which also reaches the request as its
//!   `local` address.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use crate::{
    dns::{
        authority::Authority,
        local::LocalAddrs,
        request::Transport,
        rrl::{Rrl, RrlSettings},
        stats::{Counters, ServerStats},
    },
    logs::List,
};

pub mod mmsg;
pub mod tcp;
pub mod udp;

/// Default UDP/TCP port.
pub const DEFAULT_PORT: u16 = 53;
/// Default EDNS UDP payload size we advertise (DNS flag day 2020).
pub const DEFAULT_EDNS_UDP_SIZE: u16 = 1232;
/// Smallest and largest accepted `edns_udp_size`.
pub const EDNS_UDP_SIZE_RANGE: std::ops::RangeInclusive<u16> = 512..=4096;
/// Default idle timeout of a TCP connection (RFC 7766 §6.2.3 suggests seconds).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of one TCP message from its first octet (and of writing a response).
pub const DEFAULT_TCP_MESSAGE_TIMEOUT: Duration = Duration::from_secs(3);
/// Default longest life of a TCP connection.
pub const DEFAULT_TCP_MAX_LIFETIME: Duration = Duration::from_secs(120);
/// Default TCP connections per client (an IPv4 address, an IPv6 /64).
pub const DEFAULT_TCP_MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// Default responses each UDP worker keeps in its answer cache.
pub const DEFAULT_ANSWER_CACHE_SIZE: usize = 4096;
/// Most UDP workers.
pub const MAX_UDP_WORKERS: usize = 256;
/// Most cached responses per worker.
pub const MAX_ANSWER_CACHE_SIZE: usize = 1 << 20;
/// Largest `udp_receive_buffer` (the kernel caps it at `net.core.rmem_max` anyway).
pub const MAX_UDP_RECEIVE_BUFFER: usize = 256 << 20;

/// `[server]`: the UDP/TCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// Addresses to listen on (UDP and TCP). Default `0.0.0.0` and `::`.
    pub listen: Vec<IpAddr>,
    /// Port to listen on. Default 53.
    pub port: u16,
    /// EDNS UDP payload size we advertise, 512..=4096, and the largest UDP response.
    /// Default 1232.
    pub edns_udp_size: u16,
    /// UDP worker threads (each with its own socket per address). None: one per CPU.
    pub udp_workers: Option<usize>,
    /// Responses each UDP worker caches (0: no cache). Default 4096.
    pub answer_cache_size: usize,
    /// `SO_RCVBUF` of each UDP socket in octets; 0 (the default) keeps the kernel's
    /// `net.core.rmem_default`.
    pub udp_receive_buffer: usize,
    /// A TCP connection without a new complete query for this long is closed. Default 10 s.
    pub tcp_idle_timeout: Duration,
    /// A TCP message must arrive complete this long after its first octet, and a response
    /// be written within it. Default 3 s.
    pub tcp_message_timeout: Duration,
    /// Longest life of a TCP connection. Default 2 min.
    pub tcp_max_lifetime: Duration,
    /// Most concurrent TCP connections. None: the open-file limit's share for TCP at start
    /// ([`crate::limits::FdBudget`]).
    pub tcp_max_connections: Option<usize>,
    /// Most concurrent TCP connections of one client. Default 32.
    pub tcp_max_connections_per_client: usize,
    /// `[rrl]`: response rate limiting of UDP answers.
    pub rrl: RrlSettings,
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
            udp_workers: None,
            answer_cache_size: DEFAULT_ANSWER_CACHE_SIZE,
            udp_receive_buffer: 0,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            tcp_message_timeout: DEFAULT_TCP_MESSAGE_TIMEOUT,
            tcp_max_lifetime: DEFAULT_TCP_MAX_LIFETIME,
            tcp_max_connections: None,
            tcp_max_connections_per_client: DEFAULT_TCP_MAX_CONNECTIONS_PER_CLIENT,
            rrl: RrlSettings::default(),
        }
    }
}

impl ServerSettings {
    /// UDP workers: as configured, else one per CPU.
    pub fn workers(&self) -> usize {
        self.udp_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// TCP connections at most: as set, else [`crate::limits`]'s fallback (the daemon sets
    /// the budget's share before binding).
    pub fn tcp_connections(&self) -> usize {
        self.tcp_max_connections
            .unwrap_or(crate::limits::FALLBACK_TCP_CONNECTIONS)
    }
}

/// Backlog of the TCP listeners.
const TCP_BACKLOG: i32 = 1024;
/// How long a UDP worker waits for a datagram before it checks for shutdown.
const UDP_POLL: Duration = Duration::from_millis(100);
/// How often the host's addresses are re-read (for the acceptance rules).
const LOCAL_REFRESH: Duration = Duration::from_secs(5);
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
    #[error("starting a UDP worker thread")]
    Thread(#[source] io::Error),
}

/// Bound UDP sockets and TCP listeners, ready to [`serve`](Listeners::serve).
#[derive(Debug)]
pub struct Listeners {
    /// Per listen address, one socket per worker.
    udp: Vec<Vec<udp::WorkerSocket>>,
    tcp: Vec<TcpListener>,
    stats: Arc<ServerStats>,
    rrl: Arc<Rrl>,
}

impl std::fmt::Debug for udp::WorkerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSocket")
            .field("bound", &self.bound)
            .finish()
    }
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
        let workers = settings.workers().max(1);
        let rcvbuf = settings.udp_receive_buffer;
        if settings.port != 0 {
            return Self::bind_port(&settings.listen, settings.port, workers, rcvbuf)
                .map(|l| l.with_rrl(&settings.rrl));
        }
        // Replaced by the error of every failed attempt (there are several).
        let mut last_error = ServerError::NoListenAddresses;
        for _ in 0..EPHEMERAL_ATTEMPTS {
            // A socket of the first address picks the port, the others take the same one.
            let first = SocketAddr::new(settings.listen[0], 0);
            let port = udp_socket(first, false, 0)
                .and_then(|probe| probe.local_addr())
                .map_err(bind_error("UDP", first))?
                .port();
            match Self::bind_port(&settings.listen, port, workers, rcvbuf) {
                Ok(l) => return Ok(l.with_rrl(&settings.rrl)),
                Err(e) => last_error = e,
            }
        }
        Err(ServerError::NoFreePort(Box::new(last_error)))
    }

    fn bind_port(
        listen: &[IpAddr],
        port: u16,
        workers: usize,
        rcvbuf: usize,
    ) -> Result<Self, ServerError> {
        let mut udp = Vec::with_capacity(listen.len());
        let mut tcp = Vec::with_capacity(listen.len());
        for ip in listen {
            let addr = SocketAddr::new(*ip, port);
            udp.push(udp_group(addr, workers, rcvbuf).map_err(bind_error("UDP", addr))?);
            let listener = tcp_listener(addr)
                .and_then(TcpListener::from_std)
                .map_err(bind_error("TCP", addr))?;
            tcp.push(listener);
        }
        Ok(Self {
            udp,
            tcp,
            stats: Arc::new(ServerStats::default()),
            rrl: Arc::default(),
        })
    }

    fn with_rrl(mut self, settings: &RrlSettings) -> Self {
        self.rrl = Arc::new(Rrl::new(settings));
        self
    }

    /// Local addresses of the UDP sockets, one per listen address, in `listen` order.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|group| group.first().map(|s| s.bound))
            .collect()
    }

    /// Local addresses of the TCP listeners, in `listen` order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The server's counters (readable while it serves).
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// The UDP answers' rate limiter: a reload puts new `[rrl]` settings in force through
    /// it ([`Rrl::apply`]) while the server runs.
    pub fn rrl(&self) -> Arc<Rrl> {
        self.rrl.clone()
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped); then stops
    /// receiving, closes the TCP connections and returns.
    pub async fn serve(
        self,
        authority: Arc<Authority>,
        settings: &ServerSettings,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ServerError> {
        let stop = Arc::new(AtomicBool::new(false));
        let local = Arc::new(ArcSwap::from_pointee(read_local_addrs()));
        let rrl = self.rrl.clone();
        let udp_addrs = self.udp_addrs();
        let mut threads = Vec::new();
        for (index, socket) in self.udp.into_iter().flatten().enumerate() {
            let counters = Arc::new(Counters::new(Transport::Udp, false));
            self.stats.register(counters.clone());
            let answerer = udp::Answerer::new(
                authority.clone(),
                settings.answer_cache_size,
                rrl.clone(),
                counters,
                local.load_full(),
            );
            let (worker_local, worker_stop) = (local.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name(format!("hotpool-udp-{index}"))
                .spawn(move || udp::run(socket, answerer, worker_local, worker_stop));
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    join(threads).await;
                    return Err(ServerError::Thread(e));
                }
            }
        }
        threads.push(refresher(local, stop.clone()));

        let tcp_counters = Arc::new(Counters::new(Transport::Tcp, true));
        self.stats.register(tcp_counters.clone());
        let shared = Arc::new(tcp::Shared {
            authority,
            registry: Arc::new(tcp::Registry::new(tcp::TcpLimits {
                max_connections: settings.tcp_connections(),
                per_client: settings.tcp_max_connections_per_client,
                idle: settings.tcp_idle_timeout,
                message: settings.tcp_message_timeout,
                lifetime: settings.tcp_max_lifetime,
            })),
            counters: tcp_counters,
        });
        let mut tasks = JoinSet::new();
        for listener in self.tcp {
            tasks.spawn(tcp::accept_loop(listener, shared.clone(), shutdown.clone()));
        }
        tracing::info!(
            udp = %List(&udp_addrs),
            workers = settings.workers(),
            answer_cache = settings.answer_cache_size,
            rrl = rrl.current().is_some(),
            tcp_max_connections = settings.tcp_connections(),
            "dns server listening"
        );
        stopped(&mut shutdown).await;
        stop.store(true, Ordering::Relaxed);
        // The TCP loops see the same signal and close their connections on the way out; the
        // UDP workers notice the flag within their receive timeout.
        while tasks.join_next().await.is_some() {}
        join(threads).await;
        tracing::info!("dns server stopped");
        Ok(())
    }
}

/// The host's addresses now; none (after a warning) if they cannot be read.
fn read_local_addrs() -> LocalAddrs {
    LocalAddrs::read().unwrap_or_else(|e| {
        tracing::warn!("reading the host's addresses for the acceptance rules: {e}");
        LocalAddrs::default()
    })
}

/// Re-reads the host's addresses every few seconds until `stop`.
fn refresher(
    local: Arc<ArcSwap<LocalAddrs>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut waited = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(UDP_POLL);
            waited += UDP_POLL;
            if waited >= LOCAL_REFRESH {
                waited = Duration::ZERO;
                if let Ok(now) = LocalAddrs::read()
                    && now != **local.load()
                {
                    local.store(Arc::new(now));
                }
            }
        }
    })
}

/// Waits for threads without blocking the runtime.
async fn join(threads: Vec<std::thread::JoinHandle<()>>) {
    let joined = tokio::task::spawn_blocking(move || {
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a UDP worker thread panicked");
            }
        }
    });
    let _ = joined.await;
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

/// A blocking UDP socket for a worker (`reuse_port`: part of a group) or a probe, with a
/// receive buffer of `rcvbuf` octets (0: the kernel's default).
///
/// The default is the kernel's because a larger buffer measured worse under overload: with
/// kxdpgun sending more than two cores can answer, `net.core.rmem_default` (208 KiB)
/// answered about a quarter more queries than 1–8 MiB, whose queued packets go cold in the
/// cache before a worker reads them; a closed-loop client such as dnsperf (256 queries
/// outstanding) does not fill even the default.
fn udp_socket(
    addr: SocketAddr,
    reuse_port: bool,
    rcvbuf: usize,
) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        mmsg::set_reuse_port(socket.as_raw_fd())?;
    }
    mmsg::set_packet_info(socket.as_raw_fd(), addr.is_ipv6())?;
    if rcvbuf > 0 {
        // The kernel caps it at net.core.rmem_max.
        socket.set_recv_buffer_size(rcvbuf)?;
    }
    socket.set_read_timeout(Some(UDP_POLL))?;
    socket.set_write_timeout(Some(UDP_POLL))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `workers` sockets bound to `addr` as one `SO_REUSEPORT` group; `addr` must be free.
fn udp_group(
    addr: SocketAddr,
    workers: usize,
    rcvbuf: usize,
) -> io::Result<Vec<udp::WorkerSocket>> {
    // A socket without SO_REUSEPORT binds only an address no other socket holds, so another
    // process's group is reported instead of joined.
    drop(udp_socket(addr, false, 0)?);
    (0..workers)
        .map(|_| {
            let socket = udp_socket(addr, true, rcvbuf)?;
            let bound = socket.local_addr()?;
            Ok(udp::WorkerSocket { socket, bound })
        })
        .collect()
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

#[cfg(test)]
mod tests;
