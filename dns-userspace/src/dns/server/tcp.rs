//! The TCP side (RFC 7766): two-octet length framing, any number of queries per connection
//! answered in order (pipelining), `TCP_NODELAY`, and bounded resources:
//!
//! - **Connection limits.** At most `tcp_max_connections` at once and
//!   `tcp_max_connections_per_client` per client (an IPv4 address, an IPv6 /64). A client
//!   over its share is closed right after accept. When every slot is taken, the connection
//!   that has been idle between queries the longest is closed to make room (a flood of idle
//!   connections cannot lock out a client with a query), provided it has been idle for a
//!   moment ([`EVICT_AFTER`], or a quarter of the idle timeout when that is shorter: a
//!   client that just connected or was just answered keeps its connection); with none
//!   such the new one is closed.
//! - **Deadlines.** Between queries a connection may stay idle for `tcp_idle_timeout`,
//!   counted from its last complete query (or from accept): octets that do not complete a
//!   query, a zero-length message, garbage, do not extend it. Once the first octet of a
//!   message arrives the whole message must arrive within `tcp_message_timeout`, however it
//!   trickles in; a response must be written within the same time. A connection lives at
//!   most `tcp_max_lifetime` (closed after the query in progress).
//! - **Accept errors** (out of file descriptors, ...) are counted, logged at most every few
//!   seconds, and back off from 10 ms to 1 s, so they neither spin nor starve other tasks;
//!   the pending connections wait in the backlog meanwhile.
//!
//! Every event is counted ([`TcpEvent`]). TCP answers are never rate limited: the handshake
//! proves the client's address.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter},
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
    task::JoinSet,
    time::{Instant, sleep, sleep_until, timeout_at},
};

use super::stopped;
use crate::dns::{
    authority::Authority,
    request::{Request, Transport},
    stats::{Counters, TcpEvent, qtype_slot, rcode_slot},
};

/// First and longest pause after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// How long a connection must have been idle before it can be closed to make room.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);
/// Accept errors are logged at most this often.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// The TCP limits, from `[server]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub per_client: usize,
    pub idle: Duration,
    pub message: Duration,
    pub lifetime: Duration,
}

/// One open connection, as the slot table sees it.
#[derive(Debug)]
struct Conn {
    client: IpAddr,
    /// When it became idle between queries (ns on the table's clock, plus one), 0 while a
    /// message is in progress.
    idle_since: AtomicU64,
    /// Told when the connection is closed to make room.
    evict: Notify,
}

/// Open connections in a slab: a connection's index is its place, so one to evict can be
/// sampled at random in constant time.
#[derive(Debug, Default)]
struct Slots {
    open: Vec<Option<Arc<Conn>>>,
    /// Free places in `open`.
    free: Vec<usize>,
    count: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Slots {
    fn insert(&mut self, conn: Arc<Conn>) -> usize {
        let at = self.free.pop().unwrap_or_else(|| {
            self.open.push(None);
            self.open.len() - 1
        });
        self.open[at] = Some(conn);
        self.count += 1;
        at
    }

    /// Frees place `at` if `conn` still holds it.
    fn remove(&mut self, at: usize, conn: &Arc<Conn>) -> bool {
        let held = self
            .open
            .get(at)
            .and_then(Option::as_ref)
            .is_some_and(|c| Arc::ptr_eq(c, conn));
        if held {
            self.open[at] = None;
            self.free.push(at);
            self.count -= 1;
        }
        held
    }
}

/// Up to this many connections, eviction looks at every one; beyond, at a random sample of
/// [`EVICT_SAMPLE`] (an approximate oldest, in constant time however full the table is).
const EVICT_SCAN_ALL: usize = 64;
const EVICT_SAMPLE: usize = 32;

/// The connection slots of every TCP listener of a server.
#[derive(Debug)]
pub struct Registry {
    limits: TcpLimits,
    slots: Mutex<Slots>,
    clock: std::time::Instant,
}

/// A connection's hold on its slot, released on drop.
struct Slot {
    registry: Arc<Registry>,
    at: usize,
    conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.registry.lock();
        slots.remove(self.at, &self.conn);
        let key = client_key(self.conn.client);
        if let Some(n) = slots.per_client.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                slots.per_client.remove(&key);
            }
        }
    }
}

/// Whose share a connection counts against: an IPv4 address, an IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

impl Registry {
    pub fn new(limits: TcpLimits) -> Self {
        Self {
            limits,
            slots: Mutex::default(),
            clock: std::time::Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().count
    }

    /// A slot for a new connection from `client`, or why there is none. Evicts the
    /// connection idle the longest (of a sample, in a large table) when every slot is taken.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<(Slot, bool), TcpEvent> {
        let mut slots = self.lock();
        let key = client_key(client);
        if slots.per_client.get(&key).copied().unwrap_or(0) >= self.limits.per_client {
            return Err(TcpEvent::PerClientLimit);
        }
        let mut evicted = false;
        if slots.count >= self.limits.max_connections {
            let grace = EVICT_AFTER.min(self.limits.idle / 4);
            let now = self.now();
            let idle_since = now.saturating_sub(u64::try_from(grace.as_nanos()).unwrap_or(0));
            let places = slots.open.len();
            let candidate = |at: usize| {
                let c = slots.open.get(at)?.as_ref()?;
                let since = c.idle_since.load(Ordering::Relaxed);
                (since != 0 && since - 1 <= idle_since).then_some((since, at))
            };
            let victim = if places <= EVICT_SCAN_ALL {
                (0..places).filter_map(candidate).min()
            } else {
                (0..EVICT_SAMPLE)
                    .filter_map(|_| candidate(rand::random_range(0..places)))
                    .min()
            };
            let Some((_, at)) = victim else {
                return Err(TcpEvent::TotalLimit);
            };
            if let Some(conn) = slots.open.get(at).cloned().flatten()
                && slots.remove(at, &conn)
            {
                conn.evict.notify_one();
                evicted = true;
            }
        }
        let conn = Arc::new(Conn {
            client,
            idle_since: AtomicU64::new(0),
            evict: Notify::new(),
        });
        let at = slots.insert(conn.clone());
        *slots.per_client.entry(key).or_default() += 1;
        Ok((
            Slot {
                registry: self.clone(),
                at,
                conn,
            },
            evicted,
        ))
    }

    /// Nanoseconds on the table's clock.
    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn mark_idle(&self, conn: &Conn) {
        conn.idle_since
            .store(self.now().saturating_add(1), Ordering::Relaxed);
    }
}

/// What a TCP listener needs.
pub struct Shared {
    pub authority: Arc<Authority>,
    pub registry: Arc<Registry>,
    pub counters: Arc<Counters>,
}

/// Accepts connections until shutdown, then waits for them to close.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut pause = ACCEPT_PAUSE;
    let mut last_warning: Option<Instant> = None;
    let mut unreported = 0u64;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = connections.join_next() => continue,
            () = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                pause = ACCEPT_PAUSE;
                a
            }
            Err(e) => {
                shared.counters.tcp(TcpEvent::AcceptError);
                unreported += 1;
                if last_warning.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_EVERY) {
                    tracing::warn!(
                        errors = unreported,
                        "tcp accept failed: {e}; backing off (connections wait in the backlog)"
                    );
                    last_warning = Some(Instant::now());
                    unreported = 0;
                }
                tokio::select! {
                    () = sleep(pause) => {}
                    () = stopped(&mut shutdown) => break,
                }
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                continue;
            }
        };
        let (slot, evicted) = match shared.registry.admit(peer.ip()) {
            Ok(s) => s,
            Err(event) => {
                tracing::debug!(%peer, "tcp connection refused: {}", event.name());
                shared.counters.tcp(event);
                drop(stream);
                continue;
            }
        };
        if evicted {
            shared.counters.tcp(TcpEvent::Evicted);
        }
        shared.counters.tcp(TcpEvent::Accepted);
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            match connection(stream, peer, &shared, &slot, shutdown).await {
                Ok(Some(event)) => shared.counters.tcp(event),
                Ok(None) => {}
                Err(e) => tracing::debug!(%peer, "tcp connection: {e}"),
            }
            drop(slot);
        });
    }
    // Connections stop at the same signal; wait for them to close.
    while connections.join_next().await.is_some() {}
}

/// Answers the queries of one connection in order until the client closes it, a limit
/// closes it (returned as the event to count), or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    slot: &Slot,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<Option<TcpEvent>> {
    let limits = shared.registry.limits;
    let local = stream.local_addr().ok();
    let (read, write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut write = BufWriter::new(write);
    let accepted = Instant::now();
    let end_of_life = accepted + limits.lifetime;
    let mut idle_until = accepted + limits.idle;
    let mut message = Vec::new();
    let mut closed_by = None;
    loop {
        // Between messages: wait for the first octet of the next one.
        shared.registry.mark_idle(&slot.conn);
        let wait_until = idle_until.min(end_of_life);
        let first = tokio::select! {
            r = read.fill_buf() => r.map(|b| b.len()),
            () = sleep_until(wait_until) => {
                closed_by = Some(if wait_until == end_of_life {
                    TcpEvent::Lifetime
                } else {
                    TcpEvent::IdleTimeout
                });
                break;
            }
            () = slot.conn.evict.notified() => break,
            () = stopped(&mut shutdown) => break,
        };
        match first {
            // The client closed between messages: the normal end.
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        slot.conn.idle_since.store(0, Ordering::Relaxed);
        // From the first octet, the whole message by one deadline.
        let deadline = Instant::now() + limits.message;
        let complete = timeout_at(deadline, async {
            let mut len = [0u8; 2];
            read.read_exact(&mut len).await?;
            message.resize(usize::from(u16::from_be_bytes(len)), 0);
            read.read_exact(&mut message).await.map(drop)
        })
        .await;
        match complete {
            Ok(Ok(())) => {}
            // Closed in the middle of a message.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                closed_by = Some(TcpEvent::MessageTimeout);
                break;
            }
        }
        let mut request = Request::new(&message, peer, Transport::Tcp);
        if let Some(local) = local {
            request = request.with_local(local);
        }
        if let Some(response) = shared.authority.response(&request) {
            // Only a query that gets an answer counts as traffic for the idle timeout.
            idle_until = Instant::now() + limits.idle;
            shared
                .counters
                .response(rcode_slot(response.rcode), qtype_slot(response.qtype));
            if let Some(pool) = &response.pool {
                shared.counters.bump(&shared.counters.pool(pool));
            }
            let len = u16::try_from(response.bytes.len())
                .map_err(|_| io::Error::other("response longer than 65535 octets"))?;
            let written = timeout_at(Instant::now() + limits.message, async {
                write.write_all(&len.to_be_bytes()).await?;
                write.write_all(&response.bytes).await
            })
            .await;
            match written {
                Ok(r) => r?,
                Err(_) => {
                    closed_by = Some(TcpEvent::MessageTimeout);
                    break;
                }
            }
        }
        // Send once no further pipelined query is already waiting.
        if read.buffer().is_empty() {
            match timeout_at(Instant::now() + limits.message, write.flush()).await {
                Ok(r) => r?,
                Err(_) => {
                    closed_by = Some(TcpEvent::MessageTimeout);
                    break;
                }
            }
        }
        if Instant::now() >= end_of_life {
            closed_by = Some(TcpEvent::Lifetime);
            break;
        }
    }
    if closed_by != Some(TcpEvent::MessageTimeout) {
        // Best effort: what is buffered, then the close.
        let _ = timeout_at(Instant::now() + limits.message, async {
            write.flush().await?;
            write.shutdown().await
        })
        .await;
    }
    Ok(closed_by)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> TcpLimits {
        TcpLimits {
            max_connections: max,
            per_client,
            // Evictable after 500 ms idle.
            idle: Duration::from_secs(2),
            message: Duration::from_secs(2),
            lifetime: Duration::from_secs(60),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_client_shares_and_release() {
        let r = Arc::new(Registry::new(limits(10, 2)));
        let a1 = r.admit(ip("192.0.2.1")).unwrap();
        let _a2 = r.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            r.admit(ip("192.0.2.1")).err(),
            Some(TcpEvent::PerClientLimit)
        );
        // Another address has its own share; an IPv6 /64 is one client.
        let _b = r.admit(ip("192.0.2.2")).unwrap();
        let _c1 = r.admit(ip("2001:db8::1")).unwrap();
        let _c2 = r.admit(ip("2001:db8::2:3")).unwrap();
        assert_eq!(
            r.admit(ip("2001:db8::ffff")).err(),
            Some(TcpEvent::PerClientLimit)
        );
        assert!(r.admit(ip("2001:db8:0:1::1")).is_ok());
        drop(a1);
        assert!(
            r.admit(ip("192.0.2.1")).is_ok(),
            "a closed connection frees its share"
        );
        // a2, b, c1, c2 (the slots admitted just to check were released at once).
        assert_eq!(r.open(), 4);
    }

    #[test]
    fn a_full_table_evicts_the_longest_idle_connection() {
        let r = Arc::new(Registry::new(limits(3, 10)));
        let (a, _) = r.admit(ip("192.0.2.1")).unwrap();
        let (b, _) = r.admit(ip("192.0.2.2")).unwrap();
        let (c, _) = r.admit(ip("192.0.2.3")).unwrap();
        // Nobody idle: no room.
        assert_eq!(r.admit(ip("192.0.2.4")).err(), Some(TcpEvent::TotalLimit));
        // Idle only just now: not yet.
        r.mark_idle(&b.conn);
        assert_eq!(r.admit(ip("192.0.2.4")).err(), Some(TcpEvent::TotalLimit));
        std::thread::sleep(Duration::from_millis(50));
        r.mark_idle(&c.conn);
        std::thread::sleep(Duration::from_millis(600));
        let (d, evicted) = r.admit(ip("192.0.2.4")).unwrap();
        assert!(evicted);
        assert_eq!(r.open(), 3, "b's slot went to d");
        // b was told to close; a and c were not.
        let told = |s: &Slot| {
            let n = s.conn.evict.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        assert!(told(&b));
        assert!(!told(&a));
        assert!(!told(&c));
        drop((a, b, c, d));
        assert_eq!(r.open(), 0);
        assert!(r.lock().per_client.is_empty());
    }

    #[test]
    fn a_large_full_table_evicts_an_idle_connection_by_sampling() {
        let r = Arc::new(Registry::new(limits(1000, 1000)));
        let slots: Vec<Slot> = (0..1000)
            .map(|i| {
                r.admit(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]))
                    .unwrap()
                    .0
            })
            .collect();
        // A tenth of them idle, long enough.
        for s in slots.iter().step_by(10) {
            r.mark_idle(&s.conn);
        }
        std::thread::sleep(Duration::from_millis(600));
        let mut admitted = Vec::new();
        for i in 0..20 {
            match r.admit(IpAddr::from([192, 0, 2, i])) {
                Ok((s, evicted)) => {
                    assert!(evicted);
                    admitted.push(s);
                }
                Err(e) => assert_eq!(e, TcpEvent::TotalLimit),
            }
        }
        // 32 samples of a table a tenth idle find one nearly always.
        assert!(admitted.len() >= 15, "{} of 20", admitted.len());
        assert_eq!(r.open(), 1000);
        // Only idle connections were told to close.
        for (i, s) in slots.iter().enumerate() {
            let n = s.conn.evict.notified();
            tokio::pin!(n);
            if n.as_mut().enable() {
                assert_eq!(i % 10, 0, "connection {i} was busy");
            }
        }
    }
}
