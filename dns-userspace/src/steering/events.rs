//! The event record: every change of an endpoint's state and of a pool's answer, as a
//! structured log line, a line in an append-only JSON-lines file and, per pool, a webhook
//! POST. This is the record operators use to hold providers to their SLA, so it is written
//! for them: one self-contained JSON object per line, UTC timestamps with milliseconds,
//! the old and new state, a human reason and the latency figures behind the decision.
//!
//! # Never blocking the prober
//!
//! [`EventSink::emit`] is called from the probe/selector path and must never wait for the
//! network:
//!
//! * The file write happens inside `emit`, synchronously: one `write(2)` of one line to a
//!   file opened with `O_APPEND` (so concurrent writers, even other processes, never
//!   interleave within a line). That is a copy into the page cache, not a wait for a disk,
//!   and keeps the file in exactly the order of the events. It is not `fsync`ed: a line
//!   survives a crash of the daemon at once, a power loss only after the kernel's
//!   writeback. Events are rare (changes, not probe results), so the cost is negligible. A
//!   failed write is logged and counted, never fatal.
//! * Webhooks go through a bounded queue ([`WEBHOOK_QUEUE`] events) to a background task
//!   started by [`EventSink::start`]; `emit` only does a non-blocking `try_send`, and when
//!   the queue is full the event is dropped for the webhook (it is still in the log and the
//!   file), with a warning and a counter ([`EventStats::webhooks_dropped`]).
//!
//! # Webhook delivery
//!
//! The body is the same JSON object as the file line, `Content-Type: application/json`,
//! `User-Agent: hotpool/<version>`. Each attempt has a timeout ([`WEBHOOK_TIMEOUT`]);
//! connection errors, timeouts, 5xx and 429 (rate limited) are retried after
//! [`WEBHOOK_BACKOFF`] (0.5 s, 1 s, 2 s: four attempts in all); any other status, including
//! every other 4xx and a redirect (not followed: a POST must not turn into a GET), is final.
//! The final failure is logged with the URL's scheme, host and port only (webhook URLs
//! often carry a secret token in their path) and counted.
//!
//! Each webhook URL has its own worker with its own queue ([`WEBHOOK_URL_QUEUE`]), so
//! events reach one receiver in order and a dead receiver (which costs up to
//! 4 × 5 s + 3.5 s per event) does not delay the others.
//!
//! Shutdown: dropping the [`EventSink`] closes the queue; the task returned by
//! [`EventSink::start`] then finishes delivering what was queued (with retries) and ends.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use reqwest::{StatusCode, Url, header::CONTENT_TYPE};
use serde::Serialize;
use tokio::{
    sync::mpsc::{self, error::TrySendError},
    task::{JoinHandle, JoinSet},
};

/// Events waiting for webhook delivery, all pools together.
pub const WEBHOOK_QUEUE: usize = 1024;
/// Events waiting for one webhook URL.
pub const WEBHOOK_URL_QUEUE: usize = 256;
/// Timeout of one webhook attempt (connect, send, response headers).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before the retries of a webhook POST.
pub const WEBHOOK_BACKOFF: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// The User-Agent of webhook requests.
pub const USER_AGENT: &str = concat!("hotpool/", env!("CARGO_PKG_VERSION"));

/// `[events]`: where changes of endpoint state and pool answers are recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventSettings {
    /// Append-only JSON-lines event log, resolved relative to the config file's
    /// directory. Default none (events are only logged).
    pub log: Option<PathBuf>,
}

/// Why the event record cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("creating the event log directory {}", .dir.display())]
    LogDirectory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the event log {}", .path.display())]
    OpenLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the webhook HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("webhook URL of pool {pool} is invalid")]
    InvalidWebhook {
        pool: String,
        #[source]
        source: WebhookUrlError,
    },
    /// Shows the URL without its path and query, which often hold a secret.
    #[error("webhook URL of pool {pool} must be http:// or https:// with a host, not {shown}")]
    UnusableWebhook { pool: String, shown: String },
}

/// A webhook URL that cannot be POSTed to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("invalid webhook URL {text:?}: {reason}")]
    Invalid {
        text: String,
        reason: url::ParseError,
    },
    #[error("webhook URL {text:?} must be http or https, not {scheme:?}")]
    Scheme { text: String, scheme: String },
    #[error("webhook URL {text:?} has no host")]
    NoHost { text: String },
}

/// A webhook URL from the config (`webhook = "..."`): http or https, with a host.
pub fn webhook_url(text: &str) -> Result<Url, WebhookUrlError> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|reason| WebhookUrlError::Invalid {
        text: text.to_string(),
        reason,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookUrlError::Scheme {
            text: text.to_string(),
            scheme: url.scheme().to_string(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebhookUrlError::NoHost {
            text: text.to_string(),
        });
    }
    Ok(url)
}

/// What changed.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An endpoint went up or down (`old`/`new`: "up", "down", "unknown").
    EndpointState,
    /// A pool's answer changed (`old`/`new`: renderings such as "192.0.2.10, 192.0.2.11").
    PoolAnswer,
}

/// One line of the event record.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    /// RFC 3339 UTC with milliseconds (`2026-01-31T12:00:00.123Z`); see [`timestamp`].
    pub ts: String,
    pub pool: String,
    /// Address or host name; `None` for pool-level events.
    pub endpoint: Option<String>,
    pub kind: EventKind,
    pub old: String,
    pub new: String,
    pub reason: String,
    /// For a pool answer: no endpoint is up, the answer comes from the all-down setting
    /// (fail-open, fallback or SERVFAIL). Always false for endpoint events.
    pub all_down: bool,
    /// Smoothed latency.
    pub latency_ms: Option<f64>,
    /// The last raw samples.
    pub samples_ms: Vec<f64>,
}

impl Event {
    /// An endpoint's state change, stamped now.
    pub fn endpoint_state(
        pool: impl Into<String>,
        endpoint: impl Into<String>,
        old: impl Into<String>,
        new: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            ts: timestamp(SystemTime::now()),
            pool: pool.into(),
            endpoint: Some(endpoint.into()),
            kind: EventKind::EndpointState,
            old: old.into(),
            new: new.into(),
            reason: reason.into(),
            all_down: false,
            latency_ms: None,
            samples_ms: Vec::new(),
        }
    }

    /// A pool's answer change, stamped now.
    pub fn pool_answer(
        pool: impl Into<String>,
        old: impl Into<String>,
        new: impl Into<String>,
        reason: impl Into<String>,
        all_down: bool,
    ) -> Self {
        Self {
            ts: timestamp(SystemTime::now()),
            pool: pool.into(),
            endpoint: None,
            kind: EventKind::PoolAnswer,
            old: old.into(),
            new: new.into(),
            reason: reason.into(),
            all_down,
            latency_ms: None,
            samples_ms: Vec::new(),
        }
    }

    /// The same event with latency figures.
    pub fn with_latency(mut self, latency_ms: Option<f64>, samples_ms: Vec<f64>) -> Self {
        self.latency_ms = latency_ms;
        self.samples_ms = samples_ms;
        self
    }

    /// Whether this is bad news (logged as a warning): an endpoint going down, or a pool
    /// with no endpoint up.
    pub fn is_trouble(&self) -> bool {
        match self.kind {
            EventKind::EndpointState => self.new == "down",
            EventKind::PoolAnswer => self.all_down,
        }
    }
}

/// `t` as RFC 3339 UTC with milliseconds, the format of [`Event::ts`].
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Counters of the event record, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Webhook POSTs answered with 2xx.
    pub webhooks_delivered: u64,
    /// Webhook events given up on (after retries, or a final status).
    pub webhooks_failed: u64,
    /// Webhook events dropped because a queue was full or delivery was not running.
    pub webhooks_dropped: u64,
    /// Failed writes to the event log file.
    pub log_write_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    log_errors: AtomicU64,
}

#[derive(Clone, Debug)]
struct Retry {
    timeout: Duration,
    backoff: Vec<Duration>,
}

/// One event on its way to one webhook.
#[derive(Debug)]
struct Delivery {
    pool: String,
    url: Url,
    body: Bytes,
}

#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

/// Where events go: the tracing log, the optional JSON-lines file, per-pool webhooks.
#[derive(Debug)]
pub struct EventSink {
    log: Option<LogFile>,
    webhooks: HashMap<String, Url>,
    tx: mpsc::Sender<Delivery>,
    rx: Option<mpsc::Receiver<Delivery>>,
    client: reqwest::Client,
    retry: Retry,
    counters: Arc<Counters>,
}

impl EventSink {
    /// `log`: optional append-only JSON-lines file (created with its parent directories if
    /// missing; opened `O_APPEND`; one line per event, written per event). Webhooks are set
    /// per pool with [`EventSink::set_webhook`] and delivered once [`EventSink::start`] ran.
    pub fn new(log: Option<&Path>) -> Result<Self, EventsError> {
        let log = match log {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| EventsError::LogDirectory {
                        dir: dir.to_path_buf(),
                        source,
                    })?;
                }
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|source| EventsError::OpenLog {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some(LogFile {
                    path: path.to_path_buf(),
                    file: Mutex::new(file),
                })
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(EventsError::Client)?;
        let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE);
        Ok(Self {
            log,
            webhooks: HashMap::new(),
            tx,
            rx: Some(rx),
            client,
            retry: Retry {
                timeout: WEBHOOK_TIMEOUT,
                backoff: WEBHOOK_BACKOFF.to_vec(),
            },
            counters: Arc::default(),
        })
    }

    /// Every event of `pool` is also POSTed to `url` (http or https); replaces an earlier
    /// URL for the pool.
    pub fn set_webhook(&mut self, pool: &str, url: String) -> Result<(), EventsError> {
        let parsed = Url::parse(&url).map_err(|reason| EventsError::InvalidWebhook {
            pool: pool.to_string(),
            source: WebhookUrlError::Invalid { text: url, reason },
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(EventsError::UnusableWebhook {
                pool: pool.to_string(),
                shown: redact(&parsed),
            });
        }
        self.webhooks.insert(pool.to_string(), parsed);
        Ok(())
    }

    /// Overrides the per-attempt timeout and the waits between retries
    /// (default [`WEBHOOK_TIMEOUT`], [`WEBHOOK_BACKOFF`]). Takes effect at
    /// [`EventSink::start`].
    pub fn set_retry(&mut self, timeout: Duration, backoff: Vec<Duration>) {
        self.retry = Retry { timeout, backoff };
    }

    /// Records `event`: a structured tracing line (warn for an endpoint going down or a
    /// pool with nothing up, info otherwise), a line in the file, and a queued webhook POST.
    /// Never waits for the network (see the module docs).
    pub fn emit(&self, event: Event) {
        log_event(&event);
        let json = match serde_json::to_vec(&event) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(pool = %event.pool, error = %e, "cannot serialize event");
                return;
            }
        };
        if let Some(log) = &self.log {
            let mut line = Vec::with_capacity(json.len() + 1);
            line.extend_from_slice(&json);
            line.push(b'\n');
            let mut file = log
                .file
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Err(e) = file.write_all(&line).and_then(|()| file.flush()) {
                let n = self.counters.log_errors.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    path = %log.path.display(),
                    error = %e,
                    errors = n,
                    "cannot append to the event log"
                );
            }
        }
        if let Some(url) = self.webhooks.get(&event.pool) {
            let delivery = Delivery {
                pool: event.pool.clone(),
                url: url.clone(),
                body: Bytes::from(json),
            };
            if let Err(e) = self.tx.try_send(delivery) {
                let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let why = match e {
                    TrySendError::Full(_) => "webhook queue full",
                    TrySendError::Closed(_) => "webhook delivery is not running",
                };
                tracing::warn!(pool = %event.pool, dropped = n, "{why}; event not sent to the webhook");
            }
        }
    }

    /// Starts the webhook delivery task (needs a tokio runtime) and returns its handle; it
    /// ends once the sink is dropped and what was queued is delivered or given up on.
    /// Events emitted before this call are queued (up to [`WEBHOOK_QUEUE`]). A second call
    /// returns a task that does nothing.
    pub fn start(&mut self) -> JoinHandle<()> {
        let Some(rx) = self.rx.take() else {
            tracing::warn!("webhook delivery already started");
            return tokio::spawn(async {});
        };
        tokio::spawn(dispatch(
            rx,
            self.client.clone(),
            self.retry.clone(),
            self.counters.clone(),
        ))
    }

    /// The counters so far.
    pub fn stats(&self) -> EventStats {
        EventStats {
            webhooks_delivered: self.counters.delivered.load(Ordering::Relaxed),
            webhooks_failed: self.counters.failed.load(Ordering::Relaxed),
            webhooks_dropped: self.counters.dropped.load(Ordering::Relaxed),
            log_write_errors: self.counters.log_errors.load(Ordering::Relaxed),
        }
    }
}

fn log_event(e: &Event) {
    let endpoint = e.endpoint.as_deref().unwrap_or("-");
    let samples = format!("{:?}", e.samples_ms);
    macro_rules! line {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                pool = %e.pool,
                endpoint,
                old = %e.old,
                new = %e.new,
                reason = %e.reason,
                all_down = e.all_down,
                latency_ms = ?e.latency_ms,
                samples_ms = %samples,
                $msg
            )
        };
    }
    match (e.kind, e.is_trouble()) {
        (EventKind::EndpointState, true) => line!(warn, "endpoint down"),
        (EventKind::EndpointState, false) => line!(info, "endpoint state changed"),
        (EventKind::PoolAnswer, true) => line!(warn, "pool answer changed: all endpoints down"),
        (EventKind::PoolAnswer, false) => line!(info, "pool answer changed"),
    }
}

/// `scheme://host[:port]`: a webhook URL without its path, query and credentials, which
/// often hold secrets.
fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Hands each delivery to its URL's worker; when the sink is gone, waits for the workers
/// to finish their queues.
async fn dispatch(
    mut rx: mpsc::Receiver<Delivery>,
    client: reqwest::Client,
    retry: Retry,
    counters: Arc<Counters>,
) {
    let mut workers: HashMap<Url, mpsc::Sender<Delivery>> = HashMap::new();
    let mut tasks = JoinSet::new();
    while let Some(d) = rx.recv().await {
        let tx = workers.entry(d.url.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(WEBHOOK_URL_QUEUE);
            tasks.spawn(worker(rx, client.clone(), retry.clone(), counters.clone()));
            tx
        });
        if let Err(e) = tx.try_send(d) {
            let n = counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let d = match e {
                TrySendError::Full(d) | TrySendError::Closed(d) => d,
            };
            tracing::warn!(
                pool = %d.pool,
                webhook = %redact(&d.url),
                dropped = n,
                "webhook receiver is behind; event not sent to the webhook"
            );
        }
    }
    drop(workers);
    while tasks.join_next().await.is_some() {}
}

/// Delivers one URL's events in order.
async fn worker(
    mut rx: mpsc::Receiver<Delivery>,
    client: reqwest::Client,
    retry: Retry,
    counters: Arc<Counters>,
) {
    while let Some(d) = rx.recv().await {
        match deliver(&client, &retry, &d).await {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((attempts, error)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    pool = %d.pool,
                    webhook = %redact(&d.url),
                    attempts,
                    error = %error,
                    "webhook delivery failed"
                );
            }
        }
    }
}

/// POSTs one event with retries; on failure, the number of attempts and the last error.
async fn deliver(
    client: &reqwest::Client,
    retry: &Retry,
    d: &Delivery,
) -> Result<(), (usize, String)> {
    let mut attempts = 0;
    let mut waits = retry.backoff.iter();
    loop {
        attempts += 1;
        let result = client
            .post(d.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(retry.timeout)
            .body(d.body.clone())
            .send()
            .await;
        let (error, retryable) = match result {
            Ok(r) if r.status().is_success() => {
                tracing::debug!(pool = %d.pool, webhook = %redact(&d.url), attempts, "webhook delivered");
                return Ok(());
            }
            Ok(r) => {
                let s = r.status();
                let retryable = s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS;
                (format!("HTTP {s}"), retryable)
            }
            Err(e) => {
                let retryable = !e.is_builder();
                (error_chain(e), retryable)
            }
        };
        match waits.next() {
            Some(wait) if retryable => {
                tracing::debug!(
                    pool = %d.pool,
                    webhook = %redact(&d.url),
                    attempts,
                    error = %error,
                    "webhook attempt failed; retrying in {wait:?}"
                );
                tokio::time::sleep(*wait).await;
            }
            _ => return Err((attempts, error)),
        }
    }
}

/// An error with its sources, without the URL reqwest puts in its message.
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpListener,
        sync::oneshot,
    };

    use super::*;

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            Self(std::env::temp_dir().join(format!(
                "hotpool-events-{tag}-{}-{nanos}",
                std::process::id()
            )))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sample(pool: &str, n: u32) -> Event {
        Event::endpoint_state(
            pool,
            "192.0.2.10",
            "up",
            "down",
            format!("probe {n} failed"),
        )
        .with_latency(Some(12.25), vec![11.5, 13.0, f64::from(n)])
    }

    /// One HTTP request as the test server saw it.
    #[derive(Debug)]
    struct Request {
        head: String,
        body: Vec<u8>,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    /// Reads one request (head and Content-Length body) from `s`; `None` on EOF or garbage.
    async fn read_request(s: &mut tokio::net::TcpStream) -> Option<Request> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
        let mut req = Request {
            head,
            body: buf[head_end..].to_vec(),
        };
        let len: usize = req.header("content-length")?.parse().ok()?;
        while req.body.len() < len {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
        Some(req)
    }

    /// A loopback HTTP server answering `statuses` in turn (then 200), one request per
    /// connection; every request is sent on the returned channel.
    async fn http_server(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/hook/secret-token",
            listener.local_addr().unwrap()
        );
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let Some(req) = read_request(&mut s).await else {
                    continue;
                };
                let code = statuses.next().unwrap_or(200);
                let _ = tx.send(req);
                let reply = format!(
                    "HTTP/1.1 {code} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (url, rx)
    }

    /// Drops the sink and waits for its delivery task to finish everything queued.
    async fn finish(sink: EventSink, handle: JoinHandle<()>) {
        drop(sink);
        tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("webhook delivery did not finish")
            .expect("webhook task panicked");
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Request>) -> Vec<Request> {
        let mut v = Vec::new();
        while let Ok(r) = rx.try_recv() {
            v.push(r);
        }
        v
    }

    fn fast_retry(sink: &mut EventSink) {
        sink.set_retry(
            Duration::from_secs(10),
            vec![Duration::from_millis(5); WEBHOOK_BACKOFF.len()],
        );
    }

    #[test]
    fn events_serialize_as_documented() {
        let e = sample("www.example.test.", 7);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["pool"], "www.example.test.");
        assert_eq!(v["endpoint"], "192.0.2.10");
        assert_eq!(v["kind"], "endpoint_state");
        assert_eq!(v["old"], "up");
        assert_eq!(v["new"], "down");
        assert_eq!(v["reason"], "probe 7 failed");
        assert_eq!(v["all_down"], false);
        assert_eq!(v["latency_ms"], 12.25);
        assert_eq!(v["samples_ms"], serde_json::json!([11.5, 13.0, 7.0]));
        let ts = v["ts"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-01-31T12:00:00.123Z".len(), "{ts}");
        assert!(ts.ends_with('Z'), "{ts}");
        humantime::parse_rfc3339(ts).expect("ts is RFC 3339");

        let p = Event::pool_answer(
            "www.example.test.",
            "192.0.2.10",
            "192.0.2.11",
            "all endpoints down",
            true,
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["kind"], "pool_answer");
        assert_eq!(v["endpoint"], serde_json::Value::Null);
        assert_eq!(v["latency_ms"], serde_json::Value::Null);
        assert_eq!(v["samples_ms"], serde_json::json!([]));
        assert!(p.is_trouble());
        assert!(e.is_trouble());
        assert!(!Event::endpoint_state("p", "e", "down", "up", "r").is_trouble());

        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_millis(1_500)),
            "1970-01-01T00:00:01.500Z"
        );
    }

    #[test]
    fn the_log_file_gets_one_json_object_per_line_across_reopenings() {
        let dir = TempDir::new("log");
        let path = dir.0.join("nested/deeper/events.jsonl");
        let events: Vec<Event> = (0..5).map(|n| sample("p.example.test.", n)).collect();

        let sink = EventSink::new(Some(&path)).expect("sink creates the directories");
        sink.emit(events[0].clone());
        sink.emit(events[1].clone());
        drop(sink);
        let sink = EventSink::new(Some(&path)).expect("reopen");
        for e in &events[2..] {
            sink.emit(e.clone());
        }
        drop(sink);

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), events.len(), "{text}");
        for (line, e) in lines.iter().zip(&events) {
            let v: serde_json::Value = serde_json::from_str(line).expect("one JSON value a line");
            assert!(v.is_object());
            assert_eq!(v, serde_json::to_value(e).unwrap());
        }
    }

    #[test]
    fn an_unusable_log_path_is_an_error() {
        let dir = TempDir::new("bad");
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("plain-file");
        std::fs::write(&file, "x").unwrap();
        let err = EventSink::new(Some(&file.join("events.jsonl"))).unwrap_err();
        assert!(
            format!("{err:#}").contains("creating the event log directory"),
            "{err:#}"
        );
        let err = EventSink::new(Some(&dir.0)).unwrap_err();
        assert!(
            format!("{err:#}").contains("opening the event log"),
            "{err:#}"
        );
    }

    #[test]
    fn set_webhook_rejects_unusable_urls() {
        let mut sink = EventSink::new(None).unwrap();
        assert!(sink.set_webhook("p", "not a url".into()).is_err());
        let err = sink
            .set_webhook("p", "ftp://user:pw@example.test/x".into())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "webhook URL of pool p must be http:// or https:// with a host, not ftp://example.test"
        );
        sink.set_webhook("p", "https://hooks.example.test/T0/B0/secret".into())
            .unwrap();
    }

    #[tokio::test]
    async fn the_webhook_receives_the_event_json() {
        let (url, mut requests) = http_server(vec![]).await;
        let mut sink = EventSink::new(None).unwrap();
        sink.set_webhook("p.example.test.", url).unwrap();
        let counters = sink.counters.clone();
        let handle = sink.start();
        let e = sample("p.example.test.", 1);
        sink.emit(e.clone());
        sink.emit(sample("other.example.test.", 2));
        finish(sink, handle).await;

        let got = drain(&mut requests);
        assert_eq!(got.len(), 1, "only the pool with a webhook posts");
        let r = &got[0];
        assert!(
            r.head.starts_with("POST /hook/secret-token HTTP/1.1\r\n"),
            "{}",
            r.head
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("user-agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("hotpool/0."));
        assert_eq!(r.body, serde_json::to_vec(&e).unwrap());
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn webhook_retries_follow_the_status() {
        // (statuses the server answers, requests it must see, delivered, failed)
        let cases: [(&[u16], usize, u64, u64); 5] = [
            (&[500, 500], 3, 1, 0),
            (&[400], 1, 0, 1),
            (&[404, 500], 1, 0, 1),
            (&[429], 2, 1, 0),
            (&[503, 503, 503, 503, 503, 503], 4, 0, 1),
        ];
        for (statuses, want_requests, want_delivered, want_failed) in cases {
            let (url, mut requests) = http_server(statuses.to_vec()).await;
            let mut sink = EventSink::new(None).unwrap();
            fast_retry(&mut sink);
            sink.set_webhook("p", url).unwrap();
            let counters = sink.counters.clone();
            let handle = sink.start();
            let e = sample("p", 3);
            sink.emit(e.clone());
            finish(sink, handle).await;

            let got = drain(&mut requests);
            assert_eq!(got.len(), want_requests, "statuses {statuses:?}");
            assert!(
                got.iter()
                    .all(|r| r.body == serde_json::to_vec(&e).unwrap()),
                "every attempt posts the same body"
            );
            assert_eq!(
                counters.delivered.load(Ordering::Relaxed),
                want_delivered,
                "statuses {statuses:?}"
            );
            assert_eq!(
                counters.failed.load(Ordering::Relaxed),
                want_failed,
                "statuses {statuses:?}"
            );
        }
    }

    #[tokio::test]
    async fn events_reach_a_webhook_in_order() {
        let (url, mut requests) = http_server(vec![500, 200, 500]).await;
        let mut sink = EventSink::new(None).unwrap();
        fast_retry(&mut sink);
        sink.set_webhook("p", url).unwrap();
        let handle = sink.start();
        let events: Vec<Event> = (0..5).map(|n| sample("p", n)).collect();
        for e in &events {
            sink.emit(e.clone());
        }
        finish(sink, handle).await;
        let bodies: Vec<Vec<u8>> = drain(&mut requests).into_iter().map(|r| r.body).collect();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let body = serde_json::to_vec(e).unwrap();
            // Events 0 and 1 each got one 500 first.
            if i < 2 {
                want.push(body.clone());
            }
            want.push(body);
        }
        assert_eq!(bodies, want);
    }

    #[tokio::test]
    async fn an_unreachable_webhook_fails_after_the_retries() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut sink = EventSink::new(None).unwrap();
        fast_retry(&mut sink);
        sink.set_webhook("p", format!("http://127.0.0.1:{port}/"))
            .unwrap();
        let counters = sink.counters.clone();
        let handle = sink.start();
        sink.emit(sample("p", 1));
        finish(sink, handle).await;
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn emit_never_waits_for_a_webhook() {
        // A server that does not accept until told to: the kernel completes the TCP
        // handshake, the request sits in its queue, and no response can ever come before
        // `go`. So every `emit` below returns while its delivery is provably unfinished;
        // an `emit` that waited for the webhook would never return.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let (accepted_tx, accepted_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = go_rx.await;
            let (conn, _) = listener.accept().await.expect("accept");
            let _ = accepted_tx.send(());
            // Hold the connection without ever answering.
            let _conn = conn;
            std::future::pending::<()>().await;
        });

        let mut sink = EventSink::new(None).unwrap();
        sink.set_retry(Duration::from_secs(3600), vec![]);
        sink.set_webhook("p", url).unwrap();
        let handle = sink.start();
        let sink = Arc::new(sink);

        // Emit from a plain thread, more events than every queue together can hold.
        let n = 2 * (WEBHOOK_QUEUE + WEBHOOK_URL_QUEUE);
        let (returned_tx, returned_rx) = oneshot::channel();
        let emitter = sink.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                emitter.emit(sample("p", i as u32));
            }
            let _ = returned_tx.send(());
        });
        tokio::time::timeout(Duration::from_secs(60), returned_rx)
            .await
            .expect("emit blocked on a webhook that never answers")
            .unwrap();

        // Only now may the server accept: the delivery was underway all along.
        go_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(60), accepted_rx)
            .await
            .expect("the webhook was never contacted")
            .unwrap();
        let stats = sink.stats();
        assert_eq!(stats.webhooks_delivered, 0);
        // At most one in flight plus both queues' worth can be held; the rest is dropped.
        assert!(
            stats.webhooks_dropped >= (n - WEBHOOK_QUEUE - WEBHOOK_URL_QUEUE - 1) as u64,
            "{stats:?}"
        );
        assert!(stats.webhooks_dropped < n as u64, "{stats:?}");
        handle.abort();
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // Nothing drains before `start`: the queue fills at WEBHOOK_QUEUE.
        let mut sink = EventSink::new(None).unwrap();
        sink.set_webhook("p", "http://127.0.0.1:9/".into()).unwrap();
        for i in 0..WEBHOOK_QUEUE + 6 {
            sink.emit(sample("p", i as u32));
        }
        for i in 0..10 {
            sink.emit(sample("no-webhook", i));
        }
        assert_eq!(
            sink.stats(),
            EventStats {
                webhooks_dropped: 6,
                ..EventStats::default()
            }
        );
    }

    #[test]
    fn webhook_urls_are_logged_without_their_secrets() {
        let u = Url::parse("https://user:pw@hooks.example.test:8443/T0/B0/secret?x=1").unwrap();
        assert_eq!(redact(&u), "https://hooks.example.test:8443");
        let u = Url::parse("http://[::1]/hook").unwrap();
        assert_eq!(redact(&u), "http://[::1]");
    }
}
