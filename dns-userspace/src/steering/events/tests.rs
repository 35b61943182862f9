//! The event record: serialization, the log file, webhook delivery, retries and queues.

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
