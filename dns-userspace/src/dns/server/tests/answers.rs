//! The UDP workers' answers: through the answer cache exactly what the full path answers,
//! invalidated when a pool changes, never for weighted pools, bounded under a flood of
//! new names; counted by RCODE, type, transport and pool.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_proto::rr::rdata::{AAAA, CNAME};

use super::*;
use crate::{
    datapath::pools::Selection,
    dns::{
        cache::Plain,
        local::LocalAddrs,
        request::{Request, Transport},
        server::udp::{Answerer, Origin},
        stats::{Counters, ServerStats},
    },
};

const RICH_ZONE: &str = r#"$ORIGIN example.test.
$TTL 300
@        SOA   ns1 hostmaster 1 7200 3600 1209600 60
@        NS    ns1
@        MX    10 mail
@        MX    20 mx2
ns1      A     192.0.2.53
mail     A     192.0.2.25
mail     AAAA  2001:db8::25
mx2      A     192.0.2.26
alias    CNAME mail
chain    CNAME alias
topool   CNAME www
*.wild   A     192.0.2.99
sub      NS    ns.sub
ns.sub   A     192.0.2.54
"#;

/// A zone and pools covering every kind of answer: pools of each type (one weighted), zone
/// data, CNAME chains into the zone and into a pool, wildcards, a delegation with glue,
/// additional records, NODATA, NXDOMAIN, and an RRset of about 2000 octets.
fn rich_authority() -> (Arc<Authority>, Arc<PoolTable>) {
    let mut text = RICH_ZONE.to_string();
    for i in 0..20 {
        text.push_str(&format!("big TXT \"{i:02}{}\"\n", "x".repeat(90)));
    }
    let zone = parse_zone(&text);
    let name = |s: &str| Name::from_str(s).unwrap();
    let pools = Arc::new(PoolTable::new([
        PoolAnswer {
            name: name("www.example.test."),
            rtype: RecordType::A,
            ttl: 30,
            rdata: vec![
                RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
                RData::A(A(Ipv4Addr::new(192, 0, 2, 11))),
            ],
            selection: Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: name("v6.example.test."),
            rtype: RecordType::AAAA,
            ttl: 30,
            rdata: vec![RData::AAAA(AAAA("2001:db8::10".parse().unwrap()))],
            selection: Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: name("cdn.example.test."),
            rtype: RecordType::CNAME,
            ttl: 60,
            rdata: vec![RData::CNAME(CNAME(name("edge.cdn-provider.net.")))],
            selection: Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: name("api.example.test."),
            rtype: RecordType::A,
            ttl: 30,
            rdata: vec![
                RData::A(A(Ipv4Addr::new(192, 0, 2, 20))),
                RData::A(A(Ipv4Addr::new(192, 0, 2, 21))),
            ],
            selection: Selection::weighted(vec![1, 1]),
            region: crate::geo::RegionId::DEFAULT,
        },
    ]));
    let authority = Arc::new(Authority::new(vec![zone], pools.clone(), 1232));
    (authority, pools)
}

fn answerer(authority: &Arc<Authority>, entries: usize) -> (Answerer, Arc<Counters>) {
    let counters = Arc::new(Counters::new(Transport::Udp, false));
    let a = Answerer::new(
        authority.clone(),
        entries,
        Arc::default(),
        counters.clone(),
        Arc::new(LocalAddrs::default()),
    );
    (a, counters)
}

const FROM: Origin = Origin {
    client: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 40000),
    local: None,
    ifindex: None,
};

/// The worker's reply to `msg`, if any.
fn ask(a: &mut Answerer, msg: &[u8]) -> Option<Vec<u8>> {
    let now = a.begin_batch(None);
    let mut out = vec![0u8; 4096];
    a.answer(msg, &FROM, now, &mut out)
        .map(|n| out[..n].to_vec())
}

/// Asks each of `msgs` three times in a row: each is cached (saved on its second miss) and
/// answered from the cache once. (In a row: two names may share a doorkeeper slot, and
/// interleaved misses of both would keep each other out.)
fn warm(a: &mut Answerer, msgs: &[&[u8]]) {
    for msg in msgs {
        for _ in 0..3 {
            ask(a, msg);
        }
    }
}

/// The full path's reply to `msg`.
fn full(authority: &Authority, msg: &[u8]) -> Option<Vec<u8>> {
    authority.respond(&Request::new(msg, FROM.client, Transport::Udp))
}

/// A deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

/// `name` with each letter's case flipped at random (0x20 randomisation).
fn mixed_case(rng: &mut Rng, name: &str) -> String {
    name.chars()
        .map(|c| {
            if rng.next() & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// A random query: name, type, flags, ID and EDNS shape (including shapes that are not
/// plain: a cookie option, EDNS version 1).
fn random_query(rng: &mut Rng) -> Vec<u8> {
    let names = [
        "www.example.test.",
        "v6.example.test.",
        "cdn.example.test.",
        "example.test.",
        "mail.example.test.",
        "alias.example.test.",
        "chain.example.test.",
        "topool.example.test.",
        "x.wild.example.test.",
        "deep.x.wild.example.test.",
        "host.sub.example.test.",
        "sub.example.test.",
        "big.example.test.",
        "nx.example.test.",
        "example.org.",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::CNAME,
        RecordType::MX,
        RecordType::TXT,
        RecordType::NS,
        RecordType::SOA,
        RecordType::ANY,
        RecordType::HTTPS,
        RecordType::Unknown(97),
        RecordType::AXFR,
    ];
    let name = *rng.pick::<&str>(&names);
    let name = mixed_case(rng, name);
    let mut m = Message::new(rng.next() as u16, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii(&name).unwrap(),
        *rng.pick(&types),
    ));
    m.metadata.recursion_desired = rng.next() & 1 == 1;
    m.metadata.checking_disabled = rng.next() & 1 == 1;
    m.metadata.authentic_data = rng.next() & 1 == 1;
    match rng.next() % 8 {
        0..=2 => {}
        shape => {
            let mut e = Edns::new();
            e.set_max_payload(*rng.pick(&[0u16, 512, 600, 1232, 1400, 4096]));
            e.set_dnssec_ok(rng.next() & 1 == 1);
            if shape == 6 {
                e.options_mut()
                    .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                        10,
                        vec![1, 2, 3, 4, 5, 6, 7, 8],
                    ));
            }
            if shape == 7 {
                e.set_version(1);
            }
            m.set_edns(e);
        }
    }
    let mut bytes = m.to_vec().unwrap();
    // Sometimes the Z bit too, which the full path ignores.
    if rng.next().is_multiple_of(4) {
        bytes[3] |= 0x40;
    }
    bytes
}

#[test]
fn cached_answers_are_byte_for_byte_the_full_path() {
    let (authority, _) = rich_authority();
    let (mut a, _) = answerer(&authority, 4096);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut plain = 0;
    for i in 0..6000 {
        let msg = random_query(&mut rng);
        let is_plain = Plain::classify(&msg).is_some();
        plain += usize::from(is_plain);
        // Three times each: a miss, a miss that saves it, and (for plain queries) a hit.
        for round in 0..3 {
            let got = ask(&mut a, &msg);
            let want = full(&authority, &msg);
            assert_eq!(
                got,
                want,
                "query {i} round {round}: {:?}",
                Message::from_vec(&msg).map(|m| m.queries)
            );
        }
    }
    assert!(plain > 3000, "{plain}: most random queries are plain");
    assert!(a.cache().len() > 100, "{} entries", a.cache().len());

    // Names that differ only in case share one entry, and each gets its own case back.
    let (mut a, _) = answerer(&authority, 4096);
    let q = |name: &str, id| query(id, name, RecordType::MX);
    warm(&mut a, &[&q("example.test.", 1)]);
    let before = a.cache().len();
    for (id, name) in ["EXAMPLE.test.", "eXaMpLe.TeSt.", "Example.Test."]
        .iter()
        .enumerate()
    {
        let msg = q(name, id as u16);
        assert_eq!(ask(&mut a, &msg), full(&authority, &msg), "{name}");
    }
    assert_eq!(a.cache().len(), before, "one entry for every case");
}

#[test]
fn a_pool_change_drops_the_cached_answers() {
    let (authority, pools) = rich_authority();
    let (mut a, _) = answerer(&authority, 64);
    let msg = query(1, "www.example.test.", RecordType::A);
    warm(&mut a, &[&msg]);
    assert_eq!(a.cache().len(), 1);
    let old = Message::from_vec(&ask(&mut a, &msg).unwrap()).unwrap();
    assert_eq!(old.answers.len(), 2);

    let mut changed = (*pools
        .get(&LowerName::from_str("www.example.test.").unwrap())
        .unwrap())
    .clone();
    changed.rdata = vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 99)))];
    pools.set(changed);
    let new = Message::from_vec(&ask(&mut a, &msg).unwrap()).unwrap();
    assert_eq!(new.answers.len(), 1);
    assert_eq!(
        new.answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 99)))
    );
    assert_eq!(ask(&mut a, &msg), full(&authority, &msg));
}

/// The table's other two writes: a pool set at a new name (which rebuilds the name index)
/// and the whole table replaced in place. Each must move the generation, or the cached
/// answers of before are served.
#[test]
fn a_new_pool_and_a_replaced_table_drop_the_cached_answers() {
    let (authority, pools) = rich_authority();
    let (mut a, _) = answerer(&authority, 64);
    let www_q = query(1, "www.example.test.", RecordType::A);
    let new_q = query(2, "new.example.test.", RecordType::A);
    warm(&mut a, &[&www_q, &new_q]);
    assert_eq!(
        a.cache().len(),
        2,
        "the pool answer and the NXDOMAIN cached"
    );
    let data = |q: &[u8], a: &mut Answerer| {
        let m = Message::from_vec(&ask(a, q).unwrap()).unwrap();
        (
            m.response_code,
            m.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(data(&new_q, &mut a).0, ResponseCode::NXDomain);
    let www = |n: u8| PoolAnswer {
        name: Name::from_str("www.example.test.").unwrap(),
        rtype: RecordType::A,
        ttl: 30,
        rdata: vec![RData::A(A(Ipv4Addr::new(192, 0, 2, n)))],
        selection: Selection::All,
        region: crate::geo::RegionId::DEFAULT,
    };
    let new_pool = PoolAnswer {
        name: Name::from_str("new.example.test.").unwrap(),
        ..www(1)
    };

    // A new name: the NXDOMAIN cached before is an answer now.
    pools.set(new_pool.clone());
    assert_eq!(
        data(&new_q, &mut a),
        (
            ResponseCode::NoError,
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))]
        ),
        "the new pool, not the cached NXDOMAIN"
    );
    assert_eq!(ask(&mut a, &new_q), full(&authority, &new_q));

    // The whole table replaced in place: www's new answer, not the cached one.
    warm(&mut a, &[&www_q, &new_q]);
    pools.replace_all([www(77), new_pool]);
    assert_eq!(
        data(&www_q, &mut a),
        (
            ResponseCode::NoError,
            vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 77)))]
        ),
        "the replaced table's answer, not the cached one"
    );
    for q in [&www_q, &new_q] {
        assert_eq!(ask(&mut a, q), full(&authority, q));
    }
}

#[test]
fn a_reload_drops_the_cached_answers() {
    let (authority, pools) = rich_authority();
    let (mut a, _) = answerer(&authority, 64);
    let zone_q = query(1, "mail.example.test.", RecordType::A);
    let pool_q = query(2, "www.example.test.", RecordType::A);
    let edns_q = {
        let mut m = Message::new(3, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("mx2.example.test.").unwrap(),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
        m.to_vec().unwrap()
    };
    warm(&mut a, &[&zone_q, &pool_q, &edns_q]);
    assert_eq!(a.cache().len(), 3, "all three answers cached");

    // A reload: a zone record changed, a new pool table whose generation is the old one's
    // (so only the reload tells the answers apart), the same EDNS size.
    let text = RICH_ZONE.replace("mail     A     192.0.2.25", "mail     A     192.0.2.77");
    let zone = || parse_zone(&text);
    let mut www = (*pools
        .get(&LowerName::from_str("www.example.test.").unwrap())
        .unwrap())
    .clone();
    www.rdata = vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 88)))];
    let new_pools = Arc::new(PoolTable::new([www]));
    assert_eq!(new_pools.generation(), pools.generation());
    authority.replace(vec![zone()], new_pools.clone(), 1232);

    let mut answer = |q: &[u8]| Message::from_vec(&ask(&mut a, q).unwrap()).unwrap();
    let mail = answer(&zone_q);
    assert_eq!(
        mail.answers
            .iter()
            .map(|r| r.data.clone())
            .collect::<Vec<_>>(),
        [RData::A(A(Ipv4Addr::new(192, 0, 2, 77)))],
        "the zone record as reloaded"
    );
    let www = answer(&pool_q);
    assert_eq!(
        www.answers
            .iter()
            .map(|r| r.data.clone())
            .collect::<Vec<_>>(),
        [RData::A(A(Ipv4Addr::new(192, 0, 2, 88)))],
        "the pool answer as reloaded"
    );
    assert_eq!(answer(&edns_q).edns.unwrap().max_payload(), 1232);
    for q in [&zone_q, &pool_q, &edns_q] {
        assert_eq!(ask(&mut a, q), full(&authority, q));
    }
    // Another reload: the same data, another EDNS size.
    authority.replace(vec![zone()], new_pools, 1400);
    let r = Message::from_vec(&ask(&mut a, &edns_q).unwrap()).unwrap();
    assert_eq!(r.edns.unwrap().max_payload(), 1400);
    // And cached again, as the full path answers now.
    warm(&mut a, &[&zone_q, &pool_q, &edns_q]);
    assert_eq!(a.cache().len(), 3);
    for q in [&zone_q, &pool_q, &edns_q] {
        assert_eq!(ask(&mut a, q), full(&authority, q));
    }
}

#[test]
fn weighted_answers_are_never_cached() {
    let (authority, _) = rich_authority();
    let (mut a, counters) = answerer(&authority, 64);
    let msg = query(1, "api.example.test.", RecordType::A);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let r = Message::from_vec(&ask(&mut a, &msg).unwrap()).unwrap();
        assert_eq!(r.answers.len(), 1);
        seen.insert(r.answers[0].data.clone());
    }
    assert_eq!(seen.len(), 2, "both records are picked: {seen:?}");
    assert!(a.cache().is_empty());
    // Counted all the same.
    let stats = ServerStats::default();
    stats.register(counters);
    assert_eq!(stats.snapshot().pool("api.example.test."), 200);
}

#[test]
fn a_flood_of_new_names_keeps_the_cache_bounded_and_the_hot_names() {
    let (authority, _) = rich_authority();
    let (mut a, _) = answerer(&authority, 256);
    let hot = query(7, "www.example.test.", RecordType::A);
    warm(&mut a, &[&hot]);
    assert_eq!(a.cache().len(), 1);
    for i in 0..20_000 {
        let msg = query(i as u16, &format!("r{i}.example.test."), RecordType::A);
        let r = Message::from_vec(&ask(&mut a, &msg).unwrap()).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        if i % 10 == 0 {
            // The hot name, asked now and then, stays.
            assert_eq!(ask(&mut a, &hot), full(&authority, &hot));
        }
    }
    assert!(a.cache().len() <= a.cache().capacity());
    assert!(
        a.cache().len() <= 2,
        "names asked once are not saved: {}",
        a.cache().len()
    );
}

#[test]
fn responses_are_counted_by_rcode_type_and_pool() {
    let (authority, _) = rich_authority();
    let (mut a, counters) = answerer(&authority, 64);
    for _ in 0..5 {
        ask(&mut a, &query(1, "www.example.test.", RecordType::A));
    }
    warm(&mut a, &[&query(2, "nx.example.test.", RecordType::AAAA)]);
    ask(&mut a, &query(3, "example.org.", RecordType::TXT));
    ask(&mut a, &query(4, "topool.example.test.", RecordType::A));
    let stats = ServerStats::default();
    stats.register(counters);
    let s = stats.snapshot();
    assert_eq!(s.responses("udp", "NOERROR", "A"), 6);
    assert_eq!(s.responses("udp", "NXDOMAIN", "AAAA"), 3);
    assert_eq!(s.responses("udp", "REFUSED", "TXT"), 1);
    assert_eq!(
        s.pool("www.example.test."),
        6,
        "5 direct, 1 at the end of a CNAME"
    );
    assert_eq!(s.responses_over("tcp"), 0);
}

#[test]
fn a_large_answer_is_truncated_at_our_size_whatever_the_client_asks() {
    let (authority, _) = rich_authority();
    let (mut a, _) = answerer(&authority, 64);
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii("big.example.test.").unwrap(),
        RecordType::TXT,
    ));
    let mut e = Edns::new();
    e.set_max_payload(4096);
    m.set_edns(e);
    let msg = m.to_vec().unwrap();
    for _ in 0..3 {
        let bytes = ask(&mut a, &msg).unwrap();
        assert!(bytes.len() <= 1232, "{} octets", bytes.len());
        let r = Message::from_vec(&bytes).unwrap();
        assert!(r.metadata.truncation);
        assert!(r.answers.is_empty());
    }
    // Over TCP the whole RRset.
    let tcp = authority
        .respond(&Request::new(&msg, FROM.client, Transport::Tcp))
        .unwrap();
    let r = Message::from_vec(&tcp).unwrap();
    assert_eq!(r.answers.len(), 20);
    assert!(tcp.len() > 1232);
}
