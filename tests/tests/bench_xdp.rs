//! Kernel-side cost per packet, measured with BPF_PROG_TEST_RUN (`cargo xtask bench`).
//!
//! `repeat > 1` would rerun the program on its own rewritten frame (a hit turns the query
//! into a response, which the next run passes as NotQuery), so every sample is one run with
//! `repeat = 1` and the kernel-reported duration of that run.

use std::{str::FromStr, time::Duration};

use aya::programs::{TestRun, TestRunOptions};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType, rdata::A},
    serialize::binary::BinEncodable,
};
use hotpool::datapath::{hot::DatapathSettings, pools::PoolAnswer};
use hotpool_tests::{
    datapath::{TestDatapath, XDP_PASS, XDP_TX},
    frames::{self, Path},
};

const RUNS: usize = 200_000;

fn frame(name: &str, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 1;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if edns {
        m.set_edns(Edns::new());
    }
    frames::query(
        &Path::v4([10, 0, 0, 1], [10, 0, 0, 2]),
        &m.to_bytes().unwrap(),
    )
}

fn measure(t: &mut TestDatapath, frame: &[u8], want: u32) -> (Duration, Duration) {
    let (prog, _) = t.dp.split().unwrap();
    let mut out = vec![0u8; 4096];
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.return_value, want);
        samples.push(r.duration);
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / RUNS as u32;
    (mean, samples[RUNS / 2])
}

#[test]
#[ignore = "benchmark: run with `cargo xtask bench`"]
fn per_packet_cost() {
    let pools = vec![PoolAnswer {
        name: Name::from_str("www.example.test.").unwrap(),
        rtype: RecordType::A,
        ttl: 30,
        rdata: (1..=4)
            .map(|i| RData::A(A(format!("192.0.2.{i}").parse().unwrap())))
            .collect(),
        selection: hotpool::datapath::pools::Selection::All,
    }];
    let settings = DatapathSettings {
        port: 53,
        edns_udp_size: 1232,
        listen: vec!["0.0.0.0".parse().unwrap()],
    };
    let mut t = TestDatapath::new(&settings, &pools);
    println!("BPF_PROG_TEST_RUN, {RUNS} runs each (kernel-measured time per run):");
    for (label, frame, want) in [
        ("hit, A x4", frame("www.example.test.", false), XDP_TX),
        ("hit, A x4 + EDNS", frame("www.example.test.", true), XDP_TX),
        (
            "miss (passed)",
            frame("nope.example.test.", false),
            XDP_PASS,
        ),
    ] {
        let (mean, median) = measure(&mut t, &frame, want);
        println!(
            "  {label:<18} mean {:>6} ns  median {:>6} ns",
            mean.as_nanos(),
            median.as_nanos()
        );
    }
}
