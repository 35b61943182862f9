//! A daemon that starts while the program answers from the pinned maps takes them over: it
//! reads the hash key, the name index and what is published back from them, so every pool
//! keeps its index and goes on being answered by the kernel through the takeover and the
//! first sync. The maps are sized once; pinned maps large enough are kept, smaller ones
//! replaced (with the maps they are linked to) through a staging directory.
//!
//! Each "instance" is a second `Datapath` loaded on the first one's pin directory, run
//! through `BPF_PROG_TEST_RUN` (no interface needed).

use std::{
    net::Ipv4Addr,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::{maps::MapInfo, programs::Xdp};
use dns_common::{MAP_CONFIG, MAP_HOT_CUR, MAP_HOT_INDEX, MAP_STATS};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType, rdata::A},
    serialize::binary::{BinDecodable, BinEncodable},
};
use hotpool::datapath::{
    DatapathError,
    ebpf::Datapath,
    hot::{Capacity, DatapathSettings},
    pools::{PoolAnswer, Selection, thresholds},
};
use hotpool_tests::{
    client,
    datapath::{TestDatapath, XDP_PASS, XDP_TX, test_run},
    frames::{self, Path},
};

fn settings() -> DatapathSettings {
    hotpool_tests::datapath::settings(&["10.0.0.2"], 1232)
}

fn name(label: &str) -> Name {
    Name::from_str(&format!("{label}.example.test.")).unwrap()
}

fn addr(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, host)
}

/// Pool `label` answering 192.0.2.`hosts`.
fn pool(label: &str, hosts: &[u8]) -> PoolAnswer {
    PoolAnswer {
        name: name(label),
        rtype: RecordType::A,
        ttl: 30,
        rdata: hosts.iter().map(|&h| RData::A(A(addr(h)))).collect(),
        selection: Selection::All,
        region: hotpool::geo::RegionId::DEFAULT,
    }
}

/// Pool `label` answering one of 192.0.2.`hosts` per query, in equal shares.
fn weighted(label: &str, hosts: &[u8]) -> PoolAnswer {
    let weights = vec![1; hosts.len()];
    PoolAnswer {
        selection: Selection::WeightedOne {
            thresholds: thresholds(&weights),
            weights,
        },
        ..pool(label, hosts)
    }
}

fn query(label: &str) -> Vec<u8> {
    let mut q = Message::query();
    q.metadata.id = 7;
    q.add_query(Query::query(name(label), RecordType::A));
    frames::query(
        &Path::v4([10, 0, 0, 1], [10, 0, 0, 2]),
        &q.to_bytes().unwrap(),
    )
}

/// What the program does with a query for `label`: the action and, for XDP_TX, the
/// addresses answered.
fn ask(prog: &Xdp, label: &str) -> (u32, Vec<Ipv4Addr>) {
    let (action, out) = test_run(prog, &query(label), None);
    if action != XDP_TX {
        return (action, Vec::new());
    }
    let m = Message::from_bytes(&frames::udp_payload(&out)).expect("every XDP reply decodes");
    let addrs = client::a_records(&m);
    (action, addrs)
}

fn answered(dp: &mut Datapath, label: &str) -> Vec<Ipv4Addr> {
    let (prog, _) = dp.split().unwrap();
    let (action, addrs) = ask(prog, label);
    assert_eq!(action, XDP_TX, "{label} answered by the kernel");
    addrs
}

fn passed(dp: &mut Datapath, label: &str) -> bool {
    let (prog, _) = dp.split().unwrap();
    ask(prog, label).0 == XDP_PASS
}

/// The pool index the kernel finds `label` at.
fn index_of(dp: &Datapath, label: &str) -> u32 {
    dp.maps.locate(&name(label)).expect("a valid name").2
}

fn load(t: &TestDatapath, capacity: &Capacity) -> Datapath {
    Datapath::load(t.dir(), capacity).unwrap_or_else(|e| panic!("loading XDP again: {e:?}"))
}

fn capacity_for(pools: usize) -> Capacity {
    Capacity::for_pools((0..pools).map(|_| dns_common::MAX_VARIANTS))
}

#[test]
fn a_second_instance_takes_over_every_answer_and_index() {
    let first = [
        pool("a", &[1]),
        pool("b", &[2, 3]),
        pool("c", &[4]),
        weighted("w", &[5, 6]),
    ];
    let mut t = TestDatapath::new(&settings(), &first);
    let capacity = capacity_for(first.len());
    let before: Vec<u32> = ["a", "b", "c", "w"]
        .iter()
        .map(|l| index_of(&t.dp, l))
        .collect();
    let key = t.dp.maps.locate(&name("a")).unwrap().0;

    // The next instance: the kernel answers from what the first one published, before the
    // new one has written anything.
    t.dp = load(&t, &capacity);
    assert_eq!(answered(&mut t.dp, "a"), [addr(1)]);
    assert_eq!(answered(&mut t.dp, "b"), [addr(2), addr(3)]);
    let w = answered(&mut t.dp, "w");
    assert!(w == [addr(5)] || w == [addr(6)], "{w:?}");
    assert_eq!(
        t.dp.maps.locate(&name("a")).unwrap().0,
        key,
        "the hash key is read back"
    );

    // Its first sync: a changed, b and w unchanged, c removed, d added.
    t.dp.maps.configure(&settings(), true).unwrap();
    t.dp.maps
        .sync(&[
            pool("a", &[7]),
            pool("b", &[2, 3]),
            weighted("w", &[5, 6]),
            pool("d", &[8]),
        ])
        .unwrap();
    for (label, was) in [("a", before[0]), ("b", before[1]), ("w", before[3])] {
        assert_eq!(index_of(&t.dp, label), was, "{label} keeps its index");
    }
    let d = index_of(&t.dp, "d");
    assert!(
        !before.contains(&d),
        "d gets an index no name pointed at, not {d} (the first instance's {before:?})"
    );
    assert_eq!(answered(&mut t.dp, "a"), [addr(7)]);
    assert_eq!(answered(&mut t.dp, "b"), [addr(2), addr(3)]);
    assert_eq!(answered(&mut t.dp, "d"), [addr(8)]);
    assert!(passed(&mut t.dp, "c"), "a removed pool goes to the daemon");
    let (set, answers) = t.dp.maps.published(&name("w")).expect("w published");
    assert_eq!((set.n_variants, answers.len()), (2, 2));

    // A pool removed before the restart and configured again after it gets a fresh index
    // too; the slots and answers of replaced sets are reused (after a grace period), so
    // syncing again and again does not run out of them.
    for round in 0..3 * capacity.slots {
        let host = 10 + (round % 100) as u8;
        t.dp.maps
            .sync(&[pool("a", &[host]), pool("b", &[2, 3]), pool("c", &[9])])
            .unwrap_or_else(|e| panic!("sync {round}: {e}"));
        assert_eq!(answered(&mut t.dp, "a"), [addr(host)]);
    }
    assert_eq!(answered(&mut t.dp, "c"), [addr(9)]);
    assert!(passed(&mut t.dp, "d"));
}

#[test]
fn the_kernel_answers_throughout_a_takeover_and_its_syncs() {
    let labels: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let old: Vec<PoolAnswer> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| pool(l, &[i as u8 + 1]))
        .collect();
    let mut t = TestDatapath::new(&settings(), &old);
    let capacity = capacity_for(old.len());
    t.dp = load(&t, &capacity);
    let key = t.dp.maps.locate(&name("p0")).unwrap().0;
    // The new answers, alternating with the old ones, with other pools added and removed.
    let new: Vec<PoolAnswer> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| pool(l, &[i as u8 + 101]))
        .collect();
    let extra = |round: usize| -> Vec<PoolAnswer> {
        (0..5)
            .map(|i| pool(&format!("x{round}-{i}"), &[200 + i as u8]))
            .collect()
    };

    let (prog, maps) = t.dp.split().unwrap();
    let stop = AtomicBool::new(false);
    let (syncs, checked, passes) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut checked, mut passes) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                for (i, l) in labels.iter().enumerate() {
                    let (action, addrs) = ask(prog, l);
                    if action == XDP_PASS {
                        passes += 1;
                        continue;
                    }
                    assert_eq!(action, XDP_TX, "{l}");
                    let (was, is) = (addr(i as u8 + 1), addr(i as u8 + 101));
                    assert!(
                        addrs == [was] || addrs == [is],
                        "{l} answered {addrs:?}, another pool's records"
                    );
                    checked += 1;
                }
            }
            (checked, passes)
        });
        maps.configure(&settings(), true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut syncs = 0usize;
        while Instant::now() < deadline || syncs < 4 {
            let base = if syncs.is_multiple_of(2) { &new } else { &old };
            let pools: Vec<PoolAnswer> = base.iter().cloned().chain(extra(syncs % 3)).collect();
            maps.sync(&pools).unwrap();
            syncs += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let (checked, passes) = reader.join().unwrap();
        (syncs, checked, passes)
    });
    let key_changed = t.dp.maps.locate(&name("p0")).unwrap().0 != key;
    println!(
        "{syncs} syncs, {checked} answers checked, {passes} passed, key changed: {key_changed}"
    );
    assert!(checked > 100, "the reader ran throughout");
    // Only a new hash key (a bucket that would overflow: rare) makes lookups miss while
    // the index is rewritten.
    assert!(
        passes == 0 || key_changed,
        "{passes} queries passed: the XDP path must answer throughout"
    );
}

#[test]
fn new_pools_take_the_indexes_of_removed_ones_when_nothing_else_is_free() {
    let capacity = Capacity {
        pools: 4,
        slots: 8,
        answers: 8,
        buckets: 16,
    };
    let four = |prefix: &str, host: u8| -> Vec<PoolAnswer> {
        (0..4)
            .map(|i| pool(&format!("{prefix}{i}"), &[host + i]))
            .collect()
    };
    let mut t = TestDatapath::with_capacity(&settings(), &four("p", 1), &capacity);
    // Four other pools, in this instance and then in the next one (whose first instance's
    // pools are orphans until its sync).
    for (prefix, host, old) in [("q", 11, "p"), ("r", 21, "q")] {
        t.dp.maps.sync(&four(prefix, host)).unwrap();
        for i in 0..4u8 {
            assert_eq!(
                answered(&mut t.dp, &format!("{prefix}{i}")),
                [addr(host + i)]
            );
            assert!(passed(&mut t.dp, &format!("{old}{i}")));
        }
        t.dp = load(&t, &capacity);
        t.dp.maps.configure(&settings(), true).unwrap();
    }
    let mut more = four("r", 21);
    more.push(pool("s", &[30]));
    match t.dp.maps.sync(&more) {
        Err(DatapathError::TooManyPools { count, capacity }) => {
            assert_eq!((count, capacity), (5, 4))
        }
        other => panic!("five pools in maps for four: {other:?}"),
    }
}

fn pin_id(t: &TestDatapath, map: &str) -> u32 {
    MapInfo::from_pin(t.dir().join(map)).unwrap().id()
}

fn pinned_entries(t: &TestDatapath, map: &str) -> u32 {
    MapInfo::from_pin(t.dir().join(map)).unwrap().max_entries()
}

#[test]
fn pinned_maps_are_kept_when_large_enough_and_replaced_together_when_not() {
    let pools = [pool("a", &[1]), pool("b", &[2])];
    let large = capacity_for(100);
    let mut t = TestDatapath::with_capacity(&settings(), &pools, &large);

    // A configuration that needs less keeps the larger pinned maps and their answers.
    t.dp = load(&t, &capacity_for(2));
    assert_eq!(t.dp.maps.capacity(), large);
    assert_eq!(answered(&mut t.dp, "a"), [addr(1)]);

    // One that needs more gets fresh maps, staged until they are committed: the pins (and
    // the running program's answers) stay as they are until then.
    let larger = capacity_for(300);
    assert!(!large.covers(&larger));
    let (config, stats) = (pin_id(&t, MAP_CONFIG), pin_id(&t, MAP_STATS));
    let mut grown = load(&t, &larger);
    assert_eq!(grown.maps.capacity(), larger);
    assert!(passed(&mut grown, "a"), "fresh maps: nothing published yet");
    assert_eq!(answered(&mut t.dp, "a"), [addr(1)]);
    assert_eq!(pinned_entries(&t, MAP_HOT_CUR), large.pools);
    grown.maps.configure(&settings(), true).unwrap();
    grown.maps.sync(&pools).unwrap();
    assert_eq!(answered(&mut grown, "a"), [addr(1)]);
    grown.commit_pins().unwrap();
    assert_eq!(pinned_entries(&t, MAP_HOT_CUR), larger.pools);
    assert_eq!(pinned_entries(&t, MAP_HOT_INDEX), larger.buckets);
    // The config map holds the index's key and size: replaced with it. The counters are
    // shared.
    assert_ne!(pin_id(&t, MAP_CONFIG), config);
    assert_eq!(pin_id(&t, MAP_STATS), stats);
    t.dp = grown;

    // The next instance takes the grown maps over.
    t.dp = load(&t, &capacity_for(2));
    assert_eq!(t.dp.maps.capacity(), larger);
    assert_eq!(answered(&mut t.dp, "b"), [addr(2)]);
}
