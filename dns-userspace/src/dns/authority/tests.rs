//! The answer path: pools byte for byte as the XDP path answers, zone data, errors, EDNS,
//! truncation, and arbitrary input.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
};

use hickory_proto::{
    op::Header,
    rr::rdata::{A, AAAA, CNAME, TXT},
};

use super::*;
use crate::{
    datapath::pools::PoolAnswer,
    dns::{request::Transport, zone::ZoneSettings},
};

const ZONE: &str = r#"$ORIGIN example.test.
$TTL 3600
@        SOA   ns1 hostmaster 2024010101 7200 3600 1209600 300
@        NS    ns1
@        NS    ns2.example.net.
@        MX    10 mail
@        A     192.0.2.80
ns1      A     192.0.2.53
ns1      AAAA  2001:db8::53
mail     A     192.0.2.25
www      TXT   "pool name with a TXT"
alias    CNAME www
chain1   CNAME chain2
chain2   CNAME mail
dangling CNAME nothere
outside  CNAME www.example.net.
loop1    CNAME loop2
loop2    CNAME loop1
a.b.c    TXT   "deep"
*.wild   A     192.0.2.99
*.wild   TXT   "wild"
*.wcname CNAME mail
sub      NS    ns.sub
sub      NS    ns1
ns.sub   A     192.0.2.54
"#;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn zone(origin: &str, text: &str) -> Zone {
    let settings = ZoneSettings {
        origin: Name::from_str(origin).unwrap(),
        file: PathBuf::from("/nonexistent/test.zone"),
        soa: None,
        ns: vec![],
        ns_ttl: 3600,
    };
    Zone::parse(&settings, text).unwrap()
}

fn v4(a: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(a)))
}

fn pools() -> Arc<PoolTable> {
    Arc::new(PoolTable::new([
        PoolAnswer {
            name: name("www.example.test."),
            rtype: RecordType::A,
            ttl: 30,
            rdata: vec![v4([192, 0, 2, 10]), v4([192, 0, 2, 11])],
            selection: crate::datapath::pools::Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: name("v6.example.test."),
            rtype: RecordType::AAAA,
            ttl: 30,
            rdata: vec![RData::AAAA(AAAA(
                Ipv6Addr::from_str("2001:db8::10").unwrap(),
            ))],
            selection: crate::datapath::pools::Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: name("cdn.example.test."),
            rtype: RecordType::CNAME,
            ttl: 60,
            rdata: vec![RData::CNAME(CNAME(name("example.cdn-provider.net.")))],
            selection: crate::datapath::pools::Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: name("empty.example.test."),
            rtype: RecordType::A,
            ttl: 30,
            rdata: vec![],
            selection: crate::datapath::pools::Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: name("p.q.example.test."),
            rtype: RecordType::A,
            ttl: 30,
            rdata: vec![v4([192, 0, 2, 12])],
            selection: crate::datapath::pools::Selection::All,
            region: crate::geo::RegionId::DEFAULT,
        },
    ]))
}

fn authority() -> Authority {
    Authority::new(vec![zone("example.test.", ZONE)], pools(), 1232)
}

fn query(qname: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(0xbeef, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name(qname), qtype));
    m
}

fn with_edns(mut m: Message, payload: u16, dnssec_ok: bool) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    e.set_dnssec_ok(dnssec_ok);
    m.set_edns(e);
    m
}

/// Where the test queries come from.
const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)), 53535);

/// `bytes` from [`CLIENT`] over `t`.
fn request(bytes: &[u8], t: Transport) -> Request<'_> {
    Request::new(bytes, CLIENT, t)
}

fn raw(a: &Authority, q: &Message, t: Transport) -> Vec<u8> {
    a.respond(&request(&q.to_vec().unwrap(), t))
        .expect("a response")
}

fn ask_over(a: &Authority, q: &Message, t: Transport) -> Message {
    Message::from_vec(&raw(a, q, t)).expect("a decodable response")
}

fn ask(a: &Authority, q: &Message) -> Message {
    ask_over(a, q, Transport::Udp)
}

fn rdatas(records: &[Record]) -> Vec<RData> {
    records.iter().map(|r| r.data.clone()).collect()
}

fn types(records: &[Record]) -> Vec<RecordType> {
    records.iter().map(Record::record_type).collect()
}

/// Common header checks of every answer to a well-formed query.
fn assert_response_to(r: &Message, q: &Message) {
    assert_eq!(r.metadata.id, q.metadata.id);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert_eq!(r.metadata.op_code, q.metadata.op_code);
    assert!(!r.metadata.recursion_available);
    assert!(!r.metadata.authentic_data);
    assert_eq!(r.metadata.recursion_desired, q.metadata.recursion_desired);
    assert_eq!(r.metadata.checking_disabled, q.metadata.checking_disabled);
    assert_eq!(r.queries.len(), 1);
    assert!(r.queries[0].name().eq_case(q.queries[0].name()));
    assert_eq!(r.queries[0].query_type(), q.queries[0].query_type());
    assert_eq!(r.queries[0].query_class(), q.queries[0].query_class());
}

fn assert_negative(r: &Message, rcode: ResponseCode) {
    assert_eq!(r.metadata.response_code, rcode, "{r}");
    assert!(r.metadata.authoritative, "{r}");
    assert!(r.answers.is_empty(), "{r}");
    assert_eq!(types(&r.authorities), vec![RecordType::SOA], "{r}");
    let soa = &r.authorities[0];
    assert_eq!(soa.name, name("example.test."));
    // RFC 2308 §3: min(SOA TTL 3600, MINIMUM 300).
    assert_eq!(soa.ttl, 300, "{r}");
}

#[test]
fn pool_answer_is_exactly_the_pool_records() {
    let a = authority();
    let mut q = with_edns(query("wWw.ExAmple.TEST.", RecordType::A), 4096, true);
    q.metadata.recursion_desired = true;
    q.metadata.checking_disabled = true;
    q.metadata.authentic_data = true;
    let bytes = raw(&a, &q, Transport::Udp);
    let r = Message::from_vec(&bytes).unwrap();

    assert_response_to(&r, &q);
    assert!(r.metadata.authoritative);
    assert!(!r.metadata.truncation);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        rdatas(&r.answers),
        vec![v4([192, 0, 2, 10]), v4([192, 0, 2, 11])]
    );
    for rec in &r.answers {
        assert!(rec.name.eq_case(&name("wWw.ExAmple.TEST.")), "{rec}");
        assert_eq!(rec.ttl, 30);
        assert_eq!(rec.dns_class, DNSClass::IN);
    }
    assert!(r.authorities.is_empty());
    assert!(r.additionals.is_empty());
    let edns = r.edns.as_ref().expect("OPT");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);
    assert!(edns.flags().dnssec_ok);
    assert!(edns.options().as_ref().is_empty());

    // On the wire: NSCOUNT 0, ARCOUNT 1 (the OPT), and the first answer's owner is the
    // compression pointer to the question name, as the XDP path writes it.
    let header = Header::read(&mut BinDecoder::new(&bytes)).unwrap();
    assert_eq!(header.counts.answers, 2);
    assert_eq!(header.counts.authorities, 0);
    assert_eq!(header.counts.additionals, 1);
    let answer_at = 12 + "wWw.ExAmple.TEST.".len() + 1 + 4;
    assert_eq!(bytes[answer_at..answer_at + 2], [0xc0, 0x0c]);
    // The OPT RR: root, type 41, class 1232, TTL 0x00008000 (DO), RDLEN 0.
    assert_eq!(
        bytes[bytes.len() - 11..],
        [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]
    );
}

/// The response the XDP path builds for `q`: the query's header with QR, AA and the
/// counts changed, the question as sent, the pool's RRs encoded after a lower-case
/// question (as the daemon precomputes them for the kernel), and a plain OPT.
fn xdp_response(q: &Message, pool: &PoolAnswer, edns_udp_size: u16) -> Vec<u8> {
    let lower = pool.name.to_lowercase();
    let mut pre = Message::query();
    pre.add_query(Query::query(lower.clone(), pool.rtype));
    pre.add_answers(pool.records(&lower));
    let pre = pre.to_vec().unwrap();
    let rrs = &pre[12 + lower.to_bytes().unwrap().len() + 4..];

    let query = q.to_vec().unwrap();
    let question_end = 12 + q.queries[0].name.to_bytes().unwrap().len() + 4;
    let mut out = query[..question_end].to_vec();
    out[2] = 0x84 | (query[2] & 0x01);
    out[3] = query[3] & 0x10;
    out[6..8].copy_from_slice(&(pool.rdata.len() as u16).to_be_bytes());
    out[8..10].copy_from_slice(&[0, 0]);
    out[10..12].copy_from_slice(&[0, u8::from(q.edns.is_some())]);
    out.extend_from_slice(rrs);
    if let Some(e) = &q.edns {
        let size = edns_udp_size.to_be_bytes();
        let flags = if e.flags().dnssec_ok { 0x80 } else { 0 };
        out.extend_from_slice(&[0, 0, 41, size[0], size[1], 0, 0, flags, 0, 0, 0]);
    }
    out
}

#[test]
fn pool_answers_are_byte_for_byte_what_the_xdp_path_sends() {
    let edge = PoolAnswer {
        name: name("edge.example.test."),
        rtype: RecordType::CNAME,
        ttl: 60,
        // In-zone target: compressed against the question name.
        rdata: vec![RData::CNAME(CNAME(name("node1.example.test.")))],
        selection: crate::datapath::pools::Selection::All,
        region: crate::geo::RegionId::DEFAULT,
    };
    let table = pools();
    table.set(edge.clone());
    let a = Authority::new(vec![zone("example.test.", ZONE)], table.clone(), 1232);
    let www = table
        .get(&LowerName::from(name("www.example.test.")))
        .unwrap();
    let v6 = table
        .get(&LowerName::from(name("v6.example.test.")))
        .unwrap();
    let cases: [(&str, RecordType, &PoolAnswer); 5] = [
        ("www.example.test.", RecordType::A, &www),
        ("WwW.eXaMpLe.TeSt.", RecordType::A, &www),
        ("V6.Example.Test.", RecordType::AAAA, &v6),
        ("EDGE.example.TEST.", RecordType::A, &edge),
        ("edge.EXAMPLE.test.", RecordType::CNAME, &edge),
    ];
    for (qname, qtype, pool) in cases {
        for edns in [None, Some(false), Some(true)] {
            for (rd, cd) in [(false, false), (true, true)] {
                let mut q = query(qname, qtype);
                q.metadata.recursion_desired = rd;
                q.metadata.checking_disabled = cd;
                if let Some(dnssec_ok) = edns {
                    q = with_edns(q, 1232, dnssec_ok);
                }
                assert_eq!(
                    raw(&a, &q, Transport::Udp),
                    xdp_response(&q, pool, 1232),
                    "{qname} {qtype} edns {edns:?} rd {rd} cd {cd}"
                );
            }
        }
    }
}

#[test]
fn pool_answer_without_edns_has_no_opt() {
    let a = authority();
    let q = query("v6.example.test.", RecordType::AAAA);
    let r = ask(&a, &q);
    assert_response_to(&r, &q);
    assert!(r.edns.is_none());
    assert!(r.additionals.is_empty());
    assert_eq!(types(&r.answers), vec![RecordType::AAAA]);
}

#[test]
fn servfail_pool_answers_servfail() {
    let a = authority();
    let key = LowerName::from(name("www.example.test."));
    let mut p = a.pools().get(&key).unwrap().as_ref().clone();
    p.rdata.clear();
    p.selection = crate::datapath::pools::Selection::Servfail;
    a.pools().set(p);
    let q = query("www.example.test.", RecordType::A);
    let r = Message::from_vec(&raw(&a, &q, Transport::Udp)).unwrap();
    assert_response_to(&r, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(r.answers.is_empty());
    // Other types at the name are unaffected (the zone answers them).
    let q = query("www.example.test.", RecordType::AAAA);
    let r = Message::from_vec(&raw(&a, &q, Transport::Udp)).unwrap();
    assert_ne!(r.metadata.response_code, ResponseCode::ServFail);
}

/// A weighted pool answers one record per query, in proportion to the weights.
#[test]
fn weighted_pool_answers_one_record_per_query_in_proportion() {
    let a = authority();
    let key = LowerName::from(name("www.example.test."));
    let mut p = a.pools().get(&key).unwrap().as_ref().clone();
    p.rdata = vec![v4([192, 0, 2, 1]), v4([192, 0, 2, 2])];
    p.selection = crate::datapath::pools::Selection::weighted(vec![1, 3]);
    a.pools().set(p);
    let q = query("www.example.test.", RecordType::A);
    let n = 8000;
    let mut first = 0;
    for _ in 0..n {
        let r = Message::from_vec(&raw(&a, &q, Transport::Udp)).unwrap();
        assert_eq!(r.answers.len(), 1);
        if r.answers[0].data == v4([192, 0, 2, 1]) {
            first += 1;
        } else {
            assert_eq!(r.answers[0].data, v4([192, 0, 2, 2]));
        }
    }
    // Expected n/4 = 2000, standard deviation sqrt(n * 1/4 * 3/4) ≈ 39: allow 5σ.
    assert!(
        (1805..=2195).contains(&first),
        "{first} of {n} for weight 1 of 4"
    );
}

#[test]
fn cname_pool_answers_every_type_with_its_cname() {
    let a = authority();
    for qtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::MX,
        RecordType::CNAME,
    ] {
        let q = query("cdn.example.test.", qtype);
        let r = ask(&a, &q);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(
            rdatas(&r.answers),
            vec![RData::CNAME(CNAME(name("example.cdn-provider.net.")))],
            "{qtype}"
        );
        assert_eq!(r.answers[0].ttl, 60);
        assert!(r.authorities.is_empty() && r.additionals.is_empty());
    }
}

#[test]
fn pool_name_with_other_types() {
    let a = authority();
    // AAAA at an A pool: NODATA with the SOA.
    let r = ask(&a, &query("www.example.test.", RecordType::AAAA));
    assert_negative(&r, ResponseCode::NoError);
    // The zone's own TXT at the pool name is still served.
    let r = ask(&a, &query("www.example.test.", RecordType::TXT));
    assert_eq!(types(&r.answers), vec![RecordType::TXT]);
    // A pool without records (no answer published) answers NODATA, not NXDOMAIN.
    let r = ask(&a, &query("empty.example.test.", RecordType::A));
    assert_negative(&r, ResponseCode::NoError);
    // A pool name makes its ancestors empty non-terminals.
    let r = ask(&a, &query("q.example.test.", RecordType::A));
    assert_negative(&r, ResponseCode::NoError);
    // ANY at a pool: the pool's RRset.
    let r = ask(&a, &query("www.example.test.", RecordType::ANY));
    assert_eq!(types(&r.answers), vec![RecordType::A, RecordType::A]);
}

#[test]
fn zone_answer_keeps_the_query_case_and_adds_addresses() {
    let a = authority();
    let q = query("MAIL.example.TEST.", RecordType::A);
    let r = ask(&a, &q);
    assert_response_to(&r, &q);
    assert!(r.metadata.authoritative);
    assert_eq!(rdatas(&r.answers), vec![v4([192, 0, 2, 25])]);
    assert!(r.answers[0].name.eq_case(&name("MAIL.example.TEST.")));
    assert_eq!(r.answers[0].ttl, 3600);

    let r = ask(&a, &query("example.test.", RecordType::MX));
    assert_eq!(types(&r.answers), vec![RecordType::MX]);
    assert_eq!(rdatas(&r.additionals), vec![v4([192, 0, 2, 25])]);

    let r = ask(&a, &query("example.test.", RecordType::NS));
    assert_eq!(types(&r.answers), vec![RecordType::NS, RecordType::NS]);
    assert_eq!(types(&r.additionals), vec![RecordType::A, RecordType::AAAA]);
}

#[test]
fn cname_chains_are_followed_inside_the_zone() {
    let a = authority();
    let r = ask(&a, &query("chain1.example.test.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(
        types(&r.answers),
        vec![RecordType::CNAME, RecordType::CNAME, RecordType::A]
    );
    assert_eq!(r.answers[2].name, name("mail.example.test."));

    // Into a pool: the pool's current records.
    let r = ask(&a, &query("alias.example.test.", RecordType::A));
    assert_eq!(
        rdatas(&r.answers),
        vec![
            RData::CNAME(CNAME(name("www.example.test."))),
            v4([192, 0, 2, 10]),
            v4([192, 0, 2, 11]),
        ]
    );

    // The CNAME itself when asked for.
    let r = ask(&a, &query("alias.example.test.", RecordType::CNAME));
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);

    // To a name that does not exist: NXDOMAIN from the last link (RFC 6604).
    let r = ask(&a, &query("dangling.example.test.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    assert_eq!(types(&r.authorities), vec![RecordType::SOA]);

    // Out of the zone: the CNAME only, the resolver goes on.
    let r = ask(&a, &query("outside.example.test.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    assert!(r.authorities.is_empty());

    // A loop ends.
    let r = ask(&a, &query("loop1.example.test.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        types(&r.answers),
        vec![RecordType::CNAME, RecordType::CNAME]
    );
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    let a = authority();
    let q = query("nope.example.test.", RecordType::A);
    let r = ask(&a, &q);
    assert_response_to(&r, &q);
    assert_negative(&r, ResponseCode::NXDomain);

    let r = ask(&a, &query("mail.example.test.", RecordType::AAAA));
    assert_negative(&r, ResponseCode::NoError);

    // Empty non-terminals exist (RFC 8020): NODATA, not NXDOMAIN.
    for ent in ["b.c.example.test.", "c.example.test."] {
        let r = ask(&a, &query(ent, RecordType::TXT));
        assert_negative(&r, ResponseCode::NoError);
    }
    let r = ask(&a, &query("x.a.b.c.example.test.", RecordType::TXT));
    assert_negative(&r, ResponseCode::NXDomain);
}

#[test]
fn wildcards_synthesize_for_names_that_do_not_exist() {
    let a = authority();
    for qname in ["x.wild.example.test.", "Y.x.wild.example.test."] {
        let r = ask(&a, &query(qname, RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert_eq!(rdatas(&r.answers), vec![v4([192, 0, 2, 99])]);
        assert!(r.answers[0].name.eq_case(&name(qname)));
    }
    let r = ask(&a, &query("x.wild.example.test.", RecordType::TXT));
    assert_eq!(
        rdatas(&r.answers),
        vec![RData::TXT(TXT::new(vec!["wild".into()]))]
    );
    // The wildcard owns no AAAA: NODATA.
    let r = ask(&a, &query("x.wild.example.test.", RecordType::AAAA));
    assert_negative(&r, ResponseCode::NoError);
    // The wildcard's parent exists as an empty non-terminal and is not synthesized.
    let r = ask(&a, &query("wild.example.test.", RecordType::A));
    assert_negative(&r, ResponseCode::NoError);
    // A wildcard CNAME is followed.
    let r = ask(&a, &query("z.wcname.example.test.", RecordType::A));
    assert_eq!(types(&r.answers), vec![RecordType::CNAME, RecordType::A]);
    assert!(r.answers[0].name.eq_case(&name("z.wcname.example.test.")));
}

#[test]
fn names_below_a_cut_get_a_referral() {
    let a = authority();
    for (qname, qtype) in [
        ("host.sub.example.test.", RecordType::A),
        ("sub.example.test.", RecordType::NS),
        ("ns.sub.example.test.", RecordType::A),
    ] {
        let q = query(qname, qtype);
        let r = ask(&a, &q);
        assert_response_to(&r, &q);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(!r.metadata.authoritative, "{qname}");
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::NS, RecordType::NS]);
        assert!(
            r.authorities
                .iter()
                .all(|ns| ns.name == name("sub.example.test."))
        );
        // In-domain glue first, then the sibling's addresses.
        assert_eq!(
            rdatas(&r.additionals)[..2],
            [v4([192, 0, 2, 54]), v4([192, 0, 2, 53])]
        );
        assert_eq!(r.additionals.len(), 3);
    }
    // DS lives on the parent side of the cut: authoritative NODATA here.
    let r = ask(&a, &query("sub.example.test.", RecordType::DS));
    assert_negative(&r, ResponseCode::NoError);
}

#[test]
fn ds_at_a_child_apex_is_answered_from_the_parent() {
    let child = zone(
        "sub.example.test.",
        "@ 60 SOA ns.sub h 1 2 3 4 5\n@ 60 NS ns.sub\nns 60 A 192.0.2.54\n",
    );
    let a = Authority::new(vec![zone("example.test.", ZONE), child], pools(), 1232);
    let r = ask(&a, &query("sub.example.test.", RecordType::DS));
    assert_negative(&r, ResponseCode::NoError);
    let r = ask(&a, &query("host.sub.example.test.", RecordType::A));
    assert!(r.metadata.authoritative);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].name, name("sub.example.test."));
}

#[test]
fn names_outside_every_zone_are_refused() {
    let a = authority();
    let q = query("www.example.org.", RecordType::A);
    let r = ask(&a, &q);
    assert_response_to(&r, &q);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);
    assert!(r.answers.is_empty() && r.authorities.is_empty());
}

#[test]
fn classes_and_special_types() {
    let a = authority();
    let mut q = query("www.example.test.", RecordType::A);
    q.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(ask(&a, &q).metadata.response_code, ResponseCode::Refused);

    for (qtype, rcode) in [
        (RecordType::AXFR, ResponseCode::Refused),
        (RecordType::IXFR, ResponseCode::Refused),
        (RecordType::Unknown(MAILA), ResponseCode::NotImp),
        (RecordType::OPT, ResponseCode::FormErr),
        (RecordType::TSIG, ResponseCode::FormErr),
    ] {
        let q = query("example.test.", qtype);
        let r = ask(&a, &q);
        assert_response_to(&r, &q);
        assert_eq!(r.metadata.response_code, rcode, "{qtype}");
        assert!(r.answers.is_empty());
    }

    // ANY: one RRset (the lowest type at the name).
    let r = ask(&a, &query("example.test.", RecordType::ANY));
    assert_eq!(rdatas(&r.answers), vec![v4([192, 0, 2, 80])]);
    let r = ask(&a, &query("c.example.test.", RecordType::ANY));
    assert_negative(&r, ResponseCode::NoError);
}

#[test]
fn other_opcodes_are_not_implemented() {
    let a = authority();
    for op in [
        OpCode::Status,
        OpCode::Notify,
        OpCode::Update,
        OpCode::Unknown(9),
    ] {
        let mut q = query("example.test.", RecordType::SOA);
        q.metadata.op_code = op;
        let r = ask(&a, &q);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op}");
        assert_eq!(r.metadata.op_code, op);
        assert_eq!(r.metadata.id, 0xbeef);
        assert!(!r.metadata.authoritative);
        assert!(r.answers.is_empty());
    }
}

#[test]
fn malformed_queries_get_formerr_with_their_id() {
    let a = authority();
    let formerr = |bytes: &[u8]| {
        let r = Message::from_vec(
            &a.respond(&request(bytes, Transport::Udp))
                .expect("a response"),
        )
        .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(r.metadata.id, 0xbeef);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert!(r.answers.is_empty());
        r
    };

    // A question cut short.
    let mut bytes = query("www.example.test.", RecordType::A).to_vec().unwrap();
    bytes.truncate(20);
    formerr(&bytes);

    // No question, two questions.
    let mut q = Message::new(0xbeef, MessageType::Query, OpCode::Query);
    formerr(&q.to_vec().unwrap());
    q.add_query(Query::query(name("a.example.test."), RecordType::A));
    q.add_query(Query::query(name("b.example.test."), RecordType::A));
    formerr(&q.to_vec().unwrap());

    // Two OPT records (RFC 6891 §6.1.1).
    let mut q = with_edns(query("www.example.test.", RecordType::A), 1232, false);
    let opt = Record::from(q.edns.as_ref().unwrap());
    q.add_additional(opt);
    formerr(&q.to_vec().unwrap());

    // Records in the answer section of a query.
    let mut q = query("www.example.test.", RecordType::A);
    q.add_answer(Record::from_rdata(
        name("www.example.test."),
        60,
        v4([192, 0, 2, 1]),
    ));
    let r = formerr(&q.to_vec().unwrap());
    assert_eq!(r.queries.len(), 1);

    // Unrelated additional records are ignored.
    let mut q = query("mail.example.test.", RecordType::A);
    q.add_additional(Record::from_rdata(
        name("x.example.test."),
        60,
        v4([192, 0, 2, 1]),
    ));
    assert_eq!(ask(&a, &q).answers.len(), 1);
}

#[test]
fn responses_and_runts_get_no_answer() {
    let a = authority();
    let mut q = query("www.example.test.", RecordType::A);
    q.metadata.message_type = MessageType::Response;
    assert!(
        a.respond(&request(&q.to_vec().unwrap(), Transport::Udp))
            .is_none()
    );
    assert!(
        a.respond(&request(&[0xbe, 0xef, 0, 0, 0, 1], Transport::Udp))
            .is_none()
    );
    assert!(a.respond(&request(&[], Transport::Tcp)).is_none());
}

#[test]
fn edns_version_other_than_zero_is_badvers() {
    let a = authority();
    let mut q = with_edns(query("www.example.test.", RecordType::A), 1232, true);
    q.edns.as_mut().unwrap().set_version(1);
    let r = ask(&a, &q);
    assert_response_to(&r, &q);
    // Extended RCODE 16 (hickory decodes 16 as BADSIG, which shares the number).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert_eq!(u16::from(ResponseCode::BADVERS), 16);
    assert!(r.answers.is_empty());
    let edns = r.edns.as_ref().expect("OPT");
    assert_eq!(edns.version(), 0);
    assert_eq!(edns.rcode_high(), 1);
    assert!(edns.flags().dnssec_ok);
}

#[test]
fn edns_do_bit_is_copied_and_options_are_ignored() {
    let a = authority();
    let q = with_edns(query("mail.example.test.", RecordType::A), 1400, false);
    let r = ask(&a, &q);
    let edns = r.edns.as_ref().expect("OPT");
    assert!(!edns.flags().dnssec_ok);
    assert_eq!(edns.max_payload(), 1232);

    let mut q = with_edns(query("mail.example.test.", RecordType::A), 1400, true);
    q.edns.as_mut().unwrap().options_mut().insert(
        hickory_proto::rr::rdata::opt::EdnsOption::Unknown(65001, vec![1, 2, 3]),
    );
    let r = ask(&a, &q);
    assert_eq!(r.answers.len(), 1);
    let edns = r.edns.as_ref().expect("OPT");
    assert!(edns.flags().dnssec_ok);
    assert!(edns.options().as_ref().is_empty());
}

/// A zone with an RRset of about 1000 octets.
fn big_authority() -> Authority {
    let mut text = String::from("@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\nns1 60 A 192.0.2.53\n");
    for i in 0..10 {
        text.push_str(&format!("big 60 TXT \"{i:02}{}\"\n", "x".repeat(90)));
    }
    Authority::new(vec![zone("example.test.", &text)], pools(), 1232)
}

#[test]
fn udp_responses_that_do_not_fit_are_truncated() {
    let a = big_authority();
    // Without EDNS the limit is 512: header and question only, TC=1.
    let q = query("big.example.test.", RecordType::TXT);
    let bytes = raw(&a, &q, Transport::Udp);
    assert!(bytes.len() <= 512);
    let r = Message::from_vec(&bytes).unwrap();
    assert_response_to(&r, &q);
    assert!(r.metadata.truncation);
    assert!(r.metadata.authoritative);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty() && r.authorities.is_empty() && r.additionals.is_empty());
    assert!(r.edns.is_none());

    // A small EDNS size (below 512 counts as 512) still truncates, keeping the OPT.
    let q = with_edns(query("big.example.test.", RecordType::TXT), 600, true);
    let r = ask(&a, &q);
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    assert!(r.edns.as_ref().unwrap().flags().dnssec_ok);

    // A large enough EDNS size gets everything.
    let q = with_edns(query("big.example.test.", RecordType::TXT), 4096, false);
    let bytes = raw(&a, &q, Transport::Udp);
    assert!(bytes.len() > 1000);
    let r = Message::from_vec(&bytes).unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 10);

    // TCP has no limit but 65535.
    let q = query("big.example.test.", RecordType::TXT);
    let r = ask_over(&a, &q, Transport::Tcp);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 10);
}

#[test]
fn optional_additional_records_are_dropped_before_truncating() {
    let mut text = String::from("@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\n");
    for i in 0..12 {
        text.push_str(&format!("@ 60 MX {i} mx{i}\nmx{i} 60 AAAA 2001:db8::{i}\n"));
    }
    let a = Authority::new(vec![zone("example.test.", &text)], pools(), 1232);
    let q = query("example.test.", RecordType::MX);
    let r = ask(&a, &q);
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 12);
    assert!(r.additionals.is_empty());
    let r = ask_over(&a, &q, Transport::Tcp);
    assert_eq!(r.additionals.len(), 12);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic xorshift, so a failure reproduces.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let a = authority();
    let seeds: Vec<Vec<u8>> = [
        with_edns(query("www.example.test.", RecordType::A), 1232, true),
        query("x.wild.example.test.", RecordType::TXT),
        query("host.sub.example.test.", RecordType::A),
    ]
    .iter()
    .map(|m| m.to_vec().unwrap())
    .collect();
    for i in 0..20_000 {
        let mut bytes = if i % 4 == 0 {
            (0..next() % 64).map(|_| next() as u8).collect()
        } else {
            seeds[i % seeds.len()].clone()
        };
        if !bytes.is_empty() {
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
        }
        if let Some(b) = bytes.get_mut(2) {
            *b &= 0x7f; // mostly queries
        }
        for t in [Transport::Udp, Transport::Tcp] {
            if let Some(resp) = a.respond(&request(&bytes, t)) {
                assert!(resp.len() >= 12);
                assert_eq!(resp[..2], bytes[..2]);
                assert!(resp[2] & 0x80 != 0, "QR set");
                if t == Transport::Udp {
                    assert!(resp.len() <= 4096);
                }
            }
        }
    }
}

/// A pool answering by region: 192.0.2.1 by default, 192.0.2.2 for clients in 10.0.0.0/8.
fn geo_authority() -> Authority {
    let mut regions = crate::geo::Regions::none();
    let eu = regions.add("eu").unwrap();
    regions.networks.push(("10.0.0.0/8".parse().unwrap(), eu));
    let geo = |host: u8| {
        PoolAnswer::new(
            name("geo.example.test."),
            RecordType::A,
            30,
            vec![v4([192, 0, 2, host])],
            crate::datapath::pools::Selection::All,
        )
    };
    let table = Arc::new(PoolTable::new([geo(1), geo(2).in_region(eu)]));
    let a = Authority::new(vec![zone("example.test.", ZONE)], table, 1232);
    a.set_regions(Arc::new(RegionTable::new(&regions)));
    a
}

#[test]
fn answers_by_region_vary_and_are_never_cached() {
    use crate::dns::cache::{AnswerCache, Key, Plain, Tally};
    let a = Arc::new(geo_authority());
    let q = query("geo.example.test.", RecordType::A).to_vec().unwrap();
    let from = |ip: [u8; 4]| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 5353);
    let eu = a
        .response(&Request::new(&q, from([10, 1, 2, 3]), Transport::Udp))
        .unwrap();
    let other = a
        .response(&Request::new(&q, from([192, 0, 2, 7]), Transport::Udp))
        .unwrap();
    let host = |bytes: &[u8]| rdatas(&Message::from_vec(bytes).unwrap().answers);
    assert_eq!(host(&eu.bytes), vec![v4([192, 0, 2, 2])]);
    assert_eq!(host(&other.bytes), vec![v4([192, 0, 2, 1])]);
    assert!(
        eu.varies && other.varies,
        "a region's answer must not serve another"
    );
    // The worker cache never saves it, however often it is offered.
    let mut cache = AnswerCache::new(64);
    cache.validate(&a);
    let plain = Plain::classify(&q).expect("a plain query");
    let mut key = Key::new();
    key.build(&q, &plain, 1232, false, cache.hash_key());
    let tally = Tally {
        rcode: 0,
        qtype: 0,
        kind: eu.kind,
        pool: None,
    };
    for _ in 0..3 {
        cache.offer(&key, &q, &plain, &eu, &tally);
    }
    assert!(cache.is_empty());
    let mut out = [0u8; 512];
    assert!(cache.answer(&key, &q, &mut out).is_none());
}

#[test]
fn ecs_is_echoed_on_zone_answers_with_scope_zero_and_formerr_when_invalid() {
    let a = geo_authority();
    let ecs = |data: Vec<u8>| {
        let mut m = with_edns(query("mail.example.test.", RecordType::A), 1232, false);
        let mut e = m.edns.clone().unwrap();
        e.options_mut().insert(EdnsOption::Unknown(8, data));
        m.set_edns(e);
        m
    };
    let r = ask(&a, &ecs(vec![0, 1, 24, 0, 10, 1, 2]));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let echoed = r.edns.unwrap();
    match echoed.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(s)) => {
            assert_eq!((s.source_prefix(), s.scope_prefix()), (24, 0));
        }
        other => panic!("no ECS echo: {other:?}"),
    }
    // Unknown family, bits beyond the prefix: FORMERR, no echo.
    for bad in [vec![0, 1, 23, 0, 10, 1, 3], vec![0, 1, 16, 0, 10, 1, 0]] {
        let r = ask(&a, &ecs(bad));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert!(
            r.edns
                .as_ref()
                .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet))
                .is_none()
        );
    }
}
