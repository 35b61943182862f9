//! The daemon's heartbeat and the per-pool answer counters, through BPF_PROG_TEST_RUN: a
//! hit with a fresh heartbeat, a stale one served (`stale_hit`) or passed (`stale`), the
//! staleness switched off; kernel answers counted per pool, and a pool index given to a new
//! pool starting from zero.

use std::{str::FromStr, time::Duration};

use dns_common::Outcome;
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType, rdata::A},
    serialize::binary::BinEncodable,
};
use hotpool::datapath::{
    heartbeat::{OnStale, Staleness, monotonic_ns},
    hot::{Capacity, DatapathSettings},
    pools::{PoolAnswer, Selection},
};
use hotpool_tests::{
    datapath::{TestDatapath, XDP_PASS, XDP_TX, single_outcome},
    frames::{self, Path},
};

const STALE: Duration = Duration::from_secs(30);

fn settings(after: Option<Duration>, on_stale: OnStale) -> DatapathSettings {
    DatapathSettings {
        staleness: Staleness { after, on_stale },
        ..hotpool_tests::datapath::settings(&["10.0.0.2"], 1232)
    }
}

fn path() -> Path {
    Path::v4([10, 0, 0, 1], [10, 0, 0, 2])
}

fn pool(name: &str, host: u8) -> PoolAnswer {
    PoolAnswer::new(
        Name::from_str(name).unwrap(),
        RecordType::A,
        30,
        vec![RData::A(A::new(192, 0, 2, host))],
        Selection::All,
    )
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    frames::query(&path(), &m.to_bytes().unwrap())
}

/// A heartbeat older than [`STALE`] (the clock counts from boot, which was longer ago
/// than that by the time these tests run).
fn old_beat(t: &mut TestDatapath) {
    let now = monotonic_ns();
    assert!(
        now > 2 * STALE.as_nanos() as u64,
        "CLOCK_MONOTONIC at {now} ns: booted too recently for an old heartbeat"
    );
    t.dp.maps.beat_at(1).expect("writing an old heartbeat");
}

/// Runs `frame`: (action, output, the one outcome counted).
fn run(t: &mut TestDatapath, frame: &[u8]) -> (u32, Vec<u8>, Outcome) {
    let before = t.stats();
    let (action, out) = t.run(frame);
    (action, out, single_outcome(&before, &t.stats()))
}

fn answers(t: &TestDatapath, name: &str) -> u64 {
    t.dp.maps
        .pool_answers(&Name::from_str(name).unwrap())
        .expect("reading POOL_ANSWERS")
        .unwrap_or_else(|| panic!("{name} is not in the kernel"))
}

#[test]
fn a_fresh_heartbeat_is_a_plain_hit() {
    let mut t = TestDatapath::new(
        &settings(Some(STALE), OnStale::Pass),
        &[pool("www.example.test.", 10)],
    );
    let (action, _, outcome) = run(&mut t, &query("www.example.test."));
    assert_eq!((action, outcome), (XDP_TX, Outcome::Hit));
    let age = t.dp.maps.heartbeat_age().unwrap().expect("a heartbeat");
    assert!(age < STALE, "heartbeat {age:?} old right after the beat");
}

#[test]
fn a_stale_hit_is_served_as_before_and_counted_as_stale_hit() {
    let mut t = TestDatapath::new(
        &settings(Some(STALE), OnStale::Serve),
        &[pool("www.example.test.", 10)],
    );
    let frame = query("www.example.test.");
    let (_, fresh, outcome) = run(&mut t, &frame);
    assert_eq!(outcome, Outcome::Hit);
    old_beat(&mut t);
    let (action, stale, outcome) = run(&mut t, &frame);
    assert_eq!((action, outcome), (XDP_TX, Outcome::StaleHit));
    assert_eq!(stale, fresh, "the same reply, stale or not");
    assert!(outcome.answered());
    assert_eq!(answers(&t, "www.example.test."), 2, "both answers counted");
    // Misses do not look at the heartbeat.
    let (action, _, outcome) = run(&mut t, &query("nothere.example.test."));
    assert_eq!((action, outcome), (XDP_PASS, Outcome::Miss));
    // A beat makes it fresh again.
    t.dp.maps.beat().unwrap();
    let (_, _, outcome) = run(&mut t, &frame);
    assert_eq!(outcome, Outcome::Hit);
}

#[test]
fn a_stale_hit_is_passed_unchanged_with_on_stale_pass() {
    let mut t = TestDatapath::new(
        &settings(Some(STALE), OnStale::Pass),
        &[pool("www.example.test.", 10)],
    );
    old_beat(&mut t);
    let frame = query("www.example.test.");
    let (action, out, outcome) = run(&mut t, &frame);
    assert_eq!((action, outcome), (XDP_PASS, Outcome::Stale));
    assert_eq!(out, frame, "passed untouched");
    assert!(!outcome.answered());
    assert_eq!(answers(&t, "www.example.test."), 0, "nothing answered");
}

#[test]
fn without_a_staleness_an_old_heartbeat_does_not_matter() {
    let mut t = TestDatapath::new(
        &settings(None, OnStale::Pass),
        &[pool("www.example.test.", 10)],
    );
    old_beat(&mut t);
    let (action, _, outcome) = run(&mut t, &query("www.example.test."));
    assert_eq!((action, outcome), (XDP_TX, Outcome::Hit));
}

#[test]
fn kernel_answers_are_counted_per_pool_and_a_reused_index_starts_from_zero() {
    // Room for two pools: a third one can only get a removed pool's index.
    let capacity = Capacity {
        pools: 2,
        slots: 4,
        answers: 8,
        buckets: 8,
    };
    let (a, b, c) = (
        pool("a.example.test.", 1),
        pool("b.example.test.", 2),
        pool("c.example.test.", 3),
    );
    let mut t = TestDatapath::with_capacity(
        &settings(Some(STALE), OnStale::Serve),
        &[a.clone(), b.clone()],
        &capacity,
    );
    for _ in 0..3 {
        assert_eq!(run(&mut t, &query("a.example.test.")).2, Outcome::Hit);
    }
    assert_eq!(run(&mut t, &query("B.example.test.")).2, Outcome::Hit);
    assert_eq!(run(&mut t, &query("other.example.test.")).2, Outcome::Miss);
    assert_eq!(answers(&t, "a.example.test."), 3);
    assert_eq!(answers(&t, "b.example.test."), 1);

    let index_a = t.dp.maps.pool_index(&a.name).unwrap();
    t.dp.maps.sync(&[b.clone(), c.clone()]).expect("a for c");
    assert_eq!(
        t.dp.maps.pool_index(&c.name),
        Some(index_a),
        "c takes the only free index, a's"
    );
    assert_eq!(
        answers(&t, "c.example.test."),
        0,
        "c does not inherit a's 3"
    );
    assert_eq!(answers(&t, "b.example.test."), 1, "b keeps its count");
    assert_eq!(run(&mut t, &query("c.example.test.")).2, Outcome::Hit);
    assert_eq!(answers(&t, "c.example.test."), 1);
    let all = t.dp.maps.pool_answers_all();
    assert_eq!(all.len(), 2, "{all:?}");
}
