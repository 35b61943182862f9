//! Map names and the `#[repr(C)]` layouts of their keys and values.
//!
//! Wire-format fields (record types, answer bytes, ports) are byte arrays in network order;
//! bookkeeping fields that only the host and the kernel on the same machine read (indexes,
//! lengths, sums, hashes) are native integers. Every type is plain old data without implicit
//! padding, which is what makes the `aya::Pod` implementations below sound.
//!
//! # Finding a name's answer
//!
//! ```text
//! hash = keyed hash of the folded name              (crate::name, key in CONFIG)
//! HOT_INDEX[hash & index_mask]  → bucket of 4 (tag, pool)  — tag = hash >> 32 | 1
//! HOT_CUR[pool]                 → slot, or NO_SLOT
//! HOT_SLOTS[slot]               → AnswerSet: folded name, qtypes, thresholds, answer indexes
//!   only with set.flags & SET_GEO (a pool answering by region):
//!   addr = client address, or its ECS subnet zero-padded (IPv4 as IPv4-mapped IPv6)
//!   GEO_CACHE[slot(addr, pool)]   per CPU, direct-mapped: (addr, pool, CONFIG.geo_gen)
//!                                 → HOT_CUR index, scope; on a miss, filled from:
//!     GEO_A4 or GEO_B4 (IPv4), GEO_A or GEO_B (IPv6) (CONFIG.geo_gen & 1) [addr]
//!                                 → region id, prefix length (the ECS scope)
//!     GEO_CUR[(pool, region, side)] → the region's own HOT_CUR index, or none: this set
//!   HOT_CUR[index] → HOT_SLOTS[slot] → the region's AnswerSet
//! HOT_ANSWERS[set.answers[i]]   → Answer: ANCOUNT, length, checksum sum, the RRs
//! ```
//!
//! The kernel takes the first entry of the bucket whose tag matches and confirms the query's
//! folded name against the one stored in the answer set; a tag that matches another name (a
//! collision) is passed to the daemon, never answered with that name's records. Userspace
//! builds the index so that no two names of one bucket share a tag.
//!
//! # Publishing without torn reads
//!
//! An answer set and its answers are never written while the kernel may read them. XDP
//! programs run inside an RCU read-side critical section (NAPI poll, `netif_receive_skb` and
//! `BPF_PROG_TEST_RUN` all hold `rcu_read_lock` or run with bottom halves disabled), so a
//! program that read `HOT_CUR[pool]` before it changed has finished one RCU grace period
//! later. The writer:
//!
//! 1. fills a free slot and free answer entries (the arrays are memory-mapped into the
//!    daemon: plain stores);
//! 2. publishes the slot with one release store of its index into `HOT_CUR[pool]` (also
//!    memory-mapped, so a real single-copy-atomic store, not a `memcpy` inside a syscall);
//! 3. retires the slot and answers it replaced;
//! 4. reuses retired entries only after a grace period that started after they were retired
//!    (one wait frees every entry retired before it, so most publishes never wait).
//!
//! A new region table goes into the tries `geo_gen` does not name, the pools' region
//! answers are published at fresh `HOT_CUR` indexes under that side's `GEO_CUR` keys, and
//! one write of the config map switches the side (the next generation): a query reads
//! `geo_gen` once and sees the old tries with the old answers or the new with the new. The
//! old side's entries, answers and tries are dropped after a grace period.
//!
//! The per-CPU cache (`GEO_CACHE`, [`GeoCacheEntry`]) holds what a query found through the
//! tries and `GEO_CUR` under the generation it read, and is only used under that same
//! generation. The daemon moves to a new one with every swap (one more: the other side)
//! and with every change of the entries of `GEO_CUR` in use (two more: the same side),
//! before it retires the `HOT_CUR` indexes an entry pointed at: a cached index is never
//! used after the grace period that frees it for reuse. A republished region answer keeps
//! its index (the set behind it changes through `HOT_CUR`), so steering's publishes leave
//! the cache alone.
//!
//! A reader loads `HOT_CUR[pool]` once and reaches the slot and the answers through the
//! loaded index: every load depends on the address computed from the one before, which
//! orders them on weakly ordered CPUs (arm64) as it does on x86, and the entries it reaches
//! stay unchanged until it has finished.

use crate::{
    name::{HashKey, NAME_WORDS},
    query::qtype_bit,
    rrl::RrlParams,
};

/// The name index, `Array<Bucket>`; its used size is `index_mask + 1` from [`XdpConfig`].
pub const MAP_HOT_INDEX: &str = "HOT_INDEX";
/// Per-pool current answer set, `Array<u64>`.
pub const MAP_HOT_CUR: &str = "HOT_CUR";
/// Answer sets, `Array<AnswerSet>`.
pub const MAP_HOT_SLOTS: &str = "HOT_SLOTS";
/// Answer variants, `Array<Answer>`.
pub const MAP_HOT_ANSWERS: &str = "HOT_ANSWERS";
/// Per-CPU outcome counters, `PerCpuArray<u64>` indexed by [`crate::Outcome`].
pub const MAP_STATS: &str = "STATS";
/// Runtime settings, `Array<XdpConfig>` of one entry.
pub const MAP_CONFIG: &str = "CONFIG";
/// Local addresses when there are more than [`INLINE_LISTEN_ADDRS`] of a family,
/// `HashMap<[u8; 16], u8>` (IPv4 as IPv4-mapped IPv6).
pub const MAP_LISTEN_ADDRS: &str = "LISTEN_ADDRS";

/// The daemon's heartbeat, `Array<u64>` of one entry: `CLOCK_MONOTONIC` nanoseconds (the
/// clock `bpf_ktime_get_coarse_ns` reads as of the last timer tick) of its last beat. See
/// [`XdpConfig::stale_ns`].
pub const MAP_HEARTBEAT: &str = "HEARTBEAT";
/// Per-CPU kernel answers per pool, `PerCpuArray<u64>` indexed by the pool's index (as
/// [`MAP_HOT_CUR`], and sized like it). Zeroed when an index is given to a new pool.
pub const MAP_POOL_ANSWERS: &str = "POOL_ANSWERS";

/// The interfaces the program is attached to, `HashMap<u32, Iface>` keyed by interface
/// index: their MAC address (only frames addressed to it are answered) and whether they are
/// loopback (see [`crate::accept`]). An interface without an entry gets no answers.
pub const MAP_IFACES: &str = "IFACES";
/// This host's IPv4 and IPv6 addresses and IPv4 subnet broadcast addresses (IPv4 as
/// IPv4-mapped IPv6), `HashMap<[u8; 16], u8>` of [`LOCAL_OWN`] | [`LOCAL_BROADCAST`]: the
/// sources the acceptance rules never answer. Kept in step with the host by the daemon.
pub const MAP_LOCAL_ADDRS: &str = "LOCAL_ADDRS";
/// The interfaces again, direct-mapped for the kernel's inline lookup,
/// `Array<local::IfaceSlot>` of [`crate::local::IFACE_SLOTS`] indexed by
/// [`crate::local::iface_slot`]; [`MAP_IFACES`] is only read for a slot with
/// [`crate::local::IFACE_SPILL`] (see [`crate::local`]).
pub const MAP_IFACE_SLOTS: &str = "IFACE_SLOTS";
/// The addresses of [`MAP_LOCAL_ADDRS`] again as a small hash set for the kernel's inline
/// lookup, `Array<local::LocalBucket>` of [`crate::local::LOCAL_SET_BUCKETS`];
/// [`MAP_LOCAL_ADDRS`] is only read for a bucket that spilled (see [`crate::local`]).
pub const MAP_LOCAL_SET: &str = "LOCAL_SET";
/// Response rate limiting buckets, `Array<rrl::Slot>` of [`RRL_ENTRIES`]: the slot of a
/// client network is the keyed hash of the network ([`crate::rrl::RrlKey::hash`], the key of
/// [`XdpConfig::key`]), and a network finding another in its slot takes it over with a fresh
/// bucket ([`crate::rrl::Slot`]).
pub const MAP_RRL_SLOTS: &str = "RRL_SLOTS";
/// Networks never rate limited, `LpmTrie<[u8; 16], u8>`: IPv6 networks as they are, IPv4
/// networks as IPv4-mapped IPv6 with 96 added to the prefix length. Only looked up with
/// [`CFG_RRL_EXEMPT`].
pub const MAP_RRL_EXEMPT: &str = "RRL_EXEMPT";

/// IPv6 client network → region, `LpmTrie<[u8; 16], u32>`, two copies: the one
/// [`XdpConfig::geo_gen`] names is looked up, the other is loaded with the next region
/// table. They hold the daemon's flattened IPv6 prefixes (disjoint, covering every
/// address), the value is [`geo_value`]: the region and the prefix's length (the ECS
/// scope). IPv4 clients (and IPv4-mapped IPv6 sources) are looked up in
/// [`MAP_GEO_A4`]/[`MAP_GEO_B4`].
pub const MAP_GEO_A: &str = "GEO_A";
pub const MAP_GEO_B: &str = "GEO_B";
/// IPv4 client network → region, `LpmTrie<[u8; 4], u32>`, two copies as [`MAP_GEO_A`] and
/// [`MAP_GEO_B`] (the same side in use), holding the flattened IPv4 prefixes: 4-octet keys
/// rather than IPv4-mapped IPv6, so a lookup compares fewer octets per node.
pub const MAP_GEO_A4: &str = "GEO_A4";
pub const MAP_GEO_B4: &str = "GEO_B4";
/// (pool, region, side) → the [`MAP_HOT_CUR`] index of the pool's answer for that region,
/// `HashMap<u64, u32>` keyed by [`geo_key`]. Only read for an answer set with [`SET_GEO`]; a
/// region without an entry gets the pool's own (default-region) answer.
pub const MAP_GEO_CUR: &str = "GEO_CUR";

/// All maps userspace pins under its pin directory.
pub const PINNED_MAPS: [&str; 20] = [
    MAP_HOT_INDEX,
    MAP_HOT_CUR,
    MAP_HOT_SLOTS,
    MAP_HOT_ANSWERS,
    MAP_STATS,
    MAP_CONFIG,
    MAP_LISTEN_ADDRS,
    MAP_HEARTBEAT,
    MAP_POOL_ANSWERS,
    MAP_IFACES,
    MAP_LOCAL_ADDRS,
    MAP_IFACE_SLOTS,
    MAP_LOCAL_SET,
    MAP_RRL_SLOTS,
    MAP_RRL_EXEMPT,
    MAP_GEO_A,
    MAP_GEO_B,
    MAP_GEO_A4,
    MAP_GEO_B4,
    MAP_GEO_CUR,
];

/// Most prefixes of one region trie ([`MAP_GEO_A`], [`MAP_GEO_B`], [`MAP_GEO_A4`],
/// [`MAP_GEO_B4`]; not preallocated).
pub const MAX_GEO_PREFIXES: u32 = 1 << 24;

/// Entries of the kernel's per-CPU region cache (a power of two; the map, `GEO_CACHE`, is
/// the program's own, not pinned): [`GeoCacheEntry`] at [`geo_cache_slot`] of the address
/// and the pool.
pub const GEO_CACHE_SLOTS: u32 = 1024;

/// [`GeoCacheEntry::index`] of a client whose region has no answer of the pool's own: the
/// pool's default answer.
pub const GEO_NO_ANSWER: u32 = u32::MAX;

/// One entry of the kernel's per-CPU region cache: a geo pool's answer for an address as
/// found through the region trie and [`MAP_GEO_CUR`] under generation `generation`. Its
/// first 20 octets are laid out as the trie's key (`Key<[u8; 16]>`: prefix length, then
/// the address), so a miss looks the trie up with the entry itself as the key, with no
/// scratch map.
///
/// An entry is only written by its CPU's program while it runs, so it never tears; it is
/// valid for the generation it was filled under only: a region table swap and every change
/// of [`MAP_GEO_CUR`]'s entries changes [`XdpConfig::geo_gen`], after which every older
/// entry misses.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeoCacheEntry {
    /// 128 (the trie key's prefix length: a full address).
    pub prefix_len: u32,
    /// The looked-up address (source, or the zero-padded ECS address, IPv4 as IPv4-mapped
    /// IPv6) as native words of its network-order octets.
    pub addr: [u32; 4],
    /// [`XdpConfig::geo_gen`] when the entry was filled.
    pub generation: u32,
    /// The pool's index ([`MAP_HOT_CUR`]).
    pub pool: u32,
    /// The [`MAP_HOT_CUR`] index of the pool's answer for the address's region, or
    /// [`GEO_NO_ANSWER`].
    pub index: u32,
    /// The matched prefix's length (the ECS scope); 0 where the trie had no match (not
    /// loaded yet: the default region).
    pub scope: u8,
    /// 1 once filled; 0: empty.
    pub filled: u8,
    pub _reserved: [u8; 6],
}

/// The slot of [`GeoCacheEntry`] for an address (its words as in [`GeoCacheEntry::addr`])
/// and a pool: a multiplicative hash of the folded words, so the addresses of one subnet
/// (resolvers side by side) and the pools one client asks for spread over the cache.
#[inline(always)]
pub const fn geo_cache_slot(addr: &[u32; 4], pool: u32) -> u32 {
    let folded = addr[0] ^ addr[1] ^ addr[2] ^ addr[3] ^ pool.wrapping_mul(0x85eb_ca6b);
    folded.wrapping_mul(0x9e37_79b1) >> (32 - GEO_CACHE_SLOTS.trailing_zeros())
}

/// [`AnswerSet::flags`]: the pool answers by region; the kernel looks the client's region
/// up and takes the region's answer from [`MAP_GEO_CUR`] (this set answers the regions
/// without one).
pub const SET_GEO: u8 = 1 << 0;

/// The [`MAP_GEO_CUR`] key of `pool`'s answer for `region` under trie `side` (0: A, 1: B).
#[inline(always)]
pub const fn geo_key(pool: u32, region: u16, side: u32) -> u64 {
    pool as u64 | (region as u64) << 32 | ((side & 1) as u64) << 48
}

/// The value of a region trie: `region` and the prefix length (IPv4 prefixes counted as
/// IPv4, not as mapped IPv6).
#[inline(always)]
pub const fn geo_value(region: u16, prefix_len: u8) -> u32 {
    region as u32 | (prefix_len as u32) << 16
}

/// The region and prefix length of a region trie value.
#[inline(always)]
pub const fn geo_region(value: u32) -> (u16, u8) {
    (value as u16, (value >> 16) as u8)
}

/// Most interfaces in [`MAP_IFACES`].
pub const MAX_IFACES: u32 = 256;
/// Most addresses in [`MAP_LOCAL_ADDRS`].
pub const MAX_LOCAL_ADDRS: u32 = 1024;
/// Slots of [`MAP_RRL_SLOTS`] (a power of two): client networks the kernel keeps a rate
/// limiting bucket for at once.
pub const RRL_ENTRIES: u32 = 65_536;
/// Most exempt networks ([`MAP_RRL_EXEMPT`]).
pub const MAX_RRL_EXEMPT: u32 = 1024;
/// [`MAP_LOCAL_ADDRS`] flag: one of this host's addresses.
pub const LOCAL_OWN: u8 = 1 << 0;
/// [`MAP_LOCAL_ADDRS`] flag: the broadcast address of one of this host's IPv4 subnets.
pub const LOCAL_BROADCAST: u8 = 1 << 1;
/// [`Iface::flags`]: a loopback interface.
pub const IFACE_LOOPBACK: u8 = 1 << 0;

/// Value of [`MAP_IFACES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// `IFACE_*` flags.
    pub flags: u8,
    pub _reserved: u8,
}

/// `BPF_F_MMAPABLE`: the map can be memory-mapped (kernel 5.5).
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Flags of [`MAP_HOT_CUR`], [`MAP_HOT_SLOTS`] and [`MAP_HOT_ANSWERS`]: the daemon maps them
/// into its memory and publishes with plain stores, no syscall per entry.
pub const HOT_MAP_FLAGS: u32 = BPF_F_MMAPABLE;

/// Most pools one daemon configures (the maps are sized from the configuration at load
/// time; this only bounds what a configuration may ask for).
pub const MAX_POOLS: u32 = 1 << 16;
/// Most local addresses in [`MAP_LISTEN_ADDRS`].
pub const MAX_LISTEN_ADDRS: u32 = 64;
/// Addresses per family the config map holds inline (compared without a map lookup).
pub const INLINE_LISTEN_ADDRS: usize = 4;
/// Longest name on the wire, root label included (RFC 1035 §3.1).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: u8 = 63;
/// Most answer variants per answer set (the kernel picks one per query): one per endpoint of
/// a weighted pool, so as many as an answer has records.
pub const MAX_VARIANTS: usize = MAX_ANSWER_RRS;
/// Room for the encoded answer RRs of one variant: eight AAAA records (8 × 28 = 224) or one
/// CNAME with a maximal target (12 + 255 = 267).
pub const MAX_ANSWER_LEN: usize = 272;
/// Shortest answer: one record's fixed part (owner pointer, type, class, TTL, RDLENGTH).
pub const MIN_ANSWER_LEN: usize = 12;
/// Most records in one answer, and so most endpoints in one pool: the one definition of
/// hotpool's "up to 8" (pool endpoints, fallback records, `count`, weighted variants).
pub const MAX_ANSWER_RRS: usize = 8;
/// Entries per index bucket.
pub const BUCKET_ENTRIES: usize = 4;
/// [`MAP_HOT_CUR`] value of a pool with no answer in the kernel (the daemon answers).
pub const NO_SLOT: u64 = u64::MAX;

/// Value of [`MAP_HOT_INDEX`]: up to four names whose hash falls here.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// [`tag`] of each entry's name hash; 0 marks an empty entry.
    pub tags: [u32; BUCKET_ENTRIES],
    /// Pool index of each entry.
    pub pools: [u32; BUCKET_ENTRIES],
}

/// The tag of a name hash: its high half, never 0 (0 marks an empty bucket entry).
#[inline(always)]
pub const fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32 | 1
}

/// The bucket of a name hash.
#[inline(always)]
pub const fn bucket(hash: u64, index_mask: u32) -> u32 {
    hash as u32 & index_mask
}

/// Value of [`MAP_HOT_SLOTS`]: one published answer of a pool and what the kernel needs to
/// confirm the query's name against. Laid out for the common case: lengths, answer indexes
/// and a name of up to 24 octets share the first cache line; the thresholds, read only for
/// weighted pools, come last.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnswerSet {
    /// Wire length of `name`, root octet included.
    pub name_len: u8,
    /// [`qtype_bit`]s of the query types answered with these records (A, AAAA or, for a
    /// CNAME pool, all three).
    pub qtypes: u8,
    /// Number of entries of `thresholds` and `answers` in use (1..=8).
    pub n_variants: u8,
    /// `SET_*` flags.
    pub flags: u8,
    /// The pool this was published for (diagnostics).
    pub pool: u32,
    /// Indexes into [`MAP_HOT_ANSWERS`].
    pub answers: [u32; MAX_VARIANTS],
    /// The folded wire name as little-endian words, zero-padded ([`crate::name`]).
    pub name: [u64; NAME_WORDS],
    /// Cumulative thresholds of the weighted pick ([`crate::pick()`]).
    pub thresholds: [u32; MAX_VARIANTS],
}

impl AnswerSet {
    pub const fn empty() -> Self {
        Self {
            name_len: 0,
            qtypes: 0,
            n_variants: 0,
            flags: 0,
            pool: 0,
            answers: [0; MAX_VARIANTS],
            name: [0; NAME_WORDS],
            thresholds: [0; MAX_VARIANTS],
        }
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> &[u32] {
        &self.thresholds[..(self.n_variants as usize).min(MAX_VARIANTS)]
    }
}

impl core::fmt::Debug for AnswerSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = (self.n_variants as usize).min(MAX_VARIANTS);
        f.debug_struct("AnswerSet")
            .field("pool", &self.pool)
            .field("name_len", &self.name_len)
            .field("qtypes", &self.qtypes)
            .field("thresholds", &&self.thresholds[..n])
            .field("answers", &&self.answers[..n])
            .finish()
    }
}

/// The [`qtype_bit`]s a pool of record type `rtype` answers in the kernel: its own type, or
/// A, AAAA and CNAME for a CNAME pool (RFC 1034 §3.6.2).
pub const fn pool_qtypes(rtype: u16) -> u8 {
    match rtype {
        crate::qtype::CNAME => qtype_bit::A | qtype_bit::AAAA | qtype_bit::CNAME,
        t => qtype_bit(t),
    }
}

/// Value of [`MAP_HOT_ANSWERS`]: the answer-section RRs exactly as they go on the wire after
/// the echoed question. Owner names are the compression pointer `0xC00C` (the question
/// name), so the bytes do not depend on the case the client used.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Answer {
    /// Number of RRs in `bytes`, network order (copied into ANCOUNT).
    pub ancount: [u8; 2],
    /// Used length of `bytes` (12..=272).
    pub len: u16,
    /// Folded one's-complement sum of `bytes[..len]` as if at an even offset
    /// ([`crate::csum`]), for the incremental UDP checksum.
    pub sum: u16,
    pub _reserved: u16,
    /// `bytes[len - 8..len]` as a native word: the kernel copies whole words and then this
    /// one, ending at the answer's end (it cannot read the map at an offset the length
    /// decides: the verifier proves map reads from the loop counter).
    pub last_word: u64,
    pub bytes: [u8; MAX_ANSWER_LEN],
}

impl Answer {
    pub const fn empty() -> Self {
        Self {
            ancount: [0; 2],
            len: 0,
            sum: 0,
            _reserved: 0,
            last_word: 0,
            bytes: [0; MAX_ANSWER_LEN],
        }
    }

    /// An answer of `ancount` records encoded as `rrs` (at most [`MAX_ANSWER_LEN`] octets),
    /// with its checksum sum.
    pub fn new(ancount: u16, rrs: &[u8]) -> Option<Self> {
        if !(MIN_ANSWER_LEN..=MAX_ANSWER_LEN).contains(&rrs.len()) {
            return None;
        }
        let mut a = Self::empty();
        a.ancount = ancount.to_be_bytes();
        a.len = rrs.len() as u16;
        a.sum = crate::csum::fold(crate::csum::partial(rrs, 0));
        a.bytes[..rrs.len()].copy_from_slice(rrs);
        let mut last = [0u8; 8];
        last.copy_from_slice(&rrs[rrs.len() - 8..]);
        a.last_word = u64::from_ne_bytes(last);
        Some(a)
    }

    /// The encoded RRs.
    pub fn rrs(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(MAX_ANSWER_LEN)]
    }
}

impl core::fmt::Debug for Answer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Answer")
            .field("ancount", &crate::be16(self.ancount))
            .field("rrs", &self.rrs())
            .finish()
    }
}

/// Value of [`MAP_CONFIG`] (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// `CFG_*` flags.
    pub flags: u32,
    /// Buckets of [`MAP_HOT_INDEX`] in use, minus one (a power of two minus one).
    pub index_mask: u32,
    /// UDP port the XDP path answers on, network order.
    pub port: [u8; 2],
    /// UDP payload size we advertise in OPT records, network order.
    pub edns_udp_size: [u8; 2],
    /// Entries of `listen_v4` and `listen_v6` in use.
    pub n_listen_v4: u8,
    pub n_listen_v6: u8,
    /// Prefix lengths of the client networks rate limited together: IPv4, IPv6.
    pub rrl_prefix: [u8; 2],
    /// Key of the name hash.
    pub key: HashKey,
    /// Local addresses answered for, unless a wildcard or a map flag says otherwise.
    pub listen_v4: [[u8; 4]; INLINE_LISTEN_ADDRS],
    pub listen_v6: [[u8; 16]; INLINE_LISTEN_ADDRS],
    /// Nanoseconds after the daemon's last heartbeat ([`MAP_HEARTBEAT`]) from which a hit
    /// is stale: answered and counted as `stale_hit`, or passed (`stale`) with
    /// [`CFG_STALE_PASS`]. 0: never stale (no clock read).
    pub stale_ns: u64,
    /// Response rate limiting of hits ([`crate::rrl`]); `interval_ns == 0`: off (no clock
    /// read, no bucket).
    pub rrl: RrlParams,
    /// The region table's generation, one more with each swap and two more with each
    /// change of [`MAP_GEO_CUR`]'s entries: its low bit names the trie in use, 0
    /// [`MAP_GEO_A`], 1 [`MAP_GEO_B`] (and the side of the [`MAP_GEO_CUR`] keys read); the
    /// whole of it tags the kernel's region cache entries ([`GeoCacheEntry`]).
    pub geo_gen: u32,
    pub _reserved: u32,
}

impl XdpConfig {
    pub const fn disabled() -> Self {
        Self {
            flags: 0,
            index_mask: 0,
            port: [0; 2],
            edns_udp_size: [0; 2],
            n_listen_v4: 0,
            n_listen_v6: 0,
            rrl_prefix: [32, 128],
            key: HashKey { k0: 0, k1: 0 },
            listen_v4: [[0; 4]; INLINE_LISTEN_ADDRS],
            listen_v6: [[0; 16]; INLINE_LISTEN_ADDRS],
            stale_ns: 0,
            rrl: RrlParams {
                interval_ns: 0,
                tolerance_ns: 0,
                slip: 0,
                _pad: 0,
            },
            geo_gen: 0,
            _reserved: 0,
        }
    }
}

/// Answer IPv4 queries to any (unicast) local address.
pub const CFG_ANY_V4: u32 = 1 << 0;
/// Answer IPv6 queries to any (unicast) local address.
pub const CFG_ANY_V6: u32 = 1 << 1;
/// The XDP path is enabled; when clear every packet is passed (used while reloading).
pub const CFG_ENABLED: u32 = 1 << 2;
/// More IPv4 addresses than fit inline: look them up in [`MAP_LISTEN_ADDRS`].
pub const CFG_LISTEN_MAP_V4: u32 = 1 << 3;
/// More IPv6 addresses than fit inline: look them up in [`MAP_LISTEN_ADDRS`].
pub const CFG_LISTEN_MAP_V6: u32 = 1 << 4;
/// Grow replies into the headroom even when the tail could grow (tests use it to run every
/// packet through that path).
pub const CFG_PREFER_HEADROOM: u32 = 1 << 5;
/// Pass stale hits to the daemon instead of answering them (`on_stale = "pass"`).
pub const CFG_STALE_PASS: u32 = 1 << 6;
/// [`MAP_RRL_EXEMPT`] holds networks: look the client up there before limiting it.
pub const CFG_RRL_EXEMPT: u32 = 1 << 7;

/// Whether a hit at `now` (ns) is stale, given the last heartbeat `beat` and the limit
/// `stale_ns` (0: never). A beat later than `now` (written after the clock was read) is
/// fresh.
#[inline(always)]
pub const fn is_stale(now: u64, beat: u64, stale_ns: u64) -> bool {
    stale_ns != 0 && now > beat && now - beat > stale_ns
}

/// The third word of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) in [`address_words`]:
/// an address whose first two words are 0 and whose third is this is an IPv4 address.
pub const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// An IPv6 address (IPv4 as IPv4-mapped) as four words, each the native-endian load of four
/// octets in network order: compared, masked and hashed in four registers in the kernel.
#[inline(always)]
pub const fn address_words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

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
    unsafe impl aya::Pod for super::Bucket {}
    unsafe impl aya::Pod for super::AnswerSet {}
    unsafe impl aya::Pod for super::Answer {}
    unsafe impl aya::Pod for super::XdpConfig {}
    unsafe impl aya::Pod for super::Iface {}
    unsafe impl aya::Pod for super::GeoCacheEntry {}
}

// No implicit padding anywhere (the Pod impls rely on it).
const _: () = assert!(core::mem::size_of::<Bucket>() == 8 * BUCKET_ENTRIES);
const _: () = assert!(core::mem::size_of::<AnswerSet>() == 8 + 8 * MAX_VARIANTS + 8 * NAME_WORDS);
const _: () = assert!(core::mem::size_of::<Answer>() == 16 + MAX_ANSWER_LEN);
const _: () = assert!(core::mem::size_of::<XdpConfig>() == 72 + 20 * INLINE_LISTEN_ADDRS);
const _: () = assert!(core::mem::size_of::<Iface>() == 8);
const _: () = assert!(core::mem::size_of::<GeoCacheEntry>() == 40);
const _: () = assert!(GEO_CACHE_SLOTS.is_power_of_two());
const _: () = assert!(core::mem::size_of::<HashKey>() == 16);
const _: () = assert!(RRL_ENTRIES.is_power_of_two());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qtype;

    #[test]
    fn tags_are_never_zero() {
        assert_eq!(tag(0), 1);
        assert_eq!(tag(0xdead_beef_0000_0000), 0xdead_beef);
        assert_eq!(tag(0xdead_beee_ffff_ffff), 0xdead_beef);
        assert_eq!(bucket(0x1234_5678_9abc_def0, 0xff), 0xf0);
    }

    #[test]
    fn pool_qtypes_per_record_type() {
        assert_eq!(pool_qtypes(qtype::A), qtype_bit::A);
        assert_eq!(pool_qtypes(qtype::AAAA), qtype_bit::AAAA);
        assert_eq!(
            pool_qtypes(qtype::CNAME),
            qtype_bit::A | qtype_bit::AAAA | qtype_bit::CNAME
        );
        assert_eq!(pool_qtypes(15), 0);
    }

    #[test]
    fn answers_carry_their_sum() {
        let rrs = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 10];
        let a = Answer::new(1, &rrs).unwrap();
        assert_eq!(a.rrs(), &rrs);
        assert_eq!(a.ancount, [0, 1]);
        assert_eq!(a.sum, crate::csum::fold(crate::csum::partial(&rrs, 0)));
        assert_eq!(a.last_word.to_ne_bytes(), [0, 30, 0, 4, 192, 0, 2, 10]);
        assert!(Answer::new(1, &rrs[..11]).is_none());
        assert!(Answer::new(1, &[0; MAX_ANSWER_LEN + 1]).is_none());
    }

    #[test]
    fn staleness() {
        const S: u64 = 1_000_000_000;
        assert!(!is_stale(100 * S, 90 * S, 0), "0 disables");
        assert!(!is_stale(100 * S, 90 * S, 30 * S));
        assert!(
            !is_stale(100 * S, 70 * S, 30 * S),
            "exactly the limit is fresh"
        );
        assert!(is_stale(100 * S, 70 * S - 1, 30 * S));
        assert!(is_stale(100 * S, 0, 30 * S), "never beaten");
        assert!(
            !is_stale(100 * S, 101 * S, 30 * S),
            "a beat after the clock read"
        );
    }

    #[test]
    fn geo_keys_and_values() {
        assert_eq!(geo_key(7, 3, 1), 7 | 3 << 32 | 1 << 48);
        assert_ne!(geo_key(7, 3, 0), geo_key(7, 3, 1));
        assert_eq!(geo_region(geo_value(513, 24)), (513, 24));
        assert_eq!(geo_region(geo_value(u16::MAX, 128)), (u16::MAX, 128));
    }

    #[test]
    fn geo_cache_slots_spread_a_subnet_and_its_pools() {
        let mut seen = std::collections::HashSet::new();
        for host in 0..=255u8 {
            let slot = geo_cache_slot(&address_words(&v4_mapped([198, 51, 100, host])), 3);
            assert!(slot < GEO_CACHE_SLOTS);
            seen.insert(slot);
        }
        assert!(
            seen.len() > 200,
            "one /24's hosts share {} slots",
            seen.len()
        );
        let one = address_words(&v4_mapped([198, 51, 100, 1]));
        let pools: std::collections::HashSet<u32> =
            (0..64).map(|pool| geo_cache_slot(&one, pool)).collect();
        assert!(
            pools.len() > 56,
            "one client's pools share {} slots",
            pools.len()
        );
        // The entry's head is the trie key's layout: prefix length, then the address.
        assert_eq!(core::mem::offset_of!(GeoCacheEntry, addr), 4);
    }

    #[test]
    fn v4_mapped_layout() {
        assert_eq!(
            v4_mapped([192, 0, 2, 1]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]
        );
    }
}
