//! Valid inputs to start from: DNS queries of every kind, the repository's zone file and
//! config, and the tokens their formats are made of. The bounded runs mutate these; `cargo
//! xtask fuzz` writes them as the cargo-fuzz seed corpora (generated each run, not kept in
//! the repository).

use std::str::FromStr as _;

use hickory_proto::{
    op::{Edns, Message, OpCode, Query},
    rr::{DNSClass, Name, RecordType, rdata::opt::EdnsOption},
};

use crate::{rng::Rng, world};

/// The repository's example zone file and config.
pub const EXAMPLE_ZONE: &str = include_str!("../../../examples/zones/example.test.zone");
pub const EXAMPLE_CONFIG: &str = include_str!("../../../examples/hotpool.toml");

/// Query types worth asking for: those the kernel answers, other data types, meta types the
/// answer path refuses or rejects, and unknown ones.
pub const QTYPES: [u16; 19] = [
    1, 28, 5, 15, 16, 2, 6, 33, 12, 43, 48, 255, 252, 251, 253, 254, 41, 200, 65280,
];

/// EDNS in a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdnsSpec {
    pub udp_size: u16,
    pub dnssec_ok: bool,
    pub version: u8,
    /// Options as (code, data): cookies, client subnet, padding, unknown ones.
    pub options: Vec<(u16, Vec<u8>)>,
}

/// A query as a client sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySpec {
    /// Presentation form, absolute; its case is sent as written.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    pub ad: bool,
    pub edns: Option<EdnsSpec>,
}

impl QuerySpec {
    /// A plain query: class IN, no flags, no EDNS.
    pub fn new(name: &str, qtype: u16) -> Self {
        Self {
            name: name.to_string(),
            qtype,
            qclass: 1,
            id: 0xbeef,
            rd: false,
            cd: false,
            ad: false,
            edns: None,
        }
    }

    /// A random query about the world's names: mostly class IN and plain EDNS, in random
    /// case, with random flags.
    pub fn random(rng: &mut Rng) -> Self {
        let mut name = rng.pick(world::query_names()).clone();
        if rng.percent(50) {
            name = mixed_case(rng, &name);
        }
        let qtype = if rng.percent(60) {
            *rng.pick(&[1u16, 28, 5])
        } else {
            *rng.pick(&QTYPES)
        };
        let qclass = if rng.percent(90) {
            1
        } else {
            *rng.pick(&[3u16, 4, 254, 255, 0])
        };
        let edns = match rng.below(10) {
            0..=3 => None,
            4..=7 => Some(EdnsSpec {
                udp_size: *rng.pick(&[0u16, 511, 512, 600, 1232, 1400, 4096, 65535]),
                dnssec_ok: rng.percent(50),
                version: 0,
                options: vec![],
            }),
            _ => Some(EdnsSpec {
                udp_size: 1232,
                dnssec_ok: rng.percent(50),
                version: if rng.percent(30) { 1 } else { 0 },
                options: match rng.below(3) {
                    // A client cookie, a client subnet, an unknown option.
                    0 => vec![(10, (0..8).map(|_| rng.byte()).collect())],
                    // Client subnets the kernel answers (IPv4 /24, IPv6 /56) and ones it
                    // passes (SOURCE 0, IPv4 /32, IPv6 /64).
                    1 => {
                        let subnets: [&[u8]; 5] = [
                            &[0, 1, 24, 0, 198, 51, 100],
                            &[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 1, 2],
                            &[0, 1, 0, 0],
                            &[0, 1, 32, 0, 198, 51, 100, 7],
                            &[0, 2, 64, 0, 0x20, 1, 0xd, 0xb8, 0, 1, 2, 3],
                        ];
                        vec![(8, rng.pick(&subnets).to_vec())]
                    }
                    _ => vec![(65001, vec![rng.byte()])],
                },
            }),
        };
        Self {
            name,
            qtype,
            qclass,
            id: rng.next_u64() as u16,
            rd: rng.percent(50),
            cd: rng.percent(20),
            ad: rng.percent(10),
            edns,
        }
    }

    /// The message, encoded by hickory-proto.
    pub fn message(&self) -> Message {
        let mut m = Message::query();
        m.metadata.id = self.id;
        m.metadata.op_code = OpCode::Query;
        m.metadata.recursion_desired = self.rd;
        m.metadata.checking_disabled = self.cd;
        m.metadata.authentic_data = self.ad;
        let name = Name::from_str(&self.name).unwrap_or_else(|e| panic!("{}: {e}", self.name));
        let mut q = Query::query(name, RecordType::from(self.qtype));
        q.query_class = DNSClass::from(self.qclass);
        m.add_query(q);
        if let Some(spec) = &self.edns {
            let mut e = Edns::new();
            e.set_max_payload(spec.udp_size);
            e.set_dnssec_ok(spec.dnssec_ok);
            e.set_version(spec.version);
            for (code, data) in &spec.options {
                e.options_mut()
                    .insert(EdnsOption::Unknown(*code, data.clone()));
            }
            m.set_edns(e);
        }
        m
    }

    /// The message's octets.
    pub fn bytes(&self) -> Vec<u8> {
        self.message()
            .to_vec()
            .unwrap_or_else(|e| panic!("encoding {self:?}: {e}"))
    }
}

/// `name` with the case of some letters flipped (0x20 randomisation).
pub fn mixed_case(rng: &mut Rng, name: &str) -> String {
    name.chars()
        .map(|c| {
            if rng.percent(50) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// Query messages for the seed corpus: every world name with the kernel's types, plain
/// and with EDNS, and a spread of random ones; then messages hickory would not build
/// (header only, responses, other opcodes, two questions, a compression loop).
pub fn queries() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for name in world::query_names() {
        for qtype in [1u16, 28, 5, 255, 16] {
            let mut q = QuerySpec::new(name, qtype);
            out.push(q.bytes());
            q.edns = Some(EdnsSpec {
                udp_size: 1232,
                dnssec_ok: true,
                version: 0,
                options: vec![],
            });
            out.push(q.bytes());
        }
    }
    let mut rng = Rng::new(0x5eed);
    out.extend((0..200).map(|_| QuerySpec::random(&mut rng).bytes()));

    let www = QuerySpec::new("www.example.test.", 1).bytes();
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut m = www.clone();
        edit(&mut m);
        m
    };
    out.push(www[..12].to_vec());
    out.push(edited(&|m| m[2] |= 0x80));
    out.push(edited(&|m| m[2] |= 5 << 3));
    out.push(edited(&|m| m[2] |= 0x02));
    out.push(edited(&|m| {
        m[5] = 2;
        let question = m[12..].to_vec();
        m.extend(question);
    }));
    // The name is a pointer to itself.
    out.push(edited(&|m| {
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    }));
    out
}

/// Tokens of zone files, for mutation.
pub const ZONE_TOKENS: [&str; 32] = [
    "$ORIGIN ",
    "$TTL ",
    "$INCLUDE ",
    "@",
    "*",
    " IN ",
    " CH ",
    " SOA ",
    " NS ",
    " A ",
    " AAAA ",
    " CNAME ",
    " DNAME ",
    " MX ",
    " TXT ",
    " SRV ",
    " CAA ",
    " TYPE65280 ",
    "\\# 0",
    "(",
    ")",
    "\"",
    ";",
    "\\",
    "\\065",
    ".",
    "\n",
    "\t",
    " 2147483648 ",
    " 1h2m ",
    " 192.0.2.1",
    " 2001:db8::1",
];

/// Zone files for the zone target: the world's zone, the example, small valid ones.
pub fn zones() -> Vec<String> {
    vec![
        world::zone_text(),
        EXAMPLE_ZONE.to_string(),
        "@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\nns1 60 A 192.0.2.53\n".to_string(),
        "$ORIGIN example.test.\n$TTL 60\n@ SOA ns1 h ( 1 2 3\n 4 5 )\n  NS ns1\nx MX ( 10\n mail )\n*.w TXT \"a\" \"b\"\n".to_string(),
    ]
}

/// Tokens of the config file, for mutation.
pub const CONFIG_TOKENS: [&str; 40] = [
    "[server]\n",
    "[api]\n",
    "[xdp]\n",
    "[[zone]]\n",
    "[[pool]]\n",
    "[events]\n",
    "[probes]\n",
    " = ",
    "\"",
    "'''",
    "{",
    "}",
    "[",
    "]",
    ",",
    "#",
    "\n",
    "name = \"www.example.test.\"\n",
    "type = \"AAAA\"\n",
    "type = \"CNAME\"\n",
    "policy = \"weighted\"\n",
    "policy = \"failover\"\n",
    "all_down = \"fallback\"\n",
    "fallback = [\"198.51.100.1\"]\n",
    "endpoints = [{ address = \"192.0.2.1\" }]\n",
    "endpoints = [{ address = \"2001:db8::1\", weight = 0 }]\n",
    "probe = { kind = \"tcp\", port = 443 }\n",
    "probe = { kind = \"dns\", qname = \"x.\" }\n",
    "origin = \"example.test.\"\n",
    "file = \"example.test.zone\"\n",
    "file = \"broken.zone\"\n",
    "soa = { mname = \"ns1.\", rname = \"h.\" }\n",
    "ns = [\"ns1.example.test.\"]\n",
    "listen = \"[::1]:0\"\n",
    "interval = \"250ms\"",
    "ttl = 2147483648",
    "-1",
    "0o777",
    "1e9",
    "\u{1F600}",
];

/// Configs for the config target. Zone files are named relative to the config and are
/// provided by [`crate::config::ConfigTarget`]: `example.test.zone` (the example's zone),
/// `world.zone` (the world's zone, origin example.test.), `broken.zone`.
pub fn configs() -> Vec<String> {
    let zone = "[[zone]]\norigin = \"example.test.\"\nfile = \"example.test.zone\"\n";
    vec![
        EXAMPLE_CONFIG.to_string(),
        zone.to_string(),
        format!(
            "[server]\nlisten = [\"127.0.0.1\"]\nport = 5353\nedns_udp_size = 4096\n{zone}\
             [[pool]]\nname = \"www.example.test\"\ntype = \"A\"\npolicy = \"weighted\"\n\
             endpoints = [{{ address = \"192.0.2.1\", weight = 3 }}, {{ address = \"192.0.2.2\" }}]\n"
        ),
        "[[zone]]\norigin = \"example.test.\"\nfile = \"world.zone\"\n\
         [[pool]]\nname = \"cdn.example.test.\"\ntype = \"CNAME\"\n\
         endpoints = [{ address = \"edge.example.net.\" }]\n\
         [[pool]]\nname = \"db.example.test.\"\ntype = \"A\"\npolicy = \"failover\"\n\
         all_down = \"fallback\"\nfallback = [\"198.51.100.1\"]\n\
         probe = { kind = \"dns\", qname = \"db.example.test.\", interval = \"1s\", rise = 3 }\n\
         endpoints = [{ address = \"192.0.2.30\", priority = 0 }, { address = \"192.0.2.31\", priority = 1, state = \"down\" }]\n"
            .to_string(),
        "[[zone]]\norigin = \"other.test\"\nfile = \"broken.zone\"\n\
         soa = { mname = \"ns1.other.test.\", rname = \"h.other.test.\", serial = 7 }\n\
         ns = [\"ns1.other.test.\"]\n"
            .to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_queries_decode() {
        let queries = queries();
        assert!(queries.len() > 400, "{}", queries.len());
        // All but the hand-edited ones at the end are well-formed.
        for q in &queries[..queries.len() - 6] {
            Message::from_vec(q).unwrap_or_else(|e| panic!("{q:02x?}: {e}"));
        }
    }
}
