use std::{path::Path, time::Duration};

use hickory_proto::rr::{LowerName, Name, RData, rdata::A};

mod geo;
mod lifecycle;

use super::*;
use crate::datapath::pools::Selection;
use crate::{config::Config, steering::health::parse_admin};

/// Steering over one pool of `endpoints` with `keys`, no kernel, events to a file.
fn steering(keys: &str, endpoints: &str, log: &Path) -> (Steering, Arc<PoolTable>) {
    let text = format!(
        "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n\n\
         [events]\nlog = \"{}\"\n\n\
         [[pool]]\nname = \"www.example.test.\"\ntype = \"A\"\n{keys}\nendpoints = [{endpoints}]\n",
        log.display()
    );
    let source = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/hotpool.toml"
    ));
    let cfg = Config::parse(&text, source).unwrap_or_else(|e| panic!("{e}"));
    let table = Arc::new(PoolTable::new(
        cfg.pools.iter().map(PoolSettings::initial_answer),
    ));
    let events = EventSink::new(Some(log)).unwrap();
    let s = Steering::new(
        &cfg.pools,
        table.clone(),
        Arc::new(Mutex::new(None)),
        events,
        None,
    );
    (s, table)
}

/// One probe result for endpoint `e` of pool `p`, through its job.
fn feed(s: &mut Steering, p: usize, e: usize, at: Instant, outcome: &ProbeOutcome) {
    let job = s.pools[p].jobs[e].expect("a probed endpoint has a job");
    s.on_probe(job, at, outcome);
}

fn answer(table: &PoolTable) -> Arc<PoolAnswer> {
    table
        .get(&LowerName::from(
            Name::from_ascii("www.example.test.").unwrap(),
        ))
        .unwrap()
}

fn addrs(a: &PoolAnswer) -> Vec<String> {
    a.rdata
        .iter()
        .map(|d| match d {
            RData::A(A(ip)) => ip.to_string(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn ok(ms: u64) -> ProbeOutcome {
    ProbeOutcome::success(Duration::from_millis(ms), "HTTP 200")
}

fn fail() -> ProbeOutcome {
    ProbeOutcome::failure("connection refused")
}

fn log_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

struct TempLog(std::path::PathBuf);
impl TempLog {
    fn new(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!("hotpool-steer-{tag}-{}.jsonl", std::process::id())))
    }
}
impl Drop for TempLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const PROBE: &str = "probe = { kind = \"tcp\", port = 80, interval = \"1s\", rise = 2, fall = 3 }";
const TWO: &str = "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }";

#[test]
fn keeps_the_configured_set_until_every_endpoint_has_a_verdict() {
    let log = TempLog::new("warm");
    let (mut s, table) = steering(PROBE, TWO, &log.0);
    let t = Instant::now();
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1", "192.0.2.2"]);
    // Endpoint 0 is up after `rise`, endpoint 1 still unknown: no decision yet.
    feed(&mut s, 0, 0, t, &ok(10));
    feed(&mut s, 0, 0, t, &ok(10));
    feed(&mut s, 0, 1, t, &ok(50));
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1", "192.0.2.2"]);
    // Both have verdicts: the fastest is answered.
    feed(&mut s, 0, 1, t, &ok(50));
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
    let events = log_lines(&log.0);
    let pool_events: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "pool_answer")
        .collect();
    assert_eq!(pool_events.len(), 1);
    assert_eq!(pool_events[0]["old"], "192.0.2.1, 192.0.2.2");
    assert_eq!(pool_events[0]["new"], "192.0.2.1");
    assert!(
        pool_events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("192.0.2.1")
    );
    let up: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "endpoint_state")
        .collect();
    assert_eq!(up.len(), 2);
    assert_eq!(up[0]["old"], "unknown");
    assert_eq!(up[0]["new"], "up");
}

#[test]
fn fails_over_after_fall_failures_and_back_after_rise_successes() {
    let log = TempLog::new("failover");
    let (mut s, table) = steering(PROBE, TWO, &log.0);
    let t = Instant::now();
    for _ in 0..2 {
        feed(&mut s, 0, 0, t, &ok(10));
        feed(&mut s, 0, 1, t, &ok(50));
    }
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
    feed(&mut s, 0, 0, t, &fail());
    feed(&mut s, 0, 0, t, &fail());
    assert_eq!(
        addrs(&answer(&table)),
        ["192.0.2.1"],
        "not yet `fall` failures"
    );
    feed(&mut s, 0, 0, t, &fail());
    assert_eq!(addrs(&answer(&table)), ["192.0.2.2"]);
    feed(&mut s, 0, 0, t, &ok(10));
    assert_eq!(
        addrs(&answer(&table)),
        ["192.0.2.2"],
        "not yet `rise` successes"
    );
    feed(&mut s, 0, 0, t, &ok(10));
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
    let down = log_lines(&log.0)
        .into_iter()
        .find(|e| e["new"] == "down")
        .expect("a down event");
    assert_eq!(down["endpoint"], "192.0.2.1");
    assert!(
        down["reason"]
            .as_str()
            .unwrap()
            .contains("3 consecutive failures")
    );
    assert!(down["latency_ms"].is_number() || down["latency_ms"].is_null());
}

#[test]
fn all_down_fails_open_servfails_or_falls_back() {
    let log = TempLog::new("alldown");
    let (mut s, table) = steering(PROBE, TWO, &log.0);
    let t = Instant::now();
    for _ in 0..2 {
        feed(&mut s, 0, 0, t, &ok(10));
        feed(&mut s, 0, 1, t, &ok(50));
    }
    for _ in 0..3 {
        feed(&mut s, 0, 0, t, &fail());
        feed(&mut s, 0, 1, t, &fail());
    }
    let a = answer(&table);
    assert_eq!(
        addrs(&a),
        ["192.0.2.2"],
        "fail-open: the last known good set"
    );
    assert_eq!(a.selection, Selection::All);
    // Failing open to the answer in force is no change of the answer: no pool_answer
    // event, no count; the status says the pool is all down.
    let answers: Vec<_> = log_lines(&log.0)
        .into_iter()
        .filter(|e| e["kind"] == "pool_answer")
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[1]["new"], "192.0.2.2");
    assert_eq!(answers[1]["all_down"], false);
    let status = s.status();
    assert!(status[0].all_down);
    assert_eq!(status[0].changes, 2);

    let log = TempLog::new("servfail");
    let (mut s, table) = steering(&format!("{PROBE}\nall_down = \"servfail\""), TWO, &log.0);
    for _ in 0..3 {
        feed(&mut s, 0, 0, t, &fail());
        feed(&mut s, 0, 1, t, &fail());
    }
    assert!(answer(&table).servfail());

    let log = TempLog::new("fallback");
    let (mut s, table) = steering(
        &format!("{PROBE}\nall_down = \"fallback\"\nfallback = [\"198.51.100.1\"]"),
        TWO,
        &log.0,
    );
    for _ in 0..3 {
        feed(&mut s, 0, 0, t, &fail());
        feed(&mut s, 0, 1, t, &fail());
    }
    assert_eq!(addrs(&answer(&table)), ["198.51.100.1"]);
}

#[test]
fn weighted_policy_publishes_a_per_query_choice() {
    let log = TempLog::new("weighted");
    let (mut s, table) = steering(
        &format!("{PROBE}\npolicy = \"weighted\""),
        "{ address = \"192.0.2.1\", weight = 1 }, { address = \"192.0.2.2\", weight = 3 }",
        &log.0,
    );
    let t = Instant::now();
    for _ in 0..2 {
        feed(&mut s, 0, 0, t, &ok(10));
        feed(&mut s, 0, 1, t, &ok(10));
    }
    let a = answer(&table);
    assert_eq!(addrs(&a), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(a.selection, Selection::weighted(vec![1, 3]));
    // One endpoint left: a plain answer.
    for _ in 0..3 {
        feed(&mut s, 0, 1, t, &fail());
    }
    let a = answer(&table);
    assert_eq!(addrs(&a), ["192.0.2.1"]);
    assert_eq!(a.selection, Selection::All);
}

#[test]
fn operator_pins_apply_at_once_and_are_recorded() {
    let log = TempLog::new("pins");
    let (mut s, table) = steering(PROBE, TWO, &log.0);
    let t = Instant::now();
    for _ in 0..2 {
        feed(&mut s, 0, 0, t, &ok(10));
        feed(&mut s, 0, 1, t, &ok(50));
    }
    s.set_admin("www.example.test", "192.0.2.1", AdminState::Down)
        .unwrap();
    assert_eq!(addrs(&answer(&table)), ["192.0.2.2"]);
    // Probes no longer move a pinned endpoint.
    feed(&mut s, 0, 0, t, &ok(1));
    assert_eq!(addrs(&answer(&table)), ["192.0.2.2"]);
    s.set_admin("www.example.test.", "192.0.2.1", AdminState::Follow)
        .unwrap();
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
    assert!(
        s.set_admin("nope.example.test.", "192.0.2.1", AdminState::Up)
            .is_err()
    );
    assert!(
        s.set_admin("www.example.test.", "192.0.2.9", AdminState::Up)
            .is_err()
    );
    let pinned = log_lines(&log.0)
        .into_iter()
        .find(|e| e["reason"] == "pinned down by operator")
        .expect("the pin is recorded");
    assert_eq!(pinned["old"], "up");
    assert_eq!(pinned["new"], "down");
    let status = s.status();
    assert_eq!(status[0].endpoints[0].admin, "follow");
    assert_eq!(status[0].answer, "192.0.2.1");
}

#[test]
fn static_pools_answer_every_endpoint_not_pinned_down() {
    let log = TempLog::new("static");
    let (mut s, table) = steering(
        "",
        "{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\", state = \"down\" }",
        &log.0,
    );
    assert!(s.jobs().is_empty());
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1"]);
    s.set_admin("www.example.test.", "192.0.2.2", AdminState::Follow)
        .unwrap();
    assert_eq!(addrs(&answer(&table)), ["192.0.2.1", "192.0.2.2"]);
}

#[test]
fn admin_state_names() {
    assert_eq!(parse_admin("up").unwrap(), AdminState::Up);
    assert_eq!(parse_admin("always_off").unwrap(), AdminState::Down);
    assert_eq!(parse_admin("follow-sonar").unwrap(), AdminState::Follow);
    assert!(parse_admin("maybe").is_err());
}
