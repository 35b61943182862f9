//! Ethernet / 802.1Q / IPv4 / IPv6 / UDP parsing: one bounds-checked accessor and one small
//! parser per header, each advancing an offset.

use aya_ebpf::programs::XdpContext;
use dns_common::{CFG_ANY_V4, CFG_ANY_V6, Outcome, XdpConfig, be16, v4_mapped};

use crate::LISTEN_ADDRS;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
/// DNS header size.
pub const DNS_HLEN: usize = 12;

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

/// A pointer to a `T` at `off` in the frame, or `Err(on_short)` when the frame is too short.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize, on_short: Outcome) -> Result<*mut T, Outcome> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return Err(on_short);
    }
    Ok((start + off) as *mut T)
}

#[inline(always)]
pub fn frame(ctx: &XdpContext, cfg: &XdpConfig) -> Result<Frame, Outcome> {
    let frame_len = ctx.data_end() - ctx.data();

    // Ethernet, then at most one 802.1Q tag.
    let eth: *const [u8; ETH_HLEN] = ptr_at(ctx, 0, Outcome::NotIp)?;
    let mut proto = be16(unsafe { [(*eth)[12], (*eth)[13]] });
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q {
        let tag: *const [u8; 4] = ptr_at(ctx, ETH_HLEN, Outcome::NotIp)?;
        proto = be16(unsafe { [(*tag)[2], (*tag)[3]] });
        l3 = ETH_HLEN + 4;
    }

    let (l4, v6, ip_payload) = match proto {
        ETH_P_IP => {
            let ip: *const [u8; IPV4_HLEN] = ptr_at(ctx, l3, Outcome::NotIp)?;
            let ip = unsafe { &*ip };
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
            if tot_len < IPV4_HLEN + UDP_HLEN || l3 + tot_len > frame_len {
                return Err(Outcome::Malformed);
            }
            check_v4_addrs(
                cfg,
                [ip[12], ip[13], ip[14], ip[15]],
                [ip[16], ip[17], ip[18], ip[19]],
            )?;
            (l3 + IPV4_HLEN, false, tot_len - IPV4_HLEN)
        }
        ETH_P_IPV6 => {
            let ip: *const [u8; IPV6_HLEN] = ptr_at(ctx, l3, Outcome::NotIp)?;
            let ip = unsafe { &*ip };
            if ip[0] >> 4 != 6 {
                return Err(Outcome::NotIp);
            }
            match ip[6] {
                IPPROTO_UDP => {}
                // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility,
                // HIP, shim6: extension headers we do not walk.
                0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => return Err(Outcome::IpOptions),
                _ => return Err(Outcome::NotUdp),
            }
            let payload = be16([ip[4], ip[5]]) as usize;
            if payload < UDP_HLEN || l3 + IPV6_HLEN + payload > frame_len {
                return Err(Outcome::Malformed);
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            check_v6_addrs(cfg, &src, &dst)?;
            (l3 + IPV6_HLEN, true, payload)
        }
        _ => return Err(Outcome::NotIp),
    };

    let udp: *const [u8; UDP_HLEN] = ptr_at(ctx, l4, Outcome::Malformed)?;
    let udp = unsafe { &*udp };
    if [udp[2], udp[3]] != cfg.port {
        return Err(Outcome::OtherPort);
    }
    let udp_len = be16([udp[4], udp[5]]) as usize;
    if udp_len != ip_payload || udp_len < UDP_HLEN + DNS_HLEN {
        return Err(Outcome::Malformed);
    }
    Ok(Frame {
        l3,
        l4,
        v6,
        udp_len,
    })
}

/// Only answer unicast queries from unicast sources, to one of our addresses.
#[inline(always)]
fn check_v4_addrs(cfg: &XdpConfig, src: [u8; 4], dst: [u8; 4]) -> Result<(), Outcome> {
    // Multicast (224/4), limited broadcast and "this network" never get a reply.
    if dst[0] >= 224 || src[0] >= 224 || src[0] == 0 || dst[0] == 0 {
        return Err(Outcome::OtherAddress);
    }
    if cfg.flags & CFG_ANY_V4 == 0 && unsafe { LISTEN_ADDRS.get(v4_mapped(dst)) }.is_none() {
        return Err(Outcome::OtherAddress);
    }
    Ok(())
}

#[inline(always)]
fn check_v6_addrs(cfg: &XdpConfig, src: &[u8; 16], dst: &[u8; 16]) -> Result<(), Outcome> {
    if dst[0] == 0xff || src[0] == 0xff || *src == [0; 16] {
        return Err(Outcome::OtherAddress);
    }
    if cfg.flags & CFG_ANY_V6 == 0 && unsafe { LISTEN_ADDRS.get(dst) }.is_none() {
        return Err(Outcome::OtherAddress);
    }
    Ok(())
}
