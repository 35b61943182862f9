//! The Internet checksum (RFC 1071) in the form the kernel's `bpf_csum_diff` uses: a 32-bit
//! one's-complement accumulator of 16-bit words loaded in *native* byte order. One's-complement
//! addition commutes with byte swapping, so storing the folded, complemented result back in
//! native order yields the correct on-the-wire checksum on either endianness (RFC 1071 §2(B)).

/// Adds two partial sums with end-around carry.
#[inline(always)]
pub const fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(carry as u32)
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

/// Folds a partial sum to 16 bits and complements it: the value to store (in native order,
/// i.e. with `to_ne_bytes`) in a checksum field.
#[inline(always)]
pub const fn finish(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
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

/// The UDP checksum field for `segment` (UDP header with a zero checksum field, then the
/// payload) given the pseudo-header sum. A computed zero is sent as `0xFFFF` (RFC 768).
pub fn udp(pseudo: u32, segment: &[u8]) -> [u8; 2] {
    match finish(partial(segment, pseudo)) {
        0 => [0xff, 0xff],
        c => c.to_ne_bytes(),
    }
}

/// True when `segment` (with its checksum field in place) verifies against `pseudo`.
pub fn udp_verifies(pseudo: u32, segment: &[u8]) -> bool {
    finish(partial(segment, pseudo)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn zero_checksum_is_sent_as_ffff() {
        // A segment whose sum is 0xFFFF complements to zero.
        let seg = [0xff, 0xff];
        assert_eq!(udp(0, &seg), [0xff, 0xff]);
    }
}
