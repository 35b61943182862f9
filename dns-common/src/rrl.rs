//! Response rate limiting (RRL): the token bucket of one client network, one copy for the
//! XDP program and the daemon.
//!
//! Every client network (an IPv4 /24, an IPv6 /56 by default: [`RrlKey`]) has a bucket
//! that fills at `responses_per_second` and holds at most `responses_per_second × window`
//! answers. An answer takes one; when the bucket is empty the answer is *limited*: every
//! `slip`-th limited answer still goes out, truncated (TC=1, no records), so a real client
//! behind that network retries over TCP, which proves its address; the others are dropped.
//! `slip = 0` drops every limited answer, `slip = 1` truncates every one.
//!
//! The bucket is GCRA (the generic cell rate algorithm, a token bucket kept as one
//! timestamp): `tat` is when the bucket will be full again. An answer at time `now` fits
//! while `tat - now` leaves room for one more interval within the window; it moves `tat` one
//! interval (`1 s / responses_per_second`) on. One `u64` of state plus the slip counter, no
//! division on the answer path, and the clock is passed in (nanoseconds of any monotonic
//! clock: `bpf_ktime_get_coarse_ns` in the kernel), so the tests are deterministic.

use crate::{
    maps::{V4_MAPPED_WORD, address_words},
    name::{HashKey, hash_finish, hash_start, hash_word},
};

/// Nanoseconds per second.
const NS_PER_S: u64 = 1_000_000_000;

/// What happens to one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: sent as is.
    Pass,
    /// Limited, and sent truncated (TC=1, no records).
    Slip,
    /// Limited, and not sent.
    Drop,
}

/// The limits, precomputed for the answer path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RrlParams {
    /// Time one answer takes from the bucket: `1 s / responses_per_second`. 0 disables RRL.
    pub interval_ns: u64,
    /// How far `tat` may run ahead of the clock and still admit an answer: the bucket's
    /// depth (`window`) less one interval.
    pub tolerance_ns: u64,
    /// Every `slip`-th limited answer is sent truncated; 0: none.
    pub slip: u32,
    pub _pad: u32,
}

impl RrlParams {
    /// `responses_per_second` answers per second (0: no limit) and bursts of up to
    /// `responses_per_second × window_s` answers.
    pub const fn new(responses_per_second: u32, window_s: u32, slip: u32) -> Self {
        if responses_per_second == 0 {
            return Self {
                interval_ns: 0,
                tolerance_ns: 0,
                slip,
                _pad: 0,
            };
        }
        let interval_ns = NS_PER_S / responses_per_second as u64;
        let window_ns = window_s as u64 * NS_PER_S;
        let tolerance_ns = window_ns.saturating_sub(interval_ns);
        Self {
            interval_ns,
            tolerance_ns,
            slip,
            _pad: 0,
        }
    }

    /// Whether answers are limited at all.
    pub const fn enabled(&self) -> bool {
        self.interval_ns != 0
    }
}

/// One client network's bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Theoretical arrival time: when the bucket is full again (0: a new bucket).
    pub tat_ns: u64,
    /// Limited answers so far (for the slip count).
    pub limited: u32,
    pub _pad: u32,
}

impl Bucket {
    /// Accounts one answer at `now_ns`.
    #[inline(always)]
    pub fn account(&mut self, now_ns: u64, params: &RrlParams) -> Verdict {
        if !params.enabled() {
            return Verdict::Pass;
        }
        let tat = if self.tat_ns > now_ns {
            self.tat_ns
        } else {
            now_ns
        };
        if tat - now_ns <= params.tolerance_ns {
            self.tat_ns = tat + params.interval_ns;
            return Verdict::Pass;
        }
        self.limited = self.limited.wrapping_add(1);
        if params.slip != 0 && self.limited.is_multiple_of(params.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// A client network: the address with the bits past the prefix cleared, and its family, so
/// an IPv4 network and an IPv6 network never share a bucket. The address is kept as
/// [`address_words`] (IPv4 in the first word): the kernel builds, masks, hashes and
/// compares it in four registers, with no octet shuffling and no padding to clear.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RrlKey {
    /// The network's address as [`address_words`]: IPv4 in the first word.
    pub words: [u32; 4],
    /// 4 or 6 (0: an empty slot's key).
    pub family: u32,
}

/// Word `i` of the mask of a /`prefix` network, in [`address_words`]' order.
#[inline(always)]
const fn mask_word(prefix: u32, i: u32) -> u32 {
    let keep = prefix.saturating_sub(32 * i);
    let mask = if keep >= 32 {
        u32::MAX
    } else {
        !(u32::MAX >> keep)
    };
    mask.to_be()
}

impl RrlKey {
    /// The /`prefix` network of an IPv4 address (prefix 0..=32; larger counts as 32).
    pub fn v4(addr: [u8; 4], prefix: u8) -> Self {
        Self::v4_word(u32::from_ne_bytes(addr), prefix)
    }

    /// [`RrlKey::v4`] of the address as its native-endian word.
    #[inline(always)]
    pub fn v4_word(word: u32, prefix: u8) -> Self {
        let p = if prefix > 32 { 32 } else { prefix as u32 };
        Self {
            words: [word & mask_word(p, 0), 0, 0, 0],
            family: 4,
        }
    }

    /// The /`prefix` network of an IPv6 address (prefix 0..=128; larger counts as 128).
    pub fn v6(addr: &[u8; 16], prefix: u8) -> Self {
        Self::v6_words(address_words(addr), prefix)
    }

    /// [`RrlKey::v6`] of the address as [`address_words`].
    #[inline(always)]
    pub fn v6_words(w: [u32; 4], prefix: u8) -> Self {
        let p = if prefix > 128 { 128 } else { prefix as u32 };
        Self {
            words: [
                w[0] & mask_word(p, 0),
                w[1] & mask_word(p, 1),
                w[2] & mask_word(p, 2),
                w[3] & mask_word(p, 3),
            ],
            family: 6,
        }
    }

    /// The network of a client address given as IPv6 (IPv4 as IPv4-mapped IPv6, which counts
    /// as IPv4): its /`v4_prefix` or /`v6_prefix` network.
    pub fn client(addr: &[u8; 16], v4_prefix: u8, v6_prefix: u8) -> Self {
        Self::client_words(address_words(addr), v4_prefix, v6_prefix)
    }

    /// [`RrlKey::client`] of the address as [`address_words`] (the kernel's form).
    #[inline(always)]
    pub fn client_words(w: [u32; 4], v4_prefix: u8, v6_prefix: u8) -> Self {
        if w[0] == 0 && w[1] == 0 && w[2] == V4_MAPPED_WORD {
            Self::v4_word(w[3], v4_prefix)
        } else {
            Self::v6_words(w, v6_prefix)
        }
    }

    /// Whether `self` and `other` are the same network.
    #[inline(always)]
    pub fn same(&self, other: &Self) -> bool {
        self.words[0] == other.words[0]
            && self.words[1] == other.words[1]
            && self.words[2] == other.words[2]
            && self.words[3] == other.words[3]
            && self.family == other.family
    }

    /// The keyed hash of the network ([`crate::name`]'s mixer over its address as two
    /// 64-bit words and its family): with a key drawn at random, a sender cannot choose
    /// networks that share one slot of the table and push each other's buckets out.
    #[inline(always)]
    pub fn hash(&self, key: &HashKey) -> u64 {
        let w = &self.words;
        let w0 = w[0] as u64 | (w[1] as u64) << 32;
        let w1 = w[2] as u64 | (w[3] as u64) << 32;
        let h = hash_start(key, self.family as usize);
        hash_finish(key, hash_word(hash_word(h, w0), w1))
    }
}

/// The slot of a network of hash `hash` in a table of `mask + 1` slots (a power of two).
#[inline(always)]
pub const fn slot_index(hash: u64, mask: u32) -> u32 {
    hash as u32 & mask
}

/// One slot of a bucket table (the kernel's [`MAP_RRL_SLOTS`](crate::MAP_RRL_SLOTS), the
/// daemon's table): the network it belongs to and that network's bucket. A table of slots
/// rather than one entry per network bounds memory whatever the senders; two networks that
/// want one slot take it over from each other, each time with a fresh, full bucket
/// ([`Slot::account`]): a limited network can win a burst back only by crowding out
/// another, which a keyed hash lets no sender aim at.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub bucket: Bucket,
    pub key: RrlKey,
    pub _pad: u32,
}

impl Slot {
    /// Accounts one answer to network `key` at `now_ns`, taking the slot over with a fresh
    /// bucket when it holds another network (or none yet).
    #[inline(always)]
    pub fn account(&mut self, key: &RrlKey, now_ns: u64, params: &RrlParams) -> Verdict {
        if !self.key.same(key) {
            self.key = *key;
            self.bucket = Bucket::default();
        }
        self.bucket.account(now_ns, params)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, integer fields and byte arrays only, no implicit padding
    // (asserted below): valid for every byte pattern.
    unsafe impl aya::Pod for super::RrlKey {}
    unsafe impl aya::Pod for super::Bucket {}
    unsafe impl aya::Pod for super::RrlParams {}
    unsafe impl aya::Pod for super::Slot {}
}

const _: () = assert!(core::mem::size_of::<RrlKey>() == 20);
const _: () = assert!(core::mem::size_of::<Bucket>() == 16);
const _: () = assert!(core::mem::size_of::<RrlParams>() == 24);
const _: () = assert!(core::mem::size_of::<Slot>() == 40);

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A key's network address as octets (IPv4 in the first four).
    fn octets(k: &RrlKey) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (chunk, w) in out.chunks_exact_mut(4).zip(k.words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        out
    }

    /// Verdicts for answers at the given times (ms).
    fn run(params: &RrlParams, times_ms: impl IntoIterator<Item = u64>) -> std::vec::Vec<Verdict> {
        let mut b = Bucket::default();
        times_ms
            .into_iter()
            .map(|t| b.account(1_000 * MS + t * MS, params))
            .collect()
    }

    fn count(v: &[Verdict], which: Verdict) -> usize {
        v.iter().filter(|&&x| x == which).count()
    }

    #[test]
    fn a_burst_of_one_window_then_the_rate() {
        // 10 per second, window 1 s: 10 at once, then one every 100 ms.
        let p = RrlParams::new(10, 1, 0);
        let v = run(&p, [0; 15]);
        assert_eq!(count(&v, Verdict::Pass), 10);
        assert_eq!(count(&v, Verdict::Drop), 5);
        assert!(v[..10].iter().all(|&x| x == Verdict::Pass));

        // A steady 100 per second for 10 s gets 10 per second (+ the first burst).
        let v = run(&p, (0..1000).map(|i| i * 10));
        let passed = count(&v, Verdict::Pass);
        assert!((100..=111).contains(&passed), "{passed}");

        // At the rate exactly, nothing is limited.
        let v = run(&p, (0..100).map(|i| i * 100));
        assert_eq!(count(&v, Verdict::Pass), 100);

        // A quiet network gets its burst back after one window.
        let v = run(&p, (0..10).chain((0..10).map(|_| 1000)));
        assert_eq!(count(&v, Verdict::Pass), 20);
        // ... but only one window's worth, however long the quiet.
        let v = run(&p, (0..10).chain((0..15).map(|_| 60_000)));
        assert_eq!(count(&v, Verdict::Pass), 20);
    }

    #[test]
    fn a_longer_window_allows_longer_bursts() {
        let p = RrlParams::new(5, 3, 0);
        let v = run(&p, [0; 20]);
        assert_eq!(count(&v, Verdict::Pass), 15);
    }

    #[test]
    fn slip_truncates_every_nth_limited_answer() {
        let limited = |slip| {
            let p = RrlParams::new(1, 1, slip);
            let v = run(&p, [0; 13]);
            assert_eq!(v[0], Verdict::Pass);
            v[1..].to_vec()
        };
        assert_eq!(count(&limited(0), Verdict::Slip), 0, "0: drop all");
        assert_eq!(count(&limited(1), Verdict::Slip), 12, "1: slip all");
        let two = limited(2);
        assert_eq!(count(&two, Verdict::Slip), 6);
        assert_eq!(two[0], Verdict::Drop);
        assert_eq!(two[1], Verdict::Slip);
        assert_eq!(count(&limited(3), Verdict::Slip), 4);
    }

    #[test]
    fn disabled_passes_everything() {
        let p = RrlParams::new(0, 1, 2);
        assert!(!p.enabled());
        assert!(run(&p, [0; 1000]).iter().all(|&v| v == Verdict::Pass));
        assert!(RrlParams::new(1, 1, 2).enabled());
    }

    #[test]
    fn a_clock_behind_the_bucket_does_not_underflow() {
        let p = RrlParams::new(10, 1, 1);
        let mut b = Bucket::default();
        for _ in 0..10 {
            assert_eq!(b.account(5 * NS_PER_S, &p), Verdict::Pass);
        }
        // An earlier timestamp (another CPU's clock read a moment before): still limited.
        assert_eq!(b.account(4 * NS_PER_S, &p), Verdict::Slip);
        assert_eq!(b.account(0, &p), Verdict::Slip);
    }

    #[test]
    fn a_slot_wanted_by_another_network_is_taken_over_with_a_full_bucket() {
        let p = RrlParams::new(1, 2, 0);
        let a = RrlKey::v4([192, 0, 2, 0], 24);
        let b = RrlKey::v4([198, 51, 100, 0], 24);
        let mut slot = Slot::default();
        let t = 5 * NS_PER_S;
        assert_eq!(slot.account(&a, t, &p), Verdict::Pass);
        assert_eq!(slot.account(&a, t, &p), Verdict::Pass);
        assert_eq!(
            slot.account(&a, t, &p),
            Verdict::Drop,
            "a's bucket is empty"
        );
        assert!(slot.key.same(&a));
        // b takes the slot over: a full bucket of its own.
        assert_eq!(slot.account(&b, t, &p), Verdict::Pass);
        assert_eq!(slot.account(&b, t, &p), Verdict::Pass);
        assert_eq!(slot.account(&b, t, &p), Verdict::Drop);
        assert!(slot.key.same(&b) && !slot.key.same(&a));
        // ... and so does a again, afresh.
        assert_eq!(slot.account(&a, t, &p), Verdict::Pass);
        assert_eq!(slot.bucket.limited, 0);
        // An empty slot (the all-zero key) is taken over by the all-zero network too: the
        // family tells them apart.
        let zero = RrlKey::v4([0; 4], 0);
        let mut empty = Slot::default();
        assert!(!empty.key.same(&zero));
        assert_eq!(empty.account(&zero, t, &p), Verdict::Pass);
        assert!(empty.key.same(&zero));
    }

    #[test]
    fn keyed_slots() {
        let k1 = HashKey { k0: 1, k1: 2 };
        let k2 = HashKey { k0: 3, k1: 4 };
        let a = RrlKey::v4([192, 0, 2, 0], 24);
        assert_eq!(a.hash(&k1), RrlKey::v4([192, 0, 2, 9], 24).hash(&k1));
        assert_ne!(a.hash(&k1), a.hash(&k2), "the key changes the slot");
        assert_ne!(a.hash(&k1), RrlKey::v4([192, 0, 3, 0], 24).hash(&k1));
        // The families hash apart even for the same octets.
        let mut four = [0u8; 16];
        four[..4].copy_from_slice(&[192, 0, 2, 0]);
        assert_ne!(RrlKey::v6(&four, 128).hash(&k1), a.hash(&k1));
        // /24s spread over a table of 1024 slots: no slot gets more than a handful.
        let mut used = std::vec![0u32; 1024];
        for i in 0..1024u32 {
            let net = RrlKey::v4([10, (i >> 8) as u8, i as u8, 0], 24);
            used[slot_index(net.hash(&k1), 1023) as usize] += 1;
        }
        let fullest = used.iter().max().copied().unwrap();
        assert!(fullest <= 8, "{fullest} networks in one slot");
        assert!(slot_index(u64::MAX, 1023) <= 1023);
    }

    #[test]
    fn networks() {
        let a = RrlKey::v4([192, 0, 2, 77], 24);
        assert_eq!(a, RrlKey::v4([192, 0, 2, 1], 24));
        assert_ne!(a, RrlKey::v4([192, 0, 3, 1], 24));
        assert_eq!(&octets(&a)[..4], &[192, 0, 2, 0]);
        assert_eq!(octets(&RrlKey::v4([192, 0, 2, 77], 32))[3], 77);
        assert_eq!(octets(&RrlKey::v4([192, 0, 2, 77], 99))[3], 77);
        assert_eq!(
            &octets(&RrlKey::v4([192, 0, 2, 77], 20))[..4],
            &[192, 0, 0, 0]
        );
        assert_eq!(&octets(&RrlKey::v4([255, 255, 255, 255], 0))[..4], &[0; 4]);
        assert_eq!(
            &octets(&RrlKey::v4([10, 255, 1, 1], 9))[..4],
            &[10, 128, 0, 0]
        );

        let mut v6 = [0xffu8; 16];
        let k = RrlKey::v6(&v6, 56);
        assert_eq!(&octets(&k)[..7], &[0xff; 7]);
        assert_eq!(&octets(&k)[7..], &[0; 9]);
        v6[6] = 0;
        assert_ne!(RrlKey::v6(&v6, 56), k);
        v6[6] = 0xff;
        v6[7] = 0;
        assert_eq!(RrlKey::v6(&v6, 56), k, "octet 7 is past /56");
        assert_eq!(octets(&RrlKey::v6(&v6, 128)), v6);

        // A client given as IPv6: IPv4-mapped counts as IPv4.
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[192, 0, 2, 77]);
        assert_eq!(RrlKey::client(&mapped, 24, 56), a);
        assert_eq!(RrlKey::client(&v6, 24, 56), k);

        // The families never share a key.
        let mut four = [0u8; 16];
        four[..4].copy_from_slice(&[192, 0, 2, 0]);
        assert_ne!(RrlKey::v6(&four, 128), RrlKey::v4([192, 0, 2, 0], 32));
    }
}
