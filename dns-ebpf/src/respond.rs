//! Turning a query into its response in place.
//!
//! The UDP segment of the response is assembled in the scratch buffer (which already holds
//! the query's header and question), checksummed there, and only then is the frame grown
//! and written: until `bpf_xdp_adjust_tail` succeeds the packet is untouched, so every
//! earlier failure can still pass it up unchanged.

use aya_ebpf::{
    helpers::generated::{
        bpf_csum_diff, bpf_get_prandom_u32, bpf_probe_read_kernel, bpf_xdp_adjust_tail,
        bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use dns_common::{MAX_ANSWER_LEN, MAX_VARIANTS, Outcome, XdpConfig, csum, slot_index};

use crate::{
    HOT_GEN, HOT_NAMES, HOT_SLOTS, OUT_LEN, Scratch,
    dns::{MSG, OPT_LEN, QNAME, Query, at},
    parse::{DNS_HLEN, Frame, ptr_at},
};

/// TTL / hop limit of our responses.
const REPLY_TTL: u8 = 64;
/// Most octets one `bpf_csum_diff` call sums.
const CSUM_CHUNK: usize = 512;

#[inline(always)]
fn put(b: &mut [u8; OUT_LEN], i: usize, v: u8) {
    b[i & (OUT_LEN - 1)] = v;
}

#[inline(always)]
fn put16(b: &mut [u8; OUT_LEN], i: usize, v: [u8; 2]) {
    put(b, i, v[0]);
    put(b, i + 1, v[1]);
}

#[inline(always)]
pub fn respond(
    ctx: &XdpContext,
    cfg: &XdpConfig,
    frame: &Frame,
    q: &Query,
    s: &mut Scratch,
) -> Result<(), Outcome> {
    // Which pool, and its published answer.
    let hot = unsafe { HOT_NAMES.get(&s.key) }.ok_or(Outcome::Miss)?;
    let pool = hot.pool;
    let gen_ptr = HOT_GEN.get_ptr(pool).ok_or(Outcome::NoAnswer)?;
    let generation = unsafe { core::ptr::read_volatile(gen_ptr) };
    let slot = HOT_SLOTS
        .get(slot_index(pool, generation))
        .ok_or(Outcome::NoAnswer)?;
    // The slot already carries a later generation: the writer published twice since we
    // read HOT_GEN and is rewriting this slot. A race like the one checked after the copy.
    if slot.generation != generation {
        return Err(Outcome::Torn);
    }
    let n = slot.n_variants as usize;
    if n == 0 || n > MAX_VARIANTS {
        return Err(Outcome::NoAnswer);
    }
    let mut pick = 0usize;
    if n > 1 {
        let r = unsafe { bpf_get_prandom_u32() };
        while pick + 1 < n && pick + 1 < MAX_VARIANTS {
            if r < slot.thresholds[pick] {
                break;
            }
            pick += 1;
        }
    }
    let variant = &slot.variants[pick & (MAX_VARIANTS - 1)];
    let alen = variant.len as usize;
    if alen == 0 || alen > MAX_ANSWER_LEN {
        return Err(Outcome::NoAnswer);
    }

    // Does the response fit what the client accepts?
    let name_len = q.name_len;
    if name_len > dns_common::MAX_NAME_LEN {
        return Err(Outcome::BadName);
    }
    let opt_len = if q.edns { OPT_LEN } else { 0 };
    let msg_len = DNS_HLEN + name_len + 4 + alen + opt_len;
    if msg_len > q.max_udp {
        return Err(Outcome::TooBig);
    }

    // Copy the answer RRs behind the question, then check nobody republished meanwhile.
    let ans = QNAME + name_len + 4;
    let ret = unsafe {
        bpf_probe_read_kernel(
            s.out.as_mut_ptr().add(ans & 0x1ff).cast(),
            alen as u32,
            variant.bytes.as_ptr().cast(),
        )
    };
    if ret != 0 {
        return Err(Outcome::NoAnswer);
    }
    let ancount = variant.ancount;
    if unsafe { core::ptr::read_volatile(gen_ptr) } != generation {
        return Err(Outcome::Torn);
    }

    // OPT: our payload size, extended RCODE 0, version 0, DO echoed (RFC 3225), no options.
    let o = &mut s.out;
    if q.edns {
        let opt = ans + alen;
        put(o, opt, 0);
        put16(o, opt + 1, dns_common::qtype::OPT.to_be_bytes());
        put16(o, opt + 3, cfg.edns_udp_size);
        put(o, opt + 5, 0);
        put(o, opt + 6, 0);
        put(o, opt + 7, if q.dnssec_ok { 0x80 } else { 0 });
        put(o, opt + 8, 0);
        put16(o, opt + 9, [0, 0]);
    }

    // Header: ID kept; QR=1, opcode 0, AA=1, TC=0, RD copied; RA=0, Z=0, AD=0, CD copied,
    // RCODE NOERROR; QD=1 kept; AN from the answer; NS=0; AR=1 with OPT.
    let rd = at(o, MSG + 2) & 0x01;
    let cd = at(o, MSG + 3) & 0x10;
    put(o, MSG + 2, 0x84 | rd);
    put(o, MSG + 3, cd);
    put16(o, MSG + 6, ancount);
    put16(o, MSG + 8, [0, 0]);
    put16(o, MSG + 10, [0, if q.edns { 1 } else { 0 }]);

    // UDP header: ports swapped, new length, checksum over the pseudo-header and segment.
    let seg_len = 8 + msg_len;
    let udp: *const [u8; 8] = ptr_at(ctx, frame.l4, Outcome::Malformed)?;
    let udp = unsafe { *udp };
    put16(o, 0, [udp[2], udp[3]]);
    put16(o, 2, [udp[0], udp[1]]);
    put16(o, 4, (seg_len as u16).to_be_bytes());
    put16(o, 6, [0, 0]);
    // Zero pad to a multiple of four for bpf_csum_diff (does not change the sum).
    put16(o, seg_len, [0, 0]);
    put16(o, seg_len + 2, [0, 0]);

    let pseudo = if frame.v6 {
        let ip: *const [u8; 40] = ptr_at(ctx, frame.l3, Outcome::Malformed)?;
        let ip = unsafe { &*ip };
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
        csum::pseudo_v6(&src, &dst, seg_len as u16)
    } else {
        let ip: *const [u8; 20] = ptr_at(ctx, frame.l3, Outcome::Malformed)?;
        let ip = unsafe { &*ip };
        csum::pseudo_v4(
            [ip[12], ip[13], ip[14], ip[15]],
            [ip[16], ip[17], ip[18], ip[19]],
            seg_len as u16,
        )
    };
    let padded = (seg_len + 3) & !3;
    let first = if padded > CSUM_CHUNK {
        CSUM_CHUNK
    } else {
        padded
    };
    let rest = padded - first;
    let mut sum = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            o.as_mut_ptr().cast(),
            (first & 0x3fc) as u32,
            pseudo,
        )
    };
    if sum < 0 {
        return Err(Outcome::Aborted);
    }
    if rest > 0 {
        sum = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                o.as_mut_ptr().add(CSUM_CHUNK).cast(),
                (rest & 0x1fc) as u32,
                sum as u32,
            )
        };
        if sum < 0 {
            return Err(Outcome::Aborted);
        }
    }
    let c = match csum::finish(sum as u32) {
        0 => 0xffff,
        c => c,
    };
    put16(o, 6, c.to_ne_bytes());

    // Grow (or, with Ethernet padding, shrink) the frame. Until this succeeds the packet
    // is untouched.
    let new_len = frame.l4 + seg_len;
    let delta = new_len as i32 - (ctx.data_end() - ctx.data()) as i32;
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return Err(Outcome::TailGrow);
    }

    // From here on the frame is being rewritten: any failure is a bug (XDP_ABORTED).
    let ret = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            frame.l4 as u32,
            o.as_mut_ptr().cast(),
            (seg_len & 0x3ff) as u32,
        )
    };
    if ret != 0 {
        return Err(Outcome::Aborted);
    }

    let eth: *mut [u8; 12] = ptr_at(ctx, 0, Outcome::Aborted)?;
    let eth = unsafe { &mut *eth };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&eth[0..6]);
    eth.copy_within(6..12, 0);
    eth[6..12].copy_from_slice(&mac);

    if frame.v6 {
        let ip: *mut [u8; 40] = ptr_at(ctx, frame.l3, Outcome::Aborted)?;
        let ip = unsafe { &mut *ip };
        let plen = (seg_len as u16).to_be_bytes();
        ip[4] = plen[0];
        ip[5] = plen[1];
        ip[7] = REPLY_TTL;
        let mut tmp = [0u8; 16];
        tmp.copy_from_slice(&ip[8..24]);
        ip.copy_within(24..40, 8);
        ip[24..40].copy_from_slice(&tmp);
    } else {
        let ip: *mut [u8; 20] = ptr_at(ctx, frame.l3, Outcome::Aborted)?;
        let ip = unsafe { &mut *ip };
        let tot = ((20 + seg_len) as u16).to_be_bytes();
        ip[2] = tot[0];
        ip[3] = tot[1];
        ip[8] = REPLY_TTL;
        let mut tmp = [0u8; 4];
        tmp.copy_from_slice(&ip[12..16]);
        ip.copy_within(16..20, 12);
        ip[16..20].copy_from_slice(&tmp);
        let c = csum::ipv4_header(ip);
        ip[10] = c[0];
        ip[11] = c[1];
    }
    Ok(())
}
