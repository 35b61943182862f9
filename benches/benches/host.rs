//! Host-side hot paths: name folding and hashing, answer encoding, checksums and the daemon's answer
//! path for a pool name and a zone name.

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
    dns::request::{Request, Transport},
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
    let authority = cfg.authority(pools);
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
}

criterion_group!(host, benches);
criterion_main!(host);
