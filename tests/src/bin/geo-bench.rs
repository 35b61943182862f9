//! `geo-bench`: what regions cost (as root, release build).
//!
//! ```text
//! geo-bench [--prefixes N] [--runs N]
//! ```
//!
//! * Loading: N random client networks (default 1M: 70 % IPv4 /12–/24, 30 % IPv6 /24–/48,
//!   nested and overlapping at random, in 8 regions) flattened into a region table (time,
//!   the daemon's resident memory before and after), then loaded into the kernel's region
//!   trie with a table swap (time, the trie's `memlock` from fdinfo).
//! * Per query: `BPF_PROG_TEST_RUN` of one frame at a time (a hit rewrites its frame, so the
//!   kernel's repeat mode cannot be used), the kernel's own `duration` averaged over `--runs`
//!   runs per case, in rounds that alternate the cases: a plain pool's hit, a geo pool's
//!   hit by source address, by an ECS subnet, and a plain pool's hit with a plain OPT
//!   record and with ECS; then the two geo cases again with a new client each run (4096 in
//!   turn), which the kernel's region cache does not hold: the region trie's cost. Each
//!   figure includes the test-run harness's own overhead, the same for every case: compare
//!   them.

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RecordType, rdata::opt::EdnsOption},
    serialize::binary::BinEncodable,
};
use hotpool::{
    datapath::{hot::Capacity, pools::PoolAnswer},
    geo::{RegionId, RegionTable, Regions},
};
use hotpool_tests::{
    datapath::{TestDatapath, XDP_TX},
    frames::{self, Path},
};

const USAGE: &str = "usage: geo-bench [--prefixes N] [--runs N]";

fn main() {
    let (mut prefixes, mut runs) = (1_000_000usize, 200_000usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse().ok());
        match (arg.as_str(), value) {
            ("--prefixes", Some(n)) => prefixes = n,
            ("--runs", Some(n)) => runs = n,
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let regions = random_regions(prefixes, 0x5eed);
    let rss = resident_kib();
    let started = Instant::now();
    let table = Arc::new(RegionTable::new(&regions));
    let flatten = started.elapsed();
    println!(
        "flattened {} configured networks into {} prefixes ({} IPv4, {} IPv6) in {:.2} s; \
         resident memory +{} MiB",
        regions.networks.len(),
        table.len(),
        table.v4().len(),
        table.v6().len(),
        flatten.as_secs_f64(),
        resident_kib().saturating_sub(rss) / 1024
    );
    let started = Instant::now();
    let mut hits = 0u64;
    for i in 0..1_000_000u32 {
        let (r, _) = table.lookup(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)).into());
        hits += u64::from(r.0);
    }
    println!(
        "daemon lookup: {:.0} ns per address ({hits})",
        started.elapsed().as_nanos() as f64 / 1e6
    );

    let settings = hotpool_tests::datapath::settings(&["0.0.0.0"], 1232);
    let answers = pools(regions.len());
    let capacity = Capacity::for_pools(answers.iter().map(|_| 1)).with_regions(1);
    let mut t = TestDatapath::with_capacity(&settings, &answers, &capacity);
    let started = Instant::now();
    t.dp.maps
        .set_regions(&table, &answers)
        .expect("loading the region table");
    println!(
        "loaded into the kernel trie in {:.2} s; trie memlock {} MiB",
        started.elapsed().as_secs_f64(),
        largest_lpm_memlock() / (1024 * 1024)
    );

    let path = Path::v4([10, 0, 0, 1], [10, 0, 0, 2]);
    let ecs24 = |a: [u8; 3]| [0, 1, 24, 0, a[0], a[1], a[2]];
    // Clients the kernel's region cache cannot hold: each run looks a new address up in the
    // trie (the cycle is longer than the cache, and each slot sees several addresses).
    let many = |i: u32| (i.wrapping_mul(2_654_435_761) >> 8).to_be_bytes();
    let many_sources: Vec<Vec<u8>> = (0..MANY_CLIENTS)
        .map(|i| {
            let a = many(i);
            let from = Path::v4([44 + (a[1] & 3), a[2], a[3], 1], [10, 0, 0, 2]);
            frame(&from, "geo.example.test.", None)
        })
        .collect();
    let many_subnets: Vec<Vec<u8>> = (0..MANY_CLIENTS)
        .map(|i| {
            let a = many(i);
            frame(&path, "geo.example.test.", Some(&ecs24([a[1], a[2], a[3]])))
        })
        .collect();
    let cases = [
        (
            "plain pool hit",
            vec![frame(&path, "www.example.test.", None)],
        ),
        (
            "geo pool hit, by source",
            vec![frame(&path, "geo.example.test.", None)],
        ),
        (
            "geo pool hit, ECS /24",
            vec![frame(
                &path,
                "geo.example.test.",
                Some(&ecs24([198, 51, 100])),
            )],
        ),
        (
            "plain pool hit, plain OPT",
            vec![frame(&path, "www.example.test.", Some(&[]))],
        ),
        (
            "plain pool hit, ECS /24",
            vec![frame(
                &path,
                "www.example.test.",
                Some(&ecs24([198, 51, 100])),
            )],
        ),
        (
            "geo pool hit, by source, a new client each run",
            many_sources,
        ),
        ("geo pool hit, ECS /24, a new subnet each run", many_subnets),
    ];
    let mut totals = vec![Duration::ZERO; cases.len()];
    let rounds = 10;
    for _ in 0..rounds {
        for (i, (name, frames)) in cases.iter().enumerate() {
            for j in 0..runs / rounds {
                let (action, took) = t.timed_run(&frames[j % frames.len()]);
                assert_eq!(action, XDP_TX, "{name}: not a hit");
                totals[i] += took;
            }
        }
    }
    for (i, (name, _)) in cases.iter().enumerate() {
        println!(
            "{name}: {:.1} ns per run (kernel test-run duration, {} runs)",
            totals[i].as_nanos() as f64 / (runs / rounds * rounds) as f64,
            runs / rounds * rounds
        );
    }
}

/// Distinct clients of the cases that defeat the kernel's region cache.
const MANY_CLIENTS: u32 = 4096;

/// `n` random networks in 8 regions.
fn random_regions(n: usize, mut seed: u64) -> Regions {
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut r = Regions::none();
    let ids: Vec<RegionId> = (0..8).map(|i| r.add(&format!("r{i}")).unwrap()).collect();
    for i in 0..n {
        let region = ids[(next() % 8) as usize];
        let net = if i % 10 < 7 {
            let len = 12 + (next() % 13) as u8;
            ipnet::IpNet::from(ipnet::Ipv4Net::new(Ipv4Addr::from(next() as u32), len).unwrap())
        } else {
            let len = 24 + (next() % 25) as u8;
            let addr = std::net::Ipv6Addr::from(u128::from(next()) << 64 | 0x2000 << 112);
            ipnet::IpNet::from(ipnet::Ipv6Net::new(addr, len).unwrap())
        };
        r.networks.push((net.trunc(), region));
    }
    r
}

fn pools(regions: usize) -> Vec<PoolAnswer> {
    let a = hotpool_tests::datapath::a_pool;
    let mut p = vec![
        a("www.example.test.", 1, RegionId::DEFAULT),
        a("geo.example.test.", 2, RegionId::DEFAULT),
    ];
    for r in 1..regions.min(8) {
        p.push(a("geo.example.test.", 10 + r as u8, RegionId(r as u16)));
    }
    p
}

/// A query frame for `name`; with `ecs`, an OPT record holding an ECS option of that data,
/// or no option when it is empty.
fn frame(path: &Path, name: &str, ecs: Option<&[u8]>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 7;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if let Some(data) = ecs {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        if !data.is_empty() {
            e.options_mut()
                .insert(EdnsOption::Unknown(8, data.to_vec()));
        }
        m.set_edns(e);
    }
    frames::query(path, &m.to_bytes().unwrap())
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The largest `memlock` of this process's LPM trie maps (map type 11), from fdinfo.
fn largest_lpm_memlock() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l == "map_type:\t11"))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:\t")?.trim().parse().ok())
        })
        .max()
        .unwrap_or(0)
}
