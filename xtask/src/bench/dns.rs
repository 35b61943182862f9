//! What every server is asked: the zone (the same records for hotpool and the reference
//! servers, which get the pool names as static records), the query files, wire queries for
//! the latency client and whole frames for `BPF_PROG_TEST_RUN`.

use std::{fmt::Write as _, net::Ipv4Addr};

use anyhow::{Context as _, Result};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};

pub const ORIGIN: &str = "example.test.";

/// Names of host records in the zone (`h000` … `h099`).
const HOSTS: usize = 100;

/// The pools hotpool serves (and the references serve as static records).
pub const POOL_A: &str = "www.example.test.";
pub const POOL_AAAA: &str = "v6.example.test.";
pub const POOL_CNAME: &str = "cdn.example.test.";
const POOL_A_ADDRS: [&str; 2] = ["192.0.2.10", "192.0.2.11"];
const POOL_AAAA_ADDRS: [&str; 2] = ["2001:db8::10", "2001:db8::11"];
const POOL_CNAME_TARGET: &str = "edge.cdn-provider.net.";

/// The zone file, with the pool names as records when `with_pools` (for the references).
pub fn zone(with_pools: bool) -> String {
    let mut z = String::from(
        "$ORIGIN example.test.\n$TTL 3600\n\
         @ IN SOA ns1.example.test. hostmaster.example.test. 2026120101 7200 3600 1209600 300\n\
         @ IN NS ns1.example.test.\n\
         @ IN NS ns2.example.test.\n\
         @ IN MX 10 mail.example.test.\n\
         @ IN TXT \"v=spf1 mx -all\"\n\
         @ IN A 192.0.2.1\n\
         ns1 IN A 192.0.2.53\n\
         ns2 IN A 198.51.100.53\n\
         mail IN A 192.0.2.25\n\
         mail IN AAAA 2001:db8::25\n",
    );
    for i in 0..HOSTS {
        let _ = writeln!(z, "h{i:03} IN A 192.0.2.{}", 100 + i);
    }
    if with_pools {
        for addr in POOL_A_ADDRS {
            let _ = writeln!(z, "www 30 IN A {addr}");
        }
        for addr in POOL_AAAA_ADDRS {
            let _ = writeln!(z, "v6 30 IN AAAA {addr}");
        }
        let _ = writeln!(z, "cdn 60 IN CNAME {POOL_CNAME_TARGET}");
    }
    z
}

/// hotpool's config: the zone, the three pools (static: no probes), one listen address, the
/// XDP program on `iface` in `mode` (`None`: no `[xdp]` section).
pub fn hotpool_config(listen: Ipv4Addr, pin_path: &str, xdp: Option<(&str, &str)>) -> String {
    let mut c = format!("[server]\nlisten = [\"{listen}\"]\npin_path = \"{pin_path}\"\n\n");
    if let Some((iface, mode)) = xdp {
        let _ = write!(
            c,
            "[xdp]\ninterfaces = [\"{iface}\"]\nmode = \"{mode}\"\n\n"
        );
    }
    let _ = write!(
        c,
        "[[zone]]\norigin = \"{ORIGIN}\"\nfile = \"example.test.zone\"\n\n"
    );
    let endpoints = |addrs: &[&str]| {
        addrs
            .iter()
            .map(|a| format!("{{ address = \"{a}\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, rtype, ttl, addrs) in [
        (POOL_A, "A", 30, endpoints(&POOL_A_ADDRS)),
        (POOL_AAAA, "AAAA", 30, endpoints(&POOL_AAAA_ADDRS)),
        (POOL_CNAME, "CNAME", 60, endpoints(&[POOL_CNAME_TARGET])),
    ] {
        let _ = write!(
            c,
            "[[pool]]\nname = \"{name}\"\ntype = \"{rtype}\"\nttl = {ttl}\nendpoints = [{addrs}]\n\n"
        );
    }
    c
}

/// What a query line asks for, for the mix's composition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hot,
    ZoneName,
    NxDomain,
    NoData,
    Refused,
}

/// One line of a query file: `name type` (dnsperf and kxdpgun), plus kxdpgun's `E` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLine {
    pub name: String,
    pub rtype: RecordType,
    pub edns: bool,
    pub kind: Kind,
}

impl QueryLine {
    fn new(name: impl Into<String>, rtype: RecordType, kind: Kind) -> Self {
        Self {
            name: name.into(),
            rtype,
            edns: false,
            kind,
        }
    }

    pub fn render(&self) -> String {
        let flag = if self.edns { " E" } else { "" };
        format!("{} {}{flag}", self.name, self.rtype)
    }

    /// The query in wire format (id 0, RD clear, an OPT record without options when `edns`).
    pub fn wire(&self) -> Result<Vec<u8>> {
        query_wire(&self.name, self.rtype, self.edns)
    }
}

pub fn render(lines: &[QueryLine]) -> String {
    lines.iter().map(|l| l.render() + "\n").collect()
}

/// Only pool names: A, AAAA and CNAME pools, no EDNS.
pub fn hot_only() -> Vec<QueryLine> {
    vec![
        QueryLine::new(POOL_A, RecordType::A, Kind::Hot),
        QueryLine::new(POOL_AAAA, RecordType::AAAA, Kind::Hot),
        QueryLine::new(POOL_A, RecordType::A, Kind::Hot),
        QueryLine::new(POOL_CNAME, RecordType::A, Kind::Hot),
    ]
}

/// 200 queries, 5 % pool names; the rest zone names (40 %), NXDOMAIN (25 %), NODATA (15 %)
/// and REFUSED (15 %), interleaved so every stretch of the file has the same mix.
pub fn mixed() -> Vec<QueryLine> {
    let hot = hot_only();
    let mut lines = Vec::with_capacity(200);
    for i in 0..200usize {
        let line = match i % 20 {
            0 => hot[(i / 20) % hot.len()].clone(),
            1..=8 => {
                let host = (i * 7) % HOSTS;
                match i % 20 {
                    1 => QueryLine::new("mail.example.test.", RecordType::AAAA, Kind::ZoneName),
                    2 => QueryLine::new(ORIGIN, RecordType::MX, Kind::ZoneName),
                    _ => QueryLine::new(
                        format!("h{host:03}.example.test."),
                        RecordType::A,
                        Kind::ZoneName,
                    ),
                }
            }
            9..=13 => QueryLine::new(
                format!("nx{i:03}.example.test."),
                RecordType::A,
                Kind::NxDomain,
            ),
            14..=16 => {
                let host = (i * 3) % HOSTS;
                QueryLine::new(
                    format!("h{host:03}.example.test."),
                    RecordType::AAAA,
                    Kind::NoData,
                )
            }
            _ => QueryLine::new(
                format!("h{:03}.example.org.", i % HOSTS),
                RecordType::A,
                Kind::Refused,
            ),
        };
        lines.push(line);
    }
    lines
}

/// The queries whose kernel cost `kernel` measures under kxdpgun, each alone in its file.
pub fn kernel_cases() -> Vec<(&'static str, QueryLine)> {
    let mut edns = QueryLine::new(POOL_A, RecordType::A, Kind::Hot);
    edns.edns = true;
    vec![
        ("hit A", QueryLine::new(POOL_A, RecordType::A, Kind::Hot)),
        (
            "hit AAAA",
            QueryLine::new(POOL_AAAA, RecordType::AAAA, Kind::Hot),
        ),
        ("hit A + EDNS", edns),
        (
            "hit CNAME",
            QueryLine::new(POOL_CNAME, RecordType::A, Kind::Hot),
        ),
        (
            "miss (zone name)",
            QueryLine::new("h001.example.test.", RecordType::A, Kind::ZoneName),
        ),
    ]
}

/// A query in wire format, encoded by hickory-proto.
pub fn query_wire(name: &str, rtype: RecordType, edns: bool) -> Result<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(
        Name::from_ascii(name).with_context(|| format!("bad name {name}"))?,
        rtype,
    ));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(1232);
        m.set_edns(opt);
    }
    m.to_vec().context("encoding a query")
}

/// A response (QR=1) in wire format.
pub fn response_wire(name: &str) -> Result<Vec<u8>> {
    let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    m.to_vec().context("encoding a response")
}

/// An Ethernet + IPv4 + UDP frame carrying `payload`, with correct checksums.
pub fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    const SPORT: u16 = 40_000;
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // src MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let udp_len = 8 + payload.len() as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let csum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&SPORT.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
    let csum = match checksum(&[&pseudo, &udp, payload]) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(payload);
    f
}

/// An ARP request frame (not IP).
pub fn arp_frame(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&dst.octets());
    f
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each of even length
/// but the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_is_five_percent_hot_and_has_every_kind() {
        let lines = mixed();
        let count = |k: Kind| lines.iter().filter(|l| l.kind == k).count();
        assert_eq!(lines.len(), 200);
        assert_eq!(count(Kind::Hot), 10);
        assert_eq!(count(Kind::ZoneName), 80);
        assert_eq!(count(Kind::NxDomain), 50);
        assert_eq!(count(Kind::NoData), 30);
        assert_eq!(count(Kind::Refused), 30);
        // Every hot line names a pool, and no other line does.
        for line in &lines {
            let pool = [POOL_A, POOL_AAAA, POOL_CNAME].contains(&line.name.as_str());
            assert_eq!(pool, line.kind == Kind::Hot, "{line:?}");
        }
    }

    #[test]
    fn zone_names_in_the_mix_exist_and_nxdomain_names_do_not() {
        let text = zone(true);
        for line in mixed() {
            let label = line.name.split('.').next().unwrap();
            let present = text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(label));
            match line.kind {
                Kind::ZoneName | Kind::NoData if line.name != ORIGIN => {
                    assert!(present, "{line:?}")
                }
                Kind::NxDomain => assert!(!present, "{line:?}"),
                _ => {}
            }
        }
        // hotpool's zone must not hold the pool names (its pools answer them).
        assert!(!zone(false).contains("\nwww "));
        assert!(zone(true).contains("\ncdn 60 IN CNAME edge.cdn-provider.net.\n"));
    }

    #[test]
    fn query_lines_render_for_dnsperf_and_kxdpgun() {
        let cases = kernel_cases();
        let rendered: Vec<String> = cases.iter().map(|(_, l)| l.render()).collect();
        assert_eq!(
            rendered,
            [
                "www.example.test. A",
                "v6.example.test. AAAA",
                "www.example.test. A E",
                "cdn.example.test. A",
                "h001.example.test. A"
            ]
        );
    }

    #[test]
    fn query_wire_decodes_back() {
        let wire = query_wire(POOL_A, RecordType::AAAA, true).unwrap();
        let m = Message::from_vec(&wire).unwrap();
        assert_eq!(m.queries[0].query_type(), RecordType::AAAA);
        assert_eq!(m.queries[0].name().to_ascii(), POOL_A);
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), 1232);
        assert!(!m.metadata.recursion_desired);
        let resp = Message::from_vec(&response_wire(POOL_A).unwrap()).unwrap();
        assert_eq!(resp.metadata.message_type, MessageType::Response);
    }

    #[test]
    fn frame_checksums_verify() {
        let payload = query_wire(POOL_A, RecordType::A, false).unwrap();
        let src = Ipv4Addr::new(10, 1, 2, 2);
        let dst = Ipv4Addr::new(10, 1, 2, 1);
        let f = udp_frame(src, dst, 53, &payload);
        assert_eq!(f.len(), 14 + 20 + 8 + payload.len());
        // A correct header sums to zero, and so does the UDP segment with its pseudo-header.
        assert_eq!(checksum(&[&f[14..34]]), 0);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        assert_eq!(checksum(&[&pseudo, &f[34..]]), 0);
        assert_eq!(&f[36..38], &53u16.to_be_bytes());
        assert_eq!(&arp_frame(src, dst)[12..14], &[0x08, 0x06]);
    }

    #[test]
    fn hotpool_config_has_pools_and_optional_xdp() {
        let with = hotpool_config(
            Ipv4Addr::new(10, 1, 2, 1),
            "/sys/fs/bpf/x",
            Some(("hbs1", "native")),
        );
        assert!(with.contains("interfaces = [\"hbs1\"]\nmode = \"native\""));
        assert!(with.contains("name = \"cdn.example.test.\"\ntype = \"CNAME\""));
        let without = hotpool_config(Ipv4Addr::new(10, 1, 2, 1), "/sys/fs/bpf/x", None);
        assert!(!without.contains("[xdp]"));
        assert!(without.contains("listen = [\"10.1.2.1\"]"));
    }
}
