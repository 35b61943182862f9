//! Answers by region and EDNS Client Subnet (RFC 7871) through BPF_PROG_TEST_RUN: every
//! kernel reply is the daemon's answer to the same query from the same client, byte for
//! byte (UDP and TCP alike), carries the region's records and the expected ECS scope, and
//! moves the one counter named; every ECS case the kernel does not answer is passed with
//! its reason and answered by the daemon as RFC 7871 says. A region table swap is atomic:
//! readers racing a writer never see the new table with the old answers or the reverse.

use std::{
    net::SocketAddr,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use dns_common::Outcome;
use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, RecordType, rdata::opt::EdnsOption},
    serialize::binary::{BinDecodable, BinEncodable},
};
use hotpool::{
    config::Config,
    datapath::{
        hot::DatapathSettings,
        pools::{PoolAnswer, PoolTable},
    },
    dns::{
        authority::Authority,
        request::{Request, Transport},
    },
    geo::{RegionId, RegionTable, Regions},
};
use hotpool_tests::{
    datapath::{TestDatapath, XDP_PASS, XDP_TX, a_pool, single_outcome, test_run},
    frames::{self, Path},
};

const EDNS_SIZE: u16 = 1232;
const GEO: &str = "geo.example.test.";
const PLAIN: &str = "www.example.test.";
const EU: RegionId = RegionId(1);
const US: RegionId = RegionId(2);
const ASIA: RegionId = RegionId(3);

fn settings() -> DatapathSettings {
    hotpool_tests::datapath::settings(&["0.0.0.0", "::"], EDNS_SIZE)
}

/// eu: 10/8 and 2001:db8:e::/48; us: 198.51.100/24 and 10.1/16 inside eu's /8; asia:
/// 10.1.2/24 inside that (the geo pool has no answer of its own for asia: its default).
fn regions() -> Regions {
    let mut r = Regions::none();
    assert_eq!(r.add("eu"), Some(EU));
    assert_eq!(r.add("us"), Some(US));
    assert_eq!(r.add("asia"), Some(ASIA));
    for (net, id) in [
        ("10.0.0.0/8", EU),
        ("2001:db8:e::/48", EU),
        ("198.51.100.0/24", US),
        ("10.1.0.0/16", US),
        ("10.1.2.0/24", ASIA),
    ] {
        r.networks.push((net.parse().unwrap(), id));
    }
    r
}

fn pools() -> Vec<PoolAnswer> {
    vec![
        a_pool(GEO, 1, RegionId::DEFAULT),
        a_pool(GEO, 2, EU),
        a_pool(GEO, 3, US),
        a_pool(PLAIN, 10, RegionId::DEFAULT),
    ]
}

fn authority(pools: Vec<PoolAnswer>, table: Arc<RegionTable>) -> Authority {
    let dir = std::env::temp_dir().join(format!("hotpool-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("example.test.zone"),
        "$ORIGIN example.test.\n$TTL 3600\n\
         @ IN SOA ns1 hostmaster 1 3600 600 604800 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n",
    )
    .unwrap();
    let toml = format!(
        "[server]\nedns_udp_size = {EDNS_SIZE}\n[[zone]]\norigin = \"example.test.\"\n\
         file = \"example.test.zone\"\n"
    );
    let cfg = Config::parse(&toml, &dir.join("hotpool.toml")).unwrap_or_else(|e| panic!("{e}"));
    let authority = cfg.authority(Arc::new(PoolTable::new(pools)));
    authority.set_regions(table);
    let _ = std::fs::remove_dir_all(&dir);
    authority
}

/// The ECS option data (FAMILY, SOURCE, SCOPE, ADDRESS octets).
fn ecs(family: u16, source: u8, scope: u8, address: &[u8]) -> Vec<u8> {
    let mut d = family.to_be_bytes().to_vec();
    d.extend_from_slice(&[source, scope]);
    d.extend_from_slice(address);
    d
}

/// A query for `name` A with EDNS and these options (raw option data by code).
fn query(name: &str, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    for (code, data) in options {
        e.options_mut()
            .insert(EdnsOption::Unknown(*code, data.clone()));
    }
    m.set_edns(e);
    m.to_bytes().unwrap()
}

fn plain_query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0x4243;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_bytes().unwrap()
}

/// The A record's last octet and the echoed ECS option's scope (`None`: no option).
fn decode(reply: &[u8]) -> (ResponseCode, Option<u8>, Option<u8>) {
    let m = Message::from_bytes(reply).expect("the reply decodes");
    let host = m.answers.first().map(|r| match &r.data {
        RData::A(a) => a.0.octets()[3],
        other => panic!("unexpected record {other:?}"),
    });
    let scope = m.edns.as_ref().and_then(|e| {
        e.options()
            .get(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)
            .map(|o| match o {
                EdnsOption::Subnet(s) => s.scope_prefix(),
                other => panic!("unexpected option {other:?}"),
            })
    });
    (m.metadata.response_code, host, scope)
}

fn client(path: &Path) -> SocketAddr {
    SocketAddr::new(path.client, frames::CLIENT_PORT)
}

fn v4(client: [u8; 4]) -> Path {
    Path::v4(client, [10, 200, 0, 2])
}

fn v6(client: &str) -> Path {
    Path::v6(client, "fd00::2")
}

struct Case {
    name: &'static str,
    path: Path,
    dns: Vec<u8>,
    /// Outcome; for a kernel answer the A record's last octet and the ECS scope.
    outcome: Outcome,
    want: (ResponseCode, Option<u8>, Option<u8>),
}

fn case(
    name: &'static str,
    path: Path,
    dns: Vec<u8>,
    outcome: Outcome,
    want: (ResponseCode, Option<u8>, Option<u8>),
) -> Case {
    Case {
        name,
        path,
        dns,
        outcome,
        want,
    }
}

const OK: ResponseCode = ResponseCode::NoError;

fn cases(table: &RegionTable) -> Vec<Case> {
    let scope = |a: &str| table.lookup(a.parse().unwrap()).1;
    let eu = || v4([10, 9, 9, 9]);
    let geo_ecs = |d: Vec<u8>| query(GEO, &[(8, d)]);
    vec![
        // By source address, no ECS.
        case(
            "v4 eu source",
            eu(),
            plain_query(GEO),
            Outcome::Hit,
            (OK, Some(2), None),
        ),
        case(
            "v4 us source",
            v4([198, 51, 100, 7]),
            plain_query(GEO),
            Outcome::Hit,
            (OK, Some(3), None),
        ),
        case(
            "v4 us inside eu",
            v4([10, 1, 200, 1]),
            plain_query(GEO),
            Outcome::Hit,
            (OK, Some(3), None),
        ),
        case(
            "v4 asia: the default answer",
            v4([10, 1, 2, 3]),
            plain_query(GEO),
            Outcome::Hit,
            (OK, Some(1), None),
        ),
        case(
            "v4 unmatched: default",
            v4([192, 0, 2, 77]),
            plain_query(GEO),
            Outcome::Hit,
            (OK, Some(1), None),
        ),
        case(
            "v6 eu source",
            v6("2001:db8:e::1"),
            plain_query(GEO),
            Outcome::Hit,
            (OK, Some(2), None),
        ),
        case(
            "v6 unmatched: default",
            v6("fd00::1"),
            plain_query(GEO),
            Outcome::Hit,
            (OK, Some(1), None),
        ),
        case(
            "EDNS without ECS",
            eu(),
            query(GEO, &[]),
            Outcome::Hit,
            (OK, Some(2), None),
        ),
        case(
            "non-geo pool",
            eu(),
            plain_query(PLAIN),
            Outcome::Hit,
            (OK, Some(10), None),
        ),
        // ECS decides, scope = the matched prefix.
        case(
            "ECS v4 /24 us",
            eu(),
            geo_ecs(ecs(1, 24, 0, &[198, 51, 100])),
            Outcome::EcsHit,
            (OK, Some(3), Some(24)),
        ),
        case(
            "ECS v4 /16 us",
            eu(),
            geo_ecs(ecs(1, 16, 0, &[10, 1])),
            Outcome::EcsHit,
            (OK, Some(3), Some(scope("10.1.0.0"))),
        ),
        case(
            "ECS v4 /24 asia",
            eu(),
            geo_ecs(ecs(1, 24, 0, &[10, 1, 2])),
            Outcome::EcsHit,
            (OK, Some(1), Some(24)),
        ),
        case(
            "ECS v4 /8 eu",
            v4([198, 51, 100, 7]),
            geo_ecs(ecs(1, 8, 0, &[10])),
            Outcome::EcsHit,
            (OK, Some(2), Some(scope("10.0.0.0"))),
        ),
        case(
            "ECS v4 /20 default",
            eu(),
            geo_ecs(ecs(1, 20, 0, &[203, 0, 112])),
            Outcome::EcsHit,
            (OK, Some(1), Some(scope("203.0.112.0"))),
        ),
        case(
            "ECS v4 /1",
            eu(),
            geo_ecs(ecs(1, 1, 0, &[0x80])),
            Outcome::EcsHit,
            (OK, Some(1), Some(scope("128.0.0.0"))),
        ),
        case(
            "ECS v6 /48 eu",
            eu(),
            geo_ecs(ecs(2, 48, 0, &[0x20, 1, 0xd, 0xb8, 0, 0xe])),
            Outcome::EcsHit,
            (OK, Some(2), Some(48)),
        ),
        case(
            "ECS v6 /56 eu",
            v4([192, 0, 2, 1]),
            geo_ecs(ecs(2, 56, 0, &[0x20, 1, 0xd, 0xb8, 0, 0xe, 0x12])),
            Outcome::EcsHit,
            (OK, Some(2), Some(48)),
        ),
        case(
            "ECS v6 /32 default",
            eu(),
            geo_ecs(ecs(2, 32, 0, &[0x20, 1, 0xd, 0xb8])),
            Outcome::EcsHit,
            (OK, Some(1), Some(scope("2001:db8::"))),
        ),
        case(
            "ECS v4 over IPv6",
            v6("2001:db8:e::1"),
            geo_ecs(ecs(1, 24, 0, &[198, 51, 100])),
            Outcome::EcsHit,
            (OK, Some(3), Some(24)),
        ),
        case(
            "ECS on a non-geo pool: scope 0",
            eu(),
            query(PLAIN, &[(8, ecs(1, 24, 0, &[198, 51, 100]))]),
            Outcome::EcsHit,
            (OK, Some(10), Some(0)),
        ),
        // Passed, answered by the daemon.
        case(
            "ECS SOURCE 0: by source, scope 0",
            eu(),
            geo_ecs(ecs(1, 0, 0, &[])),
            Outcome::EcsSourceZero,
            (OK, Some(2), Some(0)),
        ),
        case(
            "ECS v6 SOURCE 0",
            eu(),
            geo_ecs(ecs(2, 0, 0, &[])),
            Outcome::EcsSourceZero,
            (OK, Some(2), Some(0)),
        ),
        case(
            "ECS v4 /32",
            eu(),
            geo_ecs(ecs(1, 32, 0, &[198, 51, 100, 9])),
            Outcome::EcsLong,
            (OK, Some(3), Some(24)),
        ),
        case(
            "ECS v6 /64",
            eu(),
            geo_ecs(ecs(2, 64, 0, &[0x20, 1, 0xd, 0xb8, 0, 0xe, 0, 1])),
            Outcome::EcsLong,
            (OK, Some(2), Some(48)),
        ),
        case(
            "ECS with a SCOPE",
            eu(),
            geo_ecs(ecs(1, 24, 16, &[198, 51, 100])),
            Outcome::EcsScope,
            (OK, Some(3), Some(24)),
        ),
        case(
            "ECS and a cookie",
            eu(),
            query(
                GEO,
                &[
                    (10, vec![1, 2, 3, 4, 5, 6, 7, 8]),
                    (8, ecs(1, 24, 0, &[198, 51, 100])),
                ],
            ),
            Outcome::EcsOptions,
            (OK, Some(3), Some(24)),
        ),
        case(
            "two ECS options",
            eu(),
            query(
                GEO,
                &[
                    (8, ecs(1, 24, 0, &[198, 51, 100])),
                    (8, ecs(1, 24, 0, &[10, 1, 2])),
                ],
            ),
            Outcome::EcsOptions,
            (ResponseCode::FormErr, None, None),
        ),
        case(
            "ECS bits beyond SOURCE",
            eu(),
            geo_ecs(ecs(1, 22, 0, &[198, 51, 101])),
            Outcome::EcsInvalid,
            (ResponseCode::FormErr, None, None),
        ),
        case(
            "ECS address too long",
            eu(),
            geo_ecs(ecs(1, 16, 0, &[198, 51, 0])),
            Outcome::EcsInvalid,
            (ResponseCode::FormErr, None, None),
        ),
        case(
            "ECS SOURCE past the family",
            eu(),
            geo_ecs(ecs(1, 33, 0, &[198, 51, 100, 1, 0])),
            Outcome::EcsInvalid,
            (ResponseCode::FormErr, None, None),
        ),
    ]
}

#[test]
fn answers_by_region_and_client_subnet_equal_the_daemons() {
    let table = Arc::new(RegionTable::new(&regions()));
    let authority = authority(pools(), table.clone());
    let mut t = TestDatapath::new(&settings(), &pools());
    t.dp.maps
        .set_regions(&table, &pools())
        .expect("loading the region table");
    let mut failures = Vec::new();
    for c in cases(&table) {
        let frame = frames::query(&c.path, &c.dns);
        let before = t.stats();
        let (action, out) = t.run(&frame);
        let outcome = single_outcome(&before, &t.stats());
        let request = |transport| Request::new(&c.dns, client(&c.path), transport);
        let daemon = authority
            .respond(&request(Transport::Udp))
            .unwrap_or_else(|| panic!("{}: the daemon does not answer", c.name));
        let tcp = authority.respond(&request(Transport::Tcp)).unwrap();
        if tcp != daemon {
            failures.push(format!(
                "{}: the daemon answers TCP and UDP differently",
                c.name
            ));
        }
        let got = decode(&daemon);
        if got != c.want {
            failures.push(format!(
                "{}: the daemon answers {got:?}, want {:?}",
                c.name, c.want
            ));
        }
        if outcome != c.outcome {
            failures.push(format!(
                "{}: outcome {outcome:?}, want {:?}",
                c.name, c.outcome
            ));
            continue;
        }
        if c.outcome.answered() {
            if action != XDP_TX {
                failures.push(format!("{}: action {action}", c.name));
            } else if frames::udp_payload(&out) != daemon {
                failures.push(format!(
                    "{}: XDP and the daemon differ\n   xdp: {:?}\ndaemon: {:?}",
                    c.name,
                    Message::from_bytes(&frames::udp_payload(&out)),
                    Message::from_bytes(&daemon)
                ));
            } else if out != frames::response(&c.path, &daemon) {
                failures.push(format!("{}: the reply frame differs", c.name));
            }
        } else if action != XDP_PASS || out != frame {
            failures.push(format!(
                "{}: not passed unchanged (action {action})",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn region_answers_follow_publishes_and_leave_with_their_region() {
    let table = Arc::new(RegionTable::new(&regions()));
    let mut t = TestDatapath::new(&settings(), &pools());
    t.dp.maps.set_regions(&table, &pools()).expect("loading");
    let ask = |t: &mut TestDatapath, from: [u8; 4]| {
        let (action, out) = t.run(&frames::query(&v4(from), &plain_query(GEO)));
        assert_eq!(action, XDP_TX);
        decode(&frames::udp_payload(&out)).1
    };
    assert_eq!(ask(&mut t, [198, 51, 100, 1]), Some(3));
    // Steering republishes one region's answer.
    t.dp.maps.publish(&a_pool(GEO, 33, US)).expect("publish");
    assert_eq!(ask(&mut t, [198, 51, 100, 1]), Some(33));
    assert_eq!(ask(&mut t, [10, 0, 0, 1]), Some(2));
    // A new region answer for asia, for a client whose answer (the default) the kernel has
    // cached.
    assert_eq!(ask(&mut t, [10, 1, 2, 3]), Some(1));
    t.dp.maps.publish(&a_pool(GEO, 44, ASIA)).expect("publish");
    assert_eq!(ask(&mut t, [10, 1, 2, 3]), Some(44));
    // A sync without us's answer: its cached clients get the default answer.
    let without_us = vec![
        a_pool(GEO, 1, RegionId::DEFAULT),
        a_pool(GEO, 2, EU),
        a_pool(GEO, 44, ASIA),
        a_pool(PLAIN, 10, RegionId::DEFAULT),
    ];
    t.dp.maps.sync(&without_us).expect("sync");
    assert_eq!(ask(&mut t, [198, 51, 100, 1]), Some(1));
    assert_eq!(ask(&mut t, [10, 1, 2, 3]), Some(44));
    t.dp.maps.publish(&a_pool(GEO, 3, US)).expect("publish");
    assert_eq!(ask(&mut t, [198, 51, 100, 1]), Some(3));
    // A sync without the region answers: the pool answers everyone alike.
    let plain = vec![
        a_pool(GEO, 1, RegionId::DEFAULT),
        a_pool(PLAIN, 10, RegionId::DEFAULT),
    ];
    t.dp.maps.sync(&plain).expect("sync");
    assert_eq!(ask(&mut t, [198, 51, 100, 1]), Some(1));
    assert_eq!(ask(&mut t, [10, 1, 2, 3]), Some(1));
    assert!(
        t.dp.maps
            .published_in(&Name::from_str(GEO).unwrap(), US)
            .is_none()
    );
}

/// Two tables that give region id 1 different networks and answers: a reply mixing one
/// table's scope with the other's answer shows as a pair neither table gives.
#[test]
fn a_region_table_swap_is_atomic() {
    let table = |net: &str, name: &str| {
        let mut r = Regions::none();
        let id = r.add(name).unwrap();
        r.networks.push((net.parse().unwrap(), id));
        Arc::new(RegionTable::new(&r))
    };
    let a = table("10.0.0.0/16", "eu");
    let b = table("10.0.0.0/12", "us");
    let answers = |host: u8| {
        vec![
            a_pool(GEO, 1, RegionId::DEFAULT),
            a_pool(GEO, host, RegionId(1)),
        ]
    };
    let valid = [(Some(2), Some(16)), (Some(3), Some(12))];
    let mut t = TestDatapath::new(&settings(), &answers(2));
    t.dp.maps.set_regions(&a, &answers(2)).expect("loading");
    let frame = frames::query(
        &v4([192, 0, 2, 1]),
        &query(GEO, &[(8, ecs(1, 24, 0, &[10, 0, 0]))]),
    );
    let (prog, maps) = t.dp.split().unwrap();
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(2);
    let (swaps, seen) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (action, out) = test_run(prog, &frame, None);
                assert_eq!(action, XDP_TX, "every query is answered during swaps");
                let (rcode, host, scope) = decode(&frames::udp_payload(&out));
                assert_eq!(rcode, OK);
                assert!(
                    valid.contains(&(host, scope)),
                    "mixed reply: {host:?} scope {scope:?}"
                );
                seen += 1;
            }
            seen
        });
        let mut swaps = 0u64;
        while Instant::now() < deadline || swaps < 4 {
            let (t, host) = if swaps.is_multiple_of(2) {
                (&b, 3)
            } else {
                (&a, 2)
            };
            maps.set_regions(t, &answers(host)).expect("swap");
            swaps += 1;
        }
        stop.store(true, Ordering::Relaxed);
        (swaps, reader.join().unwrap())
    });
    assert!(swaps >= 4 && seen > 0, "{swaps} swaps, {seen} replies");
}

/// The kernel keeps each client address's region in a per-CPU cache: after a swap a cached
/// address gets the new table's region and scope, also two swaps later, when the new table
/// is in the same trie as the one the address was cached from.
#[test]
fn a_region_table_swap_replaces_cached_regions() {
    let table = |net: &str, region: &str| {
        let mut r = Regions::none();
        let one = r.add("one").unwrap();
        let two = r.add("two").unwrap();
        let id = if region == "one" { one } else { two };
        r.networks.push((net.parse().unwrap(), id));
        Arc::new(RegionTable::new(&r))
    };
    let answers = vec![
        a_pool(GEO, 1, RegionId::DEFAULT),
        a_pool(GEO, 2, RegionId(1)),
        a_pool(GEO, 3, RegionId(2)),
    ];
    let mut t = TestDatapath::new(&settings(), &answers);
    let by_source = frames::query(&v4([10, 0, 0, 1]), &plain_query(GEO));
    let by_subnet = frames::query(
        &v4([192, 0, 2, 1]),
        &query(GEO, &[(8, ecs(1, 24, 0, &[10, 0, 0]))]),
    );
    // Asked after every other table only: cached two swaps before, in the same trie.
    let by_source_2 = frames::query(&v4([10, 0, 0, 9]), &plain_query(GEO));
    let by_subnet_2 = frames::query(
        &v4([192, 0, 2, 1]),
        &query(GEO, &[(8, ecs(1, 24, 0, &[10, 0, 1]))]),
    );
    let ask = |t: &mut TestDatapath, frame: &[u8]| {
        let (action, out) = t.run(frame);
        assert_eq!(action, XDP_TX, "a geo hit");
        let (rcode, host, scope) = decode(&frames::udp_payload(&out));
        assert_eq!(rcode, OK);
        (host, scope)
    };
    for (i, (net, region, host, scope)) in [
        ("10.0.0.0/16", "one", 2, 16),
        ("10.0.0.0/16", "two", 3, 16),
        ("10.0.0.0/12", "one", 2, 12),
        ("10.0.0.0/8", "two", 3, 8),
        ("192.0.2.0/24", "one", 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        t.dp.maps
            .set_regions(&table(net, region), &answers)
            .expect("swap");
        let mut clients = vec![(&by_source, &by_subnet)];
        if i % 2 == 0 {
            clients.push((&by_source_2, &by_subnet_2));
        }
        // Twice: the first may fill the cache, the second is answered from it.
        for round in 0..2 {
            for (source, subnet) in &clients {
                assert_eq!(
                    ask(&mut t, source).0,
                    Some(host),
                    "table {i} ({net} {region}), round {round}: by source"
                );
                assert_eq!(
                    ask(&mut t, subnet),
                    (Some(host), Some(scope)),
                    "table {i} ({net} {region}), round {round}: by subnet"
                );
            }
        }
    }
}
