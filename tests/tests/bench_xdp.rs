//! Kernel-side cost per packet, measured with BPF_PROG_TEST_RUN (`cargo xtask bench`).
//!
//! Frames the program passes unchanged run with `repeat = 1 000 000`: the kernel reports the
//! mean time per run of its own loop, which is as close to the program's cost as test runs
//! get. A hit rewrites its frame into a reply, so a repeated run would see a response; hits
//! run one at a time instead, and the kernel's time for a single run includes its timer
//! reads (tens of nanoseconds). For hits under real traffic see README (kxdpgun and
//! `kernel.bpf_stats_enabled`).

use std::{str::FromStr, time::Duration};

use aya::programs::{TestRun, TestRunOptions};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, RecordType, rdata::A, rdata::AAAA, rdata::CNAME},
    serialize::binary::BinEncodable,
};
use hotpool::{hot::DatapathSettings, pools::PoolAnswer};
use hotpool_tests::{
    datapath::{TestDatapath, XDP_PASS, XDP_TX},
    frames::{self, Path},
};

/// Repeats of a passed frame per round, rounds per frame, and single runs per hit.
const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 5;
const HIT_RUNS: usize = 200_000;

fn v4() -> Path {
    Path::v4([10, 0, 0, 1], [10, 0, 0, 2])
}

fn query(path: &Path, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 1;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        m.set_edns(Edns::new());
    }
    frames::query(path, &m.to_bytes().unwrap())
}

fn pools() -> Vec<PoolAnswer> {
    let pool = |name: &str, rtype, rdata| PoolAnswer {
        name: Name::from_str(name).unwrap(),
        rtype,
        ttl: 30,
        rdata,
        selection: hotpool::pools::Selection::All,
    };
    vec![
        pool(
            "www.example.test.",
            RecordType::A,
            (1..=4)
                .map(|i| RData::A(A(format!("192.0.2.{i}").parse().unwrap())))
                .collect(),
        ),
        pool(
            "v6.example.test.",
            RecordType::AAAA,
            vec![
                RData::AAAA(AAAA("2001:db8::10".parse().unwrap())),
                RData::AAAA(AAAA("2001:db8::11".parse().unwrap())),
            ],
        ),
        pool(
            "cdn.example.test.",
            RecordType::CNAME,
            vec![RData::CNAME(CNAME(
                Name::from_str("edge.cdn-provider.example.net.").unwrap(),
            ))],
        ),
    ]
}

/// Mean time per run of `REPEAT` runs, best and median of `ROUNDS` rounds.
fn repeated(t: &mut TestDatapath, frame: &[u8]) -> (Duration, Duration) {
    let (prog, _) = t.dp.split().unwrap();
    let mut out = vec![0u8; 4096];
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let r = prog
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    repeat: REPEAT,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(r.return_value, XDP_PASS);
            r.duration
        })
        .collect();
    rounds.sort();
    (rounds[0], rounds[ROUNDS / 2])
}

/// Kernel-measured time of single runs: median and 10th percentile.
fn single(t: &mut TestDatapath, frame: &[u8], action: u32) -> (Duration, Duration) {
    let (prog, _) = t.dp.split().unwrap();
    let mut out = vec![0u8; 4096];
    let mut samples: Vec<Duration> = (0..HIT_RUNS)
        .map(|_| {
            let r = prog
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(r.return_value, action);
            r.duration
        })
        .collect();
    samples.sort();
    (samples[HIT_RUNS / 2], samples[HIT_RUNS / 10])
}

#[test]
#[ignore = "benchmark: run with `cargo xtask bench`"]
fn per_packet_cost() {
    let settings = DatapathSettings {
        port: 53,
        edns_udp_size: 1232,
        listen: vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        prefer_headroom: false,
    };
    let mut t = TestDatapath::new(&settings, &pools());
    let info = t.dp.xdp().unwrap().info().unwrap();
    println!(
        "program: {} instructions, {} octets JITed, {} instructions processed by the verifier",
        info.size_translated().unwrap_or(0) / 8,
        info.size_jitted(),
        info.verified_instruction_count().unwrap_or(0)
    );

    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&frames::CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let arp_frame = arp.clone();
    let mut response = query(&v4(), "www.example.test.", RecordType::A, false);
    // Ethernet, IPv4, UDP, then the DNS flags: QR.
    response[14 + 20 + 8 + 2] |= 0x80;
    let mut other_port = v4();
    other_port.dport = 5353;

    println!("BPF_PROG_TEST_RUN, passed frames: {ROUNDS} rounds of {REPEAT} runs, mean per run");
    for (label, frame) in [
        ("not IP (ARP)", arp),
        ("response (QR=1)", response),
        (
            "UDP to another port",
            query(&other_port, "www.example.test.", RecordType::A, false),
        ),
        (
            "miss (zone name, A)",
            query(&v4(), "nope.example.test.", RecordType::A, false),
        ),
    ] {
        let (best, median) = repeated(&mut t, &frame);
        println!(
            "  {label:<28} best {:>5} ns  median {:>5} ns",
            best.as_nanos(),
            median.as_nanos()
        );
    }

    // What checking the destination address costs: a wildcard, addresses compared inline,
    // and more addresses than fit inline (a hash-map lookup).
    println!("  the same miss with other listen settings:");
    let miss = query(&v4(), "nope.example.test.", RecordType::A, false);
    for (label, listen) in [
        ("any address (0.0.0.0, ::)", vec!["0.0.0.0", "::"]),
        (
            "4 IPv4 inline, ours last",
            vec!["10.0.0.5", "10.0.0.4", "10.0.0.3", "10.0.0.2"],
        ),
        (
            "5 IPv4 (LISTEN_ADDRS map)",
            vec!["10.0.0.6", "10.0.0.5", "10.0.0.4", "10.0.0.3", "10.0.0.2"],
        ),
    ] {
        let settings = DatapathSettings {
            listen: listen.iter().map(|a| a.parse().unwrap()).collect(),
            ..settings.clone()
        };
        let mut t = TestDatapath::new(&settings, &pools());
        let (best, median) = repeated(&mut t, &miss);
        println!(
            "    {label:<26} best {:>5} ns  median {:>5} ns",
            best.as_nanos(),
            median.as_nanos()
        );
    }

    println!("BPF_PROG_TEST_RUN, hits: {HIT_RUNS} single runs (timer reads included)");
    let (arp_median, _) = single(&mut t, &arp_frame, XDP_PASS);
    println!(
        "  {:<28} median {:>5} ns  (the overhead of a single run, roughly)",
        "not IP (ARP), single runs",
        arp_median.as_nanos()
    );
    let v6 = Path::v6("fd00::1", "fd00::2");
    for (label, frame) in [
        (
            "hit A x4",
            query(&v4(), "www.example.test.", RecordType::A, false),
        ),
        (
            "hit AAAA x2 (IPv6)",
            query(&v6, "v6.example.test.", RecordType::AAAA, false),
        ),
        (
            "hit A x4 + EDNS",
            query(&v4(), "www.example.test.", RecordType::A, true),
        ),
        (
            "hit CNAME (qtype A)",
            query(&v4(), "cdn.example.test.", RecordType::A, false),
        ),
    ] {
        let (median, p10) = single(&mut t, &frame, XDP_TX);
        println!(
            "  {label:<28} median {:>5} ns  p10 {:>5} ns",
            median.as_nanos(),
            p10.as_nanos()
        );
    }
}
