//! The Internet checksum (RFC 1071): one's-complement sums of 16-bit words loaded in
//! *native* byte order. One's-complement addition commutes with byte swapping, so storing
//! the folded, complemented result back in native order yields the correct on-the-wire
//! checksum on either endianness (RFC 1071 §2(B)).
//!
//! The XDP path sums the query as it parses it (the name's words are summed while they are
//! hashed), checks the query's UDP checksum against that sum ([`udp_query_ok`]), and derives
//! the reply's checksum from it: minus the words that change, plus their new values and the
//! precomputed sum of the answer records (RFC 1624 style, [`udp_reply`]). The query's own
//! checksum field is not trusted: a local sender on a veth leaves it to offload
//! (`CHECKSUM_PARTIAL`: the field holds only the pseudo-header sum), and XDP cannot see that.

/// Adds two partial sums with end-around carry.
#[inline(always)]
pub const fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(carry as u32)
}

/// Subtracts a 16-bit word from a partial sum (adds its one's complement).
#[inline(always)]
pub const fn sub(sum: u32, word: u16) -> u32 {
    add(sum, !word as u32)
}

/// The native-order word of two octets as they lie in the packet.
#[inline(always)]
pub const fn word(b: [u8; 2]) -> u16 {
    u16::from_ne_bytes(b)
}

/// Adds a 64-bit word (four 16-bit words) to a wide accumulator as two 32-bit halves: no
/// carry is lost until 2³² words have been added.
#[inline(always)]
pub const fn add_wide(acc: u64, w: u64) -> u64 {
    acc + (w & 0xffff_ffff) + (w >> 32)
}

/// Folds a wide accumulator to a 16-bit partial sum (not complemented).
#[inline(always)]
pub const fn fold_wide(acc: u64) -> u16 {
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    let s = (s & 0xffff_ffff) + (s >> 32);
    fold(s as u32)
}

/// Folds a partial sum to 16 bits (not complemented).
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Folds a partial sum to 16 bits and complements it: the value to store (in native order,
/// i.e. with `to_ne_bytes`) in a checksum field.
#[inline(always)]
pub const fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The partial sum of octets that start at an odd offset, from their sum computed as if
/// they started at an even one: every octet changes half of its word, which swaps the
/// bytes of the (folded) sum.
#[inline(always)]
pub const fn at_offset(sum: u16, offset: usize) -> u16 {
    if offset & 1 == 1 {
        sum.swap_bytes()
    } else {
        sum
    }
}

/// The UDP checksum field for a folded sum: a computed zero is sent as `0xFFFF` (RFC 768).
#[inline(always)]
pub const fn udp_field(sum: u32) -> [u8; 2] {
    match finish(sum) {
        0 => [0xff, 0xff],
        c => c.to_ne_bytes(),
    }
}

/// Folded partial sum of a small fixed array (an odd trailing octet padded with zero), 8
/// octets at a time: what the XDP program sums its fixed-size fields with.
#[inline(always)]
pub fn sum_octets<const N: usize>(b: &[u8; N]) -> u16 {
    let mut wide = 0u64;
    let mut i = 0;
    while i + 8 <= N {
        let w = [
            b[i],
            b[i + 1],
            b[i + 2],
            b[i + 3],
            b[i + 4],
            b[i + 5],
            b[i + 6],
            b[i + 7],
        ];
        wide = add_wide(wide, u64::from_ne_bytes(w));
        i += 8;
    }
    while i + 2 <= N {
        wide = add_wide(wide, u16::from_ne_bytes([b[i], b[i + 1]]) as u64);
        i += 2;
    }
    if i < N {
        wide = add_wide(wide, u16::from_ne_bytes([b[i], 0]) as u64);
    }
    fold_wide(wide)
}

/// Partial sum of `data` (an odd trailing octet is padded with zero), added to `seed`.
pub fn partial(data: &[u8], seed: u32) -> u32 {
    let mut sum = seed;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum = add(sum, u16::from_ne_bytes([w[0], w[1]]) as u32);
    }
    if let [last] = chunks.remainder() {
        sum = add(sum, u16::from_ne_bytes([*last, 0]) as u32);
    }
    sum
}

/// Partial sum of the IPv4 pseudo-header for UDP (RFC 768).
#[inline(always)]
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], udp_len: u16) -> u32 {
    let mut s = 0;
    s = add(s, u16::from_ne_bytes([src[0], src[1]]) as u32);
    s = add(s, u16::from_ne_bytes([src[2], src[3]]) as u32);
    s = add(s, u16::from_ne_bytes([dst[0], dst[1]]) as u32);
    s = add(s, u16::from_ne_bytes([dst[2], dst[3]]) as u32);
    s = add(s, u16::from_ne_bytes([0, 17]) as u32);
    add(s, u16::from_ne_bytes(udp_len.to_be_bytes()) as u32)
}

/// Partial sum of the IPv6 pseudo-header for UDP (RFC 8200 §8.1).
#[inline(always)]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], udp_len: u16) -> u32 {
    let mut s = 0;
    let mut i = 0;
    while i < 16 {
        s = add(s, u16::from_ne_bytes([src[i], src[i + 1]]) as u32);
        s = add(s, u16::from_ne_bytes([dst[i], dst[i + 1]]) as u32);
        i += 2;
    }
    s = add(s, u16::from_ne_bytes([0, 17]) as u32);
    add(s, u16::from_ne_bytes(udp_len.to_be_bytes()) as u32)
}

/// The checksum field of an IPv4 header (its own checksum field is ignored).
pub fn ipv4_header(hdr: &[u8; 20]) -> [u8; 2] {
    let mut h = *hdr;
    h[10] = 0;
    h[11] = 0;
    finish(partial(&h, 0)).to_ne_bytes()
}

/// Whether an IPv4 header's checksum verifies (its words sum to all ones). The XDP path
/// updates the header checksum incrementally, so a wrong one would carry over into the
/// reply.
#[inline(always)]
pub fn ipv4_header_ok(hdr: &[u8; 20]) -> bool {
    sum_octets(hdr) == 0xffff
}

/// The UDP checksum field for `segment` (UDP header with a zero checksum field, then the
/// payload) given the pseudo-header sum. A computed zero is sent as `0xFFFF` (RFC 768).
pub fn udp(pseudo: u32, segment: &[u8]) -> [u8; 2] {
    udp_field(partial(segment, pseudo))
}

/// True when `segment` (with its checksum field in place) verifies against `pseudo`.
pub fn udp_verifies(pseudo: u32, segment: &[u8]) -> bool {
    finish(partial(segment, pseudo)) == 0
}

/// What changes between a query's UDP checksum and its reply's, in the order the XDP path
/// applies it. Addresses and ports are swapped, which leaves their sum unchanged.
#[derive(Clone, Copy, Debug)]
pub struct UdpDelta {
    /// UDP length, network order: it counts twice (pseudo-header and UDP header).
    pub old_len: [u8; 2],
    pub new_len: [u8; 2],
    /// DNS header flags (octets 2–3 of the message).
    pub old_flags: [u8; 2],
    pub new_flags: [u8; 2],
    /// ANCOUNT of the reply (the query's is zero).
    pub ancount: [u8; 2],
    /// Offset of the first octet after the question, from the start of the UDP header:
    /// where the query's OPT record was and the answer records go.
    pub tail_offset: usize,
    /// Partial sum of the query's OPT record as if at an even offset (0 without EDNS).
    pub old_opt: u16,
    /// Partial sum of the answer records as if at an even offset, and their length.
    pub answer: u16,
    pub answer_len: usize,
    /// Partial sum of the reply's OPT record as if at an even offset (0 without EDNS).
    pub new_opt: u16,
}

/// Whether a query's UDP checksum field is acceptable, given the sum of everything it
/// covers except the field (`data_sum`) and of its pseudo-header alone: it completes the
/// sum; or it is zero over IPv4 (no checksum, RFC 768; IPv6 requires one, RFC 8200 §8.1);
/// or it holds the pseudo-header sum, as a local sender leaves it for checksum offload (the
/// packet never crossed a wire).
pub fn udp_query_ok(data_sum: u32, pseudo: u32, field: [u8; 2], v6: bool) -> bool {
    let f = word(field);
    if f == 0 {
        return !v6;
    }
    finish(add(data_sum, f as u32)) == 0 || f == fold(pseudo)
}

/// The reply's UDP checksum field from the query's sum (everything the checksum covers
/// except the checksum field). Subtracting a word adds its complement; the terms are
/// accumulated wide and folded once.
pub fn udp_reply(query_sum: u32, d: &UdpDelta) -> [u8; 2] {
    let neg = |w: u16| (!w) as u64;
    let mut s = query_sum as u64;
    s += 2 * (neg(word(d.old_len)) + word(d.new_len) as u64);
    s += neg(word(d.old_flags)) + word(d.new_flags) as u64;
    s += word(d.ancount) as u64;
    s += neg(at_offset(d.old_opt, d.tail_offset));
    s += at_offset(d.answer, d.tail_offset) as u64;
    s += at_offset(d.new_opt, d.tail_offset + d.answer_len) as u64;
    udp_field(fold_wide(s) as u32)
}

/// RFC 1624 eq. 3 for one 16-bit field: `HC' = ~(~HC + ~m + m')`, as a partial sum to
/// continue with (`sum` starts as `!HC`).
#[inline(always)]
pub const fn replace(sum: u32, old: [u8; 2], new: [u8; 2]) -> u32 {
    add(sub(sum, word(old)), word(new) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// The IPv4 header example from RFC 1071's companion literature (Wikipedia's worked
    /// example): 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
    #[test]
    fn ipv4_header_known_vector() {
        let hdr: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&hdr), [0xb8, 0x61]);
        let mut with = hdr;
        with[10] = 0xb8;
        with[11] = 0x61;
        assert_eq!(finish(partial(&with, 0)), 0);
        assert!(ipv4_header_ok(&with));
        assert!(!ipv4_header_ok(&hdr));
        for bit in 0..160 {
            let mut flipped = with;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(!ipv4_header_ok(&flipped), "bit {bit}");
        }
    }

    /// Incremental update of an IPv4 header (TTL and total length) equals recomputing it.
    #[test]
    fn ipv4_header_incremental_update() {
        let mut hdr: [u8; 20] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let old = hdr;
        hdr[2..4].copy_from_slice(&0x1234u16.to_be_bytes());
        hdr[8] = 17;
        let mut s = !word([old[10], old[11]]) as u32;
        s = replace(s, [old[2], old[3]], [hdr[2], hdr[3]]);
        s = replace(s, [old[8], old[9]], [hdr[8], hdr[9]]);
        assert_eq!(finish(s).to_ne_bytes(), ipv4_header(&hdr));
    }

    /// RFC 1071 §3 numerical example: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let sum = partial(&data, 0);
        let folded = !finish(sum);
        assert_eq!(u16::from_be_bytes(folded.to_ne_bytes()), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            partial(&[0x12, 0x34, 0x56], 0),
            partial(&[0x12, 0x34, 0x56, 0x00], 0)
        );
    }

    #[test]
    fn fixed_arrays_sum_like_slices() {
        let b: [u8; 11] = [0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0];
        assert_eq!(sum_octets(&b), fold(partial(&b, 0)));
        let c: [u8; 12] = [0xff; 12];
        assert_eq!(sum_octets(&c), fold(partial(&c, 0)));
        let d: [u8; 5] = [1, 2, 3, 4, 5];
        assert_eq!(sum_octets(&d), fold(partial(&d, 0)));
    }

    #[test]
    fn wide_accumulation_equals_16_bit_words() {
        let data: Vec<u8> = (0..256u32).map(|i| (i * 37 + 11) as u8).collect();
        let mut acc = 0u64;
        for chunk in data.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            acc = add_wide(acc, u64::from_ne_bytes(b));
        }
        assert_eq!(fold_wide(acc), fold(partial(&data, 0)));
        assert_eq!(fold_wide(u64::MAX), fold(partial(&[0xff; 8], 0)));
    }

    /// Octets at an odd offset: their contribution is the byte-swapped even-offset sum.
    #[test]
    fn odd_offsets_swap_the_sum() {
        let bytes = [
            0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1e, 0xab,
        ];
        for lead in 0..4usize {
            let mut placed = std::vec![0u8; lead];
            placed.extend_from_slice(&bytes);
            let direct = fold(partial(&placed, 0));
            assert_eq!(
                at_offset(fold(partial(&bytes, 0)), lead),
                direct,
                "offset {lead}"
            );
        }
    }

    #[test]
    fn udp_checksum_roundtrip_v4_and_v6() {
        let mut seg = std::vec![
            0x30, 0x39, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00, 1, 2, 3, 4, 5
        ];
        let p4 = pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], seg.len() as u16);
        let c = udp(p4, &seg);
        seg[6..8].copy_from_slice(&c);
        assert!(udp_verifies(p4, &seg));
        seg[9] ^= 1;
        assert!(!udp_verifies(p4, &seg));
        seg[9] ^= 1;

        let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        seg[6] = 0;
        seg[7] = 0;
        let p6 = pseudo_v6(&src, &dst, seg.len() as u16);
        let c = udp(p6, &seg);
        seg[6..8].copy_from_slice(&c);
        assert!(udp_verifies(p6, &seg));
        assert!(!udp_verifies(p4, &seg) || p4 == p6);
    }

    #[test]
    fn query_checksums_that_are_accepted() {
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        let mut seg = std::vec![
            0x30, 0x39, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00, 1, 2, 3, 4, 5
        ];
        let pseudo = pseudo_v4(src, dst, seg.len() as u16);
        let data_sum = partial(&seg, pseudo);
        let c = udp(pseudo, &seg);
        assert!(udp_query_ok(data_sum, pseudo, c, false));
        assert!(udp_query_ok(data_sum, pseudo, c, true));
        // No checksum: fine over IPv4 only.
        assert!(udp_query_ok(data_sum, pseudo, [0, 0], false));
        assert!(!udp_query_ok(data_sum, pseudo, [0, 0], true));
        // Left for offload: the field holds the folded pseudo-header sum.
        let partial_field = fold(pseudo).to_ne_bytes();
        assert!(udp_query_ok(data_sum, pseudo, partial_field, false));
        // Anything else is a corrupted packet.
        let wrong = [c[0] ^ 0x10, c[1]];
        assert!(!udp_query_ok(data_sum, pseudo, wrong, false));
        seg[9] ^= 1;
        assert!(!udp_query_ok(partial(&seg, pseudo), pseudo, c, false));
    }

    #[test]
    fn zero_checksum_is_sent_as_ffff() {
        // A segment whose sum is 0xFFFF complements to zero.
        let seg = [0xff, 0xff];
        assert_eq!(udp(0, &seg), [0xff, 0xff]);
    }

    /// A query turned into a reply the XDP way (ports swapped, length, flags and ANCOUNT
    /// rewritten, the OPT record replaced by answer records and a new OPT record): the
    /// incremental checksum equals the one computed over the reply, for every parity of
    /// the name and of the answer.
    #[test]
    fn incremental_reply_checksum_equals_full_computation() {
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        for name_len in [1usize, 2, 17, 18, 255] {
            for answer_len in [13usize, 16, 32, 267] {
                for edns in [false, true] {
                    let old_opt = [0u8, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0];
                    let new_opt = [0u8, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0];
                    let answer: Vec<u8> = (0..answer_len).map(|i| (i * 7 + 3) as u8).collect();
                    let mut query = std::vec![0x9c, 0x40, 0x00, 0x35, 0, 0, 0, 0];
                    query.extend_from_slice(&[0xbe, 0xef, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0]);
                    query.push(edns as u8);
                    query.extend((0..name_len).map(|i| (i * 13 + 1) as u8));
                    query.extend_from_slice(&[0, 1, 0, 1]);
                    if edns {
                        query.extend_from_slice(&old_opt);
                    }
                    let qlen = (query.len() as u16).to_be_bytes();
                    query[4..6].copy_from_slice(&qlen);
                    let qcheck = udp(pseudo_v4(src, dst, query.len() as u16), &query);
                    query[6..8].copy_from_slice(&qcheck);

                    let tail = 8 + 12 + name_len + 4;
                    let mut reply = query[..tail].to_vec();
                    reply.extend_from_slice(&answer);
                    if edns {
                        reply.extend_from_slice(&new_opt);
                    }
                    let rlen = (reply.len() as u16).to_be_bytes();
                    reply[0..2].copy_from_slice(&query[2..4]);
                    reply[2..4].copy_from_slice(&query[0..2]);
                    reply[4..6].copy_from_slice(&rlen);
                    reply[6..8].copy_from_slice(&[0, 0]);
                    reply[10..12].copy_from_slice(&[0x84, 0x00]);
                    reply[14..16].copy_from_slice(&[0, 2]);
                    let full = udp(pseudo_v4(dst, src, reply.len() as u16), &reply);

                    let d = UdpDelta {
                        old_len: qlen,
                        new_len: rlen,
                        old_flags: [0x01, 0x20],
                        new_flags: [0x84, 0x00],
                        ancount: [0, 2],
                        tail_offset: tail,
                        old_opt: if edns { fold(partial(&old_opt, 0)) } else { 0 },
                        answer: fold(partial(&answer, 0)),
                        answer_len,
                        new_opt: if edns { fold(partial(&new_opt, 0)) } else { 0 },
                    };
                    let got = udp_reply(!word(qcheck) as u32, &d);
                    let mut zeroed = query.clone();
                    zeroed[6..8].copy_from_slice(&[0, 0]);
                    let data_sum = partial(&zeroed, pseudo_v4(src, dst, query.len() as u16));
                    assert_eq!(udp_reply(data_sum, &d), full);
                    assert_eq!(
                        got, full,
                        "name {name_len}, answer {answer_len}, edns {edns}"
                    );
                }
            }
        }
    }
}
