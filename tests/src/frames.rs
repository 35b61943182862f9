//! Building query frames and checking response frames, with etherparse as the independent
//! reference for Ethernet/IP/UDP (checksums included) and hickory-proto for DNS.

use std::net::IpAddr;

use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_PORT: u16 = 40000;

/// Where a frame goes.
#[derive(Clone, Copy, Debug)]
pub struct Path {
    pub client: IpAddr,
    pub server: IpAddr,
    pub vlan: Option<u16>,
    pub sport: u16,
    pub dport: u16,
}

impl Path {
    pub fn v4(client: [u8; 4], server: [u8; 4]) -> Self {
        Self {
            client: IpAddr::from(client),
            server: IpAddr::from(server),
            vlan: None,
            sport: CLIENT_PORT,
            dport: 53,
        }
    }

    pub fn v6(client: &str, server: &str) -> Self {
        Self {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            vlan: None,
            sport: CLIENT_PORT,
            dport: 53,
        }
    }

    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    /// The same path seen from the other side.
    pub fn reversed(self) -> Self {
        Self {
            client: self.server,
            server: self.client,
            vlan: self.vlan,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// A UDP frame from `path.client` to `path.server` carrying `payload` (TTL/hop limit `ttl`).
pub fn udp_frame(
    path: &Path,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let mut out = Vec::new();
    match (path.client, path.server, path.vlan) {
        (IpAddr::V4(c), IpAddr::V4(s), None) => eth
            .ipv4(c.octets(), s.octets(), ttl)
            .udp(path.sport, path.dport)
            .write(&mut out, payload)
            .unwrap(),
        (IpAddr::V4(c), IpAddr::V4(s), Some(v)) => eth
            .single_vlan(v.try_into().unwrap())
            .ipv4(c.octets(), s.octets(), ttl)
            .udp(path.sport, path.dport)
            .write(&mut out, payload)
            .unwrap(),
        (IpAddr::V6(c), IpAddr::V6(s), None) => eth
            .ipv6(c.octets(), s.octets(), ttl)
            .udp(path.sport, path.dport)
            .write(&mut out, payload)
            .unwrap(),
        (IpAddr::V6(c), IpAddr::V6(s), Some(v)) => eth
            .single_vlan(v.try_into().unwrap())
            .ipv6(c.octets(), s.octets(), ttl)
            .udp(path.sport, path.dport)
            .write(&mut out, payload)
            .unwrap(),
        _ => panic!("mixed address families in {path:?}"),
    }
    out
}

/// A query frame as a client would send it (TTL 64).
pub fn query(path: &Path, dns: &[u8]) -> Vec<u8> {
    udp_frame(path, CLIENT_MAC, SERVER_MAC, 64, dns)
}

/// The response frame the XDP path must produce for a query on `path`: addresses and ports
/// swapped, TTL/hop limit 64, fresh IPv4 header checksum and UDP checksum, `dns` as payload.
/// The IPv4 identification and flags are kept from the query (etherparse writes DF=1 and ID 0
/// like it does for the query, so building both with it keeps them equal).
pub fn response(path: &Path, dns: &[u8]) -> Vec<u8> {
    udp_frame(&path.reversed(), SERVER_MAC, CLIENT_MAC, 64, dns)
}

/// Checks a frame's IP and UDP checksums with etherparse and returns its UDP payload.
pub fn udp_payload(frame: &[u8]) -> Vec<u8> {
    let p = SlicedPacket::from_ethernet(frame).expect("response frame parses");
    assert!(matches!(p.link, Some(LinkSlice::Ethernet2(_))));
    let Some(TransportSlice::Udp(udp)) = p.transport else {
        panic!("not UDP: {p:?}")
    };
    let checksum = match p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(
                h.header_checksum,
                h.calc_header_checksum(),
                "IPv4 header checksum"
            );
            udp.to_header()
                .calc_checksum_ipv4(&h, udp.payload())
                .unwrap()
        }
        Some(NetSlice::Ipv6(ip)) => udp
            .to_header()
            .calc_checksum_ipv6(&ip.header().to_header(), udp.payload())
            .unwrap(),
        other => panic!("not IP: {other:?}"),
    };
    assert_eq!(udp.checksum(), checksum, "UDP checksum");
    assert_eq!(udp.length() as usize, 8 + udp.payload().len(), "UDP length");
    udp.payload().to_vec()
}

/// The UDP payload of a frame, without checking its checksums (queries built with odd
/// checksum fields on purpose).
pub fn udp_payload_unchecked(frame: &[u8]) -> Vec<u8> {
    let p = SlicedPacket::from_ethernet(frame).expect("frame parses");
    let Some(TransportSlice::Udp(udp)) = p.transport else {
        panic!("not UDP: {p:?}")
    };
    udp.payload().to_vec()
}
