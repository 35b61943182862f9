//! The acceptance rules ([`dns_common::accept`], the daemon's too) before any DNS parsing:
//! the frame must be addressed to the receiving interface's own MAC address (`IFACE_SLOTS`,
//! written by the daemon when it attaches), and the source must pass `check_v4`/`check_v6`
//! with this host's addresses from `LOCAL_SET`. Both are array maps read inline (no helper
//! call); the hash maps `IFACES` and `LOCAL_ADDRS` are only looked up where a slot or
//! bucket says it spilled ([`dns_common::local`]). A rejected frame is passed, unchanged, to
//! the stack and the daemon, which apply the same rules.

use aya_ebpf::programs::XdpContext;
use dns_common::{
    IFACE_LOOPBACK, LOCAL_BROADCAST, LOCAL_OWN, Outcome, V4_MAPPED_WORD,
    accept::{self, Local},
    address_words,
    local::{iface_slot, local_bucket},
    v4_mapped,
};

use crate::{
    IFACE_SLOTS, IFACES, LOCAL_ADDRS, LOCAL_SET,
    lookup::once,
    packet::Packet,
    parse::{ETH_HLEN, Frame, UDP_HLEN, word64},
};

/// The source of an accepted query, as IPv6 (IPv4 as IPv4-mapped IPv6) in
/// [`address_words`], built from the packet (one word for IPv4): rate limiting and the
/// region lookup key on it, in registers. Aligned: LLVM copies the address with word stores,
/// which the verifier refuses at a misaligned stack offset.
#[repr(C, align(8))]
pub struct Client {
    pub words: [u32; 4],
}

/// What `LOCAL_SET` says about one source, looked up once: a [`Local`] that knows that
/// one address.
struct Source {
    addr: [u8; 16],
    flags: u8,
}

impl Source {
    #[inline(always)]
    fn is(&self, addr: &[u8; 16], flag: u8) -> bool {
        self.flags & flag != 0
            && word64(addr, 0) == word64(&self.addr, 0)
            && word64(addr, 8) == word64(&self.addr, 8)
    }
}

impl Local for Source {
    #[inline(always)]
    fn is_own_v4(&self, addr: [u8; 4]) -> bool {
        self.is(&v4_mapped(addr), LOCAL_OWN)
    }
    #[inline(always)]
    fn is_subnet_broadcast_v4(&self, addr: [u8; 4]) -> bool {
        self.is(&v4_mapped(addr), LOCAL_BROADCAST)
    }
    #[inline(always)]
    fn is_own_v6(&self, addr: &[u8; 16]) -> bool {
        self.is(addr, LOCAL_OWN)
    }
}

#[inline(always)]
pub fn check(ctx: &XdpContext, pkt: &Packet, frame: &Frame) -> Result<Client, Outcome> {
    let on_loopback = own_mac(ctx, pkt)?;
    let udp: &[u8; UDP_HLEN] = pkt.view(frame.l4).ok_or(Outcome::Malformed)?;
    let port = u16::from_be_bytes([udp[0], udp[1]]);
    let (addr, words) = if frame.v6 {
        let addr = *pkt.view::<16>(frame.l3 + 8).ok_or(Outcome::Malformed)?;
        (addr, address_words(&addr))
    } else {
        let v4 = *pkt.view::<4>(frame.l3 + 12).ok_or(Outcome::Malformed)?;
        (
            v4_mapped(v4),
            [0, 0, V4_MAPPED_WORD, u32::from_ne_bytes(v4)],
        )
    };
    let flags = local_flags(&addr);
    let source = Source { addr, flags };
    let checked = if frame.v6 {
        accept::check_v6(&addr, port, on_loopback, &source)
    } else {
        let v4 = [addr[12], addr[13], addr[14], addr[15]];
        accept::check_v4(v4, port, on_loopback, &source)
    };
    checked.map_err(Outcome::rejected)?;
    Ok(Client { words })
}

/// The `LOCAL_*` flags of `addr`: its bucket of `LOCAL_SET`, and `LOCAL_ADDRS` only when
/// that bucket spilled.
#[inline(always)]
fn local_flags(addr: &[u8; 16]) -> u8 {
    let w = [word64(addr, 0), word64(addr, 8)];
    let Some(bucket) = LOCAL_SET.get(local_bucket(w)) else {
        return 0;
    };
    let flags = bucket.find(w);
    if flags != 0 || once(&bucket.spill) == 0 {
        return flags;
    }
    match LOCAL_ADDRS.get_ptr(addr) {
        // SAFETY: a valid map value pointer; one octet, rewritten whole by the daemon.
        Some(f) => unsafe { core::ptr::read_volatile(f) },
        None => 0,
    }
}

/// Whether the frame is addressed to the MAC address of the interface it arrived on
/// (`Ok(on_loopback)`); an interface the daemon has not described gets no answers.
#[inline(always)]
fn own_mac(ctx: &XdpContext, pkt: &Packet) -> Result<bool, Outcome> {
    let eth: &[u8; ETH_HLEN] = pkt.view(0).ok_or(Outcome::NotIp)?;
    // Broadcast and multicast (the group bit) without a lookup.
    if eth[0] & 1 != 0 {
        return Err(Outcome::ForeignMac);
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    let slot = IFACE_SLOTS
        .get(iface_slot(ifindex))
        .ok_or(Outcome::ForeignMac)?;
    let iface = match once(slot).lookup(ifindex) {
        Ok(iface) => iface,
        Err(true) => {
            let iface = IFACES.get_ptr(ifindex).ok_or(Outcome::ForeignMac)?;
            // SAFETY: a valid map value pointer for the program's run.
            once(unsafe { &*iface })
        }
        Err(false) => return Err(Outcome::ForeignMac),
    };
    if iface.mac != [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]] {
        return Err(Outcome::ForeignMac);
    }
    Ok(iface.flags & IFACE_LOOPBACK != 0)
}
