//! Turning the query into its reply, in place: the question stays where it is (so the
//! client's case is echoed octet for octet), the answer records and an OPT record (with
//! the query's ECS option echoed, SCOPE set) replace the query's OPT record, header fields are rewritten, checksums derived from the query's,
//! and addresses and ports swapped.
//!
//! Steps: [`plan`] (sizes; does it fit the client?), [`checksums`] (from what is still the
//! query), [`grow`] (make room: at the tail, or in the headroom with the headers moved
//! forward), [`build`] (answer, OPT, header), [`commit`] (lengths, checksums, addresses).
//! Nothing is written before `grow` succeeds, so every earlier failure passes the query up
//! unchanged; after it, a failure is a bug and aborts.
//!
//! A *slipped* reply (response rate limiting) is the same reply without answer records and
//! with TC=1: header, question, OPT.

use dns_common::{
    Answer, CFG_PREFER_HEADROOM, MAX_ANSWER_LEN, Outcome, XdpConfig, be16, csum,
    ecs::{self, ReplyOpt},
    query::{self, HEADER_LEN, OPT_LEN, QTYPE_QCLASS_LEN},
};

use crate::{
    dns::Query,
    lookup::{Found, once},
    packet::{Packet, opaque},
    parse::{ETH_HLEN, Frame, IPPROTO_UDP, IPV4_HLEN, IPV6_HLEN, UDP_HLEN, word64},
};

/// TTL / hop limit of our replies.
const REPLY_TTL: u8 = 64;
/// Most octets a reply grows into the headroom. XDP guarantees 256 octets of headroom
/// (`XDP_PACKET_HEADROOM`), part of which the kernel keeps for its `xdp_frame`; the rest of
/// a larger growth goes to the tail.
const HEADROOM_GROWTH_MAX: usize = 192;
/// Longest prefix moved forward when growing into the headroom: Ethernet, an 802.1Q tag,
/// IPv6, UDP, the DNS header and the longest question.
const MAX_PREFIX_LEN: usize =
    ETH_HLEN + 4 + IPV6_HLEN + UDP_HLEN + HEADER_LEN + dns_common::MAX_NAME_LEN + QTYPE_QCLASS_LEN;
/// Words of the longest prefix (a loop bound).
const MAX_PREFIX_WORDS: usize = MAX_PREFIX_LEN / 8;
/// Answer octets copied per bounds check, and chunks of the longest answer.
const CHUNK: usize = 32;
const MAX_CHUNKS: usize = MAX_ANSWER_LEN / CHUNK;

/// The sizes of the reply.
struct Plan {
    /// Offset of the first octet after the question in the frame: the answer goes there.
    tail: usize,
    /// Answer length (0 when slipped) and OPT record length (0 without EDNS).
    answer_len: usize,
    opt_len: usize,
    /// The OPT record with the echoed ECS option, when the query had one: its length and
    /// checksum sum (its octets are computed again when written: the stack is small).
    ecs: Option<(usize, u16)>,
    /// New UDP length.
    udp_len: usize,
    /// A slipped reply: TC=1, no answer records.
    slip: bool,
}

#[inline(always)]
pub fn respond(
    pkt: &mut Packet,
    cfg: &XdpConfig,
    frame: &Frame,
    q: &Query,
    found: &Found,
    slip: bool,
) -> Result<Outcome, Outcome> {
    let plan = plan(cfg, frame, q, found, slip)?;
    let sums = checksums(pkt, cfg, frame, q, found.answer, &plan)?;
    let outcome = grow(pkt, cfg, &plan)?;
    // From here on the frame is being rewritten: any failure is a bug (XDP_ABORTED).
    if !plan.slip {
        copy_answer(pkt, found.answer, &plan).ok_or(Outcome::Aborted)?;
    }
    build(pkt, cfg, frame, q, found, &plan).ok_or(Outcome::Aborted)?;
    commit(pkt, frame, &plan, &sums).ok_or(Outcome::Aborted)?;
    Ok(outcome)
}

/// The reply's OPT record with the query's ECS option echoed, SCOPE set.
#[inline(always)]
fn reply_ecs(cfg: &XdpConfig, q: &Query, found: &Found) -> Option<ReplyOpt> {
    match (q.opt, q.subnet) {
        (Some(o), Some(s)) => Some(ecs::reply_opt(
            cfg.edns_udp_size,
            o.dnssec_ok,
            s,
            found.scope,
        )),
        _ => None,
    }
}

#[inline(always)]
fn plan(
    cfg: &XdpConfig,
    frame: &Frame,
    q: &Query,
    found: &Found,
    slip: bool,
) -> Result<Plan, Outcome> {
    let answer_len = if slip { 0 } else { found.len };
    let ecs = reply_ecs(cfg, q, found).map(|e| (e.len, e.sum));
    let opt_len = match (&ecs, q.opt) {
        (Some(e), _) => e.0,
        (None, Some(_)) => OPT_LEN,
        (None, None) => 0,
    };
    let msg_len = q.layout.question_end() + answer_len + opt_len;
    // min(the client's size, ours), as the daemon (`dns_common::size`).
    let client = match q.opt {
        Some(o) => Some(o.udp_size),
        None => None,
    };
    if msg_len > dns_common::size::max_reply(client, be16(cfg.edns_udp_size)) {
        return Err(Outcome::TooBig);
    }
    Ok(Plan {
        tail: frame.dns() + q.layout.question_end(),
        answer_len,
        opt_len,
        ecs,
        udp_len: UDP_HLEN + msg_len,
        slip,
    })
}

/// The reply's checksum fields.
struct Sums {
    udp: [u8; 2],
    /// IPv4 header checksum (unused for IPv6).
    ipv4: [u8; 2],
}

/// The reply's checksums. UDP: from the query's sum (computed here, the name's part while
/// hashing it: only hits pay for it), after checking the query's checksum field against it
/// (see `dns_common::csum`); IPv4 header: incrementally from the query's (RFC 1624), after
/// checking it.
#[inline(always)]
fn checksums(
    pkt: &Packet,
    cfg: &XdpConfig,
    frame: &Frame,
    q: &Query,
    answer: &Answer,
    plan: &Plan,
) -> Result<Sums, Outcome> {
    let (query_sum, pseudo) = query_sum(pkt, frame, q).ok_or(Outcome::Malformed)?;
    let udp: &[u8; UDP_HLEN] = pkt.view(frame.l4).ok_or(Outcome::Malformed)?;
    if !csum::udp_query_ok(query_sum, pseudo, [udp[6], udp[7]], frame.v6) {
        return Err(Outcome::BadChecksum);
    }
    let new_opt = match (&plan.ecs, q.opt) {
        (Some(e), _) => e.1,
        (None, Some(o)) => csum::sum_octets(&query::reply_opt(cfg.edns_udp_size, o.dnssec_ok)),
        (None, None) => 0,
    };
    let (new_flags, ancount, answer_sum) = if plan.slip {
        (query::slip_flags(q.flags), [0, 0], 0)
    } else {
        (query::reply_flags(q.flags), answer.ancount, answer.sum)
    };
    let delta = csum::UdpDelta {
        old_len: [udp[4], udp[5]],
        new_len: (plan.udp_len as u16).to_be_bytes(),
        old_flags: q.flags,
        new_flags,
        ancount,
        tail_offset: UDP_HLEN + q.layout.question_end(),
        old_opt: q.opt_sum,
        answer: answer_sum,
        answer_len: plan.answer_len,
        new_opt,
    };
    let udp_sum = csum::udp_reply(query_sum, &delta);

    let ipv4 = if frame.v6 {
        [0, 0]
    } else {
        let ip: &[u8; IPV4_HLEN] = pkt.view(frame.l3).ok_or(Outcome::Malformed)?;
        // Updated incrementally below, so a wrong header checksum would carry over into
        // the reply; the stack drops such a packet, and so would the client our reply.
        if !csum::ipv4_header_ok(ip) {
            return Err(Outcome::BadChecksum);
        }
        let tot = ((IPV4_HLEN + plan.udp_len) as u16).to_be_bytes();
        let mut s = !csum::word([ip[10], ip[11]]) as u32;
        s = csum::replace(s, [ip[2], ip[3]], tot);
        s = csum::replace(s, [ip[8], ip[9]], [REPLY_TTL, ip[9]]);
        csum::finish(s).to_ne_bytes()
    };
    Ok(Sums { udp: udp_sum, ipv4 })
}

/// The sum of everything the query's UDP checksum covers but the checksum field, and of
/// its pseudo-header alone: addresses, protocol and UDP length; ports and length; DNS
/// header; name; type and class; OPT record.
#[inline(always)]
fn query_sum(pkt: &Packet, frame: &Frame, q: &Query) -> Option<(u32, u32)> {
    let mut wide = 0u64;
    if frame.v6 {
        let addrs: &[u8; 32] = pkt.view(frame.l3 + 8)?;
        let mut i = 0;
        while i < 32 {
            wide = csum::add_wide(wide, word64(addrs, i));
            i += 8;
        }
    } else {
        wide = csum::add_wide(wide, word64(pkt.view::<8>(frame.l3 + 12)?, 0));
    }
    let udp: &[u8; UDP_HLEN] = pkt.view(frame.l4)?;
    // Protocol and UDP length, then ports and length: native words as they lie.
    let proto_len = u32::from_ne_bytes([0, IPPROTO_UDP, udp[4], udp[5]]);
    wide = csum::add_wide(wide, proto_len as u64);
    let pseudo = csum::fold_wide(wide) as u32;
    let ports_len = u64::from_ne_bytes([udp[0], udp[1], udp[2], udp[3], udp[4], udp[5], 0, 0]);
    wide = csum::add_wide(wide, ports_len);
    let dns = frame.dns();
    wide = csum::add_wide(wide, csum::sum_octets(pkt.view::<HEADER_LEN>(dns)?) as u64);
    wide = csum::add_wide(wide, q.name_sum);
    // Type and class, and the OPT record, follow the name: at an odd offset when its
    // length is odd.
    let after_name = UDP_HLEN + HEADER_LEN + q.layout.name_len;
    let qq: &[u8; QTYPE_QCLASS_LEN] = pkt.view(dns + q.layout.qtype_offset())?;
    wide = csum::add_wide(
        wide,
        csum::at_offset(csum::sum_octets(qq), after_name) as u64,
    );
    wide = csum::add_wide(wide, csum::at_offset(q.opt_sum, after_name) as u64);
    Some((csum::fold_wide(wide) as u32, pseudo))
}

/// Makes the frame exactly as long as the reply. Grows the tail when the driver left room
/// there; otherwise (or with `CFG_PREFER_HEADROOM`) grows into the headroom and moves the
/// headers and the question forward, taking from the tail what the headroom cannot give.
#[inline(always)]
fn grow(pkt: &mut Packet, cfg: &XdpConfig, plan: &Plan) -> Result<Outcome, Outcome> {
    let new_len = plan.tail + plan.answer_len + plan.opt_len;
    let old_len = pkt.len();
    if new_len <= old_len {
        // Ethernet padding covers the answer: trim the frame to the reply.
        let delta = new_len as i32 - old_len as i32;
        if delta != 0 && !pkt.adjust_tail(delta) {
            return Err(Outcome::GrowFailed);
        }
        return Ok(Outcome::Hit);
    }
    let grow_by = new_len - old_len;
    if cfg.flags & CFG_PREFER_HEADROOM == 0 && pkt.adjust_tail(grow_by as i32) {
        return Ok(Outcome::Hit);
    }
    let head = if grow_by > HEADROOM_GROWTH_MAX {
        HEADROOM_GROWTH_MAX
    } else {
        grow_by
    };
    // Read before anything moves: the last word of the prefix (see `move_prefix`).
    let last: u64 = pkt.load_ending(plan.tail).ok_or(Outcome::Malformed)?;
    if !pkt.adjust_head(-(head as i32)) {
        return Err(Outcome::GrowFailed);
    }
    if grow_by > head && !pkt.adjust_tail((grow_by - head) as i32) {
        // Give the headroom back: the frame is as it was.
        if !pkt.adjust_head(head as i32) {
            return Err(Outcome::Aborted);
        }
        return Err(Outcome::GrowFailed);
    }
    move_prefix(pkt, head, plan.tail, last).ok_or(Outcome::Aborted)?;
    Ok(Outcome::HitHeadroom)
}

/// Moves the first `len` octets of the frame, which now start at `head`, to the front.
/// Word by word from the front: each word is read before anything is written over it
/// (writes land `head` octets below the reads). The last, partial word was read before the
/// frame grew and is written as the 8 octets ending at `len`.
#[inline(always)]
fn move_prefix(pkt: &mut Packet, head: usize, len: usize, last: u64) -> Option<()> {
    let words = len / 8;
    let mut i = 0;
    while i < MAX_PREFIX_WORDS {
        if i >= words {
            break;
        }
        let w: u64 = pkt.load(head + 8 * i)?;
        pkt.store(8 * i, w)?;
        i += 1;
    }
    pkt.store_ending(len, last)
}

/// Writes the answer records behind the question.
#[inline(always)]
fn copy_answer(pkt: &mut Packet, answer: &Answer, plan: &Plan) -> Option<()> {
    // 32 octets per bounds check, then the whole words left, then the last 8 octets
    // (overlapping; the answer is at least 12 long), which userspace stored as a word of
    // their own. The answer is read only at offsets the verifier can bound: the loop
    // counter, which it knows exactly in every iteration and at every exit (the length,
    // read from the map, has no bound it can prove). The loop compares the counter with
    // the chunk count, not the length, so the length stays unrefined.
    let len = plan.answer_len;
    let chunks = len / CHUNK;
    let mut i = 0;
    while i < MAX_CHUNKS {
        if i >= chunks {
            break;
        }
        let at = CHUNK * i;
        let dst: &mut [u8; CHUNK] = pkt.view_mut(plan.tail + at)?;
        let mut w = 0;
        while w < CHUNK {
            put_word64(dst, w, answer_word(answer, at + w)?);
            w += 8;
        }
        i += 1;
    }
    // Hidden from LLVM, which knows it equals `chunks` (an offset the verifier cannot
    // bound); the verifier follows the counter through the stack.
    let done = CHUNK * opaque(i);
    let words = (len % CHUNK) / 8;
    let mut j = 0;
    while j < CHUNK / 8 - 1 {
        if j >= words {
            break;
        }
        pkt.store(plan.tail + done + 8 * j, answer_word(answer, done + 8 * j)?)?;
        j += 1;
    }
    pkt.store_ending(plan.tail + len, once(&answer.last_word))
}

/// Writes the OPT record behind the answer (or the question, when slipped), and the header.
#[inline(always)]
fn build(
    pkt: &mut Packet,
    cfg: &XdpConfig,
    frame: &Frame,
    q: &Query,
    found: &Found,
    plan: &Plan,
) -> Option<()> {
    let answer = found.answer;
    let len = plan.answer_len;
    let ecs = if plan.ecs.is_some() {
        reply_ecs(cfg, q, found)
    } else {
        None
    };
    if let Some(e) = &ecs {
        const HEAD: usize = ecs::OPT_HEADER_LEN + ecs::OPTION_HEADER_LEN;
        let o: &mut [u8; HEAD] = pkt.view_mut(plan.tail + len)?;
        let mut i = 0;
        while i < HEAD {
            o[i] = e.head[i];
            i += 1;
        }
        // The address octets: the 8 octets that end the record (overlapping the head with
        // the same values).
        pkt.store_ending(plan.tail + len + e.len, u64::from_ne_bytes(e.last))?;
    } else if let Some(opt) = q.opt {
        let r = query::reply_opt(cfg.edns_udp_size, opt.dnssec_ok);
        let o: &mut [u8; OPT_LEN] = pkt.view_mut(plan.tail + len)?;
        // Octet by octet: an array copy would become a memcpy call.
        let mut i = 0;
        while i < OPT_LEN {
            o[i] = r[i];
            i += 1;
        }
    }
    let h: &mut [u8; HEADER_LEN] = pkt.view_mut(frame.dns())?;
    let (flags, ancount) = if plan.slip {
        (query::slip_flags(q.flags), [0, 0])
    } else {
        (query::reply_flags(q.flags), answer.ancount)
    };
    h[2] = flags[0];
    h[3] = flags[1];
    h[6] = ancount[0];
    h[7] = ancount[1];
    Some(())
}

/// The 8 answer octets at `at` (`None` past `MAX_ANSWER_LEN`, which the loop bounds rule
/// out).
#[inline(always)]
fn answer_word(answer: &Answer, at: usize) -> Option<u64> {
    let b = answer.bytes.get(at..at + 8)?;
    Some(u64::from_ne_bytes([
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
    ]))
}

/// Swaps addresses and ports, sets lengths, TTL and checksums: a word at a time.
#[inline(always)]
fn commit(pkt: &mut Packet, frame: &Frame, plan: &Plan, sums: &Sums) -> Option<()> {
    let eth: &mut [u8; 12] = pkt.view_mut(0)?;
    let (dst, src) = (mac(eth, 0), mac(eth, 6));
    put_mac(eth, 0, src);
    put_mac(eth, 6, dst);

    let len = (plan.udp_len as u16).to_be_bytes();
    if frame.v6 {
        let ip: &mut [u8; IPV6_HLEN] = pkt.view_mut(frame.l3)?;
        ip[4] = len[0];
        ip[5] = len[1];
        ip[7] = REPLY_TTL;
        // Source and destination: octets 8..24 and 24..40.
        let src = (word64(ip, 8), word64(ip, 16));
        let dst = (word64(ip, 24), word64(ip, 32));
        put_word64(ip, 8, dst.0);
        put_word64(ip, 16, dst.1);
        put_word64(ip, 24, src.0);
        put_word64(ip, 32, src.1);
    } else {
        let ip: &mut [u8; IPV4_HLEN] = pkt.view_mut(frame.l3)?;
        let tot = ((IPV4_HLEN + plan.udp_len) as u16).to_be_bytes();
        ip[2] = tot[0];
        ip[3] = tot[1];
        ip[8] = REPLY_TTL;
        ip[10] = sums.ipv4[0];
        ip[11] = sums.ipv4[1];
        // Source and destination as one word, halves swapped.
        let addrs = word64(ip, 12);
        put_word64(ip, 12, addrs.rotate_left(32));
    }

    let udp: &mut [u8; UDP_HLEN] = pkt.view_mut(frame.l4)?;
    let reply = [
        udp[2],
        udp[3],
        udp[0],
        udp[1],
        len[0],
        len[1],
        sums.udp[0],
        sums.udp[1],
    ];
    put_word64(udp, 0, u64::from_ne_bytes(reply));
    Some(())
}

/// The 6 octets of a MAC address at `b[i..i + 6]`, in the low octets of a native word.
#[inline(always)]
fn mac(b: &[u8], i: usize) -> u64 {
    let lo = u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as u64;
    let hi = u16::from_ne_bytes([b[i + 4], b[i + 5]]) as u64;
    if cfg!(target_endian = "little") {
        lo | hi << 32
    } else {
        lo << 16 | hi
    }
}

#[inline(always)]
fn put_mac(b: &mut [u8], i: usize, v: u64) {
    let o = v.to_ne_bytes();
    let o = if cfg!(target_endian = "little") {
        [o[0], o[1], o[2], o[3], o[4], o[5]]
    } else {
        [o[2], o[3], o[4], o[5], o[6], o[7]]
    };
    b[i..i + 6].copy_from_slice(&o);
}

#[inline(always)]
fn put_word64(b: &mut [u8], i: usize, v: u64) {
    b[i..i + 8].copy_from_slice(&v.to_ne_bytes());
}
