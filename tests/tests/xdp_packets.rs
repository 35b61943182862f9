//! Katran-style packet tables run through BPF_PROG_TEST_RUN: for each case an input frame,
//! the expected action, the one stats counter it must move and, for XDP_TX, the exact
//! expected output frame (built independently with etherparse and hickory-proto).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
};

use dns_common::Outcome;
use hickory_proto::{
    op::{Edns, Message, OpCode, Query},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, opt::EdnsOption},
    },
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
};
use hotpool_tests::{
    datapath::{TestDatapath, XDP_PASS, XDP_TX, single_outcome},
    frames::{self, Path},
};

const EDNS_SIZE: u16 = 1232;

/// The client of the v4 frames, as the daemon's answer path sees it.
const CLIENT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), frames::CLIENT_PORT);

fn v4() -> Path {
    Path::v4([10, 0, 0, 1], [10, 0, 0, 2])
}

fn v6() -> Path {
    Path::v6("fd00::1", "fd00::2")
}

fn settings() -> DatapathSettings {
    hotpool_tests::datapath::settings(&["10.0.0.2", "fd00::2"], EDNS_SIZE)
}

/// A name of exactly 255 octets on the wire, ending in example.test.
fn max_name() -> String {
    let l63 = "m".repeat(63);
    format!("{l63}.{l63}.{l63}.{}.example.test.", "n".repeat(48))
}

/// A 255-octet CNAME target sharing no suffix with the pools.
fn long_target() -> Name {
    let l63 = "t".repeat(63);
    Name::from_str(&format!("{l63}.{l63}.{l63}.{}.", "u".repeat(61))).unwrap()
}

fn pools() -> Vec<PoolAnswer> {
    let a = |s: &str| RData::A(A(s.parse().unwrap()));
    let aaaa = |s: &str| RData::AAAA(AAAA(s.parse().unwrap()));
    vec![
        PoolAnswer {
            name: Name::from_str("www.example.test.").unwrap(),
            rtype: RecordType::A,
            ttl: 30,
            rdata: vec![a("192.0.2.10"), a("192.0.2.11")],
            selection: hotpool::datapath::pools::Selection::All,
            region: hotpool::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: Name::from_str("v6.example.test.").unwrap(),
            rtype: RecordType::AAAA,
            ttl: 60,
            rdata: vec![aaaa("2001:db8::10"), aaaa("2001:db8::11")],
            selection: hotpool::datapath::pools::Selection::All,
            region: hotpool::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: Name::from_str("cdn.example.test.").unwrap(),
            rtype: RecordType::CNAME,
            ttl: 300,
            rdata: vec![RData::CNAME(CNAME(
                Name::from_str("edge.cdn-provider.example.net.").unwrap(),
            ))],
            selection: hotpool::datapath::pools::Selection::All,
            region: hotpool::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: Name::from_str("big.example.test.").unwrap(),
            rtype: RecordType::AAAA,
            ttl: 5,
            rdata: (0..8).map(|i| aaaa(&format!("2001:db8::{i}"))).collect(),
            selection: hotpool::datapath::pools::Selection::All,
            region: hotpool::geo::RegionId::DEFAULT,
        },
        PoolAnswer {
            name: Name::from_str(&max_name()).unwrap(),
            rtype: RecordType::CNAME,
            ttl: 10,
            rdata: vec![RData::CNAME(CNAME(long_target()))],
            selection: hotpool::datapath::pools::Selection::All,
            region: hotpool::geo::RegionId::DEFAULT,
        },
    ]
    .into_iter()
    .chain(length_pools())
    .chain(prefix_pools())
    .collect()
}

/// A pool answering one A record, 192.0.2.`host`, to every client.
fn a_pool(name: &str, host: u8) -> PoolAnswer {
    hotpool_tests::datapath::a_pool(name, host, hotpool::geo::RegionId::DEFAULT)
}

/// Names of 16 to 23 octets on the wire, one for every position of the root octet in the
/// last 8-octet word, and names whose first label is 63 octets (79 to 81 octets).
fn length_names() -> Vec<String> {
    (1..=8)
        .map(|n| format!("{}.example.test.", "l".repeat(n)))
        .chain((0..3).map(|n| format!("{}.{}example.test.", "k".repeat(63), "j.".repeat(n))))
        .collect()
}

fn length_pools() -> Vec<PoolAnswer> {
    length_names()
        .iter()
        .enumerate()
        .map(|(i, n)| a_pool(n, 100 + i as u8))
        .collect()
}

/// Names that share their first 8 or 16 octets (one or two whole words) and differ only in
/// the last word, or only in their length.
fn prefix_names() -> Vec<String> {
    vec![
        "sharedprefix.a.example.test.".to_string(),
        "sharedprefix.b.example.test.".to_string(),
        "sharedprefixes16.a.example.test.".to_string(),
        "sharedprefixes16.b.example.test.".to_string(),
        "sharedprefixes16.ab.example.test.".to_string(),
        "sharedpr.example.test.".to_string(),
    ]
}

fn prefix_pools() -> Vec<PoolAnswer> {
    prefix_names()
        .iter()
        .enumerate()
        .map(|(i, n)| a_pool(n, 150 + i as u8))
        .collect()
}

fn pool(name: &str) -> PoolAnswer {
    let n = Name::from_str(name).unwrap();
    pools().into_iter().find(|p| p.name == n).unwrap()
}

/// A query as a client sends it.
#[derive(Clone)]
struct Q {
    name: String,
    qtype: RecordType,
    qclass: DNSClass,
    id: u16,
    rd: bool,
    cd: bool,
    /// (advertised UDP size, DO)
    edns: Option<(u16, bool)>,
}

fn q(name: &str, qtype: RecordType) -> Q {
    Q {
        name: name.to_string(),
        qtype,
        qclass: DNSClass::IN,
        id: 0xbeef,
        rd: false,
        cd: false,
        edns: None,
    }
}

impl Q {
    fn rd(mut self) -> Self {
        self.rd = true;
        self
    }
    fn cd(mut self) -> Self {
        self.cd = true;
        self
    }
    fn edns(mut self, size: u16, dnssec_ok: bool) -> Self {
        self.edns = Some((size, dnssec_ok));
        self
    }
    fn qname(&self) -> Name {
        Name::from_ascii(&self.name).unwrap()
    }
    fn message(&self) -> Message {
        let mut m = Message::query();
        m.metadata.id = self.id;
        m.metadata.recursion_desired = self.rd;
        m.metadata.checking_disabled = self.cd;
        let mut query = Query::query(self.qname(), self.qtype);
        query.query_class = self.qclass;
        m.add_query(query);
        if let Some((size, dnssec_ok)) = self.edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m
    }
    fn bytes(&self) -> Vec<u8> {
        self.message().to_bytes().unwrap()
    }

    /// The response the XDP path must produce: ID echoed, QR=1, AA=1, RD and CD copied,
    /// RA=0, NOERROR, the question as sent, the pool's records, OPT with our size when the
    /// query had one (DO echoed).
    fn expected_reply(&self, answers: Vec<Record>) -> Message {
        let mut m = Message::response(self.id, OpCode::Query);
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = self.rd;
        m.metadata.checking_disabled = self.cd;
        m.add_query(self.message().queries[0].clone());
        m.add_answers(answers);
        if let Some((_, dnssec_ok)) = self.edns {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_SIZE);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m
    }
}

enum Expect {
    /// XDP_TX with this exact frame.
    Tx(Vec<u8>),
    /// XDP_PASS, frame unchanged, counted under this outcome.
    Pass(Outcome),
}

struct Case {
    name: String,
    frame: Vec<u8>,
    expect: Expect,
}

/// A hit: the expected frame is the query's path reversed carrying the expected reply.
fn hit(name: &str, path: Path, query: Q, pool_name: &str) -> Case {
    let answers = pool(pool_name).records(&query.qname());
    let reply = query.expected_reply(answers).to_bytes().unwrap();
    Case {
        name: name.to_string(),
        frame: frames::query(&path, &query.bytes()),
        expect: Expect::Tx(frames::response(&path, &reply)),
    }
}

fn pass(name: &str, frame: Vec<u8>, outcome: Outcome) -> Case {
    Case {
        name: name.to_string(),
        frame,
        expect: Expect::Pass(outcome),
    }
}

/// A query frame whose DNS payload was edited after encoding.
fn edited(path: Path, query: &Q, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut dns = query.bytes();
    edit(&mut dns);
    frames::query(&path, &dns)
}

/// A frame edited after building (checksums are not fixed up: the XDP path does not
/// verify them, and these cases are all passed up unchanged).
fn raw(mut frame: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut frame);
    frame
}

fn hit_cases() -> Vec<Case> {
    let www = "www.example.test.";
    let v6name = "v6.example.test.";
    let cdn = "cdn.example.test.";
    vec![
        hit(
            "A over IPv4",
            v4(),
            q("www.example.test.", RecordType::A),
            www,
        ),
        hit(
            "A over IPv6",
            v6(),
            q("www.example.test.", RecordType::A),
            www,
        ),
        hit(
            "AAAA over IPv4",
            v4(),
            q("v6.example.test.", RecordType::AAAA),
            v6name,
        ),
        hit(
            "AAAA over IPv6",
            v6(),
            q("v6.example.test.", RecordType::AAAA),
            v6name,
        ),
        hit(
            "0x20 mixed case survives",
            v4(),
            q("wWw.ExAmPlE.tEsT.", RecordType::A),
            www,
        ),
        hit(
            "CNAME pool, qtype A",
            v4(),
            q("cdn.example.test.", RecordType::A),
            cdn,
        ),
        hit(
            "CNAME pool, qtype AAAA",
            v6(),
            q("CDN.example.test.", RecordType::AAAA),
            cdn,
        ),
        hit(
            "CNAME pool, qtype CNAME",
            v4(),
            q("cdn.example.test.", RecordType::CNAME),
            cdn,
        ),
        hit(
            "802.1Q over IPv4",
            v4().vlan(42),
            q("www.example.test.", RecordType::A),
            www,
        ),
        hit(
            "802.1Q over IPv6",
            v6().vlan(4094),
            q("v6.example.test.", RecordType::AAAA),
            v6name,
        ),
        hit(
            "RD copied",
            v4(),
            q("www.example.test.", RecordType::A).rd(),
            www,
        ),
        hit(
            "CD copied",
            v4(),
            q("www.example.test.", RecordType::A).cd(),
            www,
        ),
        hit(
            "EDNS without DO",
            v4(),
            q("www.example.test.", RecordType::A).edns(4096, false),
            www,
        ),
        hit(
            "EDNS with DO",
            v6(),
            q("www.example.test.", RecordType::A).edns(1232, true),
            www,
        ),
        hit(
            "EDNS size below 512 counts as 512",
            v4(),
            q("big.example.test.", RecordType::AAAA).edns(100, false),
            "big.example.test.",
        ),
        hit(
            "eight AAAA records",
            v6(),
            q("big.example.test.", RecordType::AAAA),
            "big.example.test.",
        ),
        hit(
            "255-octet name, 255-octet CNAME target, EDNS",
            v6().vlan(7),
            q(&max_name().to_uppercase(), RecordType::A).edns(1232, false),
            &max_name(),
        ),
        hit(
            "255-octet name in mixed case, IPv4",
            v4(),
            q(&mixed_case(&max_name()), RecordType::CNAME).edns(4096, true),
            &max_name(),
        ),
    ]
    .into_iter()
    .chain(length_names().iter().flat_map(|n| {
        [
            hit(
                &format!("{}-octet name", wire_len(n)),
                v4(),
                q(n, RecordType::A),
                n,
            ),
            hit(
                &format!("{}-octet name, mixed case, IPv6, EDNS", wire_len(n)),
                v6(),
                q(&mixed_case(n), RecordType::A).edns(1232, false),
                n,
            ),
        ]
    }))
    .chain(prefix_names().iter().map(|n| {
        hit(
            &format!("{n} (shares a word-sized prefix with another pool)"),
            v4(),
            q(&mixed_case(n), RecordType::A),
            n,
        )
    }))
    .chain([
        with_udp_checksum(
            hit(
                "IPv4 query without a UDP checksum",
                v4(),
                q(www, RecordType::A),
                www,
            ),
            |_| [0, 0],
        ),
        with_udp_checksum(
            hit(
                "IPv4 query leaving its checksum to offload (pseudo-header sum only)",
                v4(),
                q(www, RecordType::A).edns(1232, false),
                www,
            ),
            offload_field,
        ),
        with_udp_checksum(
            hit(
                "IPv6 query leaving its checksum to offload (pseudo-header sum only)",
                v6(),
                q(v6name, RecordType::AAAA),
                v6name,
            ),
            offload_field,
        ),
    ])
    .collect()
}

/// Offset of the UDP header of an untagged frame.
fn udp_offset(frame: &[u8]) -> usize {
    if frame[12..14] == [0x86, 0xdd] {
        14 + 40
    } else {
        14 + 20
    }
}

/// The case with the query's UDP checksum field replaced by `field(query frame)`.
fn with_udp_checksum(mut case: Case, field: impl FnOnce(&[u8]) -> [u8; 2]) -> Case {
    let at = udp_offset(&case.frame) + 6;
    let f = field(&case.frame);
    case.frame[at..at + 2].copy_from_slice(&f);
    case
}

/// What a local sender leaves in the field for checksum offload (`CHECKSUM_PARTIAL`): the
/// folded, uncomplemented pseudo-header sum.
fn offload_field(frame: &[u8]) -> [u8; 2] {
    use dns_common::csum;
    let l4 = udp_offset(frame);
    let len = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]);
    let pseudo = if l4 == 54 {
        let a: [u8; 16] = frame[22..38].try_into().unwrap();
        let b: [u8; 16] = frame[38..54].try_into().unwrap();
        csum::pseudo_v6(&a, &b, len)
    } else {
        let a: [u8; 4] = frame[26..30].try_into().unwrap();
        let b: [u8; 4] = frame[30..34].try_into().unwrap();
        csum::pseudo_v4(a, b, len)
    };
    csum::fold(pseudo).to_ne_bytes()
}

/// Every other letter upper case (0x20 randomisation, RFC draft-vixie-dnsext-dns0x20).
fn mixed_case(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn wire_len(name: &str) -> usize {
    Name::from_str(name).unwrap().to_bytes().unwrap().len()
}

fn pass_cases() -> Vec<Case> {
    let www = || q("www.example.test.", RecordType::A);
    let plain = || frames::query(&v4(), &www().bytes());
    let mut other_addr = v4();
    other_addr.server = IpAddr::from([10, 0, 0, 99]);
    let mut multicast = v4();
    multicast.server = IpAddr::from([224, 0, 0, 251]);
    let mut mcast6 = v6();
    mcast6.server = "ff02::fb".parse().unwrap();
    let mut other_port = v4();
    other_port.dport = 5353;
    let mut chaos = q("www.example.test.", RecordType::A);
    chaos.qclass = DNSClass::CH;

    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&frames::CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);

    vec![
        pass("ARP", arp, Outcome::NotIp),
        // BPF_PROG_TEST_RUN refuses frames under 14 octets, so the shortest runt is an
        // Ethernet header announcing IPv4 with nothing behind it.
        pass(
            "runt: IPv4 ethertype, no IP header",
            plain()[..14].to_vec(),
            Outcome::NotIp,
        ),
        pass(
            "runt: half an IPv6 header",
            frames::query(&v6(), &www().bytes())[..30].to_vec(),
            Outcome::NotIp,
        ),
        pass(
            "runt: no UDP header",
            plain()[..14 + 20 + 4].to_vec(),
            Outcome::Malformed,
        ),
        pass(
            "IPv4 version field wrong",
            raw(plain(), |f| f[14] = 0x65),
            Outcome::NotIp,
        ),
        pass(
            "IPv4 options",
            raw(plain(), |f| f[14] = 0x46),
            Outcome::IpOptions,
        ),
        pass(
            "IPv6 hop-by-hop header",
            raw(frames::query(&v6(), &www().bytes()), |f| f[14 + 6] = 0),
            Outcome::IpOptions,
        ),
        pass(
            "IPv4 more fragments",
            raw(plain(), |f| f[14 + 6] |= 0x20),
            Outcome::Fragment,
        ),
        pass(
            "IPv4 fragment offset",
            raw(plain(), |f| f[14 + 7] = 1),
            Outcome::Fragment,
        ),
        pass("TCP", raw(plain(), |f| f[14 + 9] = 6), Outcome::NotUdp),
        pass(
            "other port",
            frames::query(&other_port, &www().bytes()),
            Outcome::OtherPort,
        ),
        pass(
            "not our address",
            frames::query(&other_addr, &www().bytes()),
            Outcome::OtherAddress,
        ),
        pass(
            "IPv4 multicast destination",
            frames::query(&multicast, &www().bytes()),
            Outcome::OtherAddress,
        ),
        pass(
            "IPv6 multicast destination",
            frames::query(&mcast6, &www().bytes()),
            Outcome::OtherAddress,
        ),
        pass(
            "UDP length disagrees with IP",
            raw(plain(), |f| f[14 + 20 + 5] += 1),
            Outcome::Malformed,
        ),
        pass(
            "IP length beyond the frame",
            raw(plain(), |f| f[14 + 3] += 10),
            Outcome::Malformed,
        ),
        pass(
            "frame truncated inside the question",
            raw(plain(), |f| {
                let n = f.len();
                f.truncate(n - 8);
            }),
            Outcome::Malformed,
        ),
        // The layout puts the name's end where the message ends; its last octet is then
        // not the root label.
        pass(
            "name truncated (message ends inside it)",
            edited(v4(), &www(), |d| {
                d.truncate(12 + 9);
            }),
            Outcome::BadName,
        ),
        pass(
            "QR set",
            edited(v4(), &www(), |d| d[2] |= 0x80),
            Outcome::NotQuery,
        ),
        pass(
            "opcode NOTIFY",
            edited(v4(), &www(), |d| d[2] |= 4 << 3),
            Outcome::NotQuery,
        ),
        pass(
            "TC set",
            edited(v4(), &www(), |d| d[2] |= 0x02),
            Outcome::NotQuery,
        ),
        pass(
            "QDCOUNT 2",
            edited(v4(), &www(), |d| d[5] = 2),
            Outcome::NotQuery,
        ),
        pass(
            "QDCOUNT 0",
            edited(v4(), &www(), |d| d[5] = 0),
            Outcome::NotQuery,
        ),
        pass(
            "ANCOUNT 1",
            edited(v4(), &www(), |d| d[7] = 1),
            Outcome::NotQuery,
        ),
        pass(
            "NSCOUNT 1",
            edited(v4(), &www(), |d| d[9] = 1),
            Outcome::NotQuery,
        ),
        pass(
            "ARCOUNT 2",
            edited(v4(), &www().edns(1232, false), |d| d[11] = 2),
            Outcome::NotQuery,
        ),
        pass(
            "compression pointer in the question",
            edited(v4(), &www(), |d| {
                // \x03www then a pointer to offset 12.
                d.truncate(12 + 4);
                d.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
            }),
            Outcome::BadName,
        ),
        // Not walked: the name confirmation against the stored names rejects it.
        pass(
            "label longer than 63",
            edited(v4(), &www(), |d| d[12] = 64),
            Outcome::Miss,
        ),
        pass(
            "name longer than 255 octets",
            {
                let mut d = www().bytes();
                d.truncate(12);
                for _ in 0..4 {
                    d.push(63);
                    d.extend(std::iter::repeat_n(b'x', 63));
                }
                d.extend_from_slice(&[0, 0, 1, 0, 1]);
                frames::query(&v4(), &d)
            },
            Outcome::BadName,
        ),
        pass(
            "class CH",
            frames::query(&v4(), &chaos.bytes()),
            Outcome::Qclass,
        ),
        pass(
            "qtype MX",
            frames::query(&v4(), &q("www.example.test.", RecordType::MX).bytes()),
            Outcome::Qtype,
        ),
        pass(
            "qtype ANY",
            frames::query(&v4(), &q("www.example.test.", RecordType::ANY).bytes()),
            Outcome::Qtype,
        ),
        pass(
            "EDNS version 1",
            edited(v4(), &www().edns(1232, false), |d| {
                let n = d.len();
                d[n - 5] = 1;
            }),
            Outcome::Edns,
        ),
        pass(
            "EDNS cookie option",
            {
                let mut m = www().edns(1232, false).message();
                let mut e = m.edns.clone().unwrap();
                e.options_mut()
                    .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
                m.set_edns(e);
                frames::query(&v4(), &m.to_bytes().unwrap())
            },
            Outcome::Edns,
        ),
        // The last 11 octets look like a plain OPT record; the layout then puts the name's
        // end where its last octet is not the root label.
        pass(
            "OPT with a non-root owner",
            edited(v4(), &www(), |d| {
                d[11] = 1;
                d.extend_from_slice(&[1, b'x', 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
            }),
            Outcome::BadName,
        ),
        pass(
            "additional record that is not OPT",
            edited(v4(), &www(), |d| {
                d[11] = 1;
                // root A record: 0, type 1, class 1, ttl 0, rdlen 0 (11 octets like an OPT)
                d.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
            }),
            Outcome::Edns,
        ),
        pass(
            "trailing octets after the question",
            edited(v4(), &www(), |d| d.extend_from_slice(&[0, 0])),
            Outcome::BadName,
        ),
        pass(
            "unknown name",
            frames::query(&v4(), &q("nope.example.test.", RecordType::A).bytes()),
            Outcome::Miss,
        ),
        pass(
            "A pool queried for AAAA",
            frames::query(&v4(), &q("www.example.test.", RecordType::AAAA).bytes()),
            Outcome::Miss,
        ),
        pass(
            "name is a suffix of a pool name",
            frames::query(&v4(), &q("example.test.", RecordType::A).bytes()),
            Outcome::Miss,
        ),
        pass(
            "a prefix of a pool name",
            frames::query(
                &v4(),
                &q("sharedprefix.example.test.", RecordType::A).bytes(),
            ),
            Outcome::Miss,
        ),
        pass(
            "shares two words with pool names, differs in the last",
            frames::query(
                &v4(),
                &q("sharedprefixes16.c.example.test.", RecordType::A).bytes(),
            ),
            Outcome::Miss,
        ),
        pass(
            "IPv6 query without a UDP checksum",
            with_udp_checksum(hit("", v6(), www(), "www.example.test."), |_| [0, 0]).frame,
            Outcome::BadChecksum,
        ),
        pass(
            "IPv4 query with a wrong UDP checksum",
            raw(plain(), |f| f[14 + 20 + 6] ^= 0x40),
            Outcome::BadChecksum,
        ),
        // Found by the kernel frame fuzzer: the header checksum is updated incrementally,
        // so the reply carried the query's wrong one.
        pass(
            "IPv4 query with a wrong header checksum",
            raw(plain(), |f| f[14 + 10] ^= 0x01),
            Outcome::BadChecksum,
        ),
        pass(
            "IPv4 query with a flag bit set after its header checksum",
            raw(plain(), |f| f[14 + 6] |= 0x80),
            Outcome::BadChecksum,
        ),
        pass(
            "IPv6 query with a wrong UDP checksum",
            raw(frames::query(&v6(), &www().bytes()), |f| {
                f[14 + 40 + 7] ^= 1
            }),
            Outcome::BadChecksum,
        ),
        pass(
            "response over 512 octets without EDNS",
            frames::query(&v4(), &q(&max_name(), RecordType::A).bytes()),
            Outcome::TooBig,
        ),
    ]
}

/// The daemon's own answer path (zone example.test. plus the same pools), to hold every
/// XDP reply against.
fn daemon_authority() -> Authority {
    daemon_authority_with(Arc::new(PoolTable::new(pools())))
}

fn daemon_authority_with(table: Arc<PoolTable>) -> Authority {
    let dir = std::env::temp_dir().join(format!("hotpool-packets-{}", std::process::id()));
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
    let authority = cfg.authority(table);
    let _ = std::fs::remove_dir_all(&dir);
    authority
}

fn run_table(cases: Vec<Case>) {
    run_table_with(&settings(), cases, Outcome::Hit);
}

/// Runs `cases` with `settings`; an `XDP_TX` must count as `hit_outcome`.
fn run_table_with(settings: &DatapathSettings, cases: Vec<Case>, hit_outcome: Outcome) {
    let authority = daemon_authority();
    let mut t = TestDatapath::new(settings, &pools());
    let mut failures = Vec::new();
    for case in cases {
        let before = t.stats();
        let (action, out) = t.run(&case.frame);
        let after = t.stats();
        let outcome = single_outcome(&before, &after);
        match &case.expect {
            Expect::Tx(want) => {
                if action != XDP_TX || outcome != hit_outcome {
                    failures.push(format!(
                        "{}: action {action}, outcome {outcome:?}",
                        case.name
                    ));
                    continue;
                }
                // Checksums verified independently, and the reply decodes.
                let payload = frames::udp_payload(&out);
                let got = Message::from_bytes(&payload)
                    .unwrap_or_else(|e| panic!("{}: reply does not decode: {e}", case.name));
                let expected = Message::from_bytes(&frames::udp_payload(want)).unwrap();
                // The daemon answers the same query with the same bytes.
                let query = frames::udp_payload_unchecked(&case.frame);
                let daemon = authority
                    .respond(&Request::new(&query, CLIENT, Transport::Udp))
                    .unwrap_or_else(|| panic!("{}: the daemon does not answer", case.name));
                if daemon != payload {
                    failures.push(format!(
                        "{}: daemon and XDP differ\n  xdp: {got:?}\ndaemon: {:?}",
                        case.name,
                        Message::from_bytes(&daemon)
                    ));
                } else if got != expected {
                    failures.push(format!(
                        "{}: reply differs\n got: {got:?}\nwant: {expected:?}",
                        case.name
                    ));
                } else if &out != want {
                    failures.push(format!(
                        "{}: frame differs\n got: {out:02x?}\nwant: {want:02x?}",
                        case.name
                    ));
                }
            }
            Expect::Pass(reason) => {
                if action != XDP_PASS || outcome != *reason {
                    failures.push(format!(
                        "{}: action {action}, outcome {outcome:?}, expected XDP_PASS {reason:?}",
                        case.name
                    ));
                } else if out != case.frame {
                    failures.push(format!("{}: passed frame was modified", case.name));
                }
            }
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
fn hits_are_answered_with_the_exact_frame() {
    run_table(hit_cases());
}

#[test]
fn everything_else_is_passed_unchanged_with_its_reason() {
    run_table(pass_cases());
}

/// Every hit again with the reply grown into the frame's headroom (headers and question
/// moved forward), as when a driver leaves no tailroom; answers longer than the headroom
/// growth take the rest from the tail. The frames must be the same.
#[test]
fn replies_grown_into_the_headroom_are_the_same_frames() {
    let mut s = settings();
    s.prefer_headroom = true;
    run_table_with(&s, hit_cases(), Outcome::HitHeadroom);
}

/// A reply the frame can grow for neither at its tail nor into its headroom is passed to
/// the daemon, counted as `grow_failed`. Metadata shrinks the headroom below what a 224-octet
/// answer takes from it; the tail is not tried when growing into the headroom is preferred.
#[test]
fn a_reply_without_room_is_passed_and_counted() {
    let query = q("big.example.test.", RecordType::AAAA).edns(1232, false);
    let frame = frames::query(&v4(), &query.bytes());
    let mut s = settings();
    s.prefer_headroom = true;
    let mut t = TestDatapath::new(&s, &pools());
    let before = t.stats();
    let (action, out) = t.run_with_metadata(&frame, 32);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::GrowFailed);
    assert_eq!((action, &out), (XDP_PASS, &frame), "passed unchanged");

    // With the same metadata a small answer still fits into the headroom, and without the
    // preference the big one grows at the tail.
    let small = frames::query(&v4(), &q("www.example.test.", RecordType::A).bytes());
    let before = t.stats();
    let (action, _) = t.run_with_metadata(&small, 32);
    assert_eq!(action, XDP_TX);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::HitHeadroom);
    t.dp.maps.configure(&settings(), true).unwrap();
    let before = t.stats();
    let (action, out) = t.run_with_metadata(&frame, 32);
    assert_eq!(action, XDP_TX);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Hit);
    let expected = query.expected_reply(pool("big.example.test.").records(&query.qname()));
    assert_eq!(out, frames::response(&v4(), &expected.to_bytes().unwrap()));
}

/// An index entry whose tag matches the query's hash but points at another pool: the name
/// confirmation rejects it and the query is passed (counted as a collision), never
/// answered with the other pool's records. A sync rebuilds the index.
#[test]
fn a_colliding_tag_is_passed_never_answered_with_another_pool() {
    use dns_common::{name::FoldedName, tag};

    let mut t = TestDatapath::new(&settings(), &pools());
    let name = |s: &str| Name::from_str(s).unwrap();
    let hash = |key, n: &Name| FoldedName::new(&n.to_bytes().unwrap()).unwrap().hash(key);
    let (key, _, www_pool) = t.dp.maps.locate(&name("www.example.test.")).unwrap();

    // A name that is no pool, entered under its own tag with www's pool.
    let stranger = name("collide.example.test.");
    let (_, at, _) = t.dp.maps.locate(&stranger).unwrap();
    let mut bucket = t.dp.maps.bucket(at).unwrap();
    let free = bucket.tags.iter().position(|&t| t == 0).unwrap();
    bucket.tags[free] = tag(hash(&key, &stranger));
    bucket.pools[free] = www_pool;
    t.dp.maps.write_bucket(at, bucket).unwrap();
    let frame = frames::query(&v4(), &q("collide.example.test.", RecordType::A).bytes());
    let before = t.stats();
    let (action, out) = t.run(&frame);
    assert_eq!((action, &out), (XDP_PASS, &frame), "passed unchanged");
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Collision);

    // A pool's own name, with www's pool entered under the same tag ahead of its entry
    // (the kernel takes the first matching tag).
    let v6name = name("v6.example.test.");
    let (_, at, _) = t.dp.maps.locate(&v6name).unwrap();
    let mut bucket = t.dp.maps.bucket(at).unwrap();
    bucket.tags.rotate_right(1);
    bucket.pools.rotate_right(1);
    assert_eq!(bucket.tags[0], 0, "room at the front of the bucket");
    bucket.tags[0] = tag(hash(&key, &v6name));
    bucket.pools[0] = www_pool;
    t.dp.maps.write_bucket(at, bucket).unwrap();
    let frame = frames::query(&v6(), &q("v6.example.test.", RecordType::AAAA).bytes());
    let before = t.stats();
    let (action, out) = t.run(&frame);
    assert_eq!((action, &out), (XDP_PASS, &frame), "passed unchanged");
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Collision);

    // Rebuilt: both answered as before (the stranger is a miss again).
    t.dp.maps.sync(&pools()).unwrap();
    let (action, _) = t.run(&frame);
    assert_eq!(action, XDP_TX);
    let stranger_frame = frames::query(&v4(), &q("collide.example.test.", RecordType::A).bytes());
    let before = t.stats();
    t.run(&stranger_frame);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Miss);
}

#[test]
fn disabled_datapath_passes_everything() {
    let mut t = TestDatapath::new(&settings(), &pools());
    t.dp.maps.configure(&settings(), false).unwrap();
    let frame = frames::query(&v4(), &q("www.example.test.", RecordType::A).bytes());
    let before = t.stats();
    let (action, out) = t.run(&frame);
    assert_eq!(action, XDP_PASS);
    assert_eq!(out, frame);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Disabled);
}

#[test]
fn wildcard_listen_answers_any_unicast_address() {
    let mut s = settings();
    s.listen = vec!["0.0.0.0".parse().unwrap()];
    let mut t = TestDatapath::new(&s, &pools());
    let mut path = v4();
    path.server = IpAddr::from([198, 51, 100, 7]);
    let (action, _) = t.run(&frames::query(
        &path,
        &q("www.example.test.", RecordType::A).bytes(),
    ));
    assert_eq!(action, XDP_TX);
    // IPv6 is not wildcarded and fd00::2 is not listed any more.
    let (action, _) = t.run(&frames::query(
        &v6(),
        &q("www.example.test.", RecordType::A).bytes(),
    ));
    assert_eq!(action, XDP_PASS);
}

/// Up to four addresses per family are compared inline; more are looked up in the
/// LISTEN_ADDRS map. Either way every listed address is answered and no other.
#[test]
fn listen_addresses_inline_and_in_the_map() {
    for n in [1u8, 4, 5, 9] {
        let mut s = settings();
        s.listen = (0..n)
            .map(|i| IpAddr::from([10, 0, 0, 2 + i]))
            .chain((0..n).map(|i| {
                IpAddr::from(
                    format!("fd00::{}", 2 + i)
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap(),
                )
            }))
            .collect();
        let mut t = TestDatapath::new(&s, &pools());
        let www = q("www.example.test.", RecordType::A).bytes();
        for i in [0, n - 1] {
            let mut p4 = v4();
            p4.server = IpAddr::from([10, 0, 0, 2 + i]);
            let mut p6 = v6();
            p6.server = format!("fd00::{}", 2 + i).parse().unwrap();
            for p in [p4, p6] {
                let (action, _) = t.run(&frames::query(&p, &www));
                assert_eq!(action, XDP_TX, "{n} addresses: {} is answered", p.server);
            }
        }
        let mut other = v4();
        other.server = IpAddr::from([10, 0, 0, 2 + n]);
        let mut other6 = v6();
        other6.server = format!("fd00::{}", 2 + n).parse().unwrap();
        for p in [other, other6] {
            let before = t.stats();
            let (action, _) = t.run(&frames::query(&p, &www));
            assert_eq!(action, XDP_PASS, "{n} addresses: {} is not ours", p.server);
            assert_eq!(single_outcome(&before, &t.stats()), Outcome::OtherAddress);
        }
    }
}

#[test]
fn republished_answer_is_served_and_removed_pools_miss() {
    let mut t = TestDatapath::new(&settings(), &pools());
    let query = q("www.example.test.", RecordType::A);
    let frame = frames::query(&v4(), &query.bytes());
    let mut p = pool("www.example.test.");
    p.rdata = vec![RData::A(A("198.51.100.1".parse().unwrap()))];
    t.dp.maps.publish(&p).unwrap();
    let (set, answers) = t.dp.maps.published(&p.name).expect("published");
    assert_eq!((set.n_variants, answers.len()), (1, 1));
    assert_eq!(answers[0].ancount, [0, 1]);
    let (action, out) = t.run(&frame);
    assert_eq!(action, XDP_TX);
    let got = Message::from_bytes(&frames::udp_payload(&out)).unwrap();
    assert_eq!(got.answers, p.records(&query.qname()));

    // Sync without the pool: its names are removed from the kernel.
    let rest: Vec<PoolAnswer> = pools().into_iter().filter(|x| x.name != p.name).collect();
    t.dp.maps.sync(&rest).unwrap();
    assert!(t.dp.maps.published(&p.name).is_none());
    let before = t.stats();
    let (action, _) = t.run(&frame);
    assert_eq!(action, XDP_PASS);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Miss);
}

/// A weighted pool: the kernel picks one record per query with `bpf_get_prandom_u32`, in
/// proportion to the weights.
#[test]
fn weighted_pool_is_answered_per_query_in_proportion() {
    let mut t = TestDatapath::new(&settings(), &pools());
    let mut p = pool("www.example.test.");
    p.rdata = vec![
        RData::A(A("192.0.2.1".parse().unwrap())),
        RData::A(A("192.0.2.2".parse().unwrap())),
        RData::A(A("192.0.2.3".parse().unwrap())),
    ];
    p.selection = hotpool::datapath::pools::Selection::weighted(vec![1, 2, 5]);
    t.dp.maps.publish(&p).unwrap();
    let frame = frames::query(&v4(), &q("www.example.test.", RecordType::A).bytes());
    let n = 16_000usize;
    let mut counts = [0usize; 3];
    for _ in 0..n {
        let (action, out) = t.run(&frame);
        assert_eq!(action, XDP_TX);
        let m = Message::from_bytes(&frames::udp_payload(&out)).unwrap();
        assert_eq!(m.answers.len(), 1, "one record per weighted answer");
        let i = p
            .rdata
            .iter()
            .position(|d| *d == m.answers[0].data)
            .expect("one of the pool's records");
        counts[i] += 1;
    }
    // Expected n * w / 8; allow 5 standard deviations of the binomial.
    for (i, w) in [1usize, 2, 5].into_iter().enumerate() {
        let p = w as f64 / 8.0;
        let expected = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (counts[i] as f64 - expected).abs() <= 5.0 * sd,
            "record {i} (weight {w}): {} of {n}, expected {expected:.0} ± {:.0}",
            counts[i],
            5.0 * sd
        );
    }
}

/// A SERVFAIL pool has no kernel answer: the query is passed and the daemon answers
/// SERVFAIL.
#[test]
fn servfail_pool_is_passed_to_the_daemon() {
    let mut t = TestDatapath::new(&settings(), &pools());
    let mut p = pool("www.example.test.");
    p.rdata.clear();
    p.selection = hotpool::datapath::pools::Selection::Servfail;
    t.dp.maps.publish(&p).unwrap();
    let frame = frames::query(&v4(), &q("www.example.test.", RecordType::A).bytes());
    let before = t.stats();
    let (action, out) = t.run(&frame);
    assert_eq!(action, XDP_PASS);
    assert_eq!(out, frame);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::NoAnswer);

    let table = Arc::new(PoolTable::new(pools()));
    table.set(p);
    let authority = daemon_authority_with(table);
    let reply = authority
        .respond(&Request::new(
            &frames::udp_payload(&frame),
            CLIENT,
            Transport::Udp,
        ))
        .unwrap();
    let m = Message::from_bytes(&reply).unwrap();
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::ServFail
    );
}

/// Issue 10's acceptance rules: frames the stack would drop, and sources a reply would
/// reflect to, are passed unchanged (the daemon applies the same rules), each counted under
/// its reason. Every frame asks for a hot name the kernel would otherwise answer.
fn rejected_cases() -> Vec<Case> {
    let www = || q("www.example.test.", RecordType::A).bytes();
    let from = |client: &str| {
        let mut p = if client.contains(':') { v6() } else { v4() };
        p.client = client.parse().unwrap();
        frames::query(&p, &www())
    };
    let from_port = |port: u16| {
        let mut p = v4();
        p.sport = port;
        frames::query(&p, &www())
    };
    let to_mac = |mac: [u8; 6]| frames::udp_frame(&v4(), frames::CLIENT_MAC, mac, 64, &www());
    vec![
        pass("broadcast MAC", to_mac([0xff; 6]), Outcome::ForeignMac),
        pass(
            "IPv4 multicast MAC",
            to_mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]),
            Outcome::ForeignMac,
        ),
        pass(
            "another host's MAC",
            to_mac([0x02, 0, 0, 0, 0, 0x99]),
            Outcome::ForeignMac,
        ),
        pass(
            "source 127.0.0.1",
            from("127.0.0.1"),
            Outcome::LoopbackSource,
        ),
        pass(
            "source 127.1.2.3",
            from("127.1.2.3"),
            Outcome::LoopbackSource,
        ),
        pass("source ::1", from("::1"), Outcome::LoopbackSource),
        pass("our own address", from("10.0.0.2"), Outcome::OwnSource),
        pass("our own IPv6 address", from("fd00::2"), Outcome::OwnSource),
        pass(
            "our own address, IPv4-mapped",
            from("::ffff:10.0.0.2"),
            Outcome::OwnSource,
        ),
        pass(
            "limited broadcast",
            from("255.255.255.255"),
            Outcome::BroadcastSource,
        ),
        pass(
            "our subnet's broadcast",
            from("10.0.0.255"),
            Outcome::BroadcastSource,
        ),
        pass(
            "IPv4 multicast",
            from("224.0.0.251"),
            Outcome::MulticastSource,
        ),
        pass("IPv6 multicast", from("ff02::fb"), Outcome::MulticastSource),
        pass("0.0.0.0", from("0.0.0.0"), Outcome::UnspecifiedSource),
        pass("0.1.2.3", from("0.1.2.3"), Outcome::UnspecifiedSource),
        pass("::", from("::"), Outcome::UnspecifiedSource),
        pass("source port 0", from_port(0), Outcome::SourcePort),
        pass("source port 7 (echo)", from_port(7), Outcome::SourcePort),
        pass(
            "source port 19 (chargen)",
            from_port(19),
            Outcome::SourcePort,
        ),
        pass("source port 123 (NTP)", from_port(123), Outcome::SourcePort),
        pass(
            "source port 11211 (memcached)",
            from_port(11211),
            Outcome::SourcePort,
        ),
    ]
}

#[test]
fn rejected_sources_and_foreign_frames_are_passed_with_their_reason() {
    run_table(rejected_cases());
}

/// The acceptance rules' local-client exception: on an interface the daemon described as
/// loopback, loopback and own sources are answered (a process on this host asking);
/// broadcast sources and reflection ports still are not. An interface without a
/// description gets no answers at all.
#[test]
fn loopback_interfaces_answer_local_clients_only() {
    use hotpool::datapath::iface::Link;

    let mut t = TestDatapath::new(&settings(), &pools());
    let link = hotpool_tests::datapath::test_run_link();
    t.dp.maps
        .set_interface(&Link {
            loopback: true,
            ..link
        })
        .unwrap();
    let query = q("www.example.test.", RecordType::A);
    let records = pool("www.example.test.").records(&query.qname());
    let reply = query.expected_reply(records).to_bytes().unwrap();
    for client in ["127.0.0.1", "10.0.0.2"] {
        let mut p = v4();
        p.client = client.parse().unwrap();
        let before = t.stats();
        let (action, out) = t.run(&frames::query(&p, &query.bytes()));
        assert_eq!(
            single_outcome(&before, &t.stats()),
            Outcome::Hit,
            "{client}"
        );
        assert_eq!(action, XDP_TX, "{client}");
        assert_eq!(out, frames::response(&p, &reply), "{client}");
    }
    for (client, port, outcome) in [
        ("10.0.0.255", frames::CLIENT_PORT, Outcome::BroadcastSource),
        ("127.0.0.1", 19, Outcome::SourcePort),
    ] {
        let mut p = v4();
        p.client = client.parse().unwrap();
        p.sport = port;
        let frame = frames::query(&p, &query.bytes());
        let before = t.stats();
        let (action, out) = t.run(&frame);
        assert_eq!(
            single_outcome(&before, &t.stats()),
            outcome,
            "{client}:{port}"
        );
        assert_eq!((action, &out), (XDP_PASS, &frame), "{client}:{port}");
    }

    t.dp.maps.remove_interface(link.index).unwrap();
    let frame = frames::query(&v4(), &query.bytes());
    let before = t.stats();
    let (action, out) = t.run(&frame);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::ForeignMac);
    assert_eq!((action, &out), (XDP_PASS, &frame));
}

/// The inline lookups' overflow paths: more own addresses in one `LOCAL_SET` bucket than it
/// holds are still found (in `LOCAL_ADDRS`, where the bucket says it spilled), a client
/// whose address falls in that bucket is still answered, and a second interface sharing
/// the test interface's `IFACE_SLOTS` slot leaves it answering; once the test interface is
/// gone, that slot no longer matches it.
#[test]
fn own_addresses_and_interfaces_beyond_the_inline_room() {
    use dns_common::local::{LOCAL_BUCKET_ENTRIES, addr_words, local_bucket};
    use hotpool::datapath::iface::Link;

    let mut t = TestDatapath::new(&settings(), &pools());
    let bucket_of = |a: Ipv4Addr| local_bucket(addr_words(&dns_common::v4_mapped(a.octets())));
    let target = bucket_of(Ipv4Addr::new(10, 0, 0, 2));
    let same: Vec<Ipv4Addr> = (0..=u16::MAX)
        .map(|i| Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8))
        .filter(|&a| bucket_of(a) == target)
        .take(LOCAL_BUCKET_ENTRIES + 3)
        .collect();
    assert_eq!(
        same.len(),
        LOCAL_BUCKET_ENTRIES + 3,
        "addresses sharing a bucket"
    );
    let (stranger, own) = same.split_last().unwrap();
    let mut entries = hotpool_tests::datapath::local_addrs(&settings()).kernel_entries();
    for a in own {
        entries.insert(dns_common::v4_mapped(a.octets()), dns_common::LOCAL_OWN);
    }
    t.dp.maps.set_local_addrs(&entries).unwrap();

    let query = q("www.example.test.", RecordType::A);
    let records = pool("www.example.test.").records(&query.qname());
    let reply = query.expected_reply(records).to_bytes().unwrap();
    let ask = |t: &mut TestDatapath, client: Ipv4Addr| {
        let mut p = v4();
        p.client = IpAddr::V4(client);
        let frame = frames::query(&p, &query.bytes());
        let before = t.stats();
        let (action, out) = t.run(&frame);
        (single_outcome(&before, &t.stats()), action, out, frame, p)
    };
    for &a in own.iter().chain([&Ipv4Addr::new(10, 0, 0, 2)]) {
        let (outcome, action, out, frame, _) = ask(&mut t, a);
        assert_eq!(outcome, Outcome::OwnSource, "{a}");
        assert_eq!((action, &out), (XDP_PASS, &frame), "{a}");
    }
    let (outcome, action, out, _, p) = ask(&mut t, *stranger);
    assert_eq!(
        outcome,
        Outcome::Hit,
        "{stranger} shares the bucket, is not ours"
    );
    assert_eq!((action, out), (XDP_TX, frames::response(&p, &reply)));

    // The addresses gone again: answered.
    t.dp.maps
        .set_local_addrs(&hotpool_tests::datapath::local_addrs(&settings()).kernel_entries())
        .unwrap();
    let (outcome, action, _, _, _) = ask(&mut t, own[LOCAL_BUCKET_ENTRIES]);
    assert_eq!((outcome, action), (Outcome::Hit, XDP_TX));

    // Another interface in the test interface's slot (indexes 1 and 65 of 64 slots).
    let link = hotpool_tests::datapath::test_run_link();
    let other = Link {
        index: link.index + dns_common::local::IFACE_SLOTS,
        mac: [0x02, 0, 0, 0, 0, 0x65],
        loopback: false,
    };
    t.dp.maps.set_interface(&other).unwrap();
    let client = Ipv4Addr::new(10, 0, 0, 1);
    let (outcome, action, _, _, _) = ask(&mut t, client);
    assert_eq!((outcome, action), (Outcome::Hit, XDP_TX));
    t.dp.maps.remove_interface(link.index).unwrap();
    let (outcome, action, _, _, _) = ask(&mut t, client);
    assert_eq!((outcome, action), (Outcome::ForeignMac, XDP_PASS));
    t.dp.maps.set_interface(&link).unwrap();
    t.dp.maps.remove_interface(other.index).unwrap();
    let (outcome, action, _, _, _) = ask(&mut t, client);
    assert_eq!((outcome, action), (Outcome::Hit, XDP_TX));
}

/// Response rate limiting of hits, through BPF_PROG_TEST_RUN: a burst from one /24 gets the
/// bucket's depth of answers, then its limited answers alternate dropped (`XDP_DROP`) and
/// slipped (`slip = 2`: a truncated reply, TC=1, no records, OPT echoed); another /24 is
/// answered meanwhile, and an exempt network is never limited. One answer a second refills
/// the bucket, so a slow run may see one more answer per second it took, never another
/// slip pattern.
#[test]
fn a_burst_from_one_network_is_limited_with_slip() {
    let mut s = settings();
    s.rrl = hotpool::dns::rrl::RrlSettings {
        responses_per_second: 1,
        window: 5,
        slip: 2,
        exempt_clients: vec!["10.9.0.0/16".parse().unwrap()],
        ..Default::default()
    }
    .kernel();
    let mut t = TestDatapath::new(&s, &pools());
    let query = q("www.example.test.", RecordType::A).rd().edns(4096, true);
    let records = pool("www.example.test.").records(&query.qname());
    let full = query.expected_reply(records).to_bytes().unwrap();
    let mut slipped = query.expected_reply(Vec::new());
    slipped.metadata.truncation = true;
    let slipped = slipped.to_bytes().unwrap();

    let started = std::time::Instant::now();
    let mut limited = Vec::new();
    let mut answered = 0;
    for i in 0..40u8 {
        // Every host of 10.0.0.0/24 but ours and the broadcast address: one network.
        let mut p = v4();
        p.client = IpAddr::from([10, 0, 0, 10 + i]);
        let before = t.stats();
        let (action, out) = t.run(&frames::query(&p, &query.bytes()));
        match single_outcome(&before, &t.stats()) {
            Outcome::Hit => {
                assert_eq!(action, XDP_TX, "query {i}");
                assert_eq!(out, frames::response(&p, &full), "query {i}");
                answered += 1;
            }
            Outcome::RrlSlipped => {
                assert_eq!(action, XDP_TX, "query {i}");
                let payload = frames::udp_payload(&out);
                let m = Message::from_bytes(&payload).expect("the slipped reply decodes");
                assert!(m.metadata.truncation, "TC=1");
                assert!(m.answers.is_empty(), "no records");
                assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_SIZE));
                assert_eq!(out, frames::response(&p, &slipped), "query {i}");
                limited.push(Outcome::RrlSlipped);
            }
            Outcome::RrlDropped => {
                assert_eq!(action, hotpool_tests::datapath::XDP_DROP, "query {i}");
                limited.push(Outcome::RrlDropped);
            }
            other => panic!("query {i}: {other:?}"),
        }
    }
    let slack = started.elapsed().as_secs() as usize + 1;
    assert!(
        (5..=5 + slack).contains(&answered),
        "{answered} answered, the bucket holds 5"
    );
    for (n, o) in limited.iter().enumerate() {
        let want = if n % 2 == 0 {
            Outcome::RrlDropped
        } else {
            Outcome::RrlSlipped
        };
        assert_eq!(*o, want, "limited answer {n} of {limited:?}");
    }

    // Another network is answered while the first is limited; an exempt one always.
    for (client, n) in [([10, 0, 1, 1], 3), ([10, 9, 3, 4], 40)] {
        let mut p = v4();
        p.client = IpAddr::from(client);
        for _ in 0..n {
            let before = t.stats();
            let (action, out) = t.run(&frames::query(&p, &query.bytes()));
            assert_eq!(
                single_outcome(&before, &t.stats()),
                Outcome::Hit,
                "{client:?}"
            );
            assert_eq!((action, out), (XDP_TX, frames::response(&p, &full)));
        }
    }

    // Off again: everything is answered.
    t.dp.maps.configure(&settings(), true).unwrap();
    let before = t.stats();
    let (action, _) = t.run(&frames::query(&v4(), &query.bytes()));
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Hit);
    assert_eq!(action, XDP_TX);
}

/// Kernel replies never exceed min(the client's EDNS size, `edns_udp_size`) (issue 10,
/// `dns_common::size`): the 549-octet reply to a 255-octet name with a 255-octet CNAME
/// target is sent to a client that asks for 4096 octets, but not when we advertise 512
/// (`too_big`: the daemon truncates it); nor to a client without EDNS (512).
#[test]
fn replies_never_exceed_the_smaller_of_the_two_sizes() {
    let query = q(&max_name(), RecordType::A).edns(4096, false);
    let frame = frames::query(&v4(), &query.bytes());
    let records = pool(&max_name()).records(&query.qname());
    let reply = query.expected_reply(records).to_bytes().unwrap();
    assert!(reply.len() > 512, "{} octets", reply.len());

    let mut t = TestDatapath::new(&settings(), &pools());
    let before = t.stats();
    let (action, out) = t.run(&frame);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::Hit);
    assert_eq!((action, out), (XDP_TX, frames::response(&v4(), &reply)));

    let mut small = settings();
    small.edns_udp_size = 512;
    t.dp.maps.configure(&small, true).unwrap();
    let before = t.stats();
    let (action, out) = t.run(&frame);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::TooBig);
    assert_eq!((action, &out), (XDP_PASS, &frame), "passed unchanged");

    t.dp.maps.configure(&settings(), true).unwrap();
    let plain = frames::query(&v4(), &q(&max_name(), RecordType::A).bytes());
    let before = t.stats();
    let (action, out) = t.run(&plain);
    assert_eq!(single_outcome(&before, &t.stats()), Outcome::TooBig);
    assert_eq!((action, &out), (XDP_PASS, &plain));
}
