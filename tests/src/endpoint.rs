//! Pool endpoints and webhook receivers for end-to-end tests: small HTTP/1.1 servers on std
//! sockets inside a network namespace, whose latency and health the test changes at any
//! time (added delay, an error status, connection refused, blackhole).
//!
//! Each server is one accept thread that entered the namespace (`NetNs::spawn`) and polls a
//! non-blocking listener, plus one short-lived thread per connection. Every loop checks a
//! stop flag at least every 50 ms, so `Refuse` closes the listener and `Drop` returns
//! promptly without a wake-up connection, even with blackholed or delayed requests open.

use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::NetNs;

/// How often the accept loop and the delay wait look at their sockets and the stop flag.
const POLL: Duration = Duration::from_millis(10);
/// Read timeout of connection sockets, i.e. how often a blocked read checks the stop flag.
const READ_TICK: Duration = Duration::from_millis(50);
/// A client that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(10);
/// Longest request head read (request line and headers up to the blank line).
const HEAD_CAP: usize = 16 * 1024;
/// Longest request body kept.
const BODY_CAP: usize = 1024 * 1024;
/// How long a control change (`set_behaviour`, start) may take to be applied.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How long a connection is drained after the response before it is closed.
const LINGER: Duration = Duration::from_millis(500);

/// How a test endpoint behaves right now; changed at any time from the test thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `200 OK` with the body `ok\n` (after the current delay).
    Healthy,
    /// This status with the body `status <code>\n` (after the current delay); `Status(200)`
    /// passes a status check but fails a check for the body substring `ok`.
    Status(u16),
    /// The listening socket is closed: new connections are refused (RST). Requests already
    /// accepted are closed without an answer.
    Refuse,
    /// Connections are accepted and their requests read, but never answered and never
    /// closed by the server (until the client closes or the endpoint is dropped). A plain
    /// TCP connect succeeds; use `Refuse` to fail a TCP-connect probe.
    Blackhole,
}

/// An HTTP/1.1 server on `addr:port` inside a namespace, standing in for a pool endpoint.
///
/// Every request, whatever its method and path, is answered per the current [`Behaviour`]
/// after the current delay, with `Connection: close`.
pub struct TestEndpoint {
    state: Arc<EndpointState>,
    acceptor: Acceptor,
}

struct EndpointState {
    delay: Mutex<Duration>,
    behaviour: Mutex<Behaviour>,
    requests: AtomicU64,
    last_head: Mutex<Option<String>>,
}

impl TestEndpoint {
    /// Adds `addr` (/32 or /128) to the namespace's loopback interface unless the namespace
    /// already has it, binds `addr:port` inside `ns` (port 0 picks one; see [`Self::addr`])
    /// and serves until dropped. Panics if the address cannot be bound.
    pub fn start(ns: &NetNs, addr: IpAddr, port: u16) -> Self {
        let state = Arc::new(EndpointState {
            delay: Mutex::new(Duration::ZERO),
            behaviour: Mutex::new(Behaviour::Healthy),
            requests: AtomicU64::new(0),
            last_head: Mutex::new(None),
        });
        let st = Arc::clone(&state);
        let acceptor = Acceptor::start(
            ns,
            SocketAddr::new(addr, port),
            Arc::new(move |s, stop| serve_endpoint(s, stop, &st)),
        );
        Self { state, acceptor }
    }

    /// Delay between reading a request head and answering it (default zero). Applies to
    /// requests whose head arrives after the call.
    pub fn set_delay(&self, d: Duration) {
        *lock(&self.state.delay) = d;
    }

    /// Changes the behaviour; returns once it is in effect (for `Refuse`: the listener is
    /// closed; leaving `Refuse`: the address is bound again, same port). Panics if the
    /// rebind fails.
    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.state.behaviour) = b;
        self.acceptor.set_listening(b != Behaviour::Refuse);
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        *lock(&self.state.behaviour)
    }

    /// Requests answered so far (any status). A request counts once its answer is about to
    /// be written, so a client that has read its response always sees itself counted; one
    /// that closed its connection during the delay is not counted (a half-close by the
    /// client, `shutdown(Write)`, looks like a close).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The head (request line and headers, without the blank line) of the last request
    /// read, answered or not, to check e.g. the Host or User-Agent a probe sent.
    pub fn last_head(&self) -> Option<String> {
        lock(&self.state.last_head).clone()
    }

    /// The bound address (with the real port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }
}

fn serve_endpoint(mut s: TcpStream, stop: &AtomicBool, st: &EndpointState) {
    let Some(req) = read_request(&mut s, stop) else {
        return;
    };
    *lock(&st.last_head) = Some(req.head.clone());
    let delay = *lock(&st.delay);
    if !wait_delay(&s, delay, stop) {
        return;
    }
    let behaviour = *lock(&st.behaviour);
    let (code, body) = match behaviour {
        Behaviour::Healthy => (200, "ok\n".to_string()),
        Behaviour::Status(c) => (c, format!("status {c}\n")),
        Behaviour::Refuse => return,
        Behaviour::Blackhole => {
            hold(&mut s, stop);
            return;
        }
    };
    st.requests.fetch_add(1, Ordering::SeqCst);
    respond(&mut s, code, &body, req.method == "HEAD", stop);
}

/// Receives webhook POSTs inside a namespace and keeps their bodies in arrival order.
///
/// `POST /hook` is recorded and answered `200` with an empty body; any other request is
/// answered `404` and not recorded. Bodies may use `Content-Length` or chunked encoding.
pub struct WebhookReceiver {
    state: Arc<WebhookState>,
    acceptor: Acceptor,
}

struct WebhookState {
    bodies: Mutex<Vec<String>>,
    arrived: Condvar,
}

impl WebhookReceiver {
    /// Like [`TestEndpoint::start`]: adds `addr` to the namespace's loopback if missing,
    /// binds `addr:port` inside `ns` and serves until dropped.
    pub fn start(ns: &NetNs, addr: IpAddr, port: u16) -> Self {
        let state = Arc::new(WebhookState {
            bodies: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
        });
        let st = Arc::clone(&state);
        let acceptor = Acceptor::start(
            ns,
            SocketAddr::new(addr, port),
            Arc::new(move |s, stop| serve_webhook(s, stop, &st)),
        );
        Self { state, acceptor }
    }

    /// The bodies received so far, oldest first (lossy UTF-8).
    pub fn bodies(&self) -> Vec<String> {
        lock(&self.state.bodies).clone()
    }

    /// Waits until at least `n` bodies have arrived or `timeout` has passed, and returns the
    /// bodies received by then (fewer than `n` on timeout).
    pub fn wait_for_bodies(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut bodies = lock(&self.state.bodies);
        while bodies.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            bodies = self
                .state
                .arrived
                .wait_timeout(bodies, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        bodies.clone()
    }

    /// `http://addr:port/hook` (`http://[addr]:port/hook` for IPv6).
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.acceptor.addr)
    }

    /// The bound address (with the real port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr
    }
}

fn serve_webhook(mut s: TcpStream, stop: &AtomicBool, st: &WebhookState) {
    let Some(req) = read_request(&mut s, stop) else {
        return;
    };
    if req.method == "POST" && req.path == "/hook" {
        lock(&st.bodies).push(String::from_utf8_lossy(&req.body).into_owned());
        st.arrived.notify_all();
        respond(&mut s, 200, "", false, stop);
    } else {
        respond(&mut s, 404, "", req.method == "HEAD", stop);
    }
}

/// Locks, ignoring poisoning (a panicking connection thread must not take the test down
/// with a second panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Handler = Arc<dyn Fn(TcpStream, &AtomicBool) + Send + Sync>;

/// What the test thread wants from the accept thread, and what it has done.
struct Control {
    listen: bool,
    /// Bumped by every request; the accept thread copies it to `applied` once done.
    wanted: u64,
    applied: u64,
    bound: Option<SocketAddr>,
    error: Option<String>,
}

struct Shared {
    ctl: Mutex<Control>,
    changed: Condvar,
    stop: AtomicBool,
}

/// The accept thread of one server; stops it (and waits for its connections) on drop.
struct Acceptor {
    shared: Arc<Shared>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(ns: &NetNs, addr: SocketAddr, handler: Handler) -> Self {
        ensure_address(ns, addr.ip());
        let shared = Arc::new(Shared {
            ctl: Mutex::new(Control {
                listen: true,
                wanted: 1,
                applied: 0,
                bound: None,
                error: None,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let sh = Arc::clone(&shared);
        let thread = ns.spawn(move || accept_loop(&sh, addr, &handler));
        let mut acceptor = Self {
            shared,
            addr,
            thread: Some(thread),
        };
        // On panic below, dropping `acceptor` stops the thread.
        acceptor.wait_applied(1, &format!("binding {addr} in {}", ns.name));
        acceptor.addr = lock(&acceptor.shared.ctl)
            .bound
            .expect("the accept thread records the bound address");
        acceptor
    }

    /// Opens or closes the listener and waits until the accept thread has done so.
    fn set_listening(&self, listen: bool) {
        let generation = {
            let mut c = lock(&self.shared.ctl);
            c.listen = listen;
            c.wanted += 1;
            c.wanted
        };
        self.shared.changed.notify_all();
        let what = if listen { "listening on" } else { "closing" };
        self.wait_applied(generation, &format!("{what} {}", self.addr));
    }

    fn wait_applied(&self, generation: u64, what: &str) {
        let deadline = Instant::now() + APPLY_WAIT;
        let mut c = lock(&self.shared.ctl);
        while c.applied < generation {
            let finished = self.thread.as_ref().is_none_or(|t| t.is_finished());
            assert!(!finished, "{what}: the accept thread has exited");
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not done after {APPLY_WAIT:?}");
            c = self
                .shared
                .changed
                .wait_timeout(c, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if let Some(e) = c.error.take() {
            panic!("{what}: {e}");
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        {
            let _c = lock(&self.shared.ctl);
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            // A panic in the accept thread has already been reported on stderr; do not
            // panic again in drop.
            let _ = t.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, mut addr: SocketAddr, handler: &Handler) {
    let mut listener: Option<TcpListener> = None;
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    let mut seen = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        {
            let mut c = lock(&shared.ctl);
            if c.wanted != seen {
                seen = c.wanted;
                if !c.listen {
                    listener = None;
                } else if listener.is_none() {
                    match bind(addr) {
                        Ok(l) => {
                            // Keep the port when rebinding after `Refuse` with port 0.
                            addr = l.local_addr().unwrap_or(addr);
                            c.bound = Some(addr);
                            listener = Some(l);
                        }
                        Err(e) => c.error = Some(format!("binding {addr}: {e}")),
                    }
                }
                c.applied = seen;
                shared.changed.notify_all();
            }
        }
        // On an error (WouldBlock, or a connection reset before it was accepted), or with
        // the listener closed, wait a little and look again.
        if let Some(Ok((s, _))) = listener.as_ref().map(TcpListener::accept) {
            let handler = Arc::clone(handler);
            let sh = Arc::clone(shared);
            conns.push(std::thread::spawn(move || handler(s, &sh.stop)));
            continue;
        }
        conns.retain(|t| !t.is_finished());
        let c = lock(&shared.ctl);
        if c.wanted == seen && !shared.stop.load(Ordering::SeqCst) {
            drop(
                shared
                    .changed
                    .wait_timeout(c, POLL)
                    .unwrap_or_else(|p| p.into_inner()),
            );
        }
    }
    drop(listener);
    for t in conns {
        let _ = t.join();
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    // std sets SO_REUSEADDR on Unix, so rebinding after `Refuse` does not trip over the
    // TIME_WAIT or blackholed connections of the old listener.
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Adds `addr` to `lo` in `ns` (as /32 or /128) unless some interface there has it.
fn ensure_address(ns: &NetNs, addr: IpAddr) {
    if addr.is_unspecified() {
        return;
    }
    let out = ns.exec_ok(&["ip", "-o", "addr", "show"]);
    if has_address(&String::from_utf8_lossy(&out.stdout), addr) {
        return;
    }
    let (family, cidr) = match addr {
        IpAddr::V4(_) => ("-4", format!("{addr}/32")),
        IpAddr::V6(_) => ("-6", format!("{addr}/128")),
    };
    let mut cmd = vec!["ip", family, "addr", "add", &cidr, "dev", "lo"];
    if addr.is_ipv6() {
        cmd.push("nodad");
    }
    let out = ns.exec(&cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "File exists": another server added it in the meantime.
    assert!(
        out.status.success() || stderr.contains("File exists"),
        "{cmd:?} in {} failed: {stderr}",
        ns.name
    );
    if addr.is_ipv6() {
        // Even without DAD the kernel installs an IPv6 address's local route from a
        // workqueue, after `ip addr add` returns: on a loaded machine a connect right away
        // fails with "Network is unreachable".
        let a = addr.to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ns.exec(&["ip", "-6", "route", "get", &a]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} in {} has no route 10 s after it was added",
                ns.name
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Whether `ip -o addr show` output lists `addr`.
fn has_address(ip_o_addr: &str, addr: IpAddr) -> bool {
    ip_o_addr.lines().any(|line| {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if (w == "inet" || w == "inet6")
                && let Some(a) = words.next().and_then(|a| a.split('/').next())
                && a.parse::<IpAddr>().ok() == Some(addr)
            {
                return true;
            }
        }
        false
    })
}

struct Request {
    method: String,
    path: String,
    /// Request line and headers, without the blank line.
    head: String,
    body: Vec<u8>,
}

/// A connection's bytes read so far, read in ticks that check the stop flag.
struct Conn<'a> {
    s: &'a mut TcpStream,
    stop: &'a AtomicBool,
    buf: Vec<u8>,
    pos: usize,
}

impl Conn<'_> {
    /// Reads more bytes; `None` when the client closed or went away, the server is
    /// stopping, or the client has been silent for `IDLE`.
    fn fill(&mut self) -> Option<()> {
        let idle_until = Instant::now() + IDLE;
        let mut chunk = [0u8; 4096];
        loop {
            if self.stop.load(Ordering::SeqCst) || Instant::now() >= idle_until {
                return None;
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Some(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// The bytes up to `delim` (excluded), consuming the delimiter; `None` past `cap`.
    fn until(&mut self, delim: &[u8], cap: usize) -> Option<Vec<u8>> {
        let mut from = self.pos;
        loop {
            if let Some(i) = self.buf[from..]
                .windows(delim.len())
                .position(|w| w == delim)
            {
                let end = from + i;
                let out = self.buf[self.pos..end].to_vec();
                self.pos = end + delim.len();
                return Some(out);
            }
            if self.buf.len() - self.pos > cap {
                return None;
            }
            from = self.buf.len().saturating_sub(delim.len() - 1).max(self.pos);
            self.fill()?;
        }
    }

    fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            self.fill()?;
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Some(out)
    }
}

/// Reads one request: the head up to the blank line (at most `HEAD_CAP`), then the body by
/// `Content-Length` or chunked encoding (at most `BODY_CAP`). `None` if the client goes
/// away, sends something too long or malformed, or the server is stopping.
fn read_request(s: &mut TcpStream, stop: &AtomicBool) -> Option<Request> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(READ_TICK)).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut c = Conn {
        s,
        stop,
        buf: Vec::new(),
        pos: 0,
    };
    let head = String::from_utf8_lossy(&c.until(b"\r\n\r\n", HEAD_CAP)?).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split_whitespace();
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if expect_continue {
        c.s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let line = c.until(b"\r\n", 1024)?;
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next()?.trim();
            let size = usize::from_str_radix(size, 16).ok()?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !c.until(b"\r\n", HEAD_CAP)?.is_empty() {}
                break;
            }
            if body.len() + size > BODY_CAP {
                return None;
            }
            body.extend(c.exact(size)?);
            if c.exact(2)? != b"\r\n" {
                return None;
            }
        }
        body
    } else {
        if content_length > BODY_CAP {
            return None;
        }
        c.exact(content_length)?
    };
    Some(Request {
        method,
        path,
        head,
        body,
    })
}

/// Waits `delay` while the client is still connected; false if it went away or the
/// server is stopping.
fn wait_delay(s: &TcpStream, delay: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + delay;
    loop {
        if stop.load(Ordering::SeqCst) || peer_gone(s) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// Whether the client has closed (FIN or RST), without consuming anything.
fn peer_gone(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let gone = match s.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    };
    s.set_nonblocking(false).is_err() || gone
}

/// Blackhole: never write, never close; return when the client closes or on stop.
fn hold(s: &mut TcpStream, stop: &AtomicBool) {
    drain(s, stop, None);
}

/// Reads and discards until the client closes, `stop` is set or `until` passes.
fn drain(s: &mut TcpStream, stop: &AtomicBool, until: Option<Instant>) {
    let mut sink = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) && until.is_none_or(|u| Instant::now() < u) {
        match s.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn respond(s: &mut TcpStream, code: u16, body: &str, head_only: bool, stop: &AtomicBool) {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    // The client may have gone away; nothing to do about it then.
    if s.write_all(out.as_bytes()).is_err() {
        return;
    }
    let _ = s.shutdown(Shutdown::Write);
    // Let the client read the response and close first, so that nothing it still sends
    // turns our close into a reset that could discard the response.
    drain(s, stop, Some(Instant::now() + LINGER));
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_address_finds_exact_addresses_only() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   1: lo    inet 10.99.0.1/32 scope global lo\\       valid_lft forever\n\
                   1: lo    inet6 ::1/128 scope host proto kernel_lo \\       valid_lft forever\n\
                   1: lo    inet6 fd99::1/128 scope global nodad \\       valid_lft forever\n";
        assert!(has_address(out, "10.99.0.1".parse().unwrap()));
        assert!(has_address(out, "fd99::1".parse().unwrap()));
        assert!(has_address(out, "::1".parse().unwrap()));
        assert!(!has_address(out, "10.99.0.2".parse().unwrap()));
        assert!(!has_address(out, "127.0.0.2".parse().unwrap()));
        assert!(!has_address(out, "fd99::2".parse().unwrap()));
    }
}
