//! Ethernet / 802.1Q / IPv4 / IPv6 / UDP: one small parser per header, each advancing an
//! offset.

use dns_common::{
    CFG_ANY_V4, CFG_ANY_V6, CFG_LISTEN_MAP_V4, CFG_LISTEN_MAP_V6, INLINE_LISTEN_ADDRS, Outcome,
    XdpConfig, be16, v4_mapped,
};

use crate::{LISTEN_ADDRS, packet::Packet};

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
pub const IPV4_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const IPPROTO_UDP: u8 = 17;

/// Where the headers of a UDP DNS query are.
pub struct Frame {
    /// Offset of the IP header (14, or 18 behind an 802.1Q tag).
    pub l3: usize,
    /// Offset of the UDP header.
    pub l4: usize,
    pub v6: bool,
    /// UDP length (header included) as the packet states it, checked against IP.
    pub udp_len: usize,
}

impl Frame {
    /// Offset of the DNS message.
    #[inline(always)]
    pub fn dns(&self) -> usize {
        self.l4 + UDP_HLEN
    }
}

/// The headers of a UDP query to us.
///
/// Verifier note: the verifier follows every path separately as long as registers differ,
/// and a tagged frame, an untagged one, IPv4 and IPv6 would leave four sets of header
/// offsets, each verified through the whole rest of the program. So the 802.1Q tag is
/// taken into account without a branch, and after the IP-specific checks the IP version
/// and the offsets are read again from the packet: both paths continue as one.
#[inline(always)]
pub fn frame(pkt: &Packet, cfg: &XdpConfig) -> Result<Frame, Outcome> {
    let l3 = ethernet(pkt)?;
    match be16(*pkt.view(l3 - 2).ok_or(Outcome::NotIp)?) {
        ETH_P_IP => ipv4(pkt, cfg, l3)?,
        ETH_P_IPV6 => ipv6(pkt, cfg, l3)?,
        _ => return Err(Outcome::NotIp),
    }
    let v6 = is_zero((pkt.reload_be16(l3 - 2).ok_or(Outcome::NotIp)? ^ ETH_P_IPV6) as u64);
    let l4 = l3 + IPV4_HLEN + v6 * (IPV6_HLEN - IPV4_HLEN);
    let udp_len = pkt.reload_be16(l4 + 4).ok_or(Outcome::Malformed)? as usize;
    Ok(Frame {
        l3,
        l4,
        v6: v6 != 0,
        udp_len,
    })
}

/// The native word of `b[i..i + 8]`.
#[inline(always)]
pub fn word64(b: &[u8], i: usize) -> u64 {
    u64::from_ne_bytes([
        b[i],
        b[i + 1],
        b[i + 2],
        b[i + 3],
        b[i + 4],
        b[i + 5],
        b[i + 6],
        b[i + 7],
    ])
}

/// 1 when `x` is zero, else 0 (`x` below 2⁶³), without a branch: LLVM sees neither the
/// comparison nor `x` (see `packet::opaque`), so it cannot turn this back into one.
#[inline(always)]
fn is_zero(x: u64) -> usize {
    crate::packet::opaque(x as usize).wrapping_sub(1) >> 63
}

/// Ethernet, then at most one 802.1Q tag: the offset of the IP header (its ethertype is the
/// two octets before it).
#[inline(always)]
fn ethernet(pkt: &Packet) -> Result<usize, Outcome> {
    let outer = be16(*pkt.view(12).ok_or(Outcome::NotIp)?);
    Ok(ETH_HLEN + 4 * is_zero((outer ^ ETH_P_8021Q) as u64))
}

/// IPv4 without options, not a fragment, UDP to our port and one of our addresses.
#[inline(always)]
fn ipv4(pkt: &Packet, cfg: &XdpConfig, l3: usize) -> Result<(), Outcome> {
    let ip: &[u8; IPV4_HLEN] = pkt.view(l3).ok_or(Outcome::NotIp)?;
    match ip[0] {
        0x45 => {}
        b if b >> 4 != 4 => return Err(Outcome::NotIp),
        b if b & 0x0f > 5 => return Err(Outcome::IpOptions),
        _ => return Err(Outcome::Malformed),
    }
    // More-fragments flag or a fragment offset.
    if be16([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(Outcome::Fragment);
    }
    if ip[9] != IPPROTO_UDP {
        return Err(Outcome::NotUdp);
    }
    let tot_len = be16([ip[2], ip[3]]) as usize;
    if tot_len < IPV4_HLEN + UDP_HLEN || l3 + tot_len > pkt.len() {
        return Err(Outcome::Malformed);
    }
    // Not to multicast (224/4), broadcast or "this network" (the sources are judged by the
    // acceptance rules, `crate::accept`).
    if ip[16] >= 224 || ip[16] == 0 {
        return Err(Outcome::OtherAddress);
    }
    if cfg.flags & CFG_ANY_V4 == 0 && !listening_v4(cfg, [ip[16], ip[17], ip[18], ip[19]]) {
        return Err(Outcome::OtherAddress);
    }
    udp(pkt, cfg, l3 + IPV4_HLEN, tot_len - IPV4_HLEN)
}

/// IPv6 without extension headers, UDP to our port and one of our addresses.
#[inline(always)]
fn ipv6(pkt: &Packet, cfg: &XdpConfig, l3: usize) -> Result<(), Outcome> {
    let ip: &[u8; IPV6_HLEN] = pkt.view(l3).ok_or(Outcome::NotIp)?;
    if ip[0] >> 4 != 6 {
        return Err(Outcome::NotIp);
    }
    match ip[6] {
        IPPROTO_UDP => {}
        // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP,
        // shim6: extension headers we do not walk.
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => return Err(Outcome::IpOptions),
        _ => return Err(Outcome::NotUdp),
    }
    let payload = be16([ip[4], ip[5]]) as usize;
    if payload < UDP_HLEN || l3 + IPV6_HLEN + payload > pkt.len() {
        return Err(Outcome::Malformed);
    }
    let dst = halves(ip.last_chunk::<16>().ok_or(Outcome::NotIp)?);
    // Not to multicast (the sources are judged by the acceptance rules, `crate::accept`).
    // The first octet is the low octet of a native (little-endian) word.
    if dst.0 as u8 == 0xff {
        return Err(Outcome::OtherAddress);
    }
    if cfg.flags & CFG_ANY_V6 == 0 && !listening_v6(cfg, dst) {
        return Err(Outcome::OtherAddress);
    }
    udp(pkt, cfg, l3 + IPV6_HLEN, payload)
}

/// UDP to our port whose length agrees with IP.
#[inline(always)]
fn udp(pkt: &Packet, cfg: &XdpConfig, l4: usize, ip_payload: usize) -> Result<(), Outcome> {
    let udp: &[u8; UDP_HLEN] = pkt.view(l4).ok_or(Outcome::Malformed)?;
    if udp[2] != cfg.port[0] || udp[3] != cfg.port[1] {
        return Err(Outcome::OtherPort);
    }
    let udp_len = be16([udp[4], udp[5]]) as usize;
    if udp_len != ip_payload || udp_len < UDP_HLEN + dns_common::query::HEADER_LEN {
        return Err(Outcome::Malformed);
    }
    Ok(())
}

/// The destination is one of the configured IPv4 addresses: a few compared inline, more
/// looked up in `LISTEN_ADDRS`.
#[inline(always)]
fn listening_v4(cfg: &XdpConfig, dst: [u8; 4]) -> bool {
    if cfg.flags & CFG_LISTEN_MAP_V4 != 0 {
        let mapped = v4_mapped(dst);
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&0u64.to_ne_bytes());
        key[8..].copy_from_slice(&mapped[8..]);
        // SAFETY: the value is not read, only its presence.
        return unsafe { LISTEN_ADDRS.get(key) }.is_some();
    }
    let dst = u32::from_ne_bytes(dst);
    let n = cfg.n_listen_v4 as usize;
    let mut i = 0;
    while i < INLINE_LISTEN_ADDRS {
        if i >= n {
            break;
        }
        if u32::from_ne_bytes(cfg.listen_v4[i]) == dst {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn listening_v6(cfg: &XdpConfig, dst: (u64, u64)) -> bool {
    if cfg.flags & CFG_LISTEN_MAP_V6 != 0 {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&dst.0.to_ne_bytes());
        key[8..].copy_from_slice(&dst.1.to_ne_bytes());
        // SAFETY: the value is not read, only its presence.
        return unsafe { LISTEN_ADDRS.get(key) }.is_some();
    }
    let n = cfg.n_listen_v6 as usize;
    let mut i = 0;
    while i < INLINE_LISTEN_ADDRS {
        if i >= n {
            break;
        }
        if halves(&cfg.listen_v6[i]) == dst {
            return true;
        }
        i += 1;
    }
    false
}

/// An IPv6 address as two native words (compared in two steps, not sixteen).
#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    (word64(a, 0), word64(a, 8))
}
