//! Issue 3 end to end: real HTTP endpoints in the server namespace whose latency and health
//! the test controls, the daemon probing them, and queries from the client namespace
//! answered by the XDP program. Reports the measured failover time.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use dns_common::Outcome;
use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};
use hotpool_tests::{
    client,
    daemon::{API_TOKEN, Daemon, answered, delta},
    endpoint::{Behaviour, TestEndpoint, WebhookReceiver},
    netns::Link,
};

const INTERVAL: Duration = Duration::from_secs(1);
const FALL: u32 = 3;
const RISE: u32 = 2;

fn ep(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, n)
}

fn config(link: &Link, hook: &str) -> String {
    let probe = |kind: &str| {
        format!(
            "probe = {{ kind = \"{kind}\", interval = \"1s\", timeout = \"500ms\", rise = {RISE}, fall = {FALL}, port = 8080{} }}",
            if kind == "http" {
                ", path = \"/health\""
            } else {
                ""
            }
        )
    };
    format!(
        r#"[server]
listen = ["{v4}"]
pin_path = "{{pin}}"

[api]
listen = "{v4}:9153"
token_file = "{{dir}}/api.token"

[xdp]
interfaces = ["{iface}"]
mode = "generic"

[events]
log = "{{dir}}/events.jsonl"

[[zone]]
origin = "example.test."
file = "zones/example.test.zone"

[[pool]]
name = "fast.example.test."
type = "A"
ttl = 5
policy = "fastest"
hysteresis = 20
webhook = "{hook}"
{http}
endpoints = [{{ address = "{e1}" }}, {{ address = "{e2}" }}]

[[pool]]
name = "split.example.test."
type = "A"
policy = "weighted"
{tcp}
endpoints = [{{ address = "{e3}", weight = 1 }}, {{ address = "{e4}", weight = 3 }}]

[[pool]]
name = "fo.example.test."
type = "A"
policy = "failover"
all_down = "servfail"
{http}
endpoints = [{{ address = "{e5}", priority = 0 }}, {{ address = "{e6}", priority = 1 }}]
"#,
        v4 = link.server_v4,
        iface = link.server_if,
        http = probe("http"),
        tcp = probe("tcp"),
        e1 = ep(1),
        e2 = ep(2),
        e3 = ep(3),
        e4 = ep(4),
        e5 = ep(5),
        e6 = ep(6),
    )
}

struct World {
    link: Link,
    daemon: Daemon,
    eps: Vec<TestEndpoint>,
    hook: WebhookReceiver,
}

impl World {
    fn new() -> Self {
        let link = Link::new();
        let eps: Vec<TestEndpoint> = (1..=6)
            .map(|n| TestEndpoint::start(&link.server, IpAddr::V4(ep(n)), 8080))
            .collect();
        let hook = WebhookReceiver::start(&link.server, IpAddr::V4(ep(10)), 9000);
        let daemon = Daemon::start(&link, &config(&link, &hook.url()), true);
        Self {
            link,
            daemon,
            eps,
            hook,
        }
    }

    fn endpoint(&self, n: u8) -> &TestEndpoint {
        &self.eps[n as usize - 1]
    }

    /// One query from the client namespace: (rcode, A records).
    fn ask(&self, name: &'static str) -> (ResponseCode, Vec<Ipv4Addr>) {
        let server = SocketAddr::new(IpAddr::V4(self.link.server_v4), 53);
        self.link.client.run(move || {
            let m = client::udp(
                server,
                &client::query(name, RecordType::A, false),
                Duration::from_secs(2),
            )
            .expect("an answer");
            let addrs = m
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            (m.metadata.response_code, addrs)
        })
    }

    /// Polls until `name` answers exactly `want`; returns how long that took.
    fn wait_for(&self, name: &'static str, want: &[Ipv4Addr], limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let (rcode, got) = self.ask(name);
            if rcode == ResponseCode::NoError && got == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{name} still answers {rcode} {got:?} after {limit:?}, expected {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One request to the daemon's HTTP endpoint (from inside the server namespace), with
    /// the API token: (status code, body).
    fn api(&self, method: &'static str, path: String) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let addr = SocketAddr::new(IpAddr::V4(self.link.server_v4), 9153);
        self.link.server.run(move || {
            let mut c = std::net::TcpStream::connect(addr).expect("API connect");
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(
                c,
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut resp = String::new();
            c.read_to_string(&mut resp).unwrap();
            let code = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
            let body = resp
                .split_once("\r\n\r\n")
                .map(|x| x.1)
                .unwrap_or("")
                .to_string();
            (code, body)
        })
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.daemon.file("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }
}

/// `rise` successes are at least `rise - 1` probe intervals apart, each at least 90 % of
/// the nominal interval (the scheduler's ±10 % jitter).
const MIN_RISE_TIME: Duration = Duration::from_millis(900 * (RISE as u64 - 1));

/// Startup needs every endpoint's first verdict: max(rise, fall) probes, plus jitter.
const WARM_UP: Duration = Duration::from_secs(8);

#[test]
fn fastest_follows_latency_fails_over_and_back_and_fails_open() {
    let w = World::new();
    w.endpoint(1).set_delay(Duration::from_millis(5));
    w.endpoint(2).set_delay(Duration::from_millis(80));

    // The fastest endpoint is answered, by the kernel.
    w.wait_for("fast.example.test.", &[ep(1)], WARM_UP);
    let before = w.daemon.stats();
    assert_eq!(w.ask("fast.example.test.").1, [ep(1)]);
    assert_eq!(answered(&before, &w.daemon.stats()), 1, "answered by XDP");

    // An operator pin through the HTTP API applies at once, and unpinning returns.
    let (code, body) = w.api(
        "POST",
        "/api/pools/fast.example.test./endpoints/10.99.0.1/down".into(),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        w.ask("fast.example.test.").1,
        [ep(2)],
        "pinned down: answered without it"
    );
    let (code, body) = w.api("GET", "/api/status".into());
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        status["pools"][0]["endpoints"][0]["admin"], "down",
        "{status}"
    );
    let (code, _) = w.api(
        "POST",
        "/api/pools/fast.example.test./endpoints/10.99.0.1/follow".into(),
    );
    assert_eq!(code, 200);
    assert_eq!(w.ask("fast.example.test.").1, [ep(1)]);
    let (code, body) = w.api(
        "POST",
        "/api/pools/fast.example.test./endpoints/10.99.0.9/down".into(),
    );
    assert_eq!(code, 404, "unknown endpoint: {body}");
    let (code, body) = w.api("GET", "/metrics".into());
    assert_eq!(code, 200);
    assert!(
        body.contains("hotpool_endpoint_up{pool=\"fast.example.test.\",endpoint=\"10.99.0.1\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("hotpool_xdp_packets_total{outcome=\"hit\"}"),
        "{body}"
    );

    // Slowing it down moves the answer to the other one (after the median of the last
    // five probes moves: three slow samples).
    w.endpoint(1).set_delay(Duration::from_millis(250));
    w.wait_for("fast.example.test.", &[ep(2)], Duration::from_secs(10));

    // Killing the now fastest fails over within interval × fall plus a margin.
    w.endpoint(2).set_behaviour(Behaviour::Refuse);
    let failover = w.wait_for("fast.example.test.", &[ep(1)], Duration::from_secs(10));
    let bound = INTERVAL * FALL + Duration::from_millis(1500);
    println!(
        "measured: endpoint refused → kernel answers without it in {:.2} s (interval 1 s, fall {FALL}; bound {:.1} s)",
        failover.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(
        failover <= bound,
        "failover took {failover:?}, bound {bound:?}"
    );

    // Bringing it back fails back once it passed `rise` probes (and is faster again).
    w.endpoint(2).set_behaviour(Behaviour::Healthy);
    let back = w.wait_for("fast.example.test.", &[ep(2)], Duration::from_secs(10));
    println!(
        "measured: endpoint back → answered again in {:.2} s (rise {RISE})",
        back.as_secs_f64()
    );
    assert!(
        back >= MIN_RISE_TIME,
        "fail-back needs {RISE} successful probes: {back:?}"
    );

    // All down: fail open to the last known good set, logged as such (the answer stays,
    // so the record says it with the endpoint event that left the pool all down).
    w.endpoint(1).set_behaviour(Behaviour::Refuse);
    w.endpoint(2).set_behaviour(Behaviour::Refuse);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = w.events().into_iter().any(|e| {
            e["pool"] == "fast.example.test."
                && e["kind"] == "endpoint_state"
                && e["new"] == "down"
                && e["all_down"] == true
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no all-down event");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (rcode, got) = w.ask("fast.example.test.");
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0] == ep(1) || got[0] == ep(2),
        "fail-open answers the last known good set, never empty: {got:?}"
    );
    assert_eq!(w.ask("fast.example.test.").1, got, "and keeps it");

    // The event record: endpoint states and pool answers, with reasons and latencies.
    let events = w.events();
    let downs: Vec<_> = events
        .iter()
        .filter(|e| {
            e["pool"] == "fast.example.test." && e["kind"] == "endpoint_state" && e["new"] == "down"
        })
        .collect();
    assert!(downs.iter().any(|e| e["endpoint"] == "10.99.0.2"
        && e["reason"].as_str().unwrap().contains("connection refused")));
    let answers: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["pool"] == "fast.example.test." && e["kind"] == "pool_answer")
        .map(|e| {
            (
                e["old"].as_str().unwrap().into(),
                e["new"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        answers.contains(&("10.99.0.1".into(), "10.99.0.2".into())),
        "{answers:?}"
    );
    assert!(
        answers.contains(&("10.99.0.2".into(), "10.99.0.1".into())),
        "{answers:?}"
    );
    assert!(events.iter().any(|e| e["latency_ms"].is_number()));
    // The webhook got the same events.
    let recorded: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["pool"] == "fast.example.test.")
        .collect();
    let bodies = w
        .hook
        .wait_for_bodies(recorded.len(), Duration::from_secs(10));
    let posted: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    for e in recorded {
        assert!(posted.contains(e), "webhook missed {e}");
    }
    w.daemon.stop();
}

#[test]
fn weighted_proportions_hold_in_the_kernel() {
    let w = World::new();
    // Both up: a per-query choice 1:3 (before the first verdicts the pool answers its
    // configured set, both records in one answer).
    let start = Instant::now();
    loop {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let (_, got) = w.ask("split.example.test.");
            if got.len() == 1 {
                seen.extend(got);
            }
        }
        if seen.len() == 2 {
            break;
        }
        assert!(
            start.elapsed() < WARM_UP,
            "weighted pool never answered both: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let n = 4000usize;
    let server = SocketAddr::new(IpAddr::V4(w.link.server_v4), 53);
    let before = w.daemon.stats();
    let counts = w.link.client.run(move || {
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let m = client::udp(
                server,
                &client::query("split.example.test.", RecordType::A, false),
                Duration::from_secs(2),
            )
            .unwrap();
            assert_eq!(m.answers.len(), 1, "one endpoint per weighted answer");
            if let RData::A(a) = &m.answers[0].data {
                *counts.entry(a.0).or_insert(0usize) += 1;
            }
        }
        counts
    });
    assert_eq!(
        answered(&before, &w.daemon.stats()),
        n as u64,
        "all from XDP"
    );
    let light = counts.get(&ep(3)).copied().unwrap_or(0) as f64;
    let (p, nf) = (0.25, n as f64);
    let sd = (nf * p * (1.0 - p)).sqrt();
    println!(
        "weighted 1:3 over {n} kernel answers: {counts:?} (expected {:.0} ± {:.0} for the light one)",
        nf * p,
        5.0 * sd
    );
    assert!((light - nf * p).abs() <= 5.0 * sd, "{counts:?}");
    w.daemon.stop();
}

#[test]
fn failover_policy_and_servfail_when_all_down() {
    let w = World::new();
    w.wait_for("fo.example.test.", &[ep(5)], WARM_UP);
    // The primary answers 503: the secondary takes over after `fall` probes.
    w.endpoint(5).set_behaviour(Behaviour::Status(503));
    let t = w.wait_for("fo.example.test.", &[ep(6)], Duration::from_secs(10));
    println!(
        "measured: primary 503 → secondary answered in {:.2} s",
        t.as_secs_f64()
    );
    // Fail-back only after `rise` successful probes of the primary.
    w.endpoint(5).set_behaviour(Behaviour::Healthy);
    let t = w.wait_for("fo.example.test.", &[ep(5)], Duration::from_secs(10));
    assert!(t >= MIN_RISE_TIME, "fail-back needs {RISE} probes: {t:?}");
    // A blackholed primary (probes time out) and a refusing secondary: SERVFAIL, from the
    // daemon (the kernel passes the pool).
    w.endpoint(5).set_behaviour(Behaviour::Blackhole);
    w.endpoint(6).set_behaviour(Behaviour::Refuse);
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let before = w.daemon.stats();
        let (rcode, got) = w.ask("fo.example.test.");
        if rcode == ResponseCode::ServFail {
            assert!(got.is_empty());
            assert_eq!(delta(&before, &w.daemon.stats(), Outcome::NoAnswer), 1);
            break;
        }
        assert!(Instant::now() < deadline, "never SERVFAIL: {rcode} {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    w.daemon.stop();
}
