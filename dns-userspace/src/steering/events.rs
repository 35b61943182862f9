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

use crate::logs::List;

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
    /// The region of a `geo` pool's answer (absent for every other pool, and for
    /// endpoint events: health is per endpoint, shared by the regions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Address or host name; `None` for pool-level events.
    pub endpoint: Option<String>,
    pub kind: EventKind,
    pub old: String,
    pub new: String,
    pub reason: String,
    /// No endpoint of the pool is up: for a pool answer, it comes from the all-down
    /// setting (fail-open, fallback or SERVFAIL); for an endpoint's change, the pool is all
    /// down after it (an answer that stays the same, failing open, has no event of its own).
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
            region: None,
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
            region: None,
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

    /// The same event with latency figures, rounded to the microsecond.
    pub fn with_latency(mut self, latency_ms: Option<f64>, samples_ms: Vec<f64>) -> Self {
        let round = |ms: f64| (ms * 1e3).round() / 1e3;
        self.latency_ms = latency_ms.map(round);
        self.samples_ms = samples_ms.into_iter().map(round).collect();
        self
    }

    /// The same event about `region`'s answer of a `geo` pool.
    pub fn in_region(mut self, region: Option<&str>) -> Self {
        self.region = region.map(str::to_string);
        self
    }

    /// Marks the pool as all down (see [`Event::all_down`]).
    pub fn with_all_down(mut self, all_down: bool) -> Self {
        self.all_down = all_down;
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

    /// Replaces every pool's webhook with `hooks` (pool, URL): a reload. Nothing changes
    /// when one of them is invalid.
    pub fn replace_webhooks(
        &mut self,
        hooks: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), EventsError> {
        let old = std::mem::take(&mut self.webhooks);
        for (pool, url) in hooks {
            if let Err(e) = self.set_webhook(&pool, url) {
                self.webhooks = old;
                return Err(e);
            }
        }
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
    macro_rules! endpoint_line {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                pool = %e.pool,
                endpoint = %e.endpoint.as_deref().unwrap_or("-"),
                old = %e.old,
                new = %e.new,
                reason = %e.reason,
                latency_ms = e.latency_ms,
                samples_ms = %List(&e.samples_ms),
                $msg
            )
        };
    }
    macro_rules! pool_line {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                pool = %e.pool,
                region = e.region.as_deref(),
                old = %e.old,
                new = %e.new,
                reason = %e.reason,
                all_down = e.all_down,
                $msg
            )
        };
    }
    match (e.kind, e.is_trouble()) {
        (EventKind::EndpointState, true) => endpoint_line!(warn, "endpoint down"),
        (EventKind::EndpointState, false) => endpoint_line!(info, "endpoint state changed"),
        (EventKind::PoolAnswer, true) => {
            pool_line!(warn, "pool answer changed: all endpoints down")
        }
        (EventKind::PoolAnswer, false) => pool_line!(info, "pool answer changed"),
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
                    "webhook attempt failed; retrying in {}",
                    humantime::format_duration(*wait)
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
mod tests;
