//! Map names and the `#[repr(C)]` layouts of their keys and values.
//!
//! Wire-format fields (names, record types, answer bytes) are byte arrays in network order,
//! so neither side has endianness surprises; bookkeeping fields that only the host and the
//! kernel on the same machine read (generation counters, indexes, lengths) are native
//! integers. Every type is plain old data without implicit padding, which is what makes the
//! `aya::Pod` implementations below sound.
//!
//! # How an answer is published without torn reads
//!
//! A hash-map update is not atomic for a concurrent reader in BPF: the kernel may reuse the
//! old element's memory for the next update while an XDP program still reads it. So answers
//! are double-buffered in an array ([`MAP_HOT_SLOTS`], two slots per pool) and published by
//! a per-pool generation counter ([`MAP_HOT_GEN`]):
//!
//! 1. the writer fills slot `pool * 2 + ((generation + 1) & 1)` (the one readers are not told to
//!    use) with `slot.generation = generation + 1`;
//! 2. then it stores `generation + 1` into `HOT_GEN[pool]` (a single aligned 8-byte store).
//!
//! The reader loads `g = HOT_GEN[pool]`, reads slot `pool * 2 + (g & 1)`, requires
//! `slot.generation == g`, copies the answer out and loads `HOT_GEN[pool]` again; if it changed the
//! copy may be torn and the packet is passed to the daemon instead. A slot is rewritten only
//! two generations after it was published, so a reader that saw the same generation before
//! and after its copy read a slot nobody wrote meanwhile.

/// The hot-name map: [`HotKey`] → [`HotRef`]. Entries change only when the set of pool
/// names changes (config load), never per probe round.
pub const MAP_HOT_NAMES: &str = "HOT_NAMES";
/// Per-pool published generation, `Array<u64>` of [`MAX_POOLS`].
pub const MAP_HOT_GEN: &str = "HOT_GEN";
/// Double-buffered answers, `Array<AnswerSlot>` of `2 * MAX_POOLS`.
pub const MAP_HOT_SLOTS: &str = "HOT_SLOTS";
/// Per-CPU outcome counters, `PerCpuArray<u64>` indexed by [`crate::Outcome`].
pub const MAP_STATS: &str = "STATS";
/// Runtime settings, `Array<XdpConfig>` of one entry.
pub const MAP_CONFIG: &str = "CONFIG";
/// Local addresses the XDP path answers for, `HashMap<[u8; 16], u8>` (IPv4 as
/// IPv4-mapped IPv6). Ignored for a family whose wildcard flag is set in [`XdpConfig`].
pub const MAP_LISTEN_ADDRS: &str = "LISTEN_ADDRS";
/// Per-CPU scratch space of the XDP program (not used by userspace).
pub const MAP_SCRATCH: &str = "SCRATCH";

/// All maps userspace pins under its pin directory.
pub const PINNED_MAPS: [&str; 6] = [
    MAP_HOT_NAMES,
    MAP_HOT_GEN,
    MAP_HOT_SLOTS,
    MAP_STATS,
    MAP_CONFIG,
    MAP_LISTEN_ADDRS,
];

/// Most pools one daemon serves from the kernel.
pub const MAX_POOLS: u32 = 1024;
/// Most pools one configuration may ask for: the one place the config's limit is set.
/// With more than [`MAX_POOLS`] the kernel maps cannot hold them (until they are sized from
/// the configuration at load time) and the daemon answers every pool itself.
pub const MAX_CONFIG_POOLS: u32 = 1 << 16;
/// Most (name, qtype) keys in [`MAP_HOT_NAMES`] (a CNAME pool takes three).
pub const MAX_HOT_NAMES: u32 = 3 * MAX_POOLS;
/// Most local addresses in [`MAP_LISTEN_ADDRS`].
pub const MAX_LISTEN_ADDRS: u32 = 64;
/// Longest name on the wire, root label included (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: u8 = 63;
/// Most answer variants per slot (the kernel picks one per query): one per endpoint of a
/// weighted pool, so as many as an answer has records. A power of two (the kernel masks
/// with `MAX_VARIANTS - 1`).
pub const MAX_VARIANTS: usize = MAX_ANSWER_RRS;
/// Room for the encoded answer RRs of one variant: eight AAAA records (8 × 28 = 224) or one
/// CNAME with a maximal target (12 + 255 = 267).
pub const MAX_ANSWER_LEN: usize = 272;
/// Most records in one answer, and so most endpoints in one pool: the one definition of
/// hotpool's "up to 8" (pool endpoints, fallback records, `count`, weighted variants).
pub const MAX_ANSWER_RRS: usize = 8;

/// Key of [`MAP_HOT_NAMES`]: the question name in wire format with ASCII letters folded to
/// lower case, zero-padded to 256 bytes, and the query type in network order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotKey {
    pub name: [u8; MAX_NAME_LEN + 1],
    pub qtype: [u8; 2],
}

impl HotKey {
    pub const fn zeroed() -> Self {
        Self {
            name: [0; MAX_NAME_LEN + 1],
            qtype: [0; 2],
        }
    }

    /// Builds the key for a wire-format name (any case) and a query type. Returns `None`
    /// when `wire` is not a valid uncompressed name.
    pub fn new(wire: &[u8], qtype: u16) -> Option<Self> {
        let mut key = Self::zeroed();
        crate::name::fold_wire_name(wire, &mut key.name).ok()?;
        key.qtype = qtype.to_be_bytes();
        Some(key)
    }
}

impl core::fmt::Debug for HotKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let len = crate::name::wire_name_len(&self.name).unwrap_or(self.name.len());
        f.debug_struct("HotKey")
            .field("name", &&self.name[..len])
            .field("qtype", &crate::be16(self.qtype))
            .finish()
    }
}

/// Value of [`MAP_HOT_NAMES`]: which pool answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotRef {
    /// Index into [`MAP_HOT_GEN`] (and `2 * pool` into [`MAP_HOT_SLOTS`]).
    pub pool: u32,
    /// Reserved, zero.
    pub flags: u32,
}

/// One precomputed answer: the answer-section RRs exactly as they go on the wire after the
/// echoed question. Owner names are the compression pointer `0xC00C` (the question name),
/// so the bytes do not depend on the case the client used.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Variant {
    /// Number of RRs in `bytes`, network order (copied into ANCOUNT).
    pub ancount: [u8; 2],
    /// Used length of `bytes`.
    pub len: u16,
    pub _reserved: [u8; 4],
    pub bytes: [u8; MAX_ANSWER_LEN],
}

impl Variant {
    pub const fn empty() -> Self {
        Self {
            ancount: [0; 2],
            len: 0,
            _reserved: [0; 4],
            bytes: [0; MAX_ANSWER_LEN],
        }
    }

    /// The encoded RRs.
    pub fn answer(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(MAX_ANSWER_LEN)]
    }
}

impl core::fmt::Debug for Variant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Variant")
            .field("ancount", &crate::be16(self.ancount))
            .field("answer", &self.answer())
            .finish()
    }
}

/// Value of [`MAP_HOT_SLOTS`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnswerSlot {
    /// Generation this slot was written for; must equal `HOT_GEN[pool]` when read.
    pub generation: u64,
    /// Number of valid entries in `variants`; 0 means "no answer here, pass to the daemon".
    pub n_variants: u32,
    pub _reserved: u32,
    /// Cumulative selection thresholds over the 32-bit random range: the kernel answers
    /// with the first variant `i` (of `n_variants`) with `rand < thresholds[i]`, the last
    /// one if none. With one variant it is always chosen.
    pub thresholds: [u32; MAX_VARIANTS],
    pub variants: [Variant; MAX_VARIANTS],
}

impl AnswerSlot {
    pub const fn empty() -> Self {
        Self {
            generation: 0,
            n_variants: 0,
            _reserved: 0,
            thresholds: [0; MAX_VARIANTS],
            variants: [Variant::empty(); MAX_VARIANTS],
        }
    }

    /// Index of the variant a query with random number `rand` gets: the same rule the
    /// kernel applies.
    pub fn pick(&self, rand: u32) -> usize {
        let n = (self.n_variants as usize).min(MAX_VARIANTS);
        let mut i = 0;
        while i + 1 < n {
            if rand < self.thresholds[i] {
                return i;
            }
            i += 1;
        }
        i
    }
}

/// Index of a pool's slot for generation `generation` in [`MAP_HOT_SLOTS`].
pub const fn slot_index(pool: u32, generation: u64) -> u32 {
    pool * 2 + (generation & 1) as u32
}

/// Value of [`MAP_CONFIG`] (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// UDP port the XDP path answers on, network order.
    pub port: [u8; 2],
    /// UDP payload size we advertise in OPT records, network order.
    pub edns_udp_size: [u8; 2],
    /// `CFG_*` flags.
    pub flags: u32,
}

/// Answer IPv4 queries to any (unicast) local address.
pub const CFG_ANY_V4: u32 = 1 << 0;
/// Answer IPv6 queries to any (unicast) local address.
pub const CFG_ANY_V6: u32 = 1 << 1;
/// The XDP path is enabled; when clear every packet is passed (used while reloading).
pub const CFG_ENABLED: u32 = 1 << 2;

/// Key of [`MAP_LISTEN_ADDRS`] for an IPv4 address (IPv4-mapped IPv6).
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], made only of integers and byte arrays, with no
    // implicit padding (asserted below), so every byte pattern is a valid value.
    unsafe impl aya::Pod for super::HotKey {}
    unsafe impl aya::Pod for super::HotRef {}
    unsafe impl aya::Pod for super::AnswerSlot {}
    unsafe impl aya::Pod for super::XdpConfig {}
}

// No implicit padding anywhere (the Pod impls rely on it).
const _: () = assert!(core::mem::size_of::<HotKey>() == 258);
const _: () = assert!(core::mem::size_of::<HotRef>() == 8);
const _: () = assert!(core::mem::size_of::<Variant>() == 8 + MAX_ANSWER_LEN);
const _: () = assert!(
    core::mem::size_of::<AnswerSlot>()
        == 16 + 4 * MAX_VARIANTS + MAX_VARIANTS * core::mem::size_of::<Variant>()
);
const _: () = assert!(core::mem::size_of::<XdpConfig>() == 8);
const _: () = assert!(MAX_VARIANTS.is_power_of_two());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qtype;

    #[test]
    fn key_folds_case_and_zero_pads() {
        let a = HotKey::new(b"\x03WwW\x07Example\x04TEST\x00", qtype::A).unwrap();
        let b = HotKey::new(b"\x03www\x07example\x04test\x00", qtype::A).unwrap();
        assert_eq!(a, b);
        assert_eq!(&a.name[..18], b"\x03www\x07example\x04test\x00");
        assert!(a.name[18..].iter().all(|&b| b == 0));
        assert_eq!(a.qtype, [0, 1]);
        assert_ne!(
            a,
            HotKey::new(b"\x03www\x07example\x04test\x00", qtype::AAAA).unwrap()
        );
    }

    #[test]
    fn key_rejects_invalid_names() {
        assert!(HotKey::new(b"\x03www\xc0\x0c", qtype::A).is_none());
        assert!(HotKey::new(b"\x03ww", qtype::A).is_none());
    }

    #[test]
    fn pick_follows_thresholds() {
        let mut slot = AnswerSlot::empty();
        slot.n_variants = 3;
        slot.thresholds = [100, 200, u32::MAX, 0, 0, 0, 0, 0];
        assert_eq!(slot.pick(0), 0);
        assert_eq!(slot.pick(99), 0);
        assert_eq!(slot.pick(100), 1);
        assert_eq!(slot.pick(199), 1);
        assert_eq!(slot.pick(200), 2);
        assert_eq!(slot.pick(u32::MAX), 2);
        slot.n_variants = 1;
        assert_eq!(slot.pick(u32::MAX), 0);
        assert_eq!(slot.pick(0), 0);
    }

    #[test]
    fn slots_alternate_by_generation() {
        assert_eq!(slot_index(0, 0), 0);
        assert_eq!(slot_index(0, 1), 1);
        assert_eq!(slot_index(5, 2), 10);
        assert_eq!(slot_index(5, 7), 11);
    }

    #[test]
    fn v4_mapped_layout() {
        assert_eq!(
            v4_mapped([192, 0, 2, 1]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]
        );
    }
}
