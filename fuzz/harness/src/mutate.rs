//! Byte-level mutations for the bounded runs (cargo-fuzz brings its own): what libFuzzer's
//! default mutators do, in a few lines, plus dictionary tokens for text formats.

use crate::rng::Rng;

/// Octet values that sit on boundaries: zero, one, the sign bits, all ones, a compression
/// pointer's first octet, the largest label length and the first too large one.
pub const INTERESTING: [u8; 10] = [0x00, 0x01, 0x02, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xfe, 0xff];

/// Applies 1 to `max_ops` random edits to `input`, inserting `tokens` now and then; the
/// result is at most `max_len` octets.
pub fn mutate(
    rng: &mut Rng,
    input: &[u8],
    tokens: &[&[u8]],
    max_ops: usize,
    max_len: usize,
) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.range(1, max_ops.max(1)) {
        edit(rng, &mut out, tokens);
    }
    out.truncate(max_len);
    out
}

/// One random edit.
fn edit(rng: &mut Rng, b: &mut Vec<u8>, tokens: &[&[u8]]) {
    let len = b.len();
    let at = rng.below(len.max(1));
    match rng.below(11) {
        // Flip one bit.
        0 if len > 0 => b[at] ^= 1 << rng.below(8),
        // Set an octet to a boundary value or a random one.
        1 if len > 0 => b[at] = *rng.pick(&INTERESTING),
        2 if len > 0 => b[at] = rng.byte(),
        // Add or subtract a little (lengths and counts).
        3 if len > 0 => b[at] = b[at].wrapping_add(*rng.pick(&[1u8, 2, 0xff, 0xfe])),
        // Insert or delete octets.
        4 => b.insert(rng.below(len + 1), rng.byte()),
        5 if len > 0 => {
            let n = rng.range(1, 8.min(len - at));
            b.drain(at..at + n);
        }
        // Cut the end off, or add to it.
        6 if len > 0 => b.truncate(at),
        7 => b.extend((0..rng.range(1, 16)).map(|_| rng.byte())),
        // Copy a chunk over another place, or insert a copy of it.
        8 if len > 1 => {
            let from = rng.below(len);
            let n = rng.range(1, 16.min(len - from));
            let chunk = b[from..from + n].to_vec();
            if rng.percent(50) {
                let to = rng.below(len - n + 1);
                b[to..to + n].copy_from_slice(&chunk);
            } else {
                let to = rng.below(len + 1);
                b.splice(to..to, chunk);
            }
        }
        // A dictionary token.
        9 if !tokens.is_empty() => {
            let token = rng.pick(tokens);
            let to = rng.below(len + 1);
            b.splice(to..to, token.iter().copied());
        }
        // A 16-bit field set to a boundary value (counts, types, lengths, pointers).
        _ if len > 1 => {
            let at = rng.below(len - 1);
            let v = *rng.pick(&[0u16, 1, 2, 0xff, 0x100, 0x7fff, 0x8000, 0xc00c, 0xffff]);
            b[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
        _ => b.push(rng.byte()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_the_input_within_the_length_limit() {
        let input = b"$ORIGIN example.test.\n@ 60 SOA ns1 h 1 2 3 4 5\n";
        let mut changed = 0;
        for i in 0..500 {
            let mut rng = Rng::for_item(1, i);
            let out = mutate(&mut rng, input, &[b"$TTL"], 4, 64);
            assert!(out.len() <= 64);
            changed += usize::from(out != input);
        }
        // Some edits undo each other or write what was there; nearly all change something.
        assert!(changed > 450, "{changed}");
        // Empty input grows.
        let mut rng = Rng::new(3);
        assert!((0..50).any(|_| !mutate(&mut rng, b"", &[], 2, 64).is_empty()));
    }
}
