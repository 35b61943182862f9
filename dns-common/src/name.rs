//! Question-name parsing and case folding, written so the verifier accepts it: fixed-size
//! buffers, explicit index checks, loops with constant bounds.
//!
//! Folding is ASCII-only (RFC 4343): `A`–`Z` become `a`–`z`, every other octet is kept.
//! Length octets are at most 63 and so never change when folded, which is why
//! [`fold_in_place`] can fold the whole wire name without tracking label boundaries.

use crate::maps::{MAX_LABEL_LEN, MAX_NAME_LEN};

/// Why a question name was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The message ended inside the name.
    Truncated,
    /// Longer than 255 octets on the wire.
    TooLong,
    /// A length octet above 63: a compression pointer (not allowed in a lone question
    /// here) or an obsolete extended label type.
    BadLabel,
}

/// Most labels a 255-octet name can have (127 one-octet labels and the root).
const MAX_LABELS: usize = 128;

/// ASCII case fold of one octet.
#[inline(always)]
pub const fn fold(b: u8) -> u8 {
    if b.wrapping_sub(b'A') < 26 {
        b | 0x20
    } else {
        b
    }
}

/// Walks the labels of the name that starts at `buf[start]`, with `avail` octets of the
/// message available from there, and returns its wire length including the root octet.
#[inline(always)]
pub fn name_len_at<const N: usize>(
    buf: &[u8; N],
    start: usize,
    avail: usize,
) -> Result<usize, NameError> {
    let mut pos = 0usize;
    let mut labels = 0;
    while labels < MAX_LABELS {
        if pos >= MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if pos >= avail {
            return Err(NameError::Truncated);
        }
        let idx = start + pos;
        if idx >= N {
            return Err(NameError::Truncated);
        }
        let len = buf[idx];
        if len == 0 {
            return Ok(pos + 1);
        }
        if len > MAX_LABEL_LEN {
            return Err(NameError::BadLabel);
        }
        pos += len as usize + 1;
        labels += 1;
    }
    Err(NameError::TooLong)
}

/// Folds a zero-padded key in place. Runs a fixed number of iterations whatever the name's
/// length (zero octets fold to zero), which keeps the verifier's work independent of it.
#[inline(always)]
pub fn fold_in_place(key: &mut [u8; MAX_NAME_LEN + 1]) {
    let mut i = 0;
    while i < MAX_NAME_LEN + 1 {
        key[i] = fold(key[i]);
        i += 1;
    }
}

/// Wire length of the uncompressed name at the start of `wire`, root octet included.
pub fn wire_name_len(wire: &[u8]) -> Result<usize, NameError> {
    let mut pos = 0usize;
    loop {
        if pos >= MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let len = *wire.get(pos).ok_or(NameError::Truncated)?;
        if len == 0 {
            return Ok(pos + 1);
        }
        if len > MAX_LABEL_LEN {
            return Err(NameError::BadLabel);
        }
        pos += len as usize + 1;
    }
}

/// Folds the uncompressed wire name at the start of `wire` into `key` (zero-padded).
pub fn fold_wire_name(wire: &[u8], key: &mut [u8; MAX_NAME_LEN + 1]) -> Result<usize, NameError> {
    let len = wire_name_len(wire)?;
    key.fill(0);
    key[..len].copy_from_slice(&wire[..len]);
    fold_in_place(key);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn buf(bytes: &[u8]) -> [u8; 512] {
        let mut b = [0xAAu8; 512];
        b[..bytes.len()].copy_from_slice(bytes);
        b
    }

    #[test]
    fn fold_only_touches_ascii_upper() {
        for b in 0..=255u8 {
            let expect = if b.is_ascii_uppercase() {
                b.to_ascii_lowercase()
            } else {
                b
            };
            assert_eq!(fold(b), expect, "octet {b:#x}");
        }
    }

    #[test]
    fn name_len_of_simple_names() {
        let b = buf(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
        assert_eq!(name_len_at(&b, 0, 22), Ok(18));
        let root = buf(b"\x00\x00\x01");
        assert_eq!(name_len_at(&root, 0, 5), Ok(1));
        // Offset start.
        let b = buf(b"xx\x01a\x00");
        assert_eq!(name_len_at(&b, 2, 3), Ok(3));
    }

    #[test]
    fn name_len_rejects_truncation_pointers_and_long_labels() {
        let b = buf(b"\x03www\x07example");
        assert_eq!(name_len_at(&b, 0, 12), Err(NameError::Truncated));
        assert_eq!(name_len_at(&b, 0, 3), Err(NameError::Truncated));
        assert_eq!(name_len_at(&b, 0, 0), Err(NameError::Truncated));
        let ptr = buf(b"\x03www\xc0\x0c");
        assert_eq!(name_len_at(&ptr, 0, 6), Err(NameError::BadLabel));
        let label64 = buf(&[64]);
        assert_eq!(name_len_at(&label64, 0, 100), Err(NameError::BadLabel));
        let mut l63 = [b'a'; 65];
        l63[0] = 63;
        l63[64] = 0;
        assert_eq!(name_len_at(&buf(&l63), 0, 65), Ok(65));
    }

    /// A name of exactly 255 octets (root included) is accepted; 256 is not.
    #[test]
    fn name_len_limits() {
        let max = max_name();
        assert_eq!(max.len(), 255);
        assert_eq!(name_len_at(&buf(&max), 0, 255), Ok(255));
        assert_eq!(wire_name_len(&max), Ok(255));

        // 4 × 63-octet labels: 4 × 64 + 1 = 257 octets.
        let mut too_long = Vec::new();
        for _ in 0..4 {
            too_long.push(63);
            too_long.extend(core::iter::repeat_n(b'x', 63));
        }
        too_long.push(0);
        assert_eq!(
            name_len_at(&buf(&too_long), 0, 400),
            Err(NameError::TooLong)
        );
        assert_eq!(wire_name_len(&too_long), Err(NameError::TooLong));
        // 127 one-octet labels + root = 255 octets: the most labels a name can have.
        let mut many = Vec::new();
        for _ in 0..127 {
            many.extend_from_slice(b"\x01a");
        }
        many.push(0);
        assert_eq!(name_len_at(&buf(&many), 0, 300), Ok(255));
    }

    #[test]
    fn fold_in_place_folds_every_octet() {
        let mut key = [0u8; 256];
        key[..18].copy_from_slice(b"\x03WwW\x07ExAmPlE\x04TeSt\x00");
        fold_in_place(&mut key);
        assert_eq!(&key[..18], b"\x03www\x07example\x04test\x00");
        assert!(key[18..].iter().all(|&k| k == 0));
    }

    #[test]
    fn fold_wire_name_of_a_max_length_name() {
        let max = max_name();
        let mut key = [0xFFu8; 256];
        assert_eq!(fold_wire_name(&max, &mut key), Ok(255));
        assert_eq!(key[0], 63);
        assert_eq!(key[1], b'a');
        assert_eq!(key[253], b'b');
        assert_eq!(key[254], 0);
        assert_eq!(key[255], 0);
    }

    fn max_name() -> Vec<u8> {
        // 3 × (63 + 1) + (61 + 1) + 1 = 255
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(63);
            v.extend(core::iter::repeat_n(b'A', 63));
        }
        v.push(61);
        v.extend(core::iter::repeat_n(b'b', 61));
        v.push(0);
        v
    }
}
