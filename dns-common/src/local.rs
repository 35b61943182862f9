//! The kernel's view of this host: the interfaces it answers on ([`IfaceSlot`]) and this
//! host's own and subnet broadcast addresses ([`LocalBucket`]), laid out for lookups the
//! verifier inlines (array maps with a constant-size value: no helper call per query).
//!
//! # Interfaces
//!
//! [`MAP_IFACE_SLOTS`](crate::MAP_IFACE_SLOTS) is direct-mapped: interface `i` lives in slot
//! [`iface_slot`]`(i)`, with its index stored and compared. The daemon attaches to few
//! interfaces, and interface indexes are small and dense, so two of them rarely share a slot;
//! when they do, the slot holds the lowest index with [`IFACE_SPILL`] set, and the kernel looks
//! the others up in the [`MAP_IFACES`](crate::MAP_IFACES) hash map, which always holds every
//! described interface. [`IfaceSlot::for_slot`] is that rule. A slot is written (one map
//! update) before the program is attached there; a slot read half-rewritten matches no
//! index or no frame's MAC, and that frame is passed to the daemon (`foreign_mac`).
//!
//! # Local addresses
//!
//! [`MAP_LOCAL_SET`](crate::MAP_LOCAL_SET) is a small open hash set: the source address picks
//! one of [`LOCAL_SET_BUCKETS`] buckets ([`local_bucket`]), whose
//! [`LOCAL_BUCKET_ENTRIES`] entries are compared inline. A bucket that cannot hold all its
//! addresses says so ([`LocalBucket::spill`]), and only then does the kernel look in the
//! [`MAP_LOCAL_ADDRS`](crate::MAP_LOCAL_ADDRS) hash map, which holds every address. The hash is
//! not keyed: the set holds this host's addresses, which a sender does not choose, so a
//! sender cannot crowd a bucket; a query's source only picks which bucket is read.
//!
//! The daemon rewrites a bucket with one map update (a copy the kernel may read half-done).
//! [`LocalBucket::update`] never moves an entry that stays, so a reader sees every unchanged
//! entry intact; only the entries that change may read half-written. A half-written entry
//! either matches no source (as if the change had not happened yet, which is what the
//! daemon's 5 s re-read of the host's addresses already allows) or matches a source that is
//! not ours: that query is passed to the daemon, which applies the same rules with its own
//! copy of the addresses. Neither answers a query the rules refuse for an address that was
//! ours before and after the write.

use crate::Iface;

/// Slots of [`MAP_IFACE_SLOTS`](crate::MAP_IFACE_SLOTS) (a power of two).
pub const IFACE_SLOTS: u32 = 64;
/// [`Iface::flags`] of a slot: other interfaces map to this slot, look them up in
/// [`MAP_IFACES`](crate::MAP_IFACES).
pub const IFACE_SPILL: u8 = 1 << 1;

/// The slot of interface `ifindex`.
#[inline(always)]
pub const fn iface_slot(ifindex: u32) -> u32 {
    ifindex & (IFACE_SLOTS - 1)
}

/// Value of [`MAP_IFACE_SLOTS`](crate::MAP_IFACE_SLOTS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSlot {
    /// The interface's index; 0 (no interface has it): an empty slot.
    pub ifindex: u32,
    pub iface: Iface,
}

impl IfaceSlot {
    /// The slot `slot` given every described interface (index, description) in any order:
    /// the lowest index of those mapping there, with [`IFACE_SPILL`] when there are others.
    pub fn for_slot(slot: u32, ifaces: impl IntoIterator<Item = (u32, Iface)>) -> Self {
        let mut out = Self::default();
        let mut others = false;
        for (index, iface) in ifaces {
            if index == 0 || iface_slot(index) != slot {
                continue;
            }
            if out.ifindex == 0 || index < out.ifindex {
                others |= out.ifindex != 0;
                out = Self {
                    ifindex: index,
                    iface,
                };
            } else {
                others = true;
            }
        }
        if others {
            out.iface.flags |= IFACE_SPILL;
        }
        out
    }

    /// What the slot says about interface `ifindex`: its description, or whether to look in
    /// [`MAP_IFACES`](crate::MAP_IFACES) (`Err(true)`) or give up (`Err(false)`).
    #[inline(always)]
    pub fn lookup(&self, ifindex: u32) -> Result<Iface, bool> {
        if self.ifindex == ifindex && ifindex != 0 {
            Ok(self.iface)
        } else {
            Err(self.iface.flags & IFACE_SPILL != 0)
        }
    }
}

/// log2 of [`LOCAL_SET_BUCKETS`].
pub const LOCAL_SET_BITS: u32 = 8;
/// Buckets of [`MAP_LOCAL_SET`](crate::MAP_LOCAL_SET).
pub const LOCAL_SET_BUCKETS: u32 = 1 << LOCAL_SET_BITS;
/// Addresses per bucket.
pub const LOCAL_BUCKET_ENTRIES: usize = 4;

/// An address (IPv4 as IPv4-mapped IPv6) as two native words, as the set stores it.
#[inline(always)]
pub const fn addr_words(a: &[u8; 16]) -> [u64; 2] {
    [
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    ]
}

/// The bucket of an address given as [`addr_words`]: a multiplicative hash of its folded
/// words, its top bits.
#[inline(always)]
pub const fn local_bucket(w: [u64; 2]) -> u32 {
    let x = w[0] ^ w[1];
    let x = (x ^ (x >> 32)) as u32;
    x.wrapping_mul(0x9e37_79b1) >> (32 - LOCAL_SET_BITS)
}

/// Value of [`MAP_LOCAL_SET`](crate::MAP_LOCAL_SET): up to [`LOCAL_BUCKET_ENTRIES`]
/// addresses with their [`LOCAL_OWN`](crate::LOCAL_OWN) /
/// [`LOCAL_BROADCAST`](crate::LOCAL_BROADCAST) flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalBucket {
    /// [`addr_words`] of each entry.
    pub addrs: [[u64; 2]; LOCAL_BUCKET_ENTRIES],
    /// Flags of each entry; 0: an empty entry.
    pub flags: [u8; LOCAL_BUCKET_ENTRIES],
    /// Non-zero: more addresses fall in this bucket than it holds; the others are only in
    /// [`MAP_LOCAL_ADDRS`](crate::MAP_LOCAL_ADDRS).
    pub spill: u8,
    pub _pad: [u8; 3],
}

impl LocalBucket {
    /// The flags of `w` in this bucket; 0 when it is not here.
    #[inline(always)]
    pub fn find(&self, w: [u64; 2]) -> u8 {
        let mut i = 0;
        while i < LOCAL_BUCKET_ENTRIES {
            if self.addrs[i][0] == w[0] && self.addrs[i][1] == w[1] && self.flags[i] != 0 {
                return self.flags[i];
            }
            i += 1;
        }
        0
    }

    /// Makes the bucket hold `wanted` (addresses of this bucket with non-zero flags): an
    /// entry that stays keeps its place (its flags updated in place), entries gone are
    /// cleared, new ones take free places, and what does not fit sets `spill`. Returns
    /// whether anything changed.
    pub fn update(&mut self, wanted: &[([u64; 2], u8)]) -> bool {
        let before = *self;
        for i in 0..LOCAL_BUCKET_ENTRIES {
            if self.flags[i] == 0 {
                self.addrs[i] = [0; 2];
                continue;
            }
            match wanted.iter().find(|(w, _)| *w == self.addrs[i]) {
                Some(&(_, f)) => self.flags[i] = f,
                None => {
                    self.addrs[i] = [0; 2];
                    self.flags[i] = 0;
                }
            }
        }
        let mut spill = false;
        for &(w, f) in wanted {
            if f == 0 || self.find(w) != 0 {
                continue;
            }
            match self.flags.iter().position(|&x| x == 0) {
                Some(i) => {
                    self.addrs[i] = w;
                    self.flags[i] = f;
                }
                None => spill = true,
            }
        }
        self.spill = spill as u8;
        *self != before
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, integers and byte arrays only, no implicit padding (asserted
    // below): valid for every byte pattern.
    unsafe impl aya::Pod for super::IfaceSlot {}
    unsafe impl aya::Pod for super::LocalBucket {}
}

const _: () = assert!(core::mem::size_of::<IfaceSlot>() == 12);
const _: () = assert!(core::mem::size_of::<LocalBucket>() == 72);
const _: () = assert!(IFACE_SLOTS.is_power_of_two());

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::{IFACE_LOOPBACK, LOCAL_BROADCAST, LOCAL_OWN, v4_mapped};

    fn iface(last: u8) -> Iface {
        Iface {
            mac: [2, 0, 0, 0, 0, last],
            flags: 0,
            _reserved: 0,
        }
    }

    #[test]
    fn interfaces_sharing_a_slot_spill_to_the_map() {
        let lo = Iface {
            flags: IFACE_LOOPBACK,
            ..iface(0)
        };
        let all = [(1, lo), (2, iface(2)), (66, iface(66)), (130, iface(130))];
        let s1 = IfaceSlot::for_slot(1, all);
        assert_eq!(
            s1,
            IfaceSlot {
                ifindex: 1,
                iface: lo
            }
        );
        assert_eq!(s1.lookup(1), Ok(lo));
        assert_eq!(
            s1.lookup(65),
            Err(false),
            "alone in its slot: no map lookup"
        );

        // 2, 66 and 130 share slot 2: the lowest is inline, the others spill.
        let s2 = IfaceSlot::for_slot(2, all.iter().rev().copied());
        assert_eq!(s2.ifindex, 2);
        assert_eq!(s2.iface.mac, iface(2).mac);
        assert_eq!(s2.lookup(2).map(|i| i.mac), Ok(iface(2).mac));
        assert_eq!(s2.lookup(66), Err(true));
        assert_eq!(s2.lookup(130), Err(true));

        let empty = IfaceSlot::for_slot(3, all);
        assert_eq!(empty, IfaceSlot::default());
        assert_eq!(empty.lookup(3), Err(false));
        assert_eq!(
            empty.lookup(0),
            Err(false),
            "index 0 never matches an empty slot"
        );
    }

    fn mapped(v4: [u8; 4]) -> [u64; 2] {
        addr_words(&v4_mapped(v4))
    }

    #[test]
    fn buckets_spread_addresses() {
        let mut used = [0u32; LOCAL_SET_BUCKETS as usize];
        for i in 0..=255u8 {
            used[local_bucket(mapped([10, 0, 0, i])) as usize] += 1;
        }
        let fullest = used.iter().max().copied().unwrap();
        assert!(
            fullest <= LOCAL_BUCKET_ENTRIES as u32,
            "{fullest} in one bucket"
        );
        assert!(local_bucket([u64::MAX; 2]) < LOCAL_SET_BUCKETS);
    }

    #[test]
    fn a_bucket_finds_its_addresses() {
        let own = mapped([192, 0, 2, 1]);
        let bcast = mapped([192, 0, 2, 255]);
        let mut b = LocalBucket::default();
        assert!(b.update(&[(own, LOCAL_OWN), (bcast, LOCAL_BROADCAST)]));
        assert_eq!(b.find(own), LOCAL_OWN);
        assert_eq!(b.find(bcast), LOCAL_BROADCAST);
        assert_eq!(b.find(mapped([192, 0, 2, 2])), 0);
        assert_eq!(b.find([0; 2]), 0, "an empty entry matches nothing");
        assert_eq!(b.spill, 0);
        assert!(
            !b.update(&[(bcast, LOCAL_BROADCAST), (own, LOCAL_OWN)]),
            "no change"
        );
    }

    #[test]
    fn entries_that_stay_keep_their_place() {
        let a: Vec<[u64; 2]> = (1..=6).map(|i| mapped([10, 0, 0, i])).collect();
        let mut b = LocalBucket::default();
        b.update(&[(a[0], LOCAL_OWN), (a[1], LOCAL_OWN), (a[2], LOCAL_OWN)]);
        let place = |b: &LocalBucket, w| b.addrs.iter().position(|x| *x == w);
        let (p0, p2) = (place(&b, a[0]), place(&b, a[2]));

        // a[1] goes, a[3] comes, a[0] changes flags: a[0] and a[2] stay where they were.
        assert!(b.update(&[
            (a[2], LOCAL_OWN),
            (a[3], LOCAL_OWN),
            (a[0], LOCAL_OWN | LOCAL_BROADCAST)
        ]));
        assert_eq!(place(&b, a[0]), p0);
        assert_eq!(place(&b, a[2]), p2);
        assert_eq!(b.find(a[0]), LOCAL_OWN | LOCAL_BROADCAST);
        assert_eq!(b.find(a[1]), 0);
        assert_eq!(b.find(a[3]), LOCAL_OWN);

        // Six addresses in a bucket of four: four inline, spill set; fewer again: cleared.
        let six: Vec<_> = a.iter().map(|&w| (w, LOCAL_OWN)).collect();
        assert!(b.update(&six));
        assert_eq!(b.spill, 1);
        assert_eq!(a.iter().filter(|&&w| b.find(w) != 0).count(), 4);
        assert_eq!(place(&b, a[2]), p2);
        assert!(b.update(&six[..2]));
        assert_eq!(b.spill, 0);
        assert_eq!(b.find(a[0]), LOCAL_OWN);
        assert_eq!(b.find(a[1]), LOCAL_OWN);
        assert_eq!(b.find(a[2]), 0);
        assert!(b.update(&[]));
        assert_eq!(b, LocalBucket::default());
    }
}
