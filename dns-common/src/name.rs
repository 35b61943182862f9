//! Question names: case folding, the keyed name hash both sides index the hot names by, and
//! the word layout the kernel reads names in.
//!
//! Folding is ASCII-only (RFC 4343): `A`–`Z` become `a`–`z`, every other octet is kept.
//! Length octets are at most 63 and no octet folds into the range 0–63, so two wire names
//! whose folded octets are equal have the same label structure: comparing folded words
//! confirms a name completely, without walking its labels.
//!
//! # Words
//!
//! A name is read as little-endian `u64` words: word `i` holds octets `8i..8i + 8`, and the
//! octets past the end of the name in the last word are zero. The kernel reads every word
//! but the last straight from the packet; the last one it reads as the 8 octets *ending* at
//! the end of the name and shifts the octets before the word out ([`last_word_shift`]), so no
//! read goes past the name (the question type and class follow it, but a load that stays
//! inside the name needs no further bounds proof).

use crate::maps::{MAX_LABEL_LEN, MAX_NAME_LEN};

/// Words of a name of up to [`MAX_NAME_LEN`] octets, zero-padded to a whole word.
pub const NAME_WORDS: usize = MAX_NAME_LEN.div_ceil(8);

/// `0x01` in every octet.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every octet.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// ASCII case fold of one octet.
#[inline(always)]
pub const fn fold(b: u8) -> u8 {
    if b.wrapping_sub(b'A') < 26 {
        b | 0x20
    } else {
        b
    }
}

/// [`fold`] on the 8 octets of a word at once (SWAR: no per-octet branches or carries
/// between octets).
///
/// For each octet `b`, with `low = b & 0x7f`: `low + (0x80 - 0x41)` sets the octet's high
/// bit exactly when `low >= 'A'`, `low + (0x80 - 0x5b)` exactly when `low > 'Z'`; neither sum
/// exceeds `0xff`, so no carry crosses into the next octet. An octet is an upper-case ASCII
/// letter when the first bit is set, the second is not and `b` itself has no high bit;
/// moving that bit from position 7 to position 5 gives the `0x20` to OR in.
#[inline(always)]
pub const fn fold_word(w: u64) -> u64 {
    let low = w & !HIGHS;
    let at_least_a = low + ONES * (0x80 - b'A' as u64);
    let above_z = low + ONES * (0x80 - b'Z' as u64 - 1);
    let upper = at_least_a & !above_z & !w & HIGHS;
    w | (upper >> 2)
}

/// Number of words a name of `len` octets occupies.
#[inline(always)]
pub const fn word_count(len: usize) -> usize {
    len.div_ceil(8)
}

/// The right shift that turns the 8 octets ending at the end of a `len`-octet name (loaded
/// little-endian) into its last word: the octets of earlier words (or of whatever precedes
/// a name shorter than 8 octets) are shifted out, zeros come in at the top.
#[inline(always)]
pub const fn last_word_shift(len: usize) -> u32 {
    // Octets of the name in its last word: 1..=8.
    let in_last = len - 8 * (word_count(len) - 1);
    (8 * (8 - in_last)) as u32
}

/// Key of the name hash, drawn at random each time the program is loaded (so bucket
/// placement cannot be predicted from outside). Stored in the config map for the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashKey {
    pub k0: u64,
    pub k1: u64,
}

/// Odd 64-bit constants of the mixer (the golden ratio and murmur3's fmix64 multipliers).
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
const FMIX1: u64 = 0xff51_afd7_ed55_8ccd;
const FMIX2: u64 = 0xc4ce_b9fe_1a85_ec53;

/// Starts hashing a name of `len` octets.
#[inline(always)]
pub const fn hash_start(key: &HashKey, len: usize) -> u64 {
    key.k0 ^ (len as u64).wrapping_mul(MIX)
}

/// Mixes one folded word into the hash: a multiply spreads low bits upwards, the xor-shift
/// brings high bits back down for the next word.
#[inline(always)]
pub const fn hash_word(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(MIX);
    h ^ (h >> 32)
}

/// Finishes a hash (murmur3's fmix64 over the state and the second key half), so every
/// input bit affects the bucket bits and the tag bits alike.
#[inline(always)]
pub const fn hash_finish(key: &HashKey, h: u64) -> u64 {
    let mut h = h ^ key.k1;
    h ^= h >> 33;
    h = h.wrapping_mul(FMIX1);
    h ^= h >> 33;
    h = h.wrapping_mul(FMIX2);
    h ^ (h >> 33)
}

/// The keyed hash of a name given as folded words (`words.len() == word_count(len)`). Not
/// cryptographic: a hash match is always confirmed against the full stored name, so a
/// collision costs a comparison, never a wrong answer.
pub fn hash_words(key: &HashKey, len: usize, words: &[u64]) -> u64 {
    let mut h = hash_start(key, len);
    for &w in words {
        h = hash_word(h, w);
    }
    hash_finish(key, h)
}

/// Why a wire name was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The buffer ended inside the name.
    Truncated,
    /// Longer than 255 octets on the wire.
    TooLong,
    /// A length octet above 63: a compression pointer or an obsolete label type.
    BadLabel,
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

/// A valid wire name, folded and laid out in words: what the kernel stores with an answer
/// and confirms a query's name against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FoldedName {
    /// Wire length, root octet included (1..=255).
    pub len: usize,
    /// Folded octets as little-endian words, zero past `len`.
    pub words: [u64; NAME_WORDS],
}

impl FoldedName {
    /// Folds the uncompressed name at the start of `wire` (any case).
    pub fn new(wire: &[u8]) -> Result<Self, NameError> {
        let len = wire_name_len(wire)?;
        let mut octets = [0u8; NAME_WORDS * 8];
        octets[..len].copy_from_slice(&wire[..len]);
        let mut words = [0u64; NAME_WORDS];
        for (w, chunk) in words.iter_mut().zip(octets.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = fold_word(u64::from_le_bytes(b));
        }
        Ok(Self { len, words })
    }

    /// The name's keyed hash.
    pub fn hash(&self, key: &HashKey) -> u64 {
        hash_words(key, self.len, &self.words[..word_count(self.len)])
    }

    /// The folded wire octets.
    pub fn octets(&self) -> ([u8; NAME_WORDS * 8], usize) {
        let mut out = [0u8; NAME_WORDS * 8];
        for (chunk, w) in out.chunks_exact_mut(8).zip(self.words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        (out, self.len)
    }
}

impl core::fmt::Debug for FoldedName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (octets, len) = self.octets();
        f.debug_struct("FoldedName")
            .field("len", &len)
            .field("octets", &&octets[..len])
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A deterministic generator for test inputs.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0
        }
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

    /// Every octet value in every lane, next to every octet value in the neighbouring lanes
    /// (carries between lanes would show there) and next to random octets.
    #[test]
    fn fold_word_equals_fold_per_octet() {
        let per_octet = |w: u64| {
            let mut b = w.to_le_bytes();
            for x in &mut b {
                *x = fold(*x);
            }
            u64::from_le_bytes(b)
        };
        let mut rng = Lcg(7);
        for lane in 0..8 {
            for v in 0..=255u64 {
                for n in 0..=255u64 {
                    let neighbour = if lane == 7 { lane - 1 } else { lane + 1 };
                    let w = (v << (8 * lane)) | (n << (8 * neighbour));
                    assert_eq!(fold_word(w), per_octet(w), "{w:#018x}");
                }
                for _ in 0..64 {
                    let w = (rng.next() & !(0xff << (8 * lane))) | (v << (8 * lane));
                    assert_eq!(fold_word(w), per_octet(w), "{w:#018x}");
                }
            }
        }
    }

    #[test]
    fn word_counts_and_shifts() {
        assert_eq!(NAME_WORDS, 32);
        assert_eq!(word_count(1), 1);
        assert_eq!(word_count(8), 1);
        assert_eq!(word_count(9), 2);
        assert_eq!(word_count(255), 32);
        assert_eq!(last_word_shift(1), 56);
        assert_eq!(last_word_shift(8), 0);
        assert_eq!(last_word_shift(9), 56);
        assert_eq!(last_word_shift(18), 48);
        assert_eq!(last_word_shift(255), 8);
    }

    /// The kernel's way of reading a name (whole words from the name's start, the last word
    /// as the 8 octets ending at the name's end, shifted) gives the words userspace computes
    /// from the wire name, whatever precedes and follows the name in the packet.
    #[test]
    fn kernel_word_reads_match_the_folded_name() {
        let mut rng = Lcg(99);
        for len in (1..=MAX_NAME_LEN).filter(|&l| l != 2) {
            // Labels of random lengths (1..=63) filling exactly `len` octets with the root.
            let mut wire = Vec::new();
            let mut remaining = len - 1;
            while remaining > 0 {
                let mut label = (1 + rng.next() % 63) as usize;
                if label + 1 > remaining {
                    label = remaining - 1;
                }
                if remaining - (label + 1) == 1 {
                    label = if label > 1 { label - 1 } else { label + 1 };
                }
                wire.push(label as u8);
                for _ in 0..label {
                    wire.push(0x40 | (rng.next() as u8 & 0x3f));
                }
                remaining -= label + 1;
            }
            wire.push(0);
            let name = FoldedName::new(&wire).unwrap();
            assert_eq!(name.len, len);

            // The packet: a 12-octet header of garbage, the name, qtype/qclass.
            let mut packet = Vec::new();
            packet.extend((0..12).map(|_| rng.next() as u8));
            let start = packet.len();
            packet.extend_from_slice(&wire);
            packet.extend_from_slice(&[0, 1, 0, 1]);
            let load = |off: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&packet[off..off + 8]);
                u64::from_le_bytes(b)
            };
            let n = word_count(len);
            let mut words = Vec::new();
            for i in 0..n - 1 {
                words.push(fold_word(load(start + 8 * i)));
            }
            words.push(fold_word(load(start + len - 8) >> last_word_shift(len)));
            assert_eq!(&words[..], &name.words[..n], "len {len}");
            assert!(name.words[n..].iter().all(|&w| w == 0));
        }
    }

    #[test]
    fn folded_names_ignore_case_only() {
        let a = FoldedName::new(b"\x03WwW\x07Example\x04TEST\x00").unwrap();
        let b = FoldedName::new(b"\x03www\x07example\x04test\x00").unwrap();
        assert_eq!(a, b);
        let (octets, len) = a.octets();
        assert_eq!(&octets[..len], b"\x03www\x07example\x04test\x00");
        let key = HashKey { k0: 1, k1: 2 };
        assert_eq!(a.hash(&key), b.hash(&key));
        let c = FoldedName::new(b"\x03wwx\x07example\x04test\x00").unwrap();
        assert_ne!(a, c);
        assert_ne!(a.hash(&key), c.hash(&key));
        // Trailing data after the root is not part of the name.
        assert_eq!(
            FoldedName::new(b"\x01a\x00\xff\xff").unwrap(),
            FoldedName::new(b"\x01A\x00").unwrap()
        );
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert_eq!(
            FoldedName::new(b"\x03www\xc0\x0c"),
            Err(NameError::BadLabel)
        );
        assert_eq!(FoldedName::new(b"\x03ww"), Err(NameError::Truncated));
        let mut long = Vec::new();
        for _ in 0..4 {
            long.push(63);
            long.extend(core::iter::repeat_n(b'x', 63));
        }
        long.push(0);
        assert_eq!(FoldedName::new(&long), Err(NameError::TooLong));
        assert_eq!(wire_name_len(&long[64..]), Ok(64 * 3 + 1));
    }

    /// The hash depends on the key, and names that share a long prefix or differ in one
    /// octet anywhere hash apart.
    #[test]
    fn hash_is_keyed_and_spreads_similar_names() {
        let name = |s: &str| {
            let mut wire = Vec::new();
            for label in s.split('.').filter(|l| !l.is_empty()) {
                wire.push(label.len() as u8);
                wire.extend_from_slice(label.as_bytes());
            }
            wire.push(0);
            FoldedName::new(&wire).unwrap()
        };
        let k1 = HashKey { k0: 1, k1: 2 };
        let k2 = HashKey { k0: 3, k1: 2 };
        let www = name("www.example.test");
        assert_ne!(www.hash(&k1), www.hash(&k2));

        // 40 000 names sharing a 16-octet prefix, into 2^16 buckets of 4 with 32-bit tags:
        // no bucket holds more than 4 of them (a fixed key keeps this deterministic).
        let key = HashKey {
            k0: 0x0123_4567_89ab_cdef,
            k1: 0xfedc_ba98_7654_3210,
        };
        let mut counts = std::vec![0u8; 1 << 16];
        let mut tags = std::collections::HashSet::new();
        for i in 0..40_000 {
            let h = name(&std::format!("aaaaaaaaaaaaaaa{i}.example.test")).hash(&key);
            counts[(h & 0xffff) as usize] += 1;
            tags.insert(h);
        }
        assert_eq!(tags.len(), 40_000, "no full 64-bit collisions");
        let max = *counts.iter().max().unwrap();
        assert!(max <= 8, "fullest bucket holds {max}");
        // Flipping any single input bit changes about half of the output bits.
        let base = www.hash(&key);
        for i in 0..18 * 8 {
            let mut words = www.words;
            words[i / 64] ^= 1 << (i % 64);
            let h = hash_words(&key, www.len, &words[..word_count(www.len)]);
            let flipped = (h ^ base).count_ones();
            assert!(
                (16..=48).contains(&flipped),
                "bit {i}: {flipped} bits changed"
            );
        }
    }
}
