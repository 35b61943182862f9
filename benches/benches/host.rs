//! Host-side hot paths: name folding and hashing, answer encoding, checksums, the daemon's
//! answer path for a pool name and a zone name, and a UDP worker's answer from its cache.

use std::{hint::black_box, str::FromStr, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use dns_common::{
    csum,
    name::{FoldedName, HashKey},
};
use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RData, RecordType, rdata::A},
    serialize::binary::BinEncodable,
};
use hotpool::{
    config::Config,
    datapath::{
        hot::encode_variant,
        pools::{PoolAnswer, PoolTable},
    },
    dns::{
        local::LocalAddrs,
        request::{Request, Transport},
        server::udp::{Answerer, Origin},
        stats::Counters,
    },
    steering::pool::PoolSettings,
};

fn pool() -> PoolAnswer {
    PoolAnswer {
        name: Name::from_str("www.example.test.").unwrap(),
        rtype: RecordType::A,
        ttl: 30,
        rdata: (1..=8)
            .map(|i| RData::A(A(format!("192.0.2.{i}").parse().unwrap())))
            .collect(),
        selection: hotpool::datapath::pools::Selection::All,
        region: hotpool::geo::RegionId::DEFAULT,
    }
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 42;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_bytes().unwrap()
}

fn benches(c: &mut Criterion) {
    let wire = b"\x03WwW\x07ExAmPlE\x04TeSt\x00";
    let key = HashKey { k0: 1, k1: 2 };
    c.bench_function("name/fold+hash", |b| {
        b.iter(|| FoldedName::new(black_box(wire)).map(|n| n.hash(&key)))
    });

    let p = pool();
    c.bench_function("encode_variant/8xA", |b| {
        b.iter(|| encode_variant(black_box(&p)))
    });

    let seg = [0x5au8; 562];
    c.bench_function("csum/udp 562 octets", |b| {
        b.iter(|| {
            csum::udp(
                csum::pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 562),
                black_box(&seg),
            )
        })
    });

    let cfg = Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hotpool.toml"
    )))
    .expect("example config");
    let pools = Arc::new(PoolTable::new(
        cfg.pools.iter().map(PoolSettings::initial_answer),
    ));
    let authority = Arc::new(cfg.authority(pools));
    let client = "192.0.2.99:53535".parse().unwrap();
    let pool_q = query("www.example.test.");
    let zone_q = query("ns1.example.test.");
    let nx_q = query("nope.example.test.");
    c.bench_function("authority/pool name", |b| {
        b.iter(|| authority.respond(black_box(&Request::new(&pool_q, client, Transport::Udp))))
    });
    c.bench_function("authority/zone name", |b| {
        b.iter(|| authority.respond(black_box(&Request::new(&zone_q, client, Transport::Udp))))
    });
    c.bench_function("authority/nxdomain", |b| {
        b.iter(|| authority.respond(black_box(&Request::new(&nx_q, client, Transport::Udp))))
    });

    // A UDP worker: acceptance rules, cache lookup, counters; the answer from its cache.
    let mut worker = Answerer::new(
        authority.clone(),
        4096,
        Arc::default(),
        Arc::new(Counters::new(Transport::Udp, false)),
        Arc::new(LocalAddrs::default()),
    );
    let origin = Origin {
        client,
        local: None,
        ifindex: None,
    };
    let mut out = vec![0u8; 4096];
    for (label, q) in [
        ("udp worker/pool name (cached)", &pool_q),
        ("udp worker/zone name (cached)", &zone_q),
        ("udp worker/nxdomain (cached)", &nx_q),
    ] {
        for _ in 0..3 {
            worker.answer(q, &origin, 0, &mut out);
        }
        c.bench_function(label, |b| {
            b.iter(|| {
                let now = worker.begin_batch(None);
                worker.answer(black_box(q), &origin, now, &mut out)
            })
        });
    }
}

criterion_group!(host, benches);
criterion_main!(host);
