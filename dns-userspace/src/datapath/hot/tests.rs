//! Encoding answers and placing names, without the kernel (the maps are tested in
//! `tests/tests/xdp_*.rs`).

use std::{net::Ipv4Addr, str::FromStr};

use dns_common::query::qtype_bit;
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{
        RData, RecordType,
        rdata::{A, AAAA, CNAME},
    },
    serialize::binary::{BinDecodable, BinEncodable},
};

use super::{index::place, *};

use crate::datapath::pools::{Selection, test_pool as pool};

/// Splices an answer behind a query's header and question, as the kernel does, and
/// decodes the result with hickory-proto.
fn splice(qname: &str, qtype: RecordType, a: &Answer) -> Message {
    let mut q = Message::query();
    q.metadata.id = 0x1234;
    q.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    let mut wire = q.to_bytes().unwrap();
    wire[2] = 0x84;
    wire[6..8].copy_from_slice(&a.ancount);
    wire.extend_from_slice(a.rrs());
    Message::from_bytes(&wire).unwrap()
}

#[test]
fn a_pool_answer_decodes_with_the_clients_case() {
    let p = pool(
        "www.example.test.",
        RecordType::A,
        vec![
            RData::A(A(Ipv4Addr::new(192, 0, 2, 10))),
            RData::A(A(Ipv4Addr::new(192, 0, 2, 11))),
        ],
    );
    let v = encode_variant(&p).unwrap();
    assert_eq!(v.ancount, [0, 2]);
    assert_eq!(v.len, 2 * 16);
    assert_eq!(&v.bytes[..2], &[0xc0, 0x0c]);
    assert_eq!(
        v.sum,
        dns_common::csum::fold(dns_common::csum::partial(v.rrs(), 0))
    );
    let m = splice("WwW.ExAmple.TEST.", RecordType::A, &v);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.op_code, OpCode::Query);
    let answers = &m.answers;
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].name.to_ascii(), "WwW.ExAmple.TEST.");
    assert_eq!(answers[0].ttl, 30);
    assert_eq!(answers[0].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 10))));
    assert_eq!(answers[1].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 11))));
}

#[test]
fn aaaa_and_cname_answers_decode() {
    let p = pool(
        "v6.example.test.",
        RecordType::AAAA,
        vec![RData::AAAA(AAAA("2001:db8::10".parse().unwrap()))],
    );
    let m = splice(
        "v6.example.test.",
        RecordType::AAAA,
        &encode_variant(&p).unwrap(),
    );
    assert_eq!(
        m.answers[0].data,
        RData::AAAA(AAAA("2001:db8::10".parse().unwrap()))
    );

    let target = Name::from_str("edge.cdn.example.test.").unwrap();
    let p = pool(
        "cdn.example.test.",
        RecordType::CNAME,
        vec![RData::CNAME(CNAME(target.clone()))],
    );
    let v = encode_variant(&p).unwrap();
    // The target shares "example.test." with the question and is compressed against it.
    assert!(v.len < 12 + 22);
    for qt in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let m = splice("CDN.example.test.", qt, &v);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, RData::CNAME(CNAME(target.clone())));
    }
}

#[test]
fn oversized_answers_are_rejected() {
    let p = pool(
        "a.example.test.",
        RecordType::A,
        (0..9)
            .map(|i| RData::A(A(Ipv4Addr::new(192, 0, 2, i))))
            .collect(),
    );
    assert!(
        encode_variant(&p)
            .unwrap_err()
            .to_string()
            .contains("at most 8")
    );
    let empty = pool("a.example.test.", RecordType::A, vec![]);
    assert!(encode_variant(&empty).is_err());
}

#[test]
fn eight_aaaa_and_a_long_cname_fit() {
    let p = pool(
        "a.example.test.",
        RecordType::AAAA,
        (0..8)
            .map(|i| RData::AAAA(AAAA(format!("2001:db8::{i}").parse().unwrap())))
            .collect(),
    );
    assert_eq!(encode_variant(&p).unwrap().len, 8 * 28);
    // 255-octet target that shares nothing with the owner.
    let label = "x".repeat(63);
    let target = Name::from_str(&format!("{label}.{label}.{label}.{}.", "y".repeat(61))).unwrap();
    let p = pool(
        "a.example.test.",
        RecordType::CNAME,
        vec![RData::CNAME(CNAME(target))],
    );
    assert_eq!(encode_variant(&p).unwrap().len as usize, 12 + 255);
}

#[test]
fn sets_carry_name_qtypes_and_variants() {
    let mut p = pool(
        "WWW.example.test.",
        RecordType::CNAME,
        vec![RData::CNAME(CNAME(
            Name::from_str("a.example.net.").unwrap(),
        ))],
    );
    let e = encode_set(&p).unwrap().unwrap();
    assert_eq!(e.set.n_variants, 1);
    assert_eq!(e.answers.len(), 1);
    assert_eq!(
        e.set.qtypes,
        qtype_bit::A | qtype_bit::AAAA | qtype_bit::CNAME
    );
    let (octets, len) = FoldedName {
        len: e.set.name_len as usize,
        words: e.set.name,
    }
    .octets();
    assert_eq!(&octets[..len], b"\x03www\x07example\x04test\x00");
    assert_eq!(e.set.thresholds(), &[u32::MAX]);

    p.rtype = RecordType::A;
    p.rdata = (1..=3)
        .map(|i| RData::A(A(Ipv4Addr::new(192, 0, 2, i))))
        .collect();
    p.selection = Selection::weighted(vec![1, 1, 2]);
    let e = encode_set(&p).unwrap().unwrap();
    assert_eq!(e.set.qtypes, qtype_bit::A);
    assert_eq!(e.set.n_variants, 3);
    assert_eq!(
        e.answers.iter().map(|a| a.ancount).collect::<Vec<_>>(),
        [[0, 1], [0, 1], [0, 1]]
    );
    assert_eq!(e.set.thresholds()[2], u32::MAX);

    p.selection = Selection::Servfail;
    assert!(encode_set(&p).unwrap().is_none());
}

#[test]
fn capacity_leaves_room_and_rounds_up() {
    let c = Capacity::for_pools([1, 1, 8]);
    assert_eq!(c.pools, 64);
    assert_eq!(c.slots, 128);
    assert_eq!(c.buckets, 128);
    assert_eq!(c.answers, 128);
    let big = Capacity::for_pools(std::iter::repeat_n(1, 10_000));
    assert_eq!(big.pools, 32_768);
    assert_eq!(big.answers, 65_536);
    assert!(big.buckets as usize >= 4 * 10_000);
    assert_eq!(Capacity::for_pools([9]).answers, 128, "variants clamp to 8");
}

#[test]
fn placing_names_keeps_tags_unique_per_bucket() {
    let names: Vec<(u32, FoldedName)> = (0..100u32)
        .map(|i| {
            let name = Name::from_str(&format!("p{i}.example.test.")).unwrap();
            (i, folded_name(&name).unwrap())
        })
        .collect();
    let entries = |n: usize| names[..n].iter().map(|(i, name)| (*i, name));
    let key = HashKey { k0: 5, k1: 6 };
    let buckets = place(&key, 255, entries(100)).unwrap();
    for (index, name) in &names {
        let h = name.hash(&key);
        let b = &buckets[dns_common::bucket(h, 255) as usize];
        let i = b
            .tags
            .iter()
            .position(|&t| t == dns_common::tag(h))
            .unwrap_or_else(|| panic!("name {index} is not in its bucket"));
        assert_eq!(b.pools[i], *index);
    }
    // With a single bucket, five names overflow it.
    assert!(place(&key, 0, entries(5)).is_none());
    assert!(place(&key, 0, entries(4)).is_some());
    // Two entries with the same tag in one bucket: the kernel could only find the first.
    let twice = [(0, &names[0].1), (1, &names[0].1)];
    assert!(place(&key, 255, twice.into_iter()).is_none());
}
