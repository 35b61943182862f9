//! The fixed zone and pools the answer target and the kernel frame fuzzer answer from: every
//! kind of answer the daemon gives (pools of each type, the longest name, zone data, CNAME
//! chains and loops, wildcards, a delegation with glue, empty non-terminals, answers too
//! big for 512, 1232 and 4096 octets, additional records that have to be dropped).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    str::FromStr,
    sync::{Arc, OnceLock},
};

use hickory_proto::rr::{
    Name, RData, RecordType,
    rdata::{A, AAAA, CNAME},
};
use hotpool::{
    datapath::pools::{PoolAnswer, PoolTable, Selection},
    dns::{
        authority::Authority,
        zone::{Zone, ZoneSettings},
    },
};

/// The zone's apex.
pub const ORIGIN: &str = "example.test.";

/// The UDP payload size the daemon advertises.
pub const EDNS_UDP_SIZE: u16 = 1232;

/// The zone file.
pub const ZONE: &str = r#"$ORIGIN example.test.
$TTL 3600
@        SOA   ns1 hostmaster 2024010101 7200 3600 1209600 300
@        NS    ns1
@        NS    ns2.example.net.
@        MX    10 mail
@        A     192.0.2.80
ns1      A     192.0.2.53
ns1      AAAA  2001:db8::53
mail     A     192.0.2.25
mail     AAAA  2001:db8::25
www      TXT   "pool name with a TXT"
www      AAAA  2001:db8::80
alias    CNAME www
poolalias CNAME v6
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
srv      SRV   0 5 443 mail
"#;

/// More zone data: TXT RRsets over 512, 1232 and 4096 octets, and an MX RRset whose
/// targets' addresses (optional additional records) do not fit 512 octets.
fn big_records() -> String {
    let mut text = String::new();
    for (owner, strings) in [("txt600", 3), ("txt1500", 7), ("txt5000", 22)] {
        for i in 0..strings {
            text.push_str(&format!("{owner} TXT \"{i:02}{}\"\n", "x".repeat(210)));
        }
    }
    for i in 0..12 {
        text.push_str(&format!("mx MX {i} host{i:02}.mx\n"));
        text.push_str(&format!("host{i:02}.mx A 192.0.2.{}\n", 100 + i));
        text.push_str(&format!("host{i:02}.mx AAAA 2001:db8::{:x}\n", 0x100 + i));
    }
    text
}

/// The zone file text.
pub fn zone_text() -> String {
    format!("{ZONE}{}", big_records())
}

/// A name of exactly 255 octets on the wire, ending in example.test.
pub fn longest_name() -> String {
    let l63 = "m".repeat(63);
    format!("{l63}.{l63}.{l63}.{}.{ORIGIN}", "n".repeat(48))
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn a(s: &str) -> RData {
    RData::A(A(
        Ipv4Addr::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    ))
}

fn aaaa(s: &str) -> RData {
    RData::AAAA(AAAA(
        Ipv6Addr::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}")),
    ))
}

fn pool(owner: &str, rtype: RecordType, ttl: u32, rdata: Vec<RData>) -> PoolAnswer {
    PoolAnswer {
        name: name(owner),
        rtype,
        ttl,
        rdata,
        selection: Selection::All,
        region: hotpool::geo::RegionId::DEFAULT,
    }
}

/// The pools, each answering every record in order: the answer path and the kernel answer
/// them the same way every time, so replies compare byte for byte.
pub fn pools() -> Vec<PoolAnswer> {
    let mut pools = vec![
        pool(
            "www.example.test.",
            RecordType::A,
            30,
            vec![a("192.0.2.10"), a("192.0.2.11")],
        ),
        pool(
            "v6.example.test.",
            RecordType::AAAA,
            60,
            vec![aaaa("2001:db8::10"), aaaa("2001:db8::11")],
        ),
        pool(
            "cdn.example.test.",
            RecordType::CNAME,
            300,
            vec![RData::CNAME(CNAME(name("edge.cdn-provider.example.net.")))],
        ),
        pool(
            "inzone.example.test.",
            RecordType::CNAME,
            300,
            vec![RData::CNAME(CNAME(name("mail.example.test.")))],
        ),
        pool(
            "big.example.test.",
            RecordType::AAAA,
            5,
            (0..8).map(|i| aaaa(&format!("2001:db8::{i}"))).collect(),
        ),
        pool(
            &longest_name(),
            RecordType::CNAME,
            10,
            vec![RData::CNAME(CNAME(name(&format!(
                "{}.{}.{}.{}.",
                "t".repeat(63),
                "t".repeat(63),
                "t".repeat(63),
                "u".repeat(61)
            ))))],
        ),
        pool(
            "p.q.example.test.",
            RecordType::A,
            30,
            vec![a("192.0.2.12")],
        ),
        pool(
            "in.wild.example.test.",
            RecordType::A,
            30,
            vec![a("192.0.2.13")],
        ),
    ];
    // All endpoints down with `all_down = "servfail"`: the kernel passes it, the daemon
    // answers SERVFAIL.
    pools.push(PoolAnswer {
        selection: Selection::Servfail,
        ..pool("down.example.test.", RecordType::A, 30, vec![])
    });
    // Names of 16 to 23 octets: every position of the root octet in the last 8-octet word.
    for n in 1..=8 {
        pools.push(pool(
            &format!("{}.{ORIGIN}", "l".repeat(n)),
            RecordType::A,
            30,
            vec![a(&format!("192.0.2.{}", 110 + n))],
        ));
    }
    pools
}

/// The names worth asking about: every pool, and zone names of every kind.
pub fn query_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(names)
}

/// The pools' names.
pub fn pool_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| pools().iter().map(|p| p.name.to_string()).collect())
}

fn names() -> Vec<String> {
    let mut names = pool_names().to_vec();
    names.extend(
        [
            "example.test.",
            "ns1",
            "mail",
            "alias",
            "poolalias",
            "chain1",
            "dangling",
            "outside",
            "loop1",
            "a.b.c",
            "b.c",
            "x.y.wild",
            "wild",
            "w.wcname",
            "sub",
            "deep.ns.sub",
            "srv",
            "txt600",
            "txt1500",
            "txt5000",
            "mx",
            "nope",
            "q",
            "x.p.q",
        ]
        .iter()
        .map(|n| {
            if n.ends_with('.') {
                n.to_string()
            } else {
                format!("{n}.{ORIGIN}")
            }
        }),
    );
    names.extend(["example.net.".to_string(), ".".to_string()]);
    names
}

/// The zone's settings (the file is never read: the text is given).
pub fn zone_settings() -> ZoneSettings {
    ZoneSettings {
        origin: name(ORIGIN),
        file: PathBuf::from("/nonexistent/hotpool-fuzz/example.test.zone"),
        soa: None,
        ns: vec![],
        ns_ttl: 3600,
    }
}

/// The zone.
pub fn zone() -> Zone {
    Zone::parse(&zone_settings(), &zone_text()).unwrap_or_else(|e| panic!("{e}"))
}

/// The answer path over the zone and the pools.
pub fn authority() -> Authority {
    Authority::new(
        vec![zone()],
        Arc::new(PoolTable::new(pools())),
        EDNS_UDP_SIZE,
    )
}

#[cfg(test)]
mod tests {
    use hickory_proto::serialize::binary::BinEncodable as _;

    use super::*;

    #[test]
    fn the_world_loads() {
        let z = zone();
        assert!(z.record_count() > 60, "{}", z.record_count());
        assert_eq!(name(&longest_name()).to_bytes().unwrap().len(), 255);
        for n in query_names() {
            Name::from_str(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }
}
