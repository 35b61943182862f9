//! The no-torn-read guarantee: while one thread republishes a pool's answer in a tight loop,
//! other threads run queries through the program; every reply must decode and carry exactly
//! one of the answer sets that was ever published, and every query is answered.
//!
//! The maps hold two answer sets and two answers, so every publish after the first reuses
//! the entries the one before it replaced: only the grace period between retiring an entry
//! and rewriting it keeps readers from seeing a half-written answer. With the slot published
//! before its answer is written (the protocol broken on purpose) this test fails within a
//! second. Without the wait it fails only if a reader is held up inside the program for a
//! whole publish, which a test run rarely is: a skipped grace period went unnoticed in three
//! tries on the 2-core test VM.

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use dns_common::Outcome;
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType, rdata::A},
    serialize::binary::{BinDecodable, BinEncodable},
};
use hotpool::datapath::{hot::Capacity, pools::PoolAnswer};
use hotpool_tests::{
    client,
    datapath::{TestDatapath, XDP_PASS, XDP_TX, test_run},
    frames::{self, Path},
};

/// Answer sets of different sizes and contents, so that a mix of two would show as a wrong
/// count, a wrong address or an undecodable message.
fn answer_sets() -> Vec<Vec<Ipv4Addr>> {
    vec![
        vec![Ipv4Addr::new(192, 0, 2, 1)],
        (1..=8).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect(),
        vec![Ipv4Addr::new(203, 0, 113, 7), Ipv4Addr::new(203, 0, 113, 8)],
        (10..=14).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect(),
    ]
}

fn pool(set: &[Ipv4Addr]) -> PoolAnswer {
    PoolAnswer {
        name: Name::from_str("www.example.test.").unwrap(),
        rtype: RecordType::A,
        ttl: 30,
        rdata: set.iter().map(|a| RData::A(A(*a))).collect(),
        selection: hotpool::datapath::pools::Selection::All,
        region: hotpool::geo::RegionId::DEFAULT,
    }
}

#[test]
fn concurrent_rewrites_never_produce_a_torn_answer() {
    let sets = answer_sets();
    let valid: HashSet<Vec<Ipv4Addr>> = sets.iter().cloned().collect();
    let settings = hotpool_tests::datapath::settings(&["0.0.0.0"], 1232);
    let capacity = Capacity {
        pools: 1,
        slots: 2,
        answers: 2,
        buckets: 4,
    };
    let mut t = TestDatapath::with_capacity(&settings, &[pool(&sets[0])], &capacity);
    let mut query = Message::query();
    query.metadata.id = 99;
    query.add_query(Query::query(
        Name::from_ascii("www.example.test.").unwrap(),
        RecordType::A,
    ));
    let frame = frames::query(
        &Path::v4([10, 0, 0, 1], [10, 0, 0, 2]),
        &query.to_bytes().unwrap(),
    );

    let before = t.stats();
    let grace_before = t.dp.maps.grace_periods();
    let (prog, maps) = t.dp.split().unwrap();
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(4);
    let (publishes, results) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    let mut passed = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (action, out) = test_run(prog, &frame, None);
                        match action {
                            XDP_TX => {
                                let payload = frames::udp_payload(&out);
                                let m = Message::from_bytes(&payload)
                                    .expect("every XDP reply must decode");
                                assert_eq!(
                                    u16::from_be_bytes([payload[6], payload[7]]) as usize,
                                    m.answers.len(),
                                    "ANCOUNT matches the records"
                                );
                                let got = client::a_records(&m);
                                seen.push(got);
                            }
                            XDP_PASS => passed += 1,
                            other => panic!("unexpected action {other}"),
                        }
                    }
                    (seen, passed)
                })
            })
            .collect();
        let mut publishes = 0u64;
        let mut i = 0;
        while Instant::now() < deadline {
            i = (i + 1) % sets.len();
            maps.publish(&pool(&sets[i])).expect("publish");
            publishes += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        (publishes, results)
    });
    let grace_periods = t.dp.maps.grace_periods() - grace_before;

    let mut replies = 0usize;
    let mut distinct = HashSet::new();
    let mut passed = 0;
    for (seen, p) in results {
        passed += p;
        for set in seen {
            assert!(valid.contains(&set), "torn or foreign answer set {set:?}");
            replies += 1;
            distinct.insert(set);
        }
    }
    let after = t.stats();
    let hits: u64 = Outcome::ALL
        .iter()
        .filter(|o| o.answered())
        .map(|&o| after[o as usize].1 - before[o as usize].1)
        .sum();
    println!(
        "{publishes} publishes ({grace_periods} grace periods), {replies} XDP replies ({} \
         distinct sets), {passed} passed",
        distinct.len()
    );
    assert!(publishes > 20, "the writer must really race the readers");
    assert!(
        grace_periods >= publishes - 1,
        "every publish reused the entries of the one before"
    );
    assert!(replies > 1000, "the readers ran throughout");
    assert!(distinct.len() > 1, "readers saw the answer change");
    // A published answer stays readable until it is replaced: nothing is ever passed.
    assert_eq!(
        passed, 0,
        "every query is answered while the writer republishes"
    );
    assert_eq!(hits, replies as u64, "every reply was counted as a hit");
}
