//! A minimal MaxMind DB (`.mmdb`, format 2.0) writer, for the tests: an IPv6 tree (IPv4
//! networks under `::/96`), 32-bit records, country/city-style records. Tests generate
//! their databases with it; no third-party database is committed.
//!
//! It writes what [`read_database`](crate::geo::source::read_database) reads: networks
//! must not overlap (nesting is refused), and the data section is not deduplicated.

use std::net::IpAddr;

use ipnet::IpNet;

/// A record's codes, laid out as GeoLite2 and DB-IP lite lay them out.
#[derive(Clone, Debug, Default)]
pub struct GeoRecord {
    /// `country.iso_code`.
    pub country: Option<String>,
    /// `registered_country.iso_code`.
    pub registered_country: Option<String>,
    /// `continent.code`.
    pub continent: Option<String>,
    /// `city.names.en` (the city layout).
    pub city: Option<String>,
}

impl GeoRecord {
    /// A network located in `country`, on `continent`.
    pub fn country(country: &str, continent: &str) -> Self {
        Self {
            country: Some(country.into()),
            registered_country: Some(country.into()),
            continent: Some(continent.into()),
            city: None,
        }
    }

    /// A network only registered to `country` (no located country).
    pub fn registered(country: &str, continent: &str) -> Self {
        Self {
            registered_country: Some(country.into()),
            continent: Some(continent.into()),
            ..Self::default()
        }
    }
}

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(u32),
    Data(u32),
}

/// Builds a database in memory; [`MmdbWriter::finish`] gives its bytes.
pub struct MmdbWriter {
    kind: String,
    nodes: Vec<[Rec; 2]>,
    data: Vec<u8>,
}

/// The metadata section's start marker.
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

impl MmdbWriter {
    /// An empty database whose metadata says `database_type = kind`.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            nodes: vec![[Rec::Empty, Rec::Empty]],
            data: Vec::new(),
        }
    }

    /// Adds `net` with `record`. Panics on a network overlapping one added before, or on
    /// a /0 (this is a test tool).
    pub fn insert(&mut self, net: IpNet, record: &GeoRecord) {
        let offset = u32::try_from(self.data.len()).expect("a small database");
        encode_record(&mut self.data, record);
        let (bits, len): (u128, usize) = match net.trunc().addr() {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 96 + usize::from(net.prefix_len())),
            IpAddr::V6(a) => (u128::from(a), usize::from(net.prefix_len())),
        };
        assert!(len > 0, "a /0 is not supported");
        let bit = |depth: usize| ((bits >> (127 - depth)) & 1) as usize;
        let mut node = 0usize;
        for depth in 0..len - 1 {
            let b = bit(depth);
            node = match self.nodes[node][b] {
                Rec::Node(n) => n as usize,
                Rec::Empty => {
                    let n = self.nodes.len();
                    self.nodes.push([Rec::Empty, Rec::Empty]);
                    self.nodes[node][b] = Rec::Node(n as u32);
                    n
                }
                Rec::Data(_) => panic!("{net} is inside a network added before"),
            };
        }
        let b = bit(len - 1);
        assert!(
            matches!(self.nodes[node][b], Rec::Empty),
            "{net} overlaps a network added before"
        );
        self.nodes[node][b] = Rec::Data(offset);
    }

    /// The database file's bytes.
    pub fn finish(self) -> Vec<u8> {
        let count = u32::try_from(self.nodes.len()).expect("a small tree");
        let mut out = Vec::with_capacity(self.nodes.len() * 8 + 16 + self.data.len() + 256);
        for node in &self.nodes {
            for rec in node {
                let v = match *rec {
                    Rec::Empty => count,
                    Rec::Node(n) => n,
                    Rec::Data(off) => count + 16 + off,
                };
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(METADATA_MARKER);
        let m = &mut out;
        map_header(m, 9);
        string(m, "binary_format_major_version");
        uint(m, 5, 2);
        string(m, "binary_format_minor_version");
        uint(m, 5, 0);
        string(m, "build_epoch");
        uint(m, 9, 1_700_000_000);
        string(m, "database_type");
        string(m, &self.kind);
        string(m, "description");
        map_header(m, 1);
        string(m, "en");
        string(m, "hotpool test database");
        string(m, "ip_version");
        uint(m, 5, 6);
        string(m, "languages");
        control(m, 11, 1);
        string(m, "en");
        string(m, "node_count");
        uint(m, 6, u64::from(count));
        string(m, "record_size");
        uint(m, 5, 32);
        out
    }
}

/// A control byte (and extended type byte) of `kind` with `size`.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (marker, extra): (u8, Vec<u8>) = match size {
        0..29 => (size as u8, Vec::new()),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push((kind << 5) | marker);
    } else {
        out.push(marker);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn map_header(out: &mut Vec<u8>, pairs: usize) {
    control(out, 7, pairs);
}

/// An unsigned integer of type `kind` (5: uint16, 6: uint32, 9: uint64), minimal length.
fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode_record(out: &mut Vec<u8>, r: &GeoRecord) {
    let fields = [&r.country, &r.registered_country, &r.continent, &r.city]
        .iter()
        .filter(|f| f.is_some())
        .count();
    map_header(out, fields);
    for (key, value) in [
        ("country", &r.country),
        ("registered_country", &r.registered_country),
    ] {
        if let Some(code) = value {
            string(out, key);
            map_header(out, 1);
            string(out, "iso_code");
            string(out, code);
        }
    }
    if let Some(code) = &r.continent {
        string(out, "continent");
        map_header(out, 1);
        string(out, "code");
        string(out, code);
    }
    if let Some(name) = &r.city {
        string(out, "city");
        map_header(out, 1);
        string(out, "names");
        map_header(out, 1);
        string(out, "en");
        string(out, name);
    }
}
