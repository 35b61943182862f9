//! What the XDP program may do with a frame, judged from the frame, the action and the
//! output alone.
//!
//! * `XDP_PASS`: the frame goes up unchanged.
//! * `XDP_TX`: the input was a query the program may answer — Ethernet to the interface's
//!   MAC address, at most one 802.1Q tag, IPv4 without options and not a fragment with a right header checksum, or IPv6
//!   without extension headers; UDP to our port and one of our unicast addresses from a
//!   source and port the acceptance rules (`dns_common::accept`) let through; lengths that agree with each other and fit the frame; a UDP checksum
//!   that verifies, is absent (IPv4 only) or holds the pseudo-header sum a local sender
//!   leaves for offload — and the output is its reply: well-formed Ethernet/IP/UDP as
//!   etherparse reads it, IPv4 header and UDP checksums right, MACs, addresses and ports
//!   swapped, TTL/hop limit 64, the rest of the headers kept; a DNS message that parses,
//!   with the query's ID and its question octet for octet; and that message is exactly
//!   what the daemon's answer path (`Authority::respond`) sends the same client for the
//!   same query.
//! * `XDP_ABORTED`, `XDP_DROP` and anything else: never. (The fuzzer runs with rate
//!   limiting off: its drops and truncated slips are checked by `tests/xdp_packets.rs`.)

use std::net::{IpAddr, SocketAddr};

use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use hickory_proto::op::Message;
use hotpool::dns::{
    authority::Authority,
    local::LocalAddrs,
    request::{Request, Transport},
};

use dns_common::accept;

use super::input::{Layout, fold, inet_sum, pseudo_sum};
use crate::datapath::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX};

/// What the program did with an acceptable frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Answered,
}

/// Judges frames against the daemon's answer path.
pub struct Oracle {
    pub authority: Authority,
    pub listen: Vec<IpAddr>,
    pub port: u16,
    /// The MAC address of the interface the frames arrive on.
    pub mac: [u8; 6],
    /// The host's addresses as the program knows them.
    pub local: LocalAddrs,
}

/// A query frame the program may answer: where its parts are.
#[derive(Clone, Copy, Debug)]
struct QueryFrame {
    at: Layout,
    client: SocketAddr,
    /// The DNS message: offset and length.
    dns: usize,
    dns_len: usize,
}

impl Oracle {
    /// The verdict on one run, or what was wrong with it.
    pub fn judge(&self, input: &[u8], action: u32, output: &[u8]) -> Result<Verdict, String> {
        match action {
            XDP_PASS if output == input => Ok(Verdict::Passed),
            XDP_PASS => Err(format!(
                "XDP_PASS with a modified frame: {}",
                first_difference(input, output)
            )),
            XDP_TX => self.reply(input, output).map(|()| Verdict::Answered),
            XDP_ABORTED => Err("XDP_ABORTED".into()),
            XDP_DROP => Err("XDP_DROP: the program drops nothing (yet)".into()),
            other => Err(format!("unknown XDP action {other}")),
        }
    }

    /// Checks an `XDP_TX` output against its input.
    fn reply(&self, input: &[u8], output: &[u8]) -> Result<(), String> {
        let q = self
            .query(input)
            .map_err(|why| format!("answered a frame it must pass: {why}"))?;
        well_formed(input, output, &q)?;

        let query = &input[q.dns..q.dns + q.dns_len];
        let reply = &output[q.dns..];
        let msg = Message::from_vec(reply).map_err(|e| format!("reply does not parse: {e}"))?;
        if reply.len() < 12 || reply[..2] != query[..2] {
            return Err("reply ID is not the query's".into());
        }
        let question = question_len(query).ok_or("answered a query whose name does not end")?;
        if reply.get(12..12 + question) != query.get(12..12 + question) {
            return Err("question not echoed octet for octet".into());
        }
        let daemon = self
            .authority
            .respond(&Request::new(query, q.client, Transport::Udp))
            .ok_or("the daemon does not answer this query")?;
        if reply != daemon.as_slice() {
            return Err(format!(
                "reply differs from the daemon's answer\n kernel: {msg}\n daemon: {}\n kernel octets: {}\n daemon octets: {}",
                Message::from_vec(&daemon).map_or_else(|e| e.to_string(), |m| m.to_string()),
                hex(reply),
                hex(&daemon)
            ));
        }
        let expected = expected_frame(input, &q, &daemon);
        if output != expected.as_slice() {
            return Err(format!(
                "frame differs from the expected reply frame: {}",
                first_difference(&expected, output)
            ));
        }
        Ok(())
    }

    /// The query in `f`, if the program may answer it.
    fn query(&self, f: &[u8]) -> Result<QueryFrame, String> {
        let at = Layout::of(f).ok_or("not IPv4 or IPv6 behind at most one 802.1Q tag")?;
        if f.get(..6) != Some(&self.mac[..]) {
            return Err("not to the interface's MAC address".into());
        }
        let ip = f.get(at.l3..).ok_or("no IP header")?;
        let (ip_payload, src, dst) = if at.v6 {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return Err("not IPv6".into());
            }
            if ip[6] != 17 {
                return Err(format!("next header {}", ip[6]));
            }
            let src: [u8; 16] = ip[8..24].try_into().unwrap_or_default();
            let dst: [u8; 16] = ip[24..40].try_into().unwrap_or_default();
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            (payload, IpAddr::from(src), IpAddr::from(dst))
        } else {
            if ip.len() < 20 || ip[0] != 0x45 {
                return Err(format!(
                    "IPv4 version/header length {:#04x}",
                    ip.first().unwrap_or(&0)
                ));
            }
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return Err("an IPv4 fragment".into());
            }
            if ip[9] != 17 {
                return Err(format!("protocol {}", ip[9]));
            }
            if fold(inet_sum(&ip[..20], 0)) != 0xffff {
                return Err("bad IPv4 header checksum".into());
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let payload = total.checked_sub(20).ok_or("IPv4 total length under 20")?;
            let src: [u8; 4] = ip[12..16].try_into().unwrap_or_default();
            let dst: [u8; 4] = ip[16..20].try_into().unwrap_or_default();
            (payload, IpAddr::from(src), IpAddr::from(dst))
        };
        if at.l4() + ip_payload > f.len() {
            return Err("IP length beyond the frame".into());
        }
        let sport = u16::from_be_bytes([
            *f.get(at.l4()).ok_or("no UDP header")?,
            *f.get(at.l4() + 1).ok_or("no UDP header")?,
        ]);
        let accepted = match src {
            IpAddr::V4(a) => accept::check_v4(a.octets(), sport, false, &self.local),
            IpAddr::V6(a) => accept::check_v6(&a.octets(), sport, false, &self.local),
        };
        if let Err(reason) = accepted {
            return Err(format!("source {src} port {sport}: {}", reason.name()));
        }
        if !unicast(dst) || !self.listening(dst) {
            return Err(format!("destination {dst} is not ours"));
        }
        let udp = &f[at.l4()..at.l4() + ip_payload];
        if udp.len() < 8 {
            return Err("no UDP header".into());
        }
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        if udp_len != ip_payload {
            return Err(format!("UDP length {udp_len}, IP payload {ip_payload}"));
        }
        if u16::from_be_bytes([udp[2], udp[3]]) != self.port {
            return Err("another port".into());
        }
        let field = [udp[6], udp[7]];
        let pseudo = pseudo_sum(f, at).ok_or("no pseudo-header")?;
        let verifies = fold(inet_sum(udp, pseudo)) == 0xffff;
        let offload = field == fold(pseudo).to_be_bytes();
        let absent = field == [0, 0] && !at.v6;
        if !(verifies || offload || absent) {
            return Err(format!("bad UDP checksum {:02x}{:02x}", field[0], field[1]));
        }
        Ok(QueryFrame {
            at,
            client: SocketAddr::new(src, u16::from_be_bytes([udp[0], udp[1]])),
            dns: at.dns(),
            dns_len: udp_len - 8,
        })
    }

    fn listening(&self, addr: IpAddr) -> bool {
        self.listen.iter().any(|l| {
            *l == addr
                || (l.is_unspecified()
                    && matches!(
                        (l, addr),
                        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
                    ))
        })
    }
}

/// Neither unspecified nor multicast nor the limited broadcast (`0.0.0.0/8` and `240/4`
/// included, as the program has them).
fn unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] != 0 && o[0] < 224
        }
        IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_multicast(),
    }
}

/// The output parses as the reply to `q` on the way back: Ethernet, the same 802.1Q tag,
/// IP and UDP with right checksums and lengths, everything swapped.
fn well_formed(input: &[u8], output: &[u8], q: &QueryFrame) -> Result<(), String> {
    let p =
        SlicedPacket::from_ethernet(output).map_err(|e| format!("reply does not parse: {e}"))?;
    let Some(LinkSlice::Ethernet2(eth)) = &p.link else {
        return Err("reply is not Ethernet II".into());
    };
    if eth.destination() != input[6..12] || eth.source() != input[..6] {
        return Err("MAC addresses not swapped".into());
    }
    let in_vlan = (q.at.l3 == 18).then(|| &input[12..18]);
    let out_vlan = (output.get(12..14) == Some(&[0x81, 0x00][..])).then(|| output.get(12..18));
    if in_vlan != out_vlan.flatten() {
        return Err("802.1Q tag not kept".into());
    }
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return Err("reply is not UDP".into());
    };
    let (checksum, src, dst, ttl) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            // From the octets: etherparse's header type drops the reserved flag bit, so its
            // checksum of a header with that bit set comes out different.
            if fold(inet_sum(ip.header().slice(), 0)) != 0xffff {
                return Err("reply's IPv4 header checksum is wrong".into());
            }
            let h = ip.header().to_header();
            let c = udp
                .to_header()
                .calc_checksum_ipv4(&h, udp.payload())
                .map_err(|e| e.to_string())?;
            (
                c,
                IpAddr::from(h.source),
                IpAddr::from(h.destination),
                h.time_to_live,
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header().to_header();
            let c = udp
                .to_header()
                .calc_checksum_ipv6(&h, udp.payload())
                .map_err(|e| e.to_string())?;
            (
                c,
                IpAddr::from(h.source),
                IpAddr::from(h.destination),
                h.hop_limit,
            )
        }
        other => return Err(format!("reply is not IP: {other:?}")),
    };
    if udp.checksum() != checksum {
        return Err(format!(
            "reply's UDP checksum {:#06x}, should be {checksum:#06x}",
            udp.checksum()
        ));
    }
    let in_ports = &input[q.at.l4()..q.at.l4() + 4];
    if (udp.source_port(), udp.destination_port())
        != (
            u16::from_be_bytes([in_ports[2], in_ports[3]]),
            u16::from_be_bytes([in_ports[0], in_ports[1]]),
        )
    {
        return Err("ports not swapped".into());
    }
    if Some((dst, src)) != addresses(input, q.at) {
        return Err("addresses not swapped".into());
    }
    if ttl != 64 {
        return Err(format!("TTL/hop limit {ttl}"));
    }
    if usize::from(udp.length()) != 8 + udp.payload().len()
        || output.len() != q.dns + udp.payload().len()
    {
        return Err("reply lengths do not match its frame".into());
    }
    Ok(())
}

/// Source and destination address of an IP frame.
fn addresses(f: &[u8], at: Layout) -> Option<(IpAddr, IpAddr)> {
    if at.v6 {
        let src: [u8; 16] = f.get(at.l3 + 8..at.l3 + 24)?.try_into().ok()?;
        let dst: [u8; 16] = f.get(at.l3 + 24..at.l3 + 40)?.try_into().ok()?;
        Some((IpAddr::from(src), IpAddr::from(dst)))
    } else {
        let src: [u8; 4] = f.get(at.l3 + 12..at.l3 + 16)?.try_into().ok()?;
        let dst: [u8; 4] = f.get(at.l3 + 16..at.l3 + 20)?.try_into().ok()?;
        Some((IpAddr::from(src), IpAddr::from(dst)))
    }
}

/// Length of the question (name, type, class) at offset 12 of `query`, if its name is
/// labels ending in the root.
fn question_len(query: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let l = usize::from(*query.get(i)?);
        if l == 0 {
            return Some(i + 1 + 4 - 12);
        }
        if l > 63 {
            return None;
        }
        i += 1 + l;
    }
}

/// The reply frame the program must send for `q` carrying `dns`: the input's headers with
/// MACs, addresses and ports swapped, lengths for `dns`, TTL/hop limit 64, fresh
/// checksums; everything else kept (IPv4 TOS, ID and flags; IPv6 traffic class and flow
/// label; the 802.1Q tag).
fn expected_frame(input: &[u8], q: &QueryFrame, dns: &[u8]) -> Vec<u8> {
    let (l3, l4) = (q.at.l3, q.at.l4());
    let mut f = input[..q.dns].to_vec();
    f.extend_from_slice(dns);
    f[..6].copy_from_slice(&input[6..12]);
    f[6..12].copy_from_slice(&input[..6]);
    let udp_len = (8 + dns.len()) as u16;
    if q.at.v6 {
        f[l3 + 4..l3 + 6].copy_from_slice(&udp_len.to_be_bytes());
        f[l3 + 7] = 64;
        f[l3 + 8..l3 + 24].copy_from_slice(&input[l3 + 24..l3 + 40]);
        f[l3 + 24..l3 + 40].copy_from_slice(&input[l3 + 8..l3 + 24]);
    } else {
        f[l3 + 2..l3 + 4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        f[l3 + 8] = 64;
        f[l3 + 12..l3 + 16].copy_from_slice(&input[l3 + 16..l3 + 20]);
        f[l3 + 16..l3 + 20].copy_from_slice(&input[l3 + 12..l3 + 16]);
        f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = !fold(inet_sum(&f[l3..l3 + 20], 0));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    f[l4..l4 + 2].copy_from_slice(&input[l4 + 2..l4 + 4]);
    f[l4 + 2..l4 + 4].copy_from_slice(&input[l4..l4 + 2]);
    f[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
    f[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    let pseudo = pseudo_sum(&f, q.at).unwrap_or_default();
    let c = !fold(inet_sum(&f[l4..], pseudo));
    f[l4 + 6..l4 + 8].copy_from_slice(&if c == 0 { 0xffff } else { c }.to_be_bytes());
    f
}

/// Where two frames first differ.
fn first_difference(want: &[u8], got: &[u8]) -> String {
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!(
            "first at octet {i}: {:#04x} instead of {:#04x}",
            got[i], want[i]
        ),
        None => format!("{} octets instead of {}", got.len(), want.len()),
    }
}

fn hex(data: &[u8]) -> String {
    hotpool_fuzz_harness::hex(data)
}

#[cfg(test)]
mod tests {
    use hotpool_fuzz_harness::{seeds::QuerySpec, world};

    use super::*;
    use crate::frames::{self, Path};

    fn oracle() -> Oracle {
        Oracle {
            authority: world::authority(),
            listen: vec![
                super::super::input::SERVER_V4.into(),
                super::super::input::SERVER_V6.parse().unwrap(),
            ],
            port: 53,
            mac: crate::frames::SERVER_MAC,
            local: LocalAddrs::from_parts(
                [
                    IpAddr::from(super::super::input::SERVER_V4),
                    super::super::input::SERVER_V6.parse().unwrap(),
                ],
                [std::net::Ipv4Addr::new(10, 0, 0, 255)],
                [],
            ),
        }
    }

    /// A query for `name` on `path` and the reply frame the program must send.
    fn exchange(o: &Oracle, path: &Path, name: &str, qtype: u16) -> (Vec<u8>, Vec<u8>) {
        let q = QuerySpec::new(name, qtype).bytes();
        let client = SocketAddr::new(path.client, path.sport);
        let reply = o
            .authority
            .respond(&Request::new(&q, client, Transport::Udp))
            .unwrap();
        (frames::query(path, &q), frames::response(path, &reply))
    }

    #[test]
    fn right_replies_and_unchanged_passes_are_accepted() {
        let o = oracle();
        let paths = [
            Path::v4([10, 0, 0, 1], super::super::input::SERVER_V4),
            Path::v6("fd00::1", super::super::input::SERVER_V6).vlan(7),
        ];
        for path in paths {
            let (query, reply) = exchange(&o, &path, "wWw.example.test.", 1);
            assert_eq!(o.judge(&query, XDP_TX, &reply), Ok(Verdict::Answered));
            assert_eq!(o.judge(&query, XDP_PASS, &query), Ok(Verdict::Passed));
        }
    }

    #[test]
    fn wrong_replies_are_caught() {
        let o = oracle();
        let path = Path::v4([10, 0, 0, 1], super::super::input::SERVER_V4);
        let (query, reply) = exchange(&o, &path, "www.example.test.", 1);
        let dns = 14 + 20 + 8;
        let edits: [(&str, usize); 9] = [
            ("MAC", 0),
            ("IPv4 TOS", 15),
            ("IPv4 TTL", 22),
            ("IPv4 header checksum", 24),
            ("address", 29),
            ("port", 35),
            ("UDP checksum", 40),
            ("DNS ID", dns + 1),
            ("answer", reply.len() - 1),
        ];
        for (what, at) in edits {
            let mut bad = reply.clone();
            bad[at] ^= 0x01;
            assert!(
                o.judge(&query, XDP_TX, &bad).is_err(),
                "{what} edit not caught"
            );
        }
        // A reply to a frame the program must pass.
        let mut wrong_sum = query.clone();
        wrong_sum[14 + 10] ^= 0x01;
        let e = o.judge(&wrong_sum, XDP_TX, &reply).unwrap_err();
        assert!(e.contains("IPv4 header checksum"), "{e}");
        let mut other_port = query.clone();
        other_port[14 + 20 + 3] = 54;
        assert!(o.judge(&other_port, XDP_TX, &reply).is_err());
        // A reply to a frame the acceptance rules reject: another MAC, a reflection port,
        // a loopback source.
        let mut broadcast = query.clone();
        broadcast[..6].copy_from_slice(&[0xff; 6]);
        let e = o.judge(&broadcast, XDP_TX, &reply).unwrap_err();
        assert!(e.contains("MAC"), "{e}");
        for (port, client) in [(19, [10, 0, 0, 1]), (40000, [127, 0, 0, 1])] {
            let mut p = path;
            p.sport = port;
            p.client = IpAddr::from(client);
            let (q, r) = exchange(&o, &p, "www.example.test.", 1);
            let e = o.judge(&q, XDP_TX, &r).unwrap_err();
            assert!(e.contains("source_port") || e.contains("loopback"), "{e}");
        }
        // The right reply for another client (the daemon's answer, another frame).
        let other = Path::v4([10, 0, 0, 9], super::super::input::SERVER_V4);
        let (_, other_reply) = exchange(&o, &other, "www.example.test.", 1);
        assert!(o.judge(&query, XDP_TX, &other_reply).is_err());
        // Another name's answer.
        let (_, v6_reply) = exchange(&o, &path, "v6.example.test.", 28);
        assert!(o.judge(&query, XDP_TX, &v6_reply).is_err());
        // Passes must not change the frame; aborts and drops never happen.
        assert!(o.judge(&query, XDP_PASS, &reply).is_err());
        assert!(o.judge(&query, XDP_ABORTED, &query).is_err());
        assert!(o.judge(&query, XDP_DROP, &query).is_err());
    }
}
