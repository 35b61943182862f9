//! The API over real sockets: status codes and error bodies, the token, the Unix socket,
//! Host and Origin, and the connection limits.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UnixStream},
    sync::watch,
};

use super::*;
use crate::{
    api::{
        listen::Listeners,
        settings::{Reads, Token, UnixSocket},
    },
    steering::steer::Steering,
};

const TOKEN: &str = "0123456789abcdef0123";

/// A file or directory in the temp directory, removed on drop.
struct Temp(PathBuf);
impl Temp {
    fn path(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!("hotpool-api-{tag}-{}", std::process::id())))
    }
}
impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn token(tag: &str) -> (Token, Temp) {
    let file = Temp::path(&format!("{tag}.token"));
    std::fs::write(&file.0, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o600)).unwrap();
    (Token::read(&file.0).unwrap(), file)
}

fn state() -> ApiState {
    let steering = Steering::for_config(
        "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
         [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n\
         endpoints = [{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }]\n",
    );
    ApiState {
        datapath: Arc::new(Mutex::new(None)),
        steering: Arc::new(Mutex::new(steering)),
        daemon: Arc::new(DaemonInfo::new(SystemTime::now())),
        server: None,
    }
}

/// A running API on 127.0.0.1 (a port of the kernel's choice), stopped on drop.
struct Server {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    state: ApiState,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn serve(settings: ApiSettings) -> Server {
    serve_with(settings, Router::new()).await
}

async fn serve_with(settings: ApiSettings, extra: Router) -> Server {
    serve_state(settings, extra, state()).await
}

async fn serve_state(mut settings: ApiSettings, extra: Router, state: ApiState) -> Server {
    settings.listen = Some("127.0.0.1:0".parse().unwrap());
    let listeners = Listeners::bind(&settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listeners.tcp_addr().unwrap();
    let router = router(state.clone(), &settings, extra);
    let (stop, rx) = watch::channel(false);
    tokio::spawn(listeners.serve(router, rx));
    Server { addr, stop, state }
}

/// A response: status, headers (lower-case names), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Self {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// The `error` text of a JSON error reply (panics on any other reply).
    fn error(&self) -> String {
        match &self.json()["error"] {
            serde_json::Value::String(e) => e.clone(),
            _ => panic!("no error text: {self:?}"),
        }
    }
}

/// Sends `request` (a whole HTTP/1.1 request) and reads the reply to the end.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> Reply {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("a reply within 10 s")
        .unwrap();
    Reply::parse(&raw)
}

/// One request to `server` with `method`, `path` and extra header lines.
async fn ask(server: &Server, method: &str, path: &str, headers: &[&str]) -> Reply {
    let host = format!("Host: {}", server.addr);
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for h in std::iter::once(host.as_str()).chain(headers.iter().copied()) {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    exchange(TcpStream::connect(server.addr).await.unwrap(), &request).await
}

const PIN: &str = "/api/pools/www.example.test/endpoints/192.0.2.1/down";
const BEARER: &str = "Authorization: Bearer 0123456789abcdef0123";

fn with_token(token: &Token) -> ApiSettings {
    ApiSettings {
        token: Some(token.clone()),
        ..ApiSettings::default()
    }
}

#[tokio::test]
async fn status_codes_and_json_errors() {
    let (token, _file) = token("codes");
    let server = serve(with_token(&token)).await;

    let r = ask(&server, "GET", "/metrics", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        r.body
            .contains("hotpool_endpoint_up{pool=\"www.example.test.\",endpoint=\"192.0.2.1\"} 1"),
        "{}",
        r.body
    );

    let r = ask(&server, "GET", "/api/status", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["pools"][0]["pool"], "www.example.test.");

    let r = ask(&server, "GET", "/nope", &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.error().contains("no such path"), "{r:?}");

    let r = ask(&server, "GET", PIN, &[]).await;
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json()["error"],
        "GET is not allowed on /api/pools/www.example.test/endpoints/192.0.2.1/down; see the Allow header"
    );
    let r = ask(&server, "POST", "/metrics", &[BEARER]).await;
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.header("allow").unwrap().contains("GET"), "{r:?}");

    let r = ask(&server, "POST", PIN, &[BEARER]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["ok"], "192.0.2.1 in www.example.test is now down");
    let status = server.state.steering.lock().unwrap().status();
    assert_eq!(status[0].endpoints[0].admin, "down");

    let r = ask(
        &server,
        "POST",
        "/api/pools/nope.example.test/endpoints/192.0.2.1/down",
        &[BEARER],
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    let body = r.json();
    assert_eq!(body["error"], "no pool nope.example.test");
    assert_eq!(body["pools"], serde_json::json!(["www.example.test."]));
    assert_eq!(body["pools_total"], 1);
    let r = ask(
        &server,
        "POST",
        "/api/pools/www.example.test/endpoints/192.0.2.9/down",
        &[BEARER],
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.json()["endpoints"],
        serde_json::json!(["192.0.2.1", "192.0.2.2"])
    );
    let r = ask(
        &server,
        "POST",
        "/api/pools/www.example.test/endpoints/192.0.2.1/sideways",
        &[BEARER],
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("unknown endpoint state"));
    let r = ask(
        &server,
        "POST",
        "/api/pools/a..b/endpoints/192.0.2.1/up",
        &[BEARER],
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("empty label"));
}

#[tokio::test]
async fn writes_need_the_token() {
    let (token, _file) = token("auth");
    let server = serve(with_token(&token)).await;
    let r = ask(&server, "POST", PIN, &[]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"hotpool\"")
    );
    assert!(r.error().contains("needs the API token"));
    let r = ask(
        &server,
        "POST",
        PIN,
        &["Authorization: Bearer 0123456789abcdef0124"],
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(r.json()["error"], "wrong API token");
    let status = server.state.steering.lock().unwrap().status();
    assert_eq!(
        status[0].endpoints[0].admin, "follow",
        "refused pins change nothing"
    );
    let r = ask(&server, "POST", PIN, &[BEARER]).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Reads stay open.
    assert_eq!(ask(&server, "GET", "/api/status", &[]).await.status, 200);
    let metrics = ask(&server, "GET", "/metrics", &[]).await.body;
    assert!(
        metrics.contains("hotpool_api_refused_total{reason=\"no_token\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hotpool_api_refused_total{reason=\"wrong_token\"} 1"),
        "{metrics}"
    );

    // reads = "token": reads need it too.
    let server = serve(ApiSettings {
        reads: Reads::Token,
        ..with_token(&token)
    })
    .await;
    assert_eq!(ask(&server, "GET", "/metrics", &[]).await.status, 401);
    assert_eq!(ask(&server, "GET", "/metrics", &[BEARER]).await.status, 200);

    // No token configured: no writes over TCP at all.
    let server = serve(ApiSettings::default()).await;
    let r = ask(&server, "POST", PIN, &[BEARER]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.error().contains("api.unix_socket"), "{r:?}");
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let (token, _file) = token("origin");
    let server = serve(with_token(&token)).await;
    // A browser page on evil.example posting to the API: right token or not, refused.
    let r = ask(
        &server,
        "POST",
        PIN,
        &[BEARER, "Origin: http://evil.example"],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.error().contains("web pages"), "{r:?}");
    let r = ask(
        &server,
        "POST",
        PIN,
        &["Origin: http://evil.example", "Content-Type: text/plain"],
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let status = server.state.steering.lock().unwrap().status();
    assert_eq!(status[0].endpoints[0].admin, "follow");
    // DNS rebinding: evil.example now resolves to 127.0.0.1, the browser sends its name.
    let request = "GET /api/status HTTP/1.1\r\nHost: evil.example:9153\r\n\r\n";
    let r = exchange(TcpStream::connect(server.addr).await.unwrap(), request).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.error().contains("evil.example"), "{r:?}");
    let request = "GET /api/status HTTP/1.0\r\n\r\n";
    let r = exchange(TcpStream::connect(server.addr).await.unwrap(), request).await;
    assert_eq!(r.status, 400, "no Host: {r:?}");
    // The same origin is fine.
    let origin = format!("Origin: http://{}", server.addr);
    let r = ask(&server, "POST", PIN, &[BEARER, &origin]).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn the_unix_socket_needs_no_token_and_has_its_mode() {
    let dir = Temp::path("socket-dir");
    let path = dir.0.join("api.sock");
    let settings = ApiSettings {
        unix_socket: Some(UnixSocket {
            path: path.clone(),
            mode: 0o640,
            // The test's own group: chown works without root.
            group: Some(crate::api::settings::Group {
                name: "ours".into(),
                // SAFETY: getegid has no preconditions.
                gid: unsafe { libc::getegid() },
            }),
        }),
        ..ApiSettings::default()
    };
    // A stale socket from a crashed daemon is replaced.
    std::fs::create_dir_all(&dir.0).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let listeners = Listeners::bind(&settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    // SAFETY: getegid has no preconditions.
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), unsafe {
        libc::getegid()
    });
    // A second daemon on the same socket is refused.
    let e = Listeners::bind(&settings).await.err().expect("in use");
    assert!(
        e.to_string().contains("another process is serving on it"),
        "{e}"
    );
    let state = state();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(listeners.serve(router(state.clone(), &settings, Router::new()), rx));

    let request = format!("POST {PIN} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    let r = exchange(UnixStream::connect(&path).await.unwrap(), &request).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        state.steering.lock().unwrap().status()[0].endpoints[0].admin,
        "down"
    );
    let request = "GET /api/status HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    let r = exchange(UnixStream::connect(&path).await.unwrap(), request).await;
    assert_eq!(r.status, 403, "Host is checked here too: {r:?}");

    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(!path.exists(), "the socket is removed at shutdown");
}

#[tokio::test]
async fn connections_are_limited() {
    let server = serve(ApiSettings {
        max_connections: 1,
        header_timeout: Duration::from_millis(300),
        max_body_bytes: 1024,
        ..ApiSettings::default()
    })
    .await;
    // A client that never finishes its headers holds the one slot until the header
    // timeout closes it; meanwhile the next connection is not served.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut next = TcpStream::connect(server.addr).await.unwrap();
    next.write_all(format!("GET /api/status HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(150), next.read(&mut buf))
            .await
            .is_err(),
        "the second connection waits while the first holds the only slot"
    );
    // The header timeout frees the slot: the slow client is cut off, the next is served.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest))
        .await
        .expect("the slow client is disconnected")
        .unwrap_or(0);
    let _ = n;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), next.read_to_end(&mut raw))
        .await
        .expect("served once the slot is free")
        .unwrap();
    assert_eq!(Reply::parse(&raw).status, 200);

    // A body over max_body_bytes: 413.
    let request = format!(
        "POST {PIN} HTTP/1.1\r\nHost: {}\r\nContent-Length: 4096\r\n\r\n{}",
        server.addr,
        "x".repeat(4096)
    );
    let r = exchange(TcpStream::connect(server.addr).await.unwrap(), &request).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.json()["error"], "request body too large");
}

#[tokio::test]
async fn other_parts_add_routes_behind_the_same_checks() {
    let (token, _file) = token("extra");
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let extra = Router::new().route(
        "/api/reload",
        post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Json(json!({ "ok": "reloaded" }))
            }
        }),
    );
    let server = serve_with(with_token(&token), extra).await;
    assert_eq!(ask(&server, "POST", "/api/reload", &[]).await.status, 401);
    let r = ask(&server, "POST", "/api/reload", &[BEARER]).await;
    assert_eq!(
        (r.status, r.json()["ok"].as_str()),
        (200, Some("reloaded")),
        "{r:?}"
    );
    assert_eq!(ask(&server, "GET", "/api/reload", &[]).await.status, 405);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_requests_get_503() {
    let extra = Router::new().route(
        "/api/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let server = serve_with(
        ApiSettings {
            request_timeout: Duration::from_millis(100),
            ..ApiSettings::default()
        },
        extra,
    )
    .await;
    let r = ask(&server, "GET", "/api/slow", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.json()["error"],
        "the request took too long (api.request_timeout)"
    );
}

/// The body of a chunked reply, and how many chunks it came in.
fn dechunk(raw: &str) -> (String, usize) {
    let (mut body, mut chunks, mut rest) = (String::new(), 0, raw);
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return (body, chunks);
        }
        body.push_str(&after[..size]);
        chunks += 1;
        rest = after[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after a chunk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pages_stream_in_chunks_with_the_same_content() {
    // 150 probed pools: a metrics page of a few hundred kilobytes.
    let mut config =
        String::from("[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n");
    for i in 0..150 {
        config.push_str(&format!(
            "[[pool]]\nname = \"p{i}.example.test.\"\ntype = \"A\"\n\
             probe = {{ kind = \"tcp\", port = 80 }}\n\
             endpoints = [{{ address = \"192.0.2.1\" }}, {{ address = \"192.0.2.2\" }}]\n"
        ));
    }
    let state = ApiState {
        steering: Arc::new(Mutex::new(Steering::for_config(&config))),
        ..state()
    };
    let server = serve_state(ApiSettings::default(), Router::new(), state).await;

    let r = ask(&server, "GET", "/metrics", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("content-length"), None);
    let (page, chunks) = dechunk(&r.body);
    assert!(page.len() > 2 * stream::CHUNK, "{} bytes", page.len());
    assert!(chunks >= 2, "{chunks} chunks");
    // Line for line what the page rendered at once says.
    let whole = metrics::Snapshot::collect(&server.state).render();
    assert!(
        page == whole,
        "the streamed page differs from the rendered one"
    );

    let r = ask(&server, "GET", "/api/status", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "{:?}",
        r.headers
    );
    let (doc, _) = dechunk(&r.body);
    let doc: status::StatusDoc = serde_json::from_str(&doc).expect("the status document");
    let whole = status::StatusDoc::collect(&server.state, SystemTime::now());
    assert_eq!(doc.pools, whole.pools);
}

/// A geo pool of two CNAME endpoints whose europe region ranks by RUM samples.
fn geo_state() -> ApiState {
    let steering = Steering::for_config(
        "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\
         [regions.europe]\nnetworks = [\"192.0.2.0/24\"]\n\
         [[pool]]\nname = \"cdn.example.test.\"\ntype = \"CNAME\"\npolicy = \"geo\"\n\
         endpoints = [{ address = \"a.cdn-one.example.\" }, { address = \"b.cdn-two.example.\" }]\n\
         [pool.regions.default]\nendpoints = [\"a.cdn-one.example.\", \"b.cdn-two.example.\"]\n\
         [pool.regions.europe]\npolicy = \"fastest\"\nlatency = \"rum\"\n\
         endpoints = [\"a.cdn-one.example.\", \"b.cdn-two.example.\"]\n",
    );
    ApiState {
        steering: Arc::new(Mutex::new(steering)),
        ..state()
    }
}

/// A POST of `body` (JSON) to `path`.
async fn post_json(server: &Server, path: &str, headers: &[&str], body: &str) -> Reply {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {}\r\n", server.addr);
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    exchange(TcpStream::connect(server.addr).await.unwrap(), &request).await
}

#[tokio::test]
async fn rum_samples_need_the_token_and_move_their_region() {
    let (token, _file) = token("rum");
    let server = serve_state(with_token(&token), Router::new(), geo_state()).await;
    let europe = |server: &Server| {
        let status = server.state.steering.lock().unwrap().status();
        status[0].regions[1].answer.clone()
    };
    assert_eq!(europe(&server), "a.cdn-one.example.");
    let body = r#"{"ttl": "5m", "samples": [
        {"region": "europe", "endpoint": "a.cdn-one.example.", "latency_ms": 80, "available": true},
        {"region": "europe", "endpoint": "B.cdn-two.example", "latency_ms": 23.5}
    ]}"#;

    // A write: refused without the token, and nothing applied.
    let r = post_json(&server, "/api/rum", &[], body).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(europe(&server), "a.cdn-one.example.");

    let r = post_json(&server, "/api/rum", &[BEARER], body).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(r.json()["ttl"], "5m");
    assert_eq!(europe(&server), "b.cdn-two.example.");

    // Unknown names: 400 with every refused sample and what is known.
    let r = post_json(
        &server,
        "/api/rum",
        &[BEARER],
        r#"{"samples": [{"region": "asia", "endpoint": "a.cdn-one.example.", "latency_ms": 1},
                        {"region": "europe", "endpoint": "c.cdn-three.example.", "latency_ms": 1}]}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    let body = r.json();
    assert_eq!(body["rejected_total"], 2);
    assert_eq!(body["rejected"][0]["index"], 0);
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("region \"asia\""),
        "{body}"
    );
    assert_eq!(
        body["regions"]["europe"],
        serde_json::json!(["a.cdn-one.example.", "b.cdn-two.example."])
    );
    // Malformed bodies: 400 saying what is expected.
    let r = post_json(
        &server,
        "/api/rum",
        &[BEARER],
        r#"{"samples": [{"region": 1}]}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("expected {\"ttl\""), "{r:?}");

    let metrics = ask(&server, "GET", "/metrics", &[]).await.body;
    for line in [
        "hotpool_rum_samples_total{result=\"accepted\"} 2",
        "hotpool_rum_samples_total{result=\"rejected\"} 2",
        "hotpool_rum_samples_held 2",
        "hotpool_pool_region_answer_changes_total{pool=\"cdn.example.test.\",region=\"europe\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    let status = ask(&server, "GET", "/api/status", &[]).await.json();
    assert_eq!(status["pools"][0]["policy"], "geo");
    assert_eq!(status["pools"][0]["regions"][1]["region"], "europe");
    assert_eq!(status["pools"][0]["regions"][1]["latency"], "rum");
    assert_eq!(
        status["pools"][0]["regions"][1]["answer"],
        "b.cdn-two.example."
    );
}
