//! The weighted pick: which of a pool's answer variants one query gets. One rule, used by
//! the XDP program (with `bpf_get_prandom_u32`) and by the daemon (with its own random
//! numbers), so both answer a weighted pool in the same proportions.

/// The variant for random number `r`: the first `i` with `r < thresholds[i]`, else the
/// last; 0 for an empty slice. `thresholds` are cumulative shares of the 32-bit range, the
/// last one `u32::MAX` (see `policy::thresholds` in the daemon).
#[inline(always)]
pub fn pick(thresholds: &[u32], r: u32) -> usize {
    let mut i = 0;
    while i + 1 < thresholds.len() {
        if r < thresholds[i] {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_follows_thresholds() {
        let t = [100, 200, u32::MAX];
        assert_eq!(pick(&t, 0), 0);
        assert_eq!(pick(&t, 99), 0);
        assert_eq!(pick(&t, 100), 1);
        assert_eq!(pick(&t, 199), 1);
        assert_eq!(pick(&t, 200), 2);
        assert_eq!(pick(&t, u32::MAX), 2);
        assert_eq!(pick(&[u32::MAX], u32::MAX), 0);
        assert_eq!(pick(&[u32::MAX], 0), 0);
        assert_eq!(pick(&[], 12345), 0);
        // "Else the last": a last threshold below MAX still takes the top of the range.
        assert_eq!(pick(&[10, 20], 30), 1);
    }

    /// Evenly spaced random numbers land in proportion to the threshold gaps.
    #[test]
    fn shares_follow_the_gaps() {
        let t = [1 << 30, 3 << 30, u32::MAX];
        let mut counts = [0u32; 3];
        for k in 0..1u32 << 16 {
            counts[pick(&t, k << 16)] += 1;
        }
        assert_eq!(counts, [1 << 14, 1 << 15, 1 << 14]);
    }
}
